"""The report: every strategy's metrics as one table, a 1-2 page PDF and a self-contained HTML gallery.

Why a module of its own: the numbers in the PDF, the terminal table, ``data/report/results.md`` and the
README's results table must be the *measured* ones, never typed by hand. Everything here is generated
from the DVC artifacts (docs/ARCHITECTURE.md):

* ``metrics/S.json`` for each strategy S of params ``strategies`` -> :func:`results_markdown`;
* ``data/strategies/S/per_image.csv`` and ``masks.zarr``, ``data/heatmaps.zarr`` and the evaluated
  split itself -> :func:`write_gallery` (one row per image and strategy) and :func:`discussion`
  (which separates failures caused by a point outside the shape from those where SAM's mask was
  wrong although every point was right);
* the pipeline classes' own docstrings -> :func:`describe_strategy` (so a renamed or re-designed
  pipeline describes itself, and the report never drifts from the code).

Command line (from the repository root)::

    python -m camprompt.report table          # print the results table of the latest metrics
    python -m camprompt.report readme-table   # rewrite README.md between the results markers
    python -m camprompt.report readme-figure  # refresh docs/figures/examples.png (a small PNG)
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import math
import re
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from camprompt.artifacts import ArtifactError, atomic_path, load_params, open_arrays, read_json

__all__ = [
    "RESULTS_START",
    "RESULTS_END",
    "StrategyResult",
    "EvalSet",
    "load_metrics",
    "load_results",
    "load_eval_set",
    "results_markdown",
    "update_readme",
    "describe_strategy",
    "failure_breakdown",
    "discussion",
    "write_pdf",
    "write_gallery",
    "write_examples_figure",
    "draw_examples_panel",
    "draw_gradcam_panel",
    "build_report",
]

RESULTS_START = "<!-- results:start -->"
RESULTS_END = "<!-- results:end -->"
DEFAULT_FAILURE_IOU = 0.5
A4_INCHES = (8.27, 11.69)
CLASS_ORDER = ("circle", "square", "triangle", "star", "diamond")  # = camprompt.data.CLASSES


# ------------------------------------------------------------------------------------------------
# Loading the artifacts
# ------------------------------------------------------------------------------------------------


@dataclass
class StrategyResult:
    """One strategy's artifacts. ``rows`` come from ``per_image.csv`` (typed); ``masks`` (N,H,W) bool."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    masks: np.ndarray | None = None

    @property
    def pipeline(self) -> str:
        return str(self.params.get("pipeline", "?"))

    @property
    def failure_iou(self) -> float:
        value = self.metrics.get("failure_iou")
        return DEFAULT_FAILURE_IOU if value is None else float(value)


@dataclass
class EvalSet:
    """The evaluated images: uint8 (N,H,W,3), ground truth bool (N,H,W), names, class names, heatmaps."""

    images: np.ndarray
    masks: np.ndarray
    names: list[str]
    classes: list[str]
    heatmaps: dict[str, np.ndarray]
    split: str = "test"


