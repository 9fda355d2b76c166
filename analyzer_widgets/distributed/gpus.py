"""This host's GPUs in parallel (``--parallel gpus``): a sweep's units side by side, one
worker process and one server per GPU slot, driven as one sweep.

:class:`ParallelRunner` is the driver: it has the runner's face (``subscribe``, ``run``,
``stop``, ``rows``, ``skip``, ``earlier``, ``on_server_known``), so
:func:`~analyzer_widgets.api.prepare_sweep` wires it to the one
:class:`~analyzer_widgets.results.ResultCollector` and export folder as it does a
:class:`~analyzer_widgets.runner.SweepRunner`: the units' rows, baselines and samples go to
the same files as units finish. docs/scale-out.md says why workers are processes and how
the baselines combine.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import queue
import time
from collections.abc import Iterable, Mapping
from typing import Any

from analyzer_widgets import events as ev
from analyzer_widgets.colocation import AloneKey, Group, colocated_row, expected_counts
from analyzer_widgets.config import Load, SweepSpec
from analyzer_widgets.distributed.units import Slot, Unit, run_unit, split
from analyzer_widgets.errors import AnalyzerError
from analyzer_widgets.machine import nvml_unavailable_reason, visible_gpus
from analyzer_widgets.runner import SweepRunner, expected_points, point_row
from analyzer_widgets.schema import Status, load_of


def slots(spec: SweepSpec) -> list[Slot]:
    """The slots units run in: ``parallel_slots`` of them, or one per visible GPU (at least
    one); the visible GPUs are dealt to them in turn, none where NVML sees none."""
    gpus = [gpu.uuid for gpu in visible_gpus()] if nvml_unavailable_reason() is None else []
    count = spec.parallel_slots or max(1, len(gpus))
    return [Slot(i, gpus[i % len(gpus)] if gpus else None) for i in range(count)]


def shared_gpus_notice(places: list[Slot]) -> str | None:
    """What to say where slots share a GPU (``parallel_slots`` above the GPUs): NVML's figures
    are the GPU's, so each unit's GPU columns count every unit on it. None where none share."""
    sharing = {gpu: [s.index for s in places if s.gpu == gpu] for gpu in dict.fromkeys(s.gpu for s in places if s.gpu)}
    shared = {gpu: indices for gpu, indices in sharing.items() if len(indices) > 1}
    if not shared:
        return None
    where = "; ".join(f"slots {', '.join(map(str, indices))} on {gpu}" for gpu, indices in shared.items())
    return (f"{where}: units side by side on one GPU share it, so each row's GPU columns (memory, the memory "
            "above its baseline, utilization) count every unit on that GPU; for a unit's own figures give "
            "each unit a GPU (parallel_slots at most the GPUs)")


def _worker(unit: Unit, slot: Slot, messages: Any, stop: Any) -> None:
    """A worker process's body: one unit, its messages through ``messages`` (a queue)."""
    run_unit(unit, slot, messages.put, stop.is_set)


# -- the driver ------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Running:
    unit: Unit
    slot: Slot
    process: Any  # its worker process; for a Ray task, the task's reference
    where: str = ""  # where it runs, in words: its slot, or its Ray node
    node: str = ""  # a Ray task's node (its IP and the start of its ID)
    #: what has a row: (batch, load); a group's, each row's identity (:func:`_colocated_identity`)
    points: set[tuple[Any, ...]] = dataclasses.field(default_factory=set)
    finished: bool = False
    attempt: int = 1  # a Ray task's: 2, 3, ... after its node was lost

    def __post_init__(self) -> None:
        self.where = self.where or self.slot.label


