"""Windows, percentiles, perf_analyzer's stability rule and the confidence intervals of a
point's figures: pure functions, no I/O."""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from analyzer_widgets.config import MeasurementSettings, StopRule

#: a request-rate point whose schedule runs this late with every request slot sending is
#: past saturation: requests pile up faster than they are answered, and the point ends
SATURATED_BEHIND_S = 1.0
#: a request-rate point kept its schedule when its sends' lag (send less scheduled time) is
#: within this at the 99th percentile; beyond it the latency includes the client's wait
SCHEDULE_TOLERANCE_MS = 2.0


@dataclass(frozen=True)
class WindowSchedule:
    """How a request-rate window kept its schedule."""

    send_lags_s: np.ndarray  # per request completed in the window: its send less its scheduled time
    behind_s: float  # the largest lag of a next send not yet taken, as the client processes reported it
    slots_full: bool  # some client process had every request slot sending

    @property
    def saturated(self) -> bool:
        return self.slots_full and self.behind_s > SATURATED_BEHIND_S


@dataclass(frozen=True)
class Window:
    """The requests that completed in one measurement window ``(start, end]``."""

    start: float
    end: float
    batch_size: int
    ok_latencies_s: np.ndarray  # one entry per successful request (from its scheduled time at a rate point)
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    schedule: WindowSchedule | None = None  # at a request-rate point

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


#: the confidence of every interval a row carries
CONFIDENCE = 0.95
#: Student's t, the 97.5% quantile (two-sided 95%), for 1 to 30 degrees of freedom
_T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
          2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
          2.045, 2.042)
_Z_975 = 1.959964


def t_critical(df: int) -> float:
    """Student's t quantile for a two-sided 95% interval with ``df`` degrees of freedom:
    the table to 30, then the Cornish-Fisher expansion about the normal quantile (within
    0.00001 of the exact value from 31 on).

    >>> t_critical(2), t_critical(30), round(t_critical(120), 3)
    (4.303, 2.042, 1.98)
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be 1 or more, got {df}")
    if df <= len(_T_975):
        return _T_975[df - 1]
    z = _Z_975
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


@dataclass(frozen=True)
class Interval:
    """A 95% confidence interval around a reported figure (NaN bounds where there is none)."""

    low: float
    high: float
    #: the half-width before a bound was cut (at_least); NaN: (high - low) / 2
    spread: float = math.nan

    @property
    def half_width(self) -> float:
        """How precise the figure is: half the interval's width, as computed before a bound
        was cut at a limit the figure cannot pass (so cutting never flatters precision)."""
        return self.spread if math.isfinite(self.spread) else (self.high - self.low) / 2

    def at_least(self, bound: float) -> Interval:
        """The interval with its lower bound no lower than ``bound`` (a figure that cannot be
        below it: the cut interval still covers whatever covered the true figure)."""
        if not self.low < bound:
            return self
        return Interval(bound, self.high, self.half_width)

    def relative_to(self, figure: float) -> float:
        """The half-width as a share of ``figure`` (0.05 is +-5%); NaN where it has no meaning."""
        return self.half_width / abs(figure) if math.isfinite(figure) and figure != 0 else math.nan


NO_INTERVAL = Interval(math.nan, math.nan)


def batch_means_interval(figure: float, batches: Sequence[float]) -> Interval:
    """``figure`` +- t * s / sqrt(n), where s is the standard deviation of ``n`` batch
    estimates of it (one per measurement window) and t Student's quantile with n - 1
    degrees of freedom: the method of batch means. NaN where fewer than two batches or a
    figure or batch estimate that is not finite.

    >>> i = batch_means_interval(10.0, [9.0, 10.0, 11.0])
    >>> round(i.low, 3), round(i.high, 3)
    (7.516, 12.484)
    """
    values = [float(v) for v in batches]
    if len(values) < 2 or not math.isfinite(figure) or not all(math.isfinite(v) for v in values):
        return NO_INTERVAL
    spread = t_critical(len(values) - 1) * float(np.std(values, ddof=1)) / math.sqrt(len(values))
    return Interval(figure - spread, figure + spread)


def log_batch_means_interval(figure: float, batches: Sequence[float]) -> Interval:
    """Batch means on the log scale: ``figure`` times exp(+-t * s / sqrt(n)), s the standard
    deviation of the batches' logarithms. For a positive, skewed figure (a high percentile
    of latency) whose batches scatter by a factor rather than by an amount: the interval
    stays above 0 and is wider above the figure than below. NaN as batch_means_interval,
    and where a figure or batch is not above 0.

    >>> i = log_batch_means_interval(2.0, [1.0, 2.0, 4.0])
    >>> round(i.low, 3), round(i.high, 3)
    (0.357, 11.192)
    """
    values = [float(v) for v in batches]
    if not (figure > 0 and values and all(v > 0 for v in values)):
        return NO_INTERVAL
    logs = batch_means_interval(math.log(figure), [math.log(v) for v in values])
    return Interval(math.exp(logs.low), math.exp(logs.high)) if math.isfinite(logs.low) else NO_INTERVAL


@dataclass(frozen=True)
class PointIntervals:
    """The 95% intervals of a point's throughput, mean latency and p99 latency."""

    throughput: Interval
    latency_avg_ms: Interval
    latency_p99_ms: Interval


