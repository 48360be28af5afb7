"""Latency as a currency: a table of measured forward latencies, one per distinct piece of a network (its stem,
each block, ConvNeXt's downsampling layers, its tail), summed to a network's latency without building or timing
the network whole.

Equalising candidates on latency (latency-aware compound scaling, as EfficientNet-X chose its coefficients) asks
for the latency of the hundreds of networks the equal-cost solver tries, and they are made of the same few pieces
at a few sizes. A piece is timed once, the first time a network needs it, keyed by everything that decides its
time (its arguments and its input's shape); the table belongs to one device and is stored in the study, so that a
resumed study and every worker solve with the same figures. A sum of pieces is not the network's time (the pieces'
own overheads, caches): `table_error` measures how far it is, against timing networks whole.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from scaler.blocks import BLOCKS
from scaler.build import build_model
from scaler.errors import ScalerError
from scaler.estimator import estimate
from scaler.measurement import measure_latency_ms, time_forward_ms
from scaler.plan import block_plan
from scaler.spec import Spec


def piece_keys(spec: Spec) -> list[tuple[str, tuple[int, int, int]]]:
    """Each piece of the network in forward order, as (key, input shape per image): the key holds what decides
    the piece's time. The same order as `pieces`."""
    parts = estimate(spec).parts  # each part's output shape: the next part's input
    common = (spec.activation, spec.norm, spec.norm_eps)
    stem = spec.stem
    keys = [(("stem", spec.family, stem.channels, stem.kernel, stem.stride, *common), (3, spec.resolution,
                                                                                         spec.resolution))]
    for i, (stage, blocks) in enumerate(zip(spec.stages, block_plan(spec))):
        shape, out = parts[i].output_shape, parts[i + 1].output_shape
        if spec.family == "convnext" and stage.stride > 1:
            keys.append((("downsample", shape[0], stage.channels, stage.stride, spec.norm_eps), shape))
            shape = out
        for j, args in enumerate(blocks):
            keys.append(((stage.block, *args[:6], *common), shape if j == 0 else out))
    last = parts[-2].output_shape
    keys.append((("tail", spec.family, spec.head.channels, spec.num_classes, *common), last))
    return [(json.dumps([*key, *shape]), shape) for key, shape in keys]


class _Tail(nn.Module):
    """The layers after the last block: the head convolution (if any), pooling, flattening, the classifier."""

    def __init__(self, before: list[nn.Module], after: list[nn.Module], flatten: bool):
        super().__init__()
        self.before, self.after, self.flatten = nn.Sequential(*before), nn.Sequential(*after), flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.before(x)
        return self.after(torch.flatten(x, 1) if self.flatten else x)


def pieces(model: nn.Module, spec: Spec) -> list[nn.Module]:
    """The built network cut into the pieces `piece_keys` names, in forward order: run one after another they
    are the network's forward pass."""
    blocks = tuple(BLOCKS.values())
    if spec.family == "resnet":
        stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        body = [block for i in range(model.num_stages) for block in getattr(model, f"layer{i + 1}")]
        head = [model.head] if model.head is not None else []
        after = [model.dropout] if model.dropout is not None else []
        return [stem, *body, _Tail([*head, model.avgpool], [*after, model.fc], flatten=True)]
    features = list(model.features)
    head = features[-1:] if spec.head.channels else []
    body = []
    for module in features[1:len(features) - len(head)]:
        if isinstance(module, blocks):
            body.append(module)
        elif isinstance(module, nn.Sequential) and all(isinstance(m, blocks) for m in module):
            body.extend(module)
        else:  # ConvNeXt's downsampling between stages
            body.append(module)
    return [features[0], *body, _Tail([*head, model.avgpool], list(model.classifier),
                                      flatten=not model.classifier_takes_map)]


@dataclass
class LatencyTable:
    """Measured piece latencies (milliseconds, batch `batch_size`) on one device; `seconds` is the time spent
    measuring them, over every session that added to the table."""

    device: str
    batch_size: int = 1
    entries: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def latency_ms(self, spec: Spec) -> float:
        """The network's forward latency as the sum of its pieces', timing the pieces not yet in the table."""
        keys = piece_keys(spec)
        if any(key not in self.entries for key, _ in keys):
            started = time.perf_counter()
            device = torch.device(self.device)
            for (key, shape), piece in zip(keys, pieces(build_model(spec), spec)):
                if key not in self.entries:
                    self.entries[key] = time_forward_ms(piece, shape, device, self.batch_size)
            self.seconds += time.perf_counter() - started
        return sum(self.entries[key] for key, _ in keys)

    def to_dict(self) -> dict:
        return {"device": self.device, "batch_size": self.batch_size, "seconds": self.seconds,
                "entries": self.entries}

    @classmethod
    def from_dict(cls, data: dict, device: str) -> LatencyTable:
        """A stored table, to go on measuring on `device`: refused if it was measured on another kind of device
        (the workers of a study on cuda:0 and cuda:1 share one table, each timing on its own GPU)."""
        if torch.device(data["device"]).type != torch.device(device).type:
            raise ScalerError(f"equal cost: this study's latency table was measured on {data['device']}, not "
                              f"{device}; resume it with --device {data['device']}")
        return cls(device, data["batch_size"], dict(data["entries"]), data["seconds"])


@dataclass(frozen=True)
class TableError:
    """How far the table's sums are from timing the networks whole: relative errors, over `networks`."""

    networks: int
    mean: float  # mean |sum / whole - 1|
    worst: float  # the largest |sum / whole - 1|
    bias: float  # mean (sum / whole - 1): above 0, the sums overstate


def table_error(table: LatencyTable, networks: list[Spec]) -> TableError:
    """The table's sums against whole-network timings (scaler.measurement.measure_latency_ms) of `networks`."""
    errors = [table.latency_ms(spec) / measure_latency_ms(spec, table.device, table.batch_size) - 1
              for spec in networks]
    return TableError(len(errors), statistics.mean(abs(e) for e in errors), max(abs(e) for e in errors),
                      statistics.mean(errors))


def study_latency_table(study, device: torch.device) -> LatencyTable:
    """An Optuna study's stored latency table (refused if measured on another device), or a new one for
    `device`."""
    stored = study.user_attrs.get("latency_table")
    return LatencyTable.from_dict(stored, str(device)) if stored else LatencyTable(str(device))


def store_latency_table(study, table: LatencyTable) -> None:
    """The table into an Optuna study, merged with what other workers stored (theirs kept where both timed a
    piece), so that every worker and a resumed study solve with the same figures."""
    stored = study.user_attrs.get("latency_table")
    if stored:
        table.entries.update(stored["entries"])
    study.set_user_attr("latency_table", table.to_dict())


def store_table_error(study, table: LatencyTable, networks: list[Spec]) -> None:
    """The table's error against timing `networks` whole (`table_error`), and the table, into an Optuna study."""
    study.set_user_attr("latency_error", asdict(table_error(table, networks)))
    store_latency_table(study, table)
