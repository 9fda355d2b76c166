"""The packing plan (issue 19): the fewest GPUs that serve every model's target rate, and
which models (with which share of each target) go on which GPU. Pure logic over measured
figures; the co-located measurement that checks a plan is not here (docs/packing.md).

The model it solves (docs/packing.md says more):

- A model's replica on a GPU costs its memory above the server's baseline; a GPU holds at
  most one replica of a model, and the replicas on it must fit its memory less the headroom.
- A GPU's compute is shared in time: on one GPU, the sum over its models of (the rate the
  replica serves / the model's capacity on that GPU beside those neighbours) is at most
  1 - headroom. A capacity beside neighbours comes from the interference table (measured
  together); where the table lacks the set, pairs measured are multiplied and unmeasured
  pairs count at ``assumed_factor`` (1: no interference), and the plan says which GPUs
  rest on such assumed figures.
- A model whose target is above what one GPU serves is split over several GPUs.

How it is solved: every set of models that fits one GPU's memory is a column of a MILP
(``scipy.optimize.milp``, HiGHS): an integer count of GPUs holding that set and, per model
of the set, the share of its target they serve. The GPUs of one set split their share
evenly, so the MILP is exact for any capacities a set gives, not only additive ones. Past
``exact_max_sets`` sets (the columns grow as 2^models) it is first-fit decreasing instead,
and the answer says which it is.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from analyzer_widgets.config import Checked, setting
from analyzer_widgets.errors import ConfigError
from analyzer_widgets.planning.budget import plain_number
from analyzer_widgets.planning.planner import (
    ANSWER_ROLES,
    Constraints,
    PlanResult,
    _bound,
    best_answer,
    variant_memory_mb,
    why_no_answer,
)
from analyzer_widgets.results import SweepResult
from analyzer_widgets.schema import Status, load_of

#: (a model, the other models on its GPU) -> its throughput within the budget there, infer/s
Interference = Mapping[tuple[str, frozenset[str]], float]

#: what a sum may overshoot its limit by (a share of a GPU, or MB): HiGHS's rows hold to 1e-7
_TOLERANCE = 1e-6


class Method(str, enum.Enum):
    """How the GPU count was found."""

    EXACT = "exact"  # the MILP solver proved it the fewest
    TIME_LIMIT = "time_limit"  # the solver's best when its time limit came, not proven the fewest
    HEURISTIC = "heuristic"  # first-fit decreasing, not proven the fewest


@dataclass(frozen=True)
class ModelNeed:
    """What one model needs: one replica's memory, what one GPU serves of it alone within
    the latency budget (ideally the low end of its 95% interval), and the rate to serve."""

    model: str
    memory_mb: float  # one replica's memory above the server's baseline
    capacity: float  # infer/s one GPU serves of it alone, within the budget
    target_rate: float  # infer/s to serve in all
    source: str = ""  # where the figures came from


@dataclass(frozen=True)
class Gpus:
    """The GPUs to pack onto, all alike; their count is what the plan minimises."""

    memory_mb: float  # memory models may use on one GPU: NVML's total less the empty server's, or a cap
    headroom_pct: float = 20.0  # compute kept free for bursts
    memory_headroom_pct: float | None = None  # memory kept free; None: the same as headroom_pct

    @property
    def compute_limit(self) -> float:
        return 1 - self.headroom_pct / 100

    @property
    def memory_limit_mb(self) -> float:
        headroom = self.headroom_pct if self.memory_headroom_pct is None else self.memory_headroom_pct
        return self.memory_mb * (1 - headroom / 100)


@dataclass(frozen=True)
class PackSettings:
    assumed_factor: float = 1.0  # a capacity beside an unmeasured neighbour: alone x this
    time_limit_s: float = 10.0  # the MILP solver's limit; its best by then is kept
    exact_max_sets: int = 1024  # above this many sets of models that fit one GPU: the heuristic


@dataclass(frozen=True)
class Replica:
    """One model on one GPU."""

    model: str
    rate: float  # infer/s this replica serves
    capacity: float  # infer/s the model serves on this GPU beside its neighbours
    memory_mb: float
    measured: bool  # the capacity was measured with these neighbours (or alone), not assumed

    @property
    def compute_share(self) -> float:
        return self.rate / self.capacity


@dataclass(frozen=True)
class GpuPlan:
    index: int
    replicas: tuple[Replica, ...]
    memory_mb: float  # the GPU's memory for models (Gpus.memory_mb)

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(r.model for r in self.replicas)

    @property
    def memory_used_mb(self) -> float:
        return sum(r.memory_mb for r in self.replicas)

    @property
    def memory_left_mb(self) -> float:
        """What the replicas leave of the GPU's memory, the memory headroom included."""
        return self.memory_mb - self.memory_used_mb

    @property
    def compute_share(self) -> float:
        """The share of the GPU's time its replicas use at their rates (at most 1 - headroom)."""
        return sum(r.compute_share for r in self.replicas)

    @property
    def assumed(self) -> bool:
        return any(not r.measured for r in self.replicas)


@dataclass(frozen=True)
class PackingPlan:
    """The answer: the GPUs and what each holds. ``sentence`` says it; ``to_frame()`` is a
    row per replica."""

    gpus: tuple[GpuPlan, ...]
    method: Method
    reason: str  # why this method, and what the solver did
    lower_bound: int  # no plan needs fewer GPUs
    needs: tuple[ModelNeed, ...]
    gpu_spec: Gpus
    interference: Interference
    settings: PackSettings
    solve_s: float = 0.0

    @property
    def gpu_count(self) -> int:
        return len(self.gpus)

    @property
    def exact(self) -> bool:
        return self.method is Method.EXACT

    def replicas_of(self, model: str) -> list[tuple[int, float]]:
        """(GPU index, infer/s) of each replica of ``model``."""
        return [(g.index, r.rate) for g in self.gpus for r in g.replicas if r.model == model]

    @property
    def sentence(self) -> str:
        return plan_sentence(self)

    def to_frame(self) -> Any:
        """One row per replica: its GPU, the rate it serves, its capacity there, its share
        of the GPU's compute, and the GPU's totals."""
        import pandas as pd

        targets = {n.model: n.target_rate for n in self.needs}
        records = [{
            "gpu": g.index, "model": r.model, "rate_infer_per_s": r.rate, "target_rate_infer_per_s": targets[r.model],
            "capacity_infer_per_s": r.capacity, "capacity_measured": r.measured, "compute_share": r.compute_share,
            "memory_mb": r.memory_mb, "gpu_compute_share": g.compute_share, "gpu_memory_used_mb": g.memory_used_mb,
            "gpu_memory_left_mb": g.memory_left_mb,
        } for g in self.gpus for r in g.replicas]
        return pd.DataFrame.from_records(records, columns=[
            "gpu", "model", "rate_infer_per_s", "target_rate_infer_per_s", "capacity_infer_per_s",
            "capacity_measured", "compute_share", "memory_mb", "gpu_compute_share", "gpu_memory_used_mb",
            "gpu_memory_left_mb"])

    def to_dict(self) -> dict[str, Any]:
        """For a pack.json: the answer, its method and bound, and what it was planned from."""
        return {
            "gpu_count": self.gpu_count, "method": self.method.value, "reason": self.reason,
            "lower_bound": self.lower_bound, "sentence": self.sentence,
            "gpus": [{"index": g.index, "memory_used_mb": g.memory_used_mb, "memory_left_mb": g.memory_left_mb,
                      "compute_share": g.compute_share,
                      "replicas": [{"model": r.model, "rate": r.rate, "capacity": r.capacity,
                                    "measured": r.measured, "memory_mb": r.memory_mb} for r in g.replicas]}
                     for g in self.gpus],
            "needs": [vars(n) for n in self.needs],
            "gpu_memory_mb": self.gpu_spec.memory_mb, "headroom_pct": self.gpu_spec.headroom_pct,
            "memory_headroom_pct": self.gpu_spec.memory_headroom_pct,
            "interference": [{"model": m, "beside": sorted(others), "capacity": c}
                             for (m, others), c in self.interference.items()],
        }


