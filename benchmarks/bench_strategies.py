"""Choose strategy and search knobs on VAL: every strategy on clean val and on the robustness variants.

This is where knobs are chosen (never on test). For each variant -- ``clean`` and every entry of
params ``robustness.variants`` (JPEG, noise, both, another generator's shapes) -- it runs exactly
what the ``robust@V`` stage runs (:func:`camprompt.robustness.evaluate_variant`: the classifier,
Grad-CAM, the region search, every strategy's points and masks, SAM's ideal-point ceiling) on a
slice of val, and prints the table. SAM embeddings are cached on disk by image content (``--cache``),
so a second run with other knobs costs only the search and the decoding.

    python benchmarks/bench_strategies.py --n 200 --offset 100
    python benchmarks/bench_strategies.py --variants clean,jpeg75_noise4 --set searches.default.max_candidates=16
    python benchmarks/bench_strategies.py --set strategies.fg_bg.n_bg=3 --json data/bench/fg_bg_n_bg3.json

``--offset`` picks the slice: the DAG's robustness variants use the first ``robustness.n`` val images,
so choosing knobs on a slice after them keeps those numbers a check on images the choice never saw.
``--set KEY=VALUE`` overrides any params entry (dotted path; the value is YAML).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camprompt.artifacts import atomic_path, load_params, override_params, write_json
from camprompt.data import SplitArrays
from camprompt.decision import Decision
from camprompt.report.tables import robustness_markdown
from camprompt.robustness import VariantSpec, evaluate_variant, evaluated_strategies, make_variant
from camprompt.sam import load_predictor
from camprompt.stage_io import load_fitted_classifier, load_fitted_judge
from camprompt.strategies import searches_of


class DiskCachedPredictor:
    """A camprompt SAM predictor whose embeddings persist in an .npz (keyed by image content)."""

    def __init__(self, predictor: Any, cache: Path) -> None:
        self.predictor, self.cache = predictor, cache
        self.store: dict[str, np.ndarray] = {}
        if cache.is_file():
            with np.load(cache) as npz:
                self.store = {k: npz[k] for k in npz.files}
        self.encoded = 0

    def set_image(self, image: np.ndarray) -> None:
        key = self.predictor.key(image)  # the key of what SAM is shown (its input filter)
        if key not in self.store:
            self.predictor.set_image(image)
            self.store[key] = np.asarray(self.predictor.get_image_embedding()).astype(np.float16)
            self.encoded += 1
        self.predictor.set_embedding(self.store[key].astype(np.float32), original_size=image.shape[:2])

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        return self.predictor.predict(*args, **kwargs)

    def save(self) -> None:
        if self.encoded:
            with atomic_path(self.cache) as tmp, open(tmp, "wb") as f:  # a file object: savez adds no suffix
                np.savez(f, **self.store)


def params_with(sets: list[str]) -> dict[str, Any]:
    """params.yaml with each ``--set KEY=VALUE`` applied (a bad one ends the run with its message)."""
    try:
        return override_params(load_params(), sets)
    except ValueError as exc:
        raise SystemExit(f"--set {exc}") from None


def variant_slice(params: dict[str, Any], spec: VariantSpec, offset: int, n: int) -> SplitArrays:
    """Val images ``offset`` .. ``offset + n`` of variant ``spec`` (a generator variant draws the first
    ``offset + n`` and keeps the slice, so each image is the one a longer run draws)."""
    full, _ = make_variant(spec, data_root=params["data"]["root"], split=params["robustness"]["split"], n=offset + n,
                           seed=int(params.get("seed", 0)), data_params=params["data"])
    sl = slice(offset, offset + n)
    return SplitArrays(full.images[sl], full.masks[sl], full.labels[sl], full.names[sl])


def variant_specs(params: dict[str, Any]) -> dict[str, VariantSpec]:
    """``clean`` and every params ``robustness.variants`` entry, by name."""
    return {"clean": VariantSpec.from_params("clean", {}),
            **{name: VariantSpec.from_params(name, v) for name, v in params["robustness"]["variants"].items()}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--offset", type=int, default=100, help="first val image (the DAG's variants use the first robustness.n)")
    ap.add_argument("--variants", default=None, help="comma list; default: clean and every robustness variant")
    ap.add_argument("--strategies", default=None, help="comma list; default: robustness.strategies")
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE params override (repeatable)")
    ap.add_argument("--cache", default="data/bench/sam_embeddings.npz")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    params = params_with(args.set)
    specs = variant_specs(params)
    names = args.variants.split(",") if args.variants else list(specs)
    try:
        strategies = evaluated_strategies(params, args.strategies.split(",") if args.strategies else None)
    except ValueError as exc:
        raise SystemExit(f"--strategies: {exc}") from None
    classifier = load_fitted_classifier(params)
    decision = Decision.from_params(params.get("decision"))
    judge = load_fitted_judge(params, searches_of(strategies), decision)  # the train_judge stage's, as robust@V loads it
    predictor = DiskCachedPredictor(load_predictor({**params["sam"], "cache_size": 0}, params.get("device", "auto")),
                                    Path(args.cache))
    summaries: dict[str, Any] = {}
    for name in names:
        t0 = time.perf_counter()
        arrays = variant_slice(params, specs[name], args.offset, args.n)
        summaries[name], _ = evaluate_variant(arrays, classifier=classifier, predictor=predictor, decision=decision,
                                              cam_configs=params["gradcam"]["configs"], searches=params["searches"],
                                              strategies=strategies, judge=judge)
        predictor.save()
        print(f"{name}: {len(arrays)} val images [{args.offset}:{args.offset + args.n}] in {time.perf_counter() - t0:.0f} s "
              f"({predictor.encoded} encoder runs so far)", flush=True)
    print(robustness_markdown(summaries))
    if args.json:
        write_json(args.json, {"args": vars(args), "variants": summaries})


if __name__ == "__main__":
    main(sys.argv[1:])
