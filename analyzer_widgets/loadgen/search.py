"""The load a latency budget allows: the highest concurrency (or request rate) whose latency
is within the budget, found by galloping then bisection over measured loads.

Pure: it asks a ``measure(load)`` callable for each probe and keeps what it answered, so
the same search runs over a real sweep (each probe a measured row), over a model
configuration in the planner, or over known data in a test.

    found = highest_within(lambda c: measure_p99_ms(c), budget_ms=20)
    found.load, [p.load for p in found.probes]

Galloping doubles the load from ``start`` until a probe exceeds the budget (or ``limit`` is
reached); bisection then halves the gap between the highest load within and the lowest
beyond until they are adjacent. Against a grid 1, 2, 4, ..., 128 it needs about
2 log2(answer) probes and answers to the unit, not to the power of two.

With a ``hint`` (a load where the answer likely lies: the planner's ``quick`` gives a
variant the answer of the variant it is compared with) the search starts there instead
and brackets: where the hint is within, up by steps of 1, 2, 4, ... until beyond; where
it is beyond, one step down, then ``start``; then it bisects. An answer at the hint or
next to it then costs 2 probes instead of the 2 log2(answer) from ``start``; one far from
it costs about as many as from ``start``, and nothing within costs 3. The answer is the
same wherever the search starts, apart from noise.

Request rates are searched the same way on a continuous scale: bisection stops when the
highest rate within and the lowest beyond are within ``resolution`` (a fraction) of each
other, each middle rounded to 3 significant figures so rows read as typed rates.

It assumes latency grows with load, which holds for a closed loop on one server apart
from noise: a noisy probe can make the answer one step off where two loads' latencies are
within their intervals of each other. A probe that gives no latency (NaN: the point
failed) counts as beyond the budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from analyzer_widgets.errors import ConfigError


@dataclass(frozen=True)
class Probe:
    """One measured load: its latency and whether that is within the budget."""

    load: float  # a concurrency (whole) or a request rate
    latency_ms: float
    within: bool


@dataclass(frozen=True)
class Search:
    """A search's answer: the highest load within the budget (None when even ``start`` is
    beyond it, or the search was cut), whether the search stopped at ``limit`` still within
    (the answer is then a lower bound), every probe in the order measured, and the probe
    beyond the budget at which the caller's ``enough`` ended the search (None: not cut)."""

    load: float | None
    at_limit: bool
    probes: tuple[Probe, ...]
    cut: Probe | None = None


class _Enough(Exception):
    """``enough`` said so: the search ends at this probe."""


def highest_within(measure: Callable[[float], float], budget_ms: float, *, start: float = 1,
                   limit: float = 1024, resolution: float = 0.0, hint: float | None = None,
                   enough: Callable[[Probe], bool] | None = None) -> Search:
    """The highest load in [start, limit] whose ``measure(load)`` latency is at most
    ``budget_ms``, each load measured at most once. ``resolution`` 0 searches whole loads
    (concurrency) to the unit; above 0, a continuous load (a request rate) to that fraction.
    ``hint``: the load to probe first (brought into [start, limit]), bracketing outwards
    from it (the module's docstring); None: galloping from ``start``. ``enough``: asked
    after each probe beyond the budget; True ends the search there (``Search.cut``): the
    planner's ``quick`` stops a variant that cannot beat the one it is compared with.

    >>> found = highest_within(lambda c: 2 + 0.5 * c, 20)
    >>> found.load, [p.load for p in found.probes]
    (36, [1, 2, 4, 8, 16, 32, 64, 48, 40, 36, 38, 37])
    >>> found = highest_within(lambda r: 1 + r / 100, 20, start=100, limit=10_000, resolution=0.05)
    >>> found.load, [p.load for p in found.probes]
    (1900.0, [100, 200, 400, 800, 1600, 3200, 2400.0, 2000.0, 1800.0, 1900.0, 1950.0])
    >>> found = highest_within(lambda c: 2 + 0.5 * c, 20, limit=64, hint=36)
    >>> found.load, [p.load for p in found.probes]
    (36, [36, 37])
    >>> found = highest_within(lambda c: 2 + 0.5 * c, 20, limit=64, hint=44)
    >>> found.load, [p.load for p in found.probes]
    (36, [44, 43, 1, 22, 32, 37, 34, 35, 36])
    """
    if not (isinstance(budget_ms, (int, float)) and math.isfinite(budget_ms) and budget_ms > 0):
        raise ConfigError("latency_budget_ms", budget_ms, "must be a positive number of milliseconds")
    if not (0 < start <= limit and (resolution > 0 or start >= 1)):
        raise ConfigError("start", start, f"must be above 0 (at least 1 for a whole load) and at most the limit "
                                          f"({limit})")
    probes: list[Probe] = []

    def probe(load: float) -> bool:
        latency = float(measure(load))
        within = math.isfinite(latency) and latency <= budget_ms
        probes.append(Probe(load, latency, within))
        if not within and enough is not None and enough(probes[-1]):
            raise _Enough
        return within

    try:
        return _search(probe, probes, start, limit, resolution, hint)
    except _Enough:
        return Search(None, False, tuple(probes), cut=probes[-1])


