"""Atomic artifact writes: a failed write changes nothing, and a killed writer's leftovers are swept.

Why: every stage writes through ``camprompt.artifacts``. A Ctrl-C must leave the previous artifact as
it was, and a writer killed outright (SIGKILL, the OOM killer) leaves a hidden temporary beside its
output that would otherwise sit forever in folders that later stages hash as deps (``data/regions``,
``data/strategies``, ``metrics``), re-running them for nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from camprompt.artifacts import load_arrays, override_params, save_arrays, write_json

pytestmark = pytest.mark.skipif(os.name != "posix", reason="leftovers are swept on POSIX only")


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_failed_write_keeps_the_previous_store_and_leaves_nothing_behind(tmp_path: Path) -> None:
    store = tmp_path / "points.zarr"
    save_arrays(store, {"coords": np.arange(6.0).reshape(3, 2)}, {"names": ["a", "b", "c"]})

    class Boom:  # fails while the new store is half written
        def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
            raise KeyboardInterrupt("simulated Ctrl-C")

    with pytest.raises(KeyboardInterrupt):
        save_arrays(store, {"coords": np.zeros((3, 2)), "labels": Boom()}, {"names": ["x", "y", "z"]})  # type: ignore[dict-item]
    arrays, attrs = load_arrays(store)
    assert np.array_equal(arrays["coords"], np.arange(6.0).reshape(3, 2)) and attrs["names"] == ["a", "b", "c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["points.zarr"]


def test_leftovers_of_a_killed_writer_are_swept_by_the_next_write(tmp_path: Path) -> None:
    dead, alive = _dead_pid(), os.getppid()
    killed_dir = tmp_path / f".masks.zarr.tmp-{dead}-0123abcd"  # a store killed half-way
    killed_dir.mkdir()
    (killed_dir / "zarr.json").write_text("{")
    killed_swap = tmp_path / f".masks.zarr.old-{dead}-4567cdef"
    killed_swap.mkdir()
    running = tmp_path / f".masks.zarr.tmp-{alive}-89abcdef"  # a writer that is still running
    running.mkdir()
    other = tmp_path / f".scores.json.tmp-{dead}-0123abcd"  # another path's: swept when that path is written
    other.write_text("{")

    save_arrays(tmp_path / "masks.zarr", {"masks": np.ones((2, 3, 4), bool)})
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["masks.zarr", running.name, other.name]), left

    write_json(tmp_path / "scores.json", {"iou": 0.5})
    assert not other.exists() and running.exists()


def test_override_params_sets_dotted_yaml_values_and_refuses_unknown_sections() -> None:
    params = {"train": {"epochs": 30, "augment": {"jpeg": 0.3}}, "seed": 0}
    override_params(params, ["train.augment.jpeg=0.5", "seed=2", "train.arch={stem: stride2}"])
    assert params == {"train": {"epochs": 30, "augment": {"jpeg": 0.5}, "arch": {"stem": "stride2"}}, "seed": 2}
    with pytest.raises(ValueError, match="no section 'trian'"):
        override_params(params, ["trian.epochs=3"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        override_params(params, ["train.epochs"])
