"""What the engine reports while it runs: plain frozen dataclasses.

The runner emits them to the handlers it is given and knows nothing of how they are shown
or stored: the CLI turns them into a progress bar, the panel into charts,
:mod:`analyzer_widgets.results` into rows and CSV lines. Every module that names an event
imports it from here, never from the runner.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:  # for the annotations only: events import nothing at run time
    import pandas as pd

    from analyzer_widgets.config import SweepSpec
    from analyzer_widgets.repository import ModelInfo


class Level(str, enum.Enum):
    """How a :class:`Notice` is meant: a warning to read, information, or what a long step
    is doing now (shown while it lasts, not kept with the results)."""

    WARNING = "warning"
    INFO = "info"
    PROGRESS = "progress"


@dataclass(frozen=True)
class SweepStarted:
    spec: SweepSpec
    total_points: int


@dataclass(frozen=True)
class ServerReady:
    launch_mode: str
    server_version: str
    endpoint: str  # host:port the inferences go to
    startup_s: float


@dataclass(frozen=True)
class BaselineFinished:
    row: dict[str, Any]


@dataclass(frozen=True)
class ModelLoading:
    model: str


@dataclass(frozen=True)
class ModelLoaded:
    model: str
    info: ModelInfo
    load_s: float


@dataclass(frozen=True)
class PointStarted:
    model: str
    batch_size: int
    concurrency: int  # 0 at a request-rate point
    index: int  # 0-based among all points of the sweep
    total: int
    request_rate_per_s: float = math.nan  # NaN at a concurrency point


@dataclass(frozen=True)
class WindowMeasured:
    model: str
    batch_size: int
    concurrency: int
    trial: int  # 1-based
    throughput: float
    latency_avg_ms: float
    failed: int
    request_rate_per_s: float = math.nan


@dataclass(frozen=True)
class PointFinished:
    row: dict[str, Any]
    index: int
    total: int


@dataclass(frozen=True)
class ColocatedPointStarted:
    """Several models loaded on one server, measured at once, each under its own load over
    the same windows (colocation.py); or one of them alone, the others loaded and idle.
    A :class:`PointStarted` per model under load follows, then their windows and rows."""

    group: str  # the group's label: GPU 0
    loads: tuple[str, ...]  # each model under load now, with its batch size and load, in words
    together: bool  # False: one model alone
    searched: str  # the model whose budget search this point is a probe of; "" for a fixed-load point
    index: int  # 0-based among the run's co-located points
    total: int  # the points expected, a search's counted as about two probes per doubling


@dataclass(frozen=True)
class UnitStarted:
    """A unit of a sweep split for ``--parallel gpus`` or ``--ray`` (analyzer_widgets/distributed) started
    on its slot or Ray node, in a worker process of its own; its server's events follow, mixed with the
    other units'."""

    unit: int  # 0-based
    units: int
    models: tuple[str, ...]
    slot: int | None  # None for a Ray task: Ray places it (``node``)
    gpu: str  # its server's CUDA_VISIBLE_DEVICES; "" where the slot has no GPU
    worker_pid: int
    node: str = ""  # a Ray task's node: its IP and the start of its ID
    attempt: int = 1  # a Ray task run again after its node was lost: 2, 3, ...

    @property
    def where(self) -> str:
        return f"node {self.node}" if self.node else f"slot {self.slot}"


@dataclass(frozen=True)
class RayJoined:
    """A ``--ray`` sweep joined its Ray cluster: how many nodes it has, what each unit asks
    for, and Ray's dashboard ("" where the cluster runs none)."""

    nodes: int
    unit_resources: str  # as the flag takes it: GPU=1
    dashboard_url: str


@dataclass(frozen=True)
class UnitFinished:
    """A unit ended: how many of its points were measured, how many failed because it ended
    early (its server or worker died: ``error``)."""

    unit: int
    models: tuple[str, ...]
    slot: int | None
    measured: int
    failed: int
    error: str | None = None
    node: str = ""

    @property
    def where(self) -> str:
        return f"node {self.node}" if self.node else f"slot {self.slot}"


@dataclass(frozen=True)
class SamplesTaken:
    """The monitor samples taken since the last ``SamplesTaken``, one row each, tagged with
    their phase and point: the next rows of ``metrics-samples.csv``. Sent every few seconds
    (just before another event) and with the rest just before :class:`SweepFinished`, so
    nothing holds a whole sweep's samples. ``samples.columns`` are every column seen so far
    in the sweep, in the file's order (NaN where a sample has no value)."""

    samples: pd.DataFrame = field(compare=False)
    #: a split sweep's (``--parallel gpus``, ``--ray``): the unit on whose server and in whose
    #: process they were taken, its ``time_s`` counting from that unit's start; None: this process's
    unit: int | None = None

    def __repr__(self) -> str:
        return f"SamplesTaken({len(self.samples)} samples" + (f" of unit {self.unit})" if self.unit is not None else ")")


@dataclass(frozen=True)
class Notice:
    """Something the user should read (a skipped model, a metric that is not available)."""

    message: str
    level: Level = Level.WARNING


@dataclass(frozen=True)
class SweepFinished:
    cancelled: bool
    error: str | None
    elapsed_s: float
    server_version: str = ""
    rows: tuple[dict[str, Any], ...] = field(default=())
    #: why some columns are NaN, by sampler or metric
    unavailable: dict[str, str] = field(default_factory=dict)


Event = Union[  # noqa: UP007 - a runtime alias, read by isinstance checks and by mypy
    SweepStarted, ServerReady, BaselineFinished, ModelLoading, ModelLoaded, PointStarted, WindowMeasured,
    PointFinished, ColocatedPointStarted, SamplesTaken, Notice, SweepFinished, UnitStarted, UnitFinished, RayJoined,
]
EventHandler = Callable[[Event], None]

__all__ = [
    "BaselineFinished", "ColocatedPointStarted", "Event", "EventHandler", "Level", "ModelLoaded", "ModelLoading",
    "Notice", "PointFinished", "PointStarted", "SamplesTaken", "ServerReady", "SweepFinished", "SweepStarted", "UnitFinished", "UnitStarted", "RayJoined",
    "WindowMeasured",
]
