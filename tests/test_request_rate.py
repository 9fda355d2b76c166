"""Request-rate (open-loop) load on the real embedded server: sends follow one schedule
across the client processes, latency counts from the scheduled time, the row carries the
achieved rate, the send lag and the requests in flight, and a rate past what the server can
answer ends the point early as saturated, saying so. (The schedule and the verdicts are
tested on known data in tests/test_schedule.py.)"""

from __future__ import annotations

import math

import pytest

import analyzer_widgets as aw

pytestmark = pytest.mark.server

POINT: dict[str, object] = dict(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=[1],
                                window_ms=500, baseline_s=0.5, stop_rule="precision", precision_pct=50,
                                max_trials=6)


@pytest.mark.parametrize("arrival", ["constant", "poisson"])
def test_a_request_rate_point_sends_its_schedule_across_client_processes(arrival: str) -> None:
    # two client processes, each sending every other send of the one schedule
    frame = aw.profile(**POINT, request_rate=[150, 300], arrival=arrival, client_processes=2).to_frame()
    assert list(frame["request_rate_per_s"]) == [150.0, 300.0]
    assert list(frame["concurrency"]) == [0, 0]
    for row in frame.to_dict("records"):
        assert row["status"] in ("ok", "unstable"), row["reason"]
        target = row["request_rate_per_s"]
        # the requests answered over the reported windows: a Poisson schedule's count over
        # a few seconds varies by about 1/sqrt(n) (n ~ 450-900 here), a constant one's not
        tolerance = 0.03 if arrival == "constant" else 0.15
        assert row["achieved_rate_per_s"] == pytest.approx(target, rel=tolerance), row
        assert row["throughput_infer_per_s"] == pytest.approx(row["achieved_rate_per_s"], rel=1e-9)
        # the client keeps a schedule this slow: most sends leave within a few ms (a busy
        # 2-core machine, the server on it too, can hold a thread off the CPU for some)
        assert 0 <= row["send_lag_p50_ms"] < 15
        assert row["send_lag_p99_ms"] >= row["send_lag_p50_ms"]
        # Little's law: in flight = rate x mean latency, well under one request at these rates
        assert row["in_flight_mean"] == pytest.approx(row["achieved_rate_per_s"] * row["latency_avg_ms"] / 1e3)
        assert 0 < row["in_flight_mean"] < 5
        assert row["schedule"] in ("kept", "client_behind", "slots_full")
        # the server counted what the client sent
        # (to the few requests in flight when the server's statistics were read)
        assert row["server_request_count"] == pytest.approx(row["request_count"], rel=0.02)


def test_a_rate_past_saturation_ends_the_point_early_and_says_so() -> None:
    # two request slots at 20,000 req/s: sends fall behind the schedule by the second and
    # would pile up without end
    row = aw.profile(**POINT, request_rate=[20000], max_in_flight=2, client_processes=1).to_frame().iloc[0]
    assert row["ended_by"] == "saturated", row[["status", "reason", "window_count"]]
    assert row["status"] == "unstable" and row["schedule"] == "saturated"
    assert "past saturation" in row["reason"] and "2 request slots" in row["reason"]
    assert row["window_count"] < 6  # ended early, not at max_trials
    assert row["schedule_behind_max_ms"] > 1000
    assert row["achieved_rate_per_s"] < 20000 * 0.5
    # the wait for a slot is latency: far above the model's own time
    assert row["latency_avg_ms"] > 10 * row["server_request_ms"]


def test_a_concurrency_point_has_no_schedule_figures() -> None:
    row = aw.profile(**{**POINT, "max_trials": 4}, concurrency=[1]).to_frame().iloc[0]
    assert math.isnan(row["request_rate_per_s"]) and row["concurrency"] == 1
    assert row["schedule"] == "" and math.isnan(row["send_lag_p99_ms"])
