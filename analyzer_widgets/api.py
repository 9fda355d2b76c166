"""The Python entry points: ``analyzer_widgets.profile(...)``, ``analyzer_widgets.plan(...)``
and ``analyzer_widgets.pack(...)``."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import psutil

from analyzer_widgets.colocation import (
    ColocatedResult,
    ColocatedRunner,
    Group,
    Member,
    alone_index,
    check_groups,
    run_together,
)
from analyzer_widgets.config import (
    OWNERS,
    SETTINGS_CLASSES,
    ExportSettings,
    Load,
    Parallel,
    SweepSpec,
    declared,
    group_settings,
    make_settings,
    model_names,
)
from analyzer_widgets.distributed import ParallelRunner, RayRunner
from analyzer_widgets.errors import ConfigError, SweepCancelled
from analyzer_widgets.events import EventHandler, Level, Notice, SweepStarted
from analyzer_widgets.export import COLOCATED_CSV, ExportFolder, ResultsExist, load_results
from analyzer_widgets.machine import nvml_unavailable_reason, visible_gpus
from analyzer_widgets.planning import packing
from analyzer_widgets.planning import planner as planning
from analyzer_widgets.planning.budget import plain_number
from analyzer_widgets.planning.packing import (
    GpuCheck,
    ModelNeed,
    PackingPlan,
    PackOptions,
    PackResult,
    target_rates_for,
)
from analyzer_widgets.planning.planner import PlanResult, PlanSettings
from analyzer_widgets.planning.space import default_space, read_space, variants
from analyzer_widgets.results import ResultCollector, SweepResult, write_atomic
from analyzer_widgets.runner import SweepRunner
from analyzer_widgets.schema import point_key


def make_spec(**settings: Any) -> SweepSpec:
    """A :class:`SweepSpec` from flat keyword settings; each goes where it is declared.

    >>> make_spec(models="mlp_numpy", model_repository=".", batch_sizes="1,8", window_ms=500).measurement.window_ms
    500
    """
    export_names = [k for k in settings if OWNERS.get(k) is ExportSettings]
    if export_names:
        name = export_names[0]
        raise ConfigError(name, settings[name], "says where results go, not what to measure: give it to profile()")
    return make_settings(**settings)[0]


def profile(
    spec: SweepSpec | None = None,
    *,
    export: ExportSettings | None = None,
    on_event: EventHandler | Iterable[EventHandler] | None = None,
    runner_hook: Callable[[SweepRunner], None] | None = None,
    **settings: Any,
) -> SweepResult:
    """Run a sweep and return its results.

    Give a :class:`SweepSpec`, or its settings as keywords (every setting of
    :mod:`analyzer_widgets.config`; ``help(profile)`` lists them with their defaults)::

        result = analyzer_widgets.profile(
            models=["mlp_numpy"], model_repository=analyzer_widgets.EXAMPLE_REPOSITORY,
            batch_sizes=[1, 8], concurrency=[1, 4],
        )
        result.to_frame()      # one row per (model, batch size, concurrency)
        result.baseline        # the server with no models loaded

    With ``export_path``, ``metrics-model.csv`` and ``metrics-server-only.csv`` are written
    there, each row as soon as it is measured; the folder is locked while the sweep runs,
    so a second sweep into it is refused. ``runner_hook`` receives the runner before it
    starts (keep it to call ``runner.stop()`` from another thread).

    With ``resume=True`` a sweep started again on the same export directory keeps the
    points measured there before and measures the rest, provided the spec, the models'
    files, the server version and the GPUs are what they were (``sweep.json`` records
    them); otherwise it is refused with what changed, or with ``keep_apart=True`` the
    earlier results are moved into ``previous-<time>/`` and the sweep starts over.
    """
    grouped = group_settings(settings)
    if spec is None:
        spec, from_keywords = make_settings(**settings)
    else:
        given = [name for cls, group in grouped.items() if cls is not ExportSettings for name in group]
        if given:
            raise ConfigError(given[0], settings[given[0]], "give either a spec or its settings, not both")
        from_keywords = ExportSettings(**grouped[ExportSettings])
    if export is not None and grouped[ExportSettings]:
        name = next(iter(grouped[ExportSettings]))
        raise ConfigError(name, settings[name], "give either export=ExportSettings(...) or its settings, not both")
    runner, collector = prepare_sweep(spec, export or from_keywords, runner_hook=runner_hook)
    try:
        for handler in [on_event] if callable(on_event) else list(on_event or ()):
            runner.subscribe(handler)
        runner.run()
    finally:
        collector.close()  # the export folder's lock, also on an error or Ctrl-C
    return collector.result


def _signature() -> inspect.Signature:
    """profile()'s signature with every declared setting as a keyword, derived from the
    declarations, so help() and a notebook's tooltip list them with their defaults."""
    own = inspect.signature(profile)
    params = [p for p in own.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    for cls in SETTINGS_CLASSES:
        for f, _ in declared(cls):
            default = f.default if f.default is not dataclasses.MISSING else (
                inspect.Parameter.empty if f.default_factory is dataclasses.MISSING else f.default_factory())
            params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                            annotation=f.type))
    return own.replace(parameters=params)


