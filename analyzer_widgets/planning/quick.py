"""``quick``: which variants of a space a plan measures, chosen as the figures come in, and
where each one's budget search starts.

The planner (planning/planner.py) hands this module the space's variants, a way to read
the objective of a variant measured so far and a way to read its answers' loads; it
yields the next variant to measure with the loads to start its searches at.
docs/planning.md says why this search and what it assumes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class VariantLike(Protocol):
    """What the planner needs of a variant (planning/space.py's ``Variant``)."""

    @property
    def name(self) -> str: ...

    @property
    def fields(self) -> Mapping[str, Any]: ...  # the value of each field the space sets

    @property
    def original(self) -> bool: ...  # its config is the model's own


@dataclass(frozen=True)
class Step:
    """A variant to measure, and per batch size the load its budget search starts at (the
    answer of the variant it is compared with; a batch size left out starts at the search
    range's first load). A neighbour that cannot beat the variant it is compared with is
    never moved to, so its search may stop as soon as that is clear (runner.beaten)."""

    variant: VariantLike
    start_at: Mapping[int, float] = field(default_factory=dict)
    compared_with: str | None = None  # the variant it must beat to be moved to (None: the first)


def _no_loads(name: str) -> Mapping[int, float]:
    return {}


def climb(variants: Sequence[VariantLike], score_of: Callable[[str], float],
          answer_loads: Callable[[str], Mapping[int, float]] = _no_loads) -> Iterator[Step]:
    """The variants ``quick`` measures, one at a time (coordinate ascent): from the model's
    own config (the variant that changes nothing, else the first), each field in turn: its
    other values with every other field kept, moving to the best of them where it beats the
    current one; again over all fields until a round moves nowhere. ``score_of(name)``
    reads the objective of a variant measured so far (NaN when it fails the constraints);
    ``answer_loads(name)`` its answers' loads by batch size, which each neighbour's
    searches start at (a neighbour's answer lies near the current one's: one field apart).

    Why coordinate ascent: the fields of a Triton config act mostly one at a time on a
    served rate (instances on compute overlap, max batch and delay on batching), so a
    line search per field finds a good corner of the space in the sum of the fields'
    sizes instead of their product, and every step is a variant someone can read. It can
    stop at a local best where two fields only help together; `brute` measures it all.
    """
    keys = list(dict.fromkeys(key for v in variants for key in v.fields))
    own = next((v for v in variants if v.original), variants[0])
    tried = {own.name}
    yield Step(own)
    current = own
    # the model's own config may lie off the space's grid (a delay the space does not
    # list): along the other fields it then has no neighbours, so the ascent climbs from
    # the grid's variant nearest to it (the own config stays measured, as the reference)
    grid = [v for v in variants if v is not own]
    if grid and any(own.fields.get(k) not in [v.fields.get(k) for v in grid] for k in keys):
        current = min(grid, key=lambda v: sum(v.fields.get(k) != own.fields.get(k) for k in keys))
        tried.add(current.name)
        yield Step(current, answer_loads(own.name))  # compared with no one: the climb starts here
    moved = True
    while moved:
        moved = False
        for key in keys:
            line = _line(variants, current, key)
            for candidate in line:
                if candidate.name not in tried:
                    tried.add(candidate.name)
                    yield Step(candidate, answer_loads(current.name), current.name)
            best = max([current, *line], key=lambda v: _finite(score_of(v.name)))
            if best.name != current.name and _finite(score_of(best.name)) > _finite(score_of(current.name)):
                current, moved = best, True


def coordinate_ascent(variants: Sequence[VariantLike], score_of: Callable[[str], float]) -> Iterator[VariantLike]:
    """:func:`climb`'s variants, without where their searches start."""
    return (step.variant for step in climb(variants, score_of))


def _line(variants: Sequence[VariantLike], current: VariantLike, key: str) -> list[VariantLike]:
    """The variants that differ from ``current`` in ``key`` only."""
    others = {k: v for k, v in current.fields.items() if k != key}
    return [v for v in variants if {k: x for k, x in v.fields.items() if k != key} == others
            and v.name != current.name]


def _finite(score: float) -> float:
    return score if math.isfinite(score) else -math.inf
