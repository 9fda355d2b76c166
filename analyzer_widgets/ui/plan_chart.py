"""The plan's chart, a plain plotly figure (it travels as the result charts do, ui/static.py):
throughput against latency across the variants a plan measured.

    pareto_figure(model, ranked, constraints, recommended="i1_b16", light=True)

Each variant with an answer is one marker at its answer (the highest load within the
budget): x its latency at the budget's statistic, y its throughput, with the 95% intervals
as error bars where the figures have them, labelled with its name. The marker's area grows
with the variant's memory (GPU memory above the baseline, or the server's resident memory
above the baseline's on a machine without a GPU; planning/planner.py ``variant_memory_mb``).
Variants that fail a constraint (a throughput floor, a memory cap) are grey; the ones that
meet them are joined by their Pareto front (no other variant that meets them has both
more throughput and less latency); the recommendation is starred; the budget is a dotted
vertical line. Variants without an answer (nothing within the budget, or they could not be
measured) have no point to draw: the subtitle names them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from analyzer_widgets.planning.budget import plain_number
from analyzer_widgets.planning.planner import Constraints, Judged
from analyzer_widgets.schema import INTERVALS, load_of
from analyzer_widgets.ui._theme import themed

HEIGHT = 440
#: a marker's diameter in px: the smallest and the largest memory of the plan
SIZE_RANGE = (12.0, 44.0)
#: a variant whose memory is unknown (NaN)
UNKNOWN_SIZE = 10.0
MEETS_COLOUR = "#1f77b4"
FAILS_COLOUR = "#9e9e9e"
STAR_COLOUR = "#f5c518"
BUDGET_COLOUR = "#c0392b"
THROUGHPUT = "throughput_infer_per_s"
#: a budget this many times the largest latency drawn is not drawn
#: to scale: an arrow at the chart's edge says it
FAR_BUDGET = 2.0
#: the most variants without an answer named in the subtitle
MAX_NAMED = 4


def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[str]:
    """The names of the points (name, latency, throughput) no other point dominates (at most
    the latency and at least the throughput, one of them strictly), by latency.

    >>> pareto_front([("a", 1.0, 100.0), ("b", 2.0, 300.0), ("c", 3.0, 200.0)])
    ['a', 'b']
    """
    def dominated(x: float, y: float) -> bool:
        return any(ox <= x and oy >= y and (ox < x or oy > y) for _, ox, oy in points)
    return [name for name, x, y in sorted(points, key=lambda p: (p[1], -p[2])) if not dominated(x, y)]


def marker_sizes(memory_mb: Sequence[float]) -> list[float]:
    """Each marker's diameter (px): its area in proportion to its memory, the largest
    memory at :data:`SIZE_RANGE`'s top; never below its bottom; NaN memory a small marker.

    >>> marker_sizes([25.0, 100.0, float("nan")])
    [22.0, 44.0, 10.0]
    """
    known = [m for m in memory_mb if math.isfinite(m) and m > 0]
    top = max(known, default=math.nan)
    low, high = SIZE_RANGE
    return [round(max(low, high * math.sqrt(m / top)), 1) if math.isfinite(m) and m > 0 else UNKNOWN_SIZE
            for m in memory_mb]


def memory_label(ranked: Sequence[Judged]) -> str:
    """What a plan's memory figures are: GPU memory where the answers have it."""
    gpu = any(math.isfinite(float(j.answer.get("gpu_memory_above_baseline_mb", math.nan)))
              for j in ranked if j.answer is not None)
    return "GPU memory above the baseline" if gpu else "server resident memory above the baseline"


def _bars(rows: Sequence[Mapping[str, Any]], column: str) -> dict[str, Any] | None:
    """Error bars from ``column``'s 95% interval (schema.INTERVALS); None where it has none."""
    if column not in INTERVALS:
        return None
    low, high = INTERVALS[column]

    def spread(row: Mapping[str, Any], bound: str, above: bool) -> float | None:
        value = float(row.get(bound, math.nan))
        d = (value - float(row[column])) if above else (float(row[column]) - value)
        return d if math.isfinite(d) else None  # JSON has no NaN: no bar there
    above = [spread(r, high, True) for r in rows]
    below = [spread(r, low, False) for r in rows]
    if all(v is None for v in above + below):
        return None
    return {"type": "data", "symmetric": False, "array": above, "arrayminus": below, "thickness": 1, "width": 3}


