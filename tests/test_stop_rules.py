"""The precision stop rule on the real embedded server: a point is measured until the 95%
intervals of its throughput and mean latency are within the target and nothing drifts,
every window is reported, and a target it cannot reach ends at max_trials as unstable,
saying why. (The arithmetic is tested on known data in tests/test_stats.py.)"""

from __future__ import annotations

import pytest

import analyzer_widgets as aw

pytestmark = pytest.mark.server

POINT: dict[str, object] = dict(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=[1],
                                concurrency=[2], window_ms=200, baseline_s=0.5, stop_rule="precision")


def test_the_precision_rule_measures_until_its_intervals_are_narrow_enough() -> None:
    row = aw.profile(**POINT, precision_pct=25, max_trials=40).to_frame().iloc[0]
    assert row["ended_by"] == "precision", row[["status", "reason", "window_count", "precision_reached_pct"]]
    assert row["status"] == "ok" and row["window_count"] >= 4
    assert 0 < row["precision_reached_pct"] <= 25
    # every window is reported, not only the last three
    assert row["measured_s"] == pytest.approx(row["window_count"] * 0.2, rel=0.25)
    for figure, low, high in (("throughput_infer_per_s", "throughput_ci_low_infer_per_s",
                               "throughput_ci_high_infer_per_s"),
                              ("latency_avg_ms", "latency_avg_ci_low_ms", "latency_avg_ci_high_ms")):
        assert row[low] <= row[figure] <= row[high]
        assert (row[high] - row[low]) / 2 <= row[figure] * 0.25 * (1 + 1e-9)


def test_a_precision_it_cannot_reach_ends_at_max_trials_as_unstable() -> None:
    row = aw.profile(**POINT, precision_pct=0.01, max_trials=5).to_frame().iloc[0]
    assert row["ended_by"] == "max_trials" and row["window_count"] == 5
    assert row["status"] == "unstable"
    assert "after 5 windows" in row["reason"]
    assert "not ±0.01%" in row["reason"] or "across the windows" in row["reason"], row["reason"]
