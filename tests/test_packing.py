"""The packing plan's pure logic (planning/packing.py): cases whose fewest GPUs can be proved by
hand (memory-bound, compute-bound, a model split over replicas, interference that keeps a pair
apart, first-fit decreasing losing to the solver), the solver's time limit, bad input refused,
the needs read from profile and plan results, and re-planning with measured capacities. No server."""

from __future__ import annotations

import doctest
import json
import math
import random
import time
from typing import Any

import pytest

from analyzer_widgets import make_spec
from analyzer_widgets.errors import ConfigError
from analyzer_widgets.planning import packing
from analyzer_widgets.planning.packing import (
    Gpus,
    Method,
    ModelNeed,
    PackingPlan,
    gpu_memory_mb,
    need_from_plan,
    needs_from_sweep,
    pack,
    replan,
)
from analyzer_widgets.planning.planner import Constraints, Judged, PlanResult, PlanSettings
from analyzer_widgets.results import SweepResult
from analyzer_widgets.schema import MODEL_COLUMNS, Row

NO_HEADROOM = Gpus(16000, headroom_pct=0)


def valid(plan: PackingPlan) -> None:
    """Every rule the plan must keep: each target served in full, at most one replica of a
    model per GPU, each GPU within its memory and its compute less the headroom."""
    served: dict[str, float] = {}
    for gpu in plan.gpus:
        assert len(set(gpu.models)) == len(gpu.models)
        assert gpu.memory_used_mb <= plan.gpu_spec.memory_limit_mb + 1e-6
        assert gpu.compute_share <= plan.gpu_spec.compute_limit + 1e-6
        for replica in gpu.replicas:
            assert replica.rate > 0
            served[replica.model] = served.get(replica.model, 0.0) + replica.rate
    assert served == pytest.approx({n.model: n.target_rate for n in plan.needs})
    assert plan.lower_bound <= plan.gpu_count


def heuristic(needs: list[ModelNeed], gpus: Gpus, **kwargs: Any) -> PackingPlan:
    """First-fit decreasing alone: one set of models over the exact solver's limit."""
    return pack(needs, gpus, exact_max_sets=1, **kwargs)


# -- cases proved by hand ------------------------------------------------------------------------
def test_memory_bound_no_two_models_share_a_gpu_so_each_gets_its_own() -> None:
    # 7,000 MB each; 16,000 MB less 20% headroom is 12,800 MB, so no two fit together. The memory
    # bound (21,000 / 12,800 -> 2) is not tight: the solver must prove 3.
    needs = [ModelNeed(m, 7000, 1000, 100) for m in "abc"]
    plan = pack(needs, Gpus(16000))
    valid(plan)
    assert (plan.gpu_count, plan.lower_bound, plan.method) == (3, 2, Method.EXACT)
    assert [g.models for g in plan.gpus] == [("a",), ("b",), ("c",)]
    assert plan.gpus[0].memory_left_mb == 9000


def test_memory_bound_two_fit_per_gpu() -> None:
    needs = [ModelNeed(m, 6000, 1000, 100) for m in "abcd"]  # two 6,000 MB models fit 12,800 MB
    plan = pack(needs, Gpus(16000))
    valid(plan)
    assert (plan.gpu_count, plan.lower_bound, plan.exact) == (2, 2, True)
    assert sorted(len(g.replicas) for g in plan.gpus) == [2, 2]


def test_compute_bound_a_model_is_split_so_three_models_fit_two_gpus() -> None:
    # each model takes 0.6 of a GPU: no two fit one GPU whole, so without splitting it is 3
    # GPUs; 1.8 GPUs of work fits 2 when one model is split over both.
    needs = [ModelNeed(m, 100, 1000, 600) for m in "abc"]
    plan = pack(needs, NO_HEADROOM)
    valid(plan)
    assert (plan.gpu_count, plan.lower_bound, plan.exact) == (2, 2, True)
    split = [m for m in "abc" if len(plan.replicas_of(m)) == 2]
    assert len(split) == 1
    assert sum(rate for _, rate in plan.replicas_of(split[0])) == pytest.approx(600)


