"""The body of one load-generating client process.

Each worker keeps ``concurrency`` requests outstanding (as perf_analyzer's concurrency
mode does: a new request is sent as soon as one completes), one thread per request slot,
checks every response, and streams its request records to the parent in small batches.
At a request-rate point (open loop) the same threads are request slots that send on a
schedule (:class:`Schedule`): each free slot takes the next send time, waits for it, sends;
a request's latency counts from its scheduled time, so a send that waited for a free slot
or for a late thread shows as latency, never as a request silently not sent.

Why threads and blocking calls, not asyncio: a blocking socket call waits with the GIL
released, and a thread per request slot costs far less Python per request than an event
loop: about twice the requests per second of the asyncio worker it replaced at
concurrency 1, more at 4 (benchmarks/client_cost.py, benchmarks/client_variants.py; the
figures in docs/benchmarks.md). Both protocols go over our own sockets (_GrpcSender,
_HttpSender): why, in their docstrings.

Wire protocol (two one-way pipes, so neither side ever reads and writes one pipe from
two threads):
  parent -> worker (commands): ("run", point, PointJob) | ("go", point, t0) | ("stop", point) | ("exit",)
  worker -> parent (data):     ("warm", wid, point, t) once every request slot finished its warm-up
                               ("records", wid, point, flushed_until, starts, ends, ok, errors, sent,
                                behind_s, slots_full)
                               ("done", wid, point, flushed_until) after a stop: the last of the point
                               ("fatal", wid, point, message) instead, when the point failed here
``point`` numbers the pool's points, so a message never counts for any point but its own.
A request-rate point's schedule starts at the ``go`` command's t0, the same instant for every
process; ``starts`` are then the scheduled times and ``sent`` the actual sends (at a
concurrency point both are the send); ``behind_s`` is how late the oldest send not yet taken
by a slot is, and ``slots_full`` whether every slot was busy sending, at the flush.
Times are ``time.monotonic()``: CLOCK_MONOTONIC is shared by every process of a host,
so the parent can cut windows across workers by these stamps.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from analyzer_widgets.config import Tls
from analyzer_widgets.loadgen._http2 import CallFailed, ConnectionFailed, GrpcConnection, Refused, grpc_message

FLUSH_INTERVAL_S = 0.05
STOP_GRACE_S = 1.0  # how long in-flight requests may finish after a stop before we cancel
REFUSED_RESENDS = 1  # a request the server refused unprocessed is sent again this often
ERROR_BACKOFF_S = 0.005  # keeps a dead server from turning the loop into a busy spin
GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"
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
    address: str  # host:port the inferences go to
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
    #: TLS to the server (grpcs://, https://): the files, not an SSLContext, since the job is
    #: pickled to the client processes; None: plain text
    tls: Tls | None = None
    #: open loop: the point's whole rate (requests/s), of which this process sends its share
    #: of the schedule (every ``processes``-th send from ``share``); ``concurrency`` is then
    #: this process's request slots. 0: closed loop at ``concurrency``
    request_rate: float = 0.0
    arrival: str = "constant"
    share: int = 0
    processes: int = 1
    seed: int = 0


class Schedule:
    """The send times of one client process's share of a point's arrivals.

    The point's arrivals form one schedule for all its client processes (constant gaps of
    1/rate, or exponential gaps of that mean from ``seed``); process ``share`` of
    ``processes`` sends every ``processes``-th of them, so the processes together send the
    point's schedule, not several independent ones. Times are drawn in chunks as they are
    needed: a point of any length holds only a chunk. Not thread-safe: the caller locks.

    >>> s = Schedule(100.0, "constant", start=10.0, share=1, processes=2, seed=0)
    >>> [round(s.take(), 3) for _ in range(3)]
    [10.01, 10.03, 10.05]
    >>> round(s.behind(10.075), 3)  # the send due at 10.07 is 5 ms late
    0.005
    """

    CHUNK = 4096

    def __init__(self, rate: float, arrival: str, start: float, share: int, processes: int, seed: int) -> None:
        if arrival not in ("constant", "poisson"):
            raise ValueError(f"arrival={arrival!r}: must be constant or poisson")
        self.rate, self.arrival, self.share, self.processes = rate, arrival, share, processes
        self._rng = np.random.default_rng(seed)
        self._start = start
        self._last = start  # the latest arrival drawn (the first is at the start)
        self._drawn = 0  # arrivals of the whole schedule drawn so far
        self._times = np.empty(0)
        self._next = 0

    def _draw(self) -> None:
        count = self.CHUNK * self.processes
        if self.arrival == "constant":
            # from the index, not by adding gaps: no rounding adds up over a long point
            arrivals = self._start + (self._drawn + np.arange(count)) / self.rate
        else:
            gaps = self._rng.exponential(1.0 / self.rate, count)
            if self._drawn == 0:
                gaps[0] = 0.0  # the first arrival at the start
            arrivals = self._last + np.cumsum(gaps)
        self._last = float(arrivals[-1])
        self._drawn += count
        mine = arrivals[self.share::self.processes]
        self._times = np.concatenate([self._times[self._next:], mine])
        self._next = 0

    def take(self) -> float:
        """The next send time of this process's share."""
        if self._next >= self._times.size:
            self._draw()
        t = float(self._times[self._next])
        self._next += 1
        return t

    def behind(self, now: float) -> float:
        """How late the oldest send not yet taken is at ``now`` (0 when none is due)."""
        if self._next >= self._times.size:
            self._draw()
        return max(0.0, now - float(self._times[self._next]))


