"""DVC stage `regions@C`: the object region of every evaluated image for search config C.

Usage: ``python stages/regions.py C``. Reads params `searches.C` (cam + search knobs), `eval`,
`data.root`, `data.height`/`data.width` (the classifier's input size, and the size the search's pixel
knobs are set for: `camprompt.input_size.scale_search`), `gradcam.out`,
`train.checkpoint`, `judge.checkpoint` (the no-shape judge, when the search weighs it), `device` and
`sam` (predictor + cached embeddings, for SAM proposals). Writes
`data/regions/C.zarr`: regions bool (N,H,W) (all False where nothing plausible was found), seeds
float32 (N,2) (the heatmap's strongest point, the fallback foreground point), attrs
names/search/params/cam. This is the expensive half of the point search (classifier
probes, SAM decoder calls); every strategy with `search: C` places its points from it in `points@S`.
"""

from __future__ import annotations

import numpy as np

from camprompt.artifacts import ArtifactError, load_params, save_arrays
from camprompt.conventions import DEFAULT_CAM
from camprompt.data import load_split
from camprompt.search import RegionSearch, SearchConfig
from camprompt.stage_io import (
    load_attached_predictor,
    load_fitted_classifier,
    load_fitted_judge,
    load_heatmap,
    region_store,
    run_stage,
)


def main(search: str) -> None:
    params = load_params()
    searches = params.get("searches") or {}
    if search not in searches:
        raise ArtifactError(f"params.yaml has no search config {search!r}; known: {sorted(searches)}")
    knobs = dict(searches[search] or {})
    cam = knobs.pop("cam", DEFAULT_CAM)
    ev = params["eval"]
    split = load_split(params["data"]["root"], ev["split"], ev.get("limit"))
    config = SearchConfig.from_params(knobs)
    heat, preds = load_heatmap(params, cam, split.names)
    classifier = load_fitted_classifier(params)  # fitted to the size the search's pixel knobs are set for
    predictor = load_attached_predictor(params, split.images) if config.use_sam else None
    judge = load_fitted_judge(params, [search])
    finder = RegionSearch(config, classifier, predictor, judge=judge, progress=True)
    regions, seeds = finder.stacked_regions(split.images, heat, preds)
    seeds = seeds.astype(np.float32)
    attrs = {"names": list(split.names), "search": search, "params": dict(searches[search]), "cam": cam, "split": ev["split"]}
    save_arrays(region_store(search), {"regions": regions, "seeds": seeds}, attrs, chunk_rows=256)
    found = int(regions.reshape(len(regions), -1).any(1).sum())
    print(f"regions@{search}: {len(split.names)} images, a region found in {found}, "
          f"mean area {float(regions.sum((1, 2)).mean()) if len(regions) else 0.0:.1f} px")


if __name__ == "__main__":
    run_stage(main, "SEARCH")
