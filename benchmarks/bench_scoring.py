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
    python benchmarks/bench_scoring.py --variants jpeg75_noise4 --try w_solidity=1 --try w_solidity=1,w_rarity=1

Weights start from params ``searches.<--search>``; each ``--try`` overrides some (comma list of
``knob=value``; ``sam_fit_top=0`` = ``sam_fit`` of every candidate; ``w_solidity``, ``w_rarity``
and the classifier probes ``w_keep_stretched``, ``w_agree_stretched`` weigh evidence
the search does not compute yet, see ``EXTRA_TERMS`` and ``PROBE_TERMS``; ``w_keep_judge`` weighs
1 - p(no shape | silhouette) of the no-shape judge that ``--judge`` names, by default the
``train_judge`` stage's, params ``judge.checkpoint``; bench_judge.py trains others).
Collections are cached in ``data/bench/candidates_<variant>_<offset>_<n>[_<checkpoint stem>].pkl``,
with each candidate's mask (packed bits) so that new evidence can be tried without collecting again (SAM embeddings in
``--cache``, as bench_strategies.py). ``--checkpoint`` collects with another classifier (e.g. one
trained by bench_recipe.py). Use val slices after the DAG's first ``robustness.n`` images.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from bench_recipe import val_variant
from bench_strategies import DiskCachedPredictor
from scipy import ndimage as ndi
from tqdm import tqdm

from camprompt.artifacts import atomic_path, load_params
from camprompt.colour import colour_distance, median_colour, region_features
from camprompt.conventions import DEFAULT_CAM, point_pixels
from camprompt.data import normalize
from camprompt.denoise import filtered
from camprompt.gradcam import compute_split_heatmaps
from camprompt.judge import ClassifierJudge, isolate_region
from camprompt.metrics import iou
from camprompt.placement import interior_points
from camprompt.sam import load_predictor
from camprompt.search import CHEAP_TERMS, CLASSIFIER_TERMS, JUDGE_TERMS, RegionSearch, SearchConfig
from camprompt.stage_io import load_fitted_classifier, load_judge

BENCH = Path("data/bench")
TERMS = CHEAP_TERMS + CLASSIFIER_TERMS + ("sam_fit",)


def _solidity(image: np.ndarray, mask: np.ndarray) -> float:
    """Area over the area of its convex hull (the five shapes: ~0.6 for a star, ~1 for the rest)."""
    ys, xs = np.nonzero(mask)
    hull = np.zeros(mask.shape, np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.stack([xs, ys], 1).astype(np.int32)), 1)
    return float(mask.sum() / max(int(hull.sum()), 1))


def _rarity(image: np.ndarray, mask: np.ndarray) -> float:
    """1 - (pixels away from the region within 30 of its median colour) / its area, floored at 0."""
    dist = colour_distance(image, median_colour(image, mask))
    away = ~ndi.binary_dilation(mask, iterations=2)
    return 1.0 - min(1.0, float((dist[away] <= 30.0).sum()) / float(mask.sum()))


def _stretched_silhouette(image: np.ndarray, mask: np.ndarray, distance: float = 100.0) -> np.ndarray:
    """isolate_region's two-colour silhouette, its two colours pushed at least ``distance`` apart in RGB
    (along their difference, kept within 0..255): a faint shape's outline shown at full contrast."""
    inside, outside = median_colour(image, mask), median_colour(image, ~mask)
    gap = float(np.linalg.norm(inside - outside))
    if gap < distance:
        unit = (inside - outside) / gap if gap > 1e-6 else np.full(3, 3 ** -0.5)
        mid = (inside + outside) / 2
        inside, outside = mid + unit * distance / 2, mid - unit * distance / 2
        low, high = min(inside.min(), outside.min()), max(inside.max(), outside.max())
        shift = max(0.0, -low) - max(0.0, high - 255.0)
        inside, outside = inside + shift, outside + shift
    out = np.empty_like(image)
    out[...] = np.clip(np.round(outside), 0, 255).astype(np.uint8)
    out[mask] = np.clip(np.round(inside), 0, 255).astype(np.uint8)
    return out


# Evidence the search does not compute, tried offline from the stored masks (``--try w_solidity=1``).
EXTRA_TERMS = {"solidity": _solidity, "rarity": _rarity}
# ... and classifier probes of them: ``keep`` / ``agree`` of the silhouette at full contrast
# (``keep_stretched``, ``agree_stretched``); ``agree`` itself for collections made before the search
# measured it.
PROBE_TERMS = ("agree", "keep_stretched", "agree_stretched")


