"""Baselines: every published model is a baseline, with torchvision's exact parameter count and layers."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from scaler.baselines import baseline_names, get_baseline, resolve_spec
from scaler.build import build_model
from scaler.errors import ScalerError
from scaler.estimator import estimate
from scaler.scaling import compound, scale
from scaler.spec import save_spec

# The shared reference figures sit beside the checkout: <root>/main/tests/ -> <root>/shared/reference/.
# Without them these tests fail rather than skip: CI always has them.
PUBLISHED_PATH = Path(__file__).resolve().parents[2] / "shared" / "reference" / "published.json"
PUBLISHED = json.loads(PUBLISHED_PATH.read_text())
MODELS = PUBLISHED["models"]

TORCHVISION = {
    **{f"efficientnet-b{i}": f"efficientnet_b{i}" for i in range(8)},
    "efficientnetv2-s": "efficientnet_v2_s",
    "efficientnetv2-m": "efficientnet_v2_m",
    "efficientnetv2-l": "efficientnet_v2_l",
    "mobilenetv2": "mobilenet_v2",
    "resnet18": "resnet18",
    "resnet50": "resnet50",
    "convnext-tiny": "convnext_tiny",
}
# EfficientNetV2's base network and its B1-B3, which torchvision lacks: timm's tf_efficientnetv2_b0..b3 parameter
# counts (width, depth, resolution: (1.0, 1.0, 224), (1.0, 1.1, 240), (1.1, 1.2, 260), (1.2, 1.4, 300)).
EFFICIENTNETV2_B = {
    "efficientnetv2-b0": (7_139_704, 224),
    "efficientnetv2-b1": (8_141_052, 240),
    "efficientnetv2-b2": (10_096_086, 260),
    "efficientnetv2-b3": (14_358_406, 300),
}
# Building these takes a second or more each (torchvision's twin as long again): slow.
BIG = {"efficientnet-b7", "efficientnetv2-m", "efficientnetv2-l"}


def _params(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in names]


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- the list of baselines


def test_every_published_model_is_a_baseline():
    names = baseline_names()
    for name in MODELS:
        assert name in names
        assert get_baseline(name).name == name


def test_baselines_are_the_published_set_and_the_v2_b_series():
    assert set(baseline_names()) == set(MODELS) | set(EFFICIENTNETV2_B)
    assert set(MODELS) == set(TORCHVISION)
    assert len(baseline_names()) == len(set(baseline_names()))


@pytest.mark.parametrize("name", MODELS)
def test_published_resolution_and_paper_coefficients(name):
    spec = get_baseline(name)
    assert spec.resolution == MODELS[name]["resolution"]
    coefficients = MODELS[name].get("paper_coefficients")
    if coefficients:
        assert spec.dropout == coefficients["dropout"]


def test_unknown_baseline_lists_known_names():
    with pytest.raises(ScalerError) as info:
        get_baseline("efficientnet-b9")
    message = str(info.value)
    assert "efficientnet-b9" in message
    for name in baseline_names():
        assert name in message


def test_build_unknown_name_lists_known_names():
    with pytest.raises(ScalerError) as info:
        build_model("resnet-19")
    assert "resnet-19" in str(info.value) and "resnet18" in str(info.value) and "convnext-tiny" in str(info.value)


@pytest.mark.parametrize("suffix", [".json", ".toml", ".JSON"])
def test_resolve_spec_missing_file(tmp_path, suffix):
    path = tmp_path / f"missing{suffix}"
    with pytest.raises(ScalerError) as info:
        resolve_spec(path)
    assert str(path) in str(info.value)
    with pytest.raises(ScalerError):
        resolve_spec(str(path))
    with pytest.raises(ScalerError):
        build_model(path)


def test_resolve_spec_forms(tmp_path):
    spec = get_baseline("resnet18")
    assert resolve_spec(spec) is spec
    assert resolve_spec("resnet18") == spec
    assert resolve_spec(save_spec(spec, tmp_path / "r.json")) == spec
    assert resolve_spec(str(save_spec(spec, tmp_path / "r.toml"))) == spec


# ---------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("name", _params(MODELS))
def test_parameter_count_is_published(name):
    assert _count(build_model(name)) == MODELS[name]["params"]


@pytest.mark.parametrize("name", EFFICIENTNETV2_B)
def test_efficientnetv2_b_series_parameter_counts_and_resolutions(name):
    params, resolution = EFFICIENTNETV2_B[name]
    spec = get_baseline(name)
    assert spec.resolution == resolution and spec.rounding == "v2"
    assert _count(build_model(spec)) == params
    assert estimate(spec).params == params
    assert spec.stages[0].block == "fused_mbconv" and spec.stages[-1].block == "mbconv"


def test_efficientnetv2_b_series_is_the_base_scaled_without_the_ninety_percent_rule():
    # B3's width 1.2 turns 112 channels into 134.4: V2 rounds to 136 (nearest multiple of 8), and never adds 8 for
    # falling below 90 % of the exact width as V1 would; B2's 1.1 x 48 = 52.8 goes to 56.
    b0, b2, b3 = (get_baseline(f"efficientnetv2-b{i}") for i in (0, 2, 3))
    assert [s.channels for s in b0.stages] == [16, 32, 48, 96, 112, 192]
    assert [s.repeats for s in b0.stages] == [1, 2, 2, 3, 5, 8]
    assert [s.channels for s in b2.stages] == [16, 32, 56, 104, 120, 208]
    assert [s.channels for s in b3.stages] == [16, 40, 56, 112, 136, 232]
    assert [s.repeats for s in b3.stages] == [2, 3, 3, 5, 7, 12]
    assert (b3.stem.channels, b3.head.channels) == (40, 1536)


# ---------------------------------------------------------------- layer for layer with torchvision


def _check_same_module(key: str, ours: nn.Module, theirs: nn.Module) -> None:
    if isinstance(theirs, nn.Conv2d):
        assert type(ours) is nn.Conv2d, key
        for attr in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
                     "padding_mode"):
            assert getattr(ours, attr) == getattr(theirs, attr), (key, attr)
        assert (ours.bias is None) == (theirs.bias is None), key
    elif isinstance(theirs, nn.BatchNorm2d):
        assert type(ours) is nn.BatchNorm2d, key
        for attr in ("num_features", "eps", "affine", "track_running_stats"):
            assert getattr(ours, attr) == getattr(theirs, attr), (key, attr)
    elif isinstance(theirs, nn.LayerNorm):
        # torchvision's LayerNorm2d is a LayerNorm subclass that works on NCHW; ours must be the same kind.
        assert isinstance(ours, nn.LayerNorm), key
        assert type(ours).__name__ == type(theirs).__name__, key
        assert ours.normalized_shape == theirs.normalized_shape and ours.eps == theirs.eps, key
        assert ours.elementwise_affine == theirs.elementwise_affine, key
    elif isinstance(theirs, nn.Linear):
        assert type(ours) is nn.Linear, key
        assert (ours.in_features, ours.out_features) == (theirs.in_features, theirs.out_features), key
        assert (ours.bias is None) == (theirs.bias is None), key
    elif isinstance(theirs, (nn.Dropout, nn.SiLU, nn.ReLU, nn.ReLU6, nn.GELU, nn.Sigmoid, nn.MaxPool2d,
                             nn.AdaptiveAvgPool2d, nn.Flatten)):
        assert type(ours) is type(theirs), key
        if isinstance(theirs, nn.Dropout):
            assert ours.p == pytest.approx(theirs.p), key
        if isinstance(theirs, nn.GELU):
            assert ours.approximate == theirs.approximate, key
        if isinstance(theirs, nn.MaxPool2d):
            assert (ours.kernel_size, ours.stride, ours.padding) == (theirs.kernel_size, theirs.stride,
                                                                     theirs.padding), key
        if isinstance(theirs, nn.AdaptiveAvgPool2d):
            assert torch.nn.modules.utils._pair(ours.output_size) == torch.nn.modules.utils._pair(
                theirs.output_size), key
    elif type(theirs).__name__ == "StochasticDepth":
        assert type(ours).__name__ == "StochasticDepth", key  # its rate: test_stochastic_depth_rates_...
    elif type(theirs).__name__ == "Permute":
        assert list(ours.dims) == list(theirs.dims), key
    elif type(theirs).__name__ == "SqueezeExcitation":
        assert type(ours).__name__ == "SqueezeExcitation", key


@pytest.mark.parametrize("name", _params(MODELS))
def test_layer_for_layer_equal_to_torchvision(name):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    ours = build_model(name)
    theirs = torchvision.models.get_model(TORCHVISION[name], weights=None)

    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)  # same keys in the same order
    for key in b:
        assert a[key].shape == b[key].shape, key
        assert a[key].dtype == b[key].dtype, key

    ours_modules = dict(ours.named_modules())
    theirs_modules = dict(theirs.named_modules())
    # every module that torchvision has is there, under the same name, of the same kind
    missing = set(theirs_modules) - set(ours_modules)
    assert not missing, sorted(missing)[:5]
    for key, module in theirs_modules.items():
        _check_same_module(key or "<root>", ours_modules[key], module)

    ours.load_state_dict(b)
    ours.eval()
    theirs.eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = theirs(x)
        got = ours(x)
    assert got.shape == expected.shape == (1, 1000)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("name", _params(MODELS))
def test_batchnorm_momentum_matches_torchvision(name):
    # torchvision builds EfficientNet-B5..B7 with BatchNorm momentum 0.01 (their weights come from
    # TensorFlow's decay 0.99); the running statistics then move at the same speed in fine-tuning.
    torchvision = pytest.importorskip("torchvision")
    ours = dict(build_model(name).named_modules())
    theirs = torchvision.models.get_model(TORCHVISION[name], weights=None)
    wrong = [(key, ours[key].momentum, m.momentum) for key, m in theirs.named_modules()
             if isinstance(m, nn.BatchNorm2d) and ours[key].momentum != m.momentum]
    assert not wrong, f"{len(wrong)} BatchNorm layers differ, e.g. {wrong[0]}"


@pytest.mark.parametrize("name", _params(MODELS))
def test_stochastic_depth_rates_match_torchvision(name):
    # torchvision's EfficientNet rule is drop_path * i / n over the n blocks, its ConvNeXt rule
    # drop_path * i / (n - 1) (the last block gets the full rate).
    torchvision = pytest.importorskip("torchvision")
    ours = dict(build_model(name).named_modules())
    theirs = torchvision.models.get_model(TORCHVISION[name], weights=None)
    checked = 0
    wrong = []
    for key, m in theirs.named_modules():
        if type(m).__name__ == "StochasticDepth":
            checked += 1
            if abs(ours[key].p - m.p) > 1e-12:
                wrong.append((key, ours[key].p, m.p))
    if name.startswith(("efficientnet", "convnext")):
        assert checked == sum(s.repeats for s in get_baseline(name).stages)
    assert not wrong, f"{len(wrong)} of {checked} rates differ, e.g. {wrong[-1]}"


def test_torchvision_weights_give_same_outputs_at_odd_size():
    torchvision = pytest.importorskip("torchvision")
    for name in ("efficientnet-b0", "mobilenetv2", "resnet18"):
        theirs = torchvision.models.get_model(TORCHVISION[name], weights=None).eval()
        ours = build_model(name)
        ours.load_state_dict(theirs.state_dict())
        ours.eval()
        x = torch.randn(2, 3, 53, 71, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            assert torch.equal(ours(x), theirs(x)), name


# ---------------------------------------------------------------- build_model forms


def _architecture(model: nn.Module):
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()], repr(model)


@pytest.mark.parametrize("name", ["efficientnet-b0", "resnet18", "convnext-tiny", "mobilenetv2"])
def test_build_from_spec_name_and_files_agree(tmp_path, name):
    spec = get_baseline(name)
    reference = _architecture(build_model(spec))
    assert _architecture(build_model(name)) == reference
    for fmt in ("json", "toml"):
        path = save_spec(spec, tmp_path / f"{name}.{fmt}")
        assert _architecture(build_model(path)) == reference
        assert _architecture(build_model(str(path))) == reference


def test_custom_spec_file_builds(tmp_path):
    spec = dataclasses.replace(get_baseline("efficientnet-b0"), name="mine", num_classes=7, resolution=96)
    model = build_model(save_spec(spec, tmp_path / "mine.toml"))
    assert model(torch.randn(2, 3, 96, 96)).shape == (2, 7)


# ---------------------------------------------------------------- forward and backward


def _forward_backward(model: nn.Module, size: tuple[int, int], classes: int, batch: int = 2) -> None:
    model.train()
    x = torch.randn(batch, 3, *size, requires_grad=True)
    out = model(x)
    assert out.shape == (batch, classes)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for key, p in model.named_parameters():
        assert p.grad is not None, key
        assert torch.isfinite(p.grad).all(), key


@pytest.mark.parametrize("resolution", [64, 97])
def test_b0_forward_backward_at_spec_resolution(resolution):
    spec = dataclasses.replace(get_baseline("efficientnet-b0"), resolution=resolution, num_classes=10)
    model = build_model(spec)
    _forward_backward(model, (spec.resolution, spec.resolution), 10)


FAMILY_EXAMPLES = ["efficientnet-b0", "efficientnetv2-s", "mobilenetv2", "resnet18", "resnet50", "convnext-tiny"]


@pytest.mark.parametrize("name", FAMILY_EXAMPLES)
@pytest.mark.parametrize("size", [(64, 64), (97, 97), (33, 50)])
def test_forward_backward_at_other_resolutions(name, size):
    # every block kind, shrunk to keep it fast; odd and non-square sizes too
    torch.manual_seed(0)
    spec = scale(dataclasses.replace(get_baseline(name), num_classes=5), width=0.25, depth=0.3)
    _forward_backward(build_model(spec), size, 5)


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILY_EXAMPLES)
def test_full_baselines_forward_backward(name):
    torch.manual_seed(0)
    _forward_backward(build_model(dataclasses.replace(get_baseline(name), num_classes=5)), (97, 97), 5)


def test_eval_is_deterministic():
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(get_baseline("efficientnet-b0"), num_classes=10))
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_compound_scaled_spec_builds_and_runs():
    spec = compound(dataclasses.replace(get_baseline("efficientnet-b0"), num_classes=3), phi=-3)
    model = build_model(spec)
    _forward_backward(model, (spec.resolution, spec.resolution), 3)
    assert _count(model) < _count(build_model("efficientnet-b0"))
