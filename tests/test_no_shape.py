"""The no-shape judge: its training, its verdict in the search's evidence, and loading it for a stage;
and the classifier's own verdict on the same silhouettes (``keep``, ``agree``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_pipelines import H, W, ColourClassifier, _scene

from camprompt.artifacts import ArtifactError
from camprompt.classifier import build_classifier, save_classifier
from camprompt.data import CLASSES, generate_dataset, load_split, normalize
from camprompt.input_size import fit_input_size
from camprompt.judge import NO_SHAPE, ClassifierJudge, check_no_shape_judge, isolate_region
from camprompt.no_shape import (JudgeConfig, degraded_copies, faded, faded_copies, frame_cut, frame_cuts,
                                 train_no_shape_judge, training_silhouettes, with_no_shape_class)
from camprompt.search import RegionSearch, SearchConfig
from camprompt.stage_io import load_fitted_judge

CAM = {"method": "gradcam", "layers": ["layer2"]}


@pytest.fixture(scope="module")
def train_split(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("judge") / "shapes"
    generate_dataset(root, seed=0, sizes={"train": 9}, backgrounds="procedural", progress=False)
    return load_split(root, "train")


def _classifier() -> torch.nn.Module:
    return fit_input_size(build_classifier(seed=0), (H, W)).eval()


def test_the_judge_starts_as_the_classifier_with_a_neutral_none_output() -> None:
    classifier = _classifier()
    x = normalize(_scene()[0][None])
    with torch.no_grad():
        before = classifier(x)
        judge = with_no_shape_class(classifier)
        after = judge(x)
    assert after.shape == (1, NO_SHAPE + 1) and judge.camprompt_arch["num_classes"] == len(CLASSES) + 1
    assert torch.allclose(after[:, :NO_SHAPE], before, atol=1e-5) and float(after[0, NO_SHAPE]) == 0.0
    with pytest.raises(ValueError, match="expected a 5-class classifier"):
        with_no_shape_class(judge)  # twice would add a 7th output


def test_training_leaves_the_classifier_alone_and_repeats_with_its_seed(train_split) -> None:
    classifier = _classifier()
    weights = {k: v.clone() for k, v in classifier.state_dict().items()}
    config = JudgeConfig(images=6, epochs=1, batch_size=8)
    first = train_no_shape_judge(classifier, train_split, CAM, config, seed=3, progress=False)
    again = train_no_shape_judge(classifier, train_split, CAM, config, seed=3, progress=False)
    other = train_no_shape_judge(classifier, train_split, CAM, config, seed=4, progress=False)
    assert all(torch.equal(weights[k], v) for k, v in classifier.state_dict().items())
    assert classifier.fc.out_features == len(CLASSES)
    check_no_shape_judge(first)
    assert not first.training and first.camprompt_input_size == (H, W)  # fitted like the classifier
    # every image gives its shape (class) and some background blobs (none)
    assert first.camprompt_meta["silhouettes"] > first.camprompt_meta["none"] > 0
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    assert not all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), other.state_dict().values()))
    with pytest.raises(ValueError, match="wants 50 training images, the split holds 9"):
        train_no_shape_judge(classifier, train_split, CAM, JudgeConfig(images=50), progress=False)


def test_degraded_copies_keep_a_third_clean_and_repeat(train_split) -> None:
    images = train_split.images[:6]
    config = JudgeConfig()
    out = degraded_copies(images, config, np.random.default_rng(0))
    assert np.array_equal(out, degraded_copies(images, config, np.random.default_rng(0)))
    assert np.array_equal(out[0::3], images[0::3]) and out.dtype == np.uint8
    assert all(not np.array_equal(out[i], images[i]) for i in (1, 2, 4, 5))
    assert not np.array_equal(out[2], degraded_copies(images, JudgeConfig(noise=0.0), np.random.default_rng(0))[2])


@pytest.mark.parametrize(("knobs", "message"), [
    ({"imgs": 10}, r"unknown judge knobs \['imgs'\]"),
    ({"images": 0}, "images must be >= 1"),
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"blobs": -1}, "blobs must be >= 0"),
    ({"miss_iou": 0.9, "match_iou": 0.8}, "miss_iou < match_iou"),
    ({"lr": 0.0}, "lr must be > 0"),
    ({"cut": 1.5}, "cut is a share of the shape silhouettes, 0..1"),
    ({"cut_inside": [0.9, 0.5]}, r"cut_inside must be \[low, high\] with 0 < low <= high < 1"),
    ({"cut_inside": [0.5, 1.0]}, "cut_inside must be"),
    ({"fade": -0.1}, "fade is a share of the shape silhouettes, 0..1"),
    ({"fade_contrast": [0, 60]}, r"fade_contrast must be \[low, high\] with 0 < low <= high"),
    ({"fade_contrast": [60, 20]}, "fade_contrast must be"),
])
def test_judge_config_rejects_typos_and_bad_values(knobs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JudgeConfig.from_params(knobs)
    assert JudgeConfig.from_params({"checkpoint": "data/judge.pt", "images": 10}).images == 10


def _square_silhouette() -> np.ndarray:
    """A two-colour picture: a 10x10 square at rows 10-19, columns 20-29 on a flat background."""
    picture = np.full((H, W, 3), (10, 20, 30), np.uint8)
    picture[10:20, 20:30] = (200, 100, 50)
    return picture


@pytest.mark.parametrize(("side", "kept_cols", "kept_rows"), [
    (0, slice(0, 6), slice(10, 20)),    # left: 6 of 10 columns stay
    (1, slice(W - 6, W), slice(10, 20)),
    (2, slice(20, 30), slice(0, 6)),    # up: 6 of 10 rows stay
    (3, slice(20, 30), slice(H - 6, H)),
])
def test_frame_cut_moves_the_shape_out_until_the_share_is_left(side: int, kept_cols: slice, kept_rows: slice) -> None:
    picture = _square_silhouette()
    cut = frame_cut(picture, 0.65, side)  # at most 65 of 100 pixels: 6 columns or rows of 10
    expected = np.full_like(picture, (10, 20, 30))
    expected[kept_rows, kept_cols] = (200, 100, 50)
    assert cut is not None and cut.dtype == np.uint8 and np.array_equal(cut, expected)
    assert frame_cut(np.full_like(picture, 7), 0.65, side) is None  # one colour: nothing to cut


def test_frame_cuts_copy_a_share_of_the_shapes_only_and_repeat_with_the_rng() -> None:
    shape = _square_silhouette()
    pictures = np.stack([shape, shape, shape, np.full_like(shape, 9)])
    labels = np.array([1, NO_SHAPE, 2, 3])
    xs, ys = frame_cuts(pictures, labels, JudgeConfig(cut=1.0), np.random.default_rng(0))
    assert ys == [1, 2]  # every shape silhouette once; none for "none" or a one-colour picture
    for x in xs:  # at most cut_inside's high end (0.85) of the 100 pixels left, whole columns or rows of 10
        assert 0 < (x == (200, 100, 50)).all(-1).sum() <= 85
    again, _ = frame_cuts(pictures, labels, JudgeConfig(cut=1.0), np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(xs, again))
    assert frame_cuts(pictures, labels, JudgeConfig(cut=0.0), np.random.default_rng(0)) == ([], [])


def test_faded_moves_the_fill_towards_the_background_to_the_contrast() -> None:
    picture = _square_silhouette()  # fill (200, 100, 50) on (10, 20, 30): 207.1 apart
    out = faded(picture, 30.0)
    assert out is not None and np.array_equal(out[0, 0], (10, 20, 30))
    assert (out[10:20, 20:30] == out[15, 25]).all() and (out[:10] == (10, 20, 30)).all()
    step = out[15, 25].astype(float) - (10, 20, 30)
    assert abs(np.linalg.norm(step) - 30.0) < 1.0  # rounded to whole RGB steps
    line = np.array([190.0, 80.0, 20.0])  # fill - background: the faded fill stays on this line
    assert np.allclose(step / np.linalg.norm(step), line / np.linalg.norm(line), atol=0.03)
    assert np.array_equal(faded(picture, 300.0), picture)  # closer already: unchanged
    assert faded(np.full_like(picture, 7), 30.0) is None  # one colour: no shape to fade


def test_faded_copies_take_a_share_of_the_shapes_only() -> None:
    shape = _square_silhouette()
    pictures = np.stack([shape, shape, shape, np.full_like(shape, 9)])
    labels = np.array([1, NO_SHAPE, 2, 3])
    xs, ys = faded_copies(pictures, labels, JudgeConfig(fade=1.0, fade_contrast=(20.0, 40.0)), np.random.default_rng(0))
    assert ys == [1, 2]  # every shape silhouette once; none for "none" or a one-colour picture
    for x in xs:
        assert 19.0 <= np.linalg.norm(x[15, 25].astype(float) - (10, 20, 30)) <= 41.0
    assert faded_copies(pictures, labels, JudgeConfig(fade=0.0), np.random.default_rng(0)) == ([], [])


@pytest.mark.parametrize("knob", ["cut", "fade"])
def test_training_silhouettes_add_copies_of_the_shapes_and_keep_the_others(train_split, knob: str) -> None:
    classifier = _classifier()
    plain_x, plain_y = training_silhouettes(train_split, classifier, CAM, JudgeConfig(images=6), seed=1)
    more_x, more_y = training_silhouettes(train_split, classifier, CAM, JudgeConfig(images=6, **{knob: 1.0}), seed=1)
    n = len(plain_y)
    assert np.array_equal(more_x[:n], plain_x) and np.array_equal(more_y[:n], plain_y)
    assert len(more_y) - n == int((plain_y != NO_SHAPE).sum()) and (more_y[n:] != NO_SHAPE).all()
    both_x, _ = training_silhouettes(train_split, classifier, CAM, JudgeConfig(images=6, cut=1.0, fade=1.0), seed=1)
    assert len(both_x) == n + 2 * (len(more_y) - n)  # each knob copies the plain silhouettes


def _shape_and_blob() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A scene, its shape's mask and a background blob's mask (the two candidates of the tests below)."""
    image, shape = _scene()
    blob = np.zeros_like(shape)
    blob[2:8, 2:12] = True
    return image, shape, blob


