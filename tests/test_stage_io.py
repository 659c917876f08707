"""The stages' shared entry point and params checks: wrong calls end with a message, not a traceback."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from camprompt.artifacts import ArtifactError
from camprompt.stage_io import run_stage, strategy_params, variant_names


def test_run_stage_passes_the_foreach_key_to_main(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setattr(sys, "argv", ["stages/masks.py", "fg_bg"])
    run_stage(seen.append, "STRATEGY")
    assert seen == ["fg_bg"]


@pytest.mark.parametrize(("argv", "key", "usage"), [
    (["stages/masks.py"], "STRATEGY", "usage: python stages/masks.py STRATEGY"),
    (["stages/masks.py", "a", "b"], "STRATEGY", "usage: python stages/masks.py STRATEGY"),
    (["stages/report.py", "extra"], None, "usage: python stages/report.py"),
])
def test_run_stage_refuses_a_wrong_argument_count(monkeypatch: pytest.MonkeyPatch, argv: list[str],
                                                  key: str | None, usage: str) -> None:
    called = []
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        run_stage(lambda *args: called.append(args), key)
    assert str(exc.value) == usage
    assert not called


def test_run_stage_turns_an_artifact_error_into_its_message_and_exit_1(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def main() -> None:
        raise ArtifactError("data/heatmaps.zarr is missing; run: dvc repro heatmaps")

    monkeypatch.setattr(sys, "argv", ["stages/report.py"])
    with pytest.raises(SystemExit) as exc:
        run_stage(main)
    assert exc.value.code == 1
    assert "error: data/heatmaps.zarr is missing; run: dvc repro heatmaps" in capsys.readouterr().err


def test_run_stage_keeps_the_traceback_of_other_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    def main() -> None:
        raise ValueError("a bug, not a missing artifact")

    monkeypatch.setattr(sys, "argv", ["stages/report.py"])
    with pytest.raises(ValueError, match="a bug"):
        run_stage(main)


def test_unknown_strategy_and_variant_names_list_the_known_ones() -> None:
    params = {"strategies": {"fg_bg": {"pipeline": "foreground_background"}},
              "robustness": {"variants": {"jpeg90": {"jpeg_quality": 90}}}}
    assert strategy_params(params, "fg_bg") == {"pipeline": "foreground_background"}
    with pytest.raises(ArtifactError, match=r"no strategy 'fg'.*\['fg_bg'\]"):
        strategy_params(params, "fg")
    with pytest.raises(ArtifactError, match="must be a mapping with a 'pipeline' key"):
        strategy_params({"strategies": {"odd": 3}}, "odd")
    assert variant_names(params) == ["jpeg90"]
    with pytest.raises(ArtifactError, match=r"no robustness variant 'jpeg75'.*\['jpeg90'\]"):
        variant_names(params, "jpeg75")


def test_the_fitted_classifier_is_the_checkpoint_at_the_trained_size(tmp_path) -> None:
    """Every stage loads one model: the checkpoint's weights, fitted to params data.height x width,
    so an image of another size gives the logits of its resize to that size."""
    import torch
    import torch.nn.functional as F

    from camprompt.classifier import ClassifierError, build_classifier, save_classifier
    from camprompt.input_size import working_size
    from camprompt.stage_io import load_fitted_classifier

    torch.manual_seed(0)
    model = build_classifier(seed=0).eval()
    path = save_classifier(tmp_path / "clf.pt", model)
    params = {"train": {"checkpoint": str(tmp_path / "missing.pt")}, "data": {"height": 48, "width": 64},
              "device": "cpu"}
    fitted = load_fitted_classifier(params, checkpoint=path)
    assert working_size(fitted) == (48, 64)
    assert not fitted.training
    small = torch.rand(2, 3, 24, 32)
    with torch.no_grad():
        want = model(F.interpolate(small, size=(48, 64), mode="bilinear", align_corners=False,
                                   antialias=True))
        assert torch.allclose(fitted(small), want, atol=1e-5)
    with pytest.raises(ClassifierError, match="missing.pt does not exist"):
        load_fitted_classifier(params)  # the default is params train.checkpoint


def test_regions_are_loaded_only_for_the_evaluated_images_and_the_current_search(tmp_path, monkeypatch) -> None:
    from camprompt.artifacts import save_arrays
    from camprompt.stage_io import load_regions, region_store

    monkeypatch.chdir(tmp_path)
    regions, seeds = np.zeros((2, 4, 5), bool), np.ones((2, 2), np.float32)
    regions[1, 1:3, 2:4] = True
    save_arrays(region_store("s"), {"regions": regions, "seeds": seeds}, {"names": ["a", "b"], "params": {"grid_step": 4}})
    params = {"searches": {"s": {"grid_step": 4}}}
    found, found_seeds = load_regions(params, "s", ["a", "b"])
    assert np.array_equal(found, regions) and np.array_equal(found_seeds, seeds)
    with pytest.raises(ArtifactError, match="no search config 'x'"):
        load_regions(params, "x", ["a", "b"])
    with pytest.raises(ArtifactError, match="other search params; run `dvc repro regions@s`"):
        load_regions({"searches": {"s": {"grid_step": 2}}}, "s", ["a", "b"])
    with pytest.raises(ArtifactError):
        load_regions(params, "s", ["a", "c"])
