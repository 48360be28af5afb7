"""Measure a built network the slow, direct way: to check the analytic estimator (`scaler estimate --verify`),
and the forward latency a budget limits (scaler.budget).

Each figure comes from a different instrument: parameters from the module, multiply-adds from PyTorch's
FlopCounterMode (forward only; it over-counts depthwise backward), fvcore's tracer, forward hooks for
output elements, saved-tensor hooks for what autograd keeps, and CUDA's allocator for peak memory.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from scaler.baselines import resolve_spec
from scaler.build import build_model
from scaler.device import resolve_device
from scaler.errors import ScalerError
from scaler.estimator import MIXED_PRECISIONS, estimate
from scaler.spec import Spec

OPTIMIZERS = {
    "adamw": lambda params: torch.optim.AdamW(params),
    "adam": lambda params: torch.optim.Adam(params),
    "rmsprop": lambda params: torch.optim.RMSprop(params, momentum=0.9),
    "momentum": lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
    "sgd": lambda params: torch.optim.SGD(params, lr=0.1),
}


@dataclass(frozen=True)
class Measurement:
    params: int
    macs: int
    fvcore_flops: int
    activations: int
    saved_activation_bytes: int
    peak_training_memory_bytes: int | None

    def to_dict(self) -> dict:
        return asdict(self)


def count_macs(model: nn.Module, resolution: int) -> int:
    """Conv and linear multiply-adds of one image's forward pass, by PyTorch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, resolution, resolution))
    return counter.get_total_flops() // 2


def count_fvcore_flops(model: nn.Module, resolution: int) -> int:
    """fvcore's total (conv, linear, norms, pooling) for one image, traced in eval mode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # fvcore uses torch.jit, deprecated in torch 2.x
        from fvcore.nn import FlopCountAnalysis

        logging.getLogger("fvcore").setLevel(logging.ERROR)
        model.eval()
        analysis = FlopCountAnalysis(model, torch.zeros(1, 3, resolution, resolution))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return int(analysis.total())


def count_activations(model: nn.Module, resolution: int) -> int:
    """Output elements of every conv and linear layer for one image (pycls's "activations")."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        total += output.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, resolution, resolution))
    for handle in handles:
        handle.remove()
    return total


def _precision(dtype: str) -> tuple[torch.dtype, torch.dtype | None]:
    """The dtype of the model and its input, and autocast's half type (None: no autocast) for a precision."""
    half = MIXED_PRECISIONS.get(dtype)
    return (torch.float32, getattr(torch, half)) if half else (getattr(torch, dtype), None)


def saved_activation_bytes(model: nn.Module, resolution: int, batch_size: int, dtype: str,
                           device: str = "cpu") -> int:
    """Bytes of the distinct storages autograd saves in one training forward pass, parameters and buffers
    excluded, the input batch included: what the analytic `saved_activation_bytes` predicts. A mixed precision's
    activations are measured in its half type, which is what autocast saves them in (its half copies of the
    weights are counted apart, as `weight_cast_bytes`)."""
    torch_dtype = getattr(torch, MIXED_PRECISIONS.get(dtype, dtype))
    model = model.to(device=device, dtype=torch_dtype).train()
    own = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in own:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    x = torch.randn(batch_size, 3, resolution, resolution, device=device, dtype=torch_dtype)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = model(x).float().sum()
    except ValueError as error:  # BatchNorm cannot train on one value per channel
        raise ScalerError(f"batch size {batch_size} at {resolution} px: {error}; measure with a larger batch "
                          f"or resolution") from None
    del loss
    return sum(storages.values())


def peak_training_memory(model: nn.Module, resolution: int, batch_size: int, dtype: str, optimizer: str,
                         device: str) -> int:
    """CUDA's peak allocation over training steps (the second step, once optimizer state exists); a mixed
    precision trains under autocast, as `scaler train` does."""
    torch_dtype, half = _precision(dtype)
    torch.cuda.empty_cache()
    model = model.to(device=device, dtype=torch_dtype).train()
    opt = OPTIMIZERS[optimizer](model.parameters())
    x = torch.randn(batch_size, 3, resolution, resolution, device=device, dtype=torch_dtype)
    for _ in range(2):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        with torch.autocast("cuda", dtype=half or torch.float16, enabled=half is not None):
            loss = model(x).float().sum()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize(device)
    # The input batch is counted by saved activations; the allocator also holds it.
    return torch.cuda.max_memory_allocated(device)


def measure(
    network: Spec | str | Path,
    batch_size: int = 1,
    dtype: str = "float32",
    optimizer: str = "adamw",
    resolution: int | None = None,
    device: str = "cpu",
) -> Measurement:
    """Build the network and measure what `estimate` computes; peak memory only on a CUDA device."""
    spec = resolve_spec(network)
    checked = estimate(spec, batch_size, dtype, optimizer, resolution)  # validates the arguments
    resolution = checked.resolution
    model = build_model(spec)
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, resolution)
    fvcore_flops = count_fvcore_flops(model, resolution)
    activations = count_activations(model, resolution)
    peak = None
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ScalerError(f"device: {device} requested but CUDA is not available")
        peak = peak_training_memory(model, resolution, batch_size, dtype, optimizer, device)
    saved = saved_activation_bytes(model, resolution, batch_size, dtype, device)
    return Measurement(params, macs, fvcore_flops, activations, saved, peak)


def measure_latency_ms(spec: Spec, device: str = "auto", batch_size: int = 1, dtype: str = "float32",
                       warmup: int = 3, repeats: int = 7) -> float:
    """Median wall time of a forward pass of `batch_size` images at the spec's resolution, in milliseconds
    (`time_forward_ms`). A network that runs out of CUDA memory takes forever: infinity."""
    device = resolve_device(device)
    try:
        return time_forward_ms(build_model(spec), (3, spec.resolution, spec.resolution), device, batch_size, dtype,
                               warmup, repeats)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return math.inf


def time_forward_ms(module: nn.Module, shape: tuple[int, int, int], device: torch.device, batch_size: int = 1,
                    dtype: str = "float32", warmup: int = 3, repeats: int = 7) -> float:
    """Median wall time of `module`'s forward pass on `batch_size` inputs of `shape` (channels, height, width),
    in milliseconds.

    Eval mode, no autograd, channels_last (the fast layout on CPU as on CUDA); the warm-up passes absorb
    allocator and kernel-selection costs, the median shrugs off a stray slow pass. CUDA is synchronized
    around each pass.
    """
    torch_dtype, half = _precision(dtype)
    module = module.to(device=device, dtype=torch_dtype, memory_format=torch.channels_last).eval()
    x = torch.randn(batch_size, *shape, device=device, dtype=torch_dtype).contiguous(memory_format=torch.channels_last)
    times = []
    with torch.no_grad(), torch.autocast(device.type, dtype=half or torch.bfloat16, enabled=half is not None):
        for i in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            module(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3