class ParallelRunner(SweepRunner):
    """Runs a sweep's units side by side, one worker process per slot, and hands their
    events on as one sweep's: one :class:`~analyzer_widgets.events.SweepStarted`, the
    points numbered across the sweep, a :class:`~analyzer_widgets.events.UnitStarted` and
    :class:`~analyzer_widgets.events.UnitFinished` per unit, one
    :class:`~analyzer_widgets.events.SweepFinished` with every row. A unit whose server or
    worker dies fails its own remaining points, with the reason; the others go on. It is a
    runner to whoever holds one (``subscribe``, ``stop``, ``rows``, ``skip``, ``earlier``,
    ``on_server_known``); its ``monitors`` stay idle, as each unit samples in its own process.

    With ``groups`` (checked: colocation.check_groups) it drives a co-located measurement
    instead, a unit per group (``alone`` and ``given`` as for
    :class:`~analyzer_widgets.colocation.ColocatedRunner`), the co-located points numbered
    across the run."""

    def __init__(self, spec: SweepSpec, on_event: ev.EventHandler | Iterable[ev.EventHandler] | None = None, *,
                 groups: tuple[Group, ...] | None = None, alone: bool = True,
                 given: Mapping[AloneKey, Mapping[str, Any]] | None = None) -> None:
        super().__init__(spec, on_event)
        self.groups, self.alone, self.given = groups, alone, dict(given or {})
        self.measures_together = groups is not None
        #: a co-located point's number across the run, by (unit, attempt, its number in its unit)
        self._colocated: dict[tuple[int, int, int], int] = {}
        self._colocated_next = 0  # the next co-located point's number (a failed group's takes one too)
        self._known = False  # a unit's server said its version: the export folder's files have started
        #: rows that came before any unit's server was known (a unit that failed first): the
        #: export folder starts when the server is known, so they are handed on then
        self._waiting: list[dict[str, Any]] = []

    def emit(self, event: ev.Event) -> None:
        # every event is handed on from the driver's thread (a handler may emit more: no lock);
        # the samples come from the units, in their events, not from samplers of its own
        for handler in self._handlers:
            handler(event)

    def run(self) -> ev.SweepFinished:
        spec = self.spec
        started = time.monotonic()
        try:
            self.preflight()
            # a plan's variants are units of their own (split refuses quick's, chosen one by one)
            units = self._units = split(spec, {k: row for k, row in self.earlier.items() if k in self.skip},
                                        self.targets, self.groups, self.alone, self.given)
        except BaseException:
            self._close()  # a Ray cluster joined in preflight is let go of, also here
            raise
        places = self._slots()
        self._gpus = list(dict.fromkeys(s.gpu for s in places if s.gpu))
        if self.groups is not None:
            self._total, self._colocated_total = expected_counts(self.groups, self.alone, self.given)
        else:
            self._total = len(units) * expected_points(dataclasses.replace(spec, models=spec.models[:1]))
        self._index = 0
        self._version = ""
        self._unavailable: dict[str, str] = {}
        self.emit(ev.SweepStarted(spec, self._total))
        self._running: dict[int, _Running] = {}
        error: BaseException | None = None
        try:
            self._execute(units, places)
        except BaseException as e:  # a refused resume, Ctrl-C: stop every unit, then end as a sweep does
            error = e
            self._abort()
        finally:
            self._close()
        if self._waiting:
            try:  # no unit's server ever started: the folder starts without a server version
                self._server_known(self._version, self._gpus)
            except BaseException as e:  # a refused resume
                error = error or e
        finished = ev.SweepFinished(
            cancelled=self.stopping or isinstance(error, KeyboardInterrupt),
            error=None if error is None or isinstance(error, KeyboardInterrupt) else str(error),
            elapsed_s=time.monotonic() - started, server_version=self._version, rows=tuple(self.rows),
            unavailable=self._unavailable)
        self.emit(finished)
        if error is not None:
            raise error
        return finished

    # -- how units run: worker processes here; ray_cluster.RayRunner overrides these four ---------
    def _slots(self) -> list[Slot]:
        return slots(self.spec)

    def _execute(self, units: list[Unit], places: list[Slot]) -> None:
        """Run every unit, handing on what they send, until each has ended."""
        each = "group measured together" if self.groups is not None else "variant" if units[0].variant else "model"
        self.emit(ev.Notice(f"{len(units)} unit{'s' if len(units) != 1 else ''} (one per {each}) on {len(places)} slots: "
                            + ", ".join(s.label for s in places), ev.Level.INFO))
        shared = shared_gpus_notice(places)
        if shared is not None:
            self.emit(ev.Notice(shared))
        ctx = mp.get_context("spawn")
        self._messages, self._workers_stop = ctx.Queue(), ctx.Event()
        self._drive(ctx, units, places, self._messages, self._workers_stop)

    def _abort(self) -> None:
        """Stop every unit still running (the sweep ends early)."""
        self._end_workers(self._messages, self._workers_stop)

    def _close(self) -> None:
        messages = getattr(self, "_messages", None)
        if messages is not None:
            messages.close()
            messages.join_thread()

    def _drive(self, ctx: Any, units: list[Unit], places: list[Slot], messages: Any, stop: Any) -> None:
        """Start a worker for each unit as a slot is free, and hand on what the workers send
        until every unit has ended."""
        pending, free, running = list(units), list(places), self._running
        while pending or running:
            if self.stopping:
                stop.set()
                pending.clear()
            while pending and free:
                unit, slot = pending.pop(0), free.pop(0)
                process = ctx.Process(target=_worker, args=(unit, slot, messages, stop),
                                      name=f"analyzer-widgets-unit-{unit.index}")
                process.start()  # not daemonic: a unit's client processes are its children
                running[unit.index] = _Running(unit, slot, process)
                self.emit(ev.UnitStarted(unit.index, len(units), (unit.name,), slot.index, slot.gpu or "",
                                         process.pid or 0))
            try:
                message = messages.get(timeout=0.5)
            except queue.Empty:
                for lost in [r for r in running.values() if not r.process.is_alive()]:
                    # a worker's messages reach the queue before it exits: this one's end never came
                    self._unit_done(lost, f"its worker process ended (exit code {lost.process.exitcode})")
                    del running[lost.unit.index]
                    free.append(lost.slot)
                continue
            run = running.get(message[1])
            if run is not None and self._handle(run, message):
                run.process.join()
                del running[run.unit.index]
                free.append(run.slot)

    def _handle(self, run: _Running, message: tuple[Any, ...]) -> bool:
        """Hand on one of ``run``'s messages; True when it was the unit's last."""
        kind = message[0]
        if kind == "event":
            self._forward(run, message[2])
        elif kind == "known":
            self._server_known(message[2], message[3])
        elif kind == "done":
            self._unit_done(run, message[2])
            return True
        return False

    def _end_workers(self, messages: Any, stop: Any, grace_s: float = 30.0) -> None:
        """Stop every worker still running: asked first (each stops its point within about a
        second and its server), ended after ``grace_s``. What they still send is dropped, as
        a worker cannot exit while its messages wait in the queue."""
        stop.set()
        deadline = time.monotonic() + grace_s
        for run in self._running.values():
            while run.process.is_alive() and time.monotonic() < deadline:
                try:
                    messages.get(timeout=0.2)
                except queue.Empty:
                    pass
            if run.process.is_alive():
                run.process.terminate()
            run.process.join()

    def _forward(self, run: _Running, event: ev.Event) -> None:
        """A unit's event, as the sweep's: its own start and end are the driver's to say,
        its points are numbered across the sweep, its notices say which unit."""
        label = f"{run.unit.name} ({run.where})"
        if isinstance(event, ev.SweepStarted):
            return
        if isinstance(event, ev.SweepFinished):
            self._version = self._version or event.server_version
            self._unavailable.update(event.unavailable)
            return
        if isinstance(event, ev.Notice):
            event = dataclasses.replace(event, message=f"{label}: {event.message}")
        elif isinstance(event, ev.PointStarted):
            event = dataclasses.replace(event, index=self._index, total=max(self._total, self._index + 1))
        elif isinstance(event, ev.ColocatedPointStarted):
            number = self._colocated_number(run, event.index)
            event = dataclasses.replace(event, index=number, total=max(self._colocated_total, number + 1))
        elif isinstance(event, ev.PointFinished):
            self._finish(run, dict(event.row))
            return
        elif isinstance(event, ev.ServerReady):
            self._version = self._version or event.server_version
        elif isinstance(event, ev.SamplesTaken):
            event = dataclasses.replace(event, unit=run.unit.index)  # the panel draws each unit's own lines
        self.emit(event)

    def _colocated_number(self, run: _Running, index: int) -> int:
        """A unit's co-located point ``index`` numbered across the run (-1, a given row's, kept)."""
        if index < 0:
            return index
        key = (run.unit.index, run.attempt, index)
        if key not in self._colocated:
            self._colocated[key] = self._take_colocated_number()
        return self._colocated[key]

    def _take_colocated_number(self) -> int:
        number, self._colocated_next = self._colocated_next, self._colocated_next + 1
        return number

    def _finish(self, run: _Running, row: dict[str, Any]) -> None:
        if run.unit.group is not None:
            identity = _colocated_identity(row)
            if identity in run.points:
                return  # a rerun's row of what an attempt before it handed on (its node was lost)
            run.points.add(identity)
            row["colocated_point"] = self._colocated_number(run, int(row["colocated_point"]))
        else:
            run.points.add((int(row["batch_size"]), load_of(row)))
        self._hand_on(row)

    def _hand_on(self, row: dict[str, Any]) -> None:
        """A row of the run: kept, and handed on as the sweep's next point (once the server
        is known, as the export folder's files start then)."""
        if not self._known:
            self._waiting.append(row)
            return
        self.rows.append(row)
        self.emit(ev.PointFinished(row, self._index, max(self._total, self._index + 1)))
        self._index += 1

    def _server_known(self, version: str, gpus: list[str]) -> None:
        """The first unit's server is up: the export folder's files start, recording every
        slot's GPU (or a resume is refused, which stops every unit). The later units'
        servers are the same build."""
        if self._known:
            return
        self._known = True
        if self.on_server_known is not None:
            self.on_server_known(version, self._gpus or gpus)
        waiting, self._waiting = self._waiting, []
        for row in waiting:
            self._hand_on(row)
        if not self.skip and any(unit.earlier for unit in self._units if unit.group is None):
            # --keep-apart moved the earlier rows away (``skip`` is the folder's set, now
            # empty), but the units were started told to skip them: they would have no row
            raise AnalyzerError("the earlier results were moved apart (--keep-apart) once the server was known, "
                                "after the units had been told to skip the points measured before; run the sweep "
                                "again with --resume: it now starts over in this folder")

    def _unit_done(self, run: _Running, error: str | None) -> None:
        """A unit ended: with an error, each point it had not measured is a failed row
        saying why (a budget search's batch sizes without a row, one failed row each)."""
        if run.finished:
            return
        run.finished = True
        failed = 0
        if error is not None and run.unit.group is not None:
            failed = self._group_failed_rows(run, error)
        elif error is not None:
            spec = run.unit.spec
            earlier = {(int(r["batch_size"]), load_of(r)) for r in run.unit.earlier}
            done = run.points | earlier
            reason = f"its unit failed: {error.splitlines()[0]}"
            loads: tuple[Load, ...] = spec.loads if spec.latency_budget_ms is None else spec.loads[:1]
            for batch in spec.batch_sizes:
                if spec.latency_budget_ms is not None and any(b == batch for b, _ in done):
                    continue
                for load in loads:
                    if (batch, load) not in done and not self.stopping:
                        failed += 1
                        self._finish(run, point_row(spec, run.unit.model, run.unit.variant, batch, load,
                                                    Status.FAILED, reason))
        if error is not None:
            self.emit(ev.Notice(f"{run.unit.name} ({run.where}): {error.splitlines()[0]}; "
                                f"{failed} of its points failed, the other units go on"))
        slot = run.slot.index if run.slot.index >= 0 else None  # a Ray task has no slot
        self.emit(ev.UnitFinished(run.unit.index, (run.unit.name,), slot, len(run.points) - failed,
                                  failed, error, run.node))


    def _group_failed_rows(self, run: _Running, error: str) -> int:
        """A group's unit ended with an error: each member without its row measured
        together gets a failed one saying why, in a co-located point of their own; returns
        how many."""
        group = run.unit.group
        assert group is not None
        if self.stopping:
            return 0
        together = len(group.members) > 1  # as ColocatedRunner fails a group that would not load
        # a group of one's row is its together row (marked so), whatever ``together`` says here
        measured = {r["model"] for r in self.rows
                    if run.unit.owns(r) and not r["searched"] and (r["together"] or not together)}
        missing = [m for m in group.members if m.model not in measured]
        point = self._take_colocated_number()  # its failed rows' own co-located point
        for member in missing:
            row = colocated_row(run.unit.spec, group, member, member.load, together, point)
            row["reason"] = f"its unit failed: {error.splitlines()[0]}"
            run.points.add(_colocated_identity(row))
            self._hand_on(dict(row))
        return len(missing)


def _colocated_identity(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a co-located row is a measurement of: a rerun's row with the same identity as
    one handed on is the same point measured again."""
    return (row["model"], int(row["batch_size"]), load_of(row), bool(row["together"]), bool(row["searched"]),
            row.get("search") or "")
