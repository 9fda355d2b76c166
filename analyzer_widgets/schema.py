"""The metrics, declared once: what the samplers record, and every result column.

Two tables:

- :data:`SAMPLE_METRICS`: the values a sampler puts in each sample (key with its unit,
  source, how a GPU total is formed, the live chart that shows it).
- :data:`MODEL_COLUMNS` and :data:`SERVER_COLUMNS`: the columns of a point's row and of
  the baseline's (name with its unit, kind, meaning, and for a figure taken from the
  samples the sample key it reduces and how; whether the results table shows it).

Everything else reads these tables: the CSV header and the DataFrame dtypes
(:mod:`analyzer_widgets.results`), the reductions over samples
(:mod:`analyzer_widgets.monitor.session`), the NVML sampler's per-GPU keys and totals, the
live charts and the results table of the panel and the CLI, and docs/metrics.md
(:func:`metrics_doc`, checked by a test). Rows are filled through :class:`Row`, which
refuses a key that is not a column.

Memory is in MB of 2**20 bytes (MiB), as nvidia-smi reports it.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from analyzer_widgets.config import Load


class Status(str, enum.Enum):
    OK = "ok"  # stable, every figure measured
    UNSTABLE = "unstable"  # max_trials windows ran without agreeing; figures of the last ones
    FAILED = "failed"  # could not be measured; reason says why
    SKIPPED = "skipped"  # not sent (batch size above max_batch_size); reason says why


class Kind(str, enum.Enum):
    TEXT = "str"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"  # true or false in the CSV


class Reduction(str, enum.Enum):
    """How a span of samples becomes one figure (NaN samples left out; NaN when none)."""

    MAX = "max"
    MEAN = "mean"
    SUM = "sum"

    def __call__(self, values: Sequence[float]) -> float:
        finite = [v for v in values if math.isfinite(v)]
        if not finite:
            return math.nan
        if self is Reduction.MAX:
            return max(finite)
        total = math.fsum(finite)
        return total if self is Reduction.SUM else total / len(finite)

    def combine(self, parts: Sequence[tuple[float, float]]) -> float:
        """One figure from the figures of several spans, each given as (figure, the span's
        length): the largest, the sum, or the mean weighted by length (NaN figures left out).

        >>> Reduction.MEAN.combine([(10.0, 1.0), (20.0, 3.0), (float("nan"), 5.0)])
        17.5
        """
        finite = [(v, w) for v, w in parts if math.isfinite(v)]
        if not finite:
            return math.nan
        if self is Reduction.MAX:
            return max(v for v, _ in finite)
        if self is Reduction.SUM:
            return math.fsum(v for v, _ in finite)
        weight = math.fsum(w for _, w in finite)
        return math.fsum(v * w for v, w in finite) / weight if weight > 0 else math.nan


# -- what the samplers record ------------------------------------------------------------------
@dataclass(frozen=True)
class SampleMetric:
    key: str  # the sample key, its unit in the name
    source: str  # the sampler that records it: nvml, host, triton-metrics
    unit: str
    doc: str
    #: nvml: one GPU's value is keyed "gpu<i>.<per_gpu>" and ``key`` is their total
    per_gpu: str = ""
    across_gpus: Reduction = Reduction.SUM
    #: the title of the live chart that shows it ("": not charted)
    chart: str = ""


SAMPLE_METRICS: tuple[SampleMetric, ...] = (
    SampleMetric("gpu_memory_used_mb", "nvml", "MB", "GPU memory used, summed over the monitored GPUs",
                 per_gpu="memory_used_mb", chart="GPU memory used"),
    SampleMetric("gpu_util_pct", "nvml", "%", "GPU utilization (share of time a kernel ran), the busiest GPU",
                 per_gpu="util_pct", across_gpus=Reduction.MAX, chart="GPU utilization"),
    SampleMetric("gpu_mem_util_pct", "nvml", "%",
                 "memory utilization (share of time device memory was read or written), the busiest GPU",
                 per_gpu="mem_util_pct", across_gpus=Reduction.MAX,
                 chart="Memory utilization (time device memory was read or written)"),
    SampleMetric("gpu_power_w", "nvml", "W", "board power draw, summed over the monitored GPUs", per_gpu="power_w"),
    SampleMetric("server_gpu_memory_mb", "nvml", "MB",
                 "GPU memory of the server's processes, its model stubs included (NVML per process)"),
    SampleMetric("model_gpu_memory_mb", "nvml", "MB",
                 "GPU memory of the stub processes of the model being measured (NVML per process)"),
    SampleMetric("server_cpu_util_pct", "host", "% of one core", "CPU utilization of the server and its stubs",
                 chart="Server CPU utilization (server and model stubs)"),
    SampleMetric("server_rss_mb", "host", "MB", "resident memory of the server and its stubs",
                 chart="Server resident memory"),
    SampleMetric("model_rss_mb", "host", "MB",
                 "resident memory of the stub processes of the model being measured (psutil per process)"),
    SampleMetric("triton_gpu_memory_used_mb", "triton-metrics", "MB", "GPU memory used, from the server's /metrics"),
    SampleMetric("triton_gpu_memory_total_mb", "triton-metrics", "MB", "GPU memory in all, from the server's /metrics"),
    SampleMetric("triton_gpu_util_pct", "triton-metrics", "%", "GPU utilization, from the server's /metrics"),
    SampleMetric("triton_gpu_power_w", "triton-metrics", "W", "GPU power, from the server's /metrics"),
    SampleMetric("triton_cpu_util_pct", "triton-metrics", "%", "host CPU utilization, from the server's /metrics",
                 chart="Host CPU utilization (Triton /metrics)"),
    SampleMetric("triton_cpu_memory_used_mb", "triton-metrics", "MB", "host memory used, from the server's /metrics"),
)
SAMPLE_KEYS = {m.key: m for m in SAMPLE_METRICS}


def sample_metrics(source: str) -> tuple[SampleMetric, ...]:
    return tuple(m for m in SAMPLE_METRICS if m.source == source)


# -- result columns ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    name: str  # its unit in the name
    kind: Kind
    doc: str
    unit: str = ""
    #: a figure reduced from the samples: the sample key and how
    sample_key: str = ""
    reduction: Reduction | None = None
    #: shown in the results table of the CLI and the panel (left out there when all NaN)
    table: bool = False
    #: the header a person reads ("" : made from the name and the unit)
    label: str = ""
    #: a bound of a confidence interval: the column of the figure it bounds
    bounds: str = ""

    @property
    def header(self) -> str:
        """The column's header for people: its label, or its name in words with the unit."""
        if self.label:
            return self.label
        words = self.name
        for suffix in ("_per_s", "_ms", "_mb", "_pct", "_w", "_s", "_j"):
            if words.endswith(suffix):
                words = words[: -len(suffix)]
                break
        text = words.replace("_", " ").capitalize()
        return f"{text} ({self.unit})" if self.unit else text

    @property
    def decimals(self) -> int:
        """Decimals shown for people (the files keep every digit)."""
        return {"ms": 2, "s": 1, "infer/s": 0, "requests/s": 1, "MB": 0, "%": 0, "% of one core": 0, "W": 0}.get(self.unit, 3)

    def __post_init__(self) -> None:
        if (self.sample_key == "") != (self.reduction is None):
            raise ValueError(f"column {self.name}: a sampled column needs both its sample key and its reduction")
        if self.sample_key and self.sample_key not in SAMPLE_KEYS:
            raise ValueError(f"column {self.name} reduces {self.sample_key!r}, which no sampler records")


