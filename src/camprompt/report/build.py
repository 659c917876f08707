"""The ``report`` stage in one call: every report file from the artifacts, written atomically."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from camprompt.artifacts import atomic_path
from camprompt.report.figures import write_examples_figure
from camprompt.report.gallery import write_gallery
from camprompt.report.pdf import write_pdf
from camprompt.report.results import load_eval_set, load_results, load_robustness
from camprompt.report.tables import results_markdown, robustness_markdown
from camprompt.report.words import setup_sentences

__all__ = ["PUBLISHED", "build_report"]


#: Report files that are also committed to git (docs/), so a reader sees them without running anything.
PUBLISHED = {"report.pdf": "report.pdf", "examples.png": "figures/examples.png"}


def build_report(out_dir: str | Path, params: Mapping[str, Any], root: str | Path = ".",
                 docs_dir: str | Path | None = None) -> dict[str, Path]:
    """Write report.pdf, gallery.html, results.md and examples.png into ``out_dir`` as one atomic step;
    with ``docs_dir``, also copy the :data:`PUBLISHED` files there (each copy atomic)."""
    root = Path(root)
    results = load_results(params, root)
    ev = load_eval_set(params, root)
    robustness = load_robustness(params, root)
    table = results_markdown({r.name: r.metrics for r in results}, {r.name: r.pipeline for r in results})
    if robustness is not None:
        table += "\n## Robustness\n\n" + robustness_markdown(robustness.variants)
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        (tmp / "results.md").write_text("# camprompt results\n\n" + table)
        write_pdf(tmp / "report.pdf", results, ev, setup_sentences(params, root), robustness)
        write_gallery(tmp / "gallery.html", results, ev)
        write_examples_figure(tmp / "examples.png", results, ev)
    paths = {name: out_dir / name for name in ("report.pdf", "gallery.html", "results.md", "examples.png")}
    for name, rel in PUBLISHED.items() if docs_dir is not None else ():
        with atomic_path(Path(docs_dir) / rel) as tmp:
            shutil.copyfile(paths[name], tmp)
    return paths


