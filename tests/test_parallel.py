"""A sweep split into units run side by side (``--parallel gpus``, analyzer_widgets/distributed): on this CPU
machine two slots stand in for two GPUs (``parallel_slots=2``), two real embedded servers
at once; the pure parts (the split, the slots, the refusals) need no server."""

from __future__ import annotations

import io
import json
import math
import os
import signal
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from conftest import FAST, stop_after_first_point

import analyzer_widgets as aw
from analyzer_widgets import events
from analyzer_widgets.api import measure_together
from analyzer_widgets.colocation import Group, Member
from analyzer_widgets.config import ExportSettings, Load, Parallel, SweepSpec, make_settings
from analyzer_widgets.distributed import slots, split
from analyzer_widgets.errors import ConfigError
from analyzer_widgets.export import SERVER_CSV, load_colocated, load_results, read_csv
from analyzer_widgets.machine import nvml_unavailable_reason, visible_gpus
from analyzer_widgets.results import read_samples
from analyzer_widgets.schema import SERVER_COLUMNS

MEASURED = {"ok", "unstable"}
MODELS = ["mlp_numpy", "mixed_inputs"]


def servers_under(pids: list[int]) -> list[int]:
    """The live tritonserver processes started by these worker processes."""
    found = []
    for pid in pids:
        try:
            children = psutil.Process(pid).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for child in children:
            try:
                if child.name() == "tritonserver" and child.status() != psutil.STATUS_ZOMBIE:
                    found.append(child.pid)
            except psutil.NoSuchProcess:
                pass
    return found


class UnitsWatch:
    """An event handler keeping every event, each unit's worker pid, and how many of the
    units' servers were alive each time one said it was ready."""

    def __init__(self) -> None:
        self.seen: list[object] = []
        self.workers: list[int] = []
        self.up_at_once: list[int] = []

    def __call__(self, event: object) -> None:
        self.seen.append(event)
        if isinstance(event, events.UnitStarted):
            self.workers.append(event.worker_pid)
        elif isinstance(event, events.ServerReady):
            self.up_at_once.append(len(servers_under(self.workers)))


# -- pure parts ------------------------------------------------------------------------------------
def test_split_one_unit_per_model_with_its_earlier_rows() -> None:
    spec = SweepSpec(models=("a", "b"), model_repository=Path("."), parallel=Parallel.GPUS, parallel_slots=2)
    kept = {("b", "", 1, Load(concurrency=1)): {"model": "b", "batch_size": 1, "concurrency": 1}}
    units = split(spec, kept)
    assert [u.model for u in units] == ["a", "b"]
    assert [u.spec.models for u in units] == [("a",), ("b",)]
    assert units[0].earlier == () and units[1].earlier == ({"model": "b", "batch_size": 1, "concurrency": 1},)
    # a unit is one server's sweep: it does not split again, and its settings are the sweep's
    assert all(u.spec.parallel is Parallel.OFF and u.spec.batch_sizes == spec.batch_sizes for u in units)


def test_split_one_unit_per_group_with_its_members_given_rows() -> None:
    spec = SweepSpec(models=("a", "b", "c"), model_repository=Path("."), parallel=Parallel.GPUS, parallel_slots=2)
    groups = (Group((Member("a", 1, Load(concurrency=2)), Member("b", 4, Load(rate_per_s=50))), "GPU 0"),
              Group((Member("c", 1, Load(concurrency=1)),), "GPU 1"))
    given = {("b", 4, Load(rate_per_s=50)): {"model": "b", "batch_size": 4, "request_rate_per_s": 50.0},
             ("b", 1, Load(concurrency=1)): {"model": "b", "batch_size": 1, "concurrency": 1}}  # no member's load
    units = split(spec, groups=groups, alone=False, given=given)
    assert [(u.group, u.spec.models, u.alone) for u in units] == [(groups[0], ("a", "b"), False),
                                                                  (groups[1], ("c",), False)]
    assert units[0].earlier == ({"model": "b", "batch_size": 4, "request_rate_per_s": 50.0},) and units[1].earlier == ()
    assert [u.name for u in units] == ["GPU 0 (a, b)", "GPU 1 (c)"]
    assert units[0].owns({"group": "GPU 0", "model": "c"}) and not units[1].owns({"group": "GPU 0", "model": "c"})
    assert all(u.spec.parallel is Parallel.OFF for u in units)


