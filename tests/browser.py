"""Infrastructure for the ``@pytest.mark.browser`` tests: a real headless Chromium (Debian's
``/usr/bin/chromium``, driven by Playwright) against a real JupyterLab or Voila server on
127.0.0.1.

This is a helper module, not a test file. A test module imports the fixtures it uses and
names them as arguments, as with any fixture (ruff would call the import unused, F401, and
the arguments redefinitions of it, F811)::

    # ruff: noqa: F811
    from browser import chromium_page, jupyter_lab, screenshot, voila_app  # noqa: F401

    pytestmark = pytest.mark.browser

    def test_x(jupyter_lab, chromium_page, screenshot): ...

Fixtures
    ``chromium_page``   a fresh Playwright page (own browser context) on headless Chromium
    ``jupyter_lab``     a running ``jupyter lab`` (:class:`JupyterServer`); write notebooks into
                        ``jupyter_lab.root_dir`` and open ``jupyter_lab.url("lab/tree/x.ipynb")``
    ``voila_app``       a factory: ``voila_app(notebook_path)`` starts ``voila NOTEBOOK``
    ``screenshot``      ``screenshot(page, "name")`` saves a PNG under :data:`ARTIFACTS_DIR`

Plain helpers (for module-scoped servers and the like): :func:`start_jupyter_lab`,
:func:`start_voila`, :func:`save_screenshot`, :func:`write_notebook`,
:func:`require_browser_tools`, :func:`run_all_cells`.

Skipping: when Chromium (or Playwright, JupyterLab, Voila) is missing the test is skipped with
the reason, unless the environment variable ``CI`` is ``true``: CI must run the browser tests,
so there the same reason fails the test. ``scripts/install-system-deps.sh`` installs Chromium.

Environment variables
    ``CI``                              ``true``: a missing tool fails instead of skipping
    ``ANALYZER_WIDGETS_CHROMIUM``       the Chromium binary (default ``/usr/bin/chromium``)
    ``ANALYZER_WIDGETS_TEST_ARTIFACTS`` where screenshots and logs go (default ``test-artifacts/``
                                        at the repository root)

Every server runs in its own process group with its own temporary Jupyter config, data and
runtime directories (and IPython and JupyterLab settings directories), so nothing in ``~``
interferes; teardown ends the group and every process the server started (kernels run in
sessions of their own, so they are tracked by pid), and checks that none is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS_DIR = Path(os.environ.get("ANALYZER_WIDGETS_TEST_ARTIFACTS") or REPO_ROOT / "test-artifacts")
CHROMIUM = os.environ.get("ANALYZER_WIDGETS_CHROMIUM") or "/usr/bin/chromium"

#: Flags for Debian's Chromium as root on a machine with a closed network: without the
#: background-networking ones Chromium keeps trying (and failing) to reach Google's hosts.
#: Playwright adds --headless and a fresh, temporary --user-data-dir of its own for every
#: launch (it refuses a --user-data-dir in ``args``) and deletes that directory on close.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # small /dev/shm in containers would crash the renderer
)

#: how long a server may take to answer after it is started (a cold start on 2 slow cores
#: takes 3 to 10 s; the first start after an install compiles bytecode and takes longer)
SERVER_START_TIMEOUT_S = 120.0
#: default timeout of Playwright actions and expectations, in milliseconds
UI_TIMEOUT_MS = 60_000
#: how long a server gets to shut down (and shut its kernels down) after SIGTERM
SERVER_STOP_TIMEOUT_S = 15.0

_VIEWPORT = {"width": 1400, "height": 900}


# -- skip or fail ------------------------------------------------------------------------
def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def missing_tool(reason: str) -> None:
    """Skip the test with ``reason``, or fail it when running under CI=true."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: browser tests must run in CI)", pytrace=False)
    pytest.skip(reason)


