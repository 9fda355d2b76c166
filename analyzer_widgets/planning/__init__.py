"""Planning over measured points: which one to serve at, within which constraints.

:mod:`~analyzer_widgets.planning.budget` holds the decision arithmetic the panel's decision
view and the planner share: per model (or model configuration), the best measured point
within a latency budget.
"""

from __future__ import annotations

from analyzer_widgets.planning.budget import Budget, Choice, Decision, Outcome, Point, Statistic, choose

__all__ = ["Budget", "Choice", "Decision", "Outcome", "Point", "Statistic", "choose"]
