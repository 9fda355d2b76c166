"""The result charts, as plain plotly figures (static: they need no kernel to show;
ui/static.py makes them outputs that travel).

    throughput_vs_latency(df, decision=None)        per model and batch size, each marker
                                                    labeled with its load (concurrency or request rate)
    memory_vs_latency(df, baseline, decision=None)  memory above the baseline vs latency
                                                    (Model Analyzer's view)
    latency_breakdown(df)                           each point's mean latency: outside the
                                                    server, queue, compute, other server time
    result_figures(df, baseline, decision=None, light=True)
                                                    the three, by name, dressed for a light
                                                    or dark page (_theme.themed)

Unstable points are hollow markers (hatched bars) and say so in the hover; error bars show
the 95% confidence intervals of the figures that have them (throughput, mean and p99 latency). A decision
(:func:`analyzer_widgets.planning.budget.choose`) stars each model's chosen point and draws its
budget as a labeled vertical line; its latency statistic is then the charts' x axis (p99
without one). No measured point gives a figure that says so instead of empty axes.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from analyzer_widgets.planning.budget import MEASURED, Decision, Statistic
from analyzer_widgets.schema import INTERVALS, MODEL_COLUMNS, Kind, Status, load_of
from analyzer_widgets.ui._theme import themed

HEIGHT = 380
#: the result charts' names, in the order they are shown
RESULT_CHARTS = ("throughput_vs_latency", "memory_vs_latency", "latency_breakdown")
#: room above the plot for the title, its subtitle and the budget's label
MARGIN = {"t": 95, "b": 50}
NO_POINTS = "no measured points"
THROUGHPUT_TITLE = "throughput (inferences/s)"
UNSTABLE_HOVER = "unstable: its measurement windows never agreed (figures rough)"
MEAN_LATENCY = "mean latency (client)"
#: the mean-latency tick's colour on a light and a dark chart (key: light): near black
#: vanishes on plotly_dark
INK = {True: "#222", False: "#e8e8e8"}
#: where a marker's label may go, in order of preference, with the direction it points to
LABEL_POSITIONS: tuple[tuple[str, tuple[float, float]], ...] = (
    ("top left", (-1.0, 1.0)), ("top center", (0.0, 1.0)), ("bottom right", (1.0, -1.0)),
    ("top right", (1.0, 1.0)), ("bottom center", (0.0, -1.0)), ("bottom left", (-1.0, -1.0)),
)
#: the stacked segments of the latency breakdown: column of latency_parts(), legend name, colour
SEGMENTS = (
    ("outside", "outside the server (client, network)", "#8c8c8c"),
    ("queue", "server queue", "#f0a30a"),
    ("compute", "server compute (input + infer + output)", "#76b900"),
    ("other", "server, other (request time less queue and compute)", "#4a90d9"),
)


def _measured(df: pd.DataFrame) -> pd.DataFrame:
    """The measured rows, in order; a column the frame lacks reads as a row leaves it (NaN)."""
    missing = {c.name: "" if c.kind is Kind.TEXT else (0 if c.kind is Kind.INT else math.nan)
               for c in MODEL_COLUMNS if c.name not in df.columns}
    df = df.assign(**missing) if missing else df
    measured = df[df["status"].isin(MEASURED)].sort_values(["model", "batch_size", "concurrency", "request_rate_per_s"])
    # each point's load as its marker says it: the concurrency, or the request rate ("250/s")
    loads = [load_of(row) for row in measured[["concurrency", "request_rate_per_s"]].to_dict("records")]
    return measured.assign(_load=[f"{x.rate_per_s:g}/s" if x.open_loop else str(x.concurrency) for x in loads],
                           _load_text=[str(x) for x in loads])


def _statistic(decision: Decision | None) -> Statistic:
    return decision.budget.latency_statistic if decision is not None else Statistic.P99


def _layout(fig: go.Figure, title: str, subtitle: str, x_title: str, y_title: str) -> go.Figure:
    fig.update_layout(title={"text": f"{title}<br><sup>{subtitle}</sup>" if subtitle else title},
                      xaxis_title=x_title, yaxis_title=y_title, height=HEIGHT, margin=MARGIN,
                      showlegend=len(fig.data) > 1)
    return fig


def no_points_figure(df: pd.DataFrame, title: str) -> go.Figure:
    """A chart with nothing measured: a centered note (with why, where rows say) and no axes."""
    statuses = df["status"].value_counts() if "status" in df.columns else pd.Series(dtype=int)
    why = ", ".join(f"{n} {status}" for status, n in statuses.items() if status not in MEASURED)
    fig = go.Figure()
    fig.add_annotation(text=NO_POINTS + (f" ({why}: see the reason column)" if why else ""),
                       x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 16})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(title=title, height=HEIGHT, margin=MARGIN)
    return fig


def _directions(points: list[tuple[float, float]], i: int) -> list[tuple[float, float]]:
    """Unit vectors from point ``i`` along the line's segments to its neighbours."""
    out = []
    for j in (i - 1, i + 1):
        if 0 <= j < len(points):
            dx, dy = points[j][0] - points[i][0], points[j][1] - points[i][1]
            length = math.hypot(dx, dy)
            if math.isfinite(length) and length > 0:
                out.append((dx / length, dy / length))
    return out


