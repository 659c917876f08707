"""params `device`: auto picks the GPU only when there is one; a GPU asked for but absent is an error."""

from __future__ import annotations

import pytest
import torch

from camprompt.devices import module_device, resolve_device


def test_auto_and_cpu() -> None:
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    assert resolve_device(" CPU ") == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_a_missing_gpu_is_an_error_not_a_silent_cpu_run() -> None:
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device(name)


def test_unknown_devices_are_refused() -> None:
    for name in ("gpu", "cuda:x", "tpu"):
        with pytest.raises(ValueError, match="unknown device"):
            resolve_device(name)


def test_module_device() -> None:
    assert module_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert module_device(torch.nn.ReLU()) == torch.device("cpu")  # no parameters at all
