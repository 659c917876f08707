"""What an image's colours say about a region, label-free: colour distances, regions grown by
colour, and how much a region looks like one solid painted object.

Distances are Euclidean in RGB (0..441). Nothing here assumes exactly-one-colour pixels: medians and
tolerances absorb sensor noise and JPEG artefacts. Pure numpy/scipy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from camprompt.conventions import check_rgb_image, point_pixels

__all__ = ["colour_distance", "median_colour", "grow_region", "region_features", "mask_solidity", "colour_core"]


def colour_distance(image: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Euclidean RGB distance (0..441) of every pixel to ``colour``: float64 (H,W)."""
    return np.linalg.norm(image.astype(np.float64) - colour, axis=2)


def median_colour(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The median RGB colour of the pixels of ``mask`` (black for an empty mask)."""
    return np.median(image[mask].astype(np.float64), axis=0) if mask.any() else np.zeros(3)


def grow_region(image: np.ndarray, seed: Sequence[float], tol: float) -> np.ndarray:
    """The 4-connected set of pixels around ``seed`` whose RGB colour is within ``tol`` of the seed's.

    The reference colour is the median of the seed's 3x3 neighbourhood (robust to sensor noise);
    closeness is Euclidean RGB distance (0..441) so mild JPEG/noise changes are absorbed by ``tol``.
    """
    image = check_rgb_image(image)
    rows, cols, _ = point_pixels(np.reshape(np.asarray(seed, np.float64), (1, 2)), image.shape[:2])
    row, col = int(rows[0]), int(cols[0])
    patch = image[max(row - 1, 0) : row + 2, max(col - 1, 0) : col + 2].reshape(-1, 3)
    ref = np.median(patch.astype(np.float64), axis=0)
    close = colour_distance(image, ref) <= tol
    if not close[row, col]:
        return np.zeros(image.shape[:2], bool)
    labels, _ = ndi.label(close)
    return labels == labels[row, col]


def region_features(image: np.ndarray, heat: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Label-free evidence that ``mask`` is one solid painted object the heatmap points at.

    Colour (distances to the region's median colour): ``flatness`` = 1 - (median distance inside /
    30, capped): a painted shape is flat up to noise/JPEG, a chunk of natural background is textured;
    ``ring`` = 10th percentile of the distance over the 2-px ring outside / 80, capped: a whole shape
    stands out from everything around it, a part of it touches its own colour. Heat: ``heat`` = mean
    heat inside - mean heat outside; ``heat_near`` = mean heat over the region grown by 2 px
    (Grad-CAM peaks on and just beside a shape's edges). ``area`` in pixels.
    """
    mask = np.asarray(mask, bool)
    area = int(mask.sum())
    if area == 0 or area == mask.size:
        return dict(flatness=0.0, ring=0.0, heat=0.0, heat_near=0.0, area=float(area))
    dist = colour_distance(image, median_colour(image, mask))
    near = ndi.binary_dilation(mask, iterations=2)
    ring2 = near & ~mask
    return {
        "flatness": 1.0 - min(float(np.median(dist[mask])), 30.0) / 30.0,
        "ring": min(float(np.percentile(dist[ring2], 10)), 80.0) / 80.0 if ring2.any() else 1.0,
        "heat": float(heat[mask].mean() - heat[~mask].mean()),
        "heat_near": float(heat[near].mean()),
        "area": float(area),
    }


def mask_solidity(image: np.ndarray, mask: np.ndarray, colour_tol: float) -> float:
    """How much ``mask`` looks like one solid object (0..2): the share of its pixels within
    ``colour_tol`` of its median colour (homogeneity) plus the share of the 1-px ring outside it
    beyond that tolerance (contrast). An empty or whole-image mask scores 0."""
    mask = np.asarray(mask, bool)
    area = int(mask.sum())
    if area == 0 or area == mask.size:
        return 0.0
    dist = colour_distance(image, median_colour(image, mask))
    ring1 = ndi.binary_dilation(mask) & ~mask
    homogeneity = float((dist[mask] <= colour_tol).mean())
    contrast = float((dist[ring1] > colour_tol).mean()) if ring1.any() else 1.0
    return homogeneity + contrast


def colour_core(image: np.ndarray, mask: np.ndarray, tol: float) -> np.ndarray:
    """The pixels of ``mask`` within ``tol`` of its median colour: the object's own paint.

    A candidate region often carries a few background pixels (the notch between a star's legs, a
    halo); a foreground point placed by depth alone can then sit on one of them, just outside the
    object. Returns ``mask`` itself when no pixel is that close (nothing better to offer).
    """
    image, mask = check_rgb_image(image), np.asarray(mask, bool)
    if not mask.any():
        return mask
    core = mask & (colour_distance(image, median_colour(image, mask)) <= tol)
    return core if core.any() else mask
