"""Choose the classifier recipe on VAL: train with params overrides, score on clean and degraded val.

The DAG's ``train`` stage reports val accuracy on clean images only; the robustness targets also ask
for accuracy on JPEG-compressed, noisy and foreign-generator copies. This trains one recipe (the
params' ``train`` and ``data.train_variety``, after ``--set`` overrides) on a train split generated
into ``data/bench/`` and prints its accuracy on the whole val split and on every robustness variant
of it, so recipes are compared on val only; a second row gives the accuracy of the decision over the
params' ``decision`` views (:mod:`camprompt.decision`). ``--checkpoint`` scores an existing model instead.

    python benchmarks/bench_recipe.py --checkpoint data/classifier.pt
    python benchmarks/bench_recipe.py --name variety50 --set data.train_variety=0.5
    python benchmarks/bench_recipe.py --name ft --init data/classifier.pt --set train.epochs=5 --set train.lr=0.0003
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from camprompt.artifacts import load_params, override_params, write_json
from camprompt.classifier import TrainConfig, build_classifier, evaluate, load_classifier, save_classifier, train_classifier
from camprompt.data import SplitArrays, generate_from_params, load_split
from camprompt.decision import Decision, decide
from camprompt.devices import resolve_device
from camprompt.input_size import fit_input_size, trained_size
from camprompt.robustness import VariantSpec, make_variant

BENCH = Path("data/bench")


def variant_names(params: dict) -> list[str]:
    """``clean`` (the split itself) and every robustness variant of params, in order."""
    return ["clean", *params["robustness"]["variants"]]


def val_variant(params: dict, name: str, n: int) -> SplitArrays:
    """The first ``n`` images of the robustness split as variant ``name`` (``clean``: unchanged)."""
    rob = params["robustness"]
    spec = VariantSpec.from_params(name, {} if name == "clean" else rob["variants"][name])
    arrays, _ = make_variant(spec, data_root=params["data"]["root"], split=rob["split"], n=n,
                             seed=int(params.get("seed", 0)), data_params=params["data"])
    return arrays


def _train(params: dict, name: str, init: str | None = None) -> torch.nn.Module:
    data, seed = params["data"], int(params.get("seed", 0))
    root = BENCH / f"recipe_{name}"
    generate_from_params(root, data, seed=seed, sizes={"train": int(data["sizes"]["train"])})
    config = TrainConfig.from_params(params["train"])
    model = load_classifier(init).train() if init else build_classifier(**config.arch, seed=seed)
    history = train_classifier(model, load_split(root, "train"), load_split(data["root"], "val"), config, seed=seed,
                               device=resolve_device(params.get("device")))
    save_classifier(BENCH / f"clf_{name}.pt", model, {"recipe": params["train"], "data": data})
    print(f"{name}: trained {config.epochs} epochs{f' from {init}' if init else ''} in {history['seconds']:.0f} s", flush=True)
    return model


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", default="candidate", help="names data/bench/clf_NAME.pt and the json")
    ap.add_argument("--checkpoint", default=None, help="score this model instead of training one")
    ap.add_argument("--init", default=None, help="fine-tune this checkpoint instead of training from scratch")
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE params override (repeatable)")
    ap.add_argument("--n", type=int, default=1000, help="val images per variant")
    args = ap.parse_args(argv)
    try:
        params = override_params(load_params(), args.set)
    except ValueError as exc:
        raise SystemExit(f"--set {exc}") from None
    torch.manual_seed(0)
    model = load_classifier(args.checkpoint) if args.checkpoint else _train(params, args.name, args.init)
    model = fit_input_size(model, trained_size(params["data"]))  # as the stages use it, for variants of another size
    model = model.cpu().eval()
    views = Decision.from_params(params.get("decision")).views  # the outline needs a search: bench_decision.py
    scores = {}
    t0 = time.perf_counter()
    for variant in variant_names(params):
        arrays = val_variant(params, variant, args.n)
        result = evaluate(model, arrays)
        decided, _ = decide(model, arrays.images, views)
        scores[variant] = {"accuracy": result["accuracy"], "per_class_accuracy": result["per_class_accuracy"],
                           "decided_accuracy": float((decided == arrays.labels).mean())}
    print(f"| recipe | {' | '.join(scores)} |\n|---|{'---|' * len(scores)}")
    print(f"| {args.checkpoint or args.name} | " + " | ".join(f"{s['accuracy']:.3f}" for s in scores.values()) + " |")
    print(f"| ... decided over {views.count} views | " + " | ".join(f"{s['decided_accuracy']:.3f}" for s in scores.values()) + " |")
    print(f"(val, {args.n} images per variant, scored in {time.perf_counter() - t0:.0f} s)")
    write_json(BENCH / f"recipe_{Path(args.checkpoint).stem if args.checkpoint else args.name}.json",
               {"args": vars(args), "set": args.set, "val": scores})


if __name__ == "__main__":
    main(sys.argv[1:])
