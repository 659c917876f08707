"""Grad-CAM (Selvaraju et al., arXiv 1610.02391) and gradient-based variants for any PyTorch CNN.

Imports only the standard library, torch, numpy, tqdm and :mod:`camprompt.cam_capture` (which
imports no more), so both files can be pasted into a notebook.

For an image, a class c with score y^c (the logit, before softmax, as in the paper) and a layer
with feature maps A (C,h,w), every method computes

    L^c = ReLU( sum_k  w^c_k  *  A^k )            (w^c_k per channel, or per element (k,i,j))

then upsamples L^c bilinearly (align_corners=False) to the input's H x W and min-max rescales it
to exactly 0..1 (a constant map becomes all zeros, never NaN). With several target layers the
result is the mean of those per-layer maps. The methods differ only in the weights w:

    gradcam    w_k    = mean_ij dy/dA_ij^k                               (Selvaraju et al. 2017)
    gradcam++  w_k    = sum_ij a_ij^k ReLU(dy/dA_ij^k),                   (Chattopadhyay et al. 2018,
               a_ij^k = g^2 / (2 g^2 + sum_ab A_ab^k g^3),  g = dy/dA_ij^k   eq. 19 of arXiv 1710.11063)
    layercam   w_kij  = ReLU(dy/dA_ij^k)                                 (Jiang et al. 2021)
    hirescam   w_kij  = dy/dA_ij^k                                       (Draelos & Carin 2020)

:class:`BaseCAM` is the shared skeleton (one forward and one backward per batch through
:func:`camprompt.cam_capture.forward_backward`, the model left as it was found); a method defines
only ``weights``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from camprompt.cam_capture import (
    OutputFn,
    check_batch,
    forward_backward,
    minmax_scale,
    model_device,
    resolve_layers,
    select_logits,
    unique_layers,
)

__all__ = [
    "BaseCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "LayerCAM",
    "HiResCAM",
    "CAM_METHODS",
    "CAMResult",
    "SplitHeatmaps",
    "compute_split_heatmaps",
]


@dataclass(frozen=True)
class CAMResult:
    """Everything one CAM call produces (all numpy, on CPU).

    heatmaps: float32 (B,H,W) in 0..1 (mean over layers of the min-max scaled maps).
    targets:  int64 (B,) the class each map explains.
    logits:   float32 (B,K) the model scores from the same forward pass.
    raw:      per target layer, float32 (B,h,w): ReLU(weighted sum) before upsampling/scaling.
    """

    heatmaps: np.ndarray
    targets: np.ndarray
    logits: np.ndarray
    raw: tuple[np.ndarray, ...]

    @property
    def preds(self) -> np.ndarray:
        """int64 (B,) top predicted class (first maximum on ties, like ``torch.argmax``)."""
        return self.logits.argmax(axis=1).astype(np.int64)


class BaseCAM:
    """Gradient-weighted class activation map; subclasses define only ``weights``.

    ``model``: any ``nn.Module``; its output's class scores are picked by ``output_fn``
    (default :func:`select_logits`: tensor as is, mapping -> "logits"/"out", tuple -> first).
    ``target_layers``: modules (or names, resolved with ``model.get_submodule``) whose output is
    (B,C,h,w).
    """

    name = "base"

    def __init__(
        self,
        model: nn.Module,
        target_layers: Iterable[nn.Module | str],
        output_fn: OutputFn | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.target_layers = resolve_layers(model, list(target_layers))
        self.output_fn: OutputFn = output_fn or select_logits

    def weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """Weights broadcastable to ``activations`` (B,C,h,w): (B,C,1,1) per channel or (B,C,h,w)."""
        raise NotImplementedError

    def layer_map(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """ReLU(sum_k w_k A^k) for one layer: (B,C,h,w) x2 -> float32 (B,h,w)."""
        acts = activations.float()
        w = self.weights(acts, gradients.float())
        if w.shape[2:] == (1, 1):
            cam = torch.einsum("bc,bchw->bhw", w[:, :, 0, 0], acts)
        else:
            cam = (w * acts).sum(dim=1)
        return torch.relu(cam)

    def _heatmaps(self, acts: Sequence[Tensor], grads: Sequence[Tensor], size: tuple[int, int]) -> tuple[Tensor, list[Tensor]]:
        raw = [self.layer_map(a, g) for a, g in zip(acts, grads)]
        scaled = [
            minmax_scale(F.interpolate(r[:, None], size=size, mode="bilinear", align_corners=False)[:, 0])
            for r in raw
        ]
        return torch.stack(scaled).mean(dim=0), raw

    def compute(self, image: Tensor, targets: Iterable[int] | int | None = None) -> CAMResult:
        """Heatmaps plus targets, logits and raw per-layer maps from one forward/backward."""
        cap = forward_backward(self.model, self.target_layers, image, targets, self.output_fn)
        heat, raw = self._heatmaps(cap.activations, cap.gradients, tuple(image.shape[-2:]))
        return CAMResult(
            heatmaps=heat.cpu().numpy().astype(np.float32, copy=False),
            targets=cap.targets.cpu().numpy().astype(np.int64, copy=False),
            logits=cap.logits.float().cpu().numpy(),
            raw=tuple(r.cpu().numpy() for r in raw),
        )

    def __call__(self, image: Tensor, targets: Iterable[int] | int | None = None) -> np.ndarray:
        """float32 (B,H,W) heatmaps in 0..1 for a normalised batch (B,C,H,W).

        ``targets``: one class per image, a single class for all, or None (top predicted class).
        """
        return self.compute(image, targets).heatmaps

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layers={[type(m).__name__ for m in self.target_layers]})"


class GradCAM(BaseCAM):
    """Grad-CAM: channel weight = spatial mean of d(score)/dA (eq. 1 of arXiv 1610.02391)."""

    name = "gradcam"

    def weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        return gradients.mean(dim=(2, 3), keepdim=True)


class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++ (arXiv 1710.11063, eq. 19 and 10): weights sum_ij a_ij ReLU(g_ij).

    a_ij = g^2 / (2 g^2 + (sum_ab A_ab) g^3) with g = d(score)/dA_ij (the exponential's factors
    cancel in a and only rescale the map, which min-max scaling removes). No epsilon is added; as
    in the authors' code a zero denominator is replaced by 1 (where g = 0 that gives a = 0).
    Computed in float64: g^3 of small gradients underflows float32.
    """

    name = "gradcam++"

    def weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        g = gradients.double()
        g2 = g * g
        total = activations.double().sum(dim=(2, 3), keepdim=True)
        denom = 2.0 * g2 + total * g2 * g
        alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
        return (alpha * torch.relu(g)).sum(dim=(2, 3), keepdim=True).float()