def chromium_problem() -> str | None:
    """Why Chromium cannot be used here, or None when it can."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return (
            f"Chromium not found at {CHROMIUM} (run scripts/install-system-deps.sh as root, "
            "or set ANALYZER_WIDGETS_CHROMIUM)"
        )
    return None


def _module_problem(module: str, package: str) -> str | None:
    try:
        __import__(module)
    except ImportError as exc:
        return f"Python package {package!r} is not installed ({exc})"
    return None


def require_browser_tools(*, chromium: bool = True, lab: bool = False, voila: bool = False) -> None:
    """Skip (or under CI fail) the calling test when a tool it needs is missing."""
    problems = []
    if chromium:
        problems += [chromium_problem(), _module_problem("playwright.sync_api", "playwright")]
    if lab:
        problems += [_module_problem("jupyterlab", "jupyterlab"), _module_problem("ipykernel", "ipykernel")]
    if voila:
        problems += [_module_problem("voila", "voila"), _module_problem("ipykernel", "ipykernel")]
    problems = [p for p in problems if p]
    if problems:
        missing_tool("; ".join(problems))


def _marked_browser(request: pytest.FixtureRequest) -> bool:
    """A ``browser`` test checks for Chromium before any server is started for it."""
    return request.node.get_closest_marker("browser") is not None


# -- artifacts ---------------------------------------------------------------------------
def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:200] or "unnamed"


def save_screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    """Save a PNG of ``page`` as ``ARTIFACTS_DIR/<name>.png`` and return its path."""
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS_DIR / f"{_safe_name(name)}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def _save_text(name: str, text: str) -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS_DIR / _safe_name(name)
    path.write_text(text, errors="replace")
    return path


def _test_id(request: pytest.FixtureRequest) -> str:
    """``<module>-<test name>``, safe as a file name (and free of glob characters)."""
    node = request.node
    return _safe_name(f"{Path(str(node.path)).stem}-{node.name}")


def _clear_artifacts(request: pytest.FixtureRequest) -> None:
    """Remove what an earlier run of this test left in the artifacts folder, so that a
    FAILED screenshot there always belongs to the last run."""
    if ARTIFACTS_DIR.is_dir():
        for stale in ARTIFACTS_DIR.glob(f"{_test_id(request)}-*"):
            with contextlib.suppress(OSError):
                stale.unlink()


def _failed_since(request: pytest.FixtureRequest, failed_before: int) -> bool:
    """Whether the current test has failed (its call report is logged before teardown)."""
    return request.session.testsfailed > failed_before


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[..., Path]:
    """``screenshot(page, "label")`` saves ``<test-module>-<test>-label.png`` and returns its path."""
    prefix = _test_id(request)
    _clear_artifacts(request)

    def take(page: Any, label: str = "page", *, full_page: bool = True) -> Path:
        return save_screenshot(page, f"{prefix}-{label}", full_page=full_page)

    return take


# -- notebooks ---------------------------------------------------------------------------
def write_notebook(path: Path, cells: Sequence[str | tuple[str, str]]) -> Path:
    """Write a notebook of ``cells`` (code source, or ``("markdown", text)``) with the
    python3 kernelspec set, so JupyterLab and Voila don't ask which kernel to use."""
    nb_cells = []
    for cell in cells:
        kind, source = ("code", cell) if isinstance(cell, str) else cell
        entry: dict[str, Any] = {"cell_type": kind, "metadata": {}, "source": source}
        if kind == "code":
            entry.update(execution_count=None, outputs=[])
        nb_cells.append(entry)
    notebook = {
        "cells": nb_cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notebook, indent=1))
    return path


def open_in_lab(page: Any, lab: Any, name: str, cells: Sequence[str | tuple[str, str]]) -> Any:
    """Write a notebook of ``cells`` into the lab's root, open it, and wait until its kernel
    is idle; returns a locator of its notebook panel."""
    from playwright.sync_api import expect

    write_notebook(lab.root_dir / name, cells)
    page.goto(lab.url(f"lab/tree/{name}"))
    notebook = page.locator(".jp-NotebookPanel").filter(has=page.locator(".jp-Cell"))
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_be_visible(timeout=UI_TIMEOUT_MS)
    return notebook


