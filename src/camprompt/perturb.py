"""Label-preserving image degradations: a JPEG round trip and Gaussian sensor noise, seeded.

Why: users' images are re-saved and noisy, and the hidden evaluation splits are compressed, noisy
copies. The robustness variants (``variants`` stage) degrade val images with these, the classifier's
augmentation (:mod:`camprompt.augment`) uses the same JPEG round trip, and the benchmarks reuse both.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from camprompt.conventions import check_rgb_batch, check_rgb_image

__all__ = ["jpeg_round_trip", "add_noise", "Perturbation"]


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """The image (uint8 (H,W,3)) saved as a baseline JPEG at ``quality`` (1..95) and decoded again (PIL)."""
    image = check_rgb_image(image)
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= int(quality) <= 95:
        raise ValueError(f"JPEG quality must be an integer in 1..95 (PIL's range), got {quality!r}")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
    return np.array(Image.open(buf).convert("RGB"))


def add_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """The image plus i.i.d. Gaussian noise of std ``sigma`` (0..255 units), rounded and clipped to uint8."""
    image = check_rgb_image(image)
    if not (isinstance(sigma, (int, float, np.number)) and math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"noise sigma must be a finite number >= 0 (0..255 units), got {sigma!r}")
    noisy = image.astype(np.float64) + rng.normal(0.0, float(sigma), image.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Perturbation:
    """A JPEG round trip at ``jpeg`` quality (None: none), then Gaussian noise of std ``noise`` (0: none)."""

    jpeg: int | None = None
    noise: float = 0.0

    def __post_init__(self) -> None:
        if self.jpeg is not None:
            jpeg_round_trip(np.zeros((1, 1, 3), np.uint8), self.jpeg)  # validates the quality
        add_noise(np.zeros((1, 1, 3), np.uint8), self.noise, np.random.default_rng(0))  # validates sigma

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Perturbation:
        """From a variant's params (``jpeg``, ``noise``); an unknown key is an error."""
        unknown = set(params) - {"jpeg", "noise"}
        if unknown:
            raise ValueError(f"unknown perturbation knobs {sorted(unknown)}; known: ['jpeg', 'noise']")
        return cls(jpeg=params.get("jpeg"), noise=float(params.get("noise", 0.0)))

    def apply(self, images: np.ndarray, seed: int) -> np.ndarray:
        """The perturbed batch (uint8 (N,H,W,3)); the noise of the batch's image i comes from
        ``default_rng([seed, i])``, so the same batch and seed give the same bytes."""
        images = check_rgb_batch(images)
        out = np.empty_like(images)
        for i, image in enumerate(images):
            if self.jpeg is not None:
                image = jpeg_round_trip(image, self.jpeg)
            if self.noise > 0:
                image = add_noise(image, self.noise, np.random.default_rng([int(seed), i]))
            out[i] = image
        return out
