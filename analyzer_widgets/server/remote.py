"""Launch mode ``remote``: attach to a Triton server that is already running.

Its URL may ask for TLS (``grpcs://``, ``https://``): then every client of the sweep (the
control calls, this readiness check, the load generator's connections) speaks TLS only,
and a certificate problem is found here, before any load (server/_tls.py)."""

from __future__ import annotations

from analyzer_widgets.config import Protocol, ServerSettings
from analyzer_widgets.errors import ServerError, ServerStartError
from analyzer_widgets.server._tls import tls_problem
from analyzer_widgets.server.base import Endpoints, TritonServer
from analyzer_widgets.server.control import TritonControl


class RemoteServer(TritonServer):
    """A server someone else runs. We never stop it, and never unload a model we did
    not load ourselves (the runner checks :attr:`owns_process`)."""

    owns_process = False

    def __init__(self, settings: ServerSettings, protocol: Protocol = Protocol.GRPC) -> None:
        if not settings.url:
            raise ServerStartError("remote launch mode needs the server's URL")
        self.settings = settings
        self.protocol = Protocol(protocol)
        address = settings.address or ""
        # Only one endpoint is known; the control calls and the load use the same one.
        self._endpoints = Endpoints(http=address, grpc=address, metrics=None)

    def start(self) -> None:
        tls = self.settings.tls
        if tls is not None:
            problem = tls_problem(self.endpoints.grpc, self.protocol.value, tls)
            if problem is not None:
                raise ServerStartError(problem)
        ctl = TritonControl(self.endpoints.grpc, self.protocol.value, self.settings.headers, timeout_s=10, tls=tls)
        try:
            if not ctl.is_ready():
                ctl.server_version()  # raises the specific reason (refused, DNS, wrong protocol)
                raise ServerStartError(f"the Triton server at {self.settings.url} answers but is not ready")
        except ServerError as e:
            if isinstance(e, ServerStartError):
                raise
            raise ServerStartError(
                f"cannot use the remote Triton server at {self.settings.url} over "
                f"{self.protocol.value}: {e}"
            ) from e
        finally:
            ctl.close()

    def stop(self) -> None:
        pass

    def check_alive(self) -> None:
        ctl = TritonControl(self.endpoints.grpc, self.protocol.value, self.settings.headers, timeout_s=5,
                            tls=self.settings.tls)
        try:
            if not ctl.is_ready():
                raise ServerError(f"the remote Triton server at {self.settings.url} is not ready any more")
        finally:
            ctl.close()
