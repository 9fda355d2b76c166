"""The planner's search strategies replayed offline on recorded tables (issue 18).

`record` measures, once, on the real embedded Triton server, every variant of a space at
every load of a list (a grid sweep per variant, each variant loaded with its config
override as a plan loads it): a *full table*. `replay` then runs the searches on the
tables without measuring: `brute` (every variant, each budget search from the range's
first load) and `quick`'s strategies (planning/quick.py), counting the points (probes +
answers: a sweep's rows) each would measure and the objective of each one's pick, judged
as the planner judges (planning/planner.py's `judge`).

A search may probe any whole concurrency of its range; the table holds a grid of them
(by default 1-12, 14, 16, 20, 24, 32, 48, 64). A load the table lacks is read by linear
interpolation between the two recorded loads around it (its latency and throughput; it
counts as beyond the budget where either neighbour failed). The replay says how many of
the loads it read were interpolated.

    python benchmarks/plan_replay.py record --space small --out benchmarks/results/plan-table-small-a.csv
    python benchmarks/plan_replay.py replay benchmarks/results/plan-table-*.csv
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _machine import machine_line
from plan_search import SMALL_SPACE, space_arg

#: the table's loads by default: every concurrency where the CPU answers lie, sparser above
DEFAULT_LOADS = "1,2,3,4,5,6,7,8,9,10,11,12,14,16,20,24,32,48,64"


# -- record ------------------------------------------------------------------------------------
def record(args: argparse.Namespace) -> None:
    import pandas as pd

    import analyzer_widgets as aw
    from analyzer_widgets import events as ev
    from analyzer_widgets.api import make_spec
    from analyzer_widgets.machine import visible_gpus
    from analyzer_widgets.planning import planner
    from analyzer_widgets.planning.space import default_space, read_space, variants
    from analyzer_widgets.runner import SweepRunner, Target

    repository = args.model_repository or aw.EXAMPLE_REPOSITORY
    loads = [int(c) for c in args.loads.split(",")]
    spec = make_spec(models=[args.model], model_repository=repository, concurrency=loads,
                     batch_sizes=[int(b) for b in args.batch.split(",")], window_ms=args.window_ms,
                     stable_windows=args.stable_windows, max_trials=args.max_trials, baseline_s=args.baseline_s)
    own = planner.own_config(spec, args.model)
    space = read_space(args.space) if args.space is not None else default_space(own)
    found = variants(space, own, gpu_count=len(visible_gpus()))
    started = time.monotonic()
    header = {"machine": machine_line(), "model": args.model, "space": space.to_dict(), "loads": loads,
              "batch_sizes": list(spec.batch_sizes), "window_ms": args.window_ms,
              "stable_windows": args.stable_windows, "max_trials": args.max_trials,
              "variants": [{"name": v.name, "fields": dict(v.fields), "original": v.original} for v in found]}
    print(header["machine"], file=sys.stderr)
    print(f"recording {len(found)} variants x {len(loads)} loads", file=sys.stderr, flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []

    def save(error: str | None = None) -> None:  # after each variant too: a run cut short keeps its rows
        header.update(wall_s=round(time.monotonic() - started, 1), error=error)
        pd.DataFrame.from_records(rows).to_csv(out, index=False)
        out.with_suffix(".json").write_text(json.dumps(header, indent=2, default=str) + "\n")

    def handler(event: object) -> None:
        if isinstance(event, ev.ModelLoading):
            print(f"  [{time.monotonic() - started:6.0f} s] {event.model}", file=sys.stderr, flush=True)
            if rows:
                save("cut short")
        elif isinstance(event, ev.PointFinished):
            rows.append(dict(event.row))
        elif isinstance(event, ev.Notice) and event.level is not ev.Level.PROGRESS:
            print(f"  notice: {event.message}", file=sys.stderr, flush=True)

    runner = SweepRunner(spec, on_event=handler, targets=[Target(args.model, v.name, v.config) for v in found])
    finished = runner.run()
    save(finished.error)
    print(f"{len(rows)} rows in {header['wall_s']} s -> {out}", file=sys.stderr)


# -- replay ------------------------------------------------------------------------------------
class Table:
    """A recorded full table: each variant's row at each recorded (batch size, concurrency);
    a load between two recorded ones read by linear interpolation."""

    def __init__(self, name: str, header: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> None:
        self.name, self.header = name, dict(header)
        self.rows: dict[tuple[str, int, int], dict[str, Any]] = {}
        for record_ in rows:
            record_ = {k: ("" if isinstance(v, float) and math.isnan(v) and k in ("reason", "search", "variant")
                           else v) for k, v in record_.items()}
            if record_.get("search", "") in ("", "probe"):  # a grid point or a search's probe: a measured load
                self.rows[(str(record_["variant"]), int(record_["batch_size"]), int(record_["concurrency"]))] = record_
        self.interpolated = 0  # loads read that the table lacks

    @classmethod
    def read(cls, path: Path) -> Table:
        import pandas as pd

        header = json.loads(path.with_suffix(".json").read_text())
        return cls(path.stem, header, pd.read_csv(path).to_dict("records"))

    def loads(self, variant: str, batch: int) -> list[int]:
        return sorted(c for v, b, c in self.rows if (v, b) == (variant, batch))

    def row(self, variant: str, batch: int, concurrency: int) -> dict[str, Any]:
        key = (variant, batch, concurrency)
        if key in self.rows:
            return dict(self.rows[key])
        self.interpolated += 1
        loads = self.loads(variant, batch)
        below = max((c for c in loads if c < concurrency), default=loads[0])
        above = min((c for c in loads if c > concurrency), default=loads[-1])
        low, high = self.rows[(variant, batch, below)], self.rows[(variant, batch, above)]
        share = (concurrency - below) / (above - below) if above != below else 0.0
        row = dict(low, concurrency=concurrency, reason="interpolated")
        for column in [c for c in low if c.startswith(("throughput", "latency_"))]:
            try:
                row[column] = float(low[column]) + share * (float(high[column]) - float(low[column]))
            except (TypeError, ValueError):
                continue
        if "failed" in (low["status"], high["status"]):
            row["status"] = "failed"
        row["error_count"] = max(_count(low.get("error_count")), _count(high.get("error_count")))
        return row


def _count(value: object) -> int:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0
    return int(number) if math.isfinite(number) else 0


@dataclass
class Replay:
    """One strategy on one table: the rows it would have measured, in order."""

    strategy: str
    rows: list[dict[str, Any]]
    order: list[str]

    @property
    def points(self) -> int:
        return len(self.rows)


class Searcher:
    """runner.py's ``_search`` over a table instead of a server."""

    def __init__(self, table: Table, budget_ms: float, statistic: Any, start: int, limit: int) -> None:
        self.table, self.budget_ms, self.statistic, self.start, self.limit = table, budget_ms, statistic, start, limit

    def search(self, variant: str, batch: int, hint: float | None, beat: float | None = None) -> list[dict[str, Any]]:
        """The probes and the answer row of one budget search, as the runner makes them
        (``hint``: where it starts; ``beat``: the throughput below which it is cut)."""
        from analyzer_widgets.config import Load
        from analyzer_widgets.loadgen.search import Probe, highest_within
        from analyzer_widgets.runner import answer_row, beaten

        probed: dict[float, dict[str, Any]] = {}
        out: list[dict[str, Any]] = []

        def measure(value: float) -> float:
            row = self.table.row(variant, batch, int(value))
            row["search"] = "probe"
            probed[value] = row
            out.append(row)
            counts = row["status"] in ("ok", "unstable") and _count(row.get("error_count")) == 0
            return float(row[self.statistic.column]) if counts else math.nan

        def enough(beyond: Probe) -> bool:
            return beat is not None and beaten(probed[beyond.load], beat)

        found = highest_within(measure, self.budget_ms, start=self.start, limit=self.limit, hint=hint, enough=enough)
        answer = answer_row(found, probed, self.budget_ms, self.statistic, lambda v: Load(concurrency=int(v)), beat)
        return [*out, dict(answer)]