def test_a_failed_group_units_members_without_their_together_row_fail_saying_why() -> None:
    from analyzer_widgets.colocation import check_groups, colocated_row
    from analyzer_widgets.distributed.gpus import ParallelRunner, _Running
    from analyzer_widgets.distributed.units import Slot

    spec = SweepSpec(models=("a", "b"), model_repository=Path("."), parallel=Parallel.GPUS, parallel_slots=2)
    groups = check_groups(spec, [Group((Member("a", 1, Load(concurrency=2)), Member("b", 1, Load(concurrency=1))),
                                       "GPU 0"), Group((Member("a", 4, Load(concurrency=1)),), "GPU 1")])
    runner = ParallelRunner(spec, groups=groups)
    seen: list[object] = []
    runner.subscribe(seen.append)
    runner._index, runner._total, runner._colocated_total = 0, 5, 4
    runner._known = True  # a unit's server has said its version: rows go straight on
    pair, single = (_Running(unit, Slot(unit.index), None) for unit in split(spec, groups=groups))
    alone_a = colocated_row(spec, groups[0], groups[0].members[0], Load(concurrency=2), False, 0)
    runner._finish(pair, dict(alone_a, status="ok"))  # a alone arrived, then the unit's server died
    runner._finish(single, dict(colocated_row(spec, groups[1], groups[1].members[0], Load(concurrency=1), True, 0),
                                status="ok"))  # a group of one: its one row is its together row
    runner._unit_done(pair, "the server died (signal 9)\nits log: ...")
    runner._unit_done(single, "its worker process ended (exit code -9)")
    failed = [r for r in runner.rows if r["status"] == "failed"]
    assert [(r["group"], r["model"], r["together"], r["reason"]) for r in failed] == [
        ("GPU 0", "a", True, "its unit failed: the server died (signal 9)"),
        ("GPU 0", "b", True, "its unit failed: the server died (signal 9)")]
    # the failed point has a number of its own, after the two points that arrived
    assert sorted(r["colocated_point"] for r in runner.rows) == [0, 1, 2, 2]
    ends = [(e.measured, e.failed) for e in seen if isinstance(e, events.UnitFinished)]
    assert ends == [(1, 2), (1, 0)]


def test_slots_that_share_a_gpu_are_said_to_count_each_others_gpu_figures() -> None:
    """Found in the one-GPU dry run of issue 21's script: two units on one H200 each saw the
    other's memory above their own baseline (torch_mlp 2,203 MB instead of its 974)."""
    from analyzer_widgets.distributed.gpus import shared_gpus_notice
    from analyzer_widgets.distributed.units import Slot

    assert shared_gpus_notice([Slot(0, "GPU-a"), Slot(1, "GPU-b")]) is None
    assert shared_gpus_notice([Slot(0, None), Slot(1, None)]) is None  # no GPU: nothing sampled
    said = shared_gpus_notice([Slot(0, "GPU-a"), Slot(1, "GPU-b"), Slot(2, "GPU-a")])
    assert said is not None and said.startswith("slots 0, 2 on GPU-a: ")
    assert "the memory above its baseline" in said and "GPU-b" not in said


def test_slots_on_a_machine_without_gpus() -> None:
    if nvml_unavailable_reason() is None:
        pytest.skip("this machine has GPUs: the slots are dealt them")
    spec = SweepSpec(models=("a",), model_repository=Path("."), parallel=Parallel.GPUS)
    assert [(s.index, s.gpu) for s in slots(spec)] == [(0, None)]  # no GPU: one unit at a time
    two = SweepSpec(models=("a",), model_repository=Path("."), parallel=Parallel.GPUS, parallel_slots=2)
    assert [(s.index, s.gpu) for s in slots(two)] == [(0, None), (1, None)]


