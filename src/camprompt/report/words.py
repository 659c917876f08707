"""The report's sentences: what the run used, each pipeline in plain words, and a discussion.

Every sentence rests on something measured in this run or recorded by the code that ran: the
dataset's ``dataset.json``, ``metrics/classifier.json``, the SAM model's ``model.json``, each
pipeline's ``description`` (recorded by ``points@S``), and the per-image results. A sentence whose
facts are missing is left out rather than filled with a template.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from camprompt.artifacts import ArtifactError, read_json
from camprompt.decision import Decision
from camprompt.report.results import EvalSet, Robustness, StrategyResult, best_result, first_of
from camprompt.report.tables import fmt_value
from camprompt.sam.fetch import describe_model

__all__ = ["describe_strategy", "setup_sentences", "Failures", "failure_breakdown", "discussion"]


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z(])", text.strip()) if s]


def describe_strategy(result: StrategyResult, max_sentences: int = 3) -> str:
    """1-3 sentences on how a strategy's points are found and why: its pipeline's ``description``."""
    text = result.description or f"A {result.pipeline} pipeline (no description was recorded; re-run its points stage)."
    return " ".join(_sentences(text)[:max_sentences])


def _read_optional(path: Path) -> dict[str, Any]:
    """A JSON artifact the report can do without (its sentence is then left out)."""
    try:
        return read_json(path) if path.is_file() else {}
    except ArtifactError:
        return {}


def setup_sentences(params: Mapping[str, Any], root: str | Path = ".") -> list[str]:
    """What this run used, from its artifacts: the dataset's rules, the classifier and SAM."""
    root = Path(root)
    out = []
    data = _read_optional(root / params["data"]["root"] / "dataset.json")
    if data:
        sizes = data.get("sizes") or {}
        source = (data.get("source") or {}).get("kind", "?")
        backgrounds = {"npz": "CIFAR-10 test images", "cifar10": "CIFAR-10 test images"}.get(source, f"{source} textures")
        out.append(
            f"Data: {sum(sizes.values()):,} synthetic {data.get('width')}x{data.get('height')} images "
            f"({', '.join(f'{v:,} {k}' for k, v in sizes.items())}), each a {backgrounds} background carrying one "
            f"solid-colour circle, square, triangle, star or diamond {data.get('min_shape_size'):g}-"
            f"{data.get('max_shape_size'):g} px wide with at least {100 * float(data.get('min_inside', 1)):.0f}% inside "
            f"the frame; the fill colour differs from at least 90% of the covered background by an RGB distance of "
            f"{data.get('min_contrast'):g} or more and never occurs elsewhere in the image.")
    clf = _read_optional(root / "metrics" / "classifier.json")
    train = params.get("train") or {}
    if clf:
        acc = (clf.get("test") or {}).get("accuracy")
        decision = Decision.from_params(params.get("decision"))
        views = decision.views
        seen = ["the image"] + (["its mirror image"] if views.hflip else []) + (
            [f"copies moved by {views.shift} px left, right, up and down"] if views.shift else [])
        split = (params.get("eval") or {}).get("split", "test")
        answered = (_read_optional(root / "metrics" / "decision.json").get(split) or {}).get("accuracy")
        listed = seen[0] if len(seen) == 1 else f"{', '.join(seen[:-1])} and {seen[-1]}"
        enlarged = f", each also enlarged {' and '.join(f'{k:g}x' for k in views.scales)}" if views.scales else ""
        outline = (f", plus {decision.outline:g} times the no-shape judge's class probabilities for the two-colour "
                   f"silhouette of the region the search found" if decision.outline else "")
        over = (f"mean probability over {views.count} views of each image ({listed}{enlarged})" if views.count > 1
                else "probability for the image")
        decided = "" if views.count == 1 and not decision.outline else (
            f" Its answer is the class of the highest {over}{outline}"
            + (f": test accuracy {fmt_value(answered)}." if answered is not None else "."))
        out.append(f"Classifier: a torchvision ResNet-18 with a 5-class head trained from scratch for {train.get('epochs', '?')} "
                   f"epochs; test accuracy {fmt_value(acc)} from a single view.{decided} Grad-CAM explains the "
                   f"single view's predicted class.")
    sam = params.get("sam") or {}
    model = _read_optional(root / sam.get("model_dir", "data/sam_model") / "model.json")
    if model:
        shown = {"none": "", "bilateral": " It is shown an edge-preserving (bilateral) smoothed copy of every image",
                 "auto": (f" It is shown an edge-preserving (bilateral) smoothed copy of the images whose estimated "
                          f"noise sigma exceeds {float(sam.get('filter_threshold', 0.0)):g}/255")}
        view = shown.get(str(sam.get("input_filter", "none")), "")
        out.append(f"SAM: {describe_model(model)}; never trained or fine-tuned here."
                   + (f"{view}, a label-free step of the pipeline." if view else ""))
    return out


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _pct(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}%"


