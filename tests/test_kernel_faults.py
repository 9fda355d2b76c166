"""RELIABILITY row 27: the notebook's kernel restarted (killed) in the middle of a sweep.

A real ipykernel runs the panel with "save each row to the export folder"; it is SIGKILLed
while a point runs. Whatever it started (the embedded server and its model stubs, the
client processes) must end with it, the rows it finished are on disk, and a panel in a new
kernel resumes the saved sweep: the points measured before are kept, the rest measured.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from jupyter_client.manager import KernelManager
from test_notebooks import TOKEN_VAR, leftovers, tagged

import analyzer_widgets as aw

pytestmark = [pytest.mark.server, pytest.mark.faults, pytest.mark.timeout(400)]

PANEL = ("aw.Dashboard(models=['mlp_numpy'], batch_sizes='1,2,4', concurrency='1,2', export_path={out!r}, "
         "save={save!r}, window_ms=300, baseline_s=0.5, max_trials=6)")


def _kernel(token: str, workdir: Path) -> tuple[KernelManager, object]:
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env={**os.environ, TOKEN_VAR: token}, cwd=str(workdir))
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    return manager, client


def _run(client: object, code: str, timeout: float = 240) -> dict:
    reply = client.execute_interactive(code, timeout=timeout, output_hook=lambda _msg: None)  # type: ignore[attr-defined]
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply


def _saved_rows(out: Path) -> int:
    path = out / "metrics-model.csv"
    return max(0, len(path.read_text().strip().splitlines()) - 1) if path.is_file() else 0


def test_a_kernel_killed_mid_sweep_takes_its_server_and_clients_along_and_the_sweep_resumes(tmp_path: Path) -> None:
    out = tmp_path / "results"
    token = uuid.uuid4().hex
    manager, client = _kernel(token, tmp_path)
    try:
        _run(client, "import analyzer_widgets as aw\npanel = " + PANEL.format(out=str(out), save="save") + "\npanel.run()")
        deadline = time.monotonic() + 120
        while _saved_rows(out) < 2 and time.monotonic() < deadline:  # the sweep saves each row as it ends
            _run(client, "panel.poll()")
            time.sleep(0.2)
        assert _saved_rows(out) >= 2, "no row was saved"
        started = {p for p in tagged(token)}
        assert len(started) >= 4, started  # the kernel, tritonserver, the model's stub, a client process
        os.kill(manager.provisioner.pid, signal.SIGKILL)  # type: ignore[union-attr]  # as the OOM killer would
        # What the kernel started must end by itself: checked before jupyter_client's own
        # cleanup, which would kill the kernel's process group (a restart from JupyterLab does)
        left = leftovers(token, timeout_s=20)
    finally:
        client.stop_channels()  # type: ignore[attr-defined]
        manager.shutdown_kernel(now=True)  # reaps the kernel
    assert not left, f"left running after the kernel was killed: {left}"
    kept = _saved_rows(out)
    assert 2 <= kept < 6

    # a new kernel resumes the saved sweep
    token = uuid.uuid4().hex
    manager, client = _kernel(token, tmp_path)
    try:
        _run(client, "import analyzer_widgets as aw\npanel = " + PANEL.format(out=str(out), save="resume")
             + "\npanel.run()\nassert panel.wait(240), panel.status.value\nprint(panel.status.value)")
    finally:
        client.stop_channels()  # type: ignore[attr-defined]
        manager.shutdown_kernel(now=False)
    assert not leftovers(token)
    model, _ = aw.load_results(out)
    assert len(model) == 6 and set(zip(model["batch_size"], model["concurrency"], strict=True)) == {
        (b, c) for b in (1, 2, 4) for c in (1, 2)}
