"""The control plane: health, repository, load/unload, configs and statistics.

One thin wrapper over tritonclient's synchronous clients (gRPC or HTTP) whose answers
are normalised into plain values, so the runner does not care which protocol is used.
Not thread-safe: the runner's thread owns it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyzer_widgets.config import Tls
from analyzer_widgets.errors import ModelLoadError, ServerError
from analyzer_widgets.repository import ModelInfo, model_info_from_server_config
from analyzer_widgets.server._tls import tls_problem


@dataclass(frozen=True)
class ModelStats:
    """Cumulative counters of one model version from the statistics API."""

    success_count: int = 0  # requests
    fail_count: int = 0
    inference_count: int = 0  # inferences, counting each batch element
    execution_count: int = 0  # model executions (a dynamic batch is one)
    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0
    success_ns: int = 0  # arrival to response of the successful requests

    def __sub__(self, other: ModelStats) -> ModelStats:
        return ModelStats(*(getattr(self, f) - getattr(other, f) for f in self.__dataclass_fields__))

    def __add__(self, other: ModelStats) -> ModelStats:
        return ModelStats(*(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__))


@dataclass(frozen=True)
class ModelState:
    name: str
    version: str
    state: str  # READY, UNAVAILABLE, LOADING, UNLOADING or "" when never loaded
    reason: str


class TritonControl:
    """Control calls against one server endpoint.

    >>> ctl = TritonControl("127.0.0.1:8001", "grpc")  # doctest: +SKIP
    >>> ctl.load("mlp_numpy"); ctl.statistics("mlp_numpy").success_count  # doctest: +SKIP
    0
    """

    def __init__(self, address: str, protocol: str = "grpc", headers: Mapping[str, str] | None = None,
                 timeout_s: float = 60.0, load_timeout_s: float = 600.0, tls: Tls | None = None) -> None:
        self.address = address  # host:port
        self.protocol = protocol
        self.headers = dict(headers or {})
        self.timeout_s = timeout_s
        self.load_timeout_s = load_timeout_s
        self.tls = tls  # None: plain text
        if protocol == "grpc":
            import tritonclient.grpc as grpcclient

            secure: dict[str, Any] = {}
            if tls is not None:
                secure = {"ssl": True, "root_certificates": _path(tls.ca), "private_key": _path(tls.key),
                          "certificate_chain": _path(tls.cert)}
            self._client: Any = grpcclient.InferenceServerClient(url=address, **secure)
            self._load_client: Any = self._client  # gRPC takes a deadline per call
        else:
            import tritonclient.http as httpclient

            secure = {}
            if tls is not None:
                import gevent.ssl  # the HTTP client's sockets are gevent's: so must its TLS context be

                # called with the CA bundle of geventhttpclient's choice (certifi's), which ours replaces
                secure = {"ssl": True, "ssl_context_factory": lambda **_: tls.context(
                    "http/1.1", create=gevent.ssl.create_default_context)}
            self._client = httpclient.InferenceServerClient(
                url=address, connection_timeout=timeout_s, network_timeout=timeout_s, **secure
            )
            # HTTP has one timeout per client: loads get their own, longer one
            self._load_client = httpclient.InferenceServerClient(
                url=address, connection_timeout=timeout_s, network_timeout=load_timeout_s, **secure
            )

    def close(self) -> None:
        for client in {id(c): c for c in (self._client, self._load_client)}.values():
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a broken channel must not mask the real error
                pass

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from tritonclient.utils import InferenceServerException

        if self.headers:
            kwargs["headers"] = self.headers
        if self.protocol == "grpc" and "client_timeout" not in kwargs:
            kwargs["client_timeout"] = self.timeout_s
        try:
            return fn(*args, **kwargs)
        except InferenceServerException as e:
            self._raise_tls_problem(e)
            message = e.message() or str(e)
            raise ServerError(f"{what} failed on the Triton server at {self.address}: {message}{_header_hint(message)}") from e
        except Exception as e:  # connection refused, reset, DNS: tritonclient raises plain errors
            self._raise_tls_problem(e)
            raise ServerError(f"{what} failed: cannot reach the Triton server at {self.address} ({e})") from e

    def _raise_tls_problem(self, e: Exception) -> None:
        """Where a call over TLS could not reach the server, find out whether TLS is why, and
        say so with the cause (tritonclient's own words on it are vague or none)."""
        status = getattr(e, "status", None)
        if self.tls is None or (callable(status) and status() not in (None, "StatusCode.UNAVAILABLE")):
            return  # plain text, or the server answered
        problem = tls_problem(self.address, self.protocol, self.tls, timeout_s=min(self.timeout_s, 10.0))
        if problem is not None:
            raise ServerError(problem) from e

    # -- health and metadata -------------------------------------------------------------
    def is_ready(self) -> bool:
        try:
            return bool(self._call("health check", self._client.is_server_ready))
        except ServerError:
            return False

    def server_version(self) -> str:
        meta = self._call("server metadata", self._client.get_server_metadata)
        return str(meta.version if hasattr(meta, "version") else meta.get("version", ""))

    # -- repository ------------------------------------------------------------------------
    def repository_index(self) -> list[ModelState]:
        index = self._call("repository index", self._client.get_model_repository_index)
        items = index.models if hasattr(index, "models") else index
        out = []
        for m in items:
            get = (lambda k, m=m: getattr(m, k, "")) if hasattr(m, "name") else (lambda k, m=m: m.get(k, ""))
            out.append(ModelState(get("name"), str(get("version")), get("state"), get("reason")))
        return out

    def is_model_ready(self, name: str) -> bool:
        return any(m.name == name and m.state == "READY" for m in self.repository_index())

    def settled_state(self, name: str, timeout_s: float) -> str:
        """The state of ``name`` once it is neither loading nor unloading (waiting up to
        ``timeout_s``): READY, UNAVAILABLE, or "" when the server does not know it. A
        server in polling mode loads models itself, at start-up and after each change."""
        deadline = time.monotonic() + timeout_s
        while True:
            states = {m.state for m in self.repository_index() if m.name == name}
            busy = states & {"LOADING", "UNLOADING"}
            if not busy or time.monotonic() > deadline:
                return "READY" if "READY" in states else next(iter(busy or states), "")
            time.sleep(0.1)

    def load(self, name: str, config: Mapping[str, Any] | None = None) -> None:
        """Load ``name``; with ``config`` (a model config as JSON would give it), load it with
        that config instead of its repository's, which is never written (the repository
        API's config override: a variant of a model is a load, not a file)."""
        from tritonclient.utils import InferenceServerException

        kwargs: dict[str, Any] = {"headers": self.headers} if self.headers else {}
        if self.protocol == "grpc":
            kwargs["client_timeout"] = self.load_timeout_s
        if config is not None:
            kwargs["config"] = json.dumps(config)
        try:
            self._load_client.load_model(name, **kwargs)
        except Exception as e:
            if _timed_out(e):
                raise ServerError(f"loading {name!r} on the Triton server at {self.address} took more than "
                                  f"{self.load_timeout_s:g} s (model_load_timeout_s): the server may be hung") from e
            if isinstance(e, InferenceServerException):
                message = e.message() or str(e)
                if "polling is enabled" in message:
                    message = self._polling_refusal(name)
                raise ModelLoadError(name, message + _header_hint(message)) from e
            self._raise_tls_problem(e)
            raise ServerError(f"loading {name!r} failed: cannot reach the Triton server at {self.address} ({e})") from e

    def _polling_refusal(self, name: str) -> str:
        """Why a server in polling mode will not load ``name``, with its own state for it."""
        states = [m for m in self.repository_index() if m.name == name]
        state = (f"it reports the model as {states[0].state or 'not loaded'}"
                 + (f": {states[0].reason}" if states[0].reason else "")) if states else "its repository has no such model"
        return ("the server runs in polling mode (--model-control-mode=poll): it loads the models of its "
                f"repository itself and refuses load requests; {state}")

    def unload(self, name: str, wait_s: float = 30.0) -> None:
        """Unload ``name`` and wait (up to ``wait_s``) until the server has let go of it.

        The repository API answers at once while the model, its stub processes and their
        memory are released in the background (about a second for a Python-backend model);
        the next model's memory figures are only clean once that is done."""
        self._call(f"unloading {name!r}", self._client.unload_model, name)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            states = {m.state for m in self.repository_index() if m.name == name}
            if not states & {"READY", "UNLOADING", "LOADING"}:
                return
            time.sleep(0.05)

    def model_config(self, name: str, version: str = "") -> dict[str, Any]:
        """The loaded model's config as the server sees it, as JSON gives it (field names as
        in config.pbtxt): what a variant of it starts from."""
        if self.protocol == "grpc":
            response = self._call(f"config of {name!r}", self._client.get_model_config, name, version, as_json=True)
            return dict(response["config"])
        return dict(self._call(f"config of {name!r}", self._client.get_model_config, name, version))

    def model_info(self, name: str, version: str = "") -> ModelInfo:
        if self.protocol == "grpc":
            response = self._call(f"config of {name!r}", self._client.get_model_config, name, version)
            return model_info_from_server_config(response.config)
        config = self._call(f"config of {name!r}", self._client.get_model_config, name, version)
        return model_info_from_server_config(config)

    def statistics(self, name: str, version: str = "") -> ModelStats:
        raw = self._call(f"statistics of {name!r}", self._client.get_inference_statistics, name, version)
        if self.protocol == "grpc":
            from google.protobuf import json_format

            raw = json_format.MessageToDict(raw, preserving_proto_field_name=True)
        totals = ModelStats()
        for entry in raw.get("model_stats", []):
            stats = entry.get("inference_stats", {})

            def part(key: str, field: str, stats: dict[str, Any] = stats) -> int:
                return int(stats.get(key, {}).get(field, 0) or 0)

            totals = ModelStats(
                totals.success_count + part("success", "count"),
                totals.fail_count + part("fail", "count"),
                totals.inference_count + int(entry.get("inference_count", 0) or 0),
                totals.execution_count + int(entry.get("execution_count", 0) or 0),
                totals.queue_ns + part("queue", "ns"),
                totals.compute_input_ns + part("compute_input", "ns"),
                totals.compute_infer_ns + part("compute_infer", "ns"),
                totals.compute_output_ns + part("compute_output", "ns"),
                totals.success_ns + part("success", "ns"),
            )
        return totals


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _timed_out(e: Exception) -> bool:
    """Whether a tritonclient call ended because its own deadline passed (gRPC
    DEADLINE_EXCEEDED, an HTTP read timeout), not with the server's answer."""
    status = getattr(e, "status", None)
    if callable(status) and status() == "StatusCode.DEADLINE_EXCEEDED":
        return True
    return isinstance(e, TimeoutError) or type(e).__name__ == "Timeout"  # gevent's, from the HTTP client


def _header_hint(message: str) -> str:
    """How to pass the header a restricted API asks for (``--grpc-restricted-protocol``,
    ``--http-restricted-api``); empty for other messages."""
    if "is restricted, expecting header" not in message:
        return ""
    header = message.rsplit("expecting header", 1)[1].strip().strip("'\"")
    return (f" (the server restricts this API: pass the header with --header {header}:VALUE on the command line, "
            f"headers={{{header!r}: ...}} in the API, or the panel's headers field)")
