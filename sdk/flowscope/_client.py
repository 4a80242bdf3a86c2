"""The client object returned by :func:`flowscope.connect`."""

from __future__ import annotations

import contextlib
import contextvars
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from . import _db, _migrate, _settings
from .errors import ConfigurationError, ReplicaUnavailableWarning

if TYPE_CHECKING:
    from ._maintenance import Maintenance
    from ._resources.audit import Audit
    from ._resources.executions import Executions
    from ._resources.organizations import Organizations
    from ._resources.users import Users
    from ._resources.workflows import Workflows
    from ._retention import Retention
    from .analytics import Analytics
    from .export import Export

__all__ = ["Client", "connect"]

# The write transaction open in this thread/task: (engine, organization_id, user_id, connection).
# Reads inside it run on that same connection, so they see its uncommitted writes.
_WRITE_TX: contextvars.ContextVar[tuple[Engine, str | None, str | None, Connection] | None] = (
    contextvars.ContextVar("flowscope_write_transaction", default=None)
)


class Client:
    """A connection to a flowscope database: resources for CRUD, analytics and export.

    Create one with :func:`flowscope.connect`. A client owns a SQLAlchemy engine
    (a connection pool); it is safe to share between threads. A *scoped* client
    (``organization_id=...``) runs every transaction as the ``flowscope_tenant``
    role with the organization set transaction-locally, so PostgreSQL's
    row-level security confines it to that organization's rows.

    Example:
        >>> import flowscope
        >>> client = flowscope.connect()            # doctest: +SKIP
        >>> client.workflows.count()                # doctest: +SKIP
        0
        >>> acme = client.scoped("org_acme", user_id="usr_alice")  # doctest: +SKIP
    """

    def __init__(
        self,
        engine: Engine,
        *,
        url: str,
        organization_id: str | None = None,
        user_id: str | None = None,
        embedded: bool = False,
        replicas: _db.ReplicaSet | None = None,
        read_your_writes: bool = False,
        replica_wait_timeout: float = 2.0,
        _owns_engine: bool = True,
    ) -> None:
        self._engine = engine
        self.url = url
        self.organization_id = organization_id
        self.user_id = user_id
        self.embedded = embedded
        self._replicas = replicas
        self.read_your_writes = read_your_writes
        self.replica_wait_timeout = replica_wait_timeout
        self._owns_engine = _owns_engine

    # -- connections -----------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (primary). Prefer the resources; this is for advanced use."""
        return self._engine

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection inside one transaction, with this client's scope applied.

        Commits on success, rolls back on error; driver errors come out as
        :class:`flowscope.FlowscopeError` subclasses.

        Transactions nest: inside a :meth:`transaction` of this client (same thread,
        same scope) every write, resource calls included (``create``, ``update``,
        ``ingest``...), joins the open transaction as a ``SAVEPOINT``. Everything
        commits together when the outermost block ends; an error inside an inner
        block undoes that block only, and propagates.

        Example:
            >>> with client.transaction() as conn:                     # doctest: +SKIP
            ...     conn.execute(sa.text("SELECT count(*) FROM workflows")).scalar()
            0
            >>> with client.transaction():                             # doctest: +SKIP
            ...     wf = client.workflows.create(name="nightly", nodes=[], edges=[])
            ...     client.executions.ingest([{"workflow_id": wf.id}])  # both or neither
        """
        current = _WRITE_TX.get()
        if current is not None and current[:3] == (
            self._engine,
            self.organization_id,
            self.user_id,
        ):
            conn = current[3]
            with _db.translating(self.url), conn.begin_nested():
                yield conn
            return
        with _db.translating(self.url), self._engine.connect() as conn:
            with conn.begin():
                _db.apply_scope(conn, self.organization_id, self.user_id)
                token = _WRITE_TX.set((self._engine, self.organization_id, self.user_id, conn))
                try:
                    yield conn
                finally:
                    _WRITE_TX.reset(token)
            if self._replicas is not None:
                # where the primary's WAL stands after this commit: reads that must see
                # this write wait until a replica has replayed up to here
                self._replicas.note_write(_db.current_wal_lsn(conn))
                conn.rollback()

    @property
    def read_urls(self) -> tuple[str, ...]:
        """The read replicas' URLs (empty without replicas)."""
        return self._replicas.urls if self._replicas is not None else ()

    @contextlib.contextmanager
    def read_transaction(
        self, *, read_your_writes: bool | None = None, timeout: float | None = None
    ) -> Iterator[Connection]:
        """A READ ONLY transaction on a read replica when there is one, with this client's scope.

        Use it for every query that only reads and may see data a moment old:
        analytics, exports, ``list()``/``count()``. Writes, and reads that must see
        a write just made, use :meth:`transaction` (the primary).

        Routing, in order:

        1. Inside a :meth:`transaction` of this client (same thread, same scope):
           that transaction's own connection, on the primary, so the read sees
           the transaction's uncommitted writes.
        2. No replicas configured (``read_url`` / ``FLOWSCOPE_READ_URL``): the primary.
        3. A replica, round-robin. With ``read_your_writes`` (this argument, or
           the client's default from :func:`connect`) and a write made earlier by
           this client (or one sharing its pool), the replica must first replay
           the primary's WAL up to the position recorded after that write
           (``pg_last_wal_replay_lsn() >=`` ``pg_current_wal_insert_lsn()`` captured at
           commit); it is polled for up to ``timeout`` seconds (default: the
           client's ``replica_wait_timeout``; ``0`` = do not wait) and the read
           goes to the primary if it has not caught up by then.
        4. A replica that cannot be reached is skipped for 30 seconds, with a
           :class:`flowscope.ReplicaUnavailableWarning`; when none is left the read
           goes to the primary.

        The transaction is ``READ ONLY`` wherever it runs (a write raises
        :class:`flowscope.DatabaseError` even on the primary), and the tenancy
        settings (role, organization, user) are applied on the replica exactly as
        on the primary, so row-level security confines a scoped client there too.

        Example:
            >>> client = flowscope.connect(primary_url, read_url=[replica_a, replica_b])  # doctest: +SKIP
            >>> with client.read_transaction() as conn:                          # doctest: +SKIP
            ...     conn.execute(sa.select(sa.func.count()).select_from(EXECUTIONS)).scalar()
            1200
            >>> client.workflows.create(...)                                     # doctest: +SKIP
            >>> with client.read_transaction(read_your_writes=True) as conn:     # doctest: +SKIP
            ...     ...   # sees the workflow just created
        """
        current = _WRITE_TX.get()
        if current is not None and current[:3] == (
            self._engine,
            self.organization_id,
            self.user_id,
        ):
            yield current[3]
            return
        wanted = self.read_your_writes if read_your_writes is None else read_your_writes
        wait = self.replica_wait_timeout if timeout is None else timeout
        if wait < 0:
            raise ConfigurationError("timeout must be >= 0 seconds")
        with _db.translating(self.url):
            conn = self._read_connection(wanted, wait, inside_write=current is not None)
            with conn, conn.begin():
                conn.execute(sa.text("SET TRANSACTION READ ONLY"))
                _db.apply_scope(conn, self.organization_id, self.user_id)
                yield conn

    def _read_connection(
        self, read_your_writes: bool, wait: float, *, inside_write: bool
    ) -> Connection:
        replicas = self._replicas
        if replicas is None or inside_write:
            return self._engine.connect()
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
                    stacklevel=4,
                )
                continue
            if caught_up:
                return conn
            conn.close()
            break  # lagging behind our write: the primary has it
        return self._engine.connect()

    def sql(
        self, statement: str | sa.Executable, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Run one SQL statement in this client's scope and return the rows as dicts.

        Values go in ``params`` as bound parameters (``:name``), never formatted
        into the text. Row-level security applies to a scoped client's SQL too:
        each call is one transaction running as the tenant role, its text is sent
        as a single prepared statement (so it cannot ``RESET ROLE`` first), it may
        not mention roles, ``set_config`` or utility statements
        (:class:`PermissionDeniedError`), and the role and organization are
        re-checked before any row is returned.

        Example:
            >>> client.sql("SELECT count(*) AS n FROM workflows WHERE owner = :o", {"o": "ana"})  # doctest: +SKIP
            [{'n': 3}]
        """
        stmt = sa.text(statement) if isinstance(statement, str) else statement
        if self.organization_id is not None:
            _db.guard_tenant_sql(
                statement if isinstance(statement, str) else str(stmt.compile(self._engine))  # type: ignore[attr-defined]
            )
        with self.transaction() as conn:
            if self.organization_id is None:
                result = conn.execute(stmt, dict(params or {}))
                if not result.returns_rows:
                    return []
                return [dict(row) for row in result.mappings()]
            # Scoped: send it as ONE prepared statement (extended protocol), so a text such as
            # "RESET ROLE; SELECT ..." is refused by the server instead of leaving the tenant role.
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
            # a function call could still have changed role or organization mid-statement
            _db.verify_scope(conn, self.organization_id)
            return rows

    def scoped(self, organization_id: str, user_id: str | None = None) -> Client:
        """A client sharing this one's pool, confined to one organization by RLS.

        Example:
            >>> acme = client.scoped("org_acme", user_id="usr_alice")  # doctest: +SKIP
            >>> acme.workflows.count()   # only org_acme's workflows   # doctest: +SKIP
            12
        """
        if not organization_id or not isinstance(organization_id, str):
            raise ConfigurationError("scoped() needs an organization id (a non-empty string)")
        return type(self)(
            self._engine,
            url=self.url,
            organization_id=organization_id,
            user_id=user_id if user_id is not None else self.user_id,
            embedded=self.embedded,
            replicas=self._replicas,
            read_your_writes=self.read_your_writes,
            replica_wait_timeout=self.replica_wait_timeout,
            _owns_engine=False,
        )

    def close(self) -> None:
        """Close the connection pools (a scoped client leaves its parent's pools open)."""
        if self._owns_engine:
            self._engine.dispose()
            if self._replicas is not None:
                self._replicas.dispose()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "embedded" if self.embedded else _db.describe_host(self.url)
        scope = f", organization_id={self.organization_id!r}" if self.organization_id else ""
        reads = f", replicas={len(self._replicas)}" if self._replicas is not None else ""
        return f"<flowscope.Client {where}{scope}{reads}>"

    # -- resources -------------------------------------------------------------------
    @cached_property
    def workflows(self) -> Workflows:
        """Workflows: CRUD, list/count with :class:`WorkflowFilter`, soft delete."""
        from ._resources.workflows import Workflows

        return Workflows(self)

    @cached_property
    def executions(self) -> Executions:
        """Executions: CRUD and the lifecycle (start, complete, fail, cancel, time_out)."""
        from ._resources.executions import Executions

        return Executions(self)

    @cached_property
    def users(self) -> Users:
        """Users: accounts, argon2id passwords, authentication with lockout, scopes."""
        from ._resources.users import Users

        return Users(self)

    @cached_property
    def organizations(self) -> Organizations:
        """Organizations (tenants)."""
        from ._resources.organizations import Organizations

        return Organizations(self)

    @cached_property
    def audit(self) -> Audit:
        """The audit log: who changed what, when."""
        from ._resources.audit import Audit

        return Audit(self)

    @cached_property
    def analytics(self) -> Analytics:
        """Analytics computed in PostgreSQL, as typed pandas DataFrames (durations, statuses, tags…)."""
        from .analytics import Analytics

        return Analytics(self)

    @cached_property
    def maintenance(self) -> Maintenance:
        """Housekeeping: audit-log partitions ahead and past retention (admin client)."""
        from ._maintenance import Maintenance

        return Maintenance(self)

    @cached_property
    def retention(self) -> Retention:
        """Retention: archive old rows to Parquet, then delete them (``prune``)."""
        from ._retention import Retention

        return Retention(self)

    @cached_property
    def export(self) -> Export:
        """Parquet export: ``client.export.parquet("executions", "runs.parquet", status="failed")``."""
        from .export import Export

        return Export(self)


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


def connect(
    url: str | None = None,
    *,
    read_url: str | Sequence[str] | None = None,
    read_your_writes: bool = False,
    replica_wait_timeout: float = 2.0,
    organization_id: str | None = None,
    user_id: str | None = None,
    migrate: bool | None = None,
    data_dir: str | Path | None = None,
    echo: bool = False,
    pool_size: int = 5,
) -> Client:
    """Connect to a flowscope database and return a :class:`Client`.

    Args:
        url: a SQLAlchemy/libpq URL such as ``postgresql://user@host:5432/db``
            (the psycopg 3 driver is used). Defaults to ``FLOWSCOPE_DATABASE_URL``;
            with neither, flowscope starts (or reuses) its embedded PostgreSQL in
            ``FLOWSCOPE_DATA_DIR`` or the user data directory.
        organization_id: confine the client to one organization (row-level security).
        user_id: the acting user, recorded in the audit log.
        migrate: bring the schema to the latest revision. Default: True for the
            embedded database, False for a server, where an out-of-date schema
            raises :class:`SchemaOutOfDateError` naming ``flowscope db upgrade``.
        data_dir: where the embedded database lives (overrides ``FLOWSCOPE_DATA_DIR``).
        echo: log SQL statements (SQLAlchemy's ``echo``).
        pool_size: connections kept in the pool.

    Raises:
        ConnectionFailedError: the server cannot be reached (the message names the host).
        SchemaOutOfDateError: the schema is not at the latest revision and ``migrate`` is off.

    Example:
        >>> import flowscope
        >>> client = flowscope.connect()                      # embedded  # doctest: +SKIP
        >>> client = flowscope.connect("postgresql://me@db.internal:5432/orchestrator")  # doctest: +SKIP
    """
    settings = _settings.load()
    embedded = False
    if url is None:
        url = settings.database_url
    if url is None:
        from . import _embedded

        root = Path(data_dir).expanduser() if data_dir is not None else settings.data_dir
        url = _embedded.ensure_database(root)
        embedded = True
    url = _db.normalize_url(url)
    if isinstance(read_url, str):
        read_urls: tuple[str, ...] = (read_url,)
    elif read_url is not None:
        read_urls = tuple(read_url)
    else:
        read_urls = settings.read_urls
    if replica_wait_timeout < 0:
        raise ConfigurationError("replica_wait_timeout must be >= 0 seconds")
    replicas = _db.ReplicaSet(read_urls, echo=echo, pool_size=pool_size) if read_urls else None
    engine = _db.create_engine(url, echo=echo, pool_size=pool_size)
    do_migrate = embedded if migrate is None else migrate
    with _db.translating(url):
        try:
            with engine.connect() as conn:
                _migrate.ensure_current(conn, _db.describe_host(url), migrate=do_migrate)
        except BaseException:
            engine.dispose()
            if replicas is not None:
                replicas.dispose()
            raise
    client = Client(
        engine,
        url=url,
        embedded=embedded,
        replicas=replicas,
        read_your_writes=read_your_writes,
        replica_wait_timeout=replica_wait_timeout,
    )
    if organization_id is not None:
        scoped = client.scoped(organization_id, user_id)
        scoped._owns_engine = True
        return scoped
    client.user_id = user_id
    return client
