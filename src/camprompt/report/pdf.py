"""The 2-page A4 PDF: what was used, Grad-CAM, the pipelines; then every metric and the discussion."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any


from camprompt.artifacts import atomic_path
from camprompt.report.figures import draw_examples_panel, draw_gradcam_panel, draw_robustness_panel, heat_config, pyplot
from camprompt.report.results import EvalSet, Robustness, StrategyResult, best_result
from camprompt.report.tables import per_class_rows, results_rows, robustness_rows
from camprompt.report.words import describe_strategy, discussion

__all__ = ["A4_INCHES", "write_pdf"]

A4_INCHES = (8.27, 11.69)


BOTTOM = 0.03  # figure fraction kept free at the foot of each page


class _Writer:
    """Top-down text layout on a figure (y in figure fraction), wrapping by an estimated line width."""

    def __init__(self, fig: Any, left: float = 0.07, right: float = 0.93, top: float = 0.96) -> None:
        self.fig, self.left, self.right, self.y = fig, left, right, top

    def _lines(self, s: str, size: float, weight: str) -> tuple[list[str], float]:
        width_in = (self.right - self.left) * self.fig.get_figwidth()
        em = 0.62 if weight == "bold" else 0.54
        chars = max(20, int(width_in * 72 / (size * em)))
        return textwrap.wrap(s, chars) or [""], size * 1.35 / 72 / self.fig.get_figheight()

    def text_height(self, s: str, size: float = 9.0, weight: str = "normal", gap: float = 0.4) -> float:
        lines, line_h = self._lines(s, size, weight)
        return (len(lines) + gap) * line_h

    def text(self, s: str, size: float = 9.0, weight: str = "normal", gap: float = 0.4) -> None:
        lines, line_h = self._lines(s, size, weight)
        for line in lines:
            self.fig.text(self.left, self.y, line, fontsize=size, weight=weight, va="top", ha="left")
            self.y -= line_h
        self.y -= gap * line_h

    def skip(self, frac: float) -> None:
        self.y -= frac

    def free(self) -> float:
        """Height left above the page's foot."""
        return self.y - BOTTOM

    def done(self) -> None:
        if self.y < BOTTOM - 1e-9:
            raise ValueError(f"the report's page overflows by {BOTTOM - self.y:.3f} of its height; shorten its content")


def _two_lines(header: str, max_chars: int = 10) -> str:
    """Break a long column header at the space nearest its middle (table cells are narrow)."""
    spaces = [i for i, ch in enumerate(header) if ch == " "]
    if len(header) <= max_chars or not spaces:
        return header
    cut = min(spaces, key=lambda i: abs(i - len(header) / 2))
    return header[:cut] + "\n" + header[cut + 1:]


def _table_height(fig: Any, rows: Sequence[Sequence[str]], size: float) -> float:
    return size * 2.1 / 72 / fig.get_figheight() * (len(rows) + 1.6) + 0.012  # the header row holds two lines


def _table(fig: Any, w: _Writer, header: Sequence[str], rows: Sequence[Sequence[str]], size: float = 7.0) -> None:
    """A matplotlib table placed at the writer's cursor, full text width."""
    height = _table_height(fig, rows, size) - 0.012
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
    """What was used, Grad-CAM, the pipelines in plain words, and the main results table."""
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
    w.skip(0.006)
    w.text("1. Grad-CAM", 12, "bold", gap=0.2)
    config = heat_config(best_result(results).params, ev.heatmaps) if (results and ev) else None
    w.text(f"The classifier's Grad-CAM ({config}) for the first test image of each class, explaining the predicted "
           "class; the white cross marks the heatmap's maximum, the classic point prompt.", 8.5)
    metrics = {r.name: r.metrics for r in results}
    header, rows = results_rows(metrics, {r.name: r.pipeline for r in results})
    caption = ("Point metrics (foreground points inside / background points outside the true shape, distances from its "
               f"centre of mass) and mask metrics per strategy; failures are images with IoU below {results[0].failure_iou:g}.")
    below = (w.text_height("2. Pipelines", 12, "bold", 0.2) + w.text_height("3. Results", 12, "bold", 0.2)
             + w.text_height(caption, 8.5) + _table_height(fig, rows, 6.5)
             + sum(w.text_height(f"{r.name} ({r.pipeline} pipeline)", 9.5, "bold", 0.0) + w.text_height(describe_strategy(r), 8.5, gap=0.4)
                   for r in results))
    if ev is not None and len(ev.names):
        height = max(0.12, min(0.3, w.free() - below - 0.015))
        draw_gradcam_panel(fig, [w.left, w.y - height, w.right - w.left, height], ev, config)
        w.skip(height + 0.015)
    w.text("2. Pipelines", 12, "bold", gap=0.2)
    for res in results:
        w.text(f"{res.name} ({res.pipeline} pipeline)", 9.5, "bold", gap=0.0)
        w.text(describe_strategy(res), 8.5, gap=0.4)
    w.text("3. Results", 12, "bold", gap=0.2)
    w.text(caption, 8.5)
    _table(fig, w, header, rows, size=6.5)
    w.done()
    pdf.savefig(fig)
    plt.close(fig)


