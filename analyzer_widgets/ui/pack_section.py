"""The panel's Pack section (issue 19; docs/packing.md, "The Pack section of the panel"): pack
the models selected onto the fewest GPUs for their target rates, within the panel's latency
budget, and check the plan by measuring each GPU's models together.

Its fields: a target rate per model selected, typed as the command line's ``--target-rate``
is (``mlp_numpy=500, mixed_inputs=200``); the GPU's memory for models (empty: what the
machine gives), the headroom, whether to validate, and whether a capacity counts at its
interval's low end; the budget's two fields are the decision view's (one budget for the
panel), as the Plan section's are. Pack runs
:func:`analyzer_widgets.api.pack` off the kernel's thread with the panel's sweep settings;
its events reach the panel's queue as a sweep's do, so the status line, the live figure and
Stop work for it, and this section says which part of the work is running (each model
measured alone, then each GPU's models together). When it ends: the GPU-by-GPU chart
(ui/pack_chart.py), the answer in one sentence, each GPU's validation, and the plan as a table.

    panel = aw.Dashboard(models=["mlp_numpy", "mixed_inputs"])
    panel.budget_fields["latency_budget_ms"].value = "20"
    panel.pack_section.target_field.value = "mlp_numpy=500, mixed_inputs=200"
    panel.pack_section.run(); panel.wait()
    panel.pack_section.result.sentence
"""

from __future__ import annotations

import dataclasses
import html
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from analyzer_widgets import api
from analyzer_widgets import events as ev
from analyzer_widgets.config import UNSET, declared
from analyzer_widgets.errors import AnalyzerError, ConfigError
from analyzer_widgets.planning.budget import Budget, plain_number
from analyzer_widgets.planning.packing import (
    GpuCheck,
    PackOptions,
    PackResult,
    parse_target_rates,
    target_rates_for,
)
from analyzer_widgets.runner import SweepRunner
from analyzer_widgets.ui._fields import declaration_of, setting_widget, widget_value
from analyzer_widgets.ui._run_section import LABEL_WIDTH, RED, RunSection, red, widened
from analyzer_widgets.ui.pack_chart import Verdict, packing_figure

if TYPE_CHECKING:
    from analyzer_widgets.ui.dashboard import Dashboard

TITLE = "Pack models onto GPUs: the fewest GPUs for each model's target rate, checked by measuring them together"
NO_BUDGET = "Type a latency budget to pack."
NO_RATES = "Type each model's target rate to pack."
#: hints, not errors: what is still to type before Pack can run
HINTS = (NO_BUDGET, NO_RATES)
#: the checkboxes' labels: their help says what they do, where their declared label ("Validate") would not
CHECKBOX_LABELS = {
    "validate": "Validate: measure each GPU's models together at their planned rates, and re-plan once if one fails",
    # declared without a panel label; the panel needs it where a busy machine's short windows
    # scatter too much for an interval (pack's refusal then says to turn it off)
    "interval_low": "Count each model's capacity at the low end of its throughput's 95% interval",
}
GREEN = "color:#2e7d32"


@dataclass(frozen=True)
class PhaseEnded:
    """One of the runs inside a pack (the models measured alone, a GPU's models measured
    together) ended. The pack's own thread sends the panel one SweepFinished, at the end: the
    panel takes a SweepFinished as the end of its run (its Stop button, its status line)."""

    finished: ev.SweepFinished


def target_rates(text: str, models: Sequence[str]) -> dict[str, float]:
    """The Target rates field's text (``model=rate`` items separated by commas, as the command
    line's ``--target-rate``), one for each model in ``models`` (the ones selected), each a
    number of infer/s above 0: the pack's own parse and check (planning/packing.py). A
    ConfigError names the model and the value.

    >>> target_rates("a=500, b=2e3", ["a", "b"])
    {'a': 500.0, 'b': 2000.0}
    """
    return target_rates_for(parse_target_rates("target_rates", text), models)


def rates_example(models: Sequence[str]) -> str:
    """The Target rates field's placeholder: its form, with the models selected."""
    examples = (500, 200, 1000, 300, 100)
    return ", ".join(f"{m}={examples[i % len(examples)]}" for i, m in enumerate(models))


def verdicts_of(checks: Sequence[GpuCheck]) -> dict[int, Verdict]:
    """Each validated GPU's verdict, by index."""
    return {c.gpu: Verdict(c.passed, c.reason) for c in checks}


