"""Honest intervals: how often a row's 95% interval covers the figure a long measurement
of the same point gives.

    python benchmarks/interval_coverage.py [--models mlp_numpy] [--batch 1] [--concurrency 1,4]
                                           [--window-ms 500] [--windows 60] [--group 3,5]

Each point is measured for ``--windows`` back-to-back windows in one run (the precision
rule with an unreachable target keeps it going). The windows are then cut into consecutive
groups of ``--group`` windows, each group what one row would report, and each group's
interval (batch means, analyzer_widgets.loadgen.stats) is checked against the figure of
all the windows pooled. The same windows are also grouped a stride apart (window i, i + n/g, ...), as a point
measured in g short visits spread over a sweep would be. Prints, per point and group size,
for both groupings, the share of groups whose
interval covers the pooled throughput and mean latency (stated: 95%), and the drift of the
window figures over the run (the trend t statistic): drift is what makes coverage lower.
"""

from __future__ import annotations

import argparse
import statistics

from _machine import machine_line

import analyzer_widgets as aw
from analyzer_widgets import events as ev
from analyzer_widgets.loadgen.stats import batch_means_interval, trend


def coverage(values: list[float], group: int, spread: bool = False) -> tuple[float, int]:
    """The share of ``group``-window intervals that cover the mean of all values: groups of
    consecutive windows (what one row reports today), or with ``spread`` windows taken a
    fixed stride apart across the whole run (window i, i + n/group, ...: what a point
    measured in ``group`` short visits spread over a sweep would report)."""
    pooled = statistics.fmean(values)
    if spread:
        stride = len(values) // group
        groups = [values[i::stride][:group] for i in range(stride)]
    else:
        groups = [values[i:i + group] for i in range(0, len(values) - group + 1, group)]
    covered = 0
    for g in groups:
        interval = batch_means_interval(statistics.fmean(g), g)
        covered += interval.low <= pooled <= interval.high
    return (covered / len(groups) if groups else float("nan")), len(groups)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp_numpy")
    parser.add_argument("--batch", default="1")
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--window-ms", type=int, default=500)
    parser.add_argument("--windows", type=int, default=60)
    parser.add_argument("--group", default="3,5")
    args = parser.parse_args()
    print(machine_line())
    series: dict[tuple[str, int, int], list[tuple[float, float]]] = {}

    def collect(event: object) -> None:
        if isinstance(event, ev.WindowMeasured):
            key = (event.model, event.batch_size, event.concurrency)
            series.setdefault(key, []).append((event.throughput, event.latency_avg_ms))

    aw.profile(models=args.models.split(","), model_repository=aw.EXAMPLE_REPOSITORY,
               batch_sizes=[int(b) for b in args.batch.split(",")],
               concurrency=[int(c) for c in args.concurrency.split(",")], window_ms=args.window_ms,
               baseline_s=0.5, stop_rule="precision", precision_pct=0.001, max_trials=args.windows, on_event=collect)
    groups = [int(g) for g in args.group.split(",")]
    print(f"{args.windows} windows of {args.window_ms} ms a point; coverage of the pooled figure by each group's "
          "95% interval (stated 95%)")
    for (model, batch, concurrency), values in series.items():
        throughput = [v[0] for v in values]
        latency = [v[1] for v in values]
        print(f"{model} b={batch} c={concurrency}: {statistics.fmean(throughput):,.0f} infer/s, "
              f"window CV {statistics.stdev(throughput) / statistics.fmean(throughput):.1%}, "
              f"drift t {trend(throughput):+.1f} (throughput), {trend(latency):+.1f} (latency)")
        for g in groups:
            for spread in (False, True):
                share_t, n = coverage(throughput, g, spread)
                share_l, _ = coverage(latency, g, spread)
                how = "spread over the run" if spread else "consecutive"
                print(f"    groups of {g} {how:>19}: {n:3} groups, throughput covered {share_t:6.1%}, "
                      f"mean latency covered {share_l:6.1%}")


if __name__ == "__main__":
    main()
