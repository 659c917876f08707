"""Label-preserving augmentation of uint8 training batches, drawn from one seeded generator.

Random translation (zero padding: reflection would mirror a shape cut by the frame into a second,
different-looking shape), optionally a small turn and stretch (``affine``: another author may draw a
narrower diamond, an equilateral triangle or a shape turned a little; the class survives, our
generator's exact proportions do not), horizontal flip (every class is left-right symmetric), colour-channel
permutation and brightness/contrast jitter (shape colours are random), Gaussian noise, a 3x3 blur
and JPEG round trips, so that the classifier and its Grad-CAM also hold up on noisy or compressed
copies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from camprompt.perturb import jpeg_round_trip

__all__ = ["Augment", "turned_and_stretched"]


@dataclass
class Augment:
    """Label-preserving augmentations applied to uint8 batches; probabilities / magnitudes."""

    translate: int = 4  # max shift in pixels; zero padding (reflection would duplicate edge shapes)
    hflip: float = 0.5
    channel_permute: float = 0.5
    brightness: float = 0.2  # additive, in 0..1 intensity units
    contrast: float = 0.2  # multiplicative, 1 +- this
    noise: float = 0.3  # probability of Gaussian noise ...
    noise_std: float = 0.06  # ... with std up to this (0..1 units)
    blur: float = 0.2  # probability of a 3x3 Gaussian blur (JPEG-like softening)
    jpeg: float = 0.0  # probability of a JPEG round trip ...
    jpeg_quality: tuple[int, int] | list[int] = (40, 95)  # ... at a quality drawn from this range
    affine: float = 0.0  # probability of a turn and stretch about the centre ...
    rotate: float = 15.0  # ... by up to this many degrees either way ...
    stretch: float = 0.45  # ... and an aspect ratio (width over height) in [1 / (1 + s), 1 + s], area kept

    def __post_init__(self) -> None:
        for name in ("hflip", "channel_permute", "noise", "blur", "jpeg", "affine"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"train.augment.{name} is a probability in 0..1, got {value!r}")
        for name in ("translate", "brightness", "contrast", "noise_std", "rotate", "stretch"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"train.augment.{name} is a magnitude >= 0, got {value!r}")

    def __call__(self, images: Tensor, gen: torch.Generator) -> Tensor:
        """uint8 (B,H,W,3) -> augmented float32 (B,3,H,W) in 0..1 (normalise afterwards)."""
        if self.jpeg > 0:
            images = self._jpeg(images, gen)
        x = images.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
        b = x.shape[0]
        if self.affine > 0:
            x = _random_affine(x, self.affine, self.rotate, self.stretch, gen)
        if self.translate > 0:
            x = _random_translate(x, self.translate, gen)
        if self.hflip > 0:
            flip = torch.rand(b, generator=gen) < self.hflip
            x = torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)
        if self.channel_permute > 0:
            perms = torch.stack([torch.randperm(3, generator=gen) for _ in range(b)])
            keep = torch.rand(b, generator=gen) >= self.channel_permute
            perms[keep] = torch.arange(3)
            x = torch.gather(x, 1, perms.view(b, 3, 1, 1).expand_as(x))
        if self.contrast > 0 or self.brightness > 0:
            c = 1 + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * self.contrast
            br = (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * self.brightness
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * c + mean + br
        if self.blur > 0:
            kernel = torch.tensor([1.0, 2.0, 1.0]) / 4
            k2 = (kernel[:, None] * kernel[None, :]).expand(3, 1, 3, 3)
            blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k2, groups=3)
            x = torch.where((torch.rand(b, generator=gen) < self.blur).view(b, 1, 1, 1), blurred, x)
        if self.noise > 0:
            std = torch.rand(b, 1, 1, 1, generator=gen) * self.noise_std
            std = std * (torch.rand(b, 1, 1, 1, generator=gen) < self.noise)
            x = x + torch.randn(x.shape, generator=gen) * std
        return x.clamp_(0, 1)

    def _jpeg(self, images: Tensor, gen: torch.Generator) -> Tensor:
        """JPEG-compress a random share of the batch: 8x8-block artefacts and chroma bleeding, which
        neither noise nor blur imitate, are what real (re-saved) images carry."""
        lo, hi = (int(q) for q in self.jpeg_quality)
        chosen = torch.rand(images.shape[0], generator=gen) < self.jpeg
        qualities = torch.randint(lo, hi + 1, (images.shape[0],), generator=gen)
        out = images.clone()
        for i in torch.nonzero(chosen).flatten().tolist():
            out[i] = torch.from_numpy(jpeg_round_trip(images[i].numpy(), int(qualities[i])))
        return out


def _random_affine(x: Tensor, p: float, degrees: float, stretch: float, gen: torch.Generator) -> Tensor:
    """Turn a random share ``p`` of the images by up to ``degrees`` either way and stretch them to an
    aspect ratio in [1 / (1 + stretch), 1 + stretch] (log-uniform); the others pass through unchanged
    (only the chosen ones are warped, so a small share costs little)."""
    b = x.shape[0]
    chosen = torch.rand(b, generator=gen) < p
    angles = torch.deg2rad((torch.rand(b, generator=gen) * 2 - 1) * degrees)
    log_aspects = (torch.rand(b, generator=gen) * 2 - 1) * math.log1p(stretch)
    out = x.clone()
    if chosen.any():
        out[chosen] = turned_and_stretched(x[chosen], angles[chosen], log_aspects[chosen])
    return out


def turned_and_stretched(x: Tensor, angles: Tensor, log_aspects: Tensor) -> Tensor:
    """Each image (B,C,H,W) turned by its angle (radians, clockwise on screen) and stretched to
    width over height ``exp(log_aspect)`` at its area, about its centre; bilinear, black outside."""
    b, _, h, w = x.shape
    sx, sy = torch.exp(log_aspects / 2), torch.exp(-log_aspects / 2)   # width x sx, height x sy
    cos, sin = torch.cos(angles), torch.sin(angles)
    # affine_grid maps output to input coordinates, each axis normalised to -1..1: the inverse of
    # "stretch, then turn", with the pixel grid's aspect h / w folded in so that the turn is a true one
    inverse = torch.zeros(b, 2, 3)
    inverse[:, 0, 0], inverse[:, 0, 1] = cos / sx, sin * h / w / sx
    inverse[:, 1, 0], inverse[:, 1, 1] = -sin * w / h / sy, cos / sy
    grid = F.affine_grid(inverse, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _random_translate(x: Tensor, pad: int, gen: torch.Generator) -> Tensor:
    """Shift every image by its own random (dx, dy) in [-pad, pad]; uncovered pixels are black.

    Zero padding, not reflection: a reflected border would mirror a shape cut by the frame into a
    second, different-looking shape.
    """
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="constant", value=0.0)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    rows = (dy.view(b, 1) + torch.arange(h).view(1, h)).view(b, 1, h, 1).expand(b, 3, h, w + 2 * pad)
    out = torch.gather(padded, 2, rows)
    cols = (dx.view(b, 1) + torch.arange(w).view(1, w)).view(b, 1, 1, w).expand(b, 3, h, w)
    return torch.gather(out, 3, cols)