def _search(probe: Callable[[float], bool], probes: list[Probe], start: float, limit: float, resolution: float,
            hint: float | None) -> Search:
    """highest_within's probes: galloping from ``start`` or bracketing from ``hint``, then bisection."""
    if hint is not None and _rounded(min(max(hint, start), limit), resolution) != start:
        low, high = _bracket(probe, _rounded(min(max(hint, start), limit), resolution), start, limit, resolution)
    else:
        low, high = _gallop(probe, start, limit)
    if low is None or high is None:  # beyond at the start; or still within at the limit
        return Search(low, low is not None, tuple(probes))
    within, beyond = low, high
    # bisection between them
    while (beyond - within > 1) if resolution == 0 else (beyond > within * (1 + resolution)):
        middle: float = (within + beyond) // 2 if resolution == 0 else _three_figures((within + beyond) / 2)
        if middle in (within, beyond):
            break  # rounding left nothing between them
        if probe(middle):
            within = middle
        else:
            beyond = middle
    return Search(within, False, tuple(probes))


def _gallop(probe: Callable[[float], bool], start: float, limit: float) -> tuple[float | None, float | None]:
    """(the highest load known within, the lowest known beyond), doubling from ``start``;
    (limit, None) when the limit is within, (None, start) when the start is beyond."""
    if not probe(start):
        return None, start
    within = start
    while within < limit:
        load = min(within * 2, limit)
        if not probe(load):
            return within, load
        within = load
    return limit, None


def _bracket(probe: Callable[[float], bool], hint: float, start: float, limit: float,
             resolution: float) -> tuple[float | None, float | None]:
    """(the highest load known within, the lowest known beyond) from probes outwards from
    ``hint``: up by steps of 1, 2, 4, ... units (a unit: 1 for a whole load, ``resolution``
    of the hint for a rate); down one unit, then to ``start``; (limit, None) when the limit
    is within, (None, start) when the start is beyond."""
    unit = 1.0 if resolution == 0 else hint * resolution
    step = unit
    if probe(hint):
        within = hint
        while within < limit:
            load = min(_rounded(within + step, resolution), limit)
            if not probe(load):
                return within, load
            within, step = load, step * 2
        return limit, None
    # beyond: the next load down (an answer just below the hint), then the range's start
    # (a variant with nothing within costs 3 probes, not a walk down to the start)
    beyond = hint
    for load in (max(_rounded(hint - unit, resolution), start), start):
        if load < beyond:
            if probe(load):
                return load, beyond
            beyond = load
    return None, start


def _rounded(value: float, resolution: float) -> float:
    """A whole load (concurrency) as a whole number; a rate to 3 significant figures."""
    return int(value) if resolution == 0 else _three_figures(value)


def _three_figures(value: float) -> float:
    """``value`` to 3 significant figures (1234.5 -> 1230.0)."""
    return float(f"{value:.3g}")
