"""What the DVC stages share: where each artifact lives, loading stores checked against the split, and
loading (or, for the judge, training) the models that stages and benchmarks must see alike.

Every check raises :class:`~camprompt.artifacts.ArtifactError` with a message that names the stage
to re-run; :func:`run_stage` prints that message and exits non-zero instead of a traceback. Nothing
here knows how points or masks are made: that is the library's job (``strategies``, ``search``, ``placement``).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from camprompt.artifacts import ArtifactError, atomic_path, load_arrays, open_arrays

if TYPE_CHECKING:
    from camprompt.decision import Decision

__all__ = [
    "STRATEGY_ROOT",
    "REGION_ROOT",
    "VARIANT_ROOT",
    "VARIANT_EMBEDDINGS_ROOT",
    "ROBUSTNESS_ROOT",
    "variant_names",
    "run_stage",
    "strategy_params",
    "strategy_dir",
    "region_store",
    "load_regions",
    "check_names",
    "load_heatmap",
    "load_fitted_classifier",
    "load_judge",
    "load_fitted_judge",
    "train_judge",
    "load_attached_predictor",
    "PER_IMAGE_COLUMNS",
    "write_per_image",
    "read_per_image",
]

STRATEGY_ROOT = "data/strategies"
REGION_ROOT = "data/regions"
VARIANT_ROOT = "data/variants"                       # the robustness variants' images (stage `variants`)
VARIANT_EMBEDDINGS_ROOT = "data/variant_embeddings"  # their SAM embeddings (`variant_embeddings@V`)
ROBUSTNESS_ROOT = "data/robustness"                  # what each variant's evaluation found (`robust@V`)


def run_stage(main: Callable[..., None], key: str | None = None) -> None:
    """Run a stage's ``main`` on its command-line arguments: one, named ``key`` in the usage line, for a
    foreach stage (its ``${key}``), none for a plain stage. A wrong argument count ends it with that
    usage line; a missing, stale or malformed artifact (or params entry) ends it with its message and
    exit code 1 (other errors keep their traceback)."""
    args = sys.argv[1:]
    if len(args) != (key is not None):
        raise SystemExit(f"usage: python {sys.argv[0]}" + (f" {key}" if key else ""))
    try:
        main(*args)
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def strategy_params(params: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``params['strategies'][name]`` with a clear error when it is missing or malformed."""
    strategies = params.get("strategies") or {}
    if name not in strategies:
        raise ArtifactError(f"params.yaml has no strategy {name!r}; known: {sorted(strategies)}")
    strat = strategies[name]
    if not isinstance(strat, Mapping) or "pipeline" not in strat:
        raise ArtifactError(f"params.yaml strategies.{name} must be a mapping with a 'pipeline' key")
    return dict(strat)


def variant_names(params: Mapping[str, Any], name: str | None = None) -> list[str]:
    """The variants of params ``robustness.variants`` (checking that ``name`` is one of them)."""
    variants = list(((params.get("robustness") or {}).get("variants") or {}))
    if name is not None and name not in variants:
        raise ArtifactError(f"params.yaml has no robustness variant {name!r}; known: {variants}")
    return variants


def strategy_dir(name: str, root: str = STRATEGY_ROOT) -> Path:
    """Where strategy ``name`` keeps its artifacts."""
    return Path(root) / name


def region_store(search: str, root: str = REGION_ROOT) -> Path:
    """Where the ``regions@<search>`` stage keeps the chosen object regions of search config ``search``."""
    return Path(root) / f"{search}.zarr"


def check_names(found: Sequence[str] | None, expected: Sequence[str], store: Any) -> None:
    """Stores must hold exactly the evaluated images, in order; otherwise say which stage to re-run."""
    if found is None or list(found) != list(expected):
        n = "no" if found is None else len(found)
        raise ArtifactError(
            f"{store} holds {n} image names that do not match the {len(expected)} evaluated images "
            "(params eval.split/eval.limit changed?); re-run `dvc repro` so the upstream stages refresh it"
        )


