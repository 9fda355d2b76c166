"""analyzer-widgets: what models cost and deliver on NVIDIA Triton Inference Server.

>>> import analyzer_widgets as aw
>>> result = aw.profile(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY,
...                     batch_sizes=[1, 8], concurrency=[1, 4])  # doctest: +SKIP
>>> result.to_frame()  # doctest: +SKIP

Also ``aw.plan`` (one model's best configuration within a latency budget) and ``aw.pack``
(several models onto the fewest GPUs, measured together), and ``aw.measure_together`` (groups of
models loaded on one server each, measured together and against each alone).
"""

from __future__ import annotations

from pathlib import Path

from analyzer_widgets import events
from analyzer_widgets.api import make_spec, measure_together, pack, plan, profile
from analyzer_widgets.config import (
    ExportSettings,
    LaunchMode,
    MeasurementSettings,
    MonitorSettings,
    Protocol,
    ServerSettings,
    SweepSpec,
)
from analyzer_widgets.errors import (
    AnalyzerError,
    ConfigError,
    EnvironmentCheckError,
    ModelLoadError,
    PortInUseError,
    RepositoryError,
    ResumeError,
    ServerError,
    ServerStartError,
    SweepCancelled,
)
from analyzer_widgets.events import (
    BaselineFinished,
    Event,
    Level,
    ModelLoaded,
    ModelLoading,
    Notice,
    PointFinished,
    PointStarted,
    SamplesTaken,
    ServerReady,
    SweepFinished,
    SweepStarted,
    WindowMeasured,
)
from analyzer_widgets.export import load_results, load_samples
from analyzer_widgets.planning.packing import PackingPlan, PackResult
from analyzer_widgets.planning.planner import PlanResult, PlanSettings
from analyzer_widgets.repository import list_models
from analyzer_widgets.results import SweepResult
from analyzer_widgets.runner import SweepRunner

__version__ = "0.1.0"

#: the example model repository shipped inside the package
EXAMPLE_REPOSITORY = Path(__file__).parent / "examples" / "model_repository"

__all__ = [
    "EXAMPLE_REPOSITORY",
    "Dashboard",
    "AnalyzerError",
    "BaselineFinished",
    "ConfigError",
    "EnvironmentCheckError",
    "Event",
    "ExportSettings",
    "LaunchMode",
    "Level",
    "MeasurementSettings",
    "ModelLoadError",
    "ModelLoaded",
    "ModelLoading",
    "MonitorSettings",
    "Notice",
    "PointFinished",
    "PointStarted",
    "SamplesTaken",
    "ServerReady",
    "SweepFinished",
    "SweepStarted",
    "WindowMeasured",
    "events",
    "PortInUseError",
    "Protocol",
    "RepositoryError",
    "ResumeError",
    "ServerError",
    "ServerSettings",
    "ServerStartError",
    "SweepCancelled",
    "SweepResult",
    "SweepRunner",
    "SweepSpec",
    "list_models",
    "load_results",
    "load_samples",
    "make_spec",
    "measure_together",
    "pack",
    "PackingPlan",
    "PackResult",
    "plan",
    "PlanResult",
    "PlanSettings",
    "profile",
]


def __getattr__(name: str) -> object:
    # The panel needs ipywidgets and plotly; import them only when it is asked for, so the
    # CLI and the engine never do.
    if name == "Dashboard":
        from analyzer_widgets.ui import Dashboard

        return Dashboard
    raise AttributeError(f"module 'analyzer_widgets' has no attribute {name!r}")
