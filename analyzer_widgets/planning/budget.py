"""The decision arithmetic: per model, the best measured point within a latency budget.

Pure functions over the rows of a sweep (a DataFrame with the columns of
:data:`analyzer_widgets.schema.MODEL_COLUMNS`); no server, no widgets. The panel's decision
view and its charts show what :func:`choose` returns.

>>> decision = choose(rows, Budget(20))  # doctest: +SKIP
>>> decision.sentences  # doctest: +SKIP
('mlp_numpy: batch 8, concurrency 2: 12,100 infer/s at p99 5.9 ms, 88 MB above the baseline',)

The rule: a row counts when it was measured (status ok or unstable, see :class:`Point`
for why unstable rows count), none of its requests failed, and it has a throughput and the
budget's latency figure; among those whose latency is at most the budget, the highest
throughput wins. Ties go to the lower latency, then a stable row, then the smaller batch,
then the lower concurrency (the same rate for less wait and fewer requests in flight).

Built for the planner: it will feed the rows of several configurations of a model with a
column naming each, and ``choose(rows, budget, variant="variant")`` picks per configuration.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analyzer_widgets.config import Checked, Load, Statistic, latency_budget, one_of, setting
from analyzer_widgets.errors import AnalyzerError, ConfigError
from analyzer_widgets.schema import Status, load_of

#: the statuses of a row that was measured (its figures are real)
MEASURED = (Status.OK.value, Status.UNSTABLE.value)
#: a point's load, lowest first: the lower of two equal choices waits less
LOAD_ORDER = ("concurrency", "request_rate_per_s")
#: the columns :func:`choose` reads, besides the budget's latency column and the variant's
NEEDED = ("model", "batch_size", "concurrency", "status", "reason", "error_count", "throughput_infer_per_s",
          "gpu_memory_above_baseline_mb")


class Outcome(str, enum.Enum):
    CHOSEN = "chosen"  # a point within the budget: the best one
    NONE_WITHIN = "none_within"  # measured, none within the budget: the point is the lowest latency measured
    NOT_MEASURED = "not_measured"  # no row counts (all skipped, failed, ...): no point; the sentence says why


@dataclass(frozen=True)
class Budget(Checked):
    """A latency budget: at most ``latency_budget_ms`` for the chosen statistic (p99 by
    default). Each field is declared as the settings of :mod:`analyzer_widgets.config` are,
    so a form can be derived from them; a bad value is a ConfigError naming the field.

    >>> str(Budget(20)), str(Budget("2.5", "p95"))
    ('p99 ≤ 20 ms', 'p95 ≤ 2.5 ms')
    """

    latency_budget_ms: float = setting(check=latency_budget, panel="Latency budget (ms)",
                                       help="the most latency a chosen point may have, in ms")
    latency_statistic: Statistic = setting(Statistic.P99, check=one_of(Statistic), panel="Latency statistic",
                                           help="the latency statistic the budget applies to: avg, p50, p90, p95 "
                                                "or p99")

    @property
    def column(self) -> str:
        """The result column the budget applies to (``latency_p99_ms``)."""
        return self.latency_statistic.column

    def __str__(self) -> str:
        return f"{self.latency_statistic.label} ≤ {plain_number(self.latency_budget_ms)} ms"


@dataclass(frozen=True)
class Point:
    """One measured point, with the latency of the budget's statistic.

    An unstable point (its windows never agreed within the stability threshold; its figures
    are those of its last windows) counts: it is a real measured load, and on a noisy host
    it is often the highest concurrency, so leaving it out would hide the best point or say
    "no point" where one was measured. It is marked instead (``unstable``, and in the
    sentence), so a reader takes its figures as rough and can measure it again.
    """

    batch_size: int
    concurrency: int  # 0 at a request-rate point
    throughput_infer_per_s: float
    latency_ms: float
    #: GPU memory above the server with no models; NaN where the machine gives no GPU figures
    memory_above_baseline_mb: float
    unstable: bool
    rate_per_s: float = 0.0  # a request-rate point's rate; 0 at a concurrency point

    @property
    def load(self) -> Load:
        return Load(self.concurrency, self.rate_per_s)

    @classmethod
    def of(cls, row: Mapping[str, Any], budget: Budget) -> Point:
        load = load_of(row)
        return cls(int(row["batch_size"]), load.concurrency, float(row["throughput_infer_per_s"]),
                   float(row[budget.column]), float(row["gpu_memory_above_baseline_mb"]),
                   row["status"] == Status.UNSTABLE.value, load.rate_per_s)


@dataclass(frozen=True)
class Choice:
    """What the budget gives one model (or configuration): ``variant`` names it."""

    variant: str
    model: str
    budget: Budget
    outcome: Outcome
    #: CHOSEN: the best point within the budget; NONE_WITHIN: the lowest latency measured;
    #: NOT_MEASURED: None
    point: Point | None
    #: one plain sentence that says it
    sentence: str

    @property
    def within(self) -> bool:
        return self.outcome is Outcome.CHOSEN


@dataclass(frozen=True)
class Decision:
    """One :class:`Choice` per variant, in the order the rows first name them."""

    budget: Budget
    choices: tuple[Choice, ...]

    @property
    def sentences(self) -> tuple[str, ...]:
        return tuple(c.sentence for c in self.choices)

    def chosen(self) -> dict[str, Point]:
        """The chosen point of each variant that has one within the budget."""
        return {c.variant: c.point for c in self.choices if c.within and c.point is not None}

    def choice(self, variant: str) -> Choice:
        for c in self.choices:
            if c.variant == variant:
                return c
        raise KeyError(f"{variant!r}: no rows of it were given; these were: {[c.variant for c in self.choices]}")


# -- the arithmetic ----------------------------------------------------------------------------
def choose(rows: pd.DataFrame, budget: Budget, *, variant: str = "model") -> Decision:
    """Per value of the ``variant`` column (the model by default), the best point of ``rows``
    within ``budget``: see the module's docstring for the rule.

    >>> choose(rows, Budget(20, "p95")).chosen()["mlp_numpy"].batch_size  # doctest: +SKIP
    8
    """
    if variant not in rows.columns:
        raise ConfigError("variant", variant, f"is not a column of the rows; they have: {', '.join(rows.columns)}")
    missing = [c for c in (*NEEDED, budget.column) if c not in rows.columns]
    if missing:
        raise AnalyzerError(f"the rows lack the result columns {', '.join(missing)} (schema.MODEL_COLUMNS)")
    groups = rows.groupby(variant, sort=False)
    return Decision(budget, tuple(choose_one(part, budget, str(name)) for name, part in groups))


def choose_one(rows: pd.DataFrame, budget: Budget, variant: str) -> Choice:
    """The choice among the rows of one variant."""
    model = str(rows["model"].iloc[0]) if len(rows) else variant
    label = variant if model in variant else f"{model} ({variant})"  # a variant's name may carry its model's
    usable = rows[eligible(rows, budget)]
    if usable.empty:
        return Choice(variant, model, budget, Outcome.NOT_MEASURED, None, f"{label}: {not_measured_text(rows, budget)}")
    within = usable[usable[budget.column] <= budget.latency_budget_ms]
    if within.empty:
        lowest = Point.of(_ranked(usable, [budget.column, "_unstable", "batch_size", *LOAD_ORDER]).iloc[0], budget)
        return Choice(variant, model, budget, Outcome.NONE_WITHIN, lowest, f"{label}: {none_within_text(lowest, budget)}")
    order = ["throughput_infer_per_s", budget.column, "_unstable", "batch_size", *LOAD_ORDER]
    best = Point.of(_ranked(within, order).iloc[0], budget)
    return Choice(variant, model, budget, Outcome.CHOSEN, best, f"{label}: {chosen_text(best, budget)}")


def eligible(rows: pd.DataFrame, budget: Budget) -> pd.Series:
    """Which rows a choice may fall on: measured (ok or unstable), no failed request, with a
    throughput and the budget's latency figure."""
    return (rows["status"].isin(MEASURED) & (rows["error_count"] == 0)
            & rows["throughput_infer_per_s"].notna() & rows[budget.column].notna())