def strategies_of(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """params ``strategies`` as {name: params} (with the ``cam`` of the search a strategy names); a
    clear error when there are none."""
    strategies = params.get("strategies") or {}
    if not isinstance(strategies, Mapping) or not strategies:
        raise ArtifactError("params.yaml has no `strategies`; the report needs at least one")
    searches = params.get("searches") or {}
    out: dict[str, dict[str, Any]] = {}
    for name, sparams in strategies.items():
        sparams = dict(sparams or {})
        search = searches.get(sparams.get("search")) if isinstance(searches, Mapping) else None
        if isinstance(search, Mapping) and "cam" in search:
            sparams.setdefault("cam", search["cam"])  # the heatmap its points come from, for the figures
        out[str(name)] = sparams
    return out


def load_metrics(params: Mapping[str, Any], metrics_dir: str | Path = "metrics") -> dict[str, dict[str, Any]]:
    """``metrics/S.json`` of every strategy in params order (missing file -> error naming the stage)."""
    out = {}
    for name in strategies_of(params):
        path = Path(metrics_dir) / f"{name}.json"
        if not path.is_file():
            raise ArtifactError(f"{path} does not exist; run `dvc repro metrics@{name}` first")
        out[name] = read_json(path)
    return out


def _float(text: str) -> float:
    return float(text) if text not in ("", None) else math.nan


def read_per_image(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``per_image.csv`` with numbers parsed (empty cells -> NaN) and ``points`` as a list."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist; run the strategy's metrics stage (dvc repro)")
    rows = []
    with path.open(newline="") as fh:
        for raw in csv.DictReader(fh):
            try:
                rows.append({
                    "name": raw["name"], "class": raw["class"], "iou": _float(raw["iou"]),
                    "n_fg": int(raw["n_fg"]), "n_bg": int(raw["n_bg"]),
                    "fg_hits": int(raw["fg_hits"]), "bg_outside": int(raw["bg_outside"]),
                    "fg_dist": _float(raw["fg_dist"]), "bg_dist": _float(raw["bg_dist"]),
                    "score": _float(raw.get("score", "")), "points": json.loads(raw.get("points") or "[]"),
                })
            except (KeyError, ValueError) as exc:
                raise ArtifactError(f"{path}: malformed row {raw!r} ({exc}); re-run its metrics stage") from exc
    return rows


def _load_masks(path: Path, names: Sequence[str]) -> np.ndarray:
    store = open_arrays(path)
    found = list(store.attrs.get("names") or [])
    if found != list(names):
        raise ArtifactError(f"{path} holds other images than per_image.csv; re-run the strategy's stages (dvc repro)")
    return np.asarray(store["masks"][...], dtype=bool)


def load_results(params: Mapping[str, Any], root: str | Path = ".", with_masks: bool = True) -> list[StrategyResult]:
    """Every strategy's metrics, per-image rows and (optionally) predicted masks, in params order."""
    root = Path(root)
    metrics = load_metrics(params, root / "metrics")
    results = []
    for name, sparams in strategies_of(params).items():
        folder = root / "data" / "strategies" / name
        rows = read_per_image(folder / "per_image.csv")
        masks = _load_masks(folder / "masks.zarr", [r["name"] for r in rows]) if with_masks else None
        results.append(StrategyResult(name, sparams, metrics[name], rows, masks))
    return results


def load_eval_set(params: Mapping[str, Any], root: str | Path = ".") -> EvalSet:
    """The evaluated split (``eval.split``/``eval.limit``) and every Grad-CAM config's heatmaps."""
    from camprompt.data import CLASSES, load_split

    root = Path(root)
    ev = params.get("eval") or {}
    split_name = ev.get("split", "test")
    split = load_split(root / params["data"]["root"], split_name, ev.get("limit"))
    heat_path = root / params.get("gradcam", {}).get("out", "data/heatmaps.zarr")
    store = open_arrays(heat_path)
    if list(store.attrs.get("names") or []) != list(split.names):
        raise ArtifactError(f"{heat_path} holds other images than the evaluated split; run `dvc repro heatmaps`")
    heatmaps = {key[len("heatmap_"):]: np.asarray(arr[...]) for key, arr in store.arrays() if key.startswith("heatmap_")}
    classes = [CLASSES[int(c)] for c in split.labels]
    return EvalSet(split.images, split.masks, list(split.names), classes, heatmaps, split_name)


# ------------------------------------------------------------------------------------------------
# The results table
# ------------------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{float(value):.{digits}f}"


# (header, function of a metrics dict) -- one place defines what every table shows.
_MAIN_COLUMNS: list[tuple[str, Any]] = [
    ("FG hit rate", lambda m: _fmt(m.get("fg_hit_rate"))),
    ("BG outside rate", lambda m: _fmt(m.get("bg_outside_rate"))),
    ("FG dist (px)", lambda m: _fmt(m.get("fg_dist_mean"), 2)),
    ("BG dist (px)", lambda m: _fmt(m.get("bg_dist_mean"), 2)),
    ("mean IoU", lambda m: _fmt(m.get("iou_mean"))),
    ("IoU std", lambda m: _fmt(m.get("iou_std"))),
    ("median IoU", lambda m: _fmt(m.get("iou_median"))),
    ("failures", lambda m: f"{m.get('n_failures', '-')} / {m.get('n_images', '-')}"),
]


def class_order(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Classes in camprompt's order, then any other class found in the metrics."""
    seen = [c for m in metrics.values() for c in (m.get("iou_per_class") or {})]
    return [c for c in CLASS_ORDER if c in seen] + sorted(set(seen) - set(CLASS_ORDER))


def results_rows(metrics: Mapping[str, Mapping[str, Any]], pipelines: Mapping[str, str] | None = None) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the main table: one row per strategy."""
    header = ["strategy", "pipeline"] + [h for h, _ in _MAIN_COLUMNS]
    rows = [[name, (pipelines or {}).get(name, "")] + [f(m) for _, f in _MAIN_COLUMNS] for name, m in metrics.items()]
    return header, rows


def per_class_rows(metrics: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the per-class mean IoU table."""
    classes = class_order(metrics)
    rows = [[name] + [_fmt((m.get("iou_per_class") or {}).get(c)) for c in classes] for name, m in metrics.items()]
    return ["strategy"] + [f"IoU {c}" for c in classes], rows


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def results_markdown(metrics: Mapping[str, Mapping[str, Any]], pipelines: Mapping[str, str] | None = None) -> str:
    """Both tables as GitHub markdown: point and mask metrics, then mean IoU per class."""
    if not metrics:
        raise ValueError("no metrics to tabulate")
    main = _markdown(*results_rows(metrics, pipelines))
    per_class = _markdown(*per_class_rows(metrics))
    n = sorted({m.get("n_images") for m in metrics.values()}, key=str)
    failure = sorted({m.get("failure_iou", DEFAULT_FAILURE_IOU) for m in metrics.values()}, key=str)
    note = (f"Evaluated on {', '.join(map(str, n))} images; failures = IoU < {', '.join(map(str, failure))}. "
            "FG hit rate: foreground points inside the true shape; BG outside rate: background points outside it; "
            "distances: from the shape's centre of mass.")
    return f"{main}\n\n{per_class}\n\n{note}\n"


def update_readme(readme: str | Path, table: str) -> bool:
    """Replace the text between the results markers of ``readme`` with ``table``; True if it changed.

    The markers stay; a generated-by comment says which command refreshes the block, so nobody edits
    numbers by hand. Missing or reversed markers are an error (never append blindly).
    """
    readme = Path(readme)
    if not readme.is_file():
        raise ArtifactError(f"{readme} does not exist")
    text = readme.read_text()
    start, end = text.find(RESULTS_START), text.find(RESULTS_END)
    if start < 0 or end < 0 or end < start or text.count(RESULTS_START) != 1 or text.count(RESULTS_END) != 1:
        raise ArtifactError(f"{readme} needs exactly one {RESULTS_START} ... {RESULTS_END} block")
    block = (f"{RESULTS_START}\n<!-- generated by `python -m camprompt.report readme-table` from metrics/*.json; "
             f"do not edit by hand -->\n\n{table.strip()}\n\n")
    new = text[:start] + block + text[end:]
    if new == text:
        return False
    with atomic_path(readme) as tmp:
        tmp.write_text(new)
    return True


# ------------------------------------------------------------------------------------------------
# Words generated from the code and the numbers
# ------------------------------------------------------------------------------------------------


def _plain(doc: str) -> str:
    """Docstring reST -> plain text (roles and literals unwrapped, whitespace collapsed)."""
    doc = re.sub(r":\w+:`~?([^`]+)`", lambda m: m.group(1).split(".")[-1], doc)
    doc = doc.replace("``", "")
    return " ".join(doc.split())


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z(])", text.strip()) if s]


def describe_strategy(name: str, params: Mapping[str, Any], max_sentences: int = 3) -> str:
    """1-3 sentences: the pipeline class's own description (``description`` or the docstring's first
    paragraph) plus the strategy's non-default knobs from params."""
    kind = str(params.get("pipeline", "?"))
    try:
        from camprompt.pipelines import PIPELINES

        cls = PIPELINES.get(kind)
    except ImportError:  # the report must still render if the pipelines module is broken
        cls = None
    if cls is None:
        text = f"Unknown pipeline kind {kind!r}."
    else:
        doc = getattr(cls, "description", None) or (cls.__doc__ or cls.__name__).strip().split("\n\n")[0]
        text = f"{cls.__name__}: " + _plain(doc)
    sentences = _sentences(text)[: max_sentences - 1]
    knobs = {k: v for k, v in params.items() if k != "pipeline"}
    if knobs:
        sentences.append("Settings: " + ", ".join(f"{k}={v}" for k, v in knobs.items()) + ".")
    return " ".join(sentences)


@dataclass(frozen=True)
class Failures:
    """Why a strategy's failures (IoU < failure_iou) failed, from the prompts' ground-truth hits."""

    total: int
    fg_outside: int    # a foreground point outside the true shape: the prompt was wrong
    bg_inside: int     # every fg point inside, but a background point inside the shape
    wrong_mask: int    # every point right, yet SAM's chosen mask is wrong


def failure_breakdown(result: StrategyResult) -> Failures:
    """Sort each failed image into exactly one cause (see :class:`Failures`)."""
    fails = [r for r in result.rows if not (r["iou"] >= result.failure_iou)]
    fg = sum(1 for r in fails if r["fg_hits"] < r["n_fg"])
    bg = sum(1 for r in fails if r["fg_hits"] >= r["n_fg"] and r["bg_outside"] < r["n_bg"])
    return Failures(len(fails), fg, bg, len(fails) - fg - bg)


def _best(results: Sequence[StrategyResult]) -> StrategyResult:
    return max(results, key=lambda r: (r.metrics.get("iou_mean") or -1.0, r.metrics.get("fg_hit_rate") or -1.0))


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def discussion(results: Sequence[StrategyResult]) -> list[str]:
    """At most 5 sentences on where the best pipeline still fails and what would help, from the numbers."""
    if not results:
        return ["No strategy has been evaluated yet."]
    best = _best(results)
    m = best.metrics
    out = []
    first = (f"The best strategy, {best.name} ({best.pipeline} pipeline), reaches a mean IoU of {_fmt(m.get('iou_mean'))} "
             f"(median {_fmt(m.get('iou_median'))}) with a foreground hit rate of {_fmt(m.get('fg_hit_rate'))}")
    if m.get("bg_outside_rate") is not None:
        first += f" and a background outside rate of {_fmt(m.get('bg_outside_rate'))}"
    baseline = [r for r in results if r.pipeline == "basic" and r is not best]
    if baseline:
        first += f", against {_fmt(baseline[0].metrics.get('iou_mean'))} for the centre-point baseline {baseline[0].name}"
    out.append(first + ".")
    f = failure_breakdown(best)
    n = m.get("n_images", len(best.rows))
    if f.total:
        out.append(f"It still fails (IoU < {best.failure_iou:g}) on {f.total} of {n} images: "
                   f"{_count(f.fg_outside, 'image')} with a foreground point outside the shape, "
                   f"{f.bg_inside} with a background point on it, and {f.wrong_mask} where every point was right "
                   "but SAM's chosen mask was not.")
    elif best.rows:
        worst = min(best.rows, key=lambda r: r["iou"])
        out.append(f"It has no failure (IoU < {best.failure_iou:g}) on the {n} images; its worst image, "
                   f"{worst['name']} ({worst['class']}), still scores IoU {_fmt(worst['iou'])}.")
    per_class = {c: v for c, v in (m.get("iou_per_class") or {}).items() if v is not None}
    if len(per_class) > 1:
        hard, easy = min(per_class, key=per_class.get), max(per_class, key=per_class.get)
        out.append(f"The hardest class is {hard} (mean IoU {_fmt(per_class[hard])}), the easiest {easy} "
                   f"({_fmt(per_class[easy])}).")
    out.append(_advice(f, m))
    return out[:5]


def _advice(f: Failures, m: Mapping[str, Any]) -> str:
    """The improvement that addresses the dominant kind of remaining error."""
    if f.total and f.fg_outside + f.bg_inside >= f.wrong_mask:
        return ("Most remaining failures are prompt errors, so better localisation (more Grad-CAM candidates "
                "verified by the classifier, several layers, more interior points) would help most.")
    if f.total:
        return ("Most remaining failures happen although every point is right, so a better choice among SAM's "
                "candidate masks (e.g. checking each with the classifier) or a larger SAM would help most.")
    return (f"What remains is boundary error (mean IoU {_fmt(m.get('iou_mean'))}, not 1), which a larger SAM "
            "(Meta's ViT-B checkpoint on a GPU) or a mask refinement step could reduce.")


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _example_rows(classes: Sequence[str], per_class: int = 1) -> list[int]:
    """The first image of each class, in class order: a small, stable sample."""
    picked = []
    for c in CLASS_ORDER:
        picked += [i for i, k in enumerate(classes) if k == c][:per_class]
    return picked or list(range(min(5, len(classes))))


def _heat_config(params: Mapping[str, Any], heatmaps: Mapping[str, np.ndarray]) -> str | None:
    """The CAM a strategy uses (``cam``, default layer2), or the first configured for the baseline."""
    if not heatmaps:
        return None
    name = params.get("cam") or ("layer2" if "layer2" in heatmaps else next(iter(heatmaps)))
    return name if name in heatmaps else next(iter(heatmaps))


def draw_gradcam_panel(fig: Any, rect: Sequence[float], ev: EvalSet, config: str | None) -> None:
    """Grad-CAM examples inside ``rect`` (figure fraction): rows input / heatmap / overlay / ground truth,
    one column per class; the white cross is the heatmap's arg-max."""
    plt = _pyplot()
    idx = _example_rows(ev.classes)
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
                peak_y, peak_x = np.unravel_index(int(np.argmax(heat)), heat.shape)  # numpy: the report imports no torch
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
    idx = _example_rows(ev.classes)
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
            ax.set_xlabel(f"IoU {_fmt(row['iou'], 2)}", fontsize=6, labelpad=1)


def write_examples_figure(path: str | Path, results: Sequence[StrategyResult], ev: EvalSet) -> Path:
    """A small PNG for the README: :func:`draw_examples_panel` on its own."""
    plt = _pyplot()
    n = len(_example_rows(ev.classes))
    fig = plt.figure(figsize=(1.25 * n + 0.7, 1.05 * len(results) + 0.1))
    draw_examples_panel(fig, [0.0, 0.0, 1.0, 1.0], results, ev)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------
# The PDF
# ------------------------------------------------------------------------------------------------


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


def _subtitle(results: Sequence[StrategyResult], ev: EvalSet | None, extra: Mapping[str, Any]) -> str:
    n = results[0].metrics.get("n_images") if results else None
    parts = [f"{n} {ev.split if ev else 'evaluated'} images of the synthetic-shapes benchmark (64x48, one shape each)"]
    if extra.get("classifier_accuracy") is not None:
        parts.append(f"ResNet-18 classifier test accuracy {_fmt(extra['classifier_accuracy'])}")
    if extra.get("backend"):
        parts.append(f"SAM backend: {extra['backend']}")
    return "; ".join(parts) + "."


def _page_one(pdf: Any, results: Sequence[StrategyResult], ev: EvalSet | None, extra: Mapping[str, Any]) -> None:
    plt = _pyplot()
    fig = plt.figure(figsize=A4_INCHES)
    w = _Writer(fig)
    w.text("camprompt: Grad-CAM point prompts for Segment Anything", 15, "bold", gap=0.2)
    w.text(_subtitle(results, ev, extra), 8.5, gap=0.8)
    w.text("1. Grad-CAM", 12, "bold", gap=0.2)
    config = _heat_config(_best(results).params, ev.heatmaps) if (results and ev) else None
    w.text(f"The classifier's Grad-CAM ({config}) for the first test image of each class, explaining the predicted "
           "class; the white cross marks the heatmap's maximum.", 8.5)
    if ev is not None and len(ev.names):
        height = 0.40
        draw_gradcam_panel(fig, [w.left, w.y - height, w.right - w.left, height], ev, config)
        w.skip(height + 0.02)
    w.text("2. Pipelines", 12, "bold", gap=0.2)
    for res in results:
        w.text(res.name, 9.5, "bold", gap=0.0)
        w.text(describe_strategy(res.name, res.params), 8.5, gap=0.5)
    pdf.savefig(fig)
    plt.close(fig)


def _iou_axes(fig: Any, w: _Writer, results: Sequence[StrategyResult], height: float = 0.17) -> None:
    """Sorted per-image IoU of every strategy: how many images reach which quality."""
    ax = fig.add_axes([w.left + 0.06, w.y - height, w.right - w.left - 0.08, height - 0.02])
    for res in results:
        ious = np.sort([r["iou"] for r in res.rows])[::-1]
        if len(ious):
            ax.plot(np.arange(1, len(ious) + 1), ious, label=res.name, lw=1.2)
    ax.axhline(results[0].failure_iou if results else DEFAULT_FAILURE_IOU, color="gray", lw=0.6, ls="--")
    ax.set_xlabel("images, best to worst", fontsize=7)
    ax.set_ylabel("IoU", fontsize=7)
    ax.set_ylim(-0.02, 1.02)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6, loc="lower left")
    w.skip(height + 0.03)


