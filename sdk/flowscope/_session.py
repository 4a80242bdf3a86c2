"""The session layer: one identity's way into the database.

A :class:`Session` owns what every data path needs and nothing above it: the engine
(connection pool) of one login identity, transactions (nesting as savepoints), read
routing to replicas, the acting user's scope check, and ``sql()``. Resources,
analytics, export, ingest, retention and maintenance take a ``Session``; the public
:class:`flowscope.Client` only assembles them.

Tenancy is the login identity, not a setting. An *admin* session logs in with the URL
it was given (the schema owner, usually). A *tenant* session (``organization_id``
set) logs in as its own PostgreSQL role, provisioned by the admin session through
``flowscope_provision_identity()`` (revision 0006): a ``NOINHERIT`` login that is a
member of no role and owns nothing, whose organization the row-level security
policies derive from ``session_user``, and whose privileges are its user's scopes.
Each identity has its own pool; a connection is reset (``DISCARD ALL``) whenever it
goes back to its pool.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
import warnings
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url

from . import _db
from .errors import ConfigurationError, PermissionDeniedError, ReplicaUnavailableWarning

__all__ = ["ADMIN", "EXECUTE", "READ", "READ_ALL", "WRITE", "WRITE_ALL", "Session", "session_of"]

READ = "workflow:read"
WRITE = "workflow:write"
EXECUTE = "workflow:execute"
ADMIN = "admin"
#: organization-wide reach (revision 0007): without them a user sees the workflows it owns
#: and the public ones, and changes only its own; each implies the plain scope
READ_ALL = "workflow:read:all"
WRITE_ALL = "workflow:write:all"
WIDER = {READ: READ_ALL, WRITE: WRITE_ALL}

# The ids the open write transaction inserted, for CommitUnknownError (note_written).
_WRITTEN: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "flowscope_written", default=None
)


def note_written(ids: list[str]) -> None:
    """Record ids the current write transaction inserts: if its COMMIT's outcome is unknown,
    :class:`~flowscope.CommitUnknownError` names them."""
    written = _WRITTEN.get()
    if written is not None:
        written.extend(ids)


# The write transaction open in this thread/task: (session key, connection). Reads inside
# it run on that same connection, so they see its uncommitted writes.
_WRITE_TX: contextvars.ContextVar[tuple[tuple[Any, ...], Connection] | None] = (
    contextvars.ContextVar("flowscope_write_transaction", default=None)
)


@dataclass(frozen=True)
class _Login:
    """The pools of one tenant identity (primary and replicas)."""

    role: str
    url: str
    engine: Engine
    replicas: _db.ReplicaSet | None


class Session:
    """One identity's access to a flowscope database (see the module docstring).

    Example:
        >>> from flowscope import _db
        >>> admin = Session(_db.create_engine(url), url=url)
        >>> acme = admin.scoped("org_demo_acme", user_id="usr_demo_bruno")
        >>> with acme.read_transaction() as conn:
        ...     conn.execute(sa.text("SELECT count(*) FROM workflows")).scalar()
        33
        >>> admin.close()
    """

    def __init__(
        self,
        engine: Engine | None,
        *,
        url: str,
        organization_id: str | None = None,
        user_id: str | None = None,
        replicas: _db.ReplicaSet | None = None,
        read_your_writes: bool = False,
        replica_wait_timeout: float = 2.0,
        engine_options: Mapping[str, Any] | None = None,
        admin: Session | None = None,
        owns_engine: bool = True,
    ) -> None:
        if organization_id is not None and admin is None:
            raise ConfigurationError("a tenant session needs the admin session that provisions it")
        self._engine = engine
        self.url = url
        self.organization_id = organization_id
        self.user_id = user_id
        self._replicas = replicas
        self.read_your_writes = read_your_writes
        self.replica_wait_timeout = replica_wait_timeout
        self._engine_options = dict(engine_options or {})
        self._admin = admin
        self._owns_engine = owns_engine
        self._lock = threading.Lock()
        self._logins: dict[tuple[str, str | None], _Login] = {}
        # a session dropped without close() (a notebook rebinding `client`) closes its pools
        # when collected, or at exit, instead of leaving open connections to the collector
        owned = (engine, replicas) if owns_engine else (None, None)
        weakref.finalize(self, _close_pools, self._lock, self._logins, *owned)

    def __repr__(self) -> str:
        scope = f" organization_id={self.organization_id!r}" if self.organization_id else ""
        user = f" user_id={self.user_id!r}" if self.user_id else ""
        return f"<flowscope session {_db.describe_host(self.url)}{scope}{user}>"

    # -- identity ------------------------------------------------------------------------
    @property
    def is_tenant(self) -> bool:
        """True when this session logs in as an organization's own role."""
        return self.organization_id is not None

    def _login(self) -> _Login:
        assert self._admin is not None and self.organization_id is not None
        return self._admin._provision(self.organization_id, self.user_id)

    @property
    def engine(self) -> Engine:
        """The engine (pool) of this session's login on the primary."""
        if self._engine is None:
            return self._login().engine
        return self._engine

    @property
    def replicas(self) -> _db.ReplicaSet | None:
        """This login's read replicas (None without replicas)."""
        if self._engine is None and self._admin is not None and self._admin._replicas is not None:
            return self._login().replicas
        return self._replicas

    @property
    def login_url(self) -> str:
        """The URL this session logs in with (a tenant's carries its role and password)."""
        return self._login().url if self.is_tenant else self.url

    @property
    def statement_timeout(self) -> float | None:
        """Seconds a statement may run (None: no limit)."""
        admin = self._admin if self._admin is not None else self
        value = admin._engine_options.get("statement_timeout")
        return float(value) if value is not None else None

    @property
    def deadline(self) -> float | None:
        """The client's deadline in seconds (:mod:`flowscope._deadline`; None: none)."""
        admin = self._admin if self._admin is not None else self
        value = admin._engine_options.get("deadline")
        return float(value) if value is not None else None

    @property
    def role(self) -> str | None:
        """The PostgreSQL login role of a tenant session (None for an admin session)."""
        return self._login().role if self.is_tenant else None

    def _provision(self, organization_id: str, user_id: str | None) -> _Login:
        """The (cached) login of a tenant identity; created in the database on first use."""
        if self._admin is not None:
            return self._admin._provision(organization_id, user_id)
        key = (organization_id, user_id)
        with self._lock:
            login = self._logins.get(key)
            if login is not None:
                return login
            stmt = sa.text(
                "SELECT role_name, login_secret FROM flowscope_provision_identity(:o, :u)"
            )

            def provision() -> tuple[str, str]:
                with _db.translating(self.url), self.engine.begin() as conn:
                    row = conn.execute(stmt, {"o": organization_id, "u": user_id}).one()
                return str(row[0]), str(row[1])

            try:
                # its GRANTs and REVOKEs touch the catalog rows of every table: a REFRESH or
                # another process's provisioning at the same moment can deadlock with them
                role, secret = _db.retry_transient(provision)
            except PermissionDeniedError as exc:
                if "create role" in str(exc).lower():
                    raise PermissionDeniedError(
                        "provisioning a tenant login needs an admin connection whose role has"
                        f" CREATEROLE ({exc})"
                    ) from exc
                raise
            url = make_url(self.url).set(username=role, password=secret)
            login_url = url.render_as_string(hide_password=False)
            options = dict(self._engine_options)
            engine = _db.create_engine(login_url, **options)
            replicas = None
            if self._replicas is not None:
                replica_urls = tuple(
                    make_url(u).set(username=role, password=secret).render_as_string(False)
                    for u in self._replicas.urls
                )
                replicas = _db.ReplicaSet(
                    replica_urls, retry_after=self._replicas.retry_after, **options
                )
            login = _Login(role, login_url, engine, replicas)
            self._logins[key] = login
            return login

    def forget_logins(self, organization_id: str | None = None) -> None:
        """Close and forget the pools of an organization's logins (None: every
        organization's), before their roles go; they are provisioned again on next use.

        Example:
            >>> admin = session_of(client)
            >>> admin.scoped("org_demo_acme").sql("SELECT count(*) AS n FROM organizations")
            [{'n': 1}]
            >>> admin.forget_logins("org_demo_acme")   # the next use opens a new pool
        """
        admin = self._admin if self._admin is not None else self
        with admin._lock:
            gone = [k for k in admin._logins if organization_id in (None, k[0])]
            logins = [admin._logins.pop(k) for k in gone]
        for login in logins:
            login.engine.dispose()
            if login.replicas is not None:
                login.replicas.dispose()

    def scoped(self, organization_id: str, user_id: str | None = None) -> Session:
        """A tenant session of ``organization_id`` (acting as ``user_id``), logging in as its role.

        The role is created on first use (by this session, which must be an admin
        one, or the admin session behind it) and its pool is shared by every session
        of the same identity.

        Example:
            >>> acme = session_of(client).scoped("org_demo_acme", user_id="usr_demo_bruno")
            >>> acme.is_tenant, acme.role
            (True, 'fs_...')
        """
        if not organization_id or not isinstance(organization_id, str):
            raise ConfigurationError("scoped() needs an organization id (a non-empty string)")
        if user_id is not None and not isinstance(user_id, str):
            raise ConfigurationError("user_id must be a string")
        admin = self._admin if self._admin is not None else self
        return Session(
            None,
            url=self.url,
            organization_id=organization_id,
            user_id=user_id,
            read_your_writes=self.read_your_writes,
            replica_wait_timeout=self.replica_wait_timeout,
            admin=admin,
            owns_engine=False,
        )

    def admin_transaction(self) -> contextlib.AbstractContextManager[Connection]:
        """A transaction on the admin login behind this session, for flowscope's own
        fixed statements that a tenant's privileges do not cover (password checks).

        Never runs SQL from the caller. Example:
            >>> acme = session_of(client).scoped("org_demo_acme", user_id="usr_demo_bruno")
            >>> with acme.admin_transaction() as conn:     # the admin login, not the tenant's
            ...     conn.execute(sa.text("SELECT count(*) FROM organizations")).scalar()
            3
        """
        admin = self._admin if self._admin is not None else self
        return admin.transaction()

    # -- transactions --------------------------------------------------------------------
    def _key(self) -> tuple[Any, ...]:
        return (id(self._admin or self), self.organization_id, self.user_id)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection inside one transaction on the primary, as this session's identity.

        Commits on success, rolls back on error; driver errors come out as
        :class:`flowscope.FlowscopeError` subclasses. Inside an open transaction of the
        same identity (same thread) it joins as a ``SAVEPOINT``.

        Example:
            >>> session = session_of(client)
            >>> with session.transaction() as conn:
            ...     with session.transaction() as inner:     # joins as a SAVEPOINT
            ...         inner is conn
            True
        """
        current = _WRITE_TX.get()
        key = self._key()
        if current is not None and current[0] == key:
            conn = current[1]
            with _db.translating(self.url), conn.begin_nested():
                try:
                    yield conn
                except BaseException as exc:
                    _db.discard_if_busy(conn, exc)
                    raise
            return
        with _db.translating(self.url):
            engine = self.engine
            with engine.connect() as conn:
                tx = conn.begin()
                written: list[str] = []
                try:
                    self._apply_actor(conn)
                    token = _WRITE_TX.set((key, conn))
                    tokens = _WRITTEN.set(written)
                    try:
                        yield conn
                    except BaseException as exc:
                        _db.discard_if_busy(conn, exc)
                        raise
                    finally:
                        _WRITTEN.reset(tokens)
                        _WRITE_TX.reset(token)
                except BaseException:
                    if tx.is_active:
                        tx.rollback()
                    raise
                _db.commit(tx, self.url, written)
                replicas = self.replicas
                if replicas is not None:
                    # where the primary's WAL stands after this commit: reads that must see
                    # this write wait until a replica has replayed up to here
                    replicas.note_write(_db.current_wal_lsn(conn))
                    conn.rollback()

    def _apply_actor(self, conn: Connection) -> None:
        # An admin login names its acting user for the audit log; a tenant's actor is its
        # identity (the audit trigger ignores this setting for tenant logins).
        if not self.is_tenant and self.user_id is not None:
            conn.execute(
                sa.text("SELECT set_config('flowscope.user_id', :u, true)"), {"u": self.user_id}
            )

    @contextlib.contextmanager
    def read_transaction(
        self, *, read_your_writes: bool | None = None, timeout: float | None = None
    ) -> Iterator[Connection]:
        """A READ ONLY transaction on a read replica when there is one (see
        :meth:`flowscope.Client.read_transaction` for the routing rules).

        Example:
            >>> with session_of(client).read_transaction() as conn:
            ...     conn.execute(sa.text("SELECT count(*) FROM executions")).scalar()
            2000
        """
        current = _WRITE_TX.get()
        if current is not None and current[0] == self._key():
            yield current[1]
            return
        wanted = self.read_your_writes if read_your_writes is None else read_your_writes
        wait = self.replica_wait_timeout if timeout is None else timeout
        if wait < 0:
            raise ConfigurationError("timeout must be >= 0 seconds")
        with _db.translating(self.url):
            conn = self._read_connection(wanted, wait, inside_write=current is not None)
            with conn, conn.begin():
                conn.execute(sa.text("SET TRANSACTION READ ONLY"))
                self._apply_actor(conn)
                yield conn

    def _read_connection(
        self, read_your_writes: bool, wait: float, *, inside_write: bool
    ) -> Connection:
        replicas = self.replicas
        if replicas is None or inside_write:
            return self.engine.connect()
        target = replicas.last_write_lsn if read_your_writes else None
        for index in replicas.candidates():
            try:
                conn = replicas.engines[index].connect()
                if target is None:
                    return conn
                try:
                    caught_up = _wait_for_replay(conn, target, wait)
                except BaseException:
                    conn.close()
                    raise
            except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
                replicas.mark_down(index)
                first = (str(getattr(exc, "orig", exc)).strip().splitlines() or [""])[0]
                warnings.warn(
                    ReplicaUnavailableWarning(
                        f"read replica {_db.describe_host(replicas.urls[index])} is unreachable"
                        f" ({first}); skipping it for {replicas.retry_after:g} s,"
                        " reading from another replica or the primary"
                    ),
                    stacklevel=5,
                )
                continue
            if caught_up:
                return conn
            conn.close()
            break  # lagging behind our write: the primary has it
        return self.engine.connect()

    # -- scopes --------------------------------------------------------------------------
    def require(self, scope: str, *, self_service: str | None = None) -> None:
        """Raise PermissionDeniedError unless the acting user may do a ``scope`` action.

        A friendly early check: PostgreSQL enforces the same rule for a tenant login
        (its privileges are its scopes). A session without a ``user_id`` acts as an
        administrator (a tenant one within its organization). ``self_service``: the
        target user id; users may act on their own account.

        Example:
            >>> bruno = session_of(client).scoped("org_demo_acme", user_id="usr_demo_bruno")
            >>> bruno.require(READ)
            >>> bruno.require(ADMIN)
            Traceback (most recent call last):
            ...
            flowscope.errors.PermissionDeniedError: user 'usr_demo_bruno' lacks the scope 'admin'
        """
        user_id = self.user_id
        if user_id is None:
            if self.is_tenant:
                self._login()  # provisioning refuses an unknown organization
            return
        from .models import USERS

        u = USERS.c
        stmt = sa.select(u.is_admin, u.scopes, u.is_active, u.organization_id).where(
            u.id == user_id, u.deleted_at.is_(None)
        )
        try:
            with _db.translating(self.url), self.engine.connect() as conn:
                row = conn.execute(stmt).first()
                conn.rollback()
        except PermissionDeniedError:
            row = None  # a tenant login whose user lost every privilege
        if row is None or row.is_active is False:
            raise PermissionDeniedError(f"acting user {user_id!r} is unknown, deleted or inactive")
        scopes = set(row.scopes or [])
        if self.organization_id is not None and row.organization_id not in (
            None,
            self.organization_id,
        ):
            raise PermissionDeniedError(
                f"user {user_id!r} does not belong to organization {self.organization_id!r}"
            )
        if row.is_admin or ADMIN in scopes:
            return
        if self_service is not None and self_service == user_id:
            return
        if scope not in scopes and WIDER.get(scope) not in scopes:
            raise PermissionDeniedError(f"user {user_id!r} lacks the scope {scope!r}")

    # -- raw SQL -------------------------------------------------------------------------
    def sql(
        self, statement: str | sa.Executable, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Run one SQL statement as this session's identity; rows as dicts.

        A tenant's statement runs with its login's privileges and row-level security:
        there is no text guard to get past, and nothing it does outlives its
        transaction (settings and session state are discarded when the connection
        goes back to the pool). It is sent as one prepared statement, so a text with
        several statements is refused by the server.

        Example:
            >>> session_of(client).sql("SELECT count(*) AS n FROM workflows")
            [{'n': 200}]
        """
        if not isinstance(statement, str | sa.sql.expression.Executable):
            from .errors import ValidationError

            raise ValidationError("statement must be a SQL string or a SQLAlchemy statement")
        if params is not None and not isinstance(params, Mapping):
            from .errors import ValidationError

            raise ValidationError("params must be a mapping of names to values")
        stmt = sa.text(statement) if isinstance(statement, str) else statement
        with self.transaction() as conn:
            if not self.is_tenant:
                result = conn.execute(stmt, dict(params or {}))
                if not result.returns_rows:
                    return []
                return [dict(row) for row in result.mappings()]
            compiled = stmt.compile(dialect=conn.dialect)  # type: ignore[attr-defined]
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(
                    str(compiled), compiled.construct_params(dict(params or {})), prepare=True
                )
                rows: list[dict[str, Any]] = []
                if cursor.description is not None:
                    names = [column.name for column in cursor.description]
                    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            finally:
                cursor.close()
            return rows

    # -- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        """Close the pools this session owns (an admin session: its tenants' too)."""
        owned = (self._engine, self._replicas) if self._owns_engine else (None, None)
        _close_pools(self._lock, self._logins, *owned)


