"""Analytic estimate against fvcore tracing, for every baseline at its own resolution, side by side.

For each baseline: build the model once (timed on its own, never counted in fvcore's time), count its
parameters, its multiply-adds with PyTorch's FlopCounterMode and fvcore's total; time fvcore
(a fresh FlopCountAnalysis + .total() per repeat, median after one warm-up run, so torch.jit's first-call
overhead does not count) and `scaler.estimate.estimate(name)` (median of timeit runs of >= 0.2 s each).

Goals (the issue "foundation"): params, macs and fvcore_flops differ by 0 on every baseline, and the
estimator is at least 1000x faster than fvcore on every baseline. Exit status 1 when a goal fails.

    python benchmarks/estimator.py [--repeats N] [--baselines a,b] [--markdown]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
import timeit
import warnings
from dataclasses import dataclass

import torch

from scaler.baselines import baseline_names, get_baseline
from scaler.build import build_model
from scaler.estimator import estimate  # the function; `scaler.estimate` in the package namespace is it too
from scaler.measurement import count_fvcore_flops, count_macs

MIN_RATIO = 1000.0
ESTIMATE_MIN_SECONDS = 0.2  # each timeit run of estimate() lasts at least this long
ESTIMATE_RUNS = 5


@dataclass(frozen=True)
class Row:
    name: str
    resolution: int
    build_s: float
    params_diff: int
    macs_diff: int
    fvcore_diff: int
    fvcore_s: float
    estimate_s: float

    @property
    def ratio(self) -> float:
        return self.fvcore_s / self.estimate_s

    @property
    def ratio_with_build(self) -> float:
        """Against what the estimator replaces: building the network, then tracing it."""
        return (self.build_s + self.fvcore_s) / self.estimate_s

    @property
    def exact(self) -> bool:
        return self.params_diff == self.macs_diff == self.fvcore_diff == 0


def time_fvcore(model: torch.nn.Module, resolution: int, repeats: int) -> tuple[int, float]:
    """fvcore's total and the median seconds of `repeats` timed runs after one untimed warm-up."""
    total = count_fvcore_flops(model, resolution)  # warm-up: torch.jit's first-call costs
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        again = count_fvcore_flops(model, resolution)
        times.append(time.perf_counter() - start)
        assert again == total, "fvcore's total changed between runs"
    return total, statistics.median(times)


def time_estimate(name: str) -> float:
    """Median seconds per call of estimate(name), over ESTIMATE_RUNS timeit runs of >= 0.2 s each."""
    timer = timeit.Timer(lambda: estimate(name))
    number = 1
    while timer.timeit(number) < ESTIMATE_MIN_SECONDS:
        number *= 2
    return statistics.median(t / number for t in timer.repeat(ESTIMATE_RUNS, number))


def bench(name: str, repeats: int) -> Row:
    spec = get_baseline(name)
    resolution = spec.resolution
    start = time.perf_counter()
    model = build_model(spec)
    build_s = time.perf_counter() - start
    model.eval()

    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, resolution)
    fvcore_flops, fvcore_s = time_fvcore(model, resolution, repeats)
    del model

    est = estimate(name)
    assert est.resolution == resolution
    estimate_s = time_estimate(name)
    return Row(name, resolution, build_s, est.params - params, est.macs - macs, est.fvcore_flops - fvcore_flops,
               fvcore_s, estimate_s)


HEADERS = ["baseline", "res", "build (ms)", "params diff", "macs diff", "fvcore diff", "fvcore (ms)",
           "estimate (us)", "speed-up", "vs build + fvcore"]


def cells(row: Row) -> list[str]:
    return [row.name, str(row.resolution), f"{row.build_s * 1e3:.0f}", str(row.params_diff), str(row.macs_diff),
            str(row.fvcore_diff), f"{row.fvcore_s * 1e3:.1f}", f"{row.estimate_s * 1e6:.0f}", f"{row.ratio:,.0f}x",
            f"{row.ratio_with_build:,.0f}x"]


def text_table(rows: list[Row]) -> str:
    table = [HEADERS] + [cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    fmt = lambda line: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
    return "\n".join([fmt(HEADERS), "  ".join("-" * w for w in widths)] + [fmt(c) for c in table[1:]])


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join(["---"] + ["---:"] * (len(HEADERS) - 1)) + "|"]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def summary(rows: list[Row]) -> tuple[list[str], bool]:
    worst = min(rows, key=lambda r: r.ratio)
    diffs = {k: max(abs(getattr(r, f"{k}_diff")) for r in rows) for k in ("params", "macs", "fvcore")}
    exact = all(r.exact for r in rows)
    fast = all(r.ratio >= MIN_RATIO for r in rows)
    lines = [
        f"min speed-up: {worst.ratio:,.0f}x ({worst.name}); max speed-up: {max(r.ratio for r in rows):,.0f}x",
        "largest |diff|: " + ", ".join(f"{k} {v}" for k, v in diffs.items()),
        f"every diff zero: {'yes' if exact else 'NO'}; every speed-up >= {MIN_RATIO:,.0f}x: {'yes' if fast else 'NO'}",
    ]
    return lines, exact and fast


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed fvcore runs per baseline (>= 3, default 3)")
    parser.add_argument("--baselines", help="comma-separated baseline names (default: all)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    if args.repeats < 3:
        parser.error("--repeats must be at least 3")
    names = args.baselines.split(",") if args.baselines else baseline_names()
    unknown = [name for name in names if name not in baseline_names()]
    if unknown:
        parser.error(f"unknown baseline(s) {', '.join(unknown)}; known: {', '.join(baseline_names())}")

    warnings.simplefilter("ignore", FutureWarning)  # fvcore uses torch.jit, deprecated in torch 2.x
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    load_before = os.getloadavg()[0]
    if load_before > 0.5:
        print(f"  warning: 1-minute load average {load_before:.2f} before the run; on a busy machine torch's "
              "thread pool contends and fvcore's times swell (up to 20x), inflating the speed-ups",
              file=sys.stderr)
    rows = []
    start = time.perf_counter()
    for name in names:
        rows.append(bench(name, args.repeats))
        r = rows[-1]
        print(f"  {name}: fvcore {r.fvcore_s * 1e3:.1f} ms, estimate {r.estimate_s * 1e6:.0f} us, "
              f"{r.ratio:,.0f}x", file=sys.stderr, flush=True)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"  ({time.perf_counter() - start:.0f} s; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"1-minute load average {load_before:.2f} before, load averages {load} after)", file=sys.stderr)

    print(markdown_table(rows) if args.markdown else text_table(rows))
    lines, ok = summary(rows)
    print()
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
