"""The machinery under every CAM: one forward and one backward that capture a batch's feature maps
and their gradients at the target layers, leaving the model exactly as it was found.

Imports only the standard library, torch and numpy, like :mod:`camprompt.gradcam`, so that both can
be pasted into a notebook. Choices, and why:

* One forward and one ``torch.autograd.grad`` call per batch, whatever the number of layers: the
  score is the sum over the batch of each image's target logit. In eval mode images do not interact,
  so d(sum)/dA_b is exactly d(y_b)/dA_b -- which is why the model is put in eval mode for the call
  (and every module's own flag restored afterwards).
* Gradients are taken w.r.t. the captured layer outputs with ``torch.autograd.grad``: no ``.grad``
  is ever written on parameters, and no weight gradients are computed.
* The forward starts under ``no_grad``; the first target layer's hook turns the graph on, so
  nothing before it is recorded. This also makes the call work under ``torch.no_grad()`` /
  ``torch.inference_mode()`` and with frozen (``requires_grad=False``) parameters.
* The hook hands a *clone* of the layer output to the rest of the network, so in-place operations
  downstream (``ReLU(inplace=True)`` in torchvision ResNet/VGG/DenseNet) cannot overwrite the
  feature maps or their gradients. No full backward module hooks are used.
* Hooks are removed in ``finally`` blocks, also when the call raises.
* On the CPU, torch's max-pool kernel is much slower for contiguous (NCHW) tensors than for
  channels-last ones (``benchmarks/RESULTS.md``). For the duration of a call every ``nn.MaxPool2d``
  pools a channels-last copy of its input and hands the result back contiguous: max is exact, so
  the output is bit-identical.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["OutputFn", "select_logits", "resolve_layers", "minmax_scale", "check_batch", "model_device",
           "unique_layers", "Capture", "forward_backward"]

OutputFn = Callable[[Any], Tensor]

# Relative range below which a map counts as constant: bilinear resampling of a constant map can
# add float32 rounding noise (~1e-7 relative), which min-max scaling would blow up to 0..1.
_FLAT_RTOL = 1e-6


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


def check_batch(image: Any) -> None:
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


def model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def unique_layers(layers: Sequence[nn.Module]) -> list[nn.Module]:
    seen: list[nn.Module] = []
    for layer in layers:
        if not any(layer is s for s in seen):
            seen.append(layer)
    return seen


@dataclass
class Capture:
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
def forward_backward(
    model: nn.Module,
    layers: Sequence[nn.Module],
    image: Tensor,
    targets: Any,
    output_fn: OutputFn,
) -> Capture:
    """Run one forward and one backward; leave the model exactly as found (flags, hooks, grads)."""
    check_batch(image)
    image = image.to(model_device(model))  # a CPU batch for a model on the GPU (a no-op on the CPU)
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
    return Capture(
        logits=logits.detach(),
        targets=target_t,
        activations=[a.detach() for a in acts],
        gradients=list(grads),
    )
