"""The panel's Pack section (issue 19; docs/packing.md, "The Pack section of the panel"): pack
the models selected onto the fewest GPUs for their target rates, within the panel's latency
budget, and check the plan by measuring each GPU's models together.

Its fields: a target rate per model selected, typed as the command line's ``--target-rate``
is (``mlp_numpy=500, mixed_inputs=200``); the GPU's memory for models (empty: what the
machine gives), the headroom, and whether to validate; the budget's two fields are the
decision view's (one budget for the panel), as the Plan section's are. Pack runs
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
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ipywidgets as w
import traitlets

from analyzer_widgets import api
from analyzer_widgets import events as ev
from analyzer_widgets.config import UNSET, declared
from analyzer_widgets.errors import AnalyzerError, ConfigError
from analyzer_widgets.planning.budget import Budget, plain_number
from analyzer_widgets.planning.packing import PackingPlan
from analyzer_widgets.results import ResultCollector
from analyzer_widgets.runner import SweepRunner
from analyzer_widgets.ui._fields import declaration_of, setting_widget, widget_value
from analyzer_widgets.ui.pack_chart import Verdict, packing_figure
from analyzer_widgets.ui.plan_section import LABEL_WIDTH, PLAN_BUDGET_LABELS, RED
from analyzer_widgets.ui.static import CONFIG, PLOTLY_MIME, ImageRenderer

if TYPE_CHECKING:
    from analyzer_widgets.ui.dashboard import Dashboard

TITLE = "Pack models onto GPUs: the fewest GPUs for each model's target rate, checked by measuring them together"
NO_BUDGET = "Type a latency budget to pack."
NO_RATES = "Type each model's target rate to pack."
#: hints, not errors: what is still to type before Pack can run
HINTS = (NO_BUDGET, NO_RATES)
DEFAULT_HEADROOM_PCT = 20.0
GREEN = "color:#2e7d32"


@dataclass(frozen=True)
class PhaseEnded:
    """One of the runs inside a pack (the models measured alone, a GPU's models measured
    together) ended. The pack's own thread sends the panel one SweepFinished, at the end: the
    panel takes a SweepFinished as the end of its run (its Stop button, its status line)."""

    finished: ev.SweepFinished


def target_rates(text: str, models: Sequence[str]) -> dict[str, float]:
    """The target rates typed as ``model=rate`` items separated by commas, one for each model
    in ``models`` (the ones selected), each a number of infer/s above 0. A ConfigError names
    the model and the value.

    >>> target_rates("a=500, b=2e3", ["a", "b"])
    {'a': 500.0, 'b': 2000.0}
    """
    rates: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not name:
            raise ConfigError("target_rates", item, "is not model=rate: type one per model, as mlp_numpy=500")
        field = f"target_rates[{name!r}]"
        if name not in models:
            raise ConfigError(field, value, f"{name!r} is not among the models selected ({', '.join(models)}): "
                                            "select it above, or leave it out")
        if name in rates:
            raise ConfigError(field, value, "is given twice: give each model one target rate")
        try:
            rate = float(value)
        except ValueError:
            rate = math.nan
        if not (math.isfinite(rate) and rate > 0):
            raise ConfigError(field, value, "must be a number of infer/s above 0")
        rates[name] = rate
    missing = [m for m in models if m not in rates]
    if missing:
        raise ConfigError(f"target_rates[{missing[0]!r}]", "", "the model is selected but has no target rate: "
                                                               f"type {missing[0]}=RATE, or unselect it")
    return rates


def rates_example(models: Sequence[str]) -> str:
    """The Target rates field's placeholder: its form, with the models selected."""
    examples = (500, 200, 1000, 300, 100)
    return ", ".join(f"{m}={examples[i % len(examples)]}" for i, m in enumerate(models))


def optional_number(name: str, text: str, *, low: float, below: float = math.inf, zero: bool = False) -> float | None:
    """A number field: empty is None (the default); else a number from ``low`` (above it unless
    ``zero``) to below ``below``."""
    text = text.strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    ok = math.isfinite(number) and (number >= low if zero else number > low) and number < below
    if not ok:
        span = f"from {low:g} to below {below:g}" if math.isfinite(below) else f"{'of' if zero else 'above'} {low:g}"
        raise ConfigError(name, text, f"must be a number {span}{' or more' if zero and not math.isfinite(below) else ''}")
    return number


def verdicts_of(checks: Sequence[Any]) -> dict[int, Verdict]:
    """Each validated GPU's verdict, by index, from the pack's checks (each with ``gpu``,
    ``passed`` and ``reason``)."""
    return {int(c.gpu): Verdict(bool(c.passed), str(c.reason or "")) for c in checks}


