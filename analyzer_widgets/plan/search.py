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

    load: int
    latency_ms: float
    within: bool


@dataclass(frozen=True)
class Search:
    """A search's answer: the highest load within the budget (None when even ``start`` is
    beyond it), whether the search stopped at ``limit`` still within (the answer is then a
    lower bound), and every probe in the order measured."""

    load: int | None
    at_limit: bool
    probes: tuple[Probe, ...]


def highest_within(measure: Callable[[int], float], budget_ms: float, *, start: int = 1,
                   limit: int = 1024) -> Search:
    """The highest load in [start, limit] whose ``measure(load)`` latency is at most
    ``budget_ms``, each load measured at most once.

    >>> found = highest_within(lambda c: 2 + 0.5 * c, 20)
    >>> found.load, [p.load for p in found.probes]
    (36, [1, 2, 4, 8, 16, 32, 64, 48, 40, 36, 38, 37])
    """
    if not (isinstance(budget_ms, (int, float)) and math.isfinite(budget_ms) and budget_ms > 0):
        raise ConfigError("latency_budget_ms", budget_ms, "must be a positive number of milliseconds")
    if not 1 <= start <= limit:
        raise ConfigError("start", start, f"must be at least 1 and at most the limit ({limit})")
    probes: list[Probe] = []

    def probe(load: int) -> bool:
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
    while beyond - within > 1:
        middle = (within + beyond) // 2
        if probe(middle):
            within = middle
        else:
            beyond = middle
    return Search(within, False, tuple(probes))
