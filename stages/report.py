"""DVC stage `report`: the PDF report, the HTML gallery and the results table of every strategy.

Reads params `strategies`, `eval`, `data.root`, `gradcam.out`, `sam.backend`; reads `metrics/*.json`,
`data/strategies/*/`, `data/heatmaps.zarr` and the evaluated split. Writes `data/report/`
(report.pdf, gallery.html, results.md, examples.png) in one atomic step, and prints the table so
that the end of `dvc repro` shows every strategy side by side.
"""

from __future__ import annotations

from camprompt.artifacts import load_params
from camprompt.report import build_report

OUT = "data/report"


def main() -> None:
    paths = build_report(OUT, load_params())
    print(paths["results.md"].read_text())
    print("report: " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    main()
