"""The report's pictures: Grad-CAM examples and each strategy's points and masks on example images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from camprompt.artifacts import atomic_path
from camprompt.data import CLASSES
from camprompt.metrics import worst_indices
from camprompt.report.results import EvalSet, Robustness, StrategyResult
from camprompt.report.tables import fmt_value
from camprompt.saliency import argmax_points

__all__ = ["pyplot", "example_rows", "heat_config", "draw_gradcam_panel", "draw_examples_panel", "draw_robustness_panel",
           "write_examples_figure"]


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


def _case(fig: Any, box: Sequence[float], image: np.ndarray, pred: np.ndarray | None, points: Sequence[Sequence[float]],
          label: str, gt: np.ndarray | None = None) -> None:
    """One image in ``box`` (figure fraction) with its points, the predicted mask's outline (yellow)
    and, when given, the true shape's outline (cyan, dashed)."""
    ax = fig.add_axes(list(box))
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for mask, colour, style in ((gt, "cyan", "--"), (pred, "yellow", "-")):
        if mask is not None and mask.any() and not mask.all():
            ax.contour(mask.astype(float), levels=[0.5], colors=colour, linewidths=0.8, linestyles=style)
    _draw_points(ax, points, size=4)
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(image.shape[0] - 0.5, -0.5)
    ax.set_xlabel(label, fontsize=6, labelpad=1)


def _grid(rect: Sequence[float], n_rows: int, n_cols: int, label_w: float) -> Any:
    """Cell boxes (figure fraction) of an n_rows x n_cols grid in ``rect``, a label column on the left."""
    x0, y0, w, h = rect
    cw, rh = (w - label_w) / max(1, n_cols), h / max(1, n_rows)
    return lambda r, c: (x0 + label_w + c * cw + 0.003, y0 + h - (r + 1) * rh + 0.012, cw - 0.006, rh - 0.015)


def draw_examples_panel(fig: Any, rect: Sequence[float], results: Sequence[StrategyResult], ev: EvalSet) -> None:
    """Inside ``rect`` (figure fraction): per strategy (rows), the first image of each class with the
    strategy's points (green foreground, red background) and its predicted mask's outline (yellow)."""
    idx = example_rows(ev.classes)
    x0, y0, w, h = rect
    cell = _grid(rect, len(results), len(idx), 0.1 * w)
    for r, res in enumerate(results):
        rows = {row["name"]: (j, row) for j, row in enumerate(res.rows)}
        fig.text(x0 + 0.1 * w - 0.005, y0 + h - (r + 0.5) * h / max(1, len(results)), res.name, fontsize=7, ha="right", va="center")
        for c, i in enumerate(idx):
            j, row = rows.get(ev.names[i], (None, {"points": [], "iou": None}))
            pred = res.masks[j] if res.masks is not None and j is not None else None
            _case(fig, cell(r, c), ev.images[i], pred, row["points"], f"IoU {fmt_value(row['iou'], 2)}")


def draw_robustness_panel(fig: Any, rect: Sequence[float], robustness: Robustness, strategy: str, k: int = 6) -> None:
    """Inside ``rect``: per variant (rows), the ``k`` lowest-IoU images of ``strategy`` with its points,
    its mask's outline (yellow) and the true shape's outline (cyan, dashed)."""
    x0, y0, w, h = rect
    names = [v for v in robustness.variants if f"iou_{strategy}" in robustness.outputs.get(v, {})]
    cell = _grid(rect, len(names), k, 0.1 * w)
    for r, name in enumerate(names):
        out = robustness.outputs[name]
        fig.text(x0 + 0.1 * w - 0.005, y0 + h - (r + 0.5) * h / max(1, len(names)), name, fontsize=7, ha="right", va="center")
        for c, i in enumerate(worst_indices(out[f"iou_{strategy}"], k)):
            keep = out[f"labels_{strategy}"][i] >= 0
            points = [(x, y, lab) for (x, y), lab in zip(out[f"coords_{strategy}"][i][keep], out[f"labels_{strategy}"][i][keep])]
            _case(fig, cell(r, c), robustness.images[name][i], out[f"masks_{strategy}"][i], points,
                  f"IoU {fmt_value(float(out[f'iou_{strategy}'][i]), 2)}", gt=robustness.masks[name][i])


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


