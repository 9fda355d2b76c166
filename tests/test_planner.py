"""The capacity planner's pure logic (planning/planner.py) on hand-made rows and score tables:
judging variants against the constraints, ranking, coordinate ascent over a real space,
fleet sizing, the answer's sentence and files. No server."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from analyzer_widgets import make_spec
from analyzer_widgets.config import Statistic
from analyzer_widgets.errors import ConfigError
from analyzer_widgets.planning.planner import (
    Constraints,
    Judged,
    Objective,
    PlanResult,
    PlanSettings,
    Strategy,
    answer,
    best_answer,
    fields_text,
    files,
    judge,
    rank,
    run_facts,
    sentence,
    sizing,
    variant_memory_mb,
)
from analyzer_widgets.planning.quick import coordinate_ascent
from analyzer_widgets.planning.space import Space, Variant, variants
from analyzer_widgets.results import SweepResult
from analyzer_widgets.schema import MODEL_COLUMNS, Row

NAN = math.nan

#: a realistic Python-backend model that batches, on CPU instances, without dynamic batching
CONFIG: dict[str, Any] = {
    "name": "m", "backend": "python", "max_batch_size": 16,
    "instance_group": [{"kind": "KIND_CPU", "count": 1}],
    "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": ["4"]}],
    "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": ["4"]}],
}
SPACE = Space(instances=(1, 2, 3), max_batch_size=(8, 16, 32))
P99_20 = Constraints(20.0)


def row(variant: str = "v", search: str = "answer", status: str = "ok", batch: int = 1, concurrency: int = 4,
        throughput: float = 1000.0, p99: float = 10.0, **values: Any) -> dict[str, Any]:
    """A row with every MODEL_COLUMNS key (Row refuses a misspelt one); no interval unless given."""
    return dict(Row(MODEL_COLUMNS, {
        "model": "m", "variant": variant, "batch_size": batch, "concurrency": concurrency, "status": status,
        "search": search, "throughput_infer_per_s": throughput, "latency_p99_ms": p99, "latency_avg_ms": p99 / 2,
        **values}))


def failed(variant: str, reason: str, batch: int = 1) -> dict[str, Any]:
    return row(variant, search="probe", status="failed", batch=batch, throughput=0.0, p99=NAN, reason=reason)


def plain(name: str = "v", original: bool = False, **fields: Any) -> Variant:
    return Variant(name, fields, {"name": "m"}, original)


def found_variants() -> tuple[Variant, ...]:
    return variants(SPACE, CONFIG, gpu_count=0)


# -- judge ---------------------------------------------------------------------------------------
def test_judge_takes_a_meeting_variants_figures_from_its_answer_with_the_highest_throughput() -> None:
    rows = [
        row(search="probe", batch=1, concurrency=64, throughput=5000.0, p99=40.0),  # a probe beyond the budget
        row(batch=1, concurrency=8, throughput=800.0, p99=12.0),
        row(search="answer_lower_bound", status="unstable", batch=8, concurrency=16, throughput=1200.0, p99=15.0,
            latency_p99_ci_high_ms=19.5, gpu_memory_above_baseline_mb=640.0),
        row(search="none_within", batch=16, concurrency=1, throughput=3000.0, p99=30.0),  # no answer
        row(search="answer", status="failed", batch=32, throughput=4000.0, reason="x"),  # a failed row counts not
    ]
    judged = judge(plain("i2_b16", **{"max_batch_size": 16}), rows, None, P99_20, Objective.THROUGHPUT)
    assert judged.answer is rows[2]
    assert best_answer(rows, Constraints(1000.0)) is rows[2]
    assert judged.meets and judged.failed == "" and judged.doubtful == ()
    assert judged.score == 1200.0
    assert judged.memory_mb == 640.0
    assert (judged.variant, dict(judged.fields), judged.original) == ("i2_b16", {"max_batch_size": 16}, False)


def test_judge_a_variant_whose_every_row_failed_says_why_in_the_first_line_of_the_reason() -> None:
    reason = "failed to load 'm': not enough memory for 4 instances\nTraceback (most recent call last):"
    rows = [failed("i4", reason, batch=1), failed("i4", reason, batch=8)]
    judged = judge(plain("i4"), rows, None, P99_20, Objective.THROUGHPUT)
    assert judged.failed == "could not be measured: failed to load 'm': not enough memory for 4 instances"
    assert not judged.meets and judged.answer is None
    assert math.isnan(judged.score) and math.isnan(judged.memory_mb)


def test_judge_a_variant_with_no_load_within_the_budget_names_the_budget() -> None:
    rows = [row(search="probe", concurrency=1, p99=25.0), row(search="none_within", concurrency=1, p99=25.0)]
    judged = judge(plain(), rows, None, P99_20, Objective.THROUGHPUT)
    assert judged.failed == "no load within p99 ≤ 20 ms"
    assert judged.answer is None and math.isnan(judged.score)
    # the mean's budget says so; a variant with no rows at all was not measured
    assert judge(plain(), rows, None, Constraints(2.5, Statistic.AVG), Objective.THROUGHPUT).failed == \
        "no load within mean ≤ 2.5 ms"
    assert judge(plain(), [], None, P99_20, Objective.THROUGHPUT).failed == "not measured"
    # one batch size failed, another found nothing within: the budget is why, not the failure
    mixed = [failed("v", "boom", batch=8), *rows]
    assert judge(plain(), mixed, None, P99_20, Objective.THROUGHPUT).failed == "no load within p99 ≤ 20 ms"


def test_judge_below_the_throughput_floor_fails_and_an_interval_reaching_below_it_is_doubtful() -> None:
    floor = Constraints(20.0, min_throughput=1000.0)
    below = judge(plain(), [row(throughput=900.0, throughput_ci_low_infer_per_s=850.0)], None, floor,
                  Objective.THROUGHPUT)
    assert below.failed == "900 infer/s, below the floor of 1,000"
    assert not below.meets and math.isnan(below.score) and below.answer is not None

    straddles = judge(plain(), [row(throughput=1100.0, throughput_ci_low_infer_per_s=950.0,
                                    throughput_ci_high_infer_per_s=1250.0)], None, floor, Objective.THROUGHPUT)
    assert straddles.meets and straddles.doubtful == ("its throughput interval reaches below the floor",)
    assert straddles.score == 1100.0

    sure = judge(plain(), [row(throughput=1100.0, throughput_ci_low_infer_per_s=1050.0)], None, floor,
                 Objective.THROUGHPUT)
    assert sure.meets and sure.doubtful == ()
    # without an interval the figure itself is the bound: above the floor, not doubtful
    no_interval = judge(plain(), [row(throughput=1100.0)], None, floor, Objective.THROUGHPUT)
    assert no_interval.meets and no_interval.doubtful == ()


def test_judge_above_the_memory_cap_fails_on_gpu_memory_above_the_baseline() -> None:
    answer_row = row(gpu_memory_above_baseline_mb=1500.0, server_rss_max_mb=9000.0)
    baseline = {"server_rss_max_mb": 1000.0, "gpu_memory_max_mb": 500.0}
    over = judge(plain(), [answer_row], baseline, Constraints(20.0, max_memory_mb=1000.0), Objective.THROUGHPUT)
    assert over.memory_mb == 1500.0  # the GPU's, not the resident memory (8,000 above the baseline)
    assert over.failed == "1,500 MB of memory, above the cap of 1,000 MB"
    assert math.isnan(over.score)
    under = judge(plain(), [answer_row], baseline, Constraints(20.0, max_memory_mb=2000.0), Objective.THROUGHPUT)
    assert under.meets and under.memory_mb == 1500.0


def test_judge_on_a_cpu_machine_caps_resident_memory_above_the_baselines() -> None:
    answer_row = row(server_rss_max_mb=2300.0)  # gpu_memory_above_baseline_mb is NaN: no GPU
    baseline = {"server_rss_max_mb": 800.0, "gpu_memory_max_mb": NAN}
    assert math.isnan(answer_row["gpu_memory_above_baseline_mb"])
    assert variant_memory_mb(answer_row, baseline) == 1500.0
    assert math.isnan(variant_memory_mb(answer_row, None))  # no baseline: nothing to subtract
    over = judge(plain(), [answer_row], baseline, Constraints(20.0, max_memory_mb=1000.0), Objective.THROUGHPUT)
    assert over.failed == "1,500 MB of memory, above the cap of 1,000 MB"
    under = judge(plain(), [answer_row], baseline, Constraints(20.0, max_memory_mb=1600.0), Objective.THROUGHPUT)
    assert under.meets and under.memory_mb == 1500.0


def test_judge_a_latency_interval_reaching_past_the_budget_is_doubtful_but_kept() -> None:
    straddles = row(p99=18.0, latency_p99_ci_low_ms=14.0, latency_p99_ci_high_ms=22.5)
    judged = judge(plain(), [straddles], None, P99_20, Objective.THROUGHPUT)
    assert judged.meets and judged.doubtful == ("its p99 interval reaches 22.5 ms",)
    assert judged.score == 1000.0
    within = row(p99=18.0, latency_p99_ci_high_ms=19.9)
    assert judge(plain(), [within], None, P99_20, Objective.THROUGHPUT).doubtful == ()
    # the budget's statistic is the one judged: the mean's interval, not p99's
    mean = Constraints(5.0, Statistic.AVG)
    by_mean = judge(plain(), [row(p99=30.0, latency_avg_ms=4.0, latency_avg_ci_high_ms=5.5,
                                  latency_p99_ci_high_ms=40.0)], None, mean, Objective.THROUGHPUT)
    assert by_mean.doubtful == ("its mean interval reaches 5.5 ms",)


def test_each_objective_scores_the_answer() -> None:
    figures = row(throughput=1200.0, p99=15.0, latency_avg_ms=6.0, gpu_memory_above_baseline_mb=512.0,
                  gpu_power_mean_w=150.0)

    def score(objective: Objective, constraints: Constraints = P99_20, answer_row: Mapping[str, Any] = figures,
              ) -> float:
        return judge(plain(), [answer_row], None, constraints, objective).score

    assert score(Objective.THROUGHPUT) == 1200.0
    assert score(Objective.LATENCY) == -15.0
    assert score(Objective.LATENCY, Constraints(10.0, Statistic.AVG)) == -6.0
    assert score(Objective.PER_GB) == 2400.0  # 1,200 infer/s over 0.5 GB
    assert score(Objective.PER_WATT) == 8.0  # 1,200 infer/s over 150 W
    assert math.isnan(score(Objective.PER_WATT, answer_row={**figures, "gpu_power_mean_w": NAN}))
    assert math.isnan(score(Objective.PER_GB, answer_row={**figures, "gpu_memory_above_baseline_mb": NAN}))
    # a lower latency scores higher
    assert score(Objective.LATENCY, answer_row={**figures, "latency_p99_ms": 9.0}) > score(Objective.LATENCY)


# -- rank ----------------------------------------------------------------------------------------
def judged(name: str, score: float = NAN, failed: str = "", doubtful: tuple[str, ...] = ()) -> Judged:
    return Judged(name, {}, False, None if failed else row(name), 100.0, failed, doubtful, score)


def test_rank_puts_meeting_variants_by_score_a_doubtful_one_after_a_sure_tie_then_failing_in_measured_order() -> None:
    measured = [
        judged("fails-first", failed="no load within p99 ≤ 20 ms"),
        judged("low", 500.0),
        judged("tie-doubtful", 900.0, doubtful=("its p99 interval reaches 22 ms",)),
        judged("fails-second", failed="900 infer/s, below the floor of 1,000"),
        judged("tie-sure", 900.0),
        judged("high", 1500.0, doubtful=("its p99 interval reaches 21 ms",)),
    ]
    assert [j.variant for j in rank(measured)] == ["high", "tie-sure", "tie-doubtful", "low",
                                                   "fails-first", "fails-second"]
    assert rank([]) == []


# -- coordinate ascent over a real space ------------------------------------------------------------
def ascend(found: Sequence[Variant], table: Mapping[str, float]) -> tuple[list[str], list[str]]:
    """The names coordinate ascent yields, in order, and the names it read scores of; a score
    is read only for a name already yielded (as the runner has measured only those)."""
    yielded: list[str] = []
    looked: list[str] = []

    def score_of(name: str) -> float:
        assert name in yielded, f"score_of({name!r}) before it was yielded (not measured yet)"
        looked.append(name)
        return table[name]

    for variant in coordinate_ascent(found, score_of):
        assert variant.name not in yielded, f"{variant.name} yielded twice"
        yielded.append(variant.name)
    return yielded, looked


def unimodal(found: Sequence[Variant], peak_count: int, peak_batch: int) -> dict[str, float]:
    """A score with one peak: falling off with the distance (instances, log2 of max batch) from it."""
    def score(v: Variant) -> float:
        count, batch = v.fields["instance_group.count"], v.fields["max_batch_size"]
        return 100.0 - 10 * (count - peak_count) ** 2 - 5 * (math.log2(batch) - math.log2(peak_batch)) ** 2
    return {v.name: score(v) for v in found}


def test_the_space_for_coordinate_ascent_is_what_the_tests_expect() -> None:
    found = found_variants()
    assert [v.name for v in found] == ["i1_b8", "i1_b16", "i1_b32", "i2_b8", "i2_b16", "i2_b32",
                                       "i3_b8", "i3_b16", "i3_b32"]
    assert [v.name for v in found if v.original] == ["i1_b16"]


def test_coordinate_ascent_climbs_a_unimodal_table_to_its_best_measuring_fewer_than_brute() -> None:
    found = found_variants()
    table = unimodal(found, peak_count=2, peak_batch=32)
    yielded, looked = ascend(found, table)
    # from its own config: the instances line (i2 best), then max batch from there (b32 best),
    # then a second round around i2_b32 that moves nowhere
    assert yielded == ["i1_b16", "i2_b16", "i3_b16", "i2_b8", "i2_b32", "i1_b32", "i3_b32"]
    assert len(yielded) < len(found)
    assert max(yielded, key=table.__getitem__) == "i2_b32" == max(table, key=table.__getitem__)
    assert set(looked) <= set(yielded) and "i2_b32" in looked


def test_coordinate_ascent_stops_when_no_neighbour_beats_the_own_config() -> None:
    found = found_variants()
    yielded, _ = ascend(found, unimodal(found, peak_count=1, peak_batch=16))
    assert yielded == ["i1_b16", "i2_b16", "i3_b16", "i1_b8", "i1_b32"]


def test_coordinate_ascent_never_moves_to_a_variant_that_failed() -> None:
    found = found_variants()
    table = unimodal(found, peak_count=3, peak_batch=32)
    table.update(i2_b16=NAN, i3_b16=NAN)  # the instance counts that would lead up failed the constraints
    yielded, _ = ascend(found, table)
    # stays on its instance count, climbs max batch, then instances from b32, then max batch from i3
    assert yielded == ["i1_b16", "i2_b16", "i3_b16", "i1_b8", "i1_b32", "i2_b32", "i3_b32", "i3_b8"]
    assert max(yielded, key=lambda n: -math.inf if math.isnan(table[n]) else table[n]) == "i3_b32"


def test_coordinate_ascent_climbs_from_the_nearest_grid_variant_when_the_own_config_is_off_the_grid() -> None:
    # the model has no dynamic batching; every variant of the space has it on: two fields apart
    batching = Space(instances=(1, 2, 3), max_batch_size=(8, 16, 32), dynamic_batching={"delays_us": [0, 100]})
    found = variants(batching, CONFIG, gpu_count=0)
    assert (found[0].name, found[0].original, len(found)) == ("original", True, 19)

    def score(v: Variant) -> float:
        delay = v.fields["dynamic_batching.max_queue_delay_microseconds"] or 0
        return 100.0 * v.fields["instance_group.count"] + v.fields["max_batch_size"] + delay / 10

    table = {v.name: score(v) for v in found}
    yielded, looked = ascend(found, table)
    assert yielded == ["original", "i1_b16_d0",  # the own config, then the grid's variant nearest to it
                       "i2_b16_d0", "i3_b16_d0", "i3_b8_d0", "i3_b32_d0", "i3_b32_d100",
                       "i1_b32_d100", "i2_b32_d100", "i3_b8_d100", "i3_b16_d100"]
    assert len(yielded) < len(found)
    assert max(yielded, key=table.__getitem__) == "i3_b32_d100" == max(table, key=table.__getitem__)
    assert set(looked) <= set(yielded)


def test_coordinate_ascent_climbs_from_the_grid_when_only_the_own_delay_is_off_the_grid() -> None:
    own = {**CONFIG, "dynamic_batching": {"max_queue_delay_microseconds": 50}}
    batching = Space(instances=(1, 2, 3), max_batch_size=(8, 16, 32), dynamic_batching={"delays_us": [0, 100]})
    found = variants(batching, own, gpu_count=0)
    assert (found[0].name, found[0].original, len(found)) == ("original", True, 19)

    def score(v: Variant) -> float:  # separable, each field unimodal: coordinate ascent's best case
        delay = v.fields["dynamic_batching.max_queue_delay_microseconds"]
        return 100.0 * v.fields["instance_group.count"] + v.fields["max_batch_size"] - abs(delay - 50) + delay / 100

    table = {v.name: score(v) for v in found}
    yielded, _ = ascend(found, table)
    brute_best = max(table, key=table.__getitem__)
    assert brute_best == "i3_b32_d100"
    # today: ['original', 'i1_b16_d0', 'i1_b16_d100'], and quick recommends the own config (116.5 against 283)
    assert max(table[n] for n in yielded) == table[brute_best]


def test_coordinate_ascent_stops_at_a_local_best_where_two_fields_only_help_together() -> None:
    found = found_variants()
    # more instances alone, or a larger max batch alone, is worse; both together is by far the best
    table = {v.name: 0.0 for v in found}
    table.update(i1_b16=50.0, i2_b16=10.0, i3_b16=10.0, i1_b8=10.0, i1_b32=10.0, i3_b32=100.0)
    yielded, _ = ascend(found, table)
    assert yielded == ["i1_b16", "i2_b16", "i3_b16", "i1_b8", "i1_b32"]
    quick_best = max(table[n] for n in yielded)
    brute_best = max(table.values())
    assert (quick_best, brute_best) == (50.0, 100.0)  # the documented limitation: quick's answer is worse


# -- sizing --------------------------------------------------------------------------------------
def test_sizing_counts_each_server_at_the_interval_low_end_less_the_headroom() -> None:
    answer_row = row(throughput=1000.0, throughput_ci_low_infer_per_s=900.0, throughput_ci_high_infer_per_s=1100.0)
    sized = sizing(answer_row, 5000.0, 20.0)
    assert sized.per_server == 720.0  # 900 x 0.8
    assert sized.servers == 7  # 5,000 / 720 = 6.9
    assert (sized.target_rate, sized.headroom_pct) == (5000.0, 20.0)
    assert sized.text() == ("5,000 infer/s needs 7 server(s) of this variant, each counted at 720 infer/s (the "
                            "lower end of its 95% interval, less 20% headroom)")
    assert sizing(answer_row, 1440.0, 20.0).servers == 2  # an exact multiple needs no extra server
    assert sizing(answer_row, 1441.0, 20.0).servers == 3
    assert sizing(answer_row, 900.0, 0.0) == type(sized)(900.0, 900.0, 0.0, 1)


def test_sizing_without_an_interval_counts_the_figure() -> None:
    sized = sizing(row(throughput=1000.0), 4000.0, 20.0)
    assert (sized.per_server, sized.servers) == (800.0, 5)
    assert sizing(row(throughput=1000.0), 4001.0, 20.0).servers == 6


def test_sizing_a_target_equal_to_one_servers_rate_needs_one_server() -> None:
    sized = sizing(row(throughput=750.0, throughput_ci_low_infer_per_s=700.0), 490.0, 30.0)
    assert sized.per_server == pytest.approx(490.0)
    assert sized.servers == 1


def test_sizing_says_the_gpu_memory_each_server_keeps_for_other_models() -> None:
    answer_row = row(throughput=1000.0, gpu_memory_max_mb=3000.0)
    sized = sizing(answer_row, 1500.0, 20.0, baseline={"gpu_memory_total_mb": 143771.0})
    assert (sized.servers, sized.memory_total_mb, sized.memory_left_mb) == (2, 143771.0, 140771.0)
    assert sized.text().endswith("; each server's GPU memory keeps 141,000 of its 144,000 MB free for other models")
    assert sized.to_dict()["memory_left_mb"] == 140771.0
    on_cpu = sizing(answer_row, 1500.0, 20.0, baseline={"gpu_memory_total_mb": NAN})
    assert math.isnan(on_cpu.memory_left_mb) and "free for other models" not in on_cpu.text()
    assert on_cpu.to_dict()["memory_left_mb"] is None  # JSON has no NaN


# -- per variant: a grid instead of the budget search --------------------------------------------
def test_a_variant_measured_on_a_grid_answers_with_its_best_point_within_the_budget() -> None:
    rows = [
        row(search="", concurrency=1, throughput=400.0, p99=4.0),
        row(search="", concurrency=4, throughput=1300.0, p99=12.0, status="unstable"),
        row(search="", concurrency=8, throughput=1500.0, p99=19.0, error_count=3),  # a failed request: beyond
        row(search="", concurrency=16, throughput=1900.0, p99=35.0),  # beyond the budget
        row(search="", batch=8, concurrency=1, status="failed", throughput=0.0, p99=NAN, reason="x"),
    ]
    judged = judge(plain("i2"), rows, None, P99_20, Objective.THROUGHPUT)
    assert judged.answer is rows[1] and judged.score == 1300.0 and judged.meets
    assert judge(plain("i2"), rows, None, Constraints(3.0), Objective.THROUGHPUT).failed == "no load within p99 ≤ 3 ms"
    p50 = Constraints(20.0, Statistic.P50)
    assert best_answer([row(search="", p99=50.0, latency_p50_ms=9.0)], p50) is not None  # judged at its statistic


def test_a_plan_records_that_it_is_one_and_how_it_measures_each_variant_for_a_resume() -> None:
    assert run_facts(PlanSettings()) == {"run": "plan", "per_variant": "search"}
    assert run_facts(PlanSettings(per_variant="grid"))["per_variant"] == "grid"
    with pytest.raises(ConfigError, match="per_variant"):
        PlanSettings(per_variant="all")


# -- the sentence ----------------------------------------------------------------------------------
def test_fields_text_says_the_fields_and_whether_it_is_the_own_config() -> None:
    fields = {"instance_group.count": 2, "max_batch_size": 32}
    assert fields_text(fields, False) == "2 instances, max batch 32"
    assert fields_text(fields, True) == "2 instances, max batch 32 (its own config)"
    assert fields_text({"instance_group.count": 1}, False) == "1 instance"
    assert fields_text({"instance_group.count": 2, "instance_group.kind": "KIND_CPU", "dynamic_batching": True,
                        "dynamic_batching.max_queue_delay_microseconds": 500,
                        "dynamic_batching.preferred_batch_size": [4, 8]}, False) == \
        "2 CPU instances, dynamic batching with a 500 us delay, preferred batch sizes [4, 8]"
    assert fields_text({"dynamic_batching": False, "dynamic_batching.max_queue_delay_microseconds": None}, False) \
        == "no dynamic batching"
    assert fields_text({"optimization.cuda.graphs": True}, False) == "optimization.cuda.graphs True"
    assert fields_text({}, True) == "its own config"
    assert fields_text({}, False) == ""


def test_sentence_on_known_figures_with_the_doubtful_note() -> None:
    answer_row = row(batch=8, concurrency=16, throughput=7900.0, p99=18.4, throughput_ci_low_infer_per_s=7663.0)
    best = Judged("i2_b32", {"instance_group.count": 2, "max_batch_size": 32}, False, answer_row, 1536.0, "")
    said = ("serve enc with 2 instances, max batch 32, at batch 8, concurrency 16: 7,900 infer/s "
            "(±3%) at p99 18.4 ms, 1,540 MB of memory")
    assert sentence("enc", best, P99_20) == said
    doubtful = Judged(best.variant, best.fields, False, answer_row, 1536.0, "",
                      ("its p99 interval reaches 21 ms",))
    assert sentence("enc", doubtful, P99_20) == said + " (but its p99 interval reaches 21 ms: measure again before " \
                                                      "relying on it)"


def test_sentence_of_the_own_config_without_interval_or_memory_and_of_no_answer() -> None:
    answer_row = row(batch=1, concurrency=4, throughput=1234.0, p99=7.25)
    own = Judged("i1_b16", {"instance_group.count": 1, "max_batch_size": 16}, True, answer_row, NAN, "")
    assert sentence("m", own, P99_20) == ("serve m with 1 instance, max batch 16 (its own config), at batch 1, "
                                          "concurrency 4: 1,230 infer/s at p99 7.25 ms")
    at_rate = {**answer_row, "concurrency": 0, "request_rate_per_s": 250.0}
    assert "at batch 1, 250 req/s: " in sentence("m", Judged("o", {}, True, at_rate, NAN, ""), P99_20)
    none = Judged("i3", {}, False, None, NAN, "no load within p99 ≤ 20 ms")
    assert sentence("m", none, P99_20) == ("no variant of m meets the constraints (p99 ≤ 20 ms); see the table for "
                                           "which failed and why")


# -- the settings ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "value", "reason"), [
    ("space", "no/such/space.toml", "is not a file"),
    ("space", 42, "must be a file of a search space, or a mapping"),
    ("min_throughput", -5, "must be a number above 0"),
    ("min_throughput", 0, "must be a number above 0"),
    ("max_memory_mb", "lots", "must be a number above 0"),
    ("target_rate", math.inf, "must be a number above 0"),
    ("headroom_pct", 100, "must be a percentage from 0 to below 100"),
    ("headroom_pct", -1, "must be a percentage from 0 to below 100"),
    ("strategy", "fast", "must be one of brute, quick"),
    ("objective", "speed", "must be one of throughput, latency, throughput_per_gb, throughput_per_watt"),
])
def test_plan_settings_refuse_a_bad_value_naming_the_field_and_value(name: str, value: object, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PlanSettings(**{name: value})
    assert caught.value.field == name
    assert caught.value.value == value
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"{name}={value!r}: ")


def test_plan_settings_read_good_values_from_text(tmp_path: Path) -> None:
    space_file = tmp_path / "space.toml"
    space_file.write_text("instances = [1, 2]\n")
    settings = PlanSettings(space=space_file, strategy="BRUTE", objective=" throughput_per_gb ", min_throughput="20",
                            max_memory_mb="1500.5", target_rate=" 5000 ", headroom_pct="12.5")
    assert settings.space == str(space_file)
    assert settings.strategy is Strategy.BRUTE and settings.objective is Objective.PER_GB
    assert settings.min_throughput == 20.0 and isinstance(settings.min_throughput, float)
    assert (settings.max_memory_mb, settings.target_rate, settings.headroom_pct) == (1500.5, 5000.0, 12.5)
    assert PlanSettings(headroom_pct=0).headroom_pct == 0.0
    defaults = PlanSettings(min_throughput="")
    assert (defaults.space, defaults.strategy, defaults.objective, defaults.min_throughput, defaults.max_memory_mb,
            defaults.target_rate, defaults.headroom_pct) == (None, Strategy.QUICK, Objective.THROUGHPUT, None, None,
                                                              None, 20.0)
    assert PlanSettings(space={"instances": [1, 2]}).space == {"instances": [1, 2]}


# -- the answer ----------------------------------------------------------------------------------------
def measured_rows() -> list[dict[str, Any]]:
    """A CPU machine's plan: i2_b32 best, i1_b16 (the own config) meets, i2_b16 finds no load within
    the budget, i3_b32 failed to load; rows of the model as it is ("" variant) are not a variant's."""
    return [
        row("i1_b16", search="probe", batch=8, concurrency=16, throughput=1000.0, p99=12.0),
        row("i1_b16", batch=8, concurrency=16, throughput=1000.0, p99=12.0, throughput_ci_low_infer_per_s=950.0,
            server_rss_max_mb=700.0),
        row("i3_b32", search="probe", status="failed", batch=8, throughput=0.0, p99=NAN,
            reason="failed to load 'm': too many instances\ndetails"),
        row("i2_b16", search="probe", concurrency=1, p99=30.0),
        row("i2_b16", search="none_within", concurrency=1, p99=30.0),
        row("i2_b32", batch=8, concurrency=16, throughput=1800.0, p99=15.0, throughput_ci_low_infer_per_s=1700.0,
            server_rss_max_mb=900.0),
        row("", batch=8, concurrency=16, throughput=5000.0, p99=1.0),
    ]


