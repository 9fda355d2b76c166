"""Issue 21's run on a host with two GPUs (the device tool's `nvidia-h200-x2`): a sweep of two
CUDA models with ``--parallel gpus`` against the same sweep on one GPU, and a packing plan of
three CUDA models that do not fit one GPU under a memory cap, validated on the two GPUs.

    cd benchmarks && python3 two_gpus.py --out DIR            # needs two GPUs; exits 2 with fewer
    cd benchmarks && python3 two_gpus.py --out DIR --one-gpu  # a dry run: two slots on one GPU

The models: torch_mlp (8 layers of 4096 in fp16, 256 MiB of weights), torch_deep (16 layers)
and torch_mlp_b (a copy of torch_mlp), made in a repository under DIR from the bundled one.

1. The sweep (torch_mlp and torch_deep, batch 1, 8 x concurrency 1, 4): first on one server
   with only the first GPU visible, then split into a unit per model, one server per GPU. While
   the units run, ``nvidia-smi --query-compute-apps`` says which GPU each unit's tritonserver is
   on and what every process holds per GPU. Printed per unit: the GPU it was given, the GPU
   nvidia-smi saw its server on, its rows' GPU memory against the most nvidia-smi counted on
   that GPU, and whether the units ran at once; then both walls and their ratio.
2. The pack: target rates torch_mlp 6,000, torch_deep 3,000, torch_mlp_b 6,000 infer/s within
   p99 10 ms, each GPU capped at ``--gpu-memory-mb`` (3,000 MB with 20% headroom: two of the
   models fit one GPU, three do not), the models alone and then each GPU's set measured
   together, a unit per GPU.

Exits 1 where a check fails (a unit on a GPU it was not given, a GPU column NaN, a pack on
other than two GPUs or not validated). docs/gpu-host.md says how to carry it there.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from _machine import gpu_host_header
from ray_gpu import compute_apps, tritonservers

import analyzer_widgets as aw
from analyzer_widgets import events

MODELS = ("torch_mlp", "torch_deep")
PACKED = {"torch_mlp": 6000.0, "torch_deep": 3000.0, "torch_mlp_b": 6000.0}


def torch_repository(repo: Path) -> Path:
    """torch_mlp, torch_deep (16 layers) and torch_mlp_b (the same as torch_mlp) in ``repo``."""
    source = aw.EXAMPLE_REPOSITORY / "torch_mlp"
    config = (source / "config.pbtxt").read_text()
    layers = 'key: "layers", value: { string_value: "8" }'
    if 'name: "torch_mlp"' not in config or layers not in config:
        raise SystemExit("torch_mlp's config changed: update two_gpus.py's copies")
    for name, text in (("torch_mlp", config),
                       ("torch_deep", config.replace(layers, layers.replace('"8"', '"16"'))),
                       ("torch_mlp_b", config)):
        shutil.copytree(source, repo / name)
        (repo / name / "config.pbtxt").write_text(text.replace('name: "torch_mlp"', f'name: "{name}"'))
    return repo


class Watch:
    """While running: which GPU each unit's tritonserver is on (by its worker's PID), and the
    most memory nvidia-smi counted on each GPU (every process on it together)."""

    def __init__(self) -> None:
        self.started: list[events.UnitStarted] = []
        self.times: dict[int, list[float]] = {}  # unit -> [started, finished]
        self.server_gpus: dict[int, set[str]] = {}  # worker pid -> GPU UUIDs
        self.gpu_most_mb: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def on_event(self, event: object) -> None:
        if isinstance(event, events.UnitStarted):
            self.started.append(event)
            self.times[event.unit] = [time.monotonic(), math.nan]
        elif isinstance(event, events.UnitFinished):
            self.times[event.unit][1] = time.monotonic()

    def _worker_of(self, pid: int) -> int | None:
        try:
            parents = {p.pid for p in psutil.Process(pid).parents()}
        except psutil.NoSuchProcess:
            return None
        return next((u.worker_pid for u in self.started if u.worker_pid in parents), None)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            servers, per_gpu = tritonservers(), {}
            for pid, uuid, used in compute_apps():
                per_gpu[uuid] = per_gpu.get(uuid, 0.0) + used
                worker = self._worker_of(pid) if pid in servers else None
                if worker is not None:
                    self.server_gpus.setdefault(worker, set()).add(uuid)
            for uuid, used in per_gpu.items():
                self.gpu_most_mb[uuid] = max(self.gpu_most_mb.get(uuid, 0.0), used)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def side_by_side(self) -> bool:
        """Every unit started before any other finished."""
        spans = list(self.times.values())
        return len(spans) > 1 and max(s for s, _ in spans) < min(f for _, f in spans)


def sweep(args: argparse.Namespace, repo: Path, gpus: list[Any]) -> bool:
    grid: dict[str, Any] = dict(models=list(MODELS), model_repository=repo, batch_sizes=[1, 8], concurrency=[1, 4],
                                window_ms=args.window_ms)
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus[0].uuid  # the server and the sampler see the first GPU only
    try:
        t0 = time.monotonic()
        one = aw.profile(**grid, export_path=args.out / "sweep-one-gpu")
        one_wall = time.monotonic() - t0
    finally:
        if before is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES")
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before
    print(f"sweep on one GPU ({gpus[0].uuid}): {len(one.rows)} rows in {one_wall:.1f} s, error {one.error}")
    slots = {"parallel_slots": 2} if len(gpus) < 2 else {}
    with Watch() as watch:
        t0 = time.monotonic()
        split = aw.profile(**grid, parallel="gpus", **slots, export_path=args.out / "sweep-parallel",
                           on_event=watch.on_event)
        split_wall = time.monotonic() - t0
    ok = one.error is None and split.error is None
    df = split.to_frame()
    print(f"sweep split, a unit per model on {len(gpus) if not slots else '2 slots of 1'} GPU(s): {len(df)} rows "
          f"in {split_wall:.1f} s, error {split.error}; units side by side: {watch.side_by_side()}")
    for unit in watch.started:
        rows = df[df["model"] == unit.models[0]]
        on = sorted(watch.server_gpus.get(unit.worker_pid, set()))
        row_mb, model_mb = float(rows["gpu_memory_max_mb"].max()), float(rows["model_gpu_memory_max_mb"].max())
        smi = watch.gpu_most_mb.get(unit.gpu, math.nan)
        print(f"unit {unit.unit + 1} {unit.models[0]}: given {unit.gpu}, nvidia-smi saw its server on "
              f"{on or 'no GPU'}; its rows: GPU memory max {row_mb:,.0f} MB (the model's processes {model_mb:,.0f}); "
              f"nvidia-smi's most on that GPU, every process: {smi:,.0f} MB")
        ok = ok and on == [unit.gpu] and math.isfinite(row_mb) and math.isfinite(model_mb) and not rows.empty
    ok = ok and watch.side_by_side()
    print(f"wall: one GPU {one_wall:.1f} s, split {split_wall:.1f} s, split / one {split_wall / one_wall:.2f}")
    columns = ["model", "batch_size", "concurrency", "status", "throughput_infer_per_s", "latency_p99_ms",
               "gpu_memory_max_mb", "model_gpu_memory_max_mb", "gpu_util_max_pct"]
    for label, result in (("one GPU", one), ("split", split)):
        frame = result.to_frame()
        print(f"\n{label}:\n" + frame[[c for c in columns if c in frame.columns]].to_string(index=False))
    return ok


def pack(args: argparse.Namespace, repo: Path, gpus: list[Any]) -> bool:
    slots = {"parallel_slots": 2} if len(gpus) < 2 else {}
    with Watch() as watch:
        t0 = time.monotonic()
        result = aw.pack(list(PACKED), target_rates=PACKED, model_repository=repo, latency_budget_ms=10,
                         batch_sizes=[8], concurrency=[1, 16], window_ms=300, stable_windows=3, max_trials=8,
                         gpu_memory_mb=args.gpu_memory_mb, headroom_pct=args.headroom_pct, parallel="gpus", **slots,
                         export_path=args.out / "pack", on_event=watch.on_event)
        wall = time.monotonic() - t0
    print(f"\npack of {', '.join(PACKED)} (GPU memory cap {args.gpu_memory_mb:g} MB, headroom "
          f"{args.headroom_pct:g}%): {wall:.1f} s")
    for need in result.plan.needs:
        print(f"  {need.model}: {need.memory_mb:,.0f} MB above the baseline, {need.capacity:,.0f} infer/s alone "
              f"within p99 10 ms ({need.source})")
    for i, gpu in enumerate(result.plan.gpus):
        print(f"  plan GPU {i}: " + ", ".join(f"{r.model} {r.rate:,.0f} infer/s" for r in gpu.replicas)
              + f"; {gpu.memory_used_mb:,.0f} of {result.plan.gpu_spec.memory_mb:,.0f} MB")
    for check in result.checks:
        for figure in check.figures:
            print(f"  measured together on plan GPU {check.gpu}: {figure.model} {figure.throughput:,.0f} of "
                  f"{figure.rate:,.0f} infer/s, p99 {figure.latency_ms:.2f} ms")
    for unit in watch.started:
        on = sorted(watch.server_gpus.get(unit.worker_pid, set()))
        print(f"  unit {unit.unit + 1} {', '.join(unit.models)}: given {unit.gpu}, nvidia-smi saw its server on "
              f"{on or 'no GPU'}")
    print(f"  {result.sentence}")
    return result.plan.gpu_count == 2 and bool(result.validated)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="a new folder for the results and the models")
    parser.add_argument("--one-gpu", action="store_true", help="a dry run on one GPU: two slots share it")
    parser.add_argument("--window-ms", type=int, default=500)
    parser.add_argument("--gpu-memory-mb", type=float, default=3000.0)
    parser.add_argument("--headroom-pct", type=float, default=20.0)
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--skip-pack", action="store_true")
    args = parser.parse_args()
    gpus = gpu_host_header()
    if gpus is None:
        return 2
    if len(gpus) < 2 and not args.one_gpu:
        print("this run is of two GPUs; with one, --one-gpu runs it as a dry run (two slots on that GPU)")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    repo = torch_repository(args.out / "models")
    ok = True
    if not args.skip_sweep:
        ok = sweep(args, repo, gpus) and ok
    if not args.skip_pack:
        ok = pack(args, repo, gpus) and ok
    print(f"\nchecks: {'all passed' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