# -- checking the input ---------------------------------------------------------------------------
def _positive(name: str, value: object, zero: bool = False) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
        raise ConfigError(name, value, f"must be a number {'of 0 or more' if zero else 'above 0'}")
    return number


def _check_gpus(gpus: Gpus) -> None:
    _positive("memory_mb", gpus.memory_mb)
    for name in ("headroom_pct", "memory_headroom_pct"):
        value = getattr(gpus, name)
        if value is None and name == "memory_headroom_pct":
            continue
        number = _positive(name, value, zero=True)
        if number >= 100:
            raise ConfigError(name, value, "must be a percentage from 0 to below 100")


def _check_needs(needs: Sequence[ModelNeed], gpus: Gpus) -> None:
    if not needs:
        raise ConfigError("needs", list(needs), "no models to pack: give at least one")
    seen: set[str] = set()
    for need in needs:
        if need.model in seen:
            raise ConfigError("model", need.model, "is given twice; give each model once, with its whole target")
        seen.add(need.model)
        if need.target_rate is None:
            raise ConfigError(f"target_rate[{need.model!r}]", None, "this model has no target rate; give one")
        _positive(f"target_rate[{need.model!r}]", need.target_rate)
        _positive(f"capacity[{need.model!r}]", need.capacity)
        memory = _positive(f"memory_mb[{need.model!r}]", need.memory_mb, zero=True)
        if memory > gpus.memory_limit_mb:
            raise ConfigError(
                f"memory_mb[{need.model!r}]", need.memory_mb,
                f"one replica needs more than a GPU's {plain_number(gpus.memory_limit_mb)} MB (its "
                f"{plain_number(gpus.memory_mb)} MB less the memory headroom), so it fits no GPU; give the GPUs "
                "more memory or less headroom, or pack a variant of the model that needs less")


def interference_table(entries: Mapping[tuple[str, Iterable[str]], float], models: Iterable[str]) -> Interference:
    """``entries`` keyed by (model, its neighbours: one name, or a tuple or frozenset of
    names; empty for alone), checked against the models packed: each key's model and
    neighbours are among them, and each capacity is a number of 0 or more (0: it does not
    meet its budget beside them).

    >>> table = interference_table({("a", "b"): 300.0, ("c", ("a", "b")): 120.0}, ["a", "b", "c"])
    >>> table[("a", frozenset({"b"}))], table[("c", frozenset({"a", "b"}))]
    (300.0, 120.0)
    """
    names = set(models)
    table: dict[tuple[str, frozenset[str]], float] = {}
    for (model, neighbours), capacity in entries.items():
        others = frozenset([neighbours] if isinstance(neighbours, str) else neighbours)
        key = f"interference[{model!r}, {sorted(others)}]"
        unknown = sorted(({model} | others) - names)
        if unknown or model in others:
            why = f"names {unknown}, not packed here" if unknown else "lists the model among its own neighbours"
            raise ConfigError(key, capacity, why)
        table[(model, others)] = _positive(key, capacity, zero=True)
    return table


# -- the model of one GPU -------------------------------------------------------------------------
@dataclass
class _Problem:
    needs: dict[str, ModelNeed]  # in the order given
    gpus: Gpus
    table: Interference
    assumed_factor: float
    _capacities: dict[frozenset[str], dict[str, tuple[float, bool]]] = field(default_factory=dict)

    def alone(self, model: str) -> float:
        return self.table.get((model, frozenset()), self.needs[model].capacity)

    def capacity(self, model: str, others: frozenset[str]) -> tuple[float, bool]:
        """Its capacity beside ``others``, and whether that figure was measured."""
        measured = self.table.get((model, others))
        if measured is not None:
            return measured, True
        alone = self.alone(model)
        capacity = alone
        for other in sorted(others):  # neighbours' slow-downs compound: the stated assumption
            pair = self.table.get((model, frozenset([other])))
            capacity *= pair / alone if pair is not None else self.assumed_factor
        return capacity, not others

    def capacities(self, models: frozenset[str]) -> dict[str, tuple[float, bool]]:
        if models not in self._capacities:
            self._capacities[models] = {m: self.capacity(m, models - {m}) for m in models}
        return self._capacities[models]

    def fits(self, models: frozenset[str]) -> bool:
        memory = sum(self.needs[m].memory_mb for m in models)
        return memory <= self.gpus.memory_limit_mb + _TOLERANCE and all(
            c > 0 for c, _ in self.capacities(models).values())

    def room(self, rates: Mapping[str, float], model: str) -> float:
        """The rate of ``model`` a GPU serving ``rates`` can add (0 where it does not fit)."""
        together = frozenset(rates) | {model}
        if not self.fits(together):
            return 0.0
        caps = self.capacities(together)
        used = sum(rate / caps[m][0] for m, rate in rates.items())
        return max(0.0, (self.gpus.compute_limit - used) * caps[model][0])

    def share(self, rates: Mapping[str, float]) -> float:
        """The share of a GPU's time that serving ``rates`` (its models together) takes."""
        caps = self.capacities(frozenset(rates))
        return sum(rate / caps[m][0] for m, rate in rates.items())

    def demand(self, model: str) -> float:
        """GPUs of compute the model's target needs at its best capacity anywhere."""
        need = self.needs[model]
        best = max([self.alone(model), *(c for (m, _), c in self.table.items() if m == model)])
        return need.target_rate / best / self.gpus.compute_limit

    def lower_bound(self) -> int:
        """No plan needs fewer GPUs: the compute the targets take at each model's best
        capacity, and the memory one replica of each takes."""
        compute = sum(self.demand(m) for m in self.needs)
        memory = sum(n.memory_mb for n in self.needs.values()) / self.gpus.memory_limit_mb
        # rounded first: a share of 2.0000000001 GPUs is 2 GPUs
        return max(1, math.ceil(round(compute, 9)), math.ceil(round(memory, 9)))


