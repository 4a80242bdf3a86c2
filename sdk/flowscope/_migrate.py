"""Running and checking Alembic revisions from Python (flowscope.connect, the CLI, tests)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection, Engine

from .errors import ConfigurationError, SchemaOutOfDateError

if TYPE_CHECKING:
    from alembic.config import Config

_PACKAGE = Path(__file__).resolve().parent

#: The revision this flowscope's code is written against: the head of its migration
#: scripts (a test keeps the two equal). ``connect()`` compares the database's stamp with
#: it in one plain query, so a database already at head never loads Alembic.
HEAD_REVISION = "0006"


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

    A database already at :data:`HEAD_REVISION` costs two small queries and no Alembic import.
    """
    if stamped_revision(connection) == HEAD_REVISION:
        return
    if migrate:
        upgrade(connection)
        connection.commit()
    check_current(connection, where)


def check_current(connection: Connection, where: str) -> None:
    """Raise :class:`SchemaOutOfDateError` unless the database is at head."""
    current = stamped_revision(connection)
    head = HEAD_REVISION
    if current != head:
        state = "has no flowscope schema" if current is None else f"is at revision {current}"
        raise SchemaOutOfDateError(
            f"the database at {where} {state}, but this flowscope needs revision {head}: "
            "run `flowscope db upgrade` (or `alembic upgrade head`), "
            "or pass migrate=True to flowscope.connect()"
        )