def _page_two(pdf: Any, results: Sequence[StrategyResult], ev: EvalSet | None) -> None:
    plt = _pyplot()
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
    w.text(" ".join(discussion(results)), 9)
    pdf.savefig(fig)
    plt.close(fig)


def write_pdf(path: str | Path, results: Sequence[StrategyResult], ev: EvalSet | None,
              extra: Mapping[str, Any] | None = None) -> Path:
    """The 2-page A4 report. ``extra``: optional ``classifier_accuracy`` and ``backend`` for the subtitle."""
    from matplotlib.backends.backend_pdf import PdfPages

    if not results:
        raise ValueError("no strategy results to report")
    path = Path(path)
    # No creation date: the same artifacts give the same PDF bytes, so DVC sees no spurious change.
    with atomic_path(path) as tmp, PdfPages(tmp, metadata={"CreationDate": None, "Title": "camprompt report"}) as pdf:
        _page_one(pdf, results, ev, extra or {})
        _page_two(pdf, results, ev)
    return path


# ------------------------------------------------------------------------------------------------
# The HTML gallery
# ------------------------------------------------------------------------------------------------


def _png_uri(image: Any) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _rgb_uri(array: np.ndarray) -> str:
    from PIL import Image

    return _png_uri(Image.fromarray(np.asarray(array, np.uint8), "RGB"))


