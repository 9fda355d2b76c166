"""A sweep's units as Ray tasks (``--ray``, analyzer_widgets/distributed/ray_cluster.py) on a
real local Ray cluster that the tests start (distributed/local_cluster.py): ``ray start --head``
and a second node on this machine, each with one ``aw_slot`` (a custom resource standing in for
a GPU, as CI has none), so each runs one unit at a time with its own real embedded server. The last test kills the
second node mid-sweep (its raylet and its workers, SIGKILL) and checks nothing is lost or
written twice. The refusals need no cluster."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FAST, RAY_NODES, stop_after_first_point

import analyzer_widgets as aw
from analyzer_widgets import events
from analyzer_widgets.api import measure_together
from analyzer_widgets.colocation import Group, Member
from analyzer_widgets.config import ExportSettings, Load, make_settings
from analyzer_widgets.distributed.local_cluster import SLOT_RESOURCE, LocalRayCluster
from analyzer_widgets.errors import ConfigError
from analyzer_widgets.export import load_colocated, load_results
from analyzer_widgets.schema import MODEL_COLUMNS

MEASURED = {"ok", "unstable"}
MODELS = ["mlp_numpy", "mixed_inputs"]
GRID = {"models": MODELS, "model_repository": aw.EXAMPLE_REPOSITORY, "batch_sizes": [1, 4], "concurrency": [1, 2],
        "ray_unit_resources": f"{SLOT_RESOURCE}=1", **FAST}


def _ray_missing() -> str | None:
    try:
        import ray  # noqa: F401
    except ImportError as e:
        return f"Ray is not installed ({e}): pip install 'analyzer-widgets[ray]'"
    return None


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    missing = _ray_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the distributed tests: {missing}")
        pytest.skip(missing)
    with LocalRayCluster(nodes=2) as started:
        RAY_NODES.update(node.pid for node in started.nodes)
        yield started


# -- refusals: no cluster needed -------------------------------------------------------------------
def test_refusals_name_the_field() -> None:
    with pytest.raises(ConfigError, match="ray='here': must be `auto` or a Ray cluster's address"):
        aw.make_spec(models="a", model_repository=".", ray="here")
    with pytest.raises(ConfigError, match="ray='auto': and --parallel gpus were both given"):
        aw.make_spec(models="a", model_repository=".", ray="auto", parallel="gpus")
    with pytest.raises(ConfigError, match="ray='auto': starts a local server per unit"):
        aw.make_spec(models="a", launch_mode="remote", url="localhost:8001", ray="auto")
    with pytest.raises(ConfigError, match="ray_unit_resources='aw_slot=1': only applies with --ray"):
        aw.make_spec(models="a", model_repository=".", ray_unit_resources="aw_slot=1")
    with pytest.raises(ConfigError, match="ray_unit_resources='GPU=0': GPU: the amount must be a positive number"):
        aw.make_spec(models="a", model_repository=".", ray="auto", ray_unit_resources="GPU=0")
    with pytest.raises(ConfigError, match="ray_unit_resources='GPU': 'GPU' is not NAME=AMOUNT"):
        aw.make_spec(models="a", model_repository=".", ray="auto", ray_unit_resources="GPU")
    with pytest.raises(ConfigError, match=r"strategy='quick': .* \(--ray auto\): use --search brute"):
        aw.plan("mlp_numpy", model_repository=aw.EXAMPLE_REPOSITORY, latency_budget_ms=5, ray="auto")


def test_the_cli_says_where_each_ray_unit_runs() -> None:
    import io

    from analyzer_widgets.cli import Progress

    out = io.StringIO()
    progress = Progress(out)
    progress(events.RayJoined(3, "GPU=1", "http://10.0.0.1:8265"))
    progress(events.UnitStarted(1, 2, ("mixed_inputs",), None, "0", 4242, "10.0.0.7 (5b7c0e1a)", 2))
    progress(events.UnitFinished(1, ("mixed_inputs",), None, 4, 0, node="10.0.0.7 (5b7c0e1a)"))
    assert out.getvalue().splitlines() == [
        "Ray cluster of 3 nodes, each unit asking for GPU=1; Ray's dashboard: http://10.0.0.1:8265",
        "unit 2/2 (mixed_inputs) started (attempt 2) on node 10.0.0.7 (5b7c0e1a) (GPU 0), worker pid 4242",
        "unit 2 (mixed_inputs) on node 10.0.0.7 (5b7c0e1a) done: 4 points measured",
    ]


# -- on the real cluster ---------------------------------------------------------------------------
@pytest.mark.distributed
@pytest.mark.server
def test_resources_no_node_has_are_refused_before_anything_is_written(cluster: LocalRayCluster, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"ray_unit_resources='GPU=1': no node of the Ray cluster has that much "
                                          r"\(its 2 nodes: .*aw_slot=1"):
        aw.profile(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, ray=cluster.address,
                   export_path=out, **FAST)
    assert not out.exists()


@pytest.mark.distributed
@pytest.mark.server
def test_a_sweep_split_over_two_ray_nodes(cluster: LocalRayCluster, tmp_path: Path) -> None:
    seen: list[object] = []
    on_worker: list[bool] = []

    def note(event: object) -> None:
        seen.append(event)
        if isinstance(event, events.UnitStarted):  # asked now: Ray ends idle worker processes when it likes
            on_worker.append(cluster.node_of(event.worker_pid) == 1)

    result = aw.profile(**GRID, ray=cluster.address, export_path=tmp_path / "out", on_event=note)
    assert result.error is None and not result.cancelled, result.error
    df = result.to_frame()
    # the shape of a one-server sweep: its columns, a row per point, each measured once
    assert list(df.columns) == [c.name for c in MODEL_COLUMNS]
    points = sorted(zip(df["model"], df["batch_size"], df["concurrency"], strict=True))
    assert points == sorted((m, b, c) for m in MODELS for b in (1, 4) for c in (1, 2))
    assert set(df["status"]) <= MEASURED, df[["model", "status", "reason"]]
    assert (df["throughput_infer_per_s"] > 0).all()
    # one unit on each node, at the same time (each node has one slot)
    started = [e for e in seen if isinstance(e, events.UnitStarted)]
    assert sorted(e.models for e in started) == [(m,) for m in sorted(MODELS)]
    assert len({e.node for e in started}) == 2 and all(e.slot is None and e.attempt == 1 for e in started)
    assert sorted(on_worker) == [False, True]
    finished = [e for e in seen if isinstance(e, events.UnitFinished)]
    assert [(e.measured, e.failed, e.error) for e in finished] == [(4, 0, None)] * 2
    # the cluster joined, with Ray's dashboard, said at the start
    joined = [e for e in seen if isinstance(e, events.RayJoined)]
    assert joined == [events.RayJoined(2, f"{SLOT_RESOURCE}=1", cluster.dashboard_url)]
    # one sweep to whoever listens, its files written once by the driver
    assert sum(isinstance(e, events.SweepFinished) for e in seen) == 1
    assert [e.index for e in seen if isinstance(e, events.PointFinished)] == list(range(8))
    rows, baseline = load_results(tmp_path / "out")
    assert sorted(zip(rows["model"], rows["batch_size"], rows["concurrency"], strict=True)) == points
    assert len(baseline) == 2  # a baseline per unit's server
    assert len(list((tmp_path / "out").glob("tritonserver-unit*.log"))) == 2  # the nodes share this machine


@pytest.mark.distributed
@pytest.mark.server
def test_a_brute_plans_variants_as_ray_tasks(cluster: LocalRayCluster, tmp_path: Path) -> None:
    seen: list[object] = []
    result = aw.plan("mlp_numpy", model_repository=aw.EXAMPLE_REPOSITORY, latency_budget_ms=10_000,
                     concurrency=[1, 2], space={"instances": [1, 2]}, strategy="brute", ray=cluster.address,
                     ray_unit_resources=f"{SLOT_RESOURCE}=1", export_path=tmp_path / "plan", on_event=seen.append,
                     window_ms=200, stable_windows=2, max_trials=4, baseline_s=0.3)
    started = [e for e in seen if isinstance(e, events.UnitStarted)]
    # the model's own config (one instance) is i1: two variants, one on each node at once
    assert sorted(e.models[0] for e in started) == ["mlp_numpy i1", "mlp_numpy i2"]
    assert len({e.node for e in started}) == 2
    table = result.to_frame()
    assert set(table["variant"]) == {"i1", "i2"} and table["meets"].all()
    assert result.best is not None and (tmp_path / "plan" / "plan.json").exists()


@pytest.mark.distributed
@pytest.mark.server
def test_groups_measured_together_as_ray_tasks(cluster: LocalRayCluster, tmp_path: Path) -> None:
    """A pack's validation over a Ray cluster: each GPU's models together on a node of its own."""
    spec, _ = make_settings(models=MODELS, model_repository=aw.EXAMPLE_REPOSITORY, window_ms=250,
                            baseline_s=FAST["baseline_s"], max_trials=FAST["max_trials"], ray=cluster.address,
                            ray_unit_resources=f"{SLOT_RESOURCE}=1")
    groups = [Group((Member("mlp_numpy", 1, Load(concurrency=2)), Member("mixed_inputs", 1, Load(rate_per_s=20))),
                    f"GPU {i}") for i in range(2)]
    seen: list[object] = []
    result = measure_together(spec, groups, alone=False, export=ExportSettings(export_path=tmp_path / "out"),
                              on_event=seen.append)
    assert result.error is None, result.error
    df = result.to_frame()
    assert sorted(zip(df["group"], df["model"], strict=True)) == sorted((g.label, m) for g in groups for m in MODELS)
    assert set(df["status"]) <= MEASURED and df["together"].all(), df[["group", "model", "status", "reason"]]
    assert sorted(set(df["colocated_point"])) == [0, 1]  # one point per group, numbered across the run
    started = [e for e in seen if isinstance(e, events.UnitStarted)]
    assert len({e.node for e in started}) == 2 and len(load_colocated(tmp_path / "out")) == 4


@pytest.mark.distributed
@pytest.mark.server
def test_stop_ends_every_ray_unit(cluster: LocalRayCluster, tmp_path: Path) -> None:
    held: list[aw.SweepRunner] = []
    seen: list[object] = []

    result = aw.profile(**{**GRID, "concurrency": [1, 2, 4, 8]}, ray=cluster.address, export_path=tmp_path / "out",
                        runner_hook=held.append, on_event=stop_after_first_point(held, seen))
    assert result.cancelled and result.error is None
    # each unit's point in flight ended, and its task with it: the rest are left for --resume
    assert [e.error for e in seen if isinstance(e, events.UnitFinished)] == [None, None]
    assert 1 <= len(result.rows) < 16 and all(r["status"] != "failed" for r in result.rows)


@pytest.mark.distributed
@pytest.mark.server
@pytest.mark.faults
def test_a_node_lost_mid_sweep_loses_no_row_and_writes_none_twice(cluster: LocalRayCluster, tmp_path: Path) -> None:
    """Kills the second node: the last test of the module (the cluster has one node after it)."""
    on_worker: dict[str, bool] = {}
    killed_after: list[dict[str, object]] = []

    def kill_node_after_its_first_row(event: object) -> None:
        seen.append(event)
        if isinstance(event, events.UnitStarted) and event.attempt == 1:
            on_worker[event.models[0]] = cluster.node_of(event.worker_pid) == 1
        elif isinstance(event, events.PointFinished) and on_worker.get(event.row["model"]) and not killed_after:
            killed_after.append(dict(event.row))
            cluster.kill_node(1)

    seen: list[object] = []
    result = aw.profile(**GRID, ray=cluster.address, export_path=tmp_path / "out",
                        on_event=kill_node_after_its_first_row)
    assert killed_after, "no unit ran on the second node"
    lost_model = str(killed_after[0]["model"])
    assert result.error is None, result.error
    df = result.to_frame()
    points = sorted(zip(df["model"], df["batch_size"], df["concurrency"], strict=True))
    assert points == sorted((m, b, c) for m in MODELS for b in (1, 4) for c in (1, 2))  # each once
    assert set(df["status"]) <= MEASURED, df[["model", "status", "reason"]]
    # the lost unit started again, on the node left, and said why
    again = [e for e in seen if isinstance(e, events.UnitStarted) and e.models == (lost_model,)]
    assert [e.attempt for e in again] == [1, 2] and again[0].node != again[1].node
    # the rows that arrived before the node was lost (the one the kill followed, and any in
    # the same batch of messages) are kept as they were, not measured again
    before = [dict(e.row) for e in seen[:seen.index(again[1])]
              if isinstance(e, events.PointFinished) and e.row["model"] == lost_model]
    assert killed_after[0]["started_at"] in [r["started_at"] for r in before]
    assert set(df["started_at"]) >= {r["started_at"] for r in before}
    notices = [e.message for e in seen if isinstance(e, events.Notice)]
    assert any(n.startswith(f"{lost_model} (node ") and "its Ray task was lost" in n and "(attempt 2 of 3)" in n
               and f"the {len(before)} rows that arrived are kept" in n for n in notices), notices
    finished = [e for e in seen if isinstance(e, events.UnitFinished)]
    assert sorted((e.models[0], e.measured, e.failed) for e in finished) == [(m, 4, 0) for m in sorted(MODELS)]
    rows, _ = load_results(tmp_path / "out")
    assert sorted(zip(rows["model"], rows["batch_size"], rows["concurrency"], strict=True)) == points
