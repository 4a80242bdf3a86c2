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

**Dictionary columns.** The grouping keys that are plain string columns of ``executions``
(``workflow_id``, ``owner``, ``organization_id``, ``status``: :data:`flowscope.analytics._base.KEYS`)
and the columns their foreign keys point to in the mirror (``workflows.id``) are loaded as
DuckDB ``ENUM`` types, one per domain, so a GROUP BY or a join on them compares small
integers instead of strings (status per workflow at 1M: 0.14 → 0.05 s). The values of each
type are the distinct values of its columns, in DuckDB's string order, so ORDER BY, ``min``
and ``max`` answer as they do on the strings; a comparison with a value outside the type
(a filter naming an unknown id) is false, as it is on the strings, and results read as
``str``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..analytics import failures
from ..analytics._base import KEYS, seconds
from ..analytics._duckdb import DuckDBDialect, compile_for_duckdb
from ..models import EXECUTIONS, TABLES
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


def dictionary_domains() -> dict[str, list[tuple[str, str]]]:
    """Each ENUM domain's name → its ``(table, column)`` members: the plain string grouping
    keys of ``executions``, each with the mirrored column its foreign key names.

    Example:
        >>> dictionary_domains()["workflows_id"]
        [('executions', 'workflow_id'), ('workflows', 'id')]
    """
    domains: dict[str, list[tuple[str, str]]] = {}
    for key in KEYS:
        column = EXECUTIONS.c.get(key)
        if column is None or not isinstance(getattr(column.type, "impl", column.type), sa.String):
            continue
        members = [(EXECUTIONS.name, column.name)]
        domain = column.name
        for fk in column.foreign_keys:
            domain = fk.target_fullname.replace(".", "_")
            if fk.column.table.name in _store.MIRRORED:
                members.append((fk.column.table.name, fk.column.name))
        domains[domain] = members
    return domains