def choose_the_kernel_when_asked(page: Any) -> None:
    """On a busy machine JupyterLab sometimes asks for the kernel although the notebook names
    it and its kernel is already up; the dialog then blocks every click. Playwright runs this
    handler whenever the dialog shows before an action, so a test neither waits for a dialog
    that usually never comes nor fails on one that does."""
    dialog = page.locator(".jp-Dialog").filter(has_text="Select Kernel")
    page.add_locator_handler(dialog, lambda found: found.get_by_role("button", name="Select").click())


def button(scope: Any, label: str) -> Any:
    """The button of ``scope`` (a locator) whose whole label is ``label``."""
    return scope.locator("button").filter(has_text=re.compile(rf"^\s*{re.escape(label)}\s*$"))


# -- servers -----------------------------------------------------------------------------
def run_all_cells(page: Any, notebook: Any, *, attempts: int = 3) -> None:
    """Run > Run All Cells through JupyterLab's menu bar, and wait until a cell of
    ``notebook`` (a locator of the notebook panel) has started.

    Why the retry: on a busy 2-core machine the toolbar can already show the kernel idle
    while the notebook's session is not wired to it yet; a Run All in that gap runs nothing
    and leaves every prompt at ``[ ]`` (seen in CI). It runs again only when no cell has
    started within 15 s, so a cell runs twice only if a click took effect that late; tests
    should not depend on exact execution counts."""
    from playwright.sync_api import expect

    started = notebook.locator(".jp-InputArea-prompt").filter(has_text=re.compile(r"\[(\*|\d+)\]"))
    for attempt in range(attempts):
        page.locator(".lm-MenuBar-item").filter(has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu").get_by_role("menuitem", name="Run All Cells", exact=True).click()
        try:
            expect(started.first).to_be_visible(timeout=15_000)
            return
        except AssertionError:
            if attempt == attempts - 1:
                raise


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class JupyterServer:
    """A JupyterLab or Voila server running as a subprocess on 127.0.0.1."""

    kind: str
    port: int
    token: str
    root_dir: Path
    workdir: Path
    log_path: Path
    proc: subprocess.Popen[bytes]
    _log_file: Any = field(repr=False, default=None)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def url(self, path: str = "") -> str:
        """The address of ``path`` on this server, with the token."""
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}{path.lstrip('/')}{sep}token={self.token}"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        _stop_process_tree(self.proc, f"{self.kind} server")
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _isolated_env(workdir: Path) -> dict[str, str]:
    """The environment of a server: Jupyter's and IPython's directories in ``workdir``."""
    env = dict(os.environ)
    dirs = {
        "JUPYTER_CONFIG_DIR": workdir / "jupyter-config",
        "JUPYTER_DATA_DIR": workdir / "jupyter-data",
        "JUPYTER_RUNTIME_DIR": workdir / "jupyter-runtime",
        "IPYTHONDIR": workdir / "ipython",
        "JUPYTERLAB_SETTINGS_DIR": workdir / "lab-user-settings",
        "JUPYTERLAB_WORKSPACES_DIR": workdir / "lab-workspaces",
    }
    for name, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    for name in ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "JUPYTER_PLATFORM_DIRS", "JUPYTER_TOKEN", "JUPYTER_NO_CONFIG"):
        env.pop(name, None)
    env["PYTHONNOUSERSITE"] = "1"  # nothing from ~/.local
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # quiets debugpy's frozen-modules warning
    # the kernels and `jupyter` helpers must come from this interpreter's environment
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # no news, no update checks, no "do you want news?" toast over the page
    settings = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    return env


