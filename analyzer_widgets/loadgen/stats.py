"""Windows, percentiles and perf_analyzer's stability rule: pure functions, no I/O."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Window:
    """The requests that completed in one measurement window ``(start, end]``."""

    start: float
    end: float
    batch_size: int
    ok_latencies_s: np.ndarray  # one entry per successful request
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def duration_s(self) -> float:
        return self.end - self.start

    @property
    def ok(self) -> int:
        return int(self.ok_latencies_s.size)

    @property
    def throughput(self) -> float:
        """Successful inferences per second (a request of batch size B counts B)."""
        return self.ok * self.batch_size / self.duration_s if self.duration_s > 0 else math.nan

    @property
    def latency_avg_ms(self) -> float:
        return float(self.ok_latencies_s.mean() * 1e3) if self.ok else math.nan


def percentile(values: np.ndarray | Sequence[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q% of values at or below it.

    >>> percentile([1, 2, 3, 4], 50)
    2.0
    >>> percentile([1, 2, 3, 4], 99)
    4.0
    """
    data = np.sort(np.asarray(values, dtype=np.float64))
    if data.size == 0:
        return math.nan
    if not 0 < q <= 100:
        raise ValueError(f"percentile q={q!r} must be in (0, 100]")
    # q * n first: q / 100 * n rounds up to the next rank for some q (7 / 100 * 100 = 7.000000000000001).
    # np.percentile(method="inverted_cdf") divides first, so it gives the 8th of 100 values for q=7
    rank = max(1, math.ceil(q * data.size / 100.0))
    return float(data[rank - 1])


def within(values: Sequence[float], pct: float) -> bool:
    """Whether every value lies within ``pct`` percent of the values' mean."""
    if any(not math.isfinite(v) for v in values):
        return False
    mean = sum(values) / len(values)
    if mean == 0:
        return all(v == 0 for v in values)
    return all(abs(v - mean) <= mean * pct / 100.0 for v in values)


def is_stable(windows: Sequence[Window], count: int, pct: float) -> bool:
    """perf_analyzer's rule: the last ``count`` windows agree within ``pct`` percent on
    throughput and on average latency. A window with no successful request is never stable.

    >>> w = lambda n: Window(0.0, 1.0, 1, np.full(n, 0.01))
    >>> is_stable([w(100), w(104), w(97)], 3, 10.0)
    True
    >>> is_stable([w(100), w(130), w(97)], 3, 10.0)
    False
    """
    if len(windows) < count:
        return False
    last = windows[-count:]
    if any(w.ok == 0 for w in last):
        return False
    return within([w.throughput for w in last], pct) and within([w.latency_avg_ms for w in last], pct)


@dataclass(frozen=True)
class PointSummary:
    """The merged figures of the windows a point is reported from."""

    throughput: float
    latency_avg_ms: float
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    request_count: int  # successful requests
    error_count: int
    inference_count: int  # successful inferences (requests x batch size)
    duration_s: float
    errors: Counter[str]


def summarize(windows: Sequence[Window]) -> PointSummary:
    """Merge windows as perf_analyzer does: totals over the whole span, percentiles over
    every request of every window."""
    if not windows:
        raise ValueError("summarize needs at least one window")
    latencies = np.concatenate([w.ok_latencies_s for w in windows]) * 1e3
    duration = sum(w.duration_s for w in windows)
    ok = int(latencies.size)
    batch = windows[0].batch_size
    errors: Counter[str] = Counter()
    for w in windows:
        errors.update(w.errors)
    return PointSummary(
        throughput=ok * batch / duration if duration > 0 else math.nan,
        latency_avg_ms=float(latencies.mean()) if ok else math.nan,
        latency_p50_ms=percentile(latencies, 50),
        latency_p90_ms=percentile(latencies, 90),
        latency_p95_ms=percentile(latencies, 95),
        latency_p99_ms=percentile(latencies, 99),
        request_count=ok,
        error_count=sum(w.failed for w in windows),
        inference_count=ok * batch,
        duration_s=duration,
        errors=errors,
    )
