"""DVC stage `embeddings`: SAM image embeddings of every evaluated image, computed once.

Reads params `sam` (backend, model_dir, threads, embeddings, embedding_dtype, ...), `device`, `eval`
(split, limit) and `data.root`; writes `data/embeddings.zarr` (schema in docs/ARCHITECTURE.md). The
`masks@S` stages attach this store to their predictor, so changing a point strategy never re-runs
the encoder.
"""

from __future__ import annotations

from camprompt.artifacts import load_params
from camprompt.data import load_split
from camprompt.sam import load_predictor
from camprompt.sam.store import write_embeddings


def main() -> None:
    params = load_params()
    sam, ev = params["sam"], params["eval"]
    split = load_split(params["data"]["root"], ev["split"], ev.get("limit"))
    if len(split) == 0:
        raise SystemExit(f"split {ev['split']!r} of {params['data']['root']} is empty; run `dvc repro data`")
    predictor = load_predictor(sam, params.get("device", "auto"))
    path = write_embeddings(sam["embeddings"], predictor, split.images, split.names,
                            dtype=sam.get("embedding_dtype", "float16"), extra_attrs={"split": ev["split"]})
    print(f"embeddings: {len(split)} images of {ev['split']!r} -> {path} ({sam.get('embedding_dtype', 'float16')}, "
          f"{predictor.backend} {predictor.model_info['name']}, {predictor.encoder_calls} encoder runs)")


if __name__ == "__main__":
    main()
