"""GPU monitoring proven on a real GPU: NVML sampling, memory attribution, cross-checks.

These run where NVML finds a GPU (the GPU host: see docs/gpu-host.md) and skip, saying
why, elsewhere. The bundled torch_mlp runs on CUDA in fp16 there (8 x 4096 x 4096
weights: 256 MiB plus the CUDA context of its stub process).
Set ANALYZER_WIDGETS_BACKEND_PYTHON to the Python the models should use where the host
Python has numpy 2 (docs/gpu-host.md).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from torch_models import two_torch_models

import analyzer_widgets as aw
from analyzer_widgets.events import PointStarted
from analyzer_widgets.machine import nvml_unavailable_reason
from analyzer_widgets.monitor.nvml import NvmlSampler
from analyzer_widgets.server import LocalServer, TritonControl

REASON = nvml_unavailable_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=f"needs an NVIDIA GPU: {REASON}")]

BACKEND_PYTHON = os.environ.get("ANALYZER_WIDGETS_BACKEND_PYTHON")


def server_settings() -> aw.ServerSettings:
    return aw.ServerSettings(backend_python=Path(BACKEND_PYTHON) if BACKEND_PYTHON else None)


def gpu_memory_mb(sampler: NvmlSampler, since: float) -> float:
    samples = sampler.between(since, math.inf)
    assert samples, "the NVML sampler took no sample"
    return samples[-1].values["gpu_memory_used_mb"]


def wait_samples(sampler: NvmlSampler, seconds: float = 0.5) -> float:
    start = time.monotonic()
    time.sleep(seconds)
    return start


def test_nvml_sampler_reaches_20_hz_and_reads_every_metric() -> None:
    with NvmlSampler(0.05) as sampler:
        start = time.monotonic()
        time.sleep(2.0)
    samples = sampler.between(start, math.inf)
    assert len(samples) >= 36, f"{len(samples)} samples in 2 s: below 18 Hz"
    assert sampler.gpus and all(g.uuid.startswith("GPU-") for g in sampler.gpus)
    last = samples[-1].values
    # an idle GPU reads 0 MiB used (NVML v2 leaves the driver's reserve out, as nvidia-smi does)
    assert last["gpu_memory_used_mb"] >= 0
    assert all(g.memory_total_mb > 1000 for g in sampler.gpus)
    assert 0 <= last["gpu_util_pct"] <= 100
    assert 0 <= last["gpu_mem_util_pct"] <= 100
    assert last["gpu_power_w"] > 0, sampler.unavailable


def test_model_memory_rises_on_load_falls_on_unload_and_is_attributed_to_its_stub() -> None:
    with LocalServer(aw.EXAMPLE_REPOSITORY, server_settings()) as server, NvmlSampler(0.05) as sampler:
        control = TritonControl(server.endpoints.grpc)
        before = gpu_memory_mb(sampler, wait_samples(sampler))
        control.load("torch_mlp")
        loaded = gpu_memory_mb(sampler, wait_samples(sampler))
        # 8 fp16 layers of 4096 x 4096 are 256 MiB; the stub's CUDA context adds more
        assert loaded - before > 256, f"GPU memory went from {before:.0f} to {loaded:.0f} MB on load"

        stubs = {
            p.pid for p in psutil.Process(server.pid).children(recursive=True)
            if any("torch_mlp" in part for part in p.cmdline())
        }
        assert stubs, "no stub process of torch_mlp under the server"
        last = sampler.between(time.monotonic() - 1, math.inf)[-1].values
        per_stub = sum(last.get(f"pid{pid}.gpu_memory_mb", 0.0) for pid in stubs)
        assert per_stub > 256, f"NVML attributes {per_stub:.0f} MB to the torch_mlp stub {stubs}"

        control.unload("torch_mlp")
        after = gpu_memory_mb(sampler, wait_samples(sampler, 1.0))
        assert abs(after - before) < 0.05 * before + 64, (
            f"GPU memory {before:.0f} MB before the load, {after:.0f} MB after the unload"
        )
        control.close()


def test_sweep_gpu_columns_agree_with_triton_metrics_and_nvidia_smi(tmp_path: Path) -> None:
    smi = shutil.which("nvidia-smi")
    readings: list[float] = []

    def on_event(event: object) -> None:
        # one nvidia-smi reading while each point runs, for the cross-check below
        if smi and type(event).__name__ == "WindowMeasured" and getattr(event, "trial", 0) == 2:
            out = subprocess.run([smi, "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=20)
            readings.append(sum(float(v) for v in out.stdout.split()))

    result = aw.profile(
        models=["torch_mlp"], model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=[1, 8], concurrency=[1, 4],
        window_ms=1000, baseline_s=2.0, backend_python=BACKEND_PYTHON, export_path=tmp_path / "out",
        on_event=on_event,
    )
    df = result.to_frame()
    assert (df["status"] != "failed").all(), df[["status", "reason"]]
    base = result.baseline.iloc[0]
    assert base["gpu_memory_max_mb"] > 0
    for _, row in df.iterrows():
        assert row["gpu_util_max_pct"] > 0, "GPU utilization must be above zero under load"
        assert row["gpu_memory_above_baseline_mb"] > 256
        assert row["model_gpu_memory_max_mb"] > 256
        # Triton's own /metrics (DCGM, 1 s refresh) sees the same memory within 5%
        assert row["triton_gpu_memory_max_mb"] == pytest.approx(row["gpu_memory_max_mb"], rel=0.05)
        # energy per inference: the board's mean power over the reported span, per inference
        assert row["gpu_power_mean_w"] > 0
        assert row["energy_per_inference_j"] == pytest.approx(
            row["gpu_power_mean_w"] * row["measured_s"] / row["client_inference_count"])
        print(f"b={row['batch_size']} c={row['concurrency']}: {row['gpu_power_mean_w']:.0f} W mean, "
              f"{row['energy_per_inference_j'] * 1e3:.2f} mJ per inference")
    if smi:
        assert readings, "no nvidia-smi reading was taken"
        for reading, peak in zip(readings, df["gpu_memory_max_mb"], strict=True):
            assert reading == pytest.approx(peak, rel=0.05), f"nvidia-smi {reading} MB vs NVML max {peak} MB"
    samples = result.samples
    assert {"time_s", "source", "model", "batch_size", "concurrency"} <= set(samples.columns)
    assert (samples["source"] == "nvml").sum() > 20 * 4 * 3 * 0.5  # 20 Hz over at least 4 points
    assert (tmp_path / "out" / "metrics-samples.csv").is_file()


@pytest.mark.faults
def test_nvml_failing_mid_sweep_gives_nan_columns_with_the_reason_and_the_sweep_goes_on() -> None:
    """RELIABILITY row 17, as near to a GPU lost mid-run as the shared GPU host allows (a
    reset or unbind is not ours to do there): NVML itself is shut down under the running
    sampler at the start of the second point, so every later query fails for real in the
    library (NVML_ERROR_UNINITIALIZED), as queries do once a GPU is lost."""
    import pynvml

    shut_down: list[str] = []

    def on_event(event: object) -> None:
        if isinstance(event, PointStarted) and event.index == 1:
            # NVML counts its inits: shut down until none is left, the sampler's included
            while True:
                try:
                    pynvml.nvmlShutdown()
                except pynvml.NVMLError as e:
                    shut_down.append(str(e))
                    break

    result = aw.profile(
        models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=[1], concurrency=[1, 2, 4],
        window_ms=500, baseline_s=1.0, backend_python=BACKEND_PYTHON, on_event=on_event,
    )
    df = result.to_frame()
    assert shut_down, "NVML was not shut down"
    assert (df["status"] != "failed").all(), df[["status", "reason"]]  # unstable is noise, not a fault
    assert df["throughput_infer_per_s"].gt(0).all()
    assert len(df) == 3
    first, *later = df.to_dict("records")
    assert math.isfinite(first["gpu_memory_max_mb"]) and math.isfinite(first["gpu_util_max_pct"])
    for row in later:  # measured wholly after NVML went away: NaN, never 0
        assert math.isnan(row["gpu_memory_max_mb"]) and math.isnan(row["gpu_util_max_pct"]), row
    reasons = " ".join(result.unavailable.values())
    assert "Uninitialized" in reasons or "uninitialized" in reasons.lower(), result.unavailable


def _smi(query: str, what: str = "--query-gpu") -> list[list[str]]:
    smi = shutil.which("nvidia-smi")
    assert smi, "nvidia-smi is not on PATH"
    out = subprocess.run([smi, f"{what}={query}", "--format=csv,noheader,nounits"], capture_output=True, text=True,
                         timeout=20, check=True)
    return [[v.strip() for v in line.split(",")] for line in out.stdout.splitlines() if line.strip()]


def _is_stub(pid: int) -> bool:
    """Whether ``pid`` is a Python-backend stub of torch_mlp."""
    try:
        return any("torch_mlp" in part for part in psutil.Process(pid).cmdline())
    except psutil.Error:
        return False


def test_a_plan_of_gpu_instances_loads_each_count_and_its_memory_agrees_with_nvidia_smi(tmp_path: Path) -> None:
    """Issue 18 on the GPU: KIND_GPU variants through the config override (one CUDA stub
    process per instance, as nvidia-smi lists them), the memory each variant is judged by
    against nvidia-smi's, and the sizing's memory left against the GPU's total."""
    variant = [""]
    seen: dict[str, dict[str, float]] = {}  # variant -> nvidia-smi's view while one of its points ran

    def on_event(event: object) -> None:
        if isinstance(event, aw.events.ModelLoading):
            variant[0] = event.model
        elif type(event).__name__ == "WindowMeasured" and getattr(event, "trial", 0) == 2:
            # the server holds a CUDA context of its own: count the model's stubs only
            stubs = [pid for pid, _ in _smi("pid,used_memory", "--query-compute-apps") if _is_stub(int(pid))]
            used = sum(float(v[0]) for v in _smi("memory.used"))
            mine = seen.setdefault(variant[0], {"processes": 0, "used_mb": 0.0})
            mine["processes"] = max(mine["processes"], len(stubs))
            mine["used_mb"] = max(mine["used_mb"], used)

    result = aw.plan("torch_mlp", model_repository=aw.EXAMPLE_REPOSITORY, latency_budget_ms=10_000,
                     space={"instances": [1, 2], "kind": "KIND_GPU"}, strategy="brute", batch_sizes=[8],
                     concurrency=[1, 4], target_rate=10_000, window_ms=500, stable_windows=2, max_trials=6,
                     baseline_s=1.0, backend_python=BACKEND_PYTHON, export_path=tmp_path / "plan", on_event=on_event)
    table = result.to_frame().set_index("variant")
    assert set(table.index) >= {"i1gpu", "i2gpu"}, table
    # each KIND_GPU instance is a stub process of its own on the GPU
    assert seen["torch_mlp (variant i1gpu)"]["processes"] == 1, seen
    assert seen["torch_mlp (variant i2gpu)"]["processes"] == 2, seen
    one, two = table.loc["i1gpu", "memory_mb"], table.loc["i2gpu", "memory_mb"]
    print(f"GPU memory above the baseline: 1 instance {one:.0f} MB, 2 instances {two:.0f} MB; nvidia-smi: {seen}")
    assert one > 256 and two > 1.6 * one, (one, two)  # weights and a CUDA context per instance
    rows = result.sweep.to_frame()
    for name in ("i1gpu", "i2gpu"):  # nvidia-smi's highest reading within 5% of NVML's highest of that variant
        peak = rows[rows["variant"] == name]["gpu_memory_max_mb"].max()
        assert seen[f"torch_mlp (variant {name})"]["used_mb"] == pytest.approx(peak, rel=0.05)
    sized = result.sizing
    assert sized is not None and result.best is not None and result.best.answer is not None
    total = sum(float(v[0]) for v in _smi("memory.total"))
    assert sized.memory_total_mb == pytest.approx(total, rel=0.01)
    assert sized.memory_left_mb == pytest.approx(total - float(result.best.answer["gpu_memory_max_mb"]), rel=0.01)
    assert "free for other models" in sized.text()
    config = (tmp_path / "plan" / "config.pbtxt").read_text()
    assert "KIND_GPU" in config


