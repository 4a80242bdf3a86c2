"""Alembic environment for flowscope.

The connection comes, in order of preference, from:

1. ``config.attributes["connection"]``: a SQLAlchemy Connection or Engine handed
   in by the caller (flowscope.connect(), test fixtures, pytest-alembic);
2. ``FLOWSCOPE_DATABASE_URL`` (``postgresql://`` is given the psycopg driver);
3. ``sqlalchemy.url`` in alembic.ini.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from flowscope import models  # noqa: F401  (registers every table on SQLModel.metadata)
from flowscope._db import normalize_url
from flowscope._migrate import run_with_lock_timeout
from sqlalchemy import Connection, Engine, create_engine, pool
from sqlmodel import SQLModel

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = SQLModel.metadata


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    # Phase-3 partitions and rollup views are managed by their revisions, not by models.
    managed_elsewhere = bool(name) and name.startswith(("audit_log_", "flowscope_"))
    return not (type_ == "table" and reflected and compare_to is None and managed_elsewhere)


def _url() -> str:
    url = os.environ.get("FLOWSCOPE_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError(
            "No database: set FLOWSCOPE_DATABASE_URL (e.g. postgresql://user@host:5432/db)"
        )
    return normalize_url(url)


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    if connection.in_transaction():
        # Alembic must own the transaction so that revisions can use autocommit_block()
        # (CREATE INDEX CONCURRENTLY); a caller's pending (read) transaction is committed.
        connection.commit()
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        compare_type=True,
        compare_server_default=True,
    )

    def migrate() -> None:
        with context.begin_transaction():
            context.run_migrations()

    # Every statement waits for locks at most FLOWSCOPE_MIGRATION_LOCK_TIMEOUT; a pass
    # that timed out is retried, then fails naming the blocking sessions (never hangs).
    run_with_lock_timeout(connection, migrate)


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if isinstance(given, Connection):
        _run(given)
        return
    engine = given if isinstance(given, Engine) else create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        _run(connection)
        connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
