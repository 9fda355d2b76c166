"""What to measure and how: frozen, validated specifications.

Everything a sweep needs is decided here, before any process starts. A bad value raises
:class:`~analyzer_widgets.errors.ConfigError` naming the field and the value.

Example::

    spec = SweepSpec(
        models=("mlp_numpy",),
        model_repository="examples/model_repository",
        batch_sizes=(1, 8),
        concurrency=(1, 4),
    )
"""

from __future__ import annotations

import enum
import math
import operator
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analyzer_widgets.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"


class LaunchMode(str, enum.Enum):
    """How the runner gets a Triton server."""

    LOCAL = "local"  # start the embedded (or a given) tritonserver binary here
    DOCKER = "docker"  # start a Triton container through the docker SDK
    REMOTE = "remote"  # attach to a server that is already running


class Protocol(str, enum.Enum):
    GRPC = "grpc"
    HTTP = "http"


def _positive_int(field_name: str, value: object) -> int:
    # bool is an int subclass; True as a batch size is a mistake, not 1
    if isinstance(value, bool):
        raise ConfigError(field_name, value, "must be a positive whole number")
    if isinstance(value, float | np.floating):
        if not float(value).is_integer():
            raise ConfigError(field_name, value, "must be a positive whole number")
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ConfigError(field_name, value, "must be a positive whole number") from None
    try:
        value = operator.index(value)  # int, numpy integers, anything integral
    except TypeError:
        raise ConfigError(field_name, value, "must be a positive whole number") from None
    if value <= 0:
        raise ConfigError(field_name, value, "must be 1 or more")
    return value


def positive_int_list(field_name: str, values: object) -> tuple[int, ...]:
    """Validate a list of positive integers; a string is read as a comma-separated list.

    >>> positive_int_list("batch_sizes", "1, 8,8")
    (1, 8)
    """
    if isinstance(values, str):
        items: list[object] = [v for v in values.replace(" ", "").split(",")]
        if items == [""]:
            items = []
        if any(v == "" for v in items):
            raise ConfigError(field_name, values, "has an empty item; write values like 1,2,4")
    elif isinstance(values, int | float | np.integer) and not isinstance(values, bool):
        items = [values]
    elif isinstance(values, Iterable):
        items = list(values)
    else:
        raise ConfigError(field_name, values, "must be a list of positive whole numbers")
    if not items:
        raise ConfigError(field_name, values, "must name at least one value")
    out: list[int] = []
    for item in items:
        try:
            number = _positive_int(field_name, item)
        except ConfigError as e:
            raise ConfigError(field_name, values, f"item {item!r} {e.reason}") from None
        if number not in out:
            out.append(number)
    return tuple(out)


def parse_shape(field_name: str, text: str) -> tuple[str, tuple[int, ...]]:
    """Parse perf_analyzer's ``NAME:D1,D2,...`` shape syntax.

    >>> parse_shape("shapes", "SEQUENCE:128,32")
    ('SEQUENCE', (128, 32))
    """
    name, sep, dims = text.rpartition(":")
    if not sep or not name:
        raise ConfigError(field_name, text, "must look like INPUT_NAME:D1,D2 (for example SEQUENCE:128,32)")
    try:
        shape = tuple(int(d) for d in dims.split(","))
    except ValueError:
        raise ConfigError(field_name, text, "dimensions must be whole numbers separated by commas") from None
    if any(d <= 0 for d in shape):
        raise ConfigError(field_name, text, "every dimension must be 1 or more")
    return name, shape


def parse_header(field_name: str, text: str) -> tuple[str, str]:
    """Parse one ``NAME:VALUE`` access header (the value may hold colons).

    >>> parse_header("--header", "admin-key: s3cret")
    ('admin-key', 's3cret')
    """
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ConfigError(field_name, text, "must look like NAME:VALUE")
    return name.strip(), value.strip()


MAX_CLIENT_PROCESSES = 32


