"""The panel's Plan section (issue 18; docs/planning.md, "The Plan section"): plan the first
model selected, with the panel's sweep settings, within the panel's latency budget.

Its fields are the plan's settings as :class:`~analyzer_widgets.planning.planner.PlanSettings`
declares them (a field per setting with a panel label, made as the sweep's are), the
budget's two fields (the same widgets as the decision view's: one budget for the panel),
and the search space, typed as TOML or JSON or given as a file. Plan runs
:func:`analyzer_widgets.api.plan` off the kernel's thread; its events reach the panel's
queue as a sweep's do, so the status line, the live figure, the results table and Stop
work for a plan as for a sweep, and this section lists each variant as it is measured.
When the plan ends it shows the Pareto chart (ui/plan_chart.py), the answer in one
sentence, and a button that writes the recommended config.pbtxt.

    panel = aw.Dashboard(space={"instances": [1, 2]}, strategy="brute")
    panel.budget_fields["latency_budget_ms"].value = "20"
    panel.plan_section.run(); panel.wait()
    panel.plan_section.result.sentence
"""

from __future__ import annotations

import enum
import html
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from analyzer_widgets import events as ev
from analyzer_widgets.api import plan
from analyzer_widgets.config import OWNERS, UNSET, LaunchMode, declared, make_settings, shown_default
from analyzer_widgets.errors import AnalyzerError, ConfigError
from analyzer_widgets.machine import nvml_unavailable_reason, visible_gpus
from analyzer_widgets.planning.budget import Budget, plain_number
from analyzer_widgets.planning.planner import (
    Constraints,
    Judged,
    Objective,
    PlanResult,
    PlanSettings,
    Strategy,
    judge,
    own_config,
)
from analyzer_widgets.planning.space import default_space, read_space, variants
from analyzer_widgets.results import write_atomic
from analyzer_widgets.runner import SweepRunner
from analyzer_widgets.schema import load_of
from analyzer_widgets.ui._fields import setting_widget, widget_value
from analyzer_widgets.ui._run_section import LABEL_WIDTH, RunSection, red, widened
from analyzer_widgets.ui.plan_chart import pareto_figure

if TYPE_CHECKING:
    from analyzer_widgets.ui.dashboard import Dashboard

#: the plan's own settings, by name: a Dashboard takes them as keywords for its Plan section
PLAN_SETTINGS = frozenset(f.name for f, _ in declared(PlanSettings))
SPACE_FILES = (".toml", ".json", ".yaml", ".yml")
TITLE = "Plan a configuration: which instances, max batch and batching delay serve best within the budget"
NO_BUDGET = "Type a latency budget to plan."


class VariantState(str, enum.Enum):
    MEASURING = "measuring"
    MEETS = "meets"  # measured: it meets every constraint
    FAILS = "fails"  # measured: no load within the budget, or it fails a throughput floor or memory cap
    FAILED = "failed"  # it could not be measured (the server refused its config)
    STOPPED = "stopped"  # Stop came before its search ended


STATE_COLOURS = {VariantState.MEASURING: "#1f6fb2", VariantState.MEETS: "#2e7d32", VariantState.FAILS: "#757575",
                 VariantState.FAILED: "#c62828", VariantState.STOPPED: "#b26a00"}


@dataclass
class VariantLine:
    """One variant in the section's list."""

    name: str
    state: VariantState
    text: str
    rank: int | None = None
    recommended: bool = False


@dataclass(frozen=True)
class _Seen:
    """A variant as its events show it: what :func:`judge` needs of one."""

    name: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    original: bool = False


def variant_of(label: str) -> str:
    """The variant a ModelLoading event names ("mlp_numpy (variant i2)" -> "i2")."""
    head, sep, rest = label.rpartition(" (variant ")
    return rest[:-1] if sep and head and rest.endswith(")") else label