class Context:
    """A table with what its replay needs: the variants as a plan builds them, the searcher,
    and how the planner judges a variant from its rows."""

    def __init__(self, table: Table, model: str, found: Sequence[Any], constraints: Any, objective: Any,
                 batches: Sequence[int], search_range: tuple[int, int]) -> None:
        self.table, self.model, self.found, self.batches = table, model, found, list(batches)
        self.constraints, self.objective = constraints, objective
        self.searcher = Searcher(table, constraints.latency_budget_ms, constraints.statistic, *search_range)

    @classmethod
    def of(cls, table: Table, args: argparse.Namespace) -> Context:
        """The variants from the table's space and the model's own config, as a plan builds them."""
        import analyzer_widgets as aw
        from analyzer_widgets.api import make_spec
        from analyzer_widgets.config import Statistic
        from analyzer_widgets.planning import planner
        from analyzer_widgets.planning.space import read_space, variants

        header = table.header
        model = str(header["model"])
        spec = make_spec(models=[model], model_repository=args.model_repository or aw.EXAMPLE_REPOSITORY)
        found = variants(read_space(header["space"]), planner.own_config(spec, model), gpu_count=8)  # 8: any GPU
        assert [v.name for v in found] == [v["name"] for v in header["variants"]], (
            f"{table.name}: the variants differ from the space's")
        constraints = planner.Constraints(args.latency_budget_ms, Statistic(args.latency_statistic))
        loads = [int(c) for c in args.concurrency.split(",")]
        return cls(table, model, found, constraints, planner.Objective(args.objective),
                   [int(b) for b in header["batch_sizes"]], (loads[0], loads[-1]))

    def score(self, name: str, rows: Sequence[Mapping[str, Any]]) -> float:
        from analyzer_widgets.planning import planner

        variant = next(v for v in self.found if v.name == name)
        mine = [r for r in rows if r.get("variant") == name]
        return planner.judge(variant, mine, None, self.constraints, self.objective).score

    def best(self, replay: Replay) -> tuple[str, float]:
        """The variant the plan would recommend from these rows, and its score."""
        scores = {name: self.score(name, replay.rows) for name in replay.order}
        ranked = [n for n in replay.order if math.isfinite(scores[n])]
        if not ranked:
            return "-", math.nan
        name = max(ranked, key=lambda n: scores[n])
        return name, scores[name]


