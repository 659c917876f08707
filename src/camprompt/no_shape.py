"""The no-shape judge: the classifier fine-tuned with one more class, ``none``, for the region search.

Why: the search's ``keep`` probe asks the classifier about a candidate region's two-colour silhouette
(:func:`camprompt.judge.isolate_region`). The classifier only ever saw images that hold a shape, so it
calls almost any closed blob a shape; on compressed or foreign images a background blob then
outscores a faint true shape. This judge is a copy of the classifier with a sixth output,
:data:`camprompt.judge.NO_SHAPE`, fine-tuned on silhouettes of TRAIN images so that it can say "no shape here":

* each shape's own mask, and a colour region of the search that matches it (its class);
* up to ``blobs`` colour regions of the search that miss the shape (``none``);
* a third of the images as they are, a third through a JPEG round trip, a third JPEG and noise --
  the degradations under which the wrong regions win;
* with ``cut``, second copies of some shape silhouettes moved until the frame cuts them
  (:func:`frame_cut`): another author may let the frame cut a shape more than ours does, and a
  judge that never saw a cut shape calls one "none";
* with ``fade``, copies of some shape silhouettes in a fainter fill (:func:`faded`): another author
  may paint a shape closer to its background than our contrast rule allows.

Ground truth labels only these training silhouettes, as it labels the classifier's training images;
at use the judge sees nothing but the image. The search weighs its 1 - p(none | silhouette) as the
evidence ``keep_judge`` (:class:`camprompt.judge.ClassifierJudge`, ``w_keep_judge``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from camprompt.conventions import knobs_from_params
from camprompt.data import SplitArrays, normalize
from camprompt.devices import module_device
from camprompt.gradcam import compute_split_heatmaps
from camprompt.judge import NO_SHAPE, isolate_region
from camprompt.metrics import iou_batch
from camprompt.perturb import add_noise, jpeg_round_trip
from camprompt.search import RegionSearch, SearchConfig

__all__ = ["JudgeConfig", "with_no_shape_class", "degraded_copies", "frame_cut", "frame_cuts", "faded", "faded_copies",
           "training_silhouettes", "train_no_shape_judge"]

#: Offsets of the seeds of the cut and the faded copies' random streams (apart from the blobs' draws
#: and each other's, so that ``cut`` and ``fade`` add silhouettes without changing the others).
CUT_STREAM = 2000
FADE_STREAM = 6000

@dataclass(frozen=True)
class JudgeConfig:
    """How the judge is trained (params ``judge``, without ``checkpoint``); chosen on val only."""

    cam: str = "layer2"         # the gradcam config whose seeds grow the colour regions
    images: int = 1200          # train images the silhouettes come from (the first ones)
    blobs: int = 3              # background regions (class none) per image, at most
    match_iou: float = 0.8      # a region at least this close to the shape is a second view of it
    miss_iou: float = 0.3       # ... one below this is background
    jpeg: int = 75              # JPEG quality of two thirds of the images
    noise: float = 4.0          # Gaussian noise sigma (0..255) of one third, after the JPEG
    epochs: int = 4
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 1e-4
    cut: float = 0.0            # share of the shape silhouettes also shown cut by the frame (frame_cut)
    cut_inside: tuple[float, float] = (0.55, 0.85)  # ... keeping a share of the shape drawn from this range
    fade: float = 0.0           # share of the shape silhouettes also shown in a fainter fill (faded)
    fade_contrast: tuple[float, float] = (20.0, 60.0)  # ... at an RGB distance to the background from this range

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> JudgeConfig:
        """Build from params ``judge``; an unknown key or an impossible value raises."""
        cfg = knobs_from_params(cls, params, "judge", ignore=("checkpoint",))
        for name in ("images", "epochs", "batch_size"):
            if int(getattr(cfg, name)) < 1:
                raise ValueError(f"judge {name} must be >= 1, got {getattr(cfg, name)}")
        if cfg.blobs < 0:
            raise ValueError(f"judge blobs must be >= 0, got {cfg.blobs}")
        if not 0.0 <= cfg.miss_iou < cfg.match_iou <= 1.0:
            raise ValueError(f"judge needs 0 <= miss_iou < match_iou <= 1, got {cfg.miss_iou}, {cfg.match_iou}")
        if cfg.lr <= 0:
            raise ValueError(f"judge lr must be > 0, got {cfg.lr}")
        if not 0.0 <= cfg.cut <= 1.0:
            raise ValueError(f"judge cut is a share of the shape silhouettes, 0..1, got {cfg.cut}")
        if len(cfg.cut_inside) != 2 or not 0.0 < cfg.cut_inside[0] <= cfg.cut_inside[1] < 1.0:
            raise ValueError(f"judge cut_inside must be [low, high] with 0 < low <= high < 1 (the share of a cut "
                             f"shape left in the frame), got {list(cfg.cut_inside)}")
        if not 0.0 <= cfg.fade <= 1.0:
            raise ValueError(f"judge fade is a share of the shape silhouettes, 0..1, got {cfg.fade}")
        if len(cfg.fade_contrast) != 2 or not 0.0 < cfg.fade_contrast[0] <= cfg.fade_contrast[1]:
            raise ValueError(f"judge fade_contrast must be [low, high] with 0 < low <= high (RGB distances, "
                             f"0..441), got {list(cfg.fade_contrast)}")
        return cfg


def with_no_shape_class(model: nn.Module) -> nn.Module:
    """``model`` (changed in place) with one more output, :data:`NO_SHAPE`, whose logit starts at 0;
    the other outputs keep their weights, so the judge starts as the classifier."""
    old = model.fc
    if old.out_features != NO_SHAPE:
        raise ValueError(f"expected a {NO_SHAPE}-class classifier, got {old.out_features} outputs")
    new = nn.Linear(old.in_features, NO_SHAPE + 1).to(old.weight.device)
    with torch.no_grad():
        new.weight[:NO_SHAPE], new.bias[:NO_SHAPE] = old.weight, old.bias
        new.weight[NO_SHAPE], new.bias[NO_SHAPE] = 0.0, 0.0
    model.fc = new
    model.camprompt_arch = {**getattr(model, "camprompt_arch", {}), "num_classes": NO_SHAPE + 1}  # type: ignore[assignment]
    return model


def degraded_copies(images: np.ndarray, config: JudgeConfig, rng: np.random.Generator) -> np.ndarray:
    """``images`` with every 2nd and 3rd of each three through JPEG ``config.jpeg``, every 3rd also noisy."""
    out = images.copy()
    for i in range(len(out)):
        if i % 3 >= 1:
            out[i] = jpeg_round_trip(out[i], config.jpeg)
        if i % 3 == 2:
            out[i] = add_noise(out[i], config.noise, rng)
    return out


def _background_and_shape(silhouette: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The background colour (the picture's most common) and the shape's pixels (bool (H,W)) of a
    two-colour ``silhouette`` (:func:`camprompt.judge.isolate_region`); None for one colour (no shape)."""
    colours, counts = np.unique(silhouette.reshape(-1, 3), axis=0, return_counts=True)
    if len(colours) < 2:
        return None
    background = colours[np.argmax(counts)]
    return background, (silhouette != background).any(axis=-1)


