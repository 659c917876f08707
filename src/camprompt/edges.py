"""Edge refinement: each pixel on a mask's outline goes to the side whose colour it carries.

Why: SAM sees a 64x48 image enlarged 16 times, and its mask edge often lands a pixel off the
shape's. On a small shape that pixel costs much of the IoU: a one-pixel ring around a 10-pixel
circle takes its IoU down to 0.7. A solid shape's edge pixel is a blend of its fill and the
background behind it (anti-aliasing, JPEG's smoothing), and it belongs to the shape when it carries
about half of the fill or more. So for every pixel within ``band`` of the mask's outline this
module estimates that share from the colours alone: the fill is the median colour of the mask's
interior, the background a Gaussian-weighted mean of the pixels just outside the mask (the
backgrounds are textured, so a local estimate), and the share is the pixel's position along the
line from the background colour to the fill. Pixels of at least ``threshold`` join the mask, the
others leave it. A pixel whose colour lies off that line by more than ``blend_tol`` times the
fill-background distance is no blend of the two but background texture (as around small shapes
on CIFAR-10's own 32x32 pictures), and it keeps SAM's side. SAM still decides what the object is:
only outline pixels change, where fill and background differ by ``min_gap`` or more, and only the
parts connected to SAM's mask are kept. ``rounds`` repeats the step from the refined outline, so
an edge two pixels off is reached too.

Pure numpy, OpenCV and SciPy; no labels.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

from camprompt.colour import median_colour
from camprompt.conventions import check_rgb_image, is_weight

__all__ = ["FILL_SHARE", "BLEND_TOL", "refine_edges", "check_edge_knobs"]

#: The fill share from which an outline pixel belongs to the shape (params `strategies.S.edge_threshold`),
#: and how far off the fill-background line a blend may lie; both chosen on val[100:300] with
#: ``edge_rounds`` (benchmarks/RESULTS.md 2026-12-02).
FILL_SHARE = 0.45
BLEND_TOL = 0.4


def refine_edges(image: np.ndarray, mask: np.ndarray, *, rounds: int = 1, threshold: float = FILL_SHARE,
                 sigma: float = 1.0, min_gap: float = 20.0, blend_tol: float = BLEND_TOL, band: int = 1) -> np.ndarray:
    """``mask`` bool (H,W) with its outline pixels reassigned by colour (see the module docstring).

    ``image`` uint8 (H,W,3). ``rounds``: refinement steps (0 = the mask as it is). ``threshold``: the
    fill share (0..1) from which an outline pixel belongs to the shape. ``sigma`` (px): the reach of
    the local background estimate. ``min_gap``: the least RGB distance between fill and background
    at which colour decides. ``blend_tol``: how far off the fill-background line (in units of their
    distance) a pixel may lie and still count as their blend. ``band`` (px): how far from the
    outline, inside and out, pixels may change. A mask too small to have an interior, or one that
    leaves no pixel outside, is returned unchanged.
    """
    image = check_rgb_image(image)
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != image.shape[:2]:
        raise ValueError(f"mask must be bool {image.shape[:2]} to match the image, got {mask.dtype} {mask.shape}")
    check_edge_knobs(rounds, threshold)
    _check_rule_knobs(sigma, min_gap, blend_tol, band)
    pixels = image.astype(np.float32)
    out = mask.copy()
    for _ in range(int(rounds)):
        out = _refine_once(pixels, out, float(threshold), float(sigma), float(min_gap), float(blend_tol), int(band))
    return out


def check_edge_knobs(rounds: int, threshold: float) -> None:
    """Raise ValueError, saying which and why, for a knob that params set (``edge_rounds``,
    ``edge_threshold``) out of its range; :func:`refine_edges` also checks its own."""
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 0:
        raise ValueError(f"rounds (params edge_rounds) must be a whole number >= 0 (0 = no refinement), got {rounds!r}")
    if not (is_weight(threshold) and threshold <= 1):
        raise ValueError(f"threshold (params edge_threshold) must be a fill share in [0, 1], got {threshold!r}")


def _check_rule_knobs(sigma: float, min_gap: float, blend_tol: float, band: int) -> None:
    """Raise ValueError for a knob of the colour rule itself (kept at the library's values by params)."""
    if isinstance(band, bool) or not isinstance(band, (int, np.integer)) or band < 1:
        raise ValueError(f"band must be a whole number of pixels >= 1, got {band!r}")
    if not is_weight(sigma, positive=True):
        raise ValueError(f"sigma must be a distance in pixels > 0, got {sigma!r}")
    if not is_weight(min_gap):
        raise ValueError(f"min_gap must be an RGB distance >= 0, got {min_gap!r}")
    if not is_weight(blend_tol):
        raise ValueError(f"blend_tol must be a ratio >= 0, got {blend_tol!r}")


def _refine_once(pixels: np.ndarray, mask: np.ndarray, threshold: float, sigma: float, min_gap: float,
                 blend_tol: float, band: int) -> np.ndarray:
    """One step of :func:`refine_edges` on float32 pixels (H,W,3)."""
    core = ndi.binary_erosion(mask)
    if not core.any():
        return mask
    outside = ~ndi.binary_dilation(mask)
    if not outside.any():
        return mask
    fill = median_colour(pixels, core).astype(np.float32)
    weight = cv2.GaussianBlur(outside.astype(np.float32), (0, 0), sigma)
    background = cv2.GaussianBlur(pixels * outside[..., None], (0, 0), sigma) / np.maximum(weight, 1e-6)[..., None]
    towards = fill - background
    gap = np.linalg.norm(towards, axis=-1)
    away = pixels - background
    share = (away * towards).sum(axis=-1) / np.maximum(gap ** 2, 1e-6)
    off_line = np.linalg.norm(away - share[..., None] * towards, axis=-1)
    outline = ndi.binary_dilation(mask, iterations=band) & ~ndi.binary_erosion(mask, iterations=band)
    decided = outline & (gap >= min_gap) & (weight > 1e-3) & (off_line <= blend_tol * gap)
    out = mask.copy()
    out[decided] = share[decided] >= threshold
    labels, count = ndi.label(out)
    if count > 1:  # keep only what touches SAM's own mask
        kept = np.unique(labels[out & mask])
        out = np.isin(labels, kept[kept > 0])
    return ndi.binary_fill_holes(out)
