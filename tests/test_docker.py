"""Docker launch mode against a real dockerd and a real Triton image.

The image is the local CPU Triton test image that scripts/build-triton-test-image.sh builds
offline (debootstrap + the nvidia-pytriton server; DESIGN.md); `make test` builds it once
per machine and starts dockerd when it is not running. Where Docker is missing the tests
skip with the reason, except under CI=true, where they must run and so fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FAST, TRITON_TEST_IMAGE, docker_client, triton_test_image_problem

import analyzer_widgets as aw
from analyzer_widgets import events
from analyzer_widgets.server.docker import LABEL, DockerServer

IMAGE = TRITON_TEST_IMAGE
pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    yield docker_client(triton_test_image_problem)


def ours(client) -> list:
    return client.containers.list(all=True, filters={"label": LABEL})


def test_sweep_in_docker_mode_measures_and_leaves_no_container(client, tmp_path: Path) -> None:
    before = {c.id for c in ours(client)}
    result = aw.profile(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, launch_mode="docker",
                        triton_image=IMAGE, batch_sizes=[1, 8], concurrency=[1], export_path=tmp_path / "out", **FAST)
    df = result.to_frame()
    assert list(df["status"].isin(["ok", "unstable"])) == [True, True], df[["status", "reason"]]
    assert (df["throughput_infer_per_s"] > 0).all()
    assert result.baseline.iloc[0]["launch_mode"] == "docker"
    assert result.baseline.iloc[0]["server_version"] == "2.51.0"
    # the container's processes are this host's: CPU and memory of the server are measured
    assert (df["server_rss_max_mb"] > 10).all()
    assert {c.id for c in ours(client)} == before


def test_ports_are_published_on_localhost_and_the_repository_read_only(client) -> None:
    server = DockerServer(aw.EXAMPLE_REPOSITORY, aw.ServerSettings(launch_mode="docker", triton_image=IMAGE))
    with server:
        container = client.containers.get(server.container_name)
        for bindings in container.ports.values():
            assert all(b["HostIp"] == "127.0.0.1" for b in bindings)
        mounts = container.attrs["Mounts"]
        assert any(m["Destination"] == "/models" and m["RW"] is False for m in mounts)
    assert not any(c.name == server.container_name for c in ours(client))


def test_a_container_left_by_a_killed_run_is_found_and_removed(client) -> None:
    code = (
        "from analyzer_widgets.server.docker import DockerServer\n"
        "import analyzer_widgets as aw, time\n"
        f"s = DockerServer(aw.EXAMPLE_REPOSITORY, aw.ServerSettings(launch_mode='docker', triton_image={IMAGE!r}))\n"
        "s.start(); print(s.container_name, flush=True); time.sleep(300)\n"
    )
    run = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert run.stdout is not None
    name = run.stdout.readline().strip()
    os.kill(run.pid, signal.SIGKILL)  # no atexit, no cleanup: the container stays
    run.wait(timeout=30)
    assert any(c.name == name for c in ours(client)), "the killed run's container should still be there"

    notes: list[str] = []
    with DockerServer(aw.EXAMPLE_REPOSITORY, aw.ServerSettings(launch_mode="docker", triton_image=IMAGE),
                      on_progress=notes.append):
        assert not any(c.name == name for c in ours(client))
    assert any(name in n for n in notes), notes


def test_no_daemon_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-docker.sock")
    with pytest.raises(aw.ServerStartError, match="no Docker daemon answers") as raised:
        aw.profile(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, launch_mode="docker",
                   triton_image=IMAGE, **FAST)
    assert "no-such-docker.sock" in str(raised.value)


def test_an_image_that_is_missing_and_cannot_be_pulled_is_a_clear_error(client) -> None:
    before = {c.id for c in ours(client)}
    started = time.monotonic()
    said: list[str] = []
    with pytest.raises(aw.ServerStartError) as raised:
        aw.profile(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, launch_mode="docker",
                   triton_image="analyzer-widgets/no-such-image:0", **FAST,
                   on_event=lambda e: said.append(e.message) if isinstance(e, events.Notice) and e.level == "progress" else None)
    message = str(raised.value)
    assert "analyzer-widgets/no-such-image:0" in message and "pull" in message
    # the pull was announced while it ran (the CLI prints it, the panel's status line shows it)
    assert any(m.startswith("pulling analyzer-widgets/no-such-image:0") for m in said), said
    assert time.monotonic() - started < 120
    assert {c.id for c in ours(client)} == before


def test_gpus_on_a_docker_without_the_nvidia_runtime_is_a_clear_error_and_leaves_nothing(client) -> None:
    if "nvidia" in (client.info().get("Runtimes") or {}):
        pytest.skip("this Docker has the NVIDIA runtime, so --gpus all is expected to work here")
    before = {c.id for c in ours(client)}
    with pytest.raises(aw.ServerStartError) as raised:
        aw.profile(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, launch_mode="docker",
                   triton_image=IMAGE, gpus="all", **FAST)
    message = str(raised.value)
    assert "--gpus all" in message and "NVIDIA Container Toolkit" in message, message
    # the container was created before its start failed: it must be gone, not left "Created"
    assert {c.id for c in ours(client)} == before


def test_a_container_killed_mid_sweep_is_started_again_with_restart(client, tmp_path: Path) -> None:
    """RELIABILITY row 24 in docker mode: the container killed at the second point; a new
    one is started, the model loaded, the point measured again, and none is left."""
    before = {c.id for c in ours(client)}
    killed: list[str] = []

    def kill_at_second_point(event: object) -> None:
        if isinstance(event, events.PointStarted) and event.index == 1 and not killed:
            (container,) = [c for c in ours(client) if c.id not in before]
            killed.append(container.id)
            container.kill()

    result = aw.profile(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, launch_mode="docker",
                        triton_image=IMAGE, batch_sizes=[1], concurrency=[1, 2], on_server_failure="restart",
                        export_path=tmp_path / "out", on_event=kill_at_second_point, **FAST)
    df = result.to_frame()
    assert list(df["concurrency"]) == [1, 2, 2] and list(df["status"])[1] == "failed"
    assert df.iloc[2]["status"] in ("ok", "unstable") and df.iloc[2]["throughput_infer_per_s"] > 0
    assert "measured again after restarting the server" in df.iloc[2]["reason"]
    assert result.error is None and killed
    assert {c.id for c in ours(client)} == before


def test_a_plan_in_docker_mode_loads_each_variant_in_the_container(client, tmp_path: Path) -> None:
    """Issue 18: the config override works the same through the container's repository API;
    the repository (mounted read-only) is not written, and no container is left."""
    before = {c.id for c in ours(client)}
    result = aw.plan("mlp_numpy", model_repository=aw.EXAMPLE_REPOSITORY, launch_mode="docker", triton_image=IMAGE,
                     latency_budget_ms=10_000, concurrency=[1, 2], space={"instances": [1, 2]}, strategy="brute",
                     export_path=tmp_path / "plan", **FAST)
    table = result.to_frame()
    assert set(table["variant"]) == {"i1", "i2"} and table["meets"].all()
    assert result.best is not None and (tmp_path / "plan" / "config.pbtxt").is_file()
    assert {c.id for c in ours(client)} == before