def checks_html(checks: Sequence[GpuCheck], heading: str) -> str:
    """A line per GPU measured together: its models, validated or failed, and what was
    measured or what failed."""
    if not checks:
        return ""
    lines = []
    for c in checks:
        style, said = (GREEN, "validated") if c.passed else (RED, "failed")
        lines.append(f"<li><b>GPU {c.gpu}</b> ({html.escape(', '.join(c.models))}): "
                     f"<span style='{style};font-weight:600'>{said}</span>"
                     + (f": {html.escape(c.reason)}" if c.reason else "") + "</li>")
    return f"<b>{html.escape(heading)}</b><ul style='margin:2px 0'>" + "".join(lines) + "</ul>"


def _share(value: float) -> str:
    return f"{plain_number(100 * value, 2)}%"


def _figure(value: float) -> str:
    return plain_number(value) if math.isfinite(value) else ""  # not measured together: no figure


#: the plan's table: (column of PackResult.to_frame(), header, how a value is shown); the
#: latency measured together is added by the budget's statistic
TABLE: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("gpu", "GPU", str),
    ("model", "Model", str),
    ("rate_infer_per_s", "Rate (infer/s)", plain_number),
    ("target_rate_infer_per_s", "Of target (infer/s)", plain_number),
    ("check", "Check", str),
    ("together_throughput_infer_per_s", "Together (infer/s)", _figure),
    ("capacity_infer_per_s", "Capacity there (infer/s)", plain_number),
    ("capacity_measured", "Capacity", lambda v: "measured" if v else "assumed"),
    ("compute_share", "Share of GPU compute", _share),
    ("memory_mb", "Memory (MB)", plain_number),
    ("batch_size", "Batch", str),
)
#: where the latency measured together goes: after the throughput measured together
TOGETHER_LATENCY_AT = 6


def plan_table_html(result: PackResult) -> str:
    """The final plan as a table, a row per replica (PackResult.to_frame(), its figures
    rounded): where it goes, what it serves and takes, and its GPU's check."""
    statistic = result.constraints.statistic
    columns = list(TABLE)
    columns.insert(TOGETHER_LATENCY_AT, (f"together_{statistic.column}", f"Together {statistic.label} (ms)", _figure))
    cell = "padding:1px 8px;font-size:12px;text-align:right;white-space:nowrap"
    colour = {"passed": f";{GREEN};font-weight:600", "failed": f";{RED};font-weight:600"}
    head = "".join(f"<th style='{cell}'>{html.escape(header)}</th>" for _, header, _ in columns)
    body = "".join("<tr>" + "".join(
        f"<td style='{cell}{colour.get(str(record[column]), '') if column == 'check' else ''}'>"
        f"{html.escape(show(record[column]))}</td>" for column, _, show in columns) + "</tr>"
        for record in result.to_frame().to_dict("records"))
    return (f"<div style='overflow:auto;max-height:260px'><table class='aw-pack-table'><thead><tr>{head}</tr>"
            f"</thead><tbody>{body}</tbody></table></div>")


#: how pack() says each of its steps: an information notice that starts so
STEP_PREFIX = "pack: "


class PackProgress:
    """Which step of a running pack is under way (pack()'s own notices: measuring the models
    alone, the plan, measuring a GPU's models together, the re-plan) and what it measures now
    (the engine's events)."""

    def __init__(self) -> None:
        self.runs = 0  # runs started so far: each its own server and clock
        self.step = ""
        self.point = ""
        self._together = False  # a co-located run: its points say more than each model's PointStarted

    @property
    def text(self) -> str:
        return "\n".join(part for part in (self.step, self.point) if part)

    def apply(self, event: object) -> bool:
        """Take one event; whether the text changed."""
        if isinstance(event, ev.Notice) and event.level is ev.Level.INFO and event.message.startswith(STEP_PREFIX):
            said = event.message[len(STEP_PREFIX):]
            self.step, self.point = said[:1].upper() + said[1:], ""
        elif isinstance(event, ev.SweepStarted):
            self.runs += 1
            self._together = False
        elif isinstance(event, ev.PointStarted) and not self._together:
            self.point = f"{event.model}: point {event.index + 1} of {event.total}"
        elif isinstance(event, ev.ColocatedPointStarted):
            self._together = True
            how = "together" if event.together else "alone"
            searched = f", searching {event.searched}'s highest rate" if event.searched else ""
            self.point = (f"{how} on {event.group}{searched} (point {event.index + 1} of about {event.total}): "
                          + "; ".join(event.loads))
        elif isinstance(event, PhaseEnded):
            self.point = ""
        else:
            return False
        return True


