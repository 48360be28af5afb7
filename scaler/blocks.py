"""Building blocks, each the torchvision module of its family, layer for layer and name for name, so that a
torchvision state_dict loads into the built network. Each block's cost twin in scaler.costs follows its `forward`
on shapes alone (`MBConv` and `mbconv_cost`, ...); tests hold the twins to what the built modules measure.
All blocks take the same arguments: (cin, cout, stride, kernel, hidden, se_ratio, drop_path, act, norm, eps).
"""

from __future__ import annotations

import torch
from torch import nn

from scaler.layers import ConvNormAct, LayerNorm2d, Permute, SqueezeExcitation, StochasticDepth, activation, norm2d
from scaler.plan import squeeze_channels


def _expand_depthwise(cin, stride, kernel, hidden, act, norm, eps) -> list[nn.Module]:
    """The 1x1 expansion (skipped when it would not widen) and the depthwise conv of an inverted bottleneck."""
    layers = [ConvNormAct(cin, hidden, 1, norm=norm, eps=eps, act=act)] if hidden != cin else []
    return layers + [ConvNormAct(hidden, hidden, kernel, stride, groups=hidden, norm=norm, eps=eps, act=act)]


class MBConv(nn.Module):
    """EfficientNet's inverted bottleneck: 1x1 expand, depthwise, squeeze-excitation, 1x1 project."""

    def __init__(self, cin, cout, stride, kernel, hidden, se_ratio, drop_path, act, norm, eps):
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        layers = _expand_depthwise(cin, stride, kernel, hidden, act, norm, eps)
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

    def residual_norm(self) -> nn.Module | None:
        """The norm that ends the residual branch (None without a shortcut): at zero scale the block is x."""
        return self.block[-1][1] if self.use_res_connect else None


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
        layers = _expand_depthwise(cin, stride, kernel, hidden, act, norm, eps)
        self.conv = nn.Sequential(*layers, nn.Conv2d(hidden, cout, 1, bias=False), norm2d(norm, cout, eps))
        self.stochastic_depth = StochasticDepth(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.stochastic_depth(self.conv(x))
        return self.conv(x)

    def residual_norm(self) -> nn.Module | None:
        return self.conv[-1] if self.use_res_connect else None


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

    def residual_norm(self) -> nn.Module:
        return self.bn2


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

    def residual_norm(self) -> nn.Module:
        return self.bn3


def _shortcut(cin: int, cout: int, stride: int, norm: str, eps: float) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), norm2d(norm, cout, eps))


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