def plan(settings: PlanSettings | None = None, constraints: Constraints = P99_20) -> PlanResult:
    sweep = SweepResult(make_spec(models=["m"], model_repository="."))
    sweep.rows = measured_rows()
    sweep.baseline_row = {"server_rss_max_mb": 500.0, "gpu_memory_max_mb": NAN}
    return answer("m", settings or PlanSettings(strategy="brute"), constraints, found_variants(), CONFIG, sweep)


BEST_SENTENCE = ("serve m with 2 instances, max batch 32, at batch 8, concurrency 16: 1,800 infer/s (±5.6%) "
                 "at p99 15 ms, 400 MB of memory")


def test_answer_judges_the_measured_variants_and_recommends_the_best() -> None:
    result = plan()
    # meeting by score, then the others in the order measured
    assert [j.variant for j in result.ranked] == ["i2_b32", "i1_b16", "i3_b32", "i2_b16"]
    assert [j.failed for j in result.ranked[2:]] == ["could not be measured: failed to load 'm': too many instances",
                                                     "no load within p99 ≤ 20 ms"]
    assert result.best is result.ranked[0]
    assert result.best.memory_mb == 400.0  # resident memory above the baseline's
    assert result.sentence == BEST_SENTENCE
    assert set(result.configs) == {"i1_b16", "i2_b16", "i2_b32", "i3_b32"}
    assert result.diff == ["max_batch_size: 16 -> 32", "instance_group[0].count: 1 -> 2"]
    assert result.sizing is None  # no target rate


