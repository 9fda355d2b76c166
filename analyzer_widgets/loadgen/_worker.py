"""The body of one load-generating client process.

Each worker keeps ``concurrency`` requests outstanding on one asyncio event loop (as
perf_analyzer's concurrency mode does: a new request is sent as soon as one completes),
checks every response, and streams its request records to the parent in small batches.

Wire protocol (two one-way pipes, so neither side ever reads and writes one pipe from
two threads):
  parent -> worker (commands): ("run", PointJob) | ("stop",) | ("exit",)
  worker -> parent (data):     ("warm", wid, t) once every coroutine finished its warm-up
                               ("records", wid, flushed_until, starts, ends, ok, errors)
                               ("done", wid, flushed_until) after a stop
                               ("fatal", wid, message) when the point cannot run at all
Times are ``time.monotonic()``: CLOCK_MONOTONIC is shared by every process of a host,
so the parent can cut windows across workers by these stamps.
"""

from __future__ import annotations

import asyncio
import math
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

FLUSH_INTERVAL_S = 0.05
STOP_GRACE_S = 1.0  # how long in-flight requests may finish after a stop before we cancel
ERROR_BACKOFF_S = 0.005  # keeps a dead server from turning the loop into a busy spin
MAX_ERROR_KINDS = 20


@dataclass(frozen=True)
class OutputCheck:
    """What a valid response carries for one output: the name and the expected shape
    (batch dimension included, -1 where any size is fine)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class PointJob:
    url: str
    protocol: str  # "grpc" or "http"
    model: str
    version: str
    inputs: dict[str, np.ndarray]  # name -> data with the batch dimension
    input_datatypes: dict[str, str]  # name -> Triton wire datatype
    outputs: tuple[OutputCheck, ...]
    concurrency: int
    timeout_s: float
    warmup_requests: int = 1
    headers: dict[str, str] = field(default_factory=dict)


_ITEMSIZE = {
    "BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2, "BF16": 2,
    "UINT32": 4, "INT32": 4, "FP32": 4, "UINT64": 8, "INT64": 8, "FP64": 8,
}


def check_output(check: OutputCheck, shape: tuple[int, ...], nbytes: int | None) -> str | None:
    """Why one returned output is not valid, or None when it is."""
    if len(shape) != len(check.shape):
        return f"output {check.name} has shape {list(shape)}, expected {list(check.shape)}"
    for got, want in zip(shape, check.shape, strict=True):
        if want >= 0 and got != want:
            return f"output {check.name} has shape {list(shape)}, expected {list(check.shape)}"
    count = math.prod(shape)
    if count == 0:
        return f"output {check.name} came back empty (shape {list(shape)})"
    size = _ITEMSIZE.get(check.datatype)
    if nbytes is not None:
        if nbytes == 0:
            return f"output {check.name} came back with no data"
        if size is not None and nbytes != count * size:
            return f"output {check.name} holds {nbytes} bytes, expected {count * size}"
    return None


def check_outputs(expected: tuple[OutputCheck, ...], got: dict[str, tuple[tuple[int, ...], int | None]]) -> str | None:
    for check in expected:
        if check.name not in got:
            return f"output {check.name} missing from the response (got {sorted(got) or 'none'})"
        problem = check_output(check, *got[check.name])
        if problem:
            return problem
    return None


def _serialize(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        from tritonclient.utils import serialize_byte_tensor

        return bytes(serialize_byte_tensor(array).item())
    return np.ascontiguousarray(array).tobytes()


class _GrpcSender:
    def __init__(self, job: PointJob) -> None:
        import grpc
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        self._grpc = grpc
        # One pre-built request message, sent again and again: building it per request
        # costs more client CPU than the whole round trip for small models.
        request = service_pb2.ModelInferRequest(model_name=job.model, model_version=job.version)
        for name, data in job.inputs.items():
            tensor = request.inputs.add()
            tensor.name = name
            tensor.datatype = job.input_datatypes[name]
            tensor.shape.extend(data.shape)
            request.raw_input_contents.append(_serialize(data, job.input_datatypes[name]))
        self._request = request
        self._channel = grpc.aio.insecure_channel(
            job.url,
            options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
        )
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self._metadata = tuple(job.headers.items()) or None
        self._timeout = job.timeout_s
        self._outputs = job.outputs

    async def send(self) -> str | None:
        try:
            response = await self._stub.ModelInfer(self._request, timeout=self._timeout, metadata=self._metadata)
        except self._grpc.aio.AioRpcError as e:
            return f"{e.code().name}: {e.details()}"
        raw = response.raw_output_contents
        got = {
            out.name: (tuple(out.shape), len(raw[i]) if i < len(raw) else None)
            for i, out in enumerate(response.outputs)
        }
        return check_outputs(self._outputs, got)

    async def close(self) -> None:
        await self._channel.close()


class _HttpSender:
    def __init__(self, job: PointJob) -> None:
        import aiohttp
        import tritonclient.http as httpclient

        self._client_cls = httpclient.InferenceServerClient
        inputs = []
        for name, data in job.inputs.items():
            tensor = httpclient.InferInput(name, list(data.shape), job.input_datatypes[name])
            tensor.set_data_from_numpy(data, binary_data=True)
            inputs.append(tensor)
        outputs = [httpclient.InferRequestedOutput(o.name, binary_data=True) for o in job.outputs]
        body, json_size = self._client_cls.generate_request_body(inputs, outputs=outputs)
        self._body = body
        self._headers = dict(job.headers)
        if json_size is not None:
            self._headers["Inference-Header-Content-Length"] = str(json_size)
        self._url = f"http://{job.url}/v2/models/{job.model}" + (f"/versions/{job.version}" if job.version else "") + "/infer"
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=job.timeout_s)
        )
        self._aiohttp = aiohttp
        self._outputs = job.outputs

    async def send(self) -> str | None:
        try:
            async with self._session.post(self._url, data=self._body, headers=self._headers) as r:
                body = await r.read()
                if r.status != 200:
                    return f"HTTP {r.status}: {body[:200].decode(errors='replace')}"
                header_length = r.headers.get("Inference-Header-Content-Length")
        except (self._aiohttp.ClientError, asyncio.TimeoutError) as e:
            return f"{type(e).__name__}: {e}"
        result = self._client_cls.parse_response_body(body, header_length=int(header_length) if header_length else None)
        got: dict[str, tuple[tuple[int, ...], int | None]] = {}
        for out in result.get_response().get("outputs", []):
            nbytes = out.get("parameters", {}).get("binary_data_size")
            got[out["name"]] = (tuple(out.get("shape", ())), nbytes if nbytes is not None else len(out.get("data", [])) or None)
        return check_outputs(self._outputs, got)

    async def close(self) -> None:
        await self._session.close()


class _Recorder:
    """Per-request records, drained to the parent every FLUSH_INTERVAL_S."""

    def __init__(self, wid: int, data: Connection) -> None:
        self.wid = wid
        self.data = data
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.ok: list[bool] = []
        self.errors: Counter[str] = Counter()
        self.recording = False

    def add(self, start: float, end: float, error: str | None) -> None:
        if not self.recording:
            return
        self.starts.append(start)
        self.ends.append(end)
        self.ok.append(error is None)
        if error is not None and (error in self.errors or len(self.errors) < MAX_ERROR_KINDS):
            self.errors[error] += 1

    def flush(self) -> None:
        now = time.monotonic()
        self.data.send((
            "records", self.wid, now,
            np.asarray(self.starts, dtype=np.float64), np.asarray(self.ends, dtype=np.float64),
            np.asarray(self.ok, dtype=bool), dict(self.errors),
        ))
        self.starts, self.ends, self.ok = [], [], []
        self.errors = Counter()


async def _run_point(wid: int, job: PointJob, commands: Connection, data: Connection) -> bool:
    """Run one point until told to stop; True when the parent asked the worker to exit."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    exit_requested = False

    def on_command() -> None:
        nonlocal exit_requested
        try:
            message = commands.recv()
        except EOFError:
            message = ("exit",)
        exit_requested = exit_requested or message[0] == "exit"
        if message[0] in ("stop", "exit"):
            stop.set()

    loop.add_reader(commands.fileno(), on_command)
    sender: Any = _GrpcSender(job) if job.protocol == "grpc" else _HttpSender(job)
    recorder = _Recorder(wid, data)
    warmed = 0

    async def client() -> None:
        nonlocal warmed
        for _ in range(job.warmup_requests):
            if stop.is_set():
                break
            await sender.send()
        warmed += 1
        if warmed == job.concurrency:
            recorder.recording = True
            data.send(("warm", wid, time.monotonic()))
        while not stop.is_set():
            start = time.monotonic()
            error = await sender.send()
            recorder.add(start, time.monotonic(), error)
            if error is not None:
                await asyncio.sleep(ERROR_BACKOFF_S)

    async def flusher() -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), FLUSH_INTERVAL_S)
            except asyncio.TimeoutError:
                pass
            if recorder.recording:
                recorder.flush()

    tasks = [asyncio.create_task(client()) for _ in range(job.concurrency)]
    flush_task = asyncio.create_task(flusher())
    try:
        await stop.wait()
        _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, flush_task, return_exceptions=True)
    finally:
        loop.remove_reader(commands.fileno())
        await sender.close()
    recorder.recording = True
    recorder.flush()
    data.send(("done", wid, time.monotonic()))
    return exit_requested


def worker_main(wid: int, commands: Connection, data: Connection) -> None:
    """Process entry point: serve points until told to exit."""
    # Ctrl-C reaches the whole terminal process group; the parent decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            message = commands.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if message[0] == "exit":
            return
        if message[0] != "run":
            continue  # a stop that arrived after the point had ended
        try:
            if asyncio.run(_run_point(wid, message[1], commands, data)):
                return
        except Exception as e:  # noqa: BLE001 - report, then wait for the next point
            data.send(("fatal", wid, f"{type(e).__name__}: {e}"))
