"""Load-generator designs side by side on one server (issue 6): our client pool with one
process, with 4, and with one process per request slot; a grpc.aio loop (the first
design); gRPC futures; and perf_analyzer where it is on PATH.

    python benchmarks/client_variants.py [--model torch_mlp] [--seconds 3]

For each batch size and concurrency it prints throughput, mean and p99 latency, and the
server's own queue and compute time per request over the same span, which shows how far
the server itself drifted between the figures of one point. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
from _machine import machine_line
from client_cost import measure_pool, point_job
from fidelity import perf_analyzer_point
from tritonclient.grpc import service_pb2

import analyzer_widgets as aw
from analyzer_widgets.config import positive_int_list
from analyzer_widgets.loadgen._worker import GRPC_INFER, infer_request_bytes
from analyzer_widgets.loadgen.generator import ClientPool
from analyzer_widgets.server.control import TritonControl
from analyzer_widgets.server.local import LocalServer

OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
#: a variant: (gRPC address, serialized request, concurrency, seconds) -> (latencies in s, wall s)
Variant = Callable[[str, bytes, int, float], tuple[list[float], float]]


def run_aio(url: str, payload: bytes, concurrency: int, seconds: float) -> tuple[list[float], float]:
    """One asyncio loop with ``concurrency`` coroutines on a grpc.aio channel."""
    async def main() -> list[float]:
        channel = grpc.aio.insecure_channel(url, options=OPTIONS)
        call = channel.unary_unary(GRPC_INFER, request_serializer=None, response_deserializer=None)
        latencies: list[float] = []
        end = time.monotonic() + seconds

        async def slot() -> None:
            while time.monotonic() < end:
                start = time.monotonic()
                service_pb2.ModelInferResponse.FromString(await call(payload, timeout=30))
                latencies.append(time.monotonic() - start)

        await asyncio.gather(*[slot() for _ in range(concurrency)])
        await channel.close()
        return latencies

    start = time.monotonic()
    latencies = asyncio.run(main())
    return latencies, time.monotonic() - start


def run_futures(url: str, payload: bytes, concurrency: int, seconds: float) -> tuple[list[float], float]:
    """``concurrency`` gRPC futures kept in flight, each completion sending the next."""
    channel = grpc.insecure_channel(url, options=OPTIONS)
    call = channel.unary_unary(GRPC_INFER, request_serializer=None, response_deserializer=None)
    latencies: list[float] = []
    started = time.monotonic()
    end = started + seconds
    lock = threading.Lock()
    active = [concurrency]
    done = threading.Event()

    def send() -> None:
        sent = time.monotonic()
        call.future(payload, timeout=30).add_done_callback(lambda f: received(f, sent))

    def received(future: grpc.Future, sent: float) -> None:
        service_pb2.ModelInferResponse.FromString(future.result())
        latencies.append(time.monotonic() - sent)
        if time.monotonic() < end:
            send()
            return
        with lock:
            active[0] -= 1
            if active[0] == 0:
                done.set()

    for _ in range(concurrency):
        send()
    done.wait()
    wall = time.monotonic() - started
    channel.close()
    return latencies, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="torch_mlp")
    ap.add_argument("--model-folder", default=str(aw.EXAMPLE_REPOSITORY))
    ap.add_argument("--batch-sizes", type=lambda v: positive_int_list("--batch-sizes", v), default=(1, 8))
    ap.add_argument("--concurrency", type=lambda v: positive_int_list("--concurrency", v), default=(1, 4, 16))
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    print(machine_line())
    workdir = Path(tempfile.mkdtemp(prefix="client-variants-"))
    server = LocalServer(args.model_folder, aw.ServerSettings())
    server.start()
    try:
        control = TritonControl(server.endpoints.grpc)
        control.load(args.model)
        info = control.model_info(args.model)
        url = server.endpoints.grpc

        def report(name: str, batch: int, concurrency: int, latencies: list[float], wall: float, before) -> None:
            served = control.statistics(args.model) - before
            per_request = max(served.success_count, 1) * 1e6
            print(f"b{batch} c{concurrency:<3d} {name:16s} {len(latencies) * batch / wall:9.0f} inf/s  "
                  f"avg {np.mean(latencies) * 1e3:7.3f} p99 {np.percentile(latencies, 99) * 1e3:7.3f} ms  "
                  f"server queue {served.queue_ns / per_request:.3f} infer {served.compute_infer_ns / per_request:.3f} ms",
                  flush=True)

        with ClientPool() as pool:
            pool.prestart(max(args.concurrency))
            for b in args.batch_sizes:
                for c in args.concurrency:
                    job = point_job(url, "grpc", args.model, info, b, c)
                    payload = infer_request_bytes(job)
                    for processes in sorted({1, min(4, c), c}):
                        before = control.statistics(args.model)
                        window, _ = measure_pool(pool, job, processes, args.seconds)
                        report(f"pool, {processes} proc", b, c, list(window.ok_latencies_s), window.duration_s, before)
                    variants: dict[str, Variant] = {"grpc.aio": run_aio, "gRPC futures": run_futures}
                    for name, run in variants.items():
                        run(url, payload, c, 0.3)  # warm-up
                        before = control.statistics(args.model)
                        latencies, wall = run(url, payload, c, args.seconds)
                        report(name, b, c, latencies, wall, before)
                    if shutil.which("perf_analyzer"):
                        pa = perf_analyzer_point(url, args.model, b, c, workdir, window_ms=1000)
                        print(f"b{b} c{c:<3d} {'perf_analyzer':16s} {pa['throughput']:9.0f} inf/s  "
                              f"avg {pa['avg_ms']:7.3f} p99 {pa['p99_ms']:7.3f} ms"
                              + ("  (not stable)" if pa["unstable"] else ""), flush=True)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
