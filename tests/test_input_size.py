"""The classifier's working size: other resolutions resized inside the model, the trained size untouched."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from camprompt.classifier import build_classifier
from camprompt.decision import Views, decide
from camprompt.gradcam import GradCAM
from camprompt.input_size import (
    fit_input_size,
    input_scaled,
    scale_search,
    trained_size,
    working_size,
)
from camprompt.search import RegionSearch, SearchConfig


class _Spy(nn.Module):
    """Records each input it is given and scores two classes by the mean of the left and right halves."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        w = x.shape[-1]
        return torch.stack([x[..., : w // 2].mean((1, 2, 3)), x[..., w // 2 :].mean((1, 2, 3))], 1)


def test_inputs_at_the_trained_size_pass_untouched() -> None:
    spy = fit_input_size(_Spy(), (6, 8))
    x = torch.randn(2, 3, 6, 8)
    spy(x)
    assert spy.seen[-1] is x
    net = build_classifier(seed=0).eval()
    images = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        before = net(images)
        assert torch.equal(fit_input_size(net, (48, 64))(images), before)


@pytest.mark.parametrize("shape", [(32, 32), (96, 128), (20, 90)])
def test_other_sizes_are_resized_to_the_trained_size(shape: tuple[int, int]) -> None:
    spy = fit_input_size(_Spy(), (6, 8))
    x = torch.rand(2, 3, *shape)
    spy(x)
    seen = spy.seen[-1]
    assert seen.shape == (2, 3, 6, 8)
    assert torch.allclose(seen, F.interpolate(x, size=(6, 8), mode="bilinear", align_corners=False, antialias=True))
    flat = torch.full((1, 3, *shape), 0.25)
    spy(flat)
    assert torch.allclose(spy.seen[-1], torch.full((1, 3, 6, 8), 0.25))  # no new values, no aliasing of a flat image


def test_fitting_again_replaces_the_size() -> None:
    spy = fit_input_size(fit_input_size(_Spy(), (6, 8)), (4, 4))
    spy(torch.rand(1, 3, 6, 8))
    assert spy.seen[-1].shape[-2:] == (4, 4)
    assert len(spy._forward_pre_hooks) == 1 and spy.camprompt_input_size == (4, 4)


def test_gradcam_of_a_fitted_net_is_in_the_callers_pixels() -> None:
    net = fit_input_size(build_classifier(seed=0).eval(), (48, 64))
    maps = GradCAM(net, [net.layer2])(torch.randn(2, 3, 32, 32))
    assert maps.shape == (2, 32, 32) and maps.min() >= 0.0 and maps.max() <= 1.0


def test_the_decision_of_a_fitted_model_sees_the_trained_size() -> None:
    images = np.zeros((2, 12, 16, 3), np.uint8)
    images[0, :, :5] = 255  # bright on the left: class 0
    images[1, :, 11:] = 255  # bright on the right: class 1
    spy = fit_input_size(_Spy(), (6, 8))
    decided, _ = decide(spy, images, Views(hflip=False, shift=1))
    assert decided.tolist() == [0, 1]
    assert {tuple(x.shape[-2:]) for x in spy.seen} == {(6, 8)}


def test_enlarged_views_reach_the_model_at_scale_times_its_size_and_the_fit_comes_back() -> None:
    images = np.zeros((2, 12, 16, 3), np.uint8)
    images[0, :, :5] = 255
    images[1, :, 11:] = 255
    fitted = fit_input_size(_Spy(), (6, 8))
    decided, probs = decide(fitted, images, Views(hflip=False, shift=1, scales=(1.5,)))
    assert decided.tolist() == [0, 1] and np.allclose(probs.sum(1), 1, atol=1e-6)
    assert [tuple(x.shape[-2:]) for x in fitted.seen] == [(6, 8)] * 5 + [(9, 12)] * 5
    assert working_size(fitted) == (6, 8) and len(fitted._forward_pre_hooks) == 1
    # an unfitted model gets the images' own size times the scale, and stays unfitted afterwards
    plain = _Spy()
    decide(plain, images, Views(scales=(0.5, 2.0)))
    assert [tuple(x.shape[-2:]) for x in plain.seen] == [(12, 16), (6, 8), (24, 32)]
    assert working_size(plain) is None and not plain._forward_pre_hooks
    # the fit comes back when the block fails too
    with pytest.raises(RuntimeError), input_scaled(fitted, 2.0, (12, 16)):
        assert working_size(fitted) == (12, 16)
        raise RuntimeError
    assert working_size(fitted) == (6, 8) and len(fitted._forward_pre_hooks) == 1
    for scale in (0, -1.5, float("inf"), "2", True):
        with pytest.raises(ValueError, match="input scale must be a factor > 0"), input_scaled(fitted, scale, (12, 16)):
            pass
    assert working_size(fitted) == (6, 8) and len(fitted._forward_pre_hooks) == 1


def test_trained_size_is_params_data_height_by_width() -> None:
    assert trained_size({"height": 48, "width": 64, "root": "x"}) == (48, 64)


@pytest.mark.parametrize("data", [{}, {"height": 48}, {"height": "tall", "width": 64}, {"height": 0, "width": 64},
                                  {"height": 48, "width": 6.5}])
def test_bad_trained_size_is_an_error_naming_the_params(data: dict) -> None:
    with pytest.raises(ValueError, match="data.height|input size"):
        trained_size(data)


@pytest.mark.parametrize("size", [(0, 8), (6, -1), (6.5, 8), (6, 8, 3), (6,)])
def test_bad_sizes_are_refused(size: tuple) -> None:
    with pytest.raises(ValueError, match="input size must be two positive whole numbers"):
        fit_input_size(_Spy(), size)


def test_non_modules_and_non_image_inputs_are_refused() -> None:
    with pytest.raises(TypeError, match="torch.nn.Module"):
        fit_input_size(lambda x: x, (6, 8))  # type: ignore[arg-type]
    spy = fit_input_size(_Spy(), (6, 8))
    with pytest.raises(ValueError, match=r"images \(B,C,H,W\)"):
        spy(torch.rand(3, 5, 7))


def test_working_size_is_what_fit_input_size_gave() -> None:
    assert working_size(_Spy()) is None
    assert working_size(fit_input_size(_Spy(), (6, 8))) == (6, 8)


def test_search_knobs_are_unchanged_at_the_trained_size_or_without_one() -> None:
    config = SearchConfig()
    assert scale_search(config, (48, 64), (48, 64)) is config
    assert scale_search(config, (32, 32), None) is config


@pytest.mark.parametrize(("image", "step", "area"), [((32, 32), 2, 4), ((96, 128), 8, 48), ((96, 96), 7, 36), ((8, 8), 1, 1)])
def test_search_pixel_knobs_scale_with_the_image(image: tuple[int, int], step: int, area: int) -> None:
    config = SearchConfig(grid_step=4, min_area=12)
    scaled = scale_search(config, image, (48, 64))
    assert (scaled.grid_step, scaled.min_area) == (step, area)
    assert dataclasses.replace(scaled, grid_step=4, min_area=12) == config  # nothing else moves
    assert scale_search(SearchConfig(grid_step=0), image, (48, 64)).grid_step == 0  # the grid stays off


def test_a_small_shape_of_a_small_image_is_only_proposed_with_scaled_knobs() -> None:
    """A 3x3 square between the 4-px grid's seeds, under the 12-px minimum area: the trained size's knobs
    miss it in a 32x32 image; scaled to 32x32 (grid 2 px, minimum area 4) they propose it."""
    image = np.full((32, 32, 3), 200, np.uint8)
    image[12:15, 12:15] = (30, 60, 200)
    heat = np.zeros((32, 32))
    heat[28, 28] = 1.0  # the heatmap looks elsewhere: only the grid can find the square
    square = np.all(image == (30, 60, 200), axis=-1)
    config = SearchConfig(use_sam=False, max_seeds=1)

    def proposed(cfg: SearchConfig) -> bool:
        return any(np.array_equal(m, square) for m in RegionSearch(cfg, None).candidates(image, heat))

    assert not proposed(config)
    assert proposed(scale_search(config, image.shape[:2], (48, 64)))


@pytest.mark.parametrize("size", [(0, 32), (32,), (3.5, 32)])
def test_bad_image_sizes_for_the_search_are_refused(size: tuple) -> None:
    with pytest.raises(ValueError, match="the image size must be two positive whole numbers"):
        scale_search(SearchConfig(), size, (48, 64))


@pytest.mark.parametrize(("fitted", "knobs"), [(True, (2, 4)), (False, (4, 12))])
def test_a_pipeline_scales_its_search_to_the_images_when_its_classifier_is_fitted(
        monkeypatch: pytest.MonkeyPatch, fitted: bool, knobs: tuple[int, int]) -> None:
    from camprompt.data import normalize
    from camprompt.search_pipelines import ForegroundPointsPipeline

    seen: list[SearchConfig] = []  # the config each image is searched with
    monkeypatch.setattr(RegionSearch, "candidates", lambda self, image, heat: seen.append(self.config) or [])
    model = build_classifier(seed=0).eval()
    if fitted:
        model = fit_input_size(model, (48, 64))
    pipeline = ForegroundPointsPipeline(None, model, search=SearchConfig(use_sam=False, grid_step=4, min_area=12))
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    assert not any(choice.region.any() for choice in pipeline.regions(normalize(images)))
    assert [(c.grid_step, c.min_area) for c in seen] == [knobs, knobs]
    assert pipeline.search_config.grid_step == 4  # the pipeline's own config is left as given
    assert pipeline.region_search.config.grid_step == 4  # and so is its search's, for the next images
