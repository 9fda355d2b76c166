"""The packing plan's chart, a plain plotly figure (it travels as the plan's does, ui/static.py):
a bar per GPU, stacked by the memory of each model's replica on it.

    packing_figure(plan, verdicts={0: Verdict(True, "p99 within 20 ms for each")}, light=True)

Each model is one trace, so it keeps its colour (and one legend entry) across the GPUs it is
split over; a segment's height is its replica's memory (planning/packing.py ``Replica.memory_mb``:
GPU memory above the baseline, or the stubs' resident memory on a machine without a GPU), its
label the replica's rate of the model's whole target ("a: 300 of 500 infer/s"), its hover the
rest (capacity there, share of the GPU's compute, memory). Above each bar: the share of the
GPU's compute its replicas take. The GPU's memory for models and that memory less the headroom
are horizontal lines (all the plan's GPUs are alike), or, where they lie far above every bar
(a host's memory standing in for a GPU's, against a few stubs), said in the subtitle instead, so
the bars are not squeezed to slivers. A replica whose capacity beside its neighbours was assumed (not
measured together) is hatched; a GPU whose validation failed has a red frame and says so under
its name, one that passed says "validated".
The legend's entries are traces of their own, without data: a model's colour, and what the
hatching means.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import plotly.graph_objects as go

from analyzer_widgets.planning.budget import plain_number
from analyzer_widgets.planning.packing import PackingPlan, Replica
from analyzer_widgets.ui._theme import themed

HEIGHT = 460
#: a model's colour, by its place among the plan's needs (plotly's default sequence, then again)
COLOURS = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880", "#ff97ff",
           "#fecb52")
FAILED_COLOUR = "#c62828"
PASSED_COLOUR = "#2e7d32"
LIMIT_COLOUR = "#7f7f7f"
#: the hatching of a replica whose capacity beside its neighbours was assumed
ASSUMED_PATTERN = "/"
#: memory lines this many times above the tallest bar are said in a note instead of drawn
FAR_MEMORY = 4.0
#: the gap between bars, as a share of a GPU's slot on the axis
BAR_GAP = 0.35


@dataclass(frozen=True)
class Verdict:
    """A GPU's validation: its models measured together at their planned rates."""

    passed: bool
    reason: str = ""  # what was measured, or what failed


def gpu_label(index: int) -> str:
    return f"GPU {index}"


def segment_text(replica: Replica, target: float) -> str:
    """A segment's label: the replica's rate, of the model's whole target where it is split.

    >>> segment_text(Replica("a", 300.0, 1000.0, 1200.0, True), 500.0)
    'a: 300 of 500 infer/s'
    """
    whole = abs(replica.rate - target) <= 1e-9 * max(target, 1.0)
    return f"{replica.model}: {plain_number(replica.rate)}{'' if whole else f' of {plain_number(target)}'} infer/s"


def _hover(replica: Replica, target: float, gpu: int) -> str:
    lines = [f"<b>{replica.model}</b> on {gpu_label(gpu)}",
             f"{plain_number(replica.rate)} of its {plain_number(target)} infer/s target "
             f"({plain_number(100 * replica.rate / target, 2)}%)",
             f"memory {plain_number(replica.memory_mb)} MB",
             f"capacity here {plain_number(replica.capacity)} infer/s "
             + ("(measured)" if replica.measured else "(assumed: not measured beside these neighbours)"),
             f"{plain_number(100 * replica.compute_share, 2)}% of the GPU's compute"]
    return "<br>".join(lines)


def tick_text(index: int, assumed: bool, verdict: Verdict | None) -> str:
    """A GPU's name on the axis, with its validation (or that its figures are assumed).

    >>> tick_text(1, True, None)
    'GPU 1<br>assumed'
    >>> tick_text(0, False, Verdict(False, "p99 31 ms"))
    "GPU 0<br><span style='color:#c62828'>failed ✗</span>"
    """
    if verdict is not None:
        said = "validated ✓" if verdict.passed else "failed ✗"
        colour = PASSED_COLOUR if verdict.passed else FAILED_COLOUR
        return f"{gpu_label(index)}<br><span style='color:{colour}'>{said}</span>"
    return f"{gpu_label(index)}<br>assumed" if assumed else gpu_label(index)


def _memory_lines(fig: go.Figure, plan: PackingPlan, tallest: float) -> tuple[float, str]:
    """Draw the GPU's memory for models and its limit less the headroom; return the y axis's
    top, and what the subtitle says of them instead where they lie far above the bars
    (FAR_MEMORY): drawn to scale they would squeeze the bars to slivers."""
    spec = plan.gpu_spec
    total, limit = spec.memory_mb, spec.memory_limit_mb
    headroom = spec.headroom_pct if spec.memory_headroom_pct is None else spec.memory_headroom_pct
    if tallest > 0 and limit > FAR_MEMORY * tallest:
        return 1.2 * tallest, (f"memory for models: {plain_number(total)} MB per GPU ({plain_number(limit)} MB less "
                               f"{plain_number(headroom)}% headroom), far above the bars: not drawn")
    fig.add_hline(y=total, line_color=LIMIT_COLOUR, line_width=1.5,
                  annotation_text=f"memory for models {plain_number(total)} MB", annotation_position="top right",
                  annotation_font_color=LIMIT_COLOUR)
    if limit < total:
        fig.add_hline(y=limit, line_color=LIMIT_COLOUR, line_dash="dot", line_width=1.5,
                      annotation_text=f"less {plain_number(headroom)}% headroom: {plain_number(limit)} MB",
                      annotation_position="bottom right", annotation_font_color=LIMIT_COLOUR)
    return 1.12 * max(total, tallest), ""


