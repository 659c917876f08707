"""Other image sizes on VAL: the pipelines on splits drawn at another resolution, with and without
fitting them to the size the classifier was trained on (:mod:`camprompt.input_size`).

Another author's generator need not draw 64x48 images. For each ``--sizes`` entry WxH this draws
``--n`` images at that size with our generator, the shapes scaled with the frame (10-20 px at
64x48 become 5-10 px at 32x32; ``--drawn`` off: the first val images resized instead), and runs what
the ``robust@V`` stage runs (:func:`camprompt.robustness.evaluate_variant`) twice: with the
classifier as loaded, and fitted to its trained size (its input resized, and with it the region
search's pixel knobs scaled to the images). SAM's embeddings are cached on disk.

    python benchmarks/bench_sizes.py --n 50 --sizes 32x32,128x96,96x96
    python benchmarks/bench_sizes.py --sizes 128x96 --set strategies.fg_bg.edge_rounds=0

``--set KEY=VALUE`` overrides any params entry, as in bench_strategies.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from bench_strategies import DiskCachedPredictor, params_with
from camprompt.artifacts import write_json
from camprompt.classifier import load_classifier
from camprompt.data import SplitArrays, load_split
from camprompt.decision import Decision
from camprompt.input_size import fit_input_size, trained_size
from camprompt.robustness import VariantSpec, evaluate_variant, make_variant
from camprompt.sam import load_predictor
from camprompt.stage_io import load_fitted_judge
from camprompt.strategies import searches_of

STRATEGIES = ("foreground", "fg_bg")


def drawn_split(params: dict, width: int, height: int, n: int, seed: int) -> SplitArrays:
    """``n`` images drawn by our generator at width x height, the shape sizes scaled with the frame:
    a robustness variant (:func:`camprompt.robustness.make_variant`) in its own frame."""
    data = params["data"]
    scale = min(width / int(data["width"]), height / int(data["height"]))
    rules = {"min_shape_size": float(data["min_shape_size"]) * scale, "max_shape_size": float(data["max_shape_size"]) * scale,
             "min_inside": float(data["min_inside"]), "min_contrast": float(data["min_contrast"])}
    spec = VariantSpec.from_params(f"{width}x{height}", {"generator": rules, "seed": seed, "width": width, "height": height})
    arrays, _ = make_variant(spec, data_root=data["root"], split="val", n=n, seed=int(params.get("seed", 0)), data_params=data)
    return arrays


def resized_split(params: dict, width: int, height: int, n: int, offset: int) -> SplitArrays:
    """The val images ``offset..offset+n`` resized to width x height (area when shrinking, bilinear when growing)."""
    val = load_split(params["data"]["root"], "val", offset + n)
    shrink = width * height < val.images.shape[1] * val.images.shape[2]
    images = np.stack([cv2.resize(im, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
                       for im in val.images[offset:]])
    masks = np.stack([cv2.resize(m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
                      for m in val.masks[offset:]])
    return SplitArrays(images, masks, val.labels[offset:], list(val.names[offset:]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="32x32,128x96,96x96", help="comma-separated WxH")
    ap.add_argument("--n", type=int, default=50, help="images per size")
    ap.add_argument("--seed", type=int, default=7, help="the drawn splits' generator seed")
    ap.add_argument("--resized", action="store_true", help="resize val[offset:offset+n] instead of drawing")
    ap.add_argument("--offset", type=int, default=100, help="first val image with --resized")
    ap.add_argument("--cache", default="data/bench/sam_sizes.npz", help="SAM embeddings cache")
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE params override (repeatable)")
    args = ap.parse_args(argv)
    params = params_with(args.set)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    predictor = DiskCachedPredictor(load_predictor({**params["sam"], "cache_size": 0}, "cpu"), Path(args.cache))
    strategies = {k: params["strategies"][k] for k in STRATEGIES}
    decision = Decision.from_params(params.get("decision"))
    judge = load_fitted_judge(params, searches_of(strategies), decision)  # the train_judge stage's, as robust@V loads it
    as_loaded = load_classifier(params["train"]["checkpoint"])
    fitted_model = fit_input_size(load_classifier(params["train"]["checkpoint"]), trained_size(params["data"]))
    rows, results = [], {}
    for width, height in sizes:
        split = (resized_split(params, width, height, args.n, args.offset) if args.resized
                 else drawn_split(params, width, height, args.n, args.seed))
        for fitted, classifier in ((False, as_loaded), (True, fitted_model)):
            t0 = time.perf_counter()
            summary, _ = evaluate_variant(split, classifier=classifier, predictor=predictor, decision=decision,
                                          cam_configs=params["gradcam"]["configs"], searches=params["searches"],
                                          strategies=strategies, judge=judge)
            predictor.save()
            key = f"{width}x{height}{' fitted' if fitted else ''}"
            results[key] = summary
            s = summary["strategies"]
            rows.append(f"| {width}x{height} | {'yes' if fitted else 'no'} | {summary['classifier_accuracy']:.3f} | "
                        f"{summary['sam_ceiling']['single']:.3f} / {summary['sam_ceiling']['best_of_3']:.3f} | "
                        + " | ".join(f"{s[k]['fg_hit_rate']:.3f} / {s[k]['iou_mean']:.3f}" for k in STRATEGIES) + " |")
            print(rows[-1], f"({time.perf_counter() - t0:.0f} s)", flush=True)
    source = f"val[{args.offset}:{args.offset + args.n}] resized" if args.resized else f"{args.n} drawn, seed {args.seed}"
    print(f"\n{source}\n| size | input fitted | classifier (decided) | SAM ideal single / best of 3 | "
          + " | ".join(f"{k} FG hit / IoU" for k in STRATEGIES) + f" |\n|---|---|---|---|{'---|' * len(STRATEGIES)}")
    print("\n".join(rows))
    write_json(Path("data/bench") / f"sizes_{'resized' if args.resized else 'drawn'}_{args.n}{'_set' if args.set else ''}.json",
               {"args": vars(args), "results": results})


if __name__ == "__main__":
    main(sys.argv[1:])
