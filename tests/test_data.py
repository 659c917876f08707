"""Tests for camprompt.data: format, rules and determinism of a generated dataset, reader errors,
atomic writes and the model-input normalisation.

A small dataset with procedural backgrounds (no download) is generated once per module; the rules
are checked from the files on disk, independently of the generator's internals.
"""

from __future__ import annotations

import filecmp
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import camprompt.data as data_mod
from camprompt.artifacts import ArtifactError
from camprompt.data import (
    CLASSES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SPLITS,
    DatasetError,
    SyntheticShapes,
    denormalize,
    generate_dataset,
    generate_from_params,
    load_split,
    normalize,
)
from camprompt.shapes import ShapeRules, colour_contrast, render_shape, varied_rules

SIZES = {"train": 40, "val": 12, "test": 11}
KW = dict(seed=3, sizes=SIZES, backgrounds="procedural", progress=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes") / "ds"
    generate_dataset(root, **KW)
    return root


def _copy(dataset: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "ds"
    shutil.copytree(dataset, dest)
    return dest


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _assert_same_files(a: Path, b: Path) -> None:
    """The two trees hold the same file names with the same bytes."""
    assert _files(a) == _files(b)
    _, mismatch, errors = filecmp.cmpfiles(a, b, _files(a), shallow=False)
    assert not mismatch and not errors


# ------------------------------------------------------------------------------------------------
# Format and rules
# ------------------------------------------------------------------------------------------------


def test_layout_and_metadata(dataset: Path) -> None:
    meta = json.loads((dataset / "dataset.json").read_text())
    assert meta["seed"] == 3 and meta["source"]["kind"] == "procedural"
    assert meta["sizes"] == SIZES and meta["classes"] == list(CLASSES)
    assert "percentile" in meta["contrast_rule"] and meta["min_contrast"] == 60.0
    assert isinstance(meta["generator_version"], int)
    for split, n in SIZES.items():
        for kind, ext in (("images", ".png"), ("masks", ".png"), ("labels", ".txt")):
            files = sorted((dataset / kind / split).iterdir())
            assert len(files) == n and all(f.suffix == ext for f in files)
        image = Image.open(next((dataset / "images" / split).iterdir()))
        assert image.mode == "RGB" and image.size == (64, 48)
        assert sum(meta["class_counts"][split].values()) == n


def test_classes_balanced(dataset: Path) -> None:
    for split, n in SIZES.items():
        labels = load_split(dataset, split).labels
        counts = np.bincount(labels, minlength=len(CLASSES))
        assert counts.sum() == n and counts.max() - counts.min() <= 1


def test_masks_crisp_inside_and_contrasted(dataset: Path) -> None:
    split = load_split(dataset, "train")
    assert split.images.shape == (40, 48, 64, 3) and split.images.dtype == np.uint8
    assert split.masks.shape == (40, 48, 64) and split.masks.dtype == bool
    for image, mask in zip(split.images, split.masks):
        colours = np.unique(image[mask], axis=0)
        assert len(colours) == 1, "a shape must be one solid colour"
        # Crisp edges: the mask is exactly the set of pixels of the fill colour.
        np.testing.assert_array_equal((image == colours[0]).all(-1), mask)
        # Size: the bounding box stays within the 10..20 px range (+1 for pixel-centre sampling).
        ys, xs = np.nonzero(mask)
        assert max(np.ptp(ys), np.ptp(xs)) + 1 <= 21


def test_contrast_and_inside_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Record each shape's background and geometry, then re-check the documented rules on them:
    contrast statistic >= min_contrast, fill colour absent from the background, >= 80% inside."""
    seen: list[tuple[str, np.ndarray, np.ndarray, dict]] = []
    original = data_mod.compose_image

    def spy(rng, background, cls, rules):  # type: ignore[no-untyped-def]
        image, mask, info = original(rng, background, cls, rules)
        seen.append((cls, background.copy(), mask, info))
        return image, mask, info

    monkeypatch.setattr(data_mod, "compose_image", spy)
    generate_dataset(tmp_path / "ds", seed=1, sizes={"train": 30}, backgrounds="procedural",
                     rules=ShapeRules(min_contrast=90.0), progress=False)
    assert len(seen) == 30
    stored = load_split(tmp_path / "ds", "train")
    for (cls, background, mask, info), stored_mask in zip(seen, stored.masks):
        np.testing.assert_array_equal(mask, stored_mask)
        colour = np.array(info["colour"], dtype=np.uint8)
        assert colour_contrast(colour, background[mask]) >= 90.0
        assert not (background[~mask] == colour).all(-1).any()
        assert 10 <= info["size"] <= 20
        cx, cy = info["center"]
        pad = 40  # the whole shape on a canvas large enough to hold it
        full = render_shape(cls, cx + pad, cy + pad, info["size"], 64 + 2 * pad, 48 + 2 * pad)
        np.testing.assert_array_equal(full[pad:pad + 48, pad:pad + 64], mask)
        assert mask.sum() >= 0.8 * full.sum()


@pytest.mark.parametrize("cls", CLASSES)
def test_render_shape_geometry(cls: str) -> None:
    mask = render_shape(cls, 31.5, 23.5, 16, 64, 48)
    ys, xs = np.nonzero(mask)
    low = 12 if cls == "star" else 14  # a star's points reach its circumscribed circle only at the top
    assert low <= np.ptp(xs) + 1 <= 17 and low <= np.ptp(ys) + 1 <= 17
    # Left-right symmetric (all classes are), and triangle/star point up: narrower top than bottom.
    np.testing.assert_array_equal(mask, mask[:, ::-1])
    if cls == "triangle":
        rows = mask.sum(1)[mask.any(1)]
        assert rows[0] < rows[-1]
    if cls == "diamond":
        assert mask.sum() < render_shape("square", 31.5, 23.5, 16, 64, 48).sum() * 0.6


def test_splits_do_not_share_backgrounds(tmp_path: Path) -> None:
    bank = np.random.default_rng(0).integers(0, 256, size=(30, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "bg.npz", images=bank)
    meta = generate_dataset(tmp_path / "ds", seed=0, sizes={"train": 10, "val": 10, "test": 10},
                            backgrounds="npz", npz=tmp_path / "bg.npz", progress=False)
    assert meta["source"]["kind"] == "npz" and len(meta["source"]["sha256"]) == 64
    # Each image's background (outside the shape) must match exactly one bank image, and all 30 differ.
    resized = np.stack([np.asarray(Image.fromarray(b).resize((64, 48), Image.BILINEAR)) for b in bank])
    used = []
    for split in SPLITS:
        arrays = load_split(tmp_path / "ds", split)
        for image, mask in zip(arrays.images, arrays.masks):
            matches = [j for j in range(len(bank)) if (resized[j][~mask] == image[~mask]).all()]
            assert len(matches) == 1
            used.append(matches[0])
    assert len(set(used)) == 30
    with pytest.raises(DatasetError, match="distinct"):
        generate_dataset(tmp_path / "ds2", seed=0, sizes={"train": 31}, backgrounds="npz", npz=tmp_path / "bg.npz",
                         progress=False)


def test_deterministic_byte_identical(dataset: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_dataset(again, **KW)
    _assert_same_files(dataset, again)
    other = tmp_path / "other"
    generate_dataset(other, **{**KW, "seed": 4})
    assert not filecmp.cmp(dataset / "images/train/00000.png", other / "images/train/00000.png", shallow=False)


def test_cifar10_offline_error_names_the_npz_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DatasetError, match="data.npz"):
        generate_dataset(tmp_path / "ds", seed=0, sizes={"train": 5}, backgrounds="cifar10",
                         cifar_root=tmp_path / "c", progress=False)
    assert not (tmp_path / "ds").exists()


def test_bad_generation_params(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="backgrounds"):
        generate_dataset(tmp_path / "a", sizes={"train": 5}, backgrounds="imagenet", progress=False)
    with pytest.raises(ValueError, match="sizes"):
        generate_dataset(tmp_path / "a", sizes={"training": 5}, backgrounds="procedural", progress=False)
    with pytest.raises(DatasetError, match="does not exist"):
        generate_dataset(tmp_path / "a", sizes={"train": 5}, backgrounds="npz", npz=tmp_path / "nope.npz", progress=False)
    with pytest.raises(TypeError, match="ShapeRules"):  # the knobs travel as one ShapeRules, not as a dict
        generate_dataset(tmp_path / "a", sizes={"train": 5}, backgrounds="procedural", rules={"min_contrast": 90.0},
                         progress=False)
    assert not (tmp_path / "a").exists()


def test_shape_rules_from_params_take_the_knobs_as_numbers() -> None:
    # params.yaml's data section: the knobs it names, read as floats whether YAML wrote 10 or 10.0
    # (dataset.json records one form); root, sizes and the frame are not rules.
    rules = ShapeRules.from_params({"root": "data/x", "sizes": {"train": 3}, "width": 64, "min_shape_size": 12,
                                    "max_shape_size": 18, "min_contrast": 90})
    assert (rules.min_shape_size, rules.max_shape_size, rules.min_contrast) == (12.0, 18.0, 90.0)
    assert all(isinstance(v, float) for v in (rules.min_shape_size, rules.max_shape_size, rules.min_contrast))
    assert rules.min_inside == ShapeRules().min_inside
    assert json.dumps(ShapeRules(min_shape_size=10, max_shape_size=20).as_dict()) == json.dumps(ShapeRules().as_dict())
    with pytest.raises(ValueError, match="min_contrast must be a number"):
        ShapeRules.from_params({"min_contrast": "90"})


def test_generate_from_params_reads_the_data_section_and_takes_overrides(tmp_path: Path) -> None:
    # params.yaml's data section, with keys that are not generate_dataset's (root, knobs of ShapeRules).
    data = {"root": "data/x", "sizes": {"val": 6}, "backgrounds": "procedural", "npz": None, "width": 40,
            "height": 30, "min_contrast": 120, "min_shape_size": 8, "max_shape_size": 12, "train_variety": 0.0}
    meta = generate_from_params(tmp_path / "p", data, seed=2, progress=False)
    generate_dataset(tmp_path / "d", seed=2, sizes={"val": 6}, backgrounds="procedural", width=40, height=30,
                     rules=ShapeRules(min_contrast=120.0, min_shape_size=8.0, max_shape_size=12.0), progress=False)
    assert (meta["width"], meta["height"], meta["min_contrast"]) == (40, 30, 120.0)
    _assert_same_files(tmp_path / "p", tmp_path / "d")
    # An override replaces what the section sets: another author's rules and frame, one split's size.
    other = generate_from_params(tmp_path / "o", data, seed=2, sizes={"test": 3}, width=32, height=32,
                                 rules=ShapeRules(min_contrast=60.0), progress=False)
    assert other["sizes"] == {"test": 3} and (other["width"], other["min_contrast"]) == (32, 60.0)
    assert load_split(tmp_path / "o", "test").images.shape == (3, 32, 32, 3)
    # A key the section leaves out keeps generate_dataset's default (a variant's section needs no sizes).
    bare = generate_from_params(tmp_path / "b", {"backgrounds": "procedural"}, seed=2, sizes={"val": 2}, progress=False)
    assert (bare["width"], bare["height"], bare["min_contrast"]) == (64, 48, ShapeRules().min_contrast)


def test_train_variety_varies_only_train_and_keeps_rule_images(dataset: Path, tmp_path: Path) -> None:
    varied = tmp_path / "varied"
    meta = generate_dataset(varied, **{**KW, "train_variety": 0.5})
    assert meta["train_variety"] == 0.5
    changed = [n for n in _files(dataset) if n.startswith("images/train/")
               and not filecmp.cmp(dataset / n, varied / n, shallow=False)]
    # About half the train images are redrawn; the others, and val and test, stay byte-identical.
    assert 0.2 * SIZES["train"] < len(changed) < 0.8 * SIZES["train"]
    for split in ("val", "test"):
        names = [n for n in _files(dataset) if n.startswith((f"images/{split}/", f"masks/{split}/"))]
        _, mismatch, _ = filecmp.cmpfiles(dataset, varied, names, shallow=False)
        assert not mismatch
    arrays = load_split(varied, "train")  # every varied image still carries one shape with a mask
    assert all(m.any() for m in arrays.masks)
    with pytest.raises(ValueError, match="train_variety"):
        generate_dataset(tmp_path / "bad", **{**KW, "train_variety": 1.5})


def test_varied_rules_span_the_knobs() -> None:
    rules = [varied_rules(np.random.default_rng(i)) for i in range(200)]
    assert {r.rasteriser for r in rules} == {"centre", "antialias"}
    assert {r.contrast for r in rules} == {"p10", "mean"} and {r.exclusive_colour for r in rules} == {True, False}
    assert min(r.min_shape_size for r in rules) < 8 and max(r.max_shape_size for r in rules) > 25
    assert all(6 <= r.min_shape_size <= r.max_shape_size <= 28 for r in rules)
    assert varied_rules(np.random.default_rng(7)) == varied_rules(np.random.default_rng(7))


# ------------------------------------------------------------------------------------------------
# Atomic writes
# ------------------------------------------------------------------------------------------------


def test_crash_mid_generation_leaves_previous_dataset_intact(dataset: Path, tmp_path: Path,
                                                              crash_on_call: Callable[..., dict[str, int]]) -> None:
    root = _copy(dataset, tmp_path)
    before = {f: (root / f).read_bytes() for f in _files(root)}
    calls = crash_on_call(data_mod, "_write_sample", 7)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(root, **{**KW, "seed": 99})
    assert {f: (root / f).read_bytes() for f in _files(root)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"], "no temporary directory may remain"
    fresh = tmp_path / "fresh"
    with pytest.raises(KeyboardInterrupt):
        calls["n"] = 0
        generate_dataset(fresh, **KW)
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


# ------------------------------------------------------------------------------------------------
# Reader
# ------------------------------------------------------------------------------------------------


def test_dataset_items(dataset: Path) -> None:
    ds = SyntheticShapes(dataset, "val")
    image, label, mask = ds[0]
    assert isinstance(image, Image.Image) and image.size == (64, 48)
    assert isinstance(label, int) and 0 <= label < 5
    assert mask.dtype == bool and mask.shape == (48, 64)
    ds_t = SyntheticShapes(dataset, "val", transform=lambda im: np.asarray(im).sum())
    assert ds_t[0][0] == np.asarray(image).sum()
    arrays = load_split(dataset, "val", limit=5)
    assert arrays.names == sorted(ds.names)[:5] and len(arrays) == 5
    np.testing.assert_array_equal(arrays.images[0], np.asarray(image))
    assert (dataset / "labels/val" / f"{arrays.names[0]}.txt").read_text().strip() == CLASSES[arrays.labels[0]]


def test_dataset_feeds_a_dataloader(dataset: Path) -> None:
    """A map-style dataset without torch's base class: DataLoader, Subset and random_split take it."""
    from torch.utils.data import DataLoader, Subset, random_split

    def to_tensor(im: Image.Image) -> torch.Tensor:
        return normalize(np.asarray(im))[0]

    ds = SyntheticShapes(dataset, "val", transform=to_tensor)
    images, labels, masks = next(iter(DataLoader(ds, batch_size=4, shuffle=False)))
    assert images.shape == (4, 3, 48, 64) and images.dtype == torch.float32
    assert labels.tolist() == ds.labels[:4].tolist() and masks.shape == (4, 48, 64) and masks.dtype == torch.bool
    first, rest = random_split(ds, [2, len(ds) - 2], generator=torch.Generator().manual_seed(0))
    assert len(first) == 2 and len(rest) == len(ds) - 2
    assert Subset(ds, [3])[0][1] == ds.labels[3]


def test_reading_the_data_imports_no_torch() -> None:
    """The read-only stages (metrics, report) skip torch's 1.3 s import; torch loads only for tensors."""
    import subprocess
    import sys

    code = ("import sys, runpy\n"
            "import camprompt.data, camprompt.metrics, camprompt.pipelines, camprompt.strategies, camprompt.report.build\n"
            "for stage in ('stages/metrics.py', 'stages/report.py'):\n"
            "    runpy.run_path(stage, run_name='imported')  # top-level imports only, main() not run\n"
            "print('torch' in sys.modules)\n"
            "camprompt.data.normalize(__import__('numpy').zeros((1, 2, 2, 3), 'uint8'))\n"
            "print('torch' in sys.modules)\n")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]


def test_missing_split(dataset: Path, tmp_path: Path) -> None:
    root = _copy(dataset, tmp_path)
    shutil.rmtree(root / "masks" / "test")
    with pytest.raises(DatasetError, match="missing"):
        SyntheticShapes(root, "test")
    with pytest.raises(ValueError, match="unknown split"):
        SyntheticShapes(root, "holdout")
    with pytest.raises(DatasetError, match="missing"):
        load_split(tmp_path / "nowhere", "train")


def test_mismatched_names(dataset: Path, tmp_path: Path) -> None:
    root = _copy(dataset, tmp_path)
    (root / "labels/val/00003.txt").rename(root / "labels/val/00999.txt")
    with pytest.raises(DatasetError, match="do not match"):
        SyntheticShapes(root, "val")


def test_unknown_class(dataset: Path, tmp_path: Path) -> None:
    root = _copy(dataset, tmp_path)
    (root / "labels/val/00002.txt").write_text("hexagon\n")
    with pytest.raises(DatasetError, match="unknown class name 'hexagon'"):
        SyntheticShapes(root, "val")


def test_mask_size_mismatch(dataset: Path, tmp_path: Path) -> None:
    root = _copy(dataset, tmp_path)
    Image.fromarray(np.zeros((40, 60), dtype=bool)).save(root / "masks/val/00001.png")
    ds = SyntheticShapes(root, "val")
    ds[0]
    with pytest.raises(DatasetError, match="mask is"):
        ds[1]
    with pytest.raises(DatasetError, match="mask is"):
        load_split(root, "val")


def test_corrupt_png(dataset: Path, tmp_path: Path) -> None:
    root = _copy(dataset, tmp_path)
    path = root / "images/val/00004.png"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DatasetError, match="not a readable image"):
        load_split(root, "val")
    assert issubclass(DatasetError, ArtifactError)


