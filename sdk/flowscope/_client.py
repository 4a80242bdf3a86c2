"""The client object returned by :func:`flowscope.connect`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import _db, _migrate, _settings
from .errors import ConfigurationError

if TYPE_CHECKING:
    from ._resources.audit import Audit
    from ._resources.executions import Executions
    from ._resources.organizations import Organizations
    from ._resources.users import Users
    from ._resources.workflows import Workflows
    from .analytics import Analytics

__all__ = ["Client", "connect"]


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
        _owns_engine: bool = True,
    ) -> None:
        self._engine = engine
        self.url = url
        self.organization_id = organization_id
        self.user_id = user_id
        self.embedded = embedded
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

        Example:
            >>> with client.transaction() as conn:                     # doctest: +SKIP
            ...     conn.execute(sa.text("SELECT count(*) FROM workflows")).scalar()
            0
        """
        with _db.translating(self.url), self._engine.connect() as conn, conn.begin():
            _db.apply_scope(conn, self.organization_id, self.user_id)
            yield conn

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
            _owns_engine=False,
        )

    def close(self) -> None:
        """Close the connection pool (a scoped client leaves its parent's pool open)."""
        if self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "embedded" if self.embedded else _db.describe_host(self.url)
        scope = f", organization_id={self.organization_id!r}" if self.organization_id else ""
        return f"<flowscope.Client {where}{scope}>"

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


def connect(
    url: str | None = None,
    *,
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
    engine = _db.create_engine(url, echo=echo, pool_size=pool_size)
    do_migrate = embedded if migrate is None else migrate
    with _db.translating(url):
        try:
            with engine.connect() as conn:
                if do_migrate:
                    _migrate.upgrade(conn)
                    conn.commit()
                _migrate.check_current(conn, _db.describe_host(url))
        except BaseException:
            engine.dispose()
            raise
    client = Client(engine, url=url, embedded=embedded)
    if organization_id is not None:
        scoped = client.scoped(organization_id, user_id)
        scoped._owns_engine = True
        return scoped
    client.user_id = user_id
    return client