profile.__signature__ = _signature()  # type: ignore[attr-defined]


def _export_folder(export: ExportSettings | None, spec: SweepSpec, run: Mapping[str, Any] | None,
                   **folder_options: Any) -> tuple[ExportFolder | None, SweepSpec]:
    """The run's export folder (None without one), its path checked, and the spec with the
    server's log kept beside the results it produced."""
    export = export or ExportSettings()
    folder = ExportFolder(export, spec, run, **folder_options) if export.directory is not None else None
    if folder is not None and spec.server.log_path is None:
        spec = dataclasses.replace(spec, server=dataclasses.replace(spec.server, log_path=folder.server_log))
    return folder, spec


def _split_runner(spec: SweepSpec, **groups: Any) -> SweepRunner | None:
    """The driver of a run split into units (``--ray``, ``--parallel gpus``), or None."""
    if spec.ray:
        return RayRunner(spec, **groups)
    if spec.parallel is Parallel.GPUS:
        return ParallelRunner(spec, **groups)
    return None


def prepare_sweep(
    spec: SweepSpec,
    export: ExportSettings | None = None,
    *,
    runner_hook: Callable[[SweepRunner], None] | None = None,
    run: Mapping[str, Any] | None = None,
) -> tuple[SweepRunner, ResultCollector]:
    """The runner of a sweep, checked (bad input, an export folder refused, a refused
    resume) and wired to its collector and export folder, not started: :func:`profile`
    runs it at once, the panel in its own thread. Raises what :func:`profile` would before
    anything is launched. The export folder is locked from here until the sweep ends; call
    ``collector.close()`` when done with the runner (also if it never ran). ``run``: what
    else shapes the rows (a plan's facts), kept with the resume fingerprint."""
    # the folder's path first (a file, not writable, inside the repository): nothing started yet
    folder, spec = _export_folder(export, spec, run)
    runner = _split_runner(spec) or SweepRunner(spec)
    if runner_hook is not None:
        runner_hook(runner)
    runner.preflight()  # bad input fails before the export folder is touched
    collector = ResultCollector(spec, folder)
    if folder is not None:
        folder.open()  # locked for the run; a resume refused for a changed spec or model raises here
        runner.skip = folder.done
        runner.earlier = {point_key(row): row for row in folder.kept_rows}  # a unit takes its model's

        def announce(event: object) -> None:
            # what opening the folder found (a resume's kept rows, a lock taken over), told
            # to every handler, the ones subscribed after this function returns too
            if isinstance(event, SweepStarted):
                for note in folder.notes:
                    runner.emit(Notice(note))

        def on_server_known(version: str, gpus: list[str]) -> None:
            # Files are written only from here on: a resume refused for another server
            # version or other GPUs leaves the earlier results exactly as they were.
            for note in folder.server_known(version, gpus):
                runner.emit(Notice(note))
            collector.keep(folder.kept_rows)
            runner.earlier = {point_key(row): row for row in folder.kept_rows}

        runner.subscribe(announce)
        runner.on_server_known = on_server_known
    runner.subscribe(collector)
    return runner, collector


