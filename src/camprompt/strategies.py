"""Strategies: from params (``params.yaml`` ``strategies.<name>``) to a configured pipeline.

A strategy names its pipeline kind (:data:`PIPELINES`) and its knobs. A Grad-CAM strategy either
names a region search (``search: C``, a ``searches`` entry holding ``cam`` and the
:data:`~camprompt.search.SEARCH_KNOBS`) and keeps only the :data:`~camprompt.placement.PLACEMENT_KNOBS`,
or sets everything inline. Each knob lives on one side: one on the wrong side would be silently
ignored by the stage that does not read it, so it is an error. The search module is imported only
when a search is configured, so building a strategy to place points needs no search code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from camprompt.conventions import DEFAULT_CAM
from camprompt.pipelines import BasicSamPipeline, GradCAMPeakPipeline, SamLike
from camprompt.search_pipelines import ForegroundBackgroundPipeline, ForegroundPointsPipeline
from camprompt.placement import PLACEMENT_KNOBS

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

__all__ = ["PIPELINES", "build_pipeline", "resolve_strategy", "search_params", "searches_of", "strategy_cam",
           "strategy_points"]

PIPELINES: dict[str, type[BasicSamPipeline]] = {
    "basic": BasicSamPipeline,
    "gradcam_peak": GradCAMPeakPipeline,
    "foreground": ForegroundPointsPipeline,
    "fg_bg": ForegroundBackgroundPipeline,
}
_OWN_KNOBS = {"basic": {"pipeline"}, "gradcam_peak": {"pipeline", "cam"}}  # kinds without a region search


def build_pipeline(name: str, strategy_params: Mapping[str, Any], *, predictor: SamLike | None,
                   classifier: nn.Module | None = None, cam_configs: Mapping[str, Mapping[str, Any]] | None = None,
                   search_configs: Mapping[str, Mapping[str, Any]] | None = None,
                   judge: nn.Module | None = None, progress: bool = False) -> BasicSamPipeline:
    """Construct strategy ``name`` from its params.

    ``predictor`` may be None where no SAM call is needed (placing points) and ``classifier`` None
    where no heatmap is computed or region searched (stored ones, segmenting given points); the
    pipeline says so when it needs them. ``cam`` names a ``gradcam.configs`` entry (looked up in
    ``cam_configs``). A strategy naming ``search: C`` takes C's ``cam`` and knobs from
    ``search_configs``; without them it is built to place points from stored regions and heatmaps.
    ``judge``: the no-shape judge (:mod:`camprompt.no_shape`) of a search that weighs it.
    """
    params = dict(strategy_params or {})
    kind = params.get("pipeline")
    if kind not in PIPELINES:
        raise ValueError(f"strategy {name!r}: 'pipeline' must be one of {sorted(PIPELINES)}, got {kind!r}")
    if kind in _OWN_KNOBS:
        extra = set(params) - _OWN_KNOBS[kind]
        if extra:
            raise ValueError(f"strategy {name!r}: the {kind} pipeline takes only {sorted(_OWN_KNOBS[kind] - {'pipeline'})}, "
                             f"got {sorted(extra)}")
        if kind == "basic":
            return BasicSamPipeline(predictor, progress=progress)
        return GradCAMPeakPipeline(predictor, classifier, cam=_cam(name, params.get("cam", DEFAULT_CAM), cam_configs),
                                   progress=progress)
    placement = {k: v for k, v in params.items() if k in PLACEMENT_KNOBS}
    rest = {k: v for k, v in params.items() if k not in PLACEMENT_KNOBS and k != "pipeline"}
    if "search" in rest:
        search_name = rest.pop("search")
        if rest:
            raise ValueError(f"strategy {name!r} names search {search_name!r} but also sets {sorted(rest)}; set search "
                             f"knobs in searches.{search_name} (or a new search config), placement knobs "
                             f"{sorted(PLACEMENT_KNOBS)} here")
        rest = search_params(search_name, search_configs, strategy=name) if search_configs is not None else None
    search, cam = None, None
    if rest is not None:  # an inline or a resolved search
        from camprompt.search import SEARCH_KNOBS, SearchConfig

        unknown = sorted(set(rest) - SEARCH_KNOBS - {"cam"})
        if unknown:
            raise ValueError(f"strategy {name!r}: unknown knobs {unknown}; placement knobs are {sorted(PLACEMENT_KNOBS)}, "
                             f"search knobs {sorted(SEARCH_KNOBS | {'cam'})}")
        search = SearchConfig.from_params(rest)
        cam = _cam(name, rest.get("cam", DEFAULT_CAM), cam_configs)
    cls = cast("type[ForegroundPointsPipeline]", PIPELINES[kind])
    return cls(predictor, classifier, cam=cam, search=search, placement=cls.placement_from(placement), judge=judge,
               progress=progress)


def _cam(strategy: str, cam_name: str, cam_configs: Mapping[str, Mapping[str, Any]] | None) -> Mapping[str, Any]:
    cams = dict(cam_configs or {})
    if cam_name not in cams:
        raise ValueError(f"strategy {strategy!r}: cam {cam_name!r} is not a gradcam config; known: {sorted(cams)}")
    return cams[cam_name]


def search_params(search: str, search_configs: Mapping[str, Mapping[str, Any]] | None, *, strategy: str) -> dict[str, Any]:
    """``searches.<search>`` (its ``cam`` and search knobs), checked: a placement knob there is an error."""
    configs = dict(search_configs or {})
    if search not in configs:
        raise ValueError(f"strategy {strategy!r}: search {search!r} is not in params `searches`; known: {sorted(configs)}")
    found = dict(configs[search] or {})
    wrong = sorted(set(found) & PLACEMENT_KNOBS)
    if wrong:
        raise ValueError(f"searches.{search}: {wrong} are placement knobs; they belong to the strategies that name it")
    return found


def searches_of(strategies: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The search configs that ``strategies`` name, sorted, each once: the region searches to run, one
    shared by every strategy that names it."""
    return sorted({str(s["search"]) for s in strategies.values() if "search" in s})


