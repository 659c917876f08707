"""Prompt-free SAM segmentation pipelines: images in, masks out -- no ground truth, no user clicks.

* :class:`BasicSamPipeline` -- one foreground point at the image centre (the assignment's baseline).
* :class:`GradCAMPeakPipeline` -- one foreground point at the classifier's Grad-CAM maximum (the
  classic CAM-to-prompt baseline).
* :class:`ForegroundPointsPipeline` -- foreground points only, found by the classifier's Grad-CAM
  and the image (:mod:`camprompt.prompts`: propose candidate regions, verify them with the
  classifier, place points deep inside the winner).
* :class:`ForegroundBackgroundPipeline` -- the same foreground points plus background points
  surely outside the object.

Every pipeline is called on images only; nothing in this module can see a mask or a label.
``points()`` and ``segment()`` are the two halves of ``__call__`` so that the DVC stages
(``points@S``, ``masks@S``) and interactive use share one implementation. They take normalised
tensors (``camprompt.data.normalize``), like the classifier; ``points_rgb()`` and ``segment_rgb()``
are the same work on uint8 RGB arrays, like ``SamPredictor.set_image``: placing points and decoding
masks needs no torch, so the stages that only do that never import it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from camprompt.data import denormalize, normalize
from camprompt.prompts import (
    BG_LABEL,
    FG_LABEL,
    PAD_LABEL,
    ClassifierJudge,
    PromptConfig,
    PromptFinder,
    RegionChoice,
    background_points,
    eval_no_grad,
    foreground_points,
    heatmap_peak,
    pack_points,
    region_features,
)

if TYPE_CHECKING:  # torch is imported where images are handled: placing points and decoding masks do without it
    from torch import Tensor, nn

__all__ = [
    "SamLike",
    "BasicSamPipeline",
    "GradCAMPeakPipeline",
    "ForegroundPointsPipeline",
    "ForegroundBackgroundPipeline",
    "DEFAULT_CAM_CONFIG",
    "check_images",
    "check_rgb",
    "check_points",
]

#: The Grad-CAM a pipeline explains with when it is given none: params ``gradcam.configs.layer2``.
DEFAULT_CAM_CONFIG: Mapping[str, Any] = MappingProxyType({"method": "gradcam", "layers": ("layer2",)})


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

    #: How the points are found, in plain words (the report prints it).
    description = ("One foreground point at the centre of the image, whatever it shows. It uses neither the "
                   "classifier nor the image content, so it finds the shape only when the shape covers the centre.")

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


# ------------------------------------------------------------------------------------------------
# Grad-CAM driven pipelines
# ------------------------------------------------------------------------------------------------


class CamSamPipeline(BasicSamPipeline):
    """A pipeline whose prompts come from the classifier's Grad-CAM (shared by the CAM pipelines).

    ``classifier``: the trained network (eval mode; never modified; on any device). ``cam``:
    ``{"method": ..., "layers": [...]}`` (a params ``gradcam.configs`` entry; default
    :data:`DEFAULT_CAM_CONFIG`), used when no precomputed heatmaps are given.
    """

    def __init__(self, predictor: SamLike | None, classifier: nn.Module | None, *, cam: Mapping[str, Any] | None = None,
                 progress: bool = False) -> None:
        super().__init__(predictor, progress=progress)
        if classifier is not None:
            from torch import nn  # only here: placing points from stored regions needs no torch

            if not isinstance(classifier, nn.Module):
                raise TypeError(f"classifier must be a torch.nn.Module, got {type(classifier).__name__}")
        self._classifier = classifier
        cam = dict(cam or DEFAULT_CAM_CONFIG)
        self.cam = {**cam, "layers": list(cam.get("layers") or [])}

    @property
    def classifier(self) -> nn.Module:
        """The classifier; None is allowed only where no heatmap is computed (stored heatmaps, given points)."""
        if self._classifier is None:
            raise RuntimeError(f"{type(self).__name__} needs the classifier to find points; pass "
                               "classifier=camprompt.classifier.load_classifier(...)")
        return self._classifier

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


class GradCAMPeakPipeline(CamSamPipeline):
    """SAM prompted with one foreground point at the maximum of the classifier's Grad-CAM.

    The classic way to turn a CAM into a prompt, kept as a baseline: it shows what the region search
    of :class:`ForegroundPointsPipeline` adds. SAM's proposal is chosen as in the basic pipeline.
    """

    description = ("One foreground point at the hottest pixel of the classifier's Grad-CAM, the classic way to "
                   "turn a saliency map into a prompt. Grad-CAM's coarse maps often peak on or just beside the "
                   "shape's edge, so this point can miss the shape; it is the baseline that shows what the "
                   "region search adds.")

    def points(self, images: Tensor, heatmaps: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One foreground point per image at its heatmap's maximum: coords (B,1,2), labels (B,1).

        ``heatmaps`` (B,H,W): precomputed CAMs of this pipeline's configuration; computed when None.
        """
        images = check_images(images)
        return self._peaks(self._cams(denormalize(images), images, heatmaps, None)[0])

    def points_rgb(self, images: np.ndarray, heatmaps: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`points` for uint8 RGB images (B,H,W,3); with ``heatmaps`` given it imports no torch."""
        return self._peaks(self._cams(check_rgb(images), None, heatmaps, None)[0])

    @staticmethod
    def _peaks(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return pack_points([heatmap_peak(h)[None] for h in heatmaps])


class ForegroundPointsPipeline(CamSamPipeline):
    """Foreground points from the classifier's Grad-CAM and the image (no background points).

    ``config``: the :class:`~camprompt.prompts.PromptConfig` knobs (default: its defaults updated
    with :attr:`default_knobs`); its ``use_sam`` lets SAM propose candidate regions too (decoder
    calls; cheap with cached embeddings, an encoder run per image without).
    """

    description = ("Grad-CAM says roughly where the evidence is; colour regions grown from its peaks and from a "
                   "grid, plus SAM's own proposals, are the candidate objects. The classifier judges each "
                   "candidate (its class should collapse when the region is painted over and survive when the "
                   "region's silhouette is shown alone), and one foreground point goes to the deepest pixel of "
                   "the winner's own colour, as far from every edge as possible.")

    #: Knobs this pipeline needs other than PromptConfig's defaults, applied when config/params omit them.
    default_knobs: Mapping[str, Any] = MappingProxyType({})

    def __init__(self, predictor: SamLike | None, classifier: nn.Module | None, *, cam: Mapping[str, Any] | None = None,
                 config: PromptConfig | None = None, batch_size: int = 32, progress: bool = False) -> None:
        super().__init__(predictor, classifier, cam=cam, progress=progress)
        self.config = config or self.config_from({})
        self._check_config()
        self.batch_size = int(batch_size)
        self._current: bytes | None = None

    def __call__(self, images: Tensor) -> Tensor:
        """bool (B,H,W) masks for normalised images (B,3,H,W): Grad-CAM, the object region it points at,
        foreground points deep inside that region, and SAM's mask for them."""
        images = check_images(images)
        uint8, _, choices = self.locate(images)
        fg = [self.foreground_points(image, choice) for image, choice in zip(uint8, choices)]
        return self.segment(images, *pack_points(fg))

    @classmethod
    def config_from(cls, params: Mapping[str, Any]) -> PromptConfig:
        """``PromptConfig.from_params`` of strategy ``params`` over this pipeline's :attr:`default_knobs`."""
        return PromptConfig.from_params({**cls.default_knobs, **params})

    def _check_config(self) -> None:
        if self.config.n_bg != 0:
            raise ValueError(f"{type(self).__name__} places foreground points only; set n_bg: 0 (got {self.config.n_bg})")

    @property
    def finder(self) -> PromptFinder:
        sam = self._sam_proposals if self.config.use_sam else None
        return PromptFinder(self.config, ClassifierJudge(self.classifier, normalize), sam)

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

    # -- the object region ------------------------------------------------------------------------
    def locate(self, images: Tensor) -> tuple[np.ndarray, np.ndarray, list[RegionChoice]]:
        """(uint8 images (B,H,W,3), heatmaps (B,H,W), chosen regions): the first half of ``__call__``."""
        uint8 = denormalize(images)
        heatmaps, targets = self.heatmaps(images)
        return uint8, heatmaps, self._search(uint8, images, heatmaps, targets)

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

    # -- points -------------------------------------------------------------------------------
    def foreground_points(self, image: np.ndarray, choice: RegionChoice) -> np.ndarray:
        """(n_fg,2) points (x, y) deep inside the chosen region, on its own colour (its seed if it is empty)."""
        return foreground_points(image, choice, self.config)

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
        return self._place(uint8, heatmaps, choices)

    def _place(self, uint8: np.ndarray, heatmaps: np.ndarray, choices: Sequence[RegionChoice]) -> tuple[np.ndarray, np.ndarray]:
        """Packed points of every image from its chosen region (foreground only here)."""
        return pack_points([self.foreground_points(image, choice) for image, choice in zip(uint8, choices)])

    # -- masks --------------------------------------------------------------------------------
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

    description = ("The same foreground point, plus background points that tell SAM where the object ends: "
                   "pixels a few pixels outside the chosen region, where Grad-CAM is cool and the colour clearly "
                   "differs from the region's, spread around it.")

    default_knobs = MappingProxyType({"n_bg": 2})

    def __call__(self, images: Tensor) -> Tensor:
        """bool (B,H,W) masks for normalised images (B,3,H,W): Grad-CAM, the object region it points at,
        foreground points inside it and background points around it, and SAM's mask for all of them."""
        images = check_images(images)
        uint8, heatmaps, choices = self.locate(images)
        fg = [self.foreground_points(image, choice) for image, choice in zip(uint8, choices)]
        bg = [self.background_points(*found) for found in zip(uint8, heatmaps, choices, fg)]
        return self.segment(images, *pack_points(fg, bg))

    def _check_config(self) -> None:
        if self.config.n_bg < 1:
            raise ValueError(f"{type(self).__name__} needs n_bg >= 1 (got {self.config.n_bg})")

    def background_points(self, image: np.ndarray, heat: np.ndarray, choice: RegionChoice, fg: np.ndarray) -> np.ndarray:
        """(<=n_bg,2) points (x, y) surely outside the chosen region; the fallback is the pixel farthest
        from the foreground points ``fg`` (also when the region is empty)."""
        cfg = self.config
        region = np.asarray(choice.region, bool)
        if region.any():
            bg = background_points(image, region, cfg.n_bg, heat=heat, margin=cfg.bg_margin,
                                   colour_tol=cfg.colour_tol, max_heat=cfg.bg_max_heat)
            if len(bg):
                return bg
        ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
        far = np.min([np.hypot(xs - x, ys - y) for x, y in fg], axis=0)
        row, col = np.unravel_index(int(np.argmax(far)), far.shape)
        return np.array([[float(col), float(row)]])

    def _place(self, uint8: np.ndarray, heatmaps: np.ndarray, choices: Sequence[RegionChoice]) -> tuple[np.ndarray, np.ndarray]:
        fg = [self.foreground_points(image, choice) for image, choice in zip(uint8, choices)]
        return pack_points(fg, [self.background_points(*found) for found in zip(uint8, heatmaps, choices, fg)])