def _choose(image: np.ndarray, candidates: list[np.ndarray], evidence: dict[str, np.ndarray], **knobs) -> np.ndarray:
    """The region the search chooses from ``candidates`` given only the classifier/judge ``evidence``."""
    cfg = SearchConfig(use_sam=False, w_flatness=0, w_ring=0, w_heat=0, w_heat_near=0, **knobs)
    return RegionSearch(cfg, None)._choose(image, np.zeros((H, W)), candidates, evidence).region


def test_the_verdict_is_one_minus_p_none_of_each_silhouette() -> None:
    """ColourClassifier's last output is high where the shape's colour is absent: a stand-in judge
    that calls the shape's silhouette a shape and a background blob's silhouette none."""
    image, shape, blob = _shape_and_blob()
    masks = np.stack([shape, blob])
    plain = ClassifierJudge(ColourClassifier((250, 20, 200)), normalize).evidence([(image, masks, 0)])[0]
    assert "keep_judge" not in plain
    stand_in = ColourClassifier((250, 20, 200))
    judged = ClassifierJudge(ColourClassifier((250, 20, 200)), normalize, no_shape=stand_in).evidence(
        [(image, masks, 0), (image, masks[:0], 0), (image, masks[1:], 0)])
    for key in ("drop", "cleared", "keep", "agree"):  # the classifier's own probes are unchanged
        assert np.array_equal(judged[0][key], plain[key])
    assert [len(ev["keep_judge"]) for ev in judged] == [2, 0, 1]
    assert judged[0]["keep_judge"][0] > 0.5 > judged[0]["keep_judge"][1]
    assert judged[2]["keep_judge"][0] == pytest.approx(judged[0]["keep_judge"][1])
    p_none = ClassifierJudge(stand_in, normalize).probabilities(isolate_region(image, shape)[None])[0, -1]
    assert judged[0]["keep_judge"][0] == pytest.approx(1.0 - p_none)


