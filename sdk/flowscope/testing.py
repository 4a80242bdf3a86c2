"""flowscope's pytest plugin: throwaway flowscope databases for your own tests.

Installed with flowscope and registered through the ``pytest11`` entry point, so its
fixtures are there in any project that has flowscope installed; nothing runs until a
test asks for one.

* ``flowscope_server_url`` (session): the PostgreSQL server the tests use: the one named
  by ``FLOWSCOPE_TEST_DATABASE_URL``, else an embedded PostgreSQL of the session's own in
  a temporary directory (removed, with the server, when the session ends; ``fsync`` off).
* ``flowscope_create_database`` (session): a factory of new, empty databases on it; every
  one is dropped at the end of the session (its tenant login roles first).
* ``flowscope_database_url`` (session): one database migrated to head.
* ``flowscope_client`` (function): a :class:`flowscope.Client` on that database, every
  table emptied before the test, so tests commit for real and still start clean.
* ``flowscope_demo`` (session): a client on a database holding the deterministic demo
  data (:func:`flowscope.demo.generate`, 20,000 executions), loaded once per session.
  Treat it as read-only.

Example (a test of your own; ``pip install flowscope``, then ``pytest``)::

    def test_my_report(flowscope_client):
        wf = flowscope_client.workflows.create(name="nightly", owner="ana", nodes=[], edges=[])
        flowscope_client.executions.create(workflow_id=wf.id)
        assert my_report(flowscope_client)["runs"] == 1

    def test_on_demo_data(flowscope_demo):
        assert flowscope_demo.workflows.count() == 200
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import sqlalchemy as sa

    import flowscope

__all__ = [
    "flowscope_client",
    "flowscope_create_database",
    "flowscope_database_url",
    "flowscope_demo",
    "flowscope_server_url",
    "reset_database",
]

ENV_TEST_DATABASE_URL = "FLOWSCOPE_TEST_DATABASE_URL"
DEMO_EXECUTIONS = 20_000


def _admin_engine(server_url: str) -> sa.Engine:
    import sqlalchemy as sa

    from . import _db

    return sa.create_engine(
        _db.normalize_url(server_url), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
    )


def _with_database(server_url: str, database: str) -> str:
    import sqlalchemy as sa

    from . import _db

    return (
        sa.make_url(_db.normalize_url(server_url))
        .set(database=database)
        .render_as_string(hide_password=False)
    )


def drop_identities(url: str) -> None:
    """Drop a database's tenant login roles (roles are cluster-wide: they would outlive it)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            if conn.execute(sa.text("SELECT to_regproc('flowscope_drop_identities')")).scalar():
                conn.execute(sa.text("SELECT flowscope_drop_identities()"))
    except sa.exc.OperationalError:
        pass  # the database is already gone
    finally:
        engine.dispose()


def reset_database(url: str) -> None:
    """Empty every table that holds rows, and drop the tenant logins (their identities go too).

    The database gets a new instance id: a mirror or incremental export of it from before
    the reset is a copy of another database (:mod:`flowscope._provenance`).

    TRUNCATE of untouched tables is skipped: it is the slow part.

    Example:
        >>> reset_database(url)
        >>> with flowscope.connect(url) as client:
        ...     client.workflows.count(), client.users.count()
        (0, 0)
    """
    import sqlalchemy as sa

    drop_identities(url)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        tables = (
            conn.execute(
                sa.text(
                    "SELECT quote_ident(c.relname) FROM pg_class c"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
                    " AND NOT c.relispartition AND c.relname <> 'alembic_version'"
                )
            )
            .scalars()
            .all()
        )
        if tables:
            # table names from the catalog, quoted by quote_ident(): no input reaches this
            probe = " UNION ALL ".join(
                f"(SELECT {i} FROM {t} LIMIT 1)"  # noqa: S608
                for i, t in enumerate(tables)
            )
            used = [tables[i] for i in conn.execute(sa.text(probe)).scalars()]
            if used:
                conn.execute(sa.text(f"TRUNCATE {', '.join(used)} RESTART IDENTITY CASCADE"))
        if conn.execute(sa.text("SELECT to_regclass('flowscope_instance')")).scalar():
            # a database emptied is a new one to every copy of it (flowscope._provenance)
            conn.execute(sa.text("INSERT INTO flowscope_instance DEFAULT VALUES"))
    engine.dispose()


@pytest.fixture(scope="session")
def flowscope_server_url() -> Iterator[str]:
    """URL of the PostgreSQL server the tests use (any database on it)."""
    import sqlalchemy as sa

    from . import _db, _embedded

    given = os.environ.get(ENV_TEST_DATABASE_URL)
    if given:
        yield _db.normalize_url(given)
        return
    # Removed with its server when the session ends, however it ends.
    root = _embedded.temporary_data_dir(prefix="flowscope-test-")
    url = _embedded.server_uri(root).replace("postgresql://", "postgresql+psycopg://", 1)
    # A throwaway server: durability buys the tests nothing, speed does.
    engine = _admin_engine(url)
    with engine.connect() as conn:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            conn.execute(sa.text(f"ALTER SYSTEM SET {setting} = off"))
        conn.execute(sa.text("SELECT pg_reload_conf()"))
    engine.dispose()
    yield url


@pytest.fixture(scope="session")
def flowscope_create_database(flowscope_server_url: str) -> Iterator[Callable[[], str]]:
    """Factory: a new, empty database on the test server; all are dropped at session end."""
    import sqlalchemy as sa

    created: list[str] = []
    engine = _admin_engine(flowscope_server_url)

    def make() -> str:
        name = f"flowscope_test_{os.getpid()}_{secrets.token_hex(4)}"
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return _with_database(flowscope_server_url, name)

    yield make
    for name in created:
        drop_identities(_with_database(flowscope_server_url, name))
    with engine.connect() as conn:
        for name in created:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        # revisions 0002-0005 create the cluster-wide role flowscope_tenant and 0006 drops it
        # only when no other database uses it: a session that migrated old revisions leaves
        # it behind unless it goes here (kept, silently, while any database still uses it)
        conn.execute(
            sa.text(
                "DO $$ BEGIN DROP ROLE IF EXISTS flowscope_tenant;"
                " EXCEPTION WHEN dependent_objects_still_exist OR insufficient_privilege"
                " THEN NULL; END $$"
            )
        )
    engine.dispose()


def _migrated(create: Callable[[], str]) -> str:
    import sqlalchemy as sa

    from . import _migrate

    url = create()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        _migrate.upgrade(conn)
        conn.commit()
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def flowscope_database_url(flowscope_create_database: Callable[[], str]) -> str:
    """A database migrated to head, shared by the session (emptied by ``flowscope_client``)."""
    return _migrated(flowscope_create_database)


@pytest.fixture
def flowscope_client(flowscope_database_url: str) -> Iterator[flowscope.Client]:
    """An admin client on an empty, migrated database (every table emptied first)."""
    import flowscope

    reset_database(flowscope_database_url)
    client = flowscope.connect(flowscope_database_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def flowscope_demo(flowscope_create_database: Callable[[], str]) -> Iterator[flowscope.Client]:
    """An admin client on a database with the deterministic demo data, loaded once."""
    import flowscope
    from flowscope import demo

    url = _migrated(flowscope_create_database)
    client = flowscope.connect(url)
    demo.generate(client, executions=DEMO_EXECUTIONS, progress=False)
    try:
        yield client
    finally:
        client.close()


def pytest_configure(config: Any) -> None:
    config.addinivalue_line(
        "markers", "flowscope: uses flowscope's database fixtures (flowscope.testing)"
    )