def test_two_gpu_models_are_packed_onto_one_gpu_and_the_plan_is_validated_by_measuring_them_together(
        tmp_path: Path) -> None:
    """Issue 19's plan on a real GPU: torch_mlp and its 16-layer copy measured alone (a
    budget search each), packed with the GPU's memory from NVML, and the shared GPU measured
    with both at their target rates at once."""
    repo = two_torch_models(tmp_path / "repo")
    targets = {"torch_mlp": 6000.0, "torch_deep": 3000.0}  # infer/s, well under one H200's share of each
    result = aw.pack(["torch_mlp", "torch_deep"], target_rates=targets, model_repository=repo,
                     latency_budget_ms=10, batch_sizes=[8], concurrency=[1, 16], window_ms=300, stable_windows=3,
                     max_trials=8, baseline_s=1.0, backend_python=BACKEND_PYTHON, export_path=tmp_path / "pack")
    print(result.sentence)
    assert "NVML's total less what the empty server used" in result.notes[0]
    for check in result.checks:
        for figure in check.figures:
            print(f"GPU {check.gpu}: {figure.model} {figure.throughput:.0f} of {figure.rate:.0f} infer/s together, "
                  f"p99 {figure.latency_ms:.2f} ms")
    needs = {n.model: n for n in result.plan.needs}
    for model, need in needs.items():
        print(f"{model}: {need.memory_mb:.0f} MB above the baseline, {need.capacity:.0f} infer/s alone ({need.source})")
    # the deeper model holds 256 MiB more weights than torch_mlp
    assert needs["torch_deep"].memory_mb > needs["torch_mlp"].memory_mb + 200
    # the GPU's memory came from NVML: the H200's total less the empty server's, far above both models
    assert result.plan.gpu_spec.memory_mb > 10 * (needs["torch_mlp"].memory_mb + needs["torch_deep"].memory_mb)
    assert result.plan.gpu_count == 1
    assert {r.model for r in result.plan.gpus[0].replicas} == set(targets)
    assert [set(c.models) for c in result.checks] == [set(targets)]
    assert result.validated, result.sentence
    together = [r for r in result.colocated if r["together"]]
    assert {r["model"] for r in together} == set(targets)
    for row in together:
        assert row["memory_source"] == "gpu" and row["model_memory_mb"] > 0
    saved = json.loads((tmp_path / "pack" / "pack.json").read_text())
    assert saved["validated"] is True and saved["plan"]["gpu_count"] == 1