def test_the_search_weighs_the_judge_and_refuses_to_run_without_it() -> None:
    image, shape, blob = _shape_and_blob()
    # the classifier is fooled (both silhouettes look like shapes); the judge is not
    evidence = {"drop": np.zeros(2), "cleared": np.zeros(2), "keep": np.array([0.8, 0.9]),
                "keep_judge": np.array([0.9, 0.1])}
    assert np.array_equal(_choose(image, [shape, blob], evidence), blob)
    assert np.array_equal(_choose(image, [shape, blob], evidence, w_keep=0.0, w_keep_judge=2.0), shape)
    config = SearchConfig(use_sam=False, w_keep_judge=2.0)
    with pytest.raises(RuntimeError, match="no judge was given"):
        RegionSearch(config, ColourClassifier((250, 20, 200))).regions(image[None], np.zeros((1, H, W)), [0])
    with pytest.raises(ValueError, match="w_keep_judge >= 0"):
        SearchConfig.from_params({"w_keep_judge": -1.0})
    found = RegionSearch(config, ColourClassifier((250, 20, 200)), judge=ColourClassifier((250, 20, 200))).regions(
        image[None], np.zeros((1, H, W)), [0])
    assert "keep_judge" in found[0].features[0]


def test_a_stage_loads_the_judge_only_when_a_search_weighs_it_or_the_decision_reads_outlines(tmp_path: Path) -> None:
    from camprompt.decision import Decision

    params = {"device": "cpu", "data": {"height": H, "width": W}, "train": {"checkpoint": str(tmp_path / "none.pt")},
              "judge": {"checkpoint": str(tmp_path / "judge.pt")},
              "searches": {"plain": {"w_keep": 2.0}, "judged": {"w_keep_judge": 2.0}}}
    assert load_fitted_judge(params, ["plain"]) is None  # nothing is read
    assert load_fitted_judge(params, ["plain"], Decision(outline=0.0)) is None
    with pytest.raises(ArtifactError, match=r"judge.pt does not exist"):
        load_fitted_judge(params, ["plain"], Decision(outline=0.25))
    with pytest.raises(ArtifactError, match=r"judge.pt does not exist; run `dvc repro train_judge`"):
        load_fitted_judge(params, ["plain", "judged"])
    save_classifier(tmp_path / "judge.pt", build_classifier(seed=0))  # a 5-class network is no judge
    with pytest.raises(ValueError, match="must have 6 outputs"):
        load_fitted_judge(params, ["judged"])
    save_classifier(tmp_path / "judge.pt", with_no_shape_class(build_classifier(seed=0)))
    judge = load_fitted_judge(params, ["judged"])
    assert judge.fc.out_features == 6 and judge.camprompt_input_size == (H, W) and not judge.training