class LayerCAM(BaseCAM):
    """LayerCAM (Jiang et al., IEEE TIP 2021): element weight = ReLU(d(score)/dA_ij)."""

    name = "layercam"

    def weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        return torch.relu(gradients)


class HiResCAM(BaseCAM):
    """HiResCAM (arXiv 2011.08891): element weight = d(score)/dA_ij (gradient times activation)."""

    name = "hirescam"

    def weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        return gradients


CAM_METHODS: dict[str, type[BaseCAM]] = {
    cls.name: cls for cls in (GradCAM, GradCAMPlusPlus, LayerCAM, HiResCAM)
}


# --------------------------------------------------------------------------------------------
# A whole split, several configurations sharing each batch's forward/backward
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitHeatmaps:
    """heatmaps: {config: float32 (N,H,W)}; logits float32 (N,K); targets int64 (N,)."""

    heatmaps: dict[str, np.ndarray]
    logits: np.ndarray
    targets: np.ndarray

    @property
    def preds(self) -> np.ndarray:
        return self.logits.argmax(axis=1).astype(np.int64)


def _build_cams(model: nn.Module, configs: Mapping[str, Mapping[str, Any]]) -> dict[str, BaseCAM]:
    if not configs:
        raise ValueError("no CAM configurations given; e.g. {'layer2': {'method': 'gradcam', 'layers': ['layer2']}}")
    cams: dict[str, BaseCAM] = {}
    for name, cfg in configs.items():
        if not isinstance(cfg, Mapping) or "layers" not in cfg:
            raise ValueError(f"CAM config {name!r} must be a mapping with 'method' and 'layers', got {cfg!r}")
        method = cfg.get("method", "gradcam")
        if method not in CAM_METHODS:
            raise ValueError(f"CAM config {name!r}: unknown method {method!r}; choose one of {sorted(CAM_METHODS)}")
        cams[name] = CAM_METHODS[method](model, resolve_layers(model, cfg["layers"]))
    return cams


def compute_split_heatmaps(
    model: nn.Module,
    images: Tensor | np.ndarray,
    configs: Mapping[str, Mapping[str, Any]],
    batch_size: int = 64,
    targets: Sequence[int] | np.ndarray | None = None,
    progress: bool = True,
) -> SplitHeatmaps:
    """CAM heatmaps of every configuration for a whole split of normalised images (N,C,H,W).

    ``configs`` maps a name to ``{"method": one of CAM_METHODS, "layers": [names or modules]}``.
    Each batch runs ONE forward and ONE backward for the union of all configurations' layers, so
    every configuration explains the same logits. ``targets`` None = predicted class per image.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    images = torch.as_tensor(images)
    check_batch(images)
    n = images.shape[0]
    if targets is not None and len(targets) != n:
        raise ValueError(f"got {len(targets)} targets for {n} images")
    cams = _build_cams(model, configs)
    layers = unique_layers([m for cam in cams.values() for m in cam.target_layers])
    index = {name: [next(i for i, m in enumerate(layers) if m is l) for l in cam.target_layers] for name, cam in cams.items()}
    device = model_device(model)
    size = tuple(images.shape[-2:])
    heat = {name: np.empty((n, *size), np.float32) for name in cams}
    logits_parts: list[np.ndarray] = []
    target_parts: list[np.ndarray] = []
    for start in tqdm(range(0, n, batch_size), desc="grad-cam", unit="batch", disable=not progress):
        batch = images[start : start + batch_size].to(device)
        batch_targets = None if targets is None else list(targets[start : start + batch_size])
        cap = forward_backward(model, layers, batch, batch_targets, select_logits)
        for name, cam in cams.items():
            acts = [cap.activations[i] for i in index[name]]
            grads = [cap.gradients[i] for i in index[name]]
            maps, _ = cam._heatmaps(acts, grads, size)
            heat[name][start : start + len(batch)] = maps.cpu().numpy()
        logits_parts.append(cap.logits.float().cpu().numpy())
        target_parts.append(cap.targets.cpu().numpy())
    return SplitHeatmaps(
        heatmaps=heat,
        logits=np.concatenate(logits_parts).astype(np.float32),
        targets=np.concatenate(target_parts).astype(np.int64),
    )