@dataclass(frozen=True)
class Failures:
    """Why a strategy's failures (IoU < failure_iou) failed, each image in exactly one kind."""

    total: int
    fg_outside: int    # a foreground point outside the true shape: the prompt was on another object
    misread: int       # ... of those, images the classifier gave another class
    bg_inside: int     # every fg point inside, but a background point on the shape
    partial: int       # every point right; SAM's mask is mostly shape but covers under half of it
    spill: int         # every point right; SAM's mask covers the shape but is mostly background
    other: int         # every point right; neither (or the masks were not loaded)


def _mask_overlap(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(precision, recall) of a predicted mask against the ground truth (1.0 where undefined)."""
    inter = float(np.logical_and(pred, gt).sum())
    return (inter / pred.sum() if pred.any() else 1.0), (inter / gt.sum() if gt.any() else 1.0)


def failure_breakdown(result: StrategyResult, ev: EvalSet | None = None) -> Failures:
    """Sort each failed image into one kind (see :class:`Failures`); ``ev`` adds the mask and classifier kinds."""
    index = {name: i for i, name in enumerate(ev.names)} if ev is not None else {}
    fg = misread = bg = partial = spill = other = 0
    for j, r in enumerate(result.rows):
        if r["iou"] >= result.failure_iou:
            continue
        i = index.get(r["name"])
        if r["fg_hits"] < r["n_fg"]:
            fg += 1
            misread += int(i is not None and bool(ev.predicted) and ev.predicted[i] != ev.classes[i])
        elif r["bg_outside"] < r["n_bg"]:
            bg += 1
        elif i is not None and result.masks is not None:
            precision, recall = _mask_overlap(result.masks[j], ev.masks[i])
            partial += int(precision >= 0.5 > recall)
            spill += int(recall >= 0.5 > precision)
            other += int(not (precision >= 0.5 > recall or recall >= 0.5 > precision))
        else:
            other += 1
    return Failures(fg + bg + partial + spill + other, fg, misread, bg, partial, spill, other)


def _search_sentence(results: Sequence[StrategyResult]) -> str | None:
    """What the region search adds over the classic prompt at the Grad-CAM maximum (or the centre)."""
    searched = first_of(results, "foreground") or first_of(results, "fg_bg")
    base = first_of(results, "gradcam_peak") or first_of(results, "basic")
    if searched is None or base is None:
        return None
    b, m = base.metrics, searched.metrics
    where = "at the Grad-CAM maximum" if base.pipeline == "gradcam_peak" else "at the image centre"
    return (f"A single point {where} ({base.name}) lands inside the shape in {_pct(b.get('fg_hit_rate'))} of the "
            f"{b.get('n_images')} images, for a mean IoU of {fmt_value(b.get('iou_mean'))}; the region search "
            f"({searched.name}) puts it inside in {_pct(m.get('fg_hit_rate'), 1)} and raises the mean IoU to "
            f"{fmt_value(m.get('iou_mean'))}.")


def _background_sentence(results: Sequence[StrategyResult]) -> str | None:
    """What adding background points changed, image by image."""
    fg, both = first_of(results, "foreground"), first_of(results, "fg_bg")
    if fg is None or both is None:
        return None
    before = {r["name"]: r["iou"] for r in fg.rows}
    deltas = np.array([r["iou"] - before[r["name"]] for r in both.rows if r["name"] in before])
    up, down = int((deltas > 0.05).sum()), int((deltas < -0.05).sum())
    a, b = fg.metrics.get("iou_mean"), both.metrics.get("iou_mean")
    if up == down == 0:
        effect = "no image's IoU moves by more than 0.05"
    else:
        effect = f"{_count(up, 'image')} gain and {_count(down, 'image')} lose more than 0.05 IoU"
    return (f"Background points ({both.name}, {_pct(both.metrics.get('bg_outside_rate'), 1)} of them outside the "
            f"shape) move the mean IoU from {fmt_value(a)} to {fmt_value(b)}: {effect}.")


def _failure_sentence(best: StrategyResult, ev: EvalSet | None) -> str:
    """How the best strategy's failures failed, or how good its worst image still is."""
    f = failure_breakdown(best, ev)
    n = best.metrics.get("n_images", len(best.rows))
    if not f.total:
        worst = min(best.rows, key=lambda r: r["iou"]) if best.rows else None
        tail = f"; its worst image, {worst['name']} ({worst['class']}), still scores {fmt_value(worst['iou'])}" if worst else ""
        return f"{best.name} has no failure (IoU < {best.failure_iou:g}) on the {n} images{tail}."
    kinds = []
    if f.fg_outside:
        misread = f" ({f.misread} of them misclassified)" if f.misread else ""
        kinds.append(f"{f.fg_outside} with the foreground point on another object{misread}")
    if f.bg_inside:
        kinds.append(f"{f.bg_inside} with a background point on the shape")
    if f.partial:
        kinds.append(f"{f.partial} where SAM's mask covered only part of the shape")
    if f.spill:
        kinds.append(f"{f.spill} where it spilled over the background")
    if f.other:
        kinds.append(f"{f.other} with every point right but a wrong mask")
    listed = kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " and " + kinds[-1]
    return f"{best.name} fails (IoU < {best.failure_iou:g}) on {f.total} of {n} images: {listed}."


def _class_sentence(best: StrategyResult, ev: EvalSet | None) -> str | None:
    """The weakest class, with how its masks miss (measured against the ground truth)."""
    per_class = {c: v for c, v in (best.metrics.get("iou_per_class") or {}).items() if v is not None}
    if len(per_class) < 2:
        return None
    weak = min(per_class, key=per_class.get)
    text = f"The weakest class for {best.name} is {weak} (mean IoU {fmt_value(per_class[weak])}"
    if ev is not None and best.masks is not None:
        index = {name: i for i, name in enumerate(ev.names)}
        pairs = [(best.masks[j], ev.masks[index[r["name"]]]) for j, r in enumerate(best.rows)
                 if r["class"] == weak and r["name"] in index]
        if pairs:
            missed = np.mean([(g & ~p).sum() / max(g.sum(), 1) for p, g in pairs])
            extra = np.mean([(p & ~g).sum() / max(g.sum(), 1) for p, g in pairs])
            return text + (f"): its masks miss {_pct(float(missed), 1)} of the shape's pixels and add "
                           f"{_pct(float(extra), 1)} of its area in background, on average.")
    return text + ")."


def _classifier_sentence(best: StrategyResult, ev: EvalSet | None) -> str | None:
    """How many misclassified images the best strategy still segments."""
    if ev is None or not ev.predicted:
        return None
    wrong = {name for name, c, p in zip(ev.names, ev.classes, ev.predicted) if c != p}
    if not wrong:
        return f"The classifier names the class of all {len(ev.names)} images correctly."
    saved = sum(1 for r in best.rows if r["name"] in wrong and r["iou"] >= best.failure_iou)
    return (f"The classifier misreads {_count(len(wrong), 'image')} of {len(ev.names)}; {best.name} still segments "
            f"{saved} of them (IoU >= {best.failure_iou:g}).")


def _robustness_sentence(best: StrategyResult, robustness: Robustness | None) -> str | None:
    """Where the best strategy falls most on the degraded or foreign variants, against SAM's own ceiling."""
    if robustness is None or not robustness.variants:
        return None
    scored = {name: v for name, v in robustness.variants.items() if best.name in (v.get("strategies") or {})}
    if not scored:
        return None
    worst = min(scored, key=lambda name: scored[name]["strategies"][best.name]["iou_mean"])
    v = scored[worst]
    m, ceiling = v["strategies"][best.name], v.get("sam_ceiling") or {}
    gap = (ceiling.get("single") or 0.0) - m["iou_mean"]
    if gap < 0:
        verdict = "so the pipeline beats SAM's own mask"
        if best.params.get("edge_rounds"):
            verdict += ", whose outline it refines by colour"
    elif gap < 0.05:
        verdict = "so most of that loss is SAM's, not the prompts'"
    else:
        verdict = "so the prompts lose more than SAM does"
    return (f"Its hardest variant is {worst} (n = {v.get('n_images')}): mean IoU {fmt_value(m['iou_mean'])} with "
            f"{_pct(m.get('fg_hit_rate'), 1)} of foreground points inside the shape and the classifier right on "
            f"{_pct(v.get('classifier_accuracy'))}, against {fmt_value(ceiling.get('single'))} for SAM prompted with the "
            f"ideal point ({fmt_value(ceiling.get('best_of_3'))} for the best of its three masks), {verdict}.")


def discussion(results: Sequence[StrategyResult], ev: EvalSet | None = None,
               robustness: Robustness | None = None) -> list[str]:
    """At most 5 sentences, each stating a measured fact of this run (nothing templated on no data)."""
    if not results:
        return ["No strategy has been evaluated yet."]
    best = best_result(results)
    sentences = [_search_sentence(results), _background_sentence(results), _failure_sentence(best, ev),
                 _class_sentence(best, ev), _robustness_sentence(best, robustness), _classifier_sentence(best, ev)]
    return [s for s in sentences if s][:5]


