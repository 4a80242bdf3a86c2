"""Running and checking Alembic revisions from Python (flowscope.connect, the CLI, tests).

Migrations cannot wait forever: every migration statement runs with a ``lock_timeout``
(``FLOWSCOPE_MIGRATION_LOCK_TIMEOUT``, 5 s); a statement that times out rolls its
revision back, the upgrade is retried a few times (``FLOWSCOPE_MIGRATION_LOCK_RETRIES``,
3, after 1, 2 and 4 s), and then fails with :class:`DatabaseError` naming the sessions
that held the lock (pid, application, state, how long their transaction has been open)
and how to proceed. ``migrations/env.py`` runs every upgrade and downgrade through
:func:`run_with_lock_timeout`, so every revision gets this without importing flowscope.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from .errors import ConfigurationError, DatabaseError, SchemaOutOfDateError

if TYPE_CHECKING:
    from alembic.config import Config

_PACKAGE = Path(__file__).resolve().parent


@functools.cache
def newest_script() -> str:
    """The revision this flowscope's code is written against: the newest migration script's,
    read from its file name (``YYYY_MM_DD_<revision>_<slug>.py``) without loading Alembic
    (a test keeps it equal to Alembic's head). ``connect()`` compares the database's stamp
    with it in one plain query, so a database already at head never loads Alembic.

    Example:
        >>> newest_script() == head_revision()  # Alembic agrees
        True
    """
    scripts = sorted(p.name for p in (migrations_dir() / "versions").glob("[0-9]*_*.py"))
    if not scripts:
        raise ConfigurationError("flowscope's migration scripts are missing from this installation")
    return scripts[-1].split("_")[3]


def __getattr__(name: str) -> Any:
    if name == "HEAD_REVISION":  # computed on first use: a new revision is its file alone
        return newest_script()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def migrations_dir() -> Path:
    """Where the Alembic scripts are: inside the wheel, or the repository's ``migrations/``."""
    for candidate in (_PACKAGE / "_migrations", _PACKAGE.parent.parent / "migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise ConfigurationError("flowscope's migrations are missing from this installation")


def alembic_config(connection: Connection | Engine | None = None) -> Config:
    """An Alembic ``Config`` for flowscope's migrations, optionally bound to a connection."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["configure_logger"] = False
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection | Engine, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), revision)


def downgrade(connection: Connection | Engine, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(connection), revision)


def stamped_revision(connection: Connection) -> str | None:
    """The revision stamped in ``alembic_version``, read with plain SQL (no Alembic import):
    None when the table is missing or empty."""
    from sqlalchemy import text

    if not connection.execute(text("SELECT to_regclass('alembic_version') IS NOT NULL")).scalar():
        return None
    stamps = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(stamps) > 1:  # several branches stamped: not a flowscope database, let Alembic say
        return current_revision(connection)
    return stamps[0] if stamps else None


def ensure_current(connection: Connection, where: str, *, migrate: bool) -> None:
    """Bring the database to head (``migrate``) or raise :class:`SchemaOutOfDateError`.

    A database already at :func:`newest_script`'s revision costs two small queries and no Alembic import.
    """
    if stamped_revision(connection) == newest_script():
        return
    if migrate:
        upgrade(connection)
        connection.commit()
    check_current(connection, where)


def check_current(connection: Connection, where: str) -> None:
    """Raise :class:`SchemaOutOfDateError` unless the database is at head."""
    current = stamped_revision(connection)
    head = newest_script()
    if current != head:
        state = "has no flowscope schema" if current is None else f"is at revision {current}"
        raise SchemaOutOfDateError(
            f"the database at {where} {state}, but this flowscope needs revision {head}: "
            "run `flowscope db upgrade` (or `alembic upgrade head`), "
            "or pass migrate=True to flowscope.connect()"
        )


# -- migrations that cannot hang -----------------------------------------------------------
_LOCK_NOT_AVAILABLE = "55P03"
# Sessions of this database, other than ours, whose open transaction can hold what a
# migration waits for: a lock on a relation (ALTER TABLE, DROP INDEX), or a transaction id
# or snapshot (CREATE INDEX CONCURRENTLY waits for every older one).
_BLOCKERS = text(
    """
    SELECT a.pid, a.application_name, a.state, a.usename,
           date_trunc('second', now() - a.xact_start)::text AS open_for,
           left(regexp_replace(a.query, '\\s+', ' ', 'g'), 80) AS query
      FROM pg_stat_activity a
     WHERE a.datname = current_database()
       AND a.pid <> pg_backend_pid()
       AND a.xact_start IS NOT NULL
       AND (a.backend_xid IS NOT NULL
            OR a.backend_xmin IS NOT NULL
            OR EXISTS (SELECT 1 FROM pg_locks l
                        WHERE l.pid = a.pid AND l.granted AND l.locktype = 'relation'))
     ORDER BY a.xact_start
     LIMIT 10
    """
)


def run_with_lock_timeout(connection: Connection, run: Callable[[], None]) -> None:
    """Run ``run`` (one pass of the migrations on ``connection``) with a ``lock_timeout``;
    retry it when a lock was not granted in time; then raise :class:`DatabaseError`
    naming the blocking sessions. The session's own ``lock_timeout`` is restored after."""
    from . import _advisory, _deadline, _settings

    timeout = _settings.migration_lock_timeout()
    retries = _settings.migration_lock_retries()
    if connection.in_transaction():
        connection.commit()
    # one migration at a time per database: two processes upgrading a fresh database
    # would both create the same types and tables (a lock of its own connection, taken
    # after the caller's check of the revision: Alembic reads it again under the lock)
    url = connection.engine.url
    with (
        _advisory.advisory_lock(url, _advisory.MIGRATION_LOCK, "a migration", wait=MIGRATION_WAIT),
        _deadline.lifted(connection.connection.driver_connection),
    ):
        _run_with_lock_timeout(connection, run, timeout, retries)


#: seconds a migration waits for another process's migration of the same database
MIGRATION_WAIT = 600.0


def _run_with_lock_timeout(
    connection: Connection, run: Callable[[], None], timeout: str, retries: int
) -> None:
    previous = connection.execute(text("SELECT current_setting('lock_timeout')")).scalar_one()
    connection.execute(text("SELECT set_config('lock_timeout', :v, false)"), {"v": timeout})
    connection.commit()
    started = time.monotonic()
    try:
        for attempt in range(retries + 1):
            try:
                run()
                return
            except sa_exc.DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                    raise
                if connection.in_transaction():
                    connection.rollback()
                if attempt == retries:
                    message = _blocked(connection, exc, timeout, attempt + 1, started)
                    raise DatabaseError(message) from exc
                time.sleep(min(2**attempt, 30))
    finally:
        with contextlib.suppress(sa_exc.SQLAlchemyError):
            if connection.in_transaction():
                connection.rollback()
            connection.execute(
                text("SELECT set_config('lock_timeout', :v, false)"), {"v": previous}
            )
            connection.commit()


def _blocked(
    connection: Connection, exc: sa_exc.DBAPIError, timeout: str, attempts: int, started: float
) -> str:
    statement = " ".join(str(exc.statement or "").split())
    if len(statement) > 120:
        statement = statement[:117] + "..."
    try:
        rows: list[Any] = list(connection.execute(_BLOCKERS).mappings())
        connection.rollback()
    except sa_exc.SQLAlchemyError:  # pragma: no cover - the connection itself went away
        rows = []
    head = (
        f"migration stopped: a lock was not granted within {timeout}, {attempts} times"
        f" in {time.monotonic() - started:.0f} s (statement: {statement})."
    )
    if not rows:
        return head + " No session holds it now: run the upgrade again."
    sessions = "; ".join(
        f"pid {r['pid']} (application {r['application_name']!r}, state {r['state']!r},"
        f" user {r['usename']!r}, transaction open {r['open_for']}, last query {r['query']!r})"
        for r in rows
    )
    pids = ", ".join(str(r["pid"]) for r in rows)
    return (
        f"{head} Sessions with open transactions in this database that block it: {sessions}."
        " To proceed: end those transactions (COMMIT or ROLLBACK in that application, or"
        f" SELECT pg_terminate_backend(pid) for pid {pids}), then run `flowscope db upgrade`"
        " again (a half-built index is dropped and rebuilt then); or wait longer per attempt"
        f" with FLOWSCOPE_MIGRATION_LOCK_TIMEOUT (now {timeout})."
    )
