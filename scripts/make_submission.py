"""Build the archive the assignment asks for: the executed notebook, the PDF report and the README.

    python scripts/make_submission.py                 # -> dist/camprompt_submission.zip

The files are taken as committed (``notebooks/camprompt_executed.ipynb``, ``docs/report.pdf``,
``README.md``) after checking that they are current: the executed notebook must hold exactly the
code of the generated notebook (else re-run ``python notebooks/run_notebook.py``) and run to the end
without an error. The zip is reproducible (fixed timestamps, fixed order) and written atomically.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "notebooks"))
from build_notebook import render  # noqa: E402

#: (file in the repository, name in the archive)
CONTENTS = (
    ("notebooks/camprompt_executed.ipynb", "camprompt/camprompt.ipynb"),
    ("docs/report.pdf", "camprompt/report.pdf"),
    ("README.md", "camprompt/README.md"),
)
_EPOCH = (1980, 1, 1, 0, 0, 0)


class SubmissionError(RuntimeError):
    """A deliverable is missing or stale; the message says how to rebuild it."""


def check_executed(path: Path) -> None:
    """The executed notebook is the generated one, run to the end without an error."""
    executed = nbformat.read(path, as_version=4)
    current = nbformat.reads(render(), as_version=4)
    code = lambda nb: [c.source for c in nb.cells if c.cell_type == "code"]  # noqa: E731
    if code(executed) != code(current):
        raise SubmissionError(f"{path} is not the current notebook's run; run: python notebooks/run_notebook.py")
    for cell in executed.cells:
        if cell.cell_type == "code" and (cell.get("execution_count") is None
                                         or any(o.get("output_type") == "error" for o in cell.get("outputs", []))):
            raise SubmissionError(f"{path} holds a cell that did not run or failed; run: python notebooks/run_notebook.py")


def build(out: Path, root: Path = REPO) -> Path:
    """Write the archive to ``out`` (atomically) from the deliverables under ``root``."""
    missing = [rel for rel, _ in CONTENTS if not (root / rel).is_file()]
    if missing:
        raise SubmissionError(f"missing {missing}: `dvc repro report` writes docs/report.pdf, "
                              "`python notebooks/run_notebook.py` the executed notebook")
    check_executed(root / CONTENTS[0][0])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w") as archive:
            for rel, name in CONTENTS:
                info = zipfile.ZipInfo(name, date_time=_EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, (root / rel).read_bytes())
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist" / "camprompt_submission.zip")
    args = parser.parse_args(argv)
    try:
        path = build(args.out)
    except SubmissionError as exc:
        print(f"make_submission: {exc}", file=sys.stderr)
        return 1
    with zipfile.ZipFile(path) as archive:
        listing = ", ".join(f"{i.filename} ({i.file_size / 1024:.0f} KiB)" for i in archive.infolist())
    print(f"wrote {path}: {listing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
