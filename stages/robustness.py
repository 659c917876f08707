"""DVC stage `robustness`: every variant's summary in one DVC metrics file, `metrics/robustness.json`.

Reads params `robustness` and `data/robustness/*/summary.json`; writes `metrics/robustness.json`
({split, n_images, variants: {V: summary}}), so `dvc metrics diff` shows a robustness change like
any other, and prints the table.
"""

from __future__ import annotations

from pathlib import Path

from camprompt.artifacts import load_params, read_json, write_json
from camprompt.report.tables import robustness_markdown
from camprompt.stage_io import ROBUSTNESS_ROOT, run_stage, variant_names

OUT = "metrics/robustness.json"


def main() -> None:
    params = load_params()
    rob = params["robustness"]
    variants = {name: read_json(Path(ROBUSTNESS_ROOT) / name / "summary.json") for name in variant_names(params)}
    write_json(OUT, {"split": rob["split"], "n_images": int(rob["n"]), "variants": variants})
    print(robustness_markdown(variants))


if __name__ == "__main__":
    run_stage(main)
