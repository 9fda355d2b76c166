"""The Binder set-up (``binder/``), rehearsed on this machine.

mybinder.org builds the image with repo2docker, which installs ``binder/requirements.txt``
with ``pip install -r binder/requirements.txt`` from the repository root into the
kernel's Python (``binder/runtime.txt`` picks 3.11). Here the same install goes into a
fresh virtualenv made with this machine's Python, and ``notebooks/quickstart.ipynb`` is
executed top to bottom (nbclient) in a kernel running *that* virtualenv's Python, so the
notebook can only use what the Binder requirements installed: the embedded Triton server
of nvidia-pytriton on the CPU, numpy<2, ipykernel, the panel's widgets.

Slow: the install takes minutes (pip's cache makes a second run quicker).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from test_notebooks import QUICKSTART_POINTS, TOKEN_VAR, cell_with, html_outputs, leftovers

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
REQUIREMENTS = BINDER / "requirements.txt"
CELL_TIMEOUT_S = 600
INSTALL_TIMEOUT_S = 1500
KERNEL_NAME = "analyzer-widgets-binder"


def _run(cmd: list[str], env: dict[str, str], timeout_s: float, cwd: Path = ROOT) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _venv_env(venv: Path) -> dict[str, str]:
    """This environment, as seen from inside ``venv`` (as if it were activated); nothing of
    the test's own virtualenv leaks in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV")}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != Path(sys.prefix, "bin").resolve()]
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *path])
    env["VIRTUAL_ENV"] = str(venv)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def test_binder_files() -> None:
    """What repo2docker reads: the Python version, and a requirements file that installs
    this repository (from the root, where repo2docker runs pip) with the lab extra."""
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"
    lines = [ln.strip() for ln in REQUIREMENTS.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines == ["-e .[lab]"], lines
    assert not (ROOT / "requirements.txt").exists() and not (ROOT / "environment.yml").exists(), (
        "repo2docker reads only binder/ when it exists; keep the configuration there"
    )


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.timeout(INSTALL_TIMEOUT_S + 2 * CELL_TIMEOUT_S)
def test_quickstart_runs_in_a_fresh_binder_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    env = _venv_env(venv)
    started = time.monotonic()

    # 1. A fresh virtualenv with exactly what binder/requirements.txt installs.
    _run([sys.executable, "-m", "venv", str(venv)], env, 120)
    _run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], env, 300)
    _run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS.relative_to(ROOT))], env, INSTALL_TIMEOUT_S)
    installed = time.monotonic()

    facts = json.loads(_run([str(python), "-c", (
        "import json, numpy, analyzer_widgets, ipykernel, jupyterlab, voila, pytriton; "
        "print(json.dumps({'numpy': numpy.__version__, 'package': analyzer_widgets.__file__}))"
    )], env, 120, cwd=tmp_path))
    assert facts["numpy"].startswith("1."), f"numpy {facts['numpy']}: the embedded Python backend needs numpy<2"
    assert Path(facts["package"]).resolve().is_relative_to(ROOT), facts["package"]

    # 2. That virtualenv's kernel, in a private JUPYTER_PATH (nothing is installed for the user).
    jupyter_path = tmp_path / "jupyter"
    _run([str(python), "-m", "ipykernel", "install", "--prefix", str(jupyter_path), "--name", KERNEL_NAME,
          "--display-name", "Binder venv"], env, 120)
    kernels = jupyter_path / "share" / "jupyter"
    spec = json.loads((kernels / "kernels" / KERNEL_NAME / "kernel.json").read_text())
    assert Path(spec["argv"][0]) == python, spec["argv"]
    monkeypatch.setenv("JUPYTER_PATH", str(kernels))

    # 3. The quickstart, top to bottom, with a working directory of its own.
    workdir = tmp_path / "work"
    workdir.mkdir()
    token = uuid.uuid4().hex
    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL_NAME,
                            resources={"metadata": {"path": str(workdir)}})
    try:
        client.execute(env={**env, TOKEN_VAR: token})
    finally:
        left = leftovers(token)
    ran = time.monotonic()
    print(f"binder venv install {installed - started:.0f} s, notebook {ran - installed:.0f} s")
    assert not left, f"processes left behind by the notebook's kernel: {left}"

    for cell in nb.cells:
        if cell.cell_type == "code":
            errors = [o for o in cell.outputs if o.output_type == "error"]
            assert not errors, f"{cell.source}\n{errors}"
            assert cell.execution_count is not None, f"not executed: {cell.source}"

    run_cell = cell_with(nb, "panel.wait()")
    said = "".join(o.get("text", "") for o in run_cell.outputs if o.output_type == "stream")
    assert f"Done: {QUICKSTART_POINTS} points" in said, said

    # aw.profile's table: one row per point, both models, measured.
    profile_cell = cell_with(nb, "aw.profile(")
    (table,) = html_outputs(profile_cell)
    body = table.split("<tbody>", 1)[1]
    assert body.count("<tr") == QUICKSTART_POINTS
    assert "mlp_numpy" in body and "mixed_inputs" in body
    assert len(re.findall(r"<td>(?:ok|unstable)</td>", body)) == QUICKSTART_POINTS, body
    assert (workdir / "results" / "profile" / "metrics-model.csv").is_file()
    # The last cell, aw.plan's answer: a sentence, the config to serve with, the table.
    plan_cell = cell_with(nb, "aw.plan(")
    assert plan_cell is [c for c in nb.cells if c.cell_type == "code"][-1]
    printed = "".join(o.get("text", "") for o in plan_cell.outputs if o.output_type == "stream")
    # a busy machine may leave no variant within the budget: the answer then says so
    recommended = "serve mlp_numpy with" in printed
    assert recommended or "no variant of mlp_numpy meets" in printed, printed
    assert (workdir / "results" / "plan" / "config.pbtxt").is_file() == recommended
    assert ('name: "mlp_numpy"' in printed) == recommended
