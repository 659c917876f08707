"""The region search: which region of an image is the object the classifier's Grad-CAM points at.

Why not the heatmap's maximum: a layer2 Grad-CAM peaks on or just beside the shape's edge, so a
point there lands inside the shape well under half of the time, and a point outside gives SAM a
background segment. The heatmap says *roughly where* the evidence is; this module finds *which
pixels are the object*, with no ground truth, in three steps:

1. **Propose** (:meth:`RegionSearch.candidates`): colour regions (:func:`camprompt.colour.grow_region`,
   at several RGB tolerances so JPEG artefacts and sensor noise do not break them) grown from the
   heatmap's strongest, spread-out pixels (:func:`camprompt.heatmap.heatmap_seeds`) *and* from a
   coarse grid over the whole image -- on val the heatmap's peaks alone touch the shape in only
   ~80-95% of images, so the heatmap ranks the search but never limits it. Regions of implausible
   size are dropped, near-duplicates merged, and the best by cheap label-free evidence
   (:func:`camprompt.colour.region_features`) go on; SAM adds its three multimask proposals for an
   interior point of the best few (decoder only: a few ms each with cached embeddings).
2. **Verify** with the classifier (:class:`camprompt.judge.ClassifierJudge`): does the class
   collapse when the region is painted over, and is the region's silhouette alone the shape the
   image is taken for? The classifier calls almost any closed blob a shape, so the no-shape judge
   (:mod:`camprompt.no_shape`, trained to also answer "none") gives a second verdict on the silhouette.
3. **Choose** the candidate with the highest weighted sum of all the evidence
   (:func:`score_candidates`; weights chosen on val). Among the ``sam_fit_top`` best, SAM has a say
   too: a whole object is what SAM itself cuts out from a point inside it, so the IoU of a candidate
   with SAM's mask for its interior point (``sam_fit``) joins the sum.

Placing points in the chosen region is :mod:`camprompt.placement`. The DVC pipeline runs this
search once per search config (``regions@C``) and shares it between strategies.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage as ndi
from tqdm.auto import tqdm

from camprompt.colour import grow_region, region_features
from camprompt.conventions import check_heatmap, check_rgb_batch, knobs_from_params, point_pixels
from camprompt.data import normalize
from camprompt.denoise import FILTER_MODES, filtered
from camprompt.saliency import grid_points, heatmap_seeds
from camprompt.judge import ClassifierJudge
from camprompt.metrics import iou
from camprompt.input_size import scale_search, working_size
from camprompt.placement import RegionChoice, interior_points, stack_choices

if TYPE_CHECKING:
    from torch import nn

__all__ = ["SearchConfig", "SEARCH_KNOBS", "CHEAP_TERMS", "CLASSIFIER_TERMS", "JUDGE_TERMS", "score_candidates",
           "RegionSearch"]


@dataclass(frozen=True)
class SearchConfig:
    """Knobs of the propose -> verify -> choose search (params ``searches.<name>``, without ``cam``)."""

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
    grow_tols: tuple[float, ...] = (30.0, 55.0)  # RGB tolerances of the colour regions (one set each)
    min_area: int = 12            # candidate size bounds (px); the shapes cover ~30..400 px
    max_area_frac: float = 0.35   # ... and at most this share of the image
    dedupe_iou: float = 0.9       # candidates overlapping more than this are merged (first kept)
    w_drop: float = 0.5           # score weights (score_candidates), chosen on val images only
    w_cleared: float = 0.5
    w_keep: float = 2.0
    w_agree: float = 0.0          # the silhouette's probability of the explained class (agree)
    w_heat: float = 0.5
    w_heat_near: float = 0.5
    w_flatness: float = 1.0
    w_ring: float = 1.0
    w_keep_judge: float = 0.0     # the no-shape judge's verdict (keep_judge); needs a judge (camprompt.no_shape)
    w_sam_fit: float = 0.0        # SAM's agreement (sam_fit), measured for the sam_fit_top best only
    sam_fit_top: int = 3
    smooth: str = "none"          # colour evidence on: none (the image) | bilateral | auto (camprompt.denoise)
    smooth_threshold: float = 0.0  # auto: smooth images whose estimated noise sigma exceeds this

    @classmethod
    def from_params(cls, params: Mapping[str, Any], ignore: Sequence[str] = ("cam",)) -> SearchConfig:
        """Build from a search config's params; unknown keys raise (a typo must not be silently ignored)."""
        cfg = knobs_from_params(cls, params, "search", ignore)
        if cfg.max_seeds < 1:
            raise ValueError(f"need max_seeds >= 1, got {cfg.max_seeds}")
        if not (cfg.use_sam or cfg.use_grow):
            raise ValueError("at least one candidate source (use_sam, use_grow) must be enabled")
        if cfg.sam_fit_top < 1:
            raise ValueError(f"need sam_fit_top >= 1 (candidates checked against SAM), got {cfg.sam_fit_top}")
        if cfg.w_keep_judge < 0:
            raise ValueError(f"need w_keep_judge >= 0 (a shape's silhouette should score higher), got {cfg.w_keep_judge}")
        if cfg.w_sam_fit < 0:
            raise ValueError(f"need w_sam_fit >= 0 (SAM's agreement only ever adds evidence), got {cfg.w_sam_fit}")
        if cfg.w_sam_fit and not cfg.use_sam:
            raise ValueError("w_sam_fit weighs SAM's agreement with each candidate, which needs use_sam: true")
        if cfg.smooth not in FILTER_MODES:
            raise ValueError(f"smooth must be one of {FILTER_MODES}, got {cfg.smooth!r}")
        return cfg


