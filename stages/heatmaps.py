"""DVC stage `heatmaps`: CAM heatmaps of the trained classifier for the evaluated split.

Reads params `gradcam` (out, figure, batch_size, configs), `eval` (split, limit),
`data.height`/`data.width` (the classifier's input size, `camprompt.input_size`) and `device`;
writes `data/heatmaps.zarr` (schema in docs/ARCHITECTURE.md) and `data/figures/gradcam.png`.
The explained class is always the predicted one (`pred`), never the label. Every configuration
shares each batch's single forward/backward, so `pred`/`logits` come from that same pass. The
classifier's answer, its decision over views and outlines, is the `decision` stage's.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from camprompt.artifacts import atomic_path, load_params, save_arrays
from camprompt.data import CLASSES, load_split, normalize
from camprompt.gradcam import compute_split_heatmaps
from camprompt.saliency import argmax_hit_rate, plot_heatmaps
from camprompt.stage_io import load_fitted_classifier

_CONFIG_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def _configs(gradcam: dict) -> dict[str, dict]:
    """Validate params `gradcam.configs` -> {name: {method, layers: [str]}} (names are array keys)."""
    configs = gradcam.get("configs") or {}
    if not configs:
        raise SystemExit("params.yaml: gradcam.configs is empty; e.g. layer2: {method: gradcam, layers: [layer2]}")
    out = {}
    for name, cfg in configs.items():
        if not _CONFIG_NAME.match(str(name)):
            raise SystemExit(f"params.yaml: gradcam config name {name!r} must match {_CONFIG_NAME.pattern}")
        layers = cfg.get("layers")
        layers = [layers] if isinstance(layers, str) else list(layers or [])
        out[str(name)] = {"method": cfg.get("method", "gradcam"), "layers": layers}
    return out


def _figure_rows(labels: np.ndarray, per_class: int = 1, extra: int = 1) -> np.ndarray:
    """First image of each class (in class order), then the next images: a small, stable sample."""
    rows = [int(np.flatnonzero(labels == c)[i]) for c in range(len(CLASSES))
            for i in range(per_class) if (labels == c).sum() > i]
    rest = [i for i in range(len(labels)) if i not in rows][:extra]
    return np.array(rows + rest, dtype=np.int64)


def main() -> None:
    params = load_params()
    gradcam, ev = params["gradcam"], params["eval"]
    configs = _configs(gradcam)
    split = load_split(params["data"]["root"], ev["split"], ev.get("limit"))
    model = load_fitted_classifier(params)
    result = compute_split_heatmaps(
        model, normalize(split.images), configs, batch_size=int(gradcam.get("batch_size", 64))
    )
    hits = {name: argmax_hit_rate(maps, split.masks) for name, maps in result.heatmaps.items()}
    labels = np.asarray(split.labels)
    accuracy = float((result.preds == labels).mean()) if len(labels) else float("nan")
    arrays = {f"heatmap_{name}": maps for name, maps in result.heatmaps.items()}
    arrays.update(pred=result.preds, logits=result.logits)
    attrs = {
        "names": list(split.names),
        "split": ev["split"],
        "limit": ev.get("limit"),
        "configs": configs,
        "classes": list(CLASSES),
        "argmax_in_mask": hits,  # diagnostic: fraction of arg-max pixels inside the GT mask
        "accuracy": accuracy,
    }
    save_arrays(gradcam["out"], arrays, attrs, chunk_rows=256)

    rows = _figure_rows(np.asarray(split.labels))
    titles = [f"{split.names[i]}\n{CLASSES[split.labels[i]]}->{CLASSES[result.preds[i]]}" for i in rows]
    figure = Path(gradcam.get("figure", "data/figures/gradcam.png"))
    with atomic_path(figure) as tmp:
        plot_heatmaps(tmp, split.images[rows], {k: v[rows] for k, v in result.heatmaps.items()},
                      split.masks[rows], titles)
    print(f"heatmaps: {len(split.names)} {ev['split']} images, accuracy {accuracy:.3f}")
    for name, rate in hits.items():
        print(f"  {name:<16s} {configs[name]['method']:<10s} layers={configs[name]['layers']}  arg-max in mask {rate:.3f}")


if __name__ == "__main__":
    main()
