"""DVC stage `robust@V`: the classifier, every strategy and SAM's ideal-point ceiling on variant V.

Usage: ``python stages/robust.py V``. Reads params `robustness` (split, strategies), `strategies`,
`searches`, `gradcam.configs`, `decision`, `sam`, `device`, `train.checkpoint`, `judge.checkpoint` (the
no-shape judge, when a search weighs it or the decision reads outlines), `data.height`/`data.width`
(the classifier's input size: variants of another size are resized to it, `camprompt.input_size`);
reads `data/variants/V`, its embeddings, the classifier and the SAM model. Writes
`data/robustness/V/`: `summary.json` (see `camprompt.robustness.evaluate_variant`) and
`results.zarr` (per strategy: coords, labels, masks and IoU of every image, for the report's worst
cases).
"""

from __future__ import annotations

from pathlib import Path

from camprompt.artifacts import load_params, save_arrays, write_json
from camprompt.data import load_split
from camprompt.decision import Decision
from camprompt.robustness import evaluate_variant, evaluated_strategies
from camprompt.stage_io import (
    ROBUSTNESS_ROOT,
    VARIANT_EMBEDDINGS_ROOT,
    VARIANT_ROOT,
    load_attached_predictor,
    load_fitted_classifier,
    load_fitted_judge,
    run_stage,
    variant_names,
)
from camprompt.strategies import searches_of


def main(name: str) -> None:
    params = load_params()
    variant_names(params, name)
    rob = params["robustness"]
    split = load_split(Path(VARIANT_ROOT) / name, rob["split"])
    strategies = evaluated_strategies(params)
    predictor = load_attached_predictor(params, split.images, Path(VARIANT_EMBEDDINGS_ROOT) / f"{name}.zarr",
                                        stage=f"variant_embeddings@{name}")
    classifier = load_fitted_classifier(params)
    decision = Decision.from_params(params.get("decision"))
    judge = load_fitted_judge(params, searches_of(strategies), decision)
    summary, runs = evaluate_variant(split, classifier=classifier, predictor=predictor, decision=decision,
                                     cam_configs=params["gradcam"]["configs"], searches=params["searches"],
                                     strategies=strategies, judge=judge, progress=True)
    out = Path(ROBUSTNESS_ROOT) / name
    arrays = {f"{key}_{strategy}": value for strategy, run in runs.items()
              for key, value in (("coords", run.coords), ("labels", run.labels), ("masks", run.masks), ("iou", run.ious))}
    save_arrays(out / "results.zarr", arrays, {"names": list(split.names), "variant": name, "strategies": list(runs)})
    write_json(out / "summary.json", summary)
    shown = {k: round(v["iou_mean"], 3) for k, v in summary["strategies"].items()}
    print(f"robust@{name}: classifier {summary['classifier_accuracy']:.3f}, SAM ceiling {summary['sam_ceiling']}, "
          f"mean IoU {shown}")


if __name__ == "__main__":
    run_stage(main, "VARIANT")
