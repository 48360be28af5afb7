"""How long a study takes on a device: train a few of its candidates exactly as the search would, and project the
whole study from them.

    python benchmarks/study_time.py [--recipe studies/default.toml] [--device cpu|cuda] [--sample 3]

A study trains each distinct network once (candidates that round to the same network share one training), so
the projection sums over distinct networks. Each one's time is interpolated linearly in its FLOPs
(multiply-adds) between the sampled trainings: the smallest, the largest and evenly spaced ones between, each
timed end to end as the search runs it (build, train, evaluate). Data loading is timed once, apart.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

import scaler
from scaler.data import load_data
from scaler.estimator import estimate
from scaler.grid import fingerprint
from scaler.scaling import compound
from scaler.searches.compound_recipe import Recipe, load_recipe
from scaler.spec import to_dict
from scaler.device import resolve_device
from scaler.training import train


def distinct_networks(recipe: Recipe) -> list[tuple[int, scaler.Spec]]:
    """(MACs, network) of every distinct network the study trains, smallest first."""
    proxy, networks = recipe.proxy_network(), {}
    for c in recipe.candidates():
        network = proxy if c.kind == "baseline" else compound(proxy, c.alpha, c.beta, c.gamma, 1.0)
        networks.setdefault(fingerprint((), network={k: v for k, v in to_dict(network).items() if k != "name"}),
                            network)
    return sorted(((estimate(n).macs, n) for n in networks.values()), key=lambda pair: pair[0])


def interpolate(x: float, points: list[tuple[float, float]]) -> float:
    """Piecewise-linear through `points` (sorted by x), extended flat beyond them."""
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else y1
    return points[-1][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=None, help="A study recipe (default: the default study).")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sample", type=int, default=3, help="How many networks to train (at least 2).")
    args = parser.parse_args()
    recipe = load_recipe(args.recipe) if args.recipe else Recipe()
    device = resolve_device(args.device)
    networks = distinct_networks(recipe)
    picks = sorted({round(i * (len(networks) - 1) / (args.sample - 1)) for i in range(args.sample)})
    started = time.perf_counter()
    data = load_data(recipe.proxy.data, recipe.proxy.train_size, recipe.proxy.val_size, recipe.proxy.seed, device)
    loading = time.perf_counter() - started
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"recipe: {args.recipe or 'default'}; {len(recipe.candidates())} candidates, {len(networks)} distinct "
          f"networks; {recipe.proxy.epochs} epochs x {recipe.proxy.train_size} images, batch {recipe.proxy.batch_size}")
    print(f"data loading: {loading:.1f} s (once per worker)")
    print("| network | px | MFLOPs (MACs) | seconds | images/s |")
    print("|---:|---:|---:|---:|---:|")
    measured = []
    for i in picks:
        macs, network = networks[i]
        began = time.perf_counter()
        result = train(network, data, epochs=recipe.proxy.epochs, batch_size=recipe.proxy.batch_size, device=device,
                       seed=recipe.proxy.seed)
        seconds = time.perf_counter() - began
        measured.append((macs, seconds))
        print(f"| {i + 1} of {len(networks)} | {network.resolution} | {macs / 1e6:.1f} | {seconds:.1f} | "
              f"{result.images_per_second:,.0f} |", flush=True)
    total = loading + sum(interpolate(macs, measured) for macs, _ in networks)
    print(f"projected study: {total / 60:.1f} minutes on one {device.type} worker "
          f"({len(networks)} trainings, interpolated in FLOPs from {len(measured)} measured)")


if __name__ == "__main__":
    main()
