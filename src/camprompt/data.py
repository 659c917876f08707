"""The synthetic shapes benchmark: generation, on-disk format, readers and model-input normalisation.

Every image is a CIFAR-10 picture (or a procedural texture) resized to 64x48 carrying exactly one
solid-colour shape -- circle, square, triangle, star or diamond -- whose binary mask is known
exactly. That gives a segmentation ground truth for free while the classification task (which
shape?) still needs a real CNN: the background is cluttered natural imagery.

On-disk layout (``root`` = ``data/synthetic_shapes`` by default)::

    images/{split}/NAME.png   RGB uint8, 64 wide x 48 high
    masks/{split}/NAME.png    1-bit PNG; ``np.array(PIL.Image.open(p), dtype=bool)`` reads it
    labels/{split}/NAME.txt   the class name, one line
    dataset.json              seed, background source, sizes, class counts, rules, generator version

The readers also take other generators' encodings of the same layout (JPEG images, 0/1 or
anti-aliased grey masks, class names in another case): :mod:`camprompt.files`.

The shapes and the rules that paint them (contrast, placement, colour) are :mod:`camprompt.shapes`.
Splits never share a background image: one seeded permutation of the source is cut into disjoint
consecutive ranges, one per split. Everything is derived from
``numpy.random.default_rng([seed, split, index])``, so the same params give byte-identical files,
and the whole dataset is written into a temporary directory that is renamed into place only when
complete (``camprompt.artifacts.atomic_path``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from camprompt.artifacts import atomic_path, read_json, write_json
from camprompt.files import (
    LABEL_SUFFIX,
    MASK_SUFFIX,
    DatasetError,
    image_files,
    read_image,
    read_label,
    read_mask,
    stems,
)
from camprompt.shapes import CLASSES, ShapeRules, compose_image, varied_rules

if TYPE_CHECKING:  # torch is imported by the functions that make tensors: reading the data needs none
    import torch

SPLITS: tuple[str, ...] = ("train", "val", "test")
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
GENERATOR_VERSION = 1
BACKGROUND_SOURCES = ("auto", "npz", "cifar10", "procedural")


# ------------------------------------------------------------------------------------------------
# Model-input normalisation
# ------------------------------------------------------------------------------------------------


def _as_uint8_batch(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Validate uint8 (N,H,W,3) or (H,W,3) and return a uint8 tensor (N,H,W,3)."""
    import torch

    # np.require copies only arrays torch cannot share (read-only, e.g. np.asarray(PIL image), or strided)
    t = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.require(images, requirements="CW"))
    if t.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 images (0..255), got {t.dtype}; convert with .astype(np.uint8)")
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"normalize expects RGB images shaped (N,H,W,3) or (H,W,3), got {tuple(t.shape)}")
    return t


