"""The classifier's decision over views: which views, their geometry, the averaging, bad knobs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from camprompt.decision import Views, decide


class _LeftHalfBright(nn.Module):
    """Scores class 0 by the mean of the left half, class 1 by the right half: a model that sees position."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[-1]
        return torch.stack([x[..., : w // 2].mean((1, 2, 3)), x[..., w // 2 :].mean((1, 2, 3))], 1) * 10


def _batch(n: int = 3, h: int = 6, w: int = 8) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_views_count_and_first_view_is_the_image() -> None:
    images = _batch()
    for views, count in ((Views(), 1), (Views(hflip=True), 2), (Views(shift=2), 5), (Views(hflip=True, shift=2), 10)):
        out = views.of(images)
        assert views.count == count == len(out)
        assert np.array_equal(out[0], images)
        assert all(v.shape == images.shape and v.dtype == np.uint8 for v in out)


def test_mirror_and_shift_geometry() -> None:
    images = _batch(1)
    flipped = Views(hflip=True).of(images)[1]
    assert np.array_equal(flipped[0], images[0, :, ::-1])
    right, left, down, up = Views(shift=2).of(images)[1:]
    assert np.array_equal(right[0, :, 2:], images[0, :, :-2]) and not right[0, :, :2].any()
    assert np.array_equal(left[0, :, :-2], images[0, :, 2:]) and not left[0, :, -2:].any()
    assert np.array_equal(down[0, 2:], images[0, :-2]) and not down[0, :2].any()
    assert np.array_equal(up[0, :-2], images[0, 2:]) and not up[0, -2:].any()


def test_decide_averages_the_views_probabilities() -> None:
    images = np.zeros((2, 4, 8, 3), np.uint8)
    images[0, :, :3] = 255  # bright on the left: class 0 in the single view
    images[1, :, 5:] = 255  # bright on the right: class 1
    single, probs = decide(_LeftHalfBright(), images, Views())
    assert single.tolist() == [0, 1] and probs.shape == (2, 2) and np.allclose(probs.sum(1), 1, atol=1e-6)
    # the mirror view swaps the halves, so image and mirror image average to a tie
    _, mirrored = decide(_LeftHalfBright(), images, Views(hflip=True))
    assert np.allclose(mirrored, 0.5, atol=1e-6)


@pytest.mark.parametrize("knobs, message", [
    ({"hflip": "yes"}, "decision.hflip"),
    ({"shift": -1}, "decision.shift"),
    ({"shift": 1.5}, "decision.shift"),
    ({"shift": True}, "decision.shift"),
    ({"flip": True}, "unknown decision knobs"),
    ({"scales": 1.5}, "decision.scales"),
    ({"scales": "1.5"}, "decision.scales"),
    ({"scales": [1.5, 0]}, "decision.scales"),
    ({"scales": [float("nan")]}, "decision.scales"),
    ({"scales": [True]}, "decision.scales"),
])
def test_bad_knobs_are_clear_errors(knobs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Views.from_params(knobs)


def test_from_params_defaults_to_the_single_view() -> None:
    assert Views.from_params(None) == Views.from_params({}) == Views() and Views().count == 1
    assert Views.from_params({"hflip": True, "shift": 2}) == Views(True, 2)
    enlarged = Views.from_params({"hflip": True, "shift": 2, "scales": [1.5, 2]})
    assert enlarged == Views(True, 2, (1.5, 2.0)) and enlarged.count == 30 and len(enlarged.of(_batch())) == 10


def test_rejects_a_batch_that_is_not_uint8_rgb() -> None:
    with pytest.raises(ValueError):
        Views(hflip=True).of(np.zeros((2, 4, 8), np.uint8))
