"""Monitoring without a GPU: the sampler machinery, the reductions, host and Triton
/metrics sampling against the real server, and GPU columns that are NaN with a reason.

The GPU side is proven on a GPU in tests/test_gpu.py.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import psutil
import pytest
from conftest import FAST

import analyzer_widgets as aw
from analyzer_widgets import events
from analyzer_widgets.export import load_samples
from analyzer_widgets.machine import nvml_unavailable_reason
from analyzer_widgets.monitor import session as session_module
from analyzer_widgets.monitor.base import Sampler
from analyzer_widgets.monitor.host import ProcessTreeSampler
from analyzer_widgets.monitor.session import SAMPLE_TAGS, MonitorSession
from analyzer_widgets.monitor.triton_metrics import parse_metrics
from analyzer_widgets.schema import MODEL_COLUMNS, SERVER_COLUMNS, sampled_columns
from analyzer_widgets.server import LocalServer, TritonControl


class Counting(Sampler):
    """A sampler whose n-th sample is n: shows the loop's schedule and buffer."""

    def __init__(self, interval_s: float) -> None:
        super().__init__("counting", interval_s)
        self.n = 0

    def sample(self) -> Mapping[str, float]:
        self.n += 1
        return {"n": float(self.n)}


class Broken(Sampler):
    def setup(self) -> None:
        raise OSError("no such device")

    def sample(self) -> Mapping[str, float]:  # pragma: no cover - never reached
        return {}


def test_sampler_keeps_every_sample_in_order_in_its_named_thread() -> None:
    sampler = Counting(0.01)
    sampler.start()
    assert sampler._thread is not None and sampler._thread.name == "analyzer-widgets-counting"
    assert sampler._thread.daemon
    time.sleep(0.3)
    sampler.stop()
    values = [s.values["n"] for s in sampler.between(0, math.inf)]
    assert len(values) >= 10
    assert values == list(range(1, len(values) + 1))
    stamps = [s.t for s in sampler.between(0, math.inf)]
    assert stamps == sorted(stamps)


def test_sampler_that_cannot_start_records_why_and_does_not_raise() -> None:
    with Broken("broken", 0.01) as sampler:
        time.sleep(0.05)
    assert "no such device" in sampler.unavailable["*"]
    assert sampler.between(0, math.inf) == []


class Scripted(Sampler):
    """A sampler that gives the values it was handed, one per sample, then stops giving any."""

    def __init__(self, name: str, values: list[dict[str, float]]) -> None:
        super().__init__(name, 0.005)
        self.script = list(values)

    def sample(self) -> Mapping[str, float]:
        return self.script.pop(0) if self.script else {}


def test_the_session_reduces_each_sampled_column_as_declared_ignoring_nan() -> None:
    session = MonitorSession()
    host = Scripted("host", [{"server_cpu_util_pct": 10.0, "server_rss_mb": 5.0},
                             {"server_cpu_util_pct": 30.0, "server_rss_mb": math.nan},
                             {"server_cpu_util_pct": math.nan, "server_rss_mb": 7.0}])
    session.host = host  # type: ignore[assignment]
    with host:
        deadline = time.monotonic() + 2
        while host.script and time.monotonic() < deadline:
            time.sleep(0.01)
    reduced = session.reduce(0, math.inf, MODEL_COLUMNS)
    assert reduced["server_cpu_util_max_pct"] == 30.0 and reduced["server_cpu_util_mean_pct"] == 20.0
    assert reduced["server_rss_max_mb"] == 7.0
    assert math.isnan(reduced["gpu_memory_max_mb"])  # no sampler gave it
    assert set(reduced) == {c.name for c in sampled_columns(MODEL_COLUMNS)}
    assert set(session.reduce(0, math.inf, SERVER_COLUMNS)) == {c.name for c in sampled_columns(SERVER_COLUMNS)}


class Late(Counting):
    """A sampler whose thread starts sampling late, as one starved of the interpreter does."""

    def setup(self) -> None:
        time.sleep(0.4)