def answer_text(j: Judged, constraints: Constraints) -> str:
    """A judged variant's answer in a few words: where, how much, how fast, how big."""
    answer = j.answer or {}
    memory = f", {plain_number(j.memory_mb)} MB" if math.isfinite(j.memory_mb) else ""
    return (f"{plain_number(float(answer['throughput_infer_per_s']))} infer/s at batch {answer['batch_size']}, "
            f"{load_of(answer)}: {constraints.statistic.label} "
            f"{plain_number(float(answer[constraints.statistic.column]))} ms{memory}")


def line_of(j: Judged, constraints: Constraints) -> VariantLine:
    """A variant once measured: whether it meets the constraints, its answer or why not."""
    if j.answer is None:
        failed = j.failed.startswith("could not be measured")
        return VariantLine(j.variant, VariantState.FAILED if failed else VariantState.FAILS, j.failed)
    text = answer_text(j, constraints)
    if j.doubtful:
        text += f" (doubtful: {'; '.join(j.doubtful)})"
    if not j.meets:
        return VariantLine(j.variant, VariantState.FAILS, f"{text}; fails: {j.failed}")
    return VariantLine(j.variant, VariantState.MEETS, text)


def ranked_lines(ranked: Sequence[Judged], recommended: str | None, constraints: Constraints) -> list[VariantLine]:
    """A finished plan's variants, best first, the recommendation marked."""
    lines = []
    for i, j in enumerate(ranked, start=1):
        line = line_of(j, constraints)
        line.rank = i if j.ranked else None
        line.recommended = j.variant == recommended
        lines.append(line)
    return lines


class PlanProgress:
    """Each variant of a running plan, from the engine's events: measuring (its probes so
    far), then judged against the constraints as the next one starts (planner.judge)."""

    def __init__(self, constraints: Constraints, objective: Objective) -> None:
        self.constraints = constraints
        self.objective = objective
        self.lines: dict[str, VariantLine] = {}
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.baseline: dict[str, Any] | None = None
        self.current: str | None = None

    def apply(self, event: object) -> bool:
        """Take one event; whether the list changed."""
        if isinstance(event, ev.BaselineFinished):
            self.baseline = dict(event.row)
        elif isinstance(event, ev.ModelLoading):
            self._close(stopped=False)
            self.current = variant_of(event.model)
            self.lines[self.current] = VariantLine(self.current, VariantState.MEASURING, "loading its config")
        elif isinstance(event, ev.PointFinished):
            name = str(event.row.get("variant") or "")
            self.rows.setdefault(name, []).append(dict(event.row))
            if name == self.current:
                self.lines[name].text = self._measuring(self.rows[name])
        elif isinstance(event, ev.SweepFinished):
            self._close(stopped=event.cancelled)
        else:
            return False
        return True

    def _measuring(self, rows: Sequence[Mapping[str, Any]]) -> str:
        last = rows[-1]
        column = self.constraints.statistic.column
        figure = (f"{self.constraints.statistic.label} {plain_number(float(last[column]))} ms"
                  if math.isfinite(float(last.get(column, math.nan))) else str(last.get("status")))
        return (f"{len(rows)} probe{'s' if len(rows) != 1 else ''} so far; the last at batch {last['batch_size']}, "
                f"{load_of(last)}: {figure}")

    def _close(self, stopped: bool) -> None:
        name, self.current = self.current, None
        if name is None:
            return
        rows = self.rows.get(name, [])
        judged = judge(_Seen(name), rows, self.baseline, self.constraints, self.objective)
        if stopped and judged.answer is None:
            self.lines[name] = VariantLine(name, VariantState.STOPPED, "stopped before its search ended")
        else:
            self.lines[name] = line_of(judged, self.constraints)


def progress_html(lines: Sequence[VariantLine], heading: str) -> str:
    """The variants as a small table: rank, name, state in colour, answer or reason."""
    if not lines:
        return f"<div>{html.escape(heading)}</div>" if heading else ""
    cell = "padding:1px 8px;font-size:12px;text-align:left"
    body = []
    for line in lines:
        star = " ★" if line.recommended else ""
        weight = "font-weight:700" if line.recommended else ""
        body.append(
            f"<tr style='{weight}'><td style='{cell}'>{line.rank or ''}</td>"
            f"<td style='{cell};white-space:nowrap'>{html.escape(line.name)}{star}</td>"
            f"<td style='{cell};color:{STATE_COLOURS[line.state]};font-weight:600'>{line.state.value}</td>"
            f"<td style='{cell};white-space:normal'>{html.escape(line.text)}</td></tr>")
    head = "".join(f"<th style='{cell}'>{h}</th>" for h in ("Rank", "Variant", "State", "Answer, or why not"))
    return (f"<div><b>{html.escape(heading)}</b></div><div style='overflow:auto;max-height:260px'>"
            f"<table class='aw-plan-variants'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
            "</table></div>")


