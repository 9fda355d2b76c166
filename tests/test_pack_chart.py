"""The packing plan's chart (ui/pack_chart.py), drawn from real plans of the packing logic
(planning/packing.py: pure, no server): a bar per GPU stacked by model memory, each model one
colour across GPUs, its share of its target as the label, the memory lines or the note that
replaces them, assumed capacities hatched, a failed validation framed in red."""

from __future__ import annotations

import doctest

import pytest

from analyzer_widgets.planning.packing import Gpus, ModelNeed, pack
from analyzer_widgets.ui import pack_chart
from analyzer_widgets.ui.pack_chart import ASSUMED_PATTERN, FAILED_COLOUR, Verdict, packing_figure

#: docs/packing.md's example: a and c share GPU 0 (their capacities beside each other assumed),
#: b alone on GPU 1, c split 200 + 800 over GPUs 0 and 2
NEEDS = [ModelNeed("a", 3000, 1000, 500), ModelNeed("b", 3000, 1000, 200), ModelNeed("c", 2000, 1000, 1000)]


def example_plan():  # type: ignore[no-untyped-def]
    plan = pack(NEEDS, Gpus(memory_mb=16000, headroom_pct=20))
    assert [g.models for g in plan.gpus] == [("a", "c"), ("b",), ("c",)]  # what the tests below read
    return plan


def data_traces(fig):  # type: ignore[no-untyped-def]
    return {t.name: t for t in fig.data if t.x is not None and any(x is not None for x in t.x)}


def test_the_doctests_hold() -> None:
    assert doctest.testmod(pack_chart).failed == 0


def test_a_bar_per_gpu_stacked_by_model_memory_each_model_one_colour() -> None:
    plan = example_plan()
    fig = packing_figure(plan)
    assert fig.layout.barmode == "stack"
    traces = data_traces(fig)
    assert set(traces) == {"a", "b", "c"}
    a, b, c = traces["a"], traces["b"], traces["c"]
    # each model is one trace: its segments on every GPU it is on, its memory as their height
    assert list(a.x) == ["GPU 0"] and list(a.y) == [3000]
    assert list(b.x) == ["GPU 1"] and list(b.y) == [3000]
    assert list(c.x) == ["GPU 0", "GPU 2"] and list(c.y) == [2000, 2000]
    assert len({a.marker.color, b.marker.color, c.marker.color}) == 3
    # GPU 0's stack is a's memory and c's: the bar's height is the GPU's memory used
    stack = sum(t.y[list(t.x).index("GPU 0")] for t in traces.values() if "GPU 0" in t.x)
    assert stack == plan.gpus[0].memory_used_mb == 5000
    assert list(fig.layout.xaxis.categoryarray) == ["GPU 0", "GPU 1", "GPU 2"]
    # the legend: a colour per model (without data), apart from the segments
    legend = [t for t in fig.data if t.showlegend is not False]
    assert [t.name for t in legend][:3] == ["a", "b", "c"]
    assert all(t.marker.color == traces[t.name].marker.color for t in legend[:3])


def test_each_segment_says_its_share_of_the_target_and_the_hover_the_rest() -> None:
    fig = packing_figure(example_plan())
    traces = data_traces(fig)
    assert list(traces["a"].text) == ["a: 500 infer/s"]  # all of its target: said once
    assert list(traces["c"].text) == ["c: 200 of 1,000 infer/s", "c: 800 of 1,000 infer/s"]
    hover = traces["c"].hovertext[0]
    assert "200 of its 1,000 infer/s target (20%)" in hover and "memory 2,000 MB" in hover
    assert "capacity here 1,000 infer/s (assumed" in hover and "20% of the GPU's compute" in hover
    # the GPU's compute share above each bar
    compute = [a.text for a in fig.layout.annotations if (a.text or "").startswith("compute ")]
    assert compute == ["compute 70%", "compute 20%", "compute 80%"]


def test_the_memory_for_models_and_its_headroom_are_lines() -> None:
    fig = packing_figure(example_plan())
    lines = sorted(s.y0 for s in fig.layout.shapes if s.type == "line")
    assert lines == [pytest.approx(12800.0), 16000.0]
    words = " ".join(a.text or "" for a in fig.layout.annotations)
    assert "memory for models 16,000 MB" in words and "less 20% headroom: 12,800 MB" in words
    assert fig.layout.yaxis.range[1] >= 16000


