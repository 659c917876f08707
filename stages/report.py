"""DVC stage `report`: the PDF report, the HTML gallery and the results table of every strategy.

Reads params `strategies`, `searches`, `eval`, `data.root`, `gradcam.out`, `sam`, `train.epochs`;
reads `metrics/*.json`, `data/strategies/*/`, `data/heatmaps.zarr`, the SAM model's `model.json`,
the dataset's `dataset.json` and the evaluated split. Writes `data/report/` (report.pdf,
gallery.html, results.md, examples.png) in one atomic step, and the deliverables that are committed
to git: `docs/report.pdf` and the README's picture `docs/figures/examples.png`. Prints the table so
that the end of `dvc repro` shows every strategy side by side.
"""

from __future__ import annotations

from camprompt.artifacts import load_params
from camprompt.report.build import build_report
from camprompt.stage_io import run_stage

OUT = "data/report"
DOCS = "docs"


def main() -> None:
    paths = build_report(OUT, load_params(), docs_dir=DOCS)
    print(paths["results.md"].read_text())
    print("report: " + ", ".join(str(p) for p in paths.values()) + f"; published to {DOCS}/")


if __name__ == "__main__":
    run_stage(main)
