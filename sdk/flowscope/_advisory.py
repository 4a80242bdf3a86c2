"""PostgreSQL advisory locks around work two processes must not do at once (creating the
embedded database, migrating)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection

from ._db import create_engine, describe_host, translating
from .errors import QueryTimeoutError

#: pg_advisory_lock keys ("flowscope" work that must not run twice at once)
MIGRATION_LOCK = 0x666C6F77_6D696772  # b"flowmigr": every upgrade and downgrade
CREATE_DATABASE_LOCK = 0x666C6F77_63726561  # b"flowcrea": creating the embedded database


@contextlib.contextmanager
def advisory_lock(url: str | URL, key: int, what: str, *, wait: float) -> Iterator[None]:
    """Hold PostgreSQL's session advisory lock ``key`` for the block, on a connection of its
    own (the work's connection may commit, roll back or be replaced meanwhile); another
    process holding it is waited for up to ``wait`` seconds, then :class:`QueryTimeoutError`.

    Example:
        >>> with advisory_lock(url, MIGRATION_LOCK, "a migration", wait=5):
        ...     pass            # no other process migrates this database meanwhile
    """
    engine = create_engine(
        url,
        poolclass=sa.pool.NullPool,
        isolation_level="AUTOCOMMIT",
        deadline=max(wait, 30.0),
        connect_args={"application_name": "flowscope-lock"},
    )
    try:
        with translating(url):
            conn = engine.connect()
        with conn:
            with translating(url):
                _wait_for_lock(conn, url, key, what, wait)
            try:
                yield
            finally:
                with contextlib.suppress(sa_exc.SQLAlchemyError):
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        engine.dispose()


def _wait_for_lock(conn: Connection, url: str | URL, key: int, what: str, wait: float) -> None:
    import time

    take = sa.text("SELECT pg_try_advisory_lock(:k)")
    give_up = time.monotonic() + wait
    pause = 0.02
    while not conn.execute(take, {"k": key}).scalar():
        if time.monotonic() > give_up:
            raise QueryTimeoutError(
                f"{what} waited {wait:g} s for another process doing the same on"
                f" {describe_host(url)} (advisory lock {key:#x}); try again when it is done"
            )
        time.sleep(pause)
        pause = min(pause * 2, 0.5)
