"""The block plan of a spec: every block's arguments, worked out once from the spec alone (no torch).

The builder (scaler.build) and the estimator (scaler.estimator) both walk this plan, so they cannot disagree on
the network: the inner widths, squeeze widths and stochastic-depth rates are decided here and nowhere else.
"""

from __future__ import annotations

from scaler.scaling import round_channels
from scaler.spec import Spec


def hidden_channels(block: str, cin: int, cout: int, expansion: float, divisor: int) -> int:
    """The inner width of a block; one rule for the module and its cost twin."""
    if block == "bottleneck":
        return round_channels(cout / expansion, divisor)
    if block == "convnext":
        return round(cout * expansion)
    if block == "inverted_residual":
        return int(round(cin * expansion))
    return round_channels(cin * expansion, divisor)


def squeeze_channels(cin: int, se_ratio: float) -> int:
    """The squeeze width of squeeze-excitation: a ratio of the block's input channels, as torchvision has it."""
    return max(1, int(cin * se_ratio))


def drop_path_rates(spec: Spec) -> list[float]:
    """Stochastic-depth probability of every block, rising linearly from 0 as torchvision does: to the spec's
    value at the last block for ConvNeXt, one step short of it for the other families."""
    total = sum(stage.repeats for stage in spec.stages)
    steps = max(1, total - 1) if spec.family == "convnext" else total
    return [spec.drop_path * i / steps for i in range(total)]


def block_plan(spec: Spec) -> list[list[tuple]]:
    """For each stage, the arguments of each of its blocks: (cin, cout, stride, kernel, hidden, se_ratio,
    drop_path). Blocks after a stage's first take its output channels at stride 1 and differ only in drop_path."""
    rates = drop_path_rates(spec)
    cin, index, plan = spec.stem.channels, 0, []
    for stage in spec.stages:
        c = stage.channels
        first_stride = stage.stride if stage.block != "convnext" else 1
        first = (cin, c, first_stride, stage.kernel,
                 hidden_channels(stage.block, cin, c, stage.expansion, spec.divisor))
        rest = (c, c, 1, stage.kernel, hidden_channels(stage.block, c, c, stage.expansion, spec.divisor))
        plan.append([(*(first if i == 0 else rest), stage.se_ratio, rates[index + i]) for i in range(stage.repeats)])
        index += stage.repeats
        cin = c
    return plan
