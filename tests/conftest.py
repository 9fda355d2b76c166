"""Fixtures for the tests that run the real embedded Triton server (``@pytest.mark.server``).

Nothing here stands in for Triton: the server is the tritonserver binary of the
nvidia-pytriton wheel, the models are the bundled Python-backend examples. To keep the
suite quick on a small CPU machine every sweep uses short windows (:data:`FAST`) and a
short baseline.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import analyzer_widgets as aw
from analyzer_widgets.server import LocalServer

#: measurement settings that keep one point at about a second on a 2-core machine
FAST: dict[str, object] = {"window_ms": 300, "baseline_s": 0.5, "max_trials": 6}

#: process names of the server and of the Python backend's stubs (names are cut at 15 chars)
_SERVER_NAMES = ("tritonserver", "triton_python_backend_stub")


def assert_counts_agree(row: Any, context: object = "") -> None:
    """The client's count of inferences over a row's reported windows and the server's
    statistics over the same span agree as closely as the cuts allow: each cut lies
    somewhere in its statistics read (``server_span_unpinned_ms``: at the row's rate, that
    many inferences), and the requests in flight at a cut (at most one per slot each way,
    at each end of each visit) are counted by one side only. 1% more for the rate not being
    even over the span. A point that spilled into the next, or lost requests, is off by far more."""
    get = row.get if hasattr(row, "get") else lambda name: getattr(row, name)
    client, server = get("client_inference_count"), get("server_inference_count")
    slots = get("concurrency") or 64  # an open-loop row: the default --max-in-flight
    in_flight = 2 * 2 * slots * get("batch_size") * max(1, get("visit_count"))
    unpinned = client / get("measured_s") * get("server_span_unpinned_ms") / 1000
    slack = in_flight + unpinned + 0.01 * max(client, server)
    assert client > 0 and server > 0, (context, client, server)
    assert abs(client - server) <= slack, (
        f"{context} {get('model')} batch={get('batch_size')} concurrency={get('concurrency')}: client counted "
        f"{client} inferences, server {server}; allowed {slack:.0f} ({get('server_span_unpinned_ms'):.1f} ms unpinned)")


def stop_after_first_point(held: list[Any], seen: list[object]) -> Callable[[object], None]:
    """An event handler that keeps every event in ``seen`` and stops the runner ``held[0]``
    (a ``runner_hook`` appends it) once the first point has finished."""
    from analyzer_widgets import events

    def handle(event: object) -> None:
        seen.append(event)
        if isinstance(event, events.PointFinished) and not held[0].stopping:
            held[0].stop()
    return handle


def close_during_send(sender: Any, after_s: float) -> str | None:
    """Start ``sender.send()`` in a thread, close the sender ``after_s`` later while the send
    waits for its answer, and return what the send said. Fails unless close ended it within 1 s."""
    result: list[str | None] = []
    thread = threading.Thread(target=lambda: result.append(sender.send()))
    thread.start()
    time.sleep(after_s)
    started = time.monotonic()
    sender.close()
    thread.join(2)
    assert not thread.is_alive() and time.monotonic() - started < 1.0, "close did not end the waiting send"
    assert result, "the send ended without a result"
    return result[0]


def _is_server_process(proc: psutil.Process) -> bool:
    try:
        name = proc.name()
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    exe = os.path.basename(cmdline[0]) if cmdline else ""
    return any(name == n[:15] or exe == n for n in _SERVER_NAMES)


def _alive(pid: int, created: float) -> bool:
    """Whether the process (pid, create_time) still exists; a zombie has already let go of
    everything but its pid, so it counts as gone."""
    try:
        proc = psutil.Process(pid)
        return proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def server_processes() -> set[tuple[int, float]]:
    """(pid, create_time) of every tritonserver and backend stub process on this machine."""
    found = set()
    for proc in psutil.process_iter():
        if _is_server_process(proc):
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.add((proc.pid, proc.create_time()))
            except psutil.NoSuchProcess:
                pass
    return found


#: the `ray start` processes of the Ray nodes tests/test_ray.py started (kept for the module):
#: the workers under them come and go as Ray likes; the servers they start are counted by
#: server_processes wherever they run
RAY_NODES: set[int] = set()


def own_children() -> set[tuple[int, float]]:
    """Live descendants of this test process, less multiprocessing's resource tracker
    (started once by the first spawn and kept for the life of the interpreter), the
    browser tests' Chromium and Playwright driver (one for the session, tests/browser.py;
    Chromium starts helper processes of its own whenever it likes) and those under the Ray test nodes."""
    found = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE or {p.pid for p in proc.parents()} & RAY_NODES:
                continue
            cmdline = proc.cmdline()
            if any("resource_tracker" in part for part in cmdline):
                continue
            if cmdline and ("chromium" in cmdline[0] or "playwright" in " ".join(cmdline[:3])):
                continue
            found.add((proc.pid, proc.create_time()))
        except psutil.NoSuchProcess:
            pass
    return found


def wait_gone(procs: set[tuple[int, float]], timeout_s: float = 5.0) -> set[tuple[int, float]]:
    """Wait until every process of ``procs`` has ended; return the ones still alive."""
    deadline = time.monotonic() + timeout_s
    left = {p for p in procs if _alive(*p)}
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = {p for p in left if _alive(*p)}
    return left


def describe(procs: set[tuple[int, float]]) -> str:
    out = []
    for pid, _ in sorted(procs):
        try:
            out.append(f"{pid}: {' '.join(psutil.Process(pid).cmdline())[:200]}")
        except psutil.NoSuchProcess:
            out.append(f"{pid}: (gone)")
    return "; ".join(out)


@pytest.fixture(autouse=True)
def no_leftover_processes(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test that starts a server must leave no server, stub or client process behind.

    The module's shared server is started before the snapshot, so it does not count."""
    if request.node.get_closest_marker("server") is None:
        yield
        return
    if "shared_server" in request.fixturenames:
        request.getfixturevalue("shared_server")  # started (and its processes counted) before the snapshot
    servers_before = server_processes()
    children_before = own_children()
    yield
    left = wait_gone(server_processes() - servers_before)
    left |= wait_gone(own_children() - children_before)
    assert not left, f"processes left behind by the test: {describe(left)}"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A private copy of the example repository, free to alter."""
    target = tmp_path / "model_repository"
    shutil.copytree(aw.EXAMPLE_REPOSITORY, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


BROKEN_MESSAGE = "deliberate failure in initialize (analyzer-widgets test)"


def add_broken_model(repository: Path, name: str = "broken_init") -> str:
    """Write a Python-backend model whose ``initialize`` raises :data:`BROKEN_MESSAGE`."""
    model = repository / name
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(
        f'name: "{name}"\n'
        'backend: "python"\n'
        "max_batch_size: 8\n"
        'input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 4 ] } ]\n'
        'output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 4 ] } ]\n'
        "instance_group [ { count: 1, kind: KIND_CPU } ]\n"
    )
    (model / "1" / "model.py").write_text(
        "class TritonPythonModel:\n"
        "    def initialize(self, args):\n"
        f"        raise RuntimeError({BROKEN_MESSAGE!r})\n"
        "\n"
        "    def execute(self, requests):\n"
        "        return []\n"
    )
    return name


@pytest.fixture(scope="module")
def shared_server() -> Iterator[LocalServer]:
    """One embedded server for the tests of a module that only need a running one."""
    server = LocalServer(aw.EXAMPLE_REPOSITORY, aw.ServerSettings())
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- docker ---------------------------------------------------------------------------------
# The CPU Triton image that scripts/build-triton-test-image.sh builds offline (make test does).
TRITON_TEST_IMAGE = os.environ.get("ANALYZER_WIDGETS_TEST_IMAGE", "analyzer-widgets/triton-cpu-test:2.51")

def docker_daemon_problem() -> str | None:
    """Why the docker tests cannot talk to a Docker engine, or None when they can."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        import docker

        docker.from_env().ping()
    except Exception as e:  # noqa: BLE001 - any failure means: no usable daemon
        return f"no Docker daemon: {e}"
    return None


