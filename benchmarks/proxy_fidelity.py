"""Rank fidelity of the proxy: does the short proxy rank candidates as a 4x longer training ranks them?

In one run: the study's references (baseline, depth-, width- and resolution-only) and grid candidates spread
over the whole grid, each at equal real FLOPs (scaler.equal_cost) exactly as a study trains them, each trained
with `--seeds` seeds (common random numbers: seed k is the same data order, augmentation and initialisation for
every candidate) on the recipe's proxy and on a proxy `--longer` times longer (that many times the epochs, the
same networks and images). Reported: each candidate's mean top-1 on both, Kendall's tau between the two mean
rankings, the tau that zero-cost rankings get against the long one (by params, by activations: what a user gets
without training at all), and the seed noise of both proxies. The long proxy is read twice: by its top-1, and by
its validation loss (cross-entropy), which keeps separating networks after its top-1 has saturated. Where the long
proxy's noise is as large as the differences, tau against it is partly noise; so the report also counts the pairs
it tells apart beyond its seed noise, and how many of those each ranking orders as it does.

    python benchmarks/proxy_fidelity.py [--recipe default|quick|FILE] [--candidates 12] [--seeds 2] [--longer 4]
                                        [--device cpu|cuda] [--threads N] [--store FILE]

Safe to interrupt: every training's top-1 and validation loss are appended to `--store` (default
studies/proxy-trainings.jsonl) as it ends, keyed by everything that decides it (the network, the proxy's data and
training settings, the epochs, the seed, the device kind, the search VERSION, torch's version; a data folder by
its path, so a changed folder needs a fresh store), and the same command run again trains only what is not there
(training is deterministic for a seed on the CPU). The report says how many came from the store and the training
time of all of them.

Goal (the trust issue): tau >= 0.7, and above the params ranking's. The default recipe takes hours on a 2-core
CPU (`scaler search --plan` projects a trial's time); the quick recipe runs in minutes and says whether the
machinery works, not whether a proxy is faithful.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import torch

from scaler.confidence import kendall_tau, resolved_agreement, seed_noise
from scaler.data import load_data
from scaler.device import resolve_device, thread_share, use_threads
from scaler.equal_cost import CostMatch
from scaler.estimator import estimate
from scaler.grid import Candidate, fingerprint
from scaler.searches.compound import candidate_network, network_key
from scaler.searches.compound_recipe import QUICK, VERSION, Recipe, load_recipe
from scaler.spec import Spec
from scaler.training import train


def chosen_networks(recipe: Recipe, count: int) -> list[tuple[str, CostMatch]]:
    """(label, equal-cost match) of `count` distinct networks: the references, then grid candidates evenly spaced
    over the grid's order, each passed over for the next one in that order where its network is one already chosen
    or it cannot be trained at equal cost (said, with why): one network counted twice would understate the seed
    noise and pad Kendall's tau."""
    proxy = recipe.proxy_network()
    chosen: dict[str, tuple[str, CostMatch]] = {}

    def take(c: Candidate) -> bool:
        match = candidate_network(recipe, proxy, c)
        key = None if match.network is None else network_key(match.network)
        if key is None or key in chosen:
            why = match.reason if key is None else f"the same network as {chosen[key][0]}"
            print(f"passed over {label(c)}: {why}")
            return False
        chosen[key] = label(c), match
        return True

    candidates = recipe.candidates()
    grid = [c for c in candidates if c.kind == "compound"]
    for c in candidates:
        if c.kind != "compound":
            take(c)
    wanted = max(0, count - len(chosen))
    step = (len(grid) - 1) / max(1, wanted - 1)
    index = 0
    for i in range(wanted):
        index = max(index, round(i * step))
        while index < len(grid) and not take(grid[index]):
            index += 1
        index += 1
    return list(chosen.values())


def label(c: Candidate) -> str:
    return c.kind if c.kind != "compound" else f"({c.alpha:g}, {c.beta:g}, {c.gamma:.3f})"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


@dataclass
class TrainingStore:
    """Proxy trainings kept on disk as they end, so that an interrupted benchmark resumes where it stopped."""

    path: Path
    done: dict[str, dict] = field(default_factory=dict)
    reused: int = 0
    trained: int = 0
    seconds: float = 0.0  # training time of every result handed out, from the store or now

    def __post_init__(self) -> None:
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by an interruption: that training runs again
                    continue
                self.done[entry["key"]] = entry

    def scores(self, network: Spec, data, recipe: Recipe, epochs: int, seed: int, device: torch.device,
               needs: tuple[str, ...] = ("top1",)) -> dict:
        """`network`'s validation top-1 and loss after `epochs` epochs of the recipe's proxy training with `seed`:
        stored, or trained (also where the stored training lacks a score in `needs`: stores made before the
        validation loss was recorded)."""
        p = recipe.proxy
        key = fingerprint((), network=network_key(network, seed, epochs), proxy=p.settings(), device=device.type,
                          version=VERSION, torch=torch.__version__)
        if key in self.done and all(name in self.done[key] for name in needs):
            self.reused += 1
        else:
            result = train(network, data, epochs=epochs, batch_size=p.batch_size, device=device, seed=seed,
                           progressive=p.progressive)
            self.done[key] = {"key": key, "network": network.name, "epochs": epochs, "seed": seed,
                              "top1": result.top1, "val_loss": result.val_loss, "seconds": result.wall_seconds}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as store:
                store.write(json.dumps(self.done[key]) + "\n")
            self.trained += 1
        self.seconds += self.done[key]["seconds"]
        return self.done[key]

    def summary(self) -> str:
        return (f"{self.trained} trained in this run, {self.reused} from {self.path}; {self.seconds:.0f} s of training "
                "in all")


