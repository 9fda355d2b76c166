"""The budget search (loadgen/search.py) on known latency curves: no server."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from analyzer_widgets.errors import ConfigError
from analyzer_widgets.loadgen.search import highest_within


def linear(load: int) -> float:
    return 2.0 + 0.5 * load  # ms; within 20 ms up to load 36


def test_gallops_then_bisects_to_the_highest_load_within() -> None:
    found = highest_within(linear, 20.0)
    assert found.load == 36 and not found.at_limit
    loads = [p.load for p in found.probes]
    assert loads[:7] == [1, 2, 4, 8, 16, 32, 64]  # galloping until 64 is beyond
    assert all(p.within == (linear(p.load) <= 20.0) for p in found.probes)
    # about 2 log2(answer) probes, answering to the unit; the grid 1, 2, 4, ..., 128 takes 8
    # and answers only 32
    assert len(loads) <= 2 * math.log2(36) + 2


def test_each_load_is_measured_once() -> None:
    calls: Counter[int] = Counter()

    def counted(load: int) -> float:
        calls[load] += 1
        return linear(load)

    highest_within(counted, 20.0)
    assert max(calls.values()) == 1


def test_a_latency_equal_to_the_budget_is_within() -> None:
    assert highest_within(lambda c: float(c), 8.0).load == 8


def test_no_load_within_when_the_first_is_beyond() -> None:
    found = highest_within(linear, 2.1)
    assert found.load is None and [p.load for p in found.probes] == [1]


def test_the_limit_bounds_the_search_and_says_so() -> None:
    found = highest_within(linear, 1000.0, limit=100)
    assert found.load == 100 and found.at_limit
    assert [p.load for p in found.probes] == [1, 2, 4, 8, 16, 32, 64, 100]


def test_a_failed_probe_counts_as_beyond() -> None:
    found = highest_within(lambda c: math.nan if c >= 10 else 1.0, 5.0)
    assert found.load == 9


@pytest.mark.parametrize("budget", [0, -1.0, math.nan, math.inf])
def test_a_budget_that_is_not_a_positive_number_is_refused(budget: float) -> None:
    with pytest.raises(ConfigError, match="latency_budget_ms"):
        highest_within(linear, budget)
