"""Label-free denoising: how noisy an image looks, and an edge-preserving smoothed copy of it.

Why: sensor noise and JPEG artefacts break colour regions into speckle and make SAM's mask leak or
shrink, while a solid shape's edges are what both need. A bilateral filter averages within similar
colours only, so it flattens the noise and keeps the edges; applied only to images that look noisy
it leaves clean images as they are. Pure numpy/OpenCV, no labels.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from camprompt.conventions import check_rgb_image

__all__ = ["FILTER_MODES", "noise_sigma", "smooth", "filtered"]

FILTER_MODES = ("none", "bilateral", "auto")  # auto: bilateral when noise_sigma() exceeds a threshold
_LAPLACIAN_3X3 = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)


def noise_sigma(image: np.ndarray) -> float:
    """Estimated std (0..255 units) of i.i.d. noise in an RGB image (Immerkaer 1996, mean over channels).

    The mask below is orthogonal to local planes, so smooth content barely answers it and the mean
    absolute response measures the noise; edges and texture add a little, so compare estimates of
    one kind of image with each other, not with the true sigma.
    """
    image = check_rgb_image(image).astype(np.float64)
    h, w = image.shape[:2]
    if h < 3 or w < 3:
        return 0.0
    response = cv2.filter2D(image, -1, _LAPLACIAN_3X3, borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
    return float(math.sqrt(math.pi / 2) * np.abs(response).mean() / 6.0)


def smooth(image: np.ndarray, diameter: int = 5, sigma_colour: float = 40.0, sigma_space: float = 5.0) -> np.ndarray:
    """An edge-preserving smoothed copy (``cv2.bilateralFilter``) of a uint8 RGB image."""
    return cv2.bilateralFilter(np.ascontiguousarray(check_rgb_image(image)), int(diameter), float(sigma_colour),
                               float(sigma_space))


def filtered(image: np.ndarray, mode: str, threshold: float = 0.0) -> np.ndarray:
    """The image as a filter ``mode`` shows it: ``none`` as it is, ``bilateral`` smoothed, ``auto``
    smoothed only when :func:`noise_sigma` exceeds ``threshold``."""
    if mode not in FILTER_MODES:
        raise ValueError(f"filter mode must be one of {FILTER_MODES}, got {mode!r}")
    if mode == "none" or (mode == "auto" and noise_sigma(image) <= threshold):
        return check_rgb_image(image)
    return smooth(image)
