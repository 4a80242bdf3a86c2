"""The ADBC transport: ADBC's streaming reader (libpq binary COPY decoded in C++), each batch
then cast to the plan's explicit schema.

NUMERIC text → ``decimal128`` by an exact, safe cast (or float64); JSON text wrapped as
``pa.json_()`` without parsing; ``TEXT[]`` read natively as lists. It runs in one
transaction, logged in as the session's own identity (a tenant's role), so row-level
security is the same as on the COPY decoder. ADBC holds the whole result of a query with
bound parameters in memory, so the filter's values are bound to transaction-local settings
(``set_config($1, $2, true)``) that the query reads back with a cast; values of other
kinds (arrays of non-strings, NULL, Decimal) keep the query on the COPY decoder.
``FLOWSCOPE_EXPORT_TRANSPORT=copy`` forces the COPY decoder, ``=adbc`` requires ADBC.

Example:
    >>> _setting_text(["a", 'b "c"'])
    ('{"a","b \\\\"c\\\\""}', 'text[]')
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from .. import _db, _deadline
from ..errors import ConfigurationError, DatabaseError, FlowscopeError, ValidationError
from ._schema import _Plan

if TYPE_CHECKING:
    import pyarrow as pa

    from .._session import Session

__all__ = ["adbc_uri"]

T = TypeVar("T")

# ADBC's batch size hint (its default is 16 MB). Smaller batches keep the Parquet writer
# thread busy sooner and hold less in flight: 1M executions went 2.6 s → 2.4 s and peak RSS
# 256 → 206 MB at 4 MB (1 and 2 MB: slower again; benchmarks/RESULTS_io.md).
_ADBC_BATCH_BYTES = 4 << 20
# ``FLOWSCOPE_EXPORT_TRANSPORT``: "auto" (ADBC when installed, the client has no read replicas,
# no write transaction of the client is open, and every parameter is a simple value), "adbc"
# (the same, but an error when ADBC is not installed), "copy" (the binary COPY decoder, always).
_TRANSPORT_ENV = "FLOWSCOPE_EXPORT_TRANSPORT"


def _transport() -> str:
    value = os.environ.get(_TRANSPORT_ENV, "auto").strip().lower() or "auto"
    if value not in ("auto", "adbc", "copy"):
        raise ConfigurationError(f"{_TRANSPORT_ENV} must be auto, adbc or copy; got {value!r}")
    return value


def adbc_uri(
    url: str | sa.URL, *, statement_timeout: float | None = None, deadline: float | None = None
) -> str | None:
    """The libpq URI ADBC connects with, for a flowscope database URL (None: not expressible).

    Every value is percent-encoded (libpq decodes ``%20``, not ``+``); the connection gets
    the same connect timeout, keepalives and ``tcp_user_timeout`` as psycopg's
    (:func:`flowscope._deadline.libpq_params`), and the statement timeout as ``options``.

    Example:
        >>> uri = adbc_uri("postgresql+psycopg://u:p%40ss@db:5433/x", statement_timeout=2)
        >>> uri.split("?")[0]
        'postgresql://u:p%40ss@db:5433/x'
        >>> [p for p in uri.split("?")[1].split("&") if p.startswith(("options", "application"))]
        ['application_name=flowscope', 'options=-c%20statement_timeout%3D2000']
    """
    u = sa.make_url(_db.normalize_url(url))
    quote = urllib.parse.quote
    if isinstance(u.host, tuple) or any(isinstance(v, tuple) for v in u.query.values()):
        return None  # several hosts: leave it to psycopg
    auth = ""
    if u.username:
        auth = quote(u.username, safe="")
        if u.password:
            auth += ":" + quote(str(u.password), safe="")
        auth += "@"
    host = u.host or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{u.port}" if u.port else ""
    database = quote(u.database or "", safe="")
    query = dict(u.query)
    query.setdefault("application_name", "flowscope")
    for name, value in _deadline.libpq_params(_deadline.connect_timeout(deadline)).items():
        query.setdefault(name, value)
    if statement_timeout is not None:
        given = str(query.get("options", ""))
        query["options"] = f"{given} -c statement_timeout={round(statement_timeout * 1000)}".strip()
    encoded = urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    return f"postgresql://{auth}{host}{port}/{database}?{encoded}"


def _adbc_query(session: Session, plan: _Plan) -> tuple[str, str, list[tuple[str, str]]] | None:
    """(uri, SQL, settings it reads) when this plan can go through ADBC, else None."""
    choice = _transport()
    if choice == "copy":
        return None
    from .._session import _WRITE_TX

    if session.replicas is not None or _WRITE_TX.get() is not None:
        # read_transaction() decides where reads go (a replica, read-your-writes waits, the
        # open write transaction's own connection): the COPY decoder runs inside it.
        return None
    try:
        import adbc_driver_postgresql.dbapi  # noqa: F401
    except ImportError:
        if choice == "adbc":
            raise ConfigurationError(
                "adbc-driver-postgresql is not installed (pip install adbc-driver-postgresql)"
            ) from None
        return None
    from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg

    stmt = plan.select
    if any(c.native is not None for c in plan.columns):  # TEXT[] as itself: ADBC reads lists
        stmt = stmt.with_only_columns(
            *((c.native if c.native is not None else c.expr).label(c.name) for c in plan.columns)
        )
    compiled = stmt.compile(
        dialect=pg_psycopg.dialect(paramstyle="numeric_dollar"),
        compile_kwargs={"render_postcompile": True},
    )
    positions = compiled.positiontup or []
    params = [compiled.params[name] for name in positions]
    uri = adbc_uri(
        session.login_url, statement_timeout=session.statement_timeout, deadline=session.deadline
    )
    if uri is None:
        return None
    # ADBC (1.13) runs a query with bound parameters as a prepared statement and hands back
    # its whole result at once (measured: 860 MB peak for 1M executions, against 173 MB
    # streamed), so the query ADBC runs has none: each value is bound to a transaction-local
    # setting (``set_config($1, $2, true)``) and the query reads it back with a cast.
    sql = str(compiled)
    marks = re.findall(r"\$(\d+)(?![0-9])", sql)
    if sorted(map(int, marks)) != list(range(1, len(params) + 1)):
        return None  # a "$n" of the query's own text (a literal): leave it to psycopg
    settings: list[tuple[str, str]] = []
    refs: dict[str, str] = {}
    for i, value in enumerate(params, 1):
        as_text = _setting_text(value)
        if as_text is None:
            return None  # None, arrays, Decimal...: psycopg binds them, COPY streams them
        text, sql_type = as_text
        settings.append((f"flowscope_export.p{i}", text))
        refs[str(i)] = f"CAST(current_setting('flowscope_export.p{i}') AS {sql_type})"

    def ref(match: re.Match[str]) -> str:
        return refs[match.group(1)]

    return uri, re.sub(r"\$(\d+)(?![0-9])", ref, sql), settings


def _setting_text(value: Any) -> tuple[str, str] | None:
    """A parameter as (text, the SQL type to cast it back to), or None when not simple."""
    if isinstance(value, bool):
        return ("true" if value else "false"), "boolean"
    if isinstance(value, int):
        return str(value), "numeric" if abs(value) >= 2**63 else "bigint"
    if isinstance(value, float):
        return repr(value), "double precision"
    if isinstance(value, str):
        return (value, "text") if "\x00" not in value else None
    if isinstance(value, datetime):
        return value.isoformat(), "timestamptz" if value.tzinfo is not None else "timestamp"
    if isinstance(value, date):
        return value.isoformat(), "date"
    if isinstance(value, list) and all(isinstance(v, str) and "\x00" not in v for v in value):
        # a filter's list (= ANY(:values)) as an array literal: {"a","b \"c\""}
        quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in value)
        return "{" + ",".join(quoted) + "}", "text[]"
    return None


def _adbc_cast(array: pa.Array, target: pa.DataType) -> pa.Array:
    """One column as ADBC sends it → flowscope's type (no JSON parsing, exact decimals)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array.type, pa.BaseExtensionType):
        if array.type == target:
            return array
        array = array.storage  # arrow.json / arrow.opaque[numeric] over UTF-8
    if isinstance(target, pa.JsonType):
        if not pa.types.is_string(array.type):
            array = array.cast(pa.string())
        return pa.ExtensionArray.from_storage(target, array)
    if array.type == target:
        return array
    # NUMERIC text → decimal128 (a safe cast: a value that does not fit is an error) or float64
    return pc.cast(array, target, safe=True)


