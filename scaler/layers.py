"""The layers the blocks share: torchvision's modules, name for name. Each has a cost twin in scaler.costs
(`ConvNormAct` and `conv_norm_act_cost`, ...), which follows it on shapes alone."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

INPLACE_ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "relu6": nn.ReLU6}


def activation(kind: str) -> nn.Module:
    """The spec's activation; in place where torchvision's is (all but GELU)."""
    return nn.GELU() if kind == "gelu" else INPLACE_ACTIVATIONS[kind](inplace=True)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor, as torchvision's ConvNeXt has it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def norm2d(kind: str, channels: int, eps: float) -> nn.Module:
    return nn.BatchNorm2d(channels, eps=eps) if kind == "batchnorm" else LayerNorm2d(channels, eps=eps)


class ConvNormAct(nn.Sequential):
    """Conv2d, norm, activation: torchvision's Conv2dNormActivation (same children 0, 1, 2)."""

    def __init__(self, cin, cout, kernel, stride=1, groups=1, norm="batchnorm", eps=1e-5, act="silu",
                 padding=None, bias=False):
        padding = (kernel - 1) // 2 if padding is None else padding
        layers = [nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=bias), norm2d(norm, cout, eps)]
        if act is not None:
            layers.append(activation(act))
        super().__init__(*layers)


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


class Permute(nn.Module):
    def __init__(self, dims: list[int]):
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)
