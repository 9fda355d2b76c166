"""A point measured in visits (--visits): its windows gathered round by round over the
model's grid, the row pooling them with intervals over the visits. Pooling on known data
(no server), then a real sweep."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from conftest import assert_counts_agree

import analyzer_widgets as aw
from analyzer_widgets.config import MeasurementSettings
from analyzer_widgets.loadgen.stats import Ending, Window, batch_means_interval, grouped_intervals, summarize
from analyzer_widgets.runner import Visit, pooled_figures
from analyzer_widgets.schema import MODEL_COLUMNS, sampled_columns
from analyzer_widgets.server.control import ModelStats


def _visit(start: float, n_ok: int, latency_s: float, ending: Ending = Ending.STABLE, gpu_max: float = 100.0,
           power: float = 200.0) -> Visit:
    windows = tuple(Window(start + i, start + i + 1, 1, np.full(n_ok, latency_s), 0, Counter()) for i in range(3))
    reduced = {c.name: math.nan for c in sampled_columns(MODEL_COLUMNS)}
    reduced.update(gpu_memory_max_mb=gpu_max, gpu_power_mean_w=power)
    served = ModelStats(success_count=3 * n_ok, inference_count=3 * n_ok, execution_count=3 * n_ok)
    return Visit(windows, windows, served, reduced, ending, 0.05)


def test_visits_pool_their_windows_and_take_each_visit_as_one_batch() -> None:
    visits = [_visit(0, 100, 0.010), _visit(50, 120, 0.008, gpu_max=140.0, power=300.0),
              _visit(100, 80, 0.012, ending=Ending.MAX_TRIALS)]
    figures = pooled_figures(visits, MeasurementSettings(), baseline_gpu_memory_mb=40.0)
    assert figures["visit_count"] == 3 and figures["window_count"] == 9
    assert figures["throughput_infer_per_s"] == pytest.approx(100.0)  # 900 requests over 9 s
    # the interval's batches are the visits' figures (100, 120, 80 infer/s), not the 9 windows
    expected = batch_means_interval(100.0, [100.0, 120.0, 80.0])
    assert figures["throughput_ci_low_infer_per_s"] == pytest.approx(expected.low)
    assert figures["throughput_ci_high_infer_per_s"] == pytest.approx(expected.high)
    # one visit that ran out of windows makes the row's ending
    assert figures["ended_by"] == "max_trials" and figures["status"] == "unstable"
    # the server's counts add up; the sampled figures combine by their reduction
    assert figures["server_request_count"] == 900
    assert figures["gpu_memory_max_mb"] == 140.0 and figures["gpu_memory_above_baseline_mb"] == 100.0
    assert figures["gpu_power_mean_w"] == pytest.approx((200 + 300 + 200) / 3)  # equal spans
    assert figures["warmup_s"] == pytest.approx(0.15)


def test_one_visit_keeps_intervals_over_its_windows() -> None:
    visit = _visit(0, 100, 0.010)
    figures = pooled_figures([visit], MeasurementSettings(), baseline_gpu_memory_mb=0.0)
    assert figures["visit_count"] == 1 and figures["ended_by"] == "stable"
    # three identical windows: no spread, a zero-width interval
    assert figures["throughput_ci_low_infer_per_s"] == figures["throughput_ci_high_infer_per_s"] == 100.0


def test_a_bound_below_zero_is_cut_there_without_flattering_the_precision() -> None:
    far_apart = [[Window(0, 1, 1, np.full(n, 0.01))] for n in (10, 200, 15)]
    intervals = grouped_intervals(far_apart, summarize([w for group in far_apart for w in group]))
    assert intervals.throughput.low == 0.0
    uncut = batch_means_interval(75.0, [10.0, 200.0, 15.0])
    assert uncut.low < 0 and intervals.throughput.half_width == pytest.approx(uncut.half_width)


def test_visits_do_not_go_with_a_budget_search() -> None:
    with pytest.raises(aw.ConfigError, match="visits"):
        aw.make_spec(models=["m"], model_repository=".", visits=3, latency_budget_ms=20)


@pytest.mark.server
def test_a_sweep_in_visits_measures_each_point_in_rounds() -> None:
    started: list[tuple[int, int]] = []

    def note(event: object) -> None:
        if isinstance(event, aw.PointStarted):
            started.append((event.batch_size, event.concurrency))

    frame = aw.profile(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=[1],
                       concurrency=[1, 2], visits=2, window_ms=200, stable_windows=2, max_trials=4, baseline_s=0.3,
                       on_event=note).to_frame()
    # round by round: each point's first visit before any point's second
    assert started == [(1, 1), (1, 2), (1, 1), (1, 2)]
    assert list(frame["visit_count"]) == [2, 2]
    for row in frame.to_dict("records"):
        assert row["status"] in ("ok", "unstable"), row["reason"]
        assert 4 <= row["window_count"] <= 8
        assert row["measured_s"] == pytest.approx(0.8, rel=0.3)  # two visits of two reported 200 ms windows
        assert row["throughput_ci_low_infer_per_s"] <= row["throughput_infer_per_s"] <= row[
            "throughput_ci_high_infer_per_s"]
        assert_counts_agree(row)
