"""The panel's cost: does watching change what is measured, and is its memory bounded?

    python benchmarks/panel.py [--models mlp_numpy] [--rounds 3] [--window-ms 1000] [--hours 1]

1. Throughput ratio: the same sweep from the CLI's code path (``profile()``) and from the
   panel (``Dashboard.run()`` with its charts updated every 0.25 s, as the kernel's loop
   does), alternating for ``--rounds`` rounds. Target (issue 4): 0.99 or better.
2. Memory: ``--hours`` of samples at 20 Hz pushed through the panel's live charts in
   0.25 s ticks (synthetic samples: this measures the panel, not a sampler). Prints the
   Python memory the panel holds (tracemalloc) and the time one tick takes at the end.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import tracemalloc
from collections.abc import Mapping
from types import SimpleNamespace

from _machine import machine_line

import analyzer_widgets as aw
from analyzer_widgets.monitor.base import Sample, Sampler


def throughput_ratio(models: list[str], batch: str, concurrency: str, rounds: int, window_ms: int) -> None:
    settings = {"window_ms": window_ms, "baseline_s": 0.5}
    cli: list[dict[tuple, float]] = []
    panel: list[dict[tuple, float]] = []
    for _ in range(rounds):
        result = aw.profile(models=models, model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=batch,
                            concurrency=concurrency, **settings)
        cli.append({(r["model"], r["batch_size"], r["concurrency"]): r["throughput_infer_per_s"] for r in result.rows})
        dash = aw.Dashboard(models=models, batch_sizes=batch, concurrency=concurrency, **settings)
        dash.run()
        dash.wait()
        panel.append({(r["model"], r["batch_size"], r["concurrency"]): r["throughput_infer_per_s"]
                      for r in dash.results.to_dict("records")})
    print(f"{'model':<12} {'batch':>5} {'conc':>5}  {'CLI (infer/s)':>30}  {'panel (infer/s)':>30}  ratio")
    ratios = []
    for key in cli[0]:
        a = [r[key] for r in cli]
        b = [r[key] for r in panel]
        ratio = statistics.mean(b) / statistics.mean(a)
        ratios.append(ratio)
        print(f"{key[0]:<12} {key[1]:>5} {key[2]:>5}  {', '.join(f'{v:8.1f}' for v in a):>30}  "
              f"{', '.join(f'{v:8.1f}' for v in b):>30}  {ratio:.3f}")
    print(f"panel/CLI throughput: mean {statistics.mean(ratios):.3f}, min {min(ratios):.3f} (target >= 0.99)")


class Replay(Sampler):
    """Samples appended by the benchmark, not by a thread."""

    def __init__(self, name: str) -> None:
        super().__init__(name, 0.05)

    def sample(self) -> Mapping[str, float]:  # pragma: no cover - never started
        return {}

    def push(self, sample: Sample) -> None:
        with self._lock:
            self._buffer.append(sample)


def panel_memory(hours: float) -> None:
    dash = aw.Dashboard(models=["mlp_numpy"])
    source = "nvml" if dash.has_gpu else "host"
    keys = [t.key for chart in dash._charts for t in chart.traces if t.source == source]
    replay = Replay(source)
    session = SimpleNamespace(samplers=[replay], started=0.0)
    dash._runner = SimpleNamespace(monitors=session)  # the panel reads only runner.monitors
    ticks = int(hours * 3600 / 0.25)
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    t = 0.0
    tick_times = []
    for tick in range(ticks):
        for _ in range(5):  # 20 Hz
            t += 0.05
            replay.push(Sample(t, {k: 50 + 40 * math.sin(t / 60) for k in keys}))
        started = time.perf_counter()
        dash._update_charts()
        if tick >= ticks - 200:
            tick_times.append(time.perf_counter() - started)
    # everything allocated since the start, less the replayed samples themselves (allocated
    # here, in this file): what the panel holds for its charts
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, __file__)])
    held = sum(stat.size for stat in snapshot.statistics("filename"))
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    points = [len(trace.x) for trace in dash.live_figure.data if trace.x is not None]
    print(f"{hours:g} h at 20 Hz ({ticks * 5} samples per trace, {len(keys)} traces from '{source}'): "
          f"the panel holds {held / 2**20:.1f} MiB (all traced, samples included: {(current - base) / 2**20:.1f} MiB, "
          f"peak {(peak - base) / 2**20:.1f} MiB); points per trace in the browser: max {max(points)}; "
          f"one tick at the end: {statistics.mean(tick_times) * 1000:.1f} ms (of its 250 ms)")
    print(f"sampler buffer: {replay.buffered} samples (untrimmed here: no session hands them on)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp_numpy")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window-ms", type=int, default=1000)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    print(machine_line())
    if not args.skip_throughput:
        throughput_ratio(args.models.split(","), args.batch, args.concurrency, args.rounds, args.window_ms)
    panel_memory(args.hours)


if __name__ == "__main__":
    main()
