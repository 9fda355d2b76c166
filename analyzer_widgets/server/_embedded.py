"""The Triton server that the ``nvidia-pytriton`` wheel ships, made runnable here.

What the binary needs (learned the hard way, see docs/design-notes.md):
- its shared libraries from ``<site-packages>/nvidia_pytriton.libs`` on LD_LIBRARY_PATH;
- a backend directory holding the Python backend plus the stub built for *this*
  interpreter's major.minor version;
- the stub links ``libpython3.X.so.1.0``: this interpreter's LIBDIR goes first on
  LD_LIBRARY_PATH, and the directory of the Python whose packages the models use goes
  first on PATH, or the stub embeds some other Python and fails on import;
- numpy 1.x in that Python: with numpy 2 the Python backend answers every request with
  empty outputs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from analyzer_widgets.errors import EnvironmentCheckError

INSTALL_HINT = "pip install nvidia-pytriton (Linux x86-64), or pass --tritonserver PATH"
#: names the models' Python where none is given (a GPU host whose own Python has numpy 2)
BACKEND_PYTHON_ENV = "ANALYZER_WIDGETS_BACKEND_PYTHON"


def models_python(given: Path | str | None = None) -> Path:
    """The Python whose packages the models import: ``given``, else $ANALYZER_WIDGETS_BACKEND_PYTHON,
    else this interpreter."""
    chosen = given or os.environ.get(BACKEND_PYTHON_ENV) or sys.executable
    return Path(chosen)


@dataclass(frozen=True)
class EmbeddedTriton:
    binary: Path
    libs: Path
    backends: Path  # the wheel's own backends folder (python backend without stub)
    stubs: Path


def find_embedded() -> EmbeddedTriton:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise EnvironmentCheckError(f"the embedded Triton server is not installed: {INSTALL_HINT}")
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    found = EmbeddedTriton(
        binary=root / "bin" / "tritonserver",
        libs=root.parent.parent / "nvidia_pytriton.libs",
        backends=root / "backends",
        stubs=root / "python_backend_stubs",
    )
    if not found.binary.is_file():
        raise EnvironmentCheckError(f"no tritonserver binary at {found.binary}: {INSTALL_HINT}")
    return found


def _python_version(python: Path) -> str:
    out = subprocess.run(
        [str(python), "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
        capture_output=True, text=True, timeout=30,
    )
    if out.returncode != 0:
        raise EnvironmentCheckError(f"could not run the models' Python {python}: {out.stderr.strip()}")
    return out.stdout.strip()


def prepare_backend_dir(embedded: EmbeddedTriton, python: Path, cache_root: Path | None = None) -> Path:
    """A backend directory with the Python backend and the stub for ``python``'s version.

    Built once per (wheel, Python version) under the user's cache and reused.
    """
    version = _python_version(python) if Path(python) != Path(sys.executable) else f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = embedded.stubs / version / "triton_python_backend_stub"
    if not stub.is_file():
        have = sorted(p.name for p in embedded.stubs.iterdir()) if embedded.stubs.is_dir() else []
        raise EnvironmentCheckError(
            f"the embedded Triton has no Python backend stub for Python {version} "
            f"(it has {', '.join(have) or 'none'}); run the models with one of those Python versions"
        )
    cache_root = cache_root or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "analyzer-widgets"
    key = hashlib.sha256(f"{embedded.binary.resolve()}:{version}".encode()).hexdigest()[:12]
    target = cache_root / "backends" / f"py{version}-{key}"
    python_dir = target / "python"
    marker = python_dir / ".complete"
    if marker.is_file():
        return target
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(embedded.backends, tmp, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(stub, tmp / "python" / "triton_python_backend_stub")
    (tmp / "python" / ".complete").write_text("ok\n")
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    try:
        os.replace(tmp, target)
    except OSError:
        # another process finished the same directory first; use theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def shared_libpython_dir(python: Path) -> Path:
    """The directory of ``python``'s shared libpython, which the stub links against."""
    if Path(python) == Path(sys.executable):
        libdir, ldlib, shared = (
            sysconfig.get_config_var("LIBDIR"),
            sysconfig.get_config_var("LDLIBRARY"),
            sysconfig.get_config_var("Py_ENABLE_SHARED"),
        )
    else:
        out = subprocess.run(
            [str(python), "-c", "import sysconfig as s; print(s.get_config_var('LIBDIR')); "
             "print(s.get_config_var('LDLIBRARY')); print(s.get_config_var('Py_ENABLE_SHARED'))"],
            capture_output=True, text=True, timeout=30,
        )
        libdir, ldlib, shared = (out.stdout.splitlines() + ["", "", ""])[:3]
    if not libdir or str(shared) in ("0", "None", "") or not (Path(libdir) / str(ldlib)).exists():
        raise EnvironmentCheckError(
            f"the Python at {python} has no shared libpython (looked for {ldlib!s} in {libdir!s}); "
            "the Python backend's stub needs one. Use a Python built with --enable-shared "
            "(python.org, Debian and conda builds are; pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared)"
        )
    return Path(libdir)


def server_environment(embedded: EmbeddedTriton | None, python: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment variables for the server process so its stubs embed ``python``."""
    env = dict(os.environ if base is None else base)
    lib_dirs = [str(shared_libpython_dir(python))]
    if embedded is not None:
        lib_dirs.append(str(embedded.libs))
    if env.get("LD_LIBRARY_PATH"):
        lib_dirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_dirs)
    env["PATH"] = os.pathsep.join([str(Path(python).parent), env.get("PATH", "")])
    # The stub must import this environment's packages, not a user site or a PYTHONHOME elsewhere.
    env.pop("PYTHONHOME", None)
    return env


def models_numpy_version(python: Path) -> str | None:
    """numpy's version in the models' Python environment, or None if numpy is absent."""
    out = subprocess.run(
        [str(python), "-c", "import numpy; print(numpy.__version__)"],
        capture_output=True, text=True, timeout=60,
    )
    return out.stdout.strip() if out.returncode == 0 else None


def check_models_environment(python: Path) -> None:
    """Refuse a models' environment with numpy 2: the embedded Python backend would send
    back empty outputs for every request (DESIGN.md)."""
    version = models_numpy_version(python)
    if version is None:
        raise EnvironmentCheckError(
            f"numpy is not importable by the models' Python ({python}); the Python backend needs it: "
            f"{python} -m pip install 'numpy<2'"
        )
    if int(version.split(".")[0]) >= 2:
        raise EnvironmentCheckError(
            f"the models' Python ({python}) has numpy {version}; the embedded Triton's Python backend "
            f"returns empty outputs with numpy 2. Install numpy 1.x there ({python} -m pip install 'numpy<2'), "
            "or point backend_python / --backend-python at an environment that has it"
        )
