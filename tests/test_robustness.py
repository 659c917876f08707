"""Robustness variants: the degradations and the second generator are deterministic, atomic and refuse
bad values clearly; a variant is evaluated like the test split, beside SAM's ideal-point ceiling."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import camprompt.data as data_mod
from camprompt.data import SplitArrays, generate_dataset, load_split, write_split
from camprompt.decision import Decision, Views, decide
from camprompt.perturb import Perturbation, add_noise, jpeg_round_trip
from camprompt.robustness import (
    VariantSpec,
    evaluate_variant,
    evaluated_strategies,
    ideal_points,
    make_variant,
    sam_ceiling,
)
from camprompt.shapes import CLASSES, Outline, ShapeRules, colour_contrast, compose_image, render_coverage, render_shape

DATA = {"backgrounds": "procedural", "width": 64, "height": 48}
FOREIGN = {"min_shape_size": 8.0, "max_shape_size": 26.0, "min_inside": 0.6, "min_contrast": 30.0, "contrast": "mean",
           "exclusive_colour": False, "rasteriser": "antialias"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("robust") / "ds"
    generate_dataset(root, seed=2, sizes={"val": 12}, backgrounds="procedural", progress=False)
    return root


def _images(n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 48, 64, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------
# Degradations
# ------------------------------------------------------------------------------------------------


def test_jpeg_round_trip_is_pils_and_noise_has_the_asked_strength() -> None:
    image = _images(1)[0]
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=75)
    np.testing.assert_array_equal(jpeg_round_trip(image, 75), np.array(Image.open(buf).convert("RGB")))
    flat = np.full((200, 200, 3), 128, np.uint8)
    noisy = add_noise(flat, 4.0, np.random.default_rng(1)).astype(float) - 128
    assert abs(noisy.std() - 4.0) < 0.1 and abs(noisy.mean()) < 0.1


def test_perturbation_is_seeded_and_ordered() -> None:
    images = _images()
    both = Perturbation(jpeg=75, noise=4.0)
    a, b = both.apply(images, seed=3), both.apply(images, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, both.apply(images, seed=4))
    # a JPEG round trip first, then the noise
    jpeg = Perturbation(jpeg=75).apply(images, seed=3)
    np.testing.assert_array_equal(a[1], add_noise(jpeg[1], 4.0, np.random.default_rng([3, 1])))
    np.testing.assert_array_equal(Perturbation().apply(images, seed=0), images)


@pytest.mark.parametrize("params, match", [
    ({"jpeg": 0}, "1..95"), ({"jpeg": 96}, "1..95"), ({"jpeg": 75.5}, "integer"), ({"jpeg": True}, "integer"),
    ({"noise": -1}, ">= 0"), ({"noise": float("nan")}, "finite"), ({"blur": 1}, "unknown perturbation knobs"),
])
def test_bad_perturbations_are_refused(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Perturbation.from_params(params)


# ------------------------------------------------------------------------------------------------
# The second generator
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("knobs, match", [
    ({"min_shape_size": 0}, "min_shape_size"), ({"min_shape_size": 30, "max_shape_size": 20}, "min_shape_size"),
    ({"min_inside": 1.5}, "min_inside"), ({"min_contrast": -1}, "min_contrast"), ({"contrast": "median"}, "contrast"),
    ({"rasteriser": "bresenham"}, "rasteriser"), ({"rotation": -5}, "rotation"), ({"rotation": 270}, "rotation"),
    ({"star_inner": 1.2}, "star_inner"), ({"triangle_height": 0}, "triangle_height"),
    ({"diamond_width": float("nan")}, "diamond_width"),
])
def test_bad_shape_rules_are_refused(knobs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ShapeRules(**knobs)


def _extent(mask: np.ndarray) -> tuple[int, int]:
    ys, xs = np.nonzero(mask)
    return int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1


def test_another_authors_outlines_keep_their_proportions_and_turn_clockwise() -> None:
    ours = {cls: render_shape(cls, 31.5, 23.5, 24, 64, 48) for cls in CLASSES}
    for cls in CLASSES:  # the default outline is ours, pixel for pixel
        np.testing.assert_array_equal(render_shape(cls, 31.5, 23.5, 24, 64, 48, Outline()), ours[cls])
    width, height = _extent(render_shape("triangle", 31.5, 23.5, 24, 64, 48, Outline(triangle_height=0.866)))
    ours_width, ours_height = _extent(ours["triangle"])
    assert abs(height / width - 0.866) < 0.1 and abs(ours_height / ours_width - 1) < 0.1
    width, height = _extent(render_shape("diamond", 31.5, 23.5, 24, 64, 48, Outline(diamond_width=0.7)))
    assert abs(width / height - 0.7) < 0.1
    thin = render_shape("star", 31.5, 23.5, 24, 64, 48, Outline(star_inner=0.382))
    assert thin.sum() < ours["star"].sum() and not (thin & ~ours["star"]).any()
    # a quarter turn clockwise on screen: the triangle's apex points right, its base is the left column
    turned = render_shape("triangle", 31.5, 23.5, 24, 64, 48, Outline(angle=90.0))
    cols = turned.sum(0)[turned.any(0)]
    assert cols[0] > cols[-1]
    np.testing.assert_array_equal(turned, turned[::-1])  # symmetric about the horizontal axis now
    assert render_shape("circle", 31.5, 23.5, 24, 64, 48, Outline(angle=33.0)).sum() == ours["circle"].sum()


def test_a_turning_generator_draws_each_angle_within_its_rotation_and_is_seeded() -> None:
    background = np.full((48, 64, 3), 20, np.uint8)
    rules = ShapeRules(rotation=15.0, diamond_width=0.7)
    drawn = [compose_image(np.random.default_rng(seed), background, "square", rules) for seed in range(8)]
    angles = [info["angle"] for _, _, info in drawn]
    assert all(-15 <= a <= 15 for a in angles) and len(set(angles)) == 8
    again = compose_image(np.random.default_rng(3), background, "square", rules)
    np.testing.assert_array_equal(again[0], drawn[3][0])
    np.testing.assert_array_equal(again[1], drawn[3][1])
    for (_, mask, info) in drawn:
        cx, cy = info["center"]
        expected = render_shape("square", cx, cy, info["size"], 64, 48, rules.outline(info["angle"]))
        np.testing.assert_array_equal(mask, expected)
    assert "angle" not in compose_image(np.random.default_rng(0), background, "square", ShapeRules())[2]


def test_antialiased_shapes_blend_their_edges_and_keep_the_half_covered_mask() -> None:
    coverage = render_coverage("circle", 30.2, 20.7, 15.0, 64, 48)
    assert ((coverage > 0) & (coverage < 1)).any()  # a soft edge
    assert abs((coverage >= 0.5).sum() - render_shape("circle", 30.2, 20.7, 15.0, 64, 48).sum()) <= 12
    background = np.full((48, 64, 3), 20, np.uint8)
    image, mask, info = compose_image(np.random.default_rng(5), background, "star", ShapeRules(**FOREIGN))
    colour = np.array(info["colour"])
    inside = image[mask].astype(float)
    edge = image[~mask & (np.abs(image.astype(int) - 20).sum(-1) > 0)]  # blended pixels outside the mask
    assert len(edge) > 0 and not (edge == colour).all(-1).any()
    assert np.abs(inside - colour).max(axis=1).mean() < np.abs(inside - 20).max(axis=1).mean()


def test_the_weaker_contrast_rule_bounds_only_the_mean() -> None:
    covered = np.array([[0, 0, 0]] * 5 + [[200, 200, 200]] * 5, np.uint8)
    colour = np.array([200, 200, 200], np.uint8)
    assert colour_contrast(colour, covered, "p10") == 0.0  # half the shape matches the background
    assert colour_contrast(colour, covered, "mean") == pytest.approx(np.linalg.norm([100] * 3))


def test_foreign_generation_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        generate_dataset(tmp_path / name, seed=1, sizes={"val": 6}, rules=ShapeRules(**FOREIGN), progress=False, **DATA)
    a, b = load_split(tmp_path / "a", "val"), load_split(tmp_path / "b", "val")
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)


# ------------------------------------------------------------------------------------------------
# Variants
# ------------------------------------------------------------------------------------------------


def test_variant_specs_refuse_bad_params() -> None:
    with pytest.raises(ValueError, match=r"robustness.variants.x: unknown keys \['quality'\]"):
        VariantSpec.from_params("x", {"quality": 75})
    with pytest.raises(ValueError, match="generator must map"):
        VariantSpec.from_params("x", {"generator": "foreign"})
    with pytest.raises(ValueError, match="robustness.variants.x: .*rasteriser"):
        VariantSpec.from_params("x", {"generator": {"rasteriser": "pixel-art"}})
    with pytest.raises(ValueError, match="robustness.variants.x: .*1..95"):
        VariantSpec.from_params("x", {"jpeg": 100})
    with pytest.raises(ValueError, match="width and height apply to a variant drawn by a generator"):
        VariantSpec.from_params("x", {"jpeg": 90, "width": 32, "height": 32})
    for frame in ({"width": 32}, {"width": 32, "height": 0}, {"width": 32.5, "height": 32}, {"width": True, "height": 32}):
        with pytest.raises(ValueError, match="robustness.variants.x: width and height must both be whole numbers"):
            VariantSpec.from_params("x", {"generator": {}, **frame})


def test_the_evaluated_strategies_are_the_named_ones_in_order() -> None:
    strategies = {"basic": {"pipeline": "basic"}, "fg": {"pipeline": "foreground", "search": "s"},
                  "peak": {"pipeline": "gradcam_peak"}}
    params = {"strategies": strategies, "searches": {"s": {}}, "robustness": {"strategies": ["peak", "fg"]}}
    assert list(evaluated_strategies(params)) == ["peak", "fg"]
    assert list(evaluated_strategies(params, ["basic"])) == ["basic"]
    assert evaluated_strategies({**params, "robustness": {}}) == strategies  # unset: all of them
    with pytest.raises(ValueError, match=r"robustness strategies \['fb'\] are not in params `strategies`"):
        evaluated_strategies(params, ["fg", "fb"])
    typo = {**params, "searches": {"t": {}}}  # fg names search "s", which is not there
    with pytest.raises(ValueError, match=r"strategy 'fg': search 's' is not in params `searches`; known: \['t'\]"):
        evaluated_strategies(typo)
    assert list(evaluated_strategies(typo, ["peak"])) == ["peak"]  # only the evaluated strategies are checked


def test_a_degraded_variant_is_the_split_degraded(dataset: Path) -> None:
    spec = VariantSpec.from_params("j", {"jpeg": 75, "noise": 4.0})
    arrays, meta = make_variant(spec, data_root=dataset, split="val", n=5, seed=0, data_params=DATA)
    clean = load_split(dataset, "val", 5)
    np.testing.assert_array_equal(arrays.masks, clean.masks)
    assert arrays.names == clean.names and list(arrays.labels) == list(clean.labels)
    np.testing.assert_array_equal(arrays.images, spec.perturbation.apply(clean.images, seed=spec.seed))
    assert (meta["jpeg"], meta["noise"]) == (75, 4.0)
    again, _ = make_variant(spec, data_root=dataset, split="val", n=5, seed=0, data_params=DATA)
    np.testing.assert_array_equal(again.images, arrays.images)
    with pytest.raises(ValueError, match="fewer than robustness.n"):
        make_variant(spec, data_root=dataset, split="val", n=50, seed=0, data_params=DATA)


def test_a_generator_variant_draws_new_shapes(dataset: Path) -> None:
    spec = VariantSpec.from_params("f", {"generator": FOREIGN, "seed": 3})
    arrays, meta = make_variant(spec, data_root=dataset, split="val", n=4, seed=0, data_params=DATA)
    assert len(arrays) == 4 and arrays.images.shape == (4, 48, 64, 3)
    assert meta["generator"]["rasteriser"] == "antialias" and meta["generator"]["contrast"] == "mean"
    assert not np.array_equal(arrays.masks, load_split(dataset, "val", 4).masks)


def test_a_generator_variant_draws_in_its_own_frame(dataset: Path) -> None:
    spec = VariantSpec.from_params("s", {"generator": {"min_shape_size": 5.0, "max_shape_size": 10.0}, "seed": 3,
                                         "width": 32, "height": 24})
    assert spec.frame == (32, 24)
    arrays, meta = make_variant(spec, data_root=dataset, split="val", n=4, seed=0, data_params=DATA)
    assert arrays.images.shape == (4, 24, 32, 3) and arrays.masks.shape == (4, 24, 32)
    assert (meta["generator"]["width"], meta["generator"]["height"]) == (32, 24)
    extents = [max(np.ptp(np.nonzero(m)[0]), np.ptp(np.nonzero(m)[1])) + 1 for m in arrays.masks]
    assert all(2 <= e <= 11 for e in extents), extents  # shapes of the asked size (5-10 px), in the new frame
    again, _ = make_variant(spec, data_root=dataset, split="val", n=4, seed=0, data_params=DATA)
    np.testing.assert_array_equal(again.images, arrays.images)
    assert VariantSpec.from_params("f", {"generator": FOREIGN}).frame is None


def test_write_split_is_atomic(dataset: Path, tmp_path: Path, crash_on_call: Callable[..., dict[str, int]]) -> None:
    arrays = load_split(dataset, "val", 4)
    out = write_split(tmp_path / "v", "val", arrays, {"variant": "copy"})
    back = load_split(out, "val")
    np.testing.assert_array_equal(back.images, arrays.images)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    crash_on_call(data_mod, "_write_sample", 3)
    with pytest.raises(KeyboardInterrupt):
        write_split(out, "val", SplitArrays(arrays.images[::-1], arrays.masks, arrays.labels, arrays.names), {})
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v"]
    with pytest.raises(ValueError, match="one entry per image"):
        write_split(tmp_path / "w", "val", SplitArrays(arrays.images, arrays.masks, arrays.labels[:2], arrays.names), {})


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------


class OracleSam:
    """A SamPredictor stand-in whose masks are the colour region of the prompt's pixel: single mask = that
    region, multimask = (a part of it, it, it grown)."""

    def set_image(self, image: np.ndarray) -> None:
        self.image = image

    def predict(self, point_coords=None, point_labels=None, box=None, multimask_output=True):
        from scipy import ndimage as ndi

        from camprompt.colour import grow_region

        region = grow_region(self.image, point_coords[point_labels == 1][0], 20.0)
        if not multimask_output:
            return region[None], np.ones(1, np.float32), np.zeros((1, 256, 256), np.float32)
        part = region & (np.arange(region.shape[1])[None] < np.nonzero(region)[1].mean())
        masks = np.stack([part, region, ndi.binary_dilation(region, iterations=2)])
        return masks, np.array([0.9, 0.8, 0.7], np.float32), np.zeros((3, 256, 256), np.float32)


def test_ideal_points_are_the_deepest_pixels_and_the_ceiling_scores_sam(dataset: Path) -> None:
    split = load_split(dataset, "val", 6)
    points = ideal_points(split.masks)
    assert all(m[int(y), int(x)] for m, (x, y) in zip(split.masks, points))
    ceiling = sam_ceiling(OracleSam(), split.images, split.masks)
    assert ceiling["single"] == pytest.approx(1.0) and ceiling["best_of_3"] == pytest.approx(1.0)


def test_a_variant_is_evaluated_like_the_test_split(dataset: Path) -> None:
    """The stand-in classifier of the pipeline tests, on real generated images: every strategy is scored."""
    from test_pipelines import CAMS, ColourClassifier

    split = load_split(dataset, "val", 4)
    strategies = {"peak": {"pipeline": "gradcam_peak", "cam": "layer2"},
                  "fg": {"pipeline": "foreground", "search": "s"}, "fgbg": {"pipeline": "fg_bg", "search": "s"}}
    searches = {"s": {"cam": "layer2", "use_sam": False}}
    classifier, views = ColourClassifier((0, 0, 0)), Views(hflip=True, shift=2)
    summary, runs = evaluate_variant(split, classifier=classifier, predictor=OracleSam(), cam_configs=CAMS,
                                     searches=searches, strategies=strategies, decision=Decision(views))
    assert summary["n_images"] == 4
    decided, _ = decide(classifier, split.images, views)
    single, _ = decide(classifier, split.images, Views())
    assert summary["classifier_accuracy"] == pytest.approx(float((decided == split.labels).mean()))
    assert summary["classifier_single_view_accuracy"] == pytest.approx(float((single == split.labels).mean()))
    assert set(summary["strategies"]) == set(strategies) == set(runs)
    assert summary["sam_ceiling"]["single"] == pytest.approx(1.0)
    for name, run in runs.items():
        assert run.masks.shape == (4, 48, 64) and run.ious.shape == (4,)
        assert summary["strategies"][name]["iou_mean"] == pytest.approx(run.ious.mean())


def test_a_variants_answer_reads_the_outline_of_the_decisions_search(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With decision.outline the answer gets the judge and the regions its search found, even a search no
    evaluated strategy names; a search that params do not hold is a clear error before any work."""
    from test_pipelines import CAMS, ColourClassifier

    split = load_split(dataset, "val", 4)
    strategies = {"peak": {"pipeline": "gradcam_peak", "cam": "layer2"}}
    searches = {"s": {"cam": "layer2", "use_sam": False}}
    seen: dict = {}

    def spy(classifier, images, decision, judge=None, regions=None):
        seen.update(decision=decision, judge=judge, regions=regions)
        return split.labels.copy(), np.eye(5, dtype=np.float32)[split.labels]

    monkeypatch.setattr("camprompt.decision.answer", spy)
    decision, judge = Decision(Views(hflip=True), outline=0.25, search="s"), object()
    summary, _ = evaluate_variant(split, classifier=ColourClassifier((0, 0, 0)), predictor=OracleSam(), cam_configs=CAMS,
                                  searches=searches, strategies=strategies, decision=decision, judge=judge)
    assert seen["decision"] is decision and seen["judge"] is judge and summary["classifier_accuracy"] == 1.0
    assert seen["regions"].shape == (4, 48, 64) and seen["regions"].dtype == bool
    with pytest.raises(ValueError, match="decision.search 'other' is not in params `searches`"):
        evaluate_variant(split, classifier=ColourClassifier((0, 0, 0)), predictor=OracleSam(), cam_configs=CAMS,
                         searches=searches, strategies=strategies, decision=Decision(outline=0.25, search="other"))
