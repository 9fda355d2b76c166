"""Models measured together on one server (analyzer_widgets/colocation.py, issue 19): the
real embedded server with two example models, each under its own load over the same
windows, against each alone; a searched member's highest load within the budget beside a
neighbour; metrics-colocated.csv; and the bad groups refused before anything starts."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import FAST

import analyzer_widgets as aw
from analyzer_widgets import events
from analyzer_widgets.colocation import ColocatedResult, Group, Member, measure_together, versus_alone
from analyzer_widgets.config import ExportSettings, Load, make_settings
from analyzer_widgets.errors import ConfigError
from analyzer_widgets.export import COLOCATED_CSV, SERVER_CSV, ResultsExist, load_colocated
from analyzer_widgets.schema import COLOCATED_COLUMNS, COLOCATED_ONLY, SERVER_COLUMNS, metrics_doc_table

ROOT = Path(__file__).resolve().parent.parent
MEASURED = {"ok", "unstable"}
MODELS = ["mlp_numpy", "mixed_inputs"]
LABEL = "GPU 0"
#: the latency statistic the budget and the ratios use here (p90: a 250 ms window's p99 is a few requests)
STATISTIC = "p90"


def _spec(**more: Any) -> Any:
    settings = {"window_ms": 250, "baseline_s": FAST["baseline_s"], "max_trials": FAST["max_trials"]}
    return make_settings(models=MODELS, model_repository=aw.EXAMPLE_REPOSITORY, latency_statistic=STATISTIC,
                         **settings, **more)[0]


def _group(search: bool = False) -> Group:
    return Group((Member("mlp_numpy", 1, Load(concurrency=2)), Member("mixed_inputs", 1, Load(concurrency=1), search)),
                 LABEL)


@pytest.fixture(scope="module")
def fixed() -> tuple[ColocatedResult, list[object]]:
    """Both models at fixed loads: each alone, then together."""
    seen: list[object] = []
    return measure_together(_spec(), [_group()], on_event=seen.append), seen


def _assert_counts_agree(row: dict[str, Any]) -> None:
    """The client's count and the model's own server statistics over its windows agree:
    each model's windows were cut at its own statistics read, as a sweep's are."""
    client, server = row["client_inference_count"], row["server_inference_count"]
    assert client > 0 and abs(client - server) <= 0.05 * max(client, server), (row["model"], client, server)


@pytest.mark.server
def test_two_models_together_each_against_itself_alone(fixed: tuple[ColocatedResult, list[object]]) -> None:
    result, seen = fixed
    assert result.error is None and not result.cancelled, result.error
    df = result.to_frame()
    assert list(df.columns) == [c.name for c in COLOCATED_COLUMNS]
    # a row per model alone, then a row per model together, in that order
    assert list(zip(df["model"], df["together"], strict=True)) == [
        ("mlp_numpy", False), ("mixed_inputs", False), ("mlp_numpy", True), ("mixed_inputs", True)]
    assert set(df["status"]) <= MEASURED, df[["model", "together", "status", "reason"]]
    assert (df["group"] == LABEL).all() and not df["searched"].any() and (df["error_count"] == 0).all()
    together, alone = result.together(LABEL), result.alone(LABEL)
    assert set(together) == set(alone) == set(MODELS)
    # the two together rows are one point (the same windows), each alone row a point of its own
    assert together["mlp_numpy"]["colocated_point"] == together["mixed_inputs"]["colocated_point"]
    assert len({alone["mlp_numpy"]["colocated_point"], alone["mixed_inputs"]["colocated_point"],
                together["mlp_numpy"]["colocated_point"]}) == 3
    # each row's load, and the neighbours' beside it
    assert together["mlp_numpy"]["concurrency"] == 2 and together["mixed_inputs"]["concurrency"] == 1
    assert together["mlp_numpy"]["neighbours"] == "mixed_inputs: batch 1, concurrency 1"
    assert together["mixed_inputs"]["neighbours"] == "mlp_numpy: batch 1, concurrency 2"
    assert alone["mlp_numpy"]["neighbours"] == "mixed_inputs: loaded, idle"
    for row in result.rows:
        _assert_counts_agree(row)
        assert row["window_count"] >= 3 and row["throughput_infer_per_s"] > 0
    _assert_ratios_are_the_rows_own(result)
    _assert_memory(result)
    assert result.baseline_row is not None and result.baseline_row["duration_s"] > 0
    started = [e for e in seen if isinstance(e, events.ColocatedPointStarted)]
    assert [(e.together, e.loads) for e in started] == [
        (False, ("mlp_numpy: batch 1, concurrency 2",)), (False, ("mixed_inputs: batch 1, concurrency 1",)),
        (True, ("mlp_numpy: batch 1, concurrency 2", "mixed_inputs: batch 1, concurrency 1"))]
    assert len([e for e in seen if isinstance(e, events.PointFinished)]) == 4


def _assert_ratios_are_the_rows_own(result: ColocatedResult) -> None:
    column = f"latency_{STATISTIC}_ms"
    together, alone = result.together(LABEL), result.alone(LABEL)
    for model in MODELS:
        row, base = together[model], alone[model]
        assert row["latency_statistic"] == STATISTIC
        assert row["alone_throughput_infer_per_s"] == base["throughput_infer_per_s"]
        assert row["alone_latency_ms"] == base[column]
        assert row["throughput_ratio"] == pytest.approx(row["throughput_infer_per_s"] / base["throughput_infer_per_s"])
        assert row["latency_ratio"] == pytest.approx(row[column] / base[column])
        assert row["throughput_ratio"] > 0 and row["latency_ratio"] > 0
        # an alone row compares with nothing
        assert math.isnan(base["throughput_ratio"]) and math.isnan(base["alone_throughput_infer_per_s"])


def _assert_memory(result: ColocatedResult) -> None:
    """No GPU here: the stubs' resident memory stands in, each model's its own stub's."""
    for row in result.rows:
        assert row["memory_source"] == "resident"
        assert row["model_memory_mb"] == row["model_rss_max_mb"] > 0
        assert row["server_memory_mb"] == row["server_rss_max_mb"]
        assert row["server_memory_mb"] > row["model_memory_mb"], row
        assert math.isnan(row["model_gpu_memory_max_mb"])  # not a false 0
    together = result.together(LABEL)
    # the whole server holds both models' stubs: more than either one's
    assert together["mlp_numpy"]["server_memory_mb"] > max(r["model_memory_mb"] for r in together.values())


