"""Evaluate every point strategy of params.yaml on VAL images, clean and perturbed.

This is where the strategy knobs are chosen (never on test). For each variant of the images --
``clean``, ``jpeg75`` (JPEG quality 75) and ``noise4`` (Gaussian sensor noise, sigma 4/255) -- it
recomputes the classifier's Grad-CAM (the classifier sees the perturbed image too), encodes every
image once with SAM (embeddings cached on disk under ``--cache``, keyed by image content), runs
each strategy's ``points()`` and ``segment()`` exactly as the DVC stages do, and prints every
metric of ``camprompt.metrics.summarize``.

    python benchmarks/bench_strategies.py --n 200 --variants clean,jpeg75,noise4
    python benchmarks/bench_strategies.py --n 300 --no-sam     # points only (no SAM weights needed)

Options: ``--offset`` picks another slice of val (check that a choice holds on unseen images),
``--set foreground.max_candidates=16`` overrides a knob, ``--json`` writes all numbers to a file.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image

from camprompt.artifacts import load_params, write_json
from camprompt.classifier import load_classifier
from camprompt.data import CLASSES, load_split, normalize
from camprompt.gradcam import compute_split_heatmaps
from camprompt.metrics import summarize
from camprompt.strategies import build_pipeline, resolve_strategy


def jpeg(images: np.ndarray, quality: int) -> np.ndarray:
    out = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    return np.stack(out)


def noise(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.round(images + rng.normal(0.0, sigma, images.shape)), 0, 255).astype(np.uint8)


VARIANTS = {
    "clean": lambda x: x,
    "jpeg75": lambda x: jpeg(x, 75),
    "jpeg90": lambda x: jpeg(x, 90),
    "noise4": lambda x: noise(x, 4.0),
    "jpeg75_noise3": lambda x: noise(jpeg(x, 75), 3.0, seed=1),
}


class CachedPredictor:
    """Wraps a camprompt.sam predictor so each distinct image is encoded once per cache file."""

    def __init__(self, predictor: Any, cache: Path) -> None:
        from camprompt.sam.predictor import image_key

        self.predictor, self.image_key, self.cache = predictor, image_key, cache
        self.store: dict[str, np.ndarray] = {}
        if cache.is_file():
            with np.load(cache) as npz:
                self.store = {k: npz[k] for k in npz.files}
        self.encoded = 0

    def set_image(self, image: np.ndarray) -> None:
        key = self.image_key(image)
        if key not in self.store:
            self.predictor.set_image(image)
            self.store[key] = np.asarray(self.predictor.get_image_embedding())
            self.encoded += 1
            return
        self.predictor.set_embedding(self.store[key], original_size=image.shape[:2])

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        return self.predictor.predict(*args, **kwargs)

    def save(self) -> None:
        if self.encoded:
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache.with_suffix(".tmp.npz")
            np.savez(tmp, **self.store)
            tmp.replace(self.cache)


def _override(strategies: dict, sets: list[str]) -> dict:
    for item in sets:
        key, _, value = item.partition("=")
        name, _, knob = key.partition(".")
        if name not in strategies or not knob:
            raise SystemExit(f"--set {item!r}: expected STRATEGY.KNOB=VALUE with a strategy of params.yaml")
        strategies[name][knob] = yaml.safe_load(value)
    return strategies


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--variants", default="clean,jpeg75,noise4")
    ap.add_argument("--strategies", default=None, help="comma list; default: all of params.yaml")
    ap.add_argument("--set", action="append", default=[], help="STRATEGY.KNOB=VALUE (repeatable)")
    ap.add_argument("--no-sam", action="store_true", help="points only; strategies run with use_sam: false")
    ap.add_argument("--cache", default="data/bench_cache/sam_embeddings.npz")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    params = load_params()
    split = load_split(params["data"]["root"], "val", args.offset + args.n)
    sl = slice(args.offset, args.offset + args.n)
    images, gt, classes = split.images[sl], split.masks[sl], [CLASSES[int(c)] for c in split.labels[sl]]
    classifier = load_classifier(params["train"]["checkpoint"])
    # Each strategy with its search's knobs copied in, so `--set S.max_candidates=..` changes S's search only.
    searches = params.get("searches")
    strategies = _override({k: resolve_strategy(k, v, searches) for k, v in params["strategies"].items()}, args.set)
    names = args.strategies.split(",") if args.strategies else list(strategies)
    predictor = None
    if not args.no_sam:
        from camprompt.sam import load_predictor

        predictor = CachedPredictor(load_predictor(params["sam"], params.get("device", "auto")), Path(args.cache))
    results: dict[str, Any] = {}
    for variant in args.variants.split(","):
        x_uint8 = VARIANTS[variant](images)
        x = normalize(x_uint8)
        t0 = time.perf_counter()
        cams = compute_split_heatmaps(classifier, x, params["gradcam"]["configs"], progress=False)
        accuracy = float((cams.preds == split.labels[sl]).mean())
        print(f"\n== {variant}: {len(x)} val images [{args.offset}:{args.offset + args.n}], classifier accuracy {accuracy:.3f}")
        for name in names:
            strat = dict(strategies[name])
            if args.no_sam and strat["pipeline"] in ("basic", "gradcam_peak"):
                continue
            if args.no_sam:
                strat["use_sam"] = False
            pipe = build_pipeline(name, strat, predictor=predictor, classifier=classifier,
                                  cam_configs=params["gradcam"]["configs"], progress=False)
            t = time.perf_counter()
            if strat["pipeline"] == "basic":
                coords, labels = pipe.points(x)
            elif strat["pipeline"] == "gradcam_peak":
                coords, labels = pipe.points(x, heatmaps=cams.heatmaps[strat.get("cam", "layer2")])
            else:
                coords, labels = pipe.points(x, heatmaps=cams.heatmaps[strat.get("cam", "layer2")], targets=cams.preds)
            t_points = time.perf_counter() - t
            if predictor is None:
                pred = np.zeros_like(gt)
            else:
                pred = pipe.segment(x, coords, labels).numpy()
            summary, _ = summarize(pred, gt, coords, labels, classes, class_names=CLASSES)
            summary.update(seconds_points_per_image=t_points / max(len(x), 1), classifier_accuracy=accuracy)
            results.setdefault(variant, {})[name] = summary
            iou = "n/a (no SAM)" if predictor is None else f"{summary['iou_mean']:.4f}"
            bg = summary["bg_outside_rate"]
            print(f"  {name:<12s} fg_hit {summary['fg_hit_rate']:.4f}  bg_out {'-' if bg is None else f'{bg:.4f}'}  "
                  f"IoU {iou}  failures {summary['n_failures'] if predictor is not None else '-'}  "
                  f"fg_dist {summary['fg_dist_mean']:.2f}  points {t_points / max(len(x), 1) * 1000:.0f} ms/img")
        if predictor is not None:
            predictor.save()
        print(f"  ({time.perf_counter() - t0:.0f} s)")
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main(sys.argv[1:])
