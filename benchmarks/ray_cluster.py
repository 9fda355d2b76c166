"""Wall time of one sweep of several models as Ray tasks on a local cluster of one node and of
two (``--ray``), and what the driver's part costs per unit.

    python benchmarks/ray_cluster.py [--models mlp_numpy,mixed_inputs,sequence_mean] [--window-ms 300]

Starts a real Ray cluster on this machine (analyzer_widgets/distributed/local_cluster.py: each
node one ``aw_slot``, so one unit at a time per node), runs the sweep on it with one node, adds a
second node and runs the same sweep again, all in one process. For reference it runs the sweep
without Ray first (one server measures every model in turn). Prints each run's wall time (from
the call to its return) and, per unit: from its submission to its "started" message (Ray's
scheduling and a worker process's start, with our imports: the least of them, as the units
beyond the free slots also wait for one), from "started" to "done" (the
unit's own server, baseline and points), and the driver's time taking the units' messages from
the mailbox and handing them on (rows to the CSV, samples, events), with the message count.
On one machine the nodes share its cores: two nodes side by side are not two machines' worth.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _machine import machine_line

import analyzer_widgets as aw
from analyzer_widgets.distributed import RayRunner
from analyzer_widgets.distributed.local_cluster import SLOT_RESOURCE, LocalRayCluster


def run(label: str, models: list[str], window_ms: int, **more: object) -> float:
    held: list[object] = []
    t0 = time.monotonic()
    result = aw.profile(models=models, model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=[1, 8],
                        concurrency=[1, 2], window_ms=window_ms, baseline_s=1.0, runner_hook=held.append,
                        input_shapes={"SEQUENCE": (16, 32)}, **more)  # sequence_mean: 16 steps of 32
    wall = time.monotonic() - t0
    statuses = sorted(set(result.to_frame()["status"]))
    print(f"{label:<24} wall {wall:6.1f} s   rows {len(result.rows)} ({', '.join(statuses)})")
    runner = held[0]
    if isinstance(runner, RayRunner):
        times = list(runner.unit_times.values())
        scheduling = [t["started"] - t["submitted"] for t in times if "started" in t]
        running = [t["done"] - t["started"] for t in times if "done" in t and "started" in t]
        # the units beyond the slots wait for one in Ray's queue: the least is the cost alone
        print(f"{'':<24} per unit: submitted -> started {min(scheduling):.2f} s at least (max {max(scheduling):.2f}, "
              f"waiting for a slot), started -> done median {statistics.median(running):.1f} s; "
              f"driver receiving {runner.receive_s / len(times):.3f} s per unit "
              f"({runner.received} messages, {runner.received / len(times):.0f} per unit)")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mlp_numpy,mixed_inputs,sequence_mean")
    parser.add_argument("--window-ms", type=int, default=300)
    args = parser.parse_args()
    models = args.models.split(",")
    print(machine_line())
    print(f"sweep: {', '.join(models)}, batch 1,8 x concurrency 1,2, {args.window_ms} ms windows, 1 s baseline")
    alone = run("no Ray (one server)", models, args.window_ms)
    ray = {"ray_unit_resources": f"{SLOT_RESOURCE}=1"}
    with LocalRayCluster(nodes=1) as cluster:
        one = run("Ray, 1 node", models, args.window_ms, ray=cluster.address, **ray)
        cluster.add_node()
        two = run("Ray, 2 nodes", models, args.window_ms, ray=cluster.address, **ray)
    print(f"2 nodes / 1 node: {two / one:.2f}   1 node / no Ray: {one / alone:.2f}")


if __name__ == "__main__":
    main()
