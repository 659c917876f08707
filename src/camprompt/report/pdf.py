"""The 2-page A4 PDF: what was used, Grad-CAM, the pipelines; then every metric and the discussion."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from camprompt.artifacts import atomic_path
from camprompt.metrics import FAILURE_IOU
from camprompt.report.figures import draw_examples_panel, draw_gradcam_panel, heat_config, pyplot
from camprompt.report.results import EvalSet, StrategyResult, best_result
from camprompt.report.tables import per_class_rows, results_rows
from camprompt.report.words import describe_strategy, discussion

__all__ = ["A4_INCHES", "write_pdf"]

A4_INCHES = (8.27, 11.69)


class _Writer:
    """Top-down text layout on a figure (y in figure fraction), wrapping by an estimated line width."""

    def __init__(self, fig: Any, left: float = 0.07, right: float = 0.93, top: float = 0.96) -> None:
        self.fig, self.left, self.right, self.y = fig, left, right, top

    def text(self, s: str, size: float = 9.0, weight: str = "normal", gap: float = 0.4) -> None:
        width_in = (self.right - self.left) * self.fig.get_figwidth()
        em = 0.62 if weight == "bold" else 0.54
        chars = max(20, int(width_in * 72 / (size * em)))
        lines = textwrap.wrap(s, chars) or [""]
        line_h = size * 1.35 / 72 / self.fig.get_figheight()
        for line in lines:
            self.fig.text(self.left, self.y, line, fontsize=size, weight=weight, va="top", ha="left")
            self.y -= line_h
        self.y -= gap * line_h

    def skip(self, frac: float) -> None:
        self.y -= frac


def _two_lines(header: str, max_chars: int = 10) -> str:
    """Break a long column header at the space nearest its middle (table cells are narrow)."""
    spaces = [i for i, ch in enumerate(header) if ch == " "]
    if len(header) <= max_chars or not spaces:
        return header
    cut = min(spaces, key=lambda i: abs(i - len(header) / 2))
    return header[:cut] + "\n" + header[cut + 1:]


def _table(fig: Any, w: _Writer, header: Sequence[str], rows: Sequence[Sequence[str]], size: float = 7.0) -> None:
    """A matplotlib table placed at the writer's cursor, full text width."""
    row_h = size * 2.1 / 72 / fig.get_figheight()
    height = row_h * (len(rows) + 1.6)  # the header row holds two lines
    ax = fig.add_axes([w.left, w.y - height, w.right - w.left, height])
    ax.axis("off")
    labels = [_two_lines(h) for h in header]
    table = ax.table(cellText=[list(r) for r in rows], colLabels=labels, loc="center", cellLoc="center",
                     bbox=[0, 0, 1, 1])
    table.auto_set_font_size(False)
    table.set_fontsize(size)
    for (r, _), cell in table.get_celld().items():
        cell.set_linewidth(0.4)
        cell.set_height(1.6 / (len(rows) + 1.6) if r == 0 else 1 / (len(rows) + 1.6))
        if r == 0:
            cell.set_facecolor("#e8e8e8")
            cell.set_text_props(weight="bold")
    w.skip(height + 0.012)