def _hover(j: Judged, constraints: Constraints) -> str:
    answer = j.answer or {}
    lines = [f"<b>{j.variant}</b>" + (" (the model's own config)" if j.original else ""),
             ", ".join(f"{k} {v}" for k, v in j.fields.items()),
             f"batch {answer.get('batch_size')}, {load_of(answer)}",
             f"{plain_number(float(answer[THROUGHPUT]))} infer/s at {constraints.statistic.label} "
             f"{plain_number(float(answer[constraints.statistic.column]))} ms",
             f"memory {plain_number(j.memory_mb)} MB" if math.isfinite(j.memory_mb) else "memory unknown"]
    if j.failed:
        lines.append(f"fails: {j.failed}")
    if j.doubtful:
        lines.append(f"doubtful: {'; '.join(j.doubtful)}")
    return "<br>".join(line for line in lines if line)


def _group(fig: go.Figure, drawn: Sequence[tuple[Judged, float]], constraints: Constraints, *, meets: bool) -> None:
    """One trace of the variants that meet the constraints (or of those that fail them)."""
    part = [(j, size) for j, size in drawn if j.meets is meets]
    if not part:
        return
    rows = [j.answer or {} for j, _ in part]
    column = constraints.statistic.column
    colour = MEETS_COLOUR if meets else FAILS_COLOUR
    fig.add_scatter(
        x=[float(r[column]) for r in rows], y=[float(r[THROUGHPUT]) for r in rows],
        mode="markers+text", text=[j.variant for j, _ in part], textposition="top center", cliponaxis=False,
        name="meets the constraints" if meets else "fails a constraint",
        error_x=_bars(rows, column), error_y=_bars(rows, THROUGHPUT),
        marker={"size": [size for _, size in part], "color": colour, "opacity": 0.75 if meets else 0.45,
                "line": {"width": 1, "color": "#333" if meets else "#777"}},
        textfont={"color": None if meets else FAILS_COLOUR},
        hovertext=[_hover(j, constraints) for j, _ in part], hovertemplate="%{hovertext}<extra></extra>",
    )


def _front(fig: go.Figure, drawn: Sequence[tuple[Judged, float]], constraints: Constraints) -> None:
    points = {j.variant: (float((j.answer or {})[constraints.statistic.column]), float((j.answer or {})[THROUGHPUT]))
              for j, _ in drawn if j.meets}
    front = pareto_front([(name, x, y) for name, (x, y) in points.items()])
    if len(front) > 1:
        fig.add_scatter(x=[points[n][0] for n in front], y=[points[n][1] for n in front], mode="lines",
                        line={"dash": "dash", "width": 1.5, "color": MEETS_COLOUR}, hoverinfo="skip",
                        name="Pareto front (more throughput for less latency)")


def _star(fig: go.Figure, drawn: Sequence[tuple[Judged, float]], constraints: Constraints,
          recommended: str | None) -> None:
    best = next((j for j, _ in drawn if j.variant == recommended), None)
    if best is None or best.answer is None:
        return
    fig.add_scatter(x=[float(best.answer[constraints.statistic.column])], y=[float(best.answer[THROUGHPUT])],
                    mode="markers", name=f"recommended: {best.variant}", hovertext=[_hover(best, constraints)],
                    hovertemplate="%{hovertext}<extra></extra>",
                    marker={"symbol": "star", "size": 22, "color": STAR_COLOUR, "line": {"width": 1.5, "color": "#333"}})


