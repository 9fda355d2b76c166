"""The JupyterLab panel: pick models, type batch sizes and concurrency, press Run, watch.

The sweep runs in a background thread (:class:`~analyzer_widgets.runner.SweepRunner`);
its events go into a queue and the samplers fill their own buffers. Nothing in that
thread touches a widget: the panel drains the queue and the buffers a few times a
second on the kernel's event loop (:meth:`Dashboard.poll`) and applies everything in one
batched update per figure.

    panel = Dashboard()          # the example repository; or Dashboard("/path/to/models")
    panel                        # shows it
    panel.results                # a DataFrame, row by row as points finish
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets as w
import pandas as pd
import plotly.graph_objects as go

from analyzer_widgets import events as ev
from analyzer_widgets.api import prepare_sweep
from analyzer_widgets.config import (
    SETTINGS_CLASSES,
    UNSET,
    ExportSettings,
    Setting,
    declared,
    make_settings,
    positive_int_list,
)
from analyzer_widgets.errors import AnalyzerError, ConfigError
from analyzer_widgets.export import ExportFolder, ResultsExist
from analyzer_widgets.machine import nvml_unavailable_reason, visible_gpus
from analyzer_widgets.planning.budget import Budget, Decision, choose
from analyzer_widgets.repository import batch_size_skips, list_models
from analyzer_widgets.results import ResultCollector, SweepResult, outcome
from analyzer_widgets.runner import SweepRunner
from analyzer_widgets.schema import (
    MODEL_COLUMN,
    MODEL_COLUMNS,
    SAMPLE_METRICS,
    TABLE_COLUMNS,
    load_of,
    shown_value,
    table_columns,
)
from analyzer_widgets.ui._fields import declaration_of, setting_widget, widget_value
from analyzer_widgets.ui._series import Series
from analyzer_widgets.ui._theme import ThemeProbe, keep_widget_state, themed
from analyzer_widgets.ui.charts import RESULT_CHARTS, result_figures
from analyzer_widgets.ui.pack_section import PackSection
from analyzer_widgets.ui.plan_section import PLAN_SETTINGS, PlanSection
from analyzer_widgets.ui.static import ImageRenderer, chart_outputs, without_images_note

EXAMPLE_REPOSITORY = Path(__file__).resolve().parent.parent / "examples" / "model_repository"
TICK_S = 0.25  # how often the panel applies what the sweep produced
MAX_CHART_POINTS = 1500  # per trace sent to the browser
#: the charts left under the panel when a sweep ends, in order: the live figure's samples as
#: recorded, then the result charts
STATIC_CHARTS = ("recorded_samples", *RESULT_CHARTS)
RECORDED_TITLE = "Recorded during the sweep"
#: what Run does with the rows: keep them in the panel (Export CSV writes them), write each
#: to the export folder as it is measured, or go on with a sweep saved there before
SAVE_MODES = {
    "panel": "Keep in the panel (Export CSV saves them)",
    "save": "Save each row to the export folder",
    "resume": "Resume the sweep saved in the export folder",
}
STOPPING = "Stopping after the point in flight..."
#: how each status is shown in the results table
STATUS_COLORS = {"ok": "#2e7d32", "unstable": "#b26a00", "failed": "#c62828", "skipped": "#757575"}
TRUST_NOTE = ("Loading a model runs its Python code in the server: profile repositories you trust. "
              "The local server listens on 127.0.0.1 only.")


@dataclass(frozen=True)
class _Trace:
    source: str  # sampler name: nvml, host, triton-metrics
    key: str  # sample key
    name: str  # legend


@dataclass(frozen=True)
class _Chart:
    title: str
    y_title: str
    traces: tuple[_Trace, ...]


def _live_charts(gpu_names: list[str] | None) -> list[_Chart]:
    """The live charts: each sampled metric declared with a chart title (schema.py); per GPU
    where there are GPUs, else the server's CPU and memory."""
    if gpu_names:
        return [_Chart(m.chart, m.unit, tuple(_Trace("nvml", f"gpu{i}.{m.per_gpu}", f"GPU {i} {name}")
                                              for i, name in enumerate(gpu_names)))
                for m in SAMPLE_METRICS if m.chart and m.source == "nvml"]
    legend = {"host": "tritonserver + stubs", "triton-metrics": "host CPU"}
    return [_Chart(m.chart, m.unit, (_Trace(m.source, m.key, legend[m.source]),))
            for m in SAMPLE_METRICS if m.chart and m.source != "nvml"]


#: the most point labels drawn above the live figure; more points are marked, not all labelled
MAX_MARK_LABELS = 24
#: the heights (paper units, above the plots) point labels take, the first that is free
MARK_LABEL_LANES = (1.06, 1.10)
#: a point label's width per character (9 px text) and the live plot's usual width: the
#: estimate by which labels are kept apart (the figure's real width is the browser's)
MARK_LABEL_CHAR_PX = 5.5
LIVE_PLOT_WIDTH_PX = 800.0


