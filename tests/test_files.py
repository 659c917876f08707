"""Reading other generators' encodings of the dataset layout: JPEG images, masks in any grey levels,
class names in any case -- and the same arrays as before for our own files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camprompt.data import SyntheticShapes, generate_dataset, load_split
from camprompt.files import (
    DatasetError,
    image_files,
    mask_from_levels,
    read_image,
    read_label,
    read_mask,
)
from camprompt.shapes import CLASSES

KW = {"seed": 3, "sizes": {"train": 2, "val": 6, "test": 2}, "backgrounds": "procedural", "progress": False}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("files") / "ds"
    generate_dataset(root, **KW)
    return root


@pytest.fixture
def square() -> np.ndarray:
    mask = np.zeros((12, 16), bool)
    mask[3:9, 4:11] = True
    return mask


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    img = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    img.save(path)
    return path


@pytest.mark.parametrize("encode", [
    lambda m: m,                                            # 1-bit, as our generator writes it
    lambda m: m.astype(np.uint8),                           # 0/1 grey: black to the eye
    lambda m: m.astype(np.uint8) * 255,                     # 0/255 grey
    lambda m: np.repeat(m[..., None].astype(np.uint8) * 255, 3, -1),  # RGB
    lambda m: m.astype(np.uint16) * 65535,                  # 16-bit grey
])
def test_every_mask_encoding_reads_as_the_same_mask(tmp_path: Path, square: np.ndarray, encode) -> None:
    assert np.array_equal(read_mask(_save(tmp_path / "m.png", encode(square))), square)


def test_a_palette_mask_reads_as_the_same_mask(tmp_path: Path, square: np.ndarray) -> None:
    path = _save(tmp_path / "m.png", square.astype(np.uint8) * 255, "P")
    assert Image.open(path).mode == "P"
    assert np.array_equal(read_mask(path), square)


def test_a_zero_one_mask_is_not_read_as_empty(tmp_path: Path, square: np.ndarray) -> None:
    """PIL's own 1-bit conversion dithers a 0/1 grey mask to (almost) nothing: the silent wrong answer."""
    path = _save(tmp_path / "m.png", square.astype(np.uint8))
    assert np.array(Image.open(path).convert("1"), bool).sum() < square.sum() // 2  # what PIL alone gives
    assert read_mask(path).sum() == square.sum()


def test_an_anti_aliased_edge_is_cut_at_its_midpoint() -> None:
    levels = np.array([[0, 60, 127, 128, 200, 255]], np.uint8)
    assert mask_from_levels(levels).tolist() == [[False, False, False, True, True, True]]
    assert mask_from_levels(np.array([[0, 1, 1]], np.uint8)).tolist() == [[False, True, True]]
    assert mask_from_levels(np.array([[0, 32767, 32768, 65535]], np.uint16)).tolist() == [[False, False, True, True]]
    assert not mask_from_levels(np.zeros((2, 2), np.uint8)).any()


def test_images_with_alpha_palette_or_grey_read_as_rgb(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((6, 8, 1), 7, np.uint8)], -1)
    assert np.array_equal(read_image(_save(tmp_path / "a.png", rgba)), rgb)
    grey = read_image(_save(tmp_path / "g.png", rgb[..., 0]))
    assert grey.shape == (6, 8, 3) and np.array_equal(grey[..., 2], rgb[..., 0])
    deep = read_image(_save(tmp_path / "d.png", rgb[..., 0].astype(np.uint16) * 257))
    assert np.array_equal(deep[..., 0], rgb[..., 0])


def test_class_names_in_another_case_or_padded_are_read(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("  Circle \n")
    (tmp_path / "b.txt").write_text("STAR")
    assert read_label(tmp_path / "a.txt", CLASSES) == CLASSES.index("circle")
    assert read_label(tmp_path / "b.txt", CLASSES) == CLASSES.index("star")
    (tmp_path / "c.txt").write_text("hexagon")
    with pytest.raises(DatasetError, match="unknown class name 'hexagon'"):
        read_label(tmp_path / "c.txt", CLASSES)


def test_a_split_of_jpeg_images_loads_like_its_png_original(dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "jpeg"
    shutil.copytree(dataset, root)
    for png in sorted((root / "images" / "val").glob("*.png")):
        suffix = ".JPG" if png.stem.endswith("1") else ".jpg"
        Image.open(png).save(png.with_suffix(suffix), quality=95)
        png.unlink()
    png_split, jpeg_split = load_split(dataset, "val"), load_split(root, "val")
    assert jpeg_split.names == png_split.names and np.array_equal(jpeg_split.masks, png_split.masks)
    assert np.array_equal(jpeg_split.labels, png_split.labels)
    diff = np.abs(jpeg_split.images.astype(int) - png_split.images.astype(int))
    assert diff.mean() < 6 and 0 < diff.max()  # the same pictures, through a JPEG round trip


def test_two_images_with_one_name_are_an_error(dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "dup"
    shutil.copytree(dataset, root)
    first = min((root / "images" / "val").glob("*.png"))
    Image.open(first).save(first.with_suffix(".jpeg"))
    with pytest.raises(DatasetError, match=f"two images are named '{first.stem}'"):
        SyntheticShapes(root, "val")
    assert set(image_files(root / "images" / "train")) == {p.stem for p in (root / "images" / "train").glob("*.png")}


def test_our_own_files_read_exactly_as_with_pil(dataset: Path) -> None:
    """The readers change nothing for our generator's files: 1-bit masks and RGB PNGs, as PIL reads them."""
    split = load_split(dataset, "val")
    for name, image, mask in zip(split.names, split.images, split.masks):
        assert np.array_equal(image, np.asarray(Image.open(dataset / "images" / "val" / f"{name}.png")))
        assert np.array_equal(mask, np.array(Image.open(dataset / "masks" / "val" / f"{name}.png"), bool))
