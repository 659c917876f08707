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

``--borrow P`` tries another: a P share of the shape silhouettes (cut and faded ones included) is
copied with its fill repainted in a colour of the "none" silhouettes -- the train backgrounds' own
colours -- at least ``--borrow-contrast`` from its background, as another author may fill a shape
with a colour that also occurs in backgrounds. The none silhouettes are not repainted, so colour
stays evidence where it is one.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import camprompt.no_shape as no_shape

from camprompt.artifacts import load_params, override_params
from camprompt.judge import NO_SHAPE
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


def borrowed_copies(silhouettes: np.ndarray, labels: np.ndarray, p: float, contrast: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``silhouettes`` and ``labels`` followed by copies of a ``p`` share of the shape silhouettes, each
    shape repainted in a colour of the none silhouettes at least ``contrast`` (RGB) from its background
    (a shape with no such colour is left out)."""
    palette = np.unique(silhouettes[labels == NO_SHAPE].reshape(-1, 3), axis=0)
    colours = palette.astype(np.float64)  # once, not per silhouette

    def repainted(picture: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
        """None where no palette colour is far enough (left out below)."""
        background, shape = no_shape._background_and_shape(picture)  # two colours: _shape_copies checked
        far = palette[np.linalg.norm(colours - background, axis=1) >= contrast]
        if not len(far):
            return None
        out = picture.copy()
        out[shape] = far[rng.integers(len(far))]
        return out

    made, made_labels = no_shape._shape_copies(silhouettes, labels, p, rng, repainted)
    kept = [(x, y) for x, y in zip(made, made_labels) if x is not None]
    print(f"borrow: {len(kept)} copies from a palette of {len(palette)} colours", flush=True)
    if not kept:
        return silhouettes, labels
    return (np.concatenate([silhouettes, np.stack([x for x, _ in kept])]),
            np.concatenate([labels, np.asarray([y for _, y in kept], labels.dtype)]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=None, help="default: params seed")
    ap.add_argument("--set", dest="knobs", action="append", default=[], help="judge knob=value (repeatable)")
    ap.add_argument("--recolour", type=float, default=0.0, help="share of silhouettes repainted in random colours")
    ap.add_argument("--borrow", type=float, default=0.0, help="share of shape silhouettes copied in a background colour")
    ap.add_argument("--borrow-contrast", type=float, default=40.0, help="... at least this RGB distance from their background")
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
    if args.recolour or args.borrow:  # the library's recipe, its silhouettes changed before training
        made = no_shape.training_silhouettes

        def changed(*a, seed: int = 0, **kw):  # type: ignore[no-untyped-def]
            x, y = made(*a, seed=seed, **kw)
            if args.recolour:
                x = recoloured(x, args.recolour, np.random.default_rng(seed + 1000))
            if args.borrow:
                x, y = borrowed_copies(x, y, args.borrow, args.borrow_contrast, np.random.default_rng(seed + 9000))
            return x, y

        no_shape.training_silhouettes = changed
    t0 = time.perf_counter()
    train_judge(params, seed, args.out)
    print(f"judge ({config}, seed {seed}) saved to {args.out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