def test_refusals_name_the_field() -> None:
    with pytest.raises(ConfigError, match="parallel_slots"):
        aw.make_spec(models="a", model_repository=".", parallel_slots=2)
    with pytest.raises(ConfigError, match="parallel.*local"):
        aw.make_spec(models="a", launch_mode="remote", url="localhost:8001", parallel="gpus")
    with pytest.raises(ConfigError, match="parallel.*one of"):
        aw.make_spec(models="a", model_repository=".", parallel="ray")
    with pytest.raises(ConfigError, match="strategy='quick': chooses each variant from the ones measured before it, "
                                          r"so its variants cannot run side by side \(--parallel gpus\): use --search brute"):
        aw.plan("mlp_numpy", model_repository=aw.EXAMPLE_REPOSITORY, latency_budget_ms=5, parallel="gpus")


# -- on real servers -------------------------------------------------------------------------------
@pytest.mark.server
def test_two_slots_give_the_one_server_rows_in_one_set_of_files(tmp_path: Path) -> None:
    grid = {"models": MODELS, "model_repository": aw.EXAMPLE_REPOSITORY, "batch_sizes": [1, 4], "concurrency": [1, 2],
            **FAST}
    alone = aw.profile(**grid, export_path=tmp_path / "one")
    watch = UnitsWatch()
    seen, workers, up_at_once = watch.seen, watch.workers, watch.up_at_once

    both = aw.profile(**grid, parallel="gpus", parallel_slots=2, export_path=tmp_path / "two", on_event=watch)
    assert both.error is None and not both.cancelled
    one_df, two_df = alone.to_frame(), both.to_frame()
    assert list(two_df.columns) == list(one_df.columns)
    points = ["model", "variant", "batch_size", "concurrency"]
    assert sorted(map(tuple, two_df[points].values.tolist())) == sorted(map(tuple, one_df[points].values.tolist()))
    assert set(two_df["status"]) <= MEASURED, two_df[["model", "status", "reason"]]
    assert (two_df["throughput_infer_per_s"] > 0).all()

    # two units, two worker processes, and when the second server said it was ready both were up
    started = [e for e in seen if isinstance(e, events.UnitStarted)]
    finished = [e for e in seen if isinstance(e, events.UnitFinished)]
    assert sorted(e.models for e in started) == sorted((m,) for m in MODELS)
    assert {e.slot for e in started} == {0, 1} and len(set(workers)) == 2
    assert [(e.measured, e.failed, e.error) for e in finished] == [(4, 0, None)] * 2
    assert max(up_at_once) == 2, up_at_once
    # one sweep to whoever listens: one start and one end, the points numbered across it
    assert sum(isinstance(e, events.SweepStarted) for e in seen) == 1
    assert sum(isinstance(e, events.SweepFinished) for e in seen) == 1
    assert [e.index for e in seen if isinstance(e, events.PointFinished)] == list(range(8))

    # the files, written once, read by the results reader: each unit's server has its baseline row
    rows, baseline = load_results(tmp_path / "two")
    assert sorted(map(tuple, rows[points].values.tolist())) == sorted(map(tuple, two_df[points].values.tolist()))
    assert len(baseline) == 2 and (baseline["server_version"] == baseline["server_version"].iloc[0]).all()
    samples = read_samples(tmp_path / "two" / "metrics-samples.csv")
    assert set(MODELS) <= set(samples["model"]) and "baseline" in set(samples["phase"])
    manifest = json.loads((tmp_path / "two" / "sweep.json").read_text())
    assert manifest["server_version"] == both.server_version != ""
    logs = sorted(p.name for p in (tmp_path / "two").glob("*.log"))
    assert len(logs) == 2 and all("unit" in name for name in logs), logs


