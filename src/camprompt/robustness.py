"""Robustness: the whole method on degraded and foreign copies of val, beside SAM's own ceiling.

A *variant* of the val split is either a degraded copy of its first images (a JPEG round trip and/or
Gaussian noise, :class:`camprompt.perturb.Perturbation`) or a new split drawn by another generator's
rules (:class:`camprompt.shapes.ShapeRules`), optionally degraded too. On each variant the classifier,
its Grad-CAM, the region search and every strategy run exactly as on the test split, and two rows
measure SAM itself: prompted with the *ideal* point (the ground-truth pixel farthest from the shape's
edge -- a measurement only, never a prompt of the pipelines), keeping SAM's single-mask output or the
best of its three multimask outputs. The gap between a strategy and that ceiling is the method's
loss; the ceiling's own fall is SAM's.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from camprompt.data import SplitArrays, generate_from_params, load_split, normalize
from camprompt.metrics import iou_batch, summarize
from camprompt.perturb import Perturbation
from camprompt.placement import interior_points
from camprompt.shapes import CLASSES, ShapeRules

if TYPE_CHECKING:
    from torch import nn

    from camprompt.decision import Decision

__all__ = ["VariantSpec", "make_variant", "ideal_points", "sam_ceiling", "StrategyRun", "evaluated_strategies", "find_regions",
           "evaluate_variant", "SUMMARY_KEYS"]

#: The per-strategy numbers a variant's summary keeps (from :func:`camprompt.metrics.summarize`).
SUMMARY_KEYS = ("fg_hit_rate", "bg_outside_rate", "iou_mean", "iou_median", "n_failures", "iou_per_class")


@dataclass(frozen=True)
class VariantSpec:
    """One variant of params ``robustness.variants``: ``jpeg``/``noise`` degrade the images;
    ``generator`` (ShapeRules knobs) draws a new split with its own ``seed`` instead of copying val,
    in the data params' frame or in ``width`` x ``height`` pixels (another author's image size)."""

    name: str
    perturbation: Perturbation
    generator: ShapeRules | None = None
    seed: int = 1
    frame: tuple[int, int] | None = None  # (width, height) of a generator variant; None: the data params'

    @classmethod
    def from_params(cls, name: str, params: Mapping[str, Any] | None) -> VariantSpec:
        params = dict(params or {})
        unknown = set(params) - {"jpeg", "noise", "generator", "seed", "width", "height"}
        if unknown:
            raise ValueError(f"robustness.variants.{name}: unknown keys {sorted(unknown)}; "
                             "known: jpeg, noise, generator, seed, width, height")
        generator = params.get("generator")
        if generator is not None and not isinstance(generator, Mapping):
            raise ValueError(f"robustness.variants.{name}.generator must map ShapeRules knobs to values, got {generator!r}")
        frame = _frame(name, params, generator is not None)
        try:
            rules = ShapeRules(**generator) if generator is not None else None
            perturbation = Perturbation.from_params({k: params[k] for k in ("jpeg", "noise") if k in params})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"robustness.variants.{name}: {exc}") from exc
        return cls(name, perturbation, rules, int(params.get("seed", 1)), frame)


def _frame(name: str, params: Mapping[str, Any], drawn: bool) -> tuple[int, int] | None:
    """A variant's (width, height): both or neither, whole numbers >= 8, for drawn variants only."""
    given = [params.get(k) for k in ("width", "height")]
    if given == [None, None]:
        return None
    if not drawn:
        raise ValueError(f"robustness.variants.{name}: width and height apply to a variant drawn by a generator; "
                         "a copy of val keeps val's size")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 8 for v in given):
        raise ValueError(f"robustness.variants.{name}: width and height must both be whole numbers of pixels >= 8, "
                         f"got {given[0]!r} x {given[1]!r}")
    return int(given[0]), int(given[1])


