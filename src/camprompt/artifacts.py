"""Artifact I/O shared by every stage: atomic JSON files and Zarr stores, and params loading.

Why one module: every DVC stage writes its outputs through here, so a crash (Ctrl-C, OOM, power
loss) never leaves a half-written artifact that DVC or a later stage could mistake for a good one.
Everything is first written to a hidden temporary sibling and then renamed into place; a writer
killed outright (SIGKILL, the OOM killer) cannot clean up, so the next write of the same path sweeps
its leftovers (they would otherwise sit inside folders that later stages hash as deps).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import yaml


class ArtifactError(RuntimeError):
    """An artifact is missing or unreadable; the message says which stage produces it."""


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (outside POSIX: assumed so, nothing is swept)."""
    if os.name != "posix":
        return True  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_leftovers(path: Path) -> None:
    """Delete the temporaries of ``path`` whose writer process is gone (killed before it could clean up)."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:tmp|old)-(\d+)-[0-9a-f]{{8}}")
    for entry in path.parent.iterdir():
        found = pattern.fullmatch(entry.name)
        if found and not _alive(int(found.group(1))):
            _remove(entry)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; on success move it onto ``path``.

    Works for files and directories. On any exception the temporary is deleted and ``path`` is left
    exactly as it was. Replacing an existing directory takes two renames (old aside, new in), so the
    window in which ``path`` is absent is a few microseconds and never shows partial content.
    Temporaries of ``path`` left by a killed writer are deleted first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_leftovers(path)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = path.with_name(f".{path.name}.tmp-{tag}")
    try:
        yield tmp
        if not tmp.exists():
            raise ArtifactError(f"nothing was written to the temporary path for {path}")
        if path.is_dir() and not path.is_symlink():
            old = path.with_name(f".{path.name}.old-{tag}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and paths; NaN/inf become None so the JSON stays standard."""
    if isinstance(obj, Mapping):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as pretty, key-sorted JSON, atomically. Returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_to_jsonable(obj), indent=2, sort_keys=True) + "\n")
    return path


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON artifact with an error that names the file when it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist; run the DVC stage that produces it (dvc repro).")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}); delete it and re-run dvc repro.") from exc


def save_arrays(
    path: str | os.PathLike[str],
    arrays: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any] | None = None,
    chunk_rows: int | None = None,
) -> Path:
    """Save named numpy arrays (and JSON-able attributes) as one Zarr group, atomically.

    ``chunk_rows`` sets the chunk length along axis 0 so that readers can load a few rows cheaply;
    by default Zarr picks. Strings belong in ``attrs`` (lists), not arrays: that keeps the store
    readable by any Zarr v3 client without extension dtypes.
    """
    import zarr

    path = Path(path)
    with atomic_path(path) as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        for name, value in arrays.items():
            value = np.ascontiguousarray(value)
            if value.dtype.kind in "OUS":
                raise TypeError(f"array {name!r} holds strings; store them in attrs instead")
            chunks: Any = "auto"
            if chunk_rows is not None and value.ndim >= 1:
                chunks = (max(1, min(chunk_rows, value.shape[0])),) + value.shape[1:]
            group.create_array(name, data=value, chunks=chunks)
        group.attrs.update(_to_jsonable(dict(attrs or {})))
    return path


def open_arrays(path: str | os.PathLike[str]) -> Any:
    """Open a Zarr group read-only (lazy: arrays load on slicing)."""
    import zarr

    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path} does not exist; run the DVC stage that produces it (dvc repro).")
    try:
        return zarr.open_group(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for a damaged store
        raise ArtifactError(f"{path} is not a readable Zarr store ({exc}); delete it and re-run dvc repro.") from exc


def load_arrays(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load every array of a Zarr group into memory, with its attributes."""
    group = open_arrays(path)
    arrays = {name: np.asarray(arr[...]) for name, arr in group.arrays()}
    return arrays, dict(group.attrs)


def load_params(path: str | os.PathLike[str] = "params.yaml") -> dict[str, Any]:
    """Read ``params.yaml`` (every knob of the pipeline lives there)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path} not found; run stages from the repository root.")
    with path.open() as fh:
        params = yaml.safe_load(fh) or {}
    if not isinstance(params, dict):
        raise ArtifactError(f"{path} must hold a mapping at its top level")
    return params


def override_params(params: dict[str, Any], assignments: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` assignments (dotted params path, YAML value) in place, for experiments.

    Only existing sections can be entered, so a typo in a section name fails instead of adding an
    unused knob.
    """
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{item!r}: expected KEY=VALUE with KEY a dotted params path")
        node = params
        *path, last = key.split(".")
        for part in path:
            if not isinstance(node.get(part), dict):
                raise ValueError(f"{item!r}: params has no section {'.'.join(path[:path.index(part) + 1])!r}")
            node = node[part]
        node[last] = yaml.safe_load(raw)
    return params
