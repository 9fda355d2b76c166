"""Models measured together on one server (analyzer_widgets/colocation.py, issue 19): the
real embedded server with two example models, each under its own load over the same
windows, against each alone; a searched member's highest load within the budget beside a
neighbour; metrics-colocated.csv; and the bad groups refused before anything starts."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
from conftest import FAST, assert_counts_agree
from torch_models import two_torch_models

import analyzer_widgets as aw
from analyzer_widgets import events
from analyzer_widgets.api import measure_together
from analyzer_widgets.colocation import ColocatedResult, Group, Member, versus_alone
from analyzer_widgets.config import ExportSettings, Load, make_settings
from analyzer_widgets.errors import ConfigError, ServerError
from analyzer_widgets.export import COLOCATED_CSV, SERVER_CSV, ResultsExist, load_colocated
from analyzer_widgets.machine import nvml_unavailable_reason
from analyzer_widgets.schema import COLOCATED_COLUMNS, COLOCATED_ONLY, SERVER_COLUMNS, metrics_doc_table

ROOT = Path(__file__).resolve().parent.parent
MEASURED = {"ok", "unstable"}
MODELS = ["mlp_numpy", "mixed_inputs"]
LABEL = "GPU 0"
#: the latency statistic the budget and the ratios use here (p90: a 250 ms window's p99 is a few requests)
STATISTIC = "p90"


def _spec(**more: Any) -> Any:
    settings = {"window_ms": 250, "baseline_s": FAST["baseline_s"], "max_trials": FAST["max_trials"], **more}
    return make_settings(models=MODELS, model_repository=aw.EXAMPLE_REPOSITORY, latency_statistic=STATISTIC,
                         **settings)[0]


def _group(search: bool = False) -> Group:
    return Group((Member("mlp_numpy", 1, Load(concurrency=2)), Member("mixed_inputs", 1, Load(concurrency=1), search)),
                 LABEL)


@pytest.fixture(scope="module")
def fixed() -> tuple[ColocatedResult, list[object]]:
    """Both models at fixed loads: each alone, then together."""
    seen: list[object] = []
    return measure_together(_spec(), [_group()], on_event=seen.append), seen


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
        assert_counts_agree(row)
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
        assert row["model_memory_mb"] == row["model_rss_max_mb"] > 0, (  # what to look at if it is NaN
            row["model"], row["together"], row["server_rss_max_mb"], row["window_count"], row["measured_s"],
            result.warnings)
        assert row["server_memory_mb"] == row["server_rss_max_mb"]
        assert row["server_memory_mb"] > row["model_memory_mb"], row
        assert math.isnan(row["model_gpu_memory_max_mb"])  # not a false 0
        empty = (result.baseline_row or {})["server_rss_max_mb"]
        assert row["server_memory_above_baseline_mb"] == pytest.approx(row["server_memory_mb"] - empty)
        assert row["server_memory_above_baseline_mb"] > 0  # the models' stubs, on top of the empty server
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
    given = earlier.to_frame()
    given = given[~given["together"]]  # the alone rows, as a DataFrame
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
    assert all(math.isnan(r["throughput_ratio"]) for r in probes)  # no alone row at those loads was given
    if answer["search"] == "answer":  # the next load up was measured beyond the budget
        above = min((r for r in probes if r["concurrency"] > answer["concurrency"]), key=lambda r: r["concurrency"])
        assert above["concurrency"] == answer["concurrency"] + 1
        assert above[column] > budget or above["status"] not in MEASURED or above["error_count"] > 0
    for probe in probes:  # the neighbour measured over the same windows, at its load
        beside = [r for r in result.rows if r["colocated_point"] == probe["colocated_point"]
                  and r["model"] != "mixed_inputs"]
        assert [(r["model"], r["concurrency"], r["searched"]) for r in beside] == [("mlp_numpy", 2, True)]
        assert beside[0]["neighbours"] == f"mixed_inputs: batch 1, concurrency {probe['concurrency']} (searched)"
        assert_counts_agree(beside[0])
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


# -- stop, a lost server ---------------------------------------------------------------------------------------
@pytest.mark.server
def test_stop_ends_the_point_in_flight_and_cleans_up() -> None:
    held: list[Any] = []

    def on_event(event: object) -> None:
        if isinstance(event, events.WindowMeasured) and held:
            held[0].stop()  # as a panel's Stop button does, from the runner's thread here

    result = measure_together(_spec(max_trials=20), [_group()], alone=False, on_event=on_event,
                              runner_hook=held.append)
    assert result.cancelled and result.error is None
    assert result.rows == []  # the point in flight gives no row; nothing else was started
    assert result.baseline_row is not None


def _server_pid() -> int:
    return next(p.pid for p in psutil.Process().children()
                if p.name() == "tritonserver" and p.status() != psutil.STATUS_ZOMBIE)


@pytest.mark.server
@pytest.mark.faults
def test_a_server_killed_during_a_colocated_point_fails_its_rows_and_ends_the_run(tmp_path: Path) -> None:
    """RELIABILITY row 3 for models measured together: the alone rows before stay on disk,
    each model's row of the point in flight is failed with the server's state, and the run
    ends with the error."""
    killed: list[int] = []

    def on_event(event: object) -> None:
        if isinstance(event, events.ColocatedPointStarted) and event.together and not killed:
            killed.append(_server_pid())
        elif isinstance(event, events.WindowMeasured) and len(killed) == 1:
            os.kill(killed[0], signal.SIGKILL)
            killed.append(0)

    out = tmp_path / "killed"
    with pytest.raises(ServerError):
        measure_together(_spec(), [_group()], export=ExportSettings(export_path=out), on_event=on_event)
    assert len(killed) == 2
    rows = load_colocated(out).to_dict("records")
    assert [(r["model"], r["together"]) for r in rows] == [
        ("mlp_numpy", False), ("mixed_inputs", False), ("mlp_numpy", True), ("mixed_inputs", True)]
    assert all(r["status"] in MEASURED for r in rows[:2])  # the alone rows before, kept
    failed = rows[2:]
    assert [r["status"] for r in failed] == ["failed", "failed"]
    assert all("the co-located point failed" in r["reason"] and "server" in r["reason"].lower() for r in failed), failed
    assert math.isnan(failed[0]["throughput_ratio"])


# -- on a GPU: two CUDA models on one server, each one's memory against nvidia-smi's -------------------------------
GPU_REASON = nvml_unavailable_reason()
BACKEND_PYTHON = os.environ.get("ANALYZER_WIDGETS_BACKEND_PYTHON")


def _smi_stub_memory() -> dict[str, float]:
    """nvidia-smi's GPU memory of each model's stub processes now, by model."""
    smi = shutil.which("nvidia-smi")
    assert smi, "nvidia-smi is not on PATH"
    out = subprocess.run([smi, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=20, check=True).stdout
    by_model: dict[str, float] = {}
    for line in out.splitlines():
        pid, used = (v.strip() for v in line.split(","))
        try:
            argv = psutil.Process(int(pid)).cmdline()
        except psutil.Error:
            continue
        if len(argv) > 1 and argv[0].endswith("triton_python_backend_stub"):
            model = Path(argv[1]).parts[-3]  # <repository>/<model>/<version>/model.py
            by_model[model] = by_model.get(model, 0.0) + float(used)
    return by_model


@pytest.mark.gpu
@pytest.mark.skipif(GPU_REASON is not None, reason=f"needs an NVIDIA GPU: {GPU_REASON}")
def test_two_gpu_models_together_each_ones_memory_agrees_with_nvidia_smi(tmp_path: Path) -> None:
    """Issue 19 on the GPU: torch_mlp (8 layers of 4096: 256 MiB in fp16) and a deeper copy
    (16 layers: 512 MiB) on one server, each under its own load; each model's memory is
    NVML's for its own stub, as nvidia-smi lists it while the point runs."""
    repo = two_torch_models(tmp_path / "repo")
    seen: dict[str, float] = {}  # model -> nvidia-smi's highest memory of its stubs while they ran together
    state = {"together": False}

    def on_event(event: object) -> None:
        if isinstance(event, events.ColocatedPointStarted):
            state["together"] = event.together
        elif isinstance(event, events.WindowMeasured) and state["together"] and event.trial >= 2:
            for model, used in _smi_stub_memory().items():
                seen[model] = max(seen.get(model, 0.0), used)

    spec = make_settings(models=["torch_mlp", "torch_deep"], model_repository=repo, window_ms=500,
                         stable_windows=3, max_trials=8, baseline_s=1.0, backend_python=BACKEND_PYTHON)[0]
    group = Group((Member("torch_mlp", 8, Load(concurrency=2)), Member("torch_deep", 8, Load(concurrency=2))), LABEL)
    result = measure_together(spec, [group], on_event=on_event)
    assert result.error is None, result.error
    assert all(r["status"] in MEASURED for r in result.rows), [(r["model"], r["reason"]) for r in result.rows]
    together = result.together(LABEL)
    for model, row in together.items():
        print(f"{model}: {row['throughput_infer_per_s']:.0f} infer/s together, {row['throughput_ratio']:.2f} of alone, "
              f"p99 x{row['latency_ratio']:.2f}; its memory {row['model_memory_mb']:.0f} MB "
              f"(nvidia-smi {seen.get(model)}), the server's {row['server_memory_mb']:.0f} MB")
        assert row["memory_source"] == "gpu"
        assert row["model_memory_mb"] == pytest.approx(seen[model], rel=0.05)
        assert row["throughput_ratio"] > 0 and row["latency_ratio"] > 0
    # the deeper model holds 256 MiB more weights; the server holds both stubs and its own context
    assert together["torch_deep"]["model_memory_mb"] > together["torch_mlp"]["model_memory_mb"] + 200
    both = together["torch_mlp"]["model_memory_mb"] + together["torch_deep"]["model_memory_mb"]
    assert together["torch_mlp"]["server_memory_mb"] >= 0.99 * both
