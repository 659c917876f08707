"""Strategies: from params (``params.yaml`` ``strategies.<name>``) to a configured pipeline.

A strategy names its pipeline kind (:data:`PIPELINES`) and its knobs. A Grad-CAM strategy either
names a region search (``search: C``, a ``searches`` entry holding ``cam`` and the
:data:`~camprompt.prompts.SEARCH_KNOBS`) and keeps only the :data:`~camprompt.prompts.PLACEMENT_KNOBS`,
or sets everything inline. Each knob lives on one side: one on the wrong side would be silently
ignored by the stage that does not read it, so it is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from camprompt.pipelines import (
    BasicSamPipeline,
    ForegroundBackgroundPipeline,
    ForegroundPointsPipeline,
    GradCAMPeakPipeline,
    SamLike,
)
from camprompt.prompts import PLACEMENT_KNOBS, SEARCH_KNOBS

if TYPE_CHECKING:
    from torch import nn

__all__ = ["DEFAULT_CAM", "PIPELINES", "build_pipeline", "resolve_strategy", "search_params"]

DEFAULT_CAM = "layer2"  # the gradcam config a strategy or search uses when it names none

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
                   progress: bool = False) -> BasicSamPipeline:
    """Construct strategy ``name`` from its params.

    ``predictor`` may be None where no SAM call is needed (placing points) and ``classifier`` None
    where no heatmap is computed or region searched (stored ones, segmenting given points); the
    pipeline says so when it needs them. ``cam`` names a ``gradcam.configs`` entry (looked up in
    ``cam_configs``); ``search`` a ``searches`` entry (looked up in ``search_configs``).
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
    else:
        params = resolve_strategy(name, params, search_configs)
    cam_name = params.get("cam", DEFAULT_CAM)
    cams = dict(cam_configs or {})
    if cam_name not in cams:
        raise ValueError(f"strategy {name!r}: cam {cam_name!r} is not a gradcam config; known: {sorted(cams)}")
    if kind == "gradcam_peak":
        return GradCAMPeakPipeline(predictor, classifier, cam=cams[cam_name], progress=progress)
    cls = cast("type[ForegroundPointsPipeline]", PIPELINES[kind])
    return cls(predictor, classifier, cam=cams[cam_name], config=cls.config_from(params), progress=progress)


def resolve_strategy(name: str, strategy_params: Mapping[str, Any],
                     search_configs: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    """A strategy's params in the inline form: the knobs of the search it names (``search: C``) copied in."""
    params = dict(strategy_params or {})
    if "search" in params:
        params = {**search_params(params.pop("search"), search_configs, strategy=name, placement=params), **params}
    return params


def search_params(search: str, search_configs: Mapping[str, Mapping[str, Any]] | None, *, strategy: str,
                  placement: Mapping[str, Any]) -> dict[str, Any]:
    """``searches.<search>`` checked against the strategy that names it: each knob lives in one place."""
    configs = dict(search_configs or {})
    if search not in configs:
        raise ValueError(f"strategy {strategy!r}: search {search!r} is not in params `searches`; known: {sorted(configs)}")
    found = dict(configs[search] or {})
    wrong = sorted(set(found) - SEARCH_KNOBS - {"cam"})
    if wrong:
        raise ValueError(f"searches.{search}: {wrong} are not search knobs (placement knobs {sorted(PLACEMENT_KNOBS)} "
                         f"belong to the strategies; search knobs are {sorted(SEARCH_KNOBS | {'cam'})})")
    inline = sorted(set(placement) & (SEARCH_KNOBS | {"cam"}))
    if inline:
        raise ValueError(f"strategy {strategy!r} names search {search!r} but also sets its knobs {inline}; "
                         f"set them in searches.{search} (or a new search config) instead")
    return found
