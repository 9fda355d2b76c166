"""Does the analyzer's memory stay flat over a long sweep? (RELIABILITY row 23)

    python benchmarks/long_sweep_memory.py [--points 200] [--window-ms 100] [--host-interval-ms 2]
                                           [--no-export]

Sweeps mlp_numpy (the embedded server, CPU) over ``--points`` points (batch sizes 1..40 x
concurrency 1..points/40) with short windows, while the host sampler runs fast so that samples
pile up much faster than in a default sweep (500 Hz: one hour of 20 Hz NVML sampling in
about 2.5 minutes). After every 20th point it prints the analyzer process's RSS (psutil),
the samples the samplers hold in memory and the size of ``metrics-samples.csv``; at the end
the RSS growth over the second half of the sweep, per 100 points. Without an export folder
(``--no-export``) the result keeps every sample in memory, as a DataFrame, by design: that
run shows what it costs.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import psutil
from _machine import machine_line

import analyzer_widgets as aw
from analyzer_widgets import events

BATCH_SIZES = range(1, 41)  # within mlp_numpy's max_batch_size: no point is skipped


def held_samples(runner: aw.SweepRunner) -> int:
    """Samples the sweep's samplers hold in memory now (public API only, so this script
    runs against older versions of the package too)."""
    return sum(len(s.between(-math.inf, math.inf)) for s in runner.monitors.samplers)


def least_squares_slope(xs: list[float], ys: list[float]) -> float:
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread if spread else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200, help="a multiple of 40")
    parser.add_argument("--window-ms", type=int, default=100)
    parser.add_argument("--host-interval-ms", type=float, default=2.0)
    parser.add_argument("--no-export", action="store_true", help="keep the results in memory only")
    args = parser.parse_args()
    print(machine_line())
    concurrency = list(range(1, args.points // len(BATCH_SIZES) + 1))
    me = psutil.Process()
    holder: dict[str, aw.SweepRunner] = {}
    readings: list[tuple[int, float, float, int, float]] = []  # point, elapsed s, RSS MB, held, file MB
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        out = None if args.no_export else Path(tmp) / "out"
        samples_csv = Path(tmp) / "out" / "metrics-samples.csv"

        def on_event(event: object) -> None:
            if not isinstance(event, events.PointFinished):
                return
            size = samples_csv.stat().st_size / 2**20 if samples_csv.exists() else 0.0
            readings.append((event.index + 1, time.monotonic() - started, me.memory_info().rss / 2**20,
                             held_samples(holder["runner"]), size))
            if (event.index + 1) % 20 == 0 or event.index == 0:
                point, elapsed, rss, held, file_mb = readings[-1]
                print(f"point {point:4d}  {elapsed:6.1f} s  RSS {rss:7.1f} MB  samples held {held:7d}  "
                      f"metrics-samples.csv {file_mb:6.1f} MB", flush=True)

        result = aw.profile(
            models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=list(BATCH_SIZES),
            concurrency=concurrency, window_ms=args.window_ms, max_trials=4, baseline_s=0.5,
            process_interval_s=args.host_interval_ms / 1000, triton_metrics_interval_s=0.05,
            export_path=out, on_event=on_event, runner_hook=lambda r: holder.__setitem__("runner", r),
        )
        returned_rss = me.memory_info().rss / 2**20
        rows = len(aw.load_samples(out)) if out is not None else len(result.samples)
    second_half = readings[len(readings) // 2:]
    slope = least_squares_slope([float(r[0]) for r in second_half], [r[2] for r in second_half])
    print(f"{len(result.rows)} points in {time.monotonic() - started:.0f} s; {rows} samples recorded "
          f"({'in memory' if out is None else 'in metrics-samples.csv'})")
    print(f"RSS: {readings[0][2]:.1f} MB after the first point, {readings[len(readings) // 2][2]:.1f} MB at half "
          f"way, {readings[-1][2]:.1f} MB after the last; growth over the second half {slope * 100:+.1f} MB "
          f"per 100 points; samples held at most {max(r[3] for r in readings)}; {returned_rss:.1f} MB once "
          "profile() returned")


if __name__ == "__main__":
    main()
