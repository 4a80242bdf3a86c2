"""Test fixtures: a real PostgreSQL for every test.

* The server: the embedded PostgreSQL (started in a temporary directory) by
  default, or the server named by ``FLOWSCOPE_TEST_DATABASE_URL``.
* The database: a fresh one per test session, migrated to head, dropped at the
  end (so concurrent runs on one server never meet).
* Per test: every table is truncated before the test, so tests commit for real
  (races, triggers, RLS) and still start clean.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator

import flowscope
import pytest
import sqlalchemy as sa
from flowscope import _db, _migrate


def _admin_engine(server_url: str) -> sa.Engine:
    return sa.create_engine(
        _db.normalize_url(server_url), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
    )


def _with_database(server_url: str, database: str) -> str:
    return (
        sa.make_url(_db.normalize_url(server_url))
        .set(database=database)
        .render_as_string(hide_password=False)
    )


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """URL of the PostgreSQL server the tests use (any database on it)."""
    given = os.environ.get("FLOWSCOPE_TEST_DATABASE_URL")
    if given:
        yield _db.normalize_url(given)
        return
    from flowscope import _embedded

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
def create_database(server_url: str) -> Iterator[Callable[[], str]]:
    """Factory: a new, empty database on the test server; all are dropped at session end."""
    created: list[str] = []
    engine = _admin_engine(server_url)

    def make() -> str:
        name = f"flowscope_test_{os.getpid()}_{secrets.token_hex(4)}"
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return _with_database(server_url, name)

    yield make
    for name in created:
        drop_identities(_with_database(server_url, name))
    with engine.connect() as conn:
        for name in created:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def drop_identities(url: str) -> None:
    """Drop the tenant login roles of a database (roles are cluster-wide: they would outlive it)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            if conn.execute(sa.text("SELECT to_regproc('flowscope_drop_identities')")).scalar():
                conn.execute(sa.text("SELECT flowscope_drop_identities()"))
    except sa.exc.OperationalError:
        pass  # the database is already gone
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def database_url(create_database: Callable[[], str]) -> str:
    """A database migrated to head, shared by the session (tables truncated per test)."""
    url = create_database()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        _migrate.upgrade(conn)
        conn.commit()
    engine.dispose()
    return url


def _truncate(url: str) -> None:
    """Empty every table that holds rows (TRUNCATE of untouched tables is skipped: it is the slow part).

    Tenant login roles are dropped first (their identities go with them)."""
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
            probe = " UNION ALL ".join(
                f"(SELECT {i} FROM {t} LIMIT 1)" for i, t in enumerate(tables)
            )
            used = [tables[i] for i in conn.execute(sa.text(probe)).scalars()]
            if used:
                conn.execute(sa.text(f"TRUNCATE {', '.join(used)} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def client(database_url: str) -> Iterator[flowscope.Client]:
    """An unscoped (admin) client on a clean, migrated database."""
    _truncate(database_url)
    c = flowscope.connect(database_url)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    """A plain SQLAlchemy engine on the (clean) test database, for independent checks."""
    _truncate(database_url)
    e = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    yield e
    e.dispose()