def test_to_frame_has_a_row_per_variant_best_first_with_its_columns_in_order() -> None:
    frame = plan().to_frame()
    assert list(frame.columns) == ["rank", "variant", "original", "set.instance_group.count", "set.max_batch_size",
                                   "meets", "failed", "doubtful", "throughput", "batch_size", "load",
                                   "throughput_infer_per_s", "throughput_ci_low_infer_per_s", "latency_p99_ms",
                                   "memory_mb"]
    assert frame["variant"].tolist() == ["i2_b32", "i1_b16", "i3_b32", "i2_b16"]
    assert frame["rank"].tolist()[:2] == [1, 2] and frame["rank"].iloc[2:].isna().all()
    assert frame["meets"].tolist() == [True, True, False, False]
    assert frame["original"].tolist() == [False, True, False, False]
    assert frame["set.instance_group.count"].tolist() == [2, 1, 3, 2]
    assert frame["set.max_batch_size"].tolist() == [32, 16, 32, 16]
    assert frame["throughput"].tolist()[:2] == [1800.0, 1000.0] and frame["throughput"].iloc[2:].isna().all()
    assert frame["load"].tolist() == ["concurrency 16", "concurrency 16", "", ""]
    assert frame["memory_mb"].tolist()[:2] == [400.0, 200.0]
    # the objective names its column
    latency = plan(PlanSettings(objective="latency")).to_frame()
    assert "latency" in latency.columns and latency["latency"].tolist()[:2] == [-12.0, -15.0]
    assert latency["variant"].tolist()[:2] == ["i1_b16", "i2_b32"]


