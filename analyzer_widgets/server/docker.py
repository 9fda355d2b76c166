"""Launch mode ``docker``: Triton in a container, through the ``docker`` SDK.

The image is ``settings.triton_image``, or NGC's ``nvcr.io/nvidia/tritonserver:<version>-py3``
for ``settings.triton_version``. The model repository is mounted read-only at /models;
ports are published on 127.0.0.1 (free host ports where unset); GPUs are passed through
with a device request where the host has them. Every container carries labels naming
this tool, the host and the process that started it, so a later run finds and removes a
container left behind by a run that was killed.
"""

from __future__ import annotations

import atexit
import os
import socket
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from analyzer_widgets.config import ServerSettings
from analyzer_widgets.errors import ConfigError, ServerError, ServerStartError
from analyzer_widgets.server._ports import port_is_free
from analyzer_widgets.server.base import Endpoints, TritonServer, probe_ready, tail, wait_until_ready

NGC_IMAGE = "nvcr.io/nvidia/tritonserver:{version}-py3"
LABEL = "analyzer-widgets.managed"
OWNER_LABEL = "analyzer-widgets.owner"  # "<hostname>/<pid namespace>:<pid>" of the process that started it
CONTAINER_PORTS = {"http_port": 8000, "grpc_port": 8001, "metrics_port": 8002}
_STOP_TIMEOUT_S = 10

_running: weakref.WeakSet[DockerServer] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_running):
        server.stop()


def image_for(settings: ServerSettings) -> str:
    if settings.triton_image:
        return settings.triton_image
    if settings.triton_version:
        return NGC_IMAGE.format(version=settings.triton_version)
    raise ConfigError("triton_image", None, "docker launch mode needs --triton-image or --triton-version (e.g. 24.08)")


def docker_client() -> Any:
    """A client of the local Docker daemon, or a clear error when there is none."""
    try:
        import docker
    except ImportError as e:
        raise ServerStartError("docker launch mode needs the docker package: pip install docker") from e
    try:
        client = docker.from_env()
        client.ping()
    except Exception as e:  # DockerException and the connection errors under it
        where = os.environ.get("DOCKER_HOST", "the default socket /var/run/docker.sock")
        raise ServerStartError(
            f"no Docker daemon answers at {where} ({e}). Start one (dockerd, or systemctl start docker) "
            "and make sure this user may use it, or use --launch-mode local"
        ) from e
    return client


def _pid_namespace() -> str:
    """This process's pid namespace, e.g. ``pid:[4026531836]``.

    The hostname alone does not say whose pids a label holds: an analyzer in a container
    run with ``--network host`` has the host's name but its own pids, and must not judge the
    host's containers by them (nor the host judge its).
    """
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return "pid:[unknown]"


def _owner_host() -> str:
    return f"{socket.gethostname()}/{_pid_namespace()}"


def _owner() -> str:
    return f"{_owner_host()}:{os.getpid()}"


def remove_leftovers(client: Any) -> list[str]:
    """Remove containers this tool started from processes of this host that are gone."""
    import psutil

    removed = []
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        owner = container.labels.get(OWNER_LABEL, "")
        host, _, pid = owner.rpartition(":")
        if host != _owner_host() or not pid.isdigit():
            continue  # another host's or another pid namespace's (a shared daemon): not ours to judge
        if int(pid) != os.getpid() and psutil.pid_exists(int(pid)):
            continue  # its run is still going
        if int(pid) == os.getpid() and any(s._container is not None and s._container.id == container.id for s in _running):
            continue
        container.remove(force=True)
        removed.append(container.name)
    return removed


