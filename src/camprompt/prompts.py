"""Point prompts for SAM from a classifier's Grad-CAM and the image itself -- no ground truth, no user.

Why not just the heatmap's arg-max: on this data a layer2 Grad-CAM peak sits on or just beside the
shape's edge (median 1.4 px away on val), so a single arg-max point lands inside the shape well under
half of the time, and a point outside gives SAM a background segment (IoU ~0). The heatmap is good at
saying *roughly where* the evidence is, not *which pixels are the object*. So the points come from a
propose -> verify -> place recipe:

1. **Candidate regions**: colour-tolerance regions (:func:`grow_region`; Euclidean RGB tolerances,
   several of them, so JPEG artefacts and sensor noise do not break them -- nothing assumes
   exactly-one-colour pixels) grown from the heatmap's strongest, spread-out pixels
   (:func:`heatmap_seeds`) *and* from a coarse grid over the whole image: on val the heatmap's
   peaks alone touch the shape in only ~80-95% of images, so the heatmap ranks the search but
   never limits it. Regions of implausible size are dropped, near-duplicates merged, and the best
   by cheap label-free evidence (:func:`region_features`: colour flatness inside, contrast with
   the ring outside, heat on and around the region) go on. SAM adds its three multimask proposals
   for an interior point of the best few (decoder only: a few ms each with cached embeddings).
   A flat heatmap (no evidence) falls back to a documented centred grid of seeds.
2. **Verification with the classifier** (:class:`ClassifierJudge`): ``drop`` -- the predicted
   class's probability falls when the region is inpainted from its surroundings (removing the real
   shape collapses it, removing background does not); ``cleared`` -- nothing confident is left once
   it is gone; ``keep`` -- the region's clean two-colour silhouette alone is a confident shape (a part
   of the shape, or a shape glued to background, has the wrong outline).
3. **Choice**: the weighted sum of all terms (:func:`score_candidates`, weights chosen on val).
4. **Placement**: foreground points at the deepest interior points of the winning region's own
   colour (:func:`foreground_points`: :func:`colour_core`, then :func:`interior_points`,
   distance-transform maxima, so they are far from any edge and never on background the region
   swallowed), background points far enough outside it, in low-heat pixels whose colour differs
   from the region's (:func:`background_points`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Mapping

import cv2
import numpy as np
from scipy import ndimage as ndi

if TYPE_CHECKING:  # torch is imported where a classifier is run, so point placement alone does without it
    import torch
    from torch import nn

__all__ = [
    "FG_LABEL",
    "BG_LABEL",
    "PAD_LABEL",
    "PromptConfig",
    "RegionChoice",
    "PromptFinder",
    "SEARCH_KNOBS",
    "PLACEMENT_KNOBS",
    "foreground_points",
    "heatmap_peak",
    "ClassifierJudge",
    "eval_no_grad",
    "check_heatmap",
    "is_flat",
    "heatmap_seeds",
    "subpixel_peak",
    "grow_region",
    "region_features",
    "score_candidates",
    "colour_core",
    "interior_points",
    "background_points",
    "delete_region",
    "isolate_region",
    "pack_points",
]

FG_LABEL, BG_LABEL, PAD_LABEL = 1, 0, -1
_FLAT_RTOL = 1e-6

MaskSource = Callable[[np.ndarray], np.ndarray]  # seed (x, y) -> bool (M,H,W) candidate masks


# ------------------------------------------------------------------------------------------------
# Heatmap seeds
# ------------------------------------------------------------------------------------------------


def check_heatmap(heat: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Validate one heatmap (H,W) of finite numbers -> float64 copy; ``shape`` (H,W) if it must match."""
    heat = np.asarray(heat, dtype=np.float64)
    if heat.ndim != 2 or min(heat.shape) == 0:
        raise ValueError(f"a heatmap must be a non-empty (H,W) array, got shape {heat.shape}")
    if shape is not None and heat.shape != tuple(shape):
        raise ValueError(f"heatmap is {heat.shape} but the image is {tuple(shape)}; compute it at image resolution")
    if not np.isfinite(heat).all():
        raise ValueError("heatmap holds NaN or inf; the CAM computation failed upstream (check the classifier)")
    return heat


