"""Measure a candidate mask rule on VAL: SAM asked again with the chosen region's bounding box.

On JPEG images SAM sometimes answers a point inside a small shape with a mask of the background,
even for the ideal point; the region the search chose still bounds the shape. This asks SAM once
more per image, with the same points plus the region's box widened by a margin, and keeps the
proposal the pipeline's own ``select_mask`` prefers. It fires where SAM's first mask overlaps the
region by less than a trigger IoU (2.0 = every image with a region), and reports each trigger x
margin beside the pipelines as they are (``base``) and beside the region itself as the mask:

    python benchmarks/bench_box.py --offset 100 --n 200 --variants clean,jpeg75,jpeg75_noise4,foreign,jpeg90,noise4

Each cell is mean IoU / failures (IoU < 0.5) / images the rule fired on. The search runs once per
variant, as in ``robust@V``; SAM's embeddings come from ``bench_strategies.py``'s disk cache. The rule
is not in the library yet: this is the val measurement that would choose it.
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
from camprompt.sam import load_predictor
from camprompt.search import RegionSearch, SearchConfig
from camprompt.stage_io import load_fitted_classifier, load_fitted_judge
from camprompt.strategies import build_pipeline, strategy_cam, strategy_points

MARGINS = (0, 1, 3)
TRIGGERS = (0.3, 0.5, 0.7, 2.0)


def region_box(region: np.ndarray, margin: int) -> np.ndarray:
    """x0, y0, x1, y1 of ``region``'s pixels, widened by ``margin`` px and clipped to the frame."""
    ys, xs = np.nonzero(region)
    h, w = region.shape
    return np.array([max(xs.min() - margin, 0), max(ys.min() - margin, 0),
                     min(xs.max() + margin, w - 1), min(ys.max() + margin, h - 1)], np.float32)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--offset", type=int, default=100)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--variants", default="clean,jpeg75,jpeg75_noise4,foreign,jpeg90,noise4")
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
        region_iou = iou_batch(regions, gts)
        for name, strategy in strategies.items():
            pipe = build_pipeline(name, strategy, predictor=predictor, classifier=None, cam_configs=params["gradcam"]["configs"])
            heat = cams.heatmaps[strategy_cam(strategy, params["searches"])]
            coords, labels = strategy_points(pipe, strategy, images, heat, (regions, seeds))
            base, _ = pipe.segment_rgb(images, coords, labels, regions)
            base_iou, agree = iou_batch(base, gts), iou_batch(base, regions)
            boxed = {m: base_iou.copy() for m in MARGINS}
            for i in np.flatnonzero(found):
                keep = labels[i] >= 0
                pts, labs = coords[i][keep].astype(np.float32), labels[i][keep].astype(np.int64)
                predictor.set_image(images[i])
                for m in MARGINS:
                    props, ious, _ = predictor.predict(point_coords=pts, point_labels=labs, box=region_box(regions[i], m),
                                                       multimask_output=True)
                    props = np.asarray(props, bool)
                    k = pipe.select_mask(images[i], props, np.asarray(ious, np.float64), pts, labs, regions[i])
                    boxed[m][i] = iou_batch(props[k][None], gts[i][None])[0]
            rows = {"base": [float(base_iou.mean()), int((base_iou < 0.5).sum()), 0]}
            for t in TRIGGERS:
                fire = (agree < t) & found
                for label, iou in [*((f"m{m}", boxed[m]) for m in MARGINS), ("region", region_iou)]:
                    got = np.where(fire, iou, base_iou)
                    rows[f"t{t}_{label}"] = [float(got.mean()), int((got < 0.5).sum()), int(fire.sum())]
            out[f"{variant}/{name}"] = rows
            print(f"{variant} {name} (region itself {region_iou.mean():.3f}): "
                  + "  ".join(f"{k} {a:.3f}/{b}/{c}" for k, (a, b, c) in rows.items()), flush=True)
        predictor.save()
        print(f"{variant}: val[{args.offset}:{args.offset + args.n}] in {time.perf_counter() - t0:.0f} s", flush=True)
    write_json(args.json, {"args": vars(args), "results": out})


if __name__ == "__main__":
    main(sys.argv[1:])
