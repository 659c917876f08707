"""What a class-activation heatmap says about where the object is: its strongest spread-out pixels,
its maximum, how often that maximum hits the object, and whether it carries any information at all.
Pure numpy/scipy (matplotlib only to draw).

Why seeds and not just the maximum: on this data a layer2 Grad-CAM peaks on or just beside the
shape's edge, so its maximum lands inside the shape well under half of the time. The heatmap is
good at saying *roughly where* the evidence is; the region search (:mod:`camprompt.search`) grows
candidate regions from several of its strongest pixels and lets the classifier decide.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from camprompt.conventions import check_heatmap

__all__ = ["is_flat", "grid_points", "heatmap_seeds", "heatmap_peak", "argmax_points", "argmax_hit_rate",
           "plot_heatmaps"]

_FLAT_RTOL = 1e-6  # relative range below which a heatmap counts as constant (float rounding noise)


def is_flat(heat: np.ndarray) -> bool:
    """True when a heatmap carries no spatial information (range ~0 relative to its magnitude)."""
    heat = np.asarray(heat, dtype=np.float64)
    lo, hi = float(heat.min()), float(heat.max())
    return hi - lo <= _FLAT_RTOL * max(abs(lo), abs(hi), 1e-12) or hi - lo < 1e-12


def grid_points(shape: tuple[int, int], step: int) -> np.ndarray:
    """(K,2) points (x, y) of a uniform grid with spacing ``step``, nearest to the image centre first."""
    height, width = shape
    ys, xs = np.mgrid[step // 2 : height : step, step // 2 : width : step]
    pts = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    order = np.argsort(np.linalg.norm(pts - centre, axis=1), kind="stable")
    return pts[order]


def heatmap_seeds(
    heat: np.ndarray, max_seeds: int, min_distance: int = 3, sigma: float = 1.0, rel_threshold: float = 0.2,
) -> np.ndarray:
    """Up to ``max_seeds`` seed pixels (K,2) as (x, y), strongest first, pairwise >= ``min_distance`` apart.

    Greedy non-maximum suppression on the slightly smoothed heatmap (Chebyshev distance), stopping
    below ``rel_threshold`` x its maximum. Unlike local maxima alone this also seeds the flank of a
    broad peak, which matters because the peak itself often sits on the shape's edge.
    **Flat heatmap fallback**: a map with no spatial information gives a uniform grid (spacing
    ``2*min_distance+1``) ordered from the image centre outwards, with a warning.
    """
    heat = check_heatmap(heat)
    if max_seeds < 1:
        raise ValueError(f"max_seeds must be >= 1, got {max_seeds}")
    if is_flat(heat):
        warnings.warn("flat heatmap (no class evidence): seeding a uniform grid instead", RuntimeWarning, stacklevel=2)
        return grid_points(heat.shape, 2 * max(int(min_distance), 1) + 1)[:max_seeds]
    smooth = ndi.gaussian_filter(heat, sigma) if sigma > 0 else heat
    order = np.argsort(-smooth, axis=None, kind="stable")
    floor = smooth.min() + rel_threshold * (smooth.max() - smooth.min())
    ys, xs = np.unravel_index(order, heat.shape)
    picked: list[tuple[int, int]] = []
    for y, x in zip(ys.tolist(), xs.tolist()):
        if smooth[y, x] < floor or len(picked) >= max_seeds:
            break
        if all(max(abs(x - px), abs(y - py)) >= min_distance for px, py in picked):
            picked.append((x, y))
    return np.asarray(picked, dtype=np.float64).reshape(-1, 2)


def heatmap_peak(heat: np.ndarray) -> np.ndarray:
    """(x, y) float of one heatmap's maximum pixel (:func:`argmax_points`): the classic CAM prompt."""
    return argmax_points(check_heatmap(heat)[None])[0].astype(np.float64)


def argmax_hit_rate(heatmaps: np.ndarray, masks: np.ndarray) -> float:
    """Fraction of images whose heatmap arg-max pixel lies inside the (N,H,W) boolean mask."""
    masks = np.asarray(masks, dtype=bool)
    if masks.shape != np.shape(heatmaps):
        raise ValueError(f"masks {masks.shape} and heatmaps {np.shape(heatmaps)} must have the same (N,H,W) shape")
    if len(masks) == 0:
        return float("nan")
    pts = argmax_points(heatmaps)
    return float(masks[np.arange(len(masks)), pts[:, 1], pts[:, 0]].mean())


def argmax_points(heatmaps: np.ndarray) -> np.ndarray:
    """(N,H,W) -> int64 (N,2) (x, y) pixel of each map's maximum (first one in row-major order)."""
    heatmaps = np.asarray(heatmaps)
    if heatmaps.ndim != 3:
        raise ValueError(f"heatmaps must be (N,H,W), got {heatmaps.shape}")
    flat = heatmaps.reshape(len(heatmaps), -1).argmax(axis=1)
    y, x = np.unravel_index(flat, heatmaps.shape[1:])
    return np.stack([x, y], axis=1).astype(np.int64)


def plot_heatmaps(
    path: str | Path,
    images: np.ndarray,
    heatmaps: Mapping[str, np.ndarray],
    masks: np.ndarray | None = None,
    titles: Sequence[str] | None = None,
    alpha: float = 0.5,
    fmt: str = "png",
) -> Path:
    """Save a grid: per image, the input, then heatmap + overlay per config, then the GT mask.

    ``images`` uint8 (N,H,W,3); ``heatmaps`` {config: (N,H,W) in 0..1}; the arg-max of each map
    is marked with a white cross (the classic point prompt, which the region search improves on).
    Writes ``fmt`` to ``path`` directly (any file name, so that an atomic temporary works).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    n = len(images)
    cols = 1 + 2 * len(heatmaps) + (masks is not None)
    fig, axes = plt.subplots(n, cols, figsize=(1.9 * cols, 1.6 * n + 0.3), squeeze=False)
    cmap = plt.get_cmap("jet")
    for i in range(n):
        row = axes[i]
        row[0].imshow(images[i])
        row[0].set_ylabel(titles[i] if titles else str(i), fontsize=7)
        c = 1
        for name, maps in heatmaps.items():
            x, y = argmax_points(maps[i : i + 1])[0]
            row[c].imshow(maps[i], cmap="jet", vmin=0.0, vmax=1.0)
            overlay = (1 - alpha) * images[i] / 255.0 + alpha * cmap(maps[i])[..., :3]
            row[c + 1].imshow(np.clip(overlay, 0.0, 1.0))
            for ax in row[c : c + 2]:
                ax.plot([x], [y], marker="x", color="white", markersize=6, mew=1.5)
            if i == 0:
                row[c].set_title(f"{name}", fontsize=8)
                row[c + 1].set_title(f"{name} overlay", fontsize=8)
            c += 2
        if masks is not None:
            row[c].imshow(masks[i], cmap="gray", vmin=0, vmax=1)
            if i == 0:
                row[c].set_title("mask", fontsize=8)
        if i == 0:
            row[0].set_title("input", fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110, format=fmt)
    plt.close(fig)
    return path
