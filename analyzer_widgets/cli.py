"""``analyzer-widgets``: the sweep from a terminal, with the original tool's flags.

    analyzer-widgets profile -m mlp_numpy --model-folder ./models -b 1,8 -c 1,4
    analyzer-widgets plan -m mlp_numpy --model-folder ./models --latency-budget-ms 20
    analyzer-widgets pack -m a,b --model-folder ./models --latency-budget-ms 20 --target-rate a=500,b=200
    analyzer-widgets demo
    analyzer-widgets models --model-folder ./models
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import importlib.util
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar

from analyzer_widgets import events
from analyzer_widgets.api import PACK_JSON, TOGETHER_FOLDERS, pack, plan, profile
from analyzer_widgets.config import (
    SETTINGS_CLASSES,
    UNSET,
    ExportSettings,
    MeasurementSettings,
    MonitorSettings,
    ServerSettings,
    Setting,
    SweepSpec,
    declared,
    default_of,
    make_settings,
    model_names,
    shown_default,
)
from analyzer_widgets.errors import AnalyzerError, ConfigError, RepositoryError, ResumeError, SweepCancelled
from analyzer_widgets.export import CSV_FILES
from analyzer_widgets.planning.packing import PackOptions, PackResult
from analyzer_widgets.planning.planner import PlanResult, PlanSettings
from analyzer_widgets.repository import list_models
from analyzer_widgets.results import SweepResult, outcome
from analyzer_widgets.schema import load_of, shown_value, table_columns

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
Done = TypeVar("Done")
EXAMPLE_REPOSITORY = Path(__file__).parent / "examples" / "model_repository"
DEMO_SHAPES = {"SEQUENCE": (128, 32)}



class Progress:
    """A one-line progress bar on a terminal; one line per point otherwise (CI logs)."""

    def __init__(self, stream: TextIO = sys.stderr, quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet
        self.live = stream.isatty()
        self.started = time.monotonic()
        self.point_started = self.started
        self.done = 0
        self.total = 0
        self.current = ""
        self.durations: list[float] = []

    def _line(self, text: str) -> None:
        if self.quiet:
            return
        if self.live:
            self.stream.write("\r\033[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _bar(self, note: str = "", what: str | None = None) -> str:
        width = 24
        filled = int(width * self.done / self.total) if self.total else 0
        elapsed = time.monotonic() - self.started
        left = ""
        if self.durations and self.total:
            per_point = sum(self.durations) / len(self.durations)
            left = f", ~{per_point * (self.total - self.done):.0f}s left"
        return f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {self.current if what is None else what}{note} ({elapsed:.0f}s{left})"

    def __call__(self, event: object) -> None:
        if isinstance(event, events.SweepStarted):
            # a pack runs several sweeps one after another: each counts its own points
            self.total, self.done, self.durations = event.total_points, 0, []
        elif isinstance(event, events.ServerReady):
            self._message(f"Triton {event.server_version} ready at {event.endpoint} ({event.launch_mode}, "
                          f"{event.startup_s:.1f}s)")
        elif isinstance(event, events.BaselineFinished):
            self._message(f"baseline recorded ({event.row['duration_s']:.1f}s, no models loaded)")
        elif isinstance(event, events.ModelLoading):
            self.current = f"loading {event.model}"
            self._line(self._bar())
        elif isinstance(event, events.ModelLoaded):
            self._message(f"loaded {event.model} in {event.load_s:.1f}s (max_batch_size {event.info.max_batch_size})")
        elif isinstance(event, events.PointStarted):
            self.point_started = time.monotonic()
            load = load_of({"concurrency": event.concurrency, "request_rate_per_s": event.request_rate_per_s})
            self.current = f"{event.model} batch={event.batch_size} {load}"
            self._line(self._bar())
        elif isinstance(event, events.WindowMeasured):
            if self.live:
                self._line(self._bar(f" window {event.trial}: {event.throughput:.0f} infer/s"))
        elif isinstance(event, events.PointFinished):
            self.done = event.index + 1
            row = event.row
            if row["status"] != "skipped":
                self.durations.append(time.monotonic() - self.point_started)
            note = f" -> {row['status']}"
            if math.isfinite(row["throughput_infer_per_s"]):
                note += f", {row['throughput_infer_per_s']:.0f} infer/s, p99 {row['latency_p99_ms']:.2f} ms"
            if row["reason"]:
                note += f" ({row['reason']})"
            if self.live:
                self._line(self._bar())
            else:
                # the row's own point: with units side by side, or models measured together,
                # the point started last may be another's
                variant = f" {row['variant']}" if row.get("variant") else ""
                self._line(self._bar(note, f"{row['model']}{variant} batch={row['batch_size']} {load_of(row)}"))
        elif isinstance(event, events.UnitStarted):
            again = f" (attempt {event.attempt})" if event.attempt > 1 else ""
            self._message(f"unit {event.unit + 1}/{event.units} ({', '.join(event.models)}) started{again} on "
                          f"{event.where}{f' (GPU {event.gpu})' if event.gpu else ''}, worker pid {event.worker_pid}")
        elif isinstance(event, events.RayJoined):
            self._message(f"Ray cluster of {event.nodes} nodes, each unit asking for {event.unit_resources}; "
                          + (f"Ray's dashboard: {event.dashboard_url}" if event.dashboard_url
                             else "Ray's dashboard is not running"))
        elif isinstance(event, events.UnitFinished):
            said = f"failed: {event.error.splitlines()[0]}; " if event.error else ""
            self._message(f"unit {event.unit + 1} ({', '.join(event.models)}) on {event.where} {said or 'done: '}"
                          f"{event.measured} points measured" + (f", {event.failed} failed" if event.failed else ""))
        elif isinstance(event, events.Notice):
            self._message(f"{event.level.value}: {event.message}")
        elif isinstance(event, events.SweepFinished):
            if self.live and not self.quiet:
                self.stream.write("\n")

    def _message(self, text: str) -> None:
        if self.quiet:
            return
        if self.live:
            self.stream.write("\r\033[K" + text + "\n")
            self.stream.flush()
        else:
            self._line(text)


#: the settings classes whose fields are flags, with the help group each is listed under
FLAG_GROUPS: tuple[tuple[type, str], ...] = (
    (SweepSpec, "sweep"), (ExportSettings, "results"), (ServerSettings, "server"),
    (MeasurementSettings, "measurement"), (MonitorSettings, "monitoring"),
)
#: the plan command's own settings, besides the sweep's
PLAN_FLAG_GROUPS: tuple[tuple[type, str], ...] = ((PlanSettings, "plan"),)
#: the pack command's own settings, besides the sweep's
PACK_FLAG_GROUPS: tuple[tuple[type, str], ...] = ((PackOptions, "pack"),)
#: each command's own settings classes, after the sweep's
OWN_GROUPS: dict[str, tuple[tuple[type, str], ...]] = {"plan": PLAN_FLAG_GROUPS, "pack": PACK_FLAG_GROUPS}
#: settings the demo does not offer: it sweeps its own models, into a folder it overwrites
DEMO_HIDDEN = ("models", "model_repository", "resume", "keep_apart")


def _add_flag(group: argparse._ArgumentGroup, f: dataclasses.Field[Any], s: Setting, demo: bool) -> None:
    # Every flag defaults to "not given": the declaration's default then applies, so no
    # default is typed twice. Values stay text here; the setting's own check reads them.
    help_text = f"{s.help} (default: {shown_default(f, s, demo)})".replace("%", "%%").replace("`", "")
    default = default_of(f)
    metavar = s.metavar or s.flags[-1].lstrip("-").upper().replace("-", "_")
    if isinstance(default, bool):
        group.add_argument(*s.flags, dest=f.name, action=argparse.BooleanOptionalAction,
                           default=argparse.SUPPRESS, help=help_text)
    elif s.repeat:
        group.add_argument(*s.flags, dest=f.name, action="append", metavar=metavar, default=argparse.SUPPRESS,
                           help=help_text)
    else:
        choices = [m.value for m in type(default)] if isinstance(default, enum.Enum) else None
        group.add_argument(*s.flags, dest=f.name, metavar=metavar if choices is None else None, choices=choices,
                           default=argparse.SUPPRESS,
                           help=help_text)


def _add_sweep_flags(p: argparse.ArgumentParser, demo: bool, own: tuple[tuple[type, str], ...] = ()) -> None:
    for cls, title in (*FLAG_GROUPS, *own):
        group = p.add_argument_group(title)
        for f, s in declared(cls):
            if s.flags and not (demo and f.name in DEMO_HIDDEN):
                _add_flag(group, f, s, demo)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def settings_from_args(args: argparse.Namespace, demo: bool = False,
                       own: tuple[tuple[type, str], ...] = PLAN_FLAG_GROUPS) -> dict[str, Any]:
    """The settings given on the command line (and the demo's own defaults), each read by
    its declaration's parse; the rest keep their declared defaults. ``own``: the command's
    own settings classes, besides the sweep's."""
    given = vars(args)
    settings: dict[str, Any] = {}
    for cls, _ in (*FLAG_GROUPS, *own):
        for f, s in declared(cls):
            if f.name in given:
                value = given[f.name]
                settings[f.name] = s.parse(value) if s.parse is not None else value
            elif demo and s.demo_default is not UNSET:
                settings[f.name] = s.demo_default
            elif s.cli_default is not UNSET:
                settings[f.name] = s.cli_default
    if "request_rate" in given and "concurrency" not in given:
        settings.pop("concurrency", None)  # the demo's concurrency values give way to the rates asked for
    return settings


def flag_table() -> str:
    """README's flag table, derived from the declarations (tests/test_docs.py checks that
    README holds exactly this)."""
    lines = ["| flag | meaning | default |", "|---|---|---|"]
    for cls, title in (*FLAG_GROUPS, *PLAN_FLAG_GROUPS, *PACK_FLAG_GROUPS):
        for f, s in declared(cls):
            if not s.flags:
                continue
            names = ", ".join(s.flags)
            if isinstance(default_of(f), bool):
                names = " / ".join([*s.flags, *(f"--no-{n[2:]}" for n in s.flags if n.startswith("--"))])
            if s.metavar:
                names += f" {s.metavar}"
            default = shown_default(f, s, demo=False)
            shown = default if s.default_text or default == "none" else f"`{default}`"
            if s.demo_default is not UNSET:
                shown += f" (demo: `{shown_default(f, s, demo=True)}`)"
            only = f"`{title}` only: " if (cls, title) in (*PLAN_FLAG_GROUPS, *PACK_FLAG_GROUPS) else ""
            lines.append(f"| `{names}` | {only}{s.help} | {shown} |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="analyzer-widgets",
        description="Measure throughput, latency and resource use of models on NVIDIA Triton Inference Server.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_sweep_flags(sub.add_parser("profile", help="sweep models over batch sizes x concurrency values"), demo=False)
    _add_sweep_flags(sub.add_parser("demo", help="sweep the bundled example models on the embedded server"), demo=True)
    _add_sweep_flags(sub.add_parser("plan", help="search a model's configurations for the one that serves best "
                                                 "within a latency budget (-m MODEL --latency-budget-ms MS)"),
                     demo=False, own=PLAN_FLAG_GROUPS)
    _add_sweep_flags(sub.add_parser("pack", help="pack several models onto the fewest GPUs that serve each one's "
                                                 "target rate within a latency budget, and measure each GPU's "
                                                 "models together (-m A,B --latency-budget-ms MS --target-rate "
                                                 "A=500,B=200)"),
                     demo=False, own=PACK_FLAG_GROUPS)
    models = sub.add_parser("models", help="list the models of a repository")
    models.add_argument("--model-folder", "--model-repository", dest="model_folder", default=str(EXAMPLE_REPOSITORY))
    return parser


def _with_flag(error: ConfigError, args: argparse.Namespace | None = None) -> str:
    """A setting's error as the command line's user reads it: with the flag that sets it,
    and, where the flag's text is read into other units (--nvml-interval-ms into seconds),
    the value as typed beside the value the setting got. An item's field (``target_rates['a']``)
    is its setting's."""
    own = PackOptions if args is not None and getattr(args, "command", "") == "pack" else PlanSettings
    name = error.field.split("[", 1)[0]
    for cls in (*SETTINGS_CLASSES, own):
        for f, s in declared(cls):
            if f.name == name and s.flags:
                if name != error.field:
                    return f"{'/'.join(s.flags)}: {error}"
                typed = vars(args).get(f.name) if args is not None and s.parse is not None else None
                if isinstance(typed, str):
                    return f"{'/'.join(s.flags)} {typed!r} (read as {error})"
                return f"{'/'.join(s.flags)}: {error}"
    return str(error)


def demo_models(out: TextIO) -> list[str]:
    """Every example model, less the torch one where torch is not installed (said why)."""
    models = sorted(list_models(EXAMPLE_REPOSITORY))
    if importlib.util.find_spec("torch") is None:
        models.remove("torch_mlp")
        out.write("note: torch_mlp skipped: torch is not installed in this environment. To include it: "
                  "pip install 'analyzer-widgets[torch]' (or make demo-torch)\n")
    return models


def print_table(result: SweepResult, out: TextIO) -> None:
    import pandas as pd

    df = result.to_frame()
    if df.empty:
        out.write("no points were measured\n")
        return
    columns = [c for c in table_columns(df) if c != "reason"]  # the reasons follow the table, one per line
    # the headers are the CSV's column names (what scripts and the docs use), the values as
    # people read them: rounded, with their 95% intervals' half-widths
    shown = pd.DataFrame([{c: shown_value(record, c) for c in columns} for record in df.to_dict("records")])
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        out.write(shown.to_string(index=False) + "\n")
    if shown.map(lambda text: " ±" in text).any().any():
        out.write("  ±: half-width of the 95% confidence interval over the reported windows "
                  "(the *_ci_low_*/*_ci_high_* columns)\n")
    for what, why in result.unavailable.items():
        out.write(f"  NaN columns ({what}): {why}\n")
    for row in result.rows:
        if row["status"] != "ok" and row["reason"]:
            out.write(f"  {row['model']} batch={row['batch_size']} {load_of(row)}: "
                      f"{row['status']}: {row['reason']}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = sys.stdout
    if args.command == "models":
        try:
            models = list_models(args.model_folder)
        except AnalyzerError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        for name, info in models.items():
            out.write(f"{name}\t{info.kind}\tmax_batch_size={info.max_batch_size}\n")
        return EXIT_OK
    if args.command == "plan":
        return run_plan(args, out)
    if args.command == "pack":
        return run_pack(args, out)
    try:
        settings = settings_from_args(args, demo=args.command == "demo")
        if args.command == "demo":
            settings.update(models=demo_models(out), model_repository=EXAMPLE_REPOSITORY)
            settings["input_shapes"] = {**DEMO_SHAPES, **settings.get("input_shapes", {})}
        spec, export = make_settings(**settings)
    except ConfigError as e:
        print(f"error: {_with_flag(e, args)}", file=sys.stderr)
        return EXIT_USAGE
    except AnalyzerError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    progress = Progress(quiet=args.quiet)
    directory = export.directory
    interrupted = ("\ninterrupted: the server and client processes were stopped; finished rows are in "
                   f"{directory or 'memory only'}" + (" (--resume measures the rest)" if directory else ""))
    result = _engine(lambda: profile(spec, export=export, on_event=progress), interrupted, args)
    if isinstance(result, int):
        return result
    print_table(result, out)
    out.write(outcome(result.rows, time.monotonic() - progress.started) + "\n")
    if directory is not None:
        out.write(f"results written to {directory}/: {', '.join(CSV_FILES)}\n")
    if result.error:
        print(f"error: {result.error}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_FAILED


def _engine(work: Callable[[], Done], interrupted: str, args: argparse.Namespace) -> Done | int:
    """What ``work`` (a sweep or a plan) returns, or the exit code its error calls for, said
    on stderr: Ctrl-C or Stop, the user's input (a bad model name, a missing or empty
    repository, an export folder that is a file, not writable or in use by another run,
    results that cannot be resumed: refused before anything was measured, so a usage
    error like `models`), or a failure of the engine."""
    try:
        return work()
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED
    except SweepCancelled:
        return EXIT_INTERRUPTED
    except (ConfigError, RepositoryError, ResumeError) as e:
        print(f"error: {_with_flag(e, args) if isinstance(e, ConfigError) else e}", file=sys.stderr)
        return EXIT_USAGE
    except AnalyzerError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED


def run_plan(args: argparse.Namespace, out: TextIO) -> int:
    """``analyzer-widgets plan``: one model's variants searched; the ranked table, the
    recommendation in a sentence, its config's diff, the sizing and the files."""
    settings = settings_from_args(args)
    models = settings.pop("models", None)
    progress = Progress(quiet=args.quiet)
    def run() -> PlanResult:
        names: tuple[str, ...] = model_names("models", models) if models is not None else ()
        if len(names) != 1:
            raise ConfigError("models", models, "a plan searches one model's configurations: give one -m MODEL")
        return plan(names[0], on_event=progress, **settings)

    result = _engine(run, "\ninterrupted: the variants measured are in the export folder (--resume measures the "
                          "rest)", args)
    if isinstance(result, int):
        return result
    print_plan(result, out)
    if result.sweep.export_path is not None:
        written = ["plan.csv", "plan.json", *(["config.pbtxt"] if result.best else [])]
        out.write(f"results written to {result.sweep.export_path}/: {', '.join(written)} (and every probe in "
                  f"{CSV_FILES[0]})\n")
    if result.sweep.error:
        print(f"error: {result.sweep.error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if result.best is not None else EXIT_FAILED


def print_plan(result: PlanResult, out: TextIO) -> None:
    import pandas as pd

    table = result.to_frame()
    shown = table.drop(columns=[c for c in ("original", "throughput_ci_low_infer_per_s") if c in table.columns])
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 60):
        out.write(shown.to_string(index=False, na_rep="") + "\n\n")
    out.write(result.sentence + "\n")
    if result.diff:
        out.write("changes to the model's config.pbtxt:\n" + "".join(f"  {line}\n" for line in result.diff))
    if result.sizing is not None:
        out.write(result.sizing.text() + "\n")


def run_pack(args: argparse.Namespace, out: TextIO) -> int:
    """``analyzer-widgets pack``: the models' needs (measured alone, or read with
    --earlier), the plan, each shared GPU measured together; the GPU-by-GPU table, the
    sentence and the files. Exit 0 when the plan was validated (or --no-validate), 1 when
    validation failed (the plan and what failed are still printed and written)."""
    settings = settings_from_args(args, own=PACK_FLAG_GROUPS)
    models = settings.pop("models", None)
    progress = Progress(quiet=args.quiet)

    def run() -> PackResult:
        if models is None:
            raise ConfigError("models", None, "give the models to pack: -m A,B")
        if "target_rates" not in settings:
            raise ConfigError("target_rates", None, "give each model's target rate in infer/s, as "
                                                    "--target-rate a=500,b=200")
        return pack(models, on_event=progress, **settings)

    result = _engine(run, "\ninterrupted: the rows measured are in the export folder", args)
    if isinstance(result, int):
        return result
    print_pack(result, out)
    if result.export_path is not None:
        measured = [f"{name}/metrics-colocated.csv" for name in TOGETHER_FOLDERS.values()
                    if (Path(result.export_path) / name).is_dir()]
        alone = [] if settings.get("earlier") else list(CSV_FILES)
        out.write(f"results written to {result.export_path}/: {', '.join([*alone, *measured, PACK_JSON])}\n")
    return EXIT_OK if result.validated or not result.validate else EXIT_FAILED


def print_pack(result: PackResult, out: TextIO) -> None:
    """The plan GPU by GPU (a row per model on each GPU, with what was measured together),
    each check's verdict, and the answer in a sentence."""
    import pandas as pd

    table = result.to_frame()
    latency = f"together_{result.constraints.statistic.column}"
    columns = {"gpu": "gpu", "model": "model", "batch_size": "batch", "rate_infer_per_s": "rate",
               "target_rate_infer_per_s": "of target", "capacity_infer_per_s": "capacity there",
               "capacity_measured": "measured", "compute_share": "compute share", "memory_mb": "memory MB",
               "check": "check", "together_throughput_infer_per_s": "together infer/s",
               latency: f"together {result.constraints.statistic.label} ms"}
    shown = table[list(columns)].rename(columns=columns)
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.float_format", "{:,.4g}".format):
        out.write(shown.to_string(index=False, na_rep="") + "\n\n")
    for check in result.checks:
        out.write(f"  GPU {check.gpu} ({', '.join(check.models)}): {'passed' if check.passed else 'failed'}: "
                  f"{check.reason}\n")
    for note in result.notes:
        out.write(f"  note: {note}\n")
    out.write(result.sentence + "\n")


if __name__ == "__main__":
    sys.exit(main())
