"""The public surface: a sorted __all__, every name importable, one exception tree."""

from __future__ import annotations

import inspect
import json
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


#: What ``import flowscope`` must leave for the calls that need it (each loads in seconds).
HEAVY = (
    *("pandas", "pyarrow", "numpy", "alembic", "duckdb", "polars", "adbc_driver_postgresql"),
    *("sqlalchemy", "sqlmodel", "pydantic", "psycopg"),  # loaded by the first call, not import
)
_IMPORT = f"""
import json, sys, time
start = time.process_time()
import flowscope
took = time.process_time() - start
print(json.dumps({{"cpu_seconds": took, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def test_import_is_quick_and_light() -> None:
    """``import flowscope`` loads none of the heavy modules, not even SQLAlchemy or pydantic
    (the exception tree only: about 10 ms), and takes little CPU time (CPU time, not wall
    time, so a busy machine does not fail it). The best of three fresh interpreters: the
    first may compile bytecode."""
    runs = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", _IMPORT], capture_output=True, text=True, check=True
        )
        runs.append(json.loads(out.stdout))
    assert all(r["heavy"] == [] for r in runs), runs
    assert min(r["cpu_seconds"] for r in runs) < 5, runs
