"""Engines, transactions and the one boundary where driver errors become flowscope errors."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url

from . import _deadline
from .errors import (
    CommitUnknownError,
    ConfigurationError,
    ConflictError,
    ConnectionFailedError,
    DatabaseError,
    FlowscopeError,
    NotFoundError,
    PermissionDeniedError,
    QueryTimeoutError,
    ValidationError,
)

T = TypeVar("T")


def normalize_url(url: str | URL) -> str:
    """Return a SQLAlchemy URL string that uses psycopg 3.

    ``postgresql://`` and ``postgres://`` get the ``+psycopg`` driver; an explicit
    ``postgresql+psycopg://`` is kept; other drivers are refused.

    Example:
        >>> normalize_url("postgresql://u@db:5432/x")
        'postgresql+psycopg://u@db:5432/x'
    """
    if not isinstance(url, str | URL):
        raise ConfigurationError(f"a database URL is a string, not {type(url).__name__}")
    text = url.render_as_string(hide_password=False) if isinstance(url, URL) else str(url)
    text = re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", text)
    try:
        parsed = make_url(text)
    except sa_exc.ArgumentError as exc:
        raise ConfigurationError(f"not a database URL: {_redact(text)!r}") from exc
    except ValueError as exc:  # a port that is not a number: "host:abc"
        raise ConfigurationError(f"not a database URL: {_redact(text)!r} ({exc})") from exc
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise ConfigurationError(f"not a database URL: {_redact(text)!r} (port out of range)")
    if parsed.get_backend_name() != "postgresql" or parsed.get_driver_name() != "psycopg":
        raise ConfigurationError(
            f"flowscope needs PostgreSQL through psycopg 3; got {parsed.drivername!r}"
        )
    return parsed.render_as_string(hide_password=False)


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)


def describe_host(url: str | URL) -> str:
    """A human name for where a URL points (``host:port/db`` or the socket directory)."""
    u = make_url(normalize_url(url))
    host = u.host or u.query.get("host") or "localhost"
    if isinstance(host, tuple):
        host = ",".join(host)
    port = f":{u.port}" if u.port else ""
    return f"{host}{port}/{u.database or ''}"


def create_engine(
    url: str | URL,
    *,
    statement_timeout: float | None = None,
    deadline: float | None = None,
    **kwargs: Any,
) -> Engine:
    """Create an engine for a flowscope database (psycopg 3, pre-ping, short connect timeout,
    TCP keepalives and ``tcp_user_timeout``: :func:`flowscope._deadline.libpq_params`).

    Every connection is reset when it goes back to the pool: the transaction is rolled
    back, then ``DISCARD ALL`` drops whatever the last user left on the session (settings,
    temporary objects, prepared statements, advisory locks, ``LISTEN``s), so nothing
    crosses from one call to the next. ``statement_timeout`` (seconds) becomes the
    session default of every connection. ``deadline`` (seconds): the longest any wait for
    the server may take; past it the connection is closed (:mod:`flowscope._deadline`).

    Example:
        >>> engine = create_engine(url, statement_timeout=30)   # "postgresql://me@db:5432/x"
        >>> with engine.connect() as conn:
        ...     conn.execute(sa.text("SHOW statement_timeout")).scalar()
        '30s'
        >>> engine.dispose()
    """
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_reset_on_return", None)  # replaced by _reset_session below
    connect_args = dict(kwargs.pop("connect_args", {}))
    for name, value in _deadline.libpq_params(_deadline.connect_timeout(deadline)).items():
        connect_args.setdefault(name, value)
    connect_args.setdefault("application_name", "flowscope")
    # psycopg prepares a statement after 5 runs; DISCARD ALL at check-in ends every prepared
    # statement, so they would never be reused: only prepare when asked (prepare=True; None
    # would turn that off too)
    connect_args.setdefault("prepare_threshold", 2**31 - 1)
    if statement_timeout is not None:
        ms = int(round(statement_timeout * 1000))
        options = connect_args.get("options", "")
        connect_args["options"] = f"{options} -c statement_timeout={ms}".strip()
    engine = sa.create_engine(normalize_url(url), connect_args=connect_args, **kwargs)
    sa.event.listen(engine, "reset", _reset_session)

    def connect(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        conn = _deadline.DeadlineConnection.connect(*cargs, **cparams)
        conn.deadline = deadline
        return conn

    sa.event.listen(engine, "do_connect", connect)
    return engine


def _reset_session(dbapi_connection: Any, record: Any, reset_state: Any) -> None:
    """Pool check-in: roll back, then ``DISCARD ALL`` (the session starts over as if new)."""
    if reset_state.terminate_only:
        return
    dbapi_connection.rollback()
    if getattr(dbapi_connection, "closed", False):
        return
    previous = dbapi_connection.autocommit
    dbapi_connection.autocommit = True  # DISCARD ALL cannot run inside a transaction block
    try:
        dbapi_connection.execute("DISCARD ALL", prepare=False)
    finally:
        dbapi_connection.autocommit = previous
    # the server forgot every prepared statement: so must psycopg's cache of their names
    prepared = getattr(dbapi_connection, "_prepared", None)
    for part in ("_names", "_counts", "_to_flush"):
        getattr(prepared, part, {}).clear()


def parse_timeout(value: Any, name: str = "statement_timeout") -> float | None:
    """A timeout in seconds from a number or a numeric string; None or 0 means no limit.

    Example:
        >>> parse_timeout("2.5")
        2.5
        >>> parse_timeout(0) is None
        True
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigurationError(f"{name} must be a number of seconds, not {value!r}")
    try:
        seconds = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{name} must be a number of seconds, not {value!r}") from exc
    if seconds != seconds or seconds < 0 or seconds > 86_400 * 365:
        raise ConfigurationError(f"{name} must be between 0 and one year, not {value!r}")
    return seconds or None


