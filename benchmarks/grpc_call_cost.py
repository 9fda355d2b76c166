"""One blocking gRPC ModelInfer call: grpcio with variants of its options, against the
load generator's own HTTP/2 client (loadgen._http2): wall time and this process's CPU per
call (issue 6).

    python benchmarks/grpc_call_cost.py [--model mlp_numpy] [--seconds 2.5] [--rounds 2]
    GRPC_EXPERIMENTS=-event_engine_client python benchmarks/grpc_call_cost.py

Starts the embedded server, loads the model, and calls it at concurrency 1 from this
process with the serialized request our worker sends. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import grpc
from _machine import machine_line
from client_cost import loaded_model, point_job
from tritonclient.grpc import service_pb2

from analyzer_widgets.loadgen._http2 import GrpcConnection, grpc_message
from analyzer_widgets.loadgen._worker import GRPC_INFER, _address, infer_request_bytes

OURS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1), ("grpc.enable_retries", 0)]


def time_calls(call: Callable[[], object], seconds: float) -> tuple[float, float]:
    """Wall time and this process's CPU per call, over ``seconds`` after 50 warm-up calls."""
    for _ in range(50):
        call()
    started, cpu = time.monotonic(), time.process_time()
    calls = 0
    while time.monotonic() - started < seconds:
        call()
        calls += 1
    return (time.monotonic() - started) / calls, (time.process_time() - cpu) / calls


def measure(url: str, payload: bytes, options: list[tuple[str, Any]], call_kwargs: dict[str, Any],
            deserializer: Any, seconds: float) -> tuple[float, float]:
    channel = grpc.insecure_channel(url, options=options)
    call = channel.unary_unary(GRPC_INFER, request_serializer=None, response_deserializer=deserializer)
    try:
        return time_calls(lambda: call(payload, **call_kwargs), seconds)
    finally:
        channel.close()


def measure_ours(url: str, payload: bytes, seconds: float) -> tuple[float, float]:
    """The same calls on our HTTP/2 client, the response parsed as the worker does."""
    conn = GrpcConnection(_address(url), url, GRPC_INFER, {}, 30.0)
    message, parse = grpc_message(payload), service_pb2.ModelInferResponse.FromString
    try:
        return time_calls(lambda: parse(conn.call(message)), seconds)
    finally:
        conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="mlp_numpy")
    ap.add_argument("--seconds", type=float, default=2.5)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    print(machine_line())
    with loaded_model(args.model) as (server, _, info):
        job = point_job(server.endpoints.grpc, "grpc", args.model, info, 1, 1)
        payload = infer_request_bytes(job)
        parse = service_pb2.ModelInferResponse.FromString
        variants = [
            ("grpcio, as our worker called it", OURS, {"timeout": 30}, parse),
            ("no deadline", OURS, {}, parse),
            ("no deserializer", OURS, {"timeout": 30}, None),
            ("grpc.minimal_stack", OURS + [("grpc.minimal_stack", 1)], {"timeout": 30}, parse),
            ("BDP probing off", OURS + [("grpc.http2.bdp_probe", 0)], {"timeout": 30}, parse),
            ("optimization target latency", OURS + [("grpc.optimization_target", "latency")], {"timeout": 30}, parse),
        ]
        for _ in range(args.rounds):
            wall, cpu = measure_ours(server.endpoints.grpc, payload, args.seconds)
            print(f"{'our HTTP/2 client (loadgen._http2)':40s} {wall * 1e6:7.1f} us a call, {cpu * 1e6:6.1f} us of CPU",
                  flush=True)
            for name, options, kwargs, deserializer in variants:
                wall, cpu = measure(server.endpoints.grpc, payload, options, kwargs, deserializer, args.seconds)
                print(f"{name:40s} {wall * 1e6:7.1f} us a call, {cpu * 1e6:6.1f} us of CPU", flush=True)


if __name__ == "__main__":
    main()
