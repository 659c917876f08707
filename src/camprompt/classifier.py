"""The shape classifier: a torchvision ResNet18 with a 5-class head, its training recipe and checkpoints.

Why a stock torchvision ResNet18: Grad-CAM users address layers by name (``layer2``, ``layer4``), and
any torchvision-aware tool then works unchanged. The only change allowed is the *stem*: on 64x48
inputs the ImageNet stem (7x7 stride-2 conv + max-pool) throws away 4x resolution before ``layer1``,
so ``build_classifier(stem=...)`` can keep more of it (module names stay the same; a removed max-pool
becomes ``nn.Identity``), at a few times the compute.

Why the recipe needs work: trained from scratch on 3,500 small images a plain recipe (AdamW, a few
epochs) stays at chance: the net first has to learn *where* the shape is. What makes it learn: a
one-cycle schedule, label smoothing and label-preserving augmentation on whole batches
(:mod:`camprompt.augment`). All randomness comes from one seeded ``torch.Generator`` and the initial
weights from a seeded RNG, so a run is repeatable on one machine; across machines BLAS kernels
differ and so do the weights (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from camprompt.artifacts import ArtifactError, atomic_path
from camprompt.augment import Augment
from camprompt.data import CLASSES, SplitArrays, SyntheticShapes, load_split, normalize, normalize_float
from camprompt.devices import eval_no_grad, module_device

CHECKPOINT_FORMAT = "camprompt-classifier"
CHECKPOINT_VERSION = 1
STEMS = ("imagenet", "stride2", "stride1")


class ClassifierError(ArtifactError):
    """A checkpoint is missing, corrupt or of the wrong kind; the message says how to rebuild it."""


# ------------------------------------------------------------------------------------------------
# Architecture
# ------------------------------------------------------------------------------------------------


def build_classifier(num_classes: int = len(CLASSES), *, stem: str = "imagenet", pretrained: bool = False,
                     seed: int | None = None) -> nn.Module:
    """torchvision ResNet18 with a ``num_classes`` head.

    ``stem``: ``imagenet`` keeps the stock 7x7/2 conv + max-pool (``layer1`` at 1/4 resolution);
    ``stride2`` uses a 3x3/2 conv and no max-pool (1/2 resolution: finer Grad-CAM maps, ~3x the
    compute); ``stride1`` a 3x3/1 conv and no max-pool (full resolution, very slow on CPU).
    ``pretrained`` loads ImageNet weights for the unchanged layers when they can be downloaded and
    otherwise warns and trains from scratch (offline machines). ``seed``: the random initial weights
    are drawn from torch's RNG seeded with it (the global RNG's state is left as it was), so training
    is repeatable from the first weight; None draws from the global RNG, whose state differed from
    one process to the next here (three runs of one recipe gave test accuracies 0.976 to 0.994).
    """
    from torchvision.models import ResNet18_Weights, resnet18

    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}; expected one of {STEMS}")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(int(seed))
        model = resnet18(num_classes=num_classes)
        if pretrained:
            _load_imagenet_weights(model, ResNet18_Weights.IMAGENET1K_V1)
        if stem != "imagenet":
            model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2 if stem == "stride2" else 1, padding=1, bias=False)
            nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
            model.maxpool = nn.Identity()
    # Remembered so that save_classifier can store how to rebuild this exact network.
    model.camprompt_arch = {"num_classes": num_classes, "stem": stem}  # type: ignore[attr-defined]
    return model


def _load_imagenet_weights(model: nn.Module, weights: Any) -> None:
    """Copy ImageNet weights except the head; offline, warn and keep the random initialisation."""
    import warnings

    try:
        state = weights.get_state_dict(progress=False)
    except Exception as exc:  # URLError, socket timeouts, corrupt cache...
        warnings.warn(f"could not download ImageNet weights ({type(exc).__name__}: {exc}); training from scratch. "
                      "Set train.arch.pretrained: false to silence this.", stacklevel=3)
        return
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    model.load_state_dict(state, strict=False)


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """The training recipe (params.yaml ``train:`` minus file paths)."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3  # peak learning rate of the one-cycle schedule
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    schedule: str = "onecycle"  # onecycle | constant
    pct_start: float = 0.25
    threads: int = 2
    channels_last: bool = True
    arch: dict[str, Any] = field(default_factory=dict)  # build_classifier kwargs
    augment: dict[str, Any] | bool = True  # True: Augment() defaults; False: none; dict: overrides

    @classmethod
    def from_params(cls, params: Mapping[str, Any], ignore: tuple[str, ...] = ("checkpoint", "metrics")) -> TrainConfig:
        """Build from params.yaml's ``train`` section; unknown keys are an error (typos must not pass)."""
        known = {f.name for f in fields(cls)}
        unknown = set(params) - known - set(ignore)
        if unknown:
            raise ValueError(f"params.yaml train: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{k: v for k, v in params.items() if k in known})

    def augmenter(self) -> Augment | None:
        if self.augment is False:
            return None
        return Augment(**(self.augment if isinstance(self.augment, Mapping) else {}))


def _as_arrays(data: SplitArrays | SyntheticShapes | tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N,H,W,3), labels int64 (N,)) from any of the dataset containers."""
    if isinstance(data, SplitArrays):
        return data.images, data.labels
    if isinstance(data, SyntheticShapes):
        arrays = load_split(data.root, data.split)
        return arrays.images, arrays.labels
    images, labels = data
    return np.asarray(images), np.asarray(labels, dtype=np.int64)


def _check_inputs(images: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N,H,W,3), got {images.dtype} {images.shape}")
    if labels.shape != (len(images),):
        raise ValueError(f"labels must be shaped ({len(images)},), got {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")


def _make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "onecycle":
        steps, pct = max(1, steps), float(cfg.pct_start)
        if not 0.0 < pct < 1.0:
            raise ValueError(f"train.pct_start must lie strictly between 0 and 1 (the warm-up share), got {cfg.pct_start}")
        if pct * steps == 1.0:  # a warm-up 0 steps wide: torch divides 0 by 0 at step 0 (pytorch PR #180187)
            pct = math.nextafter(pct, 1.0)
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=pct)
    if cfg.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    raise ValueError(f"unknown schedule {cfg.schedule!r}; expected onecycle or constant")


def train_classifier(
    model: nn.Module,
    train: SplitArrays | SyntheticShapes | tuple[np.ndarray, np.ndarray],
    val: SplitArrays | SyntheticShapes | tuple[np.ndarray, np.ndarray] | None = None,
    config: TrainConfig | None = None,
    *,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place with the one-cycle recipe; return the history.

    ``device``: where the network runs (``camprompt.devices.resolve_device``); None keeps the model
    where it is. Batches are drawn and augmented on the CPU with the seeded generator either way, so
    the sequence of training images does not depend on the device.

    History: ``{"epochs": [{epoch, train_loss, train_accuracy, val_loss?, val_accuracy?, seconds}],
    "seconds": total}``. Validation is scored after every epoch (cheap: forward only) so that the
    recipe can be chosen on val; the test split is never touched here.
    """
    cfg = config or TrainConfig()
    images, labels = _as_arrays(train)
    num_classes = _outputs(model)
    _check_inputs(images, labels, num_classes)
    if len(images) == 0:
        raise ValueError("the training split is empty")
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    device = torch.device(device) if device is not None else module_device(model)
    model.to(device=device, memory_format=memory_format)
    augment = cfg.augmenter()
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels)
    steps_per_epoch = math.ceil(len(images) / cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = _make_scheduler(opt, cfg, cfg.epochs * steps_per_epoch)
    history: dict[str, Any] = {"epochs": []}
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(images), generator=gen)
        total_loss, correct = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"train {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        for step in bar:
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            xb = augment(x_all[idx], gen) if augment else x_all[idx].permute(0, 3, 1, 2).float().div(255)
            xb = normalize_float(xb).contiguous(memory_format=memory_format).to(device, non_blocking=True)
            yb = y_all[idx].to(device, non_blocking=True)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_value = float(loss.detach())
            total_loss += loss_value * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            bar.set_postfix(loss=f"{loss_value:.3f}")
        record = {"epoch": epoch + 1, "train_loss": total_loss / len(images), "train_accuracy": correct / len(images)}
        if val is not None:
            scores = evaluate(model, val, threads=None)
            record.update(val_loss=scores["loss"], val_accuracy=scores["accuracy"])
        record["seconds"] = time.perf_counter() - t0
        history["epochs"].append(record)
        if progress:
            extra = f" val {record['val_accuracy']:.3f}" if "val_accuracy" in record else ""
            tqdm.write(f"epoch {epoch + 1}: loss {record['train_loss']:.3f} acc {record['train_accuracy']:.3f}{extra} "
                       f"({record['seconds']:.1f} s)")
    model.eval()
    model.to(memory_format=torch.contiguous_format)
    history["seconds"] = time.perf_counter() - start
    return history


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------