def point_intervals(windows: Sequence[Window], summary: PointSummary) -> PointIntervals:
    """The intervals of ``summary``'s figures, each window one batch (docs/design-notes.md,
    "Confidence intervals", says why that is valid here and what it does not cover)."""
    return grouped_intervals([[w] for w in windows], summary)


def grouped_intervals(batches: Sequence[Sequence[Window]], summary: PointSummary) -> PointIntervals:
    """The intervals of ``summary``'s figures, each group of windows one batch: a window, or
    the reported windows of one visit of a point measured in visits (--visits)."""
    if any(w.ok == 0 for batch in batches for w in batch):
        return PointIntervals(NO_INTERVAL, NO_INTERVAL, NO_INTERVAL)  # a window without a figure
    parts = [summarize(batch) for batch in batches]
    return PointIntervals(
        # neither figure can be negative: a bound below 0 (few batches far apart) is cut
        # there, which still covers whatever the true figure is
        throughput=batch_means_interval(summary.throughput, [p.throughput for p in parts]).at_least(0.0),
        latency_avg_ms=batch_means_interval(summary.latency_avg_ms, [p.latency_avg_ms for p in parts]).at_least(0.0),
        # a window's p99 scatters by a factor (a few slow requests double it), and a
        # symmetric interval on a few windows reached below 0 ms: on the log scale
        latency_p99_ms=log_batch_means_interval(summary.latency_p99_ms, [p.latency_p99_ms for p in parts]),
    )


# -- when a point has been measured enough ---------------------------------------------------------
#: the fewest windows the precision rule judges: with fewer, t is so large (12.7 for 2) that
#: only identical windows would pass, and a trend needs points to show
MIN_PRECISION_WINDOWS = 4


class Ending(str, enum.Enum):
    """What ended a point's windows (a row's ``ended_by``)."""

    STABLE = "stable"  # the last windows agreed (StopRule.STABLE)
    PRECISION = "precision"  # the intervals were narrow enough and nothing drifted (StopRule.PRECISION)
    MAX_TRIALS = "max_trials"  # neither, within max_trials windows
    ALL_FAILED = "all_failed"  # every request of a window failed
    SATURATED = "saturated"  # a request-rate point's requests piled up (WindowSchedule.saturated)


def trend(values: Sequence[float]) -> float:
    """The t statistic of the least-squares slope of ``values`` against their order (0 with
    fewer than 3 values, infinite for an exact non-zero line): how clearly they drift.

    >>> trend([10, 10.1, 9.9, 10]) < 1, trend([10, 11, 12, 13.1]) > 10
    (True, True)
    """
    y = np.asarray(values, dtype=np.float64)
    n = y.size
    if n < 3 or not np.all(np.isfinite(y)):
        return 0.0
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2
    slope = float(np.dot(x, y - y.mean()) / np.dot(x, x))
    residuals = y - y.mean() - slope * x
    spread = math.sqrt(float(np.dot(residuals, residuals)) / (n - 2) / float(np.dot(x, x)))
    if spread == 0:
        return 0.0 if slope == 0 else math.copysign(math.inf, slope)
    return slope / spread


@dataclass(frozen=True)
class Precision:
    """How precisely a point's windows give its figures: the larger relative half-width of
    the 95% intervals of throughput and mean latency (in %), and the figure that drifts
    across the windows, if one does ("" if none)."""

    reached_pct: float
    drifting: str

    def met(self, target_pct: float) -> bool:
        return not self.drifting and self.reached_pct <= target_pct