def is_flat(heat: np.ndarray) -> bool:
    """True when a heatmap carries no spatial information (range ~0 relative to its magnitude)."""
    heat = np.asarray(heat, dtype=np.float64)
    lo, hi = float(heat.min()), float(heat.max())
    return hi - lo <= _FLAT_RTOL * max(abs(lo), abs(hi), 1e-12) or hi - lo < 1e-12


def _grid_seeds(shape: tuple[int, int], step: int) -> np.ndarray:
    """Fallback seeds: a uniform grid, nearest to the image centre first."""
    height, width = shape
    ys, xs = np.mgrid[step // 2 : height : step, step // 2 : width : step]
    pts = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    order = np.argsort(np.linalg.norm(pts - centre, axis=1), kind="stable")
    return pts[order]


def heatmap_seeds(
    heat: np.ndarray, max_seeds: int, min_distance: int = 3, sigma: float = 1.0, rel_threshold: float = 0.2,
) -> np.ndarray:
    """Up to ``max_seeds`` seed pixels (K,2) as (x, y), strongest first, pairwise >= ``min_distance`` apart.

    Greedy non-maximum suppression on the slightly smoothed heatmap (Chebyshev distance), stopping
    below ``rel_threshold`` x its maximum. Unlike local maxima alone this also seeds the flank of a
    broad peak, which matters because the peak itself often sits on the shape's edge.
    **Flat heatmap fallback**: a map with no spatial information gives a uniform grid (spacing
    ``2*min_distance+1``) ordered from the image centre outwards, with a warning.
    """
    heat = check_heatmap(heat)
    if max_seeds < 1:
        raise ValueError(f"max_seeds must be >= 1, got {max_seeds}")
    if is_flat(heat):
        warnings.warn("flat heatmap (no class evidence): seeding a uniform grid instead", RuntimeWarning, stacklevel=2)
        return _grid_seeds(heat.shape, 2 * max(int(min_distance), 1) + 1)[:max_seeds]
    smooth = ndi.gaussian_filter(heat, sigma) if sigma > 0 else heat
    order = np.argsort(-smooth, axis=None, kind="stable")
    floor = smooth.min() + rel_threshold * (smooth.max() - smooth.min())
    ys, xs = np.unravel_index(order, heat.shape)
    picked: list[tuple[int, int]] = []
    for y, x in zip(ys.tolist(), xs.tolist()):
        if smooth[y, x] < floor or len(picked) >= max_seeds:
            break
        if all(max(abs(x - px), abs(y - py)) >= min_distance for px, py in picked):
            picked.append((x, y))
    return np.asarray(picked, dtype=np.float64).reshape(-1, 2)


def subpixel_peak(heat: np.ndarray, xy: Sequence[float]) -> np.ndarray:
    """Refine an integer peak (x, y) with a 1-D parabola through its neighbours along each axis.

    The offset is clipped to +-0.5 px (a parabola through a plateau would run off); at the image
    border or on a non-peak the coordinate is left unchanged.
    """
    heat = check_heatmap(heat)
    x, y = int(round(xy[0])), int(round(xy[1]))
    out = np.array([float(x), float(y)])
    for axis, (pos, size) in enumerate(((x, heat.shape[1]), (y, heat.shape[0]))):
        if not 0 < pos < size - 1:
            continue
        lo = heat[y, x - 1] if axis == 0 else heat[y - 1, x]
        hi = heat[y, x + 1] if axis == 0 else heat[y + 1, x]
        mid = heat[y, x]
        denom = lo - 2 * mid + hi
        if denom < 0:
            out[axis] += float(np.clip(0.5 * (lo - hi) / denom, -0.5, 0.5))
    return out


# ------------------------------------------------------------------------------------------------
# Candidate regions from the image
# ------------------------------------------------------------------------------------------------


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"an image must be uint8 RGB (H,W,3), got {image.dtype} {image.shape}")
    return image