def test_headroom_is_kept_free_of_compute() -> None:
    # 0.4 of a GPU each, 1.2 in all; with 20% headroom a GPU takes 0.8: 2 GPUs, one of them full
    needs = [ModelNeed(m, 100, 1000, 400) for m in "abc"]
    plan = pack(needs, Gpus(16000, headroom_pct=20))
    valid(plan)
    assert plan.gpu_count == 2 == plan.lower_bound
    assert max(g.compute_share for g in plan.gpus) == pytest.approx(0.8)
    assert pack(needs, NO_HEADROOM).gpu_count == 2  # 1.2 GPUs of work is still 2 without headroom


def test_a_model_above_one_gpu_gets_three_replicas() -> None:
    plan = pack([ModelNeed("c", 1000, 1000, 2500)], NO_HEADROOM)
    valid(plan)
    assert (plan.gpu_count, plan.exact) == (3, True)
    replicas = plan.replicas_of("c")
    assert [gpu for gpu, _ in replicas] == [0, 1, 2]
    assert sum(rate for _, rate in replicas) == pytest.approx(2500)
    assert all(rate <= 1000 + 1e-9 for _, rate in replicas)
    assert "c (1,000 of 2,500 infer/s)" in plan.sentence
    # with 20% headroom each replica serves at most 800: 2,500 / 800 -> 4
    assert pack([ModelNeed("c", 1000, 1000, 2500)], Gpus(16000)).gpu_count == 4


def test_interference_keeps_a_pair_that_fits_alone_apart() -> None:
    needs = [ModelNeed("a", 1000, 1000, 400), ModelNeed("b", 1000, 1000, 400)]
    alone = pack(needs, NO_HEADROOM)  # 0.4 + 0.4 of a GPU, assumed not to interfere
    assert alone.gpu_count == 1 and alone.gpus[0].assumed
    # together each serves only 500: 0.8 + 0.8 > 1, so they need a GPU each
    slowed = pack(needs, NO_HEADROOM, {("a", "b"): 500, ("b", "a"): 500})
    valid(slowed)
    assert (slowed.gpu_count, slowed.lower_bound, slowed.method) == (2, 1, Method.EXACT)
    assert [g.models for g in slowed.gpus] == [("a",), ("b",)]
    # a milder slow-down (900 each: 0.44 + 0.44) keeps them together, measured
    mild = pack(needs, NO_HEADROOM, {("a", "b"): 900, ("b", "a"): 900})
    assert mild.gpu_count == 1 and not mild.gpus[0].assumed
    assert mild.gpus[0].compute_share == pytest.approx(800 / 900)
    assert "assumed" not in mild.sentence


def test_a_capacity_beside_an_unmeasured_set_compounds_the_pairs_and_the_assumed_factor() -> None:
    needs = [ModelNeed("a", 100, 1000, 100), ModelNeed("b", 100, 1000, 100), ModelNeed("c", 100, 1000, 100)]
    plan = pack(needs, NO_HEADROOM, {("a", "b"): 800, ("a", "c"): 500}, assumed_factor=0.9)
    assert plan.gpu_count == 1
    capacity = {r.model: (r.capacity, r.measured) for r in plan.gpus[0].replicas}
    assert capacity["a"] == (pytest.approx(1000 * 0.8 * 0.5), False)  # pairs measured, the set not
    assert capacity["b"] == (pytest.approx(1000 * 0.9 * 0.9), False)  # no pair measured: assumed
    assert "GPU 0: capacities beside neighbours assumed" in plan.sentence
    measured = pack(needs, NO_HEADROOM, {("a", ("b", "c")): 300})
    assert {r.model: r.capacity for r in measured.gpus[0].replicas}["a"] == 300  # the set's own figure wins


