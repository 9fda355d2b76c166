"""Parent side of load generation: a pool of client processes and the windows they feed.

A point's concurrency is split across several client processes so that on fast models
the client is not the bottleneck (threads of one process contend for its GIL on every
response; docs/design-notes.md has the figures). The processes are started once and
reused for every point of a sweep, so a point costs no process start-up.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections import Counter
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np

from analyzer_widgets.errors import AnalyzerError
from analyzer_widgets.loadgen._worker import FLUSH_INTERVAL_S, STOP_GRACE_S, PointJob, worker_main
from analyzer_widgets.loadgen.stats import Window


class LoadError(AnalyzerError):
    """The load generator could not run a point (a client process failed)."""


class _Worker:
    def __init__(self, wid: int, ctx: Any) -> None:
        self.wid = wid
        # Pipe(duplex=False) returns (receiving end, sending end)
        child_cmd, parent_cmd = ctx.Pipe(duplex=False)
        parent_data, child_data = ctx.Pipe(duplex=False)
        self.commands: Connection = parent_cmd
        self.data: Connection = parent_data
        self.process = ctx.Process(
            target=worker_main, args=(wid, child_cmd, child_data), name=f"analyzer-widgets-client-{wid}", daemon=True
        )
        self.process.start()
        child_cmd.close()
        child_data.close()


class ClientPool:
    """Client processes shared by the points of a sweep. Close it when done::

    with ClientPool() as pool:
        load = pool.start_point(job, processes=2)
    """

    def __init__(self) -> None:
        # spawn, not fork: gRPC's threads do not survive a fork
        self._ctx = mp.get_context("spawn")
        self._workers: list[_Worker] = []
        self._next_id = 0

    def _ensure(self, count: int) -> list[_Worker]:
        self._workers = [w for w in self._workers if w.process.is_alive()]
        while len(self._workers) < count:
            self._workers.append(_Worker(self._next_id, self._ctx))
            self._next_id += 1
        return self._workers[:count]

    def prestart(self, count: int) -> None:
        """Start ``count`` processes now, so the first point does not wait for them."""
        self._ensure(count)

    def start_point(self, job: PointJob, processes: int) -> PointLoad:
        processes = max(1, min(processes, job.concurrency))
        workers = self._ensure(processes)
        share, extra = divmod(job.concurrency, processes)
        jobs = [replace(job, concurrency=share + (1 if i < extra else 0)) for i in range(processes)]
        return PointLoad(workers, jobs, job.timeout_s)

    def close(self) -> None:
        for w in self._workers:
            try:
                w.commands.send(("exit",))
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 3.0
        for w in self._workers:
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=2.0)
            w.commands.close()
            w.data.close()
        self._workers = []

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PointLoad:
    """Load running on the server for one point; cut it into windows with :meth:`window`."""

    def __init__(self, workers: list[_Worker], jobs: list[PointJob], timeout_s: float) -> None:
        self._workers = workers
        self._batch = next(iter(jobs[0].inputs.values())).shape[0] if jobs[0].inputs else 1
        self._flushed = {w.wid: -1.0 for w in workers}
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._errors: Counter[str] = Counter()
        self._done: set[int] = set()
        self._stopped = False
        self.start_time = -1.0
        for w, job in zip(workers, jobs, strict=True):
            w.commands.send(("run", job))
        warm: dict[int, float] = {}
        # Warm-up requests can be slow (first CUDA call, lazy init): allow a request timeout.
        deadline = time.monotonic() + timeout_s + 10.0
        while len(warm) < len(workers):
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise LoadError(f"the client processes did not finish their warm-up within {timeout_s + 10:g} s")
            for message in self._receive(min(left, 0.5)):
                if message[0] == "warm":
                    warm[message[1]] = message[2]
        self._cut = max(warm.values())
        self.start_time = self._cut

    def _receive(self, timeout: float) -> list[tuple[Any, ...]]:
        messages = []
        ready = wait([w.data for w in self._workers], timeout=timeout)
        for conn in ready:
            try:
                while conn.poll():
                    messages.append(conn.recv())
            except (EOFError, OSError):
                wid = next(w.wid for w in self._workers if w.data is conn)
                raise LoadError(f"client process {wid} died during the point") from None
        for message in messages:
            kind = message[0]
            if kind == "fatal":
                self._stopped = True
                raise LoadError(f"client process {message[1]} failed: {message[2]}")
            if kind == "records":
                _, wid, until, starts, ends, ok, errors = message
                self._flushed[wid] = until
                self._pending.append((starts, ends, ok))
                self._errors.update(errors)
            elif kind == "done":
                self._flushed[message[1]] = message[2]
                self._done.add(message[1])
        return messages

    def window(self, end: float) -> Window:
        """The requests that completed between the previous cut and ``end``.

        Waits until every client process has reported past ``end``."""
        deadline = time.monotonic() + max(2.0, 20 * FLUSH_INTERVAL_S)
        while min(self._flushed.values()) < end:
            if time.monotonic() > deadline:
                raise LoadError("the client processes stopped reporting")
            self._receive(FLUSH_INTERVAL_S)
        starts = np.concatenate([p[0] for p in self._pending]) if self._pending else np.empty(0)
        ends = np.concatenate([p[1] for p in self._pending]) if self._pending else np.empty(0)
        ok = np.concatenate([p[2] for p in self._pending]) if self._pending else np.empty(0, dtype=bool)
        inside = (ends > self._cut) & (ends <= end)
        later = ends > end
        self._pending = [(starts[later], ends[later], ok[later])]
        latencies = (ends - starts)[inside & ok]
        failed = int((inside & ~ok).sum())
        errors, self._errors = self._errors, Counter()
        window = Window(self._cut, end, self._batch, latencies, failed, errors)
        self._cut = end
        return window

    def stop(self) -> None:
        """Stop sending; wait (briefly) until every process has let go of the point."""
        if self._stopped:
            return
        self._stopped = True
        for w in self._workers:
            try:
                w.commands.send(("stop",))
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + STOP_GRACE_S + 2.0
        while len(self._done) < len(self._workers) and time.monotonic() < deadline:
            try:
                self._receive(0.05)
            except LoadError:
                break
        if len(self._done) < len(self._workers):
            # a process that will not let go would poison the next point: end it
            for w in self._workers:
                if w.wid not in self._done and w.process.is_alive():
                    w.process.kill()