def strategy_cam(name: str, strategy: Mapping[str, Any], search_configs: Mapping[str, Mapping[str, Any]] | None) -> str | None:
    """The ``gradcam.configs`` entry whose heatmap strategy ``name``'s points read: None for the basic
    pipeline, its own ``cam`` for gradcam_peak or an inline search, else the ``cam`` of the search it names."""
    if strategy["pipeline"] == "basic":
        return None
    if "search" in strategy:
        return str(search_params(str(strategy["search"]), search_configs, strategy=name).get("cam", DEFAULT_CAM))
    return str(strategy.get("cam", DEFAULT_CAM))


def strategy_points(pipeline: BasicSamPipeline, strategy: Mapping[str, Any], images: np.ndarray,
                    heatmap: np.ndarray | None = None,
                    found: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(coords, labels) of one strategy's ``pipeline`` on uint8 RGB ``images``, as every evaluation places
    them: the basic pipeline reads only the images; the others the heatmap of :func:`strategy_cam`
    (None: computed, which needs the classifier); a region-search pipeline also its search's
    ``found`` (regions, seeds), or it runs its own search when None."""
    kind = strategy["pipeline"]
    if kind == "basic":
        return pipeline.points_rgb(images)
    if kind == "gradcam_peak":
        return pipeline.points_rgb(images, heatmaps=heatmap)  # type: ignore[call-arg]
    regions, seeds = found if found is not None else (None, None)
    return pipeline.points_rgb(images, heatmaps=heatmap, regions=regions, seeds=seeds)  # type: ignore[call-arg]


def resolve_strategy(name: str, strategy_params: Mapping[str, Any],
                     search_configs: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    """A strategy's params in the inline form: the ``cam`` and knobs of the search it names copied in
    (so that one strategy's search can be varied alone, e.g. in a benchmark)."""
    params = dict(strategy_params or {})
    if "search" in params:
        params = {**search_params(params.pop("search"), search_configs, strategy=name), **params}
    return params