class PackSection(RunSection):
    """The Pack section of a :class:`~analyzer_widgets.ui.dashboard.Dashboard` (module docstring)."""

    def __init__(self, panel: Dashboard) -> None:
        super().__init__(panel)
        self._runners: list[SweepRunner] = []
        self._progress = PackProgress()
        self._make_fields()
        self._make_views()
        self.widget = self._layout()
        self._wire((self.target_field, *self.fields.values()))

    # -- building ------------------------------------------------------------------------
    def _make_fields(self) -> None:
        """The Target rates field, and a field per pack setting declared with a panel label
        (PackOptions: GPU memory, headroom, validate) or given one here (the capacity's
        interval), made as the sweep's and the plan's are."""
        self.target_field = w.Text(description="Target rates (infer/s)", style={"description_width": LABEL_WIDTH},
                                   layout=w.Layout(width="560px"),
                                   tooltip=declaration_of(PackOptions, "target_rates").help)
        self.fields: dict[str, w.ValueWidget] = {}
        for f, declaration in declared(PackOptions):
            label = CHECKBOX_LABELS.get(f.name) or declaration.panel
            if label:
                field = setting_widget(f, dataclasses.replace(declaration, panel=label), UNSET)
                if isinstance(field, w.Checkbox):
                    field.indent, field.layout.width = False, "auto"
                self.fields[f.name] = widened(field)
        self.errors = {name: w.HTML() for name in ("target_rates", *self.fields)}

    def _make_views(self) -> None:
        self.pack_button = self._make_run_views("Pack", "th-large")
        self.phase = w.HTML()
        self.checks = w.HTML()
        self.table = w.HTML()

    def _layout(self) -> w.Accordion:
        row = w.Layout(flex_flow="row wrap")
        return self._accordion([
            w.HBox([self.target_field, self.errors["target_rates"]], layout=row),
            *(w.HBox([field, self.errors[name]], layout=row) for name, field in self.fields.items()),
        ], [self.phase, self.chart_box, self.answer, self.checks, self.table], "aw-pack", TITLE)

    # -- the settings ---------------------------------------------------------------------
    def models(self) -> list[str]:
        chosen = list(self._panel.model_picker.value)
        if not chosen:
            raise ConfigError("models", (), "select the models to pack in the list above")
        return chosen

    def budget(self) -> Budget:
        return self._budget("each model must serve within")

    def own_settings(self) -> dict[str, Any]:
        """The pack's own settings as their fields give them, each checked by its declaration
        (a ConfigError names the field and the value); the target rates last, against the
        models selected."""
        settings: dict[str, Any] = {}
        for f, declaration in declared(PackOptions):  # each field's own check, as PackOptions runs it
            if f.name in self.fields:
                value = widget_value(self.fields[f.name], declaration)
                if value is not UNSET:
                    settings[f.name] = declaration.check(f.name, value) if declaration.check else value
        settings["target_rates"] = target_rates(self.target_field.value, self.models())
        return settings

    def settings(self) -> tuple[list[str], dict[str, Any]]:
        """The models and the keyword settings :func:`analyzer_widgets.pack` gets: the panel's
        sweep settings with the panel's budget (in place of its Budget search), and the pack's own."""
        models, settings = self._panel_settings()
        self._with_budget(settings).update(self.own_settings())
        return models, settings

    # -- validation -----------------------------------------------------------------------
    hints = HINTS

    def _check(self) -> str:
        """The first problem with what Pack would run ("" if none), also said beside its field;
        nothing typed yet is a hint, not an error. The models selected give the Target rates
        field's example and the sentence on what Pack does."""
        chosen = list(self._panel.model_picker.value)
        self.target_field.placeholder = rates_example(chosen) if chosen else "select models above"
        self.about.value = self._about(chosen)
        try:
            self.own_settings()
        except ConfigError as e:
            if e.field.startswith("target_rates") and not self.target_field.value.strip():
                return NO_RATES
            where = "target_rates" if e.field.startswith("target_rates") or e.field == "models" else e.field
            if where in self.errors:
                self.errors[where].value = red(str(e))
            return str(e)
        return self._budget_problem(NO_BUDGET)

    @staticmethod
    def _about(models: Sequence[str]) -> str:
        if len(models) < 2:
            return ("Packs the models selected above (select two or more to see which share a GPU) with the "
                    "sweep's batch sizes, loads and settings, within the budget below.")
        return (f"Packs <b>{html.escape(', '.join(models))}</b> (the models selected) onto the fewest GPUs: each "
                "model's capacity within the budget below is measured alone with the sweep's batch sizes, loads "
                "and settings above, then each GPU's models are measured together at their planned rates.")

    # -- running --------------------------------------------------------------------------
    def _prepare(self) -> tuple[Callable[[], None], str]:
        models, settings = self.settings()
        self._runners = []
        self._progress = PackProgress()
        self.checks.value = self.table.value = ""
        return lambda: self._work(models, settings), f"Packing {html.escape(', '.join(models))}..."

    def _work(self, models: list[str], settings: dict[str, Any]) -> None:
        """The pack's thread: pack(), its events into the panel's queue; one SweepFinished at the end."""
        started = time.monotonic()
        try:
            self.result = api.pack(models, on_event=self._event, runner_hook=self._hook, **settings)
        except BaseException as e:  # noqa: BLE001 - shown in the panel, the kernel lives on
            self._failed(e)
            return
        stopped = any(r.stopping for r in self._runners)
        self._panel._events.put(ev.SweepFinished(cancelled=stopped, error=None, elapsed_s=time.monotonic() - started))

    def _event(self, event: object) -> None:
        """An event of the pack (its thread): to the panel, a run's end as this section's own."""
        self._panel._queue_event(PhaseEnded(event) if isinstance(event, ev.SweepFinished) else event)

    def _hook(self, runner: SweepRunner) -> None:
        """Each runner of the pack: the panel's table takes the rows of the models measured
        alone (a co-located run's rows are this section's, at the end)."""
        self._runners.append(runner)
        self._take_runner(runner, collect=not runner.measures_together)

    # -- applying (kernel thread) ---------------------------------------------------------
    def apply(self, event: object) -> None:
        """One of the panel's events (a sweep's or a plan's are not this section's)."""
        if not self._due:
            return
        if isinstance(event, ev.SweepStarted) and self._progress.runs:
            self._restart_live()
        if self._progress.apply(event):
            self._changed = True

    def _restart_live(self) -> None:
        """A new run inside the pack has its own clock (its samplers' start): the live figure
        starts again from 0 s with it, rather than drawing its samples over the last run's."""
        panel = self._panel
        panel._series.clear()
        panel._last_sample_t.clear()
        panel._marks.clear()
        panel._baseline_levels.clear()

    def poll(self) -> None:
        """Show what changed: the part measuring now, then the answer once the pack's thread ended."""
        if self._changed:
            self._changed = False
            self.phase.value = html.escape(self._progress.text).replace("\n", "<br>") if self._due else ""
        self._answer_and_images()

    def _show_answer(self) -> None:
        result, panel = self.result, self._panel
        self.phase.value = ""
        if result is None:
            why = self._failure or "it ended without an answer"
            if self._stop_asked:  # stopped before there was a plan: no failure
                self._say_summary(html.escape(f"Pack stopped: {why}"))
            else:
                self._say_summary(red(f"Pack failed: {why}"))
            panel.validate()
            return
        plan = result.plan
        stopped = any(r.stopping for r in self._runners)
        notes = "".join(f"<br><small>{html.escape(note)}</small>" for note in result.notes)
        self.answer.value = (f"<b>{html.escape(result.sentence)}</b>" + notes
                             + ("<br><i>Stopped: the plan rests on what was measured before Stop.</i>" if stopped
                                else ""))
        self.checks.value = (checks_html(result.first_checks, "The first plan, measured together")
                             if result.replanned else "") + checks_html(result.checks, "Measured together")
        self.table.value = plan_table_html(result)
        elapsed = time.monotonic() - self._started
        count = plan.gpu_count
        summary = (f"Pack {'stopped' if stopped else 'done'}: {count} GPU{'s' if count != 1 else ''} for "
                   f"{len(plan.needs)} model{'s' if len(plan.needs) != 1 else ''} in {elapsed:.0f} s; "
                   + ("not validated." if not result.validate
                      else "re-planned once; " * result.replanned + ("validated." if result.validated
                                                                     else "validation failed.")))
        self._say_summary(html.escape(summary))
        self._draw_chart()
        panel.validate()  # Run, Plan and Pack again

    def figures(self) -> dict[str, Any]:
        """The GPU-by-GPU charts of the last pack, each GPU's validation marked: the plan; and
        where it was re-planned, the first plan before it."""
        result = self.result
        if result is None:
            raise AnalyzerError("no pack has run yet: press Pack first")
        light = self._panel.theme.light
        charts = {}
        if result.replanned:
            charts["first"] = packing_figure(result.first, verdicts=verdicts_of(result.first_checks), light=light,
                                             title="The first plan, before the re-plan")
        charts["packing"] = packing_figure(result.plan, verdicts=verdicts_of(result.checks), light=light,
                                           title="Re-planned" if result.replanned else "Packing plan")
        return charts

    def _draw_chart(self) -> None:
        if self.result is not None:
            self._show_figures(self.figures(), lambda name: f"<plotly chart: {name} packing plan>")
