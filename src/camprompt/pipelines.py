"""Prompt-free SAM segmentation pipelines: images in, masks out -- no ground truth, no user clicks.

* :class:`BasicSamPipeline` -- one foreground point at the image centre (the assignment's baseline),
  and the machinery every pipeline shares: checking inputs, decoding with SAM, choosing its mask.
* :class:`GradCAMPeakPipeline` -- one foreground point at the classifier's Grad-CAM maximum (the
  classic CAM-to-prompt baseline), on :class:`CamSamPipeline` (the classifier and its Grad-CAM).
* The two pipelines that search for the object region live in :mod:`camprompt.search_pipelines`:
  ``ForegroundPointsPipeline`` (foreground points only) and ``ForegroundBackgroundPipeline``
  (foreground and background points).

Every pipeline is called on images only; nothing here can see a mask or a label. ``points()`` and
``segment()`` are the two halves of ``__call__`` so that the DVC stages (``points@S``, ``masks@S``)
and interactive use share one implementation. They take normalised tensors
(``camprompt.data.normalize``), like the classifier; ``points_rgb()`` and ``segment_rgb()`` are the
same work on uint8 RGB arrays, like ``SamPredictor.set_image``: placing points and decoding masks
need no torch and no search code, so the stages that only do that import neither.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from camprompt.conventions import DEFAULT_CAM_CONFIG, PAD_LABEL, check_point_batch, check_rgb_batch
from camprompt.data import check_normalized, denormalize, normalize
from camprompt.placement import pack_points
from camprompt.saliency import heatmap_peak

if TYPE_CHECKING:  # torch is imported where a model runs: placing points and decoding need none
    from torch import Tensor, nn

__all__ = [
    "SamLike",
    "BasicSamPipeline",
    "CamSamPipeline",
    "GradCAMPeakPipeline",
]


class SamLike(Protocol):
    """What the pipelines need from a predictor (segment-anything's SamPredictor has it)."""

    def set_image(self, image: np.ndarray) -> None: ...

    def predict(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                box: np.ndarray | None = None, multimask_output: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


# ------------------------------------------------------------------------------------------------
# The baseline
# ------------------------------------------------------------------------------------------------


class BasicSamPipeline:
    """SAM prompted with one foreground point at the image centre.

    ``segment`` un-normalises each image to uint8 RGB, sets it on the predictor (with embeddings
    attached to the predictor this is a look-up, not an encoder run), predicts SAM's three
    multimask proposals and keeps one (:meth:`select_mask`; here: SAM's best predicted IoU), as
    :meth:`finish_mask` returns it (here: unchanged).
    ``points_rgb``/``segment_rgb`` do the same on uint8 RGB arrays (B,H,W,3), without torch.
    """

    #: How the points are found, in plain words (:attr:`description` reads it).
    about = ("One foreground point at the centre of the image, whatever it shows. It uses neither the "
             "classifier nor the image content, so it finds the shape only when the shape covers the centre.")

    def __init__(self, predictor: SamLike | None, *, progress: bool = False) -> None:
        if predictor is not None and not (hasattr(predictor, "set_image") and hasattr(predictor, "predict")):
            raise TypeError(f"predictor must be SamPredictor-like (set_image, predict), got {type(predictor).__name__}")
        self._predictor = predictor
        self.progress = progress

    @property
    def description(self) -> str:
        """How this pipeline finds its prompts and its mask, in plain words (``points@S`` records it for the report)."""
        return self.about

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
        batch, _, height, width = check_normalized(images).shape
        return _centre_points(batch, height, width)

    def points_rgb(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`points` for uint8 RGB images (B,H,W,3)."""
        batch, height, width, _ = check_rgb_batch(images).shape
        return _centre_points(batch, height, width)

    # -- masks --------------------------------------------------------------------------------
    def __call__(self, images: Tensor) -> Tensor:
        """bool (B,H,W) masks for normalised images (B,3,H,W)."""
        return self.segment(images, *self.points(images))

    def segment(self, images: Tensor, point_coords: Any, point_labels: Any, regions: np.ndarray | None = None) -> Tensor:
        """bool (B,H,W): SAM's chosen mask for each image and its points (label -1 = padding, ignored).

        ``regions`` bool (B,H,W): the object regions the points came from, when known (a pipeline
        may use them to prompt with their box, :meth:`prompt_box`, and to choose among SAM's proposals).
        """
        return self.segment_with_scores(images, point_coords, point_labels, regions)[0]

    def segment_with_scores(self, images: Tensor, point_coords: Any, point_labels: Any,
                            regions: np.ndarray | None = None) -> tuple[Tensor, np.ndarray]:
        """Like :meth:`segment`, plus SAM's predicted IoU of each chosen mask (float32 (B,))."""
        import torch

        masks, scores = self.segment_rgb(denormalize(check_normalized(images)), point_coords, point_labels, regions)
        return torch.from_numpy(masks), scores

    def segment_rgb(self, images: np.ndarray, point_coords: Any, point_labels: Any,
                    regions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`segment_with_scores` for uint8 RGB images (B,H,W,3): (masks bool (B,H,W), scores float32 (B,))."""
        uint8 = check_rgb_batch(images)
        coords, labels = check_point_batch(point_coords, point_labels, uint8.shape[0])
        if regions is not None:
            regions = np.asarray(regions)
            if regions.shape != uint8.shape[:3] or regions.dtype != bool:
                raise ValueError(f"regions must be bool {uint8.shape[:3]} to match the images, got {regions.dtype} {regions.shape}")
        keep = labels != PAD_LABEL
        prompts = ([c[k].astype(np.float32) for c, k in zip(coords, keep)],
                   [lab[k].astype(np.int64) for lab, k in zip(labels, keep)],
                   [None] * len(uint8) if regions is None else [self.prompt_box(r) for r in regions])
        masks = np.zeros(uint8.shape[:3], bool)
        scores = np.zeros(len(uint8), np.float32)
        found = tqdm(_predict_each(self.predictor, uint8, *prompts), total=len(uint8), desc="sam masks", unit="img",
                     disable=not self.progress, leave=False)
        for i, (proposals, ious, _) in enumerate(found):
            proposals = np.asarray(proposals, bool)
            if proposals.ndim != 3 or proposals.shape[1:] != uint8.shape[1:3]:
                raise RuntimeError(f"the predictor returned masks {proposals.shape}, expected (K,{uint8.shape[1]},{uint8.shape[2]})")
            k = self.select_mask(uint8[i], proposals, np.asarray(ious, np.float64), coords[i][keep[i]], labels[i][keep[i]],
                                 None if regions is None else regions[i])
            masks[i], scores[i] = self.finish_mask(uint8[i], proposals[k]), float(ious[k])
        return masks, scores

    def prompt_box(self, region: np.ndarray) -> np.ndarray | None:
        """SAM's box prompt (4,) x0, y0, x1, y1 from the image's object region, asked beside the points
        alone (:func:`_predict_each` pools both answers); the baseline prompts with its points alone (None)."""
        return None

    def select_mask(self, image: np.ndarray, masks: np.ndarray, scores: np.ndarray,
                    coords: np.ndarray, labels: np.ndarray, region: np.ndarray | None = None) -> int:
        """Index of the proposal to keep: the baseline trusts SAM's predicted IoU."""
        return int(np.argmax(scores))

    def finish_mask(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The mask returned for the kept proposal ``mask`` of uint8 ``image``: the baseline returns SAM's as it is."""
        return mask


def _predict_each(predictor: SamLike, images: np.ndarray, coords: list[np.ndarray], labels: list[np.ndarray],
                  boxes: list[np.ndarray | None]) -> Iterator[Any]:
    """SAM's candidates for each image, in order: its multimask answer to the image's points, and where
    the image has a box, its answer to the points + box after it (six proposals, one pool).

    Why a pool: a box cuts off the background mask SAM may answer to a point inside a noisy shape,
    but a box drawn round a region smaller than its shape (anti-aliased edges, tiny shapes) cuts the
    shape's mask too; with both answers the pipeline's :meth:`~BasicSamPipeline.select_mask` votes.
    camprompt's backends decode several images at once (``predict_many``); any other predictor
    with ``SamPredictor``'s interface gets ``set_image`` once per image and ``predict`` per prompt.
    """
    jobs = [(i, box) for i, given in enumerate(boxes) for box in ((None,) if given is None else (None, given))]
    answers = _decode_jobs(predictor, images, coords, labels, jobs)
    for given in boxes:
        answer = next(answers)
        if given is not None:
            answer = tuple(np.concatenate([a, b]) for a, b in zip(answer, next(answers)))
        yield answer


def _decode_jobs(predictor: SamLike, images: np.ndarray, coords: list[np.ndarray], labels: list[np.ndarray],
                 jobs: list[tuple[int, np.ndarray | None]]) -> Iterator[Any]:
    """SAM's multimask answer to each job (image index, box or None) with that image's points, in order."""
    many = getattr(predictor, "predict_many", None)
    if many is not None:
        index = [i for i, _ in jobs]
        yield from many(images[index], [coords[i] for i in index], [labels[i] for i in index], multimask_output=True,
                        boxes=[box for _, box in jobs])
        return
    current = None
    for i, box in jobs:
        if i != current:
            predictor.set_image(images[i])
            current = i
        yield predictor.predict(point_coords=coords[i], point_labels=labels[i], box=box, multimask_output=True)


def _centre_points(batch: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The baseline's prompt, from the batch's shape alone (tensor and array layouts share it)."""
    coords = np.tile(np.array([[(width - 1) / 2.0, (height - 1) / 2.0]], np.float32), (batch, 1, 1))
    return coords, np.ones((batch, 1), np.int64)


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

        images = check_normalized(images)
        method = self.cam.get("method", "gradcam")
        if method not in CAM_METHODS:
            raise ValueError(f"unknown CAM method {method!r}; choose one of {sorted(CAM_METHODS)}")
        result = CAM_METHODS[method](self.classifier, self.cam["layers"]).compute(images)
        return result.heatmaps, result.targets

    def predict_classes(self, images: Tensor) -> np.ndarray:
        """The classifier's predicted class per image (the class Grad-CAM explains)."""
        from camprompt.devices import eval_no_grad

        with eval_no_grad(self.classifier) as device:
            return self.classifier(images.to(device)).argmax(1).cpu().numpy().astype(np.int64)

    @staticmethod
    def _normalised(uint8: np.ndarray, images: Tensor | None) -> Tensor:
        """The classifier's input: the caller's normalised batch, or made from the uint8 one (the *_rgb path)."""
        return normalize(uint8) if images is None else images

    def _cams(self, uint8: np.ndarray, images: Tensor | None, heatmaps: np.ndarray | None,
              targets: Sequence[int] | np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Validated heatmaps float32 (B,H,W) (computed when None) and targets (None: not known yet).

        ``uint8``: the checked images; ``images``: the same normalised, or None (then made only if needed).
        """
        batch, height, width = uint8.shape[:3]
        if heatmaps is None:
            heatmaps, cam_targets = self.heatmaps(self._normalised(uint8, images))
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

    about = ("One foreground point at the hottest pixel of the classifier's Grad-CAM, the classic way to "
             "turn a saliency map into a prompt. Grad-CAM's coarse maps often peak on or just beside the "
             "shape's edge, so this point can miss the shape; it is the baseline that shows what the "
             "region search adds.")

    def points(self, images: Tensor, heatmaps: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One foreground point per image at its heatmap's maximum: coords (B,1,2), labels (B,1).

        ``heatmaps`` (B,H,W): precomputed CAMs of this pipeline's configuration; computed when None.
        """
        images = check_normalized(images)
        return self._peaks(self._cams(denormalize(images), images, heatmaps, None)[0])

    def points_rgb(self, images: np.ndarray, heatmaps: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`points` for uint8 RGB images (B,H,W,3); with ``heatmaps`` given it imports no torch."""
        return self._peaks(self._cams(check_rgb_batch(images), None, heatmaps, None)[0])

    @staticmethod
    def _peaks(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return pack_points([heatmap_peak(h)[None] for h in heatmaps])