# -- the heuristic: first-fit decreasing ----------------------------------------------------------
def first_fit(problem: _Problem) -> list[dict[str, float]]:
    """Each GPU's rate per model, by first-fit decreasing on each model's dominant resource
    (the larger of its compute and its memory as shares of one GPU): the biggest first, each
    placed on the first GPU with room for some of its rate (beside the neighbours there, whose
    capacities the newcomer may lower), the rest on new GPUs, as many as its rate needs."""
    limit_mb = problem.gpus.memory_limit_mb

    def dominant(model: str) -> float:
        return max(problem.demand(model), problem.needs[model].memory_mb / limit_mb)

    placed: list[dict[str, float]] = []
    for model in sorted(problem.needs, key=dominant, reverse=True):
        target = problem.needs[model].target_rate
        left = target
        for rates in placed:
            if left <= target * 1e-9:
                break
            take = min(left, problem.room(rates, model)) if model not in rates else 0.0
            if take > target * 1e-9:
                rates[model] = take
                left -= take
        while left > target * 1e-9:
            take = min(left, problem.room({}, model))
            placed.append({model: take})
            left -= take
    return placed


# -- the exact solver: a MILP over the sets of models one GPU can hold ----------------------------
class _TooMany(Exception):
    pass


def gpu_sets(problem: _Problem, limit: int) -> list[frozenset[str]] | None:
    """Every set of models one GPU can hold (memory, and a capacity above 0 for each); None
    when there are more than ``limit`` memory-feasible sets."""
    names = list(problem.needs)
    found: list[frozenset[str]] = []

    def grow(start: int, chosen: frozenset[str], memory: float) -> None:
        for i in range(start, len(names)):
            total = memory + problem.needs[names[i]].memory_mb
            if total > problem.gpus.memory_limit_mb + _TOLERANCE:
                continue
            bigger = chosen | {names[i]}
            found.append(bigger)
            if len(found) > limit:
                raise _TooMany
            grow(i + 1, bigger, total)

    try:
        grow(0, frozenset(), 0.0)
    except _TooMany:
        return None
    return [s for s in found if problem.fits(s)]


@dataclass(frozen=True)
class _Solved:
    gpus: list[dict[str, float]]
    optimal: bool
    message: str


@dataclass(frozen=True)
class _Milp:
    """The MILP over ``sets``. Columns: per set S, n_S (GPUs holding S, integer) and, per
    model m of S, z_Sm (the share of m's target they serve). Rows: each model's shares sum
    to 1; per set, sum_m z_Sm * target_m / capacity_m(S) <= (1 - headroom) * n_S; the
    count of GPUs, sum_S n_S, between two bounds; and z_Sm <= n_S, so no share rests on a set
    no GPU holds (a model of tiny compute would otherwise hide there within the tolerance)."""

    problem: _Problem
    sets: list[frozenset[str]]
    members: list[tuple[int, str]]  # the z columns' (set, model), after the n columns
    matrix: Any

    @classmethod
    def build(cls, problem: _Problem, sets: list[frozenset[str]]) -> _Milp:
        from scipy.sparse import coo_matrix

        names = list(problem.needs)
        members = [(s_i, m) for s_i, s in enumerate(sets) for m in names if m in s]
        count_row, link_row = len(names) + len(sets), len(names) + len(sets) + 1
        rows, cols, values = [], [], []
        for col, (s_i, m) in enumerate(members, start=len(sets)):
            rows += [names.index(m), len(names) + s_i, link_row + col - len(sets), link_row + col - len(sets)]
            cols += [col, col, col, s_i]
            values += [1.0, problem.needs[m].target_rate / problem.capacities(sets[s_i])[m][0], 1.0, -1.0]
        for s_i in range(len(sets)):
            rows += [len(names) + s_i, count_row]
            cols += [s_i, s_i]
            values += [-problem.gpus.compute_limit, 1.0]
        shape = (link_row + len(members), len(sets) + len(members))
        return cls(problem, sets, members, coo_matrix((values, (rows, cols)), shape=shape).tocsr())

    def run(self, set_cost: list[float], lower: int, upper: int, time_limit_s: float) -> Any:
        """HiGHS on it: minimise the sum of ``set_cost`` x n_S with lower <= GPUs <= upper."""
        import numpy as np
        from scipy.optimize import Bounds, LinearConstraint, milp

        n_models, n_sets, n_members = len(self.problem.needs), len(self.sets), len(self.members)
        low = np.concatenate([np.ones(n_models), np.full(n_sets, -np.inf), [lower], np.full(n_members, -np.inf)])
        high = np.concatenate([np.ones(n_models), np.zeros(n_sets), [upper], np.zeros(n_members)])
        return milp(np.concatenate([set_cost, np.zeros(n_members)]),
                    integrality=np.concatenate([np.ones(n_sets), np.zeros(n_members)]),
                    bounds=Bounds(0, np.concatenate([np.full(n_sets, upper), np.ones(n_members)])),
                    constraints=LinearConstraint(self.matrix, low, high),
                    options={"time_limit": time_limit_s, "disp": False})


def solve(problem: _Problem, sets: list[frozenset[str]], lower: int, upper: int, time_limit_s: float,
          ) -> _Solved | None:
    """The fewest GPUs by MILP (:class:`_Milp`); None when HiGHS found no answer within the
    time limit. The objective counts GPUs only: a small tie-break for fewer replicas in the
    same objective made HiGHS much slower to prove the count (docs/packing.md); the GPUs of
    a set are filled by :func:`_wrap` instead, which keeps the replicas few."""
    milp = _Milp.build(problem, sets)
    result = milp.run([1.0] * len(sets), lower, upper, time_limit_s)
    if result.x is None:
        return None
    return _Solved(_expand(problem, sets, milp.members, result.x), result.status == 0, str(result.message))


def _expand(problem: _Problem, sets: list[frozenset[str]], members: list[tuple[int, str]],
            x: Any) -> list[dict[str, float]]:
    """The MILP's columns as GPUs: the n_S GPUs of each set S, holding its rate of each model."""
    counts = [round(float(v)) for v in x[:len(sets)]]
    share = {(s_i, m): float(x[col]) for col, (s_i, m) in enumerate(members, start=len(sets))
             if counts[s_i] and x[col] > 1e-9}
    total = {m: sum(z for (_, n), z in share.items() if n == m) for m in problem.needs}
    gpus: list[dict[str, float]] = []
    for s_i, count in enumerate(counts):
        # each model's shares rescaled to sum to 1 exactly: the solver's rows hold to 1e-7
        rates = {m: problem.needs[m].target_rate * z / total[m] for (i, m), z in share.items() if i == s_i}
        gpus += _wrap(problem, rates, count) if rates else []
    return gpus