def device_requests(gpus: str, *, host_has_gpus: bool) -> list[Any]:
    """Docker device requests for ``ServerSettings.gpus`` (already validated there): none
    for ``none``, or for ``auto`` on a host where NVML sees no GPU; every GPU for ``all``
    (``docker run --gpus all``); else the listed indexes or UUIDs."""
    import docker

    if gpus == "none" or (gpus == "auto" and not host_has_gpus):
        return []
    if gpus in ("auto", "all"):
        return [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return [docker.types.DeviceRequest(device_ids=gpus.split(","), capabilities=[["gpu"]])]


class DockerServer(TritonServer):
    """tritonserver in a container, with ``--model-control-mode=explicit``."""

    def __init__(self, model_repository: Path | str, settings: ServerSettings,
                 on_progress: Callable[[str], None] | None = None) -> None:
        self.model_repository = Path(model_repository).resolve()
        self.settings = settings
        self.image = image_for(settings)
        self.on_progress = on_progress or (lambda _message: None)
        self._client: Any = None
        self._container: Any = None
        self._endpoints: Endpoints | None = None

    @property
    def pid(self) -> int | None:
        # the container's first process, as this host sees it: its tree is the server's
        if self._container is None:
            return None
        pid = self._container.attrs.get("State", {}).get("Pid")
        return int(pid) if pid else None

    @property
    def container_name(self) -> str | None:
        return self._container.name if self._container is not None else None

    def start(self) -> None:
        if self._container is not None:
            return
        if not self.model_repository.is_dir():
            raise ServerStartError(f"model repository {str(self.model_repository)!r} is not a directory")
        host = self.settings.host
        for name in CONTAINER_PORTS:
            port = getattr(self.settings, name)
            if port is not None and not port_is_free(host, port):
                from analyzer_widgets.errors import PortInUseError

                raise PortInUseError(name, port)
        self._client = docker_client()
        removed = remove_leftovers(self._client)
        if removed:
            self.on_progress(f"removed containers left by earlier runs: {', '.join(removed)}")
        self._ensure_image()
        self._run_container()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _ensure_image(self) -> None:
        import docker

        try:
            self._client.images.get(self.image)
            return
        except docker.errors.ImageNotFound:
            pass
        self.on_progress(f"pulling {self.image} (not on this machine yet)")
        repository, _, tag = self.image.rpartition(":") if ":" in self.image.split("/")[-1] else (self.image, "", "latest")
        try:
            last = 0.0
            for line in self._client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
                if time.monotonic() - last > 2 and line.get("status"):
                    self.on_progress(f"pull {self.image}: {line.get('status')} {line.get('progress', '')}".rstrip())
                    last = time.monotonic()
                if "error" in line:
                    raise ServerStartError(f"pulling {self.image} failed: {line['error']}")
        except docker.errors.APIError as e:
            raise ServerStartError(
                f"the image {self.image} is not on this machine and pulling it failed: {e.explanation or e}. "
                "Log in to the registry (docker login nvcr.io), or build or load the image first"
            ) from e

    def _device_requests(self) -> list[Any]:
        from analyzer_widgets.machine import nvml_unavailable_reason

        gpus = self.settings.gpus
        return device_requests(gpus, host_has_gpus=gpus != "auto" or nvml_unavailable_reason() is None)

    def _run_container(self) -> None:
        import docker

        host = self.settings.host
        ports = {f"{inner}/tcp": (host, getattr(self.settings, name)) for name, inner in CONTAINER_PORTS.items()}
        command = [
            "tritonserver", "--model-repository=/models", "--model-control-mode=explicit",
            "--log-verbose=0", "--exit-timeout-secs=5", *self.settings.extra_args,
        ]
        gpu_requests = self._device_requests()
        try:
            # create, then start: a container that cannot start (no GPU runtime, a port taken
            # since) is still created, and must be removed here, not left for the next run
            container = self._client.containers.create(
                self.image, command=command, ports=ports,
                volumes={str(self.model_repository): {"bind": "/models", "mode": "ro"}},
                labels={LABEL: "true", OWNER_LABEL: _owner()},
                device_requests=gpu_requests,
                shm_size="1g",  # the Python backend passes tensors through shared memory
                name=f"analyzer-widgets-{os.getpid()}-{int(time.time() * 1000) % 1_000_000}",
            )
        except docker.errors.APIError as e:
            raise ServerStartError(f"could not create a container of {self.image}: {e.explanation or e}") from e
        try:
            container.start()
        except docker.errors.APIError as e:
            try:
                container.remove(force=True)
            except docker.errors.APIError:
                pass  # remove_leftovers takes it at the next start
            reason = str(e.explanation or e)
            if gpu_requests and ("device driver" in reason or "nvidia" in reason.lower()):
                raise ServerStartError(
                    f"--gpus {self.settings.gpus}: Docker cannot pass GPUs to containers on this machine "
                    f"({reason}). Install the NVIDIA Container Toolkit and restart dockerd, or use --gpus none"
                ) from e
            raise ServerStartError(f"could not start a container of {self.image}: {reason}") from e
        self._container = container
        _running.add(self)
        self._container.reload()
        published = self._container.ports

        def host_port(inner: int) -> int:
            bindings = published.get(f"{inner}/tcp") or []
            if not bindings:
                raise ServerStartError(f"the container published no host port for {inner}", self.logs(30))
            return int(bindings[0]["HostPort"])

        self._endpoints = Endpoints(
            http=f"{host}:{host_port(8000)}",
            grpc=f"{host}:{host_port(8001)}",
            metrics=f"http://{host}:{host_port(8002)}/metrics",
        )

    def _wait_ready(self) -> None:
        container = self._container

        def died() -> str | None:
            container.reload()
            if container.status not in ("exited", "dead"):
                return None
            code = container.attrs.get("State", {}).get("ExitCode")
            return f"the Triton container exited with code {code} during start-up"

        wait_until_ready(self.endpoints.http, self.settings.startup_timeout_s, died, lambda: self.logs(30),
                         "the Triton container", poll_s=0.1)

    def check_alive(self) -> None:
        if self._container is None:
            raise ServerError("the server is not running")
        try:
            self._container.reload()
        except Exception as e:  # removed under us
            raise ServerError(f"the Triton container is gone: {e}") from e
        if self._container.status != "running":
            raise ServerError(f"the Triton container is {self._container.status}\n{self.logs(15)}")
        problem = probe_ready(self.endpoints.http)
        if problem is not None:
            raise ServerError(f"the Triton container is running but {problem}\n{self.logs(15)}")

    def logs(self, lines: int = 40) -> str:
        if self._container is None:
            return ""
        try:
            return tail(self._container.logs(tail=lines).decode(errors="replace"), lines)
        except Exception:  # noqa: BLE001 - a log we cannot read must not hide the real error
            return ""

    def stop(self) -> None:
        _running.discard(self)
        container, self._container = self._container, None
        if container is None:
            return
        try:
            container.stop(timeout=_STOP_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - removing it below is what matters
            pass
        try:
            container.remove(force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