def test_agree_is_the_silhouettes_probability_of_the_explained_class() -> None:
    """``keep`` takes the best class of a silhouette; ``agree`` only the class the image is taken
    for, so a blob that looks like some other shape scores low."""
    image, shape, blob = _shape_and_blob()
    judge = ClassifierJudge(ColourClassifier((250, 20, 200)), normalize)
    alone = judge.probabilities(np.stack([isolate_region(image, m) for m in (shape, blob)]))
    for target in (0, 2):
        ev = judge.evidence([(image, np.stack([shape, blob]), target)])[0]
        assert np.array_equal(ev["agree"], alone[:, target])
        assert np.array_equal(ev["keep"], alone.max(1))
    # ColourClassifier: class 0 = the shape's colour is present, class 2 = it is absent
    assert alone[0, 0] > 0.5 > alone[1, 0] and alone[1, 2] > 0.5


def test_the_search_weighs_agree() -> None:
    image, shape, blob = _shape_and_blob()
    # both silhouettes are confident shapes, but only the first is the class the image is taken for
    evidence = {"drop": np.zeros(2), "cleared": np.zeros(2), "keep": np.array([0.8, 0.9]), "agree": np.array([0.8, 0.1])}
    assert np.array_equal(_choose(image, [shape, blob], evidence), blob)
    assert np.array_equal(_choose(image, [shape, blob], evidence, w_keep=0.0, w_agree=1.0), shape)