def _wrap(problem: _Problem, rates: Mapping[str, float], count: int) -> list[dict[str, float]]:
    """``rates`` over ``count`` GPUs by McNaughton's wrap-around rule: the models one after
    another, each GPU filled to the set's mean share before the next, so a model lands on a
    GPU, or on a run of neighbouring ones, and the set has at most len(rates) + count - 1
    replicas instead of len(rates) x count. A GPU that ends up without some model of the set
    serves the others beside fewer neighbours; where the interference table makes that
    slower (a measured figure above a set's), the rates are spread evenly instead."""
    caps = problem.capacities(frozenset(rates))
    mean = sum(rate / caps[m][0] for m, rate in rates.items()) / count
    placed: list[dict[str, float]] = [{} for _ in range(count)]
    gpu, room = 0, mean
    for model, rate in rates.items():
        left = rate / caps[model][0]  # in shares of a GPU
        while left > 1e-12:
            if room <= mean * 1e-9 and gpu < count - 1:
                gpu, room = gpu + 1, mean
            take = left if gpu == count - 1 else min(left, room)
            placed[gpu][model] = placed[gpu].get(model, 0.0) + take * caps[model][0]
            left, room = left - take, room - take
    limit = problem.gpus.compute_limit + _TOLERANCE
    if all(problem.share(rates_on) <= limit for rates_on in placed if rates_on):
        return [rates_on for rates_on in placed if rates_on]
    return [{m: rate / count for m, rate in rates.items()} for _ in range(count)]


def tidy(problem: _Problem, placed: list[dict[str, float]]) -> list[dict[str, float]]:
    """Fewer replicas at the same count of GPUs: a replica whose whole rate fits the room of
    the model's other replicas (with their neighbours' capacities as they are) moves there,
    when the GPU it leaves still keeps its limit beside one neighbour fewer. Smallest first,
    until nothing moves. Neither the solver's count nor first-fit's grows; a GPU left empty
    goes (a local search: the fewest replicas is not proven)."""
    gpus = [dict(rates) for rates in placed]
    moved = True
    while moved:
        moved = False
        for source, model in sorted(((g, m) for g, rates in enumerate(gpus) for m in rates),
                                    key=lambda gm: gpus[gm[0]][gm[1]]):
            if model in gpus[source] and _move(problem, gpus, source, model):
                moved = True
        gpus = [rates for rates in gpus if rates]
    return gpus


def _move(problem: _Problem, gpus: list[dict[str, float]], source: int, model: str) -> bool:
    """Move ``model``'s rate on GPU ``source`` to its other replicas, if they have room for
    all of it and ``source`` keeps its limit without it; True when it moved."""
    rest = {m: r for m, r in gpus[source].items() if m != model}
    if rest and problem.share(rest) > problem.gpus.compute_limit + _TOLERANCE:
        return False
    left, takes = gpus[source][model], []
    for target, rates in enumerate(gpus):
        if target != source and model in rates and left > 0:
            others = {m: r for m, r in rates.items() if m != model}
            take = min(left, problem.room(others, model) - rates[model])
            if take > 0:
                takes.append((target, take))
                left -= take
    if left > gpus[source][model] * 1e-9:
        return False
    for target, take in takes:
        gpus[target][model] += take
    gpus[source] = rest
    return True


# -- pack -----------------------------------------------------------------------------------------
def pack(needs: Sequence[ModelNeed], gpus: Gpus,
         interference: Mapping[tuple[str, Iterable[str]], float] | None = None, *,
         assumed_factor: float = 1.0, time_limit_s: float = 10.0, exact_max_sets: int = 1024) -> PackingPlan:
    """The fewest GPUs (of ``gpus``) that serve every need's target rate within each GPU's
    memory and compute less the headroom, and which models share each.

    >>> needs = [ModelNeed("a", 3000, 1000, 500), ModelNeed("b", 3000, 1000, 200)]
    >>> pack(needs, Gpus(16000), {("a", "b"): 900, ("b", "a"): 900}).sentence
    '1 GPU (the fewest): GPU 0 holds a (500 infer/s) and b (200 infer/s), 78% of its compute and 6,000 of 16,000 MB'
    """
    _check_gpus(gpus)
    _check_needs(needs, gpus)
    settings = PackSettings(_positive("assumed_factor", assumed_factor, zero=True),
                            _positive("time_limit_s", time_limit_s), int(_positive("exact_max_sets", exact_max_sets)))
    table = interference_table(interference or {}, [n.model for n in needs])
    problem = _Problem({n.model: n for n in needs}, gpus, table, settings.assumed_factor)
    lower, started = problem.lower_bound(), time.monotonic()
    heuristic = first_fit(problem)
    if len(heuristic) == lower:
        chosen, method, reason = heuristic, Method.EXACT, "first-fit decreasing met the lower bound, so it is the fewest"
    elif (sets := gpu_sets(problem, settings.exact_max_sets)) is None:
        chosen, method, reason = heuristic, Method.HEURISTIC, (
            f"first-fit decreasing: more than {settings.exact_max_sets} sets of these {len(needs)} models fit one "
            "GPU's memory, too many for the exact solver (exact_max_sets)")
    else:
        solved = solve(problem, sets, lower, len(heuristic), settings.time_limit_s)
        chosen, method, reason = _pick(heuristic, solved, settings.time_limit_s)
    planned = _gpu_plans(problem, tidy(problem, chosen))
    if len(planned) == lower and method is not Method.EXACT:  # the solver's best or tidying reached the bound
        method, reason = Method.EXACT, f"{reason}; but it meets the lower bound, so it is the fewest"
    return PackingPlan(planned, method, reason, lower, tuple(needs), gpus, table, settings, time.monotonic() - started)


def _pick(heuristic: list[dict[str, float]], solved: _Solved | None,
          time_limit_s: float) -> tuple[list[dict[str, float]], Method, str]:
    if solved is None:
        return heuristic, Method.HEURISTIC, (f"first-fit decreasing: the MILP solver found no answer within its "
                                             f"time limit of {time_limit_s:g} s")
    if solved.optimal:
        return solved.gpus, Method.EXACT, "the MILP solver (HiGHS) proved it the fewest"
    if len(solved.gpus) <= len(heuristic):
        return solved.gpus, Method.TIME_LIMIT, (f"the MILP solver's best when its time limit of {time_limit_s:g} s "
                                                f"came ({solved.message}), not proven the fewest")
    return heuristic, Method.HEURISTIC, (f"first-fit decreasing: it beat the MILP solver's best within its time "
                                         f"limit of {time_limit_s:g} s")


def _gpu_plans(problem: _Problem, placed: list[dict[str, float]]) -> tuple[GpuPlan, ...]:
    """The GPUs in a reading order: by their models' order in the needs, busiest first."""
    order = {m: i for i, m in enumerate(problem.needs)}
    plans = []
    for rates in placed:
        caps = problem.capacities(frozenset(rates))
        plans.append(tuple(Replica(m, rates[m], caps[m][0], problem.needs[m].memory_mb, caps[m][1])
                           for m in sorted(rates, key=order.__getitem__)))
    plans.sort(key=lambda rs: ([order[r.model] for r in rs], -sum(r.compute_share for r in rs)))
    return tuple(GpuPlan(i, replicas, problem.gpus.memory_mb) for i, replicas in enumerate(plans))


