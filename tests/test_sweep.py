"""Whole sweeps through ``analyzer_widgets.profile`` on the real embedded Triton server,
and the bad input that must be refused before anything is launched (RELIABILITY.md
rows 4, 13 and 14)."""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from conftest import BROKEN_MESSAGE, FAST, add_broken_model, assert_counts_agree, own_children, server_processes

import analyzer_widgets as aw
from analyzer_widgets import events

MEASURED = {"ok", "unstable"}


def assert_rows_counts_agree(df: pd.DataFrame) -> None:
    """The client's and the server's counts over the same windows agree on every measured row."""
    for row in df[df["status"].isin(MEASURED)].to_dict("records"):
        assert_counts_agree(row)


# -- the core acceptance test ------------------------------------------------------------
@pytest.mark.server
def test_profile_two_models(tmp_path: Path) -> None:
    out = tmp_path / "out"
    seen: list[object] = []
    result = aw.profile(
        models=["mlp_numpy", "mixed_inputs"], model_repository=aw.EXAMPLE_REPOSITORY,
        batch_sizes=[1, 8], concurrency=[1, 2], export_path=out, on_event=seen.append, **FAST,
    )
    assert result.error is None and not result.cancelled
    df = result.to_frame()
    assert len(df) == 8
    assert list(zip(df["model"], df["batch_size"], df["concurrency"], strict=True)) == [
        (m, b, c) for m in ("mlp_numpy", "mixed_inputs") for b in (1, 8) for c in (1, 2)
    ]
    # every point was measured; noise may leave a point unstable, never failed
    assert set(df["status"]) <= MEASURED, df[["model", "batch_size", "concurrency", "status", "reason"]]
    ok = df[df["status"] == "ok"]
    assert len(ok) >= 1
    assert (ok["throughput_infer_per_s"] > 0).all()
    assert (df["error_count"] == 0).all() and (df["request_count"] > 0).all()
    assert (df["model_version"] == "1").all()
    assert (df["window_count"] >= 3).all() and (df["window_count"] <= FAST["max_trials"]).all()
    for column in ("latency_avg_ms", "latency_p50_ms", "latency_p99_ms", "server_compute_infer_ms", "measured_s"):
        assert (df[column] > 0).all(), column
    assert (df["latency_p50_ms"] <= df["latency_p99_ms"]).all()
    # throughput is the client's count over the reported span
    expected = df["client_inference_count"] / df["measured_s"]
    assert ((df["throughput_infer_per_s"] - expected).abs() <= 1e-6 * expected).all()
    assert_rows_counts_agree(ok)
    assert_rows_counts_agree(df)
    # the server's executions: a dynamic batch (mlp_numpy) is one, so there are at most as
    # many as requests; without a batcher (mixed_inputs) each request is its own execution.
    # Either way give or take the requests in flight at either end of the span: a read of
    # the statistics can count an execution whose request it does not count yet (CI saw
    # 3,878 executions for 3,877 requests)
    assert ((df["server_execution_count"] > 0)
            & (df["server_execution_count"] <= df["server_request_count"] + df["concurrency"])).all()
    unbatched = df[df["model"] == "mixed_inputs"]
    assert ((unbatched["server_execution_count"] - unbatched["server_request_count"]).abs()
            <= unbatched["concurrency"]).all(), unbatched[["server_execution_count", "server_request_count"]]

    # the baseline: the empty server, with its version
    baseline = result.baseline
    assert len(baseline) == 1
    assert baseline.loc[0, "launch_mode"] == "local"
    assert result.server_version and baseline.loc[0, "server_version"] == result.server_version
    assert baseline.loc[0, "duration_s"] >= FAST["baseline_s"]
    assert baseline.loc[0, "server_rss_max_mb"] > 0  # the local server's process tree was sampled

    # the files hold exactly what the result holds
    models_df, server_df = aw.load_results(out)
    pd.testing.assert_frame_equal(models_df, df)
    pd.testing.assert_frame_equal(server_df, result.baseline)

    # events: one PointFinished per row, in order, then SweepFinished
    finished = [e for e in seen if isinstance(e, events.PointFinished)]
    assert [e.index for e in finished] == list(range(8)) and all(e.total == 8 for e in finished)
    assert isinstance(seen[-1], events.SweepFinished) and not seen[-1].cancelled


