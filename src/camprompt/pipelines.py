"""Prompt-free SAM segmentation pipelines: images in, masks out -- no ground truth, no user clicks.

* :class:`BasicSamPipeline` -- one foreground point at the image centre (the baseline).
* :class:`ForegroundPointsPipeline` -- foreground points only, found by the classifier's Grad-CAM
  and the image (:mod:`camprompt.prompts`: propose candidate regions, verify them with the
  classifier, place points deep inside the winner).
* :class:`ForegroundBackgroundPipeline` -- the same foreground points plus background points
  surely outside the object.

Every pipeline is called on images only; nothing in this module can see a mask or a label.
``points()`` and ``segment()`` are the two halves of ``__call__`` so that the DVC stages
(``points@S``, ``masks@S``) and interactive use share one implementation. They take normalised
tensors (``camprompt.data.normalize``), like the classifier; ``points_rgb()`` and ``segment_rgb()``
are the same work on uint8 RGB arrays, like ``SamPredictor.set_image``. The DVC stages use those:
placing points and decoding masks needs no torch, and importing it cost each stage ~2 s.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
from tqdm.auto import tqdm

from camprompt.artifacts import open_arrays
from camprompt.data import denormalize, normalize
from camprompt.prompts import (
    BG_LABEL,
    FG_LABEL,
    PAD_LABEL,
    PLACEMENT_KNOBS,
    SEARCH_KNOBS,
    ClassifierJudge,
    PromptConfig,
    PromptFinder,
    PromptResult,
    RegionChoice,
    eval_no_grad,
    pack_points,
    place_points,
    region_features,
)

if TYPE_CHECKING:  # torch is imported where images are handled, so the stage helpers below do without it
    from torch import Tensor, nn

__all__ = [
    "SamLike",
    "BasicSamPipeline",
    "ForegroundPointsPipeline",
    "ForegroundBackgroundPipeline",
    "PIPELINES",
    "build_pipeline",
    "resolve_strategy",
    "search_params",
    "load_heatmap",
    "strategy_params",
    "strategy_dir",
    "region_store",
    "check_names",
    "check_images",
    "check_rgb",
    "check_points",
]


class SamLike(Protocol):
    """What the pipelines need from a predictor (segment-anything's SamPredictor has it)."""

    def set_image(self, image: np.ndarray) -> None: ...

    def predict(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                box: np.ndarray | None = None, multimask_output: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


# ------------------------------------------------------------------------------------------------
# Input checks
# ------------------------------------------------------------------------------------------------


def check_images(images: Any) -> Tensor:
    """Images must be a float tensor (B,3,H,W) as made by ``camprompt.data.normalize``."""
    import torch

    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"images must be a torch.Tensor (B,3,H,W) normalised with camprompt.data.normalize, got "
            f"{type(images).__name__}"
        )
    if images.ndim != 4 or images.shape[1] != 3:
        hint = " For one image use images[None]." if images.ndim == 3 else ""
        raise ValueError(f"images must have shape (B,3,H,W), got {tuple(images.shape)}.{hint}")
    if not images.is_floating_point():
        raise TypeError(f"images have dtype {images.dtype}; pass camprompt.data.normalize(uint8 images)")
    if min(images.shape) == 0:
        raise ValueError(f"images have an empty dimension: {tuple(images.shape)}")
    return images


def check_rgb(images: Any) -> np.ndarray:
    """Images must be a uint8 RGB array (B,H,W,3), as ``SamPredictor.set_image`` takes them (one per row)."""
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a uint8 numpy array (B,H,W,3), got {type(images).__name__}; "
                        "normalised tensors go to points()/segment() instead")
    if images.dtype != np.uint8:
        raise TypeError(f"images have dtype {images.dtype}; the *_rgb methods take uint8 RGB (0..255), "
                        "normalised tensors go to points()/segment()")
    if images.ndim != 4 or images.shape[-1] != 3:
        hint = " For one image use images[None]." if images.ndim == 3 else ""
        raise ValueError(f"images must have shape (B,H,W,3), got {images.shape}.{hint}")
    if min(images.shape) == 0:
        raise ValueError(f"images have an empty dimension: {images.shape}")
    return images