def _sampled(name: str, key: str, how: Reduction, doc: str, table: bool = False, label: str = "") -> Column:
    return Column(name, Kind.FLOAT, doc, SAMPLE_KEYS[key].unit, key, how, table, label)


_S, _I, _F = Kind.TEXT, Kind.INT, Kind.FLOAT


def _interval(figure: str, suffix: str, unit: str) -> tuple[Column, Column]:
    """The two bounds of a figure's 95% confidence interval (loadgen/stats.py), named as the
    figure with ``_ci_low``/``_ci_high`` before its unit: latency_p99_ms, latency_p99_ci_low_ms."""
    how = "batch means over the reported windows; NaN with fewer than 2"
    stem = figure.removesuffix(suffix)
    return (Column(f"{stem}_ci_low{suffix}", _F, f"lower bound of the 95% confidence interval of {figure} ({how})",
                   unit, bounds=figure),
            Column(f"{stem}_ci_high{suffix}", _F, f"upper bound of the 95% confidence interval of {figure}", unit,
                   bounds=figure))


_MAX, _MEAN = Reduction.MAX, Reduction.MEAN
_SPAN = "over the span measured (a point's reported windows; the baseline)"

#: the figures both a point's row and the baseline take from the samples
_SERVER_SAMPLED: tuple[Column, ...] = (
    _sampled("gpu_memory_max_mb", "gpu_memory_used_mb", _MAX,
             f"max GPU memory used on the monitored GPUs (NVML), {_SPAN}", table=True,
             label="GPU memory max (MB)"),
    _sampled("server_gpu_memory_max_mb", "server_gpu_memory_mb", _MAX,
             "max GPU memory of the server's processes, its stubs included (NVML per process)"),
)
_MODEL_SAMPLED: tuple[Column, ...] = (
    _sampled("model_gpu_memory_max_mb", "model_gpu_memory_mb", _MAX,
             "max GPU memory of this model's own stub processes (NVML per process)", table=True,
             label="Model GPU memory (MB)"),
)
_USE_SAMPLED: tuple[Column, ...] = (
    _sampled("gpu_util_max_pct", "gpu_util_pct", _MAX, "max GPU utilization (NVML: share of time a kernel ran)",
             table=True, label="GPU util max (%)"),
    _sampled("gpu_util_mean_pct", "gpu_util_pct", _MEAN, "mean GPU utilization"),
    _sampled("gpu_mem_util_max_pct", "gpu_mem_util_pct", _MAX,
             "max memory utilization (NVML: share of time device memory was read or written)"),
    _sampled("gpu_mem_util_mean_pct", "gpu_mem_util_pct", _MEAN, "mean memory utilization"),
    _sampled("gpu_power_max_w", "gpu_power_w", _MAX, "max board power draw of the monitored GPUs"),
    _sampled("gpu_power_mean_w", "gpu_power_w", _MEAN, "mean board power draw"),
    _sampled("triton_gpu_memory_max_mb", "triton_gpu_memory_used_mb", _MAX,
             "max GPU memory used as the server's own /metrics reports it (cross-check)"),
    _sampled("triton_gpu_util_max_pct", "triton_gpu_util_pct", _MAX,
             "max GPU utilization as the server's own /metrics reports it"),
    _sampled("server_cpu_util_max_pct", "server_cpu_util_pct", _MAX,
             "max CPU utilization of the server and its stubs (100 = one core)", table=True,
             label="Server CPU max (% of a core)"),
    _sampled("server_cpu_util_mean_pct", "server_cpu_util_pct", _MEAN, "mean CPU utilization of the server and its stubs"),
    _sampled("server_rss_max_mb", "server_rss_mb", _MAX, "max resident memory of the server and its stubs"),
)

