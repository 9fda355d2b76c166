"""Where a point's time goes beyond its measured windows (issue 17).

    python benchmarks/point_overhead.py [--models mlp_numpy] [--batch 1,8] [--concurrency 1,2,4]
                                        [--window-ms 250] [--stable-windows 3]

One sweep; from its events and rows, per point: the warm-up (client processes told to run
until every request slot sent its warm-up requests: ``warmup_s``), the windows
(``measured_s``, and the windows before the reported ones), what the point spent after its
last window (stopping the clients, the row's reductions, writing it), and the gap to the
next point's start. Prints a table and the sums, so a change that cuts overhead shows as
a smaller share of the sweep outside the windows.
"""

from __future__ import annotations

import argparse
import time

from _machine import machine_line

import analyzer_widgets as aw
from analyzer_widgets import events as ev


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp_numpy")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--concurrency", default="1,2,4")
    parser.add_argument("--window-ms", type=int, default=250)
    parser.add_argument("--stable-windows", type=int, default=3)
    args = parser.parse_args()
    print(machine_line())
    marks: list[tuple[str, float]] = []

    def collect(event: object) -> None:
        now = time.monotonic()
        if isinstance(event, ev.PointStarted):
            marks.append(("start", now))
        elif isinstance(event, ev.WindowMeasured):
            marks.append(("window", now))
        elif isinstance(event, ev.PointFinished):
            marks.append(("finish", now))

    t0 = time.monotonic()
    result = aw.profile(models=args.models.split(","), model_repository=aw.EXAMPLE_REPOSITORY,
                        batch_sizes=[int(b) for b in args.batch.split(",")],
                        concurrency=[int(c) for c in args.concurrency.split(",")], window_ms=args.window_ms,
                        stable_windows=args.stable_windows, baseline_s=0.5, on_event=collect)
    wall = time.monotonic() - t0
    rows = result.to_frame()
    starts = [t for kind, t in marks if kind == "start"]
    finishes = [t for kind, t in marks if kind == "finish"]
    last_windows = []
    for start, finish in zip(starts, finishes, strict=True):
        inside = [t for kind, t in marks if kind == "window" and start <= t <= finish]
        last_windows.append(inside[-1] if inside else start)
    print(f"window {args.window_ms} ms, stable rule over {args.stable_windows} windows\n")
    print("| point | windows | in windows (s) | warm-up (s) | after last window (s) | gap to next (s) | point (s) |")
    print("|---|---|---|---|---|---|---|")
    totals = [0.0, 0.0, 0.0, 0.0, 0.0]
    for i, row in enumerate(rows.to_dict("records")):
        span = finishes[i] - starts[i]
        windows_s = row["window_count"] * args.window_ms / 1000
        after = finishes[i] - last_windows[i]
        gap = starts[i + 1] - finishes[i] if i + 1 < len(starts) else 0.0
        for k, v in enumerate((windows_s, row["warmup_s"], after, gap, span)):
            totals[k] += v
        print(f"| b{row['batch_size']} c{row['concurrency']} | {row['window_count']} | {windows_s:.2f} | "
              f"{row['warmup_s']:.3f} | {after:.3f} | {gap:.3f} | {span:.2f} |")
    print(f"| all | | {totals[0]:.2f} | {totals[1]:.2f} | {totals[2]:.2f} | {totals[3]:.2f} | {totals[4]:.2f} |")
    outside = totals[4] + totals[3] - totals[0]
    print(f"\nsweep wall {wall:.1f} s; the points {totals[4]:.1f} s, of which {outside:.1f} s "
          f"({outside / (totals[4] + totals[3]):.0%} with the gaps) outside the windows")


if __name__ == "__main__":
    main()
