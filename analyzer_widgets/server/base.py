"""The interface every launch mode implements: start, stop, alive, logs."""

from __future__ import annotations

import abc
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from analyzer_widgets.errors import ServerError, ServerStartError


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
    _endpoints: Endpoints | None = None

    @property
    def endpoints(self) -> Endpoints:
        """Where the server answers; known once :meth:`start` has launched it."""
        if self._endpoints is None:
            raise ServerError("the server has not been started")
        return self._endpoints

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


#: how long a running server may take to answer a health check before it is called hung
HEALTH_PROBE_TIMEOUT_S = 5.0


def probe_ready(http: str, timeout_s: float = HEALTH_PROBE_TIMEOUT_S) -> str | None:
    """Ask ``/v2/health/ready`` once; None when the server answered 200, else why not.

    A process that is alive can still be hung (stopped, deadlocked, its threads stuck in a
    backend): its port accepts connections, but nothing answers. Only a request with a
    deadline tells the two apart."""
    url = f"http://{http}/v2/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return None if r.status == 200 else f"its health check answered HTTP {r.status}"
    except urllib.error.HTTPError as e:
        return f"its health check answered HTTP {e.code}"
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            return f"it did not answer a health check within {timeout_s:g} s: it is hung"
        return f"its health check failed ({reason})"


def wait_until_ready(
    http: str,
    timeout_s: float,
    died: Callable[[], str | None],
    log_tail: Callable[[], str],
    what: str,
    poll_s: float = 0.05,
) -> None:
    """Poll ``/v2/health/ready`` until it answers 200. ``died()`` says why the server can
    no longer come up (it exited), checked every round so that is reported at once."""
    url = f"http://{http}/v2/health/ready"
    deadline = time.monotonic() + timeout_s
    while True:
        reason = died()
        if reason is not None:
            raise ServerStartError(reason, log_tail())
        try:
            with urllib.request.urlopen(url, timeout=1.0) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise ServerStartError(f"{what} was not ready after {timeout_s:g} s", log_tail())
        time.sleep(poll_s)