MODEL_COLUMNS: tuple[Column, ...] = (
    Column("model", _S, "model name", table=True, label="Model"),
    Column("model_version", _S, "version the server loaded"),
    Column("variant", _S, "the model-config variant measured (loaded with a config override; the planner names "
           "them); empty for the model as its repository has it"),
    Column("batch_size", _I, "inferences per request", table=True, label="Batch"),
    Column("concurrency", _I, "requests kept outstanding (0 at a request-rate point)", table=True,
           label="Concurrency"),
    Column("request_rate_per_s", _F, "the request rate the point's schedule sends at (NaN at a concurrency point)",
           "requests/s", table=True, label="Rate (req/s)"),
    Column("status", _S, "ok, unstable, failed or skipped", table=True, label="Status"),
    Column("search", _S, "a --latency-budget-ms search's row: probe (a load it measured), answer (the highest load "
           "within the budget, with its probe's figures), answer_lower_bound (the search reached its limit still "
           "within) or none_within (even the first load was beyond: its figures); empty for a grid point",
           table=True, label="Search"),
    Column("reason", _S, "why the row is not ok, or which requests failed", table=True, label="Reason"),
    Column("throughput_infer_per_s", _F, "successful inferences per second (requests x batch size)", "infer/s",
           table=True, label="Throughput (infer/s)"),
    Column("latency_avg_ms", _F, "mean client-side request latency", "ms", table=True, label="Latency avg (ms)"),
    Column("latency_p50_ms", _F, "50th percentile latency (nearest rank)", "ms"),
    Column("latency_p90_ms", _F, "90th percentile latency", "ms"),
    Column("latency_p95_ms", _F, "95th percentile latency", "ms"),
    Column("latency_p99_ms", _F, "99th percentile latency", "ms", table=True, label="Latency p99 (ms)"),
    *_interval("throughput_infer_per_s", "_infer_per_s", "infer/s"),
    *_interval("latency_avg_ms", "_ms", "ms"),
    *_interval("latency_p99_ms", "_ms", "ms"),
    Column("server_request_ms", _F, "mean server time per successful request, from its arrival to its response (queue, compute and the server's own overhead: perf_analyzer's server \"Avg request latency\")", "ms"),
    Column("server_queue_ms", _F, "mean time a request waited in the server's queue", "ms"),
    Column("server_compute_input_ms", _F, "mean server time to prepare inputs, per request", "ms"),
    Column("server_compute_infer_ms", _F, "mean server time in the model, per request", "ms", table=True,
           label="Server compute (ms)"),
    Column("server_compute_output_ms", _F, "mean server time to extract outputs, per request", "ms"),
    Column("request_count", _I, "successful requests in the reported windows"),
    Column("error_count", _I, "failed requests in the reported windows", table=True, label="Errors"),
    Column("error_rate", _F, "failed / all requests in the reported windows"),
    Column("client_inference_count", _I, "inferences the client counted in the reported windows"),
    Column("server_inference_count", _I, "inferences the server's statistics counted over the same span"),
    Column("server_request_count", _I, "requests the server counted as successful over the same span (a model's error response, as a Python model returns one, counts there: compare with request_count + error_count)"),
    Column("server_execution_count", _I, "model executions the server ran over the same span (a dynamic batch is one): server_inference_count / server_execution_count is the mean batch the model ran"),
    Column("server_span_unpinned_ms", _F, "how far the server's counted span may lie from the client's: each end is cut "
           "at a statistics read, somewhere within it (half of each bounding read, summed over visits); the two counts "
           "may differ by the inferences of this time and those in flight at the cuts", "ms"),
    Column("window_ms", _I, "length of one measurement window", "ms"),
    Column("window_count", _I, "windows measured (trials), the reported ones included"),
    Column("visit_count", _I, "visits the point was measured in (--visits): its figures pool the reported windows "
           "of all of them, and its intervals take each visit as one batch"),
    Column("measured_s", _F, "length of the reported span", "s"),
    Column("warmup_s", _F, "from the point's start until every client process had sent its warm-up requests "
           "(a client process started for the point included)", "s"),
    Column("ended_by", _S, "what ended the point's windows: stable (the last windows agreed), precision (the 95% "
           "intervals were within --precision and nothing drifted), max_trials (neither, in --max-trials windows), "
           "all_failed, or saturated (a request-rate point's requests piled up)"),
    Column("achieved_rate_per_s", _F, "requests answered (ok or failed) per second over the reported windows: at a "
           "request-rate point, the target rate while the schedule is kept", "requests/s"),
    Column("send_lag_p50_ms", _F, "request-rate point: median of each send's lag behind its scheduled time", "ms"),
    Column("send_lag_p99_ms", _F, "request-rate point: 99th percentile of each send's lag behind its scheduled time",
           "ms"),
    Column("schedule_behind_max_ms", _F, "request-rate point: the longest a send already due waited for a request "
           "slot, as the client processes reported it every 50 ms", "ms"),
    Column("in_flight_mean", _F, "request-rate point: requests due and not yet answered, on average (achieved "
           "rate x mean latency from the scheduled time: Little's law)"),
    Column("schedule", _S, "request-rate point: kept (sends within 2 ms of their time at p99), slots_full (sends "
           "waited for a free request slot: --max-in-flight, or a server behind), client_behind (late with slots "
           "free: the client could not keep up; its wait is in the latency) or saturated (requests piled up "
           "without bound: the point ended early); empty at a concurrency point"),
    Column("precision_reached_pct", _F, "the larger half-width of the 95% intervals of throughput and mean latency, "
           "as a percentage of the figure", "%"),
    _SERVER_SAMPLED[0],
    Column("gpu_memory_above_baseline_mb", _F, "gpu_memory_max_mb minus the baseline's (the server with no models)",
           "MB"),
    *_SERVER_SAMPLED[1:],
    *_MODEL_SAMPLED,
    *_USE_SAMPLED,
    Column("energy_per_inference_j", _F, "board energy of the monitored GPUs per successful inference over the "
           "reported span: gpu_power_mean_w x measured_s / client_inference_count (idle power included; NaN "
           "where the machine gives no power)", "J"),
    Column("started_at", _S, "UTC time the point started"),
)

