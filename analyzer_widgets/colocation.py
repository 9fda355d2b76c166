"""Models served together: several models loaded on one server at once, each under its own
load (batch size, concurrency or request rate) over the same windows, and each compared
with itself alone at the same load.

A :class:`Group` is the models one server (one GPU of a packing plan) holds. Per group the
runner loads its models, measures each alone at its load (the only model under load, the
others loaded and idle; skipped where earlier alone rows are given), then all of them
together, then searches each member marked ``search`` for its highest load within the
latency budget while the others hold theirs; and unloads them before the next group, so
a group's memory is its own. The windows are the sweep's (:meth:`SweepRunner.measure_windows`
cuts every model's load at each boundary, each at the moment its statistics are read),
and so are the stop rule, the rows' figures and the events. docs/packing.md ("Measuring
models together") says what the rows mean. The entry point is
:func:`analyzer_widgets.measure_together` (api.py: it picks this runner, or a unit per group
with ``--parallel gpus`` or ``--ray``):

    result = aw.measure_together(spec, [Group((Member("a", 1, Load(concurrency=2)),
                                            Member("b", 4, Load(rate_per_s=100))), "GPU 0")])
    result.together("GPU 0")["a"]["throughput_ratio"]
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analyzer_widgets import events as ev
from analyzer_widgets.config import Load, SweepSpec
from analyzer_widgets.errors import (
    AnalyzerError,
    ConfigError,
    ModelLoadError,
    RepositoryError,
    ServerError,
    SweepCancelled,
)
from analyzer_widgets.export import ExportFolder
from analyzer_widgets.loadgen import ClientPool, LoadError
from analyzer_widgets.loadgen.search import highest_within
from analyzer_widgets.results import ResultCollector, RunResult, frame
from analyzer_widgets.runner import (
    RATE_RESOLUTION,
    SEARCH_RATE_SPAN,
    LoadedModel,
    SweepRunner,
    WindowedLoad,
    answer_row,
    pooled_figures,
    search_range,
    utc_now,
)
from analyzer_widgets.schema import (
    COLOCATED_COLUMN,
    COLOCATED_COLUMNS,
    MODEL_COLUMN,
    Row,
    Status,
    load_of,
)

__all__ = ["ColocatedResult", "ColocatedRunner", "Group", "Member", "check_groups", "run_together"]

#: the statuses whose figures an interference ratio may use
_MEASURED = (Status.OK.value, Status.UNSTABLE.value)
#: (model, batch size, load): what an alone row answers for
AloneKey = tuple[str, int, Load]


@dataclass(frozen=True)
class Member:
    """One model's part of a co-located point: its batch size and load (requests kept in
    flight, or a request rate). ``search``: instead of holding the load, search the highest
    load within ``spec.latency_budget_ms`` from it while the others hold theirs."""

    model: str
    batch: int
    load: Load
    search: bool = False

    def __str__(self) -> str:
        return f"{self.model}: batch {self.batch}, {self.load}" + (" (searched)" if self.search else "")


@dataclass(frozen=True)
class Group:
    """Models served together on one server (one GPU of a packing plan). An empty
    ``label`` becomes "group <n>", n counting from 1."""

    members: tuple[Member, ...]
    label: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.members, list):
            object.__setattr__(self, "members", tuple(self.members))

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(m.model for m in self.members)


# -- checks, before anything starts -----------------------------------------------------------------
def check_groups(spec: SweepSpec, groups: Sequence[Group]) -> tuple[Group, ...]:
    """``groups`` checked against ``spec`` (each model of a group among the spec's, once per
    group; batch sizes and loads that can be sent; a search only with a latency budget;
    every spec model in some group; labels distinct), labels filled in. Raises
    :class:`ConfigError` naming the field and the value."""
    if isinstance(groups, Group) or not isinstance(groups, Sequence) or not groups:
        raise ConfigError("groups", groups, "must be a non-empty list of Group(members, label)")
    if spec.measurement.visits > 1:
        raise ConfigError("visits", spec.measurement.visits, "applies to a sweep's grid: a co-located point is "
                                                              "measured in one stretch, its models' windows together")
    checked: list[Group] = []
    for i, group in enumerate(groups):
        if not isinstance(group, Group):
            raise ConfigError(f"groups[{i}]", group, "must be a Group(members, label)")
        if not group.members:
            raise ConfigError(f"groups[{i}].members", group.members, "is empty: a group needs at least one member")
        for j, member in enumerate(group.members):
            _check_member(spec, f"groups[{i}].members[{j}]", member, group.models[:j])
        checked.append(dataclasses.replace(group, label=group.label or f"group {i + 1}"))
    labels = [g.label for g in checked]
    for i, label in enumerate(labels):
        if label in labels[:i]:
            raise ConfigError(f"groups[{i}].label", label, "is the label of an earlier group too: labels name groups")
    used = {m for g in checked for m in g.models}
    unused = [m for m in spec.models if m not in used]
    if unused:
        raise ConfigError("models", unused[0], "is in no group: the spec's models are the groups' models")
    return tuple(checked)


def _check_member(spec: SweepSpec, name: str, member: Any, before: Sequence[str]) -> None:
    if not isinstance(member, Member):
        raise ConfigError(name, member, "must be a Member(model, batch, load)")
    if member.model not in spec.models:
        raise ConfigError(f"{name}.model", member.model, f"is not among the spec's models ({', '.join(spec.models)})")
    if member.model in before:
        raise ConfigError(f"{name}.model", member.model, "is in this group twice: a server holds a model once")
    if isinstance(member.batch, bool) or not isinstance(member.batch, int) or member.batch < 1:
        raise ConfigError(f"{name}.batch", member.batch, "must be a whole number of inferences per request, 1 or more")
    load = member.load
    if not isinstance(load, Load):
        raise ConfigError(f"{name}.load", load, "must be a Load(concurrency=...) or Load(rate_per_s=...)")
    if load.open_loop:
        if load.concurrency or not math.isfinite(load.rate_per_s):
            raise ConfigError(f"{name}.load", str(load), "must be a concurrency or a finite request rate, not both")
    elif isinstance(load.concurrency, bool) or not isinstance(load.concurrency, int) or load.concurrency < 1:
        raise ConfigError(f"{name}.load", load.concurrency, "must keep 1 or more requests in flight, or send at a "
                                                             "request rate above 0")
    if member.search and spec.latency_budget_ms is None:
        raise ConfigError(f"{name}.search", True, "needs a latency budget to search within: give latency_budget_ms")


def alone_index(rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> dict[AloneKey, dict[str, Any]]:
    """Earlier rows (a sweep's, or alone rows of an earlier co-located run; dicts or a
    DataFrame) by (model, batch size, load), those measured (ok or unstable) of the model
    as its repository has it; a co-located row measured together is no alone row. Raises
    ConfigError naming ``alone_rows`` for an entry that is not a row."""
    if isinstance(rows, pd.DataFrame):
        rows = [{str(k): v for k, v in r.items()} for r in rows.to_dict("records")]
    index: dict[AloneKey, dict[str, Any]] = {}
    for i, row in enumerate(rows):
        try:
            key: AloneKey = (str(row["model"]), int(row["batch_size"]), load_of(row))
            usable = (row["status"] in _MEASURED and not row.get("variant")
                      and not _true(row.get("together", False)))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"alone_rows[{i}]", type(row).__name__, f"is not a result row ({e!r} missing or "
                                                                       "bad): give rows of a sweep's to_frame()") from e
        if usable:
            index[key] = {k: v for k, v in row.items() if k in MODEL_COLUMN}
    return index


def _true(value: Any) -> bool:
    return value is True or value == 1 or value == "true"


def alone_key(member: Member) -> AloneKey:
    return member.model, member.batch, member.load


def expected_counts(groups: Sequence[Group], alone: bool, given: Mapping[AloneKey, Any]) -> tuple[int, int]:
    """The rows and the co-located points that measuring ``groups`` is expected to give
    (``alone``: each member alone first, where ``given`` has no row of it; a searched
    member's search counted as about two probes per doubling of its load)."""
    rows = points = 0
    for group in groups:
        n = len(group.members)
        before = [m for m in group.members if n > 1 and (alone or alone_key(m) in given)]
        measured_alone = sum(1 for m in before if alone_key(m) not in given)
        probes = sum(_probes(m) - 1 for m in group.members if m.search)  # the first is the fixed point
        rows += len(before) + n + probes * n + sum(1 for m in group.members if m.search)
        points += measured_alone + 1 + probes
    return rows, points


def _probes(member: Member) -> int:
    start, limit, _ = search_range((member.load,))
    return 2 * max(1, math.ceil(math.log2(limit / start)))


def colocated_row(spec: SweepSpec, group: Group, member: Member, load: Load, together: bool, point: int,
                  searched: Member | None = None) -> Row:
    """A co-located row not yet measured (failed until its figures come): ``member`` of
    ``group`` at ``load``, in co-located point ``point``."""
    row = Row(COLOCATED_COLUMNS)
    row.update(group=group.label, colocated_point=point, together=together, searched=searched is not None,
               model=member.model, batch_size=member.batch, concurrency=load.concurrency,
               request_rate_per_s=load.rate_per_s if load.open_loop else math.nan, status=Status.FAILED.value,
               search="probe" if searched is member else "", window_ms=spec.measurement.window_ms,
               latency_statistic=spec.latency_statistic.value, started_at=utc_now())
    return row


# -- the runner -------------------------------------------------------------------------------------------
def _said(model: str, batch: int, load: Load) -> str:
    return f"{model}: batch {batch}, {load}"


class ColocatedRunner(SweepRunner):
    """Measures groups of models together on one server (see the module's docstring);
    :meth:`stop` from any thread ends the point in flight within about a second. The
    server, the baseline, the windows, the rows' figures, stop and the events are the
    sweep's; what differs is what is loaded and how many loads run at once."""

    measures_together = True

    def __init__(self, spec: SweepSpec, groups: Sequence[Group], *, alone: bool = True,
                 alone_rows: Mapping[AloneKey, Mapping[str, Any]] | None = None,
                 on_event: ev.EventHandler | Iterable[ev.EventHandler] | None = None) -> None:
        super().__init__(spec, on_event, targets=())
        self.groups = check_groups(spec, groups)
        self.alone = alone
        self.given: dict[AloneKey, Mapping[str, Any]] = dict(alone_rows or {})
        self._pools: list[ClientPool] = []
        self._points = 0  # co-located points started
        self._points_total = 0
        self._baseline_row: Mapping[str, Any] = {}  # the empty server's, once recorded
        self.subscribe(self._keep_baseline)

    def _keep_baseline(self, event: ev.Event) -> None:
        if isinstance(event, ev.BaselineFinished):
            self._baseline_row = event.row

    # -- what SweepRunner.run calls
    def _expected_total(self) -> int:
        rows, self._points_total = expected_counts(self.groups, self.alone, self.given)
        return rows

    def _start_clients(self, stack: ExitStack) -> None:
        """A pool of client processes per member position (the models of a point run their
        loads at once, and a pool runs one at a time), each started before the baseline."""
        settings = self.spec.measurement
        for position in range(max(len(g.members) for g in self.groups)):
            pool = stack.enter_context(ClientPool())
            slots = max(_slots(g.members[position].load, self.spec) for g in self.groups if len(g.members) > position)
            pool.prestart(settings.processes_for(slots))
            self._pools.append(pool)

    def _measure_all(self, total: int) -> None:
        self._index, self._total = 0, total
        for group in self.groups:
            self._run_group(group)

    # -- a group
    def _run_group(self, group: Group) -> None:
        """Load the group's models, measure them alone, together, and search; unload them
        (a model the server had loaded before, on a server someone else runs, stays)."""
        loaded: dict[str, LoadedModel] = {}
        ours: list[str] = []
        try:
            try:
                for model in group.models:
                    loaded[model] = self._load(model, ours)
            except (ModelLoadError, RepositoryError) as e:
                self._group_failed(group, e)
                return
            alone = self._alone_rows(group, loaded)
            fixed = self._group_point(group, [(m, m.load) for m in group.members], loaded, alone)
            for member in group.members:
                if member.search:
                    self._search_member(group, member, loaded, alone, fixed[member.model])
        finally:
            self._unload(ours)

    def _load(self, model: str, ours: list[str]) -> LoadedModel:
        server, control, endpoint = self._connection
        self.emit(ev.ModelLoading(model))
        self.monitors.begin("load", model)
        started = time.monotonic()
        already = server.owns_process is False and control.settled_state(
            model, self.spec.server.model_load_timeout_s) == "READY"
        if not already:
            control.load(model)
            ours.append(model)
        info = control.model_info(model)
        version = next((m.version for m in control.repository_index() if m.name == model and m.state == "READY"), "")
        self.emit(ev.ModelLoaded(model, info, time.monotonic() - started))
        return LoadedModel(model, version, info, server, control, self._pools[0], endpoint)

    def _unload(self, models: Sequence[str]) -> None:
        if self._server_lost:
            return  # a dead or hung server cannot unload anything
        _, control, _ = self._connection
        for model in models:
            self.monitors.begin("unload", model)
            try:
                control.unload(model)
            except ServerError as e:
                self.emit(ev.Notice(f"could not unload {model!r}: {e}"))

    def _group_failed(self, group: Group, error: AnalyzerError) -> None:
        """A model of the group would not load: every member's row is failed with the
        reason; a server lost meanwhile ends the run."""
        reason = str(error)
        _, control, _ = self._connection
        lost: ServerError | None = None
        try:
            control.server_version()
        except ServerError as e:
            lost = e
            reason = f"{e} ({reason})"
        for member in group.members:
            row = self._row(group, member, member.load, together=len(group.members) > 1)
            row.update(status=Status.FAILED.value, reason=f"the group could not be loaded: {reason}")
            self._finish_point(row)
        if lost is not None:
            self._server_lost = True
            raise lost

    def _alone_rows(self, group: Group, loaded: Mapping[str, LoadedModel]) -> dict[AloneKey, dict[str, Any]]:
        """Each member alone at its load, just before the group (or the given row); none for
        a group of one, whose row is its own alone row."""
        out: dict[AloneKey, dict[str, Any]] = {}
        if len(group.members) == 1:
            return out
        for member in group.members:
            key = alone_key(member)
            if key in self.given:
                row = self._row(group, member, member.load, together=False)
                row.update(self.given[key], colocated_point=-1)
                row["reason"] = "given: measured before this run" + (f"; {row['reason']}" if row["reason"] else "")
                self._finish_point(row)
                out[key] = row
            elif self.alone:
                out[key] = self._group_point(group, [(member, member.load)], loaded, {})[member.model]
        return out

    # -- a point
    def _group_point(self, group: Group, under_load: Sequence[tuple[Member, Load]],
                     loaded: Mapping[str, LoadedModel], alone: Mapping[AloneKey, Mapping[str, Any]],
                     searched: Member | None = None) -> dict[str, Row]:
        """Measure ``under_load`` (members at these loads) at once over the same windows: a
        row each, compared with ``alone`` (or a given row at its load: a searched member's
        probe has one where the given rows hold that load), handed on. A lost server ends
        the run after."""
        together = len(under_load) > 1 or len(group.members) == 1
        rows = {m.model: self._row(group, m, load, together, searched) for m, load in under_load}
        runs: dict[str, WindowedLoad] = {}
        for position, (member, load) in enumerate(under_load):
            model = loaded[member.model]
            problem = model.info.batch_size_problem(member.batch)
            if problem:
                rows[member.model].update(status=Status.SKIPPED.value, reason=problem)
                continue
            try:
                job = self.point_job(member.model, model.version, model.info, member.batch, load, model.endpoint)
            except (AnalyzerError, ValueError) as e:
                rows[member.model]["reason"] = f"could not build inputs: {e}"
                continue
            runs[member.model] = WindowedLoad(job, member.batch, self._pools[position])
        idle = [m for m in group.models if m not in runs]
        for name, row in rows.items():
            row["neighbours"] = self._neighbours(name, under_load, runs, idle)
        self._begin(group, under_load, runs, together, searched)
        lost = self._measure(runs, rows)
        for member, load in under_load:
            row = rows[member.model]
            key = (member.model, member.batch, load)
            row.update(versus_alone(row, alone.get(key) or self.given.get(key) if together else None, self.spec))
            if len(group.members) == 1 and row["status"] in _MEASURED:
                row.update(versus_alone(row, row, self.spec))  # a group of one is its own alone row
            self._finish_point(row)
        if lost is not None:
            raise lost
        return rows

    def _neighbours(self, model: str, under_load: Sequence[tuple[Member, Load]], runs: Mapping[str, WindowedLoad],
                    idle: Sequence[str]) -> str:
        busy = [_said(m.model, m.batch, load) + (" (searched)" if m.search and load != m.load else "")
                for m, load in under_load if m.model != model and m.model in runs]
        resting = [m for m in idle if m != model]
        return "; ".join([*busy, *([f"{', '.join(resting)}: loaded, idle"] if resting else [])])

    def _begin(self, group: Group, under_load: Sequence[tuple[Member, Load]], runs: Mapping[str, WindowedLoad],
               together: bool, searched: Member | None) -> None:
        if self.stopping:
            raise SweepCancelled("stopped")
        said = tuple(_said(m.model, m.batch, load) for m, load in under_load)
        self.emit(ev.ColocatedPointStarted(group.label, said, together, searched.model if searched else "",
                                           self._points, max(self._points_total, self._points + 1)))
        self._points += 1
        if together:
            self.monitors.begin("colocated")
        else:
            member, load = under_load[0]
            self.monitors.begin("point", member.model, member.batch, load.concurrency)
        for k, (member, load) in enumerate(under_load):
            self.emit(ev.PointStarted(member.model, member.batch, load.concurrency, self._index + k,
                                      max(self._total, self._index + k + 1),
                                      load.rate_per_s if load.open_loop else math.nan))

    def _measure(self, runs: Mapping[str, WindowedLoad], rows: Mapping[str, Row]) -> ServerError | None:
        """The loads of ``runs`` over the same windows, their figures in ``rows``; a load
        that failed fails the point for every model (the server lost: returned, to end the
        run once the rows are handed on)."""
        if not runs:
            return None
        _, control, _ = self._connection
        try:
            self.measure_windows(list(runs.values()), control)
        except (LoadError, ServerError) as e:
            server = self._connection[0]
            reason = str(e)
            lost: ServerError | None = None
            try:
                server.check_alive()
            except ServerError as gone:
                lost, reason = gone, f"{gone} ({reason})"
                self._server_lost = True
            for model, run in runs.items():
                rows[model].update(status=Status.FAILED.value, window_count=len(run.windows),
                                   reason=f"the co-located point failed: {reason}")
            return lost
        for model, run in runs.items():
            rows[model].update(self._figures(run, model))
        return None

    def _figures(self, run: WindowedLoad, model: str) -> dict[str, Any]:
        """A load's row figures: the sweep's, with the model's resident memory and the
        memory of the model and of the whole server, from NVML where it gives them."""
        visit = self.visit_of(run, model)
        figures = pooled_figures([visit], self.spec.measurement, self.monitors.baseline_gpu_memory_mb)
        figures.update(self.monitors.reduce(visit.shown[0].start, visit.shown[-1].end,
                                            (COLOCATED_COLUMN["model_rss_max_mb"],), model))
        on_gpu = math.isfinite(figures["model_gpu_memory_max_mb"])
        server = "server_gpu_memory_max_mb" if on_gpu else "server_rss_max_mb"
        empty = float(self._baseline_row.get(server, math.nan))
        figures.update(memory_source="gpu" if on_gpu else "resident", server_memory_mb=figures[server],
                       server_memory_above_baseline_mb=figures[server] - empty,
                       model_memory_mb=figures["model_gpu_memory_max_mb" if on_gpu else "model_rss_max_mb"])
        return figures

    def _row(self, group: Group, member: Member, load: Load, together: bool, searched: Member | None = None) -> Row:
        return colocated_row(self.spec, group, member, load, together, self._points, searched)

    # -- a searched member
    def _search_member(self, group: Group, member: Member, loaded: Mapping[str, LoadedModel],
                alone: Mapping[AloneKey, Mapping[str, Any]], fixed: Row) -> None:
        """``member``'s highest load within the budget while the others hold theirs: each
        probe a co-located point (a row per member), then the answer a row of its own. The
        fixed-load point, measured just before, is the first probe."""
        spec = self.spec
        budget, statistic = spec.latency_budget_ms, spec.latency_statistic
        assert budget is not None
        if fixed["status"] == Status.SKIPPED.value:
            return  # its row says why
        # From its held load (the first probe), up or down: a model that fails at its held
        # load still has a capacity below it, which a search only upward would call none.
        _, limit, open_loop = search_range((member.load,))
        start = member.load.rate_per_s / SEARCH_RATE_SPAN if open_loop else 1
        held = member.load.rate_per_s if open_loop else member.load.concurrency

        def as_load(value: float) -> Load:
            return Load(rate_per_s=value) if open_loop else Load(concurrency=int(value))

        probed: dict[float, Mapping[str, Any]] = {}

        def measure(value: float) -> float:
            load = as_load(value)
            if load == member.load:
                row: Mapping[str, Any] = fixed
            else:
                under_load = [(m, load if m is member else m.load) for m in group.members]
                row = self._group_point(group, under_load, loaded, alone, searched=member)[member.model]
            probed[value] = row
            counts = row["status"] in _MEASURED and row["error_count"] == 0
            return float(row[statistic.column]) if counts else math.nan  # a failed request is beyond any budget

        found = highest_within(measure, budget, start=start, limit=limit, resolution=RATE_RESOLUTION if open_loop else 0,
                               hint=held)
        answer = Row(COLOCATED_COLUMNS, probed[found.load if found.load is not None else min(probed)])
        answer.update(answer_row(found, probed, budget, statistic, as_load), searched=True)
        self._finish_point(answer)


def _slots(load: Load, spec: SweepSpec) -> int:
    """The request slots a load needs (its concurrency, or a rate's most in flight)."""
    return load.concurrency if not load.open_loop else spec.measurement.max_in_flight


def versus_alone(row: Mapping[str, Any], alone: Mapping[str, Any] | None, spec: SweepSpec) -> dict[str, Any]:
    """A together row against the same model, batch size and load alone: the alone figures
    and the ratios (NaN without an alone row, or where either was not measured).

    >>> spec = SweepSpec(models=("a",), model_repository=Path("."))
    >>> versus_alone({"status": "ok", "throughput_infer_per_s": 80.0, "latency_p99_ms": 15.0},
    ...              {"status": "ok", "throughput_infer_per_s": 100.0, "latency_p99_ms": 10.0}, spec)["throughput_ratio"]
    0.8
    """
    column = spec.latency_statistic.column
    if alone is None or alone["status"] not in _MEASURED or row["status"] not in _MEASURED:
        return {}
    throughput, latency = float(alone["throughput_infer_per_s"]), float(alone[column])
    return {"alone_throughput_infer_per_s": throughput, "alone_latency_ms": latency,
            "throughput_ratio": float(row["throughput_infer_per_s"]) / throughput if throughput > 0 else math.nan,
            "latency_ratio": float(row[column]) / latency if latency > 0 else math.nan}


# -- the result -------------------------------------------------------------------------------------------
@dataclass
class ColocatedResult(RunResult):
    """What :func:`measure_together` measured: ``rows`` (a dict per model per co-located
    point, schema.COLOCATED_COLUMNS), the baseline, and views by group."""

    groups: tuple[Group, ...] = ()

    def to_frame(self) -> pd.DataFrame:
        """A row per model per co-located point (metrics-colocated.csv's columns)."""
        return frame(self.rows, COLOCATED_COLUMNS)

    def _group_rows(self, label: str) -> list[dict[str, Any]]:
        if label not in [g.label for g in self.groups]:
            raise ConfigError("label", label, f"names no group; the groups are {', '.join(g.label for g in self.groups)}")
        return [r for r in self.rows if r["group"] == label]

    def together(self, label: str) -> dict[str, dict[str, Any]]:
        """The group's fixed-load point: each model's row measured beside the others at
        their loads, by model."""
        return {r["model"]: r for r in self._group_rows(label) if r["together"] and not r["searched"]}

    def alone(self, label: str) -> dict[str, dict[str, Any]]:
        """The group's alone rows (measured just before it, or given), by model."""
        return {r["model"]: r for r in self._group_rows(label) if not r["together"]}

    def answers(self, label: str) -> dict[str, dict[str, Any]]:
        """The searched members' answers: each one's highest load within the budget beside
        the others at their loads, by model."""
        return {r["model"]: r for r in self._group_rows(label) if r["searched"] and r["search"] not in ("", "probe")}


def run_together(runner: SweepRunner, spec: SweepSpec, checked: tuple[Group, ...],
                 folder: ExportFolder | None, on_event: ev.EventHandler | Iterable[ev.EventHandler] | None
                 ) -> ColocatedResult:
    """Run ``runner`` (a :class:`ColocatedRunner`, or a driver of a unit per group: what
    :func:`analyzer_widgets.api.measure_together` chose, checked in preflight) into its
    collector and ``folder``, and the result."""
    collector = ResultCollector(spec, folder)
    try:
        if folder is not None:
            _wire_folder(runner, folder)
        runner.subscribe(collector)
        for handler in [on_event] if callable(on_event) else list(on_event or ()):
            runner.subscribe(handler)
        runner.run()
    finally:
        collector.close()
    swept = collector.result
    result = ColocatedResult(**{f.name: getattr(swept, f.name) for f in dataclasses.fields(RunResult) if f.init},
                             groups=checked)
    result.samples = swept.samples
    return result


def _wire_folder(runner: SweepRunner, folder: ExportFolder) -> None:
    """Open ``folder`` for the run (locked; results already there refused) and have the
    runner tell what that found, and start the files once the server is known."""
    folder.open()

    def announce(event: object) -> None:
        if isinstance(event, ev.SweepStarted):
            for note in folder.notes:
                runner.emit(ev.Notice(note))

    def on_server_known(version: str, gpus: list[str]) -> None:
        for note in folder.server_known(version, gpus):
            runner.emit(ev.Notice(note))

    runner.subscribe(announce)
    runner.on_server_known = on_server_known