def plan(model: str, *, on_event: EventHandler | Iterable[EventHandler] | None = None,
         runner_hook: Callable[[SweepRunner], None] | None = None, **settings: Any) -> PlanResult:
    """Search ``model``'s configurations for the one that serves best within a latency
    budget, and return the answer (docs/planning.md)::

        result = analyzer_widgets.plan("mlp_numpy", model_repository=analyzer_widgets.EXAMPLE_REPOSITORY,
                                       latency_budget_ms=5, strategy="quick")
        result.sentence        # the recommendation in one sentence
        result.to_frame()      # every variant measured, best first
        result.config_text     # the config.pbtxt to serve with

    ``settings``: the plan's own (:class:`~analyzer_widgets.planning.planner.PlanSettings`: space,
    strategy, objective, constraints, target rate) and every sweep setting; a
    ``latency_budget_ms`` is required. Each variant is loaded through the repository API's
    config override (the repository is never written) and searched for the highest load
    within the budget, per batch size. With ``export_path`` the rows go to
    ``metrics-model.csv`` as for a sweep, and ``plan.csv``, ``plan.json`` and the
    recommended ``config.pbtxt`` are written at the end; ``resume=True`` keeps the variants
    measured before.
    """
    names = {f.name for f, _ in declared(PlanSettings)}
    plan_settings = PlanSettings(**{name: settings.pop(name) for name in list(settings) if name in names})
    if settings.get("latency_budget_ms") is None:
        raise ConfigError("latency_budget_ms", None, "a plan needs a latency budget: the most latency (p99 unless "
                                                     "latency_statistic says otherwise) a variant may serve at")
    spec, export = make_settings(models=[model], **settings)
    if (spec.parallel is not Parallel.OFF or spec.ray) and plan_settings.strategy is not planning.Strategy.BRUTE:
        split_by = f"--ray {spec.ray}" if spec.ray else f"--parallel {spec.parallel.value}"
        raise ConfigError("strategy", plan_settings.strategy.value, f"chooses each variant from the ones measured "
                          f"before it, so its variants cannot run side by side ({split_by}): use --search brute")
    unpowered = nvml_unavailable_reason()
    if plan_settings.objective is planning.Objective.PER_WATT and unpowered:
        raise ConfigError("objective", plan_settings.objective.value,
                          f"needs the GPU's board power, which this machine does not give ({unpowered})")
    own = planning.own_config(spec, model)
    space = read_space(plan_settings.space) if plan_settings.space is not None else default_space(own)
    found = variants(space, own, gpu_count=len(visible_gpus()))
    assert spec.latency_budget_ms is not None
    constraints = planning.Constraints(spec.latency_budget_ms, spec.latency_statistic, plan_settings.min_throughput,
                                       plan_settings.max_memory_mb)
    if plan_settings.per_variant is planning.PerVariant.GRID:
        # the runner measures the grid; the budget only judges what it measured
        spec = dataclasses.replace(spec, latency_budget_ms=None)
    holder: list[ResultCollector] = []

    def choose_targets(runner: SweepRunner) -> None:
        runner.targets, runner.expected_targets = planning.targets(
            model, found, plan_settings, constraints, lambda: [*runner.earlier.values(), *runner.rows],
            lambda: holder[0].result.baseline_row if holder else None)
        if runner_hook is not None:
            runner_hook(runner)

    runner, collector = prepare_sweep(spec, export, runner_hook=choose_targets, run=planning.run_facts(plan_settings))
    holder.append(collector)
    try:
        for handler in [on_event] if callable(on_event) else list(on_event or ()):
            runner.subscribe(handler)
        runner.run()
        result = planning.answer(model, plan_settings, constraints, found, own, collector.result)
        if collector.folder is not None:
            for name, text in planning.files(result, space).items():
                collector.folder.write_file(name, text)
    finally:
        collector.close()
    return result


# -- pack: several models onto the fewest GPUs (issue 19, docs/packing.md) -------------------------
#: the export folder's sub-folders for the runs measured together (each run's own sweep.json,
#: server log and rows, so that none replaces the models' rows measured alone beside them)
TOGETHER_FOLDERS = {"validate": "together", "capacity": "together-capacity", "revalidate": "together-replanned"}
PACK_JSON = "pack.json"


