"""Where an analytics query is computed: the engines, and the rule that picks one.

One definition of each metric (a SQLAlchemy ``Select`` from the builders of this package),
run by one of these engines:

``"postgresql"``
    The whole query is pushed down and PostgreSQL computes it (:func:`._base.run`), with
    the daily rollups when the call asks for them.
``"pull"``
    The columns the query reads, of the rows its filter selects, are streamed from
    PostgreSQL as Arrow (binary COPY or ADBC: :mod:`flowscope.export._read`), both tables
    in one REPEATABLE READ snapshot, as the client's own login (row-level security applies
    exactly as to SQL); DuckDB computes the same ``Select`` in-process, compiled by
    :mod:`._duckdb`, vectorised on every core. PostgreSQL runs an ordered-set aggregate
    (``percentile_cont``) or an ``unnest`` of tags in one process; DuckDB does not.
``"auto"`` (the default)
    ``"pull"`` when the query has an ordered-set aggregate or an ``unnest`` in FROM (the
    work PostgreSQL cannot parallelise), reads no JSON column (moving JSON text per row
    costs more than it saves) and PostgreSQL's estimate of the executions the filter
    selects is at least :data:`PULL_MIN_ROWS`; otherwise ``"postgresql"``. Calls that ask
    for rollups stay on PostgreSQL. At 1M executions this pulls ``durations``, ``tags``,
    ``tag_pairs``, ``summary``, ``throughput``, ``concurrency``, ``queue_wait`` and
    ``compare`` (1.5-2.5x faster than PostgreSQL; ``benchmarks/engine_results.md``).

``frame.attrs["engine"]`` says which engine answered. Choose for every new client with
``FLOWSCOPE_ANALYTICS_ENGINE``, or per call with
:meth:`client.analytics.using("pull") <flowscope.analytics.Analytics.using>`. The engines
agree to the last few bits of a float (a sum in another order): percentiles are exact
on both (``quantile_cont`` interpolates as ``percentile_cont`` does).

Example:
    >>> import pandas as pd
    >>> frame = client.analytics.using("pull").durations(by="workflow")
    >>> frame.attrs["engine"]
    'pull'
    >>> exact = client.analytics.using("postgresql").durations(by="workflow")
    >>> pd.testing.assert_frame_equal(frame, exact, check_exact=False, rtol=1e-9)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from ..errors import ConfigurationError, FlowscopeError, ValidationError
from ..models import EXECUTIONS, WORKFLOWS

if TYPE_CHECKING:
    import pandas as pd

    from .._session import Session
    from ._base import Query

__all__ = ["ENGINES", "PULL_MIN_ROWS", "Engine", "choose", "pull_run"]

Engine = Literal["auto", "postgresql", "pull"]
ENGINES: tuple[str, ...] = ("auto", "postgresql", "pull")
#: ``engine="auto"`` pulls a query that PostgreSQL cannot parallelise from this many
#: selected executions on (below it a round trip of the columns costs more than it saves).
PULL_MIN_ROWS = 200_000
_TABLES = {"executions": EXECUTIONS, "workflows": WORKFLOWS}


def check(engine: Any) -> Engine:
    """Validate an engine name.

    Example:
        >>> check("duckdb")
        Traceback (most recent call last):
        ...
        flowscope.errors.ValidationError: unknown analytics engine 'duckdb'; choose one of auto, postgresql, pull
    """
    if engine not in ENGINES:
        raise ValidationError(
            f"unknown analytics engine {engine!r}; choose one of {', '.join(ENGINES)}"
        )
    return engine


def needed_columns(stmt: Any) -> dict[str, list[str]]:
    """The columns of ``executions`` and ``workflows`` a query reads, by table; a table it
    does not read is left out.

    Example:
        >>> import sqlalchemy as sa
        >>> from flowscope.models import EXECUTIONS as E
        >>> needed_columns(sa.select(sa.func.count()).where(E.c.status == "failed"))
        {'executions': ['status']}
    """
    from sqlalchemy.sql import visitors

    found: dict[str, set[str]] = {}
    for element in visitors.iterate(stmt):
        for name, known in _TABLES.items():
            if element is known:  # in FROM: read, even when no column of it is named
                found.setdefault(name, set())
        table = getattr(element, "table", None)
        if not isinstance(element, sa.ColumnClause) or table is None:
            continue
        base = getattr(table, "element", table)  # an alias of a table reads the table
        for name, known in _TABLES.items():
            if base is known and element.name in known.c:
                found.setdefault(name, set()).add(element.name)
    return {name: sorted(cols) or ["id"] for name, cols in found.items()}


def _is_heavy(stmt: Any) -> bool:
    """An ordered-set aggregate (``percentile_cont``) or an ``unnest`` in FROM (tags, the
    events of a run): work PostgreSQL runs in one process, sorting or exploding every row."""
    from sqlalchemy.sql import visitors
    from sqlalchemy.sql.elements import WithinGroup
    from sqlalchemy.sql.selectable import Lateral, TableValuedAlias

    for element in visitors.iterate(stmt):
        if isinstance(element, WithinGroup | Lateral):
            return True
        if (
            isinstance(element, TableValuedAlias)
            and getattr(element.element, "name", "") == "unnest"
        ):
            return True
    return False


def _reads_json(stmt: Any) -> bool:
    """Whether the query reads a JSON column (an error, metadata): its text per row costs
    more to move than the server's aggregate saves (``failures()`` measured 1.4x slower)."""
    needed = needed_columns(stmt)
    return any(
        isinstance(_TABLES[name].c[column].type, sa.JSON)
        for name, columns in needed.items()
        for column in columns
    )


