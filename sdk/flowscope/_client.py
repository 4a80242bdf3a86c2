"""The client object returned by :func:`flowscope.connect`: it assembles the parts.

Connections, transactions, replica routing, tenancy and scope checks live in the
session layer (:mod:`flowscope._session`); the resources, analytics, export,
retention and maintenance are built on a session and never import this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import _db, _deadline, _migrate, _settings
from ._boundary import Guarded, boundary
from ._session import Session
from .errors import ConfigurationError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from ._maintenance import Maintenance
    from ._resources.audit import Audit
    from ._resources.executions import Executions
    from ._resources.organizations import Organizations
    from ._resources.users import Users
    from ._resources.workflows import Workflows
    from ._retention import Retention
    from .analytics import Analytics
    from .export import Export
    from .lake import Lake
    from .mirror import Mirror

__all__ = ["Client", "connect"]


class Client(Guarded):
    """A connection to a flowscope database: resources for CRUD, analytics and export.

    Create one with :func:`flowscope.connect`. A client owns a SQLAlchemy engine
    (a connection pool); it is safe to share between threads. A *scoped* client
    (``organization_id=...``) logs in as its organization's own PostgreSQL role,
    so row-level security and the role's privileges (its user's scopes) confine
    it, whatever SQL it runs (README: *Tenancy and threat model*).

    Example:
        >>> import flowscope
        >>> client = flowscope.connect(url)     # "postgresql://me@db.internal:5432/orchestrator"
        >>> client.organizations.count()
        3
        >>> acme = client.scoped("org_demo_acme", user_id="usr_demo_bruno")
        >>> acme.organizations.count()          # row-level security: its own organization
        1
        >>> client.close()
    """

    # the caller's own block runs inside these: what it raises is the caller's
    _unguarded = frozenset({"transaction", "read_transaction"})

    def __init__(
        self,
        session: Session,
        *,
        embedded: bool = False,
        owner: Session | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self._session = session
        self.embedded = embedded
        self._owner = owner  # the admin session a connect(organization_id=...) made
        self._data_dir = data_dir  # the embedded server's; None: FLOWSCOPE_DATA_DIR's

    # -- the session's identity, for reading ----------------------------------------------
    @property
    def url(self) -> str:
        """The database URL this client was given (the admin login's, for a scoped client)."""
        return self._session.url

    @property
    def organization_id(self) -> str | None:
        """The organization a scoped client is confined to (None: not scoped)."""
        return self._session.organization_id

    @property
    def user_id(self) -> str | None:
        """The acting user (scopes, audit actor), or None."""
        return self._session.user_id

    @property
    def read_your_writes(self) -> bool:
        """Whether replica reads wait for this client's writes by default."""
        return self._session.read_your_writes

    @property
    def replica_wait_timeout(self) -> float:
        """Seconds a read-your-writes read waits for a replica before using the primary."""
        return self._session.replica_wait_timeout

    # -- connections -----------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (primary) of this client's login. Prefer the resources."""
        return self._session.engine

    @property
    def role(self) -> str | None:
        """The PostgreSQL login role of a scoped client (None for an admin client).

        Example:
            >>> client.role is None
            True
            >>> client.scoped("org_demo_acme").role
            'fs_...'
        """
        return self._session.role

    def transaction(self) -> contextlib.AbstractContextManager[Connection]:
        """A connection inside one transaction, as this client's identity.

        Commits on success, rolls back on error; driver errors come out as
        :class:`flowscope.FlowscopeError` subclasses.

        Transactions nest: inside a :meth:`transaction` of this client (same thread,
        same identity) every write, resource calls included (``create``, ``update``,
        ``ingest``...), joins the open transaction as a ``SAVEPOINT``. Everything
        commits together when the outermost block ends; an error inside an inner
        block undoes that block only, and propagates.

        Example:
            >>> with client.transaction() as conn:
            ...     conn.execute(sa.text("SELECT count(*) FROM organizations")).scalar()
            3
            >>> with client.transaction():      # both or neither
            ...     wf = client.workflows.create(name="nightly", owner="usr_demo_ana",
            ...                                  organization_id="org_demo_acme", nodes=[], edges=[])
            ...     client.executions.ingest([{"workflow_id": wf.id}]).rows
            1
            >>> try:
            ...     with client.transaction():
            ...         wf = client.workflows.create(name="doomed", owner="usr_demo_ana",
            ...                                      organization_id="org_demo_acme", nodes=[], edges=[])
            ...         raise RuntimeError("changed my mind")
            ... except RuntimeError:
            ...     pass
            >>> client.workflows.count(search="doomed")    # rolled back
            0
        """
        return self._session.transaction()

    @property
    def read_urls(self) -> tuple[str, ...]:
        """The read replicas' URLs (empty without replicas)."""
        replicas = self._session.replicas
        return replicas.urls if replicas is not None else ()

    def read_transaction(
        self, *, read_your_writes: bool | None = None, timeout: float | None = None
    ) -> contextlib.AbstractContextManager[Connection]:
        """A READ ONLY transaction on a read replica when there is one, as this client's identity.

        Use it for every query that only reads and may see data a moment old:
        analytics, exports, ``list()``/``count()``. Writes, and reads that must see
        a write just made, use :meth:`transaction` (the primary).

        Routing, in order:

        1. Inside a :meth:`transaction` of this client (same thread, same identity):
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
        :class:`flowscope.DatabaseError` even on the primary). A scoped client logs in
        to the replica as its own role too, so row-level security confines it there.

        Example (``client = flowscope.connect(primary_url, read_url=[replica_a, replica_b])``
        reads from the replicas; this client has none, so it reads from the primary):

            >>> with client.read_transaction() as conn:
            ...     conn.execute(sa.text("SELECT count(*) FROM executions WHERE status = 'failed'")).scalar()
            93
            >>> wf = client.workflows.create(name="weekly", owner="usr_demo_ana",
            ...                              organization_id="org_demo_acme", nodes=[], edges=[])
            >>> with client.read_transaction(read_your_writes=True) as conn:   # waits for the replay
            ...     conn.execute(sa.text("SELECT name FROM workflows WHERE id = :id"), {"id": wf.id}).scalar()
            'weekly'
        """
        return self._session.read_transaction(read_your_writes=read_your_writes, timeout=timeout)

    def sql(
        self, statement: str | sa.Executable, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Run one SQL statement as this client's identity and return the rows as dicts.

        Values go in ``params`` as bound parameters (``:name``), never formatted
        into the text. A scoped client's SQL runs as its organization's own login
        role: row-level security and the role's privileges (its user's scopes)
        decide what it reads and writes, whatever the statement does, and nothing
        it changes on the session outlives the call.

        Example:
            >>> client.sql("SELECT count(*) AS n FROM workflows WHERE owner = :o", {"o": "usr_demo_bruno"})
            [{'n': 28}]
        """
        return self._session.sql(statement, params)

    def query(
        self, statement: str | sa.Select[Any], params: Mapping[str, Any] | None = None
    ) -> pd.DataFrame:
        """Run a query as this client's identity and return a typed pandas DataFrame.

        The analyst's own SQL with the column contract of every flowscope frame:
        tz-aware UTC timestamps, nullable integers (``Int64``), Arrow-backed strings,
        decimals, lists and JSON, streamed through Arrow (so memory follows the
        result, not Python objects per value). Values go in ``params`` (``:name``).
        For statements that change data, use :meth:`sql`.

        Example:
            >>> df = client.query(
            ...     "SELECT workflow_id, count(*) AS runs, max(completed_at) AS last"
            ...     " FROM executions WHERE status = :s GROUP BY 1 ORDER BY 2 DESC, 1", {"s": "failed"})
            >>> df.shape
            (35, 3)
            >>> df.dtypes["runs"], df.dtypes["last"]
            (Int64Dtype(), datetime64[us, UTC])
            >>> df["workflow_id"].head(3).tolist(), df["runs"].head(3).tolist()
            (['wf_demo_0001', 'wf_demo_0008', 'wf_demo_0075'], [28, 6, 5])
        """
        from .export import query_arrow, to_pandas

        return to_pandas(query_arrow(self._session, statement, params))

    def query_arrow(
        self, statement: str | sa.Select[Any], params: Mapping[str, Any] | None = None
    ) -> pa.Table:
        """Like :meth:`query`, as a ``pyarrow.Table`` (:meth:`query_polars` hands it to polars
        without a copy).

        Example:
            >>> table = client.query_arrow("SELECT id, tags FROM workflows ORDER BY id LIMIT 3")
            >>> table.num_rows, table.schema.field("tags").type
            (3, ListType(list<item: string>))
            >>> import polars as pl
            >>> pl.from_arrow(table).shape
            (3, 2)
        """
        from .export import query_arrow

        return query_arrow(self._session, statement, params)

    def query_polars(
        self, statement: str | sa.Select[Any], params: Mapping[str, Any] | None = None
    ) -> Any:
        """Like :meth:`query`, as a ``polars.DataFrame`` sharing the Arrow buffers (no copy).

        JSON(B) columns arrive as their JSON text (``pl.col(c).str.json_decode()``), so
        polars warns about no unknown Arrow extension type. Needs ``flowscope[polars]``.

        Example:
            >>> frame = client.query_polars("SELECT id, parameters FROM executions ORDER BY id LIMIT 2")
            >>> frame.shape, str(frame.schema["parameters"])
            ((2, 2), 'String')
        """
        from ._frames import to_polars
        from .export import query_arrow

        return to_polars(query_arrow(self._session, statement, params))

    def scoped(self, organization_id: str, user_id: str | None = None) -> Client:
        """A client confined to one organization, logging in as that organization's own role.

        The role (one per organization and acting user) is created on first use by
        this client's admin login, which needs ``CREATEROLE``; its privileges are the
        user's scopes, and row-level security keys on the login, so no SQL the
        scoped client runs can leave the organization. Each identity has its own
        connection pool, shared by every scoped client of that identity.

        Example:
            >>> bruno = client.scoped("org_demo_acme", user_id="usr_demo_bruno")
            >>> bruno
            <flowscope.Client ..., organization_id='org_demo_acme'>
            >>> bruno.workflows.count()     # his own and his organization's public ones
            33
            >>> client.workflows.count(owner="usr_demo_bruno")
            28
        """
        user = user_id if user_id is not None else self.user_id
        return type(self)(
            self._session.scoped(organization_id, user),
            embedded=self.embedded,
            data_dir=self._data_dir,
        )

    def mirror(self, path: str | Path | None = None) -> Mirror:
        """A local columnar copy (Parquet, queried by DuckDB) of the rows this client may read.

        ``path`` defaults to ``<data dir>/mirrors/<database>/<identity>``: one mirror per
        database and identity (a scoped client's holds its organization's rows only, and
        no other identity may open it). Call ``sync()`` to bring it up to date; its
        ``analytics`` has every method of :attr:`analytics`, answered by DuckDB
        (:mod:`flowscope.mirror`).

        Example (the default path is in the user's data directory; this one is temporary):

            >>> mirror = client.mirror(tmp_path / "mirror")
            >>> mirror.sync(progress=False)
            SyncReport(full=True, added=..., changed=0, removed=0, seconds=..., as_of=...)
            >>> mirror.analytics.durations(by="organization_id")["organization_id"].tolist()
            ['org_demo_acme', 'org_demo_globex', 'org_demo_initech']
        """
        try:
            import duckdb  # noqa: F401
        except ImportError:
            raise ConfigurationError("the mirror needs DuckDB: pip install duckdb") from None
        from .mirror import Mirror, default_path

        if path is None:
            root = self._data_dir if self._data_dir is not None else _settings.load().data_dir
            return Mirror(self._session, default_path(self._session, root))
        return Mirror(self._session, Path(path).expanduser())

    def lake(
        self,
        warehouse: str | Path | None = None,
        *,
        catalog: str | None = None,
        properties: Mapping[str, str] | None = None,
        namespace: str = "flowscope",
    ) -> Lake:
        """Apache Iceberg tables ``executions`` and ``workflows`` of the rows this client
        may read, kept in step by ``sync()`` (:mod:`flowscope.lake`).

        With only ``warehouse`` (a local path), the catalog is a pyiceberg SQL catalog on
        ``<warehouse>/catalog.db`` (SQLite): nothing to install or run. ``catalog`` (a
        name) and/or ``properties`` load the user's own pyiceberg catalog, configured as
        pyiceberg is (``.pyiceberg.yaml``, ``PYICEBERG_CATALOG__<NAME>__*`` variables):
        a SQL catalog on PostgreSQL, a REST catalog, object-store warehouses.

        Example:
            >>> lake = client.lake(tmp_path / "lake")
            >>> lake.sync(progress=False)
            SyncReport(full=True, added=..., changed=0, removed=0, seconds=..., as_of=...)
            >>> sorted(lake.catalog.list_tables("flowscope"))
            [('flowscope', 'executions'), ('flowscope', 'workflows')]
        """
        try:
            import pyiceberg  # noqa: F401
        except ImportError:
            raise ConfigurationError(
                "the lake needs pyiceberg: pip install 'flowscope[lake]'"
            ) from None
        from .lake import Lake

        return Lake(
            self._session, warehouse, catalog=catalog, properties=properties, namespace=namespace
        )

    def close(self) -> None:
        """Close the connection pools this client owns (a scoped client leaves its parent's open).

        Example:
            >>> other = flowscope.connect(url)
            >>> other.organizations.count()
            3
            >>> other.close()       # or: with flowscope.connect(url) as other: ...
        """
        self._session.close()
        if self._owner is not None:
            self._owner.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "embedded" if self.embedded else _db.describe_host(self.url)
        scope = f", organization_id={self.organization_id!r}" if self.organization_id else ""
        replicas = self._session._replicas
        reads = f", replicas={len(replicas)}" if replicas is not None else ""
        return f"<flowscope.Client {where}{scope}{reads}>"

    # -- resources -------------------------------------------------------------------
    @cached_property
    def workflows(self) -> Workflows:
        """Workflows: CRUD, list/count with :class:`WorkflowFilter`, soft delete."""
        from ._resources.workflows import Workflows

        return Workflows(self._session)

    @cached_property
    def executions(self) -> Executions:
        """Executions: CRUD and the lifecycle (start, complete, fail, cancel, time_out)."""
        from ._resources.executions import Executions

        return Executions(self._session)

    @cached_property
    def users(self) -> Users:
        """Users: accounts, argon2id passwords, authentication with lockout, scopes."""
        from ._resources.users import Users

        return Users(self._session)

    @cached_property
    def organizations(self) -> Organizations:
        """Organizations (tenants)."""
        from ._resources.organizations import Organizations

        return Organizations(self._session)

    @cached_property
    def audit(self) -> Audit:
        """The audit log: who changed what, when."""
        from ._resources.audit import Audit

        return Audit(self._session)

    @cached_property
    def analytics(self) -> Analytics:
        """Analytics computed in PostgreSQL, as typed pandas DataFrames (durations, statuses, tags…)."""
        from .analytics import Analytics

        return Analytics(self._session)

    @cached_property
    def maintenance(self) -> Maintenance:
        """Housekeeping: audit-log partitions ahead and past retention (admin client)."""
        from ._maintenance import Maintenance

        return Maintenance(self._session)

    @cached_property
    def retention(self) -> Retention:
        """Retention: archive old rows to Parquet, then delete them (``prune``)."""
        from ._retention import Retention

        return Retention(self._session)

    @cached_property
    def export(self) -> Export:
        """Parquet export: ``client.export.parquet("executions", "runs.parquet", status="failed")``."""
        from .export import Export

        return Export(self._session)


@boundary
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
    max_overflow: int = 10,
    pool_timeout: float = 30.0,
    statement_timeout: float | None = None,
    timeout: float | None = None,
) -> Client:
    """Connect to a flowscope database and return a :class:`Client`.

    Args:
        url: a SQLAlchemy/libpq URL such as ``postgresql://user@host:5432/db``
            (the psycopg 3 driver is used). Defaults to ``FLOWSCOPE_DATABASE_URL``;
            with neither, flowscope starts (or reuses) its embedded PostgreSQL in
            ``FLOWSCOPE_DATA_DIR`` or the user data directory.
        organization_id: confine the client to one organization: it logs in as that
            organization's own role (created on first use by the login of ``url``,
            which needs ``CREATEROLE``), and row-level security keys on that login.
        user_id: the acting user: its scopes are the login's privileges, and it is
            the audit actor.
        migrate: bring the schema to the latest revision. Default: True for the
            embedded database, False for a server, where an out-of-date schema
            raises :class:`SchemaOutOfDateError` naming ``flowscope db upgrade``.
        data_dir: where the embedded database lives (overrides ``FLOWSCOPE_DATA_DIR``).
        echo: log SQL statements (SQLAlchemy's ``echo``).
        pool_size: connections kept open in the pool; each tenant identity has a pool
            of its own, of the same size.
        max_overflow: connections a pool may open beyond ``pool_size`` when every
            kept one is busy (closed again when returned); a pool never holds more
            than ``pool_size + max_overflow`` connections.
        pool_timeout: seconds a call waits for a free connection when all of them
            are busy (threads sharing a client), before it gives up with
            :class:`QueryTimeoutError` naming the pool; it never waits longer.
        statement_timeout: seconds a statement may run before PostgreSQL cancels it
            (:class:`QueryTimeoutError`); default ``FLOWSCOPE_STATEMENT_TIMEOUT``, else
            no limit.
        timeout: the client's deadline, in seconds: the longest flowscope waits for any one
            answer from the server (a statement's result, the next part of a streaming read,
            a COMMIT), on either transport, even when the server or the network is stuck
            (where ``statement_timeout`` cannot fire). Past it the connection is closed and
            the call raises :class:`QueryTimeoutError` (:class:`CommitUnknownError` for a
            COMMIT). Default ``FLOWSCOPE_TIMEOUT``, else ``statement_timeout`` + 10 s, else
            900 s; ``0`` turns it off. Connections also use TCP keepalives and
            ``tcp_user_timeout``, so a vanished server is noticed within about a minute.

    Raises:
        ConnectionFailedError: the server cannot be reached (the message names the host).
        ConfigurationError: a URL that cannot be parsed, or a pool setting out of range.
        SchemaOutOfDateError: the schema is not at the latest revision and ``migrate`` is off.

    Example:
        >>> import flowscope
        >>> client = flowscope.connect()    # the embedded PostgreSQL  # doctest: +SKIP
        >>> client = flowscope.connect(url, statement_timeout=30)  # "postgresql://me@db.internal:5432/orchestrator"
        >>> client.users.get_by_username("demo.ana").email
        'ana@acme.example'
        >>> client.close()
    """
    settings = _settings.load()
    seconds = _db.parse_timeout(
        statement_timeout if statement_timeout is not None else settings.statement_timeout
    )
    given = timeout if timeout is not None else settings.timeout
    limit = _db.parse_timeout(given, "timeout")  # None: none given, or 0 (no deadline)
    deadline = _deadline.resolve(0 if given is not None and limit is None else limit, seconds)
    embedded = False
    root: Path | None = None
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
    for name, value, low in (("pool_size", pool_size, 1), ("max_overflow", max_overflow, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 10_000:
            raise ConfigurationError(
                f"{name} must be an integer from {low} to 10,000, not {value!r}"
            )
    wait = _db.parse_timeout(pool_timeout, "pool_timeout")
    if wait is None:
        raise ConfigurationError(
            "pool_timeout must be a positive number of seconds (no endless wait)"
        )
    options: dict[str, Any] = {
        "echo": echo,
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_timeout": wait,
        "statement_timeout": seconds,
        "deadline": deadline,
    }
    replicas = _db.ReplicaSet(read_urls, **options) if read_urls else None
    engine = _db.create_engine(url, **options)
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
    admin = Session(
        engine,
        url=url,
        user_id=user_id,
        replicas=replicas,
        read_your_writes=read_your_writes,
        replica_wait_timeout=replica_wait_timeout,
        engine_options=options,
    )
    data = root if embedded else None  # the mirror's default home
    if organization_id is not None:
        return Client(
            admin.scoped(organization_id, user_id), embedded=embedded, owner=admin, data_dir=data
        )
    return Client(admin, embedded=embedded, data_dir=data)
