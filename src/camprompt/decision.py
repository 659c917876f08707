"""The classifier's decision: the class with the highest mean probability over label-preserving views.

A single forward pass of the from-scratch classifier is sensitive to where a small shape sits and
to JPEG blocking, and a star and a diamond differ by a few pixels. Averaging its softmax over the
image, its mirror image (every class is left-right symmetric) and copies shifted by a few pixels
(zero fill, as in the training augmentation) is a cheaper ensemble than a second network. The same
views can also be shown enlarged (``scales``): the network then sees a small or soft-edged shape
over more pixels, where its filters tell a star from a diamond, while the views at the working size
keep what the enlargement blurs.

The decision is the classifier's answer, the class it names; Grad-CAM still explains the single
view's predicted class, whose evidence lies where the network looked in the image as given, and the
region search verifies that class (a decided class the single view disagrees with placed worse
points on JPEG-compressed val images, benchmarks/RESULTS.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import TYPE_CHECKING, Any

import numpy as np

from camprompt.conventions import check_rgb_batch

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Views", "decide"]


@dataclass(frozen=True)
class Views:
    """Which views of each image the decision averages: the image itself, its mirror image when
    ``hflip``, and, when ``shift`` > 0, copies of each moved by ``shift`` pixels left, right, up
    and down (uncovered pixels black); all of them once more for each factor in ``scales``, shown
    to the classifier that many times its working size (bilinear, :mod:`camprompt.input_size`)."""

    hflip: bool = False
    shift: int = 0
    scales: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.hflip, (bool, np.bool_)):
            raise ValueError(f"decision.hflip must be true or false, got {self.hflip!r}")
        if isinstance(self.shift, bool) or not isinstance(self.shift, (int, np.integer)) or self.shift < 0:
            raise ValueError(f"decision.shift must be an integer >= 0 (pixels), got {self.shift!r}")
        if isinstance(self.scales, (str, bytes)) or not isinstance(self.scales, (Sequence, np.ndarray)) or not all(
                isinstance(k, Real) and not isinstance(k, bool) and math.isfinite(k) and k > 0 for k in self.scales):
            raise ValueError(f"decision.scales must be a list of factors > 0 (e.g. [1.5]; [] = none), got {self.scales!r}")
        object.__setattr__(self, "scales", tuple(float(k) for k in self.scales))

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> Views:
        """From params ``decision`` (``hflip``, ``shift``, ``scales``); None or {} = the single view; an
        unknown key is an error."""
        params = dict(params or {})
        unknown = set(params) - {"hflip", "shift", "scales"}
        if unknown:
            raise ValueError(f"unknown decision knobs {sorted(unknown)}; known: ['hflip', 'scales', 'shift']")
        return cls(**params)

    @property
    def count(self) -> int:
        """How many views each image gets."""
        return (2 if self.hflip else 1) * (5 if self.shift else 1) * (1 + len(self.scales))

    def of(self, images: np.ndarray) -> list[np.ndarray]:
        """The views of a uint8 (N,H,W,3) batch, each a batch of the same shape; the first is the batch itself."""
        images = check_rgb_batch(images)
        bases = [images, np.ascontiguousarray(images[:, :, ::-1])] if self.hflip else [images]
        if not self.shift:
            return bases
        moves = [(0, 0), (self.shift, 0), (-self.shift, 0), (0, self.shift), (0, -self.shift)]
        return [_shifted(base, dx, dy) for base in bases for dx, dy in moves]


def _shifted(images: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The batch moved by (dx, dy) pixels (x right, y down); uncovered pixels are black."""
    if dx == 0 and dy == 0:
        return images
    h, w = images.shape[1:3]
    out = np.zeros_like(images)
    if abs(dx) < w and abs(dy) < h:
        out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = \
            images[:, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
    return out


def decide(model: nn.Module, images: np.ndarray, views: Views, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The decided class int64 (N,) and the mean class probabilities float32 (N,K) of uint8 images (N,H,W,3)."""
    from camprompt.classifier import predict_logits
    from camprompt.input_size import input_scaled

    shown = views.of(images)  # the same views at every scale: the model resizes them

    def summed() -> np.ndarray:
        total = None
        for view in shown:
            probs = predict_logits(model, view, batch_size).softmax(1).numpy()
            total = probs if total is None else total + probs
        assert total is not None
        return total

    total = summed()
    for scale in views.scales:
        with input_scaled(model, scale, images.shape[1:3]):
            total = total + summed()
    mean = (total / views.count).astype(np.float32)
    return mean.argmax(1).astype(np.int64), mean
