"""SAM's contract: ``segment_anything.SamPredictor``'s interface, with every embedding computed once.

The pipelines treat SAM as a black box with ``SamPredictor``'s interface: ``set_image(uint8 (H,W,3)
RGB)`` then ``predict(point_coords, point_labels, box, multimask_output) -> (masks bool (K,H,W),
scores float32 (K,), low_res_logits float32 (K,256,256))``, K = 3 with multimask output, else 1.
Coordinates are (x, y) in original-image pixels and go to SAM's 1024 frame exactly as
``SamPredictor`` does. :class:`BaseSamPredictor` holds all of that; a backend
(:mod:`~camprompt.sam.onnx_backend`, :mod:`~camprompt.sam.torch_backend`) implements only
``_encode`` and ``_decode``.

The encoder is the cost (about a second per image on a CPU), so it never runs twice for the same
image: embeddings live in a bounded LRU cache keyed by :func:`image_key` (a content hash), and
:meth:`BaseSamPredictor.attach_embeddings` lets ``set_image`` find them in the ``embeddings``
stage's store (:mod:`~camprompt.sam.store`).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from camprompt.conventions import POINT_LABELS, check_rgb_image
from camprompt.sam.fetch import SamModelError
from camprompt.sam.geometry import LOW_RES, input_size_for

if TYPE_CHECKING:  # the store module imports this one
    from camprompt.sam.store import EmbeddingStore

__all__ = ["EMBEDDING_SHAPE", "DEFAULT_CACHE_SIZE", "check_image", "image_key", "Embedding", "EmbeddingCache",
           "BaseSamPredictor"]

EMBEDDING_SHAPE = (256, 64, 64)
DEFAULT_CACHE_SIZE = 32  # embeddings (4 MiB each as float32)


def check_image(image: Any, image_format: str = "RGB") -> np.ndarray:
    """A uint8 (H,W,3) image as RGB (a ``BGR`` one is flipped), or a clear error saying what is wrong."""
    image = check_rgb_image(image)
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


class BaseSamPredictor:
    """``SamPredictor``'s interface plus embedding reuse; backends implement ``_encode`` and ``_decode``.

    ``input_filter`` is what SAM is shown (:func:`camprompt.denoise.filtered`): ``none`` the image as
    given, ``bilateral`` an edge-preserving smoothed copy, ``auto`` that copy only for images whose
    estimated noise exceeds ``filter_threshold``. A label-free step of the pipeline, not a change of
    SAM: every image goes through it before it is hashed, encoded or decoded.
    """

    backend = "base"
    decode_workers = 1  # images :meth:`predict_many` decodes at once (a backend that gains sets more)

    def __init__(self, cache_size: int = DEFAULT_CACHE_SIZE, embedding_dtype: str = "float32", *,
                 input_filter: str = "none", filter_threshold: float = 0.0) -> None:
        from camprompt.denoise import FILTER_MODES

        if embedding_dtype not in ("float16", "float32"):
            raise ValueError(f"embedding_dtype must be 'float16' or 'float32', got {embedding_dtype!r}")
        if input_filter not in FILTER_MODES:
            raise ValueError(f"params sam.input_filter must be one of {FILTER_MODES}, got {input_filter!r}")
        self.input_filter, self.filter_threshold = input_filter, float(filter_threshold)
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

    def view(self, image: np.ndarray, image_format: str = "RGB") -> np.ndarray:
        """The checked RGB image as SAM is shown it (``input_filter``)."""
        image = check_image(image, image_format)
        if self.input_filter == "none":
            return image
        from camprompt.denoise import filtered

        return filtered(image, self.input_filter, self.filter_threshold)

    def key(self, image: np.ndarray) -> str:
        """The key of ``image``'s embedding in caches and stores: the content hash of its :meth:`view`."""
        return image_key(self.view(image))

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Make ``image`` current; the encoder runs only if its embedding is neither cached nor stored."""
        self._current = self._embedding(self.view(image, image_format))

    def embed_images(self, images: Sequence[np.ndarray] | np.ndarray, *, progress: bool = False) -> np.ndarray:
        """float32 (B,256,64,64) embeddings of uint8 RGB images, encoding only those not cached/stored."""
        from tqdm.auto import tqdm

        images = [self.view(img) for img in images]
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
        from camprompt.sam.store import EmbeddingStore

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
                     multimask_output: bool = True, *, boxes: Sequence[Any] | None = None
                     ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``set_image(images[i])`` + ``predict(point_coords[i], point_labels[i], boxes[i])`` for each image, in order.

        Yields what :meth:`predict` returns, image by image; the current image is left as it was.
        ``boxes``: one (4,) box or None per image (None: points only). Why: the pipelines decode
        hundreds of images from cached embeddings, and a backend may decode several at once
        (:attr:`decode_workers` threads sharing :meth:`_concurrent_decode`); the masks are the ones
        the loop would give.
        """
        boxes = [None] * len(images) if boxes is None else boxes
        if not len(images) == len(point_coords) == len(point_labels) == len(boxes):
            raise ValueError(f"{len(images)} images, {len(point_coords)} point sets, {len(point_labels)} label sets "
                             f"and {len(boxes)} boxes; give one of each per image")
        concurrent = self.decode_workers > 1 and len(images) > 1
        decode = self._concurrent_decode() if concurrent else self._decode

        def one(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            emb = self._embedding(self.view(images[i]))
            return self._predict(emb, point_coords[i], point_labels[i], boxes[i], None, multimask_output, False, decode)

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
        if not np.isin(labels, POINT_LABELS).all():
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
