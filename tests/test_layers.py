"""Layers only point down: models <- data <- engine <- tasks <- cli.

Every ``import`` in ``src/alexnet`` (at module level and inside functions, relative and
absolute) is read with ``ast``; one that points up a layer fails the test with file:line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "alexnet"
# Rank of each layer; a module may import its own rank or below. The helpers at the
# bottom (errors, checkpoint, outputs, extras) may be imported by anyone; __main__, api and cli
# are the top. The package itself ("") imports only models when it is imported, so a
# name taken from it (``from .. import __version__``) sits with models, except the
# names it hands out from api on first use.
LAYERS = {"errors": 0, "checkpoint": 0, "outputs": 0, "extras": 0,
          "models": 1, "": 1, "data": 2, "engine": 3, "tasks": 4,
          "__main__": 5, "api": 5, "cli": 5}
TOP = 5  # the package's own __init__ may import anything (it hands out api's names lazily)
LAZY = ("Classifier", "Prediction", "TrainConfig", "fit", "load")  # alexnet.__init__._API


def layer(module: str) -> int | None:
    """The rank of a dotted module name inside the package, or None outside it."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    top = parts[1] if len(parts) > 1 else ""
    assert top in LAYERS, f"{module}: a new top-level module; give it a layer in LAYERS"
    return LAYERS[top]


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(tree: ast.AST, module: str, is_package: bool, src: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in ``tree``.

    ``from pkg import x`` names the module ``pkg.x`` where there is one, else ``pkg`` itself.
    """
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found += [(node.lineno, resolve(base, alias.name, src)) for alias in node.names]
    return found


def resolve(base: str, name: str, src: Path) -> str:
    where = src.joinpath(*base.split("."), name)
    if where.with_suffix(".py").is_file() or where.is_dir():
        return f"{base}.{name}"
    if base == PACKAGE and name in LAZY:
        return f"{PACKAGE}.api"  # the package's lazy attributes come from api
    return base


def upward_imports(src: Path = SRC) -> list[str]:
    """``file:line: a imports b`` for every import from a higher layer."""
    bad = []
    for path in sorted((src / PACKAGE).rglob("*.py")):
        module = module_name(path, src)
        tree = ast.parse(path.read_text(), str(path))
        for line, target in imported(tree, module, path.name == "__init__.py", src):
            theirs = layer(target)
            if theirs is not None and theirs > (TOP if module == PACKAGE else layer(module)):
                bad.append(f"{path.relative_to(src)}:{line}: {module} imports {target}")
    return bad


def test_layers_only_point_down():
    bad = upward_imports()
    assert not bad, "imports up a layer (models <- data <- engine <- tasks <- cli):\n" + "\n".join(bad)


@pytest.mark.parametrize("source, expected", [
    ("from ..engine import loop\n", "imports alexnet.engine.loop"),
    ("def f():\n    from alexnet.tasks.predict import predict\n", "imports alexnet.tasks.predict"),
    ("import alexnet.cli\n", "imports alexnet.cli"),
    ("from .. import api\n", "imports alexnet.api"),
])
def test_an_upward_import_is_named(tmp_path, source, expected):
    # The package's files, empty, plus a data-layer module with one bad line: the check names
    # that file and line, and nothing else.
    for path in (SRC / PACKAGE).rglob("*.py"):
        copy = tmp_path / path.relative_to(SRC)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.touch()
    (tmp_path / PACKAGE / "data" / "bad.py").write_text("import os\nfrom . import images\n" + source)
    bad = upward_imports(tmp_path)
    assert len(bad) == 1 and bad[0].startswith(f"{PACKAGE}/data/bad.py:") and bad[0].endswith(expected), bad
