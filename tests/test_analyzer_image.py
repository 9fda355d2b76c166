"""The analyzer's own image (the top-level Dockerfile), built and run against a real dockerd.

Offline base: scripts/build-analyzer-base-image.sh makes analyzer-widgets/base-py311:bookworm
without a registry (debootstrap bookworm + python3/pip/venv/libpython3.11, cached; kept for
reuse). The Dockerfile's pip reaches PyPI through the bridge network; behind a
TLS-intercepting proxy the test hands it this machine's local CAs
(/usr/local/share/ca-certificates/*.crt) as the EXTRA_CA_CERTS build argument.

Where Docker (or what the base build needs) is missing the tests skip with the reason,
except under CI=true, where they must run and so fail. The test image analyzer-widgets:test
and every container started here are removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import ANALYZER_IMAGE_LABEL as LABEL
from conftest import TRITON_TEST_IMAGE, skip_or_fail, triton_test_image_problem

REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1200)]


def _run(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture
def client(analyzer_image_docker: object) -> object:
    return analyzer_image_docker


@pytest.fixture
def image(analyzer_image: str) -> str:
    return analyzer_image


def test_image_runs_as_a_non_root_user_with_a_shared_libpython(client, image: str) -> None:
    out = client.containers.run(
        image, ["python", "-c", "import os, sys, sysconfig; print(os.getuid(), sys.prefix, "
                "sysconfig.get_config_var('Py_ENABLE_SHARED'))"],
        remove=True, labels={LABEL: "1"},
    ).decode().split()
    assert out == ["1000", "/opt/venv", "1"], out


def test_profile_in_the_image_measures_the_example_model(client, image: str) -> None:
    script = ('analyzer-widgets profile -m mlp_numpy -b 1 -c 1 --window-ms 300 -e /tmp/r '
              '--model-folder "$(python -c "import analyzer_widgets as aw; print(aw.EXAMPLE_REPOSITORY)")"')
    proc = _run(["docker", "run", "--rm", "--label", f"{LABEL}=1", image, "sh", "-c", script], timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip().startswith("mlp_numpy")]
    # measured: stable within 10%, or not on a busy 2-core machine (10 windows of 300 ms)
    assert rows and all(r[3] in ("ok", "unstable") for r in rows), out[-4000:]


def test_default_command_starts_jupyterlab_with_token_auth(client, image: str) -> None:
    container = client.containers.run(image, detach=True, ports={"8888/tcp": ("127.0.0.1", None)},
                                      labels={LABEL: "1"})
    try:
        container.reload()
        port = container.ports["8888/tcp"][0]["HostPort"]
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        token = None
        while time.monotonic() < deadline:
            logs = container.logs().decode(errors="replace")
            if "?token=" in logs:
                token = logs.split("?token=", 1)[1].split()[0]
                try:
                    with urllib.request.urlopen(f"{url}/api", timeout=5) as r:
                        if r.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError, OSError):
                    pass
            container.reload()
            assert container.status in ("created", "running"), container.logs().decode(errors="replace")[-3000:]
            time.sleep(1)
        else:
            pytest.fail(f"JupyterLab did not answer within 90 s: {container.logs().decode(errors='replace')[-3000:]}")
        assert token
        # token auth is on: no token, no status; with the logged token, the server answers
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{url}/api/status", timeout=5)
        assert e.value.code == 403
        with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5) as r:
            assert r.status == 200
            assert "started" in json.load(r)
        # it serves the notebooks folder
        with urllib.request.urlopen(f"{url}/api/contents?token={token}", timeout=5) as r:
            names = {c["name"] for c in json.load(r)["content"]}
        assert {"quickstart.ipynb", "dashboard.ipynb"} <= names, names
    finally:
        container.remove(force=True)


def _docker_socket() -> Path:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        skip_or_fail(f"DOCKER_HOST={host} is not a unix socket that can be mounted into a container")
    return Path(host[len("unix://"):])


def test_analyzer_in_a_container_launches_sibling_triton_through_the_socket(client, image: str) -> None:
    """The original tool's mode: the analyzer in a container starts Triton beside itself.

    What it takes, as the README says: the Docker socket mounted, its group added for the
    non-root user, the model repository at the same path inside as on the host (the host's
    daemon resolves the sibling's bind mount), and the host's network (the sibling publishes
    on the host's 127.0.0.1).
    """
    from analyzer_widgets.server import docker as docker_mode

    problem = triton_test_image_problem(client)
    if problem:
        skip_or_fail(problem)
    sock = _docker_socket()
    # A container of a live run on the host (this pytest process owns it). The analyzer in
    # the container shares the hostname (--network host) but not the pids: it must leave it.
    decoy = client.containers.create(TRITON_TEST_IMAGE, ["true"], labels={
        docker_mode.LABEL: "true", docker_mode.OWNER_LABEL: docker_mode._owner(), LABEL: "1"})
    repo = Path(tempfile.mkdtemp(prefix="aw-sibling-"))
    try:
        shutil.copytree(REPO / "analyzer_widgets/examples/model_repository/mlp_numpy", repo / "mlp_numpy")
        _run(["chmod", "-R", "a+rX", str(repo)], timeout=30)
        cmd = ["docker", "run", "--rm", "--label", f"{LABEL}=1", "--network", "host",
               "--group-add", str(sock.stat().st_gid), "-v", f"{sock}:/var/run/docker.sock",
               "-v", f"{repo}:{repo}:ro", image,
               "analyzer-widgets", "profile", "--launch-mode", "docker", "--triton-image", TRITON_TEST_IMAGE,
               "--model-folder", str(repo), "-m", "mlp_numpy", "-b", "1,8", "-c", "1",
               "--window-ms", "300", "-e", "/tmp/r"]
        proc = _run(cmd, timeout=300)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-4000:]
        # the table's rows (a reason line under the table starts with the model's name too)
        rows = [line.split() for line in proc.stdout.splitlines()
                if line.strip().startswith("mlp_numpy") and len(line.split()) > 4 and line.split()[1].isdigit()]
        assert len(rows) == 2 and all(r[3] in ("ok", "unstable") for r in rows), out[-4000:]
        left = [c.name for c in client.containers.list(all=True, filters={"label": docker_mode.LABEL})
                if c.id != decoy.id]
        assert left == [], f"the sibling Triton container was left behind: {left}"
        decoy.reload()  # raises NotFound if the analyzer in the container removed the host's
    finally:
        decoy.remove(force=True)
        shutil.rmtree(repo, ignore_errors=True)
