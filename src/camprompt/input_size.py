"""The classifier's working size: inputs of any other resolution are resized to it inside the model.

Why: the classifier is a CNN trained on images of one size (params ``data.height`` x ``data.width``,
48x64), so its filters know 10-20 pixel shapes at that scale. Another generator's split at 32x32
or 128x96 shows the same shapes at another scale, where the network has never learned them and
its answers fall far below those at its own size. Resizing every input to the trained size first,
as an ImageNet model's ``Resize`` transform does, keeps the network in its domain.

A forward pre-hook does it inside the model, so everything that calls the classifier sees one
resized input: its answer, the decision views, the region search's probes, and Grad-CAM. Grad-CAM
scales its maps to the size of the input it was given, so the heatmaps stay in the caller's pixels.
Inputs already at the trained size pass through untouched, so results at that size do not change.

The region search has the same blind spot in its own pixels: its proposal knobs (the seed grid's
spacing, the smallest candidate area) were chosen on images at the trained size, so a 32x32 image's
5-10 pixel shapes can fall between the grid's seeds and below the smallest area.
:func:`scale_search` scales those knobs with the image, as the hook scales the classifier's input.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from numbers import Integral
from typing import Any, TypeVar

import torch.nn.functional as F
from torch import Tensor, nn

from camprompt.conventions import is_weight

__all__ = ["fit_input_size", "input_scaled", "scale_search", "trained_size", "working_size"]

_HOOK = "_camprompt_input_size_hook"
_Config = TypeVar("_Config")  # a camprompt.search.SearchConfig (not imported: the classifier needs no search)


def trained_size(data_params: Mapping[str, Any]) -> tuple[int, int]:
    """(H, W) the train stage trains on: params ``data.height`` x ``data.width``."""
    try:
        size = (data_params["height"], data_params["width"])
    except (KeyError, TypeError):
        raise ValueError("params data.height and data.width must both be set: they are the size the classifier "
                         "is trained on") from None
    return _check_size(size)


def _check_size(size: Sequence[Any], what: str = "the classifier's input size") -> tuple[int, int]:
    if len(size) != 2 or not all(isinstance(s, Integral) and not isinstance(s, bool) and s >= 1 for s in size):
        raise ValueError(f"{what} must be two positive whole numbers (H, W), got {tuple(size)}")
    return int(size[0]), int(size[1])


def fit_input_size(model: nn.Module, size: Sequence[int]) -> nn.Module:
    """Resize every input (B,C,H,W) of another (H, W) to ``size`` before ``model`` runs; return ``model``.

    Bilinear with antialiasing, so downscaled inputs do not alias. The hook is registered on
    ``model`` itself (layer names, and so Grad-CAM's target layers, are unchanged); calling this
    again replaces the previous size. ``model.camprompt_input_size`` records it.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    height, width = _check_size(tuple(size))
    _unfit(model)

    def resize(_: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        images: Tensor = args[0]
        if images.shape[-2:] == (height, width):
            return None
        if images.ndim != 4:
            raise ValueError(f"the classifier takes images (B,C,H,W), got shape {tuple(images.shape)}")
        resized = F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
        return (resized, *args[1:])

    setattr(model, _HOOK, model.register_forward_pre_hook(resize))
    model.camprompt_input_size = (height, width)  # type: ignore[assignment]
    return model


@contextmanager
def input_scaled(model: nn.Module, scale: float, image_size: Sequence[int]) -> Iterator[nn.Module]:
    """Within the block, ``model`` resizes every input to ``scale`` times its working size (the size
    it was fitted to, else ``image_size``, the (H, W) of the images it is about to see); afterwards
    it is fitted as before, or unfitted again."""
    if not is_weight(scale, positive=True):
        raise ValueError(f"the input scale must be a factor > 0 (e.g. 1.5), got {scale!r}")
    base = working_size(model)
    height, width = base or _check_size(tuple(image_size), "the image size")
    fit_input_size(model, (max(1, round(height * scale)), max(1, round(width * scale))))
    try:
        yield model
    finally:
        if base is not None:
            fit_input_size(model, base)
        else:
            _unfit(model)


def _unfit(model: nn.Module) -> None:
    """Remove what :func:`fit_input_size` gave ``model``, if anything."""
    hook = getattr(model, _HOOK, None)
    if hook is not None:
        hook.remove()
        delattr(model, _HOOK)
        del model.camprompt_input_size


def working_size(model: nn.Module) -> tuple[int, int] | None:
    """(H, W) that :func:`fit_input_size` gave ``model``, or None when it was never fitted."""
    size = getattr(model, "camprompt_input_size", None)
    return None if size is None else _check_size(tuple(size))


def scale_search(config: _Config, image_size: Sequence[int], trained: Sequence[int] | None) -> _Config:
    """A search config (:class:`camprompt.search.SearchConfig`) with its pixel knobs scaled to ``image_size``.

    The knobs are set for images at the classifier's ``trained`` (H, W), where they were chosen; at
    another size the shapes scale with the frame, so ``grid_step`` (a length) scales with
    s = sqrt(image area / trained area) and ``min_area`` with s squared, rounded, at least 1 (a
    ``grid_step`` of 0, the grid switched off, stays 0). At the trained size, or with
    ``trained`` None (a classifier that was never fitted), ``config`` comes back unchanged.
    """
    height, width = _check_size(tuple(image_size), "the image size")
    if trained is None:
        return config
    th, tw = _check_size(tuple(trained))
    if (height, width) == (th, tw):
        return config
    scale = math.sqrt(height * width / (th * tw))
    step = max(1, round(config.grid_step * scale)) if config.grid_step > 0 else 0
    return dataclasses.replace(config, grid_step=step, min_area=max(1, round(config.min_area * scale * scale)))
