"""Load-generator designs side by side on one server: our pool (1 process, or 1 per request
slot), grpc.aio, gRPC futures, and perf_analyzer when it is on PATH (issue 6).

    python benchmarks/client_variants.py [MODEL] [SECONDS]   # default torch_mlp 3

Prints throughput, mean and p99 latency, and the server's own queue and compute time per
request over the same span (to see how far the server itself drifted between figures).
Results: docs/benchmarks.md. Throwaway-grade code kept so the comparison can be re-run.
"""

import asyncio
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
from tritonclient.grpc import service_pb2

import analyzer_widgets as aw
from analyzer_widgets.loadgen._worker import PointJob
from analyzer_widgets.loadgen.generator import ClientPool
from analyzer_widgets.loadgen.inputs import build_inputs, expected_outputs
from analyzer_widgets.server.control import TritonControl
from analyzer_widgets.server.local import LocalServer

MODEL = sys.argv[1] if len(sys.argv) > 1 else "torch_mlp"
SECS = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
METHOD = "/inference.GRPCInferenceService/ModelInfer"
OPTS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def build(info, batch):
    arrays, dt = build_inputs(info, batch, {}, "random")
    r = service_pb2.ModelInferRequest(model_name=MODEL)
    for name, a in arrays.items():
        t = r.inputs.add()
        t.name = name
        t.datatype = dt[name]
        t.shape.extend(a.shape)
        r.raw_input_contents.append(a.tobytes())
    return r


def run_aio(url, req, c, secs):
    async def main():
        ch = grpc.aio.insecure_channel(url, options=OPTS)
        call = ch.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        payload = req.SerializeToString()
        n = 0
        lat = []
        end = time.monotonic() + secs

        async def one():
            nonlocal n
            while time.monotonic() < end:
                s = time.monotonic()
                service_pb2.ModelInferResponse.FromString(await call(payload, timeout=30))
                lat.append(time.monotonic() - s)
                n += 1

        await asyncio.gather(*[one() for _ in range(c)])
        await ch.close()
        return n, lat

    return asyncio.run(main())


def run_future(url, req, c, secs):
    ch = grpc.insecure_channel(url, options=OPTS)
    call = ch.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
    payload = req.SerializeToString()
    n = 0
    lat = []
    end = time.monotonic() + secs
    done = threading.Event()
    lock = threading.Lock()
    active = [c]

    def fire():
        s = time.monotonic()
        f = call.future(payload, timeout=30)
        f.add_done_callback(lambda f, s=s: cb(f, s))

    def cb(f, s):
        nonlocal n
        service_pb2.ModelInferResponse.FromString(f.result())
        lat.append(time.monotonic() - s)
        n += 1
        if time.monotonic() < end:
            fire()
        else:
            with lock:
                active[0] -= 1
                if active[0] == 0:
                    done.set()

    for _ in range(c):
        fire()
    done.wait()
    ch.close()
    return n, lat


def pool_run(pool, url, info, batch, c, procs, secs):
    arrays, dt = build_inputs(info, batch, {}, "random")
    job = PointJob(
        url=url,
        protocol="grpc",
        model=MODEL,
        version="",
        inputs=arrays,
        input_datatypes=dt,
        outputs=expected_outputs(info, batch),
        concurrency=c,
        timeout_s=30.0,
    )
    load = pool.start_point(job, procs)
    time.sleep(0.3)
    s = time.monotonic()
    load.window(s)
    time.sleep(secs)
    e = time.monotonic()
    w = load.window(e)
    load.stop()
    return w.ok, list(w.ok_latencies_s), e - s


def main():
    server = LocalServer(aw.EXAMPLE_REPOSITORY, aw.ServerSettings())
    server.start()
    try:
        ctl = TritonControl(server.endpoints.grpc)
        ctl.load(MODEL)
        info = ctl.model_info(MODEL)
        url = server.endpoints.grpc

        def report(name, b, c, n, lat, wall, st0):
            st1 = ctl.statistics(MODEL)
            d = st1 - st0
            comp = d.compute_infer_ns / max(d.success_count, 1) / 1e6
            q = d.queue_ns / max(d.success_count, 1) / 1e6
            print(
                f"b{b} c{c:<3d} {name:22s} {n * b / wall:9.0f} inf/s  avg {np.mean(lat) * 1e3:7.3f} p99 {np.percentile(lat, 99) * 1e3:7.3f} ms  server q {q:.3f} infer {comp:.3f}",
                flush=True,
            )

        with ClientPool() as pool:
            pool.prestart(16)
            for b in (1, 8):
                req = build(info, b)
                for c in (1, 4, 16):
                    variants = [
                        ("pool p1", lambda b=b, c=c: pool_run(pool, url, info, b, c, 1, SECS)),
                        ("pool p4", lambda b=b, c=c: pool_run(pool, url, info, b, c, min(4, c), SECS)),
                        ("pool p=c", lambda b=b, c=c: pool_run(pool, url, info, b, c, c, SECS)),
                        ("aio", None),
                        ("future", None),
                    ]
                    for name, fn in variants:
                        if c == 1 and name in ("pool p4", "pool p=c"):
                            continue
                        if c == 4 and name == "pool p4":
                            continue
                        st0 = ctl.statistics(MODEL)
                        if fn is None:
                            f = run_aio if name == "aio" else run_future
                            f(url, req, c, 0.3)
                            st0 = ctl.statistics(MODEL)
                            t0 = time.monotonic()
                            n, lat = f(url, req, c, SECS)
                            wall = time.monotonic() - t0
                        else:
                            n, lat, wall = fn()
                        report(name, b, c, n, lat, wall, st0)
                    if not __import__("shutil").which("perf_analyzer"):
                        continue
                    p = subprocess.run(
                        [
                            "perf_analyzer",
                            "-m",
                            MODEL,
                            "-u",
                            url,
                            "-i",
                            "grpc",
                            "-b",
                            str(b),
                            "--concurrency-range",
                            f"{c}:{c}",
                            "--measurement-interval",
                            "1000",
                            "-f",
                            "/tmp/pa.csv",
                        ],
                        capture_output=True,
                        text=True,
                    )
                    import csv
                    import io

                    row = next(csv.DictReader(io.StringIO(open("/tmp/pa.csv").read())))
                    avg = [line for line in p.stdout.splitlines() if "Avg latency" in line]
                    print(
                        f"b{b} c{c:<3d} {'perf_analyzer':22s} {float(row['Inferences/Second']):9.0f} inf/s  p99 {float(row['p99 latency']) / 1e3:7.3f} ms  {avg[:1]}  send/recv {row['Network+Server Send/Recv']} q {row['Server Queue']} infer {row['Server Compute Infer']}",
                        flush=True,
                    )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
