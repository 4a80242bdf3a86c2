"""Test fixtures: a real PostgreSQL for every test, from flowscope's own pytest plugin.

:mod:`flowscope.testing` (registered through the ``pytest11`` entry point) provides
the server (embedded by default, ``FLOWSCOPE_TEST_DATABASE_URL`` for a server), a
database per session migrated to head, and a client that starts each test empty.
The names below are the short ones this suite has always used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import flowscope
import pytest
import sqlalchemy as sa
from flowscope.testing import reset_database


@pytest.fixture(scope="session")
def server_url(flowscope_server_url: str) -> str:
    """URL of the PostgreSQL server the tests use (any database on it)."""
    return flowscope_server_url


@pytest.fixture(scope="session")
def create_database(flowscope_create_database: Callable[[], str]) -> Callable[[], str]:
    """Factory: a new, empty database on the test server; all are dropped at session end."""
    return flowscope_create_database


@pytest.fixture(scope="session")
def database_url(flowscope_database_url: str) -> str:
    """A database migrated to head, shared by the session (tables emptied per test)."""
    return flowscope_database_url


@pytest.fixture
def client(flowscope_client: flowscope.Client) -> flowscope.Client:
    """An unscoped (admin) client on a clean, migrated database."""
    return flowscope_client


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    """A plain SQLAlchemy engine on the (clean) test database, for independent checks."""
    reset_database(database_url)
    e = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    yield e
    e.dispose()
