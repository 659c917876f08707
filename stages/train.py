"""DVC stage `train`: train the ResNet18 shape classifier and score it on every split.

Reads params `seed`, `device`, `data.root` and `train` (recipe: see `camprompt.classifier.TrainConfig`);
writes the checkpoint `train.checkpoint` and the DVC metrics file `metrics/classifier.json`
(per-split accuracy and loss, per-class accuracy, seconds). The recipe is chosen on val; test is
only scored here, after training, for the report.
"""

from __future__ import annotations

import time

from camprompt.artifacts import load_params, write_json
from camprompt.classifier import TrainConfig, build_classifier, config_dict, evaluate, save_classifier, train_classifier
from camprompt.data import SPLITS, load_split
from camprompt.devices import resolve_device


def main() -> None:
    params = load_params()
    train_params, root, seed = params["train"], params["data"]["root"], int(params.get("seed", 0))
    config = TrainConfig.from_params(train_params)
    splits = {split: load_split(root, split) for split in SPLITS}
    model = build_classifier(**config.arch, seed=seed)
    history = train_classifier(model, splits["train"], splits["val"], config, seed=seed,
                               device=resolve_device(params.get("device")))
    start = time.perf_counter()
    scores = {split: evaluate(model, arrays) for split, arrays in splits.items()}
    metrics = {
        "seconds_train": round(history["seconds"], 1),
        "seconds_per_epoch": round(history["seconds"] / max(1, config.epochs), 2),
        "seconds_eval": round(time.perf_counter() - start, 1),
        "threads": config.threads,
        **{split: {k: s[k] for k in ("n", "accuracy", "loss", "per_class_accuracy")} for split, s in scores.items()},
    }
    meta = {"recipe": config_dict(config), "seed": seed, "history": history["epochs"],
            "accuracy": {split: s["accuracy"] for split, s in scores.items()}}
    save_classifier(train_params["checkpoint"], model, meta)
    write_json(train_params.get("metrics", "metrics/classifier.json"), metrics)
    print("train: " + ", ".join(f"{split} acc {s['accuracy']:.3f}" for split, s in scores.items())
          + f" ({history['seconds']:.0f} s training)")


if __name__ == "__main__":
    main()
