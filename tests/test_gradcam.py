"""Tests for camprompt.gradcam: the maths against independent computations, and the behaviours
that trip users of other CAM libraries (no_grad, frozen weights, in-place ReLU, hooks, flags...).

The reference implementation below deliberately shares no code with the module: one
``torch.autograd.grad`` per image on an explicit features/head split, the paper formulas in
numpy (float64), OpenCV bilinear resizing (half-pixel centres, like align_corners=False).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torchvision.models import DenseNet, resnet18

from camprompt.cam_capture import minmax_scale, resolve_layers
from camprompt.gradcam import (
    CAM_METHODS,
    BaseCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    compute_split_heatmaps,
)
from camprompt.saliency import argmax_hit_rate, argmax_points, plot_heatmaps

torch.set_num_threads(1)
H, W = 48, 64
METHODS = ["gradcam", "gradcam++", "layercam", "hirescam"]


# ------------------------------------------------------------------------------------------
# Independent reference
# ------------------------------------------------------------------------------------------


def _paper_map(method: str, a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """One image, one layer: (C,h,w) activations and gradients -> ReLU(weighted sum) (h,w)."""
    if method == "gradcam":  # Selvaraju et al., eq. 1-2
        w = g.mean(axis=(1, 2))[:, None, None]
    elif method == "gradcam++":  # Chattopadhyay et al., eq. 19 + 10
        s = a.sum(axis=(1, 2))[:, None, None]
        den = 2 * g**2 + s * g**3
        alpha = np.where(den != 0, g**2 / np.where(den != 0, den, 1.0), 0.0)
        w = (alpha * np.maximum(g, 0)).sum(axis=(1, 2))[:, None, None]
    elif method == "layercam":
        w = np.maximum(g, 0)
    elif method == "hirescam":
        w = g
    else:
        raise AssertionError(method)
    return np.maximum((w * a).sum(axis=0), 0)


def _scale(m: np.ndarray) -> np.ndarray:
    up = cv2.resize(m.astype(np.float64), (W, H), interpolation=cv2.INTER_LINEAR)
    span = up.max() - up.min()
    return np.zeros_like(up) if span <= 1e-6 * np.abs(up).max() else (up - up.min()) / span


def reference(
    method: str,
    x: Tensor,
    targets: list[int] | None,
    splits: list[tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]],
) -> np.ndarray:
    """Per image and layer: (features, head) split -> autograd.grad of the target logit."""
    out = np.zeros((len(x), H, W))
    for b in range(len(x)):
        for feats, head in splits:
            a = feats(x[b : b + 1]).detach().requires_grad_(True)
            logits = head(a)
            c = int(logits.argmax()) if targets is None else targets[b]
            (g,) = torch.autograd.grad(logits[0, c], a)
            raw = _paper_map(method, a[0].detach().double().numpy(), g[0].double().numpy())
            out[b] += _scale(raw) / len(splits)
    return out


def _resnet_split(model: nn.Module, upto: str) -> tuple[Callable, Callable]:
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    cut = names.index(upto) + 1

    def feats(x: Tensor) -> Tensor:
        for n in names[:cut]:
            x = getattr(model, n)(x)
        return x

    def head(a: Tensor) -> Tensor:
        for n in names[cut:]:
            a = getattr(model, n)(a)
        return model.fc(torch.flatten(model.avgpool(a), 1))

    return feats, head


# ------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------


class SmallCNN(nn.Module):
    """conv-ReLU-conv(target)-ReLU-GAP-linear, with in-place ReLUs like torchvision models."""

    def __init__(self, inplace: bool = True, classes: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.act1 = nn.ReLU(inplace=inplace)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.act2 = nn.ReLU(inplace=inplace)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.act2(self.conv2(self.act1(self.conv1(x))))).flatten(1))


def _known_cnn(inplace: bool = True) -> SmallCNN:
    """Fixed weights from a closed form (not an RNG), so the expected maps are reproducible."""
    model = SmallCNN(inplace)
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            idx = torch.arange(p.numel(), dtype=torch.float32).reshape(p.shape)
            p.copy_(torch.sin(1.7 * idx + i) * 0.6)
    return model.eval()


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    model = resnet18(num_classes=5).eval()
    # random BN statistics so that the maps are not dominated by an init artefact
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def x() -> Tensor:
    return torch.randn(4, 3, H, W, generator=torch.Generator().manual_seed(1))


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules())


# ------------------------------------------------------------------------------------------
# Maths
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_small_cnn_matches_paper_formula(method: str, x: Tensor) -> None:
    model = _known_cnn(inplace=True)
    ref_model = _known_cnn(inplace=False)
    feats = lambda t: ref_model.conv2(ref_model.act1(ref_model.conv1(t)))  # noqa: E731
    head = lambda a: ref_model.fc(ref_model.pool(ref_model.act2(a)).flatten(1))  # noqa: E731
    targets = [0, 1, 2, 1]
    got = CAM_METHODS[method](model, [model.conv2])(x, targets)
    want = reference(method, x, targets, [(feats, head)])
    assert got.dtype == np.float32 and got.shape == (4, H, W)
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert not np.allclose(got[0], got[1])  # the targets matter


def test_gap_linear_head_gives_closed_form_maps() -> None:
    """With features -> GAP -> Linear, dy_c/dA^k_ij = W_ck/(hw) everywhere, so (paper, sec. 3.1)
    Grad-CAM = HiResCAM = CAM = ReLU(sum_k W_ck A^k); LayerCAM uses ReLU(W_ck); Grad-CAM++
    weights are ReLU(W_ck) * hw / (2 + S_k W_ck / hw), S_k = sum_ij A^k_ij."""
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    fc = nn.Linear(5, 2)
    model = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc).eval()
    img = torch.randn(2, 3, H, W)
    a = conv(img).detach().double().numpy()
    wc = fc.weight.detach().double().numpy()[1]
    hw = H * W
    s = a.sum(axis=(2, 3))
    closed = {
        "gradcam": np.einsum("k,bkij->bij", wc, a),
        "hirescam": np.einsum("k,bkij->bij", wc, a),
        "layercam": np.einsum("k,bkij->bij", np.maximum(wc, 0), a),
        "gradcam++": np.einsum("bk,bkij->bij", np.maximum(wc, 0) * hw / (2 + s * wc / hw), a),
    }
    for method, cam in closed.items():
        cam = np.maximum(cam, 0)
        want = np.stack([_scale(c) for c in cam])  # same size: the resize is the identity
        res = CAM_METHODS[method](model, [conv]).compute(img, 1)
        np.testing.assert_allclose(res.heatmaps, want, atol=2e-5, err_msg=method)
        scale = res.raw[0].max() / cam.max()  # raw maps: same shape up to the 1/hw factor
        np.testing.assert_allclose(res.raw[0], cam * scale, rtol=1e-4, atol=1e-6 * cam.max())


@pytest.mark.parametrize("method", METHODS)
def test_resnet_inplace_relu_matches_reference(method: str, resnet: nn.Module, x: Tensor) -> None:
    ref = copy.deepcopy(resnet)
    for m in ref.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    got = CAM_METHODS[method](resnet, [resnet.layer2, resnet.layer3])(x)
    want = reference(method, x, None, [_resnet_split(ref, "layer2"), _resnet_split(ref, "layer3")])
    np.testing.assert_allclose(got, want, atol=5e-5)


def test_target_layer_followed_by_inplace_relu_uses_pre_relu_maps() -> None:
    """VGG pattern: a conv target whose output an in-place ReLU overwrites right after."""
    x = torch.randn(3, 3, H, W, generator=torch.Generator().manual_seed(5))
    model = _known_cnn(inplace=True)
    ref = _known_cnn(inplace=False)
    for cls in (GradCAM, HiResCAM):
        np.testing.assert_allclose(cls(model, [model.conv2])(x), cls(ref, [ref.conv2])(x), atol=1e-6)


def test_densenet_functional_inplace_relu_after_target() -> None:
    """torchvision DenseNet applies F.relu(inplace=True) to the output of `features`."""
    torch.manual_seed(4)
    model = DenseNet(growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=2, num_classes=3).eval()
    x = torch.randn(2, 3, H, W)
    feats = model.features
    head = lambda a: model.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(torch.relu(a), 1), 1))  # noqa: E731
    got = GradCAM(model, [model.features])(x)
    np.testing.assert_allclose(got, reference("gradcam", x, None, [(feats, head)]), atol=2e-5)


def test_multi_layer_is_mean_of_single_layers(resnet: nn.Module, x: Tensor) -> None:
    both = GradCAM(resnet, ["layer2", "layer3"])(x)
    single = (GradCAM(resnet, ["layer2"])(x) + GradCAM(resnet, ["layer3"])(x)) / 2
    np.testing.assert_allclose(both, single, atol=1e-6)


def test_output_range_and_flat_maps() -> None:
    maps = torch.stack([torch.rand(H, W) * 5 + 2, torch.full((H, W), 3.0), torch.zeros(H, W)])
    out = minmax_scale(maps)
    assert out[0].min() == 0.0 and out[0].max() == 1.0  # exactly
    assert torch.equal(out[1], torch.zeros(H, W)) and torch.equal(out[2], torch.zeros(H, W))
    # a model whose class-0 evidence is all negative: ReLU gives a zero map -> zeros, not NaN
    conv = nn.Conv2d(3, 4, 3, padding=1)
    fc = nn.Linear(4, 2)
    with torch.no_grad():
        fc.weight.fill_(-1.0)
    model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc).eval()
    res = GradCAM(model, [model[1]]).compute(torch.randn(2, 3, H, W), 0)
    assert np.isfinite(res.heatmaps).all() and not res.heatmaps.any()
    assert not res.raw[0].any()


# ------------------------------------------------------------------------------------------
# Behaviour
# ------------------------------------------------------------------------------------------


def test_shapes_dtypes_and_default_targets(resnet: nn.Module, x: Tensor) -> None:
    res = GradCAM(resnet, [resnet.layer3]).compute(x)
    with torch.no_grad():
        logits = resnet(x)
    assert res.heatmaps.shape == (4, H, W) and res.heatmaps.dtype == np.float32
    np.testing.assert_array_equal(res.targets, logits.argmax(1).numpy())
    np.testing.assert_array_equal(res.preds, res.targets)
    np.testing.assert_allclose(res.logits, logits.numpy(), atol=1e-5)
    assert res.raw[0].shape == (4, 3, 4) and res.raw[0].dtype == np.float32
    spans = res.heatmaps.reshape(4, -1)
    assert (spans.min(1) == 0).all() and ((spans.max(1) == 1) | (spans.max(1) == 0)).all()
    explicit = GradCAM(resnet, [resnet.layer3])(x, res.targets.tolist())
    np.testing.assert_array_equal(explicit, res.heatmaps)


def test_no_grad_inference_mode_and_frozen_params(resnet: nn.Module, x: Tensor) -> None:
    cam = GradCAM(resnet, [resnet.layer2])
    want = cam(x, [1, 2, 3, 4])
    with torch.no_grad():
        np.testing.assert_array_equal(cam(x, [1, 2, 3, 4]), want)
        assert not torch.is_grad_enabled()  # caller's mode restored
    with torch.inference_mode():
        xi = x.clone()
        np.testing.assert_array_equal(cam(xi, [1, 2, 3, 4]), want)
    frozen = copy.deepcopy(resnet).requires_grad_(False)
    np.testing.assert_array_equal(GradCAM(frozen, [frozen.layer2])(x, [1, 2, 3, 4]), want)
    assert torch.is_grad_enabled()


def test_leaves_model_untouched(resnet: nn.Module, x: Tensor) -> None:
    model = copy.deepcopy(resnet)
    want = GradCAM(model, [model.layer2])(x)
    model.train()
    model.layer1.eval()  # mixed flags must come back exactly
    flags = {n: m.training for n, m in model.named_modules()}
    got = GradCAM(model, [model.layer2, model.layer4])(x)
    assert {n: m.training for n, m in model.named_modules()} == flags
    assert _no_hooks(model)
    assert all(p.grad is None for p in model.parameters())
    # eval mode is used for the call (batch statistics would couple the images)
    np.testing.assert_allclose(GradCAM(model, [model.layer2])(x), want, atol=1e-6)
    assert got.shape == (4, H, W)


def test_channels_last_max_pool_is_exact(resnet: nn.Module, x: Tensor, monkeypatch: pytest.MonkeyPatch) -> None:
    """The max-pool speed-up (channels-last copy inside the call) changes no bit of the result."""
    import camprompt.cam_capture as capture_module

    cam = GradCAM(resnet, [resnet.layer1, resnet.layer3])
    fast = cam.compute(x, [0, 1, 2, 3])
    seen: list[bool] = []
    probe = resnet.maxpool.register_forward_hook(lambda m, a, o: seen.append(a[0].is_contiguous(memory_format=torch.channels_last)))
    try:
        cam(x, [0, 1, 2, 3])
        monkeypatch.setattr(capture_module, "_nhwc_pool_hooks", lambda model: [])
        slow = cam.compute(x, [0, 1, 2, 3])
    finally:
        probe.remove()
    assert seen == [True, False]  # the fast path really ran, then was really off
    np.testing.assert_array_equal(fast.heatmaps, slow.heatmaps)
    np.testing.assert_array_equal(fast.logits, slow.logits)
    assert _no_hooks(resnet)


def test_hooks_removed_and_flags_restored_on_errors(resnet: nn.Module, x: Tensor) -> None:
    model = copy.deepcopy(resnet).train()
    with pytest.raises(ValueError, match=r"\(B,C,h,w\)"):
        GradCAM(model, [model.fc])(x)  # raises inside the forward hook
    with pytest.raises(ValueError, match="out of range"):
        GradCAM(model, [model.layer2])(x, 7)  # raises after the forward
    assert _no_hooks(model) and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert torch.is_grad_enabled()


def test_one_forward_and_one_backward_per_call(resnet: nn.Module, x: Tensor) -> None:
    model = copy.deepcopy(resnet)
    counts = {"forward": 0, "backward": 0}

    def count_backward(_: Tensor) -> None:
        counts["backward"] += 1

    def on_forward(module: nn.Module, inputs: object, out: Tensor) -> None:
        counts["forward"] += 1
        out.register_hook(count_backward)

    handle = model.fc.register_forward_hook(on_forward)
    try:
        GradCAMPlusPlus(model, [model.layer1, model.layer2, model.layer3])(x)
    finally:
        handle.remove()
    assert counts == {"forward": 1, "backward": 1}


def test_tuple_and_dict_outputs(resnet: nn.Module, x: Tensor) -> None:
    class Wrap(nn.Module):
        def __init__(self, inner: nn.Module, kind: str) -> None:
            super().__init__()
            self.inner, self.kind = inner, kind

        def forward(self, t: Tensor) -> object:
            logits = self.inner(t)
            if self.kind == "tuple":
                return logits, logits.flip(1) * 10  # aux output must be ignored
            if self.kind == "dict":
                return {"aux": logits.flip(1) * 10, "logits": logits}
            return {"a": logits, "b": logits}

    want = GradCAM(resnet, [resnet.layer3])(x)
    for kind in ("tuple", "dict"):
        np.testing.assert_array_equal(GradCAM(Wrap(resnet, kind), [resnet.layer3])(x), want)
    with pytest.raises(TypeError, match="output_fn"):
        GradCAM(Wrap(resnet, "ambiguous"), [resnet.layer3])(x)
    picked = GradCAM(Wrap(resnet, "ambiguous"), [resnet.layer3], output_fn=lambda o: o["b"])(x)
    np.testing.assert_array_equal(picked, want)


def test_target_broadcasting_and_errors(resnet: nn.Module, x: Tensor) -> None:
    cam = GradCAM(resnet, [resnet.layer3])
    want = cam(x, [2, 2, 2, 2])
    for t in (2, [2], np.int64(2), torch.tensor([2]), np.array([2])):
        np.testing.assert_array_equal(cam(x, t), want)
    for bad in ([1, 2], [0, 1, 2, 3, 4]):
        with pytest.raises(ValueError, match="targets for a batch of 4"):
            cam(x, bad)
    with pytest.raises(TypeError, match="integer"):
        cam(x, [0.5, 1, 2, 3])
    with pytest.raises(ValueError, match="out of range"):
        cam(x, [0, 1, 2, -1])


def test_bad_inputs(resnet: nn.Module, x: Tensor) -> None:
    cam = GradCAM(resnet, ["layer3"])
    with pytest.raises(ValueError, match=r"image\[None\]"):
        cam(x[0])
    with pytest.raises(ValueError, match=r"\(B,C,H,W\)"):
        cam(x[None])
    with pytest.raises(TypeError, match="normalise"):
        cam((x * 50).clamp(0, 255).to(torch.uint8))
    with pytest.raises(TypeError, match="Tensor"):
        cam(x.numpy())
    with pytest.raises(ValueError, match="layer3.1.conv2"):
        resolve_layers(resnet, ["layer3.1.conv9"])
    assert resolve_layers(resnet, "layer3.1.conv2") == [resnet.layer3[1].conv2]


def test_layer_that_runs_twice_is_rejected() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.fc = nn.Linear(3, 2)

        def forward(self, t: Tensor) -> Tensor:
            return self.fc(self.conv(self.conv(t)).mean(dim=(2, 3)))

    model = Twice()
    with pytest.raises(ValueError, match="ran 2 times"):
        GradCAM(model, [model.conv])(torch.randn(1, 3, 8, 8))
    assert _no_hooks(model)


def test_methods_share_one_skeleton() -> None:
    assert set(CAM_METHODS) == {"gradcam", "gradcam++", "layercam", "hirescam"}
    for cls in CAM_METHODS.values():
        assert issubclass(cls, BaseCAM)
        own = {k for k, v in vars(cls).items() if callable(v) and not k.startswith("__")}
        assert own == {"weights"}, cls
    assert CAM_METHODS["gradcam++"] is GradCAMPlusPlus and CAM_METHODS["layercam"] is LayerCAM


# ------------------------------------------------------------------------------------------
# Split helper and figure
# ------------------------------------------------------------------------------------------


def test_compute_split_heatmaps_matches_single_calls(resnet: nn.Module, x: Tensor) -> None:
    configs = {
        "l2": {"method": "gradcam", "layers": ["layer2"]},
        "l23pp": {"method": "gradcam++", "layers": ["layer2", "layer3"]},
    }
    out = compute_split_heatmaps(resnet, x, configs, batch_size=3, progress=False)
    np.testing.assert_allclose(out.heatmaps["l2"], GradCAM(resnet, ["layer2"])(x), atol=1e-5)
    np.testing.assert_allclose(out.heatmaps["l23pp"], GradCAMPlusPlus(resnet, ["layer2", "layer3"])(x), atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(out.logits, resnet(x).numpy(), atol=1e-5)
    np.testing.assert_array_equal(out.preds, out.targets)
    with pytest.raises(ValueError, match="unknown method"):
        compute_split_heatmaps(resnet, x, {"a": {"method": "scorecam", "layers": ["layer2"]}})


def test_argmax_points_and_figure(tmp_path) -> None:
    maps = np.zeros((2, H, W), np.float32)
    maps[0, 5, 7] = 1
    maps[1, 40, 60] = 1
    np.testing.assert_array_equal(argmax_points(maps), [[7, 5], [60, 40]])
    masks = np.zeros((2, H, W), bool)
    masks[0, 5, 7] = True  # hit for image 0 only
    assert argmax_hit_rate(maps, masks) == 0.5
    with pytest.raises(ValueError, match="same"):
        argmax_hit_rate(maps, masks[:1])
    images = np.random.default_rng(0).integers(0, 255, (2, H, W, 3), dtype=np.uint8)
    path = plot_heatmaps(tmp_path / "f.png", images, {"a": maps, "b": maps}, maps > 0, ["x", "y"])
    assert path.stat().st_size > 1000