# SQLSTATE classes → flowscope errors. https://www.postgresql.org/docs/current/errcodes-appendix.html
_UNIQUE = "23505"
_FOREIGN_KEY = "23503"
_RESTRICT = "23001"
_CHECK = "23514"
_NOT_NULL = "23502"
_INSUFFICIENT_PRIVILEGE = "42501"
_SERIALIZATION = ("40001", "40P01")
_TIMEOUT = ("57014", "55P03")  # query_canceled (statement_timeout), lock_not_available
# admin_shutdown, crash_shutdown (the server ended the session), cannot_connect_now (starting)
_SHUTDOWN = ("57P01", "57P02", "57P03")
# what libpq and psycopg say when an open connection went away (vs. one that never opened)
_LOST = (
    "server closed the connection",
    "connection is closed",
    "connection socket closed",
    "consuming input failed",
    "sending query",
    "no connection to the server",
    "could not receive data",
    "could not send data",
    "eof detected",
    "connection reset",
    "broken pipe",
    "terminating connection",
    "connection is lost",
)


def is_connection_lost(exc: BaseException | None) -> bool:
    """Whether a driver error says an open connection went away (not: could not connect).

    Example:
        >>> import psycopg
        >>> is_connection_lost(psycopg.OperationalError(
        ...     "consuming input failed: server closed the connection unexpectedly"))
        True
    """
    for _ in range(5):
        if exc is None:
            return False
        if getattr(exc, "sqlstate", None) in _SHUTDOWN[:2]:
            return True
        text = str(exc).lower()
        if any(marker in text for marker in _LOST):
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__
    return False


_COPY_REFUSED = "COPY cannot be used with this method"
_TOO_MANY_PARAMETERS = "number of parameters must be between"
_LOGIN_DISABLED = "is not permitted to log in"


