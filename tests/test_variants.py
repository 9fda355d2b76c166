"""Model-config variants on the real embedded server (the ground for the planner, issue 18):
a variant is a load with a config override, measured like the model itself, its rows named
by the variant, and the repository never written (RELIABILITY row 26's premise)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import psutil
import pytest

import analyzer_widgets as aw
from analyzer_widgets import events
from analyzer_widgets.runner import Target

pytestmark = pytest.mark.server

MODEL = "mlp_numpy"


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(folder)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _repository_config() -> dict[str, Any]:
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    text = (aw.EXAMPLE_REPOSITORY / MODEL / "config.pbtxt").read_text()
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def _model_stubs() -> int:
    """The Python-backend stub processes serving MODEL now (one per instance)."""
    return sum(1 for p in psutil.process_iter(["name", "cmdline"])
               if "triton_python_backend_stub" in (p.info["name"] or "")
               and any(f"/{MODEL}/" in part for part in p.info["cmdline"] or ()))


def test_a_variant_loads_with_its_config_and_the_repository_is_never_written() -> None:
    before = _digest(aw.EXAMPLE_REPOSITORY / MODEL)
    variant = {**_repository_config(), "max_batch_size": 16,
               "instance_group": [{"kind": "KIND_CPU", "count": 2}]}
    loaded: list[tuple[int, int]] = []

    def note(event: object) -> None:
        if isinstance(event, events.ModelLoaded):
            loaded.append((event.info.max_batch_size, _model_stubs()))

    targets = (Target(MODEL), Target(MODEL, "i2_b16", variant))
    frame = aw.profile(models=[MODEL], model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=[1, 32],
                       concurrency=[2], window_ms=200, stable_windows=2, max_trials=4, baseline_s=0.3,
                       on_event=note, runner_hook=lambda runner: setattr(runner, "targets", targets)).to_frame()
    own_max = _repository_config()["max_batch_size"]
    # the model as it is, then the variant: its max batch size and its two instances took effect
    assert loaded[0][0] == own_max and loaded[1] == (16, 2), loaded
    assert list(frame["variant"]) == ["", "", "i2_b16", "i2_b16"]
    assert frame.iloc[0]["status"] in ("ok", "unstable") and frame.iloc[2]["status"] in ("ok", "unstable")
    # batch 32 is above the variant's max batch size: skipped there, measured as the model is
    assert frame.iloc[1]["status"] in ("ok", "unstable")
    assert frame.iloc[3]["status"] == "skipped" and "max_batch_size 16" in frame.iloc[3]["reason"]
    assert _digest(aw.EXAMPLE_REPOSITORY / MODEL) == before


def test_a_variant_the_server_refuses_is_a_failed_row_and_the_next_is_measured() -> None:
    bad = {**_repository_config(), "max_batch_size": 16, "dynamic_batching": {"preferred_batch_size": [64]}}
    targets = (Target(MODEL, "too_big", bad), Target(MODEL, "i1", {**_repository_config(), "max_batch_size": 8}))
    frame = aw.profile(models=[MODEL], model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=[1], concurrency=[1],
                       window_ms=200, stable_windows=2, max_trials=4, baseline_s=0.3,
                       runner_hook=lambda runner: setattr(runner, "targets", targets)).to_frame()
    assert list(frame["variant"]) == ["too_big", "i1"]
    # the server's own message (Triton 2.51 says only that the load failed; its log says why)
    assert frame.iloc[0]["status"] == "failed" and "failed to load" in frame.iloc[0]["reason"]
    assert frame.iloc[1]["status"] in ("ok", "unstable")
