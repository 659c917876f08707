"""Tests for camprompt.classifier: architecture, augmentation, a short training run, evaluation
and checkpoints (round trip, atomicity, missing/corrupt files). Tiny data, one thread: a few seconds.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from camprompt.artifacts import ArtifactError
from camprompt.augment import turned_and_stretched
from camprompt.classifier import (
    Augment,
    ClassifierError,
    TrainConfig,
    build_classifier,
    evaluate,
    load_classifier,
    predict_logits,
    predict_probabilities,
    save_classifier,
    train_classifier,
)
from camprompt.data import CLASSES, generate_dataset, load_split, normalize

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cls") / "ds"
    generate_dataset(root, seed=0, sizes={"train": 20, "val": 10}, backgrounds="procedural", progress=False)
    return root


@pytest.mark.parametrize("stem,size", [("imagenet", (12, 16)), ("stride2", (24, 32))])
def test_build_classifier_keeps_torchvision_names(stem: str, size: tuple[int, int]) -> None:
    model = build_classifier(stem=stem).eval()
    names = dict(model.named_modules())
    for name in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"):
        assert name in names
    assert model.fc.out_features == len(CLASSES)
    seen: dict[str, torch.Size] = {}

    def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        seen["shape"] = output.shape[-2:]

    model.layer1.register_forward_hook(hook)
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 48, 64))
    assert out.shape == (2, 5) and tuple(seen["shape"]) == size
    with pytest.raises(ValueError, match="stem"):
        build_classifier(stem="huge")


# Every augmentation off: a test switches on only the one it looks at.
STILL = dict(translate=0, hflip=0, channel_permute=0, brightness=0, contrast=0, noise=0, blur=0)


def test_augment_keeps_shape_range_and_is_seeded() -> None:
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (8, 48, 64, 3), dtype=np.uint8))
    a = Augment()(images, torch.Generator().manual_seed(1))
    b = Augment()(images, torch.Generator().manual_seed(1))
    c = Augment()(images, torch.Generator().manual_seed(2))
    assert a.shape == (8, 3, 48, 64) and a.dtype == torch.float32
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    none = Augment(**STILL)
    plain = none(images, torch.Generator())
    assert torch.allclose(plain, images.permute(0, 3, 1, 2).float() / 255)
    # Translation alone moves content; the only new value it brings is the black zero padding.
    shifted = Augment(**{**STILL, "translate": 3})(images, torch.Generator().manual_seed(0))
    assert set(torch.unique(shifted[0]).tolist()) <= set(torch.unique(plain[0]).tolist()) | {0.0}
    assert not torch.equal(shifted, plain)
    # JPEG alone: every image changes (block artefacts), nothing moves far, and it is seeded too.
    only_jpeg = dict(**STILL, jpeg=1.0, jpeg_quality=[40, 60])
    smooth = torch.from_numpy(np.repeat(np.linspace(0, 255, 64, dtype=np.uint8)[None, None, :, None], 3, 3)).expand(8, 48, 64, 3)
    j1 = Augment(**only_jpeg)(images, torch.Generator().manual_seed(3))
    assert torch.equal(j1, Augment(**only_jpeg)(images, torch.Generator().manual_seed(3)))
    assert all(not torch.equal(j1[i], plain[i]) for i in range(8))
    js = Augment(**only_jpeg)(smooth.contiguous(), torch.Generator().manual_seed(3))
    assert float((js - smooth.permute(0, 3, 1, 2).float() / 255).abs().mean()) < 0.05


def test_augment_affine_turns_and_stretches_about_the_centre() -> None:
    """The turn is a true one (a quarter turn of a square picture is rot90), the stretch keeps the
    area, and with ``affine`` 0 the generator's stream is untouched, so older recipes train as before."""
    rng = np.random.default_rng(4)
    square = torch.from_numpy(rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)).permute(0, 3, 1, 2).float() / 255
    quarter = turned_and_stretched(square, torch.full((3,), math.pi / 2), torch.zeros(3))
    assert torch.allclose(quarter, torch.rot90(square, -1, dims=(2, 3)), atol=1e-5)  # clockwise on screen
    assert torch.allclose(turned_and_stretched(square, torch.zeros(3), torch.zeros(3)), square, atol=1e-6)
    ys, xs = np.mgrid[0:48, 0:64]
    disk = ((xs - 31.5) ** 2 + (ys - 23.5) ** 2 <= 10.0 ** 2).astype(np.uint8) * 255
    disks = torch.from_numpy(np.repeat(disk[None, :, :, None], 3, 3)).expand(16, 48, 64, 3).contiguous()
    stretched = Augment(**STILL, affine=1.0, rotate=0.0, stretch=0.45)(disks, torch.Generator().manual_seed(1))
    for image in stretched[:, 0].numpy():
        ys_in, xs_in = np.nonzero(image >= 0.5)
        aspect = (xs_in.max() - xs_in.min() + 1) / (ys_in.max() - ys_in.min() + 1)
        assert 1 / 1.45 - 0.1 <= aspect <= 1.45 + 0.1
        assert abs(image.sum() - np.pi * 100) < 0.08 * np.pi * 100
    assert len({round(float(s.sum()), 1) for s in stretched[:, 0]}) > 1  # each image its own draw
    # At a share of one half, the images not drawn pass through untouched and the others are warped.
    half = Augment(**STILL, affine=0.5, rotate=30.0, stretch=0.45)(disks, torch.Generator().manual_seed(3))
    untouched = [torch.equal(h, p) for h, p in zip(half, disks.permute(0, 3, 1, 2).float() / 255)]
    assert 0 < sum(untouched) < len(untouched)
    images = torch.from_numpy(rng.integers(0, 256, (8, 48, 64, 3), dtype=np.uint8))
    assert torch.equal(Augment(affine=0.0, rotate=40.0)(images, torch.Generator().manual_seed(2)),
                       Augment()(images, torch.Generator().manual_seed(2)))
    for bad in ({"affine": 1.5}, {"rotate": -1.0}, {"stretch": float("nan")}, {"hflip": -0.1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Augment(**bad)


def test_training_overfits_a_handful_and_is_deterministic(tiny: Path) -> None:
    train = load_split(tiny, "train", limit=10)
    # Seeded weights and 40 full-batch steps: enough for BatchNorm's running statistics (what
    # evaluate uses) to settle on the batch's own, so every CPU scores these ten images alike.
    cfg = TrainConfig(epochs=40, batch_size=10, lr=2e-3, label_smoothing=0.0, schedule="onecycle",
                      augment=False, threads=1)
    model = build_classifier(seed=0)
    before = evaluate(model, train)
    history = train_classifier(model, train, None, cfg, seed=0, progress=False)
    after = evaluate(model, train)
    assert len(history["epochs"]) == 40 and history["seconds"] > 0
    assert history["epochs"][-1]["train_loss"] < history["epochs"][0]["train_loss"]
    assert after["loss"] < before["loss"]
    assert after["accuracy"] == 1.0
    assert not model.training

    small = TrainConfig(epochs=1, batch_size=8, threads=1)
    torch.rand(3)  # the global RNG's state must not matter
    m1 = build_classifier(seed=5)
    m2 = build_classifier(seed=5)
    for p1, p2 in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(p1, p2), "the same seed must give the same initial weights"
    assert not torch.equal(build_classifier(seed=6).conv1.weight, m1.conv1.weight)
    h1 = train_classifier(m1, train, load_split(tiny, "val"), small, seed=5, progress=False)
    h2 = train_classifier(m2, train, load_split(tiny, "val"), small, seed=5, progress=False, device="cpu")  # as params `device: cpu`
    assert h1["epochs"][0]["val_accuracy"] == h2["epochs"][0]["val_accuracy"]
    for p1, p2 in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(p1, p2)


@pytest.mark.parametrize("pct_start", [0.25, 0.5, 0.1, 0.3])
def test_onecycle_schedule_runs_for_any_number_of_steps(pct_start: float) -> None:
    """Short runs too: torch's OneCycleLR divides by zero when pct_start * steps == 1 (e.g. 4 steps at 0.25)."""
    from camprompt.classifier import _make_scheduler

    for steps in range(1, 25):
        param = nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([param], lr=0.1)
        sched = _make_scheduler(opt, TrainConfig(lr=0.1, pct_start=pct_start), steps)
        lrs = []
        for _ in range(steps):
            opt.step()
            sched.step()
            lrs.append(opt.param_groups[0]["lr"])
        assert all(math.isfinite(lr) and 0 < lr <= 0.1 for lr in lrs), (steps, lrs)
    with pytest.raises(ValueError, match="pct_start"):
        _make_scheduler(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1), TrainConfig(pct_start=1.0), 10)


def test_train_rejects_bad_input() -> None:
    model = build_classifier()
    with pytest.raises(ValueError, match="uint8"):
        train_classifier(model, (np.zeros((2, 48, 64, 3), np.float32), np.zeros(2, np.int64)),
                         config=TrainConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match="labels must lie"):
        train_classifier(model, (np.zeros((2, 48, 64, 3), np.uint8), np.array([0, 7])),
                         config=TrainConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match="unknown keys"):
        TrainConfig.from_params({"epochs": 1, "learning_rate": 0.1})


def test_evaluate_matches_manual_count(tiny: Path) -> None:
    val = load_split(tiny, "val")
    model = build_classifier().eval()
    scores = evaluate(model, val)
    with torch.no_grad():
        pred = model(normalize(val.images)).argmax(1).numpy()
    assert scores["n"] == 10
    assert scores["accuracy"] == pytest.approx(float((pred == val.labels).mean()))
    confusion = np.array(scores["confusion"])
    assert confusion.sum() == 10 and np.trace(confusion) == int((pred == val.labels).sum())
    for c, name in enumerate(CLASSES):
        n_c = int((val.labels == c).sum())
        expected = float(((pred == c) & (val.labels == c)).sum() / n_c) if n_c else None
        assert scores["per_class_accuracy"][name] == expected


class _Fails(nn.Module):
    """A model that records whether autograd was on and then raises, as a broken forward pass would."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 6)
        self.grad_enabled: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.grad_enabled.append(torch.is_grad_enabled())
        raise RuntimeError("broken forward")


def test_predict_logits_runs_without_autograd_and_restores_the_mode_even_on_an_error() -> None:
    model = build_classifier(seed=0).train()
    images = np.random.default_rng(0).integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    logits = predict_logits(model, images, batch_size=2)
    assert logits.shape == (3, len(CLASSES)) and not logits.requires_grad
    assert model.training  # a model the caller is training stays in training mode
    failing = _Fails().train()
    with pytest.raises(RuntimeError, match="broken forward"):
        predict_logits(failing, images)
    assert failing.grad_enabled == [False] and failing.training
    assert predict_logits(failing, images[:0]).shape == (0, 6)  # no image: the head's width, no call


def test_predict_probabilities_is_the_softmax_of_the_logits_in_float32() -> None:
    model = build_classifier(seed=0)
    images = np.random.default_rng(1).integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    probs = predict_probabilities(model, images, batch_size=2)
    assert probs.dtype == np.float32 and probs.shape == (3, len(CLASSES))
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
    assert np.array_equal(probs, predict_logits(model, images, batch_size=2).softmax(1).numpy())
    assert predict_probabilities(model, images[:0]).shape == (0, len(CLASSES))


def test_checkpoint_round_trip(tmp_path: Path, tiny: Path) -> None:
    model = build_classifier(stem="stride2")
    with torch.no_grad():
        model.fc.bias.add_(torch.arange(5.0))
    path = save_classifier(tmp_path / "sub" / "clf.pt", model, {"note": "hi", "accuracy": {"val": 0.5}})
    assert [p.name for p in path.parent.iterdir()] == ["clf.pt"]  # no temporary left behind
    loaded = load_classifier(path)
    assert not loaded.training and isinstance(loaded.maxpool, nn.Identity)
    assert loaded.camprompt_meta["note"] == "hi"
    x = normalize(load_split(tiny, "val").images)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))


def test_failed_save_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_classifier(tmp_path / "clf.pt", build_classifier(), {"v": 1})
    before = path.read_bytes()

    def broken_save(*args, **kwargs):  # type: ignore[no-untyped-def]
        Path(args[1]).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_classifier(path, build_classifier(), {"v": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["clf.pt"]


def test_missing_and_corrupt_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(ClassifierError, match="dvc repro train"):
        load_classifier(tmp_path / "absent.pt")
    good = save_classifier(tmp_path / "good.pt", build_classifier(), {})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ClassifierError, match="not a readable classifier checkpoint"):
        load_classifier(truncated)
    (tmp_path / "junk.pt").write_bytes(b"\x00not a checkpoint")
    with pytest.raises(ClassifierError, match="not a readable"):
        load_classifier(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ClassifierError, match="not a camprompt classifier"):
        load_classifier(tmp_path / "foreign.pt")
    assert issubclass(ClassifierError, ArtifactError)