def frame_cut(silhouette: np.ndarray, inside: float, side: int) -> np.ndarray | None:
    """A two-colour ``silhouette`` moved towards one side of the frame (0 left, 1 right, 2 up, 3 down)
    by the fewest pixels that leave at most ``inside`` of its shape in the frame; uncovered pixels take
    the background colour. None when the picture shows no shape (one colour)."""
    split = _background_and_shape(silhouette)
    if split is None:
        return None
    background, shape = split
    rows, cols = np.nonzero(shape)
    h, w = silhouette.shape[:2]
    room = (cols, w - 1 - cols, rows, h - 1 - rows)[side]  # a pixel leaves once moved further than its room
    # the fewest pixels d with at most `inside` of the shape's pixels having room >= d
    d = int(np.sort(room)[::-1][int(np.floor(inside * len(room)))]) + 1
    dx, dy = ((-d, 0), (d, 0), (0, -d), (0, d))[side]
    move = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(silhouette, move, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=tuple(int(c) for c in background))


def faded(silhouette: np.ndarray, contrast: float) -> np.ndarray | None:
    """A two-colour ``silhouette`` with its shape's colour moved along the RGB line towards the
    background's until the two are ``contrast`` apart (unchanged when they are closer already). None
    when the picture shows no shape (one colour)."""
    split = _background_and_shape(silhouette)
    if split is None:
        return None
    background, shape = split
    fill = silhouette[shape][0].astype(np.float64)
    gap = float(np.linalg.norm(fill - background))
    out = silhouette.copy()
    if gap > contrast:
        out[shape] = np.round(background + (fill - background) * contrast / gap).astype(np.uint8)
    return out


def _shape_copies(silhouettes: np.ndarray, labels: np.ndarray, share: float, rng: np.random.Generator,
                  make: Callable[[np.ndarray, np.random.Generator], np.ndarray | None]) -> tuple[list[np.ndarray], list[int]]:
    """``make(silhouette, rng)`` of a ``share`` of the shape silhouettes (never of the "none" ones), with
    their labels; a one-colour picture (no shape to copy) is left out before ``make`` draws anything."""
    xs: list[np.ndarray] = []
    ys: list[int] = []
    for silhouette, label in zip(silhouettes, labels):
        if label == NO_SHAPE or rng.random() >= share or (silhouette == silhouette[0, 0]).all():
            continue
        xs.append(make(silhouette, rng))  # two colours: make returns a copy, never None
        ys.append(int(label))
    return xs, ys


def frame_cuts(silhouettes: np.ndarray, labels: np.ndarray, config: JudgeConfig,
               rng: np.random.Generator) -> tuple[list[np.ndarray], list[int]]:
    """Cut copies (:func:`frame_cut`) of a ``config.cut`` share of the shape silhouettes, each towards a
    random side, keeping a random share in ``config.cut_inside``: another author may let the frame cut
    a shape more than ours does, and a judge that never saw a cut shape calls one "none"."""
    return _shape_copies(silhouettes, labels, config.cut, rng,
                         lambda silhouette, rng: frame_cut(silhouette, rng.uniform(*config.cut_inside),
                                                           int(rng.integers(4))))


