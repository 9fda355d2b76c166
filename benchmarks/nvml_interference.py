"""Does NVML sampling slow the GPU work it watches? A controlled A/B on one server.

    python benchmarks/nvml_interference.py [--model torch_mlp] [--batch 1] [--concurrency 1]
                                           [--rounds 6] [--seconds 3]

One server, one model loaded, one client pool; the same point is measured again and again
for ``--seconds`` while the sampler configuration cycles: off, NVML without per-process
queries, NVML with them (the default), each at 20 Hz. Rounds interleave the
configurations so drift hits all alike. Prints the mean throughput of each and its ratio
to "off".
"""

from __future__ import annotations

import argparse
import statistics
import time

from _machine import machine_line

import analyzer_widgets as aw
from analyzer_widgets.loadgen._worker import PointJob
from analyzer_widgets.loadgen.generator import ClientPool
from analyzer_widgets.loadgen.inputs import build_inputs, expected_outputs
from analyzer_widgets.monitor.nvml import NvmlSampler, nvml_unavailable_reason
from analyzer_widgets.server import LocalServer, TritonControl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="torch_mlp")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    print(machine_line())
    reason = nvml_unavailable_reason()
    configs: dict[str, dict[str, bool] | None] = {"off": None}
    if reason is None:
        configs["nvml, no per-process"] = {"per_process": False}
        configs["nvml, per-process"] = {"per_process": True}
    else:
        print(f"NVML: {reason}; measuring 'off' only")
    measured: dict[str, list[float]] = {name: [] for name in configs}
    with LocalServer(aw.EXAMPLE_REPOSITORY) as server, ClientPool() as pool:
        control = TritonControl(server.endpoints.grpc)
        control.load(args.model)
        info = control.model_info(args.model)
        arrays, datatypes = build_inputs(info, args.batch, {})
        job = PointJob(server.endpoints.grpc, "grpc", args.model, "", arrays, datatypes,
                       expected_outputs(info, args.batch), args.concurrency, 30.0)
        load = pool.start_point(job, aw.MeasurementSettings().processes_for(args.concurrency))
        try:
            time.sleep(1.0)
            load.window(time.monotonic())  # drop the first second
            for _ in range(args.rounds):
                for name, options in configs.items():
                    sampler = NvmlSampler(0.05, **options) if options is not None else None
                    if sampler:
                        sampler.start()
                        time.sleep(0.2)
                        load.window(time.monotonic())  # count from when the sampler runs
                    time.sleep(args.seconds)
                    window = load.window(time.monotonic())
                    if sampler:
                        sampler.stop()
                    measured[name].append(window.throughput)
        finally:
            load.stop()
            control.unload(args.model)
            control.close()
    base = statistics.mean(measured["off"])
    print(f"{args.model} batch {args.batch} concurrency {args.concurrency}, {args.rounds} rounds of {args.seconds:g} s")
    for name, values in measured.items():
        mean = statistics.mean(values)
        spread = statistics.stdev(values) / mean if len(values) > 1 else 0.0
        print(f"  {name:<22} mean {mean:9.1f} infer/s (rounds: {', '.join(f'{v:.0f}' for v in values)}; "
              f"cv {spread:.1%})  ratio to off {mean / base:.3f}")


if __name__ == "__main__":
    main()
