"""The planner's ``quick`` on known tables, no server: where each variant's budget search
starts (planning/quick.py's ``climb``, loadgen/search.py's ``hint``), what that saves, and
that it finds what a search from the range's first load finds."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from analyzer_widgets.loadgen.search import highest_within
from analyzer_widgets.planning import planner
from analyzer_widgets.planning.quick import climb, coordinate_ascent
from analyzer_widgets.planning.space import Space, variants
from analyzer_widgets.schema import MODEL_COLUMNS, Row

CONFIG: dict[str, Any] = {
    "name": "m", "backend": "python", "max_batch_size": 16,
    "instance_group": [{"kind": "KIND_CPU", "count": 1}],
    "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": ["4"]}],
    "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": ["4"]}],
}
FOUND = variants(Space(instances=(1, 2, 3), max_batch_size=(8, 16, 32)), CONFIG, gpu_count=0)


def linear(slope: float, base: float = 1.0) -> Callable[[float], float]:
    return lambda load: base + slope * load


# -- the search from a hint ---------------------------------------------------------------------
@pytest.mark.parametrize("budget", [1.5, 2.0, 5.0, 9.9, 17.0, 33.0, 64.0, 65.5])
def test_a_hinted_search_finds_what_a_search_from_the_start_finds_wherever_it_starts(budget: float) -> None:
    curve = linear(1.0)  # load c: latency 1 + c ms; within budget B up to B - 1
    plain = highest_within(curve, budget, limit=64)
    for hint in range(1, 65):
        found = highest_within(curve, budget, limit=64, hint=hint)
        assert (found.load, found.at_limit) == (plain.load, plain.at_limit), f"hint {hint}"
        loads = [p.load for p in found.probes]
        assert len(loads) == len(set(loads)), f"hint {hint}: a load measured twice: {loads}"
        assert all(1 <= c <= 64 and c == int(c) for c in loads)


def test_an_answer_at_the_hint_or_next_to_it_costs_two_probes() -> None:
    curve = linear(1.0)
    assert [p.load for p in highest_within(curve, 11.0, limit=64, hint=10).probes] == [10, 11]  # at the hint
    assert [p.load for p in highest_within(curve, 11.0, limit=64, hint=11).probes] == [11, 10]  # one above
    # from the start it is 1, 2, 4, 8, 16, 12, 10, 11
    assert len(highest_within(curve, 11.0, limit=64).probes) == 8


def test_a_hinted_search_says_none_within_at_the_start_and_a_lower_bound_at_the_limit() -> None:
    nothing = highest_within(linear(1.0, base=50), 20.0, limit=64, hint=6)
    assert nothing.load is None and [p.load for p in nothing.probes] == [6, 5, 1]  # one step down, then the start
    everything = highest_within(linear(0.01), 20.0, limit=64, hint=6)
    assert (everything.load, everything.at_limit) == (64, True)
    assert [p.load for p in everything.probes] == [6, 7, 9, 13, 21, 37, 64]
    outside = highest_within(linear(1.0), 11.0, limit=64, hint=500)  # brought into the range
    assert outside.probes[0].load == 64 and outside.load == 10


def test_a_hinted_rate_search_brackets_by_the_resolution() -> None:
    curve = linear(0.01)  # within 20 ms up to 1900 req/s
    plain = highest_within(curve, 20.0, start=100, limit=10_000, resolution=0.05)
    found = highest_within(curve, 20.0, start=100, limit=10_000, resolution=0.05, hint=1850)
    assert [p.load for p in found.probes] == [1850, 1940.0]
    assert found.load == 1850 and abs(found.load - plain.load) <= 0.05 * plain.load  # type: ignore[operator]


# -- the climb: where each neighbour's search starts -----------------------------------------------
def test_each_neighbour_starts_at_the_answer_of_the_variant_it_is_compared_with() -> None:
    scores = {"i1_b16": 100.0, "i2_b16": 150.0, "i3_b16": 120.0, "i2_b8": 90.0, "i2_b32": 140.0,
              "i1_b32": 10.0, "i3_b32": 10.0, "i1_b8": 10.0, "i3_b8": 10.0}
    answers = {name: {1: float(len(name) + int(score) // 10)} for name, score in scores.items()}
    steps = [(s.variant.name, dict(s.start_at)) for s in climb(FOUND, scores.__getitem__, answers.__getitem__)]
    assert steps == [("i1_b16", {}),  # the own config: from the range's first load
                     ("i2_b16", answers["i1_b16"]), ("i3_b16", answers["i1_b16"]),
                     ("i2_b8", answers["i2_b16"]), ("i2_b32", answers["i2_b16"])]  # after the move to i2
    assert [s.variant.name for s in climb(FOUND, scores.__getitem__)] == [name for name, _ in steps]
    assert [v.name for v in coordinate_ascent(FOUND, scores.__getitem__)] == [name for name, _ in steps]


def test_a_neighbour_of_a_variant_without_an_answer_starts_at_the_range_start() -> None:
    own = {**CONFIG, "dynamic_batching": {"max_queue_delay_microseconds": 50}}  # off the grid
    found = variants(Space(instances=(1, 2), max_batch_size=(16,), dynamic_batching={"delays_us": [0]}), own,
                     gpu_count=0)
    answers: dict[str, Mapping[int, float]] = {"original": {1: 7.0}, "i1_b16_d0": {}}
    scores = {"original": 500.0, "i1_b16_d0": math.nan, "i2_b16_d0": 400.0}
    steps = [(s.variant.name, dict(s.start_at)) for s in climb(found, scores.__getitem__, answers.__getitem__)]
    # the grid's variant nearest the own config starts at the own config's answer; its
    # neighbour, compared with a variant that has none, at the range's first load
    assert steps == [("original", {}), ("i1_b16_d0", {1: 7.0}), ("i2_b16_d0", {})]


# -- the planner's targets over a known table ------------------------------------------------------
def answer_row(variant: str, concurrency: int, throughput: float, search: str = "answer") -> dict[str, Any]:
    return dict(Row(MODEL_COLUMNS, {"model": "m", "variant": variant, "batch_size": 1, "concurrency": concurrency,
                                    "status": "ok", "search": search, "throughput_infer_per_s": throughput,
                                    "latency_p99_ms": 5.0}))


def test_the_planners_quick_targets_carry_the_start_from_the_rows_so_far() -> None:
    rows: list[dict[str, Any]] = []
    settings = planner.PlanSettings(strategy=planner.Strategy.QUICK)
    chosen, expected = planner.targets("m", FOUND, settings, planner.Constraints(20.0), lambda: rows, lambda: None)
    assert expected == 5
    measured = {"i1_b16": (6, 1000.0), "i2_b16": (9, 1500.0), "i3_b16": (11, 1200.0), "i2_b8": (4, 800.0),
                "i2_b32": (12, 1400.0)}
    seen = []
    for target in chosen:
        seen.append((target.variant, dict(target.start_at or {})))
        concurrency, throughput = measured.get(target.variant, (2, 10.0))
        rows += [answer_row(target.variant, concurrency, throughput, "probe"),
                 answer_row(target.variant, concurrency, throughput)]
    assert seen[:5] == [("i1_b16", {}), ("i2_b16", {1: 6}), ("i3_b16", {1: 6}), ("i2_b8", {1: 9}),
                        ("i2_b32", {1: 9})]


def test_on_a_known_table_the_start_and_the_cut_cost_fewer_points_and_find_the_same_best() -> None:
    """A 3 x 3 space whose p99 grows linearly with concurrency, more slowly the more
    instances and the larger the batch; throughput 100 x the concurrency (closed loop)."""
    def curve(name: str) -> Callable[[float], float]:
        v = next(v for v in FOUND if v.name == name)
        count, batch = v.fields["instance_group.count"], v.fields["max_batch_size"]
        return linear(1.0 / (count * (1 + math.log2(batch) / 8)))

    def run(hinted: bool, cut: bool) -> tuple[int, str, list[str]]:
        rows: list[dict[str, Any]] = []
        settings = planner.PlanSettings(strategy=planner.Strategy.QUICK)
        chosen, _ = planner.targets("m", FOUND, settings, planner.Constraints(20.0), lambda: rows, lambda: None)
        points, beaten = 0, []
        for target in chosen:
            hint = (target.start_at or {}).get(1) if hinted else None
            beat = target.beat if cut else None
            found = highest_within(curve(target.variant), 20.0, limit=256, hint=hint,
                                   enough=lambda p, beat=beat: beat is not None and 100.0 * p.load < beat)
            points += len(found.probes) + 1  # and its answer row
            if found.cut is not None:
                beaten.append(target.variant)
                rows.append(answer_row(target.variant, int(found.cut.load), 100.0 * found.cut.load, "beaten"))
                continue
            assert found.load is not None
            rows.append(answer_row(target.variant, int(found.load), 100.0 * found.load))
        best = max((r for r in rows if r["search"] == "answer"), key=lambda r: r["throughput_infer_per_s"])
        return points, best["variant"], beaten

    plain, hinted, both = run(False, False), run(True, False), run(True, True)
    assert plain[1] == hinted[1] == both[1] == "i3_b32"
    assert both[2] and not plain[2]  # some neighbours were cut; and only where asked
    assert both[0] < hinted[0] < plain[0]
    assert both[0] <= 0.6 * plain[0], (both, plain)


# -- the cut ---------------------------------------------------------------------------------------
def test_a_search_is_cut_at_the_first_probe_beyond_the_budget_that_enough_accepts() -> None:
    asked = []

    def enough(p: Any) -> bool:
        asked.append(p.load)
        return p.load < 40

    found = highest_within(linear(1.0), 30.0, limit=64, hint=45, enough=enough)
    assert [p.load for p in found.probes] == [45, 44, 1, 22, 33]  # bisecting [1, 44] from below; 33 is cut
    assert asked == [p.load for p in found.probes if not p.within]
    assert found.load is None and not found.at_limit and found.cut == found.probes[-1]
    assert highest_within(linear(1.0), 30.0, limit=64, hint=45).cut is None


def test_beaten_takes_the_upper_end_of_the_throughput_interval_and_never_a_failed_probe() -> None:
    from analyzer_widgets.runner import beaten

    probe = {"throughput_infer_per_s": 900.0, "throughput_ci_high_infer_per_s": 1100.0, "status": "ok"}
    assert beaten(probe, 1200.0) and not beaten(probe, 1000.0)  # 1,100 may still reach 1,000
    assert beaten({"throughput_infer_per_s": 900.0}, 1000.0)
    assert not beaten({"throughput_infer_per_s": math.nan, "status": "failed"}, 1000.0)


def test_a_cut_search_is_a_beaten_row_and_the_variant_is_judged_by_it() -> None:
    from analyzer_widgets.config import Load, Statistic
    from analyzer_widgets.loadgen.search import Probe, Search
    from analyzer_widgets.runner import answer_row as make_answer

    probe = answer_row("i2_b16", 12, 800.0, "probe")
    probe.update(latency_p99_ms=31.0, reason="")
    found = Search(None, False, (Probe(12, 31.0, False),), cut=Probe(12, 31.0, False))
    row = make_answer(found, {12: probe}, 20.0, Statistic.P99, lambda v: Load(concurrency=int(v)), 1000.0)
    assert row["search"] == "beaten" and row["concurrency"] == 12
    assert "searched no further: concurrency 12 measured 31 ms" in row["reason"]
    assert "less than the 1,000 of the variant it was compared with" in row["reason"]
    variant = next(v for v in FOUND if v.name == "i2_b16")
    judged = planner.judge(variant, [probe, dict(row)], None, planner.Constraints(20.0), planner.Objective.THROUGHPUT)
    assert not judged.ranked and judged.failed.startswith("searched no further")


def test_only_the_throughput_objective_cuts() -> None:
    rows = [answer_row("i1_b16", 6, 1000.0, "probe"), answer_row("i1_b16", 6, 1000.0)]
    for objective, beat in ((planner.Objective.THROUGHPUT, 1000.0), (planner.Objective.LATENCY, None)):
        settings = planner.PlanSettings(strategy=planner.Strategy.QUICK, objective=objective)
        chosen, _ = planner.targets("m", FOUND, settings, planner.Constraints(20.0), lambda: rows, lambda: None)
        first, second = next(iter(chosen)), next(iter(chosen))
        assert first.beat is None and (second.variant, second.beat) == ("i2_b16", beat)


# -- on the real embedded server -------------------------------------------------------------------
#: short measurements: where the searches start and stop is under test, not the figures
FAST: dict[str, Any] = dict(window_ms=200, stable_windows=2, max_trials=4, baseline_s=0.3)


def _by_variant(rows: Any) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = {}
    for r in rows:
        out.setdefault(str(r["variant"]), []).append((str(r["search"]), int(r["concurrency"])))
    return out


@pytest.mark.server
def test_the_runner_starts_a_search_at_its_hint_and_cuts_it_when_beaten() -> None:
    import analyzer_widgets as aw
    from analyzer_widgets.api import make_spec
    from analyzer_widgets.runner import SweepRunner, Target

    # a budget no load meets: a search from concurrency 4 brackets down to the range's start
    spec = make_spec(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, latency_budget_ms=0.001,
                     concurrency=[1, 8], **FAST)
    config = planner.own_config(spec, "mlp_numpy")
    runner = SweepRunner(spec, targets=[Target("mlp_numpy", "hinted", config, start_at={1: 4}),
                                        Target("mlp_numpy", "cut", config, start_at={1: 4}, beat=1e12)])
    runner.run()
    rows = _by_variant(runner.rows)
    assert rows["hinted"] == [("probe", 4), ("probe", 3), ("probe", 1), ("none_within", 1)]
    assert rows["cut"] == [("probe", 4), ("beaten", 4)]  # beyond at 4, serving less than 1e12 infer/s
    cut = [r for r in runner.rows if r["search"] == "beaten"][0]
    assert cut["reason"].startswith("searched no further: concurrency 4 measured ")


@pytest.mark.server
def test_a_quick_plan_starts_each_neighbours_search_at_the_answer_it_is_compared_with() -> None:
    import analyzer_widgets as aw

    # a budget every load meets, loads 1 to 8: the own config gallops 1, 2, 4, 8 (a lower
    # bound at the limit); each neighbour starts there: one probe and its answer
    result = aw.plan("mlp_numpy", model_repository=aw.EXAMPLE_REPOSITORY, latency_budget_ms=10_000,
                     concurrency=[1, 8], space={"instances": [1, 2], "max_batch_size": [16, 64]}, strategy="quick",
                     **FAST)
    rows = _by_variant(result.sweep.rows)
    assert rows["i1_b64"] == [("probe", 1), ("probe", 2), ("probe", 4), ("probe", 8), ("answer_lower_bound", 8)]
    # the instances field first: i2_b64; then max batch 16 beside whichever of the two won
    # (i1_b16, or i2_b16 after a move: which depends on the figures of the moment)
    assert "i2_b64" in rows and {"i1_b16", "i2_b16"} & set(rows)
    assert set(rows) <= {"i1_b64", "i2_b64", "i1_b16", "i2_b16"}
    for name in set(rows) - {"i1_b64"}:
        assert rows[name] == [("probe", 8), ("answer_lower_bound", 8)], name
    assert result.best is not None