def test_config_text_has_the_comment_and_parses_back_to_the_recommended_config() -> None:
    result = plan()
    text = result.config_text
    assert text.startswith(f"# analyzer-widgets plan: i2_b32\n# {BEST_SENTENCE}\n")
    message = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert (message.name, message.backend, message.max_batch_size) == ("m", "python", 32)
    assert [(g.count, model_config_pb2.ModelInstanceGroup.Kind.Name(g.kind)) for g in message.instance_group] == \
        [(2, "KIND_CPU")]
    assert [(i.name, list(i.dims)) for i in message.input] == [("INPUT0", [4])]  # the other fields kept
    assert [o.name for o in message.output] == ["OUTPUT0"]


def test_sizing_of_the_recommended_variant_with_a_target_rate() -> None:
    sized = plan(PlanSettings(target_rate=5000, headroom_pct=20)).sizing
    assert sized is not None
    assert (sized.per_server, sized.servers) == (1360.0, 4)  # 1,700 x 0.8; 5,000 / 1,360 = 3.7


def test_no_variant_meets_so_nothing_is_recommended() -> None:
    result = plan(PlanSettings(target_rate=5000), Constraints(20.0, min_throughput=5000.0))
    assert result.best is None
    assert result.sentence == ("no variant of m meets the constraints (p99 ≤ 20 ms); see the table for which "
                               "failed and why")
    assert (result.config_text, result.diff, result.sizing) == ("", [], None)
    frame = result.to_frame()
    assert frame["rank"].isna().all() and not frame["meets"].any()
    assert frame["failed"].tolist()[:2] == ["1,000 infer/s, below the floor of 5,000",
                                            "could not be measured: failed to load 'm': too many instances"]


