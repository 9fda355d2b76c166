"""The server layer against the real embedded Triton: start, stop, start-up failures,
ports, and the remote launch mode (RELIABILITY.md rows 1, 2 and 15)."""

from __future__ import annotations

import ipaddress
import socket
import time
from pathlib import Path

import psutil
import pytest
from conftest import FAST, describe, server_processes, wait_gone

import analyzer_widgets as aw
from analyzer_widgets import events
from analyzer_widgets.server import LocalServer, RemoteServer, TritonControl


def _port(hostport: str) -> int:
    return int(hostport.rsplit(":", 1)[1].split("/", 1)[0])


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def _unused_port() -> int:
    """A port nothing listens on (the OS just handed it out and we let it go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- start and stop ----------------------------------------------------------------------
@pytest.mark.server
def test_start_stop_leaves_no_process(shared_server: LocalServer) -> None:
    server = LocalServer(aw.EXAMPLE_REPOSITORY, aw.ServerSettings())
    server.start()
    try:
        pid = server.pid
        assert pid is not None and psutil.pid_exists(pid)
        # A loaded Python-backend model runs in a stub process of its own: stop() must
        # reach it too, not only the server.
        control = TritonControl(server.endpoints.grpc, "grpc")
        try:
            control.load("mlp_numpy")
            assert control.is_model_ready("mlp_numpy")
        finally:
            control.close()
        root = psutil.Process(pid)
        tree = {(p.pid, p.create_time()) for p in [root, *root.children(recursive=True)]}
        assert len(tree) >= 2, "expected the server and the model's stub process"
        # Another Triton is running (shared_server): unset ports were chosen free, not clashing.
        mine = {_port(server.endpoints.http), _port(server.endpoints.grpc), _port(server.endpoints.metrics or "")}
        theirs = {_port(shared_server.endpoints.http), _port(shared_server.endpoints.grpc),
                  _port(shared_server.endpoints.metrics or "")}
        assert len(mine) == 3 and not mine & theirs
    finally:
        server.stop()
    assert server.pid is None
    left = wait_gone(tree)
    assert not left, f"still running after stop(): {describe(left)}"
    server.stop()  # a second stop is harmless


@pytest.mark.server
def test_unset_ports_are_free_and_bound_to_localhost(shared_server: LocalServer) -> None:
    endpoints = shared_server.endpoints
    wanted = {_port(endpoints.http), _port(endpoints.grpc), _port(endpoints.metrics or "")}
    assert all(e.startswith("127.0.0.1:") for e in (endpoints.http, endpoints.grpc))
    assert (endpoints.metrics or "").startswith("http://127.0.0.1:")
    assert shared_server.pid is not None
    deadline = time.monotonic() + 5
    while True:
        listening = [c for c in psutil.Process(shared_server.pid).net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN]
        if wanted <= {c.laddr.port for c in listening} or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert wanted <= {c.laddr.port for c in listening}, listening
    # nothing of the server listens on a public address (::ffff:127.0.0.1 is 127.0.0.1 on a v6 socket)
    assert all(_is_loopback(c.laddr.ip) for c in listening), listening


# -- start-up failures (RELIABILITY row 1) -----------------------------------------------
@pytest.mark.server
@pytest.mark.parametrize(
    ("extra_args", "cause"),
    [
        (("--bogus-flag",), "unrecognized option '--bogus-flag'"),
        (("--log-verbose=not-a-number",), "not-a-number"),
    ],
    ids=["unknown-flag", "bad-option-value"],
)
def test_server_dying_at_startup_raises_with_log_tail(tmp_path: Path, extra_args: tuple[str, ...], cause: str) -> None:
    before = server_processes()
    server = LocalServer(aw.EXAMPLE_REPOSITORY, aw.ServerSettings(extra_args=extra_args, startup_timeout_s=60))
    t0 = time.monotonic()
    with pytest.raises(aw.ServerStartError) as info:
        server.start()
    elapsed = time.monotonic() - t0
    assert elapsed < 10, f"the death was noticed after {elapsed:.1f}s, not at once"
    message = str(info.value)
    assert "exited with code" in message
    assert "last lines of the server log" in message
    # the cause, as the server wrote it, is in the message (not only its usage text)
    assert cause in message, message
    assert cause in info.value.log_tail
    assert server.pid is None
    left = wait_gone(server_processes() - before)
    assert not left, describe(left)


def test_missing_binary_is_named(tmp_path: Path) -> None:
    before = server_processes()
    missing = tmp_path / "nowhere" / "tritonserver"
    server = LocalServer(aw.EXAMPLE_REPOSITORY, aw.ServerSettings(tritonserver_path=missing))
    with pytest.raises(aw.EnvironmentCheckError) as info:
        server.start()
    assert str(missing) in str(info.value)
    # the same through profile(), as a user meets it
    with pytest.raises(aw.EnvironmentCheckError, match="does not exist"):
        aw.profile(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, tritonserver_path=missing, **FAST)
    assert server_processes() - before == set()


# -- ports (RELIABILITY row 2) -------------------------------------------------------------
@pytest.mark.parametrize("field", ["http_port", "grpc_port", "metrics_port"])
def test_requested_port_taken_by_another_program(field: str, tmp_path: Path) -> None:
    before = server_processes()
    seen: list[object] = []
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(aw.PortInUseError) as info:
            aw.profile(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, on_event=seen.append,
                       **{field: port}, **FAST)
    assert info.value.port == port
    assert info.value.name == field
    assert f"{field}={port}" in str(info.value) and "already in use" in str(info.value)
    # raised before any model was loaded, and no server was left running
    assert not [e for e in seen if isinstance(e, (events.ModelLoading, events.ServerReady))]
    assert server_processes() - before == set()


@pytest.mark.server
def test_requested_port_taken_by_triton(shared_server: LocalServer) -> None:
    taken = _port(shared_server.endpoints.grpc)
    server = LocalServer(aw.EXAMPLE_REPOSITORY, aw.ServerSettings(grpc_port=taken))
    with pytest.raises(aw.PortInUseError, match=f"grpc_port={taken}"):
        server.start()
    assert server.pid is None
    assert shared_server.check_alive() is None  # the running one was left alone


# -- remote mode (RELIABILITY row 15) ------------------------------------------------------
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_remote_unreachable_names_the_url(protocol: str, tmp_path: Path) -> None:
    url = f"127.0.0.1:{_unused_port()}"
    t0 = time.monotonic()
    with pytest.raises(aw.ServerStartError) as info:
        aw.profile(models=["mlp_numpy"], launch_mode="remote", url=url, protocol=protocol, **FAST)
    assert url in str(info.value)
    assert time.monotonic() - t0 < 15
    with pytest.raises(aw.ServerStartError, match=url):
        RemoteServer(aw.ServerSettings(launch_mode="remote", url=url), aw.Protocol(protocol)).start()


@pytest.mark.server
def test_remote_sweep_keeps_models_it_did_not_load(shared_server: LocalServer) -> None:
    url = shared_server.endpoints.grpc
    control = TritonControl(url, "grpc")
    try:
        control.load("mlp_numpy")  # loaded by someone else, before the sweep
        assert not control.is_model_ready("mixed_inputs")
        result = aw.profile(
            models=["mlp_numpy", "mixed_inputs"], launch_mode="remote", url=url,
            batch_sizes=[1], concurrency=[1], **FAST,
        )
        df = result.to_frame()
        assert list(df["model"]) == ["mlp_numpy", "mixed_inputs"]
        assert set(df["status"]) <= {"ok", "unstable"}, df[["model", "status", "reason"]]
        assert (df["throughput_infer_per_s"] > 0).all()
        assert result.baseline.loc[0, "launch_mode"] == "remote"
        assert result.server_version and result.baseline.loc[0, "server_version"] == result.server_version
        # the model it found loaded stays loaded; the one it loaded itself is unloaded again
        assert control.is_model_ready("mlp_numpy")
        assert not control.is_model_ready("mixed_inputs")
        shared_server.check_alive()  # remote mode never stops a server it did not start
    finally:
        try:
            control.unload("mlp_numpy")
        finally:
            control.close()


@pytest.mark.server
def test_a_log_nobody_asked_for_is_removed_and_a_requested_log_is_kept(tmp_path: Path) -> None:
    temporary = LocalServer(aw.EXAMPLE_REPOSITORY)
    with temporary:
        temp_log = temporary.log_path
        assert temp_log is not None and temp_log.is_file()
    assert not temp_log.exists(), "the temporary server log was left behind"

    kept = tmp_path / "logs" / "tritonserver.log"
    with LocalServer(aw.EXAMPLE_REPOSITORY, aw.ServerSettings(log_path=kept)):
        pass
    assert "Started GRPCInferenceService" in kept.read_text()


@pytest.mark.server
@pytest.mark.faults
@pytest.mark.parametrize("how", ["sigkill", "exit without stop"])
def test_the_server_does_not_outlive_the_process_that_started_it(how: str) -> None:
    # a notebook kernel shut down or killed mid-sweep must not leave tritonserver running
    import subprocess
    import sys

    keep = "time.sleep(120)" if how == "sigkill" else "pass"
    code = (
        "import time\nfrom analyzer_widgets.server import LocalServer, TritonControl\n"
        f"s = LocalServer({str(aw.EXAMPLE_REPOSITORY)!r}); s.start()\n"
        "TritonControl(s.endpoints.grpc).load('mlp_numpy')\n"
        f"print(s.pid, flush=True)\n{keep}\n"
    )
    before = server_processes()
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    started = server_processes() - before
    assert any(p == pid for p, _ in started) and len(started) >= 2  # the server and the model's stub
    if how == "sigkill":
        parent.kill()
    parent.wait(timeout=60)
    left = wait_gone(started, timeout_s=15)
    assert not left, f"left running after the parent ended ({how}): {describe(left)}"


@pytest.mark.server
def test_a_server_started_from_a_thread_that_ends_stays_up() -> None:
    # The parent-death signal follows the thread that forked the child, not the process:
    # the panel starts its sweep's server from a worker thread, which must not take the
    # server down when it ends (the launch forks on one long-lived launcher thread).
    import threading

    server = LocalServer(aw.EXAMPLE_REPOSITORY)
    starter = threading.Thread(target=server.start)
    starter.start()
    starter.join(120)
    try:
        assert not starter.is_alive() and server.pid is not None
        time.sleep(1.0)  # a SIGTERM from the thread's end would have landed by now
        server.check_alive()  # raises ServerError naming the signal if the server died
        assert psutil.pid_exists(server.pid) and psutil.Process(server.pid).status() != psutil.STATUS_ZOMBIE
        TritonControl(server.endpoints.grpc).server_version()  # it still answers
    finally:
        server.stop()