SERVER_COLUMNS: tuple[Column, ...] = (
    Column("launch_mode", _S, "local, docker or remote"),
    Column("server_version", _S, "Triton version the server reports"),
    Column("duration_s", _F, "length of the baseline", "s"),
    Column("gpu_names", _S, "the monitored GPUs, by name"),
    Column("gpu_uuids", _S, "the monitored GPUs, by UUID"),
    Column("gpu_memory_before_server_mb", _F, "GPU memory used before the server started", "MB"),
    Column("gpu_memory_total_mb", _F, "GPU memory in all, summed over the monitored GPUs", "MB"),
    *_SERVER_SAMPLED,
    *_USE_SAMPLED,
    Column("started_at", _S, "UTC time the baseline started"),
)

#: the columns the results table of the CLI and the panel shows, in order; the reason, the
#: longest text, last
TABLE_COLUMNS: tuple[str, ...] = (*(c.name for c in MODEL_COLUMNS if c.table and c.name != "reason"), "reason")

_NAN = float("nan")
#: every column of a point's row, by name
MODEL_COLUMN = {c.name: c for c in MODEL_COLUMNS}
#: the figures a row carries a confidence interval for: (its lower, its upper bound's column)
INTERVALS: dict[str, tuple[str, str]] = {
    figure: tuple(c.name for c in MODEL_COLUMNS if c.bounds == figure)  # type: ignore[misc]
    for figure in dict.fromkeys(c.bounds for c in MODEL_COLUMNS if c.bounds)
}


