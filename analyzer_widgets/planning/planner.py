"""The capacity planner's arithmetic: judge each measured model-config variant against the
user's constraints, rank them by the objective, choose which variant to measure next
(``quick``), and size the fleet for a target rate. Pure functions over rows; the sweep that
measures the variants is :func:`analyzer_widgets.api.plan`'s.

How a variant is judged (docs/planning.md says more):

- Its figures are those of its budget search's answer (runner.py ``_search``: the highest
  load whose latency at the budget's statistic is within the budget, per batch size); of
  several batch sizes, the answer with the highest throughput. A variant without an answer
  within the budget (it failed to load, or even the first load was beyond) fails the
  latency constraint and says why.
- The memory of a variant is the GPU memory above the baseline (the server with no model)
  where the machine has a GPU; on a CPU machine the server's resident memory above the
  baseline's, which is what a model's instances cost there.
- Each constraint is judged on the figure and, where the figure has a 95% interval, on
  the interval: a variant that meets a constraint but whose interval reaches past it is
  kept and flagged (``doubtful``), as it may not meet it in the next run.
"""

from __future__ import annotations

import enum
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzer_widgets.config import Checked, LaunchMode, Statistic, SweepSpec, finite_number, one_of, setting
from analyzer_widgets.errors import ConfigError
from analyzer_widgets.planning.budget import plain_number
from analyzer_widgets.planning.quick import Step, VariantLike, climb
from analyzer_widgets.planning.space import Space, Variant, config_diff, to_pbtxt
from analyzer_widgets.results import SweepResult
from analyzer_widgets.runner import Target
from analyzer_widgets.schema import INTERVALS, Status, load_of
from analyzer_widgets.server import TritonControl

#: a search's answer rows (runner.SearchRole's values; "none_within" and "beaten" are no answer)
ANSWER_ROLES = ("answer", "answer_lower_bound")


class Objective(str, enum.Enum):
    """What the recommended variant is best at (always within the constraints)."""

    THROUGHPUT = "throughput"  # the most inferences a second within the budget
    LATENCY = "latency"  # the lowest latency at the budget's statistic, at its answer's load
    PER_GB = "throughput_per_gb"  # inferences a second per GB of memory (GPU, or resident on CPU)
    PER_WATT = "throughput_per_watt"  # inferences a second per watt of board power (GPU only)

    def score(self, answer: Mapping[str, Any], statistic: Statistic, memory_mb: float) -> float:
        """Higher is better; NaN where the figure it needs is missing."""
        throughput = float(answer["throughput_infer_per_s"])
        if self is Objective.THROUGHPUT:
            return throughput
        if self is Objective.LATENCY:
            return -float(answer[statistic.column])
        if self is Objective.PER_GB:
            return throughput / (memory_mb / 1024) if memory_mb > 0 else math.nan
        power = float(answer.get("gpu_power_mean_w", math.nan))
        return throughput / power if power > 0 else math.nan


class PerVariant(str, enum.Enum):
    """What a plan measures of each variant."""

    SEARCH = "search"  # per batch size, the highest load within the budget (the budget search)
    GRID = "grid"  # every batch size x load given; the best row within the budget is its answer


class Strategy(str, enum.Enum):
    BRUTE = "brute"  # every variant of the space
    QUICK = "quick"  # coordinate ascent from the model's own config (coordinate_ascent)