def plan_sentence(plan: PackingPlan, validated: Iterable[int] = ()) -> str:
    """The plan in plain words: how many GPUs, how sure, and what each holds. ``validated``:
    GPUs whose models passed when measured together, so their capacities are no longer
    only assumed."""
    count = plan.gpu_count
    how = {Method.EXACT: "the fewest",
           Method.TIME_LIMIT: "the solver's best in its time limit, not proven the fewest",
           Method.HEURISTIC: "by first-fit decreasing, not proven the fewest"}[plan.method]
    if plan.method is not Method.EXACT:
        how += f"; at least {plan.lower_bound} needed"
    targets = {n.model: n.target_rate for n in plan.needs}
    split = {m for m in targets if len(plan.replicas_of(m)) > 1}
    said = []
    for gpu in plan.gpus:
        parts = [f"{r.model} ({plain_number(r.rate)}"
                 + (f" of {plain_number(targets[r.model])}" if r.model in split else "") + " infer/s)"
                 for r in gpu.replicas]
        held = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        said.append(f"GPU {gpu.index} holds {held}, {plain_number(100 * gpu.compute_share, 2)}% of its compute "
                    f"and {plain_number(gpu.memory_used_mb)} of {plain_number(gpu.memory_mb)} MB")
    text = f"{count} GPU{'s' if count != 1 else ''} ({how}): " + "; ".join(said)
    passed = set(validated)
    assumed = [str(g.index) for g in plan.gpus if g.assumed and g.index not in passed]
    if assumed:
        text += (f" (GPU {', '.join(assumed)}: capacities beside neighbours assumed, not measured together; "
                 "measure them together and re-plan)")
    return text


# -- re-planning with what was measured together --------------------------------------------------
def replan(plan: PackingPlan, measured: Mapping[int, Mapping[str, float]]) -> PackingPlan:
    """Plan again, once, with capacities measured together: per GPU of ``plan`` (by index),
    each model's throughput within its budget while the GPU's other models ran beside it.
    They join the plan's interference table (a figure measured for a set replaces an earlier
    one) and the same needs, GPUs and settings are packed again.

    A figure should be the model's capacity beside its neighbours (the highest load within
    the budget while they serve their rates). Where the measurement only shows the planned
    rate was met, the rate is a lower bound of the capacity, and re-planning with it is
    cautious: it may add a GPU the models did not need.
    """
    by_index = {g.index: g for g in plan.gpus}
    entries: dict[tuple[str, Iterable[str]], float] = {key: c for key, c in plan.interference.items()}
    for index, capacities in measured.items():
        if index not in by_index:
            raise ConfigError(f"measured[{index!r}]", dict(capacities),
                              f"the plan has no GPU {index!r}; its GPUs are 0 to {plan.gpu_count - 1}")
        models = frozenset(by_index[index].models)
        for model, capacity in capacities.items():
            if model not in models:
                raise ConfigError(f"measured[{index}][{model!r}]", capacity,
                                  f"GPU {index} of the plan holds {sorted(models)}, not {model!r}")
            entries[(model, models - {model})] = _positive(f"measured[{index}][{model!r}]", capacity, zero=True)
    settings = plan.settings
    return pack(plan.needs, plan.gpu_spec, entries, assumed_factor=settings.assumed_factor,
                time_limit_s=settings.time_limit_s, exact_max_sets=settings.exact_max_sets)


# -- the needs, from measured results -------------------------------------------------------------
def need_from_rows(model: str, rows: Sequence[Mapping[str, Any]], baseline: Mapping[str, Any] | None,
                   constraints: Constraints, target_rate: float, *, interval_low: bool = True) -> ModelNeed:
    """A model's need from its measured rows (one model, one variant): the figures of its best
    answer within the budget (planner.best_answer: a budget search's answer, or the best grid
    point within the budget). Its capacity is the low end of the throughput's 95% interval
    (what the next run may give; ``interval_low=False``: the figure itself); its memory is
    planner.variant_memory_mb's (GPU memory above the baseline, or on a CPU machine the
    server's resident memory above the baseline's)."""
    answer = best_answer(rows, constraints)
    if answer is None:
        raise ConfigError(f"results[{model!r}]", len(rows), f"give no capacity: {why_no_answer(rows, constraints)}")
    throughput = float(answer["throughput_infer_per_s"])
    capacity = _bound(answer, "throughput_infer_per_s", high=False) if interval_low else throughput
    if not capacity > 0:
        raise ConfigError(f"capacity[{model!r}]", capacity,
                          "the lower end of its throughput's 95% interval is 0 (its windows scattered too much); "
                          "measure it longer, or pack with interval_low=False (--no-interval-low)")
    memory = variant_memory_mb(answer, baseline)
    if not math.isfinite(memory):
        raise ConfigError(f"memory_mb[{model!r}]", memory,
                          f"is unknown: its answer ({load_of(answer)}) has no GPU memory above the baseline, nor "
                          f"a resident memory with a baseline to subtract it from ({_memory_figures(answer, baseline)})")
    variant = str(answer.get("variant") or "")
    source = (f"{model}{f' variant {variant}' if variant else ''} at batch {answer.get('batch_size')}, "
              f"{load_of(answer)}: {plain_number(throughput)} infer/s"
              + (f" (counted at {plain_number(capacity)}, its interval's low end)" if capacity != throughput else "")
              + f", {plain_number(max(memory, 0.0))} MB")
    return ModelNeed(model, max(memory, 0.0), capacity, target_rate, source)