def _to_numpy(x: Any) -> Any:
    """A tensor's values on the CPU (anything else passes through)."""
    return x.detach().cpu().numpy() if callable(getattr(x, "detach", None)) else x


def check_points(point_coords: Any, point_labels: Any, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """coords (B,N,2) float (x, y) and labels (B,N) int (1 fg, 0 bg, -1 padding) -> numpy, validated."""
    coords = np.asarray(_to_numpy(point_coords), dtype=np.float64)
    labels = np.asarray(_to_numpy(point_labels))
    if coords.ndim != 3 or coords.shape[0] != batch or coords.shape[2] != 2:
        raise ValueError(f"point_coords must be ({batch},N,2) as (x, y), got {coords.shape}")
    if labels.shape != coords.shape[:2]:
        raise ValueError(f"point_labels must be {coords.shape[:2]} to match point_coords, got {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"point_labels must be integers (1 fg, 0 bg, -1 padding), got {labels.dtype}")
    bad = ~np.isin(labels, (FG_LABEL, BG_LABEL, PAD_LABEL))
    if bad.any():
        raise ValueError(f"point_labels may only hold 1 (fg), 0 (bg) or -1 (padding), got {np.unique(labels[bad])}")
    real = labels != PAD_LABEL
    if not real.any(axis=1).all():
        empty = np.flatnonzero(~real.any(axis=1))
        raise ValueError(f"images {empty[:5].tolist()} have only padding points; SAM needs at least one point each")
    if not np.isfinite(coords[real]).all():
        raise ValueError("point_coords hold NaN or inf for non-padding points")
    return coords, labels.astype(np.int64)


# ------------------------------------------------------------------------------------------------
# The baseline
# ------------------------------------------------------------------------------------------------


class BasicSamPipeline:
    """SAM prompted with one foreground point at the image centre.

    ``segment`` un-normalises each image to uint8 RGB, sets it on the predictor (with embeddings
    attached to the predictor this is a look-up, not an encoder run), predicts SAM's three
    multimask proposals and keeps one (:meth:`select_mask`; here: SAM's best predicted IoU).
    ``points_rgb``/``segment_rgb`` do the same on uint8 RGB arrays (B,H,W,3), without torch.
    """

    def __init__(self, predictor: SamLike | None, *, progress: bool = False) -> None:
        if predictor is not None and not (hasattr(predictor, "set_image") and hasattr(predictor, "predict")):
            raise TypeError(f"predictor must be SamPredictor-like (set_image, predict), got {type(predictor).__name__}")
        self._predictor = predictor
        self.progress = progress

    @property
    def predictor(self) -> SamLike:
        """The SAM predictor; None is allowed only for work that needs no SAM (e.g. the centre points)."""
        if self._predictor is None:
            raise RuntimeError(f"{type(self).__name__} was built without a SAM predictor; pass "
                               "predictor=camprompt.sam.load_predictor(...) to segment")
        return self._predictor

    # -- prompts ------------------------------------------------------------------------------
    def points(self, images: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """One foreground point per image at its centre ((W-1)/2, (H-1)/2): coords (B,1,2), labels (B,1)."""
        batch, _, height, width = check_images(images).shape
        return _centre_points(batch, height, width)

    def points_rgb(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`points` for uint8 RGB images (B,H,W,3)."""
        batch, height, width, _ = check_rgb(images).shape
        return _centre_points(batch, height, width)

    # -- masks --------------------------------------------------------------------------------
    def __call__(self, images: Tensor) -> Tensor:
        """bool (B,H,W) masks for normalised images (B,3,H,W)."""
        return self.segment(images, *self.points(images))

    def segment(self, images: Tensor, point_coords: Any, point_labels: Any) -> Tensor:
        """bool (B,H,W): SAM's chosen mask for each image and its points (label -1 = padding, ignored)."""
        return self.segment_with_scores(images, point_coords, point_labels)[0]

    def segment_with_scores(self, images: Tensor, point_coords: Any, point_labels: Any) -> tuple[Tensor, np.ndarray]:
        """Like :meth:`segment`, plus SAM's predicted IoU of each chosen mask (float32 (B,))."""
        import torch

        masks, scores = self.segment_rgb(denormalize(check_images(images)), point_coords, point_labels)
        return torch.from_numpy(masks), scores

    def segment_rgb(self, images: np.ndarray, point_coords: Any, point_labels: Any) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`segment_with_scores` for uint8 RGB images (B,H,W,3): (masks bool (B,H,W), scores float32 (B,))."""
        uint8 = check_rgb(images)
        coords, labels = check_points(point_coords, point_labels, uint8.shape[0])
        keep = labels != PAD_LABEL
        prompts = ([c[k].astype(np.float32) for c, k in zip(coords, keep)], [lab[k].astype(np.int64) for lab, k in zip(labels, keep)])
        masks = np.zeros(uint8.shape[:3], bool)
        scores = np.zeros(len(uint8), np.float32)
        found = tqdm(_predict_each(self.predictor, uint8, *prompts), total=len(uint8), desc="sam masks", unit="img",
                     disable=not self.progress, leave=False)
        for i, (proposals, ious, _) in enumerate(found):
            proposals = np.asarray(proposals, bool)
            if proposals.ndim != 3 or proposals.shape[1:] != uint8.shape[1:3]:
                raise RuntimeError(f"the predictor returned masks {proposals.shape}, expected (K,{uint8.shape[1]},{uint8.shape[2]})")
            k = self.select_mask(uint8[i], proposals, np.asarray(ious, np.float64), coords[i][keep[i]], labels[i][keep[i]])
            masks[i], scores[i] = proposals[k], float(ious[k])
        return masks, scores

    def select_mask(self, image: np.ndarray, masks: np.ndarray, scores: np.ndarray,
                    coords: np.ndarray, labels: np.ndarray) -> int:
        """Index of the proposal to keep: the baseline trusts SAM's predicted IoU."""
        return int(np.argmax(scores))


# ------------------------------------------------------------------------------------------------
# Grad-CAM driven pipelines
# ------------------------------------------------------------------------------------------------


def _predict_each(predictor: SamLike, images: np.ndarray, coords: list[np.ndarray], labels: list[np.ndarray]) -> Iterator[Any]:
    """SAM's multimask candidates for each image and its own points, in order.

    camprompt's backends decode several images at once (``predict_many``); any other predictor with
    ``SamPredictor``'s interface gets ``set_image`` + ``predict`` image by image.
    """
    many = getattr(predictor, "predict_many", None)
    if many is not None:
        yield from many(images, coords, labels, multimask_output=True)
        return
    for image, c, lab in zip(images, coords, labels):
        predictor.set_image(image)
        yield predictor.predict(point_coords=c, point_labels=lab, multimask_output=True)


def _centre_points(batch: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The baseline's prompt, from the batch's shape alone (tensor and array layouts share it)."""
    coords = np.tile(np.array([[(width - 1) / 2.0, (height - 1) / 2.0]], np.float32), (batch, 1, 1))
    return coords, np.ones((batch, 1), np.int64)


def _points_agree(mask: np.ndarray, coords: np.ndarray, labels: np.ndarray) -> float:
    """Share of the prompts a mask honours (fg points inside it, bg points outside)."""
    h, w = mask.shape
    cols = np.clip(np.floor(coords[:, 0] + 0.5).astype(int), 0, w - 1)
    rows = np.clip(np.floor(coords[:, 1] + 0.5).astype(int), 0, h - 1)
    inside = mask[rows, cols]
    return float(np.mean(np.where(labels == FG_LABEL, inside, ~inside))) if len(labels) else 1.0


class ForegroundPointsPipeline(BasicSamPipeline):
    """Foreground points from the classifier's Grad-CAM and the image (no background points).

    ``classifier``: the trained network (eval mode; never modified). ``cam``: ``{"method": ...,
    "layers": [...]}`` (a ``gradcam.configs`` entry); used when :meth:`points` is not given
    precomputed heatmaps. ``config``: the :class:`~camprompt.prompts.PromptConfig` knobs (default:
    its defaults updated with :attr:`default_knobs`); its ``use_sam`` lets SAM propose candidate
    regions too (decoder calls; cheap with cached embeddings, an encoder run per image without).
    """

    #: Knobs this pipeline needs other than PromptConfig's defaults, applied when config/params omit them.
    default_knobs: Mapping[str, Any] = MappingProxyType({})

    def __init__(self, predictor: SamLike | None, classifier: nn.Module | None, *, cam: Mapping[str, Any] | None = None,
                 config: PromptConfig | None = None, batch_size: int = 32, progress: bool = False) -> None:
        super().__init__(predictor, progress=progress)
        if classifier is not None:
            from torch import nn  # only here: placing points from stored regions needs no torch

            if not isinstance(classifier, nn.Module):
                raise TypeError(f"classifier must be a torch.nn.Module, got {type(classifier).__name__}")
        self._classifier = classifier
        self.cam = dict(cam or {"method": "gradcam", "layers": ["layer2"]})
        self.config = config or self.config_from({})
        self._check_config()
        self.batch_size = int(batch_size)
        self._current: bytes | None = None
        self.last_results: list[PromptResult] = []

    @property
    def classifier(self) -> nn.Module:
        """The classifier; None is allowed only to segment given points (the ``masks`` stage)."""
        if self._classifier is None:
            raise RuntimeError(f"{type(self).__name__} needs the classifier to find points; pass "
                               "classifier=camprompt.classifier.load_classifier(...)")
        return self._classifier

    @property
    def finder(self) -> PromptFinder:
        sam = self._sam_proposals if self.config.use_sam else None
        return PromptFinder(self.config, ClassifierJudge(self.classifier, normalize), sam)

    @classmethod
    def config_from(cls, params: Mapping[str, Any]) -> PromptConfig:
        """``PromptConfig.from_params`` of strategy ``params`` over this pipeline's :attr:`default_knobs`."""
        return PromptConfig.from_params({**cls.default_knobs, **params})

    def _check_config(self) -> None:
        if self.config.n_bg != 0:
            raise ValueError(f"{type(self).__name__} places foreground points only; set n_bg: 0 (got {self.config.n_bg})")

    # -- SAM proposals for the finder ----------------------------------------------------------
    def _sam_proposals(self, image: np.ndarray, point: np.ndarray) -> np.ndarray:
        """SAM's multimask proposals for one foreground point (the image is set once per image)."""
        key = image.tobytes()
        if key != self._current:
            self.predictor.set_image(image)
            self._current = key
        masks, _, _ = self.predictor.predict(
            point_coords=np.asarray(point, np.float32).reshape(1, 2), point_labels=np.ones(1, np.int64),
            multimask_output=True,
        )
        return np.asarray(masks, bool)

    # -- Grad-CAM -----------------------------------------------------------------------------
    def heatmaps(self, images: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(heatmaps float32 (B,H,W) in 0..1, predicted classes int64 (B,)) of the configured CAM."""
        from camprompt.gradcam import CAM_METHODS

        images = check_images(images)
        method = self.cam.get("method", "gradcam")
        if method not in CAM_METHODS:
            raise ValueError(f"unknown CAM method {method!r}; choose one of {sorted(CAM_METHODS)}")
        result = CAM_METHODS[method](self.classifier, self.cam["layers"]).compute(images)
        return result.heatmaps, result.targets

    def predict_classes(self, images: Tensor) -> np.ndarray:
        """The classifier's predicted class per image (the class Grad-CAM explains)."""
        with eval_no_grad(self.classifier) as device:
            return self.classifier(images.to(device)).argmax(1).cpu().numpy().astype(np.int64)

    # -- prompts ------------------------------------------------------------------------------
    def _cams(self, uint8: np.ndarray, images: Tensor | None, heatmaps: np.ndarray | None,
              targets: Sequence[int] | np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Validated heatmaps float32 (B,H,W) (computed when None) and targets (None: not known yet).

        ``uint8``: the checked images; ``images``: the same normalised, or None (then made only if needed).
        """
        batch, height, width = uint8.shape[:3]
        if heatmaps is None:
            heatmaps, cam_targets = self.heatmaps(_normalised(uint8, images))
            targets = cam_targets if targets is None else targets
        heatmaps = np.asarray(heatmaps, dtype=np.float32)
        if heatmaps.shape != (batch, height, width):
            raise ValueError(f"heatmaps must be ({batch},{height},{width}) to match the images, got {heatmaps.shape}")
        return heatmaps, None if targets is None else np.asarray(targets, np.int64)

    def regions(self, images: Tensor, heatmaps: np.ndarray | None = None,
                targets: Sequence[int] | np.ndarray | None = None) -> list[RegionChoice]:
        """The object region of every image (propose -> verify -> choose; :mod:`camprompt.prompts`).

        The expensive half of :meth:`points` (classifier probes, SAM proposals), so the DVC pipeline
        runs it once per search config (``regions@C``) and shares it between strategies.
        ``heatmaps``/``targets`` as in :meth:`points`.
        """
        images = check_images(images)
        uint8 = denormalize(images)
        return self._search(uint8, images, *self._cams(uint8, images, heatmaps, targets))

    def _search(self, uint8: np.ndarray, images: Tensor | None, heatmaps: np.ndarray,
                targets: np.ndarray | None) -> list[RegionChoice]:
        """:meth:`regions` on checked inputs (``images``/``uint8`` as in :meth:`_cams`)."""
        if targets is None:
            targets = self.predict_classes(_normalised(uint8, images))
        if targets.shape != (len(uint8),):
            raise ValueError(f"targets must be ({len(uint8)},), got {targets.shape}")
        finder = self.finder
        choices: list[RegionChoice] = []
        try:
            for start in tqdm(range(0, len(uint8), self.batch_size), desc="regions", unit="batch",
                              disable=not self.progress, leave=False):
                stop = start + self.batch_size
                choices.extend(finder.regions(uint8[start:stop], heatmaps[start:stop], targets[start:stop]))
        finally:
            self._current = None
        return choices

    def points(self, images: Tensor, heatmaps: np.ndarray | None = None,
               targets: Sequence[int] | np.ndarray | None = None, regions: np.ndarray | None = None,
               seeds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """coords float32 (B,K,2) (x, y) and labels int64 (B,K) (padding -1) from images alone.

        ``heatmaps`` (B,H,W): precomputed CAMs of this pipeline's configuration (the DVC stage passes
        ``data/heatmaps.zarr``); computed here when None. ``targets``: the classes they explain
        (default: the classifier's prediction, which is what the heatmaps stage explains).
        ``regions`` bool (B,H,W) and ``seeds`` (B,2): precomputed :meth:`regions` (the DVC stage
        passes ``data/regions/C.zarr``); then only the cheap placement runs, with no classifier or
        SAM call. Without them the regions are searched here first.
        """
        images = check_images(images)
        return self._points(denormalize(images), images, heatmaps, targets, regions, seeds)

    def points_rgb(self, images: np.ndarray, heatmaps: np.ndarray | None = None,
                   targets: Sequence[int] | np.ndarray | None = None, regions: np.ndarray | None = None,
                   seeds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`points` for uint8 RGB images (B,H,W,3); with ``heatmaps``, ``regions`` and ``seeds``
        given it runs no model and imports no torch (the ``points@S`` stage)."""
        return self._points(check_rgb(images), None, heatmaps, targets, regions, seeds)

    def _points(self, uint8: np.ndarray, images: Tensor | None, heatmaps: np.ndarray | None,
                targets: Sequence[int] | np.ndarray | None, regions: np.ndarray | None,
                seeds: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`points` and :meth:`points_rgb` on checked images (``uint8``/``images`` as in :meth:`_cams`)."""
        heatmaps, targets = self._cams(uint8, images, heatmaps, targets)
        if regions is None:
            choices = self._search(uint8, images, heatmaps, targets)
        else:
            choices = _given_regions(regions, seeds, heatmaps.shape)
        results = [place_points(img, heat, c, self.config) for img, heat, c in zip(uint8, heatmaps, choices)]
        self.last_results = results
        return pack_points([r.fg for r in results], [self._background(r, uint8[i], heatmaps[i]) for i, r in enumerate(results)])

    def _background(self, result: PromptResult, image: np.ndarray, heat: np.ndarray) -> np.ndarray:
        return np.zeros((0, 2))

    def __call__(self, images: Tensor) -> Tensor:
        return self.segment(images, *self.points(images))

    def select_mask(self, image: np.ndarray, masks: np.ndarray, scores: np.ndarray,
                    coords: np.ndarray, labels: np.ndarray) -> int:
        """Keep the proposal that honours the prompts and looks like one solid object.

        SAM's predicted IoU alone sometimes prefers a part of the shape or the shape plus a patch of
        background. Among the proposals that honour the most prompts, the score adds the colour
        evidence of :func:`camprompt.prompts.region_features` (homogeneity inside, contrast with the
        1-px ring outside) to SAM's predicted IoU.
        """
        agree = np.array([_points_agree(m, coords, labels) for m in masks])
        heat = np.zeros(image.shape[:2])
        total = []
        for m, s, a in zip(masks, scores, agree):
            if a < agree.max() or not m.any():
                total.append(-np.inf)
                continue
            f = region_features(image, heat, m, self.config.colour_tol)
            total.append(float(s) + self.config.w_mask_colour * (f["homogeneity"] + f["contrast"]))
        return int(np.argmax(total)) if np.isfinite(total).any() else int(np.argmax(scores))


def _normalised(uint8: np.ndarray, images: Tensor | None) -> Tensor:
    """The classifier's input: the caller's normalised batch, or made from the uint8 one (the *_rgb path)."""
    return normalize(uint8) if images is None else images


def _given_regions(regions: Any, seeds: Any, shape: tuple[int, ...]) -> list[RegionChoice]:
    """Precomputed regions bool (B,H,W) + fallback seeds (B,2) -> choices, with shape checks."""
    regions = np.asarray(regions)
    if regions.shape != shape or regions.dtype != bool:
        raise ValueError(f"regions must be bool {shape} to match the images, got {regions.dtype} {regions.shape}")
    if seeds is None:
        raise ValueError("precomputed regions need their fallback seeds (B,2) too (RegionChoice.seed)")
    seeds = np.asarray(seeds, np.float64)
    if seeds.shape != (shape[0], 2):
        raise ValueError(f"seeds must be ({shape[0]},2) as (x, y), got {seeds.shape}")
    return [RegionChoice(region=r, seed=s) for r, s in zip(regions, seeds)]


class ForegroundBackgroundPipeline(ForegroundPointsPipeline):
    """Foreground points as :class:`ForegroundPointsPipeline`, plus background points outside the object.

    Background points sit in low-heat pixels at least ``bg_margin`` px from the chosen region and of
    a clearly different colour. If the recipe finds no such pixel (tiny image, region everywhere),
    the documented fallback is the pixel farthest from the foreground points.
    """

    default_knobs = MappingProxyType({"n_bg": 2})

    def _check_config(self) -> None:
        if self.config.n_bg < 1:
            raise ValueError(f"{type(self).__name__} needs n_bg >= 1 (got {self.config.n_bg})")

    def _background(self, result: PromptResult, image: np.ndarray, heat: np.ndarray) -> np.ndarray:
        if len(result.bg):
            return result.bg
        ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
        far = np.min([np.hypot(xs - x, ys - y) for x, y in result.fg], axis=0)
        row, col = np.unravel_index(int(np.argmax(far)), far.shape)
        return np.array([[float(col), float(row)]])


DEFAULT_CAM = "layer2"  # the gradcam config a strategy or search uses when it names none

PIPELINES: dict[str, type[BasicSamPipeline]] = {
    "basic": BasicSamPipeline,
    "foreground": ForegroundPointsPipeline,
    "fg_bg": ForegroundBackgroundPipeline,
}


def build_pipeline(name: str, strategy_params: Mapping[str, Any], *, predictor: SamLike | None,
                   classifier: nn.Module | None = None, cam_configs: Mapping[str, Mapping[str, Any]] | None = None,
                   search_configs: Mapping[str, Mapping[str, Any]] | None = None,
                   progress: bool = False) -> BasicSamPipeline:
    """Construct strategy ``name`` from its params (``params.yaml`` ``strategies.<name>``).

    ``predictor`` may be None where no SAM call is needed (centre points) and ``classifier`` None
    where no points are searched (segmenting given points); the pipeline says so when it needs them.
    ``pipeline`` picks the class (one of :data:`PIPELINES`). The region search is either named --
    ``search: C``, a ``searches`` entry (looked up in ``search_configs``) holding ``cam`` and the
    :data:`~camprompt.prompts.SEARCH_KNOBS`, while the strategy keeps only the
    :data:`~camprompt.prompts.PLACEMENT_KNOBS` -- or inline (``cam`` and every knob in the strategy).
    ``cam`` names a ``gradcam.configs`` entry (looked up in ``cam_configs``).
    """
    params = dict(strategy_params or {})
    kind = params.get("pipeline")
    if kind not in PIPELINES:
        raise ValueError(f"strategy {name!r}: 'pipeline' must be one of {sorted(PIPELINES)}, got {kind!r}")
    if kind == "basic":
        extra = set(params) - {"pipeline"}
        if extra:
            raise ValueError(f"strategy {name!r}: the basic pipeline takes no knobs, got {sorted(extra)}")
        return BasicSamPipeline(predictor, progress=progress)
    params = resolve_strategy(name, params, search_configs)
    cam_name = params.get("cam", DEFAULT_CAM)
    cams = dict(cam_configs or {})
    if cam_name not in cams:
        raise ValueError(f"strategy {name!r}: cam {cam_name!r} is not a gradcam config; known: {sorted(cams)}")
    cls = cast("type[ForegroundPointsPipeline]", PIPELINES[kind])  # basic returned above
    return cls(predictor, classifier, cam=cams[cam_name], config=cls.config_from(params), progress=progress)


def resolve_strategy(name: str, strategy_params: Mapping[str, Any],
                     search_configs: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    """A strategy's params in the inline form: the knobs of the search it names (``search: C``) copied in."""
    params = dict(strategy_params or {})
    if "search" in params:
        params = {**search_params(params.pop("search"), search_configs, strategy=name, placement=params), **params}
    return params


def search_params(search: str, search_configs: Mapping[str, Mapping[str, Any]] | None, *, strategy: str,
                  placement: Mapping[str, Any]) -> dict[str, Any]:
    """``searches.<search>`` checked against the strategy that names it: each knob lives in one place.

    A search config holds ``cam`` and search knobs only, the strategy placement knobs only; a knob
    on the wrong side would be silently ignored by the stage that does not read it, so it is an error.
    """
    configs = dict(search_configs or {})
    if search not in configs:
        raise ValueError(f"strategy {strategy!r}: search {search!r} is not in params `searches`; known: {sorted(configs)}")
    found = dict(configs[search] or {})
    wrong = sorted(set(found) - SEARCH_KNOBS - {"cam"})
    if wrong:
        raise ValueError(f"searches.{search}: {wrong} are not search knobs (placement knobs {sorted(PLACEMENT_KNOBS)} "
                         f"belong to the strategies; search knobs are {sorted(SEARCH_KNOBS | {'cam'})})")
    inline = sorted(set(placement) & (SEARCH_KNOBS | {"cam"}))
    if inline:
        raise ValueError(f"strategy {strategy!r} names search {search!r} but also sets its knobs {inline}; "
                         f"set them in searches.{search} (or a new search config) instead")
    return found


# ------------------------------------------------------------------------------------------------
# Helpers shared by the per-search and per-strategy DVC stages (regions@C, points@S, masks@S, metrics@S)
# ------------------------------------------------------------------------------------------------

STRATEGY_ROOT = "data/strategies"
REGION_ROOT = "data/regions"


def strategy_params(params: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``params['strategies'][name]`` with a clear error when it is missing or malformed."""
    strategies = params.get("strategies") or {}
    if name not in strategies:
        raise SystemExit(f"params.yaml has no strategy {name!r}; known: {sorted(strategies)}")
    strat = strategies[name]
    if not isinstance(strat, Mapping) or "pipeline" not in strat:
        raise SystemExit(f"params.yaml strategies.{name} must be a mapping with a 'pipeline' key")
    return dict(strat)


def strategy_dir(name: str, root: str = STRATEGY_ROOT) -> Path:
    """Where strategy ``name`` keeps its artifacts."""
    return Path(root) / name


def region_store(search: str, root: str = REGION_ROOT) -> Path:
    """Where the ``regions@<search>`` stage keeps the chosen object regions of search config ``search``."""
    return Path(root) / f"{search}.zarr"


def check_names(found: Sequence[str] | None, expected: Sequence[str], store: Any) -> None:
    """Stores must hold exactly the evaluated images, in order; otherwise say which stage to re-run."""
    if found is None or list(found) != list(expected):
        n = "no" if found is None else len(found)
        raise SystemExit(
            f"{store} holds {n} image names that do not match the {len(expected)} evaluated images "
            "(params eval.split/eval.limit changed?); re-run `dvc repro` so the upstream stages refresh it"
        )


def load_heatmap(params: Mapping[str, Any], cam: str, names: Sequence[str], *,
                 required: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """(heatmap (N,H,W) of gradcam config ``cam``, predicted classes (N,)) from the ``heatmaps`` stage's
    store, checked against the evaluated images; a missing config is an error (None if not ``required``)."""
    path = params["gradcam"]["out"]
    store = open_arrays(path)
    check_names(store.attrs.get("names"), names, path)
    preds = np.asarray(store["pred"][...])
    if f"heatmap_{cam}" not in store:
        if required:
            raise SystemExit(f"{path} has no heatmap_{cam}; add {cam!r} to params gradcam.configs")
        return None, preds
    return np.asarray(store[f"heatmap_{cam}"][...]), preds


# ------------------------------------------------------------------------------------------------
# SAM with cached embeddings, for the DVC stages (regions@C, masks@S)
# ------------------------------------------------------------------------------------------------

def load_attached_predictor(params: Mapping[str, Any], images: np.ndarray) -> SamLike:
    """The configured SAM predictor with the cached embeddings attached (no encoder runs).

    Every image must be in the embeddings store: a miss would silently cost an encoder run per image
    (about a second each), so it is an error that names the stage to re-run.
    """
    from camprompt import sam

    predictor = sam.load_predictor(params["sam"])
    path = params["sam"]["embeddings"]
    predictor.attach_embeddings(path)
    cached = set(predictor.cached_keys()) if hasattr(predictor, "cached_keys") else None
    if cached is not None:
        missing = sum(sam.image_key(img) not in cached for img in images)
        if missing:
            raise SystemExit(f"{path} lacks the embeddings of {missing} evaluated images; run `dvc repro embeddings`")
    return predictor