def _pixel(xy: Sequence[float], shape: tuple[int, int]) -> tuple[int, int]:
    """Nearest pixel (row, col) of a point, clipped into the image."""
    col = int(np.clip(np.floor(float(xy[0]) + 0.5), 0, shape[1] - 1))
    row = int(np.clip(np.floor(float(xy[1]) + 0.5), 0, shape[0] - 1))
    return row, col


def _colour_distance(image: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Euclidean RGB distance (0..441) of every pixel to ``colour``: float64 (H,W)."""
    return np.linalg.norm(image.astype(np.float64) - colour, axis=2)


def grow_region(image: np.ndarray, seed: Sequence[float], tol: float) -> np.ndarray:
    """The 4-connected set of pixels around ``seed`` whose RGB colour is within ``tol`` of the seed's.

    The reference colour is the median of the seed's 3x3 neighbourhood (robust to sensor noise);
    closeness is Euclidean RGB distance (0..441) so mild JPEG/noise changes are absorbed by ``tol``.
    """
    image = _check_image(image)
    row, col = _pixel(seed, image.shape[:2])
    patch = image[max(row - 1, 0) : row + 2, max(col - 1, 0) : col + 2].reshape(-1, 3)
    ref = np.median(patch.astype(np.float64), axis=0)
    close = _colour_distance(image, ref) <= tol
    if not close[row, col]:
        return np.zeros(image.shape[:2], bool)
    labels, _ = ndi.label(close)
    return labels == labels[row, col]


def _median_colour(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.median(image[mask].astype(np.float64), axis=0) if mask.any() else np.zeros(3)


def region_features(image: np.ndarray, heat: np.ndarray, mask: np.ndarray, colour_tol: float) -> dict[str, float]:
    """Label-free evidence that ``mask`` is one solid painted object the heatmap points at.

    Colour (distances are Euclidean RGB, 0..441, to the region's median colour):
    ``flatness`` = 1 - (median distance inside / 30, capped): a painted shape is flat up to
    noise/JPEG, a chunk of natural background is textured; ``ring`` = 10th percentile of the
    distance over the 2-px ring outside / 80, capped: a whole shape stands out from everything
    around it, a part of it touches its own colour; ``homogeneity`` = share inside within
    ``colour_tol``; ``contrast`` = share of the 1-px ring beyond ``colour_tol``.
    Heat: ``heat`` = mean heat inside - mean heat outside; ``heat_near`` = mean heat over the region
    grown by 2 px (Grad-CAM peaks on and just beside a shape's edges). ``area`` in pixels.
    """
    mask = np.asarray(mask, bool)
    area = int(mask.sum())
    if area == 0 or area == mask.size:
        return dict(flatness=0.0, ring=0.0, homogeneity=0.0, contrast=0.0, heat=0.0, heat_near=0.0, area=float(area))
    colour = _median_colour(image, mask)
    dist = _colour_distance(image, colour)
    near = ndi.binary_dilation(mask, iterations=2)
    ring1 = ndi.binary_dilation(mask) & ~mask
    ring2 = near & ~mask
    return {
        "flatness": 1.0 - min(float(np.median(dist[mask])), 30.0) / 30.0,
        "ring": min(float(np.percentile(dist[ring2], 10)), 80.0) / 80.0 if ring2.any() else 1.0,
        "homogeneity": float((dist[mask] <= colour_tol).mean()),
        "contrast": float((dist[ring1] > colour_tol).mean()) if ring1.any() else 1.0,
        "heat": float(heat[mask].mean() - heat[~mask].mean()),
        "heat_near": float(heat[near].mean()),
        "area": float(area),
    }


# ------------------------------------------------------------------------------------------------
# Classifier verification
# ------------------------------------------------------------------------------------------------


def delete_region(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with ``mask`` (grown by 1 px, to swallow soft edges) inpainted from its surroundings."""
    grown = cv2.dilate(np.asarray(mask, np.uint8), np.ones((3, 3), np.uint8))
    return cv2.inpaint(np.ascontiguousarray(image), grown, 3, cv2.INPAINT_TELEA)


def isolate_region(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The region's silhouette alone: ``mask`` painted in its median colour, the rest in the median
    colour of the rest.

    A clean two-colour picture, so the probe asks the classifier about the region's *outline* only:
    JPEG blocks or sensor noise in the original cannot push the answer around, and a region that is
    only a part of the shape (or a shape glued to background) has the wrong outline.
    """
    mask = np.asarray(mask, bool)
    out = np.empty_like(image)
    out[...] = np.round(_median_colour(image, ~mask)).astype(np.uint8)
    out[mask] = np.round(_median_colour(image, mask)).astype(np.uint8)
    return out


@contextmanager
def eval_no_grad(model: nn.Module) -> Iterator[torch.device]:
    """Run ``model`` in eval mode without autograd, yielding its device; its train/eval flag is restored
    after, even on an error (the pipelines query a classifier the caller may still be training)."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield next(model.parameters()).device
    finally:
        model.train(was_training)


class ClassifierJudge:
    """Scores candidate regions by how the classifier reacts when they are removed or kept alone.

    ``normalize`` maps uint8 (N,H,W,3) to the model's input (``camprompt.data.normalize``). All
    probes of a batch of images go through the network together in chunks of ``batch_size``.
    """

    def __init__(self, model: nn.Module, normalize: Callable[[np.ndarray], torch.Tensor], batch_size: int = 256) -> None:
        self.model, self.normalize, self.batch_size = model, normalize, int(batch_size)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Softmax class probabilities float64 (N,K) of uint8 images (N,H,W,3), eval mode."""
        import torch

        with eval_no_grad(self.model) as device:
            parts = [
                torch.softmax(self.model(self.normalize(images[i : i + self.batch_size]).to(device)).float(), dim=1).cpu().numpy()
                for i in range(0, len(images), self.batch_size)
            ]
        return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, 0))

    def evidence(self, jobs: Sequence[tuple[np.ndarray, np.ndarray, int]]) -> list[dict[str, np.ndarray]]:
        """For each job (image uint8 (H,W,3), masks bool (M,H,W), class c) -> {name: (M,)} with

        ``drop`` = p(c|image) - p(c|region inpainted) (removing the object collapses its class),
        ``cleared`` = 1 - max_k p(k|region inpainted) (nothing shape-like is left once it is gone),
        ``keep`` = max_k p(k|the region's silhouette alone) (its outline alone is a confident shape;
        the max over classes so that a misclassified image can still be segmented).
        """
        probes: list[np.ndarray] = []
        for image, masks, _ in jobs:
            probes.append(image[None])
            probes.extend(delete_region(image, m)[None] for m in masks)
            probes.extend(isolate_region(image, m)[None] for m in masks)
        if not probes:
            return []
        probs = self.probabilities(np.concatenate(probes))
        out, start = [], 0
        for _, masks, target in jobs:
            m = len(masks)
            p = probs[start : start + 1 + 2 * m]
            deleted, alone = p[1 : 1 + m], p[1 + m :]
            out.append({
                "drop": p[0, int(target)] - deleted[:, int(target)],
                "cleared": 1.0 - deleted.max(axis=1, initial=0.0),
                "keep": alone.max(axis=1, initial=0.0),
            })
            start += 1 + 2 * m
        return out


# ------------------------------------------------------------------------------------------------
# Points inside and outside a region
# ------------------------------------------------------------------------------------------------


def colour_core(image: np.ndarray, mask: np.ndarray, tol: float) -> np.ndarray:
    """The pixels of ``mask`` within ``tol`` (Euclidean RGB) of its median colour: the object's own paint.

    A candidate region often carries a few background pixels (the notch between a star's legs, a
    halo); a foreground point placed by depth alone can then sit on one of them, just outside the
    object. Returns ``mask`` itself when no pixel is that close (nothing better to offer).
    """
    image, mask = _check_image(image), np.asarray(mask, bool)
    if not mask.any():
        return mask
    core = mask & (_colour_distance(image, _median_colour(image, mask)) <= tol)
    return core if core.any() else mask


def interior_points(mask: np.ndarray, n: int, min_separation: float = 4.0) -> np.ndarray:
    """Up to ``n`` points (x, y) deep inside ``mask``: greedy distance-transform maxima.

    The image frame counts as an edge (a shape cut by the border gets its point away from the cut).
    Ties go to the pixel nearest the region's centre of mass; later points must be at least
    ``min_separation`` px from earlier ones. Empty mask -> ValueError (there is no interior).
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        raise ValueError("cannot place interior points in an empty region")
    depth = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    rows, cols = np.nonzero(mask)
    centre = np.array([cols.mean(), rows.mean()])
    tie = np.hypot(cols - centre[0], rows - centre[1])
    order = np.lexsort((tie, -depth[rows, cols]))
    picked: list[np.ndarray] = []
    for i in order:
        p = np.array([cols[i], rows[i]], dtype=np.float64)
        if all(np.hypot(*(p - q)) >= min_separation for q in picked):
            picked.append(p)
            if len(picked) >= n:
                break
    return np.asarray(picked, dtype=np.float64).reshape(-1, 2)


def background_points(
    image: np.ndarray, mask: np.ndarray, n: int, *, heat: np.ndarray | None = None, margin: float = 4.0,
    colour_tol: float = 40.0, max_heat: float = 0.5,
) -> np.ndarray:
    """Up to ``n`` points (x, y) surely outside the object ``mask``.

    Allowed pixels: at least ``margin`` px from the region, colour farther than ``colour_tol`` from
    the region's median colour (so a part of the object the region missed is never chosen) and heat
    below ``max_heat`` when a heatmap is given. Among them, points are spread around the object:
    the first is the allowed pixel nearest the region, each next one maximises its distance to the
    points already chosen while staying near the object (farthest-point sampling on a ring).
    Fewer than ``n`` (possibly none) when too little is allowed.
    """
    image, mask = _check_image(image), np.asarray(mask, bool)
    if not mask.any() or n < 1:
        return np.zeros((0, 2))
    dist = ndi.distance_transform_edt(~mask)
    allowed = dist >= margin
    colour = _median_colour(image, mask)
    allowed &= _colour_distance(image, colour) > colour_tol
    if heat is not None:
        allowed &= np.asarray(heat) < max_heat
    rows, cols = np.nonzero(allowed)
    if rows.size == 0:
        return np.zeros((0, 2))
    near = dist[rows, cols] <= dist[rows, cols].min() + 2 * margin
    rows, cols = rows[near], cols[near]
    pts = np.stack([cols, rows], axis=1).astype(np.float64)
    picked = [int(np.argmin(dist[rows, cols]))]
    gap = np.hypot(*(pts - pts[picked[0]]).T)
    while len(picked) < n and gap.max() > 0:
        nxt = int(np.argmax(gap))
        picked.append(nxt)
        gap = np.minimum(gap, np.hypot(*(pts - pts[nxt]).T))
    return pts[picked]


def pack_points(fg: Sequence[np.ndarray], bg: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-image fg/bg point lists -> coords float32 (B,K,2), labels int64 (B,K) padded with -1 (no bg: None)."""
    bg = [np.zeros((0, 2))] * len(fg) if bg is None else bg
    if len(fg) != len(bg):
        raise ValueError(f"got {len(fg)} foreground lists but {len(bg)} background lists")
    k = max([len(f) + len(b) for f, b in zip(fg, bg)] + [1])
    coords = np.zeros((len(fg), k, 2), np.float32)
    labels = np.full((len(fg), k), PAD_LABEL, np.int64)
    for i, (f, b) in enumerate(zip(fg, bg)):
        pts = np.concatenate([np.reshape(f, (-1, 2)), np.reshape(b, (-1, 2))])
        coords[i, : len(pts)] = pts
        labels[i, : len(f)] = FG_LABEL
        labels[i, len(f) : len(pts)] = BG_LABEL
    return coords, labels


# ------------------------------------------------------------------------------------------------
# The whole recipe
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptConfig:
    """Knobs of the propose -> verify -> place recipe (params.yaml `strategies.<name>`)."""

    n_fg: int = 1                 # foreground points per image (interior maxima of the chosen region)
    n_bg: int = 0                 # background points per image
    max_seeds: int = 8            # heatmap seeds tried per image
    seed_distance: int = 3        # min spacing of seeds (px, Chebyshev)
    seed_sigma: float = 1.0       # heatmap smoothing before seeding (px)
    seed_threshold: float = 0.2   # seeds only where smoothed heat >= this fraction of its range
    grid_step: int = 4            # colour regions are also grown from a grid with this spacing (0 = off)
    max_candidates: int = 24      # candidates (best pre-scored) verified with the classifier
    use_sam: bool = True          # SAM's multimask proposals as candidates
    sam_regions: int = 3          # ... for an interior point of this many best colour regions
    sam_seeds: int = 0            # ... and for this many of the heatmap's strongest seeds
    use_grow: bool = True         # colour-tolerance regions as candidates
    colour_tol: float = 40.0      # RGB distance (0..441) that still counts as "the same colour"
    grow_tols: tuple[float, ...] = (30.0, 55.0)  # tolerances of the colour regions (one set each)
    min_area: int = 12            # candidate size bounds (px); the shapes cover ~30..400 px
    max_area_frac: float = 0.35   # ... and at most this share of the image
    dedupe_iou: float = 0.9       # candidates overlapping more than this are merged (first kept)
    w_drop: float = 0.5           # score weights (score_candidates), chosen on val images only
    w_cleared: float = 0.5
    w_keep: float = 2.0
    w_heat: float = 0.5
    w_heat_near: float = 0.5
    w_flatness: float = 1.0
    w_ring: float = 1.0
    w_mask_colour: float = 0.5    # segment(): weight of colour evidence vs SAM's predicted IoU
    fg_separation: float = 4.0    # min distance between foreground points (px)
    fg_colour_core: bool = True   # foreground points on the region's own colour only (colour_core)
    bg_margin: float = 4.0        # background points at least this far from the region (px)
    bg_max_heat: float = 0.5      # ... in pixels with heat below this

    @classmethod
    def from_params(cls, params: Mapping[str, Any], ignore: Sequence[str] = ("pipeline", "cam")) -> PromptConfig:
        """Build from a params mapping; unknown keys raise (a typo must not be silently ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = set(params) - known - set(ignore)
        if unknown:
            raise ValueError(f"unknown strategy params {sorted(unknown)}; known: {sorted(known | set(ignore))}")
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in params.items() if k in known}
        cfg = cls(**values)
        if cfg.n_fg < 1 or cfg.n_bg < 0 or cfg.max_seeds < 1:
            raise ValueError(f"need n_fg >= 1, n_bg >= 0, max_seeds >= 1; got {cfg.n_fg}, {cfg.n_bg}, {cfg.max_seeds}")
        if not (cfg.use_sam or cfg.use_grow):
            raise ValueError("at least one candidate source (use_sam, use_grow) must be enabled")
        return cfg


# Which knobs decide *which region is the object* (propose -> verify -> choose: the expensive part,
# run once per search config by the `regions@C` stage) and which only turn a chosen region into
# points and pick SAM's mask (cheap, per strategy). ``cam`` (the heatmap config) belongs to the search.
PLACEMENT_KNOBS = frozenset(
    {"n_fg", "n_bg", "colour_tol", "fg_separation", "fg_colour_core", "bg_margin", "bg_max_heat", "w_mask_colour"}
)
SEARCH_KNOBS = frozenset(f.name for f in fields(PromptConfig)) - PLACEMENT_KNOBS


@dataclass
class RegionChoice:
    """The object region chosen for one image, before any point is placed."""

    region: np.ndarray                 # bool (H,W); empty when no plausible candidate was found
    seed: np.ndarray                   # (2,) x, y: the heatmap's strongest point, the fallback fg point
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))  # every candidate's score
    features: list[dict[str, float]] = field(default_factory=list)


CHEAP_TERMS = ("flatness", "ring", "heat", "heat_near")
CLASSIFIER_TERMS = ("drop", "cleared", "keep")


def score_candidates(features: Sequence[Mapping[str, float]], cfg: PromptConfig, cheap: bool = False) -> np.ndarray:
    """Weighted sum of each candidate's evidence (higher = more likely the whole object).

    Weights are the ``w_<term>`` knobs. ``cheap`` uses only the image/heatmap terms: the
    pre-ranking that decides which candidates are worth classifier probes.
    """
    terms = CHEAP_TERMS if cheap else CHEAP_TERMS + CLASSIFIER_TERMS
    weights = {t: float(getattr(cfg, f"w_{t}")) for t in terms}
    return np.asarray([sum(w * f[t] for t, w in weights.items()) for f in features], dtype=np.float64)


def _dedupe(masks: list[np.ndarray], max_iou: float) -> list[np.ndarray]:
    kept: list[np.ndarray] = []
    for m in masks:
        if all(np.logical_and(m, k).sum() <= max_iou * np.logical_or(m, k).sum() for k in kept):
            kept.append(m)
    return kept


class PromptFinder:
    """Propose -> verify -> place, for a batch of images (see the module docstring).

    ``judge`` verifies candidates with the classifier (required: it carries most of the evidence).
    ``sam_masks(image, seed) -> bool (M,H,W)`` proposes SAM candidates; ``None`` uses colour regions only.
    """

    def __init__(self, cfg: PromptConfig, judge: ClassifierJudge,
                 sam_masks: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> None:
        if cfg.use_sam and sam_masks is None:
            raise ValueError("this strategy uses SAM candidates (use_sam: true) but no SAM predictor was given")
        self.cfg, self.judge, self.sam_masks = cfg, judge, sam_masks

    def candidates(self, image: np.ndarray, heat: np.ndarray) -> list[np.ndarray]:
        """Plausibly sized, de-duplicated candidate masks, best pre-scored first (at most max_candidates).

        Colour regions are grown from the heatmap's seeds and from a grid over the whole image (the
        heatmap peak is often a few pixels off the shape, so it only ranks, never limits, the search);
        the ``max_candidates`` best by the cheap label-free features go on, and SAM adds its proposals
        for an interior point of the ``sam_regions`` best of them and for the ``sam_seeds`` strongest
        heatmap seeds.
        """
        cfg = self.cfg
        peaks = heatmap_seeds(heat, cfg.max_seeds, cfg.seed_distance, cfg.seed_sigma, cfg.seed_threshold)
        seeds = np.concatenate([peaks, _grid_seeds(heat.shape, cfg.grid_step)]) if cfg.grid_step > 0 else peaks
        found = self._grown(image, seeds) if cfg.use_grow else []
        if cfg.use_grow:
            feats = [region_features(image, heat, m, cfg.colour_tol) for m in found]
            order = np.argsort(-score_candidates(feats, cfg, cheap=True), kind="stable")
            found = [found[i] for i in order[: cfg.max_candidates]]
        if cfg.use_sam and self.sam_masks is not None:
            anchors = [interior_points(m, 1)[0] for m in found[: cfg.sam_regions]] if found else list(seeds[: cfg.sam_regions])
            # The heatmap's own peaks too: a shape whose colour is close to its surroundings grows no
            # clean colour region, but SAM can still cut it out from a point the heatmap puts on it.
            anchors += list(peaks[: cfg.sam_seeds])
            for point in anchors:
                found.extend(m for m in np.asarray(self.sam_masks(image, point), bool) if self._plausible(m))
        return _dedupe(found, cfg.dedupe_iou)

    def _plausible(self, mask: np.ndarray) -> bool:
        return self.cfg.min_area <= int(mask.sum()) <= self.cfg.max_area_frac * mask.size

    def _grown(self, image: np.ndarray, seeds: np.ndarray) -> list[np.ndarray]:
        """Distinct plausible colour regions grown from ``seeds`` at every tolerance of ``grow_tols``.

        Several tolerances because JPEG bleeds a shape's colour at its edge (a tight tolerance keeps
        only its core) while a loose one may leak into a similar background; the classifier decides.
        Holes are filled (the shapes have none; noise can punch some). Per tolerance, a seed already
        inside an earlier region is skipped: it would grow the same region again.
        """
        regions: dict[bytes, np.ndarray] = {}
        for tol in self.cfg.grow_tols:
            covered = np.zeros(image.shape[:2], bool)
            for seed in seeds:
                row, col = _pixel(seed, image.shape[:2])
                if covered[row, col]:
                    continue
                region = grow_region(image, seed, float(tol))
                covered |= region
                region = ndi.binary_fill_holes(region)
                if self._plausible(region):
                    regions.setdefault(np.packbits(region).tobytes(), region)
        return list(regions.values())

    def regions(self, images: np.ndarray, heats: np.ndarray, targets: Sequence[int]) -> list[RegionChoice]:
        """Propose, verify and choose the object region of every image: uint8 (B,H,W,3), heats (B,H,W), classes (B,)."""
        images = np.asarray(images)
        if images.ndim != 4:
            raise ValueError(f"images must be uint8 (B,H,W,3), got {images.shape}")
        heats = [check_heatmap(h, images.shape[1:3]) for h in np.asarray(heats, dtype=np.float64)]
        if not (len(heats) == len(targets) == len(images)):
            raise ValueError(f"{len(images)} images but {len(heats)} heatmaps and {len(targets)} targets")
        cands = [self.candidates(img, h) for img, h in zip(images, heats)]
        evidence = self.judge.evidence([
            (img, np.asarray(c).reshape(-1, *img.shape[:2]), int(t)) for img, c, t in zip(images, cands, targets)
        ])
        return [self._choose(img, h, c, ev) for img, h, c, ev in zip(images, heats, cands, evidence)]

    def _choose(self, image: np.ndarray, heat: np.ndarray, cands: list[np.ndarray],
                evidence: Mapping[str, np.ndarray]) -> RegionChoice:
        cfg = self.cfg
        # Nothing plausible anywhere: the heatmap's strongest seed is the fallback point (documented).
        with warnings.catch_warnings():  # a flat map was already reported by candidates()
            warnings.simplefilter("ignore", RuntimeWarning)
            seed = heatmap_seeds(heat, 1, cfg.seed_distance, cfg.seed_sigma, 0.0)[0]
        if not cands:
            return RegionChoice(region=np.zeros(heat.shape, bool), seed=seed)
        feats = [region_features(image, heat, m, cfg.colour_tol) for m in cands]
        for j, f in enumerate(feats):
            f.update({k: float(v[j]) for k, v in evidence.items()})
        scores = score_candidates(feats, cfg)
        return RegionChoice(region=cands[int(np.argmax(scores))], seed=seed, scores=scores, features=feats)


def foreground_points(image: np.ndarray, choice: RegionChoice, cfg: PromptConfig) -> np.ndarray:
    """Up to ``cfg.n_fg`` points (x, y) deep inside the chosen region, on its own colour.

    Uses only the :data:`PLACEMENT_KNOBS` of ``cfg``. An empty region (nothing plausible was found)
    gives the fallback: one point at ``choice.seed``, the heatmap's strongest pixel.
    """
    region = np.asarray(choice.region, bool)
    if not region.any():
        return np.reshape(choice.seed, (1, 2)).astype(np.float64)
    core = colour_core(image, region, cfg.colour_tol) if cfg.fg_colour_core else region
    return interior_points(core, cfg.n_fg, cfg.fg_separation)


def heatmap_peak(heat: np.ndarray) -> np.ndarray:
    """(x, y) of a heatmap's maximum pixel (the first one in row-major order): the classic CAM prompt."""
    heat = check_heatmap(heat)
    row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return np.array([float(col), float(row)])