def skip_or_fail(problem: str) -> None:
    """Skip with the reason, except under CI=true, where docker tests must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the docker tests: {problem}")
    pytest.skip(problem)


def docker_client(image_problem: Callable[[Any], str | None] | None = None) -> Any:
    """A Docker SDK client for the docker tests, once the engine answers and
    ``image_problem(client)`` (what the tests need built) finds nothing wrong; skips with
    the reason otherwise, or fails under CI=true."""
    problem = docker_daemon_problem()
    client = None
    if problem is None:
        import docker

        client = docker.from_env()
        problem = image_problem(client) if image_problem else None
    if problem:
        skip_or_fail(problem)
    return client


def triton_test_image_problem(client: Any) -> str | None:
    """Why TRITON_TEST_IMAGE cannot be used, or None when it is built."""
    try:
        client.images.get(TRITON_TEST_IMAGE)
    except Exception:  # noqa: BLE001 - not found, or the engine refused
        return f"the test image {TRITON_TEST_IMAGE} is not built (scripts/build-triton-test-image.sh)"
    return None


# -- the analyzer's own image (tests/test_analyzer_image.py, tests/test_helm.py) ----------------
ANALYZER_BASE_IMAGE = os.environ.get("ANALYZER_WIDGETS_BASE_IMAGE", "analyzer-widgets/base-py311:bookworm")
ANALYZER_IMAGE = "analyzer-widgets:test"
#: the label of every container the image's tests start, removed at the end
ANALYZER_IMAGE_LABEL = "analyzer-widgets.image-test"
_REPO_ROOT = Path(__file__).resolve().parent.parent


def _analyzer_base_problem(client: Any) -> str | None:
    try:
        client.images.get(ANALYZER_BASE_IMAGE)
    except Exception:  # noqa: BLE001
        if os.geteuid() != 0 or shutil.which("debootstrap") is None:
            return f"the base image {ANALYZER_BASE_IMAGE} is not built and building it needs root and debootstrap"
    return None


@pytest.fixture(scope="session")
def analyzer_image_docker() -> Iterator[object]:
    """The Docker client of the analyzer image's tests (tests/test_analyzer_image.py,
    tests/test_helm.py); skips (fails under CI=true) where Docker or the base build is missing."""
    yield docker_client(_analyzer_base_problem)


def _run_quietly(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def analyzer_image(analyzer_image_docker: Any) -> Iterator[str]:
    """Build the base (once per machine) and the analyzer image (the top-level Dockerfile),
    once per test session for every module that runs it; remove it at the end."""
    client = analyzer_image_docker
    t = time.monotonic()
    base = _run_quietly(["bash", str(_REPO_ROOT / "scripts/build-analyzer-base-image.sh"), ANALYZER_BASE_IMAGE], timeout=900)
    if base.returncode != 0:
        skip_or_fail(f"the base image did not build: {(base.stdout + base.stderr)[-2000:]}")
    print(f"base image: {time.monotonic() - t:.1f} s")

    cmd = ["docker", "build", "--force-rm", "--build-arg", f"BASE={ANALYZER_BASE_IMAGE}", "-t", ANALYZER_IMAGE]
    cas = "".join(Path(f).read_text() for f in sorted(glob.glob("/usr/local/share/ca-certificates/*.crt")))
    if cas:
        cmd += ["--build-arg", f"EXTRA_CA_CERTS={cas}"]
    t = time.monotonic()
    build = _run_quietly([*cmd, str(_REPO_ROOT)], timeout=900)
    try:
        assert build.returncode == 0, (build.stdout + build.stderr)[-4000:]
        size = client.images.get(ANALYZER_IMAGE).attrs["Size"]
        print(f"analyzer image: built in {time.monotonic() - t:.1f} s, {size / 1e6:.0f} MB")
        yield ANALYZER_IMAGE
    finally:
        for c in client.containers.list(all=True, filters={"label": ANALYZER_IMAGE_LABEL}):
            c.remove(force=True)
        try:
            client.images.remove(ANALYZER_IMAGE, force=True)
        except Exception:  # noqa: BLE001
            pass
