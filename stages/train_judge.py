"""DVC stage `train_judge`: fine-tune the no-shape judge the region search weighs (`camprompt.no_shape`).

Reads params `seed`, `device`, `data.root`, `data.height`/`data.width`, `train.checkpoint`,
`gradcam.configs` (the judge's `cam`) and `judge` (see `camprompt.no_shape.JudgeConfig`); reads the
train split and the classifier. Writes the checkpoint `judge.checkpoint`: the classifier with a sixth
output, "none", fine-tuned on silhouettes of train images (the classifier itself is unchanged).
"""

from __future__ import annotations

import time

from camprompt.artifacts import load_params
from camprompt.stage_io import run_stage, train_judge


def main() -> None:
    params = load_params()
    out = params["judge"]["checkpoint"]
    start = time.perf_counter()
    judge = train_judge(params, int(params.get("seed", 0)), out)
    print(f"train_judge: {judge.camprompt_meta['silhouettes']} silhouettes ({judge.camprompt_meta['none']} none) "
          f"in {time.perf_counter() - start:.0f} s -> {out}")


if __name__ == "__main__":
    run_stage(main)
