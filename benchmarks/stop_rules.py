"""Speed at equal precision: the same grid under perf_analyzer's rule (3 agreeing windows of
2 s) and under the precision rule (windows of 250 ms until the 95% intervals are within
+-5% and nothing drifts), alternated in one run so host drift hits both alike.

    python benchmarks/stop_rules.py [--models mlp_numpy] [--batch 1,8] [--concurrency 1,4]
                                    [--precision 5] [--repeat 2]

Prints, per rule and run: the time spent measuring the points (from each point's start to
its row, model loads and the baseline left out), the windows measured, and per point the
precision each rule actually reached (`precision_reached_pct`: the larger relative
half-width of the throughput and mean-latency intervals) and what ended it. Then the ratio
of the two rules' point times. Target (issue 17): the precision rule at +-5% takes at most
half the time of the 3 x 2 s rule.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from _machine import machine_line

import analyzer_widgets as aw
from analyzer_widgets import events as ev

RULES: dict[str, dict[str, Any]] = {
    "stable 3 x 2 s": {"stop_rule": "stable", "window_ms": 2000, "max_trials": 10},
    "precision": {"stop_rule": "precision", "window_ms": 250, "max_trials": 80},
}


def run(rule: dict[str, Any], args: argparse.Namespace) -> tuple[float, list[dict[str, Any]]]:
    """One sweep under ``rule``: the seconds its points took, and its rows."""
    spans: list[float] = []
    started = [0.0]

    def clock(event: object) -> None:
        if isinstance(event, ev.PointStarted):
            started[0] = time.monotonic()
        elif isinstance(event, ev.PointFinished):
            spans.append(time.monotonic() - started[0])

    result = aw.profile(models=args.models.split(","), model_repository=aw.EXAMPLE_REPOSITORY,
                        batch_sizes=[int(b) for b in args.batch.split(",")],
                        concurrency=[int(c) for c in args.concurrency.split(",")], baseline_s=0.5,
                        precision_pct=args.precision, on_event=clock, **rule)
    return sum(spans), list(result.rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp_numpy")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--precision", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print(machine_line())
    print(f"grid: {args.models} x batch {args.batch} x concurrency {args.concurrency}; precision target "
          f"+-{args.precision:g}%")
    times: dict[str, list[float]] = {name: [] for name in RULES}
    for i in range(args.repeat):
        for name, rule in RULES.items():
            seconds, rows = run(rule, args)
            times[name].append(seconds)
            windows = sum(int(r["window_count"]) for r in rows)
            print(f"run {i + 1} {name:15} points {seconds:6.1f} s, {windows:3} windows")
            for r in rows:
                print(f"    {r['model']} b={r['batch_size']} c={r['concurrency']}: {r['status']:8} "
                      f"ended by {r['ended_by']:10} precision reached +-{r['precision_reached_pct']:5.1f}% "
                      f"in {r['window_count']:2} windows, {r['throughput_infer_per_s']:8.0f} infer/s")
    stable, precise = (statistics.median(times[name]) for name in RULES)
    print(f"median point time: stable {stable:.1f} s, precision {precise:.1f} s; precision / stable = "
          f"{precise / stable:.2f}")


if __name__ == "__main__":
    main()