def measure_together(spec: SweepSpec, groups: Sequence[Group], *, export: ExportSettings | None = None,
                     alone: bool = True, alone_rows: Sequence[Mapping[str, Any]] | pd.DataFrame = (),
                     on_event: EventHandler | Iterable[EventHandler] | None = None,
                     runner_hook: Callable[[Any], None] | None = None) -> ColocatedResult:
    """Measure each group's models together on one server (analyzer_widgets/colocation.py,
    docs/packing.md). ``spec``'s models are the groups' models, its measurement settings
    the windows', its ``latency_budget_ms`` what a searched member searches within and
    ``latency_statistic`` what ``latency_ratio`` compares. ``alone``: measure each member
    alone at its load just before its group, where ``alone_rows`` (earlier rows of the
    models alone: a sweep's) have no row of that model, batch size and load; False: only
    the given rows are compared with (the ratios are NaN where there is none).
    With ``export`` (a folder), the rows go to metrics-colocated.csv as they are measured,
    with the baseline and samples as a sweep writes them. ``runner_hook`` gets the runner
    (its ``stop()`` ends the run) before it starts. With ``spec.parallel`` or ``spec.ray``
    each group is a unit of its own, measured on a server (and GPU) of its own, side by side
    (docs/scale-out.md).

    >>> result = measure_together(spec, [Group((Member("mlp_numpy", 1, Load(concurrency=2)),  # doctest: +SKIP
    ...                                         Member("mixed_inputs", 1, Load(concurrency=1))), "GPU 0")])
    >>> result.together("GPU 0")["mlp_numpy"]["throughput_ratio"]  # doctest: +SKIP
    """
    checked = check_groups(spec, groups)
    given = alone_index(alone_rows)
    run_facts = {"colocated": [[str(m) for m in g.members] for g in checked], "alone": alone}
    folder, spec = _export_folder(export, spec, run_facts, rows_file=COLOCATED_CSV)
    runner = (_split_runner(spec, groups=checked, alone=alone, given=given)
              or ColocatedRunner(spec, checked, alone=alone, alone_rows=given))
    if runner_hook is not None:
        runner_hook(runner)
    runner.preflight()  # bad input fails before the export folder is touched
    return run_together(runner, spec, checked, folder, on_event)


