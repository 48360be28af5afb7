"""Specs: frozen values, exact JSON/TOML round trips, and validation messages that name the field."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaler.baselines import baseline_names, get_baseline
from scaler.errors import ScalerError, SpecError
from scaler.spec import (
    ACTIVATIONS,
    BLOCK_FAMILIES,
    NORMS,
    ROUNDINGS,
    Head,
    Spec,
    Stage,
    Stem,
    dumps,
    from_dict,
    load_spec,
    loads,
    save_spec,
    to_dict,
)

FORMATS = ("json", "toml")
B0 = get_baseline("efficientnet-b0")


def _field(message: str) -> str:
    """The field a SpecError names: the text before the first ': '."""
    return message.split(": ", 1)[0]


def _raises_on(data: dict, field: str) -> str:
    with pytest.raises(SpecError) as info:
        from_dict(data)
    assert _field(str(info.value)) == field, str(info.value)
    return str(info.value)


def _b0_dict() -> dict:
    return json.loads(dumps(B0, "json"))


# ---------------------------------------------------------------- frozen


def test_spec_and_parts_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        B0.resolution = 300
    with pytest.raises(dataclasses.FrozenInstanceError):
        B0.stem.channels = 64
    with pytest.raises(dataclasses.FrozenInstanceError):
        B0.stages[0].repeats = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        B0.head.channels = 0
    assert isinstance(B0.stages, tuple)
    assert hash(B0) == hash(dataclasses.replace(B0))  # frozen all the way down, so hashable


def test_from_dict_gives_stages_as_tuple():
    spec = from_dict(_b0_dict())
    assert isinstance(spec.stages, tuple)
    assert all(isinstance(s, Stage) for s in spec.stages)
    assert spec == B0


# ---------------------------------------------------------------- round trips of the baselines


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", baseline_names())
def test_baseline_round_trips_through_file(tmp_path, name, fmt):
    spec = get_baseline(name)
    path = save_spec(spec, tmp_path / f"{name}.{fmt}")
    assert path.exists()
    loaded = load_spec(path)
    assert loaded == spec
    assert dumps(loaded, fmt) == dumps(spec, fmt)
    assert loaded.stem == spec.stem and loaded.head == spec.head and loaded.stages == spec.stages


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", baseline_names())
def test_baseline_round_trips_through_text(name, fmt):
    spec = get_baseline(name)
    assert loads(dumps(spec, fmt), fmt) == spec
    assert from_dict(to_dict(spec)) == spec


def test_file_format_follows_suffix(tmp_path):
    save_spec(B0, tmp_path / "a.json")
    save_spec(B0, tmp_path / "a.toml")
    assert json.loads((tmp_path / "a.json").read_text())["name"] == "efficientnet-b0"
    assert 'name = "efficientnet-b0"' in (tmp_path / "a.toml").read_text()
    # upper-case suffixes are the same formats
    assert load_spec(save_spec(B0, tmp_path / "b.JSON")) == B0


def test_dumps_unknown_format_raises():
    with pytest.raises(ScalerError, match="yaml"):
        dumps(B0, "yaml")


def test_loads_unknown_format_raises():
    # as dumps does, instead of silently reading the text as TOML
    with pytest.raises(ScalerError, match="yaml"):
        loads(dumps(B0, "toml"), "yaml")


# ---------------------------------------------------------------- property: random valid specs round trip

_FAMILY_BLOCKS: dict[str, list[str]] = {}
for _block, _family in BLOCK_FAMILIES.items():
    _FAMILY_BLOCKS.setdefault(_family, []).append(_block)

_unit_open = st.floats(min_value=0.0, max_value=1.0, exclude_max=True, allow_nan=False)


@st.composite
def valid_specs(draw) -> Spec:
    family = draw(st.sampled_from(sorted(_FAMILY_BLOCKS)))
    stem = Stem(
        channels=draw(st.integers(1, 256)),
        kernel=draw(st.integers(1, 9)),
        stride=draw(st.integers(1, 4)),
    )
    stages = []
    previous = stem.channels
    for _ in range(draw(st.integers(1, 5))):
        block = draw(st.sampled_from(_FAMILY_BLOCKS[family]))
        stride = draw(st.integers(1, 3))
        channels = previous if block == "convnext" and stride == 1 else draw(st.integers(1, 2048))
        kernel = draw(st.integers(1, 9)) if block == "convnext" else draw(st.integers(0, 4)) * 2 + 1
        expansion = 1.0 if block == "basic" else draw(
            st.floats(min_value=0.0, max_value=64.0, exclude_min=True, allow_nan=False))
        se_ratio = draw(st.floats(0.0, 1.0, allow_nan=False)) if block == "mbconv" else 0.0
        stages.append(Stage(block, draw(st.integers(1, 50)), channels, stride, kernel, expansion, se_ratio))
        previous = channels
    return Spec(
        name=draw(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)),
        stem=stem,
        stages=tuple(stages),
        head=Head(draw(st.integers(0, 4096))),
        resolution=draw(st.integers(1, 1024)),
        num_classes=draw(st.integers(1, 100_000)),
        activation=draw(st.sampled_from(ACTIVATIONS)),
        norm="layernorm" if family == "convnext" else draw(st.sampled_from(NORMS)),
        norm_eps=draw(st.floats(0.0, 1.0, exclude_min=True, allow_nan=False)),
        dropout=draw(_unit_open),
        drop_path=draw(_unit_open),
        rounding=draw(st.sampled_from(ROUNDINGS)),
        divisor=draw(st.integers(1, 64)),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=valid_specs(), fmt=st.sampled_from(FORMATS))
def test_random_valid_specs_round_trip_exactly(spec, fmt):
    text = dumps(spec, fmt)
    loaded = loads(text, fmt)
    assert loaded == spec
    # exactly: same types and the same text again (catches 6 vs 6.0, -0.0 vs 0.0, precision loss)
    assert dumps(loaded, fmt) == text
    for a, b in zip(loaded.stages, spec.stages):
        for f in dataclasses.fields(Stage):
            assert type(getattr(a, f.name)) is type(getattr(b, f.name)), f.name


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=valid_specs(), fmt=st.sampled_from(FORMATS))
def test_random_valid_specs_round_trip_through_files(tmp_path, spec, fmt):
    assert load_spec(save_spec(spec, tmp_path / f"spec.{fmt}")) == spec


# ---------------------------------------------------------------- integers for float fields


@pytest.mark.parametrize("fmt", FORMATS)
def test_integers_for_float_fields_load_as_floats(fmt):
    data = _b0_dict()
    for stage in data["stages"]:
        stage["expansion"] = int(stage["expansion"])
    data["norm_eps"] = 1
    data["dropout"] = 0
    text = json.dumps(data) if fmt == "json" else dumps(from_dict(data), "toml").replace("expansion = 6.0",
                                                                                       "expansion = 6")
    if fmt == "toml":
        assert "expansion = 6\n" in text
    spec = loads(text, fmt)
    assert spec.stages[1].expansion == 6.0
    assert all(type(s.expansion) is float for s in spec.stages)
    assert type(spec.norm_eps) is float and type(spec.dropout) is float
    assert spec.stages == B0.stages


def test_int_expansion_equals_float_spec():
    data = _b0_dict()
    data["stages"][1]["expansion"] = 6
    spec = from_dict(data)
    assert spec == B0
    assert type(spec.stages[1].expansion) is float


# ---------------------------------------------------------------- validation names the field


def _stage_data(i: int, **changes) -> dict:
    data = _b0_dict()
    data["stages"][i].update(changes)
    return data


def test_even_kernel_names_stage_and_field():
    _raises_on(_stage_data(2, kernel=4), "stages[2].kernel")


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "2", None])
def test_bad_repeats_names_stage_and_field(bad):
    _raises_on(_stage_data(0, repeats=bad), "stages[0].repeats")


def test_repeats_as_float_with_integer_value_is_rejected():
    _raises_on(_stage_data(3, repeats=2.0), "stages[3].repeats")


@pytest.mark.parametrize(
    "field, bad",
    [("channels", 0), ("stride", 0), ("kernel", 0), ("expansion", 0.0), ("expansion", -1.0), ("expansion", 65.0),
     ("se_ratio", -0.1), ("se_ratio", 1.5), ("block", "transformer"), ("expansion", "6")],
)
def test_bad_stage_fields(field, bad):
    _raises_on(_stage_data(4, **{field: bad}), f"stages[4].{field}")


def test_unknown_block_lists_choices():
    message = _raises_on(_stage_data(1, block="transformer"), "stages[1].block")
    for block in BLOCK_FAMILIES:
        assert block in message


def test_unknown_top_level_field_names_key():
    data = _b0_dict() | {"widht": 1.2}
    message = _raises_on(data, "widht")
    assert "unknown field" in message


def test_unknown_stage_field_names_key():
    message = _raises_on(_stage_data(3, se=0.25), "stages[3].se")
    assert "unknown field" in message


def test_unknown_stem_and_head_field():
    data = _b0_dict()
    data["stem"]["padding"] = 1
    _raises_on(data, "stem.padding")
    data = _b0_dict()
    data["head"]["dropout"] = 0.1
    _raises_on(data, "head.dropout")


@pytest.mark.parametrize("missing", ["name", "stem", "stages"])
def test_missing_required_top_level_field(missing):
    data = _b0_dict()
    del data[missing]
    message = _raises_on(data, missing)
    assert "missing" in message


def test_missing_stage_and_stem_field():
    data = _b0_dict()
    del data["stages"][5]["channels"]
    assert "missing" in _raises_on(data, "stages[5].channels")
    data = _b0_dict()
    del data["stem"]["channels"]
    _raises_on(data, "stem.channels")


def test_defaults_fill_optional_fields():
    data = {"name": "tiny", "stem": {"channels": 8}, "stages": [{"block": "mbconv", "repeats": 1, "channels": 16}]}
    spec = from_dict(data)
    assert spec.head == Head() and spec.resolution == 224 and spec.rounding == "v1" and spec.divisor == 8
    assert spec.stages[0] == Stage("mbconv", 1, 16)


@pytest.mark.parametrize(
    "section, bad",
    [("stem", 32), ("stem", [32]), ("head", 1280), ("stages", {"block": "mbconv"}), ("stages", "mbconv")],
)
def test_wrong_type_for_whole_section(section, bad):
    data = _b0_dict()
    data[section] = bad
    _raises_on(data, section)


def test_wrong_type_for_one_stage():
    data = _b0_dict()
    data["stages"][2] = 40
    _raises_on(data, "stages[2]")


@pytest.mark.parametrize("bad", [[], 5, "spec"])
def test_whole_document_not_a_table(bad):
    with pytest.raises(SpecError, match="expected a table"):
        from_dict(bad)


def test_empty_stage_list():
    data = _b0_dict()
    data["stages"] = []
    _raises_on(data, "stages")


@pytest.mark.parametrize(
    "field, bad",
    [("name", ""), ("name", 3), ("resolution", 0), ("resolution", 224.0), ("num_classes", 0), ("divisor", 0),
     ("norm_eps", 0.0), ("norm_eps", 2.0), ("rounding", "v3"), ("norm", "groupnorm"), ("drop_path", 1.0),
     ("drop_path", -0.1), ("dropout", "0.2")],
)
def test_bad_top_level_fields(field, bad):
    data = _b0_dict()
    data[field] = bad
    _raises_on(data, field)


def test_mixed_block_families():
    data = _stage_data(3, block="bottleneck", se_ratio=0.0)
    message = _raises_on(data, "stages[3].block")
    assert "bottleneck" in message and "mbconv" in message


def test_fused_and_plain_mbconv_mix():
    spec = get_baseline("efficientnetv2-s")
    assert {s.block for s in spec.stages} == {"fused_mbconv", "mbconv"}


def test_se_ratio_on_basic_block():
    data = json.loads(dumps(get_baseline("resnet18")))
    data["stages"][1]["se_ratio"] = 0.25
    _raises_on(data, "stages[1].se_ratio")


@pytest.mark.parametrize("block", ["bottleneck", "inverted_residual", "fused_mbconv"])
def test_se_ratio_only_on_mbconv(block):
    name = {"bottleneck": "resnet50", "inverted_residual": "mobilenetv2", "fused_mbconv": "efficientnetv2-s"}[block]
    data = json.loads(dumps(get_baseline(name)))
    data["stages"][0]["se_ratio"] = 0.25
    _raises_on(data, "stages[0].se_ratio")


def test_basic_block_expansion_must_be_one():
    data = json.loads(dumps(get_baseline("resnet18")))
    data["stages"][2]["expansion"] = 2.0
    _raises_on(data, "stages[2].expansion")


def test_convnext_with_batchnorm():
    data = json.loads(dumps(get_baseline("convnext-tiny")))
    data["norm"] = "batchnorm"
    message = _raises_on(data, "norm")
    assert "layernorm" in message


def test_convnext_changes_channels_only_when_downsampling():
    data = json.loads(dumps(get_baseline("convnext-tiny")))
    data["stages"][0]["channels"] = 128
    _raises_on(data, "stages[0].channels")


def test_convnext_even_kernel_is_allowed():
    data = json.loads(dumps(get_baseline("convnext-tiny")))
    data["stages"][1]["kernel"] = 4
    assert from_dict(data).stages[1].kernel == 4


@pytest.mark.parametrize("field", ["dropout", "drop_path"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_dropout(field, bad):
    data = _b0_dict()
    data[field] = bad
    message = _raises_on(data, field)
    assert "finite" in message


def test_non_finite_dropout_in_json_and_toml_text():
    text = dumps(B0, "json").replace('"dropout": 0.2', '"dropout": NaN')
    assert "NaN" in text
    with pytest.raises(SpecError, match=r"^dropout:"):
        loads(text, "json")
    text = dumps(B0, "toml").replace("dropout = 0.2", "dropout = inf")
    assert "dropout = inf" in text
    with pytest.raises(SpecError, match=r"^dropout:"):
        loads(text, "toml")


def test_dropout_one_is_rejected_just_below_is_accepted():
    data = _b0_dict()
    data["dropout"] = 1.0
    _raises_on(data, "dropout")
    data["dropout"] = math.nextafter(1.0, 0.0)
    assert from_dict(data).dropout < 1.0


def test_unknown_activation_lists_choices():
    data = _b0_dict()
    data["activation"] = "tanh"
    message = _raises_on(data, "activation")
    assert "tanh" in message
    for choice in ACTIVATIONS:
        assert choice in message


def test_direct_construction_validates_too():
    with pytest.raises(SpecError, match=r"^stages\[0\]\.kernel"):
        Spec("x", Stem(8), (Stage("mbconv", 1, 8, kernel=2),))
    with pytest.raises(SpecError, match=r"^stages"):
        Spec("x", Stem(8), ())


def test_spec_error_is_a_scaler_error():
    assert issubclass(SpecError, ScalerError)


# ---------------------------------------------------------------- files


@pytest.mark.parametrize("fmt, text", [("json", '{"name": "x", '), ("toml", 'name = "x\nstem = {')])
def test_malformed_text_names_the_file(tmp_path, fmt, text):
    path = tmp_path / f"broken.{fmt}"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert str(path) in message
    assert fmt.upper() in message


@pytest.mark.parametrize("fmt", FORMATS)
def test_malformed_text_without_file(fmt):
    with pytest.raises(SpecError, match=f"not valid {fmt.upper()}"):
        loads("[[[", fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_field_errors_in_files_name_file_and_field(tmp_path, fmt):
    path = tmp_path / f"bad.{fmt}"
    save_spec(B0, path)
    path.write_text(path.read_text().replace("kernel = 5", "kernel = 4").replace('"kernel": 5', '"kernel": 4'))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert re.search(r"stages\[2\]\.kernel", message)


@pytest.mark.parametrize("suffix", [".yaml", ".txt", ""])
def test_wrong_suffix(tmp_path, suffix):
    path = tmp_path / f"spec{suffix}"
    path.write_text(dumps(B0, "json"))
    with pytest.raises(ScalerError, match=r"\.json or \.toml"):
        load_spec(path)
    with pytest.raises(ScalerError, match=r"\.json or \.toml"):
        save_spec(B0, tmp_path / f"out{suffix}")
    assert not (tmp_path / f"out{suffix}").exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_file(tmp_path, fmt):
    path = tmp_path / f"nowhere.{fmt}"
    with pytest.raises(ScalerError) as info:
        load_spec(path)
    assert str(path) in str(info.value)


def test_unwritable_path(tmp_path):
    with pytest.raises(ScalerError, match="cannot write"):
        save_spec(B0, tmp_path / "no" / "such" / "dir" / "spec.json")


def test_binary_file_is_a_spec_error(tmp_path):
    path = tmp_path / "binary.json"
    path.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(path) in str(info.value)


def test_an_unknown_field_with_a_line_break_in_its_name_is_named_on_one_line():
    with pytest.raises(SpecError, match=r"^'\\n': unknown field") as caught:
        loads(json.dumps({"\n": None}), "json")
    assert "\n" not in str(caught.value)
