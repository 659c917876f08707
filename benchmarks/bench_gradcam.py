"""Time camprompt's Grad-CAM against pytorch-grad-cam's GradCAM on CPU, and compare their maps.

Same model (torchvision ResNet-18, random weights, fixed seed), same target layers, inputs and
target classes; median of ``--repeats`` timed calls after one warm-up call each, the two
implementations called in alternation. Prints one line
per case: times, our/their ratio (target <= 0.5) and the max abs difference of the maps.

    python benchmarks/bench_gradcam.py [--threads 2] [--repeats 15] [--layers layer2]

pytorch-grad-cam (PyPI ``grad-cam``) is a benchmark-only dependency; the package never imports it.
Its single-layer maps are min-max(resize(ReLU(cam))) like ours (resize and min-max commute up to
its 1e-7 epsilon), so the difference should be ~1e-6. With several layers the two differ by
design: it re-scales the mean of the layer maps to 0..1, we return the mean itself.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torchvision.models import resnet18

from camprompt.cam_capture import resolve_layers
from camprompt.gradcam import GradCAM


def _interleaved_medians(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median seconds of each function, timed in alternation (A B A B ...) after one warm-up each.

    Alternating spreads CPU-frequency drift and noisy neighbours evenly over the contenders, so
    their ratio is far steadier than two back-to-back runs.
    """
    for fn in fns:
        fn()  # warm-up (allocator, lazy init)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, acc in zip(fns, times):
            start = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def run_case(batch: int, height: int, width: int, layers: list[str], repeats: int) -> None:
    from pytorch_grad_cam import GradCAM as TheirGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = resnet18(num_classes=5 if height < 100 else 1000).eval()
    modules = resolve_layers(model, layers)
    x = torch.randn(batch, 3, height, width)
    ours = GradCAM(model, modules)
    targets = ours.compute(x).targets.tolist()
    their_targets = [ClassifierOutputTarget(t) for t in targets]
    with TheirGradCAM(model=model, target_layers=modules) as theirs:
        t_ours, t_theirs = _interleaved_medians(
            [lambda: ours(x, targets), lambda: theirs(input_tensor=x, targets=their_targets)], repeats
        )
        diff = float(np.abs(ours(x, targets) - theirs(input_tensor=x, targets=their_targets)).max())
    print(
        f"B={batch:<3d} {height}x{width:<4d} layers={','.join(layers):<14s} "
        f"ours {t_ours * 1000:8.1f} ms   pytorch-grad-cam {t_theirs * 1000:8.1f} ms   "
        f"ratio {t_ours / t_theirs:5.2f}   max|diff| {diff:.2e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per case (median)")
    parser.add_argument("--layers", nargs="+", default=["layer2"], help="target layer names")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} CPU threads, resnet18, median of {args.repeats}")
    run_case(32, 48, 64, args.layers, args.repeats)
    run_case(8, 224, 224, args.layers, args.repeats)


if __name__ == "__main__":
    main()
