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
    beyond it), whether the search stopped at ``limit`` still within (the answer is then a
    lower bound), and every probe in the order measured."""

    load: float | None
    at_limit: bool
    probes: tuple[Probe, ...]


def highest_within(measure: Callable[[float], float], budget_ms: float, *, start: float = 1,
                   limit: float = 1024, resolution: float = 0.0) -> Search:
    """The highest load in [start, limit] whose ``measure(load)`` latency is at most
    ``budget_ms``, each load measured at most once. ``resolution`` 0 searches whole loads
    (concurrency) to the unit; above 0, a continuous load (a request rate) to that fraction.

    >>> found = highest_within(lambda c: 2 + 0.5 * c, 20)
    >>> found.load, [p.load for p in found.probes]
    (36, [1, 2, 4, 8, 16, 32, 64, 48, 40, 36, 38, 37])
    >>> found = highest_within(lambda r: 1 + r / 100, 20, start=100, limit=10_000, resolution=0.05)
    >>> found.load, [p.load for p in found.probes]
    (1900.0, [100, 200, 400, 800, 1600, 3200, 2400.0, 2000.0, 1800.0, 1900.0, 1950.0])
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
        return within

    # galloping: the highest load known within, the lowest known beyond
    if not probe(start):
        return Search(None, False, tuple(probes))
    within, beyond = start, None
    while beyond is None:
        if within == limit:
            return Search(within, True, tuple(probes))
        load = min(within * 2, limit)
        if probe(load):
            within = load
        else:
            beyond = load
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


def _three_figures(value: float) -> float:
    """``value`` to 3 significant figures (1234.5 -> 1230.0)."""
    return float(f"{value:.3g}")