def count_text(started: int, expected: int | None, exact: bool) -> str:
    """How far a running plan is: "variant 2 of 3", or "of about 9" where quick chooses as it goes."""
    if not expected:
        return f"variant {started}"
    return f"variant {started} of {'' if exact else 'about '}{max(expected, started)}"


def space_from_text(text: str) -> str | dict[str, Any] | None:
    """The Space field's text as the plan's ``space`` setting: empty for the default space,
    a file's path (.toml, .json, .yaml, .yml), or the space itself in TOML or JSON.

    >>> space_from_text('instances = [1, 2]')
    {'instances': [1, 2]}
    """
    text = text.strip()
    if not text:
        return None
    if "\n" not in text and "=" not in text and Path(text).suffix.lower() in SPACE_FILES:
        return str(Path(text).expanduser())
    try:
        data = json.loads(text) if text.startswith("{") else _toml(text)
    except ValueError as e:
        raise ConfigError("space", text, "is neither a space file (.toml, .json, .yaml) nor a space written "
                                         f"as TOML (instances = [1, 2]) or JSON: {e}") from e
    return dict(data)  # a TOML document, or JSON that starts with "{": a table either way


def _toml(text: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: the same parser, as a package
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ConfigError("space", text, "TOML needs Python 3.11 or the tomli package: write the space "
                                             'as JSON ({"instances": [1, 2]})') from None
    return tomllib.loads(text)


def space_as_text(space: object) -> str:
    """A space given to the panel as its field shows it: a mapping as JSON, a path as itself."""
    if space is None or space is UNSET:
        return ""
    return json.dumps(space) if isinstance(space, Mapping) else str(space)


def config_path(given: str, export_folder: str) -> Path:
    """Where Write config.pbtxt writes: the path given (a ``.pbtxt`` file, or a folder to
    put config.pbtxt in), else the export folder's config.pbtxt."""
    path = Path(given.strip() or export_folder.strip() or ".").expanduser()
    return path if path.suffix == ".pbtxt" else path / "config.pbtxt"


def write_config(result: PlanResult, path: Path, *, replace: bool) -> bool:
    """Write the recommended config to ``path``; False when the same text is there already.
    A different file there is replaced only with ``replace``."""
    if result.best is None:
        raise AnalyzerError("no variant is recommended, so there is no config to write: see why in the list")
    text = result.config_text
    if path.is_dir():
        raise ConfigError("config path", str(path), "is a folder: give a .pbtxt file or the folder it goes in")
    if path.exists():
        if path.read_text() == text:
            return False
        if not replace:
            raise ConfigError("config path", str(path), "already exists: tick Replace to overwrite it, or give "
                                                        "another path")
    try:
        write_atomic(path, text)
    except OSError as e:
        raise AnalyzerError(f"{path}: cannot be written ({e.strerror or e})") from e
    return True


def diff_html(result: PlanResult) -> str:
    """The recommended config's changes to the model's own, one line per field."""
    if not result.diff:
        return "It is the model's own config: no field changes."
    return ("Changes to the model's config.pbtxt:<ul style='margin:2px 0'>"
            + "".join(f"<li><code>{html.escape(line)}</code></li>" for line in result.diff) + "</ul>")


class PlanSection(RunSection):
    """The Plan section of a :class:`~analyzer_widgets.ui.dashboard.Dashboard` (module
    docstring). ``given``: the plan settings the panel was made with."""

    def __init__(self, panel: Dashboard, given: Mapping[str, Any]) -> None:
        PlanSettings(**given)  # a bad setting is an error now, naming it, not when Plan is pressed
        super().__init__(panel)
        self.result: PlanResult | None = None
        self._expected: tuple[int | None, bool] = (None, False)
        self._progress: PlanProgress | None = None
        self._gpu_count: int | None = None
        self._make_fields(given)
        self._make_views()
        self.widget = self._layout()
        self._wire((*self.fields.values(), self.space_field))
        self.write_button.on_click(lambda _b: self._write_clicked())

    # -- building ------------------------------------------------------------------------
    def _make_fields(self, given: Mapping[str, Any]) -> None:
        """A field per plan setting declared with a panel label, and the Space field."""
        self.fields: dict[str, w.ValueWidget] = {}
        self.errors: dict[str, w.HTML] = {}
        for f, declaration in declared(PlanSettings):
            if declaration.panel:
                self.fields[f.name] = widened(setting_widget(f, declaration, given.get(f.name, UNSET)))
                self.errors[f.name] = w.HTML()
        space = next((f, s) for f, s in declared(PlanSettings) if f.name == "space")
        # the one plan setting without a panel label (a file on the command line): here it is
        # typed too, as TOML or JSON
        self.space_field = w.Textarea(
            value=space_as_text(given.get("space")), description="Space", rows=3,
            placeholder=f"{shown_default(*space)}; or type one, e.g. instances = [1, 2]  (or a .toml/.json file)",
            tooltip=space[1].help, style={"description_width": LABEL_WIDTH}, layout=w.Layout(width="620px"))
        self.errors["space"] = w.HTML()

    def _make_views(self) -> None:
        self.plan_button = self._make_run_views("Plan", "search")
        self.count = w.HTML()
        self.progress = w.HTML()
        self.config_path = w.Text(description="Config path", style={"description_width": "90px"},
                                  layout=w.Layout(width="420px"),
                                  tooltip="a .pbtxt file, or a folder to put config.pbtxt in; empty: the export folder")
        self.write_button = w.Button(description="Write config.pbtxt", icon="file", disabled=True,
                                     layout=w.Layout(width="170px", flex="0 0 auto"))
        self.replace_box = w.Checkbox(value=False, description="Replace", indent=False,
                                      tooltip="replace a config.pbtxt already at that path")
        self.write_status = w.HTML()

    def _layout(self) -> w.Accordion:
        row = w.Layout(flex_flow="row wrap")
        # the choices first (strategy, objective, ...), then the space, then the numbers (constraints, sizing)
        fields = {name: w.HBox([field, self.errors[name]], layout=row) for name, field in self.fields.items()}
        choices = [box for name, box in fields.items() if not isinstance(self.fields[name], w.Text)]
        numbers = [box for name, box in fields.items() if isinstance(self.fields[name], w.Text)]
        return self._accordion([*choices, w.HBox([self.space_field, self.errors["space"]], layout=row), *numbers], [
            self.count, self.progress, self.chart_box, self.answer,
            w.HBox([self.config_path, self.write_button, self.replace_box], layout=row),
            self.write_status,
        ], "aw-plan", TITLE)

    # -- the settings ---------------------------------------------------------------------
    def model(self) -> str:
        chosen = self._panel.model_picker.value
        if not chosen:
            raise ConfigError("models", (), "pick the model to plan (the first one selected is planned)")
        return str(chosen[0])

    def budget(self) -> Budget:
        return self._budget("the plan searches each variant to")

    def own_settings(self) -> dict[str, Any]:
        """The plan's own settings as their fields give them, each checked by its declaration
        (a ConfigError names the field); the space apart (:meth:`space`)."""
        values = {}
        for f, declaration in declared(PlanSettings):
            if f.name in self.fields:
                value = widget_value(self.fields[f.name], declaration)
                if value is not UNSET:
                    values[f.name] = value
        checked = PlanSettings(**values)
        unpowered = nvml_unavailable_reason()
        if checked.objective is Objective.PER_WATT and unpowered:
            raise ConfigError("objective", checked.objective.value,
                              f"needs the GPU's board power, which this machine does not give ({unpowered})")
        return values

    def space(self) -> str | dict[str, Any] | None:
        """The Space field's space, its keys and values checked; None: the default space."""
        space = space_from_text(self.space_field.value)
        if space is not None:
            PlanSettings(space=space)  # a path that is no file
            read_space(space)
        return space

    def sweep_settings(self) -> dict[str, Any]:
        """The panel's settings for the plan's sweep, and where its results go (the panel's
        Results choice)."""
        return self._panel_settings()[1]

    def settings(self) -> tuple[str, dict[str, Any]]:
        """The model and the keyword settings :func:`analyzer_widgets.plan` gets: the panel's
        sweep settings with the panel's budget (in place of its Budget search), and the plan's own."""
        model, settings = self.model(), self.sweep_settings()
        self._with_budget(settings).update(self.own_settings())
        space = self.space()
        if space is not None:
            settings["space"] = space
        return model, settings

    def constraints(self, settings: Mapping[str, Any]) -> Constraints:
        checked = PlanSettings(**{k: v for k, v in settings.items() if k in PLAN_SETTINGS})
        return Constraints(settings["latency_budget_ms"], settings["latency_statistic"], checked.min_throughput,
                           checked.max_memory_mb)

    # -- validation -----------------------------------------------------------------------
    hints = (NO_BUDGET,)

    def _check(self) -> str:
        """The first problem with what Plan would run ("" if none), also said beside its field:
        the plan's own settings, then the space (with the variants it gives the model), then
        the budget."""
        try:
            own = self.own_settings()
        except ConfigError as e:
            return self._say(e, e.field)
        try:
            space = self.space()
            self.about.value = self._about(self.model(), {**self.sweep_settings(), **own, "space": space})
        except ConfigError as e:
            # the sweep's own fields say theirs; the rest is about the space and the model's config
            return self._say(e, e.field if e.field in self.errors else "" if e.field in OWNERS else "space")
        except AnalyzerError as e:  # a repository that cannot be read, ...
            return str(e)
        return self._budget_problem(NO_BUDGET)

    def _say(self, error: ConfigError, where: str) -> str:
        if where in self.errors:
            reason = error.reason if where == error.field else str(error)
            self.errors[where].value = red(reason)
        return str(error)

    def _about(self, model: str, settings: Mapping[str, Any]) -> str:
        """What Plan will do, in a sentence; the variants it may measure where the model's
        config is at hand (not on a remote server: reading it there loads the model)."""
        strategy = Strategy(settings.get("strategy", Strategy.QUICK))
        grid = str(getattr(settings.get("per_variant"), "value", settings.get("per_variant"))) == "grid"
        loads = "loads (each measured)" if grid else "loads (each variant searched from the first to the last)"
        text = (f"Plans <b>{html.escape(model)}</b> (the first model selected) with the sweep's batch sizes, {loads} "
                "and settings above, within the budget below (the panel's latency budget: the decision view's "
                "under the results table is the same field).")
        spec, _ = make_settings(models=[model], **{k: v for k, v in settings.items() if k not in PLAN_SETTINGS})
        if spec.server.launch_mode is LaunchMode.REMOTE:
            return text
        own = own_config(spec, model)
        space = settings.get("space")
        if self._gpu_count is None:
            self._gpu_count = len(visible_gpus())
        found = variants(read_space(space) if space is not None else default_space(own), own,
                         gpu_count=self._gpu_count)
        how = ("brute measures every one" if strategy is Strategy.BRUTE
               else "quick measures some, climbing from the model's own config")
        return text + f" The space holds {len(found)} variant{'s' if len(found) != 1 else ''}: {how}."

    # -- running --------------------------------------------------------------------------
    def _prepare(self) -> tuple[Callable[[], None], str]:
        model, settings = self.settings()
        constraints = self.constraints(settings)
        self._expected = (None, False)
        objective = Objective(settings.get("objective", Objective.THROUGHPUT))
        self._progress = PlanProgress(constraints, objective)
        self.write_status.value = ""
        self.write_button.disabled = True
        return lambda: self._work(model, settings), f"Planning {html.escape(model)}..."

    def _work(self, model: str, settings: dict[str, Any]) -> None:
        """The plan's thread: plan(), its events into the panel's queue."""
        panel = self._panel
        try:
            self.result = plan(model, on_event=panel._queue_event, runner_hook=self._hook, **settings)
        except BaseException as e:  # noqa: BLE001 - shown in the panel, the kernel lives on
            self._failed(e)

    def _hook(self, runner: SweepRunner) -> None:
        """The plan's runner, before it starts (plan's thread): the panel's table and live
        figure read it as a sweep's; the count of variants it expects."""
        self._expected = (runner.expected_targets, isinstance(runner.targets, Sequence))
        self._take_runner(runner)

    # -- applying (kernel thread) ---------------------------------------------------------
    def apply(self, event: object) -> None:
        """One of the panel's events (a sweep's are not this section's)."""
        if self._due and self._progress is not None and self._progress.apply(event):
            self._changed = True

    def poll(self) -> None:
        """Show what changed: the variants, then the answer once the plan's thread ended."""
        progress = self._progress
        if self._changed and progress is not None:
            self._changed = False
            expected, exact = self._expected
            started = len(progress.lines)
            self.count.value = html.escape(count_text(started, expected, exact)) if self._due and started else ""
            self.progress.value = progress_html(list(progress.lines.values()), "Variants, in the order measured")
        self._answer_and_images()

    def _show_answer(self) -> None:
        result, panel = self.result, self._panel
        if result is None:
            self._say_summary(red(f"Plan failed: {self._failure or 'it ended without an answer'}"))
            panel.validate()
            return
        measured = len(result.ranked)
        best = result.best
        self.count.value = ""
        self.progress.value = progress_html(ranked_lines(result.ranked, best.variant if best else None,
                                                         result.constraints),
                                            f"{measured} variant{'s' if measured != 1 else ''} measured, best first")
        sizing = result.sizing
        stopped = result.sweep.cancelled
        self.answer.value = (f"<b>{html.escape(result.sentence)}</b>"
                             + (f"<br>{html.escape(sizing.text())}" if sizing else "")
                             + ("<br><i>Stopped: the answer is among the variants measured.</i>" if stopped else ""))
        elapsed = time.monotonic() - self._started
        summary = (f"Plan {'stopped' if stopped else 'done'}: {measured} variant{'s' if measured != 1 else ''} "
                   f"of {result.model} measured in {elapsed:.0f} s; "
                   + (f"recommended: {best.variant}." if best else "none meets the constraints."))
        self._say_summary(html.escape(summary))
        self.write_button.disabled = best is None
        self.config_path.placeholder = str(config_path("", panel.export_field.value))
        self._draw_chart()
        panel.validate()  # Run and Plan again

    def _draw_chart(self) -> None:
        """The Pareto chart."""
        result = self.result
        if result is None:
            return
        best = result.best
        fig = pareto_figure(result.model, result.ranked, result.constraints,
                            recommended=best.variant if best else None, light=self._panel.theme.light)
        self._show_figures({"pareto": fig}, lambda _name: "<plotly chart: the plan>")

    # -- the config -----------------------------------------------------------------------
    def write(self, path: Path | str | None = None, *, replace: bool | None = None) -> Path:
        """Write the recommended config.pbtxt to ``path`` (default: the Config path field,
        else the export folder) and say where, with its changes to the model's own config."""
        result = self.result
        if result is None:
            raise AnalyzerError("no plan has run yet: press Plan first")
        target = config_path(str(path or self.config_path.value), self._panel.export_field.value).resolve()
        wrote = write_config(result, target, replace=self.replace_box.value if replace is None else replace)
        said = "Wrote" if wrote else "Already there, the same:"
        self.write_status.value = (f"{said} <code>{html.escape(str(target))}</code> (variant "
                                   f"{html.escape(result.best.variant if result.best else '')}). {diff_html(result)}")
        return target

    def _write_clicked(self) -> None:
        try:
            self.write()
        except AnalyzerError as e:
            self.write_status.value = red(str(e))
