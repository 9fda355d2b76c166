"""Percentiles, perf_analyzer's stability rule, window merging and the confidence
intervals (loadgen.stats), on known data."""

from __future__ import annotations

import math
import statistics
from collections import Counter

import numpy as np
import pytest

from analyzer_widgets.config import MeasurementSettings, StopRule
from analyzer_widgets.loadgen.stats import (
    MIN_PRECISION_WINDOWS,
    NO_INTERVAL,
    Ending,
    Precision,
    Window,
    batch_means_interval,
    ended,
    is_stable,
    log_batch_means_interval,
    percentile,
    point_intervals,
    precision,
    reported,
    summarize,
    t_critical,
    trend,
    within,
)


def window(n_ok: int, latency_s: float = 0.010, *, start: float = 0.0, duration: float = 1.0,
           batch: int = 1, failed: int = 0, errors: dict[str, int] | None = None) -> Window:
    """A window of ``n_ok`` successful requests that all took ``latency_s``."""
    return Window(start, start + duration, batch, np.full(n_ok, latency_s), failed, Counter(errors or {}))


# -- percentile ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "expected"),
    # nearest rank over [15, 20, 35, 40, 50]: rank = ceil(q/100 * 5)
    [(5, 15.0), (20, 15.0), (30, 20.0), (40, 20.0), (50, 35.0), (80, 40.0), (81, 50.0), (100, 50.0)],
)
def test_percentile_is_nearest_rank(q: float, expected: float) -> None:
    assert percentile([50, 15, 40, 20, 35], q) == expected


@pytest.mark.parametrize(("q", "expected"), [(50, 5.0), (90, 9.0), (91, 10.0), (95, 10.0), (99, 10.0)])
def test_percentile_of_one_to_ten(q: float, expected: float) -> None:
    assert percentile(np.arange(1, 11), q) == expected


def test_percentile_returns_a_value_from_the_data_not_an_interpolation() -> None:
    assert percentile([1.0, 2.0], 50) == 1.0
    assert percentile([1.0, 2.0], 51) == 2.0


def test_percentile_of_one_value_is_that_value() -> None:
    assert percentile([3.5], 1) == 3.5
    assert percentile([3.5], 99) == 3.5


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))
    assert math.isnan(percentile(np.array([]), 99))


@pytest.mark.parametrize("q", [0, -1, 100.5, 150, float("nan")])
def test_percentile_rejects_q_outside_zero_to_hundred(q: float) -> None:
    with pytest.raises(ValueError, match="percentile q="):
        percentile([1.0, 2.0, 3.0], q)


def test_percentile_rank_is_exact_for_whole_percentages() -> None:
    assert percentile(np.arange(1, 101), 7) == 7.0


# -- within --------------------------------------------------------------------------------------


def test_within_accepts_values_close_to_their_mean() -> None:
    assert within([100, 104, 97], 10.0)


def test_within_rejects_a_value_far_from_the_mean() -> None:
    assert not within([100, 130, 97], 10.0)


def test_within_boundary_is_inclusive() -> None:
    assert within([90.0, 110.0], 10.0)  # each exactly 10% off the mean of 100
    assert not within([89.0, 111.0], 10.0)


