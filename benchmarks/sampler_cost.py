"""Sampling rate achieved and CPU cost of the samplers, per sampler thread.

    python benchmarks/sampler_cost.py [--seconds 10] [--interval-ms 50]

Runs each available sampler alone for the given time and prints the achieved rate (Hz)
and the CPU time its thread used as a share of one core. Targets (issue 3): NVML at
20 Hz or more for under 2% of one core. Where NVML is absent it says so and measures the
host sampler only.
"""

from __future__ import annotations

import argparse
import os
import time

import psutil
from _machine import machine_line

from analyzer_widgets.machine import nvml_unavailable_reason
from analyzer_widgets.monitor.base import Sampler
from analyzer_widgets.monitor.host import ProcessTreeSampler
from analyzer_widgets.monitor.nvml import NvmlSampler


def thread_cpu_s(native_id: int) -> float:
    for t in psutil.Process().threads():
        if t.id == native_id:
            return t.user_time + t.system_time
    return float("nan")


def measure(sampler: Sampler, seconds: float) -> tuple[float, float, int]:
    sampler.start()
    assert sampler._thread is not None
    time.sleep(0.5)  # let setup() finish; count from here
    native = sampler._thread.native_id or 0
    t0, cpu0, n0 = time.monotonic(), thread_cpu_s(native), len(sampler.between(0, float("inf")))
    time.sleep(seconds)
    t1, cpu1, n1 = time.monotonic(), thread_cpu_s(native), len(sampler.between(0, float("inf")))
    sampler.stop()
    return (n1 - n0) / (t1 - t0), 100.0 * (cpu1 - cpu0) / (t1 - t0), n1 - n0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--interval-ms", type=float, default=50.0)
    args = parser.parse_args()
    print(machine_line())
    samplers: list[tuple[str, Sampler]] = []
    reason = nvml_unavailable_reason()
    if reason is None:
        samplers.append(("nvml (per-process on)", NvmlSampler(args.interval_ms / 1000)))
        samplers.append(("nvml (per-process off)", NvmlSampler(args.interval_ms / 1000, per_process=False)))
    else:
        print(f"nvml: not measured: {reason}")
    samplers.append(("host (this process tree)", ProcessTreeSampler(os.getpid(), args.interval_ms / 1000)))
    for name, sampler in samplers:
        rate, cpu_pct, count = measure(sampler, args.seconds)
        extra = ""
        if isinstance(sampler, NvmlSampler):
            extra = f", GPUs: {[g.name for g in sampler.gpus]}, unavailable: {sampler.unavailable or 'none'}"
        print(f"{name:<26} {rate:6.1f} Hz ({count} samples in {args.seconds:g} s), "
              f"CPU {cpu_pct:5.2f}% of one core{extra}")


if __name__ == "__main__":
    main()
