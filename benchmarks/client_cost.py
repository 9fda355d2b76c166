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

import numpy as np
import psutil
from _machine import machine_line

import analyzer_widgets as aw
from analyzer_widgets.config import positive_int_list
from analyzer_widgets.loadgen._worker import PointJob
from analyzer_widgets.loadgen.generator import ClientPool
from analyzer_widgets.loadgen.inputs import build_inputs, expected_outputs
from analyzer_widgets.server.control import TritonControl
from analyzer_widgets.server.local import LocalServer


def cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


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
    server = LocalServer(args.model_folder, aw.ServerSettings())
    server.start()
    try:
        control = TritonControl(server.endpoints.grpc)
        control.load(args.model)
        info = control.model_info(args.model)
        arrays, datatypes = build_inputs(info, args.batch_size, {}, "random")
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
                    job = PointJob(url=url, protocol=protocol, model=args.model, version="", inputs=arrays,
                                   input_datatypes=datatypes, outputs=expected_outputs(info, args.batch_size),
                                   concurrency=c, timeout_s=30.0)
                    load = pool.start_point(job, args.processes)
                    pids = [w.process.pid for w in pool._workers[:args.processes]]
                    time.sleep(0.3)
                    start = time.monotonic()
                    load.window(start)
                    cpu0 = cpu_s(pids)
                    time.sleep(args.seconds)
                    end = time.monotonic()
                    window = load.window(end)
                    cpu1 = cpu_s(pids)
                    load.stop()
                    n = window.ok
                    print(f"{protocol:8s} {c:4d} {n / (end - start):8.0f} "
                          f"{np.median(window.ok_latencies_s) * 1e3:8.3f} {(cpu1 - cpu0) / max(n, 1) * 1e6:18.1f}"
                          + (f"  ({window.failed} failed: {dict(window.errors)})" if window.failed else ""),
                          flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