def translate(exc: BaseException, *, url: str | URL | None = None) -> FlowscopeError:
    """Turn a driver/SQLAlchemy exception into the matching flowscope error.

    Example:
        >>> import psycopg
        >>> translate(psycopg.OperationalError(
        ...     "sending query and params failed: number of parameters must be between 0 and 65535"))
        ValidationError('too many bound parameters in one statement (PostgreSQL takes at most 65,535); pass a list as one array parameter (= ANY(:values)) or send it in chunks')
    """
    if isinstance(exc, FlowscopeError):
        return exc
    orig = getattr(exc, "orig", None) or exc
    sqlstate = getattr(orig, "sqlstate", None)
    diag = getattr(orig, "diag", None)
    message = (getattr(diag, "message_primary", None) or str(orig)).strip()
    if sqlstate is None and _TOO_MANY_PARAMETERS in message:
        # raised by the driver before anything is sent: the statement, not the connection
        return ValidationError(
            "too many bound parameters in one statement (PostgreSQL takes at most 65,535);"
            " pass a list as one array parameter (= ANY(:values)) or send it in chunks"
        )
    if sqlstate is None and message.startswith(_COPY_REFUSED):
        return ValidationError(
            "sql() runs statements that return rows or nothing; COPY ... TO STDOUT / FROM"
            " STDIN streams through a protocol of its own: use client.export.parquet(...) to"
            " read a table or query, and client.<table>.ingest(...) to load rows"
        )
    constraint = getattr(diag, "constraint_name", None)
    detail = getattr(diag, "message_detail", None)
    if sqlstate == _UNIQUE:
        field = _field_from_detail(detail)
        what = f"{field} already exists" if field else "a row with these values already exists"
        return ConflictError(f"{what} ({constraint})" if constraint else what)
    if sqlstate in (_FOREIGN_KEY, _RESTRICT):
        return ConflictError(f"{message}" + (f": {detail}" if detail else ""))
    if sqlstate in (_CHECK, _NOT_NULL) or (sqlstate or "").startswith("22"):
        return ValidationError(message + (f" ({constraint})" if constraint else ""))
    if sqlstate == _INSUFFICIENT_PRIVILEGE or (sqlstate == "42501"):
        return PermissionDeniedError(message)
    if sqlstate in _TIMEOUT:
        return QueryTimeoutError(message)
    if sqlstate in _SERIALIZATION or _catalog_race(sqlstate, message):
        return ConflictError(f"concurrent update, try again: {message}")
    if _LOGIN_DISABLED in message:
        # a NOLOGIN role: a tenant login whose user was deactivated or removed (revision 0010)
        first = message.splitlines()[0].rsplit("FATAL:", 1)[-1].strip()
        return PermissionDeniedError(
            f"{first}: this identity's user is deactivated or removed, or the role may not log in"
        )
    if isinstance(exc, sa_exc.PendingRollbackError) and "invalid transaction" in message:
        # SQLAlchemy's word for "the connection died inside a transaction" (then used again):
        # name the error that killed it, when it is at hand
        cause = exc.__context__
        while cause is not None and not isinstance(cause, sa_exc.DBAPIError):
            cause = cause.__context__
        if cause is not None:
            return translate(cause, url=url)
        where = describe_host(url) if url is not None else "the database server"
        return ConnectionFailedError(
            f"lost the connection to PostgreSQL at {where} during a transaction (nothing of it"
            " was committed)"
        )
    if isinstance(orig, _deadline.DeadlineExceeded):
        return QueryTimeoutError(message)
    connection_error = isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError) or (
        type(orig).__name__ in ("OperationalError", "InterfaceError")
    )
    if (
        (sqlstate or "").startswith("08")
        or sqlstate in _SHUTDOWN
        or (connection_error and sqlstate is None)
    ):
        where = describe_host(url) if url is not None else "the database server"
        first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        if sqlstate in _SHUTDOWN[:2] or is_connection_lost(orig):
            return ConnectionFailedError(f"lost the connection to PostgreSQL at {where}: {first}")
        return ConnectionFailedError(f"cannot connect to PostgreSQL at {where}: {first}")
    if sqlstate is None and (
        isinstance(exc, sa_exc.DataError)
        or type(orig).__name__ in ("DataError", "ProgrammingError")
    ):
        # raised by psycopg while adapting a value (NUL byte in text, number out of range)
        return ValidationError(message)
    if isinstance(exc, sa_exc.NoResultFound):
        return NotFoundError(str(exc))
    if isinstance(exc, sa_exc.TimeoutError):  # the pool had no free connection in time
        return QueryTimeoutError(pool_exhausted(message))
    return DatabaseError(message)


