"""The layers of ../shared/DESIGN.md, kept: each module imports only from its own layer and
the layers above it, and never another package's private (``_``) module. ruff's banned-api
rule keeps ipywidgets and plotly inside analyzer_widgets/ui; this test keeps the rest."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "analyzer_widgets"

#: DESIGN.md's layers, top first; a module may import from its own layer and those above.
#: The first holds what every layer may use: the errors, what this machine has, the model
#: repository's files, and the settings.
LAYERS: tuple[frozenset[str], ...] = tuple(frozenset(layer) for layer in (
    {"errors", "machine", "repository", "config"},
    {"schema"},
    {"events"},
    {"server"},
    {"loadgen"},
    {"monitor"},
    {"runner"},
    {"results", "export", "checkpoint", "colocation"},
    {"planning"},
    {"distributed"},
    {"api"},
    {"cli", "__main__"},
    {"ui"},
))


def _unit(module: str) -> str:
    """The layer unit of a dotted module name under analyzer_widgets (its first part)."""
    return module.split(".")[1] if module.count(".") >= 1 else ""


def _layer(unit: str) -> int:
    for i, layer in enumerate(LAYERS):
        if unit in layer:
            return i
    raise AssertionError(f"analyzer_widgets.{unit} is in no layer of DESIGN.md: add it to LAYERS and the design")


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        if "examples" in relative.parts:
            continue  # the example models run inside Triton, not as part of the package
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append((".".join(parts), path))
    return out


def _imports(path: Path, module: str) -> list[str]:
    """Every analyzer_widgets module or name ``path`` imports, at any depth of the file, as a
    dotted path (``analyzer_widgets.config`` or ``analyzer_widgets.config.setting``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found += [f"{base}.{a.name}" for a in node.names]
    return [name for name in found if name.startswith("analyzer_widgets.")]


MODULES = [m for m in _modules() if m[0] != "analyzer_widgets"]  # the package's own facade may name anything
MODULE_NAMES = {m for m, _ in _modules()}


def _module_of(imported: str) -> str:
    """The module an import reaches: the dotted path itself, or the module a name is taken from."""
    return imported if imported in MODULE_NAMES else imported.rpartition(".")[0]


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_a_module_imports_only_from_its_layer_and_those_above(module: str, path: Path) -> None:
    own = _layer(_unit(module))
    for imported in _imports(path, module):
        source = _module_of(imported)
        assert source != "analyzer_widgets", (
            f"{module} imports {imported} from the package facade; import it from the module that declares it")
        assert _layer(_unit(source)) <= own, f"{module} imports {imported}, from a layer below it (DESIGN.md)"


PACKAGES = {m for m, path in _modules() if path.name == "__init__.py"}


def _private_violation(module: str, path: Path, imported: str) -> str | None:
    """Why importing ``imported`` breaks privacy, or None. A private module
    (``server._embedded``) is for its own package; a private name (``_helper``) for the
    modules of its own subpackage, and for no other top-level module."""
    home = module if path.name == "__init__.py" else module.rpartition(".")[0]
    parts = imported.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if part.startswith("_") and not part.startswith("__"):
            owner = ".".join(parts[:i])
            owner_package = owner if owner in PACKAGES else owner.rpartition(".")[0]
            if owner == module:
                return None
            if owner_package == "analyzer_widgets" and owner not in PACKAGES:
                return f"{module} imports {imported}, a private name of {owner}"
            if not (home == owner_package or home.startswith(owner_package + ".")):
                return f"{module} imports {imported}, which {owner_package} keeps private"
    return None


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_no_module_imports_what_another_package_keeps_private(module: str, path: Path) -> None:
    problems = [p for imported in _imports(path, module) if (p := _private_violation(module, path, imported))]
    assert not problems, problems


def test_the_checker_sees_a_violation() -> None:
    # the check itself must be able to fail: a server module importing the runner would
    assert _layer(_unit("analyzer_widgets.runner")) > _layer(_unit("analyzer_widgets.server"))
    assert "analyzer_widgets.server._embedded" in _imports(PACKAGE / "server" / "__init__.py", "analyzer_widgets.server")
    assert _module_of("analyzer_widgets.config.setting") == "analyzer_widgets.config"
    runner = PACKAGE / "runner.py"
    assert _private_violation("analyzer_widgets.runner", runner, "analyzer_widgets.server._embedded.models_python")
    assert _private_violation("analyzer_widgets.cli", PACKAGE / "cli.py", "analyzer_widgets.config._UNSET")
    local = PACKAGE / "server" / "local.py"
    assert _private_violation("analyzer_widgets.server.local", local, "analyzer_widgets.server._embedded.x") is None


#: a function longer than this mixes jobs (STYLE.md: one job per function)
MAX_FUNCTION_LINES = 60


def test_no_function_is_longer_than_the_limit() -> None:
    long = []
    for module, path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                body = node.body
                has_doc = isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant)
                first = body[1] if has_doc and len(body) > 1 else body[0]
                lines = (node.end_lineno or node.lineno) - first.lineno + 1  # the code, not the docstring
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {lines} lines")
    assert not long, long