def load_heatmap(params: Mapping[str, Any], cam: str, names: Sequence[str], *,
                 required: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """(heatmap (N,H,W) of gradcam config ``cam``, predicted classes (N,)) from the ``heatmaps`` stage's
    store, checked against the evaluated images; a missing config is an error (None if not ``required``)."""
    path = params["gradcam"]["out"]
    store = open_arrays(path)
    check_names(store.attrs.get("names"), names, path)
    preds = np.asarray(store["pred"][...])
    if f"heatmap_{cam}" not in store:
        if required:
            raise ArtifactError(f"{path} has no heatmap_{cam}; add {cam!r} to params gradcam.configs")
        return None, preds
    return np.asarray(store[f"heatmap_{cam}"][...]), preds


def load_regions(params: Mapping[str, Any], search: str, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(regions bool (N,H,W), seeds (N,2)) that ``regions@search`` found, checked to be of the evaluated
    images ``names`` and of the current params ``searches.<search>``; else a clear error."""
    searches = params.get("searches") or {}
    if search not in searches:
        raise ArtifactError(f"params.yaml has no search config {search!r}; known: {sorted(searches)}")
    path = region_store(search)
    found, attrs = load_arrays(path)
    check_names(attrs.get("names"), names, path)
    if attrs.get("params") != dict(searches[search] or {}):
        raise ArtifactError(f"{path} was made with other search params; run `dvc repro regions@{search}`")
    return found["regions"], found["seeds"]


def load_fitted_classifier(params: Mapping[str, Any], checkpoint: str | Path | None = None) -> Any:
    """The trained classifier (``checkpoint``, by default params ``train.checkpoint``) on the device of
    params ``device``, fitted to the size it was trained at (params ``data.height``/``data.width``).

    Fitted, it resizes images of any other size on the way in, and the pipelines scale the region
    search's pixel knobs to them (:mod:`camprompt.input_size`); at the trained size both are no-ops.
    Every stage and benchmark that runs the classifier loads it here, so all of them see one model.
    """
    from camprompt.classifier import load_classifier
    from camprompt.devices import resolve_device
    from camprompt.input_size import fit_input_size, trained_size

    model = load_classifier(checkpoint or params["train"]["checkpoint"], resolve_device(params.get("device")))
    return fit_input_size(model, trained_size(params["data"]))


def load_judge(params: Mapping[str, Any], checkpoint: str | Path | None = None) -> Any:
    """The no-shape judge at ``checkpoint`` (by default params ``judge.checkpoint``, the ``train_judge``
    stage's), loaded as the classifier is (:func:`load_fitted_classifier`) and checked to be one."""
    from camprompt.judge import check_no_shape_judge

    checkpoint = checkpoint or (params.get("judge") or {}).get("checkpoint")
    if not checkpoint:
        raise ArtifactError("the no-shape judge is needed (a search's w_keep_judge, or decision.outline) but params "
                            "judge.checkpoint is not set")
    path = Path(checkpoint)
    if not path.is_file():
        raise ArtifactError(f"the no-shape judge's checkpoint {path} does not exist; run `dvc repro train_judge` "
                            "(or name another with params judge.checkpoint)")
    return check_no_shape_judge(load_fitted_classifier(params, path))


def load_fitted_judge(params: Mapping[str, Any], searches: Iterable[str], decision: Decision | None = None) -> Any:
    """:func:`load_judge` when one of the search configs ``searches`` (params ``searches.<name>``) weighs
    the judge (``SearchConfig.w_keep_judge`` not 0) or ``decision`` reads the found regions' outlines
    with it (``Decision.outline`` not 0); else None, and nothing is read."""
    from camprompt.search import SearchConfig

    configs = params.get("searches") or {}
    if not (decision is not None and decision.outline) and not any(
            SearchConfig.from_params(configs.get(name) or {}).w_keep_judge for name in searches):
        return None
    return load_judge(params)


def train_judge(params: Mapping[str, Any], seed: int, out: str | Path) -> Any:
    """Train the no-shape judge of params ``judge`` from the fitted classifier and the train split named
    in ``params``, save it to ``out`` and return it. The ``train_judge`` stage and
    ``benchmarks/bench_judge.py`` (with its overrides applied to ``params``) both train here, so a
    benchmark's judge differs from the pipeline's only in the knobs it changes."""
    judge_params = params["judge"]
    from camprompt.classifier import save_classifier
    from camprompt.data import load_split
    from camprompt.no_shape import JudgeConfig, train_no_shape_judge

    config = JudgeConfig.from_params(judge_params)
    cams = params["gradcam"]["configs"]
    if config.cam not in cams:
        raise ArtifactError(f"params judge.cam {config.cam!r} is not a gradcam config; known: {sorted(cams)}")
    classifier = load_fitted_classifier(params)
    split = load_split(params["data"]["root"], "train", config.images)
    judge = train_no_shape_judge(classifier, split, cams[config.cam], config, seed=seed)
    save_classifier(out, judge, {**judge.camprompt_meta, "seed": seed, "config": dict(judge_params)})
    return judge


def load_attached_predictor(params: Mapping[str, Any], images: np.ndarray, store: str | Path | None = None,
                            stage: str = "embeddings") -> Any:
    """The configured SAM predictor with the cached embeddings attached (no encoder runs).

    ``store`` defaults to params ``sam.embeddings`` (the evaluated split's); ``stage`` is the stage
    that writes it. Every image must be in the store: a miss would silently cost an encoder run per
    image (about a second each), so it is an error that names the stage to re-run.
    """
    from camprompt.sam import load_predictor

    predictor = load_predictor(params["sam"], params.get("device", "auto"))
    path = store if store is not None else params["sam"]["embeddings"]
    predictor.attach_embeddings(path)
    cached = set(predictor.cached_keys()) if hasattr(predictor, "cached_keys") else None
    if cached is not None:
        missing = sum(predictor.key(img) not in cached for img in images)
        if missing:
            raise ArtifactError(f"{path} lacks the embeddings of {missing} evaluated images; run `dvc repro {stage}`")
    return predictor


# ------------------------------------------------------------------------------------------------
# per_image.csv: one row per evaluated image of a strategy (written by metrics@S, read by the report)
# ------------------------------------------------------------------------------------------------

PER_IMAGE_COLUMNS = ("name", "class", "iou", "n_fg", "n_bg", "fg_hits", "bg_outside", "fg_dist", "bg_dist", "score", "points")


def _cell(value: float | None) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:.4f}"


def write_per_image(path: str | Path, names: Sequence[str], rows: Sequence[Mapping[str, Any]], scores: np.ndarray,
                    coords: np.ndarray, labels: np.ndarray) -> None:
    """Write ``per_image.csv`` atomically: ``camprompt.metrics.summarize``'s rows, SAM's score of the kept
    mask and the image's points (a JSON list of [x, y, label], padding left out)."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(PER_IMAGE_COLUMNS)
        for i, r in enumerate(rows):
            keep = labels[i] != -1
            pts = [[round(float(x), 3), round(float(y), 3), int(l)] for (x, y), l in zip(coords[i][keep], labels[i][keep])]
            writer.writerow([names[i], r["class"], _cell(r["iou"]), r["n_fg"], r["n_bg"], r["fg_hits"], r["bg_outside"],
                             _cell(r["fg_dist"]), _cell(r["bg_dist"]), _cell(float(scores[i])), json.dumps(pts)])


def _number(text: str) -> float:
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
                    "name": raw["name"], "class": raw["class"], "iou": _number(raw["iou"]),
                    "n_fg": int(raw["n_fg"]), "n_bg": int(raw["n_bg"]),
                    "fg_hits": int(raw["fg_hits"]), "bg_outside": int(raw["bg_outside"]),
                    "fg_dist": _number(raw["fg_dist"]), "bg_dist": _number(raw["bg_dist"]),
                    "score": _number(raw.get("score", "")), "points": json.loads(raw.get("points") or "[]"),
                })
            except (KeyError, ValueError) as exc:
                raise ArtifactError(f"{path}: malformed row {raw!r} ({exc}); re-run its metrics stage") from exc
    return rows