@functools.cache
def _itemsize(datatype: str) -> int | None:
    """Bytes per element of a wire datatype, from tritonclient's numpy dtype for it; None for
    BYTES (each element carries its own length) and for a datatype tritonclient does not know.
    BF16 is 2 bytes on the wire whatever tritonclient maps it to (float32 in older releases)."""
    if datatype == "BF16":
        return 2
    if datatype == "BYTES":
        return None
    from tritonclient.utils import triton_to_np_dtype

    dtype = triton_to_np_dtype(datatype)
    return None if dtype is None else np.dtype(dtype).itemsize


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
    size = _itemsize(check.datatype)
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


def infer_request_bytes(job: PointJob) -> bytes:
    """The job's ModelInferRequest, serialized."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=job.model, model_version=job.version)
    for name, data in job.inputs.items():
        tensor = request.inputs.add()
        tensor.name = name
        tensor.datatype = job.input_datatypes[name]
        tensor.shape.extend(data.shape)
        request.raw_input_contents.append(_serialize(data, job.input_datatypes[name]))
    return request.SerializeToString()


class _PerThread:
    """Connections kept one per client thread (one per request slot), each opened on the
    thread's first request and again after an error; ``close`` shuts them all, so a thread
    blocked in a read returns at once."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._open: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self, timeout_s: float) -> Any:
        """A new connection, the connect bounded by ``timeout_s``."""
        raise NotImplementedError

    @staticmethod
    def _shut(conn: Any) -> None:
        raise NotImplementedError

    def _connection(self, deadline: float) -> Any:
        """This thread's connection, opened now (by ``deadline``, a time.monotonic()) if it
        has none."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(max(deadline - time.monotonic(), 0.001))
            with self._lock:
                if self._closed:
                    self._shut(conn)
                    raise ConnectionError("the point was stopped")
                self._open.append(conn)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        """Forget this thread's connection after an error; the next send opens a new one."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._shut(conn)
            self._local.conn = None
            with self._lock:  # a dead server would otherwise pile up one per retry
                if conn in self._open:
                    self._open.remove(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._open = self._open, []
        for conn in conns:
            self._shut(conn)


def _address(url: str) -> tuple[str, int]:
    host, _, port = url.rpartition(":")
    return host.strip("[]"), int(port)


class _GrpcSender(_PerThread):
    """Unary ModelInfer calls on our own HTTP/2 connections (loadgen._http2), one per
    thread; why not grpcio is said there. The request is built, serialized and framed as
    a gRPC message once and its bytes sent again and again: building or serializing it per
    request costs more client CPU than the whole round trip of a small model."""

    def __init__(self, job: PointJob) -> None:
        from tritonclient.grpc import service_pb2

        super().__init__()
        self._message = grpc_message(infer_request_bytes(job))
        self._parse = service_pb2.ModelInferResponse.FromString
        self._job = job
        self._outputs = job.outputs
        self._tls = job.tls.context("h2") if job.tls is not None else None  # one per process, shared by its threads

    def _connect(self, timeout_s: float) -> GrpcConnection:
        job = self._job
        return GrpcConnection(_address(job.address), job.address, GRPC_INFER, job.headers, job.timeout_s, timeout_s, self._tls)

    @staticmethod
    def _shut(conn: GrpcConnection) -> None:
        conn.close()

    def send(self) -> str | None:
        # The timeout is the whole send's, a reconnect and a resend included.
        deadline = time.monotonic() + self._job.timeout_s
        for attempt in range(1 + REFUSED_RESENDS):
            try:
                conn = self._connection(deadline)
                if not conn.usable(deadline):  # closed or closing while idle: the request goes on a new one
                    self._drop()
                    conn = self._connection(deadline)
                body = conn.call(self._message, deadline)
                break
            except CallFailed as e:
                return str(e)
            except Refused as e:
                # not processed (RFC 9113 8.7): the same request again, on a new connection
                self._drop()
                if attempt == REFUSED_RESENDS or time.monotonic() >= deadline:
                    return f"{e}; sent {attempt + 1} times"
            except ConnectionFailed as e:
                self._drop()
                return str(e)
            except OSError as e:  # the connect: refused, unreachable, timed out
                return f"{type(e).__name__}: {e}"
            except Exception as e:  # noqa: BLE001 - what no check foresaw: the connection may be out of step
                self._drop()
                return f"{type(e).__name__}: {e}"
        if conn.going_away:  # this call made it; the next goes on a new connection
            self._drop()
        response = self._parse(body)
        raw = response.raw_output_contents
        got = {
            out.name: (tuple(out.shape), len(raw[i]) if i < len(raw) else None)
            for i, out in enumerate(response.outputs)
        }
        return check_outputs(self._outputs, got)


class _HttpSender(_PerThread):
    """Blocking POSTs on keep-alive sockets, one per thread, speaking just the HTTP/1.1
    that an inference needs.

    Why not http.client: it parses every response's headers through the email package and
    costs several times this sender's client CPU per request, which adds to every request's
    latency at low concurrency (benchmarks/client_cost.py; the figures in
    docs/benchmarks.md and docs/design-notes.md). The request (request line, headers, body) is built once and sent
    with one sendall; a response is read into a per-thread buffer, its headers split by
    hand, and only its JSON header (tritonclient's binary tensor extension puts it first)
    decoded, to check the outputs.
    """

    def __init__(self, job: PointJob) -> None:
        import tritonclient.http as httpclient

        super().__init__()
        inputs = []
        for name, data in job.inputs.items():
            tensor = httpclient.InferInput(name, list(data.shape), job.input_datatypes[name])
            tensor.set_data_from_numpy(data, binary_data=True)
            inputs.append(tensor)
        outputs = [httpclient.InferRequestedOutput(o.name, binary_data=True) for o in job.outputs]
        body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs, outputs=outputs)
        self._address = _address(job.address)
        path = f"/v2/models/{job.model}" + (f"/versions/{job.version}" if job.version else "") + "/infer"
        headers = {"Host": job.address, "Content-Type": "application/octet-stream", "Content-Length": str(len(body))}
        if json_size is not None:
            headers["Inference-Header-Content-Length"] = str(json_size)
        # the user's headers (validated in ServerSettings), less any that would repeat ours
        ours = {name.lower() for name in headers}
        headers.update({k: v for k, v in job.headers.items() if k.lower() not in ours})
        head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self._request = head.encode("latin-1") + body
        self._timeout = job.timeout_s
        self._outputs = job.outputs
        self._tls = job.tls.context("http/1.1") if job.tls is not None else None

    def _connect(self, timeout_s: float) -> socket.socket:
        # each send sets the timeout to what its deadline leaves, before it sends
        sock = socket.create_connection(self._address, timeout=timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is not None:  # before the first byte; the handshake closes the socket if it fails
            sock = self._tls.wrap_socket(sock, server_hostname=self._address[0])
        self._local.buffer = bytearray(1 << 16)
        return sock

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def send(self) -> str | None:
        # The timeout is the whole request's, connect included, not each read's: a server
        # trickling its answer cannot stretch it.
        deadline = self._local.deadline = time.monotonic() + self._timeout
        try:
            sock = self._connection(deadline)
            sock.settimeout(self._left(deadline))
            sock.sendall(self._request)
            status, headers, body = self._read_response(sock)
        except TimeoutError:  # a read's, the connect's or the whole request's
            self._drop()
            return f"TimeoutError: no whole response within {self._timeout:g} s"
        except Exception as e:  # noqa: BLE001 - OSError, or a response we could not parse
            # whatever went wrong, what is left of the response must not be read as the next one
            self._drop()
            return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if headers.get("connection", "").lower() == "close":
            self._drop()
        if status != 200:
            return f"HTTP {status}: {bytes(body[:200]).decode(errors='replace')}"
        header_length = headers.get("inference-header-content-length")
        meta = json.loads(bytes(body[: int(header_length)] if header_length else body))
        got: dict[str, tuple[tuple[int, ...], int | None]] = {}
        for out in meta.get("outputs", []):
            nbytes = out.get("parameters", {}).get("binary_data_size")
            got[out["name"]] = (tuple(out.get("shape", ())), nbytes if nbytes is not None else len(out.get("data", [])) or None)
        return check_outputs(self._outputs, got)

    def _read_response(self, sock: socket.socket) -> tuple[int, dict[str, str], memoryview]:
        """One response: status, headers (lower-case names) and a view of the body, which
        stays valid until this thread's next request."""
        buffer: bytearray = self._local.buffer
        filled = 0
        while True:
            if filled == len(buffer):
                buffer.extend(bytes(len(buffer)))
            got = self._recv_into(sock, memoryview(buffer)[filled:])
            if not got:
                raise ConnectionError("the server closed the connection")
            filled += got
            head_end = buffer.find(b"\r\n\r\n", 0, filled)
            if head_end >= 0:
                break
        lines = bytes(buffer[:head_end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ValueError(f"not an HTTP response: {lines[0][:80]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        start = head_end + 4
        if headers.get("transfer-encoding", "").lower() == "chunked":  # it wins over Content-Length (RFC 9112)
            return int(parts[1]), headers, self._read_chunked(sock, buffer, start, filled)
        if "content-length" in headers:
            end = start + int(headers["content-length"])
        else:
            raise ValueError("the response has neither Content-Length nor chunked encoding")
        if end > len(buffer):
            buffer.extend(bytes(end - len(buffer)))
        view = memoryview(buffer)
        while filled < end:
            got = self._recv_into(sock, view[filled:end])
            if not got:
                raise ConnectionError("the server closed the connection in the middle of a response")
            filled += got
        return int(parts[1]), headers, view[start:end]

    def _read_chunked(self, sock: socket.socket, buffer: bytearray, start: int, filled: int) -> memoryview:
        """The body of a chunked response, whose first bytes are buffer[start:filled]."""
        pending = bytearray(buffer[start:filled])
        body = bytearray()
        while True:
            while b"\r\n" not in pending:
                pending += self._recv(sock)
            size_line, _, pending = pending.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(pending) < size + 2:
                pending += self._recv(sock)
            if size == 0:
                # the trailer section (usually empty) ends with an empty line; read it all,
                # or it would be taken for the start of the next response
                while not (pending.startswith(b"\r\n") or b"\r\n\r\n" in pending):
                    pending += self._recv(sock)
                return memoryview(body)
            body += pending[:size]
            pending = pending[size + 2:]

    def _recv(self, sock: socket.socket) -> bytes:
        sock.settimeout(self._left(self._local.deadline))
        data = sock.recv(1 << 16)
        if not data:
            raise ConnectionError("the server closed the connection in the middle of a response")
        return data

    def _recv_into(self, sock: socket.socket, view: memoryview) -> int:
        sock.settimeout(self._left(self._local.deadline))
        return sock.recv_into(view)

    def _left(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left


#: Test hook, read by a client process when a point starts; never set outside tests
#: (tests/test_client_pool.py). "warmup:<wid>" makes client process <wid> fail fatally in
#: its warm-up; "run:<wid>:<seconds>" that many seconds into the measured run.
TEST_FAULT_ENV = "ANALYZER_WIDGETS_TEST_CLIENT_FAULT"


def _test_fault(wid: int) -> tuple[str, float] | None:
    """The fault TEST_FAULT_ENV asks of this process, as (phase, seconds), or None."""
    value = os.environ.get(TEST_FAULT_ENV, "")
    if not value:
        return None
    phase, target, *after = value.split(":")
    if phase not in ("warmup", "run"):
        raise ValueError(f"{TEST_FAULT_ENV}={value!r}: the phase must be warmup or run")
    return (phase, float(after[0]) if after else 0.0) if int(target) == wid else None


class _Recorder:
    """Per-request records from the client threads, drained to the parent every
    FLUSH_INTERVAL_S by the worker's main thread."""

    def __init__(self, wid: int, point: int, data: Connection) -> None:
        self.wid = wid
        self.point = point
        self.data = data
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.ok: list[bool] = []
        self.sent: list[float] = []
        self.errors: Counter[str] = Counter()
        #: at a request-rate point: now -> (how late the schedule is, whether every slot is busy)
        self.schedule_state: Callable[[float], tuple[float, bool]] | None = None
        self.recording = False
        self.warm_at = math.inf
        self._lock = threading.Lock()  # the record lists
        self._send_lock = threading.Lock()  # the pipe: one message at a time

    def send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            self.data.send(message)

    def start_recording(self) -> None:
        """Every thread finished its warm-up: from now on requests count."""
        with self._send_lock:
            self.recording = True
            self.warm_at = time.monotonic()
            self.data.send(("warm", self.wid, self.point, self.warm_at))

    def add(self, start: float, end: float, error: str | None, sent: float | None = None) -> None:
        """One request: ``start`` is its scheduled time at a request-rate point (``sent`` the
        actual send), its send otherwise."""
        if not self.recording:
            return
        with self._lock:
            self.starts.append(start)
            self.sent.append(start if sent is None else sent)
            self.ends.append(end)
            self.ok.append(error is None)
            if error is not None and (error in self.errors or len(self.errors) < MAX_ERROR_KINDS):
                self.errors[error] += 1

    def flush(self) -> None:
        # The stamp is taken under the lock: every request that ended before it is in this
        # batch or an earlier one, which is what the parent's window cuts rely on.
        with self._lock:
            now = time.monotonic()
            starts, ends, ok, sent, errors = self.starts, self.ends, self.ok, self.sent, self.errors
            self.starts, self.ends, self.ok, self.sent = [], [], [], []
            self.errors = Counter()
        behind, full = self.schedule_state(now) if self.schedule_state is not None else (0.0, False)
        self.send((
            "records", self.wid, self.point, now,
            np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64),
            np.asarray(ok, dtype=bool), dict(errors), np.asarray(sent, dtype=np.float64), behind, full,
        ))


class _Pacer:
    """The request slots' share of a request-rate point's schedule, started by the parent's
    ``go`` (the same t0 for every client process), and how many slots are sending."""

    def __init__(self, job: PointJob) -> None:
        self._job = job
        self._lock = threading.Lock()
        self._go = threading.Event()
        self._schedule: Schedule | None = None
        self._sending = 0

    def go(self, t0: float) -> None:
        job = self._job
        with self._lock:
            self._schedule = Schedule(job.request_rate, job.arrival, t0, job.share, job.processes, job.seed)
        self._go.set()

    def wait_for_go(self, stop: threading.Event) -> bool:
        """Wait for the schedule to start; False if the point ended first."""
        while not self._go.wait(FLUSH_INTERVAL_S):
            if stop.is_set():
                return False
        return not stop.is_set()

    def take(self) -> float:
        with self._lock:
            assert self._schedule is not None
            return self._schedule.take()

    @contextlib.contextmanager
    def sending(self) -> Iterator[None]:
        with self._lock:
            self._sending += 1
        try:
            yield
        finally:
            with self._lock:
                self._sending -= 1

    def state(self, now: float) -> tuple[float, bool]:
        """(how late the oldest send not yet taken is, whether every slot is sending)."""
        with self._lock:
            if self._schedule is None:
                return 0.0, False
            return self._schedule.behind(now), self._sending >= self._job.concurrency


class _PointClients:
    """The request slots of one point in this process: one thread each, sending closed loop
    (a request as soon as the last returned) or on the point's schedule."""

    def __init__(self, wid: int, point: int, job: PointJob, data: Connection) -> None:
        self.job = job
        self.fault = _test_fault(wid)
        self.sender: Any = _GrpcSender(job) if job.protocol == "grpc" else _HttpSender(job)
        self.recorder = _Recorder(wid, point, data)
        self.stop = threading.Event()
        self.faulted = threading.Event()
        self.warmed = threading.Barrier(job.concurrency, action=self.recorder.start_recording)
        self.pacer = _Pacer(job) if job.request_rate > 0 else None
        if self.pacer is not None:
            self.recorder.schedule_state = self.pacer.state
        client = self._closed_loop if self.pacer is None else self._open_loop
        self.threads = [threading.Thread(target=client, name=f"client-{wid}-{i}", daemon=True)
                        for i in range(job.concurrency)]

    def _send(self) -> str | None:
        try:
            return self.sender.send()
        except Exception as e:  # noqa: BLE001 - a response we could not read counts as failed
            return f"{type(e).__name__}: {e}"

    def _warm_up(self) -> bool:
        """This slot's warm-up requests, then wait for every slot's; False if the point ended."""
        for _ in range(self.job.warmup_requests):
            if self.stop.is_set():
                break
            self._send()
        if self.fault is not None and self.fault[0] == "warmup":
            self.faulted.set()  # the test hook: this warm-up never completes
            return False
        try:
            self.warmed.wait()
        except threading.BrokenBarrierError:
            return False  # stopped during the warm-up
        return True

    def _closed_loop(self) -> None:
        if not self._warm_up():
            return
        while not self.stop.is_set():
            start = time.monotonic()
            error = self._send()
            end = time.monotonic()
            if self.stop.is_set() and error is not None:
                break  # cut off by the stop: not the server's failure
            self.recorder.add(start, end, error)
            if error is not None:
                self.stop.wait(ERROR_BACKOFF_S)

    def _open_loop(self) -> None:
        pacer = self.pacer
        assert pacer is not None
        if not (self._warm_up() and pacer.wait_for_go(self.stop)):
            return
        while not self.stop.is_set():
            scheduled = pacer.take()
            if self.stop.wait(max(0.0, scheduled - time.monotonic())):
                break
            with pacer.sending():
                sent = time.monotonic()
                error = self._send()
                end = time.monotonic()
            if self.stop.is_set() and error is not None:
                break
            self.recorder.add(scheduled, end, error, sent)

    def let_go(self) -> None:
        """Stop the slots: requests in flight get STOP_GRACE_S to end, then are cut off."""
        self.stop.set()
        self.warmed.abort()
        _let_go(self.threads, self.sender)


def _run_point(wid: int, point: int, job: PointJob, commands: Connection, data: Connection) -> tuple[Any, ...] | None:
    """Run one point until told to stop. Returns None after its stop, or the command that
    ended it otherwise, for the caller to act on: ("exit",), or a later point's run."""
    clients = _PointClients(wid, point, job, data)
    for t in clients.threads:
        t.start()
    try:
        ending = _serve(point, commands, clients)
    finally:
        clients.let_go()
    clients.recorder.recording = True
    clients.recorder.flush()
    clients.recorder.send(("done", wid, point, time.monotonic()))
    return ending


def _serve(point: int, commands: Connection, clients: _PointClients) -> tuple[Any, ...] | None:
    """The main thread's part of a point: flush the records until a command ends it; what
    _run_point returns."""
    recorder, fault, pacer = clients.recorder, clients.fault, clients.pacer
    while True:
        if commands.poll(FLUSH_INTERVAL_S):
            try:
                message = commands.recv()
            except EOFError:
                message = ("exit",)
            if message[0] == "go" and message[1] == point and pacer is not None:
                pacer.go(message[2])
                continue
            # A run means the parent moved on without a stop: end this point, start that one.
            if message[0] in ("exit", "run") or message == ("stop", point):
                return None if message[0] == "stop" else message
        if fault is not None and (clients.faulted.is_set() or time.monotonic() - recorder.warm_at >= fault[1]):
            raise RuntimeError(f"deliberate failure in the {fault[0]} ({TEST_FAULT_ENV})")
        if recorder.recording:
            recorder.flush()


def _let_go(threads: list[threading.Thread], sender: Any) -> None:
    """Wait for the client threads, told to stop, to end their requests."""
    deadline = time.monotonic() + STOP_GRACE_S
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    # Requests still in flight after the grace are cut off: shutting the
    # connections down ends them at once.
    sender.close()
    for t in threads:
        t.join(1.0)


def worker_main(wid: int, commands: Connection, data: Connection) -> None:
    """Process entry point: serve points until told to exit."""
    # Ctrl-C reaches the whole terminal process group; the parent decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    message: tuple[Any, ...] | None = None
    while True:
        if message is None:
            try:
                message = commands.recv()
            except (EOFError, KeyboardInterrupt):
                return
        if message[0] == "exit":
            return
        if message[0] != "run":
            message = None
            continue  # a stop that arrived after its point had failed here
        _, point, job = message
        try:
            message = _run_point(wid, point, job, commands, data)
        except Exception as e:  # noqa: BLE001 - report, then wait for the next point
            message = None
            try:
                data.send(("fatal", wid, point, f"{type(e).__name__}: {e}"))
            except OSError:
                return  # the parent is gone
