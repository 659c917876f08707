"""Run ``notebooks/camprompt.ipynb`` headless the way a Colab user would: alone, outside the repository.

The notebook is executed (nbclient) in a temporary folder outside the checkout, and its kernel starts
with an import hook that refuses every ``camprompt`` module except the offline SAM fallback
(:data:`build_notebook.OFFLINE_SAM_MODULES`), so a run that passes proves the notebook defines every
other piece itself. Offline, CIFAR-10 comes from the local ``.npz`` of params ``data.npz`` when it
exists.

    python notebooks/run_notebook.py --fast --out /tmp/fast.ipynb    # a few minutes (what CI runs)
    python notebooks/run_notebook.py                                  # the full run -> camprompt_executed.ipynb

The full run writes ``notebooks/camprompt_executed.ipynb``, committed so that a reader sees every
output without running anything; execution timestamps are left out (they change nothing a reader
needs, and would make every run differ).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from build_notebook import NOTEBOOK, OFFLINE_SAM_MODULES, write_atomic  # noqa: E402

EXECUTED = HERE / "camprompt_executed.ipynb"

_BLOCKER = """
import importlib.abc
import sys

_ALLOWED = {allowed!r}


class _CamPromptBlocker(importlib.abc.MetaPathFinder):
    \"\"\"Refuses camprompt modules: the notebook must define them in its own cells.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "camprompt" and name not in _ALLOWED:
            raise ImportError(f"{{name}} may not be imported: the notebook must define it in its own cells")
        return None


sys.meta_path.insert(0, _CamPromptBlocker())
"""


def _local_cifar() -> str | None:
    """params ``data.npz`` (resolved against the repository) when that file exists."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    npz = (params.get("data") or {}).get("npz")
    path = (REPO / npz).resolve() if npz else None
    return str(path) if path is not None and path.is_file() else None


def execute(*, fast: bool, workdir: Path, timeout: int = 3600) -> nbformat.NotebookNode:
    """The notebook (FAST or full) executed in ``workdir`` with camprompt blocked; raises on a failing cell."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    if fast:
        params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        params.source = params.source.replace("FAST = False", "FAST = True")
    return execute_alone(nb, workdir, timeout)


def execute_alone(nb: nbformat.NotebookNode, workdir: Path, timeout: int = 3600) -> nbformat.NotebookNode:
    """Execute ``nb`` in place in ``workdir``, its kernel refusing every camprompt module but the SAM fallback's."""
    from nbclient import NotebookClient

    workdir.mkdir(parents=True, exist_ok=True)
    startup = workdir / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-block-camprompt.py").write_text(_BLOCKER.format(allowed=set(OFFLINE_SAM_MODULES)))
    # Progress bars redraw at most every 20 s: the saved outputs keep a few lines per loop, not thousands.
    env = {"IPYTHONDIR": str(workdir / "ipython"), "CAMPROMPT_NOTEBOOK_WORK": str(workdir / "work"),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), "TQDM_MININTERVAL": "20"}
    cifar = _local_cifar()
    if cifar:
        env["CAMPROMPT_CIFAR_NPZ"] = cifar
    # The kernel inherits this process's environment; MPLBACKEND is cleared so that it uses its inline
    # backend and the figures become image outputs, as in Jupyter or Colab.
    old = {k: os.environ.get(k) for k in (*env, "MPLBACKEND", "CAMPROMPT_CIFAR_NPZ")}
    os.environ.update(env)
    os.environ.pop("MPLBACKEND", None)
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(workdir)}})
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def strip_volatile(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop execution timestamps and the kernel's own metadata (they differ on every run)."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    return nb


def _as_terminal(text: str) -> str:
    """``text`` as a terminal leaves it: a carriage return moves back to the line's start and what
    follows overwrites it; a line that ends up blank after such an overwrite (a cleared bar) is dropped."""
    lines = []
    for line in text.split("\n"):
        shown: list[str] = []
        for piece in line.split("\r"):
            shown[:len(piece)] = piece
        rendered = "".join(shown).rstrip()
        if rendered or "\r" not in line:
            lines.append(rendered if "\r" in line else line)
    return "\n".join(lines)


def _merge_streams(outputs: list[nbformat.NotebookNode]) -> list[nbformat.NotebookNode]:
    """``outputs`` with each run of consecutive stream outputs of one name joined into one."""
    merged: list[nbformat.NotebookNode] = []
    for out in outputs:
        last = merged[-1] if merged else None
        if out.output_type == "stream" and last is not None and last.output_type == "stream" and last.name == out.name:
            last.text += out.text
        else:
            merged.append(out)
    return merged


def collapse_streams(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Keep of each cell's printed text only what a terminal shows, in as few outputs as that takes.

    A progress bar redraws itself with carriage returns; the kernel sends every redraw (tqdm redraws on
    each postfix update whatever its interval), so a 30-epoch training cell saves thousands of states.
    Jupyter shows the last one; so does the committed notebook, which stays small.
    """
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        outputs = _merge_streams(cell.outputs)
        for out in outputs:
            if out.output_type == "stream":
                out.text = _as_terminal(out.text)
        # a cleared bar leaves an empty output between two prints: drop it, and join the prints again
        cell.outputs = _merge_streams([o for o in outputs if o.output_type != "stream" or o.text.strip()])
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="FAST = True (a few minutes on a CPU)")
    parser.add_argument("--out", type=Path, default=EXECUTED, help=f"where to write the executed notebook ({EXECUTED.name})")
    parser.add_argument("--cell-timeout", type=int, default=3 * 3600,
                        help="seconds one cell may run (a full CPU run trains the classifier in one cell; "
                             "benchmarks/RESULTS.md has measured run times)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="camprompt-notebook-") as tmp:
        nb = collapse_streams(strip_volatile(execute(fast=args.fast, workdir=Path(tmp), timeout=args.cell_timeout)))
    text = nbformat.writes(nb) + "\n"
    write_atomic(args.out, text)
    print(f"wrote {args.out} ({len(text.encode()) / 1024:.0f} KiB) after {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
