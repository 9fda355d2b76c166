"""The request-rate schedule and its verdicts on known data (no server): one schedule for
all client processes, drawn in chunks, and how a point kept it."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from analyzer_widgets.config import Load, MeasurementSettings, SweepSpec, rate_list
from analyzer_widgets.errors import ConfigError
from analyzer_widgets.loadgen._worker import Schedule
from analyzer_widgets.loadgen.stats import (
    SATURATED_BEHIND_S,
    Ending,
    ScheduleVerdict,
    Window,
    WindowSchedule,
    ended,
    schedule_figures,
    summarize,
)
from analyzer_widgets.schema import load_of, point_key, table_columns


def _sends(schedule: Schedule, count: int) -> np.ndarray:
    return np.array([schedule.take() for _ in range(count)])


@pytest.mark.parametrize("arrival", ["constant", "poisson"])
def test_the_processes_shares_together_are_the_one_schedule(arrival: str) -> None:
    whole = _sends(Schedule(500.0, arrival, 100.0, 0, 1, seed=7), 3 * (Schedule.CHUNK + 5))
    shares = [_sends(Schedule(500.0, arrival, 100.0, k, 3, seed=7), Schedule.CHUNK + 5) for k in range(3)]
    merged = np.sort(np.concatenate(shares))
    # across a chunk boundary too (each share draws 3 chunks' worth of the whole at a time)
    assert np.allclose(merged, whole, rtol=0, atol=1e-9)
    assert whole[0] == 100.0 and np.all(np.diff(whole) >= 0)


def test_a_constant_schedule_is_exact_over_a_long_point() -> None:
    schedule = Schedule(1000.0, "constant", 5.0, 0, 1, seed=0)
    sends = _sends(schedule, 5 * Schedule.CHUNK)
    assert np.allclose(sends, 5.0 + np.arange(sends.size) / 1000.0, rtol=0, atol=1e-12)


def test_poisson_gaps_have_the_rates_mean_and_an_exponential_spread() -> None:
    gaps = np.diff(_sends(Schedule(200.0, "poisson", 0.0, 0, 1, seed=3), 20_000))
    assert gaps.mean() == pytest.approx(1 / 200.0, rel=0.03)
    assert gaps.std() == pytest.approx(1 / 200.0, rel=0.05)  # exponential: std = mean
    # the same seed draws the same schedule in every process; another seed another one
    assert np.array_equal(_sends(Schedule(200.0, "poisson", 0.0, 0, 1, seed=3), 50),
                          _sends(Schedule(200.0, "poisson", 0.0, 0, 1, seed=3), 50))
    assert not np.array_equal(_sends(Schedule(200.0, "poisson", 0.0, 0, 1, seed=4), 50),
                              _sends(Schedule(200.0, "poisson", 0.0, 0, 1, seed=3), 50))


def test_behind_is_how_late_the_oldest_untaken_send_is() -> None:
    schedule = Schedule(10.0, "constant", 0.0, 0, 1, seed=0)
    assert schedule.behind(-1.0) == 0.0
    schedule.take()  # the send due at 0.0
    assert schedule.behind(0.05) == 0.0  # the next is due at 0.1
    assert schedule.behind(0.35) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="arrival='burst'"):
        Schedule(10.0, "burst", 0.0, 0, 1, seed=0)


def _window(lags_ms: list[float], behind_s: float = 0.0, full: bool = False, ok: int | None = None) -> Window:
    n = len(lags_ms) if ok is None else ok
    return Window(0.0, 1.0, 1, np.full(n, 0.004), 0, Counter(),
                  WindowSchedule(np.asarray(lags_ms) / 1e3, behind_s, full))


def test_the_schedule_verdicts() -> None:
    kept = [_window([0.1] * 99 + [1.5])] * 3
    figures = schedule_figures(kept, summarize(kept))
    assert figures is not None
    assert figures.verdict is ScheduleVerdict.KEPT
    assert figures.achieved_rate_per_s == pytest.approx(100.0)
    assert figures.in_flight_mean == pytest.approx(100.0 * 0.004)  # Little's law
    assert figures.send_lag_p50_ms == pytest.approx(0.1) and figures.send_lag_p99_ms == pytest.approx(0.1)
    late = [_window([0.1] * 90 + [9.0] * 10)]
    assert schedule_figures(late, summarize(late)).verdict is ScheduleVerdict.CLIENT_BEHIND  # type: ignore[union-attr]
    waited = [_window([0.1] * 90 + [9.0] * 10, behind_s=0.02, full=True)]
    assert schedule_figures(waited, summarize(waited)).verdict is ScheduleVerdict.SLOTS_FULL  # type: ignore[union-attr]
    piled = [_window([0.1] * 90 + [900.0] * 10, behind_s=SATURATED_BEHIND_S + 0.1, full=True)]
    figures = schedule_figures(piled, summarize(piled))
    assert figures is not None and figures.verdict is ScheduleVerdict.SATURATED
    assert figures.behind_max_ms == pytest.approx((SATURATED_BEHIND_S + 0.1) * 1e3)
    closed = [Window(0.0, 1.0, 1, np.full(10, 0.004))]
    assert schedule_figures(closed, summarize(closed)) is None


def test_a_saturated_window_ends_the_point() -> None:
    settings = MeasurementSettings(max_trials=10)
    late_but_free = _window([0.1] * 10, behind_s=SATURATED_BEHIND_S * 3, full=False)
    assert ended([late_but_free], settings) is None  # slots free: the client was late, not the server
    piled = _window([0.1] * 10, behind_s=SATURATED_BEHIND_S * 1.5, full=True)
    assert ended([late_but_free, piled], settings) is Ending.SATURATED


def test_rates_are_read_and_checked() -> None:
    assert rate_list("request_rate", "") == ()
    assert rate_list("request_rate", [50, 12.5, 50]) == (50.0, 12.5)
    for bad in ("100,,200", "0", "-5", "fast", [float("nan")], True):
        with pytest.raises(ConfigError, match="request_rate"):
            rate_list("request_rate", bad)
    with pytest.raises(ConfigError, match="request_rate.*both given"):
        SweepSpec(models=("m",), model_repository=None, request_rate=(100.0,), concurrency=(1, 4))


def test_a_sweeps_loads_and_a_rows_load() -> None:
    spec = SweepSpec(models=("m",), model_repository=".", request_rate=(100.0, 200.0))
    assert spec.loads == (Load(rate_per_s=100.0), Load(rate_per_s=200.0)) and spec.points_per_model == 2
    assert SweepSpec(models=("m",), model_repository=".", concurrency=(1, 4)).loads == (Load(1), Load(4))
    assert point_key({"model": "m", "batch_size": 8, "concurrency": 0, "request_rate_per_s": 200.0}) == (
        "m", "", 8, Load(rate_per_s=200.0))
    # a row from before request rates (no such column) is a concurrency point
    assert load_of({"concurrency": 4}) == Load(concurrency=4)
    assert str(Load(rate_per_s=1500.0)) == "1,500 req/s" and str(Load(concurrency=2)) == "concurrency 2"


def test_the_table_leaves_out_the_load_no_row_was_measured_at() -> None:
    rates = pd.DataFrame({"model": ["m"], "batch_size": [1], "concurrency": [0], "request_rate_per_s": [100.0],
                          "status": ["ok"], "reason": [""]})
    assert "concurrency" not in table_columns(rates) and "request_rate_per_s" in table_columns(rates)
    concurrency = rates.assign(concurrency=[2], request_rate_per_s=[float("nan")])
    assert "concurrency" in table_columns(concurrency) and "request_rate_per_s" not in table_columns(concurrency)
