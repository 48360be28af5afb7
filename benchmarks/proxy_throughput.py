"""Proxy-training throughput: scaler's device-resident pipeline against the loop a user would write.

Side by side in one run, on the same model (built from the same spec and seed), the same data (the
synthetic set, stored at 64 px) and the same recipe (AdamW, label smoothing, random crop + flip):

  scaler     scaler.train: uint8 images on the device, batched crop/flip/normalise, channels_last
  standard   torchvision transforms on PIL images and a DataLoader (num_workers=0 on this 2-core machine;
             DESIGN.md measured 2 workers slower), contiguous tensors: what a user would write
  standard+cl  the same loop with the model and batches in channels_last (the single biggest CPU lever)
  model only   the training step on one pre-made random batch: the ceiling for any pipeline

    python benchmarks/proxy_throughput.py [--device cpu|cuda] [--width 0.5 --depth 0.5 --resolution 64]
                                          [--phi 1 --resolution 128] [--images 2048] [--batch-size 64]
                                          [--rounds 3]
On CUDA it also reports the fraction of step time the GPU is busy (kernel time / wall time, torch.profiler).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from dataclasses import replace

import torch
from torch import nn

import scaler
from scaler.data import load_data
from scaler.device import resolve_device
from scaler.training import train


def proxy_spec(args, num_classes: int):
    base = scaler.get_baseline("efficientnet-b0")
    if args.phi is not None:
        spec = scaler.compound(base, phi=args.phi)
    else:
        spec = scaler.scale(base, width=args.width, depth=args.depth)
    return replace(spec, num_classes=num_classes, resolution=args.resolution)


def standard_loop(spec, data, args, device, channels_last: bool) -> float:
    """The usual PyTorch loop; returns training images per second over one epoch after a warm-up."""
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms
    from torchvision.transforms.functional import to_pil_image

    pil_images = [to_pil_image(image) for image in data.train_images.cpu()]
    labels = data.train_labels.cpu().tolist()
    pad = max(1, args.resolution // 8)
    transform = transforms.Compose([
        transforms.Resize(args.resolution, antialias=True),
        transforms.RandomCrop(args.resolution, padding=pad),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
    ])

    class Images(Dataset):
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            return transform(pil_images[i]), labels[i]

    loader = DataLoader(Images(), batch_size=args.batch_size, shuffle=True, num_workers=0, drop_last=True,
                        pin_memory=device.type == "cuda")
    torch.manual_seed(0)
    model = scaler.build_model(spec).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    model.train()

    def step(x, y):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    batches = iter(loader)
    for _ in range(3):  # warm-up, as scaler's first steps are inside its epoch too
        step(*next(batches))
    _sync(device)
    started, seen = time.perf_counter(), 0
    for x, y in loader:
        step(x, y)
        seen += len(y)
    _sync(device)
    return seen / (time.perf_counter() - started)


def model_only(spec, args, device, num_classes: int) -> float:
    """The training step alone on one random batch: the pipeline-free ceiling for any pipeline."""
    torch.manual_seed(0)
    model = scaler.build_model(spec).to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=device.type == "cuda")
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.randn(args.batch_size, 3, args.resolution, args.resolution, device=device)
    x = x.to(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (args.batch_size,), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    steps = max(3, args.images // args.batch_size)
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * args.batch_size / (time.perf_counter() - started)


def gpu_busy_fraction(spec, data, args, device) -> float:
    """Kernel time over wall time for scaler.train's steps, from torch.profiler's CUDA activity."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        train(spec, data, epochs=1, batch_size=args.batch_size, device=device, seed=0)
        torch.cuda.synchronize(device)
        wall = time.perf_counter() - started
    busy_us = sum(e.device_time_total for e in prof.key_averages() if e.device_type.name == "CUDA"
                  and not e.key.startswith("ProfilerStep"))
    return busy_us / 1e6 / wall


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--depth", type=float, default=0.5)
    parser.add_argument("--phi", type=float, help="use B0 at this phi instead of --width/--depth")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="measure every pipeline this many times, in turn")
    args = parser.parse_args()
    device = resolve_device(args.device)
    data = load_data("synthetic", train_size=args.images, val_size=args.batch_size, device=device)
    spec = proxy_spec(args, data.num_classes)
    est = scaler.estimate(spec)
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, device {device}{gpu}")
    print(f"# model: B0 {'phi=' + str(args.phi) if args.phi is not None else f'width {args.width} depth {args.depth}'}"
          f" at {args.resolution} px, {est.params:,} params, {est.macs / 1e6:.1f} M MACs; {args.images} images, "
          f"batch {args.batch_size}")
    pipelines = {
        "scaler (device-resident)": lambda: train(spec, data, epochs=2, batch_size=args.batch_size, device=device,
                                                  seed=0).images_per_second,
        "standard DataLoader loop": lambda: standard_loop(spec, data, args, device, channels_last=False),
        "standard loop + channels_last": lambda: standard_loop(spec, data, args, device, channels_last=True),
        "model step only (ceiling)": lambda: model_only(spec, args, device, data.num_classes),
    }
    # Every pipeline once per round, in turn, and the median of the rounds: a shared CPU's speed drifts over
    # minutes, and one pass per pipeline measured the drift as much as the pipelines.
    rates = {name: [] for name in pipelines}
    for _ in range(args.rounds):
        for name, run in pipelines.items():
            rates[name].append(run())
    median = {name: statistics.median(values) for name, values in rates.items()}
    ours, ceiling = median["scaler (device-resident)"], median["model step only (ceiling)"]
    print(f"# median of {args.rounds} rounds, each pipeline once per round in turn")
    print("| pipeline | images/s | rounds (min-max) | scaler's ratio | of ceiling |")
    print("|---|---:|---:|---:|---:|")
    for name, rate in median.items():
        print(f"| {name} | {rate:,.0f} | {min(rates[name]):,.0f}-{max(rates[name]):,.0f} | {ours / rate:.2f}x | "
              f"{rate / ceiling:.0%} |")
    if device.type == "cuda":
        print(f"GPU busy: {gpu_busy_fraction(spec, data, args, device):.0%} of scaler.train's wall time")


if __name__ == "__main__":
    main()