def load(root: Path, state: dict[str, Any]) -> Any:
    """A new in-memory DuckDB connection holding the state's tables, their dictionary
    columns as ENUMs and the derived columns."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        # flowscope's own bars are tqdm's; in Jupyter without ipywidgets DuckDB refuses this
        # SET (it shows no bar there anyway)
        with contextlib.suppress(duckdb.Error):
            con.execute("SET enable_progress_bar = false")
        enums = _create_enums(con, root, state)
        for name in _store.MIRRORED:
            source = _store.table_relation(con, root, state["tables"][name])
            _write_native(con, name, source, enums[name])
        con.execute("CREATE TABLE _flowscope_enums (tbl VARCHAR, col VARCHAR, enum VARCHAR)")
        rows = [(t, c, e) for t, pairs in enums.items() for c, e in pairs]
        if rows:
            con.executemany("INSERT INTO _flowscope_enums VALUES (?, ?, ?)", rows)
    except BaseException:
        con.close()
        raise
    return con


#: A refresh replaces rows by deleting and inserting them, and DuckDB keeps a deleted row's
#: space until the table is rebuilt (a 1M-row table: 116 MiB, 291 MiB after six refreshes of
#: a quarter of it): once refreshes have replaced this share of the rows since the load, the
#: next sync loads afresh, so the tables stay within about 1.25x the memory of a fresh load.
MAX_REPLACED = 0.25


def refresh(
    con: Any, root: Path, old: dict[str, Any], new: dict[str, Any], replaced: int = 0
) -> int | None:
    """Bring the native tables of state ``old`` to state ``new`` in place and return the
    rows replaced since the load (``replaced``, the count before, plus this refresh's);
    None (nothing done) when a table's base changed (a compaction or a full sync) or the
    replaced rows would pass :data:`MAX_REPLACED` of the tables: load afresh then.

    With the same base, a table of state N is ``base - ids(delta_N + deleted_N) + delta_N``,
    and the ids of ``delta + deleted`` only grow from one state to the next (a row of the
    delta that a sync touches is in its fresh rows or among the deleted). So deleting the
    ids of the new delta and deleted files and inserting the new delta gives state N+k:
    the cost follows the delta, not the table (at 10M: a second instead of a reload of
    several). In one transaction: on any error (a value the ENUM types lack raises a
    conversion error) the tables are as they were, and the caller loads afresh.

    Raises:
        duckdb.Error: the refresh failed and was rolled back.
    """
    if any(old["tables"][n]["base"] != new["tables"][n]["base"] for n in _store.MIRRORED):
        return None
    entries = [new["tables"][n] for n in _store.MIRRORED]
    replaced += sum(int(e.get("delta_rows", 0)) + int(e.get("deleted_rows", 0)) for e in entries)
    if replaced > MAX_REPLACED * sum(int(e["rows"]) for e in entries):
        return None
    casts: dict[str, list[tuple[str, str]]] = {name: [] for name in _store.MIRRORED}
    for table, column, enum in con.execute("SELECT * FROM _flowscope_enums").fetchall():
        casts[table].append((column, enum))
    con.execute("BEGIN TRANSACTION")
    try:
        for name in _store.MIRRORED:
            entry = new["tables"][name]
            parts = [root / f for f in (entry.get("delta"), entry.get("deleted")) if f]
            if not parts:
                continue
            ids = con.read_parquet(str(parts[0])).select("id")
            if len(parts) > 1:
                ids = ids.union(con.read_parquet(str(parts[1])).select("id"))
            ids.create_view("_changed")
            con.execute(f"DELETE FROM {name} WHERE id IN (SELECT id FROM _changed)")  # noqa: S608
            con.execute("DROP VIEW _changed")
            if entry.get("delta"):
                delta = con.read_parquet(str(root / entry["delta"]))
                _write_native(con, name, delta, casts[name], insert=True)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return replaced


def _write_native(
    con: Any, name: str, source: Any, casts: list[tuple[str, str]], *, insert: bool = False
) -> None:
    """Create the native table ``name`` from the relation ``source`` (or, ``insert``, add
    its rows to the existing one), through :func:`_table_select`. The source is a view of
    the table's own name while the SELECT runs, so the builders' expressions (over
    ``executions``) compile as they are; the table carries a temporary name meanwhile."""
    if insert:
        con.execute(f"ALTER TABLE {name} RENAME TO _native_{name}")
    source.create_view(name)
    select, params = _table_select(name, casts)
    if insert:
        con.execute(f"INSERT INTO _native_{name} BY NAME {select}", params)
    else:
        con.execute(f"CREATE TABLE _native_{name} AS {select}", params)
    con.execute(f"DROP VIEW {name}")
    con.execute(f"ALTER TABLE _native_{name} RENAME TO {name}")


def _table_select(name: str, casts: list[tuple[str, str]]) -> tuple[str, list[Any]]:
    """The native table's SELECT over a source named ``name``: its columns but the unread
    ones, the dictionary columns cast to their ENUMs, and the derived columns."""
    derived = DERIVED.get(name, {})
    unread = UNREAD.get(name, ())
    star = f"{name}.*"
    if unread:
        star += f" EXCLUDE ({', '.join(unread)})"
    if casts:
        star += f" REPLACE ({', '.join(f'CAST({c} AS {e}) AS {c}' for c, e in casts)})"
    return compile_for_duckdb(
        sa.select(
            sa.literal_column(star),
            *[build().label(column) for column, build in derived.items()],
        ).select_from(TABLES[name])
    )


def _create_enums(con: Any, root: Path, state: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """Create one ENUM type per dictionary domain (its members' distinct values, sorted);
    returns, per table, the ``(column, type)`` pairs to cast. A domain with no value stays
    a string.

    The values are read from the files (base and delta) in one pass per table, without
    subtracting the replaced and deleted rows: a superset of what the table holds (a value
    no row has is never seen by a query), for a third of the load at 10M."""
    domains = dictionary_domains()
    wanted: dict[str, list[str]] = {}
    for members in domains.values():
        for table, column in members:
            wanted.setdefault(table, []).append(column)
    for table, columns in wanted.items():
        entry = state["tables"][table]
        files = [str(root / f) for f in [*entry["base"], entry.get("delta")] if f]
        con.read_parquet(files).aggregate(
            ", ".join(f"list(DISTINCT {c}) AS {c}" for c in columns)
        ).create(f"_values_{table}")
    casts: dict[str, list[tuple[str, str]]] = {name: [] for name in _store.MIRRORED}
    for domain, members in domains.items():
        enum = f"_enum_{domain}"
        # identifiers of the models' tables and columns only; no value is spelled in SQL
        values = " UNION ".join(f"SELECT unnest({c}) AS v FROM _values_{t}" for t, c in members)  # noqa: S608
        con.execute(
            f"CREATE TYPE {enum} AS ENUM"  # noqa: S608
            f" (SELECT v FROM ({values}) WHERE v IS NOT NULL ORDER BY v)"
        )
        if not con.execute(f"SELECT len(enum_range(NULL::{enum}))").fetchall()[0][0]:
            con.execute(f"DROP TYPE {enum}")
            continue
        for table, column in members:
            casts[table].append((column, enum))
    for table in wanted:
        con.execute(f"DROP TABLE _values_{table}")
    return casts


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