def _optional_positive(name: str, value: object) -> float | None:
    """None (or empty text): not given; else a number above 0."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number = float(finite_number(name, value, "must be a number above 0"))
    if number <= 0:
        raise ConfigError(name, value, "must be a number above 0")
    return number


def _space_source(name: str, value: object) -> str | Mapping[str, Any] | None:
    """None: the default space; a mapping; or a path to a TOML, JSON (or YAML) file."""
    if value is None or isinstance(value, Mapping):
        return value
    if isinstance(value, str | os.PathLike):
        path = Path(value)
        if not path.is_file():
            raise ConfigError(name, str(value), "is not a file (a TOML, JSON or YAML search space)")
        return str(path)
    raise ConfigError(name, value, "must be a file of a search space, or a mapping")


def _headroom(name: str, value: object) -> float:
    number = float(finite_number(name, value, "must be a percentage from 0 to below 100"))
    if not 0 <= number < 100:
        raise ConfigError(name, value, "must be a percentage from 0 to below 100")
    return number


@dataclass(frozen=True)
class PlanSettings(Checked):
    """What a plan searches and how it chooses; each a setting, as the sweep's are."""

    space: str | Mapping[str, Any] | None = setting(
        None, check=_space_source, flags=("--space",), metavar="FILE", default_text="from the model's config",
        help="the variants to search: a TOML, JSON or YAML file (docs/planning.md); default: instances 1-4, max "
             "batch sizes up to the model's own, dynamic batching at 0, 100 and 500 us")
    strategy: Strategy = setting(
        Strategy.QUICK, check=one_of(Strategy), flags=("--search",), panel="Search",
        help="`quick`: coordinate ascent from the model's own config (a field at a time); `brute`: every variant")
    per_variant: PerVariant = setting(
        PerVariant.SEARCH, check=one_of(PerVariant), flags=("--per-variant",), panel="Per variant",
        help="`search`: per batch size, the highest concurrency (or rate) within the budget; `grid`: every batch "
             "size x concurrency (or rate) given, and the best point within the budget")
    objective: Objective = setting(
        Objective.THROUGHPUT, check=one_of(Objective), flags=("--objective",), panel="Objective",
        help="what the recommended variant is best at within the constraints: throughput, latency, "
             "throughput_per_gb or throughput_per_watt")
    min_throughput: float | None = setting(
        None, check=_optional_positive, flags=("--min-throughput",), panel="Min throughput (infer/s)",
        help="a variant must serve at least this many infer/s within the budget")
    max_memory_mb: float | None = setting(
        None, check=_optional_positive, flags=("--max-memory-mb",), panel="Max memory (MB)",
        help="a variant may use at most this much GPU memory above the baseline (resident memory on a CPU machine)")
    target_rate: float | None = setting(
        None, check=_optional_positive, flags=("--target-rate",), panel="Target rate (infer/s)",
        help="size the fleet: how many servers (GPUs) of the recommended variant serve this many infer/s")
    headroom_pct: float = setting(
        20.0, check=_headroom, flags=("--headroom",), panel="Headroom %",
        help="the share of each server's measured rate kept free for bursts when sizing")


@dataclass(frozen=True)
class Constraints:
    latency_budget_ms: float
    statistic: Statistic = Statistic.P99
    min_throughput: float | None = None  # infer/s
    max_memory_mb: float | None = None  # GPU memory above the baseline (resident memory on CPU)

    def budget_text(self) -> str:
        return f"{self.statistic.label} ≤ {plain_number(self.latency_budget_ms)} ms"


@dataclass(frozen=True)
class Judged:
    """One variant against the constraints."""

    variant: str
    fields: Mapping[str, Any]  # the value of each field the space sets
    original: bool
    answer: Mapping[str, Any] | None  # the row its figures come from
    memory_mb: float
    failed: str  # "" when it meets every constraint; else which one failed and why
    doubtful: tuple[str, ...] = field(default=())  # constraints its intervals reach past
    score: float = math.nan  # the objective (higher is better); NaN when it failed

    @property
    def meets(self) -> bool:
        return not self.failed

    @property
    def ranked(self) -> bool:
        """It meets every constraint and has a figure for the objective: it can be recommended."""
        return self.meets and self.answer is not None and math.isfinite(self.score)


