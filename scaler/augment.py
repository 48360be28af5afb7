"""Batched, on-device image operations for proxy training: no per-sample Python, no worker processes.

Images stay uint8 until the last moment; a batch is cropped, flipped, converted and normalised in a
handful of tensor operations, and comes out in channels_last layout (the fast one for convolutions).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def resize(images: torch.Tensor, resolution: int, chunk: int = 512) -> torch.Tensor:
    """uint8 N x 3 x S x S -> uint8 N x 3 x R x R, antialiased bilinear (fine detail is lost at low resolution,
    as it should be: that is what resolution scaling buys back). Done once per training, in chunks."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    out = torch.empty(len(images), 3, resolution, resolution, dtype=torch.uint8, device=images.device)
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk].float()
        part = F.interpolate(part, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
        out[start:start + chunk] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of uint8 images, on a [0, 1] scale, shaped 1 x 3 x 1 x 1."""
    sample = images[: 4096].float().div_(255)
    mean = sample.mean(dim=(0, 2, 3), keepdim=True)
    std = sample.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3)
    return mean, std


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """uint8 -> normalised floats in channels_last layout."""
    x = images.to(dtype=torch.float32).div_(255).sub_(mean).div_(std)
    return x.to(dtype=dtype, memory_format=torch.channels_last)


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, pad: int) -> torch.Tensor:
    """Random translation by up to `pad` pixels (zero fill, like RandomCrop(padding=pad)) and horizontal flip,
    for a whole uint8 batch at once: one gather of each image's pixels from its padded copy (2.6x faster than
    advanced indexing by rows and columns on an AVX2 CPU, the same pixels)."""
    batch, channels, height, width = images.shape
    device = images.device
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (batch, 1), generator=generator, device=device)
    dx = torch.randint(0, 2 * pad + 1, (batch, 1), generator=generator, device=device)
    rows = dy + torch.arange(height, device=device)
    cols = dx + torch.arange(width, device=device)
    flip = torch.rand(batch, 1, generator=generator, device=device) < 0.5
    cols = torch.where(flip, cols.flip(1), cols)
    pixels = (rows[:, :, None] * padded.shape[-1] + cols[:, None, :]).reshape(batch, 1, height * width)
    return padded.reshape(batch, channels, -1).gather(2, pixels.expand(batch, channels, -1)).reshape(images.shape)
