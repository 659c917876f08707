"""Every metric of camprompt.metrics on hand-made masks and points, border cases included."""

from __future__ import annotations

import math

import numpy as np
import pytest

from camprompt.conventions import point_pixels
from camprompt.metrics import (
    image_point_stats,
    iou,
    iou_batch,
    mask_centroid,
    points_in_mask,
    summarize,
)


def _square(h: int = 6, w: int = 8, rows: slice = slice(1, 4), cols: slice = slice(2, 5)) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[rows, cols] = True
    return m


# -- point -> pixel ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "xy, expected",
    [
        ((0.0, 0.0), (0, 0, True)),
        ((2.49, 0.0), (0, 2, True)),
        ((2.5, 0.0), (0, 3, True)),       # half-way rounds up (floor(x + 0.5))
        ((-0.5, 0.0), (0, 0, True)),      # left edge of pixel 0 still belongs to it
        ((-0.51, 0.0), (0, 0, False)),    # beyond the left edge: outside
        ((7.49, 5.49), (5, 7, True)),     # last pixel (W=8, H=6)
        ((7.5, 0.0), (0, 7, False)),      # right edge of the last pixel: outside
        ((0.0, 5.5), (5, 0, False)),      # bottom edge: outside
        ((float("nan"), 1.0), (0, 0, False)),
        ((float("inf"), 1.0), (0, 0, False)),
    ],
)
def test_point_pixels_rounding_and_border(xy: tuple[float, float], expected: tuple[int, int, bool]) -> None:
    rows, cols, valid = point_pixels(np.array([xy]), (6, 8))
    assert (int(rows[0]), int(cols[0]), bool(valid[0])) == expected


def test_point_pixels_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match=r"\(K,2\)"):
        point_pixels(np.zeros((3, 3)), (4, 4))


def test_points_in_mask_inside_edge_and_outside() -> None:
    mask = _square()  # rows 1..3, cols 2..4
    pts = np.array([[2, 1], [4, 3], [4.4, 3.4], [4.5, 3.0], [1.6, 2.0], [-3, 2], [20, 2]], float)
    inside, valid = points_in_mask(pts, mask)
    assert inside.tolist() == [True, True, True, False, True, False, False]
    assert valid.tolist() == [True] * 5 + [False, False]


# -- centroid and IoU -------------------------------------------------------------------------


def test_mask_centroid() -> None:
    assert mask_centroid(_square()).tolist() == [3.0, 2.0]
    assert np.isnan(mask_centroid(np.zeros((4, 4), bool))).all()


