"""Measurement behaviour on the real server: the stability rule's outcome, user data,
the torch model on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import FAST

import analyzer_widgets as aw

pytestmark = pytest.mark.server


def test_a_point_that_never_agrees_is_kept_as_unstable_with_its_figures() -> None:
    # a threshold no real measurement meets: 3 windows, then the row is kept, not dropped
    settings = {**FAST, "stability_pct": 0.0001, "max_trials": 3}
    result = aw.profile(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=[1],
                        concurrency=[1], **settings)
    row = result.to_frame().iloc[0]
    assert row["status"] == "unstable"
    assert "not stable within" in row["reason"]
    assert row["window_count"] == 3
    assert row["throughput_infer_per_s"] > 0 and row["latency_p99_ms"] > 0
    # where a point's time goes beyond its windows: its warm-up, and what ended it
    assert 0 < row["warmup_s"] < 30 and row["ended_by"] == "max_trials"


def test_user_data_from_an_npz_file_is_sent(tmp_path: Path) -> None:
    data = tmp_path / "inputs.npz"
    np.savez(data, INPUT0=np.linspace(-1, 1, 256, dtype=np.float32))
    result = aw.profile(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=[4],
                        concurrency=[1], input_data=str(data), **FAST)
    row = result.to_frame().iloc[0]
    assert row["status"] in ("ok", "unstable"), row["reason"]
    assert row["client_inference_count"] == row["request_count"] * 4 > 0


def test_torch_model_runs_on_the_cpu() -> None:
    import torch  # noqa: F401 - installed by `make test`; fail loudly where it is missing

    result = aw.profile(models=["torch_mlp"], model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=[2],
                        concurrency=[1], **FAST)
    row = result.to_frame().iloc[0]
    assert row["status"] in ("ok", "unstable"), row["reason"]
    assert row["throughput_infer_per_s"] > 0
    assert row["server_compute_infer_ms"] > 0