def _memory_figures(answer: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> str:
    """The figures variant_memory_mb read, for an error that says which one is missing."""
    def figure(row: Mapping[str, Any] | None, column: str) -> str:
        return "no baseline row" if row is None else f"{column}={float(row.get(column, math.nan)):.1f}"
    return (f"answer {figure(answer, 'gpu_memory_above_baseline_mb')}, {figure(answer, 'server_rss_max_mb')}; "
            f"baseline {figure(baseline, 'server_rss_max_mb')}")


def needs_from_sweep(result: SweepResult, target_rates: Mapping[str, float], constraints: Constraints, *,
                     variants: Mapping[str, str] | None = None, interval_low: bool = True) -> list[ModelNeed]:
    """Each model of a ``profile`` (or ``plan``) result's rows, with its target rate. Every
    model there needs a target, and every target a model there. Where a model's rows hold
    several variants (a plan's sweep), ``variants`` names the one to pack."""
    variants = variants or {}
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    for row in result.rows:
        by_model.setdefault(str(row["model"]), []).append(row)
    extra = sorted(set(target_rates) - set(by_model))
    if extra:
        raise ConfigError("target_rates", dict(target_rates),
                          f"names {extra}, not in the results (they hold {sorted(by_model)})")
    needs = []
    for model, rows in by_model.items():
        if model not in target_rates:
            raise ConfigError(f"target_rate[{model!r}]", None,
                              f"the results hold {model!r} but no target rate was given for it; give one "
                              f"({model}=RATE) or leave it out of the results")
        named = variants.get(model)
        kinds = sorted({str(r.get("variant") or "") for r in rows})
        if named is None and len(kinds) > 1:
            raise ConfigError(f"variants[{model!r}]", None,
                              f"its rows hold variants {kinds}: name the one to pack (or pack the PlanResult)")
        chosen = [r for r in rows if named is None or str(r.get("variant") or "") == named]
        needs.append(need_from_rows(model, chosen, result.baseline_row, constraints, target_rates[model],
                                    interval_low=interval_low))
    return needs


def need_from_plan(plan: PlanResult, target_rate: float, *, interval_low: bool = True) -> ModelNeed:
    """A ``plan``'s model at its recommended variant: that variant's rows, as
    :func:`need_from_rows` reads them."""
    best = plan.best
    if best is None:
        raise ConfigError(f"plan[{plan.model!r}]", plan.sentence, "recommends no variant, so it gives no capacity")
    rows = [r for r in plan.sweep.rows if str(r.get("variant") or "") == best.variant]
    return need_from_rows(plan.model, rows, plan.sweep.baseline_row, plan.constraints, target_rate,
                          interval_low=interval_low)


def gpu_memory_mb(baseline: Mapping[str, Any], gpu_count: int = 1) -> float:
    """The memory models may use on one GPU, from a sweep's baseline row: the monitored GPUs'
    memory less what was used with the server up and no model loaded (its own context and
    anything else there), split evenly over ``gpu_count`` GPUs (the baseline sums them)."""
    total = float(baseline.get("gpu_memory_total_mb", math.nan))
    used = float(baseline.get("gpu_memory_max_mb", math.nan))
    if not (math.isfinite(total) and math.isfinite(used)):
        raise ConfigError("gpu_memory_mb", total,
                          "the baseline has no GPU memory (a machine without a GPU?): give the memory per GPU "
                          "(on a CPU machine, the host memory the models may use)")
    return (total - used) / gpu_count


# -- the pack command's own settings --------------------------------------------------------------
def parse_target_rates(name: str, value: object) -> dict[str, float]:
    """Each model's target rate, typed as ``model=rate`` items separated by commas (the
    ``--target-rate`` flag's text) or given as a mapping; each a number of infer/s above 0.
    Which models they name is checked against the models packed by :func:`target_rates_for`.

    >>> parse_target_rates("target_rates", "a=500, b=2e3")
    {'a': 500.0, 'b': 2000.0}
    """
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, str) or (isinstance(value, Sequence) and all(isinstance(v, str) for v in value)):
        texts = [value] if isinstance(value, str) else list(value)  # a repeated flag gives a list
        items = []
        for item in (part.strip() for text in texts for part in text.split(",")):
            if not item:
                continue
            model, sep, rate = (part.strip() for part in item.partition("="))
            if not sep or not model:
                raise ConfigError(name, item, "is not model=rate: give one per model, as mlp_numpy=500")
            if not rate:
                raise ConfigError(f"{name}[{model!r}]", item, "has no rate after '=': give infer/s, as "
                                                              f"{model}=500")
            items.append((model, rate))
    else:
        raise ConfigError(name, value, "must be model=rate items separated by commas, or a mapping of model to rate")
    if not items:
        raise ConfigError(name, value, "names no model: give each model's target rate, as a=500,b=200")
    rates: dict[str, float] = {}
    for model, rate in items:
        field_name = f"{name}[{model!r}]"
        if model in rates:
            raise ConfigError(field_name, rate, "is given twice: give each model one target rate")
        rates[model] = _positive(field_name, rate)
    return rates


def target_rates_for(rates: Mapping[str, float], models: Sequence[str], name: str = "target_rates") -> dict[str, float]:
    """``rates`` checked against the models packed: one for each, none for another model."""
    for model, rate in rates.items():
        if model not in models:
            raise ConfigError(f"{name}[{model!r}]", rate, f"{model!r} is not among the models packed "
                                                          f"({', '.join(models)}): pack it too, or leave it out")
    missing = [m for m in models if m not in rates]
    if missing:
        raise ConfigError(f"{name}[{missing[0]!r}]", None, f"the model is packed but has no target rate: "
                                                           f"give {missing[0]}=RATE")
    return {m: rates[m] for m in models}


def _optional_memory(name: str, value: object) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _positive(name, value)


def _headroom_pct(name: str, value: object) -> float:
    number = _positive(name, value, zero=True)
    if number >= 100:
        raise ConfigError(name, value, "must be a percentage from 0 to below 100")
    return number


def _earlier(name: str, value: object) -> tuple[Any, ...]:
    """Earlier results to read the needs from: one, or a list (a repeated flag's)."""
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class PackOptions(Checked):
    """The pack command's own settings, besides the sweep's (each a flag of
    ``analyzer-widgets pack``; docs/packing.md)."""

    target_rates: Mapping[str, float] = setting(
        default_factory=dict, check=parse_target_rates, flags=("--target-rate",), metavar="MODEL=RATE,...",
        help="each model's target rate in infer/s, as a=500,b=200 (required)")
    gpu_memory_mb: float | None = setting(
        None, check=_optional_memory, flags=("--gpu-memory-mb",), panel="GPU memory (MB)",
        default_text="NVML's total less the empty server's; on a CPU machine the host's memory less it",
        help="the memory models may use on one GPU, in MB")
    headroom_pct: float = setting(
        20.0, check=_headroom_pct, flags=("--headroom-pct",), panel="Headroom %",
        help="the share of each GPU's compute and memory kept free for bursts")
    validate: bool = setting(
        True, flags=("--validate",), panel="Validate",
        help="measure each GPU's models together at their planned rates, and re-plan once where one fails")
    interval_low: bool = setting(
        True, flags=("--interval-low",),
        help="count each model's capacity alone at the low end of its throughput's 95% interval (off: the figure "
             "itself, where short windows scattered too much for an interval)")
    earlier: tuple[Any, ...] = setting(
        default_factory=tuple, check=_earlier, flags=("--earlier",), repeat=True, metavar="DIR",
        default_text="measured now",
        help="read the models' needs from earlier results (an export folder of a sweep or plan) instead of "
             "measuring them")


def host_gpu_memory_mb(host_total_mb: float, baseline: Mapping[str, Any]) -> float:
    """On a CPU machine, the "GPU" the models share is the host: its memory less what the
    empty server holds resident (the baseline's ``server_rss_max_mb``).

    >>> host_gpu_memory_mb(8000.0, {"server_rss_max_mb": 150.0})
    7850.0
    """
    resident = float(baseline.get("server_rss_max_mb", math.nan))
    if not math.isfinite(resident):
        raise ConfigError("gpu_memory_mb", None, "the baseline has no resident memory of the empty server to "
                                                 "subtract from the host's: give --gpu-memory-mb")
    return host_total_mb - resident