# ------------------------------------------------------------------------------------------------
# Normalisation
# ------------------------------------------------------------------------------------------------


def test_normalize_roundtrip_and_values() -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(3, 48, 64, 3), dtype=np.uint8)
    t = normalize(images)
    assert t.shape == (3, 3, 48, 64) and t.dtype == torch.float32
    expected = (images[1, 5, 7, 2] / 255.0 - IMAGENET_MEAN[2]) / IMAGENET_STD[2]
    assert abs(float(t[1, 2, 5, 7]) - expected) < 1e-6
    np.testing.assert_array_equal(denormalize(t), images)
    assert normalize(images[0]).shape == (1, 3, 48, 64)
    every = np.arange(256, dtype=np.uint8).repeat(3).reshape(1, 16, 16, 3)
    np.testing.assert_array_equal(denormalize(normalize(every)), every)
    assert denormalize(torch.full((1, 3, 2, 2), 100.0)).max() == 255  # clipped, not wrapped


def test_normalize_rejects_bad_input() -> None:
    with pytest.raises(TypeError, match="uint8"):
        normalize(np.zeros((1, 48, 64, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(N,H,W,3\)"):
        normalize(np.zeros((1, 3, 48, 64), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\(N,3,H,W\)"):
        denormalize(torch.zeros(1, 48, 64, 3))
