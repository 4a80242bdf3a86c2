"""Reads: a table (filtered) or a query, streamed into Arrow with the explicit schema.

**One read signature.** Every read of a table takes the arguments of :func:`read_options`
(``filter``, ``columns``, ``flatten``, ``decimal``, ``batch_size`` and the filter's fields
as keywords), written once there: ``client.<resource>.to_arrow`` / ``to_pandas`` /
``to_polars`` / ``iter_batches`` are declared with :func:`reads`, which gives them that
signature (for type checkers, ``help()`` and the error boundary alike), and
``client.export.parquet`` passes its options through it. The public surface is the
resource methods; :func:`read_arrow`, :func:`read_pandas` and :func:`iter_batches`
(``flowscope.read_arrow(client, "executions", ...)``) are thin aliases of them for code
that holds a table's name.

How rows travel: one ``COPY (SELECT ...) TO STDOUT (FORMAT binary)`` in the client's scope
(:mod:`._copy`), or ADBC's reader when it is installed (:mod:`._adbc`); memory stays
constant whatever the table size (one batch in flight, one being written).

Example:
    >>> read_options(status="failed", columns=["id"]).filter_fields
    {'status': 'failed'}
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import sys
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa

from .. import _db
from .._boundary import boundary
from .._frames import pandas_dtype
from .._session import session_of
from ..errors import FlowscopeError, ValidationError
from ..filters import (
    AuditFilter,
    ExecutionFilter,
    OrganizationFilter,
    UserFilter,
    WorkflowFilter,
    coerce_filter,
)
from . import _adbc, _copy
from ._schema import (
    OID_TYPES,
    TABLES,
    Decimal,
    _column,
    _Plan,
    flatten_columns,
    table,
    table_columns,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from .._session import Session

__all__ = [
    "ReadOptions",
    "iter_batches",
    "query_arrow",
    "read_arrow",
    "read_options",
    "read_pandas",
    "reads",
    "to_pandas",
]

_DEFAULT_BATCH = 32_768
# Rows per batch of the COPY decoder when the caller leaves the size to flowscope (Parquet
# export): 1M executions peaked at 240 MB RSS against 280 MB with 32,768, at the same speed.
_COPY_BATCH = 16_384
_FILTERS: dict[str, type[Any]] = {
    "workflows": WorkflowFilter,
    "executions": ExecutionFilter,
    "users": UserFilter,
    "organizations": OrganizationFilter,
    "audit_log": AuditFilter,
}


# -- the one read signature ------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """The arguments of a read, as :func:`read_options` takes them (see there)."""

    filter: Any
    columns: Sequence[str] | None
    flatten: Sequence[str] | Mapping[str, Any] | None
    decimal: Decimal
    batch_size: int | None
    filter_fields: Mapping[str, Any]

    def plan(self, name: str, **extra: Any) -> _Plan:
        """The SELECT and the Arrow schema of this read of ``name``."""
        return _plan(
            name,
            self.filter,
            columns=self.columns,
            flatten=self.flatten,
            decimal=self.decimal,
            filter_fields=self.filter_fields,
            **extra,
        )

    def batches(self, session: Session, name: str) -> Iterator[pa.RecordBatch]:
        return _stream_plan(session, self.plan(name), batch_size=self.batch_size)

    def arrow(self, session: Session, name: str) -> pa.Table:
        import pyarrow as pa

        plan = self.plan(name)
        batches = list(_stream_plan(session, plan, batch_size=self.batch_size))
        return pa.Table.from_batches(batches, schema=plan.schema)


def read_options(
    filter: Any = None,
    /,
    *,
    columns: Sequence[str] | None = None,
    flatten: Sequence[str] | Mapping[str, Any] | None = None,
    decimal: Decimal = "decimal128",
    batch_size: int | None = _DEFAULT_BATCH,
    **filter_fields: Any,
) -> ReadOptions:
    """The arguments every read of a table takes, collected (this is their one signature).

    * ``filter``: an :class:`~flowscope.ExecutionFilter` / :class:`~flowscope.WorkflowFilter`
      / ... of the table, or its fields as keywords (``status="failed"``, ``since=...``).
    * ``columns``: the columns to read (default: all; ``users.password_hash`` never).
    * ``flatten`` pulls JSON keys into their own columns: a list (``["parameters.lr"]``,
      strings) or a mapping of key → type (``{"parameters.lr": "float64"}``; types
      ``string``, ``float64``, ``int64``, ``bool``, ``json``). A value of another JSON
      type becomes NULL.
    * ``decimal="float64"`` reads NUMERIC as float64 (default: exact ``decimal128``).
    * ``batch_size``: rows per batch (default 32,768; ``iter_batches`` yields batches of it;
      ``None``: the transport's own batches, as the Parquet export reads).

    Example:
        >>> read_options(columns=["id"], decimal="float64").decimal
        'float64'
    """
    return ReadOptions(filter, columns, flatten, decimal, batch_size, filter_fields)


_P = ParamSpec("_P")
_S = TypeVar("_S")
_R = TypeVar("_R")


def _takes(
    signature: Callable[_P, ReadOptions],
) -> Callable[[Callable[[_S, ReadOptions], _R]], Callable[Concatenate[_S, _P], _R]]:
    """A decorator: a method of ``(self, options)`` becomes one of ``signature``'s arguments."""

    def decorate(method: Callable[[_S, ReadOptions], _R]) -> Callable[Concatenate[_S, _P], _R]:
        @functools.wraps(method)
        def read(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            return method(self, signature(*args, **kwargs))

        own = inspect.signature(method)
        this = own.parameters["self"].replace(kind=inspect.Parameter.POSITIONAL_ONLY)
        parameters = [this, *inspect.signature(signature).parameters.values()]
        read.__signature__ = own.replace(parameters=parameters)  # type: ignore[attr-defined]
        return read

    return decorate


#: Declares a read: ``@reads def to_arrow(self, options: ReadOptions) -> pa.Table`` is
#: called as ``to_arrow(filter=None, /, *, columns=..., ..., **filter_fields)``.
reads = _takes(read_options)


# -- plans ------------------------------------------------------------------------------------
def _where(name: str, filter: Any, filter_fields: Mapping[str, Any]) -> Any:
    cls = _FILTERS.get(name)
    if cls is None:
        if filter is not None and hasattr(filter, "clause"):
            return filter.clause()
        if filter is not None or filter_fields:
            raise ValidationError(f"{name} cannot be filtered here (export all of it)")
        return sa.true()
    return coerce_filter(cls, filter, **filter_fields).clause()


def _plan(
    name: str,
    filter: Any = None,
    *,
    columns: Sequence[str] | None = None,
    flatten: Sequence[str] | Mapping[str, Any] | None = None,
    decimal: Decimal = "decimal128",
    extra_where: Any = None,
    extra: Sequence[tuple[str, Any, Any]] = (),
    filter_fields: Mapping[str, Any] | None = None,
) -> _Plan:
    t = table(name)
    cols = table_columns(name, columns, decimal=decimal)
    cols += flatten_columns(t, flatten, {c.name for c in cols})
    for label, expr, sa_type in extra:
        cols.append(_column(label, expr, sa_type, decimal=decimal))
    where = _where(name, filter, filter_fields or {})
    stmt = sa.select(*(c.expr.label(c.name) for c in cols)).select_from(t).where(where)
    if extra_where is not None:
        stmt = stmt.where(extra_where)
    return _Plan(stmt, tuple(cols), name)


def _plan_query(session: Session, query: sa.Select[Any], *, decimal: Decimal) -> _Plan:
    """A plan for any SELECT: column types come from the server's result description."""
    sub = query.subquery("q")
    # The server names the columns: a query of text() columns (``select(text("id"))``)
    # has none SQLAlchemy knows of, and ``SELECT q.*`` still returns them all.
    with session.read_transaction() as conn:
        every: sa.Select[Any] = sa.select(sa.literal_column("q.*")).select_from(sub)
        result = conn.execute(every.limit(0))
        description = result.cursor.description if result.cursor is not None else None
        result.close()
    assert description is not None
    names = [str(d[0]) for d in description]
    if not names:
        raise ValidationError("the query returns no columns: select at least one")
    if len(set(names)) != len(names):
        raise ValidationError(f"the query's column names repeat: {names}")
    cols = []
    for name, desc_tuple in zip(names, description, strict=True):
        desc: Any = desc_tuple  # psycopg's Column: name, type_code, precision, scale
        column = sub.c[name] if name in sub.c else sa.column(name)
        sa_type = OID_TYPES.get(desc.type_code)
        expr: Any = column
        if desc.type_code == 1700:
            precision, scale = desc.precision, desc.scale
            sa_type = sa.Numeric(precision, scale) if precision else sa.Numeric()
        elif sa_type is None:  # anything else (uuid, interval, ...) travels as its text form
            sa_type, expr = sa.Text(), sa.cast(column, sa.Text)
        cols.append(_column(column.name, expr, sa_type, decimal=decimal))
    stmt = sa.select(*(c.expr.label(c.name) for c in cols)).select_from(sub)
    return _Plan(stmt, tuple(cols), None)


# -- streaming ----------------------------------------------------------------------------
def _stream_plan(
    session: Session,
    plan: _Plan,
    *,
    batch_size: int | None = _DEFAULT_BATCH,
    conn: sa.Connection | None = None,
    snapshot: str | None = None,
) -> Generator[pa.RecordBatch, None, None]:
    """The plan's rows as RecordBatches of at most ``batch_size`` rows; ``None``: each
    transport's own size (ADBC's 4 MB batches as they come, the COPY decoder's
    :data:`_COPY_BATCH` rows), which the Parquet export uses.

    ``conn``: read in that open transaction (the COPY decoder runs on it); with
    ``snapshot`` (its ``pg_export_snapshot()``), ADBC may read instead, in a transaction
    that imports the snapshot: the same rows, at ADBC's speed."""
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValidationError(f"batch_size must be a positive integer, got {batch_size!r}")
    from .._session import READ

    session.require(READ)
    adbc = _adbc._adbc_query(session, plan) if conn is None or snapshot is not None else None
    if adbc is not None:
        yield from _adbc._adbc_batches(
            session, plan, adbc, batch_size=batch_size or sys.maxsize, snapshot=snapshot
        )
        return
    decode = _copy._Decoder(plan)
    size = batch_size or _COPY_BATCH
    # closed here, at once, when this generator is closed or fails: a COPY left suspended
    # holds its connection's lock, and a roll-back of that connection (the caller's
    # transaction, or the garbage collector's) would wait for it forever
    copying = _copy._copy_batches(session, plan, batch_size=size, conn=conn)
    with _db.translating(session.url), contextlib.closing(copying):
        for chunks in copying:
            yield decode(chunks)


def _estimate_select_rows(session: Session, select: sa.Select[Any]) -> int | None:
    """The planner's estimate of the rows ``select`` returns (``EXPLAIN``: nothing is run),
    for a progress bar's total and ETA, filters included; None when it cannot tell."""
    try:
        with session.read_transaction() as conn:
            compiled = select.compile(
                dialect=conn.dialect, compile_kwargs={"render_postcompile": True}
            )
            explained: Any = conn.exec_driver_sql(
                "EXPLAIN (FORMAT JSON) " + compiled.string, compiled.params
            ).scalar()
        rows = explained[0]["Plan"]["Plan Rows"]
    except (FlowscopeError, sa.exc.SQLAlchemyError, LookupError, TypeError):
        return None
    return int(rows) if isinstance(rows, int | float) and rows > 0 else None


def _estimate_rows(session: Session, name: str) -> int | None:
    """The planner's row count of ``name`` (for a progress bar), or None."""
    if name not in TABLES:
        return None
    try:
        rows = session.sql(
            "SELECT reltuples::bigint AS n FROM pg_class WHERE oid = to_regclass(:t)",
            {"t": name},
        )
    except FlowscopeError:
        return None
    n = rows[0]["n"] if rows else None
    return int(n) if n is not None and n > 0 else None


def query_arrow(
    client: Any,
    statement: str | sa.Select[Any],
    params: Mapping[str, Any] | None = None,
    *,
    decimal: Decimal = "decimal128",
) -> pa.Table:
    """Any query (SQL text with ``:name`` parameters, or a SQLAlchemy ``Select``) as an
    Arrow table with flowscope's column types, streamed, as the client's identity.

    Column types come from the server's description of the result: timestamps are
    ``timestamp[us, UTC]``, integers ``int16/32/64``, NUMERIC ``decimal128`` (or
    float64), JSON(B) ``arrow.json``, ``TEXT[]`` ``list<string>``, anything else text.

    Example:
        >>> t = flowscope.export.query_arrow(client, "SELECT status, count(*) AS n"
        ...     " FROM executions GROUP BY status ORDER BY status")
        >>> t.schema.field("n").type
        DataType(int64)
        >>> t.to_pydict()
        {'status': ['cancelled', 'completed', 'failed', 'queued', 'running'], 'n': [7, 1897, 93, 1, 2]}
    """
    import pyarrow as pa

    session = session_of(client)
    if params is not None and not isinstance(params, Mapping):
        raise ValidationError("params must be a mapping of names to values")
    if isinstance(statement, str):
        text = sa.text(statement)
        try:
            query: Any = (text.bindparams(**params) if params else text).columns()
        except sa.exc.ArgumentError as exc:
            raise ValidationError(f"params do not match the statement: {exc}") from exc
    elif isinstance(statement, sa.Select):
        if params:
            raise ValidationError("params go with a SQL string; a Select carries its own values")
        query = statement
    else:
        raise ValidationError("statement must be a SQL string or a SQLAlchemy Select")
    plan = _plan_query(session, query, decimal=decimal)
    batches = list(_stream_plan(session, plan, batch_size=None))
    return pa.Table.from_batches(batches, schema=plan.schema)


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow → pandas with the column contract (:func:`flowscope._frames.pandas_dtype`):
    nullable ints/booleans/floats, pyarrow strings, tz-aware UTC timestamps, Arrow-backed
    decimals, lists and JSON.

    Example:
        >>> import pyarrow as pa
        >>> str(to_pandas(pa.table({"n": pa.array([1, None], pa.int32())})).dtypes["n"])
        'Int32'
    """
    return table.to_pandas(types_mapper=pandas_dtype)


# -- the free functions: aliases of the resource methods -----------------------------------------
@boundary
def iter_batches(
    client: Any, table: str, filter: Any = None, /, **options: Any
) -> Iterator[pa.RecordBatch]:
    """``client.<table>.iter_batches(filter, **options)`` for a table named by a string:
    the rows as RecordBatches of ``batch_size`` rows (arguments: :func:`read_options`).

    Every batch has the table's explicit schema (:func:`arrow_schema`). Memory stays
    constant: at most a few batches are in flight. Closing the iterator early
    cancels the query.

    Example:
        >>> for batch in flowscope.iter_batches(client, "executions", status="failed",
        ...                                     batch_size=50):
        ...     print(batch.num_rows)
        50
        43
    """
    return read_options(filter, **options).batches(session_of(client), table)


@boundary
def read_arrow(client: Any, table: str, filter: Any = None, /, **options: Any) -> pa.Table:
    """``client.<table>.to_arrow(filter, **options)`` for a table named by a string: the
    rows as one Arrow table with the explicit schema (arguments: :func:`read_options`).

    Example:
        >>> t = flowscope.read_arrow(client, "executions", status="completed",
        ...                          flatten={"result.records_processed": "float64"})
        >>> t.schema.field("result.records_processed").type
        DataType(double)
        >>> t.num_rows
        1897
    """
    return read_options(filter, **options).arrow(session_of(client), table)


@boundary
def read_pandas(client: Any, table: str, filter: Any = None, /, **options: Any) -> pd.DataFrame:
    """``client.<table>.to_pandas(filter, **options)`` for a table named by a string: like
    :func:`read_arrow`, as a DataFrame with nullable / Arrow-backed dtypes.

    Strings are ``str`` on pandas 3 (``string[pyarrow]`` on pandas 2), integers
    ``Int32``/``Int64``, booleans ``boolean``, timestamps ``datetime64[us, UTC]``, NUMERIC
    ``decimal128(10, 3)[pyarrow]`` (or ``Float64`` with ``decimal="float64"``), ``TEXT[]``
    ``list<string>[pyarrow]`` and JSONB ``extension<arrow.json>[pyarrow]`` (values are JSON
    text). The same columns come back when nothing matches.

    Example:
        >>> df = flowscope.read_pandas(client, "executions", status="failed")
        >>> df.shape
        (93, 18)
        >>> df.dtypes["created_at"]
        datetime64[us, UTC]
    """
    return to_pandas(read_options(filter, **options).arrow(session_of(client), table))