@pytest.mark.server
@pytest.mark.faults
def test_a_unit_whose_server_is_killed_fails_its_own_rows_only(tmp_path: Path) -> None:
    workers: dict[str, int] = {}
    killed: list[int] = []

    def kill_first_server(event: object) -> None:
        if isinstance(event, events.UnitStarted):
            workers[event.models[0]] = event.worker_pid
        elif isinstance(event, events.PointFinished) and event.row["model"] == "mlp_numpy" and not killed:
            for pid in servers_under([workers["mlp_numpy"]]):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    result = aw.profile(models=MODELS, model_repository=aw.EXAMPLE_REPOSITORY, concurrency=[1, 2, 4],
                        parallel="gpus", parallel_slots=2, export_path=tmp_path / "out", on_event=kill_first_server,
                        **FAST)
    assert len(killed) == 1
    df = result.to_frame()
    mine, others = df[df["model"] == "mlp_numpy"], df[df["model"] == "mixed_inputs"]
    assert len(mine) == 3 and len(others) == 3
    assert set(others["status"]) <= MEASURED, others[["status", "reason"]]
    assert mine["status"].iloc[0] in MEASURED  # measured before the kill
    lost = mine[mine["status"] == "failed"]
    assert len(lost) >= 1 and lost["reason"].str.contains("server|unit", case=False).all(), lost["reason"].tolist()
    rows, _ = load_results(tmp_path / "out")
    assert len(rows) == 6

    # resumed, each unit keeps its model's rows measured before and measures its failed ones again
    seen: list[object] = []
    again = aw.profile(models=MODELS, model_repository=aw.EXAMPLE_REPOSITORY, concurrency=[1, 2, 4], parallel="gpus",
                       parallel_slots=2, export_path=tmp_path / "out", resume=True, on_event=seen.append, **FAST)
    redone = again.to_frame()
    assert len(redone) == 6 and set(redone["status"]) <= MEASURED, redone[["model", "status", "reason"]]
    kept = df[df["status"].isin(MEASURED)]
    assert set(zip(kept["model"], kept["concurrency"], kept["started_at"], strict=True)) <= set(
        zip(redone["model"], redone["concurrency"], redone["started_at"], strict=True))
    measured_now = [e.row["model"] for e in seen if isinstance(e, events.PointFinished)]
    assert sorted(measured_now) == ["mlp_numpy"] * len(lost)
    assert len(load_results(tmp_path / "out")[0]) == 6


@pytest.mark.server
def test_a_unit_that_fails_before_any_server_is_known_keeps_its_failed_rows(tmp_path: Path) -> None:
    """The export folder's files start when the first unit's server is known: a unit that
    fails before that (here its worker killed as it starts) has its failed rows handed on
    once another unit's server is known, or, where none ever is, at the run's end. Found on
    the GPU host, where the rows reached the folder before it had started and ended the run."""

    def kill_workers_of(models: set[str]) -> Callable[[object], None]:
        def on_event(event: object) -> None:
            if isinstance(event, events.UnitStarted) and event.models[0] in models:
                os.kill(event.worker_pid, signal.SIGKILL)
        return on_event

    grid = dict(models=MODELS, model_repository=aw.EXAMPLE_REPOSITORY, concurrency=[1, 2], parallel="gpus",
                parallel_slots=1, **FAST)
    first_fails = aw.profile(**grid, export_path=tmp_path / "first", on_event=kill_workers_of({"mlp_numpy"}))
    df = first_fails.to_frame()
    lost, measured = df[df["model"] == "mlp_numpy"], df[df["model"] == "mixed_inputs"]
    assert list(lost["status"]) == ["failed", "failed"], lost[["status", "reason"]]
    assert lost["reason"].str.contains("worker process ended").all(), lost["reason"].tolist()
    assert len(measured) == 2 and set(measured["status"]) <= MEASURED, measured[["status", "reason"]]
    rows, _ = load_results(tmp_path / "first")
    assert sorted(rows["model"]) == ["mixed_inputs"] * 2 + ["mlp_numpy"] * 2

    all_fail = aw.profile(**grid, export_path=tmp_path / "none", on_event=kill_workers_of(set(MODELS)))
    assert set(all_fail.to_frame()["status"]) == {"failed"}
    rows, _ = load_results(tmp_path / "none")
    assert len(rows) == 4 and set(rows["status"]) == {"failed"}