def _how(plan: PackingPlan) -> str:
    if plan.exact:
        return "the fewest"
    return f"not proven the fewest; at least {plan.lower_bound}"


def _legend(fig: go.Figure, colours: Mapping[str, str], assumed: bool) -> None:
    """The legend's entries, apart from the data: a model's entry is its colour alone (its
    first segment's hatching or outline would say something of every replica), and one entry
    says what hatching means. Clicking a model's entry hides its segments (its legend group)."""
    for model, colour in colours.items():
        fig.add_bar(x=[None], y=[None], name=model, legendgroup=model, marker={"color": colour}, hoverinfo="skip")
    if assumed:
        fig.add_bar(x=[None], y=[None], name="capacity assumed, not measured together", hoverinfo="skip",
                    marker={"color": "rgba(0,0,0,0)", "line": {"color": LIMIT_COLOUR, "width": 1},
                            "pattern": {"shape": ASSUMED_PATTERN, "fgcolor": LIMIT_COLOUR, "size": 8}})


def _failed_outline(fig: go.Figure, position: int, gpu_top: float) -> None:
    """A red frame around a GPU whose validation failed (its bar is ``position``-th on the axis)."""
    half = (1 - BAR_GAP) / 2 + 0.01
    fig.add_shape(type="rect", xref="x", yref="y", x0=position - half, x1=position + half, y0=0, y1=gpu_top,
                  line={"color": FAILED_COLOUR, "width": 3}, fillcolor="rgba(0,0,0,0)", layer="above")


def packing_figure(plan: PackingPlan, *, verdicts: Mapping[int, Verdict] | None = None, light: bool = True,
                   title: str = "Packing plan") -> go.Figure:
    """A bar per GPU of ``plan``, stacked by each model's memory there (module docstring);
    ``verdicts``: each validated GPU's, by index; ``title``: what the plan is (a first plan
    before a re-plan is drawn with its own). Dressed for a light or dark page, on an
    opaque background (it travels)."""
    verdicts = verdicts or {}
    targets = {n.model: n.target_rate for n in plan.needs}
    colours = {n.model: COLOURS[i % len(COLOURS)] for i, n in enumerate(plan.needs)}
    labels = [gpu_label(g.index) for g in plan.gpus]
    fig = go.Figure()
    for model in targets:
        placed = [(g, r) for g in plan.gpus for r in g.replicas if r.model == model]
        if placed:
            fig.add_bar(
                x=[gpu_label(g.index) for g, _ in placed], y=[r.memory_mb for _, r in placed], name=model,
                legendgroup=model, showlegend=False,
                text=[segment_text(r, targets[model]) for _, r in placed], textposition="inside",
                insidetextanchor="middle", constraintext="none",
                hovertext=[_hover(r, targets[model], g.index) for g, r in placed],
                hovertemplate="%{hovertext}<extra></extra>",
                marker={"color": colours[model], "line": {"color": "rgba(0,0,0,0.35)", "width": 1},
                        "pattern": {"shape": [ASSUMED_PATTERN if not r.measured else "" for _, r in placed],
                                    "fillmode": "overlay", "fgcolor": "#333", "fgopacity": 0.35, "size": 8}},
            )
    assumed = any(gpu.assumed for gpu in plan.gpus)
    _legend(fig, {m: c for m, c in colours.items() if plan.replicas_of(m)}, assumed)
    tallest = max((g.memory_used_mb for g in plan.gpus), default=0.0)
    top, far = _memory_lines(fig, plan, tallest)
    for position, gpu in enumerate(plan.gpus):  # the compute each GPU's replicas take, above its bar
        verdict = verdicts.get(gpu.index)
        colour = None if verdict is None else PASSED_COLOUR if verdict.passed else FAILED_COLOUR
        fig.add_annotation(x=gpu_label(gpu.index), y=gpu.memory_used_mb, yanchor="bottom", showarrow=False,
                           text=f"compute {plain_number(100 * gpu.compute_share, 2)}%",
                           font={"size": 12, "color": colour}, hovertext=verdict.reason if verdict else None)
        if verdict is not None and not verdict.passed:
            _failed_outline(fig, position, gpu.memory_used_mb)
    count = plan.gpu_count
    limit = plain_number(100 * plan.gpu_spec.compute_limit, 2)
    # a line each: the bars, the limits, the marks (one line of them all ran off a 900 px chart)
    lines = ["bar: the memory of each model's replica on the GPU; label: the rate it serves, of the model's "
             "target where split", "; ".join([f"compute limit {limit}% per GPU", *([far] if far else [])])]
    marks = []
    if assumed:
        marks.append("hatched: capacity beside its neighbours assumed, not measured together")
    if any(not v.passed for v in verdicts.values()):
        marks.append("red frame: validation failed")
    if marks:
        lines.append("; ".join(marks))
    subtitle = "<br>".join(lines)
    fig.update_layout(
        title={"text": f"{title}: {count} GPU{'s' if count != 1 else ''} ({_how(plan)}) for "
                       f"{len(targets)} model{'s' if len(targets) != 1 else ''}<br><sup>{subtitle}</sup>"},
        barmode="stack", height=HEIGHT, margin={"t": 90 + 20 * len(lines), "b": 60}, bargap=BAR_GAP, showlegend=True,
        legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0, "traceorder": "normal"},
        uniformtext={"minsize": 9, "mode": "hide"},
    )
    fig.update_xaxes(categoryorder="array", categoryarray=labels, tickvals=labels,
                     ticktext=[tick_text(g.index, g.assumed, verdicts.get(g.index)) for g in plan.gpus])
    fig.update_yaxes(range=[0, top if top > 0 else 1], title="memory (MB)")
    return themed(fig, light, transparent=False)