SEARCH_KNOBS = frozenset(f.name for f in fields(SearchConfig))
CHEAP_TERMS = ("flatness", "ring", "heat", "heat_near")
CLASSIFIER_TERMS = ("drop", "cleared", "keep", "agree")
JUDGE_TERMS = ("keep_judge",)  # evidence of the no-shape judge, present only when the search has one


def score_candidates(features: Sequence[Mapping[str, float]], cfg: SearchConfig, cheap: bool = False) -> np.ndarray:
    """Weighted sum of each candidate's evidence (higher = more likely the whole object).

    Weights are the ``w_<term>`` knobs; a term weighted 0 is left out (it need not be measured).
    ``cheap`` uses only the image/heatmap terms: the pre-ranking that decides which candidates are
    worth classifier probes.
    """
    terms = CHEAP_TERMS if cheap else CHEAP_TERMS + CLASSIFIER_TERMS + JUDGE_TERMS
    weights = {t: w for t in terms if (w := float(getattr(cfg, f"w_{t}")))}
    return np.asarray([sum(w * f[t] for t, w in weights.items()) for f in features], dtype=np.float64)


def _dedupe(masks: list[np.ndarray], max_iou: float) -> list[np.ndarray]:
    kept: list[np.ndarray] = []
    for m in masks:
        if all(np.logical_and(m, k).sum() <= max_iou * np.logical_or(m, k).sum() for k in kept):
            kept.append(m)
    return kept