def arguments(doc: str, candidates: int, seeds: int) -> argparse.ArgumentParser:
    """The options every proxy benchmark takes: the recipe, how many candidates and seeds, the device, threads,
    where finished trainings are kept."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--recipe", default="default", help="default, quick or a recipe file")
    parser.add_argument("--candidates", type=int, default=candidates,
                        help="distinct networks: the references, then grid candidates spread over the grid")
    parser.add_argument("--seeds", type=int, default=seeds)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--store", type=Path, default=Path("studies/proxy-trainings.jsonl"),
                        help="finished trainings, kept so that the same command run again resumes")
    return parser


def prepared(args: argparse.Namespace):
    """The recipe, the device (with the threads set) and the recipe's data on it."""
    recipe = {"default": Recipe(), "quick": QUICK}.get(args.recipe) or load_recipe(args.recipe)
    use_threads(thread_share(args.threads))
    device = resolve_device(args.device)
    p = recipe.proxy
    return recipe, device, load_data(p.data, p.train_size, p.val_size, p.seed, device)


def main() -> None:
    parser = arguments(__doc__, candidates=12, seeds=2)
    parser.add_argument("--longer", type=int, default=4, help="the long proxy trains this many times the epochs")
    args = parser.parse_args()
    recipe, device, data = prepared(args)
    p = recipe.proxy
    store = TrainingStore(args.store)
    started = time.perf_counter()
    short: dict[str, list[float]] = {}
    long: dict[str, list[dict]] = {}
    costs = {}
    for name, match in chosen_networks(recipe, args.candidates):
        e = estimate(match.network)
        costs[name] = (e.params, e.activations, match.ratio)
        for seed in range(args.seeds):
            short.setdefault(name, []).append(store.scores(match.network, data, recipe, p.epochs, p.seed + seed,
                                                           device)["top1"])
            long.setdefault(name, []).append(store.scores(match.network, data, recipe, p.epochs * args.longer,
                                                          p.seed + seed, device, needs=("top1", "val_loss")))
        print(f"{name}: short {statistics.mean(short[name]):.3f}, long "
              f"{statistics.mean(r['top1'] for r in long[name]):.3f}, long validation loss "
              f"{statistics.mean(r['val_loss'] for r in long[name]):.4f} ({time.perf_counter() - started:.0f} s)",
              flush=True)
    names = list(short)
    rankings = {"short proxy": [statistics.mean(short[n]) for n in names], "params": [costs[n][0] for n in names],
                "activations": [costs[n][1] for n in names]}
    # The long proxy's two references, per seed and higher-is-better: its top-1, and its validation loss negated.
    references = {"top-1": [[r["top1"] for r in long[n]] for n in names],
                  "validation loss": [[-r["val_loss"] for r in long[n]] for n in names]}
    reference_means = {what: [statistics.mean(r) for r in runs] for what, runs in references.items()}
    print()
    print(f"{date.today()}, {cpu_model()}, {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"recipe {args.recipe}: {recipe.baseline} at width {p.width:g}, depth {p.depth:g}, {p.resolution} px, "
          f"{p.train_size} images; short {p.epochs} epochs, long {p.epochs * args.longer}; {args.seeds} seeds; "
          f"{time.perf_counter() - started:.0f} s in this run; {store.summary()}")
    print()
    print("| candidate | real FLOPs ratio | params | activations | short top-1 (mean) | long top-1 (mean) "
          "| long validation loss (mean) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for i, n in enumerate(names):
        params, activations, ratio = costs[n]
        print(f"| {n} | {ratio:.3f} | {params:,} | {activations:,} | {rankings['short proxy'][i]:.3f} "
              f"| {reference_means['top-1'][i]:.3f} | {-reference_means['validation loss'][i]:.4f} |")
    for what, runs in references.items():
        means = reference_means[what]
        print()
        print(f"Against the long proxy's {what}: Kendall's tau, " + ", ".join(
            f"{by} {kendall_tau(ranking, means):.3f}" for by, ranking in rankings.items()))
        noise = seed_noise(dict(zip(names, runs)))
        if noise is None:
            print("  its seed noise: unknown (one seed)")
            continue
        agreements = {by: resolved_agreement(ranking, runs, noise) for by, ranking in rankings.items()}
        first = agreements["short proxy"]
        print(f"  its seed noise {noise.std:.4f} ({noise.dof} degrees of freedom); it tells apart {first.resolved} "
              f"of {first.pairs} pairs beyond that noise; of those, ordered as it orders them: "
              + ", ".join(f"{by} {a.same}" for by, a in agreements.items()))
    noise_short = seed_noise(short)
    print("seed noise, short proxy: " + ("unknown (one seed)" if noise_short is None else
                                         f"{noise_short.std:.4f} top-1 ({noise_short.dof} degrees of freedom)"))


if __name__ == "__main__":
    main()
