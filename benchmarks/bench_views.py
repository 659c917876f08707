"""Which views should the classifier's decision average? Accuracy of view sets on VAL, for every variant.

:mod:`camprompt.decision` averages the softmax over label-preserving views of each image (params
``decision``: the image, its mirror image, 2-px shifts). This scores that set against it plus other
label-preserving candidates, so a new view earns its place on val numbers:

- ``perms``: the five other orders of the RGB channels (shape colours are random);
- ``zoom``: the image scaled by 0.85 and 1.15 about its centre (other generators draw other sizes);
- ``s1``: 1-px shifts; ``diag``: diagonal 2-px shifts;
- ``bilateral``, ``median``, ``gauss``: denoised copies (JPEG blocks, sensor noise).

    python benchmarks/bench_views.py                    # whole val split, every robustness variant
    python benchmarks/bench_views.py --n 200 --checkpoint data/bench/clf_jpeg60.pt
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import cv2
import numpy as np
import torch
from bench_recipe import val_variant, variant_names

from camprompt.artifacts import load_params
from camprompt.classifier import load_classifier, predict_probabilities
from camprompt.decision import Decision, _shifted
from camprompt.input_size import fit_input_size, trained_size


def _zoom(images: np.ndarray, scale: float) -> np.ndarray:
    """Each image scaled about its centre, cropped or zero-padded back to its size."""
    h, w = images.shape[1:3]
    out = np.zeros_like(images)
    for src, dst in zip(images, out):
        big = cv2.resize(src, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LINEAR)
        bh, bw = big.shape[:2]
        if scale >= 1:
            dst[...] = big[(bh - h) // 2 : (bh - h) // 2 + h, (bw - w) // 2 : (bw - w) // 2 + w]
        else:
            dst[(h - bh) // 2 : (h - bh) // 2 + bh, (w - bw) // 2 : (w - bw) // 2 + bw] = big
    return out


def _each(fn):
    return lambda images: np.stack([fn(np.ascontiguousarray(im)) for im in images])


EXTRA = {
    "perms": [lambda x, p=p: np.ascontiguousarray(x[..., list(p)]) for p in itertools.permutations(range(3)) if p != (0, 1, 2)],
    "zoom": [lambda x: _zoom(x, 0.85), lambda x: _zoom(x, 1.15)],
    "s1": [lambda x, d=d: _shifted(x, *d) for d in ((1, 0), (-1, 0), (0, 1), (0, -1))],
    "diag": [lambda x, d=d: _shifted(x, *d) for d in ((2, 2), (-2, -2), (2, -2), (-2, 2))],
    "bilateral": [_each(lambda im: cv2.bilateralFilter(im, 5, 40, 5))],
    "median": [_each(lambda im: cv2.medianBlur(im, 3))],
    "gauss": [_each(lambda im: cv2.GaussianBlur(im, (3, 3), 0.8))],
}


def _probabilities(model: torch.nn.Module, views: list[np.ndarray]) -> list[np.ndarray]:
    """Softmax class probabilities (N,K) of each batch of views."""
    return [predict_probabilities(model, np.ascontiguousarray(v), 256) for v in views]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None, help="classifier to score (default: params train.checkpoint)")
    ap.add_argument("--n", type=int, default=1000, help="val images per variant")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    params = load_params()
    model = fit_input_size(load_classifier(args.checkpoint or params["train"]["checkpoint"]).cpu().eval(),
                           trained_size(params["data"]))
    base = Decision.from_params(params.get("decision")).views  # the outline needs a search: bench_decision.py
    t0 = time.perf_counter()
    rows: dict[str, list[float]] = {}
    names = variant_names(params)
    for variant in names:
        arrays = val_variant(params, variant, args.n)
        single = _probabilities(model, base.of(arrays.images))
        sets = {"single view": single[:1], f"decision ({base.count} views)": single}
        for name, fns in EXTRA.items():
            sets[f"decision + {name}"] = single + _probabilities(model, [fn(arrays.images) for fn in fns])
        for name, ps in sets.items():
            rows.setdefault(name, []).append(float(((sum(ps) / len(ps)).argmax(1) == arrays.labels).mean()))
        print(f"{variant} scored", file=sys.stderr, flush=True)
    print(f"| views | {' | '.join(names)} |\n|---|{'---|' * len(names)}")
    for name, accs in rows.items():
        print(f"| {name} | " + " | ".join(f"{a:.3f}" for a in accs) + " |")
    print(f"(val, {args.n} images per variant, {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