def pack(models: Sequence[str] | str, *, target_rates: Mapping[str, float] | str,
         on_event: EventHandler | Iterable[EventHandler] | None = None,
         runner_hook: Callable[[Any], None] | None = None, gpu_memory_mb: float | None = None,
         headroom_pct: float = 20, validate: bool = True,
         earlier: Earlier | Sequence[Earlier] | None = None, interval_low: bool = True,
         **settings: Any) -> PackResult:
    """Pack ``models`` onto the fewest GPUs that serve each one's target rate (infer/s)
    within the latency budget, and check the plan by measuring each GPU's models together
    (docs/packing.md)::

        result = analyzer_widgets.pack(["mlp_numpy", "mixed_inputs"], target_rates="mlp_numpy=500,mixed_inputs=200",
                                       model_repository=analyzer_widgets.EXAMPLE_REPOSITORY, latency_budget_ms=20)
        result.sentence        # how many GPUs, what each holds, and whether validation passed
        result.to_frame()      # a row per model per GPU, with what was measured together

    1. Each model's need (memory, capacity within the budget): from ``earlier`` results (a
       SweepResult, PlanResult or export folder, or a list of them), or measured now: a
       budget search per model at its batch sizes on one server (``latency_budget_ms`` is
       required; the export folder, events and ``resume`` work as for :func:`profile`).
       A capacity is the low end of the throughput's 95% interval (``interval_low=False``:
       the figure itself, where short windows scattered too much for an interval).
    2. The GPUs' memory: ``gpu_memory_mb``, or NVML's total less the empty server's; on a
       CPU machine the host's memory less the empty server's resident memory (said so).
    3. The plan (planning/packing.py's ``pack``).
    4. With ``validate``, each GPU holding two or more models is measured together, each at
       its planned rate (open loop) and batch size, and judged: the budget's statistic
       within the budget and the rate served. Where a GPU fails, its models' capacities
       beside each other are searched together, the plan is made again once with them, and
       the new plan's GPUs that were not measured at those rates are measured.

    ``runner_hook`` gets each runner before it starts (its ``stop()`` ends the pack there);
    with ``export_path`` the models' rows alone go to the folder as a sweep's do, the
    runs together to its ``together*/`` folders, and the answer to ``pack.json``.
    """
    names = list(model_names("models", models))
    options = PackOptions(target_rates=target_rates, gpu_memory_mb=gpu_memory_mb,  # type: ignore[arg-type]
                          headroom_pct=headroom_pct, validate=validate, earlier=earlier,  # type: ignore[arg-type]
                          interval_low=interval_low)
    rates = target_rates_for(options.target_rates, names)
    if settings.get("latency_budget_ms") is None:
        raise ConfigError("latency_budget_ms", None, "packing needs a latency budget: each model's capacity is "
                                                     "its throughput within it (p99 unless latency_statistic says "
                                                     "otherwise)")
    spec, export = make_settings(models=names, **settings)
    assert spec.latency_budget_ms is not None
    constraints = planning.Constraints(spec.latency_budget_ms, spec.latency_statistic)
    handlers = [on_event] if callable(on_event) else list(on_event or ())
    packing_run = _PackRun(spec, export, constraints, handlers, runner_hook)
    packing_run.refuse_existing()

    # 1. the needs
    if options.earlier:
        packing_run.say(f"pack: reading {', '.join(names)}'s needs from earlier results")
        needs, batches, baseline = _needs_from_earlier(options.earlier, rates, constraints, packing_run.notes,
                                                       options.interval_low)
    else:
        packing_run.say(f"pack: measuring {', '.join(names)} alone: each one's highest load within "
                        f"{constraints.budget_text()}")
        alone = packing_run.measure_alone()
        if alone.cancelled:
            raise SweepCancelled("the pack was stopped while measuring the models alone; the rows measured are "
                                 f"in {alone.export_path or 'memory only'}")
        needs = packing.needs_from_sweep(alone, rates, constraints, interval_low=options.interval_low)
        batches = {m: _answer_batch(alone.rows, m, constraints) for m in names}
        baseline = alone.baseline_row
    # 2. the GPUs
    memory, said = _gpu_memory(options.gpu_memory_mb, baseline)
    packing_run.notes.append(said)
    gpus = packing.Gpus(memory, options.headroom_pct)
    # 3. the plan
    first = packing.pack(needs, gpus)
    packing_run.say(f"pack: planned {first.sentence}")
    result = PackResult(first, first, constraints, batches, validate=options.validate,
                        every_gpu=bool(options.earlier), notes=packing_run.notes)
    # 4. validation, and one re-plan where it fails
    if options.validate:
        packing_run.validate(result)
    if export.directory is not None:
        export.directory.mkdir(parents=True, exist_ok=True)  # nothing else wrote there when all was read
        write_atomic(export.directory / PACK_JSON, json.dumps(result.to_dict(), indent=2, default=str) + "\n")
        result.export_path = str(export.directory)
    packing_run.say(f"pack: {result.sentence}")
    return result


#: what pack() reads earlier needs from
Earlier = SweepResult | PlanResult | str | Path