def make_variant(spec: VariantSpec, *, data_root: str | Path, split: str, n: int, seed: int,
                 data_params: Mapping[str, Any]) -> tuple[SplitArrays, dict[str, Any]]:
    """The variant's images, masks and labels (n of them) and its description for ``dataset.json``.

    A copy takes the first ``n`` images of ``split``; a generator variant draws ``n`` new ones with
    the data params' backgrounds, in the spec's frame or else the data params'. The degradation's
    noise is seeded by ``[seed, spec.seed]``.
    """
    if n < 1:
        raise ValueError(f"robustness.n must be >= 1, got {n}")
    meta: dict[str, Any] = {"variant": spec.name, "split": split, "n": n, "jpeg": spec.perturbation.jpeg,
                            "noise": spec.perturbation.noise}
    if spec.generator is None:
        arrays = load_split(data_root, split, n)
        if len(arrays) < n:
            raise ValueError(f"split {split!r} of {data_root} has {len(arrays)} images, fewer than robustness.n = {n}")
        meta["source"] = f"the first {n} images of {split}"
    else:
        frame = {"width": spec.frame[0], "height": spec.frame[1]} if spec.frame else {}  # else the data params'
        with tempfile.TemporaryDirectory(prefix="camprompt-variant-") as tmp:
            # The data params' backgrounds; no train images, so no train_variety to record.
            generated = generate_from_params(Path(tmp) / "split", data_params, seed=spec.seed, sizes={split: n},
                                             rules=spec.generator, train_variety=0.0, progress=False, **frame)
            arrays = load_split(Path(tmp) / "split", split)
        meta.update(source=f"{n} images drawn by another generator's rules", generator=generated)
    images = spec.perturbation.apply(arrays.images, seed=int(seed) * 1000 + spec.seed)
    return SplitArrays(images, arrays.masks, arrays.labels, list(arrays.names)), meta


def ideal_points(masks: np.ndarray) -> np.ndarray:
    """(N,2) (x, y): each ground-truth mask's pixel farthest from its edge -- a measurement, never a prompt."""
    return np.stack([interior_points(m, 1)[0] for m in np.asarray(masks, bool)])


