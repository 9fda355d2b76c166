"""GPU samples from NVML (the ``pynvml`` module of nvidia-ml-py).

NVML is initialised lazily, in the sampler's own thread when it starts, never at import,
and shut down when the sampler stops (NVML counts its inits, so several samplers are
fine). A query a board does not support (power on some boards, utilization under MIG)
gives NaN for that value and one entry in :attr:`Sampler.unavailable`; it never stops
sampling. GPUs are identified by UUID, which stays fixed when indices are renumbered; the
GPUs sampled are those CUDA_VISIBLE_DEVICES leaves visible (:mod:`analyzer_widgets.machine`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from analyzer_widgets.machine import visible_handles
from analyzer_widgets.monitor.base import Sampler

#: the values of one GPU in each sample, keyed "gpu<i>.<metric>" (i: position in .gpus)
GPU_METRICS = ("memory_used_mb", "util_pct", "mem_util_pct", "power_w")
#: aggregates over the monitored GPUs, in every sample
GPU_TOTALS = ("gpu_memory_used_mb", "gpu_util_pct", "gpu_mem_util_pct", "gpu_power_w")
#: GPU memory used by one process, keyed "pid<pid>.gpu_memory_mb"
PROCESS_KEY = "pid{pid}.gpu_memory_mb"


@dataclass(frozen=True)
class GpuInfo:
    index: int  # NVML index (of the GPU that holds it, for a MIG device)
    uuid: str  # "GPU-...", or "MIG-..." where CUDA_VISIBLE_DEVICES names a MIG device
    name: str
    memory_total_mb: float


class NvmlSampler(Sampler):
    """Samples every visible GPU: memory used, GPU and memory utilization, power, and the
    GPU memory of every compute process (for per-process attribution).

    Default 50 ms (20 Hz). Values are NaN (with a reason in ``unavailable``) where a
    query is not supported."""

    def __init__(self, interval_s: float = 0.05, per_process: bool = True) -> None:
        super().__init__("nvml", interval_s)
        self.per_process = per_process
        self.gpus: list[GpuInfo] = []
        self._handles: list[Any] = []
        self._nvml: Any = None
        self._memory_v2 = True

    def setup(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        self._nvml = pynvml
        for gpu, handle in visible_handles(pynvml):
            total = pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**20
            self.gpus.append(GpuInfo(gpu.index, gpu.uuid, gpu.name, total))
            self._handles.append(handle)

    def _memory_info(self, handle: Any) -> Any:
        # v2 reports "used" without the driver's reserved memory, as nvidia-smi shows it;
        # v1's "used" (total - free) counts the reserve too. Fall back where v2 is missing.
        nvml = self._nvml
        if self._memory_v2:
            try:
                return nvml.nvmlDeviceGetMemoryInfo(handle, version=nvml.nvmlMemory_v2)
            except (nvml.NVMLError, AttributeError):
                self._memory_v2 = False
        return self._query("memory", nvml.nvmlDeviceGetMemoryInfo, handle)

    def teardown(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass
            self._nvml = None

    def _query(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._nvml.NVMLError as e:
            # remember why once; the value is NaN from now on for this sample
            self.unavailable.setdefault(what, str(e))
            return None

    def sample(self) -> Mapping[str, float]:
        nvml = self._nvml
        values: dict[str, float] = {}
        totals: dict[str, list[float]] = {"mem": [], "util": [], "mem_util": [], "power": []}
        for i, handle in enumerate(self._handles):
            memory = self._memory_info(handle)
            rates = self._query("utilization", nvml.nvmlDeviceGetUtilizationRates, handle)
            power = self._query("power", nvml.nvmlDeviceGetPowerUsage, handle)
            mem_mb = memory.used / 2**20 if memory is not None else math.nan
            util = float(rates.gpu) if rates is not None else math.nan
            mem_util = float(rates.memory) if rates is not None else math.nan
            power_w = power / 1000.0 if power is not None else math.nan
            values[f"gpu{i}.memory_used_mb"] = mem_mb
            values[f"gpu{i}.util_pct"] = util
            values[f"gpu{i}.mem_util_pct"] = mem_util
            values[f"gpu{i}.power_w"] = power_w
            totals["mem"].append(mem_mb)
            totals["util"].append(util)
            totals["mem_util"].append(mem_util)
            totals["power"].append(power_w)
            if self.per_process:
                procs = self._query("processes", nvml.nvmlDeviceGetComputeRunningProcesses, handle) or []
                for p in procs:
                    used = getattr(p, "usedGpuMemory", None)
                    if used is None:
                        continue  # not reported (e.g. inside a container without PID namespace access)
                    key = PROCESS_KEY.format(pid=p.pid)
                    values[key] = values.get(key, 0.0) + used / 2**20
        values["gpu_memory_used_mb"] = _sum(totals["mem"])
        values["gpu_util_pct"] = _max(totals["util"])
        values["gpu_mem_util_pct"] = _max(totals["mem_util"])
        values["gpu_power_w"] = _sum(totals["power"])
        return values


def _sum(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) if finite else math.nan


def _max(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return max(finite) if finite else math.nan