class _AdbcCaster:
    """Turns a RecordBatch from ADBC's reader into one of the plan's explicit schema."""

    def __init__(self, plan: _Plan) -> None:
        self.schema = plan.schema

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        import pyarrow as pa

        arrays = [_adbc_cast(batch.column(i), field.type) for i, field in enumerate(self.schema)]
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)


def _set_config(cur: Any, name: str, value: str) -> None:
    cur.execute("SELECT set_config($1, $2, true)", (name, value))
    cur.fetchall()


_SNAPSHOT_ID = re.compile(r"[0-9A-F]+-[0-9A-F]+(-[0-9]+)?")


def _adbc_batches(
    session: Session,
    plan: _Plan,
    query: tuple[str, str, list[tuple[str, str]]],
    *,
    batch_size: int,
    snapshot: str | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream the plan through ADBC (libpq binary COPY in C++), in one transaction, logged
    in as the session's own identity (a tenant's role: row-level security applies).
    ``snapshot``: an exported snapshot id the transaction imports first (REPEATABLE READ,
    READ ONLY); ``SET TRANSACTION SNAPSHOT`` takes no parameter, so the id, which the
    server generated, is checked against its format before it is spelled in."""
    import adbc_driver_manager
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow as pa

    uri, sql, settings = query
    cast = _AdbcCaster(plan)
    # OSError: from the stream; DeadlineExceeded: the worker's (flowscope._deadline)
    errors = (adbc_driver_manager.Error, pa.ArrowException, OSError, _deadline.DeadlineExceeded)

    def fail(exc: BaseException) -> FlowscopeError:
        if isinstance(exc, adbc_driver_manager.Error | _deadline.DeadlineExceeded):
            return _db.translate(exc, url=session.url)
        return DatabaseError(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))

    worker = _deadline.Worker(deadline=session.deadline)
    try:
        conn = worker.call(lambda: adbc.connect(uri, autocommit=False))
    except errors as exc:
        worker.close()
        raise fail(exc) from exc
    except BaseException:
        worker.close()
        raise

    def cancel() -> None:
        with contextlib.suppress(Exception):
            conn.adbc_connection.cancel()

    def call(fn: Callable[[], T]) -> T:
        try:
            return worker.call(fn, on_abandon=cancel)
        except errors as exc:
            raise fail(exc) from exc

    drained = False
    cur = conn.cursor()
    try:
        if snapshot is not None:
            if not _SNAPSHOT_ID.fullmatch(snapshot):
                raise ValidationError(f"not a snapshot id: {snapshot!r}")
            call(lambda: cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            call(lambda: cur.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
        for name, value in settings:  # the query's values, bound (see _adbc_query)
            call(functools.partial(_set_config, cur, name, value))
        with contextlib.suppress(adbc_driver_manager.Error):  # an older driver
            cur.adbc_statement.set_options(
                **{"adbc.postgresql.batch_size_hint_bytes": str(_ADBC_BATCH_BYTES)}
            )
        call(lambda: cur.execute(sql))
        reader = call(cur.fetch_record_batch)
        while True:
            try:
                batch = call(reader.read_next_batch)
            except StopIteration:
                drained = True
                break
            for start in range(0, batch.num_rows, batch_size):
                yield cast(batch.slice(start, batch_size))
    finally:

        def close() -> None:
            if not drained:
                cancel()
            for step in (cur.close, conn.rollback, conn.close):
                with contextlib.suppress(Exception):
                    step()

        if worker.abandoned:  # the stuck call ends some day: then the worker closes it all
            worker.run_after(close)
        else:
            with contextlib.suppress(Exception):
                worker.call(close)
        worker.close()