def sam_ceiling(predictor: Any, images: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    """Mean IoU of SAM prompted with the ideal point: its single-mask output, and the best of its three
    multimask outputs (an oracle's choice). What no point prompt can beat on these images."""
    single, best = [], []
    for image, mask, point in zip(images, masks, ideal_points(masks)):
        predictor.set_image(image)
        kw = {"point_coords": point[None].astype(np.float32), "point_labels": np.ones(1, np.int64)}
        one, _, _ = predictor.predict(multimask_output=False, **kw)
        three, _, _ = predictor.predict(multimask_output=True, **kw)
        single.append(iou_batch(np.asarray(one, bool)[:1], mask[None])[0])
        best.append(iou_batch(np.asarray(three, bool), np.repeat(mask[None], len(three), 0)).max())
    return {"single": float(np.mean(single)), "best_of_3": float(np.mean(best))}


@dataclass
class StrategyRun:
    """One strategy's outputs on a variant (for the worst-case figure)."""

    coords: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    ious: np.ndarray


def evaluated_strategies(params: Mapping[str, Any], names: Sequence[str] | None = None) -> dict[str, Any]:
    """The strategies evaluated on every variant: ``names``, else params ``robustness.strategies``, else
    all of params ``strategies``; each name must be a strategy, and each search one names a params
    ``searches`` entry (checked here, before any variant is loaded or searched)."""
    from camprompt.strategies import search_params

    names = list(names or (params.get("robustness") or {}).get("strategies") or params["strategies"])
    unknown = [n for n in names if n not in params["strategies"]]
    if unknown:
        raise ValueError(f"robustness strategies {unknown} are not in params `strategies`; known: {sorted(params['strategies'])}")
    chosen = {n: params["strategies"][n] for n in names}
    for name, strategy in chosen.items():
        if "search" in strategy:
            search_params(str(strategy["search"]), params.get("searches"), strategy=name)
    return chosen


def find_regions(images: np.ndarray, cams: Any, knobs: Mapping[str, Any], *, classifier: nn.Module, predictor: Any,
                 judge: nn.Module | None = None, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(regions, seeds) that the search of params ``searches`` entry ``knobs`` finds in uint8 ``images``
    from ``cams`` (``compute_split_heatmaps``' result, holding its heatmap), as ``regions@C`` finds them
    (:meth:`camprompt.search.RegionSearch.stacked_regions`); SAM's proposals from ``predictor`` when
    it asks for them."""
    from camprompt.conventions import DEFAULT_CAM
    from camprompt.search import RegionSearch, SearchConfig

    config = SearchConfig.from_params(knobs)
    search = RegionSearch(config, classifier, predictor if config.use_sam else None, judge=judge, progress=progress)
    return search.stacked_regions(images, cams.heatmaps[knobs.get("cam", DEFAULT_CAM)], cams.preds)


def evaluate_variant(arrays: SplitArrays, *, classifier: nn.Module, predictor: Any,
                     cam_configs: Mapping[str, Mapping[str, Any]], searches: Mapping[str, Mapping[str, Any]],
                     strategies: Mapping[str, Mapping[str, Any]], decision: Decision | None = None,
                     judge: nn.Module | None = None,
                     progress: bool = False) -> tuple[dict[str, Any], dict[str, StrategyRun]]:
    """Every strategy, the classifier and SAM's ceiling on one variant -> (summary, each strategy's outputs).

    As in the DVC pipeline: one Grad-CAM pass, the region search once per search config (its pixel
    knobs scaled to the images' size when ``classifier`` was fitted to another, see
    :func:`camprompt.input_size.scale_search`) and shared by the strategies that name it, then each
    strategy's placement and masks; ``predictor`` should hold every image's embedding already (an
    attached store), or its encoder runs here; ``judge`` is the no-shape judge of the searches that
    weigh it or that ``decision`` reads outlines with (:mod:`camprompt.no_shape`). Grad-CAM explains the
    single view's predicted class, as on the test split. The summary holds the accuracy of the
    classifier's answer under ``decision`` (:mod:`camprompt.decision`, from the regions its search
    found here; None = the single view), and of the single view, how
    often the Grad-CAM maximum lies inside the shape, SAM's ceiling, and per strategy the
    :data:`SUMMARY_KEYS` of ``camprompt.metrics.summarize``.
    """
    from camprompt.decision import Decision, answer
    from camprompt.gradcam import compute_split_heatmaps
    from camprompt.saliency import argmax_hit_rate
    from camprompt.strategies import build_pipeline, searches_of, strategy_cam, strategy_points

    images, gt = arrays.images, arrays.masks
    decision = decision or Decision()
    if decision.outline and decision.search not in searches:
        raise ValueError(f"decision.search {decision.search!r} is not in params `searches`; known: {sorted(searches)}")
    cams = compute_split_heatmaps(classifier, normalize(images), cam_configs, progress=progress)
    wanted = [*searches_of(strategies), *([decision.search] if decision.outline else [])]
    found = {name: find_regions(images, cams, searches[name], classifier=classifier, predictor=predictor, judge=judge,
                                progress=progress) for name in dict.fromkeys(wanted)}
    decided, _ = answer(classifier, images, decision, judge, found[decision.search][0] if decision.outline else None)
    classes = [CLASSES[int(c)] for c in arrays.labels]
    summary: dict[str, Any] = {
        "n_images": len(images),
        "classifier_accuracy": float((decided == arrays.labels).mean()),
        "classifier_single_view_accuracy": float((cams.preds == arrays.labels).mean()),
        "cam_peak_hit_rate": {name: argmax_hit_rate(maps, gt) for name, maps in cams.heatmaps.items()},
        "sam_ceiling": sam_ceiling(predictor, images, gt),
        "strategies": {},
    }
    runs: dict[str, StrategyRun] = {}
    for name, strategy in strategies.items():
        pipe = build_pipeline(name, strategy, predictor=predictor, classifier=None, cam_configs=cam_configs)
        cam, search = strategy_cam(name, strategy, searches), found.get(strategy.get("search"))
        coords, labels = strategy_points(pipe, strategy, images, cams.heatmaps.get(cam), search)
        masks, _ = pipe.segment_rgb(images, coords, labels, None if search is None else search[0])
        metrics, rows = summarize(masks, gt, coords, labels, classes, class_names=CLASSES)
        summary["strategies"][name] = {k: metrics[k] for k in SUMMARY_KEYS}
        runs[name] = StrategyRun(coords, labels, masks, np.array([r["iou"] for r in rows]))
    return summary, runs
