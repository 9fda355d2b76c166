"""The load a latency budget allows, searched on the real embedded server
(--latency-budget-ms): each probe a row marked as one, the answer a row of its own with its
probe's figures and intervals, for concurrency and for request rates; a resumed run answers
from what was measured. (The search arithmetic is tested on known curves in
tests/test_search.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

import analyzer_widgets as aw

pytestmark = pytest.mark.server

POINT: dict[str, object] = dict(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=[1],
                                window_ms=200, baseline_s=0.3, stable_windows=2, max_trials=4)


def _roles(frame: object) -> list[str]:
    return list(frame["search"])  # type: ignore[index]


def test_a_budget_every_load_meets_gallops_to_the_limit_and_says_it_is_a_lower_bound(tmp_path: Path) -> None:
    frame = aw.profile(**POINT, concurrency=[1, 8], latency_budget_ms=10_000, export_path=tmp_path / "r").to_frame()
    assert list(frame["concurrency"]) == [1, 2, 4, 8, 8]
    assert _roles(frame) == ["probe"] * 4 + ["answer_lower_bound"]
    answer = frame.iloc[-1]
    probe = frame.iloc[-2]
    # the answer carries its probe's figures and intervals
    for column in ("throughput_infer_per_s", "latency_p99_ms", "latency_p99_ci_high_ms", "started_at"):
        assert answer[column] == probe[column]
    assert "stopped at its limit" in answer["reason"]
    # a resumed run finds the search answered and measures nothing again
    again = aw.profile(**POINT, concurrency=[1, 8], latency_budget_ms=10_000, export_path=tmp_path / "r", resume=True)
    assert len(again.to_frame()) == 5 and list(again.to_frame()["search"]) == _roles(frame)


def test_a_budget_no_load_meets_is_answered_by_the_first_probe() -> None:
    frame = aw.profile(**POINT, concurrency=[2, 64], latency_budget_ms=0.001, latency_statistic="50").to_frame()
    assert _roles(frame) == ["probe", "none_within"]
    assert list(frame["concurrency"]) == [2, 2]
    assert "no load within p50 ≤ 0.001 ms: the first, concurrency 2" in frame.iloc[-1]["reason"]


def test_the_answer_is_the_highest_probe_within_and_every_higher_probe_is_beyond() -> None:
    # a budget between the model's latencies at low and high concurrency on this machine;
    # where exactly it falls is the machine's noise, the search's logic must hold anyway
    budget = 3.0
    frame = aw.profile(**POINT, concurrency=[1, 32], latency_budget_ms=budget, latency_statistic="avg").to_frame()
    probes = frame[frame["search"] == "probe"]
    answer = frame.iloc[-1]
    assert answer["search"] in ("answer", "answer_lower_bound", "none_within")
    assert len(set(probes["concurrency"])) == len(probes)  # each load measured once
    if answer["search"] != "none_within":
        assert answer["latency_avg_ms"] <= budget
        higher = probes[probes["concurrency"] > answer["concurrency"]]
        assert (higher["latency_avg_ms"] > budget).all() or (higher["error_count"] > 0).all()


def test_a_request_rate_search_doubles_the_rate_and_stops_at_its_limit() -> None:
    frame = aw.profile(**POINT, request_rate=[100, 800], latency_budget_ms=10_000).to_frame()
    assert list(frame["request_rate_per_s"]) == [100.0, 200.0, 400.0, 800.0, 800.0]
    assert _roles(frame)[-1] == "answer_lower_bound"
    assert (frame["achieved_rate_per_s"] > 0).all()