def live_figure(charts: list[_Chart]) -> go.FigureWidget:
    """The live charts as one figure: one row per chart on a shared time axis, full width,
    a legend only where a chart has more than one trace (several GPUs), and a placeholder
    until samples arrive."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=len(charts), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[f"{c.title} ({c.y_title})" for c in charts])
    for row, chart in enumerate(charts, start=1):
        for trace in chart.traces:
            fig.add_trace(go.Scatter(x=[], y=[], mode="lines", name=trace.name, showlegend=len(chart.traces) > 1),
                          row=row, col=1)
    fig.update_xaxes(title_text="seconds since Run", row=len(charts), col=1)
    fig.update_layout(height=170 * len(charts) + 110, margin={"t": 70, "b": 40, "l": 60, "r": 10},
                      autosize=True, annotations=[*fig.layout.annotations, _waiting()])
    return go.FigureWidget(fig)


def _waiting() -> dict[str, Any]:
    return {"text": "Live GPU and server samples appear here once Run starts the sweep", "xref": "paper",
            "yref": "paper", "x": 0.5, "y": 0.5, "showarrow": False, "font": {"size": 13, "color": "#888"},
            "name": "waiting"}


#: a split sweep's units, a line colour each (plotly's default cycle)
UNIT_COLOURS = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880")


def _waiting_for_units() -> dict[str, Any]:
    """What the live figure says during a sweep split into units until their first samples
    come: each samples its own server, in its own process or on its own node, and hands them
    on every few seconds (docs/scale-out.md)."""
    return {**_waiting(), "text": "Each unit samples its own server: its lines appear as it hands its samples on"}


def units_html(joined: ev.RayJoined | None, units: Mapping[int, str]) -> str:
    """The Ray cluster joined (with its dashboard as a link) and a line per unit of a split
    sweep, as the panel shows them under its status."""
    lines = []
    if joined is not None:
        link = (f"<a href='{html.escape(joined.dashboard_url)}' target='_blank'>Ray dashboard</a>"
                if joined.dashboard_url else "Ray's dashboard is not running")
        lines.append(f"Ray cluster of {joined.nodes} nodes, each unit asking for {html.escape(joined.unit_resources)}: "
                     f"{link}")
    lines.extend(units[k] for k in sorted(units))
    return "<small>" + "<br>".join(lines) + "</small>" if lines else ""


def unit_line(event: ev.UnitStarted | ev.UnitFinished) -> str:
    """One unit's state in words (HTML-escaped)."""
    models = ", ".join(event.models)
    if isinstance(event, ev.UnitStarted):
        again = f" (attempt {event.attempt})" if event.attempt > 1 else ""
        gpu = f", GPU {event.gpu}" if event.gpu else ""
        return html.escape(f"unit {event.unit + 1}/{event.units} {models}: running{again} on {event.where}{gpu}, "
                           f"worker pid {event.worker_pid}")
    failed = f", {event.failed} failed ({event.error.splitlines()[0]})" if event.error else ""
    return html.escape(f"unit {event.unit + 1} {models}: done on {event.where}, {event.measured} points measured{failed}")


