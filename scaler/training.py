"""Proxy training: the short training that scores one candidate, fast and deterministic.

The recipe: AdamW, linear warmup (the first 30 % of steps) then cosine decay to zero, label smoothing 0.1,
a zero-initialised classifier, residual branches that start at zero (every block starts as the identity),
stochastic depth as the spec says, channels_last everywhere, bf16 autocast on CUDA, `torch.compile` on
request. Where the data mark easy images (the synthetic set's strong gratings), the first epoch trains on those
alone, each as often as an epoch needs: every seed then finds the hard attribute at the same time. Data stay on
the device as uint8 (scaler.data), resized once to the candidate's resolution and augmented per batch on the
device (scaler.augment). A fixed seed gives the same result on the CPU.

Optional progressive learning (EfficientNetV2, arXiv 2104.00298, Algorithm 1): the epochs split into K stages
that raise the image size, dropout and augmentation together up to the candidate's own (`progressive_schedule`);
the training images are resized once per stage, and validation is always at the candidate's resolution.

Failures a search must survive are distinct exceptions that carry the reason: `OutOfMemory` and
`NonFiniteLoss`, and `TrainingFailed` for anything else that goes wrong inside a training. Exceptions
raised by the caller's own callbacks (a pruner's, say) pass through untouched.
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from scaler.augment import channel_stats, normalize, random_crop_flip, resize
from scaler.baselines import resolve_spec
from scaler.build import build_model
from scaler.data import Dataset, load_data
from scaler.device import resolve_device, thread_share, use_threads
from scaler.errors import (NonFiniteLoss, OutOfMemory, ScalerError, TrainingError, TrainingFailed, check_int,
                            check_number, check_progressive)
from scaler.progress import PROGRESS_EVERY  # each check of the loss waits for the device
from scaler.spec import Spec


WARMUP_PERCENT = 30  # of the steps: 10 % left the proxy's slow seeds (seed noise 0.026 against 0.013; RESULTS.md)

# Where progressive learning starts, as fractions of (or caps on) the final values. EfficientNetV2 starts its
# ImageNet runs at 128 px of 300-380 (0.34-0.43) with dropout 0.1 and weak augmentation; a proxy trains at
# 32-64 px, where the last stages already see maps of 1-2 px, so it starts less far down.
PROGRESSIVE_START_SIZE = 0.6  # of the target resolution, then rounded to a multiple of 8 px
PROGRESSIVE_START_DROPOUT = 0.1  # or the spec's dropout, if lower
PROGRESSIVE_START_PAD = 0.5  # of the full translation pad (which is 1/8 of the stage's image size)


@dataclass(frozen=True)
class TrainingProgress:
    """Where a training is: epoch and step, speed, time left."""

    epoch: int
    epochs: int
    step: int
    steps: int
    images_per_second: float
    eta_seconds: float


@dataclass(frozen=True)
class TrainResult:
    top1: float
    top1_per_epoch: tuple[float, ...]
    loss: float  # the training loss (label smoothing included) of the last epoch
    loss_per_epoch: tuple[float, ...]
    val_loss: float  # validation cross-entropy, no smoothing: it still tells networks apart where top-1 saturates
    val_loss_per_epoch: tuple[float, ...]
    images_per_second: float
    wall_seconds: float
    peak_memory_bytes: int
    peak_memory_kind: str
    num_classes: int
    epochs: int
    resolution: int
    batch_size: int
    train_size: int
    val_size: int
    device: str
    seed: int
    progressive: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ProgressiveStage:
    """The training settings of one epoch: image size in px, classifier dropout, translation pad in px."""

    resolution: int
    dropout: float
    pad: int


def translation_pad(resolution: int, strength: float = 1.0) -> int:
    """Random-crop pad in px: 1/8 of the image size at full strength (at least 1), so that a translation moves
    the same fraction of the image whatever its size."""
    return max(1, int(resolution * strength) // 8)


def progressive_schedule(resolution: int, dropout: float, stages: int, epochs: int,
                         min_resolution: int = 8) -> tuple[ProgressiveStage, ...]:
    """Per-epoch settings for `stages` stages of progressive learning (EfficientNetV2's Algorithm 1).

    The epochs split into min(stages, epochs) stages as evenly as possible; stage i of K interpolates linearly
    from the start values (the PROGRESSIVE_START_* constants) to the end ones, and the last stage trains at
    exactly `resolution`, `dropout` and the full pad. Sizes before the last are rounded to a multiple of 8 and
    kept within [min_resolution (the network's total stride), resolution]. One stage is plain training."""
    stages = min(stages, epochs)
    plan = []
    for i in range(stages):
        t = i / (stages - 1) if stages > 1 else 1.0
        size = 8 * round(_lerp(PROGRESSIVE_START_SIZE * resolution, resolution, t) / 8)
        size = resolution if i == stages - 1 else min(resolution, max(min_resolution, size))
        plan.append(ProgressiveStage(size, _lerp(min(PROGRESSIVE_START_DROPOUT, dropout), dropout, t),
                                     translation_pad(size, _lerp(PROGRESSIVE_START_PAD, 1.0, t))))
    return tuple(plan[epoch * stages // epochs] for epoch in range(epochs))


def _lerp(start: float, end: float, t: float) -> float:
    """Linear interpolation that gives exactly `end` at t = 1 (start + (end - start) * t may miss it by a bit)."""
    return start * (1 - t) + end * t


def learning_rate_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup to 1 over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _peak_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process_max_rss"


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, mean, std, batch_size: int,
             device: torch.device) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy (no label smoothing) on uint8 images already at the model's
    resolution."""
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    for start in range(0, len(labels), batch_size):
        x = normalize(images[start:start + batch_size], mean, std)
        y = labels[start:start + batch_size]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x)
        correct += (logits.argmax(1) == y).sum()
        total_loss += nn.functional.cross_entropy(logits.float(), y, reduction="sum")
    return correct.item() / len(labels), total_loss.item() / len(labels)


def _check_settings(epochs: int, batch_size: int, resolution: int | None, lr: float, label_smoothing: float,
                    progressive: int) -> None:
    """The training settings a user gives, each checked with one clear error before any work."""
    check_int("epochs", epochs)
    check_int("batch size", batch_size)
    if resolution is not None:
        check_int("resolution", resolution)
    check_number("learning rate", lr, 0, above_low=True)
    check_number("label smoothing", label_smoothing, 0, 1, below_high=True)
    check_progressive(progressive)


def train(
    network: Spec | str | Path,
    data: Dataset | str = "synthetic",
    epochs: int = 5,
    batch_size: int = 64,
    lr: float = 4e-3,
    weight_decay: float = 0.05,
    label_smoothing: float = 0.1,
    resolution: int | None = None,
    train_size: int | None = None,
    val_size: int | None = None,
    device: str | torch.device = "auto",
    seed: int = 0,
    compile: bool = False,
    progressive: int = 0,
    zero_init_residual: bool = True,
    on_epoch: Callable[[int, float], None] | None = None,
    on_progress: Callable[[TrainingProgress], None] | None = None,
    threads: int | None = None,
) -> TrainResult:
    """Train `network` from scratch on `data` for `epochs` and return its validation top-1 per epoch and more.

    `on_epoch(epoch, top1)` is called after each epoch (a pruner may raise from it); `on_progress` gets a
    `TrainingProgress` every few steps. The classifier is sized to the data's classes; `resolution` defaults to the
    spec's. `progressive` = K >= 2 trains in K stages of rising image size, dropout and augmentation
    (`progressive_schedule`); 0 trains at the final settings throughout. `zero_init_residual=False` keeps
    torchvision's initialisation of the residual branches (see `_zero_residual_branches`). `threads`: train with
    that many CPU threads (default: as this process already does).
    """
    spec = resolve_spec(network)
    _check_settings(epochs, batch_size, resolution, lr, label_smoothing, progressive)
    if threads is not None:
        use_threads(thread_share(threads))
    device = resolve_device(device)
    if not isinstance(data, Dataset):
        data = load_data(data, train_size, val_size, seed, device)
    spec = _sized_to_data(spec, data, resolution)
    started = time.perf_counter()
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        run = _Run(spec, data, epochs, batch_size, lr, weight_decay, label_smoothing, device, seed, compile,
                   progressive_schedule(spec.resolution, spec.dropout, max(1, progressive), epochs,
                                        spec.total_stride), zero_init_residual)
    except torch.OutOfMemoryError as error:
        raise OutOfMemory(f"out of memory building {spec.name}: {str(error).splitlines()[0]}") from None
    top1s, losses, val_losses = [], [], []
    for epoch in range(epochs):
        top1, loss, val_loss = run.epoch(epoch, on_progress)
        top1s.append(top1)
        losses.append(loss)
        val_losses.append(val_loss)
        if on_epoch is not None:
            on_epoch(epoch, top1)
    peak, kind = _peak_memory(device)
    return TrainResult(
        top1=top1s[-1], top1_per_epoch=tuple(top1s), loss=losses[-1], loss_per_epoch=tuple(losses),
        val_loss=val_losses[-1], val_loss_per_epoch=tuple(val_losses),
        images_per_second=run.images_seen / max(run.train_seconds, 1e-9),
        wall_seconds=time.perf_counter() - started, peak_memory_bytes=peak, peak_memory_kind=kind,
        num_classes=data.num_classes, epochs=epochs, resolution=spec.resolution, batch_size=run.batch_size,
        train_size=len(data.train_labels), val_size=len(data.val_labels), device=str(device), seed=seed,
        progressive=progressive,
    )


def _sized_to_data(spec: Spec, data: Dataset, resolution: int | None) -> Spec:
    """The network as trained: its classifier sized to the data's classes, at `resolution` (the spec's if None)."""
    spec = replace(spec, num_classes=data.num_classes, resolution=resolution or spec.resolution)
    if spec.resolution < spec.total_stride:
        raise ScalerError(f"resolution: {spec.resolution} px is smaller than the network's total stride "
                          f"({spec.total_stride})")
    return spec


def _zero_classifier(model: nn.Module) -> None:
    """Start the last linear layer at zero, so every class starts equally likely. torchvision's initialisation
    is sized for 1000 classes; on a few classes and a few epochs its large initial logits stall learning."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)


def _zero_residual_branches(model: nn.Module) -> None:
    """Start the norm that ends each residual branch at zero scale, so every block starts as the identity
    (Goyal et al., arXiv 1706.02677; torchvision's `zero_init_residual`). In a few epochs with torchvision's
    initialisation, deeper thin networks trained more slowly than shallower ones and depth-only scaling lost on
    every proxy measured; with it, added blocks start harmless and depth pays (benchmarks/RESULTS.md)."""
    for module in model.modules():
        norm = module.residual_norm() if hasattr(module, "residual_norm") else None
        if norm is not None:
            nn.init.zeros_(norm.weight)


class _Run:
    """The state of one training: model, optimizer, device-resident data at the current stage's resolution
    (normalised with the statistics at the candidate's resolution, at which it is always validated)."""

    def __init__(self, spec, data, epochs, batch_size, lr, weight_decay, label_smoothing, device, seed, compile,
                 schedule, zero_init_residual):
        self.device = device
        self.model = build_model(spec).to(device=device, memory_format=torch.channels_last)
        _zero_classifier(self.model)
        if zero_init_residual:
            _zero_residual_branches(self.model)
        self.dropouts = [m for m in self.model.modules() if isinstance(m, nn.Dropout)]
        self.forward = torch.compile(self.model) if compile else self.model
        self.schedule, self.source_images = schedule, data.train_images
        self.train_images = resize(data.train_images, spec.resolution)
        self.val_images = resize(data.val_images, spec.resolution)
        self.train_labels, self.val_labels = data.train_labels, data.val_labels
        easy = data.train_easy
        self.train_easy = easy if easy is not None and bool(easy.any()) else None
        self.mean, self.std = channel_stats(self.train_images)
        count = len(self.train_labels)
        self.batch_size = min(batch_size, count)
        self.steps = count // self.batch_size  # full batches only: steady shapes for BatchNorm and compile
        total = epochs * self.steps
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=weight_decay,
                                           fused=device.type == "cuda")
        warmup = max(1, total * WARMUP_PERCENT // 100)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: learning_rate_factor(step, total, warmup))
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.epochs, self.images_seen, self.train_seconds = epochs, 0, 0.0

    def epoch(self, epoch: int, on_progress) -> tuple[float, float, float]:
        """One epoch: its validation top-1, its training loss and its validation loss."""
        try:
            loss = self._train_epoch(epoch, on_progress)
            top1, val_loss = evaluate(self.model, self.val_images, self.val_labels, self.mean, self.std,
                                      2 * self.batch_size, self.device)
        except torch.OutOfMemoryError as error:
            self._release()
            raise OutOfMemory(f"out of memory at batch size {self.batch_size}: {str(error).splitlines()[0]}") from None
        except TrainingError:
            self._release()
            raise
        except (RuntimeError, ValueError) as error:
            self._release()
            raise TrainingFailed(f"{type(error).__name__}: {str(error).splitlines()[0]}") from None
        return top1, loss, val_loss

    def _easy_order(self, order: torch.Tensor) -> torch.Tensor:
        """An epoch's worth of easy images: those of `order` in its order, then again in fresh random orders."""
        easy = order[self.train_easy[order]]
        again = [easy[torch.randperm(len(easy), generator=self.generator, device=self.device)]
                 for _ in range(math.ceil(len(order) / len(easy)) - 1)]
        return torch.cat([easy, *again])

    def _train_epoch(self, epoch: int, on_progress) -> float:
        self.model.train()
        started = time.perf_counter()
        stage = self.schedule[epoch]
        if self.train_images.shape[-1] != stage.resolution:  # a new stage: resize once, not per step
            self.train_images = resize(self.source_images, stage.resolution)
        for dropout in self.dropouts:
            dropout.p = stage.dropout
        order = torch.randperm(len(self.train_labels), generator=self.generator, device=self.device)
        if epoch == 0 and self.train_easy is not None:
            order = self._easy_order(order)
        loss_sum = torch.zeros((), device=self.device)
        for step in range(self.steps):
            index = order[step * self.batch_size:(step + 1) * self.batch_size]
            x = normalize(random_crop_flip(self.train_images[index], self.generator, stage.pad), self.mean, self.std)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                loss = self.criterion(self.forward(x), self.train_labels[index])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            loss_sum += loss.detach().float()
            if (step + 1) % PROGRESS_EVERY == 0 or step + 1 == self.steps:
                if not torch.isfinite(loss_sum):
                    raise NonFiniteLoss(f"loss became {loss_sum.item()} in epoch {epoch + 1}, step {step + 1}")
                if on_progress is not None:
                    elapsed = self.train_seconds + time.perf_counter() - started
                    seen = self.images_seen + (step + 1) * self.batch_size
                    rate = seen / max(elapsed, 1e-9)
                    left = (self.epochs * self.steps * self.batch_size - seen) / rate
                    on_progress(TrainingProgress(epoch + 1, self.epochs, step + 1, self.steps, rate, left))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.train_seconds += time.perf_counter() - started
        self.images_seen += self.steps * self.batch_size
        return loss_sum.item() / self.steps

    def _release(self) -> None:
        """Free the device memory this training holds, so the next candidate starts clean."""
        del self.model, self.forward, self.dropouts, self.optimizer, self.train_images, self.val_images
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
