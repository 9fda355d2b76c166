"""Launch mode ``local``: run tritonserver as a child process of this machine."""

from __future__ import annotations

import atexit
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, BinaryIO

from analyzer_widgets.config import ServerSettings
from analyzer_widgets.errors import EnvironmentCheckError, ServerError, ServerStartError
from analyzer_widgets.server import _embedded
from analyzer_widgets.server._ports import choose_ports
from analyzer_widgets.server.base import Endpoints, TritonServer, probe_ready, tail, wait_until_ready

_STOP_GRACE_S = 10.0


class LocalServer(TritonServer):
    """tritonserver started here with ``--model-control-mode=explicit`` (no models loaded:
    that is the baseline), bound to ``settings.host`` (127.0.0.1 unless told otherwise).

    >>> with LocalServer("examples/model_repository", ServerSettings()) as s:  # doctest: +SKIP
    ...     s.endpoints.grpc
    '127.0.0.1:40123'
    """

    def __init__(
        self,
        model_repository: Path | str,
        settings: ServerSettings | None = None,
        backend_python: Path | str | None = None,
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        self.model_repository = Path(model_repository).resolve()
        self.settings = settings or ServerSettings()
        # The Python whose packages the models import (numpy, torch): this one by default.
        self.backend_python = _embedded.models_python(backend_python or self.settings.backend_python)
        self._proc: subprocess.Popen[bytes] | None = None
        self._endpoints: Endpoints | None = None
        self._log_path: Path | None = None
        self._log_file: BinaryIO | None = None
        self._log_is_temporary = False
        #: stubs of earlier runs whose server had died, killed by start() (remove_orphaned_stubs)
        self.removed_stubs: list[int] = []
        self.on_progress = on_progress or (lambda _message: None)

    # -- interface ---------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    def command(self, ports: dict[str, int], backend_dir: Path | None) -> list[str]:
        host = self.settings.host
        cmd = [
            str(self._binary()),
            f"--model-repository={self.model_repository}",
            "--model-control-mode=explicit",
            f"--http-address={host}",
            f"--grpc-address={host}",
            f"--metrics-address={host}",
            f"--http-port={ports['http_port']}",
            f"--grpc-port={ports['grpc_port']}",
            f"--metrics-port={ports['metrics_port']}",
            "--log-verbose=0",
            "--exit-timeout-secs=5",
        ]
        if backend_dir is not None:
            cmd.append(f"--backend-directory={backend_dir}")
        return cmd + list(self.settings.extra_args)

    def start(self) -> None:
        if self._proc is not None:
            return
        if not self.model_repository.is_dir():
            raise ServerStartError(f"model repository {str(self.model_repository)!r} is not a directory")
        embedded = None if self.settings.tritonserver_path else _embedded.find_embedded()
        binary = self._binary()
        if not binary.is_file() or not os.access(binary, os.X_OK):
            raise EnvironmentCheckError(f"tritonserver binary {str(binary)!r} does not exist or is not executable")
        backend_dir = _embedded.prepare_backend_dir(embedded, self.backend_python) if embedded else None
        env = _embedded.server_environment(embedded, self.backend_python)
        if backend_dir is not None:
            self.removed_stubs = remove_orphaned_stubs(backend_dir.parent)
            if self.removed_stubs:
                self.on_progress(f"stopped {len(self.removed_stubs)} model process(es) left by an earlier run whose "
                                 f"server had died (pids {', '.join(map(str, self.removed_stubs))})")

        # Ports we chose ourselves can be taken by someone else between our check and
        # the server's bind; then try once more with fresh ones.
        user_chose_ports = any(
            p is not None for p in (self.settings.http_port, self.settings.grpc_port, self.settings.metrics_port)
        )
        for attempt in range(2):
            ports = choose_ports(
                self.settings.host,
                {
                    "http_port": self.settings.http_port,
                    "grpc_port": self.settings.grpc_port,
                    "metrics_port": self.settings.metrics_port,
                },
            )
            try:
                self._launch(self.command(ports, backend_dir), env, ports)
                return
            except ServerStartError as e:
                if attempt == 0 and not user_chose_ports and "already in use" in e.log_tail.lower():
                    continue
                raise

    def _launch(self, cmd: list[str], env: dict[str, str], ports: dict[str, int]) -> None:
        if self.settings.log_path:
            self._log_path = Path(self.settings.log_path)
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_is_temporary = False
        else:
            # Every error we raise quotes the log's tail, so a log nobody asked to keep
            # is removed on stop; give settings.log_path (the CLI puts it beside the CSV
            # files) to keep the whole of it.
            fd, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
            self._log_is_temporary = True
        self._log_file = open(self._log_path, "wb")  # noqa: SIM115 - closed in stop()
        try:
            # No preexec_fn: unsafe while other threads run (the child may deadlock before its
            # exec); _die_with_parent sets the parent-death signal, forked by a lasting thread.
            self._proc = _launcher.popen(
                _dying_with_this_process(cmd),
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                # its own process group, so stop() reaches the stubs it forks too
                start_new_session=True,
            )
            _running.add(self)
        except OSError as e:
            self._close_log()
            raise ServerStartError(f"could not run {cmd[0]}: {e}") from e
        host = self.settings.host
        self._endpoints = Endpoints(
            http=f"{host}:{ports['http_port']}",
            grpc=f"{host}:{ports['grpc_port']}",
            metrics=f"http://{host}:{ports['metrics_port']}/metrics",
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        proc = self._proc
        assert proc is not None

        def died() -> str | None:
            code = proc.poll()
            return None if code is None else f"tritonserver exited with code {code} during start-up"

        def log_tail() -> str:
            # after a bad flag tritonserver prints the cause, then 400 lines of usage
            return _without_usage(self._read_log_tail(1000), 30) if proc.poll() is not None else self._read_log_tail(30)

        wait_until_ready(self.endpoints.http, self.settings.startup_timeout_s, died, log_tail, "tritonserver")

    def check_alive(self) -> None:
        if self._proc is None:
            raise ServerError("the server is not running")
        code = self._proc.poll()
        if code is not None:
            how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
            raise ServerError(f"tritonserver (pid {self._proc.pid}) {how}\n{self._read_log_tail(15)}")
        problem = probe_ready(self.endpoints.http)
        if problem is not None:
            raise ServerError(f"tritonserver (pid {self._proc.pid}) is running but {problem}\n{self._read_log_tail(15)}")

    def stop(self) -> None:
        _running.discard(self)
        proc, self._proc = self._proc, None
        if proc is not None:
            _stop_process_group(proc, _STOP_GRACE_S)
        self._close_log()
        if self._log_is_temporary and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)

    def logs(self, lines: int = 40) -> str:
        return self._read_log_tail(lines)

    # -- helpers -----------------------------------------------------------------------
    def _binary(self) -> Path:
        if self.settings.tritonserver_path:
            return Path(self.settings.tritonserver_path)
        return _embedded.find_embedded().binary

    def _read_log_tail(self, lines: int) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        with open(self._log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            return tail(f.read().decode(errors="replace"), lines)

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _without_usage(log: str, lines: int) -> str:
    """The last ``lines`` lines of a start-up log, less tritonserver's usage text.

    On a bad command line tritonserver prints the cause ("unrecognized option ...") and
    then some 400 lines of usage; a plain tail would show only usage and hide the cause.
    """
    kept: list[str] = []
    in_usage = False
    for line in log.splitlines():
        if line.startswith("Usage: tritonserver"):
            in_usage = True
            continue
        # the usage: section headings ("Server:"), each option as "  --name <type>", then
        # tab-indented text
        if in_usage and (line.startswith(("  --", "\t")) or not line.strip() or line.endswith(":")):
            continue
        in_usage = False
        kept.append(line)
    return tail("\n".join(kept), lines)


#: servers started here and not stopped yet: stopped at exit (a notebook kernel shut down
#: mid-sweep, a script that ends without stopping), so none outlives this process
_running: weakref.WeakSet[LocalServer] = weakref.WeakSet()


def remove_orphaned_stubs(backends_root: Path) -> list[int]:
    """Kill Python-backend stubs of our own backend directories whose server is gone.

    A stub outlives its server when the server dies alone (SIGKILL, the OOM killer) and the
    process that started it dies too before stop() could kill the group: the stub then
    waits on the server's shared memory for good and keeps its memory (on a GPU, the
    model's); one seen stuck that way ignored SIGTERM, so it gets SIGKILL. Such a stub runs
    a binary under ``backends_root`` (our cache), its parent is no tritonserver and its
    process group's leader (the server) no longer exists, so no live server can be using
    it. Returns the pids killed."""
    import psutil

    root = os.path.realpath(backends_root) + os.sep
    killed: list[psutil.Process] = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = proc.info["cmdline"] or []
            # the server is given the backend directory as it is, links and all
            binary = os.path.realpath(cmdline[0]) if cmdline else ""
            if not binary.startswith(root) or not binary.endswith("triton_python_backend_stub"):
                continue
            if _live_tritonserver(proc.ppid()):
                continue
            pgid = os.getpgid(proc.pid)
            if pgid != proc.pid and _live_tritonserver(pgid):
                continue
            proc.kill()
            killed.append(proc)
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue  # gone meanwhile, or another user's
    # gone before the new server's baseline is read: a dying stub may still hold GPU memory.
    # A zombie has let go of everything (and init may be slow to reap it).
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_running_process(proc) for proc in killed):
        time.sleep(0.05)
    return [proc.pid for proc in killed]


def _running_process(proc: object) -> bool:
    """Whether a psutil process still runs (a zombie, dead but not reaped yet, does not)."""
    import psutil

    try:
        return proc.status() != psutil.STATUS_ZOMBIE  # type: ignore[attr-defined]
    except psutil.Error:
        return False


def _live_tritonserver(pid: int) -> bool:
    """Whether ``pid`` is a running tritonserver."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return _running_process(proc) and proc.name() == "tritonserver"
    except psutil.Error:
        return False


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_running):
        server.stop()


_DIE_WITH_PARENT = Path(__file__).with_name("_die_with_parent.py")


def _dying_with_this_process(cmd: list[str]) -> list[str]:
    """``cmd`` run so that Linux SIGTERMs it when this process dies, which covers a parent
    killed with SIGKILL (no atexit then): through _die_with_parent, which sets
    PR_SET_PDEATHSIG and execs ``cmd`` (same pid). SIGTERM, not SIGKILL: the server then
    stops its model stubs, which a SIGKILLed server would leave waiting for good.
    Elsewhere than Linux, atexit still stops the server on a normal exit."""
    if not sys.platform.startswith("linux") or not sys.executable:
        return cmd
    return [sys.executable, "-I", "-S", str(_DIE_WITH_PARENT), str(os.getpid()), str(int(signal.SIGTERM)), *cmd]


class _Launcher:
    """Starts the servers from one thread that lives as long as this process.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, not its process:
    forked from a sweep's worker thread (the panel's), a server would die with that thread."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[tuple[Future[subprocess.Popen[bytes]], list[str], dict[str, Any]]] = (
            queue.SimpleQueue())
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            # not alive in a child forked from this process (multiprocessing's fork)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="analyzer-widgets-launcher", daemon=True)
                self._thread.start()
        started: Future[subprocess.Popen[bytes]] = Future()
        self._requests.put((started, cmd, kwargs))
        try:
            return started.result()
        except BaseException:
            # interrupted (Ctrl-C) while the launcher forks: stop what it starts
            started.add_done_callback(_stop_unwanted)
            raise

    def _serve(self) -> None:
        while True:
            started, cmd, kwargs = self._requests.get()
            try:
                started.set_result(subprocess.Popen(cmd, **kwargs))
            except BaseException as e:  # noqa: BLE001 - handed to the caller, which raises it
                started.set_exception(e)


def _stop_unwanted(started: Future[subprocess.Popen[bytes]]) -> None:
    if started.exception() is None:
        _stop_process_group(started.result(), 0)


_launcher = _Launcher()


def _stop_process_group(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the process group, wait, then SIGKILL whatever is left of it.

    SIGCONT follows the SIGTERM: a stopped server (SIGSTOP, a debugger, Ctrl-Z) would hold
    the SIGTERM pending and only die by the SIGKILL after the whole grace; continued, it
    shuts down cleanly. A server that is hung for another reason gets the SIGKILL."""
    # start_new_session made the server its group's leader: the group id is its pid, and
    # stays usable after the server itself died and was reaped, while its stubs live on
    pgid: int | None = proc.pid
    if pgid is not None:
        try:
            os.killpg(pgid, signal.SIGTERM)
            os.killpg(pgid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    if pgid is not None:
        # the stubs live in the same group and may outlive the server
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
