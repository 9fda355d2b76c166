"""Units of work: a sweep split into parts that each run on a server of their own.

A :class:`Unit` is one model's points, one config variant of a plan, or one group of models
measured together (a GPU of a packing plan): a plain, picklable description (the sweep's
spec cut down to it, the points an earlier run measured of it) that :func:`run_unit`
measures on its own, with its own Triton server, in the :class:`Slot` it is given, sending
every event and its end to a ``send`` callable. :mod:`.gpus` runs units in worker
processes on this host's GPUs; a Ray task can run :func:`run_unit` the same way on another
machine and send the same messages back. docs/scale-out.md says why one model is the unit.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyzer_widgets.colocation import AloneKey, ColocatedRunner, Group, alone_index, alone_key
from analyzer_widgets.config import RAY_UNIT_RESOURCES, Parallel, SweepSpec
from analyzer_widgets.errors import ConfigError
from analyzer_widgets.runner import SweepRunner, Target
from analyzer_widgets.schema import PointKey, point_key


@dataclass(frozen=True)
class Slot:
    """Where a unit runs: a place for one server. ``gpu``: what its server's
    ``CUDA_VISIBLE_DEVICES`` is set to (a GPU's UUID); None where the host has no GPU to give
    it (the variable is left as it is)."""

    index: int
    gpu: str | None = None

    @property
    def label(self) -> str:
        return f"slot {self.index}" + (f" ({self.gpu})" if self.gpu else "")


@dataclass(frozen=True)
class Unit:
    """One model's points (or a plan's variant, or a group measured together), measured on a
    server of its own: what a worker needs, and nothing that does not pickle (a worker
    process or a Ray task receives it as it is)."""

    index: int  # 0-based among the sweep's units
    spec: SweepSpec  # the sweep's, with this unit's model (a group's: its models) only
    #: the points of this model an earlier run measured (a resume), with their rows; a
    #: group's: rows of its members alone to compare with (given, or measured by an attempt
    #: whose node was lost), the rest of a group measured again
    earlier: tuple[Mapping[str, Any], ...] = ()
    #: a plan's unit: the config variant it measures (loaded by config override); None: the
    #: model as its repository has it
    target: Target | None = None
    #: a co-located measurement's unit: the models it measures together, and whether each is
    #: measured alone first (colocation.measure_together's ``alone``)
    group: Group | None = None
    alone: bool = True

    @property
    def model(self) -> str:
        return self.spec.models[0]

    @property
    def variant(self) -> str:
        return self.target.variant if self.target is not None else ""

    @property
    def name(self) -> str:
        """The unit in words: its model, and its variant where it is a plan's; a group's
        label and models."""
        if self.group is not None:
            return f"{self.group.label} ({', '.join(self.group.models)})"
        return f"{self.model} {self.variant}" if self.variant else self.model

    def owns(self, row: Mapping[str, Any]) -> bool:
        """Whether ``row`` is one of this unit's points."""
        if self.group is not None:
            return row.get("group") == self.group.label
        return row.get("model") == self.model and (row.get("variant") or "") == self.variant


def _unit_spec(spec: SweepSpec, models: tuple[str, ...]) -> SweepSpec:
    """The sweep's spec for a unit measuring ``models``: it does not split again, and the
    environment was checked once, by the driver."""
    return dataclasses.replace(spec, models=models, parallel=Parallel.OFF, parallel_slots=0, ray="",
                               ray_unit_resources=dict(RAY_UNIT_RESOURCES), check_environment=False)


def split(spec: SweepSpec, earlier: Mapping[PointKey, Mapping[str, Any]] | None = None,
          targets: Iterable[Target] | None = None, groups: Sequence[Group] | None = None, alone: bool = True,
          given: Mapping[AloneKey, Mapping[str, Any]] | None = None) -> list[Unit]:
    """The sweep's units: one per model, in the spec's order, or, for a plan's ``targets``
    (brute: every variant known at the start), one per variant, or, for a co-located
    measurement's (checked) ``groups``, one per group, with the ``given`` alone rows of its
    members. Each measures with the sweep's settings, on a server of its own, and skips what
    an earlier run measured of its points."""
    if groups is not None:
        found = given or {}
        return [Unit(i, _unit_spec(spec, group.models), group=group, alone=alone,
                     earlier=tuple(dict(found[alone_key(m)]) for m in group.members if alone_key(m) in found))
                for i, group in enumerate(groups)]
    kept = earlier or {}
    if targets is not None and not isinstance(targets, Sequence):  # checked before it is drawn from
        raise ConfigError("strategy", "quick", "chooses each variant from the ones measured before it, so its "
                                               "variants cannot be run side by side: use --search brute")
    chosen = [t for t in (targets or ()) if t.variant]  # none: a sweep's own models
    units = []
    for index, target in enumerate(chosen or [Target(m) for m in spec.models]):
        unit = Unit(index, _unit_spec(spec, (target.model,)), target=target if target.variant else None)
        units.append(dataclasses.replace(unit, earlier=tuple(dict(row) for row in kept.values() if unit.owns(row))))
    return units


# -- a unit on its own (a worker process here; a Ray task later) --------------------------------
#: what run_unit sends: ("event", unit index, event), ("known", unit index, version, GPUs),
#: and last ("done", unit index, error or None)
Message = tuple[Any, ...]


def run_unit(unit: Unit, slot: Slot, send: Callable[[Message], None], stopping: Callable[[], bool]) -> None:
    """Measure ``unit`` on a server of its own in ``slot``, sending its events as they come
    and its end. ``stopping`` is polled to stop early. Never raises: an error ends the unit
    and is what its last message says."""
    if slot.gpu is not None:
        # the server inherits it, and the NVML sampler reads it: this process sees its GPU only
        os.environ["CUDA_VISIBLE_DEVICES"] = slot.gpu
    spec = unit.spec
    if spec.server.log_path is not None:  # one log per server, beside the sweep's
        log = Path(spec.server.log_path)
        spec = dataclasses.replace(spec, server=dataclasses.replace(
            spec.server, log_path=log.with_name(f"{log.stem}-unit{unit.index}{log.suffix}")))
    error: str | None = None
    runner: SweepRunner
    if unit.group is not None:
        runner = ColocatedRunner(spec, [unit.group], alone=unit.alone, alone_rows=alone_index(unit.earlier),
                                 on_event=lambda event: send(("event", unit.index, event)))
    else:
        runner = SweepRunner(spec, on_event=lambda event: send(("event", unit.index, event)))
        if unit.target is not None:
            runner.targets = [unit.target]
        runner.skip = {point_key(row) for row in unit.earlier}
        runner.earlier = {point_key(row): row for row in unit.earlier}
    runner.on_server_known = lambda version, gpus: send(("known", unit.index, version, gpus))
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.2):
            if stopping():
                runner.stop()
                return

    watcher = threading.Thread(target=watch, name=f"unit-{unit.index}-stop", daemon=True)
    watcher.start()
    try:
        runner.run()
    except BaseException as e:  # noqa: BLE001 - the unit's end is a message; the driver decides
        error = str(e) or type(e).__name__
    finally:
        done.set()
        send(("done", unit.index, error))
