"""The rules every module shares, each in one place: point labels, the pixel a point falls on, the
checks of images and heatmaps, and the Grad-CAM a strategy uses when it names none.

Pure numpy, so that the stages that only place points, decode masks or score them need no torch.
(``camprompt.gradcam`` keeps its own tensor checks: it imports no camprompt module by design.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import fields
from numbers import Real
from types import MappingProxyType
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "FG_LABEL",
    "BG_LABEL",
    "PAD_LABEL",
    "POINT_LABELS",
    "DEFAULT_CAM",
    "DEFAULT_CAM_CONFIG",
    "point_pixels",
    "check_rgb_image",
    "check_rgb_batch",
    "check_heatmap",
    "check_point_batch",
    "knobs_from_params",
    "is_weight",
]

# Point labels, as SAM's prompt encoder reads them: 1 foreground, 0 background, -1 padding (ignored).
FG_LABEL, BG_LABEL, PAD_LABEL = 1, 0, -1
POINT_LABELS = (FG_LABEL, BG_LABEL, PAD_LABEL)

#: The gradcam config (params ``gradcam.configs``) a strategy or search uses when it names none,
#: and what it holds, for pipelines built without params.
DEFAULT_CAM = "layer2"
DEFAULT_CAM_CONFIG: Mapping[str, Any] = MappingProxyType({"method": "gradcam", "layers": ("layer2",)})


def point_pixels(coords: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K,2) float (x, y) -> (rows, cols, valid): the pixel each point falls on.

    Points are (x, y) in image pixels with pixel centres at integer coordinates (SamPredictor's
    convention), so a point belongs to the pixel whose centre is nearest: ``col = floor(x + 0.5)``,
    ``row = floor(y + 0.5)`` (2.5 -> pixel 3, -0.5 -> pixel 0, ``W - 0.5`` -> column ``W``, outside).
    ``valid`` is False for a point whose pixel lies outside an image of ``shape`` (H, W) or whose
    coordinates are not finite; rows/cols are clipped into the image so that indexing stays safe.
    """
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"point coordinates must be (K,2) as (x, y), got shape {coords.shape}")
    height, width = int(shape[0]), int(shape[1])
    finite = np.isfinite(coords).all(axis=1)
    safe = np.where(finite[:, None], coords, -1.0)
    cols = np.floor(safe[:, 0] + 0.5).astype(np.int64)
    rows = np.floor(safe[:, 1] + 0.5).astype(np.int64)
    valid = finite & (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    return np.clip(rows, 0, max(height - 1, 0)), np.clip(cols, 0, max(width - 1, 0)), valid


def check_rgb_image(image: Any) -> np.ndarray:
    """A uint8 RGB image (H,W,3), or an error that says what is wrong with ``image`` and how to fix it."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy uint8 array (H,W,3) RGB, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"image must have dtype uint8 (0..255), got {image.dtype}; convert with np.clip(x, 0, 255).astype(np.uint8)")
    if image.ndim != 3:
        hint = " (grayscale? stack it to 3 channels)" if image.ndim == 2 else ""
        raise ValueError(f"image must have shape (H,W,3), got {image.shape}{hint}")
    if image.shape[2] != 3:
        hint = " (drop the alpha channel: image[..., :3])" if image.shape[2] == 4 else ""
        raise ValueError(f"image must have 3 channels (H,W,3), got {image.shape}{hint}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: {image.shape}")
    return image


def check_rgb_batch(images: Any) -> np.ndarray:
    """A uint8 RGB batch (B,H,W,3) -- one ``SamPredictor.set_image`` image per row -- or a clear error."""
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


def check_heatmap(heat: Any, shape: tuple[int, int] | None = None) -> np.ndarray:
    """One heatmap (H,W) of finite numbers -> a float64 copy; ``shape`` (H,W) if it must match an image."""
    heat = np.asarray(heat, dtype=np.float64)
    if heat.ndim != 2 or min(heat.shape) == 0:
        raise ValueError(f"a heatmap must be a non-empty (H,W) array, got shape {heat.shape}")
    if shape is not None and heat.shape != tuple(shape):
        raise ValueError(f"heatmap is {heat.shape} but the image is {tuple(shape)}; compute it at image resolution")
    if not np.isfinite(heat).all():
        raise ValueError("heatmap holds NaN or inf; the CAM computation failed upstream (check the classifier)")
    return heat


_Knobs = TypeVar("_Knobs")


def knobs_from_params(cls: type[_Knobs], params: Mapping[str, Any], what: str, ignore: Sequence[str] = ()) -> _Knobs:
    """The dataclass ``cls`` from a params mapping (YAML lists become tuples); a key that is not one of
    its fields (or ``ignore``) is an error, since a typo must not be silently ignored."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(params) - known - set(ignore)
    if unknown:
        raise ValueError(f"unknown {what} knobs {sorted(unknown)}; known: {sorted(known)}")
    return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in params.items() if k in known})


def is_weight(value: Any, *, positive: bool = False) -> bool:
    """Whether ``value`` is a finite real number >= 0 (> 0 when ``positive``), a bool not counting as one:
    the rule for every weight and scale factor read from params (YAML's ``true`` is no number)."""
    return (isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
            and (value > 0 if positive else value >= 0))


def _to_numpy(x: Any) -> Any:
    """A tensor's values on the CPU (anything else passes through)."""
    return x.detach().cpu().numpy() if callable(getattr(x, "detach", None)) else x


def check_point_batch(point_coords: Any, point_labels: Any, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """coords (B,N,2) float (x, y) and labels (B,N) int (1 fg, 0 bg, -1 padding) -> numpy, validated."""
    coords = np.asarray(_to_numpy(point_coords), dtype=np.float64)
    labels = np.asarray(_to_numpy(point_labels))
    if coords.ndim != 3 or coords.shape[0] != batch or coords.shape[2] != 2:
        raise ValueError(f"point_coords must be ({batch},N,2) as (x, y), got {coords.shape}")
    if labels.shape != coords.shape[:2]:
        raise ValueError(f"point_labels must be {coords.shape[:2]} to match point_coords, got {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"point_labels must be integers (1 fg, 0 bg, -1 padding), got {labels.dtype}")
    bad = ~np.isin(labels, POINT_LABELS)
    if bad.any():
        raise ValueError(f"point_labels may only hold 1 (fg), 0 (bg) or -1 (padding), got {np.unique(labels[bad])}")
    real = labels != PAD_LABEL
    if not real.any(axis=1).all():
        empty = np.flatnonzero(~real.any(axis=1))
        raise ValueError(f"images {empty[:5].tolist()} have only padding points; SAM needs at least one point each")
    if not np.isfinite(coords[real]).all():
        raise ValueError("point_coords hold NaN or inf for non-padding points")
    return coords, labels.astype(np.int64)
