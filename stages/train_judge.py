"""DVC stage `train_judge`: fine-tune the no-shape judge the region search weighs (`camprompt.no_shape`).

Reads params `seed`, `device`, `data.root`, `data.height`/`data.width`, `train.checkpoint`,
`gradcam.configs` (the judge's `cam`) and `judge` (see `camprompt.no_shape.JudgeConfig`); reads the
train split and the classifier. Writes the checkpoint `judge.checkpoint`: the classifier with a sixth
output, "none", fine-tuned on silhouettes of train images (the classifier itself is unchanged).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from camprompt.artifacts import ArtifactError, load_params
from camprompt.classifier import save_classifier
from camprompt.data import load_split
from camprompt.no_shape import JudgeConfig, train_no_shape_judge
from camprompt.stage_io import load_fitted_classifier, run_stage


def train_judge(params: Mapping[str, Any], judge_params: Mapping[str, Any], seed: int, out: str) -> Any:
    """Train the judge of ``judge_params`` (params ``judge``, or a variant of it) from the fitted
    classifier and the train split named in ``params``, and save it to ``out``; returns the judge.
    ``benchmarks/bench_judge.py`` trains its variants through this too."""
    config = JudgeConfig.from_params(judge_params)
    cams = params["gradcam"]["configs"]
    if config.cam not in cams:
        raise ArtifactError(f"params judge.cam {config.cam!r} is not a gradcam config; known: {sorted(cams)}")
    classifier = load_fitted_classifier(params)
    split = load_split(params["data"]["root"], "train", config.images)
    judge = train_no_shape_judge(classifier, split, cams[config.cam], config, seed=seed)
    save_classifier(out, judge, {**judge.camprompt_meta, "seed": seed, "config": dict(judge_params)})
    return judge


def main() -> None:
    params = load_params()
    judge_params = dict(params["judge"])
    seed = int(params.get("seed", 0))
    start = time.perf_counter()
    judge = train_judge(params, judge_params, seed, judge_params["checkpoint"])
    print(f"train_judge: {judge.camprompt_meta['silhouettes']} silhouettes ({judge.camprompt_meta['none']} none) "
          f"in {time.perf_counter() - start:.0f} s -> {judge_params['checkpoint']}")


if __name__ == "__main__":
    run_stage(main)