def _budget(fig: go.Figure, answers: Sequence[Mapping[str, Any]], constraints: Constraints) -> float:
    """Draw the budget: a vertical line where it is near the points, else (a budget far above
    every answer would squeeze them against the axis) an arrow at the right edge saying
    where it is. Returns the x axis's right end: the figures set it, not their intervals'
    ends (on a busy host a p99 interval can reach a hundred times its figure), which the
    axis may cut."""
    column, budget = constraints.statistic.column, constraints.latency_budget_ms
    reach = max(float(a[column]) for a in answers)
    if budget <= FAR_BUDGET * reach:
        fig.add_vline(x=budget, line_dash="dot", line_color=BUDGET_COLOUR, annotation_text=f"budget {constraints.budget_text()}",
                      annotation_position="top", annotation_yanchor="bottom",  # above the plot, clear of the labels
                      annotation_font_color=BUDGET_COLOUR)
        return 1.08 * max(budget, reach)
    fig.add_annotation(x=1, y=1, xref="paper", yref="paper", xanchor="right", yanchor="bottom", showarrow=False,
                       text=f"budget {constraints.budget_text()}: off the chart →", font={"color": BUDGET_COLOUR})
    return 1.15 * reach


def _subtitle(ranked: Sequence[Judged], drawn: Sequence[tuple[Judged, float]]) -> str:
    known = sorted({plain_number(j.memory_mb) for j in (j for j, _ in drawn) if math.isfinite(j.memory_mb)},
                   key=lambda text: float(text.replace(",", "")))
    span = f"{known[0]} to {known[-1]} MB" if len(known) > 1 else f"{known[0]} MB" if known else "unknown"
    said = [f"marker area: {memory_label(ranked)}, {span}"]
    undrawn = [j for j in ranked if j.answer is None]
    if undrawn:
        names = ", ".join(j.variant for j in undrawn[:MAX_NAMED]) + (", ..." if len(undrawn) > MAX_NAMED else "")
        said.append(f"not drawn, without an answer (see why in the list): {names}")
    return "; ".join(said)


def _no_points(model: str, ranked: Sequence[Judged], constraints: Constraints) -> go.Figure:
    why = f" ({ranked[0].failed})" if len(ranked) == 1 and ranked[0].failed else ""
    fig = go.Figure()
    fig.add_annotation(text=f"no variant has a load within {constraints.budget_text()}{why}", x=0.5, y=0.5,
                       xref="paper", yref="paper", showarrow=False, font={"size": 15})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(title=f"Plan for {model}: nothing to draw", height=HEIGHT)
    return fig


def pareto_figure(model: str, ranked: Sequence[Judged], constraints: Constraints, *, recommended: str | None,
                  light: bool = True) -> go.Figure:
    """Throughput against latency at the budget's statistic, one marker per variant measured
    (module docstring); ``recommended``: the variant to star. Dressed for a light or dark
    page, on an opaque background (it travels)."""
    drawn = [(j, size) for j, size in zip(ranked, marker_sizes([j.memory_mb for j in ranked]), strict=True)
             if j.answer is not None]
    if not drawn:
        return themed(_no_points(model, ranked, constraints), light, transparent=False)
    fig = go.Figure()
    _front(fig, drawn, constraints)
    _group(fig, drawn, constraints, meets=True)
    _group(fig, drawn, constraints, meets=False)
    _star(fig, drawn, constraints, recommended)
    right = _budget(fig, [j.answer or {} for j, _ in drawn], constraints)
    label = constraints.statistic.label
    fig.update_xaxes(range=[0, right], zeroline=False, title=f"{label} latency at the highest load within the budget (ms)")
    top = max(float((j.answer or {})[THROUGHPUT]) for j, _ in drawn)
    fig.update_yaxes(range=[0, 1.2 * top if top > 0 else 1], title="throughput (inferences/s)")  # the figures, as x
    fig.update_layout(
        title={"text": f"Plan for {model}: throughput vs {label} latency per variant"
                       f"<br><sup>{_subtitle(ranked, drawn)}</sup>"},
        height=HEIGHT, margin={"t": 90, "b": 50}, showlegend=True,
        legend={"orientation": "h", "yanchor": "top", "y": -0.16, "x": 0},
    )
    return themed(fig, light, transparent=False)
