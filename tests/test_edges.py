"""Edge refinement (camprompt.edges): outline pixels go to the side whose colour they carry, nothing
else moves, and bad knobs are refused with a clear message."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from camprompt.edges import FILL_SHARE, refine_edges
from camprompt.pipelines import BasicSamPipeline, GradCAMPeakPipeline
from camprompt.placement import PlacementConfig
from camprompt.search_pipelines import ForegroundBackgroundPipeline, ForegroundPointsPipeline
from camprompt.shapes import render_coverage, render_shape

H, W = 48, 64
FILL, BACK = np.array([230.0, 40.0, 60.0]), np.array([30.0, 90.0, 160.0])


def _painted(coverage: np.ndarray, texture: float = 0.0, seed: int = 0) -> np.ndarray:
    """uint8 image: the fill blended over a background by each pixel's coverage; ``texture`` adds a
    smooth random pattern of that many RGB levels to the background (a CIFAR-like one)."""
    back = np.broadcast_to(BACK, (H, W, 3)).copy()
    if texture:
        noise = np.random.default_rng(seed).normal(size=(H, W, 3))
        back += texture * ndi.gaussian_filter(noise, (3, 3, 0)) / ndi.gaussian_filter(noise, (3, 3, 0)).std()
    blend = coverage[..., None] * FILL + (1 - coverage[..., None]) * back
    return np.clip(np.round(blend), 0, 255).astype(np.uint8)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("cls", ["circle", "square", "triangle", "star", "diamond"])
def test_a_mask_one_pixel_off_snaps_to_a_crisp_shapes_edge(cls: str) -> None:
    shape = render_shape(cls, 30.3, 22.6, 16, W, H)
    image = _painted(shape.astype(float))
    wide, narrow = ndi.binary_dilation(shape), ndi.binary_erosion(shape)  # SAM one pixel out, one pixel in
    # two rounds: a corner pixel lies one step beyond a 4-connected band of 1 around the first outline
    np.testing.assert_array_equal(refine_edges(image, wide, rounds=2), shape)
    got = refine_edges(image, narrow, rounds=2)
    if cls in ("circle", "square", "diamond"):
        np.testing.assert_array_equal(got, shape)
    else:  # the erosion cut a thin tip off; each round grows it back one pixel
        four = refine_edges(image, narrow, rounds=4)
        assert _iou(narrow, shape) < _iou(got, shape) < _iou(four, shape) == 1.0


def test_anti_aliased_edge_pixels_join_from_the_fill_share() -> None:
    coverage = render_coverage("circle", 30.3, 22.6, 15, W, H)
    image = _painted(coverage)
    sam = ndi.binary_dilation(coverage >= 0.5)
    for threshold in (0.3, FILL_SHARE, 0.7):
        want = coverage >= threshold
        got = refine_edges(image, sam, threshold=threshold, rounds=2)
        # every pixel whose share sits clearly on one side of the threshold is decided by it
        clear = np.abs(coverage - threshold) > 0.05
        np.testing.assert_array_equal(got[clear], want[clear])


def test_it_moves_only_outline_pixels_and_only_where_colour_can_tell() -> None:
    shape = render_shape("diamond", 31.0, 24.0, 18, W, H)
    image = _painted(shape.astype(float), texture=12.0)
    sam = ndi.binary_dilation(shape, iterations=3)  # three pixels too wide
    got = refine_edges(image, sam, rounds=1, band=1)
    outline = ndi.binary_dilation(sam) & ~ndi.binary_erosion(sam)
    np.testing.assert_array_equal(got[~outline], sam[~outline])  # one round, one band: nothing else moves
    assert got.sum() < sam.sum()  # ... and the outside ring it could see left the mask
    closer = refine_edges(image, sam, rounds=3)
    assert _iou(closer, shape) > _iou(sam, shape)
    faint = _painted(shape.astype(float) * 0.1)  # fill 10% of the way from the background: a gap of ~23
    np.testing.assert_array_equal(refine_edges(faint, sam, min_gap=40.0), sam)  # colour cannot tell: as SAM drew it


def test_background_texture_off_the_blend_line_keeps_sams_side() -> None:
    shape = render_shape("square", 30.0, 24.0, 14, W, H)
    image = _painted(shape.astype(float))
    row, col = np.argwhere(shape)[0] + [-1, 0]  # the pixel just above the square's top-left corner
    towards = FILL - BACK
    aside = np.array([0.0, 100.0, -50.0])  # orthogonal to the fill-background line
    assert abs(aside @ towards) < 1e-9
    # 60% of the way to the fill, but 0.44 of their distance off the line: a texture, not a blend
    image[row, col] = np.round(BACK + 0.6 * towards + 0.9 * aside).astype(np.uint8)
    np.testing.assert_array_equal(refine_edges(image, shape), shape)
    loose = refine_edges(image, shape, blend_tol=0.5)
    assert loose[row, col] and (loose ^ shape).sum() == 1  # a looser rule takes it for a blend


def test_it_is_deterministic_copies_and_leaves_degenerate_masks_alone() -> None:
    shape = render_shape("star", 28.0, 20.0, 17, W, H)
    image = _painted(render_coverage("star", 28.0, 20.0, 17, W, H), texture=10.0, seed=3)
    sam = ndi.binary_dilation(shape)
    a, b = refine_edges(image, sam, rounds=2), refine_edges(image, sam, rounds=2)
    np.testing.assert_array_equal(a, b)
    assert a is not sam and sam.sum() == ndi.binary_dilation(shape).sum()  # the input is not modified
    np.testing.assert_array_equal(refine_edges(image, sam, rounds=0), sam)
    for degenerate in (np.zeros((H, W), bool), np.ones((H, W), bool)):  # no interior / nothing outside
        np.testing.assert_array_equal(refine_edges(image, degenerate), degenerate)
    single = np.zeros((H, W), bool)
    single[10, 10] = True
    np.testing.assert_array_equal(refine_edges(image, single), single)


def test_bad_inputs_and_knobs_are_refused_with_what_to_do() -> None:
    image = _painted(render_shape("square", 30.0, 24.0, 14, W, H).astype(float))
    mask = render_shape("square", 30.0, 24.0, 14, W, H)
    with pytest.raises(ValueError, match="mask must be bool"):
        refine_edges(image, mask.astype(np.uint8))
    with pytest.raises(ValueError, match="mask must be bool"):
        refine_edges(image, mask[:-1])
    with pytest.raises(TypeError, match="uint8"):
        refine_edges(image.astype(np.float32), mask)
    for bad, match in (({"rounds": -1}, "rounds"), ({"rounds": True}, "rounds"), ({"rounds": 1.5}, "rounds"),
                       ({"threshold": 1.5}, "threshold"), ({"threshold": float("nan")}, "threshold"),
                       ({"sigma": 0.0}, "sigma"), ({"min_gap": -1.0}, "min_gap"), ({"blend_tol": -0.1}, "blend_tol"),
                       ({"band": 0}, "band")):
        with pytest.raises(ValueError, match=match):
            refine_edges(image, mask, **bad)
    for bad, match in (({"edge_rounds": -1}, "edge_rounds"), ({"edge_rounds": True}, "edge_rounds"),
                       ({"edge_threshold": 2.0}, "edge_threshold"), ({"edge_threshold": "high"}, "edge_threshold")):
        with pytest.raises(ValueError, match=match):
            PlacementConfig.from_params(bad)
    assert PlacementConfig.from_params({}).edge_rounds == 0  # off unless a strategy asks for it


class OnePixelWideSam:
    """SAM stand-in whose every proposal is the shape grown by one pixel (its typical edge error)."""

    def __init__(self, shape: np.ndarray) -> None:
        self.mask = ndi.binary_dilation(shape)

    def set_image(self, image: np.ndarray) -> None:
        pass

    def predict(self, point_coords=None, point_labels=None, box=None, multimask_output=True):
        return np.stack([self.mask] * 3), np.array([0.9, 0.8, 0.7], np.float32), np.zeros((3, 256, 256), np.float32)


@pytest.mark.parametrize("cls", [ForegroundPointsPipeline, ForegroundBackgroundPipeline])
def test_search_pipelines_refine_sams_mask_when_asked(cls) -> None:
    shape = render_shape("triangle", 32.0, 24.0, 16, W, H)
    image = _painted(shape.astype(float))[None]
    coords = np.array([[[32.0, 26.0], [2.0, 2.0], [60.0, 45.0]]], np.float32)
    labels = np.array([[1, 0, 0]], np.int64)
    n_bg = 2 if cls is ForegroundBackgroundPipeline else 0
    if not n_bg:
        coords, labels = coords[:, :1], labels[:, :1]
    for rounds, want in ((0, ndi.binary_dilation(shape)), (1, shape)):
        pipe = cls(OnePixelWideSam(shape), None, placement=PlacementConfig(n_bg=n_bg, edge_rounds=rounds))
        masks, scores = pipe.segment_rgb(image, coords, labels)
        np.testing.assert_array_equal(masks[0], want)
        assert scores[0] == pytest.approx(0.9)  # still SAM's predicted IoU of the proposal it kept
        # the report's words say so exactly when the outline is refined
        assert pipe.description.startswith(cls.about)
        assert ("outline pixels" in pipe.description) == bool(rounds)


def test_the_baselines_keep_sams_mask_as_it_is() -> None:
    shape = render_shape("circle", 32.0, 24.0, 16, W, H)
    masks, _ = BasicSamPipeline(OnePixelWideSam(shape)).segment_rgb(_painted(shape.astype(float))[None],
                                                                     np.array([[[32.0, 24.0]]]), np.ones((1, 1), np.int64))
    np.testing.assert_array_equal(masks[0], ndi.binary_dilation(shape))
    for baseline in (BasicSamPipeline(None), GradCAMPeakPipeline(None, None)):
        assert baseline.description == type(baseline).about and "outline" not in baseline.description
