"""The analytic cost of a network, from its spec alone: no module is built and torch is never imported, so it
takes microseconds.

Counts are exact: parameters; multiply-adds of convolutions and linears ("FLOPs" in the EfficientNet
paper and torchvision); fvcore's total, which adds norms and pooling; output elements of convolutions
and linears (pycls's "activations"); and the bytes autograd saves for backward in one training step.
Compute figures are per image, as papers report them; memory figures are for `batch_size` images.
`peak_training_memory_bytes` is an estimate: weights, gradients, optimizer state, saved activations,
and a transient of twice the largest activation (an output gradient and an input gradient alive at once).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from scaler.baselines import resolve_spec
from scaler.costs import (BLOCK_COSTS, Act, Cost, conv_norm_act_cost, convnext_downsample_cost, dropout_cost,
                          linear_cost, max_pool_cost, norm_cost, pool_cost)
from scaler.errors import ScalerError, check_choice, check_int
from scaler.plan import block_plan
from scaler.spec import Spec

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "float64": 8}
# Mixed precision, as `scaler train` trains on CUDA (torch.autocast): float32 weights, gradients and optimizer
# state (the master copy), activations saved in the half type, and the half copies of the weights that autocast
# makes for each layer and autograd keeps for the backward pass.
MIXED_PRECISIONS = {"bf16-mixed": "bfloat16", "fp16-mixed": "float16"}
PRECISIONS = (*DTYPE_BYTES, *MIXED_PRECISIONS)
# Optimizer state per parameter, in parameters: Adam keeps two moments, SGD with momentum one buffer.
OPTIMIZER_STATES = {"adamw": 2, "adam": 2, "rmsprop": 1, "momentum": 1, "sgd": 0}


@dataclass(frozen=True, slots=True)
class PartEstimate:
    """One row of the per-stage table."""

    name: str
    params: int
    macs: int
    fvcore_flops: int
    activations: int
    saved_activation_bytes: int
    output_shape: tuple[int, int, int]


@dataclass(frozen=True)
class Estimate:
    name: str
    resolution: int
    batch_size: int
    dtype: str
    optimizer: str
    params: int
    macs: int
    fvcore_flops: int
    activations: int
    saved_activation_bytes: int
    peak_training_memory_bytes: int
    weight_bytes: int
    gradient_bytes: int
    optimizer_state_bytes: int
    transient_bytes: int
    parts: tuple[PartEstimate, ...]
    weight_cast_bytes: int = 0  # mixed precision: autocast's half copies of the weights

    def to_dict(self) -> dict:
        return asdict(self) | {"parts": [asdict(p) for p in self.parts]}


def _stem_cost(spec: Spec, cost: Cost, x: Act) -> Act:
    stem = spec.stem
    if spec.family == "convnext":
        return conv_norm_act_cost(cost, x, stem.channels, stem.kernel, stem.stride, norm=spec.norm, act=None,
                                padding=0, bias=True)
    x = conv_norm_act_cost(cost, x, stem.channels, stem.kernel, stem.stride, norm=spec.norm, act=spec.activation)
    return max_pool_cost(cost, x) if spec.family == "resnet" else x


def _stage_cost(spec: Spec, index: int, blocks: list[tuple], cost: Cost, x: Act) -> Act:
    """The first block, then one more block counted (repeats - 1) times: blocks after the first are identical."""
    stage = spec.stages[index]
    twin = BLOCK_COSTS[stage.block]
    if spec.family == "convnext" and stage.stride > 1:
        x = convnext_downsample_cost(cost, x, stage.channels, stage.stride)
    x = twin(cost, x, *blocks[0], spec.activation, spec.norm)
    if len(blocks) == 2:
        x = twin(cost, x, *blocks[1], spec.activation, spec.norm)
    elif len(blocks) > 2:
        repeat = Cost()
        x = twin(repeat, x, *blocks[1], spec.activation, spec.norm)
        cost.add(repeat, len(blocks) - 1)
    return x


def _head_cost(spec: Spec, cost: Cost, x: Act) -> Act:
    if spec.head.channels:
        x = conv_norm_act_cost(cost, x, spec.head.channels, 1, norm=spec.norm, act=spec.activation)
    x = pool_cost(cost, x)
    if spec.family == "convnext":
        x = norm_cost(cost, x, spec.norm)
    return linear_cost(cost, dropout_cost(cost, x, spec.dropout), spec.num_classes)


def _saved_bytes(cost: Cost, batch_size: int, itemsize: int) -> int:
    return batch_size * (cost.saved * itemsize + cost.saved_int64 * 8) + cost.saved_fixed * itemsize


def estimate(
    network: Spec | str | Path,
    batch_size: int = 1,
    dtype: str = "float32",
    optimizer: str = "adamw",
    resolution: int | None = None,
) -> Estimate:
    """Analytic cost of a spec, a baseline name or a spec file at `resolution` (the spec's by default).

    `dtype` is the training dtype of weights and activations (bfloat16 halves every activation byte but
    max-pool's int64 indices), or a mixed precision (MIXED_PRECISIONS: float32 weights, gradients and optimizer
    state, half activations, and the half copies of the weights, counted for every parameter: an upper bound by
    the norms' few, which autocast does not cast).
    """
    spec = resolve_spec(network)
    batch_size = check_int("batch size", batch_size)
    resolution = spec.resolution if resolution is None else check_int("resolution", resolution)
    half = MIXED_PRECISIONS.get(check_choice("dtype", dtype, PRECISIONS))
    itemsize = DTYPE_BYTES[half or dtype]  # of the activations
    check_choice("optimizer", optimizer, OPTIMIZER_STATES)
    if resolution < spec.total_stride:
        raise ScalerError(f"resolution: {resolution} px is smaller than the network's total stride "
                          f"({spec.total_stride}); use at least {spec.total_stride}")

    parts, total = [], Cost()

    def part(name: str, cost: Cost, x: Act) -> Act:
        parts.append(PartEstimate(name, cost.params, cost.macs, cost.fvcore_flops, cost.activations,
                                  _saved_bytes(cost, batch_size, itemsize), (x.channels, x.height, x.width)))
        total.add(cost)
        return x

    cost = Cost()
    x = part("stem", cost, _stem_cost(spec, cost, Act(3, resolution, resolution)))
    for i, blocks in enumerate(block_plan(spec)):
        cost = Cost()
        x = part(f"stage {i + 1}", cost, _stage_cost(spec, i, blocks, cost, x))
    cost = Cost()
    part("head", cost, _head_cost(spec, cost, x))

    weight_bytes = total.params * (DTYPE_BYTES["float32"] if half else itemsize)
    cast_bytes = total.params * itemsize if half else 0
    optimizer_bytes = OPTIMIZER_STATES[optimizer] * weight_bytes
    saved = _saved_bytes(total, batch_size, itemsize)
    transient = 2 * total.largest * batch_size * itemsize
    return Estimate(
        name=spec.name, resolution=resolution, batch_size=batch_size, dtype=dtype, optimizer=optimizer,
        params=total.params, macs=total.macs, fvcore_flops=total.fvcore_flops, activations=total.activations,
        saved_activation_bytes=saved,
        peak_training_memory_bytes=2 * weight_bytes + optimizer_bytes + cast_bytes + saved + transient,
        weight_bytes=weight_bytes, gradient_bytes=weight_bytes, optimizer_state_bytes=optimizer_bytes,
        transient_bytes=transient, parts=tuple(parts), weight_cast_bytes=cast_bytes,
    )