def test_within_treats_all_zero_values_as_agreeing() -> None:
    assert within([0.0, 0.0, 0.0], 10.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_within_is_false_with_a_non_finite_value(bad: float) -> None:
    assert not within([100.0, bad, 100.0], 10.0)


# -- is_stable -----------------------------------------------------------------------------------


def test_is_stable_when_last_windows_agree() -> None:
    assert is_stable([window(100), window(104), window(97)], 3, 10.0)


def test_is_stable_false_when_throughput_disagrees() -> None:
    assert not is_stable([window(100), window(130), window(97)], 3, 10.0)


def test_is_stable_false_when_latency_disagrees_even_if_throughput_agrees() -> None:
    windows = [window(100, 0.010), window(100, 0.020), window(100, 0.010)]
    assert within([w.throughput for w in windows], 10.0)
    assert not is_stable(windows, 3, 10.0)


def test_is_stable_false_with_fewer_windows_than_required() -> None:
    assert not is_stable([window(100), window(100)], 3, 10.0)
    assert not is_stable([], 1, 10.0)


def test_is_stable_looks_only_at_the_last_windows() -> None:
    windows = [window(10, 0.5), window(500, 0.001), window(100), window(101), window(99)]
    assert is_stable(windows, 3, 10.0)
    assert not is_stable(windows, 4, 10.0)


def test_is_stable_false_when_a_window_had_no_successful_request() -> None:
    assert not is_stable([window(100), window(100), window(0, failed=50)], 3, 10.0)


def test_is_stable_false_when_every_window_is_empty() -> None:
    # throughput 0 in every window "agrees", but nothing was measured
    assert not is_stable([window(0), window(0), window(0)], 3, 10.0)


def test_is_stable_false_for_zero_length_windows() -> None:
    assert not is_stable([window(5, duration=0.0)] * 3, 3, 10.0)


def test_is_stable_tolerance_follows_pct() -> None:
    windows = [window(100), window(120), window(100)]
    assert not is_stable(windows, 3, 10.0)
    assert is_stable(windows, 3, 15.0)


# -- summarize -----------------------------------------------------------------------------------


def two_windows() -> list[Window]:
    first = Window(0.0, 1.0, 4, np.array([0.010, 0.020]), 1, Counter({"UNAVAILABLE": 1}))
    second = Window(1.0, 3.0, 4, np.array([0.050, 0.030, 0.040]), 2, Counter({"UNAVAILABLE": 1, "DEADLINE": 1}))
    return [first, second]


def test_summarize_throughput_is_ok_requests_times_batch_over_total_duration() -> None:
    s = summarize(two_windows())
    assert s.request_count == 5
    assert s.inference_count == 20
    assert s.duration_s == pytest.approx(3.0)
    assert s.throughput == pytest.approx(20 / 3)


def test_summarize_latencies_in_ms_over_all_requests() -> None:
    s = summarize(two_windows())
    # merged latencies (ms): 10, 20, 30, 40, 50
    assert s.latency_avg_ms == pytest.approx(30.0)
    assert s.latency_p50_ms == pytest.approx(30.0)  # rank ceil(2.5) = 3
    assert s.latency_p90_ms == pytest.approx(50.0)  # rank ceil(4.5) = 5
    assert s.latency_p95_ms == pytest.approx(50.0)
    assert s.latency_p99_ms == pytest.approx(50.0)


def test_summarize_percentiles_merge_requests_not_window_figures() -> None:
    # one slow request in the first window, nine fast ones in the second: the median
    # request is fast, though the mean of the two windows' medians would be 55 ms
    s = summarize([window(1, 0.100), window(9, 0.010, start=1.0)])
    assert s.latency_p50_ms == pytest.approx(10.0)
    assert s.latency_p99_ms == pytest.approx(100.0)
    assert s.latency_avg_ms == pytest.approx(19.0)


def test_summarize_sums_error_counts_and_kinds() -> None:
    s = summarize(two_windows())
    assert s.error_count == 3
    assert s.errors == Counter({"UNAVAILABLE": 2, "DEADLINE": 1})


def test_summarize_of_windows_without_success_has_zero_throughput_and_nan_latency() -> None:
    s = summarize([window(0, failed=7, errors={"INTERNAL": 7}), window(0, start=1.0, failed=3)])
    assert s.throughput == 0.0
    assert s.request_count == 0
    assert s.error_count == 10
    assert math.isnan(s.latency_avg_ms)
    assert math.isnan(s.latency_p99_ms)


def test_summarize_needs_a_window() -> None:
    with pytest.raises(ValueError, match="at least one window"):
        summarize([])


# -- confidence intervals ------------------------------------------------------------------------
@pytest.mark.parametrize(("df", "exact"), [(1, 12.7062), (2, 4.3027), (10, 2.2281), (30, 2.0423), (31, 2.0395),
                                            (60, 2.0003), (120, 1.9799), (10_000, 1.9602)])
def test_t_critical_matches_students_t(df: int, exact: float) -> None:
    assert t_critical(df) == pytest.approx(exact, abs=5e-4)


def test_t_critical_refuses_no_degrees_of_freedom() -> None:
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_critical(0)


def test_batch_means_interval_by_hand() -> None:
    # s = 1 (values 9, 10, 11), n = 3: half-width 4.303 / sqrt(3)
    interval = batch_means_interval(10.0, [9.0, 10.0, 11.0])
    assert interval.half_width == pytest.approx(4.303 / math.sqrt(3))
    assert interval.low == pytest.approx(10 - 2.4843, abs=1e-4) and interval.high == pytest.approx(12.4843, abs=1e-4)
    assert interval.relative_to(10.0) == pytest.approx(0.24843, abs=1e-5)
    # agreeing batches: a zero-width interval, centred on the figure given
    assert batch_means_interval(7.0, [5.0, 5.0]) == type(interval)(7.0, 7.0)


@pytest.mark.parametrize("batches", [[], [1.0], [1.0, math.nan], [math.inf, 1.0]])
def test_no_interval_from_fewer_than_two_finite_batches(batches: list[float]) -> None:
    interval = batch_means_interval(1.0, batches)
    assert math.isnan(interval.low) and math.isnan(interval.high)
    assert math.isnan(batch_means_interval(math.nan, [1.0, 2.0]).low)


def test_point_intervals_use_each_window_as_a_batch() -> None:
    # three 1-s windows: 100, 110 and 90 requests of batch 2 at 10, 12 and 8 ms each
    windows = [window(100, 0.010, start=0), window(110, 0.012, start=1), window(90, 0.008, start=2)]
    windows = [Window(w.start, w.end, 2, w.ok_latencies_s) for w in windows]
    summary = summarize(windows)
    intervals = point_intervals(windows, summary)
    # throughput: 200, 220, 180 infer/s; s = 20
    assert summary.throughput == pytest.approx(200.0)
    assert intervals.throughput.half_width == pytest.approx(4.303 * 20 / math.sqrt(3))
    assert intervals.throughput.low < summary.throughput < intervals.throughput.high
    # mean latency: 10, 12, 8 ms per window, s = 2; centred on the pooled mean
    assert intervals.latency_avg_ms.half_width == pytest.approx(4.303 * 2 / math.sqrt(3))
    assert (intervals.latency_avg_ms.low + intervals.latency_avg_ms.high) / 2 == pytest.approx(summary.latency_avg_ms)
    # p99: each window's p99 is its one latency (12, 10, 8 ms; pooled p99 12 ms), on the log
    # scale: the figure times exp(+-t s / sqrt(3)), s the spread of the logs
    logs = [math.log(v) for v in (10.0, 12.0, 8.0)]
    factor = math.exp(4.303 * statistics.stdev(logs) / math.sqrt(3))
    assert summary.latency_p99_ms == pytest.approx(12.0)
    assert intervals.latency_p99_ms.low == pytest.approx(12.0 / factor)
    assert intervals.latency_p99_ms.high == pytest.approx(12.0 * factor)


def test_a_p99_interval_stays_above_zero_however_the_windows_scatter() -> None:
    # window p99s of 1, 1 and 30 ms: a symmetric interval would reach far below 0 ms
    interval = log_batch_means_interval(30.0, [1.0, 1.0, 30.0])
    assert 0 < interval.low < 30.0 < interval.high
    assert batch_means_interval(30.0, [1.0, 1.0, 30.0]).low < 0
    assert log_batch_means_interval(0.0, [1.0, 2.0]) == NO_INTERVAL


def test_no_interval_when_a_window_has_no_successful_request() -> None:
    windows = [window(100), window(0, failed=5, start=1), window(100, start=2)]
    intervals = point_intervals(windows, summarize(windows))
    assert intervals.throughput == NO_INTERVAL and intervals.latency_p99_ms == NO_INTERVAL


def test_batch_means_intervals_cover_the_true_figure_95_percent_of_the_time() -> None:
    """The arithmetic, checked by simulation: windows of independent requests (Poisson
    counts, exponential latencies) whose true throughput and mean latency are known. With
    3 windows (the reported ones) the t-interval should cover them about 95% of the time."""
    rng = np.random.default_rng(20261202)
    rate, mean_latency_s, runs = 500.0, 0.004, 2000
    covered_throughput = covered_latency = 0
    for _ in range(runs):
        windows = [Window(float(i), float(i + 1), 1, rng.exponential(mean_latency_s, rng.poisson(rate)))
                   for i in range(3)]
        intervals = point_intervals(windows, summarize(windows))
        covered_throughput += intervals.throughput.low <= rate <= intervals.throughput.high
        covered_latency += intervals.latency_avg_ms.low <= mean_latency_s * 1e3 <= intervals.latency_avg_ms.high
    # binomial standard error at 2000 runs is 0.5%: 95% +- 1.5% is three of them
    assert abs(covered_throughput / runs - 0.95) < 0.015, covered_throughput / runs
    assert abs(covered_latency / runs - 0.95) < 0.015, covered_latency / runs


# -- when a point has been measured enough --------------------------------------------------------
def settings(**values: object) -> MeasurementSettings:
    return MeasurementSettings(**values)  # type: ignore[arg-type]


def test_trend_is_the_slopes_t_statistic() -> None:
    assert trend([1.0, 2.0]) == 0.0  # too few to tell
    assert trend([5.0, 5.0, 5.0, 5.0]) == 0.0
    assert trend([1.0, 2.0, 3.0]) == math.inf  # an exact line
    # y = 10 + x + noise (+-0.1): a clear rise; the same noise alone: none
    noise = [0.1, -0.1, 0.05, -0.05, 0.0, 0.1]
    assert trend([10 + x + e for x, e in enumerate(noise)]) > 20
    assert abs(trend([10 + e for e in noise])) < t_critical(len(noise) - 2)


def precision_of(windows: list[Window]) -> Precision:
    summary = summarize(windows)
    return precision(windows, summary, point_intervals(windows, summary))


def test_precision_is_the_wider_relative_interval_and_names_a_drift() -> None:
    # throughput 1000 +- 10 (1%) per window, latency identical: precision from throughput
    steady = [window(n, 0.005, start=i) for i, n in enumerate((990, 1010, 1000, 995, 1005))]
    reached = precision_of(steady)
    expected = 100 * t_critical(4) * np.std([990, 1010, 1000, 995, 1005], ddof=1) / math.sqrt(5) / 1000
    assert reached.reached_pct == pytest.approx(expected)
    assert reached.drifting == "" and reached.met(5.0) and not reached.met(0.5)
    rising = [window(n, 0.005, start=i) for i, n in enumerate((900, 950, 1000, 1050, 1100))]
    assert precision_of(rising).drifting == "throughput rising across the windows"
    assert not precision_of(rising).met(100.0)


def test_the_stable_rule_ends_when_the_last_windows_agree() -> None:
    rule = settings(stable_windows=3, stability_pct=10.0, max_trials=5)
    windows = [window(500), window(1000), window(1010)]
    assert ended(windows, rule) is None
    windows.append(window(990))
    assert ended(windows, rule) is Ending.STABLE
    assert list(reported(windows, rule)) == windows[-3:]


def test_the_precision_rule_ends_on_narrow_intervals_without_drift() -> None:
    rule = settings(stop_rule=StopRule.PRECISION, precision_pct=5.0, max_trials=8)
    windows = [window(n, start=i) for i, n in enumerate((1000, 1010, 990))]
    assert ended(windows, rule) is None  # fewer than MIN_PRECISION_WINDOWS
    windows.append(window(1005, start=3))
    assert len(windows) == MIN_PRECISION_WINDOWS and ended(windows, rule) is Ending.PRECISION
    assert list(reported(windows, rule)) == windows  # every window counts


def test_a_point_ends_at_max_trials_or_when_every_request_fails() -> None:
    rule = settings(stop_rule=StopRule.PRECISION, precision_pct=0.001, max_trials=4)
    windows = [window(n, start=i) for i, n in enumerate((1000, 1200, 800))]
    assert ended(windows, rule) is None
    windows.append(window(1100, start=3))
    assert ended(windows, rule) is Ending.MAX_TRIALS
    assert ended([window(100), window(0, failed=3)], rule) is Ending.ALL_FAILED
