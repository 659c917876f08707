"""Grad-CAM (Selvaraju et al., arXiv 1610.02391) and gradient-based variants for any PyTorch CNN.

Self-contained on purpose (stdlib, torch, numpy, tqdm, matplotlib only; no other camprompt module),
so that the file can be pasted into a notebook.

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

Implementation choices, and why:

* One forward and one ``torch.autograd.grad`` call per batch, whatever the number of layers:
  the score is the sum over the batch of each image's target logit. In eval mode images do not
  interact, so d(sum)/dA_b is exactly d(y_b)/dA_b -- which is why the model is put in eval mode
  for the call (and every module's own flag restored afterwards).
* Gradients are taken w.r.t. the captured layer outputs with ``torch.autograd.grad``: no
  ``.grad`` is ever written on parameters, and no weight gradients are computed (faster).
* The forward starts under ``no_grad``; the first target layer's hook turns the graph on, so
  nothing before it is recorded. This also makes the call work under ``torch.no_grad()`` /
  ``torch.inference_mode()`` and with frozen (``requires_grad=False``) parameters.
* The hook hands a *clone* of the layer output to the rest of the network, so in-place
  operations downstream (``ReLU(inplace=True)`` in torchvision ResNet/VGG/DenseNet) cannot
  overwrite the feature maps or their gradients. No full backward module hooks are used.
* Hooks are removed in ``finally`` blocks, also when the call raises.
* Speed: on CPU, torch's max-pool kernel for contiguous (NCHW) tensors was measured ~15x slower
  than its channels-last one (6.2 vs 0.4 ms for ResNet-18's stem pool at B=32, 48x64; ~8% of a
  whole Grad-CAM call). For the duration of a call, every ``nn.MaxPool2d`` of the model pools a
  channels-last copy of its input and hands the result back contiguous: max is exact, so the
  output is bit-identical, and the hooks go with the others.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

__all__ = [
    "BaseCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "LayerCAM",
    "HiResCAM",
    "CAM_METHODS",
    "CAMResult",
    "SplitHeatmaps",
    "resolve_layers",
    "select_logits",
    "minmax_scale",
    "compute_split_heatmaps",
    "argmax_points",
    "argmax_hit_rate",
    "plot_heatmaps",
]

OutputFn = Callable[[Any], Tensor]

# Relative range below which a map counts as constant: bilinear resampling of a constant map can
# add float32 rounding noise (~1e-7 relative), which min-max scaling would blow up to 0..1.
_FLAT_RTOL = 1e-6


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def select_logits(output: Any) -> Tensor:
    """Pick the class-score tensor out of a model's output.

    Rules, in order: a Tensor is used as is; a Mapping (dict, HuggingFace ``ModelOutput``) gives
    its ``"logits"`` entry, else ``"out"`` (torchvision segmentation models), else its only value;
    an object with a ``logits`` attribute gives that; a tuple/list gives its first element
    (torchvision GoogLeNet/Inception put the main logits first, auxiliary heads after).
    Pass ``output_fn`` to the CAM to override these rules.
    """
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Mapping):
        for key in ("logits", "out"):
            if key in output:
                return select_logits(output[key])
        if len(output) == 1:
            return select_logits(next(iter(output.values())))
        raise TypeError(
            f"model returned a mapping with keys {list(output)}; none is 'logits' or 'out'. "
            "Pass output_fn=lambda out: out[<key>] to say which entry holds the class scores."
        )
    if isinstance(getattr(output, "logits", None), Tensor):
        return output.logits
    if isinstance(output, (tuple, list)) and len(output) > 0:
        return select_logits(output[0])
    raise TypeError(
        f"cannot find class scores in a model output of type {type(output).__name__}; "
        "pass output_fn=... to the CAM to extract a (B, num_classes) tensor."
    )


def resolve_layers(model: nn.Module, names: str | Iterable[str | nn.Module]) -> list[nn.Module]:
    """Turn layer names such as ``"layer2"`` or ``"layer3.1.conv2"`` into modules of ``model``.

    Modules are passed through unchanged, so callers may mix both. Unknown names raise a
    ``ValueError`` that suggests the closest existing names.
    """
    if isinstance(names, (str, nn.Module)):
        names = [names]
    layers: list[nn.Module] = []
    for name in names:
        if isinstance(name, nn.Module):
            layers.append(name)
            continue
        if not isinstance(name, str):
            raise TypeError(f"a target layer must be a module name (str) or an nn.Module, got {name!r}")
        try:
            layers.append(model.get_submodule(name))
        except AttributeError:
            known = [n for n, _ in model.named_modules() if n]
            close = difflib.get_close_matches(name, known, n=5)
            hint = f" Did you mean one of {close}?" if close else ""
            raise ValueError(f"model has no submodule named {name!r}.{hint}") from None
    if not layers:
        raise ValueError("no target layers given; name at least one layer, e.g. ['layer2']")
    return layers


def minmax_scale(maps: Tensor) -> Tensor:
    """Rescale each (H,W) map of a (B,H,W) batch to span exactly 0..1; constant maps -> zeros.

    ``(x - min) / (max - min)`` gives exactly 0 at the minimum and exactly 1 at the maximum in
    IEEE arithmetic. A map whose range is zero or at float32 rounding level relative to its
    magnitude is treated as constant and returned as zeros instead of amplified noise or NaN.
    """
    flat = maps.flatten(1)
    lo = flat.amin(dim=1)
    hi = flat.amax(dim=1)
    span = hi - lo
    flat_map = span <= _FLAT_RTOL * torch.maximum(hi.abs(), lo.abs())
    safe = torch.where(flat_map, torch.ones_like(span), span)
    out = (maps - lo[:, None, None]) / safe[:, None, None]
    return torch.where(flat_map[:, None, None], torch.zeros_like(out), out)


def _parse_targets(targets: Any, batch: int) -> list[int] | None:
    """Targets -> one int per image (a single class is broadcast); validate types and length."""
    if targets is None:
        return None
    if isinstance(targets, Tensor):
        targets = targets.detach().cpu().numpy()
    if isinstance(targets, np.ndarray):
        targets = targets.tolist() if targets.ndim else targets.item()
    if isinstance(targets, (int, np.integer)) and not isinstance(targets, bool):
        items: list[Any] = [targets]
    elif isinstance(targets, (str, bytes)) or not isinstance(targets, Iterable):
        raise TypeError(f"targets must be None, a class index or an iterable of class indices, got {targets!r}")
    else:
        items = list(targets)
    out: list[int] = []
    for t in items:
        if isinstance(t, Tensor) and t.numel() == 1:
            t = t.item()
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
            raise TypeError(f"every target must be an integer class index, got {t!r}")
        out.append(int(t))
    if len(out) == 1:
        return out * batch
    if len(out) != batch:
        raise ValueError(
            f"got {len(out)} targets for a batch of {batch} images; give one class per image, "
            "a single class for the whole batch, or None for each image's predicted class"
        )
    return out


def _check_batch(image: Any) -> None:
    if not isinstance(image, Tensor):
        raise TypeError(f"image must be a torch.Tensor of shape (B,C,H,W), got {type(image).__name__}")
    if image.ndim != 4:
        hint = " For a single image use image[None] (or image.unsqueeze(0))." if image.ndim == 3 else ""
        raise ValueError(f"image must have shape (B,C,H,W), got {tuple(image.shape)}.{hint}")
    if min(image.shape) == 0:
        raise ValueError(f"image has an empty dimension: {tuple(image.shape)}")
    if not image.is_floating_point():
        raise TypeError(
            f"image has dtype {image.dtype}; Grad-CAM needs the normalised float input the model "
            "was trained on (convert and normalise uint8 images first)"
        )


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _unique(layers: Sequence[nn.Module]) -> list[nn.Module]:
    seen: list[nn.Module] = []
    for layer in layers:
        if not any(layer is s for s in seen):
            seen.append(layer)
    return seen


# --------------------------------------------------------------------------------------------
# One forward + one backward: logits, feature maps and their gradients for several layers
# --------------------------------------------------------------------------------------------


@dataclass
class _Capture:
    logits: Tensor  # (B,K), detached
    targets: Tensor  # (B,) int64
    activations: list[Tensor]  # per layer (B,C,h,w), detached
    gradients: list[Tensor]  # per layer (B,C,h,w)


def _capture_hook(store: list[Tensor]) -> Callable[[nn.Module, Any, Any], Tensor]:
    def hook(module: nn.Module, inputs: Any, output: Any) -> Tensor:
        if not isinstance(output, Tensor) or output.ndim != 4:
            shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
            raise ValueError(
                f"target layer {type(module).__name__} produced {shape}; CAM needs a layer whose "
                "output is a (B,C,h,w) feature map (pick a convolutional block, e.g. 'layer4')"
            )
        act = output if output.requires_grad else output.detach().requires_grad_(True)
        torch.set_grad_enabled(True)  # record the graph from here on (restored by the caller)
        store.append(act)
        return act.clone()  # downstream in-place ops touch the clone, never the captured maps

    return hook


def _nhwc_pool_hooks(model: nn.Module) -> list[Any]:
    """Temporary hooks that run each CPU ``nn.MaxPool2d`` on a channels-last copy (see module notes)."""

    converted: set[int] = set()  # pools whose input was converted in this forward

    def to_nhwc(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        x = args[0] if args else None
        if not isinstance(x, Tensor) or x.ndim != 4 or x.device.type != "cpu" or x.is_contiguous(memory_format=torch.channels_last):
            return None
        converted.add(id(module))
        return (x.contiguous(memory_format=torch.channels_last), *args[1:])

    def to_nchw(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        if id(module) not in converted or not isinstance(output, Tensor):
            return None
        converted.discard(id(module))
        return output.contiguous()

    handles = []
    for module in model.modules():
        if isinstance(module, nn.MaxPool2d) and not module.return_indices:
            handles.append(module.register_forward_pre_hook(to_nhwc))
            handles.append(module.register_forward_hook(to_nchw))
    return handles


@torch.inference_mode(False)  # autograd must work even if the caller is in inference mode
def _forward_backward(
    model: nn.Module,
    layers: Sequence[nn.Module],
    image: Tensor,
    targets: Any,
    output_fn: OutputFn,
) -> _Capture:
    """Run one forward and one backward; leave the model exactly as found (flags, hooks, grads)."""
    _check_batch(image)
    image = image.to(_model_device(model))  # a CPU batch for a model on the GPU (a no-op on the CPU)
    batch = image.shape[0]
    wanted = _parse_targets(targets, batch)
    stores: list[list[Tensor]] = [[] for _ in layers]
    flags = [(m, m.training) for m in model.modules()]
    handles = []
    try:
        model.eval()
        handles.extend(_nhwc_pool_hooks(model))
        for layer, store in zip(layers, stores):
            handles.append(layer.register_forward_hook(_capture_hook(store)))
        with torch.no_grad():  # the first target layer's hook switches the graph on
            if image.is_inference():
                image = image.clone()
            output = model(image)
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in flags:
            module.training = flag

    logits = output_fn(output)
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != batch:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"model scores must be (B, num_classes) = ({batch}, K), got {shape}")
    for layer, store in zip(layers, stores):
        if len(store) != 1:
            what = "did not run" if not store else f"ran {len(store)} times"
            raise ValueError(
                f"target layer {type(layer).__name__} {what} in the forward pass; "
                "CAM needs a layer that runs exactly once per forward"
            )
        if store[0].shape[0] != batch:
            raise ValueError(
                f"target layer {type(layer).__name__} output has batch size {store[0].shape[0]}, "
                f"expected {batch}; CAM needs a (B,C,h,w) feature map"
            )
    num_classes = logits.shape[1]
    if wanted is None:
        target_t = logits.detach().argmax(dim=1)
    else:
        bad = [t for t in wanted if not 0 <= t < num_classes]
        if bad:
            raise ValueError(f"target classes {sorted(set(bad))} out of range for {num_classes} classes")
        target_t = torch.tensor(wanted, dtype=torch.long, device=logits.device)
    if not logits.requires_grad:
        raise ValueError("the model scores do not depend on the target layers (no gradient path)")
    with torch.enable_grad():
        score = logits.gather(1, target_t[:, None]).sum()
    acts = [store[0] for store in stores]
    grads = torch.autograd.grad(score, acts, allow_unused=True)
    for layer, grad in zip(layers, grads):
        if grad is None:
            raise ValueError(f"the model scores do not depend on target layer {type(layer).__name__}")
    return _Capture(
        logits=logits.detach(),
        targets=target_t,
        activations=[a.detach() for a in acts],
        gradients=list(grads),
    )


# --------------------------------------------------------------------------------------------
# The CAM skeleton and its variants
# --------------------------------------------------------------------------------------------


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
        cap = _forward_backward(self.model, self.target_layers, image, targets, self.output_fn)
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
    _check_batch(images)
    n = images.shape[0]
    if targets is not None and len(targets) != n:
        raise ValueError(f"got {len(targets)} targets for {n} images")
    cams = _build_cams(model, configs)
    layers = _unique([m for cam in cams.values() for m in cam.target_layers])
    index = {name: [next(i for i, m in enumerate(layers) if m is l) for l in cam.target_layers] for name, cam in cams.items()}
    device = _model_device(model)
    size = tuple(images.shape[-2:])
    heat = {name: np.empty((n, *size), np.float32) for name in cams}
    logits_parts: list[np.ndarray] = []
    target_parts: list[np.ndarray] = []
    for start in tqdm(range(0, n, batch_size), desc="grad-cam", unit="batch", disable=not progress):
        batch = images[start : start + batch_size].to(device)
        batch_targets = None if targets is None else list(targets[start : start + batch_size])
        cap = _forward_backward(model, layers, batch, batch_targets, select_logits)
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


# --------------------------------------------------------------------------------------------
# Inspection helpers
# --------------------------------------------------------------------------------------------


def argmax_hit_rate(heatmaps: np.ndarray, masks: np.ndarray) -> float:
    """Fraction of images whose heatmap arg-max pixel lies inside the (N,H,W) boolean mask."""
    masks = np.asarray(masks, dtype=bool)
    if masks.shape != np.shape(heatmaps):
        raise ValueError(f"masks {masks.shape} and heatmaps {np.shape(heatmaps)} must have the same (N,H,W) shape")
    if len(masks) == 0:
        return float("nan")
    pts = argmax_points(heatmaps)
    return float(masks[np.arange(len(masks)), pts[:, 1], pts[:, 0]].mean())


def argmax_points(heatmaps: np.ndarray) -> np.ndarray:
    """(N,H,W) -> int64 (N,2) (x, y) pixel of each map's maximum (first one in row-major order)."""
    heatmaps = np.asarray(heatmaps)
    if heatmaps.ndim != 3:
        raise ValueError(f"heatmaps must be (N,H,W), got {heatmaps.shape}")
    flat = heatmaps.reshape(len(heatmaps), -1).argmax(axis=1)
    y, x = np.unravel_index(flat, heatmaps.shape[1:])
    return np.stack([x, y], axis=1).astype(np.int64)