@pytest.mark.server
def test_a_searched_member_finds_its_load_within_the_budget_beside_its_neighbour(
        fixed: tuple[ColocatedResult, list[object]], tmp_path: Path) -> None:
    earlier, _ = fixed
    column = f"latency_{STATISTIC}_ms"
    # a budget the neighbours' load leaves room for: 4x what the searched model took beside it at concurrency 1
    budget = round(4 * earlier.together(LABEL)["mixed_inputs"][column], 2)
    given = [r for r in earlier.rows if not r["together"]]
    out = tmp_path / "together"
    result = measure_together(_spec(latency_budget_ms=budget), [_group(search=True)], alone_rows=given,
                              export=ExportSettings(export_path=out))
    assert result.error is None, result.error
    # the alone rows were given, not measured again
    alone = result.alone(LABEL)
    assert {m: r["colocated_point"] for m, r in alone.items()} == {"mlp_numpy": -1, "mixed_inputs": -1}
    assert all(r["reason"].startswith("given: measured before this run") for r in alone.values())
    assert alone["mixed_inputs"]["throughput_infer_per_s"] == earlier.alone(LABEL)["mixed_inputs"]["throughput_infer_per_s"]
    fixed_row = result.together(LABEL)["mixed_inputs"]
    assert fixed_row["alone_throughput_infer_per_s"] == alone["mixed_inputs"]["throughput_infer_per_s"]
    # the answer: the highest concurrency of mixed_inputs within the budget while mlp_numpy holds concurrency 2
    answer = result.answers(LABEL)["mixed_inputs"]
    assert answer["search"] in ("answer", "answer_lower_bound"), answer["reason"]
    assert answer["searched"] and answer["together"] and answer["concurrency"] >= 1
    assert answer[column] <= budget
    assert answer["neighbours"] == "mlp_numpy: batch 1, concurrency 2"
    probes = [r for r in result.rows if r["searched"] and r["model"] == "mixed_inputs" and r["search"] == "probe"]
    assert probes and all(r["concurrency"] != 1 for r in probes)  # concurrency 1 was the fixed point, not again
    if answer["search"] == "answer":  # the next load up was measured beyond the budget
        above = min((r for r in probes if r["concurrency"] > answer["concurrency"]), key=lambda r: r["concurrency"])
        assert above["concurrency"] == answer["concurrency"] + 1
        assert above[column] > budget or above["status"] not in MEASURED or above["error_count"] > 0
    for probe in probes:  # the neighbour measured over the same windows, at its load
        beside = [r for r in result.rows if r["colocated_point"] == probe["colocated_point"]
                  and r["model"] != "mixed_inputs"]
        assert [(r["model"], r["concurrency"], r["searched"]) for r in beside] == [("mlp_numpy", 2, True)]
        assert beside[0]["neighbours"] == f"mixed_inputs: batch 1, concurrency {probe['concurrency']} (searched)"
        _assert_counts_agree(beside[0])
    _assert_written(result, out)