def pool_exhausted(detail: str) -> str:
    """The message for a call that found no free connection within ``pool_timeout``.

    Example:
        >>> pool_exhausted("QueuePool limit of size 5 overflow 10 reached, connection timed out, timeout 30.00")
        'no free database connection within the pool_timeout: every connection of this client (this identity) is in use (QueuePool limit of size 5 overflow 10 reached, connection timed out, timeout 30.00); raise connect(pool_size=, max_overflow=) or pool_timeout=, or run fewer calls at once'
    """
    first = detail.split("(Background", 1)[0].strip()
    return (
        "no free database connection within the pool_timeout: every connection of this client"
        f" (this identity) is in use ({first}); raise connect(pool_size=, max_overflow=) or"
        " pool_timeout=, or run fewer calls at once"
    )


def _catalog_race(sqlstate: str | None, message: str) -> bool:
    # two sessions changing the same catalog row at once (two REFRESHes, GRANT/REVOKE)
    return sqlstate == "XX000" and "tuple concurrently updated" in message


def is_transient(exc: BaseException | None) -> bool:
    """Whether a (driver) error is a deadlock, a serialization failure or a catalog race:
    the same work may succeed when run again.

    Example:
        >>> is_transient(ValueError("x"))
        False
    """
    for _ in range(5):  # down the chain: flowscope error → SQLAlchemy's → the driver's
        if exc is None or getattr(exc, "sqlstate", None) is not None:
            break
        exc = getattr(exc, "orig", None) or exc.__cause__
    if exc is None:
        return False
    sqlstate = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    message = getattr(diag, "message_primary", None) or str(exc)
    return sqlstate in _SERIALIZATION or _catalog_race(sqlstate, message)


def retry_transient(run: Callable[[], T], *, attempts: int = 5) -> T:
    """Run ``run`` (a whole transaction of flowscope's own, safe to repeat) again after a
    deadlock or catalog race, up to ``attempts`` times with a short random pause.

    For flowscope's own fixed work only (provisioning a login, refreshing rollups); a
    caller's writes are never repeated behind its back.

    Example:
        >>> retry_transient(lambda: 42)
        42
    """
    import random
    import time

    for attempt in range(attempts):
        try:
            return run()
        except FlowscopeError as exc:
            if attempt == attempts - 1 or not is_transient(exc.__cause__):
                raise
        time.sleep(random.uniform(0.01, 0.05) * 2**attempt)
    raise AssertionError("unreachable")


def _field_from_detail(detail: str | None) -> str | None:
    # "Key (username)=(alice) already exists."
    if not detail:
        return None
    m = re.match(r"Key \(([^)]*)\)=", detail)
    return m.group(1) if m else None


@contextlib.contextmanager
def translating(url: str | URL | None = None) -> Iterator[None]:
    """Context manager: re-raise driver/SQLAlchemy errors as flowscope errors."""
    try:
        yield
    except FlowscopeError:
        raise
    except sa_exc.SQLAlchemyError as exc:
        raise translate(exc, url=url) from exc
    except Exception as exc:  # psycopg errors outside SQLAlchemy (COPY, raw cursors)
        if type(exc).__module__.startswith("psycopg"):
            raise translate(exc, url=url) from exc
        raise


