"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture
def crash_on_call(monkeypatch: pytest.MonkeyPatch) -> Callable[[ModuleType, str, int], dict[str, int]]:
    """Install a simulated crash: ``module.name`` raises KeyboardInterrupt on its ``n``-th call.

    Returns the call counter (``{"n": calls so far}``); set it back to 0 to crash again after ``n`` more calls.
    """

    def install(module: ModuleType, name: str, n: int) -> dict[str, int]:
        original = getattr(module, name)
        calls = {"n": 0}

        def crash(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt("simulated crash")
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, crash)
        return calls

    return install