@dataclass(frozen=True)
class MeasurementSettings:
    """How each point is measured; defaults follow perf_analyzer's stability rule.

    A point is measured in windows of ``window_ms``. It is stable when the last
    ``stable_windows`` windows each lie within ``stability_pct`` percent of their mean on
    throughput and on average latency; after ``max_trials`` windows it is kept as unstable.
    """

    window_ms: int = 1000
    stability_pct: float = 10.0
    stable_windows: int = 3
    max_trials: int = 10
    protocol: Protocol = Protocol.GRPC
    client_processes: int = 0  # 0: choose from the concurrency and the CPU count
    request_timeout_s: float = 30.0
    warmup_requests: int = 1  # per request slot, not counted; 0 turns warm-up off

    def __post_init__(self) -> None:
        object.__setattr__(self, "window_ms", _positive_int("window_ms", self.window_ms))
        if isinstance(self.stability_pct, bool) or not (
            isinstance(self.stability_pct, int | float) and 0 < self.stability_pct < 100
        ):
            raise ConfigError("stability_pct", self.stability_pct, "must be a percentage above 0 and below 100")
        object.__setattr__(self, "stable_windows", _positive_int("stable_windows", self.stable_windows))
        object.__setattr__(self, "max_trials", _positive_int("max_trials", self.max_trials))
        if self.max_trials < self.stable_windows:
            raise ConfigError(
                "max_trials", self.max_trials, f"must be at least stable_windows ({self.stable_windows})"
            )
        try:
            object.__setattr__(self, "protocol", Protocol(self.protocol))
        except ValueError:
            raise ConfigError("protocol", self.protocol, "must be 'grpc' or 'http'") from None
        if isinstance(self.client_processes, bool) or not isinstance(self.client_processes, int) or self.client_processes < 0:
            raise ConfigError("client_processes", self.client_processes, "must be 0 (automatic) or a positive whole number")
        if not (isinstance(self.request_timeout_s, int | float) and self.request_timeout_s > 0):
            raise ConfigError("request_timeout_s", self.request_timeout_s, "must be a positive number of seconds")
        if isinstance(self.warmup_requests, bool) or not isinstance(self.warmup_requests, int) or self.warmup_requests < 0:
            raise ConfigError("warmup_requests", self.warmup_requests, "must be 0 or a positive whole number")

    def processes_for(self, concurrency: int) -> int:
        """Client processes for one point: never more than the requests in flight."""
        if self.client_processes:
            return min(self.client_processes, concurrency)
        # One request slot per process where the cores allow: threads of one process
        # wait for each other's GIL on every response. On the H100 host (16 cores) at
        # batch 1, concurrency 16, 16 processes gave 3655 infer/s, 4 processes 2939 and one
        # 2672 (benchmarks/client_variants.py, docs/benchmarks.md). Two cores are left to the
        # server; on a 2-core machine everything shares one process, since extra processes
        # would only take CPU from the server.
        spare = max(1, (os.cpu_count() or 1) - 2)
        return max(1, min(concurrency, spare, MAX_CLIENT_PROCESSES))


