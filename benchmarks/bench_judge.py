"""Train no-shape judges outside the DAG (another seed, size or recipe) to compare them on val.

The ``train_judge`` stage trains the judge the pipeline uses (params ``judge``,
:mod:`camprompt.no_shape`); this trains variants of it into ``data/bench/`` with some knobs
overridden, for ``bench_scoring.py --judge`` to score on val slices the DAG does not evaluate:

    python benchmarks/bench_judge.py --seed 1 --out data/bench/judge_seed1.pt
    python benchmarks/bench_scoring.py --variants clean,jpeg75,jpeg75_noise4,foreign --offset 200 --n 100 \\
        --judge data/bench/judge_seed1.pt

``--param KEY=VALUE`` overrides the params the judge is trained from, e.g. a candidate classifier of
``bench_recipe.py`` and the train split it was trained on:

    python benchmarks/bench_judge.py --param train.checkpoint=data/bench/clf_var5.pt \
        --param data.root=data/bench/recipe_var5 --out data/bench/judge_var5.pt

``--recolour P`` tries a change to the recipe: each training silhouette's two colours are replaced,
with probability P, by a random pair at least 60 apart in RGB, so that the judge cannot learn that
natural colour pairs are background (a true shape of natural colours is then called none).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import camprompt.no_shape as no_shape

from camprompt.artifacts import load_params, override_params
from camprompt.no_shape import JudgeConfig
from camprompt.stage_io import train_judge


def recoloured(silhouettes: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """Two-colour ``silhouettes`` (N,H,W,3), each with probability ``p`` repainted in a random pair of
    colours at least 60 apart (which colour was inside does not matter: both are drawn)."""
    out = silhouettes.copy()
    for image in out:
        if rng.random() >= p:
            continue
        first = (image == image[0, 0]).all(-1)
        while True:
            a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
            if np.linalg.norm(a - b) >= 60:
                break
        image[first], image[~first] = a, b
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=None, help="default: params seed")
    ap.add_argument("--set", dest="knobs", action="append", default=[], help="judge knob=value (repeatable)")
    ap.add_argument("--recolour", type=float, default=0.0, help="share of silhouettes repainted in random colours")
    ap.add_argument("--param", action="append", default=[], help="params KEY=VALUE override (repeatable)")
    ap.add_argument("--out", default="data/bench/judge.pt")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    try:  # --set K=V is --param judge.K=V; JudgeConfig.from_params checks the knobs' names
        params = override_params(load_params(), [*args.param, *(f"judge.{item}" for item in args.knobs)])
    except ValueError as exc:
        raise SystemExit(f"--param/--set {exc}") from None
    config = JudgeConfig.from_params(params["judge"])  # a typo fails here, before any training
    seed = params.get("seed", 0) if args.seed is None else args.seed
    if args.recolour:  # the library's recipe, its silhouettes repainted before training
        made = no_shape.training_silhouettes

        def repainted(*a, seed: int = 0, **kw):  # type: ignore[no-untyped-def]
            x, y = made(*a, seed=seed, **kw)
            return recoloured(x, args.recolour, np.random.default_rng(seed + 1000)), y

        no_shape.training_silhouettes = repainted
    t0 = time.perf_counter()
    train_judge(params, seed, args.out)
    print(f"judge ({config}, seed {seed}) saved to {args.out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