def test_a_span_waits_for_a_late_sampler_but_not_for_one_that_gave_up() -> None:
    """The baseline's span is short (0.5 s in the tests): where a sampler's first sample
    comes after it, the session waits for it, so the baseline's figures are not NaN."""
    session = MonitorSession()
    late, broken = Late(0.05), Broken("broken", 0.05)
    session.host, session.triton = late, broken  # type: ignore[assignment]
    with late, broken:
        start = time.monotonic()
        assert late.between(start, math.inf) == []  # still in its setup
        session.await_samples(start, 30.0)
        waited = time.monotonic() - start
        assert late.between(start, math.inf), "returned before the late sampler's first sample"
        assert waited < 30.0, "waited its whole bound for the sampler that gave up"


def test_parse_metrics_scales_and_combines_gpus() -> None:
    text = (
        "# TYPE nv_gpu_utilization gauge\n"
        'nv_gpu_utilization{gpu_uuid="GPU-a"} 0.25\n'
        'nv_gpu_utilization{gpu_uuid="GPU-b"} 0.75\n'
        "# TYPE nv_gpu_memory_used_bytes gauge\n"
        'nv_gpu_memory_used_bytes{gpu_uuid="GPU-a"} 1048576\n'
        'nv_gpu_memory_used_bytes{gpu_uuid="GPU-b"} 2097152\n'
        "# TYPE nv_inference_count counter\n"
        'nv_inference_count{model="m",version="1"} 7\n'
    )
    assert parse_metrics(text) == {"triton_gpu_util_pct": 75.0, "triton_gpu_memory_used_mb": 3.0}


@pytest.mark.skipif(nvml_unavailable_reason() is None, reason="this machine has a GPU: tests/test_gpu.py covers it")
def test_without_nvml_the_session_says_why_and_gives_nan() -> None:
    session = MonitorSession()
    session.start_gpu()
    try:
        assert session.nvml is None
        assert "NVML" in session.reasons["gpu"] or "nvidia-ml-py" in session.reasons["gpu"]
        reduced = session.reduce(0, math.inf, MODEL_COLUMNS)
        assert math.isnan(reduced["gpu_memory_max_mb"]) and math.isnan(reduced["gpu_util_max_pct"])
    finally:
        session.stop()


@pytest.mark.server
def test_host_sampler_names_the_stub_of_each_model(shared_server: LocalServer) -> None:
    control = TritonControl(shared_server.endpoints.grpc)
    assert shared_server.pid is not None
    sampler = ProcessTreeSampler(shared_server.pid, 0.05)
    sampler.start()
    try:
        control.load("mlp_numpy")
        time.sleep(0.3)
        stubs = [p.pid for p in psutil.Process(shared_server.pid).children(recursive=True)]
        assert stubs, "the model's stub process did not start"
        assert {sampler.labels[pid] for pid in stubs} == {"mlp_numpy"}
        assert sampler.labels[shared_server.pid] == "server"
        last = sampler.between(0, math.inf)[-1].values
        assert last["server_rss_mb"] > 10  # the server and the stub together
    finally:
        sampler.stop()
        control.unload("mlp_numpy")
        control.close()


