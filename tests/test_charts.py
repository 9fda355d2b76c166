"""The result charts (ui/charts.py) on hand-made rows: figure data only, no kernel, no browser."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from analyzer_widgets.planning.budget import Budget, choose
from analyzer_widgets.results import frame
from analyzer_widgets.schema import MODEL_COLUMNS, SERVER_COLUMNS, Row
from analyzer_widgets.ui.charts import (
    NO_POINTS,
    label_positions,
    latency_breakdown,
    latency_parts,
    memory_vs_latency,
    result_figures,
    throughput_vs_latency,
)


def point(model: str = "m", batch: int = 1, concurrency: int = 1, **values: Any) -> Row:
    """A measured row whose latency figures add up: 0.2 ms outside the server, 0.1 queue,
    0.5 compute (0.05 + 0.4 + 0.05), 0.05 other server time, per unit of concurrency."""
    c = float(concurrency)
    figures = {"throughput_infer_per_s": 1_000.0 * batch * c, "latency_avg_ms": 0.85 * c, "latency_p99_ms": 1.0 * c,
               "server_request_ms": 0.65 * c, "server_queue_ms": 0.1 * c, "server_compute_input_ms": 0.05 * c,
               "server_compute_infer_ms": 0.4 * c, "server_compute_output_ms": 0.05 * c,
               "gpu_memory_max_mb": 1_100.0 + batch, "gpu_memory_above_baseline_mb": 30.0 + batch,
               "server_rss_max_mb": 300.0 + batch}
    return Row(MODEL_COLUMNS, {"model": model, "batch_size": batch, "concurrency": concurrency, "status": "ok",
                               **figures, **values})


def sweep(*extra: Row) -> pd.DataFrame:
    points = [point(batch=b, concurrency=c) for b in (1, 8) for c in (1, 2, 4)]
    return frame([*points, *extra], MODEL_COLUMNS)


BASELINE = frame([Row(SERVER_COLUMNS, {"gpu_memory_max_mb": 1_070.0, "server_rss_max_mb": 250.0})], SERVER_COLUMNS)
NO_GPU = {"gpu_memory_max_mb": math.nan, "gpu_memory_above_baseline_mb": math.nan}


def test_each_marker_is_labeled_with_its_concurrency_as_text_beside_the_line() -> None:
    fig = throughput_vs_latency(sweep())
    assert [t.name for t in fig.data] == ["m batch 1", "m batch 8"]
    for trace in fig.data:
        assert "text" in trace.mode and list(trace.text) == ["1", "2", "4"]
        assert all(p in ("top left", "top center", "bottom right", "top right", "bottom center", "bottom left")
                   for p in trace.textposition)
    assert fig.layout.title.text.startswith("Throughput vs p99 latency")
    assert fig.layout.xaxis.title.text == "p99 latency (ms)"
    assert fig.layout.yaxis.title.text == "throughput (inferences/s)"


def test_labels_go_across_the_line_not_along_it() -> None:
    # rising to the right: the labels sit up-left of the line
    assert label_positions([1, 2, 3], [1, 2, 3], (2, 2)) == ["top left"] * 3
    # flat: above it (the first one up-left, where no segment goes)
    assert label_positions([1, 2, 3], [5, 5, 5], (2, 1)) == ["top left", "top center", "top center"]
    # rising to the left (latency fell as throughput rose): up-right across the line in the
    # middle, not up-left along it
    assert label_positions([3, 2, 1], [1, 2, 3], (2, 2))[1] == "top right"


def test_unstable_points_are_hollow_and_say_so_on_hover() -> None:
    df = sweep(point(batch=1, concurrency=8, status="unstable", reason="not stable within 10%"))
    trace = throughput_vs_latency(df).data[0]
    assert list(trace.marker.symbol) == ["circle", "circle", "circle", "circle-open"]
    assert "unstable" in trace.customdata[-1][1] and "unstable" not in trace.customdata[0][1]
    assert "%{customdata[1]}" in trace.hovertemplate
    assert list(memory_vs_latency(df, BASELINE).data[0].marker.symbol)[-1] == "circle-open"


def test_a_decision_is_starred_and_its_budget_drawn_as_a_labeled_line() -> None:
    df = sweep()
    decision = choose(df, Budget(2.5))  # batch 8, concurrency 2: 16,000 infer/s at p99 2 ms
    fig = throughput_vs_latency(df, decision)
    star = fig.data[-1]
    assert star.marker.symbol == "star" and (list(star.x), list(star.y)) == ([2.0], [16_000.0])
    assert star.hovertext[0] == decision.choices[0].sentence
    assert "p99 ≤ 2.5 ms" in star.name
    (line,) = fig.layout.shapes
    assert (line.x0, line.x1, line.yref) == (2.5, 2.5, "y domain")
    assert fig.layout.annotations[0].text == "budget p99 ≤ 2.5 ms"
    memory = memory_vs_latency(df, BASELINE, decision)
    assert memory.data[-1].marker.symbol == "star" and list(memory.data[-1].y) == [38.0]


def test_a_decision_on_another_statistic_moves_the_x_axis_to_it() -> None:
    df = sweep()
    df["latency_p95_ms"] = df["latency_p99_ms"] * 0.5
    fig = throughput_vs_latency(df, choose(df, Budget(1, "p95")))
    assert fig.layout.title.text.startswith("Throughput vs p95 latency")
    assert list(fig.data[0].x) == [0.5, 1.0, 2.0]


def test_no_point_within_the_budget_draws_the_line_and_no_star() -> None:
    df = sweep()
    fig = throughput_vs_latency(df, choose(df, Budget(0.5)))
    assert [t.name for t in fig.data] == ["m batch 1", "m batch 8"] and len(fig.layout.shapes) == 1


def test_memory_above_the_baseline_against_latency() -> None:
    fig = memory_vs_latency(sweep(), BASELINE)
    assert fig.layout.title.text.startswith("GPU memory above the baseline vs p99 latency")
    assert list(fig.data[1].y) == [38.0, 38.0, 38.0] and list(fig.data[1].text) == ["1", "2", "4"]
    assert fig.layout.yaxis.title.text == "GPU memory above the baseline (MB)"
    (line,) = fig.layout.shapes
    assert line.y0 == 0 and "1,070 MB" in fig.layout.annotations[0].text


def test_without_gpu_figures_the_memory_chart_shows_the_servers_resident_memory_and_says_so() -> None:
    df = frame([point(batch=b, concurrency=c, **NO_GPU) for b in (1, 8) for c in (1, 2)], MODEL_COLUMNS)
    baseline = frame([Row(SERVER_COLUMNS, {"gpu_memory_max_mb": math.nan, "server_rss_max_mb": 250.0})],
                     SERVER_COLUMNS)
    fig = memory_vs_latency(df, baseline)
    assert "no GPU figures" in fig.layout.title.text and "resident memory" in fig.layout.title.text
    assert list(fig.data[0].y) == [301.0, 301.0]
    (line,) = fig.layout.shapes
    assert line.y0 == 250.0 and "250 MB" in fig.layout.annotations[0].text


def test_the_breakdown_stacks_to_the_mean_latency_where_the_figures_are_complete() -> None:
    df = sweep()
    parts = latency_parts(df)
    assert parts.sum(axis=1).tolist() == pytest.approx(df["latency_avg_ms"].tolist())
    fig = latency_breakdown(df)
    bars = [t for t in fig.data if t.type == "bar"]
    assert fig.layout.barmode == "stack" and len(bars) == 4
    assert [b.name for b in bars][:3] == ["outside the server (client, network)", "server queue",
                                          "server compute (input + infer + output)"]
    totals = [sum(values) for values in zip(*(b.y for b in bars), strict=True)]
    assert totals == pytest.approx(df["latency_avg_ms"].tolist())
    assert list(bars[0].x[0]) == ["m"] * 6 and list(bars[0].x[1])[:2] == ["b1<br>c1", "b1<br>c2"]
    tick = fig.data[-1]
    assert tick.name == "mean latency (client)" and list(tick.y) == pytest.approx(df["latency_avg_ms"].tolist())


def test_the_breakdown_floors_and_leaves_missing_figures_out() -> None:
    df = frame([point(latency_avg_ms=0.5, server_request_ms=0.65),  # the server's time above the client's
                point(batch=8, server_request_ms=math.nan)], MODEL_COLUMNS)
    parts = latency_parts(df)
    assert parts["outside"].iloc[0] == 0.0
    assert math.isnan(parts["outside"].iloc[1]) and math.isnan(parts["other"].iloc[1])
    assert "total only" in latency_breakdown(df).layout.title.text


def test_unstable_bars_are_hatched() -> None:
    df = sweep(point(batch=1, concurrency=8, status="unstable"))
    bar = latency_breakdown(df).data[0]
    assert list(bar.marker.pattern.shape).count("/") == 1


@pytest.mark.parametrize("statuses", [[], ["skipped", "skipped", "failed"]])
def test_no_measured_points_give_a_note_instead_of_empty_axes(statuses: list[str]) -> None:
    df = frame([point(batch=128, status=s, reason="batch size 128 is above max_batch_size 64") for s in statuses],
               MODEL_COLUMNS)
    figures = result_figures(df, BASELINE)
    assert list(figures) == ["throughput_vs_latency", "memory_vs_latency", "latency_breakdown"]
    for fig in figures.values():
        (note,) = fig.layout.annotations
        assert note.text.startswith(NO_POINTS) and (note.x, note.y, note.xref, note.yref) == (0.5, 0.5, "paper", "paper")
        assert fig.layout.xaxis.visible is False and not fig.data
    if statuses:
        assert "2 skipped, 1 failed" in figures["throughput_vs_latency"].layout.annotations[0].text


def test_result_figures_take_an_optional_decision() -> None:
    df = sweep()
    plain = result_figures(df, BASELINE)
    decided = result_figures(df, BASELINE, choose(df, Budget(2.5)))
    assert len(decided["throughput_vs_latency"].data) == len(plain["throughput_vs_latency"].data) + 1
    assert "Throughput vs p99 latency" in decided["throughput_vs_latency"].layout.title.text