def test_iou_cases() -> None:
    a = _square()
    assert iou(a, a) == 1.0
    assert iou(a, ~a) == 0.0
    assert iou(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0  # both empty: defined as 1
    assert iou(np.zeros((3, 3), bool), np.ones((3, 3), bool)) == 0.0
    b = a.copy()
    b[1, 2] = False  # 8 of 9 pixels
    assert iou(b, a) == pytest.approx(8 / 9)
    with pytest.raises(ValueError, match="same shape"):
        iou(a, a[:, :4])


def test_iou_batch_matches_iou() -> None:
    rng = np.random.default_rng(0)
    pred, gt = rng.random((5, 6, 7)) > 0.5, rng.random((5, 6, 7)) > 0.6
    pred[0] = gt[0] = False
    expected = [iou(p, g) for p, g in zip(pred, gt)]
    assert iou_batch(pred, gt) == pytest.approx(expected)
    assert iou_batch(pred, gt)[0] == 1.0


# -- per-image point stats --------------------------------------------------------------------


def test_image_point_stats_counts_and_distances() -> None:
    mask = _square()  # centroid (3, 2)
    coords = np.array([[3, 2], [6, 2], [0, 0], [3, 2], [100, 100], [0, 0]], float)
    labels = np.array([1, 1, 0, 0, 0, -1])
    s = image_point_stats(coords, labels, mask)
    assert (s.n_fg, s.n_bg, s.fg_hits, s.bg_outside) == (2, 3, 1, 1)  # bg point outside the image is no success
    assert s.fg_dist == pytest.approx((0.0 + 3.0) / 2)
    assert s.bg_dist == pytest.approx((math.hypot(3, 2) + 0.0 + math.hypot(97, 98)) / 3)


def test_image_point_stats_empty_mask() -> None:
    s = image_point_stats(np.array([[1.0, 1.0], [2.0, 2.0]]), np.array([1, 0]), np.zeros((4, 4), bool))
    assert (s.fg_hits, s.bg_outside) == (0, 1)
    assert math.isnan(s.fg_dist) and math.isnan(s.bg_dist)


def test_image_point_stats_rejects_bad_labels() -> None:
    with pytest.raises(ValueError, match="labels"):
        image_point_stats(np.zeros((2, 2)), np.array([1, 2]), np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="match"):
        image_point_stats(np.zeros((2, 2)), np.array([1]), np.ones((3, 3), bool))


# -- summary ----------------------------------------------------------------------------------


def test_summarize_keys_values_and_rows() -> None:
    gt = np.stack([_square(), _square(), np.zeros((6, 8), bool)])
    pred = np.stack([_square(), np.zeros((6, 8), bool), np.zeros((6, 8), bool)])
    coords = np.array([[[3, 2], [7, 5]], [[0, 0], [0, 0]], [[1, 1], [0, 0]]], float)
    labels = np.array([[1, 0], [1, -1], [1, -1]])
    summary, rows = summarize(pred, gt, coords, labels, ["circle", "square", "square"],
                              class_names=["circle", "square", "star"])
    assert summary["n_images"] == 3
    assert summary["fg_hit_rate"] == pytest.approx(1 / 3)
    assert summary["bg_outside_rate"] == 1.0
    assert summary["iou_mean"] == pytest.approx(2 / 3)  # 1, 0, 1 (both empty)
    assert summary["iou_median"] == 1.0
    assert summary["iou_std"] == pytest.approx(np.std([1, 0, 1]))
    assert summary["n_failures"] == 1 and summary["failure_iou"] == 0.5
    assert summary["iou_per_class"] == {"circle": 1.0, "square": 0.5, "star": None}
    assert summary["fg_points_per_image"] == 1.0
    assert summary["bg_points_per_image"] == pytest.approx(1 / 3)
    assert summary["fg_dist_mean"] == pytest.approx(np.mean([0.0, math.hypot(3, 2)]))  # image 3: empty mask, skipped
    assert summary["bg_dist_mean"] == pytest.approx(math.hypot(4, 3))
    assert [r["iou"] for r in rows] == [1.0, 0.0, 1.0]
    assert rows[0]["fg_hits"] == 1 and rows[0]["bg_outside"] == 1


def test_summarize_without_background_points_gives_null() -> None:
    gt = np.stack([_square()])
    summary, _ = summarize(gt, gt, np.array([[[3.0, 2.0]]]), np.array([[1]]), ["circle"])
    assert summary["bg_outside_rate"] is None and summary["bg_dist_mean"] is None
    assert summary["fg_hit_rate"] == 1.0 and summary["bg_points_per_image"] == 0.0


def test_summarize_rejects_mismatched_inputs() -> None:
    gt = np.zeros((2, 4, 4), bool)
    with pytest.raises(ValueError, match="number of images"):
        summarize(gt, gt, np.zeros((1, 1, 2)), np.ones((1, 1), int), ["a", "b"])


def test_worst_indices_and_plot(tmp_path) -> None:
    from camprompt.metrics import plot_cases, worst_indices

    assert worst_indices(np.array([0.9, 0.1, 0.5, 0.1]), 3).tolist() == [1, 3, 2]
    images = np.zeros((2, 6, 8, 3), np.uint8)
    masks = np.stack([_square(), _square()])
    coords = np.array([[[3, 2], [7, 5]], [[1, 1], [0, 0]]], float)
    labels = np.array([[1, 0], [1, -1]])
    out = plot_cases(tmp_path / "worst.tmp", images, np.zeros((2, 6, 8)), coords, labels, masks, masks, ["a", "b"])
    assert (tmp_path / "worst.tmp").read_bytes()[:4] == b"\x89PNG" and out == tmp_path / "worst.tmp"
