"""DVC stage `masks@S`: SAM masks for strategy S's points, decoder only (cached embeddings).

Usage: ``python stages/masks.py S``. Reads params `strategies.S`, `eval`, `data.root`, `sam`;
reads `data/strategies/S/points.zarr` (points, and the search's regions for a region-search strategy),
writes `data/strategies/S/masks.zarr` (masks bool (N,H,W),
scores float32 (N,) = SAM's predicted IoU of the kept mask; attrs names).
"""

from __future__ import annotations

from camprompt.artifacts import load_arrays, load_params, save_arrays
from camprompt.data import load_split
from camprompt.stage_io import check_names, load_attached_predictor, run_stage, strategy_dir, strategy_params
from camprompt.strategies import build_pipeline


def main(name: str) -> None:
    params = load_params()
    strat = strategy_params(params, name)
    ev = params["eval"]
    split = load_split(params["data"]["root"], ev["split"], ev.get("limit"))
    points_path = strategy_dir(name) / "points.zarr"
    arrays, attrs = load_arrays(points_path)
    check_names(attrs.get("names"), split.names, points_path)
    predictor = load_attached_predictor(params, split.images)
    pipeline = build_pipeline(name, strat, predictor=predictor, classifier=None, progress=True,
                              cam_configs=params.get("gradcam", {}).get("configs"))
    # A region-search strategy's points.zarr also holds the regions its points came from (box, mask choice).
    masks, scores = pipeline.segment_rgb(split.images, arrays["coords"], arrays["labels"], arrays.get("regions"))
    save_arrays(strategy_dir(name) / "masks.zarr", {"masks": masks, "scores": scores},
                {"names": list(split.names), "strategy": name}, chunk_rows=256)
    print(f"masks@{name}: {len(masks)} masks, mean predicted IoU {float(scores.mean()):.3f}")


if __name__ == "__main__":
    run_stage(main, "STRATEGY")