def test_a_stub_seen_between_its_fork_and_its_exec_is_named_once_it_runs(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = tmp_path / "repo" / "mymodel" / "1" / "model.py"
    script.parent.mkdir(parents=True)
    script.write_text("import time\ntime.sleep(10)\n")
    stub = tmp_path / "triton_python_backend_stub"
    stub.symlink_to(sys.executable)  # a process whose command line reads like a model's stub
    forker = (f"import os, time\npid = os.fork()\nif pid == 0:\n    time.sleep(0.6)\n"
              f"    os.execv({str(stub)!r}, [{str(stub)!r}, {str(script)!r}])\nos.waitpid(pid, 0)\n")
    parent = subprocess.Popen([sys.executable, "-c", forker])
    sampler = ProcessTreeSampler(parent.pid, 0.02)
    sampler.start()
    try:
        time.sleep(0.3)  # the child exists, not exec'd yet: it reads as the server
        children = psutil.Process(parent.pid).children()
        assert children and sampler.labels.get(children[0].pid) == "server"
        time.sleep(1.0)
        assert sampler.labels[children[0].pid] == "mymodel"
    finally:
        sampler.stop()
        for child in psutil.Process(parent.pid).children():
            child.kill()
        parent.kill()
        parent.wait()


@pytest.mark.server
def test_sweep_without_gpu_has_real_cpu_columns_nan_gpu_columns_and_tagged_samples(tmp_path: Path) -> None:
    notices: list[str] = []
    result = aw.profile(
        models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=[8], concurrency=[2],
        export_path=tmp_path / "out", on_event=lambda e: notices.append(e.message) if isinstance(e, events.Notice) else None,
        **FAST,
    )
    row = result.to_frame().iloc[0]
    assert row["status"] in ("ok", "unstable")
    assert row["server_cpu_util_max_pct"] > 0 and row["server_cpu_util_mean_pct"] > 0
    assert row["server_rss_max_mb"] > 10
    base = result.baseline.iloc[0]
    assert base["server_rss_max_mb"] > 10
    if nvml_unavailable_reason() is not None:
        for column in ("gpu_memory_max_mb", "gpu_util_max_pct", "gpu_mem_util_max_pct", "model_gpu_memory_max_mb"):
            assert math.isnan(row[column]), column
        assert math.isnan(base["gpu_memory_max_mb"])
        assert "gpu" in result.unavailable
        assert sum("gpu columns are NaN" in n for n in notices) == 1, notices

    samples = result.samples
    assert set(samples["source"]) >= {"host", "triton-metrics"}
    during = samples[(samples["phase"] == "point") & (samples["source"] == "host")]
    assert len(during) >= 5
    assert set(during["model"]) == {"mlp_numpy"}
    assert set(during["batch_size"]) == {8} and set(during["concurrency"]) == {2}
    assert (samples[samples["phase"] == "baseline"]["model"] == "").all()
    # the server's own /metrics under load: CPU busy
    metrics = samples[(samples["source"] == "triton-metrics") & (samples["phase"] == "point")]
    assert metrics["triton_cpu_util_pct"].max() > 0

    on_disk = load_samples(tmp_path / "out")
    assert on_disk.shape == samples.shape
    assert list(on_disk["source"]) == list(samples["source"])
    assert on_disk["server_rss_mb"].equals(samples["server_rss_mb"]) or (
        (on_disk["server_rss_mb"] - samples["server_rss_mb"]).abs().max() < 1e-9
    )


# -- samples handed on as the sweep goes, buffers bounded (RELIABILITY row 23) ----------------------
class Numbered(Sampler):
    """Its n-th sample gives ``key`` = n; from its ``grows_after``-th on a second key too."""

    def __init__(self, name: str, key: str, interval_s: float = 0.002, grows_after: int | None = None) -> None:
        super().__init__(name, interval_s)
        self.key = key
        self.grows_after = grows_after
        self.n = 0

    def sample(self) -> Mapping[str, float]:
        self.n += 1
        values = {self.key: float(self.n)}
        if self.grows_after is not None and self.n > self.grows_after:
            values[f"{self.key}_late"] = -float(self.n)
        return values


@pytest.fixture
def quick_hand_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hand-offs as often as asked, and short spans, so a second shows what an hour would."""
    monkeypatch.setattr(session_module, "HAND_OFF_EVERY_S", 0.0)
    monkeypatch.setattr(session_module, "SETTLE_S", 0.01)
    monkeypatch.setattr(session_module, "LIVE_SPAN_S", 0.2)


def test_samples_handed_on_in_chunks_are_each_sample_once_in_time_order_with_their_phase(quick_hand_off: None) -> None:
    session = MonitorSession()
    first = Numbered("host", "a", grows_after=100)
    second = Numbered("triton-metrics", "b", interval_s=0.003)
    session.host, session.triton = first, second  # type: ignore[assignment]
    chunks = []
    session.begin("startup")
    with first, second:
        for phase, batch in (("baseline", 0), ("point", 4), ("unload", 0)):
            session.begin(phase, "" if phase == "baseline" else "m", batch, batch)
            for _ in range(8):
                time.sleep(0.03)
                chunks.append(session.take_samples())
    chunks.append(session.take_samples(final=True))
    taken = [c for c in chunks if c is not None]
    assert len(taken) > 10
    table = pd.concat(taken)[list(taken[-1].columns)]
    # every sample once, in the order taken, and the rows in time order across the chunks
    for sampler in (first, second):
        assert list(table[table["source"] == sampler.name][sampler.key]) == [float(n) for n in range(1, sampler.taken + 1)]
    assert table["time_s"].is_monotonic_increasing
    # each sample tagged with the phase begun last before it
    order = ["startup", "baseline", "point", "unload"]
    ranks = [order.index(p) for p in table["phase"]]
    assert ranks == sorted(ranks) and set(ranks) >= {1, 2, 3}
    assert set(table[table["phase"] == "point"]["batch_size"]) == {4}
    # the columns: the tags, then each sampler's keys as they came (a key that came later too)
    assert "a_late" not in taken[0].columns
    assert list(taken[-1].columns) == [*SAMPLE_TAGS, "a", "a_late", "b"]
    assert all(table[c].dtype == "float64" for c in ("a", "a_late", "b"))


def test_the_samplers_keep_the_current_phase_and_a_recent_span_and_drop_what_was_handed_on(quick_hand_off: None) -> None:
    session = MonitorSession()
    host = Numbered("host", "server_cpu_util_pct")
    session.host = host  # type: ignore[assignment]
    point_started = time.monotonic()
    session.begin("point", "m", 1, 1)
    with host:
        for _ in range(20):  # a point five times longer than the span kept for the panel
            time.sleep(0.05)
            session.take_samples()
        # nothing of the point was dropped: its reductions see every sample of it
        assert host.buffered == host.taken > 100
        n = host.taken  # more may come while it reduces: they only raise the figures
        reduced = session.reduce(point_started, math.inf, MODEL_COLUMNS)
        assert reduced["server_cpu_util_max_pct"] >= n and reduced["server_cpu_util_mean_pct"] >= (n + 1) / 2
        session.begin("unload", "m")
        for _ in range(10):
            time.sleep(0.05)
            session.take_samples()
        oldest = host.between(-math.inf, math.inf)[0].t
        assert time.monotonic() - oldest < 0.2 + 0.01 + 0.15  # the panel's span, the settling time, a tick's slack
        assert host.buffered < host.taken / 2
    with pytest.raises(aw.AnalyzerError, match="no longer all held"):
        session.reduce(point_started, math.inf, MODEL_COLUMNS)


@pytest.mark.server
def test_a_sweep_of_many_samples_holds_few_in_memory_and_all_in_the_file(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # a panel span of 1 s, so a sweep of seconds shows what hours would at the real 30 s
    monkeypatch.setattr(session_module, "LIVE_SPAN_S", 1.0)
    monkeypatch.setattr(session_module, "HAND_OFF_EVERY_S", 0.5)
    bound_s = 1.0 + session_module.SETTLE_S + 0.5 + 0.5  # the span, settling, a hand-off's wait, slack
    holder: dict[str, aw.SweepRunner] = {}
    point_started: list[float] = []
    too_old: list[str] = []

    def check_buffers(event: object) -> None:
        if isinstance(event, events.PointStarted):
            point_started.append(time.monotonic())
        elif isinstance(event, events.PointFinished):
            now = time.monotonic()
            for sampler in holder["runner"].monitors.samplers:
                oldest = sampler.between(-math.inf, math.inf)[0].t
                # the point just measured is held whole (its reductions are done by now)
                if oldest < min(point_started[-1], now - bound_s):
                    too_old.append(f"{sampler.name}: {now - oldest:.1f} s held after point {event.index + 1}")

    result = aw.profile(
        models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=[1, 2, 4], concurrency=[1, 2],
        process_interval_s=0.005, triton_metrics_interval_s=0.05, export_path=tmp_path / "out",
        on_event=check_buffers, runner_hook=lambda r: holder.__setitem__("runner", r), **FAST,
    )
    assert not too_old, too_old
    rows = result.to_frame()
    assert set(rows["status"]) <= {"ok", "unstable"} and (rows["server_cpu_util_max_pct"] > 0).all()
    samplers = holder["runner"].monitors.samplers
    held = sum(s.buffered for s in samplers)
    taken = {s.name: s.taken for s in samplers}
    # many samples taken (a loaded CI machine took 983 host samples where an idle one takes
    # over 1,000), few of them held
    assert taken["host"] > 500 and held < sum(taken.values()) / 3, (held, taken)
    # the file holds every sample taken, each point's tagged with it
    on_disk = aw.load_samples(tmp_path / "out")
    assert on_disk["source"].value_counts().to_dict() == taken
    assert on_disk["time_s"].is_monotonic_increasing
    during = on_disk[on_disk["phase"] == "point"]
    assert len(during.groupby(["batch_size", "concurrency"])) == 6
    assert result.samples.shape == on_disk.shape
