"""The classifier as a judge of candidate regions: how its answer changes when a region is painted
over, and what it says about the region's silhouette alone.

Why: a colour region or SAM proposal can be the shape, a part of it, the shape glued to some
background, or background. Removing the real shape collapses the predicted class (nothing
confident is left), removing background does not; and only the whole shape's outline, shown alone,
is a confident shape. These probes carry most of the region search's evidence (:mod:`camprompt.search`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from camprompt.colour import median_colour
from camprompt.shapes import CLASSES

if TYPE_CHECKING:  # torch is imported where the classifier runs
    import torch
    from torch import nn

__all__ = ["NO_SHAPE", "delete_region", "isolate_region", "check_no_shape_judge", "ClassifierJudge"]

NO_SHAPE = len(CLASSES)  # the last output of the no-shape judge (camprompt.no_shape): no shape


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
    out[...] = np.round(median_colour(image, ~mask)).astype(np.uint8)
    out[mask] = np.round(median_colour(image, mask)).astype(np.uint8)
    return out


def check_no_shape_judge(model: Any) -> Any:
    """``model`` if it is a no-shape judge (``len(CLASSES) + 1`` outputs, the last "none"); else a clear error."""
    outputs = getattr(getattr(model, "fc", None), "out_features", None)
    if outputs != NO_SHAPE + 1:
        raise ValueError(f"the no-shape judge must have {NO_SHAPE + 1} outputs ({', '.join(CLASSES)}, none), got "
                         f"{outputs}; train one with camprompt.no_shape.train_no_shape_judge (`dvc repro train_judge`)")
    return model


class ClassifierJudge:
    """Scores candidate regions by how the classifier reacts when they are removed or kept alone, and
    (with ``no_shape``) whether the no-shape judge calls each silhouette a shape.

    ``normalize`` maps uint8 (N,H,W,3) to the model's input (``camprompt.data.normalize``). All
    probes of a batch of images go through the network together in chunks of ``batch_size``.
    """

    def __init__(self, model: nn.Module, normalize: Callable[[np.ndarray], torch.Tensor], batch_size: int = 256,
                 no_shape: nn.Module | None = None) -> None:
        self.model, self.normalize, self.batch_size, self.no_shape = model, normalize, int(batch_size), no_shape

    def probabilities(self, images: np.ndarray, model: nn.Module | None = None) -> np.ndarray:
        """Softmax class probabilities float64 (N,K) of uint8 images (N,H,W,3), eval mode, of ``model``
        (default: the classifier)."""
        from camprompt.classifier import predict_probabilities

        model = self.model if model is None else model
        return predict_probabilities(model, images, self.batch_size, normalize=self.normalize).astype(np.float64)

    def evidence(self, jobs: Sequence[tuple[np.ndarray, np.ndarray, int]]) -> list[dict[str, np.ndarray]]:
        """For each job (image uint8 (H,W,3), masks bool (M,H,W), class c) -> {name: (M,)} with

        ``drop`` = p(c|image) - p(c|region inpainted) (removing the object collapses its class),
        ``cleared`` = 1 - max_k p(k|region inpainted) (nothing shape-like is left once it is gone),
        ``keep`` = max_k p(k|the region's silhouette alone) (its outline alone is a confident shape;
        the max over classes so that a misclassified image can still be segmented), ``agree`` =
        p(c|the region's silhouette alone) (its outline is the shape the image is taken for), and with a
        ``no_shape`` judge (:mod:`camprompt.no_shape`, its last output "no shape") ``keep_judge`` =
        1 - p(no shape|the region's silhouette alone).
        """
        probes: list[np.ndarray] = []
        silhouettes: list[np.ndarray] = []  # the probes a no-shape judge sees too
        for image, masks, _ in jobs:
            probes.append(image[None])
            probes.extend(delete_region(image, m)[None] for m in masks)
            alone = [isolate_region(image, m)[None] for m in masks]
            probes.extend(alone)
            silhouettes.extend(alone)
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
                "agree": alone[:, int(target)],
            })
            start += 1 + 2 * m
        if self.no_shape is not None:
            verdict = (1.0 - self.probabilities(np.concatenate(silhouettes), self.no_shape)[:, -1]
                       if silhouettes else np.zeros(0))
            splits = np.cumsum([len(masks) for _, masks, _ in jobs])[:-1]
            for ev, part in zip(out, np.split(verdict, splits)):
                ev["keep_judge"] = part
        return out
