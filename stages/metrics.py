"""DVC stage `metrics@S`: strategy S's points and masks against the ground truth.

Usage: ``python stages/metrics.py S``. Reads params `eval`, `data.root`, `gradcam.out` and the
CAM the points came from (recorded in points.zarr; for the figure only); writes `metrics/S.json` (DVC metrics),
`data/strategies/S/per_image.csv` and `data/strategies/S/worst.png` (the WORST lowest-IoU images).
This is the only place where ground truth meets the pipelines' output.
"""

from __future__ import annotations

import csv
import json
import sys

import numpy as np

from camprompt.artifacts import atomic_path, load_arrays, load_params, write_json
from camprompt.data import CLASSES, load_split
from camprompt.metrics import plot_cases, summarize, worst_indices
from camprompt.pipelines import check_names, load_heatmap, strategy_dir, strategy_params

WORST = 8          # cases in worst.png
FAILURE_IOU = 0.5  # an image with IoU below this counts as a failure
COLUMNS = ["name", "class", "iou", "n_fg", "n_bg", "fg_hits", "bg_outside", "fg_dist", "bg_dist", "score", "points"]


def _heatmaps(params: dict, cam: str | None, names: list[str]) -> np.ndarray | None:
    """The CAM the strategy's points came from (the first configured one for the baseline), for the figure."""
    cam = cam or next(iter(params["gradcam"]["configs"]), None)
    return load_heatmap(params, cam, names, required=False)[0] if cam else None


def _fmt(value: float) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:.4f}"


def _write_csv(path, split, rows, scores, coords, labels) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for i, r in enumerate(rows):
            keep = labels[i] != -1
            pts = [[round(float(x), 3), round(float(y), 3), int(l)] for (x, y), l in zip(coords[i][keep], labels[i][keep])]
            writer.writerow([split.names[i], r["class"], _fmt(r["iou"]), r["n_fg"], r["n_bg"], r["fg_hits"], r["bg_outside"],
                             _fmt(r["fg_dist"]), _fmt(r["bg_dist"]), _fmt(float(scores[i])), json.dumps(pts)])


def main(name: str) -> None:
    params = load_params()
    strategy_params(params, name)  # a clear error for a strategy params.yaml does not define
    ev = params["eval"]
    split = load_split(params["data"]["root"], ev["split"], ev.get("limit"))
    folder = strategy_dir(name)
    points, pattrs = load_arrays(folder / "points.zarr")
    masks, mattrs = load_arrays(folder / "masks.zarr")
    check_names(pattrs.get("names"), split.names, folder / "points.zarr")
    check_names(mattrs.get("names"), split.names, folder / "masks.zarr")
    classes = [CLASSES[int(c)] for c in split.labels]
    summary, rows = summarize(masks["masks"], split.masks, points["coords"], points["labels"], classes,
                              class_names=CLASSES, failure_iou=FAILURE_IOU)
    _write_csv(folder / "per_image.csv", split, rows, masks["scores"], points["coords"], points["labels"])
    worst = worst_indices([r["iou"] for r in rows], WORST)
    heat = _heatmaps(params, pattrs.get("cam"), split.names)
    titles = [f"{split.names[i]} {classes[i]}\nIoU {rows[i]['iou']:.2f}" for i in worst]
    with atomic_path(folder / "worst.png") as tmp:
        plot_cases(tmp, split.images[worst], None if heat is None else heat[worst], points["coords"][worst],
                   points["labels"][worst], masks["masks"][worst], split.masks[worst], titles)
    write_json(f"metrics/{name}.json", summary)
    shown = {k: summary[k] for k in ("fg_hit_rate", "bg_outside_rate", "iou_mean", "n_failures")}
    print(f"metrics@{name}: {shown}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python stages/metrics.py STRATEGY")
    main(sys.argv[1])