@pytest.mark.server
@pytest.mark.gpu
def test_one_gpu_runs_one_unit_at_a_time_on_that_gpu(tmp_path: Path) -> None:
    """On a host with one GPU (the GPU host): one slot, the units one after another, each
    server given that GPU and each row sampled from it."""
    if nvml_unavailable_reason() is not None:
        pytest.skip(f"needs a GPU with NVML: {nvml_unavailable_reason()}")
    gpus = visible_gpus()
    if len(gpus) != 1:
        pytest.skip(f"this host has {len(gpus)} visible GPUs; the test is of one")
    seen: list[object] = []
    result = aw.profile(models=MODELS, model_repository=aw.EXAMPLE_REPOSITORY, concurrency=[1, 2], parallel="gpus",
                        export_path=tmp_path / "out", on_event=seen.append, **FAST)
    units = [e for e in seen if isinstance(e, events.UnitStarted | events.UnitFinished)]
    assert [type(e).__name__ for e in units] == ["UnitStarted", "UnitFinished"] * 2
    assert {e.gpu for e in units if isinstance(e, events.UnitStarted)} == {gpus[0].uuid}
    df = result.to_frame()
    assert len(df) == 4 and set(df["status"]) <= MEASURED, df[["model", "status", "reason"]].to_string()
    assert (df["gpu_memory_max_mb"] > 0).all()
    _, baseline = load_results(tmp_path / "out")
    assert len(baseline) == 2


@pytest.mark.server
def test_a_brute_plans_variants_run_side_by_side_one_unit_each(tmp_path: Path) -> None:
    """A plan's variants are units: each loaded by config override on a server of its own,
    two at once on the two slots, ranked into one answer from the one set of files."""
    seen: list[object] = []
    space = {"instances": [1, 2], "max_batch_size": [16]}
    result = aw.plan("mlp_numpy", model_repository=aw.EXAMPLE_REPOSITORY, latency_budget_ms=10_000,
                     concurrency=[1, 2], space=space, strategy="brute", parallel="gpus", parallel_slots=2,
                     export_path=tmp_path / "plan", on_event=seen.append, window_ms=200, stable_windows=2,
                     max_trials=4, baseline_s=0.3)
    started = [e for e in seen if isinstance(e, events.UnitStarted)]
    assert sorted(e.models for e in started) == [("mlp_numpy i1_b16",), ("mlp_numpy i2_b16",), ("mlp_numpy original",)]
    assert {e.slot for e in started} == {0, 1}
    finished = [e for e in seen if isinstance(e, events.UnitFinished)]
    assert all(e.error is None and e.measured >= 2 for e in finished) and len(finished) == 3
    table = result.to_frame()
    assert set(table["variant"]) == {"original", "i1_b16", "i2_b16"} and table["meets"].all()
    rows = result.sweep.to_frame()
    assert sorted(set(zip(rows["variant"], rows["concurrency"], strict=True))) == [
        (v, c) for v in ("i1_b16", "i2_b16", "original") for c in (1, 2)]  # each variant's probes, once
    assert result.best is not None and (tmp_path / "plan" / "config.pbtxt").exists()
    _, baseline = load_results(tmp_path / "plan")
    assert len(baseline) == 3  # each variant's server, its own baseline


@pytest.mark.server
def test_groups_measured_together_run_side_by_side_one_unit_each(tmp_path: Path) -> None:
    """A co-located measurement's groups (a packing plan's GPUs) are units: each group's
    models together on a server of their own, both servers at once, the co-located points
    numbered across the run, the rows in one metrics-colocated.csv."""
    spec, _ = make_settings(models=MODELS, model_repository=aw.EXAMPLE_REPOSITORY, window_ms=250,
                            baseline_s=FAST["baseline_s"], max_trials=FAST["max_trials"], parallel="gpus",
                            parallel_slots=2)
    groups = [Group((Member("mlp_numpy", 1, Load(concurrency=2)), Member("mixed_inputs", 1, Load(concurrency=1))),
                    "GPU 0"),
              Group((Member("mlp_numpy", 4, Load(concurrency=1)), Member("mixed_inputs", 1, Load(rate_per_s=20))),
                    "GPU 1")]
    watch = UnitsWatch()
    seen, up_at_once = watch.seen, watch.up_at_once

    result = measure_together(spec, groups, export=ExportSettings(export_path=tmp_path / "out"), on_event=watch)
    assert result.error is None and not result.cancelled, result.error
    df = result.to_frame()
    assert set(df["status"]) <= MEASURED, df[["group", "model", "together", "status", "reason"]]
    for group in groups:
        assert set(result.together(group.label)) == set(result.alone(group.label)) == set(MODELS)
        together = result.together(group.label)
        assert together["mlp_numpy"]["colocated_point"] == together["mixed_inputs"]["colocated_point"]
        assert together["mlp_numpy"]["neighbours"] == {"GPU 0": "mixed_inputs: batch 1, concurrency 1",
                                                       "GPU 1": "mixed_inputs: batch 1, 20 req/s"}[group.label]
    # a point is one group's: 2 alone and 1 together per group, numbered once across the run
    points = df.groupby("colocated_point")["group"].nunique()
    assert sorted(points.index) == list(range(6)) and (points == 1).all()
    started = [e for e in seen if isinstance(e, events.UnitStarted)]
    assert sorted(e.models for e in started) == [("GPU 0 (mlp_numpy, mixed_inputs)",),
                                                 ("GPU 1 (mlp_numpy, mixed_inputs)",)]
    assert {e.slot for e in started} == {0, 1} and max(up_at_once) == 2, up_at_once
    assert [(e.measured, e.failed, e.error) for e in seen if isinstance(e, events.UnitFinished)] == [(4, 0, None)] * 2
    started_points = sorted(e.index for e in seen if isinstance(e, events.ColocatedPointStarted))
    assert started_points == list(range(6))
    # the one file, as one server's run writes it; each server's baseline
    written = load_colocated(tmp_path / "out")
    assert len(written) == 8 and sorted(written["colocated_point"]) == sorted(df["colocated_point"])
    assert len(read_csv(tmp_path / "out" / SERVER_CSV, SERVER_COLUMNS)) == 2


