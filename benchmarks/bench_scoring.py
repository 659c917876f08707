"""Choose the region search's score weights on VAL, offline: every candidate's evidence, then any weighting.

The search (:mod:`camprompt.search`) picks the candidate region with the highest weighted sum of its
evidence. Re-running the whole search for every weighting is slow, so this collects, once per variant
and val slice, every candidate of every image with all of its evidence -- the colour and heat
features, the classifier probes, and ``sam_fit`` (its IoU with SAM's single-mask answer for a point
inside it) -- and whether it is the object (its IoU with the ground-truth mask and whether its
interior point lies inside, a measurement only). Any weighting is then scored in milliseconds: FG hit
and mean IoU of the region each image would choose, beside the oracle (the best candidate present).

    python benchmarks/bench_scoring.py --variants clean,foreign,jpeg75_noise4 --offset 100 --n 100
    python benchmarks/bench_scoring.py --variants foreign,jpeg75_noise4 --offset 200 --n 150 \\
        --try w_sam_fit=0.5 --try w_sam_fit=1.0 --try w_sam_fit=0.5,sam_fit_top=0

Weights start from params ``searches.<--search>``; each ``--try`` overrides some (comma list of
``knob=value``; ``sam_fit_top=0`` = ``sam_fit`` of every candidate). Collections are cached in
``data/bench/candidates_<variant>_<offset>_<n>.pkl`` (SAM embeddings in ``--cache``, as
bench_strategies.py). Use val slices after the DAG's first ``robustness.n`` images.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_strategies import DiskCachedPredictor
from tqdm import tqdm

from camprompt.artifacts import load_params
from camprompt.classifier import load_classifier
from camprompt.colour import region_features
from camprompt.conventions import DEFAULT_CAM, point_pixels
from camprompt.data import normalize
from camprompt.denoise import filtered
from camprompt.devices import resolve_device
from camprompt.gradcam import compute_split_heatmaps
from camprompt.judge import ClassifierJudge
from camprompt.metrics import iou
from camprompt.placement import interior_points
from camprompt.robustness import VariantSpec, make_variant
from camprompt.sam import load_predictor
from camprompt.search import CHEAP_TERMS, CLASSIFIER_TERMS, RegionSearch, SearchConfig

BENCH = Path("data/bench")
TERMS = CHEAP_TERMS + CLASSIFIER_TERMS + ("sam_fit",)


def collect(params: dict, knobs: dict, name: str, offset: int, n: int, classifier: torch.nn.Module,
            predictor: Any) -> list[dict[str, np.ndarray] | None]:
    """Every candidate's evidence on val[offset:offset+n] of variant ``name`` (None: no candidate)."""
    rob = params["robustness"]
    spec = VariantSpec.from_params("clean", {}) if name == "clean" else VariantSpec.from_params(name, rob["variants"][name])
    full, _ = make_variant(spec, data_root=params["data"]["root"], split=rob["split"], n=offset + n,
                           seed=int(params.get("seed", 0)), data_params=params["data"])
    images, gts = full.images[offset:], full.masks[offset:]
    cams = compute_split_heatmaps(classifier, normalize(images), params["gradcam"]["configs"])
    cfg = SearchConfig.from_params(knobs)
    search, judge = RegionSearch(cfg, classifier, predictor), ClassifierJudge(classifier, normalize)
    heats = cams.heatmaps[knobs.get("cam", DEFAULT_CAM)]
    out: list[dict[str, np.ndarray] | None] = []
    for image, heat, target, gt in tqdm(list(zip(images, heats, cams.preds, gts)), desc=name, unit="img"):
        cands = np.asarray(search.candidates(image, heat))
        if not len(cands):
            out.append(None)
            continue
        rec: dict[str, Any] = {k: np.asarray(v) for k, v in judge.evidence([(image, cands, int(target))])[0].items()}
        colours = filtered(image, cfg.smooth, cfg.smooth_threshold)
        feats = [region_features(colours, heat, m) for m in cands]
        rec.update({t: np.array([f[t] for f in feats]) for t in CHEAP_TERMS})
        points = np.stack([interior_points(m, 1)[0] for m in cands])
        predictor.set_image(image)
        rec["sam_fit"] = np.array([
            iou(np.asarray(predictor.predict(point_coords=p[None].astype(np.float32), point_labels=np.ones(1, np.int64),
                                              multimask_output=False)[0], bool)[0], m)
            for p, m in zip(points, cands)])
        rows, cols, _ = point_pixels(points, gt.shape)
        rec["gt_iou"], rec["hit"] = np.array([iou(m, gt) for m in cands]), gt[rows, cols]
        out.append(rec)
    return out


