"""The Python entry points: ``analyzer_widgets.profile(...)`` and ``analyzer_widgets.plan(...)``."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from analyzer_widgets.config import (
    OWNERS,
    SETTINGS_CLASSES,
    ExportSettings,
    SweepSpec,
    declared,
    group_settings,
    make_settings,
)
from analyzer_widgets.errors import ConfigError
from analyzer_widgets.events import EventHandler, Notice, SweepStarted
from analyzer_widgets.export import ExportFolder
from analyzer_widgets.machine import nvml_unavailable_reason, visible_gpus
from analyzer_widgets.planning import planner as planning
from analyzer_widgets.planning.planner import PlanResult, PlanSettings
from analyzer_widgets.planning.space import default_space, read_space, variants
from analyzer_widgets.results import ResultCollector, SweepResult
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
    export = export or ExportSettings()
    # the folder's path first (a file, not writable, inside the repository): nothing started yet
    folder = ExportFolder(export, spec, run) if export.directory is not None else None
    if folder is not None and spec.server.log_path is None:
        # keep the server's whole log beside the results it produced
        spec = dataclasses.replace(spec, server=dataclasses.replace(spec.server, log_path=folder.server_log))
    runner = SweepRunner(spec)
    if runner_hook is not None:
        runner_hook(runner)
    runner.preflight()  # bad input fails before the export folder is touched
    collector = ResultCollector(spec, folder)
    if folder is not None:
        folder.open()  # locked for the run; a resume refused for a changed spec or model raises here
        runner.skip = folder.done

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