def checks_html(checks: Sequence[Any]) -> str:
    """A line per validated GPU: its models, passed or failed, and why."""
    if not checks:
        return ""
    lines = []
    for c in checks:
        style, said = (GREEN, "validated") if c.passed else (RED, "failed")
        models = ", ".join(str(m) for m in getattr(c, "models", ()))
        lines.append(f"<li><b>GPU {int(c.gpu)}</b> ({html.escape(models)}): <span style='{style};font-weight:600'>"
                     f"{said}</span>" + (f": {html.escape(str(c.reason))}" if c.reason else "") + "</li>")
    return "<b>Measured together</b><ul style='margin:2px 0'>" + "".join(lines) + "</ul>"


#: the plan's table: (column of PackingPlan.to_frame(), header, how a value is shown)
TABLE = (
    ("gpu", "GPU", str),
    ("model", "Model", str),
    ("rate_infer_per_s", "Rate (infer/s)", plain_number),
    ("target_rate_infer_per_s", "Of target (infer/s)", plain_number),
    ("capacity_infer_per_s", "Capacity there (infer/s)", plain_number),
    ("capacity_measured", "Capacity", lambda v: "measured" if v else "assumed"),
    ("compute_share", "Share of GPU compute", lambda v: f"{plain_number(100 * v, 2)}%"),
    ("memory_mb", "Memory (MB)", plain_number),
)


def plan_table_html(plan: PackingPlan) -> str:
    """The plan as a table, a row per replica (PackingPlan.to_frame(), its figures rounded)."""
    cell = "padding:1px 8px;font-size:12px;text-align:right;white-space:nowrap"
    head = "".join(f"<th style='{cell}'>{html.escape(header)}</th>" for _, header, _ in TABLE)
    body = "".join("<tr>" + "".join(f"<td style='{cell}'>{html.escape(show(record[column]))}</td>"
                                    for column, _, show in TABLE) + "</tr>"
                   for record in plan.to_frame().to_dict("records"))
    return (f"<div style='overflow:auto;max-height:260px'><table class='aw-pack-table'><thead><tr>{head}</tr>"
            f"</thead><tbody>{body}</tbody></table></div>")


class PackProgress:
    """Which part of a running pack is measuring, from the engine's events."""

    def __init__(self) -> None:
        self.phase = 0  # runs started so far
        self.text = ""

    def apply(self, event: object) -> bool:
        """Take one event; whether the text changed."""
        if isinstance(event, ev.SweepStarted):
            self.phase += 1
            self.text = f"Run {self.phase}: measuring each model alone within the budget"
        elif isinstance(event, ev.ColocatedPointStarted):
            how = "together" if event.together else "alone, its neighbours idle"
            searched = f"; searching {event.searched}'s highest load" if event.searched else ""
            self.text = (f"Run {self.phase}, validating {event.group}: {'; '.join(event.loads)} {how}{searched} "
                         f"(point {event.index + 1} of {event.total})")
        elif isinstance(event, PhaseEnded):
            self.text = f"Run {self.phase} {'stopped' if event.finished.cancelled else 'done'}"
        else:
            return False
        return True


def _widened(widget: w.ValueWidget) -> w.ValueWidget:
    widget.style.description_width = LABEL_WIDTH
    return widget