def predict_logits(model: nn.Module, images: np.ndarray, batch_size: int = 256, *,
                   normalize: Callable[[np.ndarray], Tensor] = normalize) -> Tensor:
    """float32 logits (N, outputs) on the CPU of uint8 images (N,H,W,3), which ``normalize`` turns into
    the model's input, batch by batch on the model's device, in eval mode without autograd."""
    with eval_no_grad(model) as device:
        outs = [model(normalize(images[i : i + batch_size]).to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(outs) if outs else torch.zeros((0, _outputs(model)))


def predict_probabilities(model: nn.Module, images: np.ndarray, batch_size: int = 256, *,
                          normalize: Callable[[np.ndarray], Tensor] = normalize) -> np.ndarray:
    """float32 softmax class probabilities (N, outputs) of uint8 images (N,H,W,3): :func:`predict_logits`'s
    logits through a softmax, the one rule every caller that weighs classes by probability shares."""
    return predict_logits(model, images, batch_size, normalize=normalize).softmax(1).numpy()


def _outputs(model: nn.Module) -> int:
    """How many classes ``model`` tells apart: its ``fc`` head's outputs (the classifier's 5, the judge's 6)."""
    return model.fc.out_features if hasattr(model, "fc") else len(CLASSES)


def evaluate(
    model: nn.Module, data: SplitArrays | SyntheticShapes | tuple[np.ndarray, np.ndarray], *,
    batch_size: int = 256, threads: int | None = None,
) -> dict[str, Any]:
    """Accuracy, mean cross-entropy, per-class accuracy and the confusion matrix (rows: truth)."""
    if threads:
        torch.set_num_threads(int(threads))
    images, labels = _as_arrays(data)
    num_classes = _outputs(model)
    _check_inputs(images, labels, num_classes)
    logits = predict_logits(model, images, batch_size)
    y = torch.from_numpy(labels)
    pred = logits.argmax(1)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, pred.numpy()), 1)
    names = list(CLASSES) if num_classes == len(CLASSES) else [str(i) for i in range(num_classes)]
    per_class = {
        names[c]: (float(confusion[c, c] / confusion[c].sum()) if confusion[c].sum() else None) for c in range(num_classes)
    }
    n = len(labels)
    return {
        "n": n,
        "accuracy": float((pred == y).float().mean()) if n else float("nan"),
        "loss": float(F.cross_entropy(logits, y)) if n else float("nan"),
        "per_class_accuracy": per_class,
        "confusion": confusion.tolist(),
    }