def _mask_uri(mask: np.ndarray) -> str:
    from PIL import Image

    return _png_uri(Image.fromarray(np.asarray(mask, bool)))


def _heat_uri(heat: np.ndarray) -> str:
    """A palette PNG with matplotlib's jet colours: a fraction of an RGB PNG's size."""
    from PIL import Image

    plt = _pyplot()
    palette = (plt.get_cmap("jet")(np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    index = np.clip(np.round(np.nan_to_num(heat) * 255), 0, 255).astype(np.uint8)
    img = Image.fromarray(index, "L").convert("P")
    img.putpalette(palette.ravel().tolist())
    return _png_uri(img)


def _json_num(value: float, digits: int = 4) -> float | None:
    return round(float(value), digits) if value is not None and math.isfinite(value) else None


def gallery_data(results: Sequence[StrategyResult], ev: EvalSet) -> dict[str, Any]:
    """Everything the page shows, as JSON: each image's pictures once, one row per image and strategy."""
    index = {name: i for i, name in enumerate(ev.names)}
    configs = {res.name: _heat_config(res.params, ev.heatmaps) for res in results}
    images = []
    for i in range(len(ev.names)):
        heat = {c: _heat_uri(ev.heatmaps[c][i]) for c in sorted({c for c in configs.values() if c})}
        images.append({"name": ev.names[i], "class": ev.classes[i], "input": _rgb_uri(ev.images[i]),
                       "gt": _mask_uri(ev.masks[i]), "heat": heat})
    rows = []
    for res in results:
        for j, r in enumerate(res.rows):
            if r["name"] not in index:
                raise ArtifactError(f"strategy {res.name}: image {r['name']} is not in the evaluated split; re-run dvc repro")
            rows.append({
                "img": index[r["name"]], "strategy": res.name, "pipeline": res.pipeline, "iou": _json_num(r["iou"]),
                "score": _json_num(r["score"]), "fg": f"{r['fg_hits']}/{r['n_fg']}", "bg": f"{r['bg_outside']}/{r['n_bg']}",
                "points": [[_json_num(x, 2), _json_num(y, 2), int(l)] for x, y, l in r["points"]],
                "mask": _mask_uri(res.masks[j]) if res.masks is not None else None, "heat": configs[res.name],
            })
    height, width = ev.masks.shape[1:3] if ev.masks.ndim == 3 else (0, 0)
    return {"images": images, "rows": rows, "strategies": [r.name for r in results],
            "classes": [c for c in CLASS_ORDER if c in ev.classes] + sorted(set(ev.classes) - set(CLASS_ORDER)),
            "width": int(width), "height": int(height),
            "failure_iou": results[0].failure_iou if results else DEFAULT_FAILURE_IOU}


def write_gallery(path: str | Path, results: Sequence[StrategyResult], ev: EvalSet, title: str = "camprompt gallery") -> Path:
    """The self-contained gallery page (inline images, CSS and JS; opens with no network)."""
    from html import escape

    payload = json.dumps(gallery_data(results, ev), separators=(",", ":")).replace("</", "<\\/")
    page = _GALLERY_TEMPLATE.replace("__TITLE__", escape(title)).replace("__DATA__", payload)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


_GALLERY_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<script>
// Any script error is recorded in the page (data-errors + #errors), so a headless check can see it.
window.__errors = [];
window.addEventListener("error", function (e) {
  window.__errors.push(String(e.message || e));
  document.documentElement.setAttribute("data-errors", String(window.__errors.length));
  var box = document.getElementById("errors");
  if (box) { box.textContent = window.__errors.join("\n"); box.hidden = false; }
});
</script>
<style>
body { font: 13px/1.35 system-ui, sans-serif; margin: 12px 16px; color: #222; }
h1 { font-size: 18px; margin: 0 0 6px; }
#controls { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; padding: 6px 0; position: sticky; top: 0; background: #fff; z-index: 2; border-bottom: 1px solid #ddd; }
#controls label { white-space: nowrap; }
input[type=number] { width: 4.5em; }
table { border-collapse: collapse; margin-top: 8px; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 3px 6px; text-align: center; vertical-align: middle; }
th { background: #f3f3f3; position: sticky; top: 38px; z-index: 1; }
th.sort { cursor: pointer; user-select: none; }
th.sort:hover { background: #e6e6e6; }
th[data-dir=asc]::after { content: " \25B2"; } th[data-dir=desc]::after { content: " \25BC"; }
td.name { text-align: left; font-family: ui-monospace, monospace; }
.thumb { position: relative; width: 128px; height: 96px; display: inline-block; }
.thumb img, .thumb svg { position: absolute; left: 0; top: 0; width: 100%; height: 100%; image-rendering: pixelated; }
.fail { color: #b00020; font-weight: bold; }
.pager { margin: 8px 0; }
#errors { color: #b00020; white-space: pre-wrap; }
.legend span { display: inline-block; width: 10px; height: 10px; border-radius: 50%; border: 1px solid #fff; vertical-align: middle; }
</style></head>
<body data-status="loading">
<h1>__TITLE__</h1>
<pre id="errors" hidden></pre>
<div class="legend">One row per evaluated image and strategy, worst IoU first. Points: <span style="background:#0c0"></span> foreground,
<span style="background:#e00"></span> background (pixel centres at integer coordinates). Click a column header to sort.</div>
<div id="controls">
  <label>class <select id="f-class"></select></label>
  <label>strategy <select id="f-strategy"></select></label>
  <label>IoU from <input id="f-min" type="number" min="0" max="1" step="0.05" value="0"></label>
  <label>to <input id="f-max" type="number" min="0" max="1" step="0.05" value="1"></label>
  <label>name <input id="f-name" type="search" size="8"></label>
  <label><input id="f-fail" type="checkbox"> failures only</label>
  <label>rows per page <select id="f-size"><option>50</option><option selected>100</option><option>250</option><option value="0">all</option></select></label>
  <span id="count"></span>
</div>
<div class="pager" id="pager-top"></div>
<table id="gallery"><thead><tr>
  <th class="sort" data-key="name">image</th><th class="sort" data-key="class">class</th>
  <th class="sort" data-key="strategy">strategy</th><th class="sort" data-key="iou">IoU</th>
  <th class="sort" data-key="score">SAM score</th><th class="sort" data-key="fg">FG hits</th><th class="sort" data-key="bg">BG outside</th>
  <th>input</th><th>heatmap</th><th>points</th><th>predicted mask</th><th>ground truth</th>
</tr></thead><tbody id="rows"></tbody></table>
<div class="pager" id="pager-bottom"></div>
<script type="application/json" id="gallery-data">__DATA__</script>
<script>
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("gallery-data").textContent);
  var W = D.width, H = D.height;
  var state = { cls: "", strategy: "", min: 0, max: 1, name: "", fail: false, key: "iou", dir: "asc", page: 1, size: 100 };
  var $ = function (id) { return document.getElementById(id); };

  function esc(s) { return String(s).replace(/[&<>"']/g, function (c) { return "&#" + c.charCodeAt(0) + ";"; }); }
  function options(sel, values) {
    sel.innerHTML = '<option value="">all</option>' + values.map(function (v) { return '<option>' + esc(v) + '</option>'; }).join("");
  }
  function readHash() {
    var h = location.hash.replace(/^#/, "");
    h.split("&").forEach(function (kv) {
      if (!kv) return;
      var p = kv.split("="), k = decodeURIComponent(p[0]), v = decodeURIComponent(p.slice(1).join("=") || "");
      if (k === "class") state.cls = v;
      else if (k === "strategy") state.strategy = v;
      else if (k === "min" || k === "max") { var x = parseFloat(v); if (!isNaN(x)) state[k] = x; }
      else if (k === "name") state.name = v;
      else if (k === "fail") state.fail = v === "1";
      else if (k === "sort") state.key = v;
      else if (k === "dir") state.dir = v === "desc" ? "desc" : "asc";
      else if (k === "page") state.page = Math.max(1, parseInt(v, 10) || 1);
      else if (k === "size") state.size = Math.max(0, parseInt(v, 10) || 0);
    });
  }
  function writeHash() {
    var parts = [["class", state.cls], ["strategy", state.strategy], ["min", state.min], ["max", state.max], ["name", state.name],
      ["fail", state.fail ? "1" : ""], ["sort", state.key], ["dir", state.dir], ["page", state.page], ["size", state.size]]
      .filter(function (p) { return p[1] !== "" && p[1] !== null; })
      .map(function (p) { return encodeURIComponent(p[0]) + "=" + encodeURIComponent(p[1]); });
    try { history.replaceState(null, "", "#" + parts.join("&")); } catch (e) { /* file:// in some browsers */ }
  }
  function value(r, key) {
    var img = D.images[r.img];
    if (key === "name") return img.name;
    if (key === "class") return img["class"];
    if (key === "fg" || key === "bg") { var f = r[key].split("/"); return (+f[1]) ? (+f[0]) / (+f[1]) : 1; }
    var v = r[key];
    return v === null || v === undefined ? -1 : v;
  }
  function compare(a, b) {
    var x = value(a, state.key), y = value(b, state.key), s = state.dir === "asc" ? 1 : -1;
    if (x < y) return -s;
    if (x > y) return s;
    var n = D.images[a.img].name, m = D.images[b.img].name;
    return n < m ? -1 : n > m ? 1 : (a.strategy < b.strategy ? -1 : a.strategy > b.strategy ? 1 : 0);
  }
  function keep(r) {
    var img = D.images[r.img], iou = r.iou === null ? 0 : r.iou;
    if (state.cls && img["class"] !== state.cls) return false;
    if (state.strategy && r.strategy !== state.strategy) return false;
    if (iou < state.min || iou > state.max) return false;
    if (state.fail && !(iou < D.failure_iou)) return false;
    if (state.name && img.name.indexOf(state.name) < 0) return false;
    return true;
  }
  function svgPoints(points) {
    var s = '<svg viewBox="-0.5 -0.5 ' + W + ' ' + H + '" xmlns="http://www.w3.org/2000/svg">';
    points.forEach(function (p) {
      s += '<circle cx="' + p[0] + '" cy="' + p[1] + '" r="1.6" stroke="#fff" stroke-width="0.5" fill="' + (p[2] === 1 ? "#0c0" : "#e00") + '"/>';
    });
    return s + "</svg>";
  }
  function thumb(src, overlay) {
    return '<div class="thumb">' + (src ? '<img alt="" src="' + src + '">' : "") + (overlay || "") + "</div>";
  }
  function rowHtml(r) {
    var img = D.images[r.img], pts = svgPoints(r.points), fail = r.iou !== null && r.iou < D.failure_iou;
    return '<tr class="row" data-class="' + esc(img["class"]) + '" data-strategy="' + esc(r.strategy) + '" data-iou="' + r.iou + '">' +
      '<td class="name">' + esc(img.name) + "</td><td>" + esc(img["class"]) + "</td><td>" + esc(r.strategy) +
      '</td><td class="' + (fail ? "fail" : "") + '">' + (r.iou === null ? "-" : r.iou.toFixed(3)) + "</td><td>" +
      (r.score === null ? "-" : r.score.toFixed(3)) + "</td><td>" + r.fg + "</td><td>" + r.bg + "</td><td>" +
      thumb(img.input) + "</td><td>" + thumb(r.heat ? img.heat[r.heat] : null) + "</td><td>" + thumb(img.input, pts) +
      "</td><td>" + thumb(r.mask, pts) + "</td><td>" + thumb(img.gt) + "</td></tr>";
  }
  function pager(total) {
    var pages = state.size ? Math.max(1, Math.ceil(total / state.size)) : 1;
    state.page = Math.min(state.page, pages);
    var html = pages > 1 ? '<button data-go="-1"' + (state.page === 1 ? " disabled" : "") + '>&lsaquo; prev</button> page ' +
      state.page + " of " + pages + ' <button data-go="1"' + (state.page === pages ? " disabled" : "") + ">next &rsaquo;</button>" : "";
    $("pager-top").innerHTML = html;
    $("pager-bottom").innerHTML = html;
  }
  function render() {
    var shown = D.rows.filter(keep).sort(compare);
    pager(shown.length);
    var start = state.size ? (state.page - 1) * state.size : 0;
    var page = state.size ? shown.slice(start, start + state.size) : shown;
    $("rows").innerHTML = page.map(rowHtml).join("");
    $("count").textContent = shown.length + " of " + D.rows.length + " rows" + (page.length < shown.length ? " (" + page.length + " on this page)" : "");
    document.querySelectorAll("th.sort").forEach(function (th) {
      if (th.getAttribute("data-key") === state.key) th.setAttribute("data-dir", state.dir); else th.removeAttribute("data-dir");
    });
    document.body.setAttribute("data-total-rows", String(D.rows.length));
    document.body.setAttribute("data-shown-rows", String(shown.length));
    writeHash();
  }
  function sync() {
    $("f-class").value = state.cls; $("f-strategy").value = state.strategy; $("f-min").value = state.min;
    $("f-max").value = state.max; $("f-name").value = state.name; $("f-fail").checked = state.fail;
    $("f-size").value = String(state.size);
  }
  function bind() {
    var on = function (id, ev, fn) { $(id).addEventListener(ev, function () { fn(); state.page = 1; render(); }); };
    on("f-class", "change", function () { state.cls = $("f-class").value; });
    on("f-strategy", "change", function () { state.strategy = $("f-strategy").value; });
    on("f-min", "input", function () { var x = parseFloat($("f-min").value); state.min = isNaN(x) ? 0 : x; });
    on("f-max", "input", function () { var x = parseFloat($("f-max").value); state.max = isNaN(x) ? 1 : x; });
    on("f-name", "input", function () { state.name = $("f-name").value.trim(); });
    on("f-fail", "change", function () { state.fail = $("f-fail").checked; });
    on("f-size", "change", function () { state.size = parseInt($("f-size").value, 10) || 0; });
    document.querySelectorAll("th.sort").forEach(function (th) {
      th.addEventListener("click", function () {
        var key = th.getAttribute("data-key");
        state.dir = state.key === key && state.dir === "asc" ? "desc" : "asc";
        state.key = key; state.page = 1; render();
      });
    });
    document.querySelectorAll(".pager").forEach(function (p) {
      p.addEventListener("click", function (e) {
        var go = e.target.getAttribute && e.target.getAttribute("data-go");
        if (go) { state.page += parseInt(go, 10); render(); window.scrollTo(0, 0); }
      });
    });
  }
  options($("f-class"), D.classes);
  options($("f-strategy"), D.strategies);
  readHash();
  sync();
  bind();
  render();
  document.body.setAttribute("data-status", "ready");
})();
</script>
</body></html>
"""


# ------------------------------------------------------------------------------------------------
# Everything at once (the DVC stage)
# ------------------------------------------------------------------------------------------------


def _extra(params: Mapping[str, Any], root: Path) -> dict[str, Any]:
    """Subtitle facts that are nice to have but never required."""
    extra: dict[str, Any] = {"backend": (params.get("sam") or {}).get("backend")}
    path = root / "metrics" / "classifier.json"
    if path.is_file():
        try:
            extra["classifier_accuracy"] = (read_json(path).get("test") or {}).get("accuracy")
        except ArtifactError:
            pass
    return extra


def build_report(out_dir: str | Path, params: Mapping[str, Any], root: str | Path = ".") -> dict[str, Path]:
    """Write report.pdf, gallery.html, results.md and examples.png into ``out_dir`` as one atomic step."""
    root = Path(root)
    results = load_results(params, root)
    ev = load_eval_set(params, root)
    table = results_markdown({r.name: r.metrics for r in results}, {r.name: r.pipeline for r in results})
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        (tmp / "results.md").write_text("# camprompt results\n\n" + table)
        write_pdf(tmp / "report.pdf", results, ev, _extra(params, root))
        write_gallery(tmp / "gallery.html", results, ev)
        write_examples_figure(tmp / "examples.png", results, ev)
    return {name: out_dir / name for name in ("report.pdf", "gallery.html", "results.md", "examples.png")}


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------


def _cli_table(args: argparse.Namespace) -> str:
    params = load_params(args.params)
    metrics = load_metrics(params, args.metrics_dir)
    pipelines = {k: str(v.get("pipeline", "")) for k, v in strategies_of(params).items()}
    return results_markdown(metrics, pipelines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m camprompt.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--metrics-dir", default="metrics")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("table", help="print the results table of the latest metrics")
    readme = sub.add_parser("readme-table", help="rewrite the README's results block from the latest metrics")
    readme.add_argument("--readme", default="README.md")
    fig = sub.add_parser("readme-figure", help="refresh the README's example picture from the artifacts")
    fig.add_argument("--out", default="docs/figures/examples.png")
    args = parser.parse_args(argv)
    try:
        if args.command == "table":
            print(_cli_table(args))
        elif args.command == "readme-table":
            changed = update_readme(args.readme, _cli_table(args))
            print(f"{args.readme}: results table {'updated' if changed else 'already up to date'}")
        else:
            params = load_params(args.params)
            path = write_examples_figure(args.out, load_results(params), load_eval_set(params))
            print(f"wrote {path}")
    except ArtifactError as exc:
        print(f"camprompt.report: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