def _closeness(position: tuple[float, float], directions: list[tuple[float, float]]) -> float:
    """The cosine between a label's direction and the nearest segment (-1: none)."""
    norm = math.hypot(*position)
    return max(((position[0] * d[0] + position[1] * d[1]) / norm for d in directions), default=-1.0)


def label_positions(x: list[float], y: list[float], span: tuple[float, float]) -> list[str]:
    """Where each marker's label goes along a line through the points (x, y): the first of
    LABEL_POSITIONS more than 60 degrees away from the line's segments to its neighbours,
    measured in units of the chart's ``span`` (x, y), so no label sits on the line."""
    scaled = [(a / (span[0] or 1.0), b / (span[1] or 1.0)) for a, b in zip(x, y, strict=True)]
    out = []
    for i in range(len(scaled)):
        directions = _directions(scaled, i)
        fits = [name for name, p in LABEL_POSITIONS if _closeness(p, directions) < 0.5]
        out.append(fits[0] if fits else min(LABEL_POSITIONS, key=lambda item: _closeness(item[1], directions))[0])
    return out


def _span(measured: pd.DataFrame, x: str, y: str) -> tuple[float, float]:
    def extent(column: str) -> float:
        values = measured[column].dropna()
        return float(values.max() - values.min()) if len(values) else 1.0
    return extent(x), extent(y)


def _error_bars(part: pd.DataFrame, column: str) -> dict[str, object] | None:
    """Error bars from the 95% confidence interval ``column`` has (schema.INTERVALS), or None
    where it has none; a point without bounds (one window) gets no bar."""
    if column not in INTERVALS:
        return None
    low, high = INTERVALS[column]
    above, below = (part[high] - part[column]).tolist(), (part[column] - part[low]).tolist()
    if not any(math.isfinite(v) for v in above + below):
        return None
    def bars(values: list[float]) -> list[float | None]:
        return [v if math.isfinite(v) else None for v in values]  # JSON has no NaN: no bar there
    return {"type": "data", "symmetric": False, "array": bars(above), "arrayminus": bars(below), "thickness": 1,
            "width": 3}


def _point_traces(fig: go.Figure, measured: pd.DataFrame, x: str, y: str, y_hover: str) -> None:
    """One line per model and batch size through its points, each marker labeled with its
    concurrency; unstable points hollow; error bars where the figures have intervals."""
    span = _span(measured, x, y)
    label = x.removeprefix("latency_").removesuffix("_ms").replace("avg", "mean")
    for (model, batch), part in measured.groupby(["model", "batch_size"], sort=True):
        unstable = [s == Status.UNSTABLE.value for s in part["status"]]
        fig.add_scatter(
            x=part[x], y=part[y], mode="lines+markers+text", name=f"{model} batch {batch}", cliponaxis=False,
            error_x=_error_bars(part, x), error_y=_error_bars(part, y),
            text=part["_load"].tolist(),
            textposition=label_positions(part[x].tolist(), part[y].tolist(), span),
            marker={"symbol": ["circle-open" if u else "circle" for u in unstable], "size": 9, "line": {"width": 2}},
            customdata=[[c, UNSTABLE_HOVER if u else "stable"] for c, u in zip(part["_load_text"], unstable,
                                                                                 strict=True)],
            hovertemplate=(f"<b>%{{fullData.name}}, %{{customdata[0]}}</b><br>{label} %{{x:.3~g}} ms"
                           f"<br>{y_hover}<br>%{{customdata[1]}}<extra></extra>"),
        )


