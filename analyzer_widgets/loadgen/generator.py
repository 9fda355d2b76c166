"""Parent side of load generation: a pool of client processes and the windows they feed.

A point's concurrency is split across several client processes so that on fast models
the client is not the bottleneck (threads of one process contend for its GIL on every
response; docs/design-notes.md has the figures). The processes are started once and
reused for every point of a sweep, so a point costs no process start-up.

A point never spills into the next: each point has a number that every message carries,
so what is left of an earlier point is never counted; a point ends on every process, each
confirming it let go or being killed; and a process that failed, died or did not confirm
is taken out of the pool, so the next point starts a fresh one in its place.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
from collections import Counter
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np

from analyzer_widgets.errors import AnalyzerError
from analyzer_widgets.loadgen._worker import FLUSH_INTERVAL_S, STOP_GRACE_S, PointJob, worker_main
from analyzer_widgets.loadgen.stats import Window, WindowSchedule

#: how long a client process on a point may go without reporting (it reports every
#: FLUSH_INTERVAL_S) before it is taken for hung; generous, as a busy 2-core host can hold
#: a process off the CPU for a while, and a hung process is rare
REPORT_TIMEOUT_S = 5.0
#: how far ahead of now a request-rate point's schedule starts: time for every client
#: process to take the command before its first send is due
GO_LEAD_S = 0.02


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

    def __str__(self) -> str:
        return f"client process {self.wid} (pid {self.process.pid})"

    def death(self) -> str:
        """How the process ended, once its pipe said it had."""
        self.process.join(1.0)  # reaped, so that its exit code is known
        code = self.process.exitcode
        if code is None:
            return "closed its pipe but is still running"
        if code < 0:
            try:
                return f"was killed by signal {-code} ({signal.Signals(-code).name})"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with code {code}"

    def end(self) -> None:
        """Kill the process (it holds nothing worth a clean exit) and close its pipes."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(2.0)
        self.commands.close()
        self.data.close()


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
        self._points = 0
        self._load: PointLoad | None = None

    def _ensure(self, count: int) -> list[_Worker]:
        for w in [w for w in self._workers if not w.process.is_alive()]:
            self._retire(w)
        while len(self._workers) < count:
            self._workers.append(_Worker(self._next_id, self._ctx))
            self._next_id += 1
        return self._workers[:count]

    def _retire(self, worker: _Worker) -> None:
        """Take ``worker`` out of the pool, its process ended: the next point starts a fresh one."""
        if worker in self._workers:
            self._workers.remove(worker)
        worker.end()

    def prestart(self, count: int) -> None:
        """Start ``count`` processes now, so the first point does not wait for them."""
        self._ensure(count)

    def start_point(self, job: PointJob, processes: int) -> PointLoad:
        if self._load is not None:
            self._load.stop()  # a point left running would load the server under this one
        processes = max(1, min(processes, job.concurrency))
        workers = self._ensure(processes)
        share, extra = divmod(job.concurrency, processes)
        self._points += 1
        # at a request-rate point each process sends its share of one schedule, drawn the
        # same way by all of them (the point's number seeds Poisson gaps)
        jobs = [replace(job, concurrency=share + (1 if i < extra else 0), share=i, processes=processes,
                        seed=self._points) for i in range(processes)]
        self._load = None
        self._load = PointLoad(self, self._points, workers, jobs, job.timeout_s)
        return self._load

    def close(self) -> None:
        for w in self._workers:
            try:
                w.commands.send(("exit",))
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 3.0
        for w in self._workers:
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            w.end()
        self._workers = []

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PointLoad:
    """Load running on the server for one point; cut it into windows with :meth:`window`,
    end it with :meth:`stop`. If one client process fails or dies, the next call raises
    :class:`LoadError` naming it; the point is over for all of them then, so stop it."""

    def __init__(self, pool: ClientPool, point: int, workers: list[_Worker], jobs: list[PointJob],
                 timeout_s: float) -> None:
        self._pool = pool
        self._point = point
        self._workers = workers
        self._batch = next(iter(jobs[0].inputs.values())).shape[0] if jobs[0].inputs else 1
        self._flushed = {w.wid: -1.0 for w in workers}
        # (scheduled or sent, ended, ok, sent) per request, by report
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._open_loop = jobs[0].request_rate > 0
        self._behind_s = 0.0  # the latest schedule lag a process reported, the largest since the cut
        self._slots_full = False  # some process had every slot sending since the cut
        self._errors: Counter[str] = Counter()
        self._warm: dict[int, float] = {}
        self._ended: set[int] = set()  # processes that let go of the point: done, failed or dead
        self._broken: set[int] = set()  # of which those not to be trusted with another point
        self._failure: str | None = None  # the first failure, which fails the point
        self._stopped = False
        self.start_time = -1.0
        try:
            self._start(jobs, timeout_s)
        except BaseException:
            self.stop()  # no caller holds this load yet to stop it
            raise

    def _start(self, jobs: list[PointJob], timeout_s: float) -> None:
        for w, job in zip(self._workers, jobs, strict=True):
            try:
                w.commands.send(("run", self._point, job))
            except (OSError, ValueError):
                pass  # a dead process: its data pipe's EOF says so, and how
        # Warm-up requests can be slow (first CUDA call, lazy init): allow a request timeout.
        deadline = time.monotonic() + timeout_s + 10.0
        while len(self._warm) < len(self._workers):
            self._pump(0.5)
            self._check()
            if time.monotonic() > deadline and len(self._warm) < len(self._workers):
                cold = ", ".join(str(w) for w in self._workers if w.wid not in self._warm)
                raise LoadError(f"{cold} did not finish the warm-up within {timeout_s + 10:g} s")
        self._cut = max(self._warm.values())
        if self._open_loop:
            # one t0 for every process's share of the schedule, a little ahead so that each
            # has the command before its first send is due
            self._cut = time.monotonic() + GO_LEAD_S
            for w in self._workers:
                try:
                    w.commands.send(("go", self._point, self._cut))
                except (OSError, ValueError):
                    pass
            time.sleep(max(0.0, self._cut - time.monotonic()))
        self.start_time = self._cut

    def _pump(self, timeout: float) -> None:
        """Take in what the processes still on the point send within ``timeout``."""
        live = [w for w in self._workers if w.wid not in self._ended]
        if not live:
            time.sleep(timeout)
            return
        ready = wait([w.data for w in live], timeout=timeout)
        for w in live:
            if w.data not in ready:
                continue
            try:
                while w.wid not in self._ended and w.data.poll():
                    self._take(w, w.data.recv())
            except (EOFError, OSError):
                self._ended.add(w.wid)
                self._broken.add(w.wid)
                self._fail(f"{w} {w.death()}")

    def _take(self, w: _Worker, message: tuple[Any, ...]) -> None:
        kind, point = message[0], message[2]
        if point != self._point:
            return  # left from an earlier point: drained, never counted
        if kind == "records":
            until, starts, ends, ok, errors, sent, behind_s, slots_full = message[3:]
            self._flushed[w.wid] = until
            self._pending.append((starts, ends, ok, sent))
            self._errors.update(errors)
            self._behind_s = max(self._behind_s, behind_s)
            self._slots_full = self._slots_full or slots_full
        elif kind == "warm":
            self._warm[w.wid] = message[3]
        elif kind == "done":
            self._flushed[w.wid] = message[3]
            self._ended.add(w.wid)
        elif kind == "fatal":
            self._ended.add(w.wid)
            self._broken.add(w.wid)
            self._fail(f"{w} failed: {message[3]}")

    def _fail(self, reason: str) -> None:
        if self._failure is None:
            self._failure = reason

    def _check(self) -> None:
        if self._failure is not None:
            raise LoadError(self._failure)

    def window(self, end: float) -> Window:
        """The requests that completed between the previous cut and ``end``.

        Waits until every client process has reported past ``end``."""
        deadline = time.monotonic() + REPORT_TIMEOUT_S
        wait_s = 0.0
        while True:
            # Past the deadline is decided before the pipes are read: a stall of this
            # process (a long garbage collection in a big kernel, a busy host) must not count
            # against the reports that arrived meanwhile.
            late = time.monotonic() > deadline
            self._pump(wait_s)
            wait_s = FLUSH_INTERVAL_S
            self._check()
            if min(self._flushed.values()) >= end:
                break
            if late:
                silent = ", ".join(str(w) for w in self._workers if self._flushed[w.wid] < end)
                raise LoadError(f"{silent} stopped reporting (nothing for {REPORT_TIMEOUT_S:g} s)")
        starts, ends, ok, sent = (np.concatenate([p[i] for p in self._pending]) if self._pending
                                  else np.empty(0, dtype=bool if i == 2 else np.float64) for i in range(4))
        inside = (ends > self._cut) & (ends <= end)
        later = ends > end
        self._pending = [(starts[later], ends[later], ok[later], sent[later])]
        latencies = (ends - starts)[inside & ok]
        failed = int((inside & ~ok).sum())
        errors, self._errors = self._errors, Counter()
        schedule = (WindowSchedule(send_lags_s=(sent - starts)[inside], behind_s=self._behind_s,
                             slots_full=self._slots_full) if self._open_loop else None)
        self._behind_s, self._slots_full = 0.0, False
        window = Window(self._cut, end, self._batch, latencies, failed, errors, schedule)
        self._cut = end
        return window

    def stop(self) -> None:
        """End the point on every process: each confirms it let go, or is killed. A process
        that failed, died or did not confirm leaves the pool. Calling it again does nothing."""
        if self._stopped:
            return
        for w in self._workers:
            if w.wid not in self._ended:
                try:
                    w.commands.send(("stop", self._point))
                except (OSError, ValueError):
                    pass  # a dead process: its data pipe's EOF says so
        deadline = time.monotonic() + STOP_GRACE_S + 2.0
        while len(self._ended) < len(self._workers) and time.monotonic() < deadline:
            self._pump(0.05)
        for w in self._workers:
            if w.wid not in self._ended or w.wid in self._broken:
                self._pool._retire(w)  # one that did not confirm may still be loading the server
        self._stopped = True
