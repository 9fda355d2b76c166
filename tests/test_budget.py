"""The decision arithmetic (planning/budget.py) on hand-made rows: no server."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from analyzer_widgets.errors import ConfigError
from analyzer_widgets.planning.budget import Budget, Outcome, Point, Statistic, choose, plain_number
from analyzer_widgets.results import frame
from analyzer_widgets.schema import MODEL_COLUMNS, Row


def point(model: str = "m", batch: int = 1, concurrency: int = 1, throughput: float = 100.0, p99: float = 1.0,
          **values: Any) -> Row:
    """A measured row; every latency statistic is ``p99`` unless given."""
    latencies = {f"latency_{s.value}_ms": p99 for s in Statistic}
    return Row(MODEL_COLUMNS, {"model": model, "batch_size": batch, "concurrency": concurrency, "status": "ok",
                               "throughput_infer_per_s": throughput, **latencies,
                               "gpu_memory_above_baseline_mb": 88.0, **values})


def rows(*points: Row) -> pd.DataFrame:
    return frame(points, MODEL_COLUMNS)


SWEEP = rows(
    point(batch=1, concurrency=1, throughput=1_000.0, p99=1.0),
    point(batch=1, concurrency=2, throughput=1_800.0, p99=2.5),
    point(batch=8, concurrency=1, throughput=6_000.0, p99=4.0),
    point(batch=8, concurrency=2, throughput=12_134.0, p99=5.9),
    point(batch=8, concurrency=4, throughput=12_900.0, p99=11.0),
)


def test_the_highest_throughput_within_the_budget_is_chosen_with_its_figures_and_sentence() -> None:
    decision = choose(SWEEP, Budget(6))
    (choice,) = decision.choices
    assert choice.outcome is Outcome.CHOSEN and choice.within
    assert choice.point == Point(8, 2, 12_134.0, 5.9, 88.0, unstable=False)
    assert choice.sentence == "m: batch 8, concurrency 2: 12,100 infer/s at p99 5.9 ms, 88 MB above the baseline"
    assert decision.chosen() == {"m": choice.point}
    assert decision.sentences == (choice.sentence,)


def test_the_budget_is_inclusive_and_a_tighter_one_picks_another_point() -> None:
    assert choose(SWEEP, Budget(5.9)).chosen()["m"].concurrency == 2
    assert choose(SWEEP, Budget(2.5)).chosen()["m"] == Point(1, 2, 1_800.0, 2.5, 88.0, unstable=False)
    assert choose(SWEEP, Budget(100)).chosen()["m"].throughput_infer_per_s == 12_900.0


@pytest.mark.parametrize("statistic", list(Statistic))
def test_each_statistic_reads_its_own_column(statistic: Statistic) -> None:
    # every other statistic is far over the budget: only the chosen column can let a point in
    far = {f"latency_{s.value}_ms": 50.0 for s in Statistic}
    df = rows(point(batch=1, throughput=10.0, **{**far, statistic.column: 3.0}),
              point(batch=4, throughput=40.0, **{**far, statistic.column: 30.0}))
    choice = choose(df, Budget(5, statistic.value.upper())).choice("m")
    assert choice.point is not None and choice.point.batch_size == 1 and choice.point.latency_ms == 3.0
    assert f"at {statistic.label} 3 ms" in choice.sentence
    assert choose(df, Budget(5)).budget.latency_statistic is Statistic.P99  # the default


def test_ties_go_to_lower_latency_then_stable_then_smaller_batch_then_lower_concurrency() -> None:
    df = rows(point(batch=8, concurrency=1, throughput=500.0, p99=3.0),
              point(batch=4, concurrency=2, throughput=500.0, p99=2.0))
    assert choose(df, Budget(10)).chosen()["m"].batch_size == 4
    df = rows(point(batch=1, concurrency=1, throughput=500.0, p99=2.0, status="unstable"),
              point(batch=8, concurrency=4, throughput=500.0, p99=2.0),
              point(batch=4, concurrency=4, throughput=500.0, p99=2.0),
              point(batch=4, concurrency=2, throughput=500.0, p99=2.0))
    chosen = choose(df, Budget(10)).chosen()["m"]
    assert (chosen.batch_size, chosen.concurrency, chosen.unstable) == (4, 2, False)


def test_an_unstable_point_counts_and_is_marked() -> None:
    df = rows(point(batch=1, throughput=100.0, p99=1.0),
              point(batch=8, throughput=900.0, p99=3.0, status="unstable", reason="not stable within 10%"))
    choice = choose(df, Budget(5)).choice("m")
    assert choice.point is not None and choice.point.unstable and choice.point.batch_size == 8
    assert "unstable" in choice.sentence and "rough" in choice.sentence


def test_rows_that_were_not_measured_or_had_failed_requests_do_not_count() -> None:
    df = rows(point(batch=1, throughput=100.0, p99=1.0),
              point(batch=8, throughput=900.0, p99=2.0, error_count=3, reason="3 of 900 requests failed"),
              point(batch=16, throughput=1_000.0, p99=2.0, status="failed", reason="the model raised"),
              point(batch=32, status="skipped", reason="batch size 32 is above max_batch_size 16"))
    assert choose(df, Budget(5)).chosen()["m"].batch_size == 1


def test_no_point_within_the_budget_gives_the_lowest_latency_measured() -> None:
    df = rows(point(batch=1, concurrency=2, throughput=1.0, p99=3.8),
              point(batch=1, concurrency=1, throughput=1.0, p99=3.4),
              point(batch=8, concurrency=1, throughput=9.0, p99=7.0))
    choice = choose(df, Budget(2)).choice("m")
    assert choice.outcome is Outcome.NONE_WITHIN and not choice.within
    assert choice.point is not None and choice.point.latency_ms == 3.4
    assert choice.sentence == "m: no point within p99 ≤ 2 ms; the lowest was 3.4 ms at batch 1, concurrency 1"
    assert choose(df, Budget(2)).chosen() == {}


def test_a_model_with_nothing_measured_says_why() -> None:
    df = rows(point(model="a", batch=1, throughput=5.0, p99=1.0),
              point(model="b", batch=128, status="skipped", reason="batch size 128 is above max_batch_size 64"),
              point(model="b", batch=256, status="skipped", reason="batch size 256 is above max_batch_size 64"),
              point(model="b", batch=1, status="failed", reason="every request failed: HTTP 500"))
    decision = choose(df, Budget(5))
    assert [c.variant for c in decision.choices] == ["a", "b"]  # the rows' order
    b = decision.choice("b")
    assert b.outcome is Outcome.NOT_MEASURED and b.point is None
    assert b.sentence == ("b: no measured point to choose from: 2 skipped (batch size 128 is above max_batch_size 64), "
                          "1 failed (every request failed: HTTP 500)")
    with pytest.raises(KeyError, match="'c'"):
        decision.choice("c")


def test_gpu_memory_unknown_is_said_not_invented() -> None:
    df = rows(point(throughput=100.0, p99=1.0, gpu_memory_above_baseline_mb=math.nan))
    choice = choose(df, Budget(5)).choice("m")
    assert choice.point is not None and math.isnan(choice.point.memory_above_baseline_mb)
    assert "GPU memory unknown" in choice.sentence and " MB" not in choice.sentence


def test_a_variant_column_gives_one_choice_per_configuration() -> None:
    df = rows(point(batch=1, throughput=100.0, p99=1.0), point(batch=8, throughput=800.0, p99=2.0))
    df["variant"] = ["m (1 instance)", "m (2 instances)"]
    decision = choose(df, Budget(5), variant="variant")
    assert [(c.variant, c.model) for c in decision.choices] == [("m (1 instance)", "m"), ("m (2 instances)", "m")]
    assert decision.choice("m (2 instances)").sentence.startswith("m (2 instances): batch 8")
    df["variant"] = ["1 instance", "2 instances"]
    assert choose(df, Budget(5), variant="variant").sentences[0].startswith("m (1 instance): batch 1")
    with pytest.raises(ConfigError) as e:
        choose(SWEEP, Budget(5), variant="config")
    assert e.value.field == "variant"


def test_no_rows_give_no_choices() -> None:
    assert choose(rows(), Budget(5)).choices == ()


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, "fast", "", None, True])
def test_a_bad_budget_is_a_config_error_naming_the_field(bad: object) -> None:
    with pytest.raises(ConfigError) as e:
        Budget(bad)  # type: ignore[arg-type]
    assert e.value.field == "latency_budget_ms"


def test_a_bad_statistic_is_a_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError) as e:
        Budget(5, "p42")  # type: ignore[arg-type]
    assert e.value.field == "latency_statistic"


def test_a_budget_typed_as_text_is_read() -> None:
    budget = Budget(" 2.5 ", "P95")  # type: ignore[arg-type]
    assert (budget.latency_budget_ms, budget.latency_statistic, budget.column) == (2.5, Statistic.P95,
                                                                                    "latency_p95_ms")
    assert str(budget) == "p95 ≤ 2.5 ms" and str(Budget(20, "avg")) == "mean ≤ 20 ms"  # type: ignore[arg-type]


def test_plain_numbers_carry_three_significant_figures() -> None:
    assert [plain_number(v) for v in (12_134.5, 5.9, 0.4521, 20.0, 1380.817578, 0.0)] == \
        ["12,100", "5.9", "0.452", "20", "1,380", "0"]