def faded_copies(silhouettes: np.ndarray, labels: np.ndarray, config: JudgeConfig,
                 rng: np.random.Generator) -> tuple[list[np.ndarray], list[int]]:
    """Fainter copies (:func:`faded`) of a ``config.fade`` share of the shape silhouettes, each at an RGB
    distance to its background drawn from ``config.fade_contrast``: another author may paint shapes
    closer to their background than our contrast rule allows, and a judge that never saw a faint
    shape calls one "none"."""
    return _shape_copies(silhouettes, labels, config.fade, rng,
                         lambda silhouette, rng: faded(silhouette, float(rng.uniform(*config.fade_contrast))))


def training_silhouettes(split: SplitArrays, classifier: nn.Module, cam_config: dict[str, Any], config: JudgeConfig,
                         *, seed: int = 0, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Silhouettes uint8 (M,H,W,3) and labels (M,) (a class, or :data:`NO_SHAPE`) from the first
    ``config.images`` images of ``split`` (see the module docstring).

    The candidates are the region search's colour regions (:meth:`camprompt.search.RegionSearch.candidates`
    with its default proposals and no SAM), grown from the seeds of ``classifier``'s Grad-CAM
    ``cam_config``: the regions the judge will be asked about.
    """
    if len(split.images) < config.images:
        raise ValueError(f"the judge wants {config.images} training images, the split holds {len(split.images)}; "
                         "lower params judge.images or generate more train images")
    rng = np.random.default_rng(seed)
    images = degraded_copies(split.images[: config.images], config, rng)
    heats = compute_split_heatmaps(classifier, normalize(images), {config.cam: cam_config}, progress=progress).heatmaps[config.cam]
    search = RegionSearch(SearchConfig(use_sam=False), None)
    xs: list[np.ndarray] = []
    ys: list[int] = []
    rows = zip(images, heats, split.masks[: config.images], split.labels[: config.images])
    for image, heat, gt, label in tqdm(rows, total=len(images), desc="silhouettes", unit="img", disable=not progress,
                                       leave=False):
        cands = search.candidates(image, heat)
        stack = np.asarray(cands, bool).reshape(-1, *gt.shape)
        overlap = iou_batch(stack, np.broadcast_to(gt, stack.shape))
        shapes = [gt] + [cands[i] for i in np.flatnonzero(overlap >= config.match_iou)[:1]]
        blobs = [cands[i] for i in rng.permutation(np.flatnonzero(overlap < config.miss_iou))[: config.blobs]]
        xs += [isolate_region(image, m) for m in shapes + blobs]
        ys += [int(label)] * len(shapes) + [NO_SHAPE] * len(blobs)
    plain_xs, plain_ys = np.stack(xs), np.asarray(ys)
    if config.cut:
        cut_xs, cut_ys = frame_cuts(plain_xs, plain_ys, config, np.random.default_rng(seed + CUT_STREAM))
        xs, ys = xs + cut_xs, ys + cut_ys
    if config.fade:
        fade_xs, fade_ys = faded_copies(plain_xs, plain_ys, config, np.random.default_rng(seed + FADE_STREAM))
        xs, ys = xs + fade_xs, ys + fade_ys
    return np.stack(xs), np.asarray(ys, np.int64)


def train_no_shape_judge(classifier: nn.Module, split: SplitArrays, cam_config: dict[str, Any], config: JudgeConfig,
                         *, seed: int = 0, progress: bool = True) -> nn.Module:
    """A no-shape judge fine-tuned from a copy of ``classifier`` (left unchanged) on ``split``'s
    silhouettes, on the classifier's device; returned in eval mode.

    Mirror images are drawn as augmentation (every class is left-right symmetric); the batch order
    and the mirrors come from a generator seeded with ``seed``, so a run is repeatable on one machine.
    """
    x, y = training_silhouettes(split, classifier, cam_config, config, seed=seed, progress=progress)
    judge = with_no_shape_class(copy.deepcopy(classifier))
    device = module_device(judge)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(judge.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    inputs, labels = normalize(x), torch.from_numpy(y)
    n_none = int((y == NO_SHAPE).sum())
    for epoch in range(config.epochs):
        judge.train()
        order, total = torch.randperm(len(labels), generator=gen), 0.0
        bar = tqdm(range(0, len(labels), config.batch_size), desc=f"judge {epoch + 1}/{config.epochs}",
                   disable=not progress, leave=False)
        for start in bar:
            idx = order[start : start + config.batch_size]
            batch = inputs[idx].flip(-1) if torch.rand((), generator=gen) < 0.5 else inputs[idx]
            loss = F.cross_entropy(judge(batch.to(device)), labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        if progress:
            tqdm.write(f"judge epoch {epoch + 1}: loss {total / len(labels):.3f} on {len(labels)} silhouettes "
                       f"({n_none} none)")
    judge.camprompt_meta = {"kind": "no_shape_judge", "silhouettes": len(labels),  # type: ignore[assignment]
                            "none": n_none}
    return judge.eval()