def _estimate(session: Session, query: Query) -> float:
    """PostgreSQL's estimate of the executions the query's filter selects (0: unknown)."""
    from ..export._read import _estimate_select_rows
    from ..filters import ExecutionFilter

    scope = query.scope if query.scope is not None else ExecutionFilter()
    return _estimate_select_rows(session, sa.select(EXECUTIONS.c.id).where(scope.clause())) or 0


def choose(session: Session, query: Query, engine: Engine, rollups: bool) -> str:
    """The engine that runs ``query`` (``"postgresql"`` or ``"pull"``) for ``engine``."""
    if engine != "auto":
        return engine
    if rollups or not _is_heavy(query.select) or _reads_json(query.select):
        return "postgresql"
    try:
        import duckdb  # noqa: F401
    except ImportError:
        return "postgresql"
    return "pull" if _estimate(session, query) >= PULL_MIN_ROWS else "postgresql"


def pull_run(session: Session, query: Query) -> pd.DataFrame:
    """Run ``query`` on the pull engine (see the module) and return its typed frame."""
    from .. import _changes, _provenance
    from ..export._read import _plan, _stream_plan
    from ..filters import ExecutionFilter, WorkflowFilter
    from ._duckdb import compile_for_duckdb

    try:
        import duckdb
    except ImportError as exc:  # pragma: no cover - duckdb is a dependency
        raise ConfigurationError("the pull engine needs DuckDB: pip install duckdb") from exc
    import pyarrow as pa

    every = {
        "executions": query.scope or ExecutionFilter(include_deleted_workflows=True),
        "workflows": WorkflowFilter(include_deleted=True),
    }
    sql, params = compile_for_duckdb(query.select)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        with _changes.snapshot(session) as conn:
            shared = _changes.export_snapshot(conn)
            for name, columns in needed_columns(query.select).items():
                if "__row" in sql:  # an unnest joined back on the table's key (._duckdb)
                    columns = sorted({*columns, "id"})
                plan = _plan(name, every[name], columns=columns)
                batches = _stream_plan(session, plan, batch_size=None, conn=conn, snapshot=shared)
                table = pa.Table.from_batches(list(batches), schema=plan.schema)
                con.register(name, _plain(table))
            provenance = _provenance.of_transaction(conn)
        frame = duckdb_frame(con, query, (sql, params), "the pull engine's")
    finally:
        con.close()
    frame.attrs.update(engine="pull", provenance=provenance)
    return frame


def duckdb_frame(con: Any, query: Query, compiled: tuple[str, list[Any]], who: str) -> pd.DataFrame:
    """Run a query compiled for DuckDB on ``con`` and return its typed frame; a DuckDB
    error is a :class:`FlowscopeError` naming ``who`` ran it."""
    import duckdb

    from . import _base

    try:
        result = con.execute(*compiled)
        names = [d[0] for d in result.description]
        rows = result.fetchall()
    except duckdb.Error as exc:
        raise FlowscopeError(f"{who} DuckDB query failed: {exc}") from exc
    return _base.finish(query, names, rows)


def _plain(table: Any) -> Any:
    """JSON extension columns as their JSON text (DuckDB's JSON functions read text)."""
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        if isinstance(field.type, pa.BaseExtensionType):
            column = table.column(i)
            storage = pa.chunked_array(
                [chunk.storage for chunk in column.chunks], type=field.type.storage_type
            )
            table = table.set_column(i, field.name, storage)
    return table
