"""Choose params `decision.outline` on VAL: the classifier's answer with the no-shape judge's reading of
the found region's outline, at several weights.

For each variant -- ``clean`` and every params ``robustness.variants`` entry -- on val images
``offset`` .. ``offset + n``: the search of params ``decision.search`` as ``robust@V`` runs it
(:func:`camprompt.robustness.find_regions`), the views' mean probabilities and the judge's
:func:`camprompt.decision.outline_shares` once, then the accuracy of the answer for every weight of
``--weights`` (0 = the views alone). SAM embeddings are cached on disk as in bench_strategies.py.

    python benchmarks/bench_decision.py --offset 100 --n 500 --weights 0,0.1,0.2,0.25,0.3,0.4,0.5,0.75,1

The DAG's variants use the first ``robustness.n`` val images; choose on a slice after them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench_strategies import DiskCachedPredictor, variant_slice, variant_specs
from camprompt.artifacts import load_params, override_params, write_json
from camprompt.conventions import DEFAULT_CAM
from camprompt.data import normalize
from camprompt.decision import Decision, decide, outline_shares, with_outline
from camprompt.gradcam import compute_split_heatmaps
from camprompt.robustness import find_regions
from camprompt.sam import load_predictor
from camprompt.stage_io import load_fitted_classifier, load_judge


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--offset", type=int, default=100, help="first val image (the DAG's variants use the first robustness.n)")
    ap.add_argument("--variants", default=None, help="comma list; default: clean and every robustness variant")
    ap.add_argument("--weights", default="0,0.1,0.2,0.25,0.3,0.4,0.5,0.75,1", help="comma list of decision.outline values")
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE params override (repeatable)")
    ap.add_argument("--cache", default="data/bench/sam_embeddings.npz")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    try:
        params = override_params(load_params(), args.set)
        weights = [float(w) for w in args.weights.split(",")]
    except ValueError as exc:
        raise SystemExit(f"--set / --weights: {exc}") from None
    specs = variant_specs(params)
    names = args.variants.split(",") if args.variants else list(specs)
    decision = Decision.from_params(params.get("decision"))
    knobs = params["searches"][decision.search]
    cam = knobs.get("cam", DEFAULT_CAM)
    classifier, judge = load_fitted_classifier(params), load_judge(params)
    predictor = DiskCachedPredictor(load_predictor({**params["sam"], "cache_size": 0}, params.get("device", "auto")),
                                    Path(args.cache))
    table: dict[str, dict[str, float]] = {}
    for name in names:
        t0 = time.perf_counter()
        arrays = variant_slice(params, specs[name], args.offset, args.n)
        cams = compute_split_heatmaps(classifier, normalize(arrays.images), {cam: params["gradcam"]["configs"][cam]})
        regions, _ = find_regions(arrays.images, cams, knobs, classifier=classifier, predictor=predictor, judge=judge)
        predictor.save()
        _, probs = decide(classifier, arrays.images, decision.views)
        shares = outline_shares(judge, arrays.images, regions)
        table[name] = {f"{w:g}": float((with_outline(probs, shares, w)[0] == arrays.labels).mean()) for w in weights}
        print(f"{name}: {len(arrays)} val images [{args.offset}:{args.offset + args.n}] in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr, flush=True)
    print(f"| decision.outline | {' | '.join(table)} | mean |\n|---|{'---|' * (len(table) + 1)}")
    for w in weights:
        accs = [table[name][f"{w:g}"] for name in table]
        print(f"| {w:g} | " + " | ".join(f"{a:.3f}" for a in accs) + f" | {np.mean(accs):.3f} |")
    print(f"(classifier answer over {decision.views.count} views; val[{args.offset}:{args.offset + args.n}])")
    if args.json:
        write_json(args.json, {"args": vars(args), "accuracy": table})


if __name__ == "__main__":
    main(sys.argv[1:])
