"""Layers shared by the blocks, each with its cost twin, and the tally the twins write into.

A twin follows its layer's forward pass on an `Act` (a shape, and whether autograd already holds
its storage) and adds to a `Cost` what the layer costs: parameters, multiply-adds, fvcore's count,
output elements, and the elements autograd saves for backward. The saving rules are PyTorch's, as
measured with saved-tensor hooks: convolutions, linears, norms and GELU save their input; ReLU and
sigmoid their result; in-place SiLU and ReLU6 save a copy of their input; max-pool saves its input
and int64 indices; multiplying by a random mask saves the mask.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

INPLACE_ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "relu6": nn.ReLU6}


class Act:
    """An activation tensor per image: channels x height x width, and whether a saved tensor holds it."""

    __slots__ = ("channels", "height", "width", "elements", "saved")

    def __init__(self, channels: int, height: int, width: int):
        self.channels, self.height, self.width = channels, height, width
        self.elements = channels * height * width
        self.saved = False


class Cost:
    """What a part of a network costs. Memory counts are elements per image in the training dtype,
    except `saved_fixed` (per-channel statistics, the same for any batch) and `saved_int64`."""

    __slots__ = ("params", "macs", "fvcore_flops", "activations", "saved", "saved_fixed", "saved_int64", "largest")

    def __init__(self):
        self.params = self.macs = self.fvcore_flops = self.activations = 0
        self.saved = self.saved_fixed = self.saved_int64 = self.largest = 0

    def save(self, act: Act) -> None:
        """Autograd keeps `act`'s storage; counted once however many ops save it."""
        if not act.saved:
            act.saved = True
            self.saved += act.elements

    def output(self, channels: int, height: int, width: int) -> Act:
        """A new tensor; the largest one bounds the transient memory of the backward pass."""
        act = Act(channels, height, width)
        if act.elements > self.largest:
            self.largest = act.elements
        return act

    def add(self, other: Cost, times: int = 1) -> None:
        self.params += times * other.params
        self.macs += times * other.macs
        self.fvcore_flops += times * other.fvcore_flops
        self.activations += times * other.activations
        self.saved += times * other.saved
        self.saved_fixed += times * other.saved_fixed
        self.saved_int64 += times * other.saved_int64
        self.largest = max(self.largest, other.largest)


def activation(kind: str) -> nn.Module:
    """The spec's activation; in place where torchvision's is (all but GELU)."""
    return nn.GELU() if kind == "gelu" else INPLACE_ACTIVATIONS[kind](inplace=True)


def activation_cost(cost: Cost, x: Act, kind: str) -> Act:
    if kind == "relu":
        cost.save(x)
        return x
    if kind == "gelu":
        cost.save(x)
        return cost.output(x.channels, x.height, x.width)
    cost.saved += x.elements
    return x


def conv_cost(cost: Cost, x: Act, cout: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False,
              padding: int | None = None) -> Act:
    padding = (kernel - 1) // 2 if padding is None else padding
    height = (x.height + 2 * padding - kernel) // stride + 1
    width = (x.width + 2 * padding - kernel) // stride + 1
    per_output = x.channels // groups * kernel * kernel
    cost.params += cout * per_output + (cout if bias else 0)
    out = cost.output(cout, height, width)
    cost.macs += out.elements * per_output
    cost.fvcore_flops += out.elements * per_output
    cost.activations += out.elements
    if not x.saved:  # cost.save(x), inline: this is the estimator's hottest line
        x.saved = True
        cost.saved += x.elements
    return out


def linear_cost(cost: Cost, x: Act, features: int) -> Act:
    """A linear layer over the channels of every position (ConvNeXt's MLP) or of a pooled vector."""
    positions = x.height * x.width
    cost.params += x.channels * features + features
    cost.macs += positions * x.channels * features
    cost.fvcore_flops += positions * x.channels * features
    cost.activations += positions * features
    cost.save(x)
    return cost.output(features, x.height, x.width)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor, as torchvision's ConvNeXt has it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def norm2d(kind: str, channels: int, eps: float) -> nn.Module:
    return nn.BatchNorm2d(channels, eps=eps) if kind == "batchnorm" else LayerNorm2d(channels, eps=eps)


