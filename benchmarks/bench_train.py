"""Training-cost benchmark: seconds per training epoch of the classifier for each stem.

Prints the time of one optimiser step (batch of random 64x48 images, forward + backward + AdamW)
and the implied seconds per epoch of the 3,500-image train split, with the thread count given.
Usage: python benchmarks/bench_train.py [--threads 2] [--batch 64] [--steps 4]
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

from camprompt.classifier import STEMS, build_classifier


def step_seconds(stem: str, batch: int, steps: int) -> float:
    """Best-of-``steps`` wall time of one training step (the first, warm-up step is dropped)."""
    model = build_classifier(stem=stem).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, 48, 64).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 5, (batch,))
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--train-size", type=int, default=3500)
    parser.add_argument("--stems", nargs="*", default=[s for s in STEMS if s != "stride1"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for stem in args.stems:
        sec = step_seconds(stem, args.batch, args.steps)
        epoch = sec * math.ceil(args.train_size / args.batch)
        print(f"stem={stem:<9s} batch={args.batch} threads={args.threads}: {sec:.3f} s/step, ~{epoch:.1f} s/epoch")


if __name__ == "__main__":
    main()