def variant_memory_mb(answer: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> float:
    """The memory a variant costs: GPU memory above the baseline where there is a GPU, else
    the server's resident memory above the baseline's."""
    gpu = float(answer.get("gpu_memory_above_baseline_mb", math.nan))
    if math.isfinite(gpu):
        return gpu
    rss, base = float(answer.get("server_rss_max_mb", math.nan)), math.nan
    if baseline is not None:
        base = float(baseline.get("server_rss_max_mb", math.nan))
    return rss - base if math.isfinite(rss) and math.isfinite(base) else math.nan


def best_answer(rows: Sequence[Mapping[str, Any]], constraints: Constraints) -> Mapping[str, Any] | None:
    """Of a variant's rows, the answer with the highest throughput: of a budget search's
    answers (one per batch size), or, where the variant was measured on a grid
    (``--per-variant grid``), of the points within the budget; None when no load was."""
    measured = [r for r in rows if r.get("status") in (Status.OK.value, Status.UNSTABLE.value)]
    if any(r.get("search") for r in rows):
        answers = [r for r in measured if r.get("search") in ANSWER_ROLES]
    else:  # a failed request is beyond any budget, as the search counts it
        answers = [r for r in measured if not r.get("error_count")
                   and float(r.get(constraints.statistic.column, math.nan)) <= constraints.latency_budget_ms]
    return max(answers, key=lambda r: float(r["throughput_infer_per_s"]), default=None)


def why_no_answer(rows: Sequence[Mapping[str, Any]], constraints: Constraints) -> str:
    beaten = [r for r in rows if r.get("search") == "beaten"]  # quick cut its search (runner.beaten)
    if beaten:
        return str(beaten[0].get("reason") or "searched no further")
    failed = [r for r in rows if r.get("status") == Status.FAILED.value]
    if rows and len(failed) == len(rows):
        reason = str(failed[0].get("reason") or "").splitlines()
        return f"could not be measured: {reason[0] if reason else 'no reason given'}"
    if not rows:
        return "not measured"
    return f"no load within {constraints.budget_text()}"


def judge(variant: VariantLike, rows: Sequence[Mapping[str, Any]], baseline: Mapping[str, Any] | None,
          constraints: Constraints, objective: Objective) -> Judged:
    """``variant`` (its measured ``rows``) against the constraints, with its objective."""
    answer = best_answer(rows, constraints)
    if answer is None:
        return Judged(variant.name, variant.fields, variant.original, None, math.nan, why_no_answer(rows, constraints))
    memory = variant_memory_mb(answer, baseline)
    failed: list[str] = []
    doubtful: list[str] = []
    column = constraints.statistic.column
    high = _bound(answer, column, high=True)
    if high > constraints.latency_budget_ms:
        doubtful.append(f"its {constraints.statistic.label} interval reaches {plain_number(high)} ms")
    if constraints.min_throughput is not None:
        throughput = float(answer["throughput_infer_per_s"])
        if throughput < constraints.min_throughput:
            failed.append(f"{plain_number(throughput)} infer/s, below the floor of "
                          f"{plain_number(constraints.min_throughput)}")
        elif _bound(answer, "throughput_infer_per_s", high=False) < constraints.min_throughput:
            doubtful.append("its throughput interval reaches below the floor")
    if constraints.max_memory_mb is not None and not math.isfinite(memory):
        doubtful.append("its memory is unknown, so the memory cap could not be judged")
    elif constraints.max_memory_mb is not None and memory > constraints.max_memory_mb:
        failed.append(f"{plain_number(memory)} MB of memory, above the cap of "
                      f"{plain_number(constraints.max_memory_mb)} MB")
    score = math.nan if failed else objective.score(answer, constraints.statistic, memory)
    return Judged(variant.name, variant.fields, variant.original, answer, memory, "; ".join(failed), tuple(doubtful),
                  score)


def _bound(row: Mapping[str, Any], figure: str, high: bool) -> float:
    """The upper (or lower) bound of ``figure``'s 95% interval; the figure where it has none."""
    bounds = INTERVALS.get(figure)
    value = float(row.get(bounds[1 if high else 0], math.nan)) if bounds else math.nan
    return value if math.isfinite(value) else float(row[figure])


def rank(judged: Sequence[Judged]) -> list[Judged]:
    """Best first: the variants that meet every constraint by their objective (a doubtful
    one after a sure one of the same score); then those that meet them without a figure
    for the objective (throughput per watt where the machine gives no power); then the
    others, each group in the order measured."""
    scored = sorted((j for j in judged if j.ranked), key=lambda j: (-j.score, len(j.doubtful)))
    unscored = [j for j in judged if j.meets and j.answer is not None and not j.ranked]
    return scored + unscored + [j for j in judged if j not in scored and j not in unscored]


@dataclass(frozen=True)
class Sizing:
    """How many servers (GPUs) a target rate needs at the recommended variant, and what
    each keeps free for other models."""

    target_rate: float  # infer/s
    per_server: float  # infer/s one server is counted on for: the interval's low end less the headroom
    headroom_pct: float
    servers: int  # 0: cannot be sized (the interval's lower end is 0)
    memory_total_mb: float = math.nan  # the GPU memory of one server's GPUs (NaN on a CPU machine)
    memory_left_mb: float = math.nan  # of it, what the variant at its answer's load left unused

    def text(self) -> str:
        if self.servers == 0:
            return (f"{plain_number(self.target_rate)} infer/s cannot be sized from this variant: the lower end of "
                    "its throughput's 95% interval is 0 (its windows scattered too much); measure it longer "
                    "(more windows, or --visits) to size the fleet")
        text = (f"{plain_number(self.target_rate)} infer/s needs {self.servers} server(s) of this variant, each "
                f"counted at {plain_number(self.per_server)} infer/s (the lower end of its 95% interval, less "
                f"{self.headroom_pct:g}% headroom)")
        if math.isfinite(self.memory_left_mb):
            text += (f"; each server's GPU memory keeps {plain_number(self.memory_left_mb)} of its "
                     f"{plain_number(self.memory_total_mb)} MB free for other models")
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"target_rate": self.target_rate, "per_server": self.per_server, "headroom_pct": self.headroom_pct,
                "servers": self.servers, "memory_total_mb": _or_none(self.memory_total_mb),
                "memory_left_mb": _or_none(self.memory_left_mb), "text": self.text()}