class RegionSearch:
    """Propose -> verify -> choose the object region of each image (see the module docstring).

    ``classifier``: the trained network (eval mode, never modified, on any device); it verifies
    the candidates. ``judge``: the no-shape judge (:mod:`camprompt.no_shape`) whose verdict on each
    silhouette the search weighs with ``w_keep_judge``; needed when that weight is not 0.
    ``predictor``: a SamPredictor-like object (``set_image``, ``predict``) whose
    multimask proposals join the candidates when ``config.use_sam``; with cached embeddings those
    are decoder calls only. Images are searched ``batch_size`` at a time (their classifier probes
    share network calls).
    """

    def __init__(self, config: SearchConfig, classifier: nn.Module | None, predictor: Any = None, *,
                 judge: nn.Module | None = None, batch_size: int = 32, progress: bool = False) -> None:
        if config.use_sam and predictor is None:
            raise ValueError("this search uses SAM's proposals (use_sam: true) but no SAM predictor was given")
        self.config, self.classifier, self.predictor, self.judge = config, classifier, predictor, judge
        self.batch_size, self.progress = int(batch_size), progress
        self._current: bytes | None = None

    def regions(self, images: np.ndarray, heatmaps: np.ndarray, targets: Sequence[int]) -> list[RegionChoice]:
        """The chosen region of every image: uint8 (B,H,W,3), heatmaps (B,H,W), the classes they explain (B,).

        The config's pixel knobs are set for the classifier's working size; images of another size are
        searched with them scaled (:func:`camprompt.input_size.scale_search`), as the classifier
        resizes its input (a classifier never fitted to a size takes the knobs as they are)."""
        images = check_rgb_batch(images)
        heats = [check_heatmap(h, images.shape[1:3]) for h in np.asarray(heatmaps, dtype=np.float64)]
        targets = np.asarray(targets, np.int64)
        if not (len(heats) == len(targets) == len(images)):
            raise ValueError(f"{len(images)} images but {len(heats)} heatmaps and {len(targets)} targets")
        if self.classifier is None:
            raise RuntimeError("the region search needs the classifier to verify its candidates; pass "
                               "classifier=camprompt.classifier.load_classifier(...)")
        if self.config.w_keep_judge and self.judge is None:
            raise RuntimeError(f"this search weighs the no-shape judge (w_keep_judge: {self.config.w_keep_judge}) but no "
                               "judge was given; pass judge= (camprompt.no_shape.train_no_shape_judge, or the "
                               "`train_judge` stage's checkpoint), or set w_keep_judge: 0")
        judge = ClassifierJudge(self.classifier, normalize,
                                no_shape=self.judge if self.config.w_keep_judge else None)
        choices: list[RegionChoice] = []
        set_for = self.config
        if len(images):
            self.config = scale_search(set_for, images.shape[1:3], working_size(self.classifier))
        try:
            for start in tqdm(range(0, len(images), self.batch_size), desc="regions", unit="batch",
                              disable=not self.progress, leave=False):
                stop = start + self.batch_size
                cands = [self.candidates(img, h) for img, h in zip(images[start:stop], heats[start:stop])]
                evidence = judge.evidence([(img, np.asarray(c).reshape(-1, *img.shape[:2]), int(t))
                                           for img, c, t in zip(images[start:stop], cands, targets[start:stop])])
                choices.extend(self._choose(img, h, c, ev)
                               for img, h, c, ev in zip(images[start:stop], heats[start:stop], cands, evidence))
        finally:
            self.config, self._current = set_for, None
        return choices

    def stacked_regions(self, images: np.ndarray, heatmaps: np.ndarray,
                        targets: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`regions` as (regions bool (B,H,W), seeds float (B,2)): what ``regions@C`` stores and the
        pipelines' ``regions=`` and ``seeds=`` take."""
        images = check_rgb_batch(images)
        return stack_choices(self.regions(images, heatmaps, targets), images.shape[1:3] if len(images) else (0, 0))

    def candidates(self, image: np.ndarray, heat: np.ndarray) -> list[np.ndarray]:
        """Plausibly sized, de-duplicated candidate masks, best pre-scored first (at most max_candidates).

        Colour regions are grown from the heatmap's seeds and from a grid over the whole image (the
        heatmap peak is often a few pixels off the shape, so it only ranks, never limits, the search);
        the ``max_candidates`` best by the cheap label-free features go on, and SAM adds its proposals
        for an interior point of the ``sam_regions`` best of them and for the ``sam_seeds`` strongest
        heatmap seeds.
        """
        cfg = self.config
        colours = self._colour_view(image)
        peaks = heatmap_seeds(heat, cfg.max_seeds, cfg.seed_distance, cfg.seed_sigma, cfg.seed_threshold)
        seeds = np.concatenate([peaks, grid_points(heat.shape, cfg.grid_step)]) if cfg.grid_step > 0 else peaks
        found = self._grown(colours, seeds) if cfg.use_grow else []
        if cfg.use_grow:
            feats = [region_features(colours, heat, m) for m in found]
            order = np.argsort(-score_candidates(feats, cfg, cheap=True), kind="stable")
            found = [found[i] for i in order[: cfg.max_candidates]]
        if cfg.use_sam:
            anchors = [interior_points(m, 1)[0] for m in found[: cfg.sam_regions]] if found else list(seeds[: cfg.sam_regions])
            # The heatmap's own peaks too: a shape whose colour is close to its surroundings grows no
            # clean colour region, but SAM can still cut it out from a point the heatmap puts on it.
            anchors += list(peaks[: cfg.sam_seeds])
            for point in anchors:
                found.extend(m for m in self._sam_proposals(image, point) if self._plausible(m))
        return _dedupe(found, cfg.dedupe_iou)

    def _colour_view(self, image: np.ndarray) -> np.ndarray:
        """The image the colour evidence is read from (``smooth``): noise flattened, edges kept."""
        return filtered(image, self.config.smooth, self.config.smooth_threshold)

    def _plausible(self, mask: np.ndarray) -> bool:
        return self.config.min_area <= int(mask.sum()) <= self.config.max_area_frac * mask.size

    def _grown(self, image: np.ndarray, seeds: np.ndarray) -> list[np.ndarray]:
        """Distinct plausible colour regions grown from ``seeds`` at every tolerance of ``grow_tols``.

        Several tolerances because JPEG bleeds a shape's colour at its edge (a tight tolerance keeps
        only its core) while a loose one may leak into a similar background; the classifier decides.
        Holes are filled (the shapes have none; noise can punch some). Per tolerance, a seed already
        inside an earlier region is skipped: it would grow the same region again.
        """
        regions: dict[bytes, np.ndarray] = {}
        rows, cols, _ = point_pixels(seeds, image.shape[:2])
        for tol in self.config.grow_tols:
            covered = np.zeros(image.shape[:2], bool)
            for seed, row, col in zip(seeds, rows, cols):
                if covered[row, col]:
                    continue
                region = grow_region(image, seed, float(tol))
                covered |= region
                region = ndi.binary_fill_holes(region)
                if self._plausible(region):
                    regions.setdefault(np.packbits(region).tobytes(), region)
        return list(regions.values())

    def _sam_proposals(self, image: np.ndarray, point: np.ndarray, multimask: bool = True) -> np.ndarray:
        """SAM's masks bool (3,H,W), or (1,H,W) single-mask, for one foreground point (the image is set once)."""
        key = image.tobytes()
        if key != self._current:
            self.predictor.set_image(image)
            self._current = key
        masks, _, _ = self.predictor.predict(
            point_coords=np.asarray(point, np.float32).reshape(1, 2), point_labels=np.ones(1, np.int64),
            multimask_output=multimask,
        )
        return np.asarray(masks, bool)

    def _sam_fit(self, image: np.ndarray, mask: np.ndarray) -> float:
        """IoU of ``mask`` with SAM's single-mask answer to a point at its deepest interior pixel."""
        return iou(self._sam_proposals(image, interior_points(mask, 1)[0], multimask=False)[0], mask)

    def _choose(self, image: np.ndarray, heat: np.ndarray, cands: list[np.ndarray],
                evidence: Mapping[str, np.ndarray]) -> RegionChoice:
        cfg = self.config
        # Nothing plausible anywhere: the heatmap's strongest seed is the fallback point (documented).
        with warnings.catch_warnings():  # a flat map was already reported by candidates()
            warnings.simplefilter("ignore", RuntimeWarning)
            seed = heatmap_seeds(heat, 1, cfg.seed_distance, cfg.seed_sigma, 0.0)[0]
        if not cands:
            return RegionChoice(region=np.zeros(heat.shape, bool), seed=seed)
        colours = self._colour_view(image)
        feats = [region_features(colours, heat, m) for m in cands]
        for j, f in enumerate(feats):
            f.update({k: float(v[j]) for k, v in evidence.items()})
        scores = score_candidates(feats, cfg)
        if cfg.w_sam_fit:
            # Only the best few are worth a decoder call each; adding a non-negative term to them
            # keeps the choice among them.
            top = np.argsort(-scores, kind="stable")[: cfg.sam_fit_top]
            for j in top:
                feats[j]["sam_fit"] = self._sam_fit(image, cands[j])
                scores[j] += cfg.w_sam_fit * feats[j]["sam_fit"]
        return RegionChoice(region=cands[int(np.argmax(scores))], seed=seed, scores=scores, features=feats)