def _checked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Access headers as every request and control call sends them: a name is a token (no
    spaces, colons or line breaks), a value holds no line break (it would end the header)."""
    checked = {}
    for name, value in dict(headers).items():
        name, value = str(name).strip(), str(value).strip()
        if not name or any(c in name for c in " \t:\r\n") or not name.isascii():
            raise ConfigError("headers", {name: value}, f"{name!r} is not a header name")
        if "\r" in value or "\n" in value:
            raise ConfigError("headers", {name: value}, f"the value of {name} holds a line break")
        checked[name] = value
    return checked


GPU_KEYWORDS = ("auto", "all", "none")


def _gpu_selection(value: object) -> str:
    """``gpus`` as Docker's device request takes it: auto, all, none, or a comma-separated
    list of GPU indexes or UUIDs (``GPU-...``, ``MIG-...``), each once."""
    reason = ("must be auto, all, none, or GPU indexes or UUIDs separated by commas, like 0,1 or GPU-5b7c... "
              "(a MIG instance by its MIG- UUID)")
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("gpus", value, reason)
    text = value.strip()
    if text.lower() in GPU_KEYWORDS:
        return text.lower()
    ids = [part.strip() for part in text.split(",")]
    for gpu in ids:
        if not (gpu.isascii() and gpu.isdigit() or gpu.startswith(("GPU-", "MIG-")) and len(gpu) > 4):
            raise ConfigError("gpus", value, f"{gpu!r} is not a GPU index or UUID: {reason}")
    if len(set(ids)) != len(ids):
        raise ConfigError("gpus", value, "names a GPU twice")
    return ",".join(ids)


@dataclass(frozen=True)
class ServerSettings:
    """Where the Triton server comes from and how to reach it."""

    launch_mode: LaunchMode = LaunchMode.LOCAL
    url: str | None = None  # remote: host:port of gRPC (or HTTP with protocol=http)
    http_url: str | None = None  # remote: HTTP endpoint for health and repository calls
    tritonserver_path: Path | None = None  # local: a tritonserver binary instead of the embedded one
    backend_python: Path | None = None  # local: the Python whose packages the models use
    triton_version: str | None = None  # docker mode (nvcr.io/nvidia/tritonserver:<version>-py3)
    triton_image: str | None = None  # docker mode: an image instead of the NGC one for triton_version
    gpus: str = "auto"  # docker mode: auto (all where NVML sees GPUs), all, none, or ids "0,1"
    host: str = DEFAULT_HOST
    http_port: int | None = None
    grpc_port: int | None = None
    metrics_port: int | None = None
    startup_timeout_s: float = 120.0
    # a model load (a TensorRT engine build can take minutes) may take this long before the
    # server is taken to be hung; every other call has the measurement's request timeout
    model_load_timeout_s: float = 600.0
    extra_args: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    log_path: Path | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "launch_mode", LaunchMode(self.launch_mode))
        except ValueError:
            modes = ", ".join(m.value for m in LaunchMode)
            raise ConfigError("launch_mode", self.launch_mode, f"must be one of {modes}") from None
        for name in ("http_port", "grpc_port", "metrics_port"):
            port = getattr(self, name)
            if port is None:
                continue
            port = _positive_int(name, port)
            if port > 65535:
                raise ConfigError(name, port, "must be a TCP port between 1 and 65535")
            object.__setattr__(self, name, port)
        ports = [p for p in (self.http_port, self.grpc_port, self.metrics_port) if p is not None]
        if len(ports) != len(set(ports)):
            raise ConfigError("ports", tuple(ports), "HTTP, gRPC and metrics ports must differ")
        if self.launch_mode is LaunchMode.DOCKER and not (self.triton_image or self.triton_version):
            raise ConfigError("triton_image", self.triton_image,
                              "docker launch mode needs --triton-image or --triton-version (for example 24.08)")
        object.__setattr__(self, "gpus", _gpu_selection(self.gpus))
        if self.launch_mode is LaunchMode.REMOTE and not self.url:
            raise ConfigError("url", self.url, "remote launch mode needs the server's URL (for example localhost:8001)")
        for name in ("tritonserver_path", "backend_python", "log_path"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)).expanduser())
        for name in ("startup_timeout_s", "model_load_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, int | float) and value > 0):
                raise ConfigError(name, value, "must be a positive number of seconds")
        object.__setattr__(self, "extra_args", tuple(self.extra_args))
        object.__setattr__(self, "headers", _checked_headers(self.headers))


@dataclass(frozen=True)
class MonitorSettings:
    """Which samplers run and how often. ``nvml`` may be turned off; it is off by itself
    (columns NaN, one notice) where NVML is absent."""

    nvml: bool = True
    nvml_interval_s: float = 0.05
    process_sampling: bool = True
    process_interval_s: float = 0.1
    triton_metrics: bool = True
    triton_metrics_interval_s: float = 0.5

    def __post_init__(self) -> None:
        for name in ("nvml_interval_s", "process_interval_s", "triton_metrics_interval_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.001 <= value <= 60:
                raise ConfigError(name, value, "must be a number of seconds between 0.001 and 60")


@dataclass(frozen=True)
class SweepSpec:
    """One sweep: which models, over which batch sizes and concurrency values, and how.

    ``input_shapes`` gives the shape (without the batch dimension) of inputs whose
    configuration has variable (-1) dimensions, keyed by input name, as perf_analyzer's
    ``--shape`` does. ``input_data`` chooses synthetic data: ``"random"`` or ``"zero"``,
    or a path to a ``.npz`` file whose arrays are keyed by input name.
    """

    models: tuple[str, ...]
    model_repository: Path | None = None
    batch_sizes: tuple[int, ...] = (1,)
    concurrency: tuple[int, ...] = (1,)
    server: ServerSettings = field(default_factory=ServerSettings)
    measurement: MeasurementSettings = field(default_factory=MeasurementSettings)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    input_data: str = "random"
    baseline_s: float = 2.0
    export_path: Path | None = None
    check_environment: bool = True

    def __post_init__(self) -> None:
        models = self.models
        if isinstance(models, str):
            models = tuple(m for m in models.replace(" ", "").split(",") if m)
        models = tuple(models)
        if not models:
            raise ConfigError("models", self.models, "must name at least one model")
        for m in models:
            if not isinstance(m, str) or not m.strip():
                raise ConfigError("models", self.models, f"item {m!r} is not a model name")
        object.__setattr__(self, "models", tuple(dict.fromkeys(models)))
        object.__setattr__(self, "batch_sizes", positive_int_list("batch_sizes", self.batch_sizes))
        object.__setattr__(self, "concurrency", positive_int_list("concurrency", self.concurrency))
        if self.model_repository is not None:
            object.__setattr__(self, "model_repository", Path(self.model_repository).expanduser())
        elif self.server.launch_mode is not LaunchMode.REMOTE:
            raise ConfigError("model_repository", None, "local and docker launch modes need a model repository")
        shapes: dict[str, tuple[int, ...]] = {}
        for name, shape in dict(self.input_shapes).items():
            dims = tuple(shape)
            if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in dims):
                raise ConfigError("input_shapes", {name: shape}, "dimensions must be whole numbers of 1 or more")
            shapes[name] = dims
        object.__setattr__(self, "input_shapes", shapes)
        if self.input_data not in ("random", "zero"):
            path = Path(self.input_data).expanduser()
            if path.suffix != ".npz" or not path.is_file():
                raise ConfigError("input_data", self.input_data, "must be 'random', 'zero' or an existing .npz file")
        if not (isinstance(self.baseline_s, int | float) and math.isfinite(self.baseline_s) and self.baseline_s >= 0):
            raise ConfigError("baseline_s", self.baseline_s, "must be 0 or a positive number of seconds")
        if self.export_path is not None:
            object.__setattr__(self, "export_path", Path(self.export_path).expanduser())

    @property
    def points_per_model(self) -> int:
        return len(self.batch_sizes) * len(self.concurrency)

    def describe(self) -> dict[str, Any]:
        """A plain dictionary of the spec, for logs and result files."""
        return {
            "models": list(self.models),
            "model_repository": str(self.model_repository) if self.model_repository else None,
            "batch_sizes": list(self.batch_sizes),
            "concurrency": list(self.concurrency),
            "launch_mode": self.server.launch_mode.value,
            "protocol": self.measurement.protocol.value,
            "window_ms": self.measurement.window_ms,
            "stability_pct": self.measurement.stability_pct,
            "stable_windows": self.measurement.stable_windows,
            "max_trials": self.measurement.max_trials,
            "input_shapes": {k: list(v) for k, v in self.input_shapes.items()},
            "input_data": self.input_data,
            "baseline_s": self.baseline_s,
        }