class PackSection:
    """The Pack section of a :class:`~analyzer_widgets.ui.dashboard.Dashboard` (module docstring)."""

    def __init__(self, panel: Dashboard) -> None:
        self._panel = panel
        self.result: Any = None  # the PackResult, once a pack has answered
        #: a pack is the panel's last run: its answer, not a sweep's charts, follows it
        self.active = False
        self._due = False  # a pack ran and its answer is not shown yet
        self._failure: str | None = None
        self._stop_asked = False
        self._runners: list[SweepRunner] = []
        self._progress = PackProgress()
        self._changed = False
        self._started = 0.0
        self._images = ImageRenderer()
        self._panel_ok = True
        self._summary = ""
        self._make_fields()
        self._make_views()
        self.widget = self._layout()
        self._wire()

    # -- building ------------------------------------------------------------------------
    def _make_fields(self) -> None:
        text = {"style": {"description_width": LABEL_WIDTH}, "layout": w.Layout(width="560px")}
        self.target_field = w.Text(description="Target rates", **text,
                                   tooltip="infer/s to serve of each model selected, as model=rate separated by "
                                           "commas (as --target-rate on the command line)")
        self.memory_field = w.Text(description="GPU memory (MB)", **text,
                                   placeholder="each GPU's, less the empty server's (on a CPU machine: the host's)",
                                   tooltip="the memory models may use on one GPU; less than the GPU has keeps "
                                           "memory for something else")
        self.headroom_field = w.Text(description="Headroom %", **text, placeholder=f"{DEFAULT_HEADROOM_PCT:g}",
                                     tooltip="of each GPU's compute and memory, kept free for bursts")
        self.validate_box = w.Checkbox(value=True, description="Validate: measure each GPU's models together at "
                                                               "their planned rates, and re-plan once if one fails",
                                       indent=False, layout=w.Layout(width="auto"))
        self.errors = {name: w.HTML() for name in ("target_rates", "gpu_memory_mb", "headroom_pct")}

    def _make_views(self) -> None:
        panel = self._panel
        self.about = w.HTML()
        # the panel's one latency budget, linked both ways to the decision view's, as the Plan section's
        self.budget_fields: dict[str, w.ValueWidget] = {}
        for f, declaration in declared(Budget):
            label = PLAN_BUDGET_LABELS[f.name]
            self.budget_fields[f.name] = _widened(setting_widget(f, dataclasses.replace(declaration, panel=label),
                                                                 UNSET))
            traitlets.link((panel.budget_fields[f.name], "value"), (self.budget_fields[f.name], "value"))
        self.budget_fields["latency_budget_ms"].placeholder = panel.budget_fields["latency_budget_ms"].placeholder
        self.pack_button = w.Button(description="Pack", button_style="primary", icon="th-large",
                                    layout=w.Layout(width="100px", flex="0 0 auto"))
        # Stop for a pack: the panel's Stop (one run at a time), named so that the page has one "Stop"
        self.stop_button = w.Button(description="Stop pack", button_style="danger", icon="stop", disabled=True,
                                    layout=w.Layout(width="110px", flex="0 0 auto"))
        traitlets.dlink((panel.stop_button, "disabled"), (self.stop_button, "disabled"))
        self.status = w.HTML()
        self.phase = w.HTML()
        self.chart_box = w.Output(layout=w.Layout(width="100%"))
        self.answer = w.HTML()
        self.checks = w.HTML()
        self.table = w.HTML()

    def _layout(self) -> w.Accordion:
        row = w.Layout(flex_flow="row wrap")
        box = w.VBox([
            self.about,
            w.HBox(list(self.budget_fields.values()), layout=row),
            w.HBox([self.target_field, self.errors["target_rates"]], layout=row),
            w.HBox([self.memory_field, self.errors["gpu_memory_mb"]], layout=row),
            w.HBox([self.headroom_field, self.errors["headroom_pct"]], layout=row),
            self.validate_box,
            w.HBox([self.pack_button, self.stop_button, self.status], layout=row),
            self.phase, self.chart_box, self.answer, self.checks, self.table,
        ])
        box.add_class("aw-pack")
        section = w.Accordion(children=[box])
        section.set_title(0, TITLE)
        section.selected_index = None
        return section

    def _wire(self) -> None:
        for widget in (self.target_field, self.memory_field, self.headroom_field, *self.budget_fields.values()):
            widget.observe(lambda _change: self.validate(), names="value")
        self._panel.model_picker.observe(lambda _change: self.validate(), names="value")
        self.pack_button.on_click(lambda _b: self.run())
        self.stop_button.on_click(lambda _b: self._panel.stop())
        self._panel.theme.observe(lambda _change: self._draw_chart(), names="light")

    # -- the settings ---------------------------------------------------------------------
    def models(self) -> list[str]:
        chosen = list(self._panel.model_picker.value)
        if not chosen:
            raise ConfigError("models", (), "select the models to pack in the list above")
        return chosen

    def budget(self) -> Budget:
        fields = self._panel.budget_fields
        value = widget_value(fields["latency_budget_ms"], declaration_of(Budget, "latency_budget_ms"))
        if value is UNSET:
            raise ConfigError("latency_budget_ms", "", "type the latency budget each model must serve within "
                                                       "(Budget (ms))")
        return Budget(value, fields["latency_statistic"].value)

    def own_settings(self) -> dict[str, Any]:
        """The pack's own settings as its fields give them, each checked (a ConfigError names
        the field and the value)."""
        settings: dict[str, Any] = {}
        memory = optional_number("gpu_memory_mb", self.memory_field.value, low=0)
        if memory is not None:
            settings["gpu_memory_mb"] = memory
        headroom = optional_number("headroom_pct", self.headroom_field.value, low=0, below=100, zero=True)
        settings["headroom_pct"] = DEFAULT_HEADROOM_PCT if headroom is None else headroom
        settings["validate"] = bool(self.validate_box.value)
        settings["target_rates"] = target_rates(self.target_field.value, self.models())
        return settings

    def settings(self) -> tuple[list[str], dict[str, Any]]:
        """The models and the keyword settings :func:`analyzer_widgets.pack` gets: the panel's
        sweep settings with the panel's budget (in place of its Budget search), and the pack's own."""
        panel = self._panel
        settings = panel.spec_settings()
        models = settings.pop("models")
        if panel.save_mode.value != "panel":
            settings["export_path"] = panel.export_field.value
        budget = self.budget()
        settings.update(latency_budget_ms=budget.latency_budget_ms, latency_statistic=budget.latency_statistic)
        settings.update(self.own_settings())
        return models, settings

    # -- validation -----------------------------------------------------------------------
    def validate(self, panel_ok: bool | None = None) -> bool:
        """Check the pack's fields (each error beside its field, named); Pack is enabled when
        they and the panel's are good, a budget is typed and nothing runs."""
        if panel_ok is not None:
            self._panel_ok = panel_ok
        for error in self.errors.values():
            error.value = ""
        chosen = list(self._panel.model_picker.value)
        self.target_field.placeholder = rates_example(chosen) if chosen else "select models above"
        self.about.value = self._about(chosen)
        problem = self._check()
        ok = not problem and self._panel_ok
        if not self._panel.running:
            self.status.value = (self._summary if ok else problem if problem in HINTS
                                 else f"<span style='{RED}'>{html.escape(problem)}</span>" if problem
                                 else "<span style='color:#a60'>Fix the panel's fields marked red first.</span>")
        self.pack_button.disabled = not ok or self._panel.running
        return ok

    def _check(self) -> str:
        """The first problem with what Pack would run ("" if none), also said beside its field;
        nothing typed yet is a hint, not an error."""
        try:
            self.own_settings()
        except ConfigError as e:
            if e.field.startswith("target_rates") and not self.target_field.value.strip():
                return NO_RATES
            where = "target_rates" if e.field.startswith("target_rates") or e.field == "models" else e.field
            if where in self.errors:
                self.errors[where].value = f"<span style='{RED}'>{html.escape(str(e))}</span>"
            return str(e)
        try:
            self.budget()
        except ConfigError as e:
            return NO_BUDGET if e.value == "" else str(e)
        return ""

    @staticmethod
    def _about(models: Sequence[str]) -> str:
        if len(models) < 2:
            return ("Packs the models selected above (select two or more to see which share a GPU) with the "
                    "sweep's batch sizes, loads and settings, within the budget below.")
        return (f"Packs <b>{html.escape(', '.join(models))}</b> (the models selected) onto the fewest GPUs: each "
                "model's capacity within the budget below is measured alone with the sweep's batch sizes, loads "
                "and settings above, then each GPU's models are measured together at their planned rates.")

    # -- running --------------------------------------------------------------------------
    def run(self) -> None:
        """Start a pack with the panel's settings, off the kernel's thread."""
        panel = self._panel
        if panel.running:
            return
        panel.validate()
        if self.pack_button.disabled:
            return  # the section's status line says why
        try:
            models, settings = self.settings()
        except ConfigError as e:
            self.status.value = f"<span style='{RED}'>{html.escape(str(e))}</span>"
            return
        self.widget.selected_index = 0
        self.active, self._due, self._failure, self._stop_asked = True, True, None, False
        self.result = None
        self._summary = ""
        self._runners = []
        self._progress = PackProgress()
        self._changed = True
        self.chart_box.outputs = ()
        self.answer.value = self.checks.value = self.table.value = ""
        self.status.value = f"Packing {html.escape(', '.join(models))}..."
        self._started = time.monotonic()
        panel._runner, panel._collector = None, None  # the pack's, once pack() made them (the hook)
        panel._launch(lambda: self._work(models, settings))
        self.pack_button.disabled = True

    def _work(self, models: list[str], settings: dict[str, Any]) -> None:
        """The pack's thread: pack(), its events into the panel's queue; one SweepFinished at the end."""
        panel = self._panel
        started = time.monotonic()
        try:
            self.result = api.pack(models,  # type: ignore[attr-defined]  # aw.pack: being built
                                    on_event=self._event, runner_hook=self._hook, **settings)
        except BaseException as e:  # noqa: BLE001 - shown in the panel, the kernel lives on
            self._failure = str(e) if isinstance(e, AnalyzerError) else f"{type(e).__name__}: {e}"
            panel._error = self._failure
            return
        stopped = any(r.stopping for r in self._runners)
        panel._events.put(ev.SweepFinished(cancelled=stopped, error=None, elapsed_s=time.monotonic() - started))

    def _event(self, event: object) -> None:
        """An event of the pack (its thread): to the panel, a run's end as this section's own."""
        if isinstance(event, ev.SamplesTaken):
            return
        self._panel._events.put(PhaseEnded(event) if isinstance(event, ev.SweepFinished) else event)

    def _hook(self, runner: SweepRunner) -> None:
        """Each runner of the pack, before it starts (pack's thread): Stop reaches it, the live
        figure reads its samplers, and the panel's table takes the rows of the models measured
        alone (a co-located run's rows are this section's, at the end)."""
        from analyzer_widgets.colocation import ColocatedRunner

        self._runners.append(runner)
        if not isinstance(runner, ColocatedRunner):
            collector = ResultCollector(runner.spec)
            runner.subscribe(collector)
            self._panel._collector = collector
        self._panel._runner = runner
        if self._stop_asked:
            runner.stop()

    def stop(self) -> None:
        """Stop asked: the runner in flight stops (the panel's Stop reaches it), and any the
        pack makes after it stops as soon as it is made."""
        self._stop_asked = True

    @property
    def pending(self) -> bool:
        """Whether the panel should keep polling: an answer or a chart's image to show."""
        return self._due or self._images.pending

    def wait_images(self, timeout: float) -> bool:
        return self._images.wait(timeout)

    # -- applying (kernel thread) ---------------------------------------------------------
    def apply(self, event: object) -> None:
        """One of the panel's events (a sweep's or a plan's are not this section's)."""
        if not self._due:
            return
        if isinstance(event, ev.SweepStarted) and self._progress.phase:
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
            self.phase.value = html.escape(self._progress.text) if self._due else ""
        if self._due and self._panel._finished_shown and not self._panel.running:
            self._due = False
            self._show_answer()
        done = self._images.take()
        if done is not None:
            outputs, _ = done
            self.chart_box.outputs = tuple({"output_type": "display_data", "data": bundle, "metadata": {}}
                                           for bundle in outputs.values())

    def _show_answer(self) -> None:
        result, panel = self.result, self._panel
        self.phase.value = ""
        if result is None:
            message = f"Pack failed: {self._failure or 'it ended without an answer'}"
            self._summary = self.status.value = panel.status.value = f"<span style='{RED}'>{html.escape(message)}</span>"
            panel.validate()
            return
        plan = result.plan
        stopped = any(r.stopping for r in self._runners)
        self.answer.value = (f"<b>{html.escape(result.sentence)}</b>"
                             + ("<br><i>Stopped: the plan rests on what was measured before Stop.</i>" if stopped
                                else ""))
        self.checks.value = checks_html(result.checks)
        self.table.value = plan_table_html(plan)
        elapsed = time.monotonic() - self._started
        summary = (f"Pack {'stopped' if stopped else 'done'}: {plan.gpu_count} GPU{'s' if plan.gpu_count != 1 else ''} "
                   f"for {len(plan.needs)} models in {elapsed:.0f} s")
        summary += "." if not result.checks else (
            "; validated." if all(c.passed for c in result.checks) else "; validation failed on some GPUs.")
        self._summary = self.status.value = panel.status.value = html.escape(summary)
        self._draw_chart()
        panel.validate()  # Run, Plan and Pack again

    def figure(self) -> Any:
        """The GPU-by-GPU chart of the last pack's plan, its GPUs' validation marked."""
        result = self.result
        if result is None:
            raise AnalyzerError("no pack has run yet: press Pack first")
        return packing_figure(result.plan, verdicts=verdicts_of(result.checks), light=self._panel.theme.light)

    def _draw_chart(self) -> None:
        """The chart: the figure at once, its image when kaleido has drawn it (what a saved
        notebook shows without a kernel)."""
        if self.result is None:
            return
        fig = self.figure()
        figure = {**json.loads(fig.to_json()), "config": CONFIG}
        self.chart_box.outputs = ({"output_type": "display_data", "metadata": {},
                                   "data": {PLOTLY_MIME: figure, "text/plain": "<plotly chart: the packing plan>"}},)
        self._images.submit({"packing": fig})
        self._panel._schedule_tick()

