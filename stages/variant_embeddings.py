"""DVC stage `variant_embeddings@V`: SAM's image embeddings of robustness variant V, computed once.

Usage: ``python stages/variant_embeddings.py V``. Reads params `sam`, `device` and
`robustness.split`; reads `data/variants/V`; writes `data/variant_embeddings/V.zarr` (the schema of
`data/embeddings.zarr`), so that `robust@V` decodes without running the encoder again.
"""

from __future__ import annotations

from pathlib import Path

from camprompt.artifacts import load_params
from camprompt.data import load_split
from camprompt.sam import load_predictor
from camprompt.sam.store import write_embeddings
from camprompt.stage_io import VARIANT_EMBEDDINGS_ROOT, VARIANT_ROOT, run_stage, variant_names


def main(name: str) -> None:
    params = load_params()
    variant_names(params, name)
    split = load_split(Path(VARIANT_ROOT) / name, params["robustness"]["split"])
    sam = params["sam"]
    predictor = load_predictor(sam, params.get("device", "auto"))
    path = write_embeddings(Path(VARIANT_EMBEDDINGS_ROOT) / f"{name}.zarr", predictor, split.images, split.names,
                            dtype=sam.get("embedding_dtype", "float16"), extra_attrs={"variant": name})
    print(f"variant_embeddings@{name}: {len(split)} images -> {path} ({predictor.encoder_calls} encoder runs)")


if __name__ == "__main__":
    run_stage(main, "VARIANT")
