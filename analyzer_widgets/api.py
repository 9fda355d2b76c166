"""The Python entry point: ``analyzer_widgets.profile(...)``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from analyzer_widgets.checkpoint import plan_export
from analyzer_widgets.config import MeasurementSettings, MonitorSettings, ServerSettings, SweepSpec
from analyzer_widgets.errors import ConfigError
from analyzer_widgets.results import SERVER_LOG, ResultCollector, ResultsWriter, SweepResult
from analyzer_widgets.runner import Notice, SweepRunner

_SERVER_FIELDS = {f.name for f in dataclasses.fields(ServerSettings)}
_MEASUREMENT_FIELDS = {f.name for f in dataclasses.fields(MeasurementSettings)}
_MONITOR_FIELDS = {f.name for f in dataclasses.fields(MonitorSettings)}
_SPEC_FIELDS = {f.name for f in dataclasses.fields(SweepSpec)} - {"server", "measurement", "monitor"}


def make_spec(**settings: Any) -> SweepSpec:
    """A :class:`SweepSpec` from flat keyword settings; each goes where it belongs.

    >>> make_spec(models="mlp_numpy", model_repository=".", batch_sizes="1,8", window_ms=500).measurement.window_ms
    500
    """
    server = {k: settings.pop(k) for k in list(settings) if k in _SERVER_FIELDS}
    measurement = {k: settings.pop(k) for k in list(settings) if k in _MEASUREMENT_FIELDS}
    monitor = {k: settings.pop(k) for k in list(settings) if k in _MONITOR_FIELDS}
    unknown = [k for k in settings if k not in _SPEC_FIELDS]
    if unknown:
        known = ", ".join(sorted(_SPEC_FIELDS | _SERVER_FIELDS | _MEASUREMENT_FIELDS | _MONITOR_FIELDS))
        raise ConfigError(unknown[0], settings[unknown[0]], f"is not a setting; the settings are: {known}")
    return SweepSpec(server=ServerSettings(**server), measurement=MeasurementSettings(**measurement),
                     monitor=MonitorSettings(**monitor), **settings)


def profile(
    spec: SweepSpec | None = None,
    *,
    export_path: Path | str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    keep_apart: bool = False,
    on_event: Callable[[object], None] | Iterable[Callable[[object], None]] | None = None,
    runner_hook: Callable[[SweepRunner], None] | None = None,
    **settings: Any,
) -> SweepResult:
    """Run a sweep and return its results.

    Give a :class:`SweepSpec`, or its settings as keywords::

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
    if spec is None:
        spec = make_spec(**settings)
    elif settings:
        raise ConfigError(next(iter(settings)), settings[next(iter(settings))], "give either a spec or settings, not both")
    runner, collector = prepare_sweep(spec, export_path=export_path, overwrite=overwrite, resume=resume,
                                      keep_apart=keep_apart, runner_hook=runner_hook)
    for handler in [on_event] if callable(on_event) else list(on_event or ()):
        runner.subscribe(handler)
    runner.run()
    return collector.result


def prepare_sweep(
    spec: SweepSpec,
    *,
    export_path: Path | str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    keep_apart: bool = False,
    runner_hook: Callable[[SweepRunner], None] | None = None,
) -> tuple[SweepRunner, ResultCollector]:
    """The runner of a sweep, checked (bad input, a refused resume) and wired to its
    collector and export files, not started: :func:`profile` runs it at once, the panel in
    its own thread. Raises what :func:`profile` would before anything is launched."""
    export = export_path if export_path is not None else spec.export_path
    if export is not None and spec.server.log_path is None:
        # keep the server's whole log beside the results it produced
        log_path = Path(export) / SERVER_LOG
        spec = dataclasses.replace(spec, server=dataclasses.replace(spec.server, log_path=log_path))
    runner = SweepRunner(spec)
    if runner_hook is not None:
        runner_hook(runner)
    runner.preflight()  # bad input fails before an export file is touched
    collector = ResultCollector(spec, export_path=Path(export) if export is not None else None)
    if export is not None:
        export = Path(export)
        plan = plan_export(export, spec, overwrite=overwrite, resume=resume, keep_apart=keep_apart)
        collector.result.warnings.extend(plan.notes)
        runner.skip = plan.done

        def on_server_known(version: str, gpus: list[str]) -> None:
            # Files are written only from here on: a resume refused for another server
            # version or other GPUs leaves the earlier results exactly as they were.
            for note in plan.check_server(export, version, gpus, keep_apart):
                runner.emit(Notice(note))
            collector.keep(plan.kept_rows or [])
            # the export target was checked by plan_export, before the launch
            collector.attach(ResultsWriter(export, overwrite=True, kept_rows=plan.kept_rows))

        runner.on_server_known = on_server_known
    runner.subscribe(collector)
    return runner, collector