# -- co-located measurement (colocation.py): a point of several models at once -------------------
#: the columns a co-located row has beyond a point's: where it was measured, beside what, and
#: how it compares with the same model alone
_COLOCATED_WHERE: tuple[Column, ...] = (
    Column("group", _S, "the label of the group of models served together on one server (a GPU of a packing "
           "plan: GPU 0)", table=True, label="Group"),
    Column("colocated_point", _I, "the co-located point's number in the run, from 0: rows measured over the same "
           "windows share it; -1 for an alone row given from earlier results"),
    Column("together", Kind.BOOL, "true: measured with the group's other models under their loads over the same "
           "windows; false: alone at the same batch size and load (the only model under load, the others loaded "
           "and idle), measured just before the group or given from earlier results", table=True, label="Together"),
    Column("searched", Kind.BOOL, "a row of a searched member's budget search: its probes and answer (search says "
           "which) and the other members' rows at those probes; false for the fixed-load rows"),
    Column("neighbours", _S, "the group's other models and their loads over the same windows (model: batch, load); "
           "for an alone row, the models loaded and idle", table=True, label="Neighbours"),
)
_COLOCATED_VERSUS: tuple[Column, ...] = (
    Column("latency_statistic", _S, "the latency statistic latency_ratio compares: avg, p50, p90, p95 or p99 "
           "(--latency-statistic)"),
    Column("alone_throughput_infer_per_s", _F, "throughput of the same model, batch size and load alone (the "
           "alone row's)", "infer/s", label="Alone (infer/s)"),
    Column("alone_latency_ms", _F, "latency at latency_statistic of the same model, batch size and load alone",
           "ms"),
    Column("throughput_ratio", _F, "throughput_infer_per_s / alone_throughput_infer_per_s: below 1, the "
           "neighbours cost the model throughput (NaN without a measured alone row)", table=True,
           label="Throughput together/alone"),
    Column("latency_ratio", _F, "latency at latency_statistic together / alone: above 1, the neighbours slowed "
           "the model's requests (NaN without a measured alone row)", table=True, label="Latency together/alone"),
    Column("server_memory_mb", _F, "the whole server's memory over the point, every model's stubs included: "
           "server_gpu_memory_max_mb where NVML gives per-process memory, else server_rss_max_mb (resident memory "
           "stands in on a machine without a GPU)", "MB", table=True, label="Server memory (MB)"),
    Column("server_memory_above_baseline_mb", _F, "server_memory_mb less the baseline's figure from the same source "
           "(the empty server's): what the models loaded add", "MB"),
    Column("model_memory_mb", _F, "this model's own processes' memory over the point: model_gpu_memory_max_mb "
           "where NVML gives per-process memory, else model_rss_max_mb", "MB", table=True,
           label="Model memory (MB)"),
    Column("memory_source", _S, "where server_memory_mb and model_memory_mb come from: gpu (NVML per process) or "
           "resident (psutil, a machine without a GPU)"),
    _sampled("model_rss_max_mb", "model_rss_mb", _MAX, "max resident memory of this model's own stub processes"),
)
#: the columns a co-located row has beyond a point's (docs/metrics.md lists these)
COLOCATED_ONLY: tuple[Column, ...] = (*_COLOCATED_WHERE, *_COLOCATED_VERSUS)
#: a co-located row (metrics-colocated.csv): a point's columns with where, beside what, and versus alone
COLOCATED_COLUMNS: tuple[Column, ...] = (*_COLOCATED_WHERE, *MODEL_COLUMNS, *_COLOCATED_VERSUS)
COLOCATED_COLUMN = {c.name: c for c in COLOCATED_COLUMNS}
#: the columns a table of co-located rows shows, in order; the reason last
COLOCATED_TABLE_COLUMNS: tuple[str, ...] = (
    *(c.name for c in COLOCATED_COLUMNS if c.table and c.name not in ("reason", "search")), "reason")