# -- judging a GPU measured together --------------------------------------------------------------
#: a rate met by this share less still counts as met, for a rate not quite even over the span
#: (the interval's upper end allows for the windows' scatter; :func:`rate_shortfall_allowed`
#: for the requests at the span's ends)
RATE_SLACK = 0.01


#: the schedules of a server that kept up (the client's own lag aside): only then are the
#: requests in flight at a span's end the next span's answers rather than a growing queue
KEPT_UP = ("kept", "client_behind")


def rate_shortfall_allowed(row: Mapping[str, Any], rate: float, batch: int) -> float:
    """The infer/s by which ``row``, measured at a planned ``rate``, may fall short of it and
    still have met it. A span of T seconds counts the answers that arrived in it, and an
    open-loop schedule's sends at its ends are off by up to one (where the cut falls between
    two sends) plus, where the server kept up, those in flight at the end (answered in the
    next span): that many requests over T. Short spans on a busy machine were one answer
    short of a met rate (29 of 30 over 0.75 s: 38.6 infer/s of 40). Where the server fell
    behind (sends waited for a slot, or piled up) the requests in flight are its queue, and
    the shortfall is the point: not excused."""
    measured_s = float(row.get("measured_s", math.nan))
    in_flight = float(row.get("in_flight_mean", math.nan))
    queued = in_flight if math.isfinite(in_flight) and row.get("schedule") in KEPT_UP else 0.0
    edge = (1.0 + queued) * max(1, batch) / measured_s if math.isfinite(measured_s) and measured_s > 0 else 0.0
    return rate * RATE_SLACK + edge


@dataclass(frozen=True)
class ModelCheck:
    """One model of a GPU measured beside its neighbours at its planned rate."""

    model: str
    rate: float  # infer/s planned on this GPU
    batch: int
    throughput: float  # infer/s measured together
    throughput_high: float  # its 95% interval's upper end (the figure where it has none)
    latency_ms: float  # the budget's statistic, measured together
    status: str
    passed: bool
    reason: str  # why it failed ("" when it passed)


@dataclass(frozen=True)
class GpuCheck:
    """A GPU of a plan whose models were measured together: passed when every model met its
    budget and its planned rate."""

    gpu: int
    models: tuple[str, ...]
    passed: bool
    figures: tuple[ModelCheck, ...]
    reason: str  # what failed, or what it measured
    label: str = ""  # its group in the co-located rows (metrics-colocated.csv)

    def to_dict(self) -> dict[str, Any]:
        return {"gpu": self.gpu, "models": list(self.models), "passed": self.passed, "reason": self.reason,
                "label": self.label, "figures": [vars(f) for f in self.figures]}


def judge_model(model: str, rate: float, batch: int, row: Mapping[str, Any] | None,
                constraints: Constraints) -> ModelCheck:
    """Whether ``row`` (the model measured together at ``rate`` infer/s) met the budget and
    the rate: measured (ok or unstable) with no failed request, its budget's statistic within
    the budget, and its throughput's interval reaching the rate (less :func:`rate_shortfall_allowed`).

    >>> judge_model("a", 100, 1, {"status": "ok", "error_count": 0, "throughput_infer_per_s": 99.0,
    ...                           "latency_p99_ms": 30.0}, Constraints(20)).reason
    'a: p99 30 ms, beyond the budget of 20 ms'
    """
    column = constraints.statistic.column
    if row is None:
        return ModelCheck(model, rate, batch, math.nan, math.nan, math.nan, "", False, f"{model}: not measured")
    status = str(row.get("status", ""))
    throughput = float(row.get("throughput_infer_per_s", math.nan))
    high = _bound(row, "throughput_infer_per_s", high=True) if math.isfinite(throughput) else math.nan
    latency = float(row.get(column, math.nan))
    budget = constraints.latency_budget_ms
    why = []
    if status not in (Status.OK.value, Status.UNSTABLE.value):
        detail = str(row.get("reason") or "").splitlines()
        why.append(f"{status or 'not measured'}" + (f" ({detail[0]})" if detail else ""))
    else:
        errors = int(row.get("error_count") or 0)
        if errors:
            why.append(f"{errors} failed requests")
        if not latency <= budget:
            why.append(f"{constraints.statistic.label} {plain_number(latency, 3)} ms, beyond the budget of "
                       f"{plain_number(budget)} ms")
        if row.get("schedule") == "saturated":
            why.append("its requests piled up without bound (schedule saturated)")
        elif not high >= rate - rate_shortfall_allowed(row, rate, batch):
            why.append(f"served {plain_number(throughput)} infer/s (at most {plain_number(high)} by its interval) "
                       f"of the {plain_number(rate)} planned")
    return ModelCheck(model, rate, batch, throughput, high, latency, status, not why,
                      f"{model}: {'; '.join(why)}" if why else "")


def judge_gpu(gpu: GpuPlan, batches: Mapping[str, int], rows: Mapping[str, Mapping[str, Any]],
              constraints: Constraints, label: str = "") -> GpuCheck:
    """A GPU of a plan against its models' rows measured together (by model): passed when
    each replica met the budget at its planned rate (:func:`judge_model`)."""
    figures = tuple(judge_model(r.model, r.rate, batches.get(r.model, 1), rows.get(r.model), constraints)
                    for r in gpu.replicas)
    passed = all(f.passed for f in figures)
    if passed:
        reason = "measured together, " + ", ".join(
            f"{f.model} {plain_number(f.throughput)} infer/s at {constraints.statistic.label} "
            f"{plain_number(f.latency_ms, 3)} ms" for f in figures) + f", within {constraints.budget_text()}"
    else:
        reason = "; ".join(f.reason for f in figures if not f.passed)
    return GpuCheck(gpu.index, gpu.models, passed, figures, reason, label)


def covered(gpu: GpuPlan, checks: Iterable[GpuCheck]) -> GpuCheck | None:
    """A passed check of another plan that answers for ``gpu``: the same models, each at a
    rate at least this GPU's (so a re-plan need not measure that set again)."""
    rates = {r.model: r.rate for r in gpu.replicas}
    for check in checks:
        if check.passed and set(check.models) == set(rates) and all(
                f.rate >= rates[f.model] * (1 - _TOLERANCE) for f in check.figures):
            return GpuCheck(gpu.index, gpu.models, True, check.figures,
                            f"{check.reason} (as GPU {check.gpu} of the first plan, at rates as high)", check.label)
    return None


def capacity_of(answer: Mapping[str, Any] | None) -> float | None:
    """A searched member's capacity beside its neighbours from its answer row: the low end
    of its throughput's interval; 0 where no load was within the budget; None when it was
    not measured."""
    if answer is None or answer.get("status") not in (Status.OK.value, Status.UNSTABLE.value):
        return None
    if answer.get("search") not in ANSWER_ROLES:
        return 0.0
    return max(0.0, _bound(answer, "throughput_infer_per_s", high=False))


