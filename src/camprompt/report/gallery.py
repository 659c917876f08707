"""The HTML gallery: every evaluated image and strategy in one self-contained, sortable page.

The page's HTML, CSS and JavaScript live in ``gallery.html`` beside this file; this module fills in
the title and the JSON data (every picture inlined as a PNG data URI, so the page opens offline).
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from camprompt.artifacts import ArtifactError, atomic_path
from camprompt.data import CLASSES
from camprompt.metrics import FAILURE_IOU
from camprompt.report.figures import heat_config, pyplot
from camprompt.report.results import EvalSet, StrategyResult

__all__ = ["TEMPLATE", "gallery_data", "write_gallery"]

TEMPLATE = Path(__file__).with_name("gallery.html")


def _png_uri(image: Any) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _rgb_uri(array: np.ndarray) -> str:
    from PIL import Image

    return _png_uri(Image.fromarray(np.asarray(array, np.uint8), "RGB"))


def _mask_uri(mask: np.ndarray) -> str:
    from PIL import Image

    return _png_uri(Image.fromarray(np.asarray(mask, bool)))


def _heat_uri(heat: np.ndarray) -> str:
    """A palette PNG with matplotlib's jet colours: a fraction of an RGB PNG's size."""
    from PIL import Image

    plt = pyplot()
    palette = (plt.get_cmap("jet")(np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    index = np.clip(np.round(np.nan_to_num(heat) * 255), 0, 255).astype(np.uint8)
    img = Image.fromarray(index, "L").convert("P")
    img.putpalette(palette.ravel().tolist())
    return _png_uri(img)


def _json_num(value: float, digits: int = 4) -> float | None:
    return round(float(value), digits) if value is not None and math.isfinite(value) else None


def gallery_data(results: Sequence[StrategyResult], ev: EvalSet) -> dict[str, Any]:
    """Everything the page shows, as JSON: each image's pictures once, one row per image and strategy."""
    index = {name: i for i, name in enumerate(ev.names)}
    configs = {res.name: heat_config(res.params, ev.heatmaps) for res in results}
    images = []
    for i in range(len(ev.names)):
        heat = {c: _heat_uri(ev.heatmaps[c][i]) for c in sorted({c for c in configs.values() if c})}
        images.append({"name": ev.names[i], "class": ev.classes[i], "input": _rgb_uri(ev.images[i]),
                       "gt": _mask_uri(ev.masks[i]), "heat": heat})
    rows = []
    for res in results:
        for j, r in enumerate(res.rows):
            if r["name"] not in index:
                raise ArtifactError(f"strategy {res.name}: image {r['name']} is not in the evaluated split; re-run dvc repro")
            rows.append({
                "img": index[r["name"]], "strategy": res.name, "pipeline": res.pipeline, "iou": _json_num(r["iou"]),
                "score": _json_num(r["score"]), "fg": f"{r['fg_hits']}/{r['n_fg']}", "bg": f"{r['bg_outside']}/{r['n_bg']}",
                "points": [[_json_num(x, 2), _json_num(y, 2), int(l)] for x, y, l in r["points"]],
                "mask": _mask_uri(res.masks[j]) if res.masks is not None else None, "heat": configs[res.name],
            })
    height, width = ev.masks.shape[1:3] if ev.masks.ndim == 3 else (0, 0)
    return {"images": images, "rows": rows, "strategies": [r.name for r in results],
            "classes": [c for c in CLASSES if c in ev.classes] + sorted(set(ev.classes) - set(CLASSES)),
            "width": int(width), "height": int(height),
            "failure_iou": results[0].failure_iou if results else FAILURE_IOU}


def write_gallery(path: str | Path, results: Sequence[StrategyResult], ev: EvalSet, title: str = "camprompt gallery") -> Path:
    """The self-contained gallery page (inline images, CSS and JS; opens with no network)."""
    from html import escape

    payload = json.dumps(gallery_data(results, ev), separators=(",", ":")).replace("</", "<\\/")
    page = TEMPLATE.read_text(encoding="utf-8").replace("__TITLE__", escape(title)).replace("__DATA__", payload)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