def _page_two(pdf: Any, results: Sequence[StrategyResult], ev: EvalSet | None, robustness: Robustness | None) -> None:
    """Mean IoU per class, examples, robustness with its worst cases, and the discussion."""
    plt = pyplot()
    fig = plt.figure(figsize=A4_INCHES)
    w = _Writer(fig)
    metrics = {r.name: r.metrics for r in results}
    per_class = per_class_rows(metrics)
    examples = ("Mean IoU per class, then the first test image of each class with each strategy's points (green "
                "foreground, red background) and its mask's outline (yellow).")
    words = " ".join(discussion(results, ev, robustness))
    robust = robustness is not None and bool(robustness.variants)
    shown = next((r.name for r in results if r.pipeline == "fg_bg"), best_result(results).name)
    if robust:
        n = sorted({v.get("n_images") for v in robustness.variants.values()}, key=str)
        robust_text = (f"The same classifier and strategies on {'/'.join(map(str, n))} degraded or foreign val images per "
                       "variant (JPEG round trips, Gaussian noise, both, and shapes drawn by another generator's rules or "
                       "image size), "
                       "beside SAM prompted with the ideal point: the ground-truth pixel farthest from the edge, a "
                       "measurement and never a prompt.")
        robust_rows = robustness_rows(robustness.variants)
        worst_text = f"The worst images of {shown} on each variant: its points, its mask (yellow) and the true shape (cyan)."
    fixed = (w.text_height(examples, 8.5, gap=0.2) + _table_height(fig, per_class[1], 7)
             + w.text_height("5. Discussion", 12, "bold", 0.2) + w.text_height(words, 9) + 0.03)
    if robust:
        fixed += (w.text_height("4. Robustness", 12, "bold", 0.2) + w.text_height(robust_text, 8.5)
                  + _table_height(fig, robust_rows[1], 5.5) + w.text_height(worst_text, 8.5, gap=0.2))
    rows_examples = len(results) if ev is not None and len(ev.names) else 0
    rows_worst = len(robustness.variants) if robust else 0
    space = max(0.0, w.free() - fixed)
    per_row = min(0.075, space / max(1, rows_examples + rows_worst))

    w.text(examples, 8.5, gap=0.2)
    _table(fig, w, *per_class, size=7)
    if rows_examples:
        draw_examples_panel(fig, [w.left, w.y - per_row * rows_examples, w.right - w.left, per_row * rows_examples], results, ev)
        w.skip(per_row * rows_examples + 0.01)
    if robust:
        w.text("4. Robustness", 12, "bold", gap=0.2)
        w.text(robust_text, 8.5)
        _table(fig, w, *robust_rows, size=5.5)
        w.text(worst_text, 8.5, gap=0.2)
        draw_robustness_panel(fig, [w.left, w.y - per_row * rows_worst, w.right - w.left, per_row * rows_worst], robustness, shown)
        w.skip(per_row * rows_worst + 0.01)
    w.text(f"{5 if robust else 4}. Discussion", 12, "bold", gap=0.2)
    w.text(words, 9)
    w.done()
    pdf.savefig(fig)
    plt.close(fig)


def write_pdf(path: str | Path, results: Sequence[StrategyResult], ev: EvalSet | None,
              setup: Sequence[str] = (), robustness: Robustness | None = None) -> Path:
    """The 2-page A4 report. ``setup``: what the run used (:func:`setup_sentences`), for page one;
    ``robustness``: the variants' results, for page two."""
    from matplotlib.backends.backend_pdf import PdfPages

    if not results:
        raise ValueError("no strategy results to report")
    path = Path(path)
    # No creation date: the same artifacts give the same PDF bytes, so DVC sees no spurious change.
    with atomic_path(path) as tmp, PdfPages(tmp, metadata={"CreationDate": None, "Title": "camprompt report"}) as pdf:
        _page_one(pdf, results, ev, setup)
        _page_two(pdf, results, ev, robustness)
    return path