def capacities_together(failed: Sequence[GpuCheck], answers: Mapping[int, Mapping[str, Mapping[str, Any]]]
                        ) -> tuple[dict[int, dict[str, float]], list[str]]:
    """The capacities to re-plan with, per failed GPU and model: each searched member's
    answer beside the others (``answers``: by GPU, then model; :func:`capacity_of`). Where a
    search gave no answer, what the failed measurement gives: a model that met its planned
    rate there counts at the throughput it served (a lower bound), one that did not as not
    fitting beside them (0); a note says so."""
    capacities: dict[int, dict[str, float]] = {}
    notes: list[str] = []
    for check in failed:
        found: dict[str, float] = {}
        for figures in check.figures:
            capacity = capacity_of(answers.get(check.gpu, {}).get(figures.model))
            if capacity is None:
                capacity = figures.throughput if figures.passed else 0.0
                notes.append(f"{figures.model} on GPU {check.gpu}: its capacity together was not searched to an "
                             "answer, so " + (f"the {plain_number(capacity)} infer/s it served there at its planned "
                                              "rate (a lower bound) is planned with" if figures.passed
                                              else "it is planned as not fitting beside those models"))
            found[figures.model] = capacity
        capacities[check.gpu] = found
    return capacities, notes


def gpus_to_check(plan: PackingPlan, every: bool = False) -> list[int]:
    """The GPUs of ``plan`` that validation measures: those holding two or more models (a
    GPU of one model is covered by that model's measurement alone in the same run), or
    ``every`` one, where the needs were read from earlier results: what they claim of a
    model alone was not measured in this run, and may no longer hold (a new version of the
    model, another machine)."""
    return [g.index for g in plan.gpus if every or len(g.replicas) > 1]


def still_to_measure(plan: PackingPlan, first_checks: Sequence[GpuCheck],
                     every: bool = False) -> tuple[dict[int, GpuCheck], list[int]]:
    """After a re-plan: the checks that already answer for its GPUs to check
    (:func:`gpus_to_check`; the same models passed at rates as high, :func:`covered`), and
    those left to measure."""
    checks: dict[int, GpuCheck] = {}
    left: list[int] = []
    for gpu in (plan.gpus[i] for i in gpus_to_check(plan, every)):
        found = covered(gpu, first_checks)
        if found is not None:
            checks[gpu.index] = found
        else:
            left.append(gpu.index)
    return checks, left


# -- the pack command's answer --------------------------------------------------------------------
@dataclass
class PackResult:
    """What :func:`analyzer_widgets.pack` answers: the final ``plan``, the ``first`` one
    (before a re-plan; the same plan where none was needed), each validated GPU's ``checks``
    (of the final plan; ``first_checks`` of the first), the co-located rows measured, and
    how the needs and the GPUs' memory were found (``notes``)."""

    plan: PackingPlan
    first: PackingPlan
    constraints: Constraints
    batches: dict[str, int]  # each model's batch size, as measured alone and together
    checks: list[GpuCheck] = field(default_factory=list)
    first_checks: list[GpuCheck] = field(default_factory=list)
    validate: bool = True
    every_gpu: bool = False  # the needs came from earlier results: every GPU is checked, not only shared ones
    replanned: bool = False
    capacities: dict[int, dict[str, float]] = field(default_factory=dict)  # measured together, for the re-plan
    colocated: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    export_path: str | None = None

    @property
    def validated(self) -> bool:
        """Validation ran and every GPU of the final plan it checks passed: those holding two
        or more models (a GPU of one model is covered by its measurement alone in the same
        run), or all of them where the needs came from earlier results."""
        return self.validate and all(c.passed for c in self.checks)

    @property
    def sentence(self) -> str:
        return pack_sentence(self)

    def to_frame(self) -> Any:
        """The final plan's row per replica (PackingPlan.to_frame()) with its GPU's check:
        ``check`` (passed, failed, alone: covered by the model's measurement alone, or not
        validated) and the figures measured together."""
        table = self.plan.to_frame()
        figures = {(c.gpu, f.model): (c, f) for c in self.checks for f in c.figures}
        checked, throughput, latency = [], [], []
        for gpu, model in zip(table["gpu"], table["model"], strict=True):
            found = figures.get((int(gpu), str(model)))
            if found is None:
                holds_one = len(self.plan.gpus[int(gpu)].replicas) == 1
                checked.append("alone" if holds_one and not self.every_gpu else "not validated")
                throughput.append(math.nan)
                latency.append(math.nan)
            else:
                checked.append("passed" if found[1].passed else "failed")
                throughput.append(found[1].throughput)
                latency.append(found[1].latency_ms)
        table["batch_size"] = [self.batches.get(str(m), 1) for m in table["model"]]
        table["check"] = checked
        table["together_throughput_infer_per_s"] = throughput
        table[f"together_{self.constraints.statistic.column}"] = latency
        return table

    def to_dict(self) -> dict[str, Any]:
        """pack.json: the answer, the final plan and the first, every check, the capacities
        measured together for the re-plan, and what it was planned from."""
        return {
            "sentence": self.sentence, "validated": self.validated, "validate": self.validate,
            "replanned": self.replanned, "every_gpu_checked": self.every_gpu, "latency_budget_ms": self.constraints.latency_budget_ms,
            "latency_statistic": self.constraints.statistic.value, "batch_sizes": dict(self.batches),
            "plan": self.plan.to_dict(), "first": self.first.to_dict() if self.replanned else None,
            "checks": [c.to_dict() for c in self.checks],
            "first_checks": [c.to_dict() for c in self.first_checks] if self.replanned else [],
            "capacities_together": [{"gpu": g, "model": m, "capacity": c}
                                    for g, found in self.capacities.items() for m, c in found.items()],
            "notes": list(self.notes),
        }


def validation_words(checks: Sequence[GpuCheck], statistic_label: str) -> str:
    """What validation found, in words."""
    if not checks:
        return "no GPU holds two models, so the models' measurements alone cover the plan"
    failed = [c for c in checks if not c.passed]
    if not failed:
        how = "together" if any(len(c.models) > 1 for c in checks) else "at its planned rate"
        return f"validated: measured {how}, {statistic_label} within budget for each"
    return "validation failed: " + "; ".join(f"GPU {c.gpu} ({', '.join(c.models)}): {c.reason}" for c in failed)


def pack_sentence(result: PackResult) -> str:
    """The plan's sentence, what validation found, and the re-plan, if one was made."""
    text = plan_sentence(result.plan, [c.gpu for c in result.checks if c.passed])
    label = result.constraints.statistic.label
    if not result.validate:
        return text + ". Not validated: the models were not measured together"
    if result.replanned:
        first_failed = [c for c in result.first_checks if not c.passed]
        text += (f". Re-planned once: the first plan ({result.first.gpu_count} GPU"
                 f"{'s' if result.first.gpu_count != 1 else ''}) failed on GPU "
                 + ", ".join(str(c.gpu) for c in first_failed)
                 + ", whose models' capacities together were measured and planned with")
    words = validation_words(result.checks, label)
    return f"{text}. {words[0].upper()}{words[1:]}"
