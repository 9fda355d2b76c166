"""What our client adds to each request's latency, by protocol and client processes (issue 6).

    python benchmarks/client_added_latency.py [--model torch_mlp] [--points 1:16,8:16]
                                              [--variants http:auto,http:8,grpc:auto] [--seconds 3] [--rounds 2]

Starts the embedded server with the example repository, loads the model, and drives each
point with the real client pool once per variant (protocol:client processes, ``auto`` for
the sweep's own choice), the variants' order reversed every other round. Prints, per
measurement, throughput, our mean latency, the server's own queue + compute time per
request over the same span (its statistics), and the difference: what the client, the
connection and the server's protocol front end added. The server's own time drifts on a
noisy host; the difference does much less, so it compares load generators where raw
throughput cannot. benchmarks/fidelity.py prints the same for perf_analyzer.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _machine import machine_line
from client_cost import loaded_model, point_job

import analyzer_widgets as aw
from analyzer_widgets.config import MeasurementSettings
from analyzer_widgets.loadgen.generator import ClientPool


def parse_points(text: str) -> list[tuple[int, int]]:
    return [(int(b), int(c)) for b, c in (p.split(":") for p in text.split(","))]


def parse_variants(text: str) -> list[tuple[str, int]]:
    """protocol:processes pairs; processes 0 (``auto``) means the sweep's own choice."""
    out = []
    for part in text.split(","):
        protocol, _, processes = part.partition(":")
        out.append((protocol, 0 if processes in ("", "auto") else int(processes)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="torch_mlp")
    ap.add_argument("--model-folder", default=str(aw.EXAMPLE_REPOSITORY))
    ap.add_argument("--points", type=parse_points, default=parse_points("1:16,8:16"), help="batch:concurrency,...")
    ap.add_argument("--variants", type=parse_variants, default=parse_variants("http:auto,http:8,grpc:auto"))
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    print(machine_line())
    pools: dict[tuple[str, int], ClientPool] = {}
    with loaded_model(args.model, args.model_folder) as (server, control, info):
        try:
            most = max(c for _, c in args.points)
            for protocol, processes in args.variants:
                pools[(protocol, processes)] = pool = ClientPool()
                pool.prestart(MeasurementSettings(client_processes=processes).processes_for(most))
            print(f"model {args.model}, {args.seconds:g} s per figure after 0.5 s of load")
            print(f"{'protocol':8s} {'procs':>5s} {'batch':>5s} {'conc':>4s} {'infer/s':>8s} {'avg ms':>7s} "
                  f"{'server ms':>9s} {'added ms':>8s}", flush=True)
            for rnd in range(args.rounds):
                for batch, concurrency in args.points:
                    for protocol, processes in args.variants if rnd % 2 == 0 else args.variants[::-1]:
                        url = server.endpoints.grpc if protocol == "grpc" else server.endpoints.http
                        job = point_job(url, protocol, args.model, info, batch, concurrency)
                        count = MeasurementSettings(client_processes=processes).processes_for(concurrency)
                        load = pools[(protocol, processes)].start_point(job, count)
                        try:
                            time.sleep(0.5)
                            load.window(time.monotonic())
                            before = control.statistics(args.model)
                            time.sleep(args.seconds)
                            window = load.window(time.monotonic())
                            spent = control.statistics(args.model) - before
                        finally:
                            load.stop()
                        server_ms = (spent.queue_ns + spent.compute_input_ns + spent.compute_infer_ns
                                     + spent.compute_output_ns) / max(spent.success_count, 1) / 1e6
                        avg_ms = float(np.mean(window.ok_latencies_s)) * 1e3 if window.ok else float("nan")
                        print(f"{protocol:8s} {count:5d} {batch:5d} {concurrency:4d} {window.ok * batch / window.duration_s:8.0f} "
                              f"{avg_ms:7.3f} {server_ms:9.3f} {avg_ms - server_ms:8.3f}"
                              + (f"  ({window.failed} failed)" if window.failed else ""), flush=True)
        finally:
            for pool in pools.values():
                pool.close()


if __name__ == "__main__":
    main()
