"""The budget search against the full grid: points measured and time taken to find the
highest concurrency within a latency budget.

The grid measures concurrency 1, 2, 4, ..., --max-concurrency and its answer is the highest
of those within the budget (to the power of two); the search (--latency-budget-ms) gallops
and bisects from 1 to the same limit and answers to the unit. Both run with the same
measurement settings on one model and batch size, grid first, then search, then the grid
again (so drift between the runs shows). The budget defaults to the grid's p99 at the
middle of its loads, so it falls inside the curve on any machine.

    python benchmarks/budget_search.py                                  # CPU, mlp_numpy
    python3 benchmarks/budget_search.py --model torch_mlp --batch 8     # the GPU host
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import analyzer_widgets as aw


def _run(args: argparse.Namespace, **extra: Any) -> tuple[Any, float]:
    t0 = time.monotonic()
    frame = aw.profile(models=[args.model], model_repository=args.model_repository or aw.EXAMPLE_REPOSITORY,
                       batch_sizes=[args.batch], window_ms=args.window_ms, baseline_s=0.5,
                       **extra).to_frame()
    return frame, time.monotonic() - t0


def _grid_answer(frame: Any, budget: float) -> tuple[float, int]:
    within = frame[(frame["latency_p99_ms"] <= budget) & (frame["error_count"] == 0)]
    return (float(within["concurrency"].max()) if len(within) else math.nan), len(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp_numpy")
    parser.add_argument("--model-repository", default=None)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--max-concurrency", type=int, default=128)
    parser.add_argument("--window-ms", type=int, default=500)
    parser.add_argument("--latency-budget-ms", type=float, default=None)
    args = parser.parse_args()
    grid = [2 ** k for k in range(int(math.log2(args.max_concurrency)) + 1)]
    first, first_s = _run(args, concurrency=grid)
    budget = args.latency_budget_ms or round(float(first["latency_p99_ms"].iloc[len(grid) // 2]), 2)
    search, search_s = _run(args, concurrency=[1, args.max_concurrency], latency_budget_ms=budget)
    second, second_s = _run(args, concurrency=grid)
    probes = search[search["search"] == "probe"]
    answer = search.iloc[-1]
    print(f"model {args.model}, batch {args.batch}, p99 budget {budget} ms, windows {args.window_ms} ms\n")
    print("| run | points measured | point time (s) | wall (s) | answer (concurrency) | p99 there (ms) |")
    print("|---|---|---|---|---|---|")
    for name, frame, wall in (("grid (before)", first, first_s), ("grid (after)", second, second_s)):
        load, points = _grid_answer(frame, budget)
        p99 = frame.loc[frame["concurrency"] == load, "latency_p99_ms"]
        print(f"| {name} | {points} | {frame['measured_s'].sum() + frame['warmup_s'].sum():.1f} | {wall:.1f} | "
              f"{load:g} | {float(p99.iloc[0]) if len(p99) else math.nan:.2f} |")
    print(f"| search | {len(probes)} | {probes['measured_s'].sum() + probes['warmup_s'].sum():.1f} | {search_s:.1f} | "
          f"{answer['concurrency']} ({answer['search']}) | {answer['latency_p99_ms']:.2f} |")
    print("\nsearch probes, in order:",
          ", ".join(f"c{c}: {p:.2f} ms" for c, p in zip(probes["concurrency"], probes["latency_p99_ms"], strict=True)))


if __name__ == "__main__":
    main()