# ------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------


def save_classifier(path: str | os.PathLike[str], model: nn.Module, meta: Mapping[str, Any] | None = None,
                    arch: Mapping[str, Any] | None = None) -> Path:
    """Save weights + the ``build_classifier`` kwargs (so loading rebuilds the same net) atomically.

    ``arch`` defaults to ``model.camprompt_arch`` (set by :func:`build_classifier`). ``meta`` must be plain JSON-like data (loaded with
    ``weights_only=True``, which never executes pickled code).
    """
    arch = dict(arch if arch is not None else getattr(model, "camprompt_arch", {}))
    arch.pop("pretrained", None)  # the weights are in the file; never download at load time
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "arch": arch,
               "state_dict": state, "meta": dict(meta or {})}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_classifier(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the network of a checkpoint and load its weights; returned in eval mode.

    The checkpoint's ``meta`` is attached as ``model.camprompt_meta``.
    """
    path = Path(path)
    if not path.is_file():
        raise ClassifierError(f"classifier checkpoint {path} does not exist; train it with `dvc repro train`.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle errors, random bytes...
        raise ClassifierError(f"{path} is not a readable classifier checkpoint ({type(exc).__name__}: {exc}); "
                              "delete it and re-run `dvc repro train`.") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ClassifierError(f"{path} is not a camprompt classifier checkpoint (saved by save_classifier)")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ClassifierError(f"{path} has checkpoint version {payload.get('version')}, expected "
                              f"{CHECKPOINT_VERSION}; re-run `dvc repro train`.")
    arch = dict(payload.get("arch") or {})
    try:
        model = build_classifier(**arch)
        model.load_state_dict(payload["state_dict"])
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise ClassifierError(f"{path}: weights do not fit the architecture {arch} ({exc})") from exc
    model.camprompt_arch = arch  # type: ignore[attr-defined]
    model.camprompt_meta = copy.deepcopy(payload.get("meta") or {})  # type: ignore[attr-defined]
    return model.to(map_location).eval()


def config_dict(config: TrainConfig) -> dict[str, Any]:
    """The recipe as plain data (stored in checkpoints and metrics)."""
    return asdict(config)
