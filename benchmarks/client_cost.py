"""What the load generator itself costs: requests/s, median latency and client CPU per request.

    python benchmarks/client_cost.py [--model mlp_numpy] [--concurrency 1,4] [--seconds 3]

Starts the embedded server with the example repository, loads the model, and drives it
with the real client pool (benchmarks the same code a sweep runs) over gRPC and HTTP. The
client CPU is that of the client processes (user + system) over the measured span,
divided by the requests they completed. The smaller it is, the less the client adds to
each request's latency, and the closer our figures can come to perf_analyzer's (issue 6).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import psutil
from _machine import machine_line

import analyzer_widgets as aw
from analyzer_widgets.config import positive_int_list
from analyzer_widgets.loadgen._worker import PointJob
from analyzer_widgets.loadgen.generator import ClientPool
from analyzer_widgets.loadgen.inputs import build_inputs, expected_outputs
from analyzer_widgets.loadgen.stats import Window
from analyzer_widgets.repository import ModelInfo
from analyzer_widgets.server.control import TritonControl
from analyzer_widgets.server.local import LocalServer


def cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


def point_job(url: str, protocol: str, model: str, info: ModelInfo, batch: int, concurrency: int) -> PointJob:
    arrays, datatypes = build_inputs(info, batch, {}, "random")
    return PointJob(address=url, protocol=protocol, model=model, version="", inputs=arrays, input_datatypes=datatypes,
                    outputs=expected_outputs(info, batch), concurrency=concurrency, timeout_s=30.0)


def measure_pool(pool: ClientPool, job: PointJob, processes: int, seconds: float) -> tuple[Window, float]:
    """Run ``job`` on the pool for ``seconds`` after a 0.3 s start; the window and the
    client processes' CPU seconds over it."""
    load = pool.start_point(job, processes)
    try:
        pids = [w.process.pid for w in pool._workers[:processes]]
        time.sleep(0.3)
        load.window(time.monotonic())
        cpu0 = cpu_s(pids)
        time.sleep(seconds)
        window = load.window(time.monotonic())
        return window, cpu_s(pids) - cpu0
    finally:
        load.stop()


@contextmanager
def loaded_model(model: str, folder: object = aw.EXAMPLE_REPOSITORY) -> Iterator[tuple[LocalServer, TritonControl, ModelInfo]]:
    """The embedded server on ``folder`` with ``model`` loaded: (server, control, model info)."""
    server = LocalServer(folder, aw.ServerSettings())
    server.start()
    control = None
    try:
        control = TritonControl(server.endpoints.grpc)
        control.load(model)
        yield server, control, control.model_info(model)
    finally:
        if control is not None:
            control.close()
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="mlp_numpy")
    ap.add_argument("--model-folder", default=str(aw.EXAMPLE_REPOSITORY))
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--concurrency", type=lambda v: positive_int_list("--concurrency", v), default=(1, 4))
    ap.add_argument("--processes", type=int, default=1, help="client processes per point (default 1)")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    print(machine_line())
    with loaded_model(args.model, args.model_folder) as (server, _, info):
        print(f"model {args.model}, batch {args.batch_size}, {args.processes} client process(es), "
              f"{args.seconds:g} s per figure")
        print(f"{'protocol':8s} {'conc':>4s} {'req/s':>8s} {'p50 ms':>8s} {'client cpu us/req':>18s}")
        with ClientPool() as pool:
            for protocol in ("grpc", "http"):
                try:
                    __import__(f"tritonclient.{protocol}")
                except Exception as e:  # noqa: BLE001 - e.g. tritonclient without [http]
                    print(f"{protocol:8s} not measured: {e}")
                    continue
                url = server.endpoints.grpc if protocol == "grpc" else server.endpoints.http
                for c in args.concurrency:
                    job = point_job(url, protocol, args.model, info, args.batch_size, c)
                    window, cpu = measure_pool(pool, job, args.processes, args.seconds)
                    n = window.ok
                    print(f"{protocol:8s} {c:4d} {n / window.duration_s:8.0f} "
                          f"{np.median(window.ok_latencies_s) * 1e3:8.3f} {cpu / max(n, 1) * 1e6:18.1f}"
                          + (f"  ({window.failed} failed: {dict(window.errors)})" if window.failed else ""),
                          flush=True)


if __name__ == "__main__":
    main()