def load_of(row: Mapping[str, Any]) -> Load:
    """The load a row was measured at: its request rate where it has one, else its concurrency.

    >>> str(load_of({"concurrency": 4, "request_rate_per_s": float("nan")})), str(load_of({"concurrency": 0, "request_rate_per_s": 250.0}))
    ('concurrency 4', '250 req/s')
    """
    rate = row.get("request_rate_per_s", _NAN)
    if isinstance(rate, int | float) and math.isfinite(rate) and rate > 0:
        return Load(rate_per_s=float(rate))
    return Load(concurrency=int(row["concurrency"]))


#: what names a point of a sweep: model, variant ("" for the model as it is), batch size, load
PointKey = tuple[str, str, int, Load]


def point_key(row: Mapping[str, Any]) -> PointKey:
    variant = row.get("variant", "")
    return str(row["model"]), variant if isinstance(variant, str) else "", int(row["batch_size"]), load_of(row)


def shown_value(record: Mapping[str, Any], name: str) -> str:
    """A row's value as the results tables of the CLI and the panel show it: a figure rounded
    to its column's decimals (the CSV keeps every digit) and, where it has a 95% confidence
    interval, "± its half-width".

    >>> shown_value({"latency_p99_ms": 5.9123, "latency_p99_ci_low_ms": 5.5, "latency_p99_ci_high_ms": 6.3},
    ...             "latency_p99_ms")
    '5.91 ±0.40'
    """
    value = record[name]
    if not isinstance(value, float):
        return str(value)
    if math.isnan(value):
        return "NaN"
    decimals = (MODEL_COLUMN.get(name) or COLOCATED_COLUMN[name]).decimals
    text = f"{value:,.{decimals}f}"
    if name in INTERVALS:
        low, high = (record.get(bound, _NAN) for bound in INTERVALS[name])
        if math.isfinite(low) and math.isfinite(high):
            text += f" ±{(high - low) / 2:,.{decimals}f}"
    return text


