"""The report: every strategy's metrics as tables, a 1-2 page PDF and a self-contained HTML gallery.

The numbers in the PDF, the terminal table, ``data/report/results.md`` and the README's results table
must be the *measured* ones, never typed by hand, so everything here is generated from the DVC
artifacts (docs/ARCHITECTURE.md), one module per product:

* :mod:`~camprompt.report.results` loads them: ``metrics/S.json``, ``per_image.csv``, ``masks.zarr``,
  the description ``points@S`` recorded, the evaluated split and its heatmaps;
* :mod:`~camprompt.report.tables` turns metrics into tables; :mod:`~camprompt.report.words` writes
  the sentences (what was used, each pipeline in plain words, a discussion of measured facts);
* :mod:`~camprompt.report.figures`, :mod:`~camprompt.report.pdf` and :mod:`~camprompt.report.gallery`
  (its page template is ``gallery.html``) draw them; :mod:`~camprompt.report.build` is the stage's
  one call.

Command line (from the repository root)::

    python -m camprompt.report table          # print the results table of the latest metrics
    python -m camprompt.report readme-table   # rewrite README.md between the results markers
"""
