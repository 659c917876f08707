"""The shapes of the benchmark and the rules that paint them onto a background.

Five classes -- circle, square, triangle, star, diamond -- each a solid colour with an exact
binary mask. The rules, and why each exists:

* Shapes are rasterised on pixel centres with no anti-aliasing, so the mask is *exactly* the set of
  pixels painted with the fill colour -- no ambiguous edge pixels in the segmentation ground truth.
* A shape spans ``min_shape_size``..``max_shape_size`` pixels (its bounding box), is axis-aligned
  (a diamond is a square turned 45 degrees; triangle and star point up) and may sit anywhere as long
  as at least ``min_inside`` of its area lies inside the frame (partly cut shapes are realistic, but a
  sliver would make the label unknowable).
* **Minimum-contrast rule.** The fill colour must stand out from the background it covers: the 10th
  percentile, over the covered background pixels, of the Euclidean RGB distance (0..441) between the
  fill colour and the pixel must be at least ``min_contrast`` (default 60). So at least 90% of the
  shape differs clearly from what it hides; a plain mean-colour rule would let a shape vanish into
  half of a two-tone background. In addition the fill colour never occurs anywhere in the image's
  background, so ``(image == colour).all(-1)`` recovers the mask exactly. Colours are drawn uniformly
  at random; when 64 draws fail, the eight corners of the RGB cube are tried, then a new placement.
* Splits never share a background image: one seeded permutation of the source is cut into disjoint
  consecutive ranges, one per split.
* Everything is derived from ``numpy.random.default_rng([seed, split, index])``, so the same params
  give byte-identical files, and the whole dataset is written into a temporary directory that is
  renamed into place only when complete (``camprompt.artifacts.atomic_path``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.path import Path as PolygonPath

__all__ = ["CLASSES", "CONTRAST_PERCENTILE", "render_shape", "colour_contrast", "compose_image"]

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond")
CONTRAST_PERCENTILE = 10.0
_COLOUR_DRAWS = 64
_PLACEMENT_TRIES = 200
_CUBE_CORNERS = np.array([[r, g, b] for r in (0, 255) for g in (0, 255) for b in (0, 255)], dtype=np.uint8)


def _polygon(cls: str, cx: float, cy: float, size: float) -> np.ndarray | None:
    """Vertices (x, y) of the polygonal classes, bounding box ``size`` wide; None for the others."""
    h = size / 2.0
    if cls == "triangle":  # isosceles, apex up, as tall as wide
        return np.array([[cx, cy - h], [cx + h, cy + h], [cx - h, cy + h]])
    if cls == "star":  # five points, one straight up; inner radius 0.45 keeps the arms visible at 10 px
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, h, 0.45 * h)
        return np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    return None


def render_shape(cls: str, cx: float, cy: float, size: float, width: int, height: int) -> np.ndarray:
    """Crisp boolean mask (height, width) of one shape centred at (cx, cy), spanning ``size`` pixels.

    Pixel (x, y) is inside when its centre is, so there is no anti-aliasing and the mask is exact.
    Coordinates may lie outside the frame (the shape is then clipped).
    """
    if cls not in CLASSES:
        raise ValueError(f"unknown shape class {cls!r}; expected one of {CLASSES}")
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    h = size / 2.0
    if cls == "circle":
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= h * h
    if cls == "square":
        return (np.abs(xs - cx) <= h) & (np.abs(ys - cy) <= h)
    if cls == "diamond":
        return np.abs(xs - cx) + np.abs(ys - cy) <= h
    verts = _polygon(cls, cx, cy, size)
    points = np.stack([xs.ravel(), ys.ravel()], axis=1)
    return PolygonPath(verts).contains_points(points).reshape(height, width)


def _inside_fraction(cls: str, cx: float, cy: float, size: float, width: int, height: int) -> tuple[np.ndarray, float]:
    """Mask in the frame and the fraction of the full shape's area that it keeps."""
    pad = int(np.ceil(size)) + 2
    big = render_shape(cls, cx + pad, cy + pad, size, width + 2 * pad, height + 2 * pad)
    mask = big[pad : pad + height, pad : pad + width]
    total = int(big.sum())
    return mask, (float(mask.sum()) / total if total else 0.0)


def colour_contrast(colour: np.ndarray, covered: np.ndarray) -> float:
    """The contrast rule's statistic: 10th percentile of RGB distance from ``colour`` to ``covered`` (K,3)."""
    dist = np.linalg.norm(covered.astype(np.float64) - colour.astype(np.float64), axis=1)
    return float(np.percentile(dist, CONTRAST_PERCENTILE))


def _colour_ok(colour: np.ndarray, covered: np.ndarray, outside: np.ndarray, min_contrast: float) -> bool:
    if colour_contrast(colour, covered) < min_contrast:
        return False
    return not bool((outside == colour).all(axis=1).any())


def _pick_colour(rng: np.random.Generator, background: np.ndarray, mask: np.ndarray, min_contrast: float) -> np.ndarray | None:
    covered, outside = background[mask], background[~mask]
    for colour in rng.integers(0, 256, size=(_COLOUR_DRAWS, 3), dtype=np.uint8):
        if _colour_ok(colour, covered, outside, min_contrast):
            return colour
    for colour in _CUBE_CORNERS:
        if _colour_ok(colour, covered, outside, min_contrast):
            return colour
    return None


def compose_image(
    rng: np.random.Generator, background: np.ndarray, cls: str, *,
    min_shape_size: float, max_shape_size: float, min_inside: float, min_contrast: float,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Paint one random shape of class ``cls`` on ``background`` (H,W,3) -> (image, mask, info)."""
    height, width = background.shape[:2]
    for _ in range(_PLACEMENT_TRIES):
        size = float(rng.uniform(min_shape_size, max_shape_size))
        cx = float(rng.uniform(-size / 2, width - 1 + size / 2))
        cy = float(rng.uniform(-size / 2, height - 1 + size / 2))
        mask, inside = _inside_fraction(cls, cx, cy, size, width, height)
        if inside < min_inside or not mask.any():
            continue
        colour = _pick_colour(rng, background, mask, min_contrast)
        if colour is None:
            continue
        image = background.copy()
        image[mask] = colour
        info = {"size": size, "center": [cx, cy], "colour": colour.tolist(), "inside": inside}
        return image, mask, info
    raise RuntimeError(
        f"could not place a {cls} with min_inside={min_inside} and min_contrast={min_contrast} after "
        f"{_PLACEMENT_TRIES} tries; lower data.min_contrast or data.min_inside in params.yaml"
    )