def _highlight(fig: go.Figure, measured: pd.DataFrame, decision: Decision | None, y: str) -> None:
    """Star each model's chosen point and draw the budget as a labeled vertical line."""
    if decision is None:
        return
    xs, ys, sentences = [], [], []
    for choice in decision.choices:
        point = choice.point
        if not choice.within or point is None:
            continue
        row = measured[(measured["model"] == choice.model) & (measured["batch_size"] == point.batch_size)
                       & (measured["_load_text"] == str(point.load))]
        if len(row) and pd.notna(row[y].iloc[0]):
            xs.append(point.latency_ms)
            ys.append(float(row[y].iloc[0]))
            sentences.append(choice.sentence)
    if xs:
        fig.add_scatter(x=xs, y=ys, mode="markers", name=f"best within {decision.budget}", hovertext=sentences,
                        marker={"symbol": "star", "size": 20, "color": "#f5c518", "line": {"width": 1.5, "color": "#333"}},
                        hovertemplate="%{hovertext}<extra></extra>")
    fig.add_vline(x=decision.budget.latency_budget_ms, line_dash="dot", line_color="#c0392b",
                  annotation_text=f"budget {decision.budget}", annotation_position="top",
                  annotation_yanchor="bottom")  # above the plot, clear of the points' labels


def throughput_vs_latency(df: pd.DataFrame, decision: Decision | None = None) -> go.Figure:
    """Throughput against latency (p99, or the decision's statistic), one line per model and
    batch size, each marker labeled with its load (concurrency or request rate); a decision starred, its budget drawn."""
    statistic = _statistic(decision)
    title = f"Throughput vs {statistic.label} latency"
    measured = _measured(df)
    if measured.empty:
        return no_points_figure(df, title)
    fig = go.Figure()
    _point_traces(fig, measured, statistic.column, "throughput_infer_per_s", "%{y:,.0f} infer/s")
    _highlight(fig, measured, decision, "throughput_infer_per_s")
    fig.update_xaxes(rangemode="tozero")
    fig.update_yaxes(rangemode="tozero")
    return _layout(fig, title, "per model and batch size; each point labeled with its load (concurrency or request rate); hollow: unstable",
                   f"{statistic.label} latency (ms)", THROUGHPUT_TITLE)


def _baseline_value(baseline: pd.DataFrame, column: str) -> float:
    if baseline.empty or column not in baseline.columns or pd.isna(baseline.iloc[0][column]):
        return math.nan
    return float(baseline.iloc[0][column])


def memory_vs_latency(df: pd.DataFrame, baseline: pd.DataFrame, decision: Decision | None = None) -> go.Figure:
    """GPU memory above the baseline against latency, per model and batch size (Model
    Analyzer's view). Where the machine gives no GPU figures, the server's resident memory
    (its stubs included) against the baseline's, said in the title."""
    statistic = _statistic(decision)
    measured = _measured(df)
    gpu = bool(measured["gpu_memory_above_baseline_mb"].notna().any())
    if gpu:
        title, y = f"GPU memory above the baseline vs {statistic.label} latency", "gpu_memory_above_baseline_mb"
        y_title, level, line_at = "GPU memory above the baseline (MB)", _baseline_value(baseline, "gpu_memory_max_mb"), 0.0
    else:
        title = f"Server resident memory vs {statistic.label} latency (no GPU figures on this machine)"
        y, y_title = "server_rss_max_mb", "server and stubs, resident memory (MB)"
        level = line_at = _baseline_value(baseline, "server_rss_max_mb")
    if measured.empty:
        return no_points_figure(df, title)
    fig = go.Figure()
    _point_traces(fig, measured, statistic.column, y, "%{y:,.0f} MB")
    _highlight(fig, measured, decision, y)
    if math.isfinite(level):
        fig.add_hline(y=line_at, line_dash="dash", line_color="#888",
                      annotation_text=f"baseline (the server with no models): {level:,.0f} MB",
                      annotation_position="bottom right")
    fig.update_xaxes(rangemode="tozero")
    return _layout(fig, title, "per model and batch size; each point labeled with its load (concurrency or request rate); hollow: unstable",
                   f"{statistic.label} latency (ms)", y_title)