def norm_cost(cost: Cost, x: Act, kind: str) -> Act:
    """BatchNorm keeps its input and two per-channel statistics; LayerNorm its input and two per-position ones.
    fvcore counts 2 operations an element for BatchNorm in eval mode, 5 for LayerNorm."""
    cost.params += 2 * x.channels
    if not x.saved:  # cost.save(x), inline
        x.saved = True
        cost.saved += x.elements
    if kind == "batchnorm":
        cost.fvcore_flops += 2 * x.elements
        cost.saved_fixed += 2 * x.channels
    else:
        cost.fvcore_flops += 5 * x.elements
        cost.saved += 2 * x.height * x.width
    return cost.output(x.channels, x.height, x.width)


class ConvNormAct(nn.Sequential):
    """Conv2d, norm, activation: torchvision's Conv2dNormActivation (same children 0, 1, 2)."""

    def __init__(self, cin, cout, kernel, stride=1, groups=1, norm="batchnorm", eps=1e-5, act="silu",
                 padding=None, bias=False):
        padding = (kernel - 1) // 2 if padding is None else padding
        layers = [nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=bias), norm2d(norm, cout, eps)]
        if act is not None:
            layers.append(activation(act))
        super().__init__(*layers)

    @staticmethod
    def cost(cost: Cost, x: Act, cout, kernel, stride=1, groups=1, norm="batchnorm", act="silu",
             padding=None, bias=False) -> Act:
        x = norm_cost(cost, conv_cost(cost, x, cout, kernel, stride, groups, bias, padding), norm)
        return x if act is None else activation_cost(cost, x, act)


def pool_cost(cost: Cost, x: Act) -> Act:
    """Global average pooling: fvcore counts one operation an input element; autograd keeps nothing."""
    cost.fvcore_flops += x.elements
    return cost.output(x.channels, 1, 1)


def max_pool_cost(cost: Cost, x: Act, kernel: int = 3, stride: int = 2, padding: int = 1) -> Act:
    """Max-pooling keeps its input and the int64 index of every maximum; fvcore does not count it."""
    cost.save(x)
    out = cost.output(x.channels, (x.height + 2 * padding - kernel) // stride + 1,
                      (x.width + 2 * padding - kernel) // stride + 1)
    cost.saved_int64 += out.elements
    return out


class StochasticDepth(nn.Module):
    """Drops the whole residual branch of a random subset of samples in training (torchvision's "row" mode)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        noise = torch.empty([x.shape[0]] + [1] * (x.ndim - 1), dtype=x.dtype, device=x.device).bernoulli_(survival)
        return x * noise.div_(survival)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode=row"

    @staticmethod
    def cost(cost: Cost, x: Act, p: float) -> Act:
        """Multiplying by the per-sample mask keeps only the mask, one element an image."""
        if p == 0.0:
            return x
        cost.saved += 1
        return cost.output(x.channels, x.height, x.width)


def dropout_cost(cost: Cost, x: Act, p: float) -> Act:
    """In-place dropout keeps its random mask, as large as its input, in the training dtype."""
    if p:
        cost.saved += x.elements
    return x


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation: pool, 1x1 conv down, activation, 1x1 conv up, sigmoid gate."""

    def __init__(self, channels: int, squeeze: int, act: str):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = activation(act)
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x

    @staticmethod
    def cost(cost: Cost, x: Act, squeeze: int, act: str) -> Act:
        s = conv_cost(cost, pool_cost(cost, x), squeeze, 1, bias=True)
        scale = conv_cost(cost, activation_cost(cost, s, act), x.channels, 1, bias=True)
        scale = cost.output(scale.channels, 1, 1)
        cost.save(scale)
        cost.save(x)
        return cost.output(x.channels, x.height, x.width)


class Permute(nn.Module):
    def __init__(self, dims: list[int]):
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)
