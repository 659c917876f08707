"""DVC stage `metrics@S`: strategy S's points and masks against the ground truth.

Usage: ``python stages/metrics.py S``. Reads params `eval`, `data.root`, `gradcam.out` and the
CAM the points came from (recorded in points.zarr; for the figure only); writes `metrics/S.json` (DVC metrics),
`data/strategies/S/per_image.csv` and `data/strategies/S/worst.png` (the WORST lowest-IoU images).
This is the only place where ground truth meets the pipelines' output.
"""

from __future__ import annotations

import numpy as np

from camprompt.artifacts import atomic_path, load_arrays, load_params, write_json
from camprompt.data import CLASSES, load_split
from camprompt.metrics import FAILURE_IOU, plot_cases, summarize, worst_indices
from camprompt.stage_io import check_names, load_heatmap, run_stage, strategy_dir, strategy_params, write_per_image

WORST = 8  # cases in worst.png


def _heatmaps(params: dict, cam: str | None, names: list[str]) -> np.ndarray | None:
    """The CAM the strategy's points came from (the first configured one for the baseline), for the figure."""
    cam = cam or next(iter(params["gradcam"]["configs"]), None)
    return load_heatmap(params, cam, names, required=False)[0] if cam else None


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
    write_per_image(folder / "per_image.csv", split.names, rows, masks["scores"], points["coords"], points["labels"])
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
    run_stage(main, "STRATEGY")
