"""Point and mask metrics of the prompt-free pipelines (pure numpy).

Conventions (each one decides a border case, so it is spelled out):

* **Points** fall on pixels by :func:`camprompt.conventions.point_pixels` (pixel centres at integer
  coordinates, SamPredictor's convention). A point whose pixel lies outside the image, or with a
  non-finite coordinate, is a **miss for both kinds**: a foreground point there is not a hit and a
  background point there does not count as "outside the mask" -- it is not a valid prompt.
* **Labels**: :data:`camprompt.conventions.FG_LABEL` (1) foreground, ``BG_LABEL`` (0) background,
  ``PAD_LABEL`` (-1) padding, ignored everywhere.
* **Hit rates are pooled over points** (micro average): ``fg_hit_rate`` = foreground points inside
  the ground-truth mask / all foreground points of all images. With one foreground point per image
  this equals the share of images whose point hits.
* **Distance from the centre of mass**: Euclidean distance in pixels from a point to the mean
  ``(x, y)`` of the ground-truth mask's True pixels; undefined (NaN) for an empty mask. Means skip
  NaN. Means over points are pooled like the hit rates.
* **IoU** = |pred & gt| / |pred | gt|; when both masks are empty it is **1.0** (the prediction is
  exactly right), when only one is empty it is 0.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from camprompt.conventions import BG_LABEL, FG_LABEL, POINT_LABELS, point_pixels

__all__ = [
    "points_in_mask",
    "mask_centroid",
    "iou",
    "iou_batch",
    "ImagePointStats",
    "image_point_stats",
    "summarize",
    "worst_indices",
    "FAILURE_IOU",
    "plot_cases",
]

FAILURE_IOU = 0.5  # an image whose mask has an IoU below this counts as a failure


def _check_mask(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H,W) array, got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def _check_coords(coords: np.ndarray) -> np.ndarray:
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"point coordinates must be (K,2) as (x, y), got shape {coords.shape}")
    return coords


def points_in_mask(coords: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inside, valid) bool (K,): whether each point's pixel is True in ``mask``; valid = in the image."""
    mask = _check_mask(mask)
    rows, cols, valid = point_pixels(coords, mask.shape)
    if mask.size == 0:
        return np.zeros(len(rows), bool), valid
    return mask[rows, cols] & valid, valid


def mask_centroid(mask: np.ndarray) -> np.ndarray:
    """Centre of mass (x, y) of a mask's True pixels as float64 (2,); NaN for an empty mask."""
    mask = _check_mask(mask)
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return np.array([np.nan, np.nan])
    return np.array([cols.mean(), rows.mean()])


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of two (H,W) masks; 1.0 when both are empty."""
    pred, gt = _check_mask(pred, "pred"), _check_mask(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must have the same shape")
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, gt).sum() / union)


def iou_batch(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-image IoU of (N,H,W) masks -> float64 (N,), with the same both-empty rule as :func:`iou`."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must both be (N,H,W) with the same shape")
    inter = np.logical_and(pred, gt).reshape(len(pred), -1).sum(axis=1)
    union = np.logical_or(pred, gt).reshape(len(pred), -1).sum(axis=1)
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


@dataclass(frozen=True)
class ImagePointStats:
    """Point statistics of one image: counts, hits, and the summed distances (for pooled means)."""

    n_fg: int
    n_bg: int
    fg_hits: int
    bg_outside: int
    fg_dists: np.ndarray  # (n_fg,) distance of each fg point from the mask's centre of mass (NaN if empty)
    bg_dists: np.ndarray

    @property
    def fg_dist(self) -> float:
        return _nanmean(self.fg_dists)

    @property
    def bg_dist(self) -> float:
        return _nanmean(self.bg_dists)


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def image_point_stats(coords: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> ImagePointStats:
    """Hits and distances of one image's points (K,2)/(K,) against its ground-truth mask (H,W)."""
    coords = _check_coords(coords)
    labels = np.asarray(labels).astype(np.int64, copy=False)
    if labels.shape != (len(coords),):
        raise ValueError(f"labels must be ({len(coords)},) to match coords {coords.shape}, got {labels.shape}")
    bad = ~np.isin(labels, POINT_LABELS)
    if bad.any():
        raise ValueError(f"point labels must be 1 (fg), 0 (bg) or -1 (padding), got {np.unique(labels[bad])}")
    inside, valid = points_in_mask(coords, mask)
    centre = mask_centroid(mask)
    dists = np.linalg.norm(coords - centre[None, :], axis=1)
    fg, bg = labels == FG_LABEL, labels == BG_LABEL
    return ImagePointStats(
        n_fg=int(fg.sum()),
        n_bg=int(bg.sum()),
        fg_hits=int((inside & fg).sum()),
        bg_outside=int((valid & ~inside & bg).sum()),
        fg_dists=dists[fg],
        bg_dists=dists[bg],
    )


def _rate(numerator: int, denominator: int) -> float | None:
    return float(numerator / denominator) if denominator else None