def replay_brute(ctx: Context) -> Replay:
    rows: list[dict[str, Any]] = []
    for v in ctx.found:
        for b in ctx.batches:
            rows += [dict(r, variant=v.name) for r in ctx.searcher.search(v.name, b, None)]
    return Replay("brute", rows, [v.name for v in ctx.found])


def replay_quick(ctx: Context, label: str, hints: bool, cut: bool) -> Replay:
    """planner.targets' quick (the code a plan runs) fed the table: ``hints`` False starts
    every search at the range's first load (as before the hint); ``cut`` False never cuts a
    neighbour's search (as before the cut)."""
    from analyzer_widgets.planning import planner

    rows: list[dict[str, Any]] = []
    order: list[str] = []
    settings = planner.PlanSettings(strategy=planner.Strategy.QUICK, objective=ctx.objective)
    chosen, _ = planner.targets(ctx.model, ctx.found, settings, ctx.constraints, lambda: rows, lambda: None)
    for target in chosen:
        order.append(target.variant)
        for b in ctx.batches:
            hint = (target.start_at or {}).get(b) if hints else None
            found = ctx.searcher.search(target.variant, b, hint, target.beat if cut else None)
            rows += [dict(r, variant=target.variant) for r in found]
    return Replay(label, rows, order)


def replay_random(ctx: Context, points: int, seed: int) -> Replay:
    """The own config, then variants in a random order (each searched from the range's first
    load) while the points stay within ``points``: what an optimizer's first, random trials
    (Optuna's TPE samples its first 10 at random) find for the same cost."""
    import random

    order = [v for v in ctx.found if v.original][:1]
    rest = [v for v in ctx.found if v not in order]
    random.Random(seed).shuffle(rest)
    rows: list[dict[str, Any]] = []
    names: list[str] = []
    for v in [*order, *rest]:
        more = [dict(r, variant=v.name) for b in ctx.batches for r in ctx.searcher.search(v.name, b, None)]
        if names and len(rows) + len(more) > points:
            break
        rows += more
        names.append(v.name)
    return Replay(f"random {seed}", rows, names)


@dataclass
class Outcome:
    """One strategy's replay against brute's on the same table."""

    strategy: str
    variants: float
    points: float
    points_share: float  # of brute's points
    pick: str
    own_score: float  # the pick's objective from the strategy's own rows
    share: float  # brute's figure of the pick over brute's best
    path: list[str]
    best: float = math.nan  # brute's best

    @property
    def own_share(self) -> float:
        """The pick's own figure (its search's answer on the same table) over brute's best."""
        return self.own_score / self.best if math.isfinite(self.best) and self.best else math.nan


def compare(ctx: Context, random_seeds: int = 20, ablation: bool = True) -> list[Outcome]:
    """brute, quick before and now (and each of now's two changes alone: ``ablation``), and
    random orders of the same cost as quick now, replayed on one table."""
    brute = replay_brute(ctx)
    brute_scores = {v.name: ctx.score(v.name, brute.rows) for v in ctx.found}
    _, best = ctx.best(brute)
    runs = [brute, replay_quick(ctx, "quick before: each search from the range's first load", False, False),
            replay_quick(ctx, "quick now: neighbours start at the compared variant's answer, cut when beaten",
                         True, True)]
    if ablation:
        runs += [replay_quick(ctx, "quick, the start only (no cut)", True, False),
                 replay_quick(ctx, "quick, the cut only (searches from the first load)", False, True)]
    out = []
    for r in runs:
        pick, own_score = ctx.best(r)
        out.append(Outcome(r.strategy, len(r.order), r.points, r.points / brute.points, pick, own_score,
                           brute_scores.get(pick, math.nan) / best if math.isfinite(best) else math.nan, r.order,
                           best))
    if random_seeds:
        cost = runs[2].points  # quick now's
        randoms = [replay_random(ctx, cost, seed) for seed in range(random_seeds)]
        shares = [brute_scores.get(ctx.best(r)[0], math.nan) / best for r in randoms]
        out.append(Outcome(f"random orders within quick now's {cost} points ({random_seeds} seeds; the share "
                           f"within 5%: {sum(x >= 0.95 for x in shares)} of {random_seeds})",
                           sum(len(r.order) for r in randoms) / random_seeds,
                           sum(r.points for r in randoms) / random_seeds,
                           sum(r.points for r in randoms) / random_seeds / brute.points, "-", math.nan,
                           sum(shares) / random_seeds, []))
    return out


