"""Loading the artifacts the report reads: each strategy's results and the evaluated images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from camprompt.artifacts import ArtifactError, open_arrays, read_json
from camprompt.data import CLASSES, load_split
from camprompt.metrics import FAILURE_IOU
from camprompt.stage_io import ROBUSTNESS_ROOT, VARIANT_ROOT, read_per_image, strategy_dir

__all__ = ["StrategyResult", "EvalSet", "Robustness", "strategies_of", "load_metrics", "load_results", "load_eval_set",
           "load_robustness", "best_result", "first_of"]


@dataclass
class StrategyResult:
    """One strategy's artifacts. ``rows`` come from ``per_image.csv`` (typed); ``masks`` (N,H,W) bool."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    masks: np.ndarray | None = None
    description: str = ""  # how its pipeline finds the points, in plain words (points.zarr attrs)

    @property
    def pipeline(self) -> str:
        return str(self.params.get("pipeline", "?"))

    @property
    def failure_iou(self) -> float:
        value = self.metrics.get("failure_iou")
        return FAILURE_IOU if value is None else float(value)


@dataclass
class EvalSet:
    """The evaluated images: uint8 (N,H,W,3), ground truth bool (N,H,W), names, class names, heatmaps,
    and the classifier's predicted class names (the class each heatmap explains)."""

    images: np.ndarray
    masks: np.ndarray
    names: list[str]
    classes: list[str]
    heatmaps: dict[str, np.ndarray]
    split: str = "test"
    predicted: list[str] = field(default_factory=list)


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
        folder = root / strategy_dir(name)
        rows = read_per_image(folder / "per_image.csv")
        masks = _load_masks(folder / "masks.zarr", [r["name"] for r in rows]) if with_masks else None
        description = str(open_arrays(folder / "points.zarr").attrs.get("description") or "")
        results.append(StrategyResult(name, sparams, metrics[name], rows, masks, description))
    return results


def load_eval_set(params: Mapping[str, Any], root: str | Path = ".") -> EvalSet:
    """The evaluated split (``eval.split``/``eval.limit``) and every Grad-CAM config's heatmaps."""
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
    predicted = [CLASSES[int(c)] for c in store["pred"][...]] if "pred" in store else []
    return EvalSet(split.images, split.masks, list(split.names), classes, heatmaps, split_name, predicted)


def best_result(results: Sequence[StrategyResult]) -> StrategyResult:
    """The strategy with the best mean IoU (then foreground hit rate)."""
    return max(results, key=lambda r: (r.metrics.get("iou_mean") or -1.0, r.metrics.get("fg_hit_rate") or -1.0))


def first_of(results: Sequence[StrategyResult], pipeline: str) -> StrategyResult | None:
    """The first strategy of a pipeline kind, or None."""
    return next((r for r in results if r.pipeline == pipeline), None)


@dataclass
class Robustness:
    """``metrics/robustness.json``'s variants, and per variant its images, ground truth and each
    strategy's outputs (``data/robustness/V/results.zarr``) for the worst-case figure."""

    variants: dict[str, dict[str, Any]]
    images: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # variant -> {key_strategy: array}


def load_robustness(params: Mapping[str, Any], root: str | Path = ".") -> Robustness | None:
    """The robustness results of params ``robustness``, or None when the params define no variant."""
    root = Path(root)
    rob = params.get("robustness") or {}
    if not rob.get("variants"):
        return None
    summary = read_json(root / "metrics" / "robustness.json")
    variants = {name: summary["variants"][name] for name in rob["variants"] if name in summary.get("variants", {})}
    missing = sorted(set(rob["variants"]) - set(variants))
    if missing:
        raise ArtifactError(f"metrics/robustness.json lacks variants {missing}; run `dvc repro robustness`")
    out = Robustness(variants)
    for name in variants:
        split = load_split(root / VARIANT_ROOT / name, rob.get("split", "val"))
        store = open_arrays(root / ROBUSTNESS_ROOT / name / "results.zarr")
        if list(store.attrs.get("names") or []) != list(split.names):
            raise ArtifactError(f"{ROBUSTNESS_ROOT}/{name} holds other images than {VARIANT_ROOT}/{name}; run `dvc repro`")
        out.images[name], out.masks[name] = split.images, split.masks
        out.outputs[name] = {key: np.asarray(arr[...]) for key, arr in store.arrays()}
    return out
