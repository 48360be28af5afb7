"""Network specs: frozen values that describe a network completely, and their JSON/TOML files.

A spec is the single source of truth for a network: the builder turns it into modules, the estimator
counts its cost, scaling returns a new spec. Every field is validated with a message naming it.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import tomli_w

from scaler.errors import ScalerError, SpecError, check_choice, check_int, check_number, read_text

# Each block kind belongs to one torchvision family; the family decides module names and layout.
BLOCK_FAMILIES = {
    "mbconv": "efficientnet",
    "fused_mbconv": "efficientnet",
    "inverted_residual": "mobilenetv2",
    "basic": "resnet",
    "bottleneck": "resnet",
    "convnext": "convnext",
}
ACTIVATIONS = ("silu", "relu", "relu6", "gelu")
NORMS = ("batchnorm", "layernorm")
ROUNDINGS = ("v1", "v2")


@dataclass(frozen=True)
class Stem:
    """The first convolution. ResNet stems add a 3x3 max-pool; ConvNeXt stems are a patchify conv."""

    channels: int
    kernel: int = 3
    stride: int = 2


@dataclass(frozen=True)
class Stage:
    """`repeats` blocks of one kind; the first one applies `stride` and changes the channels.

    `expansion` is the hidden width factor: of the block's input channels for mbconv, fused_mbconv and
    inverted_residual, of the channels for convnext, and ResNet's divisor for bottleneck (hidden =
    channels / expansion, 4 in ResNet-50). `se_ratio` sizes squeeze-excitation from the block's input
    channels (0 = none).
    """

    block: str
    repeats: int
    channels: int
    stride: int = 1
    kernel: int = 3
    expansion: float = 1.0
    se_ratio: float = 0.0

    @property
    def family(self) -> str:
        return BLOCK_FAMILIES[self.block]


@dataclass(frozen=True)
class Head:
    """The 1x1 convolution before pooling (EfficientNet's 1280 channels); 0 means none."""

    channels: int = 0


@dataclass(frozen=True)
class Spec:
    """A whole network. `rounding` and `divisor` say how scaling rounds its channels:
    "v1" keeps EfficientNet's rule that rounding never loses more than 10 %, "v2" (EfficientNetV2) does not."""

    name: str
    stem: Stem
    stages: tuple[Stage, ...]
    head: Head = field(default_factory=Head)
    resolution: int = 224
    num_classes: int = 1000
    activation: str = "silu"
    norm: str = "batchnorm"
    norm_eps: float = 1e-5
    norm_momentum: float = 0.1
    dropout: float = 0.0
    drop_path: float = 0.0
    rounding: str = "v1"
    divisor: int = 8

    def __post_init__(self) -> None:
        validate(self)

    @cached_property
    def family(self) -> str:
        return self.stages[0].family

    @cached_property
    def total_stride(self) -> int:
        stride = self.stem.stride * (2 if self.family == "resnet" else 1)
        for stage in self.stages:
            stride *= stage.stride
        return stride


def _check_int(where: str, value, minimum: int) -> None:
    check_int(where, value, minimum, error=SpecError)


def _check_float(where: str, value, low: float, high: float, high_open: bool = False) -> None:
    check_number(where, value, low, high, below_high=high_open, error=SpecError)


def _check_choice(where: str, value, choices) -> None:
    check_choice(where, value, choices, error=SpecError)


def validate(spec: Spec) -> None:
    """Raise SpecError naming the first field that cannot describe a buildable network."""
    if not isinstance(spec.name, str) or not spec.name:
        raise SpecError(f"name: expected a non-empty string, got {spec.name!r}")
    _check_int("stem.channels", spec.stem.channels, 1)
    _check_int("stem.kernel", spec.stem.kernel, 1)
    _check_int("stem.stride", spec.stem.stride, 1)
    if not isinstance(spec.stages, tuple) or not all(isinstance(s, Stage) for s in spec.stages):
        raise SpecError(f"stages: expected a tuple of Stage, got {type(spec.stages).__name__}")
    if not spec.stages:
        raise SpecError("stages: expected at least one stage")
    for i, stage in enumerate(spec.stages):
        where = f"stages[{i}]"
        _check_choice(f"{where}.block", stage.block, tuple(BLOCK_FAMILIES))
        _check_int(f"{where}.repeats", stage.repeats, 1)
        _check_int(f"{where}.channels", stage.channels, 1)
        _check_int(f"{where}.stride", stage.stride, 1)
        _check_int(f"{where}.kernel", stage.kernel, 1)
        _check_float(f"{where}.expansion", stage.expansion, 0.0, 64.0)
        if stage.expansion <= 0:
            raise SpecError(f"{where}.expansion: must be positive, got {stage.expansion!r}")
        _check_float(f"{where}.se_ratio", stage.se_ratio, 0.0, 1.0)
        if stage.kernel % 2 == 0 and stage.block != "convnext":
            raise SpecError(f"{where}.kernel: must be odd, got {stage.kernel}")
        if stage.family != spec.stages[0].family:
            raise SpecError(
                f"{where}.block: {stage.block!r} ({stage.family} family) cannot follow "
                f"{spec.stages[0].block!r} ({spec.stages[0].family} family) in one network"
            )
        if stage.block == "basic" and stage.expansion != 1:
            raise SpecError(f"{where}.expansion: a basic block has no hidden width, must be 1, got {stage.expansion!r}")
        if stage.se_ratio and stage.block in ("basic", "bottleneck", "convnext", "inverted_residual", "fused_mbconv"):
            raise SpecError(f"{where}.se_ratio: {stage.block} blocks have no squeeze-excitation, must be 0")
        if stage.block == "convnext":
            previous = spec.stages[i - 1].channels if i else spec.stem.channels
            if stage.stride == 1 and stage.channels != previous:
                raise SpecError(
                    f"{where}.channels: a convnext stage changes channels only with its downsampling "
                    f"(stride > 1); got {previous} -> {stage.channels} at stride 1"
                )
    _check_int("head.channels", spec.head.channels, 0)
    _check_int("resolution", spec.resolution, 1)
    _check_int("num_classes", spec.num_classes, 1)
    _check_choice("activation", spec.activation, ACTIVATIONS)
    _check_choice("norm", spec.norm, NORMS)
    if spec.family == "convnext" and spec.norm != "layernorm":
        raise SpecError(f"norm: convnext blocks use layernorm, got {spec.norm!r}")
    _check_float("norm_eps", spec.norm_eps, 0.0, 1.0)
    if spec.norm_eps <= 0:
        raise SpecError(f"norm_eps: must be positive, got {spec.norm_eps!r}")
    _check_float("norm_momentum", spec.norm_momentum, 0.0, 1.0)
    _check_float("dropout", spec.dropout, 0.0, 1.0, high_open=True)
    _check_float("drop_path", spec.drop_path, 0.0, 1.0, high_open=True)
    _check_choice("rounding", spec.rounding, ROUNDINGS)
    _check_int("divisor", spec.divisor, 1)


def to_dict(spec: Spec) -> dict:
    """Plain data in field order; `from_dict(to_dict(s)) == s` exactly."""
    return dataclasses.asdict(spec) | {"stages": [dataclasses.asdict(s) for s in spec.stages]}


def _fields(cls, data, where: str) -> dict:
    if not isinstance(data, dict):
        raise SpecError(f"{where or 'spec'}: expected a table of fields, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            shown = key if isinstance(key, str) and key.isprintable() else repr(key)  # one line, whatever the key
            raise SpecError(f"{where}{'.' if where else ''}{shown}: unknown field (known: {', '.join(known)})")
    missing = [name for name, f in known.items() if name not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise SpecError(f"{where}{'.' if where else ''}{missing[0]}: missing")
    values = dict(data)
    for name, value in values.items():
        # JSON and TOML write 6.0 as 6 sometimes; a float field takes an integer as the same number.
        if known[name].type == "float" and isinstance(value, int) and not isinstance(value, bool):
            values[name] = float(value)
    return values


def from_dict(data: dict) -> Spec:
    """Build a validated spec from plain data (as read from JSON or TOML)."""
    values = _fields(Spec, data, "")
    values["stem"] = Stem(**_fields(Stem, values["stem"], "stem"))
    if "head" in values:
        values["head"] = Head(**_fields(Head, values["head"], "head"))
    stages = values["stages"]
    if not isinstance(stages, list):
        raise SpecError(f"stages: expected a list of stages, got {type(stages).__name__}")
    values["stages"] = tuple(Stage(**_fields(Stage, s, f"stages[{i}]")) for i, s in enumerate(stages))
    return Spec(**values)


def dumps(spec: Spec, fmt: str = "json") -> str:
    if fmt == "json":
        return json.dumps(to_dict(spec), indent=2) + "\n"
    if fmt == "toml":
        return tomli_w.dumps(to_dict(spec))
    raise ScalerError(f"spec format: must be json or toml, got {fmt!r}")


def loads(text: str, fmt: str = "json") -> Spec:
    if fmt not in ("json", "toml"):
        raise ScalerError(f"spec format: must be json or toml, got {fmt!r}")
    try:
        data = json.loads(text) if fmt == "json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise SpecError(f"spec: not valid {fmt.upper()}: {error}") from None
    return from_dict(data)


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise ScalerError(f"{path}: a spec file must end in .json or .toml")
    return suffix[1:]


def save_spec(spec: Spec, path: str | Path) -> Path:
    """Write a spec as JSON or TOML, chosen by the file's suffix."""
    path = Path(path)
    text = dumps(spec, _format_of(path))
    try:
        path.write_text(text)
    except OSError as error:
        raise ScalerError(f"{path}: cannot write: {error.strerror}") from None
    return path


def load_spec(path: str | Path) -> Spec:
    """Read a spec file; errors name the file and the field."""
    path = Path(path)
    fmt = _format_of(path)
    text = read_text(path, str(path), SpecError)
    try:
        return loads(text, fmt)
    except SpecError as error:
        raise SpecError(f"{path}: {error}") from None