def outcome_line(table: str, o: Outcome) -> str:
    def mark(ok: bool) -> str:
        return "yes" if ok else "**no**"

    return (f"| {table} | {o.strategy} | {o.variants:g} | {o.points:g} | {o.points_share:.2f} | {o.pick} | "
            f"{o.own_score:,.0f} | {o.own_share:.3f} | {o.share:.3f} | {mark(o.own_share >= 0.95)} / "
            f"{mark(o.share >= 0.95)} | {mark(o.points_share <= 0.30)} |")


TABLE_HEAD = ("| table | strategy | variants | points | points / brute's | pick | its objective (its own search) | "
              "that / brute's best | brute's figure of the pick / brute's best | within 5% (own / brute's figure) "
              "| at most 30% |\n|---|---|---|---|---|---|---|---|---|---|---|")


def replay(args: argparse.Namespace) -> None:
    print(machine_line())
    print(f"{args.latency_statistic} budget {args.latency_budget_ms:g} ms; objective {args.objective}; "
          f"concurrency {args.concurrency}\n")
    print(TABLE_HEAD)
    summary: dict[str, list[Outcome]] = {}
    paths = []
    for path in args.tables:
        table = Table.read(Path(path))
        ctx = Context.of(table, args)
        for o in compare(ctx, args.random_seeds):
            summary.setdefault(o.strategy.split(" (")[0], []).append(o)
            print(outcome_line(table.name, o))
            if o.path and o.strategy.startswith("quick now:"):
                paths.append(f"{table.name}: {' -> '.join(o.path)}")
        if table.interpolated:
            print(f"| {table.name} | ({table.interpolated} loads read by interpolation) |||||||||")
    print("\nover the tables: within 5% (runs, by its own figure / by brute's), points / brute's (mean, max), "
          "at most 30% (runs)")
    for strategy, outcomes in summary.items():
        own = sum(o.own_share >= 0.95 for o in outcomes)
        within = sum(o.share >= 0.95 for o in outcomes)
        shares = [o.points_share for o in outcomes]
        print(f"  {strategy}: {own} / {within} of {len(outcomes)}; {sum(shares) / len(shares):.2f}, "
              f"{max(shares):.2f}; {sum(x <= 0.30 for x in shares)} of {len(outcomes)}")
    print("\nquick now's paths:\n  " + "\n  ".join(paths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="measure every variant at every load (a full table)")
    rec.add_argument("--model", default="mlp_numpy")
    rec.add_argument("--model-repository", default=None)
    rec.add_argument("--space", type=space_arg, default=SMALL_SPACE, metavar="default|small|JSON|FILE")
    rec.add_argument("--loads", default=DEFAULT_LOADS, help="the concurrencies recorded")
    rec.add_argument("--batch", default="1")
    rec.add_argument("--window-ms", type=int, default=250)
    rec.add_argument("--stable-windows", type=int, default=3)
    rec.add_argument("--max-trials", type=int, default=6)
    rec.add_argument("--baseline-s", type=float, default=0.5)
    rec.add_argument("--out", required=True, help="the table's CSV (its header beside it, .json)")
    rep = sub.add_parser("replay", help="replay brute and quick on recorded tables")
    rep.add_argument("tables", nargs="+", help="the tables' CSV files (each with its .json beside)")
    rep.add_argument("--model-repository", default=None)
    rep.add_argument("--latency-budget-ms", type=float, default=20.0)
    rep.add_argument("--latency-statistic", default="p99")
    rep.add_argument("--objective", default="throughput")
    rep.add_argument("-c", "--concurrency", default="1,64", help="the budget search's range: first,last")
    rep.add_argument("--random-seeds", type=int, default=20)
    args = parser.parse_args()
    if args.command == "record":
        record(args)
    else:
        replay(args)


if __name__ == "__main__":
    main()
