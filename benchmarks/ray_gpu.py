"""A sweep's units as Ray tasks on a GPU host (``--ray`` with ``--ray-unit-resources GPU=1``):
Ray gives each task a GPU (its ``CUDA_VISIBLE_DEVICES``), the unit's server and NVML sampler
follow it, and each row's GPU columns are that GPU's. Checked against ``nvidia-smi``.

    cd benchmarks && python3 ray_gpu.py [--models torch_mlp,mlp_numpy] [--out DIR]

Starts a one-node local Ray cluster with the host's GPUs (no dashboard: the GPU host carries
Ray's core only, docs/gpu-host.md), runs the sweep on it, and while each unit's points run
asks ``nvidia-smi --query-compute-apps`` which GPU each tritonserver is on and how much memory
it holds. Prints, per unit, the GPU Ray gave it, the GPU nvidia-smi saw its server on, and the
rows' GPU memory against nvidia-smi's; exits 1 where they disagree or a GPU column is NaN.
On a machine without a GPU it says so and exits 2.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from _machine import gpu_host_header

import analyzer_widgets as aw
from analyzer_widgets import events
from analyzer_widgets.distributed.local_cluster import LocalRayCluster


def compute_apps() -> list[tuple[int, str, float]]:
    """(pid, GPU UUID, MB used) of each process nvidia-smi sees on a GPU."""
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,gpu_uuid,used_memory", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    apps = []
    for line in out.splitlines():
        pid, uuid, used = (part.strip() for part in line.split(","))
        apps.append((int(pid), uuid, float(used)))
    return apps


def tritonservers() -> set[int]:
    out = subprocess.run(["pgrep", "-x", "tritonserver"], capture_output=True, text=True).stdout
    return {int(pid) for pid in out.split()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="torch_mlp,mlp_numpy")
    parser.add_argument("--window-ms", type=int, default=500)
    parser.add_argument("--out", type=Path, default=None, help="export folder of the sweep")
    args = parser.parse_args()
    gpus = gpu_host_header()
    if gpus is None:
        return 2
    #: per unit's worker pid: GPU UUID -> the most MB nvidia-smi showed for its tritonserver there
    seen: dict[int, dict[str, float]] = {}
    stop = threading.Event()

    def worker_of(pid: int) -> int | None:
        try:
            parents = {p.pid for p in psutil.Process(pid).parents()}
        except psutil.NoSuchProcess:
            return None
        return next((u.worker_pid for u in started if u.worker_pid in parents), None)

    def watch() -> None:
        while not stop.wait(0.5):
            servers = tritonservers()
            for pid, uuid, used in compute_apps():
                worker = worker_of(pid) if pid in servers else None
                if worker is not None:
                    held = seen.setdefault(worker, {})
                    held[uuid] = max(held.get(uuid, 0.0), used)

    started: list[events.UnitStarted] = []
    watcher = threading.Thread(target=watch, daemon=True)
    with LocalRayCluster(nodes=1, cpus_per_node=8, gpus_per_node=len(gpus), slots_per_node=0,
                         dashboard=False) as cluster:
        watcher.start()
        t0 = time.monotonic()
        result = aw.profile(models=args.models.split(","), model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=[1, 8],
                            concurrency=[1, 4], window_ms=args.window_ms, ray=cluster.address,
                            ray_unit_resources="GPU=1", export_path=args.out, overwrite=args.out is not None,
                            on_event=lambda e: started.append(e) if isinstance(e, events.UnitStarted) else None)
        wall = time.monotonic() - t0
        stop.set()
        watcher.join()
    print(f"sweep over Ray with GPU=1 per unit: {len(result.rows)} rows in {wall:.1f} s, error {result.error}")
    ok = result.error is None
    df = result.to_frame()
    for unit in started:
        rows = df[df["model"] == unit.models[0]]
        given = unit.gpu  # the CUDA_VISIBLE_DEVICES Ray set for the task: an index (or a UUID)
        uuid_given = gpus[int(given)].uuid if given.isdigit() and int(given) < len(gpus) else given
        on = sorted(seen.get(unit.worker_pid, {}))
        most_row = float(rows["gpu_memory_max_mb"].max())
        model_row = float(rows["model_gpu_memory_max_mb"].max())
        smi = max(seen.get(unit.worker_pid, {}).values(), default=math.nan)
        print(f"unit {unit.unit + 1} {unit.models[0]}: Ray's CUDA_VISIBLE_DEVICES={given!r}, nvidia-smi saw its "
              f"server on {on or 'no GPU'}; rows: GPU memory max {most_row:,.0f} MB, the model's processes "
              f"{model_row:,.0f} MB; nvidia-smi's most for its tritonserver {smi:,.0f} MB")
        if on != [uuid_given] or rows.empty or not math.isfinite(most_row) or not math.isfinite(model_row):
            ok = False
    print(df[["model", "batch_size", "concurrency", "status", "throughput_infer_per_s", "gpu_memory_max_mb",
              "model_gpu_memory_max_mb", "gpu_util_max_pct"]].to_string(index=False))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
