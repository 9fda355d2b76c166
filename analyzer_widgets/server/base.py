"""The interface every launch mode implements: start, stop, alive, logs."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from types import TracebackType


@dataclass(frozen=True)
class Endpoints:
    """Where a running server answers. URLs are ``host:port``, as tritonclient takes them."""

    http: str
    grpc: str
    metrics: str | None  # full URL of /metrics, or None when unknown

    def for_protocol(self, protocol: str) -> str:
        return self.grpc if protocol == "grpc" else self.http


class TritonServer(abc.ABC):
    """A Triton server the runner can use. Use it as a context manager::

    with LocalServer(repo, settings) as server:
        print(server.endpoints.grpc)
    """

    #: whether this object started the server (and so may load and unload freely)
    owns_process: bool = True

    @property
    @abc.abstractmethod
    def endpoints(self) -> Endpoints: ...

    @abc.abstractmethod
    def start(self) -> None:
        """Start (or attach to) the server and return once it is ready; raise
        :class:`~analyzer_widgets.errors.ServerStartError` with the log tail if it is not."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop the server if this object started it. Safe to call twice."""

    @abc.abstractmethod
    def check_alive(self) -> None:
        """Raise :class:`~analyzer_widgets.errors.ServerError` if the server has died."""

    def logs(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's log, where this object can read it."""
        return ""

    @property
    def pid(self) -> int | None:
        """The server's process id on this machine, where there is one."""
        return None

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])
