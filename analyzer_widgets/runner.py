"""The sweep: baseline, then for each model load, every point to stability, unload.

The runner knows nothing of how its progress is shown or stored: it emits events (plain
frozen dataclasses) to the callbacks it is given. The CLI turns them into a progress
bar, the panel into charts, :mod:`analyzer_widgets.results` into CSV lines.
"""

from __future__ import annotations

import datetime as _dt
import enum
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from analyzer_widgets import events as ev
from analyzer_widgets.config import (
    LaunchMode,
    Load,
    MeasurementSettings,
    OnServerFailure,
    Statistic,
    StopRule,
    SweepSpec,
)
from analyzer_widgets.errors import (
    AnalyzerError,
    ModelLoadError,
    RepositoryError,
    ServerError,
    SweepCancelled,
)
from analyzer_widgets.loadgen import ClientPool, LoadError, PointJob, PointLoad
from analyzer_widgets.loadgen.inputs import build_inputs, expected_outputs
from analyzer_widgets.loadgen.search import Probe, Search, highest_within
from analyzer_widgets.loadgen.stats import (
    Ending,
    PointIntervals,
    PointSummary,
    Precision,
    ScheduleFigures,
    ScheduleVerdict,
    Window,
    ended,
    grouped_intervals,
    point_intervals,
    precision,
    reported,
    schedule_figures,
    summarize,
)
from analyzer_widgets.monitor.session import MonitorSession
from analyzer_widgets.repository import ModelInfo, concrete_shape, resolve_models
from analyzer_widgets.schema import INTERVALS, MODEL_COLUMN, MODEL_COLUMNS, SERVER_COLUMNS, PointKey, Row, Status
from analyzer_widgets.server import ModelStats, TritonControl, TritonServer, check_models_environment, make_server

log = logging.getLogger("analyzer_widgets")

#: the baseline goes on (at most this much longer) until each sampler has given a sample in it
BASELINE_SAMPLES_WAIT_S = 3.0


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def preflight(spec: SweepSpec) -> list[ModelInfo]:
    """Everything that can be checked before a process starts: the repository, the model
    names, shapes for variable inputs, and the models' numpy. Raises on the first problem."""
    infos: list[ModelInfo] = []
    if spec.model_repository is not None and spec.server.launch_mode is not LaunchMode.REMOTE:
        infos = resolve_models(spec.model_repository, spec.models)
        for info in infos:
            for tensor in info.inputs:
                if spec.input_data in ("random", "zero"):
                    concrete_shape(tensor, spec.input_shapes)
    if spec.server.launch_mode is LaunchMode.LOCAL and spec.check_environment:
        check_models_environment(spec.server.backend_python)
    return infos


