"""The submission archive: the executed notebook, the PDF and the README in one reproducible zip,
refused when a deliverable is missing or stale."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("make_submission", REPO / "scripts" / "make_submission.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_submission", module)
    spec.loader.exec_module(module)
    return module


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for rel, _ in _script().CONTENTS:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, root / rel)
    return root


def test_archive_holds_the_three_deliverables_byte_for_byte(tmp_path: Path) -> None:
    script = _script()
    first = script.build(tmp_path / "a.zip")
    with zipfile.ZipFile(first) as archive:
        assert archive.namelist() == ["camprompt/camprompt.ipynb", "camprompt/report.pdf", "camprompt/README.md"]
        for rel, name in script.CONTENTS:
            assert archive.read(name) == (REPO / rel).read_bytes()
    assert script.build(tmp_path / "b.zip").read_bytes() == first.read_bytes()  # reproducible


def test_stale_or_missing_deliverables_are_refused(tmp_path: Path) -> None:
    script = _script()
    root = _copy(tmp_path)
    notebook = root / "notebooks" / "camprompt_executed.ipynb"
    nb = json.loads(notebook.read_text())
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["source"] = "FAST = True\n" + "".join(code["source"])
    notebook.write_text(json.dumps(nb))
    with pytest.raises(script.SubmissionError, match="not the current notebook's run"):
        script.build(tmp_path / "out.zip", root)
    (root / "docs" / "report.pdf").unlink()
    with pytest.raises(script.SubmissionError, match=r"missing \['docs/report.pdf'\]"):
        script.build(tmp_path / "out.zip", root)
    assert not list(tmp_path.glob("*.zip")) and not list(tmp_path.glob(".*.tmp"))