def test_memory_far_above_the_bars_is_a_note_not_lines_that_squeeze_them() -> None:
    # a CPU machine: a few stubs' resident memory against the host's memory for models
    plan = pack([ModelNeed("mlp_numpy", 45, 2000, 500), ModelNeed("mixed_inputs", 38, 3000, 200)],
                Gpus(memory_mb=6000))
    fig = packing_figure(plan, light=False)
    assert not [s for s in fig.layout.shapes if s.type == "line"]
    assert ("memory for models: 6,000 MB per GPU (4,800 MB less 20% headroom), far above the bars: not drawn"
            in fig.layout.title.text)
    assert fig.layout.yaxis.range[1] == pytest.approx(1.2 * 83)
    assert fig.layout.template.layout.paper_bgcolor is not None  # dark, and opaque: it travels


def test_assumed_capacities_are_hatched_and_measured_ones_not() -> None:
    plan = example_plan()
    assert plan.gpus[0].assumed and not plan.gpus[1].assumed
    traces = data_traces(packing_figure(plan))
    assert list(traces["a"].marker.pattern.shape) == [ASSUMED_PATTERN]
    assert list(traces["c"].marker.pattern.shape) == [ASSUMED_PATTERN, ""]  # beside a on GPU 0; alone on GPU 2
    assert list(traces["b"].marker.pattern.shape) == [""]
    fig = packing_figure(plan)
    assert "hatched: capacity beside its neighbours assumed" in fig.layout.title.text
    assert any(t.name == "capacity assumed, not measured together" for t in fig.data)
    assert list(fig.layout.xaxis.ticktext) == ["GPU 0<br>assumed", "GPU 1", "GPU 2"]
    # measured together: nothing assumed, nothing hatched, no legend entry for it
    measured = pack(NEEDS, Gpus(16000), {("a", "c"): 900, ("c", "a"): 900})
    fig = packing_figure(measured)
    assert not any(g.assumed for g in measured.gpus)
    assert all(shape == "" for t in data_traces(fig).values() for shape in t.marker.pattern.shape)
    assert "hatched" not in fig.layout.title.text


def test_a_failed_validation_is_framed_in_red_and_a_passed_one_says_validated() -> None:
    fig = packing_figure(example_plan(), verdicts={0: Verdict(False, "a: p99 31 ms above 20 ms"),
                                                   1: Verdict(True, "p99 within 20 ms")})
    frames = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(frames) == 1 and frames[0].line.color == FAILED_COLOUR
    assert frames[0].x0 < 0 < frames[0].x1 and frames[0].y1 == 5000  # around GPU 0's bar, the first on the axis
    ticks = list(fig.layout.xaxis.ticktext)
    assert "failed ✗" in ticks[0] and "validated ✓" in ticks[1] and ticks[2] == "GPU 2"
    assert "red frame: validation failed" in fig.layout.title.text
    compute = {a.text: a.hovertext for a in fig.layout.annotations if (a.text or "").startswith("compute ")}
    assert compute["compute 70%"] == "a: p99 31 ms above 20 ms"


def test_the_title_says_how_many_gpus_and_whether_they_are_proven_the_fewest() -> None:
    fig = packing_figure(example_plan())
    assert fig.layout.title.text.startswith("Packing plan: 3 GPUs (the fewest) for 3 models")
    # first-fit alone (the exact solver refused by exact_max_sets) packs these memories into 3
    # GPUs where 440 + 280 + 280 twice fills 2: not proven the fewest
    sizes = [440, 440, 280, 280, 280, 280]
    heuristic = pack([ModelNeed(m, s, 1000, 1) for m, s in zip("abcdef", sizes, strict=True)],
                     Gpus(1000, headroom_pct=0), exact_max_sets=1)
    assert (heuristic.gpu_count, heuristic.lower_bound) == (3, 2)
    fig = packing_figure(heuristic)
    assert fig.layout.title.text.startswith("Packing plan: 3 GPUs (not proven the fewest; at least 2) for 6 models")
