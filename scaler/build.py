"""Turn a spec into a torch.nn.Module laid out as torchvision lays out the spec's family."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from scaler.baselines import resolve_spec
from scaler.blocks import BLOCKS, convnext_downsample
from scaler.layers import ConvNormAct, LayerNorm2d, activation, norm2d
from scaler.plan import block_plan
from scaler.spec import Spec


def _stages(spec: Spec) -> list[list[nn.Module]]:
    return [
        [BLOCKS[stage.block](*args, spec.activation, spec.norm, spec.norm_eps) for args in blocks]
        for stage, blocks in zip(spec.stages, block_plan(spec))
    ]


class Network(nn.Module):
    """features -> avgpool -> classifier, as torchvision's EfficientNet, MobileNetV2 and ConvNeXt."""

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential, classifier_takes_map: bool):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = classifier
        self.classifier_takes_map = classifier_takes_map

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(x if self.classifier_takes_map else torch.flatten(x, 1))


class ResNet(nn.Module):
    """conv1, bn1, relu, maxpool, layer1..N, avgpool, fc, as torchvision's ResNet."""

    def __init__(self, spec: Spec):
        super().__init__()
        stem = spec.stem
        self.conv1 = nn.Conv2d(3, stem.channels, stem.kernel, stem.stride, (stem.kernel - 1) // 2, bias=False)
        self.bn1 = norm2d(spec.norm, stem.channels, spec.norm_eps)
        self.relu = activation(spec.activation)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for i, blocks in enumerate(_stages(spec)):
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_stages = len(spec.stages)
        width = spec.stages[-1].channels
        self.head = ConvNormAct(width, spec.head.channels, 1, norm=spec.norm, eps=spec.norm_eps,
                                act=spec.activation) if spec.head.channels else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(spec.dropout, inplace=True) if spec.dropout else None
        self.fc = nn.Linear(spec.head.channels or width, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        if self.head is not None:
            x = self.head(x)
        x = torch.flatten(self.avgpool(x), 1)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.fc(x)


def _features_network(spec: Spec) -> Network:
    stem = spec.stem
    convnext = spec.family == "convnext"
    if convnext:
        features = [ConvNormAct(3, stem.channels, stem.kernel, stem.stride, norm=spec.norm, eps=spec.norm_eps,
                                act=None, padding=0, bias=True)]
    else:
        features = [ConvNormAct(3, stem.channels, stem.kernel, stem.stride, norm=spec.norm, eps=spec.norm_eps,
                                act=spec.activation)]
    cin = stem.channels
    for stage, blocks in zip(spec.stages, _stages(spec)):
        if convnext and stage.stride > 1:
            features.append(convnext_downsample(cin, stage.channels, stage.stride, spec.norm_eps))
        if spec.family == "mobilenetv2":
            features.extend(blocks)
        else:
            features.append(nn.Sequential(*blocks))
        cin = stage.channels
    if spec.head.channels:
        features.append(ConvNormAct(cin, spec.head.channels, 1, norm=spec.norm, eps=spec.norm_eps,
                                    act=spec.activation))
        cin = spec.head.channels
    if convnext:
        classifier = [LayerNorm2d(cin, eps=spec.norm_eps), nn.Flatten(1)]
        if spec.dropout:
            classifier.append(nn.Dropout(spec.dropout, inplace=True))
    else:
        classifier = [nn.Dropout(spec.dropout, inplace=True)]
    classifier.append(nn.Linear(cin, spec.num_classes))
    return Network(nn.Sequential(*features), nn.Sequential(*classifier), classifier_takes_map=convnext)


def build_model(network: Spec | str | Path) -> nn.Module:
    """A freshly initialised torch module for a spec, a baseline name or a spec file."""
    spec = resolve_spec(network)
    # The layers' own default initialisation draws from the global generator in amounts that depend on the whole
    # network; those draws are undone, so that `_initialise` starts from the same state for every network and two
    # networks built after the same seed start with the same weights wherever their leading layers have the same
    # shapes (common random numbers: candidates of a study are compared seed by seed).
    with torch.random.fork_rng(devices=[]):
        model = ResNet(spec) if spec.family == "resnet" else _features_network(spec)
    _initialise(model, spec.norm_momentum)
    return model


def _initialise(model: nn.Module, norm_momentum: float) -> None:
    """torchvision's initialisation: Kaiming-normal convs (fan out), unit norms, small uniform linears;
    and the spec's BatchNorm momentum."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = norm_momentum
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            bound = 1.0 / module.out_features**0.5
            nn.init.uniform_(module.weight, -bound, bound)
            nn.init.zeros_(module.bias)