def plot_heatmaps(
    path: str | Path,
    images: np.ndarray,
    heatmaps: Mapping[str, np.ndarray],
    masks: np.ndarray | None = None,
    titles: Sequence[str] | None = None,
    alpha: float = 0.5,
    fmt: str = "png",
) -> Path:
    """Save a grid: per image, the input, then heatmap + overlay per config, then the GT mask.

    ``images`` uint8 (N,H,W,3); ``heatmaps`` {config: (N,H,W) in 0..1}; the arg-max of each map
    is marked with a white cross (it is the point prompt the pipeline derives from it).
    Writes ``fmt`` to ``path`` directly (any file name, so that an atomic temporary works).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    n = len(images)
    cols = 1 + 2 * len(heatmaps) + (masks is not None)
    fig, axes = plt.subplots(n, cols, figsize=(1.9 * cols, 1.6 * n + 0.3), squeeze=False)
    cmap = plt.get_cmap("jet")
    for i in range(n):
        row = axes[i]
        row[0].imshow(images[i])
        row[0].set_ylabel(titles[i] if titles else str(i), fontsize=7)
        c = 1
        for name, maps in heatmaps.items():
            x, y = argmax_points(maps[i : i + 1])[0]
            row[c].imshow(maps[i], cmap="jet", vmin=0.0, vmax=1.0)
            overlay = (1 - alpha) * images[i] / 255.0 + alpha * cmap(maps[i])[..., :3]
            row[c + 1].imshow(np.clip(overlay, 0.0, 1.0))
            for ax in row[c : c + 2]:
                ax.plot([x], [y], marker="x", color="white", markersize=6, mew=1.5)
            if i == 0:
                row[c].set_title(f"{name}", fontsize=8)
                row[c + 1].set_title(f"{name} overlay", fontsize=8)
            c += 2
        if masks is not None:
            row[c].imshow(masks[i], cmap="gray", vmin=0, vmax=1)
            if i == 0:
                row[c].set_title("mask", fontsize=8)
        if i == 0:
            row[0].set_title("input", fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110, format=fmt)
    plt.close(fig)
    return path