def test_first_fit_decreasing_loses_a_gpu_that_the_solver_finds() -> None:
    # memory only (the classic): 50, 40, 30, 30, 30, 20 MB into 100 MB GPUs. First-fit
    # decreasing puts 50+40, 30+30+30 and then 20 alone (3 GPUs); 50+30+20 and 40+30+30 is 2.
    needs = [ModelNeed(f"m{i}", mb, 1e6, 1) for i, mb in enumerate([50, 40, 30, 30, 30, 20])]
    gpus = Gpus(100, headroom_pct=0)
    exact, rough = pack(needs, gpus), heuristic(needs, gpus)
    valid(exact)
    valid(rough)
    assert (exact.gpu_count, exact.method) == (2, Method.EXACT)
    assert (rough.gpu_count, rough.method) == (3, Method.HEURISTIC)
    assert "exact_max_sets" in rough.reason and "not proven the fewest; at least 2 needed" in rough.sentence
    assert sorted(sorted(n.memory_mb for n in needs if n.model in g.models) for g in exact.gpus) == [
        [20, 30, 50], [30, 30, 40]]


@pytest.mark.parametrize("case", [
    [ModelNeed("a", 3000, 1000, 500), ModelNeed("b", 3000, 1000, 200)],
    [ModelNeed(m, 7000, 1000, 100) for m in "abc"],
    [ModelNeed("big", 2000, 1000, 2500), ModelNeed("small", 500, 4000, 400)],
    [ModelNeed("a", 5000, 2000, 3000), ModelNeed("b", 4000, 800, 300), ModelNeed("c", 9000, 500, 100)],
], ids=["pair", "memory", "replicas", "mixed"])
def test_exact_and_heuristic_agree_on_small_cases(case: list[ModelNeed]) -> None:
    exact, rough = pack(case, Gpus(16000)), heuristic(case, Gpus(16000))
    valid(exact)
    valid(rough)
    assert exact.gpu_count == rough.gpu_count


@pytest.mark.parametrize("seed", range(6))
def test_on_random_cases_the_solver_is_never_worse_than_the_heuristic_and_both_keep_the_rules(seed: int) -> None:
    rng = random.Random(seed)
    needs = [ModelNeed(f"m{i}", rng.uniform(1000, 6000), rng.uniform(500, 2000), rng.uniform(100, 3000))
             for i in range(rng.randint(3, 8))]
    exact, rough = pack(needs, Gpus(16000), time_limit_s=60), heuristic(needs, Gpus(16000))
    valid(exact)
    valid(rough)
    assert exact.method is Method.EXACT
    assert exact.lower_bound <= exact.gpu_count <= rough.gpu_count


def test_the_solvers_time_limit_is_honoured_and_the_answer_says_it_is_not_proven() -> None:
    # 14 models, 1,198 sets that fit one GPU; first-fit decreasing is a GPU above the bound, so
    # the solver runs (it proves 20 in seconds here), and a millisecond is not enough to prove it
    rng = random.Random(1)
    needs = [ModelNeed(f"m{i}", rng.uniform(1000, 6000), rng.uniform(500, 2000), rng.uniform(100, 3000))
             for i in range(14)]
    started = time.monotonic()
    plan = pack(needs, Gpus(16000), time_limit_s=0.001, exact_max_sets=4096)
    elapsed = time.monotonic() - started
    valid(plan)
    assert "time limit of 0.001 s" in plan.reason
    assert plan.method in (Method.TIME_LIMIT, Method.HEURISTIC) or "meets the lower bound" in plan.reason
    assert plan.gpu_count <= heuristic(needs, Gpus(16000)).gpu_count
    # HiGHS checks its clock between steps, and this machine is shared: a generous margin, far
    # below the seconds an unlimited proof takes here
    assert elapsed < 30, elapsed


# -- bad input is refused, naming the field and the value ----------------------------------------
@pytest.mark.parametrize(("needs", "gpus", "field", "value", "words"), [
    ([ModelNeed("a", 100, 1000, None)], Gpus(1000), "target_rate['a']", None, "no target rate"),  # type: ignore[arg-type]
    ([ModelNeed("a", 100, 1000, -5)], Gpus(1000), "target_rate['a']", -5, "above 0"),
    ([ModelNeed("a", 100, 1000, 0)], Gpus(1000), "target_rate['a']", 0, "above 0"),
    ([ModelNeed("a", 100, math.nan, 10)], Gpus(1000), "capacity['a']", math.nan, "above 0"),
    ([ModelNeed("a", -1, 1000, 10)], Gpus(1000), "memory_mb['a']", -1, "0 or more"),
    ([ModelNeed("a", 900, 1000, 10)], Gpus(1000), "memory_mb['a']", 900, "fits no GPU"),
    ([ModelNeed("a", 1, 1, 1), ModelNeed("a", 1, 1, 1)], Gpus(1000), "model", "a", "twice"),
    ([], Gpus(1000), "needs", [], "no models"),
    ([ModelNeed("a", 1, 1, 1)], Gpus(0), "memory_mb", 0, "above 0"),
    ([ModelNeed("a", 1, 1, 1)], Gpus(1000, headroom_pct=100), "headroom_pct", 100, "below 100"),
], ids=["no-target", "negative-rate", "zero-rate", "no-capacity", "negative-memory", "too-big", "twice", "none",
        "no-gpu-memory", "all-headroom"])