def _http_status(url: str) -> int | None:
    """The HTTP status of a GET of ``url`` (no proxy), or None when nothing answers."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


def _start_server(
    kind: str,
    make_cmd: Callable[[int, str], list[str]],
    ready_path: str,
    ready: Callable[[int], bool],
    root_dir: Path,
    workdir: Path,
    timeout_s: float,
) -> JupyterServer:
    """Start ``make_cmd(port, token)`` in a process group of its own and wait until ``ready``
    holds for the HTTP status of ``server.url(ready_path)``. A port taken between our pick and
    the server's bind (a small race) gets another port, up to three tries."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = _isolated_env(workdir)
    token = secrets.token_hex(16)
    for attempt in range(3):
        port = free_port()
        log_path = workdir / f"{kind}-{port}.log"
        log_file = open(log_path, "wb")  # closed by JupyterServer.stop
        proc = subprocess.Popen(
            make_cmd(port, token),
            cwd=root_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: killpg reaches all of it
        )
        server = JupyterServer(kind, port, token, root_dir, workdir, log_path, proc, log_file)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if proc.poll() is not None:
                    tail = server.log_tail()
                    if attempt < 2 and re.search(r"already in use|EADDRINUSE", tail, re.IGNORECASE):
                        break  # lost the port race: try another port
                    raise RuntimeError(f"{kind} exited with code {proc.returncode} before answering:\n{tail}")
                status = _http_status(server.url(ready_path))
                if status is not None and ready(status):
                    return server
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{kind} did not answer on port {port} within {timeout_s:.0f} s:\n{server.log_tail()}"
                    )
                time.sleep(0.2)
        except BaseException:
            server.stop()
            raise
        server.stop()
    raise RuntimeError(f"{kind}: no free port after 3 tries")


def start_jupyter_lab(
    root_dir: Path, workdir: Path, *, extra_args: Sequence[str] = (), timeout_s: float = SERVER_START_TIMEOUT_S
) -> JupyterServer:
    """Start ``jupyter lab`` serving ``root_dir``; Jupyter's own files go in ``workdir``.
    The caller must call ``.stop()`` (the ``jupyter_lab`` fixture does)."""
    root_dir.mkdir(parents=True, exist_ok=True)

    def cmd(port: int, token: str) -> list[str]:
        return [
            sys.executable, "-m", "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root_dir}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",  # no PyPI queries from the extension panel
            *extra_args,
        ]  # fmt: skip

    # /api/status answers 200 only with the right token, once the server is up
    return _start_server("jupyter-lab", cmd, "api/status", lambda s: s == 200, root_dir, workdir, timeout_s)


def start_voila(
    notebook: Path, workdir: Path, *, extra_args: Sequence[str] = (), timeout_s: float = SERVER_START_TIMEOUT_S
) -> JupyterServer:
    """Start ``voila NOTEBOOK`` (rendered at ``server.url()``); Jupyter's own files go in
    ``workdir``. The caller must call ``.stop()`` (the ``voila_app`` fixture does)."""
    notebook = notebook.resolve()

    def cmd(port: int, token: str) -> list[str]:
        return [
            sys.executable, "-m", "voila", str(notebook),
            "--no-browser",
            "--Voila.ip=127.0.0.1",
            f"--port={port}",
            "--Voila.port_retries=0",
            f"--token={token}",
            "--show_tracebacks=True",
            *extra_args,
        ]  # fmt: skip

    # voila runs the notebook on GET /, so readiness is asked of a static file instead
    return _start_server("voila", cmd, "voila/static/voila.js", lambda s: s == 200, notebook.parent, workdir, timeout_s)


def _stop_process_tree(proc: subprocess.Popen[bytes], what: str) -> None:
    """End ``proc``, its process group and every process it started (kernels run in sessions
    of their own), first with SIGTERM (a Jupyter server then shuts its kernels down), then
    with SIGKILL; fail when anything is still alive after that."""
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything left in the group
    for child in descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    proc.wait(timeout=10)
    _, alive = psutil.wait_procs(descendants, timeout=10)
    if alive:
        raise RuntimeError(f"{what}: processes still alive after SIGKILL: {[p.pid for p in alive]}")


def _keep_log_if_failed(request: pytest.FixtureRequest, failed_before: int, server: JupyterServer) -> None:
    if _failed_since(request, failed_before):
        _save_text(f"{_test_id(request)}-{server.kind}.log", server.log_tail(200_000))