def precision(windows: Sequence[Window], summary: PointSummary, intervals: PointIntervals) -> Precision:
    """The precision ``windows`` give their figures (``summary``, with their ``intervals``
    from :func:`point_intervals`); a figure drifts when its slope across the windows is
    significant at 95% (t test)."""
    shares = (intervals.throughput.relative_to(summary.throughput),
              intervals.latency_avg_ms.relative_to(summary.latency_avg_ms))
    reached = math.nan if any(math.isnan(s) for s in shares) else 100 * max(shares)
    drifting = ""
    if len(windows) >= 3:
        limit = t_critical(len(windows) - 2)
        for name, values in (("throughput", [w.throughput for w in windows]),
                             ("mean latency", [w.latency_avg_ms for w in windows])):
            t = trend(values)
            if abs(t) > limit:
                drifting = f"{name} {'rising' if t > 0 else 'falling'} across the windows"
                break
    return Precision(reached, drifting)


def ended(windows: Sequence[Window], settings: MeasurementSettings) -> Ending | None:
    """Whether the windows so far end the point, and how; None to measure another."""
    last = windows[-1]
    if last.ok == 0 and last.failed > 0:
        return Ending.ALL_FAILED  # every request failed: nothing to wait for
    if last.schedule is not None and last.schedule.saturated:
        return Ending.SATURATED  # more windows would only pile up more requests
    if settings.stop_rule is StopRule.STABLE:
        if is_stable(windows, settings.stable_windows, settings.stability_pct):
            return Ending.STABLE
    elif len(windows) >= MIN_PRECISION_WINDOWS:
        summary = summarize(windows)
        if precision(windows, summary, point_intervals(windows, summary)).met(settings.precision_pct):
            return Ending.PRECISION
    return Ending.MAX_TRIALS if len(windows) >= settings.max_trials else None


def reported(windows: Sequence[Window], settings: MeasurementSettings) -> Sequence[Window]:
    """The windows a row reports: the last ``stable_windows`` under the stable rule (as
    perf_analyzer does), all of them under the precision rule."""
    if settings.stop_rule is StopRule.STABLE:
        return windows[-settings.stable_windows:]
    return windows


class ScheduleVerdict(str, enum.Enum):
    """How a request-rate point kept its schedule (a row's ``schedule``)."""

    KEPT = "kept"  # sends within SCHEDULE_TOLERANCE_MS of their time at the 99th percentile
    SLOTS_FULL = "slots_full"  # sends waited for a free request slot (--max-in-flight, or a slow server)
    CLIENT_BEHIND = "client_behind"  # sends were late with slots free: the client could not keep up
    SATURATED = "saturated"  # requests piled up without bound: the server is past saturation


@dataclass(frozen=True)
class ScheduleFigures:
    """A request-rate point's figures beyond a closed-loop one's."""

    achieved_rate_per_s: float  # requests answered (ok or failed) per second
    send_lag_p50_ms: float
    send_lag_p99_ms: float
    in_flight_mean: float  # requests scheduled and not yet answered, on average (Little's law)
    behind_max_ms: float
    verdict: ScheduleVerdict


def schedule_figures(windows: Sequence[Window], summary: PointSummary) -> ScheduleFigures | None:
    """How the reported ``windows`` of a request-rate point kept its schedule; None at a
    concurrency point. The mean requests in flight is the answered rate times the mean
    latency from the scheduled time (Little's law), so it counts a request from when it was
    due, its wait for a slot included."""
    schedules = [w.schedule for w in windows if w.schedule is not None]
    if not schedules:
        return None
    lags_ms = np.concatenate([s.send_lags_s for s in schedules]) * 1e3
    answered = summary.request_count + summary.error_count
    rate = answered / summary.duration_s if summary.duration_s > 0 else math.nan
    p99 = percentile(lags_ms, 99)
    if any(s.saturated for s in schedules):
        verdict = ScheduleVerdict.SATURATED
    elif not p99 > SCHEDULE_TOLERANCE_MS:  # NaN (nothing answered) is no evidence of lateness
        verdict = ScheduleVerdict.KEPT
    elif any(s.slots_full for s in schedules):
        verdict = ScheduleVerdict.SLOTS_FULL
    else:
        verdict = ScheduleVerdict.CLIENT_BEHIND
    return ScheduleFigures(
        achieved_rate_per_s=rate,
        send_lag_p50_ms=percentile(lags_ms, 50),
        send_lag_p99_ms=p99,
        in_flight_mean=rate * summary.latency_avg_ms / 1e3 if summary.request_count else math.nan,
        behind_max_ms=max(s.behind_s for s in schedules) * 1e3,
        verdict=verdict,
    )