def choose(rec: dict[str, np.ndarray], weights: dict[str, float], top: int) -> int:
    """The candidate the search picks: weighted evidence, ``sam_fit`` added for the ``top`` best (0 = all)."""
    base = sum(weights[t] * rec[t] for t in TERMS if t != "sam_fit")
    order = np.argsort(-base, kind="stable")[: top or len(base)]
    return int(order[np.argmax(base[order] + weights["sam_fit"] * rec["sam_fit"][order])])


def score(records: list[dict[str, np.ndarray] | None], weights: dict[str, float], top: int) -> tuple[float, float]:
    """FG hit and mean IoU of the chosen regions (an image with no candidate counts 0)."""
    picks = [None if r is None else choose(r, weights, top) for r in records]
    hit = [0.0 if r is None else float(r["hit"][j]) for r, j in zip(records, picks)]
    ious = [0.0 if r is None else float(r["gt_iou"][j]) for r, j in zip(records, picks)]
    return float(np.mean(hit)), float(np.mean(ious))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="clean,jpeg90,jpeg75,jpeg75_noise4,foreign")
    ap.add_argument("--offset", type=int, default=100)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--search", default="default")
    ap.add_argument("--try", dest="tries", action="append", default=[], help="knob=value[,knob=value] (repeatable)")
    ap.add_argument("--cache", default=str(BENCH / "sam_embeddings.npz"))
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    params = load_params()
    knobs = dict(params["searches"][args.search])
    cfg = SearchConfig.from_params(knobs)
    predictor = None
    data = {}
    for name in args.variants.split(","):
        path = BENCH / f"candidates_{name}_{args.offset}_{args.n}.pkl"
        if not path.is_file():
            t0 = time.perf_counter()
            if predictor is None:  # loaded once, and only when something is left to collect
                classifier = load_classifier(params["train"]["checkpoint"], resolve_device(params.get("device")))
                predictor = DiskCachedPredictor(load_predictor({**params["sam"], "cache_size": 0}, params.get("device", "auto")),
                                                Path(args.cache))
            records = collect(params, knobs, name, args.offset, args.n, classifier, predictor)
            predictor.save()
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps(records))
            tmp.replace(path)
            print(f"{name}: collected in {time.perf_counter() - t0:.0f} s", flush=True)
        data[name] = pickle.loads(path.read_bytes())
    base = {t: float(getattr(cfg, f"w_{t}")) for t in TERMS}
    rows = [("oracle", None, 0), ("params", base, cfg.sam_fit_top)]
    for spec in args.tries:
        weights, top = dict(base), cfg.sam_fit_top
        for item in spec.split(","):
            key, value = item.split("=")
            if key == "sam_fit_top":
                top = int(value)
            elif key.startswith("w_") and key[2:] in TERMS:
                weights[key[2:]] = float(value)
            else:
                raise SystemExit(f"--try {item!r}: expected sam_fit_top or w_<{'|'.join(TERMS)}>")
        rows.append((spec, weights, top))
    print(f"val[{args.offset}:{args.offset + args.n}], chosen region FG hit / IoU")
    for label, weights, top in rows:
        cells = []
        for name, records in data.items():
            if weights is None:
                hit = np.mean([r is not None and r["hit"].any() for r in records])
                mean_iou = np.mean([0.0 if r is None else r["gt_iou"].max() for r in records])
            else:
                hit, mean_iou = score(records, weights, top)
            cells.append(f"{name} {hit:.3f} / {mean_iou:.3f}")
        print(f"{label:32s} " + "  ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1:])
