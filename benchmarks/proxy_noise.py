"""Seed noise of a recipe's proxy: how far one candidate's top-1 moves between seeds, pooled over candidates.

In one run: the study's references (baseline, depth-, width-, resolution-only and the published rules) then grid
candidates spread over the grid, `--candidates` in all, each at equal real FLOPs exactly as a study trains them,
each trained with `--seeds` seeds (common random numbers: seed k is the same data order, augmentation draws and
initialisation for every candidate, as in a study's repeats). Reported: every candidate's top-1 per seed, its
mean and standard deviation, the pooled seed noise of a score, the noise of a per-seed difference between two
candidates (what the paired test sees), and the baseline against chance.

    python benchmarks/proxy_noise.py [--recipe default|quick|FILE] [--candidates 6] [--seeds 3]
                                     [--device cpu|cuda] [--threads N] [--store FILE]

Safe to interrupt, and sharing finished trainings with benchmarks/proxy_fidelity.py's short proxy: see its
`--store`.

Goal (the trust issue): a pooled seed noise <= 0.02 top-1 on the default recipe over >= 3 seeds x >= 5
candidates including the references, with the baseline well above chance and below saturation.
"""

from __future__ import annotations

import statistics
import time
from datetime import date

import torch
from proxy_fidelity import TrainingStore, arguments, chosen_networks, cpu_model, prepared

from scaler.confidence import difference_noise, seed_noise


def main() -> None:
    args = arguments(__doc__, candidates=6, seeds=3).parse_args()
    recipe, device, data = prepared(args)
    p = recipe.proxy
    store = TrainingStore(args.store)
    started = time.perf_counter()
    runs: dict[str, dict[int, float]] = {}
    for name, match in chosen_networks(recipe, args.candidates):
        for seed in range(args.seeds):
            runs.setdefault(name, {})[seed] = store.scores(match.network, data, recipe, p.epochs, p.seed + seed,
                                                          device)["top1"]
        print(f"{name}: {' '.join(f'{v:.3f}' for v in runs[name].values())} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    noise = seed_noise({name: list(scores.values()) for name, scores in runs.items()})
    paired = difference_noise(runs)
    print()
    print(f"{date.today()}, {cpu_model()}, {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"recipe {args.recipe}: {recipe.baseline} at width {p.width:g}, depth {p.depth:g}, {p.resolution} px, "
          f"{p.epochs} epochs of {p.train_size} images, scored on {p.val_size}; {args.seeds} seeds; "
          f"{time.perf_counter() - started:.0f} s in this run; {store.summary()}")
    print()
    print("| candidate | " + " | ".join(f"seed {k}" for k in range(args.seeds)) + " | mean | std |")
    print("|---|" + "---:|" * (args.seeds + 2))
    for name, scores in runs.items():
        values = list(scores.values())
        std = statistics.stdev(values) if len(values) > 1 else float("nan")
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {statistics.mean(values):.3f} | "
              f"{std:.4f} |")
    print()
    for what, n in (("a score", noise), ("a per-seed difference", paired)):
        print(f"seed noise of {what}: " + ("unknown (one seed)" if n is None else
                                           f"{n.std:.4f} top-1 ({n.dof} degrees of freedom)"))
    if "baseline" in runs:
        print(f"baseline: {statistics.mean(runs['baseline'].values()):.3f} top-1, chance {1 / data.num_classes:.3f}")


if __name__ == "__main__":
    main()
