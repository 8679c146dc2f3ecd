"""Every import in the package resolves: each module imports, and every ``from X import Y`` of
the package's own modules -- the lazy ones inside functions too, which importing a module never
runs -- names a module that exists and a name it defines (``calling/output.py`` once imported
``.convert._writer``, which exists only under ``regions/``: a crash that waited for
``--overwrite``)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import nemo_dask

PACKAGE = Path(nemo_dask.__file__).parent
MODULES = sorted(m.name for m in pkgutil.walk_packages([str(PACKAGE)], "nemo_dask.")
                 if not m.name.endswith(".__main__"))  # (that one runs the CLI)


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports_in(source: str, module: str, is_package: bool, file: str
                ) -> list[tuple[str, int, str, str]]:
    """(file, line, module, name) of every ``from <nemo_dask module> import name`` in
    ``source``, the code of ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source, file)):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            target = f"{base}.{node.module}" if node.module else base
        elif node.module and node.module.split(".")[0] == "nemo_dask":
            target = node.module
        else:
            continue
        found.extend((file, node.lineno, target, a.name) for a in node.names)
    return found


def _own_imports() -> list[tuple[str, int, str, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += _imports_in(path.read_text(), _module_name(path), path.name == "__init__.py",
                             str(path.relative_to(PACKAGE.parent)))
    return found


@pytest.mark.parametrize("name", MODULES)
def test_every_module_imports(name):
    importlib.import_module(name)


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def test_every_own_import_resolves():
    unresolved = []
    for file, line, target, name in _own_imports():
        if not _exists(target):
            unresolved.append(f"{file}:{line}: no module {target}")
            continue
        module = importlib.import_module(target)
        if name != "*" and not hasattr(module, name) and not _exists(f"{target}.{name}"):
            unresolved.append(f"{file}:{line}: {target} has no {name}")
    assert unresolved == []


def test_the_resolver_sees_a_wrong_lazy_import():
    """The check above catches the old ``from .convert._writer import ...`` of calling/output.py
    (a function-local import, which importing the module never runs)."""
    source = "def f():\n    from .convert._writer import _is_store_dir\n"
    found = _imports_in(source, "nemo_dask.calling.output", False, "output.py")
    assert found == [("output.py", 2, "nemo_dask.calling.convert._writer", "_is_store_dir")]
    assert not _exists("nemo_dask.calling.convert._writer")


def test_every_public_name_resolves_and_the_api_is_complete() -> None:
    """``nemo_dask.__all__`` is the lazy export table (one list, not two to keep in step), and
    each name in it imports; the public entry points of each kind of work are in it."""
    for name in nemo_dask.__all__:
        assert getattr(nemo_dask, name) is not None, name
    for name in ("call_hits", "convert_intervals", "write_tracks", "WorkersUnavailableError",
                 "export"):
        assert name in nemo_dask.__all__, name