def _or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN


def sizing(answer: Mapping[str, Any], target_rate: float, headroom_pct: float,
           baseline: Mapping[str, Any] | None = None) -> Sizing:
    """Servers needed for ``target_rate``: each counted at the low end of the throughput's
    interval (what the next run may give), less the headroom kept for bursts. The memory
    left on each: the GPUs' memory (the baseline's ``gpu_memory_total_mb``) less the most
    the answer's point used (the server's own context and the variant, at its load)."""
    per_server = _bound(answer, "throughput_infer_per_s", high=False) * (1 - headroom_pct / 100)
    # rounded first: 700 x (1 - 0.3) is 489.99999999999994, and 490 infer/s is one server
    servers = math.ceil(round(target_rate / per_server, 9)) if per_server > 0 else 0
    total = float((baseline or {}).get("gpu_memory_total_mb", math.nan))
    used = float(answer.get("gpu_memory_max_mb", math.nan))
    left = total - used if math.isfinite(total) and math.isfinite(used) else math.nan
    return Sizing(target_rate, per_server, headroom_pct, servers, total, left)


def fields_text(fields: Mapping[str, Any], original: bool) -> str:
    """A variant's fields as a sentence says them, and whether that is the model's own config.

    >>> fields_text({"instance_group.count": 2, "instance_group.kind": "KIND_GPU", "max_batch_size": 32,
    ...              "dynamic_batching": True, "dynamic_batching.max_queue_delay_microseconds": "200"}, False)
    '2 GPU instances, max batch 32, dynamic batching with a 200 us delay'
    """
    said: list[str] = []
    count, kind = fields.get("instance_group.count"), fields.get("instance_group.kind")
    if count is not None:
        kind_text = f"{str(kind).removeprefix('KIND_')} " if kind else ""
        said.append(f"{count} {kind_text}instance{'s' if str(count) != '1' else ''}")
    if "max_batch_size" in fields:
        said.append(f"max batch {fields['max_batch_size']}")
    if "dynamic_batching" in fields:
        delay = fields.get("dynamic_batching.max_queue_delay_microseconds")
        preferred = fields.get("dynamic_batching.preferred_batch_size")
        if not fields["dynamic_batching"]:
            said.append("no dynamic batching")
        else:
            said.append("dynamic batching" + (f" with a {delay or 0} us delay" if "dynamic_batching."
                                              "max_queue_delay_microseconds" in fields else "")
                        + (f", preferred batch sizes {preferred}" if preferred else ""))
    shown = {"instance_group.count", "instance_group.kind", "max_batch_size", "dynamic_batching",
             "dynamic_batching.max_queue_delay_microseconds", "dynamic_batching.preferred_batch_size"}
    said += [f"{key} {value}" for key, value in fields.items() if key not in shown]
    text = ", ".join(said)
    if original:
        return f"{text} (its own config)" if text else "its own config"
    return text


