"""Does the synthetic set reward depth, width and resolution? Top-1 of a small baseline and its single-dimension
scalings, each trained by scaler.train with the same recipe, data and seeds.

    python benchmarks/synthetic_scaling.py [--epochs 6] [--train-size 4000] [--val-size 1000] [--seeds 0,1]
                                           [--device cpu] [--torchvision-init]
The base is EfficientNet-B0 at width 0.25, depth 0.34 and 32 px; each row changes one dimension (depth 0.67,
width 0.5, 48 px and 64 px) and prints MACs, params and top-1 (mean and spread over the seeds).
`--torchvision-init` trains with torchvision's initialisation of the residual branches instead of the recipe's
zero-initialised ones, to show what that recipe step does for depth.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import scaler
from scaler.data import load_data

BASE = dict(width=0.25, depth=0.34, resolution=32)
VARIANTS = [
    ("base", {}),
    ("depth x2", {"depth": 0.67}),
    ("width x2", {"width": 0.5}),
    ("resolution 48", {"resolution": 48}),
    ("resolution 64", {"resolution": 64}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--val-size", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--torchvision-init", action="store_true")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    data = load_data("synthetic", args.train_size, args.val_size, seed=0, device=args.device)
    b0 = scaler.get_baseline("efficientnet-b0")
    print(f"| variant | width | depth | px | params | MFLOPs (MACs) | top-1 (mean over seeds {args.seeds}) | spread | "
          f"minutes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, change in VARIANTS:
        settings = BASE | change
        spec = replace(scaler.scale(b0, width=settings["width"], depth=settings["depth"],
                                    resolution=settings["resolution"]), num_classes=data.num_classes)
        cost = scaler.estimate(spec)
        started = time.perf_counter()
        top1s = [scaler.train(spec, data, epochs=args.epochs, batch_size=args.batch_size, device=args.device,
                              seed=seed, zero_init_residual=not args.torchvision_init).top1 for seed in seeds]
        minutes = (time.perf_counter() - started) / 60
        spread = max(top1s) - min(top1s)
        print(f"| {name} | {settings['width']} | {settings['depth']} | {settings['resolution']} | {cost.params:,} | "
              f"{cost.macs / 1e6:.1f} | {statistics.mean(top1s):.3f} | {spread:.3f} | {minutes:.1f} |", flush=True)


if __name__ == "__main__":
    main()