def test_the_cli_says_each_unit_start_and_end() -> None:
    from analyzer_widgets.cli import Progress

    out = io.StringIO()
    progress = Progress(out)
    progress(events.UnitStarted(0, 2, ("mlp_numpy",), 1, "GPU-5b7c0e1a", 4242))
    progress(events.UnitFinished(0, ("mlp_numpy",), 1, 1, 3, "the server died (signal 9)\nits log: ..."))
    progress(events.UnitFinished(1, ("mixed_inputs",), 0, 4, 0))
    assert out.getvalue().splitlines() == [
        "unit 1/2 (mlp_numpy) started on slot 1 (GPU GPU-5b7c0e1a), worker pid 4242",
        "unit 1 (mlp_numpy) on slot 1 failed: the server died (signal 9); 1 points measured, 3 failed",
        "unit 2 (mixed_inputs) on slot 0 done: 4 points measured",
    ]


def test_the_cli_names_a_finished_row_by_its_own_point_not_the_point_started_last() -> None:
    from analyzer_widgets.cli import Progress

    out = io.StringIO()
    progress = Progress(out)
    progress(events.SweepStarted(SweepSpec(models=("mlp_numpy", "mixed_inputs"), model_repository=Path(".")), 2))
    progress(events.PointStarted("mlp_numpy", 1, 2, 0, 2))
    progress(events.PointStarted("mixed_inputs", 4, 1, 1, 2))  # another unit's point, started meanwhile
    row = {"model": "mlp_numpy", "variant": "i2", "batch_size": 1, "concurrency": 2, "request_rate_per_s": math.nan,
           "status": "ok", "throughput_infer_per_s": 812.4, "latency_p99_ms": 3.5, "reason": ""}
    progress(events.PointFinished(row, 0, 2))
    assert out.getvalue().splitlines()[-1].startswith("[############............] 1/2 mlp_numpy i2 batch=1 "
                                                      "concurrency 2 -> ok, 812 infer/s, p99 3.50 ms (")


@pytest.mark.server
def test_stop_ends_every_unit_and_starts_no_more(tmp_path: Path) -> None:
    held: list[aw.SweepRunner] = []
    seen: list[object] = []

    result = aw.profile(models=[*MODELS, "sequence_mean"], model_repository=aw.EXAMPLE_REPOSITORY,
                        input_shapes={"SEQUENCE": (8, 32)}, concurrency=[1, 2, 4], parallel="gpus", parallel_slots=2, export_path=tmp_path / "out", runner_hook=held.append,
                        on_event=stop_after_first_point(held, seen), **FAST)
    assert result.cancelled and result.error is None
    started = [e for e in seen if isinstance(e, events.UnitStarted)]
    assert len(started) == 2  # the third unit never started
    assert [e.error for e in seen if isinstance(e, events.UnitFinished)] == [None, None]
    assert 1 <= len(result.rows) < 6 and all(r["status"] != "failed" for r in result.rows)