def _assert_written(result: ColocatedResult, out: Path) -> None:
    read = load_colocated(out)
    pd.testing.assert_frame_equal(read, result.to_frame())
    assert read["together"].dtype == bool
    baseline = pd.read_csv(out / SERVER_CSV)
    assert list(baseline.columns) == [c.name for c in SERVER_COLUMNS] and len(baseline) == 1
    # a second run into the same folder is refused, its rows kept
    with pytest.raises(ResultsExist):
        measure_together(_spec(), [_group()], export=ExportSettings(export_path=out))
    assert (out / COLOCATED_CSV).read_text().count("\n") == len(result.rows) + 1


# -- refused before anything starts -------------------------------------------------------------------
def _members(*members: Member) -> list[Group]:
    return [Group(members, "g")]


@pytest.mark.parametrize(("groups", "field", "value"), [
    ([], "groups", []),
    ([Group((), "g")], "groups[0].members", ()),
    (_members(Member("mlp_numpy", 1, Load(concurrency=1)), Member("torch_mlp", 1, Load(concurrency=1))),
     "groups[0].members[1].model", "torch_mlp"),
    (_members(Member("mlp_numpy", 1, Load(concurrency=1)), Member("mlp_numpy", 2, Load(concurrency=1))),
     "groups[0].members[1].model", "mlp_numpy"),
    (_members(Member("mlp_numpy", 0, Load(concurrency=1)), Member("mixed_inputs", 1, Load(concurrency=1))),
     "groups[0].members[0].batch", 0),
    (_members(Member("mlp_numpy", 1, Load(concurrency=0)), Member("mixed_inputs", 1, Load(concurrency=1))),
     "groups[0].members[0].load", 0),
    (_members(Member("mlp_numpy", 1, Load(concurrency=1), search=True), Member("mixed_inputs", 1, Load(concurrency=1))),
     "groups[0].members[0].search", True),
    (_members(Member("mlp_numpy", 1, Load(concurrency=1))), "models", "mixed_inputs"),
    ([Group((Member("mlp_numpy", 1, Load(concurrency=1)),), "g"), Group((Member("mixed_inputs", 1, Load(concurrency=1)),), "g")],
     "groups[1].label", "g"),
])
def test_a_bad_group_is_refused_naming_the_field(groups: list[Group], field: str, value: object, tmp_path: Path) -> None:
    out = tmp_path / "never"
    with pytest.raises(ConfigError) as refused:
        measure_together(_spec(), groups, export=ExportSettings(export_path=out))
    assert (refused.value.field, refused.value.value) == (field, value)
    assert not out.exists()  # nothing was started or written


def test_alone_rows_that_are_not_rows_are_refused() -> None:
    with pytest.raises(ConfigError) as refused:
        measure_together(_spec(), [_group()], alone_rows=[{"model": "mlp_numpy"}])
    assert refused.value.field == "alone_rows[0]"


def test_the_ratios_compare_with_the_alone_row_at_the_statistic() -> None:
    spec = _spec()
    row = {"status": "ok", "throughput_infer_per_s": 90.0, "latency_p90_ms": 6.0}
    assert versus_alone(row, {"status": "ok", "throughput_infer_per_s": 120.0, "latency_p90_ms": 4.0}, spec) == {
        "alone_throughput_infer_per_s": 120.0, "alone_latency_ms": 4.0, "throughput_ratio": 0.75, "latency_ratio": 1.5}
    assert versus_alone(row, {"status": "failed", "throughput_infer_per_s": math.nan, "latency_p90_ms": math.nan},
                        spec) == {}
    assert versus_alone(row, None, spec) == {}


def test_metrics_doc_holds_the_colocated_table() -> None:
    # regenerate with schema.metrics_doc_table(COLOCATED_ONLY)
    text = (ROOT / "docs" / "metrics.md").read_text()
    start = text.index("## metrics-colocated.csv")
    assert metrics_doc_table(COLOCATED_ONLY) in text[start:]
