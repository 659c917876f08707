"""Reading one sample's files -- image, mask, label -- as any generator may have written them.

Our generator writes RGB PNG images, 1-bit PNG masks and class names in text files
(:mod:`camprompt.data`). Another author's split, or a compressed copy of ours, may encode the same
things otherwise, and none of that may change what is read:

- images as JPEG (``.jpg``/``.jpeg``, any case), or PNGs with alpha, a palette or grey levels;
- masks as 8-bit grey 0/255, as 0/1 (black to the eye), anti-aliased 0..255, RGB, a palette, or 16-bit;
- class names in another case, or padded with spaces.

Masks are thresholded here by one rule, :func:`mask_from_levels`, rather than by PIL's own 1-bit
conversion: that conversion dithers every level but pure black and white, so it reads a 0/1 mask
as empty and speckles an anti-aliased edge -- a silent wrong answer. Two image files with one name
are an error, not a guess.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from camprompt.artifacts import ArtifactError

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
MASK_SUFFIX = ".png"
LABEL_SUFFIX = ".txt"

__all__ = ["IMAGE_SUFFIXES", "LABEL_SUFFIX", "MASK_SUFFIX", "DatasetError", "image_files", "mask_from_levels",
           "read_image", "read_label", "read_mask", "stems"]


class DatasetError(ArtifactError):
    """The dataset on disk is missing, inconsistent or corrupt; the message says what to do."""


def _open(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DatasetError(f"{path} is not a readable image ({exc}); regenerate the dataset (dvc repro data)") from exc


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """uint8 (H,W,3) RGB of a PNG or JPEG file; alpha is dropped, grey and palette images become RGB."""
    img = _open(Path(path))
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: keep the top 8 bits, PIL would clip
        grey = np.asarray(img, np.uint32)
        img = Image.fromarray((grey >> 8 if grey.max() > 255 else grey).astype(np.uint8))
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def mask_from_levels(levels: np.ndarray) -> np.ndarray:
    """bool (H,W) of a grey-level mask: the pixels at or above half its full scale.

    The full scale is 1 for a mask of 0s and 1s, 255 for 8-bit levels and 65535 for 16-bit ones, so
    0/1, 0/255 and 0/65535 masks read alike and an anti-aliased edge is cut at its midpoint.
    """
    levels = np.asarray(levels)
    top = int(levels.max(initial=0))
    full = 1 if top <= 1 else 255 if top <= 255 else 65535
    return levels >= (1 if full == 1 else (full + 1) // 2)


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """bool (H,W) of a mask PNG in any encoding (1-bit, grey, RGB, palette, 16-bit); see the module docstring."""
    img = _open(Path(path))
    if img.mode == "1":
        return np.array(img, dtype=bool)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        return mask_from_levels(np.asarray(img, np.int64))
    return mask_from_levels(np.asarray(img.convert("L")))


def read_label(path: str | os.PathLike[str], classes: Sequence[str]) -> int:
    """Index in ``classes`` of the class name in a label file (case and surrounding spaces ignored)."""
    text = Path(path).read_text().strip()
    known = {c.lower(): i for i, c in enumerate(classes)}
    if text.lower() not in known:
        raise DatasetError(f"{path}: unknown class name {text!r}; expected one of {tuple(classes)}")
    return known[text.lower()]


def stems(folder: Path, suffix: str) -> set[str]:
    """Names of the files in ``folder`` ending in ``suffix`` (any case), hidden files left out."""
    return {p.name[: -len(suffix)] for p in folder.iterdir() if p.name.lower().endswith(suffix) and not p.name.startswith(".")}


def image_files(folder: Path) -> dict[str, Path]:
    """{name: path} of the images in ``folder``, of any of :data:`IMAGE_SUFFIXES`; one file per name."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        suffix = p.suffix.lower()
        if suffix not in IMAGE_SUFFIXES or p.name.startswith("."):
            continue
        name = p.name[: -len(suffix)]
        if name in found:
            raise DatasetError(f"{folder}: two images are named {name!r} ({found[name].name}, {p.name}); keep one")
        found[name] = p
    return found
