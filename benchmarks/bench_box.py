"""Measure box-prompt rules on VAL: which of SAM's answers to keep when the region's box is shown too.

``box_margin`` (params) shows SAM the chosen region's bounding box beside the points on every image
with a region. Where that region is smaller than its shape (anti-aliased edges, 5-10 px shapes) the
tight box cuts SAM's mask. This compares, per strategy, on a slice of val:

* ``points``: the points alone (``box_margin: null``);
* ``always_mM``: points + the region's box widened by M px (the library's rule at ``box_margin: M``);
* ``pool_mM``: SAM's three proposals for the points alone and its three for points + box, one of the
  six kept by the pipeline's own ``select_mask`` (the colour and region evidence vote);
* ``tT_mM``: the box answer only where the points-only mask overlaps the region by IoU < T.

    python benchmarks/bench_box.py --offset 100 --n 200 --variants foreign,jpeg75_noise4,size32,jpeg75,jpeg90,clean,noise4

Each cell is mean IoU / failures (IoU < 0.5) / images the rule changed the prompt of. The search runs
once per variant, as in ``robust@V``; SAM's embeddings come from ``bench_strategies.py``'s disk
cache. Only ``always_mM`` is in the library; this is the val measurement that would choose another.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_recipe import val_variant
from bench_strategies import DiskCachedPredictor

from camprompt.artifacts import load_params, write_json
from camprompt.conventions import DEFAULT_CAM
from camprompt.data import normalize
from camprompt.gradcam import compute_split_heatmaps
from camprompt.input_size import scale_search, working_size
from camprompt.metrics import iou_batch
from camprompt.placement import region_box
from camprompt.sam import load_predictor
from camprompt.search import RegionSearch, SearchConfig
from camprompt.stage_io import load_fitted_classifier, load_fitted_judge
from camprompt.strategies import build_pipeline, strategy_cam, strategy_points

MARGINS = (0, 1)
TRIGGERS = (0.5, 0.7, 0.9)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--offset", type=int, default=100)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--variants", default="foreign,jpeg75_noise4,size32,jpeg75,jpeg90,clean,noise4")
    ap.add_argument("--search", default="default")
    ap.add_argument("--cache", default="data/bench/sam_embeddings.npz")
    ap.add_argument("--json", default="data/bench/box.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    params = load_params()
    strategies = {k: v for k, v in params["strategies"].items() if v.get("search") == args.search}
    classifier = load_fitted_classifier(params)
    judge = load_fitted_judge(params, [args.search])
    predictor = DiskCachedPredictor(load_predictor({**params["sam"], "cache_size": 0}, params.get("device", "auto")),
                                    Path(args.cache))
    knobs = dict(params["searches"][args.search])
    out: dict[str, dict[str, list[float]]] = {}
    for variant in args.variants.split(","):
        t0 = time.perf_counter()
        full = val_variant(params, variant, args.offset + args.n)
        images, gts = full.images[args.offset:], full.masks[args.offset:]
        cams = compute_split_heatmaps(classifier, normalize(images), params["gradcam"]["configs"])
        config = scale_search(SearchConfig.from_params(knobs), images.shape[1:3], working_size(classifier))
        choices = RegionSearch(config, classifier, predictor, judge=judge).regions(
            images, cams.heatmaps[knobs.get("cam", DEFAULT_CAM)], cams.preds)
        regions, seeds = np.stack([c.region for c in choices]), np.stack([c.seed for c in choices])
        found = regions.any(axis=(1, 2))
        for name, strategy in strategies.items():
            strategy = {**strategy, "box_margin": None}  # the pipeline asks SAM with the points alone
            pipe = build_pipeline(name, strategy, predictor=predictor, classifier=None, cam_configs=params["gradcam"]["configs"])
            heat = cams.heatmaps[strategy_cam(strategy, params["searches"])]
            coords, labels = strategy_points(pipe, strategy, images, heat, (regions, seeds))
            points_only, _ = pipe.segment_rgb(images, coords, labels, regions)
            base_iou, agree = iou_batch(points_only, gts), iou_batch(points_only, regions)
            boxed = {m: base_iou.copy() for m in MARGINS}
            pooled = {m: base_iou.copy() for m in MARGINS}
            for i in np.flatnonzero(found):
                keep = labels[i] >= 0
                pts, labs = coords[i][keep].astype(np.float32), labels[i][keep].astype(np.int64)
                predictor.set_image(images[i])
                alone, alone_ious, _ = predictor.predict(point_coords=pts, point_labels=labs, multimask_output=True)
                for m in MARGINS:
                    props, ious, _ = predictor.predict(point_coords=pts, point_labels=labs, box=region_box(regions[i], m),
                                                       multimask_output=True)
                    for result, masks, scores in (
                            (boxed, np.asarray(props, bool), np.asarray(ious, np.float64)),
                            (pooled, np.concatenate([np.asarray(alone, bool), np.asarray(props, bool)]),
                             np.concatenate([np.asarray(alone_ious, np.float64), np.asarray(ious, np.float64)]))):
                        k = pipe.select_mask(images[i], masks, scores, pts, labs, regions[i])
                        result[m][i] = iou_batch(masks[k][None], gts[i][None])[0]
            rows = {"points": [float(base_iou.mean()), int((base_iou < 0.5).sum()), 0]}
            for m in MARGINS:
                for label, iou, fire in [(f"always_m{m}", boxed[m], found), (f"pool_m{m}", pooled[m], found),
                                         *((f"t{t}_m{m}", boxed[m], (agree < t) & found) for t in TRIGGERS)]:
                    got = np.where(fire, iou, base_iou)
                    rows[label] = [float(got.mean()), int((got < 0.5).sum()), int(fire.sum())]
            out[f"{variant}/{name}"] = rows
            print(f"{variant} {name}: " + "  ".join(f"{k} {a:.3f}/{b}/{c}" for k, (a, b, c) in rows.items()), flush=True)
        predictor.save()
        print(f"{variant}: val[{args.offset}:{args.offset + args.n}] in {time.perf_counter() - t0:.0f} s", flush=True)
    write_json(args.json, {"args": vars(args), "results": out})


if __name__ == "__main__":
    main(sys.argv[1:])