class SweepRunner:
    """Runs one :class:`~analyzer_widgets.config.SweepSpec`; :meth:`stop` may be called from
    any thread and ends the point in flight within about a second.

    >>> runner = SweepRunner(spec, on_event=print)  # doctest: +SKIP
    >>> runner.run()  # doctest: +SKIP
    """

    #: whether its rows are co-located rows (models measured together), not a sweep's
    measures_together: bool = False

    def __init__(self, spec: SweepSpec, on_event: ev.EventHandler | Iterable[ev.EventHandler] | None = None,
                 server: TritonServer | None = None, targets: Iterable[Target] | None = None,
                 expected_targets: int | None = None) -> None:
        self.spec = spec
        #: what is measured, in order: each model of the spec as its repository has it, or
        #: the variants a planner gives, a list or an iterator that chooses each next one
        #: from the rows so far (``self.rows``); then ``expected_targets`` says about how many
        self.targets: Iterable[Target] = targets if targets is not None else tuple(Target(m) for m in spec.models)
        self.expected_targets = expected_targets
        self._target = Target(spec.models[0])  # the one being measured
        if on_event is None:
            self._handlers: list[ev.EventHandler] = []
        elif callable(on_event):
            self._handlers = [on_event]
        else:
            self._handlers = list(on_event)
        self._given_server = server
        self._stop = threading.Event()
        self._checked = False
        self._version = ""  # the server's, once it is up
        #: the samplers of the sweep in flight (the panel reads their buffers directly)
        self.monitors = MonitorSession(spec.monitor)
        self.rows: list[dict[str, Any]] = []
        #: the points (model, batch size, load) measured by an earlier run being resumed
        self.skip: set[PointKey] = set()
        #: their rows (a budget search takes a probe's figures from there, not measuring again)
        self.earlier: dict[PointKey, Mapping[str, Any]] = {}
        self._index = self._total = 0  # the next row's place among the sweep's, and their expected number
        self._server_lost = False
        #: while a sweep runs: what closes its server and clients, and the server with its
        #: control client and endpoint (a restart replaces the last two)
        self._stack: ExitStack | None = None
        self._connection: tuple[TritonServer, TritonControl, str]
        #: called with the server's version and the GPUs' UUIDs once the server is up and
        #: before the baseline; may raise to refuse the sweep or change ``skip`` (resume)
        self.on_server_known: Callable[[str, list[str]], None] | None = None

    def subscribe(self, handler: ev.EventHandler) -> None:
        """Call ``handler`` with every event from now on (in the runner's thread)."""
        self._handlers.append(handler)

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def emit(self, event: ev.Event) -> None:
        # the samples taken since the last hand-off go first, every few seconds (all of them
        # before SweepFinished): the samples file grows with the sweep, the samplers keep little
        samples = self.monitors.take_samples(final=isinstance(event, ev.SweepFinished))
        for sent in (ev.SamplesTaken(samples), event) if samples is not None else (event,):
            for handler in self._handlers:
                handler(sent)

    def preflight(self) -> None:
        """Check the spec before anything starts (:func:`preflight`); once per runner, so a
        caller that checks early (to fail before touching export files) pays no second
        numpy check."""
        if not self._checked:
            preflight(self.spec)
            self._checked = True

    # -- the sweep -----------------------------------------------------------------------------
    def run(self) -> ev.SweepFinished:
        """Run the sweep to its end (or until stopped). Errors that end the whole sweep
        (the server would not start, died) are raised after the finished rows were emitted."""
        spec = self.spec
        started = time.monotonic()
        self.preflight()
        total = self._expected_total()
        self.emit(ev.SweepStarted(spec, total))
        self._version = ""
        error: BaseException | None = None
        try:
            with ExitStack() as stack:
                self._stack = stack
                server, control, endpoint = self._start(stack)
                self._connection = (server, control, endpoint)
                self._start_clients(stack)
                self.monitors.attach_server(server.pid, server.endpoints.metrics)
                if "server process" in self.monitors.reasons:
                    self.emit(ev.Notice(self.monitors.reasons["server process"], ev.Level.INFO))
                self._baseline(self._version)
                self._measure_all(total)
        except SweepCancelled:
            pass
        except BaseException as e:  # KeyboardInterrupt too: finish the events, then re-raise
            error = e
        finished = ev.SweepFinished(
            cancelled=self.stopping or isinstance(error, KeyboardInterrupt),
            error=None if error is None or isinstance(error, KeyboardInterrupt) else str(error),
            elapsed_s=time.monotonic() - started,
            server_version=self._version,
            rows=tuple(self.rows),
            unavailable=self.monitors.unavailable(),
        )
        self.emit(finished)
        if error is not None:
            raise error
        return finished

    def _expected_total(self) -> int:
        """The rows the sweep is expected to give (its progress bar's length)."""
        count = len(self.targets) if isinstance(self.targets, Sequence) else self.expected_targets or 1
        return count * expected_points(self.spec)

    def _start_clients(self, stack: ExitStack) -> None:
        """The client processes the points share, started before the baseline so that the
        first point does not wait for them; ``stack`` ends them."""
        spec = self.spec
        self._pool = stack.enter_context(ClientPool())
        self._pool.prestart(spec.measurement.processes_for(max(_slots(load, spec.measurement) for load in spec.loads)))

    def _measure_all(self, total: int) -> None:
        """Every target, after the baseline (a resumed sweep counts on from the points
        already measured)."""
        spec = self.spec
        index = sum(1 for m, v, b, load in self.skip if m in spec.models and b in spec.batch_sizes and load in spec.loads)
        if index:
            self.emit(ev.Notice(f"resuming: {index} of {total} points were measured before and are kept", ev.Level.INFO))
        for target in self.targets:
            index = self._run_model(target, self._pool, index, total)

    def _start(self, stack: ExitStack) -> tuple[TritonServer, TritonControl, str]:
        """The GPU sampler, then the server (started, or the one given) and its control
        client, each stopped by ``stack``; the server's version is known after."""
        spec = self.spec
        monitors = self.monitors
        stack.callback(monitors.stop)
        monitors.begin("startup")
        monitors.start_gpu()  # before the server, to know the GPU memory without it
        for what, why in monitors.reasons.items():
            self.emit(ev.Notice(f"{what} columns are NaN: {why}", ev.Level.INFO))
        server = self._given_server or make_server(
            spec.server, spec.model_repository, spec.measurement.protocol,
            on_progress=lambda message: self.emit(ev.Notice(message, ev.Level.PROGRESS)),
        )
        t0 = time.monotonic()
        if self._given_server is None:
            server.start()
            stack.callback(server.stop)
        # samplers stop before the server does, so none reports the server's exit as a fault
        stack.callback(monitors.stop)
        endpoint, control = self._connect(server, stack)
        self._version = control.server_version()
        # A remote server may restrict its repository API to callers with a header:
        # find out now, not after the baseline
        control.repository_index()
        self.emit(ev.ServerReady(spec.server.launch_mode.value, self._version, endpoint, time.monotonic() - t0))
        if self.on_server_known is not None:
            self.on_server_known(self._version, monitors.gpu_uuids())
        return server, control, endpoint

    def _connect(self, server: TritonServer, stack: ExitStack) -> tuple[str, TritonControl]:
        """The endpoint the inferences go to, and a control client to it that ``stack`` closes."""
        spec = self.spec
        endpoint = server.endpoints.for_protocol(spec.measurement.protocol.value)
        control = TritonControl(endpoint, spec.measurement.protocol.value, spec.server.headers,
                                timeout_s=spec.measurement.request_timeout_s,
                                load_timeout_s=spec.server.model_load_timeout_s, tls=spec.server.tls)
        stack.callback(control.close)
        return endpoint, control

    def _relaunch(self, server: TritonServer, control: TritonControl, lost: ServerError, then: str) -> tuple[str, TritonControl]:
        """Start the lost server again (--on-server-failure restart): its new endpoint and
        control client, the samplers on its processes. A server that will not start again
        ends the sweep with that error."""
        first_line = str(lost).splitlines()[0]
        self.emit(ev.Notice(f"{first_line}: starting the server again{then} (--on-server-failure restart)"))
        t0 = time.monotonic()
        self.monitors.begin("restart", self._target.model)
        server.stop()
        server.start()
        self._server_lost = False
        control.close()
        assert self._stack is not None
        endpoint, control = self._connect(server, self._stack)
        self._connection = (server, control, endpoint)
        self.monitors.server_restarted(server.pid, server.endpoints.metrics)
        self.emit(ev.ServerReady(self.spec.server.launch_mode.value, control.server_version(), endpoint,
                                 time.monotonic() - t0))
        return endpoint, control

    def _restart(self, loaded: LoadedModel, lost: ServerError) -> None:
        """Start the lost server again and load the model (the variant) again; ``loaded``
        then measures through the new one."""
        loaded.endpoint, loaded.control = self._relaunch(loaded.server, loaded.control, lost,
                                                         f" and reloading {loaded.model!r}")
        self.monitors.begin("load", loaded.model)
        loaded.control.load(loaded.model, self._target.config)
        loaded.info = loaded.control.model_info(loaded.model)
        loaded.version = next((m.version for m in loaded.control.repository_index()
                               if m.name == loaded.model and m.state == "READY"), "")

    def _load_failed(self, server: TritonServer, control: TritonControl, points: Sequence[tuple[int, Load]],
                     error: AnalyzerError) -> None:
        """A model (variant) that would not load: its points are failed rows with the reason.
        A load can fail on its own (a value the backend refuses) or because the server died
        meanwhile; the second ends the sweep, or with --on-server-failure restart starts the
        server again for the next model."""
        reason = str(error)
        lost: ServerError | None = None
        try:
            # the server's metadata answers whatever a model's state; its readiness does not
            # (with strict readiness a model that failed to load makes it "not ready")
            control.server_version()
        except ServerError as unreachable:
            try:
                server.check_alive()
                lost = unreachable
            except ServerError as e:
                lost = e
            reason = f"{lost} ({reason})"
        for b, load in points:
            self._finish_point(self._point_row(self._target.model, b, load, Status.FAILED, reason))
        if lost is None:
            return
        self._server_lost = True
        if self.spec.server.on_server_failure is not OnServerFailure.RESTART:
            raise lost
        self._relaunch(server, control, lost, "")

    def _wait(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise SweepCancelled("stopped")

    def _baseline(self, version: str) -> None:
        row = Row(SERVER_COLUMNS)
        row.update(launch_mode=self.spec.server.launch_mode.value, server_version=version, started_at=utc_now())
        monitors = self.monitors
        monitors.begin("baseline")
        start = time.monotonic()
        self._wait(self.spec.baseline_s)
        # a short baseline can end before a starved sampler's first sample: its figures
        # would be NaN, and every "above the baseline" after them
        monitors.await_samples(start, BASELINE_SAMPLES_WAIT_S)
        end = time.monotonic()
        row["duration_s"] = end - start
        row.update(monitors.reduce(start, end, SERVER_COLUMNS))
        row.update(monitors.gpu_descriptions(), gpu_memory_before_server_mb=monitors.gpu_memory_before_server_mb,
                   gpu_memory_total_mb=monitors.gpu_memory_total_mb)
        monitors.baseline_gpu_memory_mb = row["gpu_memory_max_mb"]
        self.emit(ev.BaselineFinished(row))

    def _point_row(self, model: str, batch: int, load: Load, status: Status, reason: str = "") -> Row:
        return point_row(self.spec, model, self._target.variant, batch, load, status, reason)

    def _finish_point(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.emit(ev.PointFinished(row, self._index, max(self._total, self._index + 1)))
        self._index += 1

    def _run_model(self, target: Target, pool: ClientPool, index: int, total: int) -> int:
        spec = self.spec
        model, variant = target.model, target.variant
        self._target = target
        server, control, endpoint = self._connection  # as a restart for an earlier model left it
        searching = spec.latency_budget_ms is not None
        if searching:  # a search's loads are chosen as it goes: it starts at the first
            answered = {b for m, v, b in self._answered() if (m, v) == (model, variant)}
            points = [(b, spec.loads[0]) for b in spec.batch_sizes if b not in answered]
        else:
            points = [(b, load) for b in spec.batch_sizes for load in spec.loads
                      if (model, variant, b, load) not in self.skip]
        if not points:
            return index  # every point of this model was measured by the run being resumed
        self._index, self._total = index, total
        label = f"{model} (variant {variant})" if variant else model
        self.emit(ev.ModelLoading(label))
        self.monitors.begin("load", model)
        t0 = time.monotonic()
        we_loaded = False
        try:
            # on a server someone else runs, a model it has loaded is measured as it is (a
            # variant is always loaded: that is what makes it the variant)
            already = (target.config is None and server.owns_process is False
                       and control.settled_state(model, spec.server.model_load_timeout_s) == "READY")
            if not already:
                control.load(model, target.config)
                we_loaded = True
            info = control.model_info(model)
            version = next((m.version for m in control.repository_index() if m.name == model and m.state == "READY"), "")
        except (ModelLoadError, RepositoryError) as e:
            self._load_failed(server, control, points, e)
            return self._index
        self.emit(ev.ModelLoaded(label, info, time.monotonic() - t0))
        loaded = LoadedModel(model, version, info, server, control, pool, endpoint)
        self._server_lost = False
        try:
            if searching:
                for b, _ in points:
                    self._search(loaded, b)
            else:
                self._grid(loaded, points)
        finally:
            self._connection = (server, loaded.control, loaded.endpoint)
            self.monitors.begin("unload", model)
            if we_loaded and not self._server_lost:  # a dead or hung server cannot unload anything
                try:
                    loaded.control.unload(model)
                except ServerError as e:
                    self.emit(ev.Notice(f"could not unload {model!r}: {e}"))
        return self._index

    def _begin_point(self, loaded: LoadedModel, batch: int, load: Load) -> None:
        if self.stopping:
            raise SweepCancelled("stopped")
        self.emit(ev.PointStarted(loaded.model, batch, load.concurrency, self._index, max(self._total, self._index + 1),
                                  load.rate_per_s if load.open_loop else math.nan))
        self.monitors.begin("point", loaded.model, batch, load.concurrency)

    def _point(self, loaded: LoadedModel, batch: int, load: Load, search: SearchRole | None = None,
               again: bool = False, earlier: Sequence[Visit] = ()) -> Row:
        """Measure (or skip) one point and hand its row on (its figures pooled with its
        ``earlier`` visits); a lost server ends the sweep, or with --on-server-failure
        restart is started again and the point measured once more."""
        model = loaded.model
        self._begin_point(loaded, batch, load)
        problem = loaded.info.batch_size_problem(batch)
        if problem:
            row = self._point_row(model, batch, load, Status.SKIPPED, problem)
        else:
            row = self._measure_point(loaded, batch, load, earlier)
        row.update(model_version=loaded.version, search=search.value if search else "")
        if again:
            row["reason"] = "measured again after restarting the server" + (f"; {row['reason']}" if row["reason"] else "")
        if row["status"] == Status.FAILED.value and self._lost_server(loaded, row, again):
            return self._point(loaded, batch, load, search, again=True)  # restarted: measured once more
        self._finish_point(row)
        return row

    def _lost_server(self, loaded: LoadedModel, row: Row, again: bool) -> bool:
        """After a failed point: whether the server was lost and started again. A point can
        fail on its own (the model raised) or because the server died or hung; only the
        second ends the sweep (or, with --on-server-failure restart, restarts the server
        once per point). Either way the row is kept (handed on here when the server was
        lost), with the server's state in front of the point's own reason."""
        try:
            loaded.server.check_alive()
            return False
        except ServerError as lost:
            self._server_lost = True
            row["reason"] = f"{lost} ({row['reason']})"
            self._finish_point(row)
            if again or self.spec.server.on_server_failure is not OnServerFailure.RESTART:
                raise
            self._restart(loaded, lost)
            return True

    def _grid(self, loaded: LoadedModel, points: Sequence[tuple[int, Load]]) -> None:
        """The grid's points, each in --visits visits, round by round: every point's visit
        of one round before any point's next, so a point's visits lie apart in time."""
        gathered: dict[tuple[int, Load], list[Visit] | None] = {point: [] for point in points}
        for round_ in range(1, self.spec.measurement.visits):
            for batch, load in points:
                visits = gathered[(batch, load)]
                if visits is None:
                    continue  # failed (or skipped) in an earlier round: its row is out
                if loaded.info.batch_size_problem(batch):
                    self._point(loaded, batch, load)  # the skipped row, once
                    gathered[(batch, load)] = None
                    continue
                self.emit(ev.Notice(f"{loaded.model} batch {batch}, {load}: visit {round_} of "
                                    f"{self.spec.measurement.visits}", ev.Level.PROGRESS))
                self._begin_point(loaded, batch, load)
                try:
                    visits.append(self._visit(loaded, batch, load))
                except _PointFailed as failed:
                    row = self._point_row(loaded.model, batch, load, Status.FAILED, failed.reason)
                    row.update(model_version=loaded.version, window_count=failed.windows, visit_count=round_)
                    if not self._lost_server(loaded, row, again=False):
                        self._finish_point(row)
                    gathered[(batch, load)] = None
        for (batch, load), visits in gathered.items():
            if visits is not None:
                self._point(loaded, batch, load, earlier=visits)



    def _search(self, loaded: LoadedModel, batch: int) -> None:
        """The highest load of ``batch`` within the latency budget (loadgen/search.py): each
        probe a row, then the answer a row of its own, with the probe's figures."""
        spec = self.spec
        budget, statistic = spec.latency_budget_ms, spec.latency_statistic
        assert budget is not None
        start, limit, open_loop = search_range(spec.loads)
        as_load = (lambda value: Load(rate_per_s=value)) if open_loop else (lambda value: Load(concurrency=int(value)))
        if loaded.info.batch_size_problem(batch):
            self._point(loaded, batch, as_load(start), SearchRole.PROBE)  # the skipped row says why
            return
        probed: dict[float, Mapping[str, Any]] = {}

        def measure(value: float) -> float:
            load = as_load(value)
            row = (self.earlier.get((loaded.model, self._target.variant, batch, load))
                   or self._point(loaded, batch, load, SearchRole.PROBE))
            probed[value] = row
            counts = row["status"] in (Status.OK.value, Status.UNSTABLE.value) and row["error_count"] == 0
            return float(row[statistic.column]) if counts else math.nan  # a failed request is beyond any budget

        target = self._target
        hint = target.start_at.get(batch) if target.start_at else None  # where the answer likely lies
        beat = target.beat

        def enough(beyond: Probe) -> bool:  # it cannot beat the variant it is compared with
            return beat is not None and beaten(probed[beyond.load], beat)

        found = highest_within(measure, budget, start=start, limit=limit, resolution=RATE_RESOLUTION if open_loop else 0,
                               hint=hint, enough=enough)
        self._finish_point(answer_row(found, probed, budget, statistic, as_load, beat))

    def _answered(self) -> set[tuple[str, str, int]]:
        """(model, variant, batch size) whose search an earlier run being resumed answered."""
        answers = {role.value for role in SearchRole if role is not SearchRole.PROBE}
        return {key[:3] for key, r in self.earlier.items() if r.get("search") in answers}


    def _visit(self, loaded: LoadedModel, batch: int, load: Load) -> Visit:
        """One stretch of windows at a point, until the stop rule ends it; raises
        _PointFailed with the reason when it cannot be measured."""
        try:
            job = self.point_job(loaded.model, loaded.version, loaded.info, batch, load, loaded.endpoint)
        except (AnalyzerError, ValueError) as e:
            raise _PointFailed(f"could not build inputs: {e}") from e
        run = WindowedLoad(job, batch, loaded.pool)
        try:
            self.measure_windows([run], loaded.control)
        except (LoadError, ServerError) as e:
            raise _PointFailed(str(e), len(run.windows)) from e  # the caller asks whether the server is still alive
        return self.visit_of(run, loaded.model)

    def visit_of(self, run: WindowedLoad, model: str) -> Visit:
        """A load's windows, once the stop rule ended them, as a visit: the reported
        windows, the server's counts over them, and the samples reduced over their span
        (``model`` names the model whose stub processes' memory is the model's)."""
        assert run.ending is not None, "measure_windows ends a load before its visit is taken"
        shown = tuple(reported(run.windows, self.spec.measurement))
        reduced = self.monitors.reduce(shown[0].start, shown[-1].end, MODEL_COLUMNS, model)
        first = -1 - len(shown)
        served = run.snapshots[-1] - run.snapshots[first]
        unpinned_s = (run.read_s[-1] + run.read_s[first]) / 2  # each cut lies somewhere in its read
        return Visit(tuple(run.windows), shown, served, reduced, run.ending, run.warmup_s, unpinned_s)

    def _measure_point(self, loaded: LoadedModel, batch: int, load: Load, earlier: Sequence[Visit] = ()) -> Row:
        """A point's row: its figures over its visit now and any ``earlier`` ones."""
        row = self._point_row(loaded.model, batch, load, Status.FAILED)
        try:
            visits = [*earlier, self._visit(loaded, batch, load)]
        except _PointFailed as failed:
            row.update(reason=failed.reason, window_count=failed.windows + sum(len(v.windows) for v in earlier),
                       visit_count=len(earlier) + 1)
            return row
        row.update(pooled_figures(visits, self.spec.measurement, self.monitors.baseline_gpu_memory_mb))
        return row

    def point_job(self, model: str, version: str, info: ModelInfo, batch: int, load: Load,
                  endpoint: str) -> PointJob:
        """What the client processes send for one point (the inputs built here)."""
        spec = self.spec
        settings = spec.measurement
        arrays, datatypes = build_inputs(info, batch, spec.input_shapes, spec.input_data)
        job = PointJob(
            address=endpoint, protocol=settings.protocol.value, model=model, version=version,
            inputs=arrays, input_datatypes=datatypes, outputs=expected_outputs(info, batch),
            concurrency=_slots(load, settings), timeout_s=settings.request_timeout_s,
            warmup_requests=settings.warmup_requests, headers=dict(spec.server.headers), tls=spec.server.tls,
            request_rate=load.rate_per_s, arrival=spec.arrival.value,
        )
        return job

    def _snapshot(self, control: TritonControl, job: PointJob, run: WindowedLoad) -> float:
        """Read the server's statistics of ``job``'s model, append them (and how long the
        read took) to ``run``'s and return the moment they describe, where the model's
        window is cut.

        The client's windows are cut at the moment the server's counters are read, not at
        the planned boundary: on a busy host this thread can wake tens of ms late, and the
        client/server cross-check would then compare different spans. A read that itself
        took long (its reply queued behind inferences) leaves that moment uncertain; read
        again, and keep the read that is best pinned in time."""
        best: tuple[float, float, ModelStats] | None = None
        for _ in range(_SNAPSHOT_TRIES):
            before = time.monotonic()
            stats = control.statistics(job.model, job.version)
            after = time.monotonic()
            if best is None or after - before < best[1] - best[0]:
                best = (before, after, stats)
            if after - before <= _SNAPSHOT_SPREAD_S:
                break
        assert best is not None
        run.snapshots.append(best[2])
        run.read_s.append(best[1] - best[0])
        return (best[0] + best[1]) / 2

    def measure_windows(self, runs: Sequence[WindowedLoad], control: TritonControl) -> None:
        """Load the server with every load's job at once and cut them into windows together,
        each at the moment its model's statistics are read (one after another, so the
        models' cuts lie milliseconds apart), until at one window the stop rule ends every
        load (stable, every request failed, saturated) or max_trials is reached; each
        load's ``ending`` and ``warmup_s`` are set. One load is a point of a sweep; several
        are models measured together (colocation.py). Every load ends here, also on an
        error or a stop."""
        settings = self.spec.measurement
        window_s = settings.window_ms / 1000.0
        try:
            for run in runs:
                started = time.monotonic()
                run.load = run.pool.start_point(run.job, settings.processes_for(run.job.concurrency))
                run.warmup_s = time.monotonic() - started
            cuts = [self._cut(run, control) for run in runs]
            boundary = cuts[0]
            for run in runs:
                assert run.load is not None
                run.load.window(cuts.pop(0))  # drop what completed before the first snapshot
            while True:
                boundary += window_s
                self._wait(max(0.0, boundary - time.monotonic()))
                for run in runs:
                    self._next_window(run, control)
                endings = [ended(run.windows, settings) for run in runs]
                if all(ending is not None for ending in endings):
                    for run, ending in zip(runs, endings, strict=True):
                        run.ending = ending
                    return
        finally:
            for run in runs:
                if run.load is not None:
                    run.load.stop()

    def _cut(self, run: WindowedLoad, control: TritonControl) -> float:
        return self._snapshot(control, run.job, run)

    def _next_window(self, run: WindowedLoad, control: TritonControl) -> None:
        """Cut ``run``'s next window at its model's statistics read, and report it."""
        assert run.load is not None
        window = run.load.window(self._cut(run, control))
        run.windows.append(window)
        job = run.job
        rate = job.request_rate if job.request_rate > 0 else math.nan
        self.emit(ev.WindowMeasured(job.model, run.batch, 0 if job.request_rate > 0 else job.concurrency,
                                    len(run.windows), window.throughput, window.latency_avg_ms, window.failed, rate))


def point_row(spec: SweepSpec, model: str, variant: str, batch: int, load: Load, status: Status,
              reason: str = "") -> Row:
    """A point's row before any figure: what a skipped or failed point gives."""
    row = Row(MODEL_COLUMNS)
    row.update(model=model, variant=variant, batch_size=batch, concurrency=load.concurrency,
               request_rate_per_s=load.rate_per_s if load.open_loop else math.nan, status=status.value,
               reason=reason, window_ms=spec.measurement.window_ms, started_at=utc_now())
    return row


def client_figures(summary: PointSummary) -> dict[str, Any]:
    """A row's figures from the client's requests over the reported windows."""
    total_requests = summary.request_count + summary.error_count
    return {
        "throughput_infer_per_s": summary.throughput,
        "latency_avg_ms": summary.latency_avg_ms,
        "latency_p50_ms": summary.latency_p50_ms,
        "latency_p90_ms": summary.latency_p90_ms,
        "latency_p95_ms": summary.latency_p95_ms,
        "latency_p99_ms": summary.latency_p99_ms,
        "request_count": summary.request_count,
        "error_count": summary.error_count,
        "error_rate": summary.error_count / total_requests if total_requests else math.nan,
        "client_inference_count": summary.inference_count,
        "measured_s": summary.duration_s,
    }


def energy_per_inference_j(power_w: float, seconds: float, inferences: int) -> float:
    """Joules per inference: the mean board power over a span, times the span, over the
    inferences completed in it; NaN without a power figure or an inference.

    >>> energy_per_inference_j(300.0, 2.0, 12_000)
    0.05
    """
    if not (math.isfinite(power_w) and seconds > 0 and inferences > 0):
        return math.nan
    return power_w * seconds / inferences


def interval_figures(intervals: PointIntervals) -> dict[str, float]:
    """A row's confidence interval bounds (schema.INTERVALS names their columns)."""
    out = {}
    for figure, interval in (("throughput_infer_per_s", intervals.throughput),
                             ("latency_avg_ms", intervals.latency_avg_ms),
                             ("latency_p99_ms", intervals.latency_p99_ms)):
        low, high = INTERVALS[figure]
        out[low], out[high] = interval.low, interval.high
    return out


def server_figures(served: ModelStats) -> dict[str, Any]:
    """A row's figures from the server's own statistics over the same span."""
    return {
        "server_inference_count": served.inference_count,
        "server_request_count": served.success_count,
        "server_execution_count": served.execution_count,
        "server_request_ms": _per_request_ms(served.success_ns, served.success_count),
        "server_queue_ms": _per_request_ms(served.queue_ns, served.success_count),
        "server_compute_input_ms": _per_request_ms(served.compute_input_ns, served.success_count),
        "server_compute_infer_ms": _per_request_ms(served.compute_infer_ns, served.success_count),
        "server_compute_output_ms": _per_request_ms(served.compute_output_ns, served.success_count),
    }


def verdict(summary: PointSummary, ending: Ending, settings: MeasurementSettings, windows: int,
            reached: Precision, kept: ScheduleFigures | None = None) -> tuple[Status, str]:
    """A measured point's status and the reason the row gives."""
    total_requests = summary.request_count + summary.error_count
    top_errors = "; ".join(f"{n}x {msg}" for msg, n in summary.errors.most_common(3))
    failures = f"{summary.error_count} of {total_requests} requests failed: {top_errors}" if top_errors else ""
    if summary.request_count == 0:
        return Status.FAILED, f"every request failed: {top_errors}" if top_errors else "no request completed"
    if ending is Ending.SATURATED:
        return Status.UNSTABLE, (
            f"past saturation: requests piled up (sends due waited {kept.behind_max_ms / 1e3 if kept else math.nan:.1f} s "
            f"with all {settings.max_in_flight} request slots busy); the point ended after {windows} windows"
            + (f"; {failures}" if failures else ""))
    if kept is not None and kept.verdict is not ScheduleVerdict.KEPT:
        late = (f"sends lagged their schedule by {kept.send_lag_p99_ms:.1f} ms at p99 "
                + ("waiting for a free request slot (--max-in-flight)" if kept.verdict is ScheduleVerdict.SLOTS_FULL
                   else "with request slots free: the client could not keep up")
                + "; the latency counts the wait")
        failures = f"{late}; {failures}" if failures else late
    if ending is Ending.MAX_TRIALS:
        if settings.stop_rule is StopRule.STABLE:
            why = f"not stable within {settings.stability_pct:g}% after {windows} windows"
        elif reached.drifting:
            why = f"{reached.drifting} after {windows} windows"
        else:
            why = f"95% intervals ±{reached.reached_pct:.1f}% after {windows} windows, not ±{settings.precision_pct:g}%"
        return Status.UNSTABLE, why + (f"; {failures}" if failures else "")
    return Status.OK, failures


#: a statistics read slower than this is taken again (at most _SNAPSHOT_TRIES reads)
_SNAPSHOT_SPREAD_S = 0.005
_SNAPSHOT_TRIES = 3


def _per_request_ms(ns: int, count: int) -> float:
    return ns / count / 1e6 if count else math.nan


def _slots(load: Load, settings: MeasurementSettings) -> int:
    """The request slots a point needs: its concurrency, or at a request-rate point the most
    requests it may have in flight."""
    return load.concurrency if not load.open_loop else settings.max_in_flight


def schedule_row_figures(kept: ScheduleFigures) -> dict[str, Any]:
    """A request-rate row's figures of how its schedule was kept."""
    return {
        "achieved_rate_per_s": kept.achieved_rate_per_s,
        "send_lag_p50_ms": kept.send_lag_p50_ms,
        "send_lag_p99_ms": kept.send_lag_p99_ms,
        "schedule_behind_max_ms": kept.behind_max_ms,
        "in_flight_mean": kept.in_flight_mean,
        "schedule": kept.verdict.value,
    }


@dataclass
class LoadedModel:
    """A model loaded for measuring, and what its points are measured through (a restart
    of the server replaces the control client, the endpoint and what the model reports)."""

    model: str
    version: str
    info: ModelInfo
    server: TritonServer
    control: TritonControl
    pool: ClientPool
    endpoint: str


@dataclass
class WindowedLoad:
    """One model's load over windows cut at the moments the others' are (or alone): what
    :meth:`SweepRunner.measure_windows` fills in."""

    job: PointJob
    batch: int
    pool: ClientPool  # its client processes: several loads at once need a pool each
    windows: list[Window] = field(default_factory=list)
    snapshots: list[ModelStats] = field(default_factory=list)  # the server's statistics at each cut
    read_s: list[float] = field(default_factory=list)  # how long each of those reads took
    load: PointLoad | None = None
    warmup_s: float = 0.0
    ending: Ending | None = None


class SearchRole(str, enum.Enum):
    """A budget search's row (the ``search`` column; empty for a grid point)."""

    PROBE = "probe"  # a load the search measured
    ANSWER = "answer"  # the highest load within the budget: its probe's figures
    LOWER_BOUND = "answer_lower_bound"  # the search reached its limit still within: the answer is at least this
    NONE_WITHIN = "none_within"  # even the first load was beyond: the first probe's figures
    BEATEN = "beaten"  # cut (quick): beyond the budget already serving less than the variant compared with


#: a request-rate search stops when the rates within and beyond are this close (a fraction)
RATE_RESOLUTION = 0.05
#: a concurrency search with one concurrency value given searches up to this
SEARCH_CONCURRENCY_LIMIT = 256
#: a request-rate search with one rate given searches up to this many times it
SEARCH_RATE_SPAN = 100


def search_range(loads: tuple[Load, ...]) -> tuple[float, float, bool]:
    """(start, limit, whether the loads are request rates) of a budget search: from the
    first load given to the last, or from the one given to a limit of its kind."""
    first, last = loads[0], loads[-1]
    if first.open_loop:
        return first.rate_per_s, last.rate_per_s if len(loads) > 1 else first.rate_per_s * SEARCH_RATE_SPAN, True
    return first.concurrency, last.concurrency if len(loads) > 1 else max(first.concurrency, SEARCH_CONCURRENCY_LIMIT), False


def expected_points(spec: SweepSpec) -> int:
    """The rows a model's sweep is expected to give: its grid, or for a budget search about
    two probes per doubling from start to limit, and the answer, per batch size."""
    if spec.latency_budget_ms is None:
        return spec.points_per_model
    start, limit, _ = search_range(spec.loads)
    return len(spec.batch_sizes) * (2 * max(1, math.ceil(math.log2(limit / start))) + 1)


def beaten(row: Mapping[str, Any], beat: float) -> bool:
    """A probe beyond the budget whose throughput (the upper end of its 95% interval) is
    below ``beat``: every load within the budget lies below it and serves less (in a closed
    loop throughput does not fall as the load falls), so the variant cannot beat ``beat``."""
    return _throughput_high(row) < beat  # a failed probe (no figure) is not taken as beaten


def _throughput_high(row: Mapping[str, Any]) -> float:
    """The upper end of a row's throughput interval; the figure where it has none."""
    high = row.get(INTERVALS["throughput_infer_per_s"][1], math.nan)
    if isinstance(high, int | float) and math.isfinite(high):
        return float(high)
    return float(row.get("throughput_infer_per_s", math.nan))


def answer_row(found: Search, probed: Mapping[float, Mapping[str, Any]], budget_ms: float, statistic: Statistic,
               as_load: Callable[[float], Load], beat: float | None = None) -> Row:
    """A search's answer as a row of its own: the figures (and intervals) of the probe it
    names, the role, and a reason saying how it was found (``beat``: the throughput a cut
    search could not reach)."""
    budget = f"{statistic.label} ≤ {budget_ms:g} ms"
    if found.cut is not None:
        base, role = probed[found.cut.load], SearchRole.BEATEN
        said = (f"searched no further: {as_load(found.cut.load)} measured {found.cut.latency_ms:.3g} ms, beyond "
                f"{budget}, serving at most {_throughput_high(base):,.0f} infer/s (its interval's upper end), less "
                f"than the {beat or 0:,.0f} of the variant it was compared with; lower loads serve less")
    elif found.load is None:
        first = min(found.probes, key=lambda p: p.load)  # the range's first load (a hinted search ends there)
        base, role = probed[first.load], SearchRole.NONE_WITHIN
        said = f"no load within {budget}: the first, {as_load(first.load)}, measured {first.latency_ms:.3g} ms"
    else:
        base = probed[found.load]
        role = SearchRole.LOWER_BOUND if found.at_limit else SearchRole.ANSWER
        said = f"the highest load within {budget}, in {len(found.probes)} probes"
        beyond = [p for p in found.probes if not p.within and p.load > found.load]
        if beyond:
            nearest = min(beyond, key=lambda p: p.load)
            said += f" ({as_load(nearest.load)} measured {nearest.latency_ms:.3g} ms)"
        if found.at_limit:
            said += "; the search stopped at its limit still within: at least this"
        high = base.get(INTERVALS.get(statistic.column, ("", ""))[1], math.nan)
        if isinstance(high, float) and high > budget_ms:
            said += f"; its 95% interval reaches {high:.3g} ms, past the budget"
    row = Row(MODEL_COLUMNS, {k: v for k, v in base.items() if k in MODEL_COLUMN})
    row.update(search=role.value, reason=f"{said}; {base['reason']}" if base["reason"] else said)
    return row


class _PointFailed(Exception):
    """A visit of a point could not be measured: the reason, and the windows it had."""

    def __init__(self, reason: str, windows: int = 0) -> None:
        super().__init__(reason)
        self.reason, self.windows = reason, windows


@dataclass(frozen=True)
class Visit:
    """One stretch of a point's windows, ended by the stop rule: what its row is made of
    (a point measured in --visits visits has several)."""

    windows: tuple[Window, ...]  # every window measured
    shown: tuple[Window, ...]  # the ones the stop rule reports
    served: ModelStats  # the server's counts over the reported span
    reduced: dict[str, float]  # the sampled columns over the reported span
    ending: Ending
    warmup_s: float
    #: how far the server's counted span may lie from the client's: half of each bounding read
    unpinned_s: float = 0.0


#: when visits ended differently, the row's ending: the first of these that any visit had
_ENDING_ORDER = (Ending.SATURATED, Ending.ALL_FAILED, Ending.MAX_TRIALS)


def pooled_figures(visits: Sequence[Visit], settings: MeasurementSettings, baseline_gpu_memory_mb: float) -> dict[str, Any]:
    """A measured row's figures over the reported windows of its visits: pooled as one
    span, with intervals over the windows (one visit) or over the visits (several: each
    visit one batch, since visits apart in time vary as the host does over the sweep)."""
    shown = [w for v in visits for w in v.shown]
    summary = summarize(shown)
    intervals = (point_intervals(shown, summary) if len(visits) == 1
                 else grouped_intervals([v.shown for v in visits], summary))
    reached = precision(shown, summary, intervals)
    ending = next((e for e in _ENDING_ORDER if any(v.ending is e for v in visits)), visits[-1].ending)
    windows = sum(len(v.windows) for v in visits)
    figures: dict[str, Any] = {**client_figures(summary), **interval_figures(intervals)}
    kept = schedule_figures(shown, summary)
    if kept is not None:
        figures.update(schedule_row_figures(kept))
    served = visits[0].served
    for visit in visits[1:]:
        served = served + visit.served
    figures.update(server_figures(served), server_span_unpinned_ms=1000 * math.fsum(v.unpinned_s for v in visits))
    spans = [sum(w.duration_s for w in v.shown) for v in visits]
    reduced = {name: MODEL_COLUMN[name].reduction.combine(  # type: ignore[union-attr]
        [(v.reduced[name], span) for v, span in zip(visits, spans, strict=True)]) for name in visits[0].reduced}
    figures.update(reduced, gpu_memory_above_baseline_mb=reduced["gpu_memory_max_mb"] - baseline_gpu_memory_mb,
                   energy_per_inference_j=energy_per_inference_j(reduced["gpu_power_mean_w"], summary.duration_s,
                                                                 summary.inference_count))
    status, reason = verdict(summary, ending, settings, windows, reached, kept)
    figures.update(window_count=windows, visit_count=len(visits), ended_by=ending.value,
                   precision_reached_pct=reached.reached_pct, warmup_s=sum(v.warmup_s for v in visits),
                   status=status.value, reason=reason)
    return figures


@dataclass(frozen=True)
class Target:
    """What a sweep measures: a model as its repository has it, or a named variant of it
    loaded with a config override (``config``: a whole model config, as JSON gives it; the
    repository is never written). ``start_at``: per batch size, the load a budget search
    starts at and brackets outwards from (loadgen/search.py's ``hint``; the planner's
    ``quick`` gives a neighbour variant the answer of the one it is compared with)."""

    model: str
    variant: str = ""
    config: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)
    start_at: Mapping[int, float] | None = field(default=None, compare=False, hash=False)
    #: a throughput the variant must reach: a search is cut at a probe beyond the budget
    #: that serves less (``beaten``); None: never cut
    beat: float | None = field(default=None, compare=False, hash=False)
