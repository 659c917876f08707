"""Metrics as tables: one row per strategy (point and mask metrics), and mean IoU per class.

One place defines what every table shows (the PDF, ``results.md``, the README, the notebook), so
they always agree. Pure Python on the ``metrics/S.json`` dictionaries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from camprompt.data import CLASSES
from camprompt.metrics import FAILURE_IOU

__all__ = ["fmt_value", "class_order", "results_rows", "per_class_rows", "results_markdown", "robustness_rows",
           "robustness_markdown"]


def fmt_value(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals; None, NaN and inf as "-"."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{float(value):.{digits}f}"


# (header, function of a metrics dict) -- one place defines what every table shows.
_MAIN_COLUMNS: list[tuple[str, Any]] = [
    ("FG hit rate", lambda m: fmt_value(m.get("fg_hit_rate"))),
    ("BG outside rate", lambda m: fmt_value(m.get("bg_outside_rate"))),
    ("FG dist (px)", lambda m: fmt_value(m.get("fg_dist_mean"), 2)),
    ("BG dist (px)", lambda m: fmt_value(m.get("bg_dist_mean"), 2)),
    ("mean IoU", lambda m: fmt_value(m.get("iou_mean"))),
    ("IoU std", lambda m: fmt_value(m.get("iou_std"))),
    ("median IoU", lambda m: fmt_value(m.get("iou_median"))),
    ("failures", lambda m: f"{m.get('n_failures', '-')} / {m.get('n_images', '-')}"),
]


def class_order(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Classes in camprompt's order, then any other class found in the metrics."""
    seen = [c for m in metrics.values() for c in (m.get("iou_per_class") or {})]
    return [c for c in CLASSES if c in seen] + sorted(set(seen) - set(CLASSES))


def results_rows(metrics: Mapping[str, Mapping[str, Any]], pipelines: Mapping[str, str] | None = None) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the main table: one row per strategy."""
    header = ["strategy", "pipeline"] + [h for h, _ in _MAIN_COLUMNS]
    rows = [[name, (pipelines or {}).get(name, "")] + [f(m) for _, f in _MAIN_COLUMNS] for name, m in metrics.items()]
    return header, rows


def per_class_rows(metrics: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the per-class mean IoU table."""
    classes = class_order(metrics)
    rows = [[name] + [fmt_value((m.get("iou_per_class") or {}).get(c)) for c in classes] for name, m in metrics.items()]
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
    failure = sorted({m.get("failure_iou", FAILURE_IOU) for m in metrics.values()}, key=str)
    note = (f"Evaluated on {', '.join(map(str, n))} images; failures = IoU < {', '.join(map(str, failure))}. "
            "FG hit rate: foreground points inside the true shape; BG outside rate: background points outside it; "
            "distances: from the shape's centre of mass.")
    return f"{main}\n\n{per_class}\n\n{note}\n"




def robustness_rows(variants: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the robustness table: per variant, the classifier, the Grad-CAM maximum, SAM's
    ideal-point ceiling (single mask, best of 3) and each strategy's FG hit rate and mean IoU."""
    strategies = list(dict.fromkeys(s for v in variants.values() for s in (v.get("strategies") or {})))
    cams = list(dict.fromkeys(c for v in variants.values() for c in (v.get("cam_peak_hit_rate") or {})))
    header = (["variant", "classifier acc"] + [f"CAM max in shape ({c})" for c in cams[:1]]
              + ["SAM ideal point", "SAM ideal best of 3"]
              + [h for s in strategies for h in (f"{s} FG hit", f"{s} IoU")])
    rows = []
    for name, v in variants.items():
        ceiling = v.get("sam_ceiling") or {}
        row = [name, fmt_value(v.get("classifier_accuracy"))]
        row += [fmt_value((v.get("cam_peak_hit_rate") or {}).get(c)) for c in cams[:1]]
        row += [fmt_value(ceiling.get("single")), fmt_value(ceiling.get("best_of_3"))]
        for s in strategies:
            m = (v.get("strategies") or {}).get(s) or {}
            row += [fmt_value(m.get("fg_hit_rate")), fmt_value(m.get("iou_mean"))]
        rows.append(row)
    return header, rows


def robustness_markdown(variants: Mapping[str, Mapping[str, Any]]) -> str:
    """The robustness table as GitHub markdown, with what its columns mean."""
    if not variants:
        raise ValueError("no robustness variants to tabulate")
    n = sorted({v.get("n_images") for v in variants.values()}, key=str)
    note = (f"{', '.join(map(str, n))} images per variant. SAM ideal point: SAM prompted with the ground-truth pixel "
            "farthest from the shape's edge (a measurement, never a prompt), its single mask or the best of its three.")
    return f"{_markdown(*robustness_rows(variants))}\n\n{note}\n"