def test_bad_input_is_refused(needs: list[ModelNeed], gpus: Gpus, field: str, value: object, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        pack(needs, gpus)
    assert caught.value.field == field
    assert caught.value.value == value or (value != value and caught.value.value != caught.value.value)
    assert words in str(caught.value)


def test_a_model_too_big_for_the_gpu_says_the_memory_it_had() -> None:
    with pytest.raises(ConfigError, match=r"memory_mb\['a'\]=900: one replica needs more than a GPU's 800 MB"):
        pack([ModelNeed("a", 900, 1000, 10)], Gpus(1000))


@pytest.mark.parametrize(("table", "field"), [
    ({("a", "x"): 5}, "interference['a', ['x']]"),
    ({("a", "a"): 5}, "interference['a', ['a']]"),
    ({("a", "b"): -5}, "interference['a', ['b']]"),
])
def test_a_bad_interference_entry_is_refused(table: dict[Any, float], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        pack([ModelNeed("a", 1, 100, 1), ModelNeed("b", 1, 100, 1)], Gpus(1000), table)
    assert caught.value.field == field


def test_bad_solver_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="time_limit_s=0"):
        pack([ModelNeed("a", 1, 100, 1)], Gpus(1000), time_limit_s=0)


# -- the answer ----------------------------------------------------------------------------------
def test_the_answer_in_a_sentence_a_table_and_a_dict() -> None:
    needs = [ModelNeed("a", 3000, 1000, 500), ModelNeed("b", 3000, 1000, 200), ModelNeed("c", 2000, 1000, 1000)]
    plan = pack(needs, Gpus(16000), {("a", "b"): 1000, ("b", "a"): 1000})
    valid(plan)
    # 0.625 + 0.25 + 1.25 = 2.125 GPUs of work at 80%: 3, as the bound says
    assert (plan.gpu_count, plan.lower_bound) == (3, 3)
    assert plan.sentence.startswith("3 GPUs (the fewest): GPU 0 holds a (500 infer/s)")
    frame = plan.to_frame()
    assert list(frame.columns[:3]) == ["gpu", "model", "rate_infer_per_s"]
    assert frame.groupby("model")["rate_infer_per_s"].sum().to_dict() == pytest.approx({"a": 500, "b": 200, "c": 1000})
    assert (frame["compute_share"] == frame["rate_infer_per_s"] / frame["capacity_infer_per_s"]).all()
    assert (frame["gpu_memory_left_mb"] == 16000 - frame["gpu_memory_used_mb"]).all()
    summary = json.loads(json.dumps(plan.to_dict()))
    assert summary["gpu_count"] == 3 and summary["method"] == "exact" and summary["sentence"] == plan.sentence
    assert {"model": "a", "beside": ["b"], "capacity": 1000} in summary["interference"]


def test_the_doctests_hold() -> None:
    assert doctest.testmod(packing).failed == 0


# -- re-planning with capacities measured together -----------------------------------------------
def test_replan_with_measured_interference_splits_a_pair_that_did_not_fit_together() -> None:
    needs = [ModelNeed("a", 1000, 1000, 400), ModelNeed("b", 1000, 1000, 400), ModelNeed("c", 1000, 1000, 100)]
    first = pack(needs, NO_HEADROOM)
    assert first.gpu_count == 1 and first.gpus[0].assumed  # 0.9 of a GPU, assumed
    again = replan(first, {0: {"a": 500, "b": 500, "c": 1000}})  # together, a and b serve 500 each
    valid(again)
    assert again.gpu_count == 2
    assert again.interference[("a", frozenset({"b", "c"}))] == 500
    assert all(len(g.models) < 3 for g in again.gpus)
    assert again.needs == first.needs and again.settings == first.settings


def test_replan_that_measured_no_interference_keeps_the_plan_and_marks_it_measured() -> None:
    needs = [ModelNeed("a", 1000, 1000, 400), ModelNeed("b", 1000, 1000, 400)]
    first = pack(needs, NO_HEADROOM)
    again = replan(first, {0: {"a": 1000, "b": 1000}})
    assert again.gpu_count == 1 and not again.gpus[0].assumed


@pytest.mark.parametrize(("measured", "field"), [
    ({3: {"a": 10}}, "measured[3]"),
    ({0: {"x": 10}}, "measured[0]['x']"),
    ({0: {"a": -1}}, "measured[0]['a']"),
])
def test_replan_refuses_figures_for_what_the_plan_does_not_hold(measured: Any, field: str) -> None:
    first = pack([ModelNeed("a", 1000, 1000, 400), ModelNeed("b", 1000, 1000, 400)], NO_HEADROOM)
    with pytest.raises(ConfigError) as caught:
        replan(first, measured)
    assert caught.value.field == field


# -- the needs from profile and plan results -----------------------------------------------------
def row(model: str, throughput: float, low: float = math.nan, variant: str = "", search: str = "answer",
        p99: float = 10.0, **values: Any) -> dict[str, Any]:
    return dict(Row(MODEL_COLUMNS, {
        "model": model, "variant": variant, "batch_size": 1, "concurrency": 4, "status": "ok", "search": search,
        "throughput_infer_per_s": throughput, "throughput_ci_low_infer_per_s": low, "latency_p99_ms": p99,
        **values}))


def sweep(rows: list[dict[str, Any]], baseline: dict[str, Any] | None = None) -> SweepResult:
    return SweepResult(make_spec(models=sorted({r["model"] for r in rows}), model_repository="."), rows, baseline)


def test_needs_from_a_gpu_profile_take_the_interval_low_end_and_the_memory_above_the_baseline() -> None:
    result = sweep([
        row("a", 1200.0, 1000.0, gpu_memory_above_baseline_mb=800.0),
        row("a", 5000.0, search="probe", p99=40.0, gpu_memory_above_baseline_mb=900.0),  # beyond the budget
        row("b", 300.0, 250.0, gpu_memory_above_baseline_mb=2000.0),
    ])
    needs = needs_from_sweep(result, {"a": 3000, "b": 100}, Constraints(20.0))
    assert [(n.model, n.capacity, n.memory_mb, n.target_rate) for n in needs] == [
        ("a", 1000.0, 800.0, 3000), ("b", 250.0, 2000.0, 100)]
    assert "counted at 1,000, its interval's low end" in needs[0].source
    figure = needs_from_sweep(result, {"a": 3000, "b": 100}, Constraints(20.0), interval_low=False)
    assert figure[0].capacity == 1200.0


def test_needs_from_a_cpu_profile_take_the_resident_memory_above_the_baselines() -> None:
    grid = [row("a", 900.0, search="", p99=5.0, server_rss_max_mb=700.0),
            row("a", 1500.0, search="", p99=30.0, server_rss_max_mb=750.0)]  # beyond 20 ms
    needs = needs_from_sweep(sweep(grid, {"server_rss_max_mb": 400.0}), {"a": 100}, Constraints(20.0))
    assert (needs[0].capacity, needs[0].memory_mb) == (900.0, 300.0)


def test_needs_from_results_refuse_a_model_without_a_target_and_a_target_without_a_model() -> None:
    result = sweep([row("a", 100.0, gpu_memory_above_baseline_mb=1.0), row("b", 100.0, gpu_memory_above_baseline_mb=1.0)])
    with pytest.raises(ConfigError) as caught:
        needs_from_sweep(result, {"a": 10}, Constraints(20.0))
    assert caught.value.field == "target_rate['b']" and "no target rate" in str(caught.value)
    with pytest.raises(ConfigError, match=r"names \['z'\], not in the results"):
        needs_from_sweep(result, {"a": 10, "b": 10, "z": 5}, Constraints(20.0))


def test_needs_from_results_refuse_a_model_with_no_answer_or_no_memory() -> None:
    beyond = sweep([row("a", 100.0, search="none_within", p99=50.0, gpu_memory_above_baseline_mb=1.0)])
    with pytest.raises(ConfigError, match=r"results\['a'\].*no load within p99 ≤ 20 ms"):
        needs_from_sweep(beyond, {"a": 10}, Constraints(20.0))
    unknown = sweep([row("a", 100.0)])  # no GPU memory, no resident memory
    with pytest.raises(ConfigError, match=r"memory_mb\['a'\]=nan: is unknown") as caught:
        needs_from_sweep(unknown, {"a": 10}, Constraints(20.0))
    assert "server_rss_max_mb=nan; baseline no baseline row" in str(caught.value)  # says which figure is missing
    no_baseline_rss = sweep([row("a", 100.0, server_rss_max_mb=80.0)], {"server_rss_max_mb": math.nan})
    with pytest.raises(ConfigError, match=r"answer \(concurrency 4\).*server_rss_max_mb=80.0; "
                                          r"baseline server_rss_max_mb=nan"):
        needs_from_sweep(no_baseline_rss, {"a": 10}, Constraints(20.0))
    scattered = sweep([row("a", 100.0, 0.0, gpu_memory_above_baseline_mb=1.0)])
    with pytest.raises(ConfigError, match=r"capacity\['a'\]=0.0: the lower end"):
        needs_from_sweep(scattered, {"a": 10}, Constraints(20.0))


def test_needs_from_a_plans_sweep_name_the_variant() -> None:
    result = sweep([row("a", 100.0, variant="i1", gpu_memory_above_baseline_mb=100.0),
                    row("a", 300.0, variant="i2", gpu_memory_above_baseline_mb=200.0)])
    with pytest.raises(ConfigError, match=r"variants\['a'\]=None: its rows hold variants \['i1', 'i2'\]"):
        needs_from_sweep(result, {"a": 10}, Constraints(20.0))
    need = needs_from_sweep(result, {"a": 10}, Constraints(20.0), variants={"a": "i1"})[0]
    assert (need.capacity, need.memory_mb) == (100.0, 100.0) and "variant i1" in need.source


def test_need_from_a_plan_result_is_its_recommended_variant() -> None:
    rows = [row("a", 100.0, variant="i1", gpu_memory_above_baseline_mb=100.0),
            row("a", 400.0, 350.0, variant="i2", gpu_memory_above_baseline_mb=250.0)]
    ranked = [Judged("i2", {}, False, rows[1], 250.0, ""), Judged("i1", {}, True, rows[0], 100.0, "")]
    ranked = [Judged(j.variant, j.fields, j.original, j.answer, j.memory_mb, j.failed, (), score)
              for j, score in zip(ranked, (400.0, 100.0), strict=True)]
    plan = PlanResult("a", PlanSettings(), Constraints(20.0), ranked, {}, {}, sweep(rows))
    need = need_from_plan(plan, 1000)
    assert (need.model, need.capacity, need.memory_mb, need.target_rate) == ("a", 350.0, 250.0, 1000)
    nothing = PlanResult("a", PlanSettings(), Constraints(20.0), [Judged("i1", {}, True, None, math.nan, "x")], {},
                         {}, sweep(rows))
    with pytest.raises(ConfigError, match="recommends no variant"):
        need_from_plan(nothing, 1000)


def test_gpu_memory_from_a_baseline() -> None:
    assert gpu_memory_mb({"gpu_memory_total_mb": 81559.0, "gpu_memory_max_mb": 1070.0}) == 80489.0
    assert gpu_memory_mb({"gpu_memory_total_mb": 2000.0, "gpu_memory_max_mb": 200.0}, gpu_count=2) == 900.0
    with pytest.raises(ConfigError, match="no GPU memory"):
        gpu_memory_mb({"server_rss_max_mb": 400.0})
