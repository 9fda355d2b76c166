"""The result columns, declared once: name (with its unit), kind, meaning.

Memory is in MB of 2**20 bytes (MiB), as nvidia-smi reports it.

The runner fills rows with these keys; the CSV header, the DataFrame dtypes and
docs/metrics.md all read these tables.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class Status(str, enum.Enum):
    OK = "ok"  # stable, every figure measured
    UNSTABLE = "unstable"  # max_trials windows ran without agreeing; figures of the last ones
    FAILED = "failed"  # could not be measured; reason says why
    SKIPPED = "skipped"  # not sent (batch size above max_batch_size); reason says why


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "str", "int" or "float"
    doc: str


MODEL_COLUMNS: tuple[Column, ...] = (
    Column("model", "str", "model name"),
    Column("model_version", "str", "version the server loaded"),
    Column("batch_size", "int", "inferences per request"),
    Column("concurrency", "int", "requests kept outstanding"),
    Column("status", "str", "ok, unstable, failed or skipped"),
    Column("reason", "str", "why the row is not ok, or which requests failed"),
    Column("throughput_infer_per_s", "float", "successful inferences per second (requests x batch size)"),
    Column("latency_avg_ms", "float", "mean client-side request latency"),
    Column("latency_p50_ms", "float", "50th percentile latency (nearest rank)"),
    Column("latency_p90_ms", "float", "90th percentile latency"),
    Column("latency_p95_ms", "float", "95th percentile latency"),
    Column("latency_p99_ms", "float", "99th percentile latency"),
    Column("server_request_ms", "float", "mean server time per successful request, from its arrival to its response (queue, compute and the server's own overhead: perf_analyzer's server \"Avg request latency\")"),
    Column("server_queue_ms", "float", "mean time a request waited in the server's queue"),
    Column("server_compute_input_ms", "float", "mean server time to prepare inputs, per request"),
    Column("server_compute_infer_ms", "float", "mean server time in the model, per request"),
    Column("server_compute_output_ms", "float", "mean server time to extract outputs, per request"),
    Column("request_count", "int", "successful requests in the reported windows"),
    Column("error_count", "int", "failed requests in the reported windows"),
    Column("error_rate", "float", "failed / all requests in the reported windows"),
    Column("client_inference_count", "int", "inferences the client counted in the reported windows"),
    Column("server_inference_count", "int", "inferences the server's statistics counted over the same span"),
    Column("server_request_count", "int", "requests the server counted as successful over the same span (a model's error response, as a Python model returns one, counts there: compare with request_count + error_count)"),
    Column("server_execution_count", "int", "model executions the server ran over the same span (a dynamic batch is one): server_inference_count / server_execution_count is the mean batch the model ran"),
    Column("window_ms", "int", "length of one measurement window"),
    Column("window_count", "int", "windows measured (trials), the reported ones included"),
    Column("measured_s", "float", "length of the reported span"),
    Column("gpu_memory_max_mb", "float", "max GPU memory used on the monitored GPUs (NVML), over the reported windows"),
    Column("gpu_memory_above_baseline_mb", "float", "gpu_memory_max_mb minus the baseline's (the server with no models)"),
    Column("server_gpu_memory_max_mb", "float", "max GPU memory of the server's processes, its stubs included (NVML per process)"),
    Column("model_gpu_memory_max_mb", "float", "max GPU memory of this model's own stub processes (NVML per process)"),
    Column("gpu_util_max_pct", "float", "max GPU utilization (NVML: share of time a kernel ran)"),
    Column("gpu_util_mean_pct", "float", "mean GPU utilization"),
    Column("gpu_mem_util_max_pct", "float", "max memory utilization (NVML: share of time device memory was read or written)"),
    Column("gpu_mem_util_mean_pct", "float", "mean memory utilization"),
    Column("gpu_power_max_w", "float", "max board power draw of the monitored GPUs"),
    Column("gpu_power_mean_w", "float", "mean board power draw"),
    Column("triton_gpu_memory_max_mb", "float", "max GPU memory used as the server's own /metrics reports it (cross-check)"),
    Column("triton_gpu_util_max_pct", "float", "max GPU utilization as the server's own /metrics reports it"),
    Column("server_cpu_util_max_pct", "float", "max CPU utilization of the server and its stubs (100 = one core)"),
    Column("server_cpu_util_mean_pct", "float", "mean CPU utilization of the server and its stubs"),
    Column("server_rss_max_mb", "float", "max resident memory of the server and its stubs"),
    Column("started_at", "str", "UTC time the point started"),
)

SERVER_COLUMNS: tuple[Column, ...] = (
    Column("launch_mode", "str", "local, docker or remote"),
    Column("server_version", "str", "Triton version the server reports"),
    Column("duration_s", "float", "length of the baseline"),
    Column("gpu_names", "str", "the monitored GPUs, by name"),
    Column("gpu_uuids", "str", "the monitored GPUs, by UUID"),
    Column("gpu_memory_before_server_mb", "float", "GPU memory used before the server started"),
    Column("gpu_memory_max_mb", "float", "max GPU memory used with the server up and no models"),
    Column("server_gpu_memory_max_mb", "float", "max GPU memory of the server's own processes"),
    Column("gpu_util_max_pct", "float", "max GPU utilization with no models"),
    Column("gpu_util_mean_pct", "float", "mean GPU utilization with no models"),
    Column("gpu_mem_util_max_pct", "float", "max memory utilization with no models"),
    Column("gpu_mem_util_mean_pct", "float", "mean memory utilization with no models"),
    Column("gpu_power_max_w", "float", "max board power draw with no models"),
    Column("gpu_power_mean_w", "float", "mean board power draw with no models"),
    Column("triton_gpu_memory_max_mb", "float", "max GPU memory used as the server's /metrics reports it"),
    Column("triton_gpu_util_max_pct", "float", "max GPU utilization as the server's /metrics reports it"),
    Column("server_cpu_util_max_pct", "float", "max CPU utilization of the server with no models"),
    Column("server_cpu_util_mean_pct", "float", "mean CPU utilization of the server with no models"),
    Column("server_rss_max_mb", "float", "max resident memory of the server with no models"),
    Column("started_at", "str", "UTC time the baseline started"),
)

_NAN = float("nan")


def empty_row(columns: Sequence[Column]) -> dict[str, Any]:
    """A row with every column present: "" for text, 0 for counts, NaN for measurements."""
    return {c.name: ("" if c.kind == "str" else (0 if c.kind == "int" else _NAN)) for c in columns}
