"""The server's own Prometheus endpoint (``/metrics``): a second source and a cross-check.

Triton refreshes its GPU figures (DCGM) about once a second, so this sampler's default
interval is 0.5 s; NVML at 20 Hz is the primary source for GPU charts and maxima.
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Mapping

from analyzer_widgets.monitor.base import Sampler

#: Triton metric family -> our sample key and the scale to its unit
TRITON_METRICS: dict[str, tuple[str, float]] = {
    "nv_gpu_memory_used_bytes": ("triton_gpu_memory_used_mb", 1 / 2**20),
    "nv_gpu_memory_total_bytes": ("triton_gpu_memory_total_mb", 1 / 2**20),
    "nv_gpu_utilization": ("triton_gpu_util_pct", 100.0),  # Triton reports 0..1
    "nv_gpu_power_usage": ("triton_gpu_power_w", 1.0),
    "nv_cpu_utilization": ("triton_cpu_util_pct", 100.0),
    "nv_cpu_memory_used_bytes": ("triton_cpu_memory_used_mb", 1 / 2**20),
}


def parse_metrics(text: str) -> dict[str, float]:
    """Sum each known family over its label sets (GPUs) into one value per key.

    >>> parse_metrics('# TYPE nv_gpu_utilization gauge\\nnv_gpu_utilization{gpu_uuid="GPU-1"} 0.5\\n')
    {'triton_gpu_util_pct': 50.0}
    """
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in TRITON_METRICS:
            continue
        key, scale = TRITON_METRICS[family.name]
        values = [s.value * scale for s in family.samples if math.isfinite(s.value)]
        if not values:
            continue
        # utilization is a share per GPU: report the busiest; amounts add up across GPUs
        out[key] = max(values) if key.endswith("_pct") else sum(values)
    return out


class TritonMetricsSampler(Sampler):
    def __init__(self, url: str, interval_s: float = 0.5, timeout_s: float = 2.0) -> None:
        super().__init__("triton-metrics", interval_s)
        self.url = url
        self.timeout_s = timeout_s

    def sample(self) -> Mapping[str, float]:
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as r:
                text = r.read().decode()
        except OSError as e:
            self.unavailable.setdefault("metrics", f"{self.url}: {e}")
            return {}
        return parse_metrics(text)