def test_files_write_the_table_the_summary_and_the_recommended_config() -> None:
    result = plan(PlanSettings(strategy="brute", target_rate=5000))
    written = files(result, SPACE)
    assert set(written) == {"plan.csv", "plan.json", "config.pbtxt"}
    table = pd.read_csv(io.StringIO(written["plan.csv"]))
    assert table["variant"].tolist() == ["i2_b32", "i1_b16", "i3_b32", "i2_b16"]
    assert list(table.columns) == list(result.to_frame().columns)
    summary = json.loads(written["plan.json"])
    assert summary["recommended"] == "i2_b32"
    assert summary["sentence"] == BEST_SENTENCE == result.sentence
    assert (summary["model"], summary["strategy"], summary["objective"]) == ("m", "brute", "throughput")
    assert summary["constraints"] == {"latency_budget_ms": 20.0, "latency_statistic": "p99",
                                      "min_throughput": None, "max_memory_mb": None}
    assert summary["space"] == {"instances": [1, 2, 3], "max_batch_size": [8, 16, 32]}
    assert summary["variants_measured"] == ["i2_b32", "i1_b16", "i3_b32", "i2_b16"]
    assert summary["diff"] == result.diff
    assert summary["sizing"]["text"].startswith("5,000 infer/s needs 4 server(s)")
    assert (summary["sizing"]["servers"], summary["sizing"]["memory_left_mb"]) == (4, None)  # no GPU here
    assert summary["per_variant"] == "search"
    assert written["config.pbtxt"] == result.config_text


def test_files_without_a_recommendation_leave_the_config_out() -> None:
    written = files(plan(constraints=Constraints(20.0, min_throughput=5000.0)), SPACE)
    assert set(written) == {"plan.csv", "plan.json"}
    summary = json.loads(written["plan.json"])
    assert summary["recommended"] is None and summary["sizing"] is None and summary["diff"] == []
    assert summary["sentence"].startswith("no variant of m meets the constraints (p99 ≤ 20 ms)")
    assert summary["constraints"]["min_throughput"] == 5000.0


def test_a_meeting_variant_without_an_objective_figure_is_recommended_or_not_whatever_the_order() -> None:
    meets = Judged("meets", {}, False, row("meets"), 400.0, "", (), NAN)  # per watt with no power: NaN
    fails = Judged("fails", {}, False, None, NAN, "no load within p99 ≤ 20 ms")
    sweep = SweepResult(make_spec(models=["m"], model_repository="."))

    def best(order: list[Judged]) -> str | None:
        result = PlanResult("m", PlanSettings(objective="throughput_per_watt"), P99_20, rank(order), CONFIG, {}, sweep)
        return None if result.best is None else result.best.variant

    assert best([meets, fails]) == best([fails, meets])