class _PackRun:
    """The measuring steps of one :func:`pack`: their runners (each given the handlers and
    the hook), their export folders, and what they note for the answer."""

    def __init__(self, spec: SweepSpec, export: ExportSettings, constraints: planning.Constraints,
                 handlers: list[EventHandler], runner_hook: Callable[[Any], None] | None) -> None:
        self.spec, self.export, self.constraints = spec, export, constraints
        self.handlers, self.runner_hook = handlers, runner_hook
        self.notes: list[str] = []
        self.stopped = False

    def say(self, message: str) -> None:
        """A step of the pack, told to every handler as a notice (the CLI's progress line)."""
        for handler in self.handlers:
            handler(Notice(message, Level.INFO))

    def refuse_existing(self) -> None:
        """An earlier pack's answer in the export folder is kept unless overwriting (or
        resuming) was asked for, as a sweep's results are."""
        directory = self.export.directory
        if directory is None or self.export.overwrite or self.export.resume:
            return
        existing = [directory / name for name in (PACK_JSON, *TOGETHER_FOLDERS.values()) if (directory / name).exists()]
        if existing:
            raise ResultsExist(directory, existing)

    def measure_alone(self) -> SweepResult:
        runner, collector = prepare_sweep(self.spec, self.export, runner_hook=self._hook)
        try:
            for handler in self.handlers:
                runner.subscribe(handler)
            runner.run()
        finally:
            collector.close()
        return collector.result

    def _hook(self, runner: Any) -> None:
        if self.runner_hook is not None:
            self.runner_hook(runner)

    def together(self, step: str, groups: list[Group]) -> ColocatedResult:
        """``groups`` measured together on one server, into the export folder's ``step`` folder."""
        models = tuple(dict.fromkeys(m for g in groups for m in g.models))
        spec = dataclasses.replace(self.spec, models=models)
        export = None
        if self.export.directory is not None:
            export = dataclasses.replace(self.export, export_path=self.export.directory / TOGETHER_FOLDERS[step],
                                         resume=False, keep_apart=False, overwrite=True)
        result = measure_together(spec, groups, export=export, alone=False, on_event=self.handlers,
                                  runner_hook=self._hook)
        if result.cancelled:
            self.stopped = True
            self.notes.append(f"stopped while measuring together ({step}): a check cut short fails, and nothing "
                              "after it was measured or re-planned")
        return result

    def groups(self, plan: PackingPlan, batches: Mapping[str, int], gpus: Sequence[int], prefix: str = "",
               search: bool = False) -> list[Group]:
        """A group per GPU of ``plan`` named in ``gpus``: each model at its planned rate
        (open loop, requests of its batch size), or searched from it with ``search``."""
        return [Group(tuple(Member(r.model, batches[r.model], Load(rate_per_s=r.rate / batches[r.model]), search)
                            for r in plan.gpus[i].replicas), f"{prefix}GPU {i}") for i in gpus]

    def check(self, step: str, plan: PackingPlan, batches: Mapping[str, int],
              gpus: Sequence[int], result: PackResult) -> list[GpuCheck]:
        if not gpus:
            return []
        prefix = "re-planned " if step == "revalidate" else ""
        self.say("pack: measuring together at their planned rates: "
                 + "; ".join(f"GPU {i} ({', '.join(plan.gpus[i].models)})" for i in gpus))
        measured = self.together(step, self.groups(plan, batches, gpus, prefix))
        result.colocated += measured.rows
        checks = [packing.judge_gpu(plan.gpus[i], batches, measured.together(f"{prefix}GPU {i}"), self.constraints,
                                    f"{prefix}GPU {i}") for i in gpus]
        for c in checks:
            self.say(f"pack: GPU {c.gpu} ({', '.join(c.models)}): {'passed' if c.passed else 'failed'}: {c.reason}")
        return checks

    def validate(self, result: PackResult) -> None:
        """Measure the plan's shared GPUs together; where one fails, its models' capacities
        together, a re-plan with them, and the new plan's GPUs not measured at those rates."""
        first, batches = result.first, result.batches
        to_check = packing.gpus_to_check(first, result.every_gpu)
        result.first_checks = result.checks = self.check("validate", first, batches, to_check, result)
        failed = [c for c in result.first_checks if not c.passed]
        if not failed or self.stopped:
            return
        self.say("pack: measuring the failed GPUs' models' capacities together (each one's highest rate within "
                 "the budget while the others serve theirs)")
        searched = self.together("capacity", self.groups(first, batches, [c.gpu for c in failed], "capacity of ",
                                                        search=True))
        result.colocated += searched.rows
        answers = {c.gpu: searched.answers(f"capacity of GPU {c.gpu}") for c in failed}
        result.capacities, notes = packing.capacities_together(failed, answers)
        self.notes += notes
        if self.stopped:
            return
        second = packing.replan(first, result.capacities)
        result.plan, result.replanned = second, True
        self.say(f"pack: re-planned: {second.sentence}")
        checks, to_measure = packing.still_to_measure(second, result.first_checks, result.every_gpu)
        for c in self.check("revalidate", second, batches, to_measure, result):
            checks[c.gpu] = c
        result.checks = [checks[i] for i in sorted(checks)]


def _answer_batch(rows: Sequence[Mapping[str, Any]], model: str, constraints: planning.Constraints,
                  variant: str | None = None) -> int:
    """The batch size of a model's best answer within the budget (what it is packed at)."""
    mine = [r for r in rows if r.get("model") == model and (variant is None or str(r.get("variant") or "") == variant)]
    answer = planning.best_answer(mine, constraints)
    return int(answer["batch_size"]) if answer is not None else 1