def sentence(model: str, best: Judged, constraints: Constraints) -> str:
    """The answer in one plain sentence."""
    if best.answer is None or not best.meets:
        return (f"no variant of {model} meets the constraints ({constraints.budget_text()}); "
                f"see the table for which failed and why")
    answer = best.answer
    throughput = float(answer["throughput_infer_per_s"])
    low = _bound(answer, "throughput_infer_per_s", high=False)
    spread = f" (±{plain_number(100 * (throughput - low) / throughput, 2)}%)" if low < throughput else ""
    memory = (f", {plain_number(best.memory_mb)} MB of memory" if math.isfinite(best.memory_mb) else "")
    text = (f"serve {model} with {fields_text(best.fields, best.original)}, at batch {answer['batch_size']}, "
            f"{load_of(answer)}: {plain_number(throughput)} infer/s{spread} at {constraints.statistic.label} "
            f"{plain_number(float(answer[constraints.statistic.column]))} ms{memory}")
    if best.doubtful:
        text += f" (but {'; '.join(best.doubtful)}: measure again before relying on it)"
    return text


@dataclass
class PlanResult:
    """A plan's answer: every variant judged (best first), the recommendation, its config,
    and the sweep that measured them. ``to_frame()``: the ranked table."""

    model: str
    settings: PlanSettings
    constraints: Constraints
    ranked: list[Judged]
    original_config: Mapping[str, Any]
    configs: Mapping[str, Mapping[str, Any]]  # each measured variant's whole config, by name
    sweep: SweepResult  # every probe and answer row, the baseline, the samples

    @property
    def best(self) -> Judged | None:
        """The recommended variant: the best that meets every constraint (None if none does)."""
        return self.ranked[0] if self.ranked and self.ranked[0].ranked else None

    @property
    def sentence(self) -> str:
        if self.best is None:
            return (f"no variant of {self.model} meets the constraints ({self.constraints.budget_text()}); "
                    f"see the table for which failed and why")
        return sentence(self.model, self.best, self.constraints)

    @property
    def config_text(self) -> str:
        """The recommended variant as a config.pbtxt ("" if none is recommended)."""
        if self.best is None:
            return ""
        return to_pbtxt(self.configs[self.best.variant],
                        comment=f"analyzer-widgets plan: {self.best.variant}\n{self.sentence}")

    @property
    def diff(self) -> list[str]:
        """The recommended config against the model's own, a line per field."""
        return [] if self.best is None else config_diff(self.original_config, self.configs[self.best.variant])

    @property
    def sizing(self) -> Sizing | None:
        if self.best is None or self.best.answer is None or self.settings.target_rate is None:
            return None
        return sizing(self.best.answer, self.settings.target_rate, self.settings.headroom_pct, self.sweep.baseline_row)

    def to_frame(self) -> Any:
        """One row per variant, best first: its fields, whether it meets the constraints (or
        which failed), the objective, and the figures of its answer."""
        import pandas as pd

        records = []
        for rank_, j in enumerate(self.ranked, start=1):
            answer = j.answer or {}
            column = self.constraints.statistic.column
            records.append({
                "rank": rank_ if j.ranked else None, "variant": j.variant,
                "original": j.original, **{f"set.{k}": v for k, v in j.fields.items()},
                "meets": j.meets and j.answer is not None, "failed": j.failed, "doubtful": "; ".join(j.doubtful),
                self.settings.objective.value: j.score,
                "batch_size": answer.get("batch_size"), "load": str(load_of(answer)) if answer else "",
                "throughput_infer_per_s": answer.get("throughput_infer_per_s", math.nan),
                "throughput_ci_low_infer_per_s": answer.get("throughput_ci_low_infer_per_s", math.nan),
                column: answer.get(column, math.nan), "memory_mb": j.memory_mb,
            })
        table = pd.DataFrame.from_records(records)
        for whole in ("rank", "batch_size"):  # whole numbers, blank where a variant has none
            if whole in table.columns:
                table[whole] = table[whole].astype("Int64")
        return table