def normalize(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 RGB (N,H,W,3) or (H,W,3) -> float32 tensor (N,3,H,W) with ImageNet mean/std.

    ImageNet statistics (not the dataset's) so that a torchvision-pretrained backbone can be swapped
    in without re-normalising, and so every stage agrees on a single convention.
    """
    import torch

    t = _as_uint8_batch(images).permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
    return normalize_float(t).contiguous()


def normalize_float(x: torch.Tensor) -> torch.Tensor:
    """float (N,3,H,W) in 0..1 -> the model's input (ImageNet mean/std), e.g. an augmented batch."""
    import torch

    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std


def check_normalized(images: Any) -> torch.Tensor:
    """Images must be a float tensor (B,3,H,W) as made by :func:`normalize`, or a clear error."""
    import torch

    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"images must be a torch.Tensor (B,3,H,W) normalised with camprompt.data.normalize, got "
            f"{type(images).__name__}"
        )
    if images.ndim != 4 or images.shape[1] != 3:
        hint = " For one image use images[None]." if images.ndim == 3 else ""
        raise ValueError(f"images must have shape (B,3,H,W), got {tuple(images.shape)}.{hint}")
    if not images.is_floating_point():
        raise TypeError(f"images have dtype {images.dtype}; pass camprompt.data.normalize(uint8 images)")
    if min(images.shape) == 0:
        raise ValueError(f"images have an empty dimension: {tuple(images.shape)}")
    return images


def denormalize(tensor: torch.Tensor | np.ndarray) -> np.ndarray:
    """Exact inverse of :func:`normalize`: float (N,3,H,W) -> uint8 (N,H,W,3), rounded and clipped."""
    import torch

    t = torch.as_tensor(tensor).detach().to("cpu", torch.float32)
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[1] != 3:
        raise ValueError(f"denormalize expects (N,3,H,W), got {tuple(t.shape)}")
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    x = (t * std + mean) * 255.0
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


# ------------------------------------------------------------------------------------------------
# Backgrounds
# ------------------------------------------------------------------------------------------------


def procedural_backgrounds(n: int, seed: int, size: int = 32) -> np.ndarray:
    """``n`` smooth random colour textures uint8 (n,size,size,3): no download needed (tests, demos).

    Each is a bicubic blow-up of a 3x3..6x6 grid of random colours plus a little fine noise, so it
    has CIFAR-like low-frequency structure without any external data.
    """
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        rng = np.random.default_rng([seed, 7919, i])
        cells = int(rng.integers(3, 7))
        grid = rng.integers(0, 256, size=(cells, cells, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(grid).resize((size, size), Image.BICUBIC), dtype=np.float64)
        noisy = smooth + rng.normal(0.0, 6.0, size=smooth.shape)
        out[i] = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
    return out


def _load_npz(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"background file {path} does not exist; set data.npz in params.yaml or use data.backgrounds: procedural")
    try:
        with np.load(path, allow_pickle=False) as npz:
            images = np.asarray(npz["images"])
    except (KeyError, ValueError, OSError) as exc:
        raise DatasetError(f"{path} is not an .npz holding an 'images' array ({exc})") from exc
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DatasetError(f"{path}: 'images' must be uint8 (N,H,W,3), got {images.dtype} {images.shape}")
    return images


def _load_cifar10(root: Path) -> np.ndarray:
    """CIFAR-10's test split through torchvision (downloads into ``root`` when online)."""
    from torchvision.datasets import CIFAR10

    try:
        return np.asarray(CIFAR10(str(root), train=False, download=True).data, dtype=np.uint8)
    except Exception as exc:  # URLError, socket errors, bad archives: all mean "no CIFAR-10 here"
        raise DatasetError(
            f"could not load or download CIFAR-10 into {root} ({type(exc).__name__}: {exc}). Offline, point "
            "params.yaml data.npz at a local .npz with 'images' uint8 (N,32,32,3) and set "
            "data.backgrounds: npz (or use data.backgrounds: procedural for synthetic textures)."
        ) from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_backgrounds(
    backgrounds: str, n_needed: int, *, seed: int, npz: str | os.PathLike[str] | None, cifar_root: str | os.PathLike[str] | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Return (images uint8 (M,h,w,3) with M >= n_needed, a JSON description of the source)."""
    if backgrounds not in BACKGROUND_SOURCES:
        raise ValueError(f"data.backgrounds must be one of {BACKGROUND_SOURCES}, got {backgrounds!r}")
    if backgrounds == "auto":
        backgrounds = "npz" if npz is not None and Path(npz).is_file() else "cifar10"
    if backgrounds == "procedural":
        images, source = procedural_backgrounds(n_needed, seed), {"kind": "procedural"}
    elif backgrounds == "npz":
        if npz is None:
            raise ValueError("data.backgrounds is 'npz' but data.npz is not set")
        path = Path(npz)
        images = _load_npz(path)
        source = {"kind": "npz", "file": path.name, "sha256": _sha256(path)}
    else:
        images, source = _load_cifar10(Path(cifar_root or "data/cifar10")), {"kind": "cifar10", "split": "test"}
    if len(images) < n_needed:
        raise DatasetError(
            f"the {source['kind']} background source holds {len(images)} images but the splits need "
            f"{n_needed} distinct ones (splits never share a background); reduce data.sizes"
        )
    source["n_available"] = len(images)
    return images, source


# ------------------------------------------------------------------------------------------------
# Generation
# ------------------------------------------------------------------------------------------------


def _balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    """Labels 0..4 repeated as evenly as possible (counts differ by at most one), shuffled."""
    return rng.permutation(np.arange(n) % len(CLASSES))


def _write_sample(root: Path, split: str, name: str, image: np.ndarray, mask: np.ndarray, cls: str) -> None:
    Image.fromarray(image).save(root / "images" / split / f"{name}.png", format="PNG")
    Image.fromarray(mask).save(root / "masks" / split / f"{name}.png", format="PNG")
    (root / "labels" / split / f"{name}.txt").write_text(cls + "\n")


def write_split(root: str | os.PathLike[str], split: str, arrays: SplitArrays, meta: Mapping[str, Any]) -> Path:
    """Write one split (e.g. a degraded copy of another) in the dataset layout, with ``meta`` as its
    ``dataset.json``, atomically: ``root`` holds either the whole split or what it held before."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if not (len(arrays.images) == len(arrays.masks) == len(arrays.labels) == len(arrays.names)):
        raise ValueError("images, masks, labels and names must have one entry per image")
    with atomic_path(root) as tmp:
        for kind in ("images", "masks", "labels"):
            (tmp / kind / split).mkdir(parents=True)
        for name, image, mask, label in zip(arrays.names, arrays.images, arrays.masks, arrays.labels):
            _write_sample(tmp, split, name, image, mask, CLASSES[int(label)])
        write_json(tmp / "dataset.json", dict(meta))
    return Path(root)


def generate_dataset(
    root: str | os.PathLike[str], *, seed: int = 0, sizes: Mapping[str, int] | None = None,
    backgrounds: str = "auto", npz: str | os.PathLike[str] | None = None, cifar_root: str | os.PathLike[str] | None = None,
    width: int = 64, height: int = 48, rules: ShapeRules = ShapeRules(), train_variety: float = 0.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate the whole dataset into ``root`` atomically and return the ``dataset.json`` content.

    ``rules`` paint the shapes (:class:`camprompt.shapes.ShapeRules`; the defaults are this benchmark's).
    ``train_variety`` is the share of *train* images painted by a random plausible generator
    (:func:`camprompt.shapes.varied_rules`) instead, so the classifier sees more than one author's
    conventions; val and test always follow the rules, so they stay this benchmark.
    Same arguments => byte-identical files. If anything fails midway, ``root`` is left untouched
    (a previous dataset stays intact) and no partial directory remains.
    """
    sizes = dict(sizes or {"train": 3500, "val": 1000, "test": 500})
    unknown = set(sizes) - set(SPLITS)
    if unknown or any(int(v) < 0 for v in sizes.values()):
        raise ValueError(f"data.sizes must map splits {SPLITS} to non-negative counts, got {sizes}")
    if not isinstance(rules, ShapeRules):
        raise TypeError(f"rules must be a camprompt.shapes.ShapeRules (e.g. ShapeRules(min_contrast=90.0) or "
                        f"ShapeRules.from_params(params['data'])), got {type(rules).__name__}")
    if not 0.0 <= float(train_variety) <= 1.0:
        raise ValueError(f"data.train_variety is the share of train images drawn by varied rules, in 0..1; "
                         f"got {train_variety}")
    splits = [s for s in SPLITS if s in sizes]
    total = sum(int(sizes[s]) for s in splits)
    source_images, source = load_backgrounds(backgrounds, total, seed=seed, npz=npz, cifar_root=cifar_root)
    order = np.random.default_rng([seed, 104729]).permutation(len(source_images))

    meta: dict[str, Any] = {
        "generator_version": GENERATOR_VERSION, "seed": seed, "classes": list(CLASSES), "source": source,
        "width": width, "height": height, "sizes": {s: int(sizes[s]) for s in splits},
        **rules.as_dict(),
        "contrast_rule": rules.describe(),
        **({"train_variety": float(train_variety)} if train_variety else {}),
        "background_resize": "bilinear (PIL) to width x height",
        "class_counts": {},
    }
    with atomic_path(root) as tmp:
        start = 0
        for split_index, split in enumerate(splits):
            n = int(sizes[split])
            for kind in ("images", "masks", "labels"):
                (tmp / kind / split).mkdir(parents=True, exist_ok=True)
            ids = order[start : start + n]
            start += n
            labels = _balanced_labels(n, np.random.default_rng([seed, split_index, 15485863]))
            for i in tqdm(range(n), desc=f"data {split}", disable=not progress, leave=False):
                rng = np.random.default_rng([seed, split_index, i])
                bg = np.asarray(Image.fromarray(source_images[ids[i]]).resize((width, height), Image.BILINEAR))
                cls = CLASSES[labels[i]]
                image, mask, _ = compose_image(rng, bg, cls, _rules_for(split, i, rules, train_variety, seed))
                _write_sample(tmp, split, f"{i:05d}", image, mask, cls)
            meta["class_counts"][split] = {c: int((labels == k).sum()) for k, c in enumerate(CLASSES)}
        write_json(tmp / "dataset.json", meta)
    return meta


#: The keys of params' data section that are :func:`generate_dataset`'s own arguments.
_GENERATE_KEYS = ("sizes", "backgrounds", "npz", "cifar_root", "width", "height", "train_variety")


def generate_from_params(root: str | os.PathLike[str], data: Mapping[str, Any], *, seed: int,
                         **overrides: Any) -> dict[str, Any]:
    """:func:`generate_dataset` as a params mapping (params.yaml's ``data``) sets it: its sizes,
    background source, frame, ``train_variety`` and shape rules; a key it leaves out keeps
    generate_dataset's default. ``overrides`` replace any of those arguments (or add ``progress``)
    where a caller draws something else: a variant's rules and frame, one split's size. The DVC
    stage, the benchmarks, the variants and the notebook read params this one way."""
    settings = {key: data[key] for key in _GENERATE_KEYS if key in data}
    settings.update({key: int(settings[key]) for key in ("width", "height") if key in settings})
    if "rules" not in overrides:
        settings["rules"] = ShapeRules.from_params(data)
    return generate_dataset(root, seed=int(seed), **{**settings, **overrides})


def _rules_for(split: str, index: int, rules: ShapeRules, variety: float, seed: int) -> ShapeRules:
    """The rules painting train image ``index``: varied with probability ``variety``, from its own
    generator so the benchmark-rule images stay byte-identical whatever the share."""
    if split != "train" or not variety:
        return rules
    rng = np.random.default_rng([seed, index, 7919])
    return varied_rules(rng) if rng.random() < variety else rules


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------


class SyntheticShapes:
    """One split of the dataset: items are ``(transform(PIL image) or PIL image, label, mask)``.

    A map-style dataset in torchvision's manner (``root``, ``split``, ``transform``; ``__len__`` and
    ``__getitem__``), which is all ``torch.utils.data.DataLoader`` needs. It does not subclass
    torch's ``Dataset`` so that reading the data imports no torch: the metrics and report stages
    only read, and importing torch would be a large share of each of their runs.

    ``mask`` is a bool ndarray (H,W). The file list and labels are checked when the dataset is
    opened (names must match across images/masks/labels; class names must be known), so a broken
    dataset fails immediately with a message rather than halfway through an epoch.
    """

    def __init__(self, root: str | os.PathLike[str], split: str, transform: Callable[[Image.Image], Any] | None = None) -> None:
        self.root, self.split, self.transform = Path(root), split, transform
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        folders = {k: self.root / k / split for k in ("images", "masks", "labels")}
        missing = [str(p) for p in folders.values() if not p.is_dir()]
        if missing:
            raise DatasetError(
                f"split {split!r} is missing from {self.root} (no {', '.join(missing)}); generate it with "
                "`dvc repro data` or camprompt.data.generate_dataset"
            )
        self._images = image_files(folders["images"])
        images = set(self._images)
        masks = stems(folders["masks"], MASK_SUFFIX)
        labels = stems(folders["labels"], LABEL_SUFFIX)
        if not images == masks == labels:
            odd = sorted((images ^ masks) | (images ^ labels) | (masks ^ labels))
            raise DatasetError(
                f"{self.root} split {split!r}: image, mask and label names do not match "
                f"({len(odd)} unmatched, e.g. {odd[:5]}); regenerate the dataset"
            )
        self.names: list[str] = sorted(images)
        self.labels = np.array([read_label(folders["labels"] / f"{n}{LABEL_SUFFIX}", CLASSES) for n in self.names],
                               dtype=np.int64)

    def __len__(self) -> int:
        return len(self.names)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw arrays of one sample: image uint8 (H,W,3) and mask bool (H,W), sizes checked."""
        name = self.names[index]
        image = read_image(self._images[name])
        mask_path = self.root / "masks" / self.split / f"{name}{MASK_SUFFIX}"
        mask = read_mask(mask_path)
        if mask.shape != image.shape[:2]:
            raise DatasetError(f"{mask_path}: mask is {mask.shape[::-1]} (WxH) but its image is {image.shape[1::-1]}")
        return image, mask

    def __getitem__(self, index: int) -> tuple[Any, int, np.ndarray]:
        image, mask = self.load(index)
        pil = Image.fromarray(image)
        return (self.transform(pil) if self.transform is not None else pil), int(self.labels[index]), mask


@dataclass
class SplitArrays:
    """A split in memory, sorted by name: images uint8 (N,H,W,3), masks bool (N,H,W), labels int64 (N,)."""

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)


def load_split(root: str | os.PathLike[str], split: str, limit: int | None = None) -> SplitArrays:
    """Load the first ``limit`` images of a split (file-name order; all when None) into arrays."""
    dataset = SyntheticShapes(root, split)
    n = len(dataset) if limit is None else max(0, min(int(limit), len(dataset)))
    samples = [dataset.load(i) for i in range(n)]
    if samples and len({s[0].shape for s in samples}) > 1:
        raise DatasetError(f"{root} split {split!r}: images have different sizes {sorted({s[0].shape for s in samples})}")
    if samples:
        images = np.stack([s[0] for s in samples])
        masks = np.stack([s[1] for s in samples])
    else:
        images, masks = np.zeros((0, 0, 0, 3), np.uint8), np.zeros((0, 0, 0), bool)
    return SplitArrays(images=images, masks=masks, labels=dataset.labels[:n].copy(), names=dataset.names[:n])


def read_metadata(root: str | os.PathLike[str]) -> dict[str, Any]:
    """``dataset.json`` of a generated dataset."""
    return read_json(Path(root) / "dataset.json")
