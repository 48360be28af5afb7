"""Progressive learning (EfficientNetV2) in the proxy training against fixed-size training at equal epochs.

Side by side in one run, on the same network (EfficientNet-B0 at width 0.5, depth 0.5, the search's default
proxy), the same data (the synthetic set, the default study's 5,000 training and 1,000 validation images from
data seed 0) and the same recipe (`scaler.train`'s defaults, batch 64), for each epoch count: fixed size at the
proxy resolution, then `progressive=K` (K = min(--stages, epochs)), for each training seed in turn. Validation
is always at the proxy resolution. The training seeds show the noise a top-1 difference must be judged against;
"paired" differences compare the two schedules under the same seed.

    python benchmarks/progressive.py [--device cpu] [--epochs 4 8] [--stages 4] [--seeds 0 1 2 3 4]
                                     [--resolution 48] [--width 0.5 --depth 0.5]
On a shared CPU, pin it: `taskset -c 1 env OMP_NUM_THREADS=1 python benchmarks/progressive.py`.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import scaler
from scaler.data import load_data
from scaler.device import resolve_device
from scaler.training import progressive_schedule, train


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--stages", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--resolution", type=int, default=48)
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--depth", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--val-size", type=int, default=1000)
    args = parser.parse_args()
    device = resolve_device(args.device)
    data = load_data("synthetic", train_size=args.train_size, val_size=args.val_size, seed=0, device=device)
    spec = scaler.scale(scaler.get_baseline("efficientnet-b0"), width=args.width, depth=args.depth,
                        resolution=args.resolution)
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s), torch "
          f"{torch.__version__}, device {device}; B0 width {args.width} depth {args.depth} at {spec.resolution} px "
          f"(dropout {spec.dropout}); {args.train_size} training / {args.val_size} validation synthetic images, "
          f"batch {args.batch_size}; training seeds {args.seeds}", flush=True)
    # Untimed warm-up at both sizes, so the first timed run does not pay for the process's first steps.
    train(spec, "synthetic", epochs=2, train_size=256, val_size=64, device=device, progressive=2)
    started = time.perf_counter()
    rows = []
    for epochs in args.epochs:
        runs = {0: [], min(args.stages, epochs): []}
        for seed in args.seeds:
            for progressive, results in runs.items():
                result = train(spec, data, epochs=epochs, batch_size=args.batch_size, device=device, seed=seed,
                               progressive=progressive)
                results.append(result)
                print(f"#   epochs {epochs} progressive {progressive} seed {seed}: top-1 {result.top1:.3f} "
                      f"({', '.join(f'{t:.3f}' for t in result.top1_per_epoch)}), "
                      f"{result.images_per_second:.0f} img/s, {result.wall_seconds:.1f} s", flush=True)
        rows.append((epochs, runs))

    print(f"\n({(time.perf_counter() - started) / 60:.1f} minutes in all)\n")
    print("| epochs | schedule | sizes per epoch (px) | images/s | wall s | top-1 mean ± std | top-1 per seed |")
    print("|---:|---|---|---:|---:|---:|---|")
    for epochs, runs in rows:
        for progressive, results in runs.items():
            schedule = progressive_schedule(spec.resolution, spec.dropout, max(1, progressive), epochs,
                                            spec.total_stride)
            name = f"progressive K={progressive}" if progressive else "fixed"
            print(f"| {epochs} | {name} | {', '.join(str(s.resolution) for s in schedule)} | "
                  f"{statistics.mean(r.images_per_second for r in results):,.0f} | "
                  f"{statistics.mean(r.wall_seconds for r in results):.1f} | "
                  f"{mean_std([r.top1 for r in results])} | {', '.join(f'{r.top1:.3f}' for r in results)} |")
    print("\n| epochs | images/s ratio (progressive / fixed) | wall ratio | top-1 difference, paired by seed "
          "(progressive - fixed, mean ± std) |")
    print("|---:|---:|---:|---:|")
    for epochs, runs in rows:
        fixed, progressive = runs.values()
        speed = statistics.mean(r.images_per_second for r in progressive) / statistics.mean(
            r.images_per_second for r in fixed)
        wall = statistics.mean(r.wall_seconds for r in progressive) / statistics.mean(r.wall_seconds for r in fixed)
        print(f"| {epochs} | {speed:.2f}x | {wall:.2f}x | "
              f"{mean_std([p.top1 - f.top1 for p, f in zip(progressive, fixed)])} |")


if __name__ == "__main__":
    main()