# -- fixtures: servers -------------------------------------------------------------------
@pytest.fixture
def jupyter_lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JupyterServer]:
    """A running JupyterLab serving ``jupyter_lab.root_dir`` (an empty temporary folder).
    On a failed test its log is kept in the artifacts folder."""
    _clear_artifacts(request)
    require_browser_tools(chromium=_marked_browser(request), lab=True)
    failed_before = request.session.testsfailed
    server = start_jupyter_lab(tmp_path / "lab-root", tmp_path / "lab-home")
    try:
        yield server
    finally:
        server.stop()
        _keep_log_if_failed(request, failed_before, server)


@pytest.fixture
def voila_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., JupyterServer]]:
    """A factory: ``voila_app(notebook_path, extra_args=())`` starts Voila on that notebook and
    returns the running :class:`JupyterServer`; every server it started is stopped at teardown."""
    _clear_artifacts(request)
    require_browser_tools(chromium=_marked_browser(request), voila=True)
    failed_before = request.session.testsfailed
    servers: list[JupyterServer] = []

    def start(notebook: Path, extra_args: Sequence[str] = ()) -> JupyterServer:
        server = start_voila(notebook, tmp_path / f"voila-home-{len(servers)}", extra_args=extra_args)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        errors = []
        for server in servers:
            try:
                server.stop()
            except Exception as exc:  # stop them all, then report
                errors.append(exc)
            _keep_log_if_failed(request, failed_before, server)
        if errors:
            raise errors[0]


# -- fixtures: browser -------------------------------------------------------------------
class _Chromium:
    """One Playwright driver and Chromium for the session, relaunched if it went away."""

    def __init__(self) -> None:
        self._playwright: Any = None
        self._browser: Any = None

    def browser(self) -> Any:
        if self._browser is not None and self._browser.is_connected():
            return self._browser
        from playwright.sync_api import sync_playwright

        if self._playwright is None:
            self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS), timeout=UI_TIMEOUT_MS
        )
        return self._browser

    def close(self) -> None:
        if self._browser is not None:
            with contextlib.suppress(Exception):
                self._browser.close()
            self._browser = None
        if self._playwright is not None:
            self._playwright.stop()
            self._playwright = None


_CHROMIUM = _Chromium()


def _session_browser(config: pytest.Config) -> Any:
    """The session's Chromium, launched on first use and closed when pytest finishes (a
    plain module global rather than a session fixture, so that test modules need to import
    only the fixtures they name)."""
    if not getattr(config, "_analyzer_widgets_chromium_cleanup", False):
        config.add_cleanup(_CHROMIUM.close)
        config._analyzer_widgets_chromium_cleanup = True  # type: ignore[attr-defined]
    return _CHROMIUM.browser()


@pytest.fixture
def chromium_page(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A Playwright ``Page`` in a fresh browser context (no cookies or storage from other
    tests) of headless Chromium, with generous default timeouts. Browser console messages and
    page errors are collected in ``page.console_log`` (a list of str). On a failed test a
    screenshot and the console log are saved in the artifacts folder."""
    _clear_artifacts(request)
    require_browser_tools(chromium=True)
    failed_before = request.session.testsfailed
    context = _session_browser(request.config).new_context(viewport=_VIEWPORT)
    context.set_default_timeout(UI_TIMEOUT_MS)
    context.set_default_navigation_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    console_log: list[str] = []
    page.on("console", lambda msg: console_log.append(f"[{msg.type}] {msg.text}"))
    page.on("pageerror", lambda exc: console_log.append(f"[pageerror] {exc}"))
    page.console_log = console_log
    choose_the_kernel_when_asked(page)
    try:
        yield page
    finally:
        if _failed_since(request, failed_before):
            with contextlib.suppress(Exception):
                save_screenshot(page, f"{_test_id(request)}-FAILED")
            _save_text(f"{_test_id(request)}-console.log", "\n".join(console_log))
        context.close()