def latency_parts(rows: pd.DataFrame) -> pd.DataFrame:
    """Each row's mean latency in parts (ms): ``outside`` the server (the client's mean
    latency less the server's request time, at least 0), the server's ``queue``, its
    ``compute`` (input + infer + output) and its ``other`` time (request time less queue and
    compute, at least 0). Where every figure is there and neither floor applies, the parts
    add up to ``latency_avg_ms``; a part whose figures are missing is NaN."""
    server = rows["server_request_ms"]
    compute = rows["server_compute_input_ms"] + rows["server_compute_infer_ms"] + rows["server_compute_output_ms"]
    return pd.DataFrame({
        "outside": (rows["latency_avg_ms"] - server).clip(lower=0),
        "queue": rows["server_queue_ms"],
        "compute": compute,
        "other": (server - rows["server_queue_ms"] - compute).clip(lower=0),
    }, index=rows.index)


def latency_breakdown(df: pd.DataFrame) -> go.Figure:
    """Each point's mean latency as stacked bars (outside the server, queue, compute, other
    server time), grouped by model; a tick marks the client's mean latency itself."""
    title = "Where the time goes: mean latency per point"
    measured = _measured(df)
    if measured.empty:
        return no_points_figure(df, title)
    parts = latency_parts(measured)
    # two short lines per point, so many points fit side by side without turning the labels
    x = [measured["model"].tolist(), [f"b{b}<br>{'r' if load.endswith('/s') else 'c'}{load}"
                                      for b, load in zip(measured["batch_size"], measured["_load"], strict=True)]]
    hatch = ["/" if s == Status.UNSTABLE.value else "" for s in measured["status"]]
    fig = go.Figure()
    for column, name, colour in SEGMENTS:
        fig.add_bar(x=x, y=parts[column], name=name, marker={"color": colour, "pattern": {"shape": hatch}},
                    hovertemplate=f"%{{x}}<br>{name}: %{{y:.3~g}} ms<extra></extra>")
    fig.add_scatter(x=x, y=measured["latency_avg_ms"], mode="markers", name=MEAN_LATENCY,
                    marker={"symbol": "line-ew-open", "size": 22, "color": INK[True], "line": {"width": 2}},
                    hovertemplate="%{x}<br>mean latency %{y:.3~g} ms<extra></extra>")
    fig.update_layout(barmode="stack", legend={"orientation": "h", "yanchor": "top", "y": -0.42})
    fig.update_xaxes(tickangle=0)
    fig.update_yaxes(rangemode="tozero")
    missing = bool(measured["server_request_ms"].isna().any())
    note = "b: batch size, c: concurrency, r: request rate; hatched: unstable"
    note += "; points without the server's statistics show their total only" if missing else ""
    _layout(fig, title, note, "point (model, batch size, concurrency)", "mean latency (ms)")
    return fig.update_layout(height=HEIGHT + 100, margin={**MARGIN, "b": 150})  # the legend goes under the axis


def result_figures(df: pd.DataFrame, baseline: pd.DataFrame, decision: Decision | None = None,
                   light: bool = True) -> dict[str, go.Figure]:
    """The result charts by name; ``decision`` (optional) is starred and its budget drawn.
    ``light`` picks the theme (plotly_white, or plotly_dark for a dark page: pass a
    ThemeProbe's ``light``). The backgrounds stay opaque: these charts are saved in the
    notebook and read on pages of any colour."""
    figures = dict(zip(RESULT_CHARTS, (throughput_vs_latency(df, decision), memory_vs_latency(df, baseline, decision),
                                       latency_breakdown(df)), strict=True))
    figures["latency_breakdown"].update_traces(marker_color=INK[light], selector={"name": MEAN_LATENCY})
    return {name: themed(fig, light, transparent=False) for name, fig in figures.items()}
