"""SAM's geometry: where an image lands in the encoder's 1024x1024 frame, and back.

Written out (checked against segment-anything's ``ResizeLongestSide`` in the tests) because
importing ``segment_anything`` is slow and the decoder-only stages need nothing else from it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

__all__ = ["IMAGE_SIZE", "LOW_RES", "input_size_for", "to_input_coords", "upscale_matrices"]

IMAGE_SIZE = 1024  # SAM's encoder input: longest side resized to this, zero-padded to a square
LOW_RES = 256      # the decoder's mask logits are LOW_RES x LOW_RES over the 1024 frame


def input_size_for(original_size: Sequence[int]) -> tuple[int, int]:
    """(h, w) of the image inside SAM's 1024 frame: ``ResizeLongestSide.get_preprocess_shape``'s rule."""
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
    steps, folded here into one matrix per axis (see :func:`camprompt.sam.onnx_graph.fold_mask_upscaling`).
    """
    mats = []
    for n_orig, n_input in zip(original_size, input_size_for(original_size)):
        to_frame = _resize_matrix(LOW_RES, IMAGE_SIZE)[:n_input]  # 256 -> 1024, cropped to the image's extent
        mats.append((_resize_matrix(n_input, n_orig) @ to_frame).astype(np.float32))
    return mats[0], np.ascontiguousarray(mats[1].T)
