"""The models' Python is checked before anything starts: numpy must be there, and 1.x
(with numpy 2 the embedded Python backend returns empty outputs: DESIGN.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAST, server_processes

import analyzer_widgets as aw


def make_env(path: Path) -> Path:
    """A real virtual environment of this interpreter, with no packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def test_models_python_without_numpy_is_refused_before_launch(tmp_path: Path) -> None:
    python = make_env(tmp_path / "env")
    before = server_processes()
    with pytest.raises(aw.EnvironmentCheckError, match="numpy is not importable") as raised:
        aw.profile(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, backend_python=python,
                   export_path=tmp_path / "out", **FAST)
    assert str(python) in str(raised.value)
    assert server_processes() == before
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_models_python_with_numpy_2_is_refused_with_the_fix(tmp_path: Path) -> None:
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "-q", "numpy>=2,<3"], check=True)
    with pytest.raises(aw.EnvironmentCheckError) as raised:
        aw.profile(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, backend_python=env / "bin" / "python",
                   **FAST)
    message = str(raised.value)
    assert "numpy 2." in message and "empty outputs" in message and "numpy<2" in message


def test_cli_names_the_numpy_problem_and_exits_nonzero(tmp_path: Path) -> None:
    python = make_env(tmp_path / "env")
    done = subprocess.run(
        [sys.executable, "-m", "analyzer_widgets", "profile", "-m", "mlp_numpy", "--model-folder",
         str(aw.EXAMPLE_REPOSITORY), "--backend-python", str(python), "-e", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0
    assert "numpy" in done.stderr and str(python) in done.stderr