@pytest.mark.server
def test_batch_size_above_max_batch_size_is_skipped(tmp_path: Path) -> None:
    # mixed_inputs declares max_batch_size 32
    result = aw.profile(models=["mixed_inputs"], model_repository=aw.EXAMPLE_REPOSITORY,
                        batch_sizes=[1, 64], concurrency=[1], **FAST)
    df = result.to_frame().set_index("batch_size")
    assert list(df.index) == [1, 64]
    skipped = df.loc[64]
    assert skipped["status"] == "skipped"
    assert "max_batch_size" in skipped["reason"] and "32" in skipped["reason"]
    assert math.isnan(skipped["throughput_infer_per_s"]) and skipped["request_count"] == 0
    measured = df.loc[1]
    assert measured["status"] in MEASURED, measured["reason"]
    assert measured["throughput_infer_per_s"] > 0
    assert result.ok  # a skipped point is not a failure


@pytest.mark.server
def test_model_failing_to_load_is_recorded_and_next_model_runs(repo: Path) -> None:
    broken = add_broken_model(repo)
    result = aw.profile(models=[broken, "mlp_numpy"], model_repository=repo,
                        batch_sizes=[1, 2], concurrency=[1], **FAST)
    df = result.to_frame()
    assert list(df["model"]) == [broken, broken, "mlp_numpy", "mlp_numpy"]
    failed = df[df["model"] == broken]
    assert (failed["status"] == "failed").all()
    for reason in failed["reason"]:
        assert BROKEN_MESSAGE in reason, reason  # the server's own message reached the row
        assert broken in reason
    after = df[df["model"] == "mlp_numpy"]
    assert set(after["status"]) <= MEASURED, after[["status", "reason"]]
    assert (after["throughput_infer_per_s"] > 0).all()
    assert not result.ok and result.error is None


@pytest.mark.server
def test_http_protocol(tmp_path: Path) -> None:
    result = aw.profile(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, protocol="http",
                        batch_sizes=[4], concurrency=[2], **FAST)
    df = result.to_frame()
    assert len(df) == 1
    assert df.loc[0, "status"] in MEASURED, df.loc[0, "reason"]
    assert df.loc[0, "throughput_infer_per_s"] > 0 and df.loc[0, "error_count"] == 0
    assert df.loc[0, "client_inference_count"] % 4 == 0
    assert_rows_counts_agree(df)


@pytest.mark.server
def test_variable_input_shape(tmp_path: Path) -> None:
    result = aw.profile(models=["sequence_mean"], model_repository=aw.EXAMPLE_REPOSITORY,
                        input_shapes={"SEQUENCE": (64, 32)}, batch_sizes=[2], concurrency=[1], **FAST)
    row = result.to_frame().iloc[0]
    assert row["status"] in MEASURED, row["reason"]
    assert row["throughput_infer_per_s"] > 0 and row["error_count"] == 0


