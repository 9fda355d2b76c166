"""What the panel's Plan and Pack sections share: each runs one api call off the kernel's
thread as the panel's one run, within the panel's latency budget, and shows its answer when
the panel has shown the run's end. A section says what it runs and how its answer reads;
this base owns the budget fields, the Run/Stop pair, the thread's start and failure, Stop
for runners not made yet, the polling and the chart with its static image.
"""

from __future__ import annotations

import dataclasses
import html
import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import ipywidgets as w
import traitlets

from analyzer_widgets.config import UNSET, declared
from analyzer_widgets.errors import AnalyzerError, ConfigError
from analyzer_widgets.planning.budget import Budget
from analyzer_widgets.results import ResultCollector
from analyzer_widgets.runner import SweepRunner
from analyzer_widgets.ui._fields import declaration_of, setting_widget, widget_value
from analyzer_widgets.ui.static import CONFIG, PLOTLY_MIME, ImageRenderer

if TYPE_CHECKING:
    from analyzer_widgets.ui.dashboard import Dashboard

RED = "color:#b00"
LABEL_WIDTH = "160px"
#: the budget's fields as the sections label them (the decision view's say "Latency ...")
BUDGET_LABELS = {"latency_budget_ms": "Budget (ms)", "latency_statistic": "Budget statistic"}


def red(text: str) -> str:
    return f"<span style='{RED}'>{html.escape(text)}</span>"


def widened(widget: w.ValueWidget) -> w.ValueWidget:
    """Room for the sections' longer labels ("Target rate (infer/s)")."""
    widget.style.description_width = LABEL_WIDTH
    if isinstance(widget, w.ToggleButtons):
        widget.style.button_width = "110px"
    return widget


