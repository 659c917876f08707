"""The classifier's decision: the class with the highest mean probability over label-preserving views.

A single forward pass of the from-scratch classifier is sensitive to where a small shape sits and
to JPEG blocking, and a star and a diamond differ by a few pixels. Averaging its softmax over the
image, its mirror image (every class is left-right symmetric) and copies shifted by a few pixels
(zero fill, as in the training augmentation) is a cheaper ensemble than a second network. The same
views can also be shown enlarged (``scales``): the network then sees a small or soft-edged shape
over more pixels, where its filters tell a star from a diamond, while the views at the working size
keep what the enlargement blurs.

A found region adds a second opinion (``Decision.outline``): the no-shape judge (:mod:`camprompt.no_shape`)
reads the two-colour silhouette of the region the search chose, so it sees the shape's outline
without the background's texture or the JPEG blocks and noise around it, which are what make the
classifier's views miss a faint, small or degraded shape. Its class shares are added to the views'
mean with a small weight: it overrules the views only where they are unsure.

The decision is the classifier's answer, the class it names; Grad-CAM still explains the single
view's predicted class, whose evidence lies where the network looked in the image as given, and the
region search verifies that class (a decided class the single view disagrees with placed worse
points on JPEG-compressed val images, benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from camprompt.conventions import check_rgb_batch, is_weight

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Views", "Decision", "decide", "outline_shares", "with_outline", "answer"]


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
                is_weight(k, positive=True) for k in self.scales):
            raise ValueError(f"decision.scales must be a list of factors > 0 (e.g. [1.5]; [] = none), got {self.scales!r}")
        object.__setattr__(self, "scales", tuple(float(k) for k in self.scales))

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


@dataclass(frozen=True)
class Decision:
    """How the classifier's answer is made (params ``decision``): the mean class probabilities over
    ``views``, plus ``outline`` times the no-shape judge's class shares for the silhouette of the
    region that the search ``search`` (a params ``searches`` entry) found in each image. ``outline``
    0 = the views alone, and no judge or region is needed."""

    views: Views = Views()
    outline: float = 0.0
    search: str = "default"

    def __post_init__(self) -> None:
        if not is_weight(self.outline):
            raise ValueError(f"decision.outline must be a weight >= 0 (0 = the views alone), got {self.outline!r}")
        if not isinstance(self.search, str) or not self.search:
            raise ValueError(f"decision.search must name a params `searches` entry, got {self.search!r}")
        object.__setattr__(self, "outline", float(self.outline))

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> Decision:
        """From params ``decision`` (``hflip``, ``shift``, ``scales``, ``outline``, ``search``); None or
        {} = the single view alone; an unknown key is an error."""
        params = dict(params or {})
        view_keys, own_keys = {"hflip", "shift", "scales"}, {"outline", "search"}
        unknown = set(params) - view_keys - own_keys
        if unknown:
            raise ValueError(f"unknown decision knobs {sorted(unknown)}; known: {sorted(view_keys | own_keys)}")
        return cls(Views(**{k: params[k] for k in view_keys & set(params)}), **{k: params[k] for k in own_keys & set(params)})


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
    from camprompt.classifier import predict_probabilities
    from camprompt.input_size import input_scaled

    shown = views.of(images)  # the same views at every scale: the model resizes them

    def summed() -> np.ndarray:
        total = None
        for view in shown:
            probs = predict_probabilities(model, view, batch_size)
            total = probs if total is None else total + probs
        assert total is not None
        return total

    total = summed()
    for scale in views.scales:
        with input_scaled(model, scale, images.shape[1:3]):
            total = total + summed()
    mean = (total / views.count).astype(np.float32)
    return mean.argmax(1).astype(np.int64), mean


def outline_shares(judge: nn.Module, images: np.ndarray, regions: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """float32 (N, classes): the no-shape judge's probabilities for each image's region (bool (N,H,W))
    shown alone as a two-colour silhouette (:func:`camprompt.judge.isolate_region`), its last output
    ("no shape") left out and the rest rescaled to sum to 1 -- which shape the outline is, whatever
    the judge thinks of whether it is one. An empty region gets a row of zeros: no opinion."""
    from camprompt.classifier import predict_probabilities
    from camprompt.judge import NO_SHAPE, check_no_shape_judge, isolate_region

    check_no_shape_judge(judge)
    images, regions = check_rgb_batch(images), np.asarray(regions, bool)
    if regions.shape != images.shape[:3]:
        raise ValueError(f"regions must be bool (N,H,W) matching the images {images.shape[:3]}, got {regions.shape}")
    found = regions.reshape(len(regions), -1).any(1)
    out = np.zeros((len(images), NO_SHAPE), np.float32)
    if found.any():
        silhouettes = np.stack([isolate_region(image, region) for image, region in zip(images[found], regions[found])])
        probs = predict_probabilities(judge, silhouettes, batch_size).astype(np.float64)[:, :NO_SHAPE]
        out[found] = probs / np.maximum(probs.sum(1, keepdims=True), 1e-12)
    return out


def answer(model: nn.Module, images: np.ndarray, decision: Decision, judge: nn.Module | None = None,
           regions: np.ndarray | None = None, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's answer under ``decision``: the class int64 (N,) and its probabilities float32
    (N,K) -- the views' mean (:func:`decide`) and, when ``decision.outline`` > 0, the judge's
    :func:`outline_shares` for the found ``regions`` weighted by it, each row rescaled to sum to 1 (an
    image without a region keeps the views' probabilities)."""
    decided, probs = decide(model, images, decision.views, batch_size)
    if not decision.outline:
        return decided, probs
    if judge is None or regions is None:
        raise ValueError(f"decision.outline {decision.outline:g} weighs the no-shape judge's reading of the regions "
                         f"search {decision.search!r} found: pass judge= and regions= (or set decision.outline: 0)")
    return with_outline(probs, outline_shares(judge, images, regions, batch_size), decision.outline)


def with_outline(probs: np.ndarray, shares: np.ndarray, weight: float) -> tuple[np.ndarray, np.ndarray]:
    """(class int64 (N,), probabilities float32 (N,K)) of the views' mean ``probs`` plus ``weight`` times
    the :func:`outline_shares` ``shares``, each row rescaled to sum to 1 (a row of zero shares keeps ``probs``)."""
    shares = weight * np.asarray(shares, np.float64)
    mixed = (np.asarray(probs, np.float64) + shares) / (1 + shares.sum(1, keepdims=True))
    return mixed.argmax(1).astype(np.int64), mixed.astype(np.float32)