def commit(transaction: Any, url: str | URL | None, ids: list[str] | None = None) -> None:
    """Commit; a connection lost (or past its deadline) once COMMIT was sent raises
    :class:`CommitUnknownError` naming ``ids``: the rows may be committed, or not."""
    if not transaction.is_active:  # the caller's block ended it (conn.rollback())
        return
    try:
        transaction.commit()
    except sa_exc.DBAPIError as exc:
        if not (
            exc.connection_invalidated
            or is_connection_lost(exc)
            or isinstance(exc.orig, _deadline.DeadlineExceeded)
        ):
            raise
        where = describe_host(url) if url is not None else "the database server"
        ids = list(ids or [])
        shown = ", ".join(ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
        check = (
            f"check whether these ids exist before writing them again: {shown}"
            if ids
            else "check whether the transaction's rows exist before running it again"
        )
        raise CommitUnknownError(
            f"the connection to PostgreSQL at {where} was lost after COMMIT was sent: the"
            f" transaction may or may not have been committed; {check}",
            ids=ids,
        ) from exc


def discard_if_busy(conn: Connection, exc: BaseException) -> None:
    """Invalidate a connection the server is still streaming to (a ``COPY ... TO STDOUT``
    the driver refused to read): it can neither roll back nor be reset, so the pool
    closes it and opens a new one, instead of failing (and logging) at check-in.

    Example:
        >>> engine = create_engine(url)
        >>> with engine.connect() as conn:
        ...     try:
        ...         conn.exec_driver_sql("COPY workflows TO STDOUT")
        ...     except sa.exc.ProgrammingError as exc:
        ...         discard_if_busy(conn, exc)
        ...     conn.invalidated
        True
        >>> engine.dispose()
    """
    try:
        dbapi = conn.connection.driver_connection
        busy = dbapi is not None and int(dbapi.info.transaction_status) == 1  # ACTIVE
    except Exception:  # already closed or invalidated
        return
    if busy:
        conn.invalidate(exc if isinstance(exc, Exception) else None)


# -- read replicas -------------------------------------------------------------------


def parse_lsn(text: str) -> int:
    """A PostgreSQL ``pg_lsn`` (``'16/B374D848'``) as an integer, for comparing in Python.

    Example:
        >>> parse_lsn("0/3000148")
        50331976
    """
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(value: int) -> str:
    """The inverse of :func:`parse_lsn`."""
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


class ReplicaSet:
    """The read replicas of one primary, shared by a client and its scoped children.

    Holds one engine per replica, picks them round-robin, remembers which are
    down (and skips them for ``retry_after`` seconds), and remembers the
    primary's WAL position after this client's last write, so reads that must
    see that write can wait for a replica to replay it.
    """

    def __init__(
        self,
        urls: tuple[str, ...],
        *,
        retry_after: float = 30.0,
        **engine_kwargs: Any,
    ) -> None:
        import threading

        kwargs = dict(engine_kwargs)
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("connect_timeout", 3)
        connect_args.setdefault("application_name", "flowscope-read")
        self.urls = tuple(normalize_url(u) for u in urls)
        self.engines = tuple(
            create_engine(u, connect_args=dict(connect_args), **kwargs) for u in self.urls
        )
        self.retry_after = retry_after
        self._down_until = [0.0] * len(self.engines)
        self._next = 0
        self._lock = threading.Lock()
        self.last_write_lsn: int | None = None

    def __len__(self) -> int:
        return len(self.engines)

    def candidates(self) -> list[int]:
        """Indexes of the replicas to try, in order: the ones believed up, round-robin."""
        import time

        now = time.monotonic()
        with self._lock:
            n = len(self.engines)
            start = self._next
            self._next = (self._next + 1) % n if n else 0
            return [i for i in ((start + k) % n for k in range(n)) if self._down_until[i] <= now]

    def mark_down(self, index: int) -> None:
        import time

        with self._lock:
            self._down_until[index] = time.monotonic() + self.retry_after

    def mark_up(self, index: int) -> None:
        with self._lock:
            self._down_until[index] = 0.0

    def note_write(self, lsn: int) -> None:
        """Record the primary's WAL position after a write (keeps the highest seen)."""
        with self._lock:
            if self.last_write_lsn is None or lsn > self.last_write_lsn:
                self.last_write_lsn = lsn

    def dispose(self) -> None:
        for engine in self.engines:
            engine.dispose()


def replica_caught_up(conn: Connection, lsn: int) -> bool:
    """Whether the server behind ``conn`` has replayed the WAL up to ``lsn``.

    A server that is not in recovery (a primary given as a read URL) counts as caught up.
    """
    row = conn.execute(
        sa.text("SELECT pg_is_in_recovery() AS standby, pg_last_wal_replay_lsn()::text AS replayed")
    ).one()
    if not row.standby:
        return True
    return row.replayed is not None and parse_lsn(row.replayed) >= lsn


def current_wal_lsn(conn: Connection) -> int:
    """The primary's current WAL position, for read-your-writes.

    ``pg_current_wal_insert_lsn()`` rather than ``pg_current_wal_lsn()`` (the write
    position): with ``synchronous_commit = off`` a commit record may be inserted but
    not yet written, and a replica that has replayed up to the write position would
    still miss it.
    """
    return parse_lsn(conn.execute(sa.text("SELECT pg_current_wal_insert_lsn()::text")).scalar_one())