# -- the plan's run: what to measure, and the answer from what was -------------------------------
def own_config(spec: SweepSpec, model: str) -> dict[str, Any]:
    """The model's config as its repository has it (config.pbtxt as JSON, field names as
    in the file): what every variant starts from. A remote server is asked
    (:func:`remote_config`)."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    if spec.server.launch_mode is LaunchMode.REMOTE:
        return remote_config(spec, model)  # the server's view is the one its loads start from
    assert spec.model_repository is not None
    path = Path(spec.model_repository) / model / "config.pbtxt"
    try:
        message = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    except (OSError, text_format.ParseError) as e:
        raise ConfigError("model_repository", str(spec.model_repository),
                          f"holds no readable config for {model!r} ({e})") from e
    config = json_format.MessageToDict(message, preserving_proto_field_name=True)
    config.setdefault("name", model)
    return config


def remote_config(spec: SweepSpec, model: str) -> dict[str, Any]:
    """The model's config as a remote server has it, after loading it there: a plan loads
    each variant through the repository API, so a server that refuses loads (polling mode)
    or hides that API (a header it wants was not given) is found here, before anything is
    measured, with the server's reason (TritonControl's errors say which)."""
    server = spec.server
    assert server.address is not None
    control = TritonControl(server.address, spec.measurement.protocol.value, server.headers,
                            timeout_s=spec.measurement.request_timeout_s, load_timeout_s=server.model_load_timeout_s,
                            tls=server.tls)
    try:
        control.repository_index()  # a restricted repository API: its error names the header
        control.load(model)  # polling mode refuses, saying so, as it would refuse every variant
        return control.model_config(model)
    finally:
        control.close()


def run_facts(settings: PlanSettings) -> dict[str, Any]:
    """What a plan adds to its export folder's resume fingerprint: that it is a plan (a
    sweep's rows and a plan's do not mix) and how it measures each variant. The space, the
    strategy, the objective and the constraints are left out on purpose: the rows are
    keyed by variant, whose name says its fields, so a resumed plan may widen the space or
    judge again with other constraints and measure only what it lacks (with the budget
    search, the budget is a sweep setting and in the fingerprint already)."""
    return {"run": "plan", "per_variant": settings.per_variant.value}


def targets(model: str, found: Sequence[Variant], settings: PlanSettings, constraints: Constraints,
            rows: Callable[[], Iterable[Mapping[str, Any]]], baseline: Callable[[], Mapping[str, Any] | None],
            ) -> tuple[Iterable[Target], int]:
    """What the sweep measures, in order, and about how many: every variant (brute), or
    the variants coordinate ascent chooses as the rows of the ones before come in (quick;
    ``rows()`` gives every row so far, a resumed run's kept ones included)."""
    by_name = {v.name: v for v in found}
    if settings.strategy is Strategy.BRUTE:
        return [Target(model, v.name, v.config) for v in found], len(found)

    def score_of(name: str) -> float:
        measured = [r for r in rows() if r.get("variant") == name]
        return judge(by_name[name], measured, baseline(), constraints, settings.objective).score

    def answer_loads(name: str) -> dict[int, float]:
        """Its answers' loads by batch size: where a neighbour's searches start (quick.climb)."""
        loads = {int(r["batch_size"]): load_of(r) for r in rows()
                 if r.get("variant") == name and r.get("search") in ANSWER_ROLES}
        return {b: load.rate_per_s if load.open_loop else load.concurrency for b, load in loads.items()}

    keys = {key for v in found for key in v.fields}
    expected = 1 + sum(len({repr(v.fields.get(key)) for v in found}) - 1 for key in keys)

    def beat(step: Step) -> float | None:
        """The throughput a neighbour must reach to be moved to (its search is cut below it);
        with another objective, none: a lower load's figure bounds only the throughput."""
        if step.compared_with is None or settings.objective is not Objective.THROUGHPUT:
            return None
        score = score_of(step.compared_with)
        return score if math.isfinite(score) else None

    chosen = (Target(model, s.variant.name, by_name[s.variant.name].config, start_at=s.start_at, beat=beat(s))
              for s in climb(found, score_of, answer_loads))
    return chosen, max(1, expected)


def answer(model: str, settings: PlanSettings, constraints: Constraints, found: Sequence[Variant],
           own: Mapping[str, Any], sweep: SweepResult) -> PlanResult:
    """Judge every variant the sweep measured and rank them."""
    by_variant: dict[str, list[Mapping[str, Any]]] = {}
    for row in sweep.rows:  # in the order measured (quick's order is its own)
        by_variant.setdefault(str(row.get("variant", "")), []).append(row)
    by_name = {v.name: v for v in found}
    measured = [by_name[name] for name in by_variant if name in by_name]
    judged = [judge(v, by_variant[v.name], sweep.baseline_row, constraints, settings.objective) for v in measured]
    return PlanResult(model, settings, constraints, rank(judged), own, {v.name: v.config for v in measured}, sweep)


def files(result: PlanResult, space: Space) -> dict[str, str]:
    """The plan's files for its export folder: plan.csv (every variant measured, best
    first), plan.json (the space, the strategy, the constraints, the answer) and, when a
    variant is recommended, config.pbtxt."""
    out = {"plan.csv": result.to_frame().to_csv(index=False)}
    best = result.best
    summary = {
        "model": result.model, "strategy": result.settings.strategy.value,
        "objective": result.settings.objective.value,
        "constraints": {"latency_budget_ms": result.constraints.latency_budget_ms,
                        "latency_statistic": result.constraints.statistic.value,
                        "min_throughput": result.constraints.min_throughput,
                        "max_memory_mb": result.constraints.max_memory_mb},
        "space": space.to_dict(), "variants_measured": [j.variant for j in result.ranked],
        "recommended": best.variant if best else None, "sentence": result.sentence, "diff": result.diff,
        "per_variant": result.settings.per_variant.value,
        "sizing": result.sizing.to_dict() if result.sizing else None,
    }
    out["plan.json"] = json.dumps(summary, indent=2, default=str) + "\n"
    if best is not None:
        out["config.pbtxt"] = result.config_text
    return out
