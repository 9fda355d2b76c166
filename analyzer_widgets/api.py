"""The Python entry point: ``analyzer_widgets.profile(...)``."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from analyzer_widgets.checkpoint import plan_export
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
from analyzer_widgets.events import EventHandler, Notice
from analyzer_widgets.results import SERVER_LOG, ResultCollector, ResultsWriter, SweepResult
from analyzer_widgets.runner import SweepRunner


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
    there, each row as soon as it is measured. ``runner_hook`` receives the runner before
    it starts (keep it to call ``runner.stop()`` from another thread).

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
    for handler in [on_event] if callable(on_event) else list(on_event or ()):
        runner.subscribe(handler)
    runner.run()
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
) -> tuple[SweepRunner, ResultCollector]:
    """The runner of a sweep, checked (bad input, a refused resume) and wired to its
    collector and export files, not started: :func:`profile` runs it at once, the panel in
    its own thread. Raises what :func:`profile` would before anything is launched."""
    export = export or ExportSettings()
    directory = export.directory
    if directory is not None and spec.server.log_path is None:
        # keep the server's whole log beside the results it produced
        spec = dataclasses.replace(spec, server=dataclasses.replace(spec.server, log_path=directory / SERVER_LOG))
    runner = SweepRunner(spec)
    if runner_hook is not None:
        runner_hook(runner)
    runner.preflight()  # bad input fails before an export file is touched
    collector = ResultCollector(spec, export_path=directory)
    if directory is not None:
        plan = plan_export(directory, spec, overwrite=export.overwrite, resume=export.resume,
                           keep_apart=export.keep_apart)
        collector.result.warnings.extend(plan.notes)
        runner.skip = plan.done

        def on_server_known(version: str, gpus: list[str]) -> None:
            # Files are written only from here on: a resume refused for another server
            # version or other GPUs leaves the earlier results exactly as they were.
            for note in plan.check_server(directory, version, gpus, export.keep_apart):
                runner.emit(Notice(note))
            collector.keep(plan.kept_rows or [])
            # the export target was checked by plan_export, before the launch
            collector.attach(ResultsWriter(directory, overwrite=True, kept_rows=plan.kept_rows))

        runner.on_server_known = on_server_known
    runner.subscribe(collector)
    return runner, collector