def point_marks(marks: list[tuple[float, str]], x_span: float = 0.0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A dotted line across every chart at each point's start, and its label above the
    plot area, horizontal, on the first of two heights where it clears the label before it
    there; a label that clears neither is left out (its line stays). ``x_span``: the time
    axis's length in seconds, from which a label's width in seconds is estimated (the
    units of a split sweep start points close together, whose labels overlapped at two
    alternating heights). With many points only every k-th is a candidate for a label."""
    shapes = [{"type": "line", "xref": "x", "yref": "paper", "x0": x, "x1": x, "y0": 0, "y1": 1,
               "line": {"width": 1, "dash": "dot", "color": "#999"}} for x, _ in marks]
    step = max(1, math.ceil(len(marks) / MAX_MARK_LABELS))
    span = max(x_span, max((x for x, _ in marks), default=0.0), 1e-9)
    seconds_per_char = span * MARK_LABEL_CHAR_PX / LIVE_PLOT_WIDTH_PX
    lane_free_from = [-math.inf] * len(MARK_LABEL_LANES)  # where each height's last label ends
    labels = []
    for x, label in sorted(marks[::step]):
        lane = next((i for i, free in enumerate(lane_free_from) if x >= free), None)
        if lane is None:
            continue
        lane_free_from[lane] = x + (len(label) + 1) * seconds_per_char
        labels.append({"x": x, "y": MARK_LABEL_LANES[lane], "xref": "x", "yref": "paper", "text": label,
                       "showarrow": False, "xanchor": "left", "yanchor": "bottom",
                       "font": {"size": 9, "color": "#666"}})
    return shapes, labels


def _gpu_names() -> tuple[list[str] | None, str | None]:
    """The names of the GPUs the sampler will chart (CUDA_VISIBLE_DEVICES's), or None and why."""
    reason = nvml_unavailable_reason()
    if reason is not None:
        return None, reason
    names = [gpu.name for gpu in visible_gpus()]
    if not names:
        return None, f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')!r} leaves no GPU visible"
    return names, None


def results_table_html(df: pd.DataFrame, unavailable: Mapping[str, str]) -> str:
    """The results as people read them: headers from the metrics table, numbers rounded
    (the CSV keeps every digit) with ± their 95% interval's half-width where they have one,
    the status colored, the reason last and wrapped, and the
    resource columns no row has a value in left out with a note saying why."""
    shown = table_columns(df)
    if "variant" in df.columns and (df["variant"].fillna("") != "").any():
        shown.insert(shown.index("model") + 1, "variant")  # a plan's rows: the variant each is of
    cell = "padding:1px 8px;font-size:12px;text-align:right;white-space:nowrap"
    head = "".join(f"<th style='{cell}' title='{html.escape(MODEL_COLUMN[c].doc)}'>{html.escape(MODEL_COLUMN[c].header)}"
                   "</th>" for c in shown)
    body = []
    for record in df.to_dict("records"):
        cells = []
        for name in shown:
            style = cell
            if name == "status":
                style += f";color:{STATUS_COLORS.get(str(record[name]), 'inherit')};font-weight:600"
            if name == "reason":
                style = "padding:1px 8px;font-size:12px;text-align:left;white-space:normal;min-width:40ch"
            cells.append(f"<td style='{style}'>{html.escape(shown_value(record, name))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    # the load not measured at (concurrency or request rate) and an empty search column are
    # no missing values: not listed
    hidden = [MODEL_COLUMN[c].header for c in TABLE_COLUMNS
              if c not in shown and c not in ("concurrency", "request_rate_per_s", "search")]
    note = ""
    if hidden:
        why = "; ".join(f"{what}: {reason}" for what, reason in unavailable.items())
        note = (f"<div style='white-space:normal;line-height:1.3'><small>Not shown, no values: "
                f"{html.escape(', '.join(hidden))}" + (f" ({html.escape(why)})" if why else "")
                + ". The CSV files have every column.</small></div>")
    return (f"<div style='overflow:auto;max-height:320px;max-width:100%'><table class='aw-results'>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>{note}")


def panel_settings() -> list[tuple[dataclasses.Field[Any], Setting]]:
    """The settings the panel shows: those declared with a panel label."""
    return [(f, s) for cls in SETTINGS_CLASSES for f, s in declared(cls) if s.panel]


class Dashboard:
    """The analyzer panel. Display it in a notebook cell; drive it with the buttons or
    with :meth:`run`, :meth:`stop`, :meth:`wait` and :meth:`export` from code.

    Extra keyword settings (``window_ms=500``, ``input_shapes={...}``, ``baseline_s=1``)
    go to every sweep as they would to :func:`analyzer_widgets.profile`; the plan's own
    (``space={...}``, ``strategy="brute"``, ...) fill the Plan section's fields
    (:mod:`analyzer_widgets.ui.plan_section`).
    """

    def __init__(
        self,
        model_repository: Path | str | None = None,
        *,
        models: list[str] | None = None,
        batch_sizes: str = "1,8",
        concurrency: str = "1,4",
        export_path: str = "results",
        save: str = "panel",
        **settings: Any,
    ) -> None:
        if save not in SAVE_MODES:
            raise ConfigError("save", save, f"must be one of {', '.join(SAVE_MODES)}")
        self.model_repository = Path(model_repository) if model_repository else EXAMPLE_REPOSITORY
        plan_given = {name: settings.pop(name) for name in list(settings) if name in PLAN_SETTINGS}
        self.settings = dict(settings)
        # a misspelt or bad setting is an error now, naming it, not when Run is pressed
        make_settings(models=["-"], model_repository=self.model_repository, **self.settings)
        self._events: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._runner: SweepRunner | None = None
        self._collector: ResultCollector | None = None
        self._error: str | None = None
        self._series: dict[tuple[str, str], Series] = {}
        #: a split sweep's: each unit's series per chart row, and where each unit's clock starts
        #: on the panel's axis (:meth:`_take_unit_samples`); its name in the legend
        self._unit_series: dict[tuple[int, int], Series] = {}
        self._unit_offsets: dict[int, float] = {}
        self._unit_where: dict[int, str] = {}
        self._last_sample_t: dict[str, float] = {}
        self._marks: list[tuple[float, str]] = []
        self._baseline_levels: dict[str, float] = {}
        self._started_wall = 0.0
        self._done = 0
        self._total = 0
        self._point_durations: list[float] = []
        self._point_started = 0.0
        self._current = ""
        self._static_handles: dict[str, Any] = {}  # name: the display handle of its output under the panel
        self._images = ImageRenderer()
        self._said_no_images = False
        self._tick_scheduled = False
        self._finished_shown = False
        self._stopping = False
        self._marked_model = ""  # the model whose name the last point mark carries
        self._make_sweep_fields(models, batch_sizes, concurrency)
        self._make_settings_fields(settings)
        self._make_run_controls(save, export_path)
        self._make_decision_view()
        self._make_live_charts()
        self.plan_section = PlanSection(self, plan_given)
        self.pack_section = PackSection(self)
        #: the sections that run on the panel's thread: each takes its events and shows its answer
        self._sections: tuple[PlanSection | PackSection, ...] = (self.plan_section, self.pack_section)
        self._wire()
        self.widget = self._layout()
        self.validate()

    # -- building the panel --------------------------------------------------------------
    def _make_sweep_fields(self, models: list[str] | None, batch_sizes: str, concurrency: str) -> None:
        """The model picker (the repository's models, with backend and max batch size) and
        the batch size and concurrency fields."""
        self.repository_note = w.HTML()
        try:
            infos = list_models(self.model_repository)
        except AnalyzerError as e:
            infos = {}
            self.repository_note.value = f"<span style='color:#b00'>{html.escape(str(e))}</span>"
        self._infos = infos
        options = [(f"{name} ({info.kind}, max batch {info.max_batch_size})", name) for name, info in infos.items()]
        chosen = tuple(m for m in (models or list(infos)[:1]) if m in infos)
        self.model_picker = w.SelectMultiple(options=options, value=chosen, rows=min(max(len(options), 2), 8),
                                             description="Models", layout=w.Layout(width="460px"),
                                             style={"description_width": "90px"})
        label = {"description_width": "90px"}
        self.batch_field = w.Text(value=batch_sizes, description="Batch sizes", placeholder="1,8,32", style=label)
        self.concurrency_field = w.Text(value=concurrency, description="Concurrency", placeholder="1,4,16", style=label)
        self.batch_error = w.HTML()
        self.concurrency_error = w.HTML()
        self.input_error = w.HTML()

    def _make_settings_fields(self, given: dict[str, Any]) -> None:
        """One field per setting declared with a panel label (config.py), in declaration
        order, each with its error line, in a collapsed section."""
        self.settings_fields: dict[str, w.ValueWidget] = {}
        self.settings_errors: dict[str, w.HTML] = {}
        for f, declaration in panel_settings():
            self.settings_fields[f.name] = setting_widget(f, declaration, given.get(f.name, UNSET))
            self.settings_errors[f.name] = w.HTML()
        self.settings_box = w.Accordion(children=[w.VBox([
            *(w.HBox([field, self.settings_errors[name]]) for name, field in self.settings_fields.items()),
            w.HTML("<small>Empty fields take their defaults (greyed). Ports: free ones are chosen. "
                   "The local server binds 127.0.0.1.</small>"),
        ])])
        self.settings_box.set_title(0, "Launch and measurement settings")
        self.settings_box.selected_index = None

    def _make_decision_view(self) -> None:
        """The latency budget (its fields declared in planning/budget.py) and, per model, the best
        measured point within it in one sentence, starred on the result charts."""
        self.budget_fields = {f.name: setting_widget(f, declaration, UNSET) for f, declaration in declared(Budget)}
        self.budget_fields["latency_budget_ms"].placeholder = "for example 20"
        for field in self.budget_fields.values():
            field.style.description_width = "initial"  # the whole label: "Latency budget (ms)"
        self.decision_view = w.HTML("<small>Type a latency budget to see, per model, the best point within it.</small>")
        # In Voila the result charts go inside the panel: Voila shows only what a cell
        # displayed while it ran, so the outputs under the panel stay empty there
        self.results_box = w.Output()
        self.in_voila = "VOILA_KERNEL_ID" in os.environ

    def _make_run_controls(self, save: str, export_path: str) -> None:
        # fixed widths that do not shrink: a narrow panel (900 px) wraps the row instead of
        # squeezing the buttons into unlabeled stubs
        button = {"width": "100px", "flex": "0 0 auto"}
        self.run_button = w.Button(description="Run", button_style="success", icon="play", layout=w.Layout(**button))
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop", disabled=True,
                                    layout=w.Layout(**button))
        self.save_mode = w.Dropdown(options=[(label, key) for key, label in SAVE_MODES.items()], value=save,
                                    description="Results", layout=w.Layout(width="420px", flex="0 1 auto"))
        self.status = w.HTML("Ready.")
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="460px"))
        self.notice = w.HTML()
        self.units = w.HTML()  # a split sweep's units (--parallel gpus, --ray), a line each
        self._unit_lines: dict[int, str] = {}
        self._ray_joined: ev.RayJoined | None = None
        self.table = w.HTML()
        self.export_field = w.Text(value=export_path, description="Export to")
        self.export_button = w.Button(description="Export CSV", icon="download",
                                      layout=w.Layout(width="120px", flex="0 0 auto"))
        self.overwrite_box = w.Checkbox(value=False, description="Overwrite", indent=False,
                                        tooltip="replace CSV files already in the export folder")
        self.export_status = w.HTML()

    def _make_live_charts(self) -> None:
        """The live charts: per GPU where there are GPUs, else the server's CPU and memory
        (and a notice saying so)."""
        gpu_names, no_gpu_reason = _gpu_names()
        self.has_gpu = gpu_names is not None
        self._gpu_notice = "" if self.has_gpu else (
            f"<b>No GPU here</b> ({html.escape(no_gpu_reason or '')}): charting the server's "
            "CPU and memory instead; GPU columns will be NaN.")
        self.notice.value = self._gpu_notice
        self._charts = _live_charts(gpu_names)
        self.live_figure = live_figure(self._charts)
        self.theme = ThemeProbe()  # the page's light or dark theme, once the panel is shown
        themed(self.live_figure, self.theme.light)
        self._chart_titles = [a for a in self.live_figure.layout.annotations if a.name != "waiting"]

    def _wire(self) -> None:
        for field in (self.batch_field, self.concurrency_field, self.model_picker, *self.settings_fields.values()):
            field.observe(lambda _change: self.validate(), names="value")
        self.run_button.on_click(lambda _b: self.run())
        self.stop_button.on_click(lambda _b: self.stop())
        self.export_button.on_click(lambda _b: self._export_clicked())
        for field in self.budget_fields.values():
            field.observe(lambda _change: self._show_decision(), names="value")
        self.theme.observe(self._theme_changed, names="light")

    def _layout(self) -> w.VBox:
        return w.VBox([
            self.theme,
            w.HTML("<h3 style='margin:4px 0'>analyzer-widgets: Triton model sweep</h3>"),
            self.repository_note,
            self.model_picker,
            w.HBox([self.batch_field, self.batch_error]),
            w.HBox([self.concurrency_field, self.concurrency_error]),
            self.input_error,
            self.settings_box,
            w.HBox([self.run_button, self.stop_button, self.save_mode], layout=w.Layout(flex_flow="row wrap")),
            self.progress, self.status, self.units, self.notice,
            w.HTML(f"<small>{html.escape(TRUST_NOTE)}</small>"),
            self.live_figure,
            self.table,
            w.HBox(list(self.budget_fields.values()), layout=w.Layout(flex_flow="row wrap")),
            self.decision_view,
            self.results_box,
            w.HBox([self.export_field, self.export_button, self.overwrite_box, self.export_status],
                   layout=w.Layout(flex_flow="row wrap")),
            self.plan_section.widget,
            self.pack_section.widget,
        ])

    # -- display -------------------------------------------------------------------------
    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
        # Plain outputs right under the panel, empty until a sweep ends and each becomes one
        # of the charts that travel (ui/static.py), so the saved notebook shows them to a
        # reader with no kernel. One output per chart: an output has room for one image.
        self._static_handles = {name: display({"text/html": "", "text/plain": ""}, raw=True, display_id=True)
                                for name in STATIC_CHARTS}

    # -- validation ----------------------------------------------------------------------
    def _field_state(self, field: w.Text, error: w.HTML, name: str) -> tuple[int, ...] | None:
        try:
            values = positive_int_list(name, field.value)
        except ConfigError as e:
            error.value = f"<span style='color:#b00'>{html.escape(str(e))}</span>"
            field.add_class("aw-invalid")
            field.layout.border = "2px solid #d00"
            return None
        error.value = ""
        field.remove_class("aw-invalid")
        field.layout.border = ""
        return values

    def validate(self) -> bool:
        """Check every field; mark bad ones red with the reason; Run is enabled only when
        all are good and no sweep is running. Returns whether all are good."""
        batches = self._field_state(self.batch_field, self.batch_error, "batch_sizes")
        # request rates, where typed, are the sweep's load: the concurrency field then waits
        self.concurrency_field.disabled = self._rates_given()
        if self._rates_given():
            self.concurrency_error.value = ""
        concurrency = (() if self._rates_given()
                       else self._field_state(self.concurrency_field, self.concurrency_error, "concurrency"))
        problems = []
        for error in self.settings_errors.values():
            error.value = ""
        if not self.model_picker.value:
            problems.append("pick at least one model")
        elif batches is not None and not self._batches_fit(batches):
            batches = None  # every batch size would be skipped by every model: nothing to measure
        if self.model_picker.value and batches is not None and concurrency is not None:
            try:  # every setting's own check, and those across settings, as a sweep would run them
                make_settings(**self.spec_settings())
            except ConfigError as e:
                message = f"<span style='color:#b00'>{html.escape(e.reason if e.field in self.settings_errors else str(e))}</span>"
                if e.field in self.settings_errors:
                    self.settings_errors[e.field].value = message
                    self.settings_box.selected_index = 0  # open, so the message is seen
                else:
                    problems.append(str(e))
        self.input_error.value = (f"<span style='color:#b00'>{html.escape('; '.join(problems))}</span>"
                                  if problems else "")
        ok = (batches is not None and concurrency is not None and not problems
              and not any(error.value for error in self.settings_errors.values()))
        self.run_button.disabled = not ok or self.running
        for section in self._sections:
            section.validate(ok)
        return ok

    def _rates_given(self) -> bool:
        field = self.settings_fields.get("request_rate")
        return field is not None and bool(str(field.value).strip())

    def _batches_fit(self, batches: tuple[int, ...]) -> bool:
        """Say under the batch sizes which selected models would skip which of them (the
        model's max_batch_size); False when no (model, batch size) pair would be measured."""
        skipped = batch_size_skips([self._infos[m] for m in self.model_picker.value if m in self._infos], batches)
        if not skipped:
            return True
        said = "; ".join(f"{model} would skip {', '.join(map(str, sizes))} (max batch {limit})"
                         for model, (sizes, limit) in skipped.items())
        measured = len(self.model_picker.value) * len(batches) - sum(len(sizes) for sizes, _ in skipped.values())
        if measured > 0:
            self.batch_error.value = f"<span style='color:#a60'>{html.escape(said)}</span>"
            return True
        self.batch_error.value = (f"<span style='color:#b00'>Nothing would be measured: "
                                  f"{html.escape(said)}</span>")
        self.batch_field.layout.border = "2px solid #d00"
        return False

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the sweep -----------------------------------------------------------------------
    def spec_settings(self) -> dict[str, Any]:
        """The sweep's settings as the panel's fields give them (text read by each setting's
        own parse; an empty field leaves the declared default)."""
        settings = dict(self.settings)
        settings.update(models=list(self.model_picker.value), batch_sizes=self.batch_field.value,
                        concurrency=self.concurrency_field.value)
        for f, declaration in panel_settings():
            value = widget_value(self.settings_fields[f.name], declaration)
            if value is not UNSET:
                settings[f.name] = value
        if self._rates_given():
            del settings["concurrency"]
        if settings.get("launch_mode") != "remote":
            settings["model_repository"] = self.model_repository
        return settings

    def run(self) -> None:
        """Start a sweep with the panel's settings, off the kernel's thread."""
        if self.running:
            return
        if not self.validate():
            self.status.value = "<span style='color:#b00'>Fix the fields marked red first.</span>"
            return
        mode = self.save_mode.value
        try:
            spec, _ = make_settings(**self.spec_settings())
            export = ExportSettings(export_path=None if mode == "panel" else self.export_field.value,
                                    resume=mode == "resume")
            # bad input, an export folder that would be overwritten (or is a file, or is in
            # use by another run), a resume refused for a changed spec or model: said here,
            # before anything is launched. The folder stays locked until the sweep ends.
            runner, collector = prepare_sweep(spec, export)
        except AnalyzerError as e:
            self.status.value = f"<span style='color:#b00'>{html.escape(str(e))}</span>"
            return
        self._collector = collector
        # the only thing the sweep thread does to the panel; samples are the samples file's (the
        # live charts read the samplers), and a kernel busy with a cell would pile them up here
        runner.subscribe(self._queue_event)
        self._runner = runner
        for section in self._sections:
            section.active = False
        self._launch(self._run_sweep)

    def _queue_event(self, event: object) -> None:
        # this process's samples are the live charts' already (they read the samplers), and a
        # kernel busy with a cell would pile them up here; a unit's are drawn as its own lines
        if not isinstance(event, ev.SamplesTaken) or event.unit is not None:
            self._events.put(event)

    def _launch(self, work: Callable[[], None]) -> None:
        """Run ``work`` (a sweep, or the Plan section's plan) in the panel's thread, the panel
        cleared for it."""
        self._reset()
        self.notice.value = self._gpu_notice  # what the export folder says comes as notices
        self._started_wall = time.monotonic()
        self._thread = threading.Thread(target=work, name="analyzer-widgets-sweep", daemon=True)
        self._thread.start()
        self.run_button.disabled = True
        self.stop_button.disabled = False
        self.status.value = "Starting the server..."
        self._schedule_tick()

    def _run_sweep(self) -> None:
        assert self._runner is not None
        try:
            self._runner.run()
        except BaseException as e:  # noqa: BLE001 - shown in the panel, the kernel lives on
            self._error = f"{type(e).__name__}: {e}" if not isinstance(e, AnalyzerError) else str(e)
        finally:
            if self._collector is not None:
                self._collector.close()  # the export folder's lock

    def stop(self) -> None:
        """End the point in flight (about a second) and keep what was measured."""
        if self.running:
            for section in self._sections:
                section.stop()  # a plan's or a pack's runner not made yet stops as soon as it is
            if self._runner is not None:
                self._runner.stop()
            self._stopping = True
            self.status.value = STOPPING
            self.stop_button.disabled = True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the sweep ends (for scripts and tests), applying its updates.
        Returns False if it is still running after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running:
            if deadline is not None and time.monotonic() > deadline:
                self.poll()
                return False
            self._thread.join(TICK_S)  # type: ignore[union-attr]
            self.poll()
        self.poll()
        # the images of the charts left under the panel, and a plan's answer and chart
        while not self._images.wait(TICK_S) or any(section.pending for section in self._sections):
            for section in self._sections:
                section.wait_images(TICK_S)
            self.poll()
        self.poll()
        return True

    def _reset(self) -> None:
        self._series.clear()
        self._unit_series.clear()
        self._unit_offsets.clear()
        self._unit_where.clear()
        self._last_sample_t.clear()
        self._marks.clear()
        self._baseline_levels.clear()
        self._done = 0
        self._total = 0
        self._point_durations.clear()
        self._error = None
        self._finished_shown = False
        self._stopping = False
        self._marked_model = ""
        self._unit_lines.clear()
        self._ray_joined = None
        self.units.value = ""
        self.results_box.outputs = ()
        self.table.value = ""
        self.export_status.value = ""
        self.progress.value = 0
        fig = self.live_figure
        with fig.batch_update():
            for trace in fig.data:
                trace.x, trace.y = [], []
            fig.layout.shapes = ()
            fig.layout.annotations = (*self._chart_titles, _waiting())

    # -- applying what the sweep produced (kernel thread only) ---------------------------
    def _schedule_tick(self) -> None:
        try:
            loop = asyncio.get_event_loop()
        except RuntimeError:
            return
        if loop.is_running() and not self._tick_scheduled:
            self._tick_scheduled = True
            loop.call_later(TICK_S, self._tick)

    def _tick(self) -> None:
        self._tick_scheduled = False
        try:
            self.poll()
        finally:
            if (self.running or not self._events.empty() or self._images.pending
                    or any(section.pending for section in self._sections)):
                self._schedule_tick()

    def poll(self) -> None:
        """Apply every pending event and the new samples to the widgets and charts."""
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                break
        finished = None
        with self.status.hold_sync(), self.progress.hold_sync():
            for event in events:
                if isinstance(event, ev.SweepFinished):
                    finished = event
                else:
                    self._apply(event)
                for section in self._sections:
                    section.apply(event)
            self._update_status()
        self._update_charts()
        if not self._finished_shown and (finished is not None or (self._error and not self.running)):
            self._finished_shown = True
            self._finish(finished)
        self._show_images()
        for section in self._sections:
            section.poll()

    def _t(self, monotonic: float) -> float:
        runner = self._runner
        return monotonic - runner.monitors.started if runner else 0.0

    def _apply(self, event: object) -> None:
        if isinstance(event, ev.SweepStarted):
            self._total = event.total_points
            self.progress.max = max(1, event.total_points)
        elif isinstance(event, ev.ServerReady):
            self.status.value = f"Triton {event.server_version} ready at {event.endpoint}."
        elif isinstance(event, ev.BaselineFinished):
            self._marks.append((time.monotonic(), "baseline end"))
            for key, column in (("gpu", "gpu_memory_max_mb"), ("host", "server_rss_max_mb")):
                value = event.row.get(column, math.nan)
                if isinstance(value, float) and math.isfinite(value):
                    self._baseline_levels[key] = value
        elif isinstance(event, ev.PointStarted):
            self._point_started = time.monotonic()
            load = load_of({"concurrency": event.concurrency, "request_rate_per_s": event.request_rate_per_s})
            self._current = f"{event.model} batch={event.batch_size} {load}"
            # the model's name on its first point only: the labels stay short enough to sit side by side
            label = f"b={event.batch_size} " + (f"r={load.rate_per_s:g}/s" if load.open_loop else f"c={load.concurrency}")
            first = event.model != self._marked_model
            self._marked_model = event.model
            self._marks.append((self._point_started, f"{event.model} {label}" if first else label))
        elif isinstance(event, ev.ModelLoading):
            self._current = f"loading {event.model}"
        elif isinstance(event, ev.RayJoined | ev.UnitStarted | ev.UnitFinished):
            self._show_unit(event)
        elif isinstance(event, ev.SamplesTaken) and event.unit is not None:
            self._take_unit_samples(event.unit, event.samples)
        elif isinstance(event, ev.PointFinished):
            self._done = event.index + 1
            if event.row["status"] != "skipped":
                self._point_durations.append(time.monotonic() - self._point_started)
            self._update_table()
            self._show_decision()
        elif isinstance(event, ev.Notice) and event.level is ev.Level.PROGRESS:
            self._current = event.message  # a long start (an image pull) says what it is doing
        elif isinstance(event, ev.Notice) and event.level is ev.Level.WARNING:
            self.notice.value += f"<br><span style='color:#a60'>{html.escape(event.message)}</span>"

    def _show_unit(self, event: ev.RayJoined | ev.UnitStarted | ev.UnitFinished) -> None:
        if isinstance(event, ev.RayJoined):
            self._ray_joined = event
        else:
            self._unit_lines[event.unit] = unit_line(event)
            if isinstance(event, ev.UnitStarted):
                self._unit_where[event.unit] = f"unit {event.unit + 1} ({event.where})"
                # a unit started again (a Ray task's next attempt, a pack's next step) counts its
                # time from its new start: placed afresh by its first samples
                self._unit_offsets.pop(event.unit, None)
        self.units.value = units_html(self._ray_joined, self._unit_lines)

    def _take_unit_samples(self, unit: int, samples: pd.DataFrame) -> None:
        """A unit's samples (a split sweep): its own series per chart, of the chart's first
        trace's key (a unit's server has one GPU, its gpu0). A unit counts time from its own
        start, in its own process or on its own node, so its samples are placed on the panel's
        axis by when the first of them arrived: at most a second or two late (they are handed
        on every 2 s, each a second old)."""
        if samples.empty:
            return
        offset = self._unit_offsets.setdefault(unit, self._t(time.monotonic()) - float(samples["time_s"].max()))
        for row, chart in enumerate(self._charts):
            template = chart.traces[0]
            if template.key not in samples.columns:
                continue
            taken = samples[samples["source"] == template.source]
            if not taken.empty:
                self._unit_series.setdefault((unit, row), Series()).extend(
                    list(taken["time_s"] + offset), list(taken[template.key]))

    def _update_status(self) -> None:
        if not self.running and self._thread is None:
            return
        elapsed = time.monotonic() - self._started_wall
        left = ""
        if self._point_durations and self._total:
            per = sum(self._point_durations) / len(self._point_durations)
            left = f", about {per * (self._total - self._done):.0f} s left"
        current = self._current
        self.progress.value = self._done
        if self.running and self._stopping:
            self.status.value = STOPPING  # until the sweep has stopped, whatever point it was in
        elif self.running:
            self.status.value = (f"<b>{html.escape(current)}</b>: point {min(self._done + 1, self._total)} of "
                                 f"{self._total}, {elapsed:.0f} s elapsed{left}")

    def _update_table(self) -> None:
        df = self.results
        if df.empty:
            return
        result = self.result
        self.table.value = results_table_html(df, result.unavailable if result else {})

    def _update_charts(self) -> None:
        runner = self._runner
        if runner is None:
            return
        samplers = {s.name: s for s in runner.monitors.samplers}
        for name, sampler in samplers.items():
            since = self._last_sample_t.get(name, -math.inf)
            fresh = sampler.between(since, math.inf)
            fresh = [s for s in fresh if s.t > since]
            if not fresh:
                continue
            self._last_sample_t[name] = fresh[-1].t
            ts = [self._t(s.t) for s in fresh]
            for chart in self._charts:
                for trace in chart.traces:
                    if trace.source != name:
                        continue
                    ys = [float(s.values.get(trace.key, math.nan)) for s in fresh]
                    self._series.setdefault((name, trace.key), Series()).extend(ts, ys)
        self._draw_live()

    def _draw_live(self) -> None:
        """Apply the series, the point marks and the baseline to the live figure, in one update."""
        marks = [(self._t(t), label) for t, label in self._marks]
        traces = [trace for chart in self._charts for trace in chart.traces]
        fig = self.live_figure
        units = self._unit_traces(len(traces))
        with fig.batch_update():
            for trace, data in zip(traces, fig.data[:len(traces)], strict=True):
                series = self._series.get((trace.source, trace.key))
                if series is not None:
                    data.x, data.y = series.view(MAX_CHART_POINTS)
            for key, data in units.items():
                data.x, data.y = self._unit_series[key].view(MAX_CHART_POINTS)
            right = max((float(data.x[-1]) for data in fig.data if data.x is not None and len(data.x)), default=0.0)
            shapes, annotations = point_marks(marks, right)  # the time axis ends at the newest sample
            level = self._baseline_levels.get("gpu" if self.has_gpu else "host")
            if level is not None:
                row = 1 if self.has_gpu else 2  # the memory chart: GPU memory, or the server's RSS
                shapes.append({"type": "line", "xref": "paper", "yref": f"y{row if row > 1 else ''}", "x0": 0, "x1": 1,
                               "y0": level, "y1": level, "line": {"width": 1.5, "dash": "dash", "color": "#76b900"}})
                annotations.append({"xref": "paper", "yref": f"y{row if row > 1 else ''}", "x": 0, "y": level,
                                    "text": f"baseline (no models) {level:,.0f} MB", "showarrow": False,
                                    "xanchor": "left", "yanchor": "bottom", "font": {"size": 10, "color": "#4a7500"}})
            if not any(len(series) for series in (*self._series.values(), *self._unit_series.values())):
                annotations.append(_waiting_for_units() if self._unit_lines else _waiting())
            fig.layout.shapes = shapes
            fig.layout.annotations = [*self._chart_titles, *annotations]

    def _unit_traces(self, own: int) -> dict[tuple[int, int], Any]:
        """The live figure's line of each unit's series (after its ``own`` traces), added as a
        unit's first samples come: one colour per unit, named once in the legend; a new
        sweep's figure drops the last one's."""
        fig = self.live_figure
        if not self._unit_series and len(fig.data) > own:
            fig.data = fig.data[:own]
        firsts = [sum(len(c.traces) for c in self._charts[:row]) for row in range(len(self._charts))]
        named = {(d.legendgroup, d.yaxis) for d in fig.data[own:]}
        for unit, row in sorted(self._unit_series):
            group, axes = f"unit {unit}", fig.data[firsts[row]]
            if (group, axes.yaxis) not in named:
                fig.add_trace(go.Scatter(x=[], y=[], mode="lines", name=self._unit_where.get(unit, group),
                                         legendgroup=group, legendrank=unit + 1,  # in unit order, whichever came first
                                         showlegend=row == 0, xaxis=axes.xaxis, yaxis=axes.yaxis,
                                         line={"color": UNIT_COLOURS[unit % len(UNIT_COLOURS)]}))
                named.add((group, axes.yaxis))
        lines = {(d.legendgroup, d.yaxis): d for d in fig.data[own:]}
        return {(unit, row): lines[(f"unit {unit}", fig.data[firsts[row]].yaxis)] for unit, row in self._unit_series}

    def _finish(self, finished: ev.SweepFinished | None) -> None:
        self.stop_button.disabled = True
        self._update_table()
        result = self.result
        if self._error:
            self.status.value = f"<span style='color:#b00'>Sweep failed: {html.escape(self._error)}</span>"
        elif finished is not None and finished.cancelled:
            self.status.value = f"Stopped after {self._done} of {self._total} points; the finished rows are kept."
        elif finished is not None:
            self.status.value = html.escape(outcome(result.rows if result else [], finished.elapsed_s))
        for what, why in (result.unavailable.items() if result else ()):
            if what != "gpu" or self.has_gpu:
                self.notice.value += f"<br><small>NaN columns ({html.escape(what)}): {html.escape(why)}</small>"
        self._thread = None if not self.running else self._thread
        self.validate()
        keep_widget_state(self.live_figure)  # what it shows now is what a page opened later, or a saved notebook, shows
        if result is not None and result.rows:
            self._show_result_charts()

    # -- results -------------------------------------------------------------------------
    @property
    def result(self) -> SweepResult | None:
        """The :class:`~analyzer_widgets.results.SweepResult` of the last sweep (growing while it runs)."""
        return self._collector.result if self._collector else None

    @property
    def results(self) -> pd.DataFrame:
        """The last sweep's rows as a DataFrame (one row per point, filled as they finish)."""
        result = self.result
        if result is None:
            from analyzer_widgets.results import frame

            return frame([], MODEL_COLUMNS)
        return result.to_frame()

    def decision(self) -> Decision | None:
        """Per model, the best measured point within the panel's latency budget; None while
        no budget is typed or nothing has been measured. A bad budget is a ConfigError."""
        budget = widget_value(self.budget_fields["latency_budget_ms"], declaration_of(Budget, "latency_budget_ms"))
        df = self.results
        if budget is UNSET or df.empty:
            return None
        # a plan's rows: one choice per variant measured
        by = "variant" if "variant" in df.columns and (df["variant"].fillna("") != "").any() else "model"
        return choose(df, Budget(budget, self.budget_fields["latency_statistic"].value), variant=by)

    def _show_decision(self) -> None:
        try:
            decision = self.decision()
        except ConfigError as e:
            self.decision_view.value = f"<span style='color:#b00'>{html.escape(e.reason)}</span>"
            return
        if decision is None:
            return
        self.decision_view.value = (f"<b>Within {html.escape(str(decision.budget))}</b><ul style='margin:2px 0'>"
                                    + "".join(f"<li>{html.escape(s)}</li>" for s in decision.sentences) + "</ul>")
        if self._finished_shown and not self.running:
            self._show_result_charts()

    def _theme_changed(self, change: dict[str, Any]) -> None:
        """The page's theme changed (or the panel was first shown in a dark one): the charts follow."""
        themed(self.live_figure, change["new"])
        result = self.result
        if self._finished_shown and not self.running and result is not None and result.rows:
            self._show_result_charts()  # the static output, or the Voila figures, in the new theme

    def _show_result_charts(self) -> None:
        """Draw the charts that travel (ui/static.py), off the kernel's thread; the next tick
        shows them (:meth:`_show_images`). In Voila the result charts only: the live figure is
        right above them. After a plan, its own chart (the Plan section's) stands for them."""
        if any(section.active for section in self._sections):
            return
        if self.in_voila:
            self._images.submit(self.result_figures())
        elif self._static_handles:
            self._images.submit(self.static_figures())
        else:
            return
        self._schedule_tick()

    def _show_images(self) -> None:
        """Put the charts whose images are ready where the reader sees them (kernel thread).
        Under the panel, in the outputs made for them, so the saved notebook keeps them. In
        Voila inside the panel: its page shows only what a cell displayed while it ran."""
        done = self._images.take()
        if done is None:
            return
        outputs, problem = done
        if self.in_voila:
            self.results_box.outputs = tuple({"output_type": "display_data", "data": bundle, "metadata": {}}
                                             for bundle in outputs.values())
        else:
            for name, bundle in outputs.items():
                self._static_handles[name].update(bundle, raw=True)
        if problem and not self._said_no_images:
            self._said_no_images = True
            self.notice.value += f"<br><small>{html.escape(without_images_note(problem))}</small>"

    def result_figures(self) -> dict[str, go.Figure]:
        """The result charts of the last sweep, the decision (if a budget is typed) starred."""
        result = self.result
        if result is None:
            raise AnalyzerError("no sweep has run yet: press Run first")
        try:
            decision = self.decision()
        except ConfigError:
            decision = None  # the budget field says what is wrong with it
        return result_figures(result.to_frame(), result.baseline, decision, light=self.theme.light)

    def recorded_figure(self) -> go.Figure:
        """The live figure as it stands, as a plain figure that travels: titled, on an opaque
        background (it is read on pages of any colour)."""
        fig = go.Figure(self.live_figure.to_dict())
        fig.update_layout(title={"text": RECORDED_TITLE, "x": 0.5, "y": 0.99, "yanchor": "top"},
                          margin={"t": fig.layout.margin.t + 40})
        return themed(fig, self.theme.light, transparent=False)

    def static_figures(self) -> dict[str, go.Figure]:
        """The charts left under the panel when a sweep ends, by name (STATIC_CHARTS)."""
        return {"recorded_samples": self.recorded_figure(), **self.result_figures()}

    def show_static(self) -> None:
        """Display the recorded samples and the result charts wherever this is called, each
        interactive and as an image (it blocks while the images are drawn)."""
        from IPython.display import display

        outputs, problem = chart_outputs(self.static_figures())
        if problem:
            print(without_images_note(problem))
        for bundle in outputs.values():
            display(bundle, raw=True)

    def export(self, path: Path | str | None = None, overwrite: bool = False) -> list[Path]:
        """Write the last sweep's CSV files to ``path`` (default: the panel's export field),
        refusing results already there unless ``overwrite``, and a folder another run is
        writing to (it is locked while this writes)."""
        result = self.result
        if result is None:
            raise AnalyzerError("nothing to export: no sweep has run yet")
        directory = Path(path or self.export_field.value).expanduser()
        return ExportFolder.save(result, directory, overwrite=overwrite)

    def _export_clicked(self) -> None:
        try:
            paths = self.export(overwrite=self.overwrite_box.value)
        except ResultsExist as e:
            self.export_status.value = (f"<span style='color:#b00'>{html.escape(', '.join(p.name for p in e.existing))} "
                                        f"already in {html.escape(str(e.directory))}: tick Overwrite to replace "
                                        "them, or choose another folder</span>")
            return
        except AnalyzerError as e:
            self.export_status.value = f"<span style='color:#b00'>{html.escape(str(e))}</span>"
            return
        self.export_status.value = "Wrote " + ", ".join(html.escape(str(p)) for p in paths)