def summarize(
    pred_masks: np.ndarray,
    gt_masks: np.ndarray,
    coords: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    class_names: Sequence[str] | None = None,
    failure_iou: float = FAILURE_IOU,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """All metrics of one strategy -> (summary for ``metrics/S.json``, one row per image).

    ``pred_masks``/``gt_masks`` bool (N,H,W); ``coords`` (N,K,2) (x, y); ``labels`` (N,K);
    ``classes`` the ground-truth class name of each image (for ``iou_per_class``), ``class_names``
    the order of the per-class table (default: sorted unique). Keys follow docs/ARCHITECTURE.md;
    rates/means with nothing to average are None (JSON null).
    """
    pred_masks, gt_masks = np.asarray(pred_masks, bool), np.asarray(gt_masks, bool)
    coords, labels = np.asarray(coords, np.float64), np.asarray(labels)
    n = len(gt_masks)
    if not (len(pred_masks) == len(coords) == len(labels) == len(classes) == n):
        raise ValueError(
            f"inputs disagree on the number of images: pred {len(pred_masks)}, gt {n}, coords {len(coords)}, "
            f"labels {len(labels)}, classes {len(classes)}"
        )
    if coords.ndim != 3 or coords.shape[2] != 2 or labels.shape != coords.shape[:2]:
        raise ValueError(f"coords must be (N,K,2) and labels (N,K); got {coords.shape} and {labels.shape}")
    ious = iou_batch(pred_masks, gt_masks) if n else np.zeros(0)
    stats = [image_point_stats(coords[i], labels[i], gt_masks[i]) for i in range(n)]
    rows = [_row(i, stats[i], ious[i], classes[i]) for i in range(n)]
    summary = _summary(stats, ious, classes, class_names, failure_iou)
    return summary, rows


def _row(i: int, s: ImagePointStats, iou_value: float, cls: str) -> dict[str, Any]:
    return {
        "index": i, "class": cls, "iou": float(iou_value), "n_fg": s.n_fg, "n_bg": s.n_bg,
        "fg_hits": s.fg_hits, "bg_outside": s.bg_outside, "fg_dist": s.fg_dist, "bg_dist": s.bg_dist,
    }


def _summary(
    stats: list[ImagePointStats], ious: np.ndarray, classes: Sequence[str],
    class_names: Sequence[str] | None, failure_iou: float,
) -> dict[str, Any]:
    n = len(stats)
    n_fg = sum(s.n_fg for s in stats)
    n_bg = sum(s.n_bg for s in stats)
    fg_d = np.concatenate([s.fg_dists for s in stats]) if stats else np.zeros(0)
    bg_d = np.concatenate([s.bg_dists for s in stats]) if stats else np.zeros(0)
    order = list(class_names) if class_names is not None else sorted(set(classes))
    classes_arr = np.asarray(list(classes), dtype=object)
    per_class = {c: (float(ious[classes_arr == c].mean()) if (classes_arr == c).any() else None) for c in order}
    return {
        "n_images": n,
        "fg_hit_rate": _rate(sum(s.fg_hits for s in stats), n_fg),
        "bg_outside_rate": _rate(sum(s.bg_outside for s in stats), n_bg),
        "fg_dist_mean": _nanmean(fg_d) if n_fg else None,
        "bg_dist_mean": _nanmean(bg_d) if n_bg else None,
        "iou_mean": float(ious.mean()) if n else None,
        "iou_std": float(ious.std()) if n else None,
        "iou_median": float(np.median(ious)) if n else None,
        "n_failures": int((ious < failure_iou).sum()),
        "failure_iou": float(failure_iou),
        "iou_per_class": per_class,
        "fg_points_per_image": float(n_fg / n) if n else None,
        "bg_points_per_image": float(n_bg / n) if n else None,
    }


def worst_indices(ious: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` lowest IoUs, worst first (stable: ties keep image order)."""
    return np.argsort(np.asarray(ious, np.float64), kind="stable")[: max(int(n), 0)]


def plot_cases(
    path: Any, images: np.ndarray, heatmaps: np.ndarray | None, coords: np.ndarray, labels: np.ndarray,
    pred_masks: np.ndarray, gt_masks: np.ndarray, titles: Sequence[str],
) -> Any:
    """A figure row per case: image + points, heatmap + points, predicted mask, ground truth.

    Foreground points are green crosses, background points red circles. ``path`` may be any file
    name (the PNG format is forced, so an atomic temporary works). Matplotlib is imported here only,
    keeping the metrics themselves numpy-only.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    fig, axes = plt.subplots(max(n, 1), 4, figsize=(8.0, 1.6 * max(n, 1) + 0.4), squeeze=False)
    for i in range(n):
        row = axes[i]
        row[0].imshow(images[i])
        if heatmaps is not None:
            row[1].imshow(heatmaps[i], cmap="jet", vmin=0.0, vmax=1.0)
        row[2].imshow(pred_masks[i], cmap="gray", vmin=0, vmax=1)
        row[3].imshow(gt_masks[i], cmap="gray", vmin=0, vmax=1)
        for ax in row[:3]:
            fg, bg = coords[i][labels[i] == FG_LABEL], coords[i][labels[i] == BG_LABEL]
            ax.plot(fg[:, 0], fg[:, 1], "x", color="lime", markersize=6, mew=1.8)
            ax.plot(bg[:, 0], bg[:, 1], "o", color="red", markersize=4, mfc="none", mew=1.4)
        row[0].set_ylabel(titles[i], fontsize=7)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, title in zip(axes[0], ("image + points", "heatmap", "predicted mask", "ground truth")):
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return path
