"""Layers point down: nothing below the client imports the client, the CLI or the package root.

The upper layer is ``flowscope/__init__``, ``_client``, ``cli``, ``testing`` and ``demo`` (which works
through a client, like a user's script). Every other module (resources, analytics,
export, ingest, retention, maintenance, the session and database layers, models)
is a lower one; an import of an upper module from a lower one, at the top of a module,
inside a function or under ``TYPE_CHECKING``, fails this test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import flowscope

PACKAGE = Path(flowscope.__file__).resolve().parent
UPPER = {"flowscope", "flowscope._client", "flowscope.cli", "flowscope.demo", "flowscope.testing"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    base = PACKAGE.parent.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _imports(path: Path, name: str) -> set[str]:
    """Every module a file imports, resolved to absolute names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                # "from . import _client" imports a module; "from .. import connect" a name
                found.add(sub if _is_module(sub) else module)
    return found


def test_lower_layers_import_nothing_above_them() -> None:
    offences = []
    checked = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        if name in UPPER or name.startswith("flowscope.cli."):  # the CLI package is upper
            continue
        checked += 1
        for imported in sorted(_imports(path, name)):
            if imported in UPPER or imported.startswith("flowscope.cli."):
                offences.append(f"{name} imports {imported}")
    assert checked >= 25
    assert offences == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The walker resolves relative imports (so the test above can fail)."""
    sample = tmp_path / "x.py"
    sample.write_text(
        "def f():\n    from .._client import Client\n    from .. import cli, connect\n"
        "from . import _base\n"
    )
    found = _imports(sample, "flowscope.analytics.x")
    assert {"flowscope._client", "flowscope.cli", "flowscope"} <= found
    assert "flowscope.analytics._base" in found
