"""Wall time of one sweep of two models run on one slot and on two (``--parallel gpus``).

    python benchmarks/parallel.py [--window-ms 300] [--models mlp_numpy,mixed_inputs]

Runs the same sweep three ways, one after another, in one process: the one-server sweep
(``parallel=off``: one server measures both models in turn), ``--parallel gpus`` with one
slot (one unit at a time, each on its own server: the path a one-GPU host takes) and with
two slots (two servers side by side; on a machine without GPUs the slots are simulated and
share its cores). Prints each one's wall time, from the call to its return, and the time
from the first unit's start to the second's server being ready (how much the two overlap).
"""

from __future__ import annotations

import argparse
import time

from _machine import machine_line

import analyzer_widgets as aw
from analyzer_widgets import events as ev


def run(label: str, models: list[str], window_ms: int, **parallel: object) -> float:
    marks: list[tuple[float, str]] = []

    def note(event: object) -> None:
        if isinstance(event, ev.UnitStarted | ev.ServerReady | ev.UnitFinished):
            marks.append((time.monotonic(), type(event).__name__))

    t0 = time.monotonic()
    result = aw.profile(models=models, model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=[1, 8],
                        concurrency=[1, 2], window_ms=window_ms, baseline_s=1.0, on_event=note, **parallel)
    wall = time.monotonic() - t0
    statuses = sorted(set(result.to_frame()["status"]))
    ready = [t - t0 for t, name in marks if name == "ServerReady"]
    print(f"{label:<28} wall {wall:6.1f} s   rows {len(result.rows)} ({', '.join(statuses)})   "
          f"servers ready at {', '.join(f'{t:.1f}' for t in ready)} s")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window-ms", type=int, default=300)
    parser.add_argument("--models", default="mlp_numpy,mixed_inputs")
    args = parser.parse_args()
    models = args.models.split(",")
    print(machine_line())
    print(f"sweep: {', '.join(models)}, batch 1,8 x concurrency 1,2, {args.window_ms} ms windows, 1 s baseline")
    one_server = run("one server (parallel off)", models, args.window_ms)
    one_slot = run("parallel gpus, 1 slot", models, args.window_ms, parallel="gpus", parallel_slots=1)
    two_slots = run("parallel gpus, 2 slots", models, args.window_ms, parallel="gpus", parallel_slots=2)
    print(f"2 slots / 1 slot: {two_slots / one_slot:.2f}; 2 slots / one server: {two_slots / one_server:.2f}")


if __name__ == "__main__":
    main()
