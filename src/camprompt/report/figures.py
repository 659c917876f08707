"""The report's pictures: Grad-CAM examples and each strategy's points and masks on example images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from camprompt.artifacts import atomic_path
from camprompt.data import CLASSES
from camprompt.report.results import EvalSet, StrategyResult
from camprompt.report.tables import fmt_value
from camprompt.saliency import argmax_points

__all__ = ["pyplot", "example_rows", "heat_config", "draw_gradcam_panel", "draw_examples_panel", "write_examples_figure"]


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (stages run headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def example_rows(classes: Sequence[str], per_class: int = 1) -> list[int]:
    """The first image of each class, in class order: a small, stable sample."""
    picked = []
    for c in CLASSES:
        picked += [i for i, k in enumerate(classes) if k == c][:per_class]
    return picked or list(range(min(5, len(classes))))


def heat_config(params: Mapping[str, Any], heatmaps: Mapping[str, np.ndarray]) -> str | None:
    """The CAM a strategy uses (``cam``, default layer2), or the first configured for the baseline."""
    if not heatmaps:
        return None
    name = params.get("cam") or ("layer2" if "layer2" in heatmaps else next(iter(heatmaps)))
    return name if name in heatmaps else next(iter(heatmaps))


def draw_gradcam_panel(fig: Any, rect: Sequence[float], ev: EvalSet, config: str | None) -> None:
    """Grad-CAM examples inside ``rect`` (figure fraction): rows input / heatmap / overlay / ground truth,
    one column per class; the white cross is the heatmap's arg-max."""
    plt = pyplot()
    idx = example_rows(ev.classes)
    titles = ["input", f"Grad-CAM {config or ''}".strip(), "overlay", "ground truth"]
    x0, y0, w, h = rect
    cols, rows = len(idx), len(titles)
    cw, rh = w / cols, h / rows
    jet = plt.get_cmap("jet")
    for c, i in enumerate(idx):
        heat = ev.heatmaps[config][i] if config else np.zeros(ev.masks[i].shape)
        overlay = np.clip(0.5 * ev.images[i] / 255.0 + 0.5 * jet(heat)[..., :3], 0, 1)
        panels = [ev.images[i], heat, overlay, ev.masks[i]]
        for r, img in enumerate(panels):
            ax = fig.add_axes([x0 + c * cw + 0.004, y0 + h - (r + 1) * rh + 0.004, cw - 0.008, rh - 0.008])
            kw = {"cmap": "jet", "vmin": 0, "vmax": 1} if r == 1 else ({"cmap": "gray"} if r == 3 else {})
            ax.imshow(img, interpolation="nearest", **kw)
            if r in (1, 2) and config:
                peak_x, peak_y = argmax_points(heat[None])[0]
                ax.plot(peak_x, peak_y, marker="x", color="white", ms=5, mew=1.2)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(titles[r], fontsize=7)
            if r == 0:
                ax.set_title(f"{ev.names[i]} ({ev.classes[i]})", fontsize=7)


def _draw_points(ax: Any, points: Sequence[Sequence[float]], size: float = 5) -> None:
    for x, y, label in points:
        ax.plot([x], [y], marker="o" if label == 1 else "X", ms=size, mec="white", mew=0.8,
                color="lime" if label == 1 else "red", linestyle="none")


def draw_examples_panel(fig: Any, rect: Sequence[float], results: Sequence[StrategyResult], ev: EvalSet) -> None:
    """Inside ``rect`` (figure fraction): per strategy (rows), the first image of each class with the
    strategy's points (green foreground, red background) and its predicted mask's outline (yellow)."""
    idx = example_rows(ev.classes)
    x0, y0, w, h = rect
    label_w = 0.1 * w
    cw, rh = (w - label_w) / len(idx), h / max(1, len(results))
    for r, res in enumerate(results):
        rows = {row["name"]: (j, row) for j, row in enumerate(res.rows)}
        fig.text(x0 + label_w - 0.005, y0 + h - (r + 0.5) * rh, res.name, fontsize=7, ha="right", va="center")
        for c, i in enumerate(idx):
            ax = fig.add_axes([x0 + label_w + c * cw + 0.003, y0 + h - (r + 1) * rh + 0.012, cw - 0.006, rh - 0.015])
            ax.imshow(ev.images[i], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if ev.names[i] not in rows:
                continue
            j, row = rows[ev.names[i]]
            if res.masks is not None and res.masks[j].any() and not res.masks[j].all():
                ax.contour(res.masks[j].astype(float), levels=[0.5], colors="yellow", linewidths=0.8)
            _draw_points(ax, row["points"], size=4)
            ax.set_xlim(-0.5, ev.images.shape[2] - 0.5)
            ax.set_ylim(ev.images.shape[1] - 0.5, -0.5)
            ax.set_xlabel(f"IoU {fmt_value(row['iou'], 2)}", fontsize=6, labelpad=1)


def write_examples_figure(path: str | Path, results: Sequence[StrategyResult], ev: EvalSet) -> Path:
    """A small PNG for the README: :func:`draw_examples_panel` on its own."""
    plt = pyplot()
    n = len(example_rows(ev.classes))
    fig = plt.figure(figsize=(1.25 * n + 0.7, 1.05 * len(results) + 0.1))
    draw_examples_panel(fig, [0.0, 0.0, 1.0, 1.0], results, ev)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return path


