"""Denoising knobs: the noise estimate, the edge-preserving filter, what SAM is shown, the search's
colour evidence on a smoothed copy, and SAM's mask chosen by agreement with the search's region."""

from __future__ import annotations

import numpy as np
import pytest

from camprompt.denoise import filtered, noise_sigma, smooth
from camprompt.perturb import add_noise
from camprompt.sam.predictor import image_key


def _step(noise: float = 0.0) -> np.ndarray:
    image = np.full((48, 64, 3), 40, np.uint8)
    image[:, 32:] = 200
    return add_noise(image, noise, np.random.default_rng(0)) if noise else image


def test_noise_sigma_tracks_the_noise() -> None:
    estimates = [noise_sigma(_step(s)) for s in (0.0, 2.0, 4.0, 8.0)]
    assert estimates == sorted(estimates) and estimates[0] < 1.0
    assert 3.0 < estimates[2] < 5.5  # the step edge adds a little


def test_smoothing_flattens_noise_and_keeps_the_edge() -> None:
    noisy = _step(6.0)
    out = smooth(noisy)
    assert out[:, 4:28].std() < noisy[:, 4:28].std() / 2 and out[:, 36:60].std() < noisy[:, 36:60].std() / 2
    assert out[:, 30].mean() < 60 and out[:, 33].mean() > 180  # no blur across the edge
    np.testing.assert_array_equal(filtered(noisy, "none"), noisy)
    np.testing.assert_array_equal(filtered(noisy, "auto", threshold=100.0), noisy)
    np.testing.assert_array_equal(filtered(noisy, "auto", threshold=1.0), out)
    with pytest.raises(ValueError, match="filter mode"):
        filtered(noisy, "median")


def test_sam_sees_the_filtered_image_and_keys_it() -> None:
    from test_sam import FakePredictor

    noisy = _step(6.0)
    plain, shown = FakePredictor(), FakePredictor(input_filter="bilateral")
    shown.set_image(noisy)
    assert shown.key(noisy) == image_key(smooth(noisy)) != plain.key(noisy) == image_key(noisy)
    assert shown.get_image_embedding()[0, 0, 0, 0] == pytest.approx(smooth(noisy).mean() / 255.0)
    auto = FakePredictor(input_filter="auto", filter_threshold=2.0)
    assert auto.key(_step()) == image_key(_step()) and auto.key(noisy) == image_key(smooth(noisy))
    with pytest.raises(ValueError, match="sam.input_filter"):
        FakePredictor(input_filter="gaussian")


def test_search_reads_colour_from_a_smoothed_copy() -> None:
    """Under strong noise the tight colour regions break into speckle; on the smoothed copy they hold."""
    from test_pipelines import FakeSam, _scene

    from camprompt.search import RegionSearch, SearchConfig

    image, mask = _scene("square", seed=1)
    noisy = add_noise(image, 14.0, np.random.default_rng(3))
    heat = mask.astype(np.float32)

    def best_iou(config: SearchConfig) -> float:
        cands = RegionSearch(config, None, FakeSam()).candidates(noisy, heat)
        return max(((c & mask).sum() / (c | mask).sum() for c in cands), default=0.0)

    plain = SearchConfig(use_sam=False, grow_tols=(20.0,))
    assert best_iou(plain) < 0.5 < 0.9 < best_iou(SearchConfig(use_sam=False, grow_tols=(20.0,), smooth="bilateral"))
    with pytest.raises(ValueError, match="smooth must be one of"):
        SearchConfig.from_params({"smooth": "median"})


def test_mask_choice_can_follow_the_searchs_region() -> None:
    from test_pipelines import CAMS, ColourClassifier, FakeSam, _batch

    from camprompt.placement import PlacementConfig
    from camprompt.search_pipelines import ForegroundPointsPipeline

    images, raw, masks = _batch(1)
    sam = FakeSam()
    sam.set_image(raw[0])
    ys, xs = np.nonzero(masks[0])
    coords = np.array([[[xs.mean(), ys.mean()]]], np.float32)
    labels = np.ones((1, 1), np.int64)
    proposals, _, _ = sam.predict(coords[0], labels[0])
    grown = proposals[2][None]  # the "shape plus background" proposal, as if the search had chosen it

    def pick(w: float, regions: np.ndarray | None) -> np.ndarray:
        pipe = ForegroundPointsPipeline(FakeSam(), ColourClassifier((250, 20, 200)), cam=CAMS["layer2"],
                                        placement=PlacementConfig(w_mask_region=w))
        return pipe.segment_rgb(raw, coords, labels, regions)[0][0]

    solid = pick(0.0, grown)
    np.testing.assert_array_equal(solid, proposals[1])  # colour evidence alone: the solid proposal
    np.testing.assert_array_equal(pick(0.0, None), solid)
    np.testing.assert_array_equal(pick(5.0, grown), proposals[2])  # a strong weight follows the region
    with pytest.raises(ValueError, match="regions must be bool"):
        pick(5.0, grown.astype(np.uint8))
