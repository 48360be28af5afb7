"""The named baseline networks, each the same network, layer for layer, as torchvision's model of that name.

EfficientNet-B1..B7 are B0 scaled by the paper's hand-picked (width, depth, resolution, dropout) table,
which is not alpha^phi; the V2 models S, M and L are explicit stage tables, as in their paper, and V2-B0..B3
are the V2 base network scaled by its own table with V2 rounding (google/automl's effnetv2_configs; the
parameter counts equal timm's tf_efficientnetv2_b0..b3).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from scaler.errors import ScalerError
from scaler.scaling import scale
from scaler.spec import Head, Spec, Stage, Stem, load_spec


def _stages(block: str, rows, se_ratio: float = 0.0) -> tuple[Stage, ...]:
    """Rows of (repeats, channels, stride, kernel, expansion)."""
    return tuple(Stage(block, r, c, s, k, float(e), se_ratio) for r, c, s, k, e in rows)


EFFICIENTNET_B0 = Spec(
    name="efficientnet-b0",
    stem=Stem(32, 3, 2),
    stages=_stages(
        "mbconv",
        [(1, 16, 1, 3, 1), (2, 24, 2, 3, 6), (2, 40, 2, 5, 6), (3, 80, 2, 3, 6),
         (3, 112, 1, 5, 6), (4, 192, 2, 5, 6), (1, 320, 1, 3, 6)],
        se_ratio=0.25,
    ),
    head=Head(1280),
    resolution=224,
    activation="silu",
    dropout=0.2,
    drop_path=0.2,
)

# The paper's B1-B7: (width, depth, resolution, dropout), from the tensorflow/tpu builder's table.
# torchvision builds B5-B7 with BatchNorm eps 1e-3 and momentum 0.01 (their weights came from TensorFlow).
EFFICIENTNET_COEFFICIENTS = {
    "efficientnet-b1": (1.0, 1.1, 240, 0.2),
    "efficientnet-b2": (1.1, 1.2, 260, 0.3),
    "efficientnet-b3": (1.2, 1.4, 300, 0.3),
    "efficientnet-b4": (1.4, 1.8, 380, 0.4),
    "efficientnet-b5": (1.6, 2.2, 456, 0.4),
    "efficientnet-b6": (1.8, 2.6, 528, 0.5),
    "efficientnet-b7": (2.0, 3.1, 600, 0.5),
}


def _efficientnet_v2(name, stem, fused_rows, mbconv_rows, resolution, dropout) -> Spec:
    return Spec(
        name=name,
        stem=Stem(stem, 3, 2),
        stages=_stages("fused_mbconv", fused_rows) + _stages("mbconv", mbconv_rows, se_ratio=0.25),
        head=Head(1280),
        resolution=resolution,
        activation="silu",
        norm_eps=1e-3,
        dropout=dropout,
        drop_path=0.2,
        rounding="v2",
    )


# EfficientNetV2's B1-B3: (width, depth, evaluation resolution, dropout), from google/automl's effnetv2_configs.
EFFICIENTNETV2_COEFFICIENTS = {
    "efficientnetv2-b1": (1.0, 1.1, 240, 0.2),
    "efficientnetv2-b2": (1.1, 1.2, 260, 0.3),
    "efficientnetv2-b3": (1.2, 1.4, 300, 0.3),
}
EFFICIENTNETV2_B0 = _efficientnet_v2(
    "efficientnetv2-b0", 32,
    [(1, 16, 1, 3, 1), (2, 32, 2, 3, 4), (2, 48, 2, 3, 4)],
    [(3, 96, 2, 3, 4), (5, 112, 1, 3, 6), (8, 192, 2, 3, 6)],
    resolution=224, dropout=0.2,
)


def _resnet(name: str, block: str, repeats, channels, expansion: int) -> Spec:
    return Spec(
        name=name,
        stem=Stem(64, 7, 2),
        stages=tuple(
            Stage(block, r, c, 1 if i == 0 else 2, 3, float(expansion)) for i, (r, c) in enumerate(zip(repeats, channels))
        ),
        activation="relu",
    )


_BASELINES = {
    "efficientnet-b0": EFFICIENTNET_B0,
    **{
        name: replace(
            scale(EFFICIENTNET_B0, width=w, depth=d, resolution=r, dropout=p, name=name),
            norm_eps=1e-3 if w >= 1.6 else 1e-5,
            norm_momentum=0.01 if w >= 1.6 else 0.1,
        )
        for name, (w, d, r, p) in EFFICIENTNET_COEFFICIENTS.items()
    },
    "efficientnetv2-b0": EFFICIENTNETV2_B0,
    **{
        name: scale(EFFICIENTNETV2_B0, width=w, depth=d, resolution=r, dropout=p, name=name)
        for name, (w, d, r, p) in EFFICIENTNETV2_COEFFICIENTS.items()
    },
    "efficientnetv2-s": _efficientnet_v2(
        "efficientnetv2-s", 24,
        [(2, 24, 1, 3, 1), (4, 48, 2, 3, 4), (4, 64, 2, 3, 4)],
        [(6, 128, 2, 3, 4), (9, 160, 1, 3, 6), (15, 256, 2, 3, 6)],
        resolution=384, dropout=0.2,
    ),
    "efficientnetv2-m": _efficientnet_v2(
        "efficientnetv2-m", 24,
        [(3, 24, 1, 3, 1), (5, 48, 2, 3, 4), (5, 80, 2, 3, 4)],
        [(7, 160, 2, 3, 4), (14, 176, 1, 3, 6), (18, 304, 2, 3, 6), (5, 512, 1, 3, 6)],
        resolution=480, dropout=0.3,
    ),
    "efficientnetv2-l": _efficientnet_v2(
        "efficientnetv2-l", 32,
        [(4, 32, 1, 3, 1), (7, 64, 2, 3, 4), (7, 96, 2, 3, 4)],
        [(10, 192, 2, 3, 4), (19, 224, 1, 3, 6), (25, 384, 2, 3, 6), (7, 640, 1, 3, 6)],
        resolution=480, dropout=0.4,
    ),
    "mobilenetv2": Spec(
        name="mobilenetv2",
        stem=Stem(32, 3, 2),
        stages=_stages(
            "inverted_residual",
            [(1, 16, 1, 3, 1), (2, 24, 2, 3, 6), (3, 32, 2, 3, 6), (4, 64, 2, 3, 6),
             (3, 96, 1, 3, 6), (3, 160, 2, 3, 6), (1, 320, 1, 3, 6)],
        ),
        head=Head(1280),
        activation="relu6",
        dropout=0.2,
    ),
    "resnet18": _resnet("resnet18", "basic", (2, 2, 2, 2), (64, 128, 256, 512), 1),
    "resnet50": _resnet("resnet50", "bottleneck", (3, 4, 6, 3), (256, 512, 1024, 2048), 4),
    "convnext-tiny": Spec(
        name="convnext-tiny",
        stem=Stem(96, 4, 4),
        stages=_stages("convnext", [(3, 96, 1, 7, 4), (3, 192, 2, 7, 4), (9, 384, 2, 7, 4), (3, 768, 2, 7, 4)]),
        activation="gelu",
        norm="layernorm",
        norm_eps=1e-6,
        drop_path=0.1,
    ),
}


def baseline_names() -> list[str]:
    return list(_BASELINES)


def get_baseline(name: str) -> Spec:
    """The spec of a named baseline; an unknown name lists the known ones."""
    try:
        return _BASELINES[name]
    except (KeyError, TypeError):
        raise ScalerError(f"unknown baseline {name!r}; known: {', '.join(_BASELINES)}") from None


def resolve_spec(network: Spec | str | Path) -> Spec:
    """A spec itself, a baseline name, or the path of a spec file (.json or .toml)."""
    if isinstance(network, Spec):
        return network
    text = str(network)
    if text in _BASELINES:
        return _BASELINES[text]
    if Path(text).suffix.lower() in (".json", ".toml") or Path(text).exists():
        return load_spec(text)
    return get_baseline(text)