@pytest.mark.server
@pytest.mark.faults
def test_server_killed_mid_sweep(tmp_path: Path) -> None:
    """RELIABILITY row 3: noticed at the next request, the point failed with the reason,
    the rows before it kept on disk, the sweep stopped."""
    out = tmp_path / "out"
    server: dict[str, int] = {}

    def kill_at_second_point(event: object) -> None:
        if isinstance(event, events.ServerReady):
            server["pid"] = next(p.pid for p in psutil.Process().children() if p.name() == "tritonserver")
        elif isinstance(event, events.PointStarted) and event.index == 1:
            os.kill(server["pid"], signal.SIGKILL)

    t0 = time.monotonic()
    with pytest.raises(aw.ServerError, match="killed by signal 9"):
        aw.profile(models=["mlp_numpy", "mixed_inputs"], model_repository=aw.EXAMPLE_REPOSITORY,
                   batch_sizes=[1], concurrency=[1, 2], export_path=out, on_event=kill_at_second_point, **FAST)
    assert time.monotonic() - t0 < 60
    models, baseline = aw.load_results(out)
    assert len(baseline) == 1
    assert list(models["concurrency"]) == [1, 2] and (models["model"] == "mlp_numpy").all()
    assert models.loc[0, "status"] in MEASURED and models.loc[0, "throughput_infer_per_s"] > 0
    assert models.loc[1, "status"] == "failed"
    assert f"tritonserver (pid {server['pid']}) killed by signal 9" in models.loc[1, "reason"]


# -- bad input: refused before anything is launched (RELIABILITY rows 13 and 14) -----------
@pytest.fixture
def nothing_launched(tmp_path: Path):
    """Yields the export path a test passes; afterwards checks that no server, stub or
    client process was started and that nothing was written there."""
    out = tmp_path / "out"
    servers, children = server_processes(), own_children()
    seen: list[object] = []
    yield out, seen
    assert seen == [], "the sweep got as far as emitting events"
    assert server_processes() - servers == set()
    assert own_children() - children == set()
    assert not out.exists(), f"{out} was written: {list(out.iterdir())}"


def test_unknown_model_lists_the_models_that_exist(nothing_launched) -> None:
    out, seen = nothing_launched
    with pytest.raises(aw.RepositoryError) as info:
        aw.profile(models=["mlp_numpy", "no_such_model"], model_repository=aw.EXAMPLE_REPOSITORY,
                   export_path=out, on_event=seen.append, **FAST)
    message = str(info.value)
    assert "'no_such_model'" in message
    for name in ("mlp_numpy", "mixed_inputs", "sequence_mean", "torch_mlp"):
        assert name in message


def test_missing_repository(nothing_launched, tmp_path: Path) -> None:
    out, seen = nothing_launched
    missing = tmp_path / "no_repository_here"
    with pytest.raises(aw.RepositoryError, match="does not exist") as info:
        aw.profile(models=["mlp_numpy"], model_repository=missing, export_path=out, on_event=seen.append, **FAST)
    assert str(missing) in str(info.value)


def test_empty_repository(nothing_launched, tmp_path: Path) -> None:
    out, seen = nothing_launched
    empty = tmp_path / "empty_repository"
    empty.mkdir()
    (empty / "not_a_model").mkdir()  # a folder without config.pbtxt or version folder
    with pytest.raises(aw.RepositoryError, match="holds no models") as info:
        aw.profile(models=["mlp_numpy"], model_repository=empty, export_path=out, on_event=seen.append, **FAST)
    assert str(empty) in str(info.value)


def test_variable_input_without_shape(nothing_launched) -> None:
    out, seen = nothing_launched
    with pytest.raises(aw.RepositoryError, match="SEQUENCE"):
        aw.profile(models=["sequence_mean"], model_repository=aw.EXAMPLE_REPOSITORY, export_path=out,
                   on_event=seen.append, **FAST)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("batch_sizes", [0]),
        ("batch_sizes", [1, -8]),
        ("batch_sizes", [1.5]),
        ("batch_sizes", []),
        ("concurrency", [0]),
        ("concurrency", [2, 0]),
        ("concurrency", []),
        ("window_ms", 0),
    ],
)
def test_bad_numbers_name_the_field(nothing_launched, field: str, value: object) -> None:
    out, seen = nothing_launched
    settings = {**FAST, field: value}
    with pytest.raises(aw.ConfigError) as info:
        aw.profile(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, export_path=out,
                   on_event=seen.append, **settings)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}=")
