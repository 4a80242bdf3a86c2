"""The public surface: a sorted __all__, every name importable, one exception tree."""

from __future__ import annotations

import inspect
import subprocess
import sys

import flowscope
from flowscope import errors


def test_all_is_sorted_and_complete() -> None:
    assert flowscope.__all__ == sorted(flowscope.__all__)
    for name in flowscope.__all__:
        assert hasattr(flowscope, name), name
    public = {n for n in vars(flowscope) if not n.startswith("_") and n not in {"annotations"}}
    modules = {n for n in public if inspect.ismodule(getattr(flowscope, n))}
    assert public - modules <= set(flowscope.__all__) | {"annotations"}


def test_every_error_is_a_flowscope_error_exported_at_top_level() -> None:
    classes = [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__
    ]
    assert classes
    for cls in classes:
        if issubclass(cls, Warning):
            continue
        assert issubclass(cls, flowscope.FlowscopeError), cls
        assert getattr(flowscope, cls.__name__) is cls


def test_import_is_quick_and_light() -> None:
    code = "import sys, flowscope; print(sorted(m for m in ('pandas', 'pyarrow', 'alembic') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
