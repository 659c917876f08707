"""DVC stage `points@S`: the point prompts of strategy S for the evaluated split.

Usage: ``python stages/points.py S``. Reads params `strategies.S`, `eval`, `data.root` and
`gradcam.out`. The basic strategy needs only the images; `gradcam_peak` reads its heatmap from
`data/heatmaps.zarr`; a region-search strategy reads the object regions of the search config it
names (`data/regions/C.zarr`, from `regions@C`) and the heatmap that search used, and only *places*
points (no classifier or SAM call), so changing a placement knob re-runs in seconds.
Writes `data/strategies/S/points.zarr` (coords, labels, and the regions they came from for a
region-search strategy; attrs names/strategy/params/split/cam/pipeline/description).
"""

from __future__ import annotations

from camprompt.artifacts import ArtifactError, load_params, save_arrays
from camprompt.data import load_split
from camprompt.search_pipelines import ForegroundPointsPipeline
from camprompt.stage_io import load_heatmap, load_regions, run_stage, strategy_dir, strategy_params
from camprompt.strategies import build_pipeline, strategy_cam, strategy_points


def main(name: str) -> None:
    params = load_params()
    strat = strategy_params(params, name)
    ev = params["eval"]
    split = load_split(params["data"]["root"], ev["split"], ev.get("limit"))
    # Placement only: no SAM, no classifier, and no search config (its regions and heatmap are stored).
    pipeline = build_pipeline(name, strat, predictor=None, classifier=None, cam_configs=params["gradcam"]["configs"])
    search, extra = None, {}
    if isinstance(pipeline, ForegroundPointsPipeline):  # a region-search pipeline: place from regions@C
        if "search" not in strat:
            raise ArtifactError(f"params.yaml strategies.{name} must name a search config (search: C, see `searches`); "
                                "the DVC pipeline runs each search once, in regions@C")
        search = load_regions(params, strat["search"], split.names)
        extra["regions"] = search[0]  # for masks@S, which may choose SAM's mask by agreement with them
    cam = strategy_cam(name, strat, params["searches"])
    heat = None if cam is None else load_heatmap(params, cam, split.names)[0]
    coords, labels = strategy_points(pipeline, strat, split.images, heat, search)
    attrs = {"names": list(split.names), "strategy": name, "params": strat, "split": ev["split"], "cam": cam,
             "pipeline": type(pipeline).__name__, "description": pipeline.description}
    save_arrays(strategy_dir(name) / "points.zarr", {"coords": coords, "labels": labels, **extra}, attrs)
    fg = float((labels == 1).sum(1).mean()) if len(labels) else 0.0
    bg = float((labels == 0).sum(1).mean()) if len(labels) else 0.0
    print(f"points@{name}: {len(split.names)} images, {fg:.2f} fg and {bg:.2f} bg points per image")


if __name__ == "__main__":
    run_stage(main, "STRATEGY")
