"""``quick``: which variants of a space a plan measures, chosen as the figures come in.

The planner (planning/planner.py) hands this module the space's variants and a way to read
the objective of a variant measured so far; it yields the next variant to measure.
docs/planning.md says why this search and what it assumes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol


class VariantLike(Protocol):
    """What the planner needs of a variant (planning/space.py's ``Variant``)."""

    @property
    def name(self) -> str: ...

    @property
    def fields(self) -> Mapping[str, Any]: ...  # the value of each field the space sets

    @property
    def original(self) -> bool: ...  # its config is the model's own



def coordinate_ascent(variants: Sequence[VariantLike], score_of: Callable[[str], float]) -> Iterator[VariantLike]:
    """The variants ``quick`` measures, one at a time: from the model's own config (the
    variant that changes nothing, else the first), each field in turn: its other values
    with every other field kept, moving to the best of them where it beats the current
    one; again over all fields until a round moves nowhere. ``score_of(name)`` reads the
    objective of a variant measured so far (NaN when it fails the constraints).

    Why coordinate ascent: the fields of a Triton config act mostly one at a time on a
    served rate (instances on compute overlap, max batch and delay on batching), so a
    line search per field finds a good corner of the space in the sum of the fields'
    sizes instead of their product, and every step is a variant someone can read. It can
    stop at a local best where two fields only help together; `brute` measures it all.
    """
    by_name = {v.name: v for v in variants}
    keys = list(dict.fromkeys(key for v in variants for key in v.fields))
    own = next((v for v in variants if v.original), variants[0])
    tried = {own.name}
    yield own
    current = own
    # the model's own config may lie off the space's grid (a delay the space does not
    # list): along the other fields it then has no neighbours, so the ascent climbs from
    # the grid's variant nearest to it (the own config stays measured, as the reference)
    grid = [v for v in variants if v is not own]
    if grid and any(own.fields.get(k) not in [v.fields.get(k) for v in grid] for k in keys):
        current = min(grid, key=lambda v: sum(v.fields.get(k) != own.fields.get(k) for k in keys))
        tried.add(current.name)
        yield current
    moved = True
    while moved:
        moved = False
        for key in keys:
            others = {k: v for k, v in current.fields.items() if k != key}
            line = [v for v in variants if {k: x for k, x in v.fields.items() if k != key} == others
                    and v.name != current.name]
            for candidate in line:
                if candidate.name not in tried:
                    tried.add(candidate.name)
                    yield candidate
            best = max([current, *line], key=lambda v: _finite(score_of(v.name)))
            if best.name != current.name and _finite(score_of(best.name)) > _finite(score_of(current.name)):
                current, moved = by_name[best.name], True
    if _finite(score_of(own.name)) > _finite(score_of(current.name)):
        return  # the model's own config beat every step: nothing more to climb


def _finite(score: float) -> float:
    return score if math.isfinite(score) else -math.inf
