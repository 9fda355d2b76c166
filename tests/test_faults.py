"""Faults made to happen for real against the embedded Triton server (RELIABILITY.md rows
5, 6, 8 and 15): a model that runs out of memory only at large batch sizes, a model that
fails some requests, a server that stops answering (SIGSTOP), and remote servers in
polling mode or with a restricted repository API."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import BROKEN_MESSAGE, FAST, add_broken_model, assert_counts_agree, wait_gone

import analyzer_widgets as aw
from analyzer_widgets import events
from analyzer_widgets.server.control import TritonControl
from analyzer_widgets.server.local import LocalServer, _stop_process_group

pytestmark = [pytest.mark.server, pytest.mark.faults]

MEASURED = {"ok", "unstable"}


def add_python_model(repository: Path, name: str, execute_body: str, *, init_body: str = "pass",
                     max_batch_size: int = 16) -> str:
    """A Python-backend model with INPUT0/OUTPUT0 FP32 [4] (no dynamic batching, so each
    execute gets the client's own batch) whose ``execute`` runs ``execute_body``, with
    ``np``, ``pb_utils``, ``request`` (one at a time) and ``x`` (its input) in scope; the
    body must set ``response``."""
    model = repository / name
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: {max_batch_size}\n'
        'input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 4 ] } ]\n'
        'output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 4 ] } ]\n'
        "instance_group [ { count: 1, kind: KIND_CPU } ]\n"
    )
    indent = "            "
    (model / "1" / "model.py").write_text(
        "import numpy as np\n"
        "import triton_python_backend_utils as pb_utils\n\n\n"
        "class TritonPythonModel:\n"
        "    def initialize(self, args):\n"
        f"        {init_body}\n\n"
        "    def execute(self, requests):\n"
        "        responses = []\n"
        "        for request in requests:\n"
        '            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()\n'
        + "".join(f"{indent}{line}\n" for line in execute_body.splitlines())
        + "            responses.append(response)\n"
        "        return responses\n"
    )
    return name


def _echo() -> str:
    return 'response = pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT0", x * 2)])'


# -- row 5: out of memory only at large batch sizes -------------------------------------------
def test_a_model_running_out_of_memory_at_large_batches_fails_those_points_and_the_sweep_goes_on(repo: Path) -> None:
    # A real allocation failure: above batch 4 the model asks numpy for petabytes, which
    # malloc refuses at once (MemoryError: Unable to allocate ...), and the exception leaves
    # execute() as it would from a model that ran out of GPU memory.
    oom = add_python_model(repo, "oom_at_large_batch", (
        "if x.shape[0] > 4:\n"
        "    scratch = np.empty((x.shape[0], 1 << 47), dtype=np.float32)\n"
        + _echo()
    ))
    result = aw.profile(models=[oom, "mlp_numpy"], model_repository=repo, batch_sizes=[2, 8], concurrency=[1, 2],
                        **FAST)
    df = result.to_frame().set_index(["model", "batch_size", "concurrency"])
    assert len(df) == 8
    for c in (1, 2):
        small, large = df.loc[(oom, 2, c)], df.loc[(oom, 8, c)]
        assert small["status"] in MEASURED and small["throughput_infer_per_s"] > 0 and small["error_count"] == 0
        assert large["status"] == "failed"
        assert "Unable to allocate" in large["reason"], large["reason"]
        assert large["reason"].startswith("every request failed")
        assert large["error_count"] > 0 and large["error_rate"] == 1.0
        assert large["throughput_infer_per_s"] == 0 or math.isnan(large["throughput_infer_per_s"])
    # the points after the failures ran, on the same server
    for b in (2, 8):
        after = df.loc[("mlp_numpy", b, 1)]
        assert after["status"] in MEASURED and after["throughput_infer_per_s"] > 0, after["reason"]
    assert not result.ok and result.error is None


# -- row 6: some requests fail -----------------------------------------------------------------
def test_a_model_failing_every_fourth_request_is_counted_and_flagged(repo: Path) -> None:
    flaky = add_python_model(repo, "fails_every_fourth", (
        "self.calls += 1\n"
        "if self.calls % 4 == 0:\n"
        '    response = pb_utils.InferenceResponse(error=pb_utils.TritonError("deliberate failure of every 4th request"))\n'
        "else:\n"
        "    " + _echo()
    ), init_body="self.calls = 0")
    result = aw.profile(models=[flaky], model_repository=repo, batch_sizes=[2], concurrency=[1], **FAST)
    row = result.to_frame().iloc[0]
    assert row["status"] in MEASURED, row["reason"]
    # one request in four failed; the row says so, in its counts and in its reason
    assert row["error_count"] > 0
    assert 0.2 <= row["error_rate"] <= 0.3, row["error_rate"]
    assert f"{row['error_count']} of {row['request_count'] + row['error_count']} requests failed" in row["reason"]
    assert "deliberate failure of every 4th request" in row["reason"]
    # The server executed every request: its statistics count a response carrying the
    # model's error as a success, so they match the client's successes and failures together
    served = row["request_count"] + row["error_count"]
    assert abs(served - row["server_request_count"]) <= 0.05 * served
    # throughput counts successful inferences only
    assert row["client_inference_count"] == 2 * row["request_count"]
    assert row["throughput_infer_per_s"] == pytest.approx(row["client_inference_count"] / row["measured_s"], rel=1e-6)
    # some failed requests fail neither the point nor the sweep (noise on a small machine
    # may leave the point unstable, which is no failure either)
    assert result.ok


# -- row 8: the server hangs -------------------------------------------------------------------
def _server_pid() -> int:
    """The running tritonserver child (a zombie left by an earlier test is not it: under
    ``unshare --pid`` pytest is PID 1 and inherits orphans)."""
    return next(p.pid for p in psutil.Process().children()
                if p.name() == "tritonserver" and p.status() != psutil.STATUS_ZOMBIE)


def test_a_hung_server_fails_the_point_and_is_stopped(tmp_path: Path) -> None:
    """SIGSTOP makes the real server hang as a deadlocked one does: its ports still accept
    connections (the kernel does that), nothing answers. The requests' timeouts fire, the
    point fails with the reason, the rows before it stay on disk, and the server's process
    group is stopped (SIGTERM, SIGCONT so a stopped server can act on it, then SIGKILL)."""
    out = tmp_path / "out"
    seen: dict[str, object] = {}

    def hang_at_second_point(event: object) -> None:
        if isinstance(event, events.PointStarted) and event.index == 1:
            pid = _server_pid()
            seen["pid"] = pid
            seen["group"] = {p.pid for p in psutil.process_iter() if _pgid(p.pid) == pid}  # the stubs too
            os.kill(pid, signal.SIGSTOP)
            seen["stopped_at"] = time.monotonic()

    with pytest.raises(aw.ServerError, match="did not answer a health check") as raised:
        aw.profile(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=[1],
                   concurrency=[1, 2, 4], request_timeout_s=2.0, export_path=out, on_event=hang_at_second_point,
                   **FAST)
    # bounded: the request timeout, the health probe and the stop's grace, not forever
    assert time.monotonic() - seen["stopped_at"] < 45
    assert f"tritonserver (pid {seen['pid']}) is running but" in str(raised.value)
    models, _ = aw.load_results(out)
    assert list(models["concurrency"]) == [1, 2]  # the third point was never started
    assert models.loc[0, "status"] in MEASURED
    assert models.loc[1, "status"] == "failed"
    assert "is hung" in models.loc[1, "reason"]
    # the point's own cause follows: a request or statistics call that hit its deadline
    assert "Deadline Exceeded" in models.loc[1, "reason"] or "DEADLINE_EXCEEDED" in models.loc[1, "reason"]
    # the server and its stubs are gone (zombies of them would have been reaped by the wait)
    left = [pid for pid in seen["group"] if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert not left, f"processes of the hung server's group left: {left}"


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _group_leader(script: str) -> subprocess.Popen[bytes]:
    """A Python child in its own process group (as the server is) that has run ``script``
    and then sleeps; it prints "ready" once ``script`` ran."""
    proc = subprocess.Popen([sys.executable, "-c", script + "\nprint('ready', flush=True)\nimport time\ntime.sleep(600)"],
                            stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc


def test_stopping_a_stopped_process_group_ends_it_by_sigterm_without_waiting_for_the_grace() -> None:
    proc = _group_leader("")
    try:
        os.kill(proc.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        _stop_process_group(proc, grace_s=20.0)
        assert proc.returncode == -signal.SIGTERM  # continued, it acted on the SIGTERM
        assert time.monotonic() - t0 < 10  # well inside the grace
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_process_group_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    proc = _group_leader("import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)")
    try:
        t0 = time.monotonic()
        _stop_process_group(proc, grace_s=1.0)
        assert proc.returncode == -signal.SIGKILL
        assert time.monotonic() - t0 >= 1.0  # it had its grace first
    finally:
        if proc.poll() is None:
            proc.kill()


# -- row 15: a remote server in polling mode, or with a restricted repository API --------------
@pytest.fixture
def start_server():
    """Start embedded servers with extra flags, as someone else's servers to attach to."""
    started: list[LocalServer] = []

    def start(repository: Path, *flags: str) -> LocalServer:
        server = LocalServer(repository, aw.ServerSettings(extra_args=flags))
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_remote_server_in_polling_mode(repo: Path, start_server) -> None:
    """A server in polling mode loads its repository itself and refuses load and unload
    requests: the models it has ready are measured (and left loaded), one it could not load
    fails with a message that names polling mode and the server's own reason."""
    broken = add_broken_model(repo)
    # as a server is run to keep serving the models that work: the broken one neither stops
    # it at start-up nor keeps it from being ready
    # (and it polls rarely: between polls the failed model shows as UNAVAILABLE, with the reason)
    server = start_server(repo, "--model-control-mode=poll", "--repository-poll-secs=3600", "--exit-on-error=false",
                          "--strict-readiness=false")
    url = server.endpoints.grpc
    notices: list[str] = []
    result = aw.profile(models=[broken, "mlp_numpy"], launch_mode="remote", url=url, batch_sizes=[1],
                        concurrency=[1], on_event=lambda e: notices.append(e.message) if isinstance(e, events.Notice) else None,
                        **FAST)
    df = result.to_frame().set_index("model")
    assert df.loc[broken, "status"] == "failed"
    reason = df.loc[broken, "reason"]
    assert "polling mode" in reason and "refuses load requests" in reason, reason
    assert BROKEN_MESSAGE in reason  # the server's reason for the model, from its index
    assert df.loc["mlp_numpy", "status"] in MEASURED and df.loc["mlp_numpy", "throughput_infer_per_s"] > 0
    control = TritonControl(url)
    try:
        assert control.is_model_ready("mlp_numpy")  # a model the tool did not load stays loaded
    finally:
        control.close()
    assert not any("unload" in n for n in notices), notices  # nor was an unload attempted


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_remote_server_with_a_restricted_repository_api(protocol: str, repo: Path, start_server) -> None:
    """Triton can restrict its repository API to callers that send a header. Without it the
    sweep stops before the baseline with the header's name and how to pass it; with it (the
    access headers) the sweep loads, measures and unloads the model."""
    server = start_server(repo, "--grpc-restricted-protocol=model-repository:admin-key=s3cret",
                          "--http-restricted-api=model-repository:admin-key=s3cret")
    url = server.endpoints.for_protocol(protocol)
    # gRPC puts its own prefix on the key's name
    header = "triton-grpc-protocol-admin-key" if protocol == "grpc" else "admin-key"
    seen: list[object] = []
    with pytest.raises(aw.ServerError) as raised:
        aw.profile(models=["mlp_numpy"], launch_mode="remote", url=url, protocol=protocol, batch_sizes=[1],
                   concurrency=[1], on_event=seen.append, **FAST)
    message = str(raised.value)
    assert f"expecting header '{header}'" in message and f"--header {header}:VALUE" in message, message
    assert not any(isinstance(e, events.BaselineFinished) for e in seen)  # refused before the baseline

    result = aw.profile(models=["mlp_numpy"], launch_mode="remote", url=url, protocol=protocol, batch_sizes=[1],
                        concurrency=[1], headers={header: "s3cret"}, **FAST)
    row = result.to_frame().iloc[0]
    assert row["status"] in MEASURED and row["throughput_infer_per_s"] > 0, row["reason"]
    control = TritonControl(url, protocol, {header: "s3cret"})
    try:
        assert not control.is_model_ready("mlp_numpy")  # loaded by the sweep, so unloaded again
    finally:
        control.close()


def test_a_model_process_left_when_server_and_analyzer_both_died_is_removed_by_the_next_start() -> None:
    """RELIABILITY row 10: the server SIGKILLed alone (as the OOM killer does), then the
    process that started it gone without its cleanup: the model's stub is orphaned and
    waits on the dead server for good, holding its memory. The next LocalServer start
    removes it, and leaves the stub of a live server alone."""
    code = (
        "import os, signal, psutil\n"
        "from analyzer_widgets.server import LocalServer, TritonControl\n"
        f"s = LocalServer({str(aw.EXAMPLE_REPOSITORY)!r}); s.start()\n"
        "TritonControl(s.endpoints.grpc).load('mlp_numpy')\n"
        "print(' '.join(str(p.pid) for p in psutil.Process(s.pid).children(recursive=True)), flush=True)\n"
        "os.kill(s.pid, signal.SIGKILL)\n"
        "os._exit(0)  # no atexit, no stop(): as a killed kernel\n"
    )
    with LocalServer(aw.EXAMPLE_REPOSITORY) as live:
        control = TritonControl(live.endpoints.grpc)
        control.load("mlp_numpy")
        live_stubs = {p.pid for p in psutil.Process(live.pid).children(recursive=True)}
        assert live_stubs
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        stubs = [int(p) for p in out.stdout.split()]
        assert stubs, out.stderr[-2000:]
        time.sleep(1.0)
        orphans: set[tuple[int, float]] = set()
        for pid in stubs:
            try:
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    orphans.add((pid, proc.create_time()))
            except psutil.NoSuchProcess:
                pass
        try:
            if not orphans:
                pytest.skip("here the stub ended with its server: there is no orphan to clean up")
            said: list[str] = []
            with LocalServer(aw.EXAMPLE_REPOSITORY, on_progress=said.append) as server:
                assert {pid for pid, _ in orphans} <= set(server.removed_stubs)
                assert any(f"{pid}" in m and "left by an earlier run" in m for m in said for pid, _ in orphans), said
                assert not wait_gone(orphans, timeout_s=1.0)  # start() waited for them
                # the live server's stub is left alone, and its server still answers
                assert not live_stubs & set(server.removed_stubs)
                assert all(psutil.pid_exists(pid) for pid in live_stubs)
                assert control.is_model_ready("mlp_numpy")
        finally:
            for pid, _ in wait_gone(orphans, timeout_s=0):
                os.kill(pid, signal.SIGKILL)
        control.close()


def _kill_server_at(indexes: set[int], seen: dict[str, list[int]]):
    """An event handler that SIGKILLs the running tritonserver as the points of ``indexes``
    start, noting the pids of every server it saw."""
    def handler(event: object) -> None:
        if isinstance(event, events.ServerReady):
            seen["pids"].append(_server_pid())
        elif isinstance(event, events.PointStarted) and event.index in indexes:
            indexes.discard(event.index)  # the same point started again after the restart: left alone
            os.kill(seen["pids"][-1], signal.SIGKILL)
    return handler


def test_a_server_killed_mid_sweep_is_restarted_and_the_point_measured_again(tmp_path: Path) -> None:
    """RELIABILITY row 24: --on-server-failure restart starts the server again, reloads the
    model, measures the failed point once more and goes on; the rows say so."""
    out = tmp_path / "out"
    seen: dict[str, list[int]] = {"pids": []}
    result = aw.profile(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=[1],
                        concurrency=[1, 2, 4], export_path=out, on_server_failure="restart",
                        on_event=_kill_server_at({1}, seen), **FAST)
    assert len(seen["pids"]) == 2 and seen["pids"][0] != seen["pids"][1]  # a new server
    models, _ = aw.load_results(out)
    assert list(models["concurrency"]) == [1, 2, 2, 4]
    assert models.loc[1, "status"] == "failed"
    assert f"tritonserver (pid {seen['pids'][0]}) killed by signal 9" in models.loc[1, "reason"]
    assert models.loc[2, "status"] in MEASURED and models.loc[2, "throughput_infer_per_s"] > 0
    assert models.loc[2, "reason"].startswith("measured again after restarting the server")
    assert models.loc[3, "status"] in MEASURED
    # the restarted server's counts agree with the client's (the model was loaded again)
    assert_counts_agree(models.loc[3])
    samples = aw.load_samples(out)
    assert "restart" in set(samples["phase"])
    assert result.error is None
    assert not psutil.pid_exists(seen["pids"][1]) or psutil.Process(seen["pids"][1]).status() == "zombie"


def test_a_point_that_loses_the_server_twice_ends_the_sweep(tmp_path: Path) -> None:
    seen: dict[str, list[int]] = {"pids": []}
    with pytest.raises(aw.ServerError, match="killed by signal 9"):
        aw.profile(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=[1],
                   concurrency=[1, 2], export_path=tmp_path / "out", on_server_failure="restart",
                   on_event=_kill_server_at({1, 2}, seen), **FAST)
    models, _ = aw.load_results(tmp_path / "out")
    assert list(models["status"])[1:] == ["failed", "failed"]
    assert "killed by signal 9" in models.loc[2, "reason"]
    assert "measured again after restarting the server" in models.loc[2, "reason"]


def test_restart_is_refused_for_a_remote_server() -> None:
    with pytest.raises(aw.ConfigError, match="on_server_failure.*someone else's"):
        aw.ServerSettings(launch_mode="remote", url="localhost:8001", on_server_failure="restart")


def _add_server_killing_model(repository: Path, name: str = "kills_server") -> str:
    """A model whose loading kills the server (as a backend that crashes it would)."""
    shutil.copytree(repository / "mlp_numpy", repository / name)
    config = repository / name / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "mlp_numpy"', f'name: "{name}"'))
    (repository / name / "1" / "model.py").write_text(
        "import os, signal\n"
        "class TritonPythonModel:\n"
        "    def initialize(self, args):\n"
        "        os.kill(os.getppid(), signal.SIGKILL)  # the stub's parent is tritonserver\n"
        "    def execute(self, requests):\n"
        "        return []\n")
    return name


def test_a_server_that_dies_loading_a_model_ends_the_sweep_or_is_restarted(repo: Path) -> None:
    """A load that fails because the server died is not the model's own failure: with
    --on-server-failure stop the sweep ends naming the server's death; with restart the
    server starts again and the next model is measured (row 24)."""
    killer = _add_server_killing_model(repo)
    with pytest.raises(aw.ServerError, match=r"tritonserver \(pid \d+\)"):
        aw.profile(models=[killer, "mlp_numpy"], model_repository=repo, batch_sizes=[1], concurrency=[1], **FAST)
    result = aw.profile(models=[killer, "mlp_numpy"], model_repository=repo, batch_sizes=[1], concurrency=[1],
                        on_server_failure="restart", **FAST)
    frame = result.to_frame().set_index("model")
    # the server's state first (killed, or still dying: its health check refused), then the load's own error
    reason = frame.loc[killer, "status"], frame.loc[killer, "reason"]
    assert reason[0] == "failed" and reason[1].startswith("tritonserver (pid ") and "failed to load" in reason[1]
    assert frame.loc["mlp_numpy", "status"] in MEASURED and frame.loc["mlp_numpy", "throughput_infer_per_s"] > 0
    assert result.error is None
