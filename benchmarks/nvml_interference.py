"""Does watching the GPU slow the work it watches? A controlled A/B on one server.

    python benchmarks/nvml_interference.py [--model torch_mlp] [--batch-sizes 1] [--concurrency 1]
                                           [--rounds 10] [--seconds 2]

One server, one model loaded, one client pool per point; the point is measured again and
again for ``--seconds`` while what watches it cycles: nothing, NVML without per-process
queries, NVML with them (the sweep's default, in remote mode the only sampler), and all
of a local sweep's samplers (NVML, the server's process tree, Triton's /metrics), each at
the sweep's default rates. Each round measures every configuration once, in an order
that rotates from round to round, and each is compared with "off" of the same round, so
drift of the host (which moves this model by 5-10% within seconds) hits all alike. Prints,
per configuration, the median of those paired ratios and their range.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from _machine import machine_line

import analyzer_widgets as aw
from analyzer_widgets.config import MonitorSettings, positive_int_list
from analyzer_widgets.loadgen._worker import PointJob
from analyzer_widgets.loadgen.generator import ClientPool
from analyzer_widgets.loadgen.inputs import build_inputs, expected_outputs
from analyzer_widgets.machine import nvml_unavailable_reason
from analyzer_widgets.monitor.nvml import NvmlSampler
from analyzer_widgets.monitor.session import MonitorSession
from analyzer_widgets.server import LocalServer, TritonControl


def watchers(server: LocalServer) -> dict[str, Callable[[], Callable[[], None]] | None]:
    """Each configuration: None (nothing watches) or a function that starts it and
    returns its stop."""
    rate = MonitorSettings().nvml_interval_s

    def nvml(per_process: bool) -> Callable[[], Callable[[], None]]:
        def start() -> Callable[[], None]:
            sampler = NvmlSampler(rate, per_process=per_process)
            sampler.start()
            return sampler.stop
        return start

    def everything() -> Callable[[], None]:
        session = MonitorSession()
        session.start_gpu()
        session.attach_server(server.pid, server.endpoints.metrics)
        return session.stop

    configs: dict[str, Callable[[], Callable[[], None]] | None] = {"off": None}
    reason = nvml_unavailable_reason()
    if reason is None:
        configs["nvml, no per-process"] = nvml(False)
        configs["nvml, per-process"] = nvml(True)
    else:
        print(f"NVML: {reason}; no NVML configurations")
    configs["all samplers (local)"] = everything
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="torch_mlp")
    parser.add_argument("--batch-sizes", type=lambda v: positive_int_list("--batch-sizes", v), default=(1,))
    parser.add_argument("--concurrency", type=lambda v: positive_int_list("--concurrency", v), default=(1,))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    print(machine_line())
    with LocalServer(aw.EXAMPLE_REPOSITORY) as server, ClientPool() as pool:
        configs = watchers(server)
        control = TritonControl(server.endpoints.grpc)
        control.load(args.model)
        info = control.model_info(args.model)
        try:
            for batch in args.batch_sizes:
                for concurrency in args.concurrency:
                    measure_point(pool, server, info, args, batch, concurrency, configs)
        finally:
            control.unload(args.model)
            control.close()


def measure_point(pool: ClientPool, server: LocalServer, info: object, args: argparse.Namespace, batch: int,
                  concurrency: int, configs: dict[str, Callable[[], Callable[[], None]] | None]) -> None:
    arrays, datatypes = build_inputs(info, batch, {})
    job = PointJob(server.endpoints.grpc, "grpc", args.model, "", arrays, datatypes,
                   expected_outputs(info, batch), concurrency, 30.0)
    load = pool.start_point(job, aw.MeasurementSettings().processes_for(concurrency))
    names = list(configs)
    measured: dict[str, list[float]] = {name: [] for name in names}
    try:
        time.sleep(1.0)
        load.window(time.monotonic())  # drop the first second
        for rnd in range(args.rounds):
            shift = rnd % len(names)
            for name in names[shift:] + names[:shift]:  # rotate the order: none always runs first
                start = configs[name]
                stop = start() if start is not None else None
                time.sleep(0.2)  # let the samplers reach their rate
                load.window(time.monotonic())  # count from when they run
                time.sleep(args.seconds)
                measured[name].append(load.window(time.monotonic()).throughput)
                if stop is not None:
                    stop()
    finally:
        load.stop()
    print(f"\n{args.model} batch {batch} concurrency {concurrency}, {args.rounds} rounds of {args.seconds:g} s")
    off = measured["off"]
    print(f"  {'off':<22} median {statistics.median(off):9.1f} infer/s")
    for name, values in list(measured.items())[1:]:
        ratios = [v / o for v, o in zip(values, off, strict=True)]
        print(f"  {name:<22} median {statistics.median(values):9.1f} infer/s; against off in the same round: "
              f"median {statistics.median(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}], "
              f"below 1 in {sum(r < 1 for r in ratios)} of {len(ratios)}", flush=True)


if __name__ == "__main__":
    main()
