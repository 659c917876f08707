"""The classifier's answer: which views, their geometry, the averaging, the judge's reading of the
found region's outline, bad knobs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from camprompt.data import normalize
from camprompt.decision import Decision, Views, answer, decide, outline_shares
from camprompt.judge import NO_SHAPE, isolate_region


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
    ({"outline": -0.5}, "decision.outline"),
    ({"outline": True}, "decision.outline"),
    ({"outline": float("inf")}, "decision.outline"),
    ({"outline": 0.25, "search": ""}, "decision.search"),
])
def test_bad_knobs_are_clear_errors(knobs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Decision.from_params(knobs)


def test_from_params_defaults_to_the_single_view_alone() -> None:
    assert Decision.from_params(None) == Decision.from_params({}) == Decision() and Decision().views.count == 1
    assert Decision().outline == 0.0 and Decision().search == "default"
    assert Decision.from_params({"hflip": True, "shift": 2}).views == Views(True, 2)
    enlarged = Decision.from_params({"hflip": True, "shift": 2, "scales": [1.5, 2], "outline": 0.25, "search": "s"})
    assert enlarged.views == Views(True, 2, (1.5, 2.0)) and enlarged.views.count == 30 and len(enlarged.views.of(_batch())) == 10
    assert (enlarged.outline, enlarged.search) == (0.25, "s")


class _Fixed(nn.Module):
    """The same logits for every image; records what it was shown. ``fc`` tells the judge check its outputs."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits, self.fc, self.seen = torch.tensor(logits), nn.Linear(1, len(logits)), []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return self.logits.expand(len(x), -1)


def _regions(n: int = 3, h: int = 6, w: int = 8) -> np.ndarray:
    regions = np.zeros((n, h, w), bool)
    regions[0, 1:4, 1:4] = True
    regions[1, 2:, 4:] = True  # the last image's region stays empty
    return regions


def test_outline_shares_ask_the_judge_about_each_regions_silhouette() -> None:
    images, regions = _batch(), _regions()
    judge = _Fixed([0.0, 1.0, 2.0, 3.0, 4.0, 9.0])  # "no shape" (the last output) would win: it is left out
    shares = outline_shares(judge, images, regions)
    expected = torch.softmax(torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0]), 0).numpy()
    assert shares.shape == (3, NO_SHAPE) and shares.dtype == np.float32
    assert np.allclose(shares[:2], expected, atol=1e-6) and not shares[2].any()  # an empty region: no opinion
    silhouettes = np.stack([isolate_region(images[i], regions[i]) for i in (0, 1)])
    assert torch.allclose(torch.cat(judge.seen), normalize(silhouettes))  # the outlines alone, not the images


def test_outline_shares_refuse_a_model_that_is_no_judge_and_regions_of_another_shape() -> None:
    with pytest.raises(ValueError, match="no-shape judge must have 6 outputs"):
        outline_shares(_Fixed([0.0] * 5), _batch(), _regions())
    with pytest.raises(ValueError, match="regions must be bool"):
        outline_shares(_Fixed([0.0] * 6), _batch(), _regions(h=5))


def test_answer_adds_the_outline_to_the_views_with_its_weight() -> None:
    images, regions = _batch(), _regions()
    classifier = _Fixed([1.0, 0.5, 0.0, 0.0, 0.0])  # the views lean to class 0
    judge = _Fixed([0.0, 6.0, 0.0, 0.0, 0.0, 0.0])  # the outline is clearly class 1
    views, probs = decide(classifier, images, Views(hflip=True))
    alone, alone_probs = answer(classifier, images, Decision(Views(hflip=True)))
    assert np.array_equal(alone, views) and np.allclose(alone_probs, probs)  # outline 0: the views alone, no judge
    decided, mixed = answer(classifier, images, Decision(Views(hflip=True), outline=0.5), judge, regions)
    expected = (probs[:2] + 0.5 * outline_shares(judge, images, regions)[:2]) / 1.5
    assert np.allclose(mixed[:2], expected, atol=1e-6) and np.allclose(mixed[2], probs[2], atol=1e-6)
    assert np.allclose(mixed.sum(1), 1, atol=1e-6)
    assert decided.tolist() == [1, 1, 0]  # the outline overrules unsure views; no region, the views stand
    with pytest.raises(ValueError, match="decision.outline 0.5"):
        answer(classifier, images, Decision(outline=0.5))


def test_rejects_a_batch_that_is_not_uint8_rgb() -> None:
    with pytest.raises(ValueError):
        Views(hflip=True).of(np.zeros((2, 4, 8), np.uint8))
