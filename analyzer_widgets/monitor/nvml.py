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
from analyzer_widgets.schema import sample_metrics

#: the values this sampler records, as schema.py declares them: one GPU's value keyed
#: "gpu<i>.<per_gpu>" (i: position in .gpus), their total across the GPUs keyed by ``key``
PER_GPU = tuple(m for m in sample_metrics("nvml") if m.per_gpu)
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
        for i, handle in enumerate(self._handles):
            memory = self._memory_info(handle)
            rates = self._query("utilization", nvml.nvmlDeviceGetUtilizationRates, handle)
            power = self._query("power", nvml.nvmlDeviceGetPowerUsage, handle)
            readings = {
                "memory_used_mb": memory.used / 2**20 if memory is not None else math.nan,
                "util_pct": float(rates.gpu) if rates is not None else math.nan,
                "mem_util_pct": float(rates.memory) if rates is not None else math.nan,
                "power_w": power / 1000.0 if power is not None else math.nan,
            }
            for metric in PER_GPU:  # a declared metric this loop does not read fails here, loudly
                values[f"gpu{i}.{metric.per_gpu}"] = readings[metric.per_gpu]
            if self.per_process:
                procs = self._query("processes", nvml.nvmlDeviceGetComputeRunningProcesses, handle) or []
                for p in procs:
                    used = getattr(p, "usedGpuMemory", None)
                    if used is None:
                        continue  # not reported (e.g. inside a container without PID namespace access)
                    key = PROCESS_KEY.format(pid=p.pid)
                    values[key] = values.get(key, 0.0) + used / 2**20
        for metric in PER_GPU:  # memory and power add up across GPUs; utilization: the busiest
            values[metric.key] = metric.across_gpus([values[f"gpu{i}.{metric.per_gpu}"] for i in range(len(self._handles))])
        return values
