"""Which torch device runs the models: params ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``).

``auto`` takes the GPU when torch sees one and the CPU otherwise, so the same params run on a laptop,
in CI and on Colab. A GPU asked for by name but absent is an error, never a silent CPU run: timings
and (for training) results would differ from what the user asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["DEVICE_CHOICES", "resolve_device", "module_device", "eval_no_grad"]

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")


def resolve_device(name: str | None = "auto") -> str:
    """``auto``/None -> ``cuda`` if available else ``cpu``; ``cpu``/``cuda``/``cuda:N`` are checked."""
    import torch

    name = "auto" if name is None else str(name).strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ValueError(f"params device is {name!r} but torch sees no CUDA GPU here; "
                             "set device: auto (GPU when present, else CPU) or device: cpu")
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} does not exist: torch sees {torch.cuda.device_count()} GPU(s)")
        return name
    raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")


def module_device(model: "torch.nn.Module") -> "torch.device":  # noqa: F821
    """The device of a module's first parameter (or buffer); the CPU for a module with neither."""
    import torch

    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextmanager
def eval_no_grad(model: "torch.nn.Module") -> Iterator["torch.device"]:  # noqa: F821
    """Run ``model`` in eval mode without autograd, yielding its device; its train/eval flag is restored
    after, even on an error (inference may query a model the caller is still training)."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield module_device(model)
    finally:
        model.train(was_training)