def add_extra_terms(records: list[dict[str, np.ndarray] | None], images: np.ndarray, terms: set[str],
                    classifier: torch.nn.Module | None = None, judge_model: torch.nn.Module | None = None) -> None:
    """Compute the EXTRA_TERMS, PROBE_TERMS and JUDGE_TERMS named in ``terms`` for every candidate, from
    its stored mask (the probes with ``classifier``, for the class its single view predicts, as the
    search explains; ``keep_judge`` with ``judge_model``, whose last output is "no shape")."""
    probes = terms & set(PROBE_TERMS)
    if probes and classifier is None:
        raise ValueError(f"{sorted(probes)} need the classifier")
    if terms & set(JUDGE_TERMS) and judge_model is None:
        raise ValueError("keep_judge needs the no-shape judge (--judge)")
    no_shape = ClassifierJudge(judge_model, normalize) if judge_model is not None else None
    judge = ClassifierJudge(classifier, normalize) if probes else None
    # the explained class, probed only for the images whose records still lack a probe term
    targets = np.zeros(len(images), int)
    probed = np.flatnonzero([rec is not None and bool(probes - rec.keys()) for rec in records])
    if len(probed):
        targets[probed] = judge.probabilities(images[probed]).argmax(1)
    for rec, image, target in zip(records, images, targets):
        missing = set() if rec is None else terms - rec.keys()  # a term the collection holds is not measured again
        if not missing:
            continue
        if "masks" not in rec:
            raise SystemExit("this collection predates stored masks; delete its .pkl and collect again")
        masks = np.unpackbits(rec["masks"], axis=-1)[..., : image.shape[1]].astype(bool)
        rec.update({t: np.array([EXTRA_TERMS[t](image, m) for m in masks]) for t in missing & EXTRA_TERMS.keys()})
        if missing & {"keep_judge", "agree"}:
            alone = np.stack([isolate_region(image, m) for m in masks])
            if "keep_judge" in missing:
                rec["keep_judge"] = 1.0 - no_shape.probabilities(alone)[:, -1]
            if "agree" in missing:
                rec["agree"] = judge.probabilities(alone)[:, target]
        if missing & {"keep_stretched", "agree_stretched"}:
            full = judge.probabilities(np.stack([_stretched_silhouette(image, m) for m in masks]))
            rec.update(keep_stretched=full.max(1), agree_stretched=full[:, target])


def variant_slice(params: dict, name: str, offset: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Images and masks of val[offset:offset+n] of variant ``name`` (``clean``: the split itself)."""
    full = val_variant(params, name, offset + n)
    return full.images[offset:], full.masks[offset:]


def collect(params: dict, knobs: dict, name: str, offset: int, n: int, classifier: torch.nn.Module,
            predictor: Any) -> list[dict[str, np.ndarray] | None]:
    """Every candidate's evidence on val[offset:offset+n] of variant ``name`` (None: no candidate)."""
    images, gts = variant_slice(params, name, offset, n)
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
        rec["masks"] = np.packbits(cands, axis=-1)  # for evidence not collected yet (unpack to the image width)
        out.append(rec)
    return out


def choose(rec: dict[str, np.ndarray], weights: dict[str, float], top: int) -> int:
    """The candidate the search picks: weighted evidence, ``sam_fit`` added for the ``top`` best (0 = all)."""
    base = sum((w * rec[t] for t, w in weights.items() if t != "sam_fit" and w), np.zeros(len(rec["hit"])))
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
    ap.add_argument("--checkpoint", default=None, help="classifier for Grad-CAM and the probes (default: params train.checkpoint)")
    ap.add_argument("--judge", default=None, help="no-shape judge for w_keep_judge (default: params judge.checkpoint)")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    params = load_params()
    knobs = dict(params["searches"][args.search])
    cfg = SearchConfig.from_params(knobs)
    predictor = None
    data = {}
    for name in args.variants.split(","):
        tag = "" if args.checkpoint is None else f"_{Path(args.checkpoint).stem}"
        path = BENCH / f"candidates_{name}_{args.offset}_{args.n}{tag}.pkl"
        if not path.is_file():
            t0 = time.perf_counter()
            if predictor is None:  # loaded once, and only when something is left to collect
                classifier = load_fitted_classifier(params, args.checkpoint)
                predictor = DiskCachedPredictor(load_predictor({**params["sam"], "cache_size": 0}, params.get("device", "auto")),
                                                Path(args.cache))
            records = collect(params, knobs, name, args.offset, args.n, classifier, predictor)
            predictor.save()
            with atomic_path(path) as tmp:  # makes data/bench/ on a fresh clone
                tmp.write_bytes(pickle.dumps(records))
            print(f"{name}: collected in {time.perf_counter() - t0:.0f} s", flush=True)
        data[name] = pickle.loads(path.read_bytes())
    base = {t: float(getattr(cfg, f"w_{t}")) for t in (*TERMS, *JUDGE_TERMS)}
    rows = [("oracle", None, 0), ("params", base, cfg.sam_fit_top)]
    for spec in args.tries:
        weights, top = dict(base), cfg.sam_fit_top
        for item in spec.split(","):
            key, value = item.split("=")
            if key == "sam_fit_top":
                top = int(value)
            elif key.startswith("w_") and key[2:] in (*TERMS, *EXTRA_TERMS, *PROBE_TERMS, *JUDGE_TERMS):
                weights[key[2:]] = float(value)
            else:
                raise SystemExit(f"--try {item!r}: expected sam_fit_top or "
                                 f"w_<{'|'.join((*TERMS, *EXTRA_TERMS, *PROBE_TERMS, *JUDGE_TERMS))}>")
        rows.append((spec, weights, top))
    extra = {t for _, weights, _ in rows[1:] for t in (*EXTRA_TERMS, *PROBE_TERMS, *JUDGE_TERMS) if weights.get(t)}
    if extra:
        probe = load_fitted_classifier(params, args.checkpoint) if extra & set(PROBE_TERMS) else None
        judge_model = None
        if extra & set(JUDGE_TERMS):
            judge_model = load_judge(params, args.judge)
        for name, records in data.items():
            add_extra_terms(records, variant_slice(params, name, args.offset, args.n)[0], extra, probe, judge_model)
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