def _needs_from_earlier(earlier: Sequence[Earlier], rates: Mapping[str, float],
                        constraints: planning.Constraints,
                        notes: list[str], interval_low: bool = True) -> tuple[list[ModelNeed], dict[str, int], Any]:
    """The needs read from earlier results: each model from the first result that holds it
    (``notes`` gets what the answer should say about them)."""
    needs: dict[str, ModelNeed] = {}
    batches: dict[str, int] = {}
    baseline = None
    for i, item in enumerate(earlier):
        name = f"earlier[{i}]"
        if isinstance(item, PlanResult):
            if item.model in rates and item.model not in needs:
                needs[item.model] = packing.need_from_plan(item, rates[item.model], interval_low=interval_low)
                variant = item.best.variant if item.best is not None else None
                batches[item.model] = _answer_batch(item.sweep.rows, item.model, constraints, variant)
            baseline = baseline or item.sweep.baseline_row
            continue
        if isinstance(item, SweepResult):
            rows, base, variants = item.rows, item.baseline_row, dict[str, str]()
        elif isinstance(item, str | Path):
            rows, base, variants = _read_folder(name, Path(item))
        else:
            raise ConfigError(name, type(item).__name__, "must be a SweepResult, a PlanResult or an export folder")
        baseline = baseline or base
        by_model: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_model.setdefault(str(row["model"]), []).append(row)
        for model, mine in by_model.items():
            if model in rates and model not in needs:
                variant = variants.get(model)
                chosen = [r for r in mine if variant is None or str(r.get("variant") or "") == variant]
                needs[model] = packing.need_from_rows(model, chosen, base, constraints, rates[model],
                                                        interval_low=interval_low)
                batches[model] = _answer_batch(chosen, model, constraints)
    of_variants = [n.model for n in needs.values() if " variant " in n.source]
    if of_variants:
        notes.append(f"{', '.join(of_variants)}: the needs are of a plan's variant; measured together "
                     "as the repository has the model (serve the variant's config.pbtxt to measure it)")
    missing = [m for m in rates if m not in needs]
    if missing:
        raise ConfigError("earlier", [str(e) if isinstance(e, str | Path) else type(e).__name__ for e in earlier],
                          f"hold no results of {', '.join(missing)}: measure them (leave earlier out) or give "
                          "results that hold them")
    return [needs[m] for m in rates], batches, baseline


def _read_folder(name: str, directory: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None, dict[str, str]]:
    """An export folder's rows and baseline; a plan's folder's recommended variant (plan.json)."""
    try:
        rows_frame, server = load_results(directory)
    except (OSError, ValueError) as e:
        raise ConfigError(name, str(directory), f"holds no readable results ({e})") from e
    rows = [{str(k): v for k, v in r.items()} for r in rows_frame.to_dict("records")]
    baselines = [{str(k): v for k, v in r.items()} for r in server.to_dict("records")]
    variants: dict[str, str] = {}
    plan_file = directory / "plan.json"
    if plan_file.is_file():
        summary = json.loads(plan_file.read_text())
        if summary.get("recommended") and summary.get("model"):
            variants[str(summary["model"])] = str(summary["recommended"])
    return rows, (baselines[0] if baselines else None), variants


def _gpu_memory(given: float | None, baseline: Mapping[str, Any] | None) -> tuple[float, str]:
    """The memory models may use on one GPU, and a line saying where it came from."""
    if given is not None:
        return given, f"each GPU's memory for models: {plain_number(given)} MB, as given"
    if baseline is None:
        raise ConfigError("gpu_memory_mb", None, "no baseline was measured to read the GPUs' memory from: give it")
    if math.isfinite(float(baseline.get("gpu_memory_total_mb", math.nan))):
        count = max(1, len(visible_gpus()))
        memory = packing.gpu_memory_mb(baseline, count)
        return memory, (f"each GPU's memory for models: {plain_number(memory)} MB, NVML's total less what the empty "
                        "server used")
    host = psutil.virtual_memory().total / 2**20
    memory = packing.host_gpu_memory_mb(host, baseline)
    # whole megabytes: the host's total is a fact, and three figures would hide the baseline
    return memory, (f"no GPU on this machine: the models share its host instead, whose {host:,.0f} MB of "
                    f"memory less the empty server's {plain_number(host - memory)} MB resident leaves "
                    f"{memory:,.0f} MB (give gpu_memory_mb for a GPU's)")
