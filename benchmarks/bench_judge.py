"""Train a silhouette judge with a "no shape" class, offline, for the region search's ``keep`` probe.

The search's ``keep`` probe asks the classifier about a candidate's two-colour silhouette
(:func:`camprompt.judge.isolate_region`). The classifier only ever saw images that hold a shape, so
it calls almost any closed blob a shape (p ~0.9): on compressed or foreign images a background blob
then outscores the faint true shape. This trains the judge that can say "no shape here": a copy of
the classifier with a sixth output, fine-tuned on silhouettes of the TRAIN split -- each shape's own
mask and a colour region matching it (their class), and up to three background colour regions that
miss it (class ``none``) -- a third of the images clean, a third JPEG 75, a third JPEG 75 + noise 4.
Ground truth labels the training silhouettes only, as it labels the classifier's images; the judge
sees nothing but the image at use. Score it on val with ``bench_scoring.py --judge``:

    python benchmarks/bench_judge.py --n 1200 --epochs 4
    python benchmarks/bench_scoring.py --variants clean,jpeg75,jpeg75_noise4,foreign --offset 100 \\
        --judge data/bench/judge.pt --try w_keep=0,w_keep_judge=2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from camprompt.artifacts import atomic_path, load_params
from camprompt.data import CLASSES, load_split, normalize
from camprompt.devices import module_device
from camprompt.gradcam import compute_split_heatmaps
from camprompt.judge import isolate_region
from camprompt.metrics import iou
from camprompt.perturb import add_noise, jpeg_round_trip
from camprompt.search import RegionSearch, SearchConfig
from camprompt.stage_io import load_fitted_classifier

NONE = len(CLASSES)  # the judge's extra class: no shape


def load_judge(params: dict, path: str | Path) -> nn.Module:
    """The judge saved by this script: the fitted classifier with a (len(CLASSES) + 1)-way head."""
    model = with_none_class(load_fitted_classifier(params))
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def with_none_class(model: nn.Module) -> nn.Module:
    """``model`` with one more output, ``NONE``, initialised to logit 0 (the others keep their weights)."""
    old = model.fc
    new = nn.Linear(old.in_features, NONE + 1).to(old.weight.device)
    with torch.no_grad():
        new.weight[:NONE], new.bias[:NONE] = old.weight, old.bias
        new.weight[NONE], new.bias[NONE] = 0.0, 0.0
    model.fc = new
    return model


def silhouettes(params: dict, classifier: nn.Module, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Silhouettes uint8 (M,H,W,3) and labels (M,) from the first ``n`` train images (see module doc);
    ``classifier`` gives the Grad-CAM seeds of the colour regions."""
    rng = np.random.default_rng(seed)
    split = load_split(params["data"]["root"], "train", n)
    images = split.images.copy()
    for i in range(len(images)):
        if i % 3 >= 1:
            images[i] = jpeg_round_trip(images[i], 75)
        if i % 3 == 2:
            images[i] = add_noise(images[i], 4.0, rng)
    knobs = dict(params["searches"]["default"])
    cam = knobs.pop("cam")
    knobs.update(use_sam=False, w_sam_fit=0.0)  # the colour regions only: no SAM embeddings of train
    knobs.pop("sam_fit_top", None)
    search = RegionSearch(SearchConfig.from_params(knobs), None)
    heats = compute_split_heatmaps(classifier, normalize(images), params["gradcam"]["configs"]).heatmaps[cam]
    xs, ys = [], []
    for image, heat, gt, label in zip(images, heats, split.masks, split.labels):
        cands = search.candidates(image, heat)
        overlap = np.array([iou(c, gt) for c in cands])
        shapes = [gt] + [cands[i] for i in np.flatnonzero(overlap >= 0.8)[:1]]
        blobs = [cands[i] for i in rng.permutation(np.flatnonzero(overlap < 0.3))[:3]]
        xs += [isolate_region(image, m) for m in shapes + blobs]
        ys += [int(label)] * len(shapes) + [NONE] * len(blobs)
    return np.stack(xs), np.array(ys)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1200, help="train images the silhouettes come from")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="data/bench/judge.pt")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    params = load_params()
    t0 = time.perf_counter()
    classifier = load_fitted_classifier(params)  # on params `device`; becomes the judge once the silhouettes are made
    x, y = silhouettes(params, classifier, args.n, args.seed)
    print(f"{len(y)} silhouettes ({int((y == NONE).sum())} none) in {time.perf_counter() - t0:.0f} s", flush=True)
    model = with_none_class(classifier)
    device = module_device(model)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    inputs, labels = normalize(x), torch.from_numpy(y)
    for epoch in range(args.epochs):
        model.train()
        order, total = torch.randperm(len(labels)), 0.0
        for start in range(0, len(labels), 64):
            idx = order[start : start + 64]
            batch = inputs[idx].flip(-1) if torch.rand(()) < 0.5 else inputs[idx]
            loss = F.cross_entropy(model(batch.to(device)), labels[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {total / len(labels):.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    with atomic_path(args.out) as tmp:
        torch.save(model.eval().state_dict(), tmp)
    print(f"judge saved to {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
