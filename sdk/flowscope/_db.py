"""Engines, transactions and the one boundary where driver errors become flowscope errors."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url

from .errors import (
    ConfigurationError,
    ConflictError,
    ConnectionFailedError,
    DatabaseError,
    FlowscopeError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)

TENANT_ROLE = "flowscope_tenant"


def normalize_url(url: str | URL) -> str:
    """Return a SQLAlchemy URL string that uses psycopg 3.

    ``postgresql://`` and ``postgres://`` get the ``+psycopg`` driver; an explicit
    ``postgresql+psycopg://`` is kept; other drivers are refused.

    Example:
        >>> normalize_url("postgresql://u@db:5432/x")
        'postgresql+psycopg://u@db:5432/x'
    """
    text = url.render_as_string(hide_password=False) if isinstance(url, URL) else str(url)
    text = re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", text)
    try:
        parsed = make_url(text)
    except sa_exc.ArgumentError as exc:
        raise ConfigurationError(f"not a database URL: {_redact(text)!r}") from exc
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


def create_engine(url: str | URL, **kwargs: Any) -> Engine:
    """Create an engine for a flowscope database (psycopg 3, pre-ping, short connect timeout)."""
    kwargs.setdefault("pool_pre_ping", True)
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("connect_timeout", 10)
    connect_args.setdefault("application_name", "flowscope")
    return sa.create_engine(normalize_url(url), connect_args=connect_args, **kwargs)


# SQLSTATE classes → flowscope errors. https://www.postgresql.org/docs/current/errcodes-appendix.html
_UNIQUE = "23505"
_FOREIGN_KEY = "23503"
_RESTRICT = "23001"
_CHECK = "23514"
_NOT_NULL = "23502"
_INSUFFICIENT_PRIVILEGE = "42501"
_SERIALIZATION = ("40001", "40P01")


def translate(exc: BaseException, *, url: str | URL | None = None) -> FlowscopeError:
    """Turn a driver/SQLAlchemy exception into the matching flowscope error."""
    if isinstance(exc, FlowscopeError):
        return exc
    orig = getattr(exc, "orig", None) or exc
    sqlstate = getattr(orig, "sqlstate", None)
    diag = getattr(orig, "diag", None)
    message = (getattr(diag, "message_primary", None) or str(orig)).strip()
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
    if sqlstate in _SERIALIZATION:
        return ConflictError(f"concurrent update, try again: {message}")
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError) and sqlstate in (
        None,
        "08000",
        "08001",
        "08006",
        "57P03",
    ):
        where = describe_host(url) if url is not None else "the database server"
        first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        return ConnectionFailedError(f"cannot connect to PostgreSQL at {where}: {first}")
    if sqlstate is None and (
        isinstance(exc, sa_exc.DataError)
        or type(orig).__name__ in ("DataError", "ProgrammingError")
    ):
        # raised by psycopg while adapting a value (NUL byte in text, number out of range)
        return ValidationError(message)
    if isinstance(exc, sa_exc.NoResultFound):
        return NotFoundError(str(exc))
    return DatabaseError(message)


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
    except (sa_exc.SQLAlchemyError, OSError) as exc:
        raise translate(exc, url=url) from exc
    except Exception as exc:  # psycopg errors outside SQLAlchemy (COPY, raw cursors)
        if type(exc).__module__.startswith("psycopg"):
            raise translate(exc, url=url) from exc
        raise


# Raw SQL from a scoped client may not change who it runs as or which organization it
# sees: role and setting changes (SET/RESET ROLE, set_config('role'|'flowscope.*')),
# DO blocks and other utility statements, several statements at once, Unicode-escaped
# identifiers. This is a first line; ``verify_scope`` re-checks after the statement.
_TENANT_SQL_REFUSED = re.compile(
    r"\bset_config\b|\brole\b|\bauthorization\b|\bu&|"
    r"^\s*(set|reset|do|call|execute|prepare|deallocate|copy|listen|notify|load|discard|"
    r"begin|commit|rollback|savepoint|release|start|end|abort|lock|grant|revoke|alter|"
    r"create|drop|truncate|vacuum|analyze|cluster|reindex|comment|security|import)\b",
    re.IGNORECASE,
)


def guard_tenant_sql(statement: str) -> None:
    """Refuse raw SQL that could leave a scoped client's role or organization.

    Example:
        >>> guard_tenant_sql("SELECT count(*) FROM workflows")
        >>> guard_tenant_sql("RESET ROLE")
        Traceback (most recent call last):
        ...
        flowscope.errors.PermissionDeniedError: a scoped client's SQL may not ...
    """
    body = statement.strip().rstrip(";")
    if ";" in body or _TENANT_SQL_REFUSED.search(body):
        raise PermissionDeniedError(
            "a scoped client's SQL may not change roles or settings, run utility statements"
            " or several statements at once (use an unscoped client for that)"
        )


def verify_scope(conn: Connection, organization_id: str) -> None:
    """Raise PermissionDeniedError if this transaction no longer runs as the tenant of ``organization_id``."""
    row = conn.execute(
        sa.text(
            "SELECT current_user::text AS role,"
            " current_setting('flowscope.organization_id', true) AS org"
        )
    ).one()
    if row.role != TENANT_ROLE or row.org != organization_id:
        raise PermissionDeniedError("the statement tried to leave the client's organization scope")


def apply_scope(conn: Connection, organization_id: str | None, user_id: str | None) -> None:
    """Confine this transaction to one organization (RLS) and record the acting user.

    Both settings are transaction-local (``set_config(..., true)``) so nothing
    leaks to the next user of a pooled connection.
    """
    if user_id is not None:
        conn.execute(sa.text("SELECT set_config('flowscope.user_id', :u, true)"), {"u": user_id})
    if organization_id is not None:
        conn.execute(
            sa.text("SELECT set_config('flowscope.organization_id', :o, true)"),
            {"o": organization_id},
        )
        conn.execute(sa.text(f"SET LOCAL ROLE {TENANT_ROLE}"))


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