class RunSection:
    """One run section of a :class:`~analyzer_widgets.ui.dashboard.Dashboard` (module docstring).
    A subclass makes the views every section has (:meth:`_make_run_views`), lays them out
    with its own (:meth:`_accordion`), and gives its settings, checks, run and answer."""

    widget: w.Accordion
    errors: dict[str, w.HTML]  # beside each field, by the field's name
    #: the problems that are something still to type, said as they are, not as errors
    hints: tuple[str, ...] = ()

    def __init__(self, panel: Dashboard) -> None:
        self._panel = panel
        self.result: Any = None
        #: this section's run is the panel's last: its answer, not a sweep's charts, follows it
        self.active = False
        self._due = False  # a run ended and its answer is not shown yet
        self._failure: str | None = None
        self._stop_asked = False
        self._changed = False
        self._started = 0.0
        self._images = ImageRenderer()
        self._panel_ok = True  # the panel's own fields, as its last validate() found them
        self._summary = ""  # how the last run went, while nothing is wrong with the fields

    # -- building ------------------------------------------------------------------------
    def _make_run_views(self, verb: str, icon: str) -> w.Button:
        """The views every section has; its run button (``verb``), returned for the section
        to name as its own (plan_button, pack_button)."""
        panel = self._panel
        self.about = w.HTML()
        # The panel's one latency budget, shown here too: fields of the same declaration,
        # linked both ways to the decision view's (one value; distinct labels, so a page has
        # one field called "Latency budget (ms)")
        self.budget_fields: dict[str, w.ValueWidget] = {}
        for f, declaration in declared(Budget):
            field = setting_widget(f, dataclasses.replace(declaration, panel=BUDGET_LABELS[f.name]), UNSET)
            field.style.description_width = LABEL_WIDTH
            traitlets.link((panel.budget_fields[f.name], "value"), (field, "value"))
            self.budget_fields[f.name] = field
        self.budget_fields["latency_budget_ms"].placeholder = panel.budget_fields["latency_budget_ms"].placeholder
        self.run_button = w.Button(description=verb, button_style="primary", icon=icon,
                                   layout=w.Layout(width="100px", flex="0 0 auto"))
        # the panel's Stop (one run at a time), named so that the page has one "Stop"
        self.stop_button = w.Button(description=f"Stop {verb.lower()}", button_style="danger", icon="stop",
                                    disabled=True, layout=w.Layout(width="110px", flex="0 0 auto"))
        traitlets.dlink((panel.stop_button, "disabled"), (self.stop_button, "disabled"))
        self.status = w.HTML()
        self.chart_box = w.Output(layout=w.Layout(width="100%"))
        self.answer = w.HTML()
        return self.run_button

    def _accordion(self, fields: list[w.Widget], views: list[w.Widget], css_class: str, title: str) -> w.Accordion:
        """The section, collapsed: what it does, the budget, its ``fields``, Run and Stop with
        the status line, then its ``views``."""
        row = w.Layout(flex_flow="row wrap")
        box = w.VBox([
            self.about,
            w.HBox(list(self.budget_fields.values()), layout=row),
            *fields,
            w.HBox([self.run_button, self.stop_button, self.status], layout=row),
            *views,
        ])
        box.add_class(css_class)
        section = w.Accordion(children=[box])
        section.set_title(0, title)
        section.selected_index = None
        return section

    def _wire(self, fields: Iterable[w.ValueWidget]) -> None:
        """Any of ``fields``, the budget or the models selected changed: check again."""
        for widget in (*fields, *self.budget_fields.values()):
            widget.observe(lambda _change: self.validate(), names="value")
        self._panel.model_picker.observe(lambda _change: self.validate(), names="value")
        self.run_button.on_click(lambda _b: self.run())
        self.stop_button.on_click(lambda _b: self._panel.stop())
        self._panel.theme.observe(lambda _change: self._draw_chart(), names="light")

    # -- the settings ---------------------------------------------------------------------
    def _budget(self, why: str) -> Budget:
        """The panel's latency budget (the decision's fields); ``why``: what the budget is for,
        said when none is typed."""
        fields = self._panel.budget_fields
        value = widget_value(fields["latency_budget_ms"], declaration_of(Budget, "latency_budget_ms"))
        if value is UNSET:
            raise ConfigError("latency_budget_ms", "", f"type the latency budget {why} (Budget (ms))")
        return Budget(value, fields["latency_statistic"].value)

    def _panel_settings(self) -> tuple[list[str], dict[str, Any]]:
        """The panel's models, and its sweep settings with where the results go (its Results
        choice) and its budget (in place of its Budget search)."""
        panel = self._panel
        settings = panel.spec_settings()
        models = settings.pop("models")
        if panel.save_mode.value != "panel":
            settings.update(export_path=panel.export_field.value, resume=panel.save_mode.value == "resume")
        return models, settings

    def _with_budget(self, settings: dict[str, Any]) -> dict[str, Any]:
        budget = self.budget()
        settings.update(latency_budget_ms=budget.latency_budget_ms, latency_statistic=budget.latency_statistic)
        return settings

    def budget(self) -> Budget:
        raise NotImplementedError

    def _budget_problem(self, no_budget: str) -> str:
        """What is wrong with the budget ("" if nothing); ``no_budget`` where none is typed yet
        (a hint, not an error)."""
        try:
            self.budget()
        except ConfigError as e:
            return no_budget if e.value == "" else str(e)
        return ""

    # -- validation -----------------------------------------------------------------------
    def validate(self, panel_ok: bool | None = None) -> bool:
        """Check the section's fields (each error beside its field, named); its Run button is
        enabled when they and the panel's are good, a budget is typed and nothing runs."""
        if panel_ok is not None:
            self._panel_ok = panel_ok
        for error in self.errors.values():
            error.value = ""
        problem = self._check()
        ok = not problem and self._panel_ok
        if not self._panel.running:
            self.status.value = (self._summary if ok else problem if problem in self.hints
                                 else red(problem) if problem
                                 else "<span style='color:#a60'>Fix the panel's fields marked red first.</span>")
        self.run_button.disabled = not ok or self._panel.running
        return ok

    def _check(self) -> str:
        """The first problem with what the section would run ("" if none), also said beside
        its field."""
        raise NotImplementedError

    # -- running --------------------------------------------------------------------------
    def run(self) -> None:
        """Start the section's run with the panel's settings, off the kernel's thread."""
        panel = self._panel
        if panel.running:
            return
        panel.validate()  # the panel's fields and the section's, each said beside its field
        if self.run_button.disabled:
            return  # the section's status line says why
        try:
            work, said = self._prepare()
        except ConfigError as e:
            self.status.value = red(str(e))
            return
        self.widget.selected_index = 0
        self.active, self._due, self._failure, self._stop_asked = True, True, None, False
        self.result = None
        self._summary = ""
        self._changed = True
        self.chart_box.outputs = ()
        self.answer.value = ""
        self.status.value = said
        self._started = time.monotonic()
        panel._runner, panel._collector = None, None  # this run's, once its runner is made (the hook)
        panel._launch(work)
        self.run_button.disabled = True

    def _prepare(self) -> tuple[Callable[[], None], str]:
        """The run's settings (a ConfigError names the field), the section's own views made
        ready for it, and what runs in the panel's thread with what the status line says."""
        raise NotImplementedError

    def _failed(self, error: BaseException) -> None:
        """The run's thread failed: said in the panel, the kernel lives on."""
        self._failure = str(error) if isinstance(error, AnalyzerError) else f"{type(error).__name__}: {error}"
        self._panel._error = self._failure

    def _take_runner(self, runner: SweepRunner, collect: bool = True) -> None:
        """A runner of this run, before it starts (the run's thread): Stop reaches it, the
        live figure reads its samplers, and with ``collect`` the panel's table takes its rows."""
        if collect:
            collector = ResultCollector(runner.spec)  # the panel's rows; the api call keeps its own
            runner.subscribe(collector)
            self._panel._collector = collector
        self._panel._runner = runner
        if self._stop_asked:  # Stop came before this runner was made
            runner.stop()

    def stop(self) -> None:
        """Stop asked: the runner in flight stops (the panel's Stop reaches it), and any the
        run makes after it stops as soon as it is made."""
        self._stop_asked = True

    @property
    def pending(self) -> bool:
        """Whether the panel should keep polling: an answer or a chart's image to show."""
        return self._due or self._images.pending

    def wait_images(self, timeout: float) -> bool:
        return self._images.wait(timeout)

    # -- applying (kernel thread) ---------------------------------------------------------
    def _answer_and_images(self) -> None:
        """The answer, once the panel has shown the run's end (its status line) and the
        thread has ended (the api call answers after its last event); the charts' images
        once drawn."""
        if self._due and self._panel._finished_shown and not self._panel.running:
            self._due = False
            self._show_answer()
        done = self._images.take()
        if done is not None:
            outputs, _ = done
            self.chart_box.outputs = tuple({"output_type": "display_data", "data": bundle, "metadata": {}}
                                           for bundle in outputs.values())

    def _show_answer(self) -> None:
        raise NotImplementedError

    def _say_summary(self, message: str) -> None:
        """How the run went, on the section's status line and the panel's."""
        self._summary = self.status.value = self._panel.status.value = message

    def _draw_chart(self) -> None:
        raise NotImplementedError

    def _show_figures(self, figures: Mapping[str, Any], describe: Callable[[str], str]) -> None:
        """The figures at once (JupyterLab's plotly renderer draws them), their images when
        kaleido has drawn them (what a saved notebook shows without a kernel)."""
        self.chart_box.outputs = tuple(
            {"output_type": "display_data", "metadata": {},
             "data": {PLOTLY_MIME: {**json.loads(fig.to_json()), "config": CONFIG}, "text/plain": describe(name)}}
            for name, fig in figures.items())
        self._images.submit(dict(figures))
        self._panel._schedule_tick()