def _close_pools(
    lock: threading.Lock,
    logins: dict[tuple[str, str | None], _Login],
    engine: Engine | None,
    replicas: _db.ReplicaSet | None,
) -> None:
    """Dispose a session's pools: its tenants' logins, then its own engine and replicas."""
    with lock:
        gone = list(logins.values())
        logins.clear()
    for login in gone:
        login.engine.dispose()
        if login.replicas is not None:
            login.replicas.dispose()
    if engine is not None:
        engine.dispose()
        if replicas is not None:
            replicas.dispose()


def session_of(client: Any) -> Session:
    """The session behind a :class:`flowscope.Client` (or a session itself).

    The free functions (``flowscope.read_arrow(client, ...)``, ``ingest``) take the
    public client; the layers below work on its session.

    Example:
        >>> session_of(object())
        Traceback (most recent call last):
        ...
        flowscope.errors.ValidationError: expected a flowscope.Client, got object
    """
    if isinstance(client, Session):
        return client
    session = getattr(client, "_session", None)
    if isinstance(session, Session):
        return session
    from .errors import ValidationError

    raise ValidationError(f"expected a flowscope.Client, got {type(client).__name__}")


def _wait_for_replay(conn: Connection, lsn: int, timeout: float) -> bool:
    """Poll the replica behind ``conn`` until it has replayed ``lsn`` or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        done = _db.replica_caught_up(conn, lsn)
        conn.rollback()
        if done:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(pause, max(deadline - time.monotonic(), 0)))
        pause = min(pause * 2, 0.1)