def _ranked(rows: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """``rows`` best first by ``order``: throughput descending, everything else ascending
    (a stable row before an unstable one)."""
    keyed = rows.assign(_unstable=rows["status"] != Status.OK.value)
    if "request_rate_per_s" not in keyed.columns:  # results from before request rates
        keyed = keyed.assign(request_rate_per_s=math.nan)
    ascending = [key != "throughput_infer_per_s" for key in order]
    return keyed.sort_values(order, ascending=ascending, kind="mergesort")


# -- the sentences -----------------------------------------------------------------------------
def chosen_text(point: Point, budget: Budget) -> str:
    text = (f"batch {point.batch_size}, {point.load}: "
            f"{plain_number(point.throughput_infer_per_s)} infer/s at {budget.latency_statistic.label} "
            f"{plain_number(point.latency_ms)} ms, {memory_text(point.memory_above_baseline_mb)}")
    if point.unstable:
        text += " (unstable: its measurement windows never agreed, so take these figures as rough)"
    return text


def none_within_text(lowest: Point, budget: Budget) -> str:
    return (f"no point within {budget}; the lowest was {plain_number(lowest.latency_ms)} ms at batch "
            f"{lowest.batch_size}, {lowest.load}" + (" (unstable)" if lowest.unstable else ""))


def not_measured_text(rows: pd.DataFrame, budget: Budget) -> str:
    """Why no row of a variant counts: how many rows were skipped, failed, ... each with the
    first reason given."""
    groups: dict[str, list[str]] = {}
    for row in rows.to_dict("records"):
        if row["status"] not in MEASURED:
            why = str(row["status"]) or "not measured"
        elif row["error_count"] > 0:
            why = "with failed requests"
        else:
            why = f"without a throughput or {budget.latency_statistic.label} latency figure"
        groups.setdefault(why, []).append(str(row["reason"]))
    parts = []
    for why, reasons in groups.items():
        first = next((r for r in reasons if r), "")
        parts.append(f"{len(reasons)} {why}" + (f" ({_clip(first)})" if first else ""))
    return "no measured point to choose from" + (": " + ", ".join(parts) if parts else "")


def memory_text(mb: float) -> str:
    """GPU memory above the baseline as a sentence says it; unknown (not 0) where NaN."""
    if not math.isfinite(mb):
        return "GPU memory unknown (no GPU figures on this machine)"
    whole = round(mb)
    return f"{abs(whole):,} MB {'below' if whole < 0 else 'above'} the baseline"


def plain_number(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant figures, with thousands separators and no
    trailing zeros: a measured figure is a sample, not a fact (DESIGN.md).

    >>> plain_number(12134.5), plain_number(5.9), plain_number(0.4521), plain_number(20.0)
    ('12,100', '5.9', '0.452', '20')
    """
    if not math.isfinite(value) or value == 0:
        return "0" if value == 0 else str(value)
    decimals = digits - 1 - math.floor(math.log10(abs(value)))
    rounded = round(value, decimals)
    if decimals <= 0:
        return f"{rounded:,.0f}"
    return f"{rounded:,.{decimals}f}".rstrip("0").rstrip(".")


def _clip(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
