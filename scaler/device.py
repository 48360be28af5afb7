"""Which torch device a user means: the one parser of device strings, and the devices of several workers.
torch is imported only when a device is asked for, so that the analytic commands never load it."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from scaler.errors import ScalerError, check_int

if TYPE_CHECKING:
    import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:K'; a device that does not exist is a ScalerError."""
    import torch

    text = str(device)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        raise ScalerError(f"device: unknown device {text!r}; use auto, cpu, cuda or cuda:K") from None
    if parsed.type == "cpu":
        return parsed
    if parsed.type != "cuda":
        raise ScalerError(f"device: {text!r} is not supported; use auto, cpu, cuda or cuda:K")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ScalerError(f"device: {text} requested but no CUDA device is available")
    if parsed.index is not None and parsed.index >= count:
        raise ScalerError(f"device: {text} does not exist ({count} CUDA device{'s' if count > 1 else ''})")
    return parsed


def worker_devices(device: str, workers: int) -> list[torch.device]:
    """The device of each worker: one per GPU in turn when 'auto' or 'cuda' finds several; else all on one."""
    import torch

    check_int("workers", workers)
    resolved = resolve_device(device)
    count = torch.cuda.device_count() if resolved.type == "cuda" else 0
    if str(device) in ("auto", "cuda") and count > 1:
        return [torch.device(f"cuda:{i % count}") for i in range(workers)]
    return [resolved] * workers


def thread_share(threads: int | None = None, workers: int = 1) -> int:
    """The CPU threads each of `workers` training processes on this machine uses: the cores this process may run on
    (or `threads`), split evenly, at least one. Two torch processes that each use every core slow each other 5-10x
    (their OpenMP threads spin against each other), so workers split the cores rather than share them."""
    if threads is not None:
        check_int("threads", threads)
    return max(1, (threads or len(os.sched_getaffinity(0))) // workers)


def use_threads(threads: int) -> None:
    """Train with this many CPU threads in this process (the same seed gives the same result only at the same
    count, so every trial records it)."""
    import torch

    torch.set_num_threads(threads)
