"""Getting a Triton server: one class per launch mode behind :class:`TritonServer`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from analyzer_widgets.config import LaunchMode, Protocol, ServerSettings
from analyzer_widgets.errors import ConfigError
from analyzer_widgets.server import _embedded
from analyzer_widgets.server.base import Endpoints, TritonServer
from analyzer_widgets.server.control import ModelStats, TritonControl
from analyzer_widgets.server.local import LocalServer
from analyzer_widgets.server.remote import RemoteServer

__all__ = [
    "Endpoints",
    "LocalServer",
    "ModelStats",
    "RemoteServer",
    "TritonControl",
    "TritonServer",
    "check_models_environment",
    "make_server",
]


def check_models_environment(backend_python: Path | None) -> None:
    """Refuse a models' Python that the embedded server's Python backend cannot serve
    with (numpy 2: every output would come back empty); ``None``: the default Python."""
    _embedded.check_models_environment(_embedded.models_python(backend_python))


def make_server(
    settings: ServerSettings,
    model_repository: Path | None,
    protocol: Protocol = Protocol.GRPC,
    on_progress: Callable[[str], None] | None = None,
) -> TritonServer:
    """The server object for ``settings.launch_mode`` (not started yet). ``on_progress``
    receives what a start is doing (leftovers of earlier runs removed; docker mode: pulling)."""
    if settings.launch_mode is LaunchMode.LOCAL:
        if model_repository is None:
            raise ConfigError("model_repository", None, "local launch mode needs a model repository")
        return LocalServer(model_repository, settings, backend_python=settings.backend_python, on_progress=on_progress)
    if settings.launch_mode is LaunchMode.REMOTE:
        return RemoteServer(settings, protocol)
    if model_repository is None:
        raise ConfigError("model_repository", None, "docker launch mode needs a model repository")
    from analyzer_widgets.server.docker import DockerServer

    return DockerServer(model_repository, settings, on_progress=on_progress)
