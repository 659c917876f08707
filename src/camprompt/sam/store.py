"""The embeddings store: SAM's image embeddings of a whole split, written once by the ``embeddings``
stage and read row by row by every stage that decodes (schema: docs/ARCHITECTURE.md)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from camprompt.artifacts import ArtifactError, atomic_path, open_arrays
from camprompt.sam.geometry import input_size_for
from camprompt.sam.predictor import EMBEDDING_SHAPE, BaseSamPredictor, Embedding

__all__ = ["EmbeddingStore", "write_embeddings"]


class EmbeddingStore:
    """Read access to an ``embeddings.zarr`` store (written by ``stages/embeddings.py``), row by row:
    each row is one uncompressed chunk, so ``set_image`` of a stored image reads just its own row."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        group = open_arrays(self.path)
        self.attrs = dict(group.attrs)
        if "embeddings" not in group or "keys" not in self.attrs or "original_size" not in self.attrs:
            raise ArtifactError(f"{self.path} is not an embeddings store (needs array 'embeddings' and attrs 'keys', 'original_size'); run `dvc repro embeddings`")
        self.array = group["embeddings"]
        keys = list(self.attrs["keys"])
        if tuple(self.array.shape) != (len(keys), *EMBEDDING_SHAPE):
            raise ArtifactError(f"{self.path}: embeddings have shape {self.array.shape}, expected ({len(keys)}, 256, 64, 64); run `dvc repro embeddings`")
        self.index = {k: i for i, k in enumerate(keys)}
        self.original_size = tuple(int(v) for v in self.attrs["original_size"])
        self.input_size = tuple(int(v) for v in self.attrs.get("input_size") or input_size_for(self.original_size))

    def get(self, key: str) -> Embedding | None:
        i = self.index.get(key)
        if i is None:
            return None
        features = np.asarray(self.array[i]).astype(np.float32)
        return Embedding(features, self.original_size, self.input_size)  # type: ignore[arg-type]



def write_embeddings(path: str | os.PathLike[str], predictor: BaseSamPredictor, images: np.ndarray, names: Sequence[str],
                     *, dtype: str = "float16", progress: bool = True, extra_attrs: dict[str, Any] | None = None) -> Path:
    """Encode ``images`` (uint8 (N,H,W,3), one size) and stream them into an ``embeddings.zarr`` store, atomically.

    Rows are written as they are encoded (one 2 MiB chunk each, so ``set_image`` reads one row), so
    memory stays flat for any N. Uncompressed: encoder features barely compress, and decompressing
    would be most of every row's read in every ``masks@S`` re-run. Schema: docs/ARCHITECTURE.md.
    """
    import zarr
    from tqdm.auto import tqdm

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N,H,W,3), got {images.dtype} {images.shape}")
    if len(names) != len(images):
        raise ValueError(f"{len(names)} names for {len(images)} images")
    if dtype not in ("float16", "float32"):
        raise ValueError(f"embedding dtype must be float16 or float32, got {dtype!r}")
    size = tuple(int(v) for v in images.shape[1:3])
    keys = [predictor.key(img) for img in images]
    with atomic_path(path) as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        array = group.create_array("embeddings", shape=(len(images), *EMBEDDING_SHAPE), dtype=dtype,
                                   chunks=(1, *EMBEDDING_SHAPE), compressors=None)
        for i in tqdm(range(len(images)), desc="sam embeddings", unit="img", disable=not progress):
            array[i] = predictor.embed_images(images[i:i + 1])[0].astype(dtype)
        group.attrs.update({
            **(extra_attrs or {}), "names": list(names), "keys": keys, "original_size": list(size),
            "input_size": list(input_size_for(size)), "backend": predictor.backend, "model": predictor.model_info,
            "dtype": dtype,
        })
    return Path(path)
