"""Building blocks, each beside its cost twin.

Every block is the torchvision module of its family, layer for layer and name for name, so that a
torchvision state_dict loads into the built network. Next to each block sits a function that computes
the block's cost from the same arguments without building anything (pycls's idea: cost and structure
change together because they sit together). Tests hold the twins to what the built modules measure.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from scaler.scaling import round_channels

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
    return max(1, int(cin * se_ratio))


class MBConv(nn.Module):
    """EfficientNet's inverted bottleneck: 1x1 expand, depthwise, squeeze-excitation, 1x1 project."""

    def __init__(self, cin, cout, stride, kernel, hidden, se_ratio, drop_path, act, norm, eps):
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        layers = []
        if hidden != cin:
            layers.append(ConvNormAct(cin, hidden, 1, norm=norm, eps=eps, act=act))
        layers.append(ConvNormAct(hidden, hidden, kernel, stride, groups=hidden, norm=norm, eps=eps, act=act))
        if se_ratio:
            layers.append(SqueezeExcitation(hidden, squeeze_channels(cin, se_ratio), act))
        layers.append(ConvNormAct(hidden, cout, 1, norm=norm, eps=eps, act=None))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.block(x)
        if self.use_res_connect:
            result = self.stochastic_depth(result)
            result += x
        return result


class FusedMBConv(MBConv):
    """EfficientNetV2's Fused-MBConv: one full kxk conv in place of expand + depthwise, then 1x1 project."""

    def __init__(self, cin, cout, stride, kernel, hidden, se_ratio, drop_path, act, norm, eps):
        nn.Module.__init__(self)
        self.use_res_connect = stride == 1 and cin == cout
        if hidden != cin:
            layers = [
                ConvNormAct(cin, hidden, kernel, stride, norm=norm, eps=eps, act=act),
                ConvNormAct(hidden, cout, 1, norm=norm, eps=eps, act=None),
            ]
        else:
            layers = [ConvNormAct(cin, cout, kernel, stride, norm=norm, eps=eps, act=act)]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(drop_path)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand, depthwise, linear 1x1 project (torchvision names: conv.0 ... conv.3)."""

    def __init__(self, cin, cout, stride, kernel, hidden, se_ratio, drop_path, act, norm, eps):
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        layers = []
        if hidden != cin:
            layers.append(ConvNormAct(cin, hidden, 1, norm=norm, eps=eps, act=act))
        layers += [
            ConvNormAct(hidden, hidden, kernel, stride, groups=hidden, norm=norm, eps=eps, act=act),
            nn.Conv2d(hidden, cout, 1, bias=False),
            norm2d(norm, cout, eps),
        ]
        self.conv = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.stochastic_depth(self.conv(x))
        return self.conv(x)


class BasicBlock(nn.Module):
    """ResNet's two 3x3 convs; a 1x1 strided conv on the shortcut when the shape changes."""

    def __init__(self, cin, cout, stride, kernel, hidden, se_ratio, drop_path, act, norm, eps):
        super().__init__()
        pad = (kernel - 1) // 2
        self.conv1 = nn.Conv2d(cin, cout, kernel, stride, pad, bias=False)
        self.bn1 = norm2d(norm, cout, eps)
        self.relu = activation(act)
        self.conv2 = nn.Conv2d(cout, cout, kernel, 1, pad, bias=False)
        self.bn2 = norm2d(norm, cout, eps)
        self.downsample = _shortcut(cin, cout, stride, norm, eps)
        self.stochastic_depth = StochasticDepth(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        out = self.stochastic_depth(out)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """ResNet v1.5's 1x1 reduce, strided 3x3, 1x1 expand (torchvision's Bottleneck)."""

    def __init__(self, cin, cout, stride, kernel, hidden, se_ratio, drop_path, act, norm, eps):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, hidden, 1, bias=False)
        self.bn1 = norm2d(norm, hidden, eps)
        self.conv2 = nn.Conv2d(hidden, hidden, kernel, stride, (kernel - 1) // 2, bias=False)
        self.bn2 = norm2d(norm, hidden, eps)
        self.conv3 = nn.Conv2d(hidden, cout, 1, bias=False)
        self.bn3 = norm2d(norm, cout, eps)
        self.relu = activation(act)
        self.downsample = _shortcut(cin, cout, stride, norm, eps)
        self.stochastic_depth = StochasticDepth(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        out = self.stochastic_depth(out)
        out += identity
        return self.relu(out)


def _shortcut(cin: int, cout: int, stride: int, norm: str, eps: float) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), norm2d(norm, cout, eps))


class Permute(nn.Module):
    def __init__(self, dims: list[int]):
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)


class CNBlock(nn.Module):
    """ConvNeXt's block: 7x7 depthwise, LayerNorm, inverted MLP, layer scale (torchvision's CNBlock)."""

    def __init__(self, cin, cout, stride, kernel, hidden, se_ratio, drop_path, act, norm, eps):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(cout, cout, kernel, padding=(kernel - 1) // 2, groups=cout, bias=True),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(cout, eps=eps),
            nn.Linear(cout, hidden),
            activation(act),
            nn.Linear(hidden, cout),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.full((cout, 1, 1), 1e-6))
        self.stochastic_depth = StochasticDepth(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.stochastic_depth(self.layer_scale * self.block(x))
        result += x
        return result


def convnext_downsample(cin: int, cout: int, stride: int, eps: float) -> nn.Module:
    """ConvNeXt's patchify downsampling between stages: LayerNorm, then a stride x stride conv."""
    return nn.Sequential(LayerNorm2d(cin, eps=eps), nn.Conv2d(cin, cout, stride, stride))


BLOCKS = {
    "mbconv": MBConv,
    "fused_mbconv": FusedMBConv,
    "inverted_residual": InvertedResidual,
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
    "convnext": CNBlock,
}
