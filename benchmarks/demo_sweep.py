"""Time the demo sweep and the overhead each point costs beyond its measurement windows.

    python benchmarks/demo_sweep.py [--window-ms 500] [--repeat 1]

Prints, per run: total wall time (server start to server stopped), the time to a ready
server, the baseline, each model load, and per point its measured windows against its
wall time; then the overhead per point (wall time of the point minus window_count x
window length) as mean and max. Targets (issue 2): whole demo <= 60 s on a 2-core
machine, overhead <= 0.5 s per point.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections import Counter

from _machine import machine_line

import analyzer_widgets as aw
from analyzer_widgets import events as ev
from analyzer_widgets.cli import DEMO_SHAPES


class Clock:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.marks: list[tuple[float, object]] = []
        self.point_start: float | None = None
        self.points: list[tuple[dict, float]] = []

    def __call__(self, event: object) -> None:
        now = time.monotonic()
        self.marks.append((now, event))
        if isinstance(event, ev.PointStarted):
            self.point_start = now
        elif isinstance(event, ev.PointFinished) and self.point_start is not None:
            self.points.append((event.row, now - self.point_start))


def run_once(window_ms: int) -> dict[str, float]:
    models = sorted(aw.list_models(aw.EXAMPLE_REPOSITORY))
    if importlib.util.find_spec("torch") is None:
        models.remove("torch_mlp")
    clock = Clock()
    result = aw.profile(
        models=models, model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=[1, 8], concurrency=[1, 2],
        window_ms=window_ms, baseline_s=1.0, input_shapes=DEMO_SHAPES, on_event=clock,
    )
    total = time.monotonic() - clock.t0
    ready = next(t for t, e in clock.marks if isinstance(e, ev.ServerReady)) - clock.t0
    loads = {e.model: e.load_s for _, e in clock.marks if isinstance(e, ev.ModelLoaded)}
    finished = next(t for t, e in clock.marks if isinstance(e, ev.SweepFinished))
    last_point = max(t for t, e in clock.marks if isinstance(e, ev.PointFinished))
    print(f"models: {', '.join(models)}; {len(result.rows)} points; statuses: "
          f"{dict(Counter(r['status'] for r in result.rows))}")
    print(f"total wall time            {total:7.2f} s")
    print(f"  server ready after       {ready:7.2f} s")
    for name, seconds in loads.items():
        print(f"  load {name:<20}{seconds:7.2f} s")
    print(f"  after the last point     {finished - last_point:7.2f} s (unload, server and clients stopped)")
    overheads = []
    for row, wall in clock.points:
        measured = row["window_count"] * window_ms / 1000.0
        overheads.append(wall - measured)
        print(f"  {row['model']:<14} b={row['batch_size']:<2} c={row['concurrency']:<2} windows={row['window_count']:<2} "
              f"measured {measured:5.2f} s  wall {wall:5.2f} s  overhead {wall - measured:5.3f} s  [{row['status']}]")
    mean_oh, max_oh = statistics.mean(overheads), max(overheads)
    print(f"overhead per point: mean {mean_oh:.3f} s, max {max_oh:.3f} s (target <= 0.5 s)")
    return {"total": total, "overhead_mean": mean_oh, "overhead_max": max_oh}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-ms", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    print(machine_line())
    runs = [run_once(args.window_ms) for _ in range(args.repeat)]
    if len(runs) > 1:
        print("totals:", ", ".join(f"{r['total']:.1f}" for r in runs))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
