"""DVC stage `points@S`: the point prompts of strategy S for the evaluated split.

Usage: ``python stages/points.py S``. Reads params `strategies.S`, `eval`, `data.root`,
`gradcam` (store path and the CAM config S names), `train.checkpoint` and `sam` (predictor + cached
embeddings, for strategies that let SAM propose candidates). Writes
`data/strategies/S/points.zarr` (schema in docs/ARCHITECTURE.md). The pipeline sees images only;
the heatmaps and predicted classes come from `data/heatmaps.zarr` (the same numbers the pipeline
would compute itself).
"""

from __future__ import annotations

import sys

import numpy as np

from camprompt.artifacts import load_params, save_arrays
from camprompt.data import load_split, normalize
from camprompt.pipelines import build_pipeline, check_names, load_attached_predictor, strategy_dir, strategy_params


def main(name: str) -> None:
    params = load_params()
    strat = strategy_params(params, name)
    ev = params["eval"]
    split = load_split(params["data"]["root"], ev["split"], ev.get("limit"))
    heat = targets = classifier = predictor = None
    if strat["pipeline"] != "basic":
        from camprompt.artifacts import open_arrays
        from camprompt.classifier import load_classifier

        store = open_arrays(params["gradcam"]["out"])
        check_names(store.attrs.get("names"), split.names, params["gradcam"]["out"])
        cam = strat.get("cam", "layer2")
        if f"heatmap_{cam}" not in store:
            raise SystemExit(f"{params['gradcam']['out']} has no heatmap_{cam}; add {cam!r} to params gradcam.configs")
        heat, targets = np.asarray(store[f"heatmap_{cam}"][...]), np.asarray(store["pred"][...])
        classifier = load_classifier(params["train"]["checkpoint"])
        if strat.get("use_sam", True):
            predictor = load_attached_predictor(params, split.images)
    pipeline = build_pipeline(name, strat, predictor=predictor, classifier=classifier,
                              cam_configs=params["gradcam"]["configs"], progress=True)
    images = normalize(split.images)
    if heat is None:
        coords, labels = pipeline.points(images)
    else:
        coords, labels = pipeline.points(images, heatmaps=heat, targets=targets)  # type: ignore[call-arg]
    attrs = {"names": list(split.names), "strategy": name, "params": strat, "split": ev["split"]}
    save_arrays(strategy_dir(name) / "points.zarr", {"coords": coords, "labels": labels}, attrs)
    fg = float((labels == 1).sum(1).mean()) if len(labels) else 0.0
    bg = float((labels == 0).sum(1).mean()) if len(labels) else 0.0
    print(f"points@{name}: {len(split.names)} images, {fg:.2f} fg and {bg:.2f} bg points per image")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python stages/points.py STRATEGY")
    main(sys.argv[1])
