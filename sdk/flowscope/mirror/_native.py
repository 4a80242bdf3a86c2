"""The analytics connection: the mirror loaded into DuckDB's own tables, with derived columns.

DuckDB reads its own columnar tables about twice as fast as the Parquet files (no
decoding, no ``base - delta + delta`` union per query), so the first analytics call after
opening a mirror, or after a sync, loads both tables into an in-memory database and later
calls read them. The files stay the mirror; this is a cache of one state (its
``sequence``), dropped when the state changes.

**Derived columns.** Some metrics do per-row work that no query needs to repeat: the error
signature of :mod:`flowscope.analytics.failures` (four regular expressions per failed
execution), the queue wait (interval arithmetic per row). :data:`DERIVED` computes such an
expression once, at load, as a hidden column (``_error_type``, ``_error_message``,
``_queue_wait``); :func:`compile_native` then reads that column
wherever a query holds the *same* SQLAlchemy expression (``ClauseElement.compare``:
structure and bound values). The expression is the builders' own, compiled by the same
dialect, so both engines still share one definition of each metric.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..analytics import failures
from ..analytics._base import seconds
from ..analytics._duckdb import DuckDBDialect, compile_for_duckdb
from ..models import EXECUTIONS
from . import _store

#: Per table: hidden column → the builders' expression it holds (over the bare table).
DERIVED: dict[str, dict[str, Callable[[], Any]]] = {
    "executions": {
        "_error_type": lambda: failures.error_type(EXECUTIONS.c.error),
        "_error_message": lambda: failures.normalised_message(EXECUTIONS.c.error),
        "_queue_wait": lambda: seconds(EXECUTIONS.c.started_at - EXECUTIONS.c.created_at),
    },
}


#: Columns no analytics call reads, left out of the native tables (the big JSON payloads:
#: 1M executions take 245 MB with them).
UNREAD: dict[str, tuple[str, ...]] = {"executions": ("parameters", "result")}


def load(root: Path, state: dict[str, Any]) -> Any:
    """A new in-memory DuckDB connection holding the state's tables and derived columns."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        for name in _store.MIRRORED:
            relation = _store.table_relation(con, root, state["tables"][name])
            derived = DERIVED.get(name, {})
            unread = UNREAD.get(name, ())
            if not derived and not unread:
                relation.create(name)
                continue
            # the source as a view of the table's name, so the builders' expressions
            # (over "executions") compile as they are; the table takes the name after
            relation.create_view(name)
            select, params = compile_for_duckdb(
                sa.select(
                    sa.literal_column(
                        f"{name}.* EXCLUDE ({', '.join(unread)})" if unread else f"{name}.*"
                    ),
                    *[build().label(column) for column, build in derived.items()],
                )
            )
            con.execute(f"CREATE TABLE _native_{name} AS {select}", params)
            con.execute(f"DROP VIEW {name}")
            con.execute(f"ALTER TABLE _native_{name} RENAME TO {name}")
    except BaseException:
        con.close()
        raise
    return con


def compile_native(stmt: sa.ClauseElement) -> tuple[str, list[Any]]:
    """``stmt`` as DuckDB SQL over the native tables (derived expressions read from their
    columns), and its bound values."""
    return compile_for_duckdb(stmt, _dialect())


@functools.cache
def _dialect() -> DuckDBDialect:
    derived = {
        f"{table}.{column}": build()
        for table, columns in DERIVED.items()
        for column, build in columns.items()
    }
    return DuckDBDialect(derived=derived)