def table_columns(frame: Any) -> list[str]:
    """The results table's columns for the rows of ``frame`` (a DataFrame of MODEL_COLUMNS):
    :data:`TABLE_COLUMNS`, less the resource columns no row has a value in (the GPU
    columns on a machine without a GPU, the server's CPU where it runs elsewhere) and the
    load no row was measured at (the request rate of a concurrency sweep, and the other way)."""
    empty = {c.name for c in sampled_columns(MODEL_COLUMNS) if c.name in frame.columns and frame[c.name].isna().all()}
    if "request_rate_per_s" in frame.columns:
        rates = frame["request_rate_per_s"]
        empty.add("request_rate_per_s" if rates.isna().all() else "concurrency" if rates.notna().all() else "")
    if "search" in frame.columns and (frame["search"].fillna("") == "").all():
        empty.add("search")  # a grid, no budget search
    return [c for c in TABLE_COLUMNS if c in frame.columns and c not in empty]


def sampled_columns(columns: Sequence[Column]) -> tuple[Column, ...]:
    """The columns of a table that reduce samples."""
    return tuple(c for c in columns if c.reduction is not None)


#: what a column holds before it is filled: "" for text, 0 for counts, False for flags, NaN for measurements
_EMPTY: dict[Kind, Any] = {Kind.TEXT: "", Kind.INT: 0, Kind.BOOL: False, Kind.FLOAT: _NAN}


class Row(dict[str, Any]):
    """One row of a table: every column present ("" for text, 0 for counts, NaN for
    measurements), and setting a key that is not a column is an error (a misspelt key
    would otherwise go silently missing from the CSV)."""

    def __init__(self, columns: Sequence[Column], values: Mapping[str, Any] | None = None) -> None:
        super().__init__((c.name, _EMPTY[c.kind]) for c in columns)
        self._columns = frozenset(self)
        if values:
            self.update(values)

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self._columns:
            raise KeyError(f"{key!r} is not a result column (schema.py declares them)")
        super().__setitem__(key, value)

    def update(self, *args: Any, **values: Any) -> None:
        for key, value in dict(*args, **values).items():
            self[key] = value

    def __reduce__(self) -> Any:  # copies and pickles as the plain dict it holds
        return (dict, (dict(self),))


def empty_row(columns: Sequence[Column]) -> Row:
    """A row with every column present: "" for text, 0 for counts, NaN for measurements."""
    return Row(columns)


def metrics_doc_table(columns: Iterable[Column]) -> str:
    """A table of columns as docs/metrics.md shows it."""
    lines = ["| column | kind | meaning |", "|---|---|---|"]
    lines += [f"| `{c.name}` | {c.kind.value} | {c.doc} |" for c in columns]
    return "\n".join(lines) + "\n"


def samples_doc_table() -> str:
    """The sampled values as docs/metrics.md lists them."""
    lines = ["| key | source | unit | meaning |", "|---|---|---|---|"]
    for m in SAMPLE_METRICS:
        per_gpu = f"; each GPU's as `gpu<i>.{m.per_gpu}`" if m.per_gpu else ""
        lines.append(f"| `{m.key}` | {m.source} | {m.unit} | {m.doc}{per_gpu} |")
    return "\n".join(lines) + "\n"