def _page_one(pdf: Any, results: Sequence[StrategyResult], ev: EvalSet | None, setup: Sequence[str]) -> None:
    plt = pyplot()
    fig = plt.figure(figsize=A4_INCHES)
    w = _Writer(fig)
    w.text("camprompt: Grad-CAM point prompts for Segment Anything", 15, "bold", gap=0.2)
    n = results[0].metrics.get("n_images") if results else None
    w.text(f"Segmentation with no user input: a classifier's Grad-CAM finds the object, point prompts are derived "
           f"from it and the image, and SAM draws the mask. Every number is measured on the {n} "
           f"{ev.split if ev else 'evaluated'} images by this repository's `dvc repro`.", 8.5, gap=0.6)
    for sentence in setup:
        w.text(sentence, 8.5, gap=0.3)
    w.skip(0.008)
    w.text("1. Grad-CAM", 12, "bold", gap=0.2)
    config = heat_config(best_result(results).params, ev.heatmaps) if (results and ev) else None
    w.text(f"The classifier's Grad-CAM ({config}) for the first test image of each class, explaining the predicted "
           "class; the white cross marks the heatmap's maximum, the classic point prompt.", 8.5)
    if ev is not None and len(ev.names):
        height = 0.36
        draw_gradcam_panel(fig, [w.left, w.y - height, w.right - w.left, height], ev, config)
        w.skip(height + 0.02)
    w.text("2. Pipelines", 12, "bold", gap=0.2)
    for res in results:
        w.text(f"{res.name} ({res.pipeline} pipeline)", 9.5, "bold", gap=0.0)
        w.text(describe_strategy(res), 8.5, gap=0.5)
    pdf.savefig(fig)
    plt.close(fig)


def _iou_axes(fig: Any, w: _Writer, results: Sequence[StrategyResult], height: float = 0.17) -> None:
    """Sorted per-image IoU of every strategy: how many images reach which quality."""
    ax = fig.add_axes([w.left + 0.06, w.y - height, w.right - w.left - 0.08, height - 0.02])
    for res in results:
        ious = np.sort([r["iou"] for r in res.rows])[::-1]
        if len(ious):
            ax.plot(np.arange(1, len(ious) + 1), ious, label=res.name, lw=1.2)
    ax.axhline(results[0].failure_iou if results else FAILURE_IOU, color="gray", lw=0.6, ls="--")
    ax.set_xlabel("images, best to worst", fontsize=7)
    ax.set_ylabel("IoU", fontsize=7)
    ax.set_ylim(-0.02, 1.02)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6, loc="lower left")
    w.skip(height + 0.03)


def _page_two(pdf: Any, results: Sequence[StrategyResult], ev: EvalSet | None) -> None:
    plt = pyplot()
    fig = plt.figure(figsize=A4_INCHES)
    w = _Writer(fig)
    metrics = {r.name: r.metrics for r in results}
    w.text("3. Results", 12, "bold", gap=0.2)
    w.text("Point metrics (foreground points inside / background points outside the true shape, distances from "
           "its centre of mass) and mask metrics per strategy; failures are images with IoU below "
           f"{results[0].failure_iou:g}.", 8.5)
    _table(fig, w, *results_rows(metrics, {r.name: r.pipeline for r in results}), size=6.5)
    w.text("Mean IoU per class:", 8.5, gap=0.2)
    _table(fig, w, *per_class_rows(metrics), size=7)
    if any(r.rows for r in results):
        _iou_axes(fig, w, results)
    if ev is not None and len(ev.names):
        w.text("Examples: the first test image of each class with each strategy's points (green foreground, red "
               "background) and its mask's outline (yellow).", 8.5, gap=0.2)
        height = min(0.085 * len(results), 0.3)
        draw_examples_panel(fig, [w.left, w.y - height, w.right - w.left, height], results, ev)
        w.skip(height + 0.02)
    w.text("4. Discussion", 12, "bold", gap=0.2)
    w.text(" ".join(discussion(results, ev)), 9)
    pdf.savefig(fig)
    plt.close(fig)


def write_pdf(path: str | Path, results: Sequence[StrategyResult], ev: EvalSet | None,
              setup: Sequence[str] = ()) -> Path:
    """The 2-page A4 report. ``setup``: what the run used (:func:`setup_sentences`), for page one."""
    from matplotlib.backends.backend_pdf import PdfPages

    if not results:
        raise ValueError("no strategy results to report")
    path = Path(path)
    # No creation date: the same artifacts give the same PDF bytes, so DVC sees no spurious change.
    with atomic_path(path) as tmp, PdfPages(tmp, metadata={"CreationDate": None, "Title": "camprompt report"}) as pdf:
        _page_one(pdf, results, ev, setup)
        _page_two(pdf, results, ev)
    return path


