"""Running and checking Alembic revisions from Python (flowscope.connect, the CLI, tests)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection, Engine

from .errors import ConfigurationError, SchemaOutOfDateError

if TYPE_CHECKING:
    from alembic.config import Config

_PACKAGE = Path(__file__).resolve().parent


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


def check_current(connection: Connection, where: str) -> None:
    """Raise :class:`SchemaOutOfDateError` unless the database is at head."""
    current = current_revision(connection)
    head = head_revision()
    if current != head:
        state = "has no flowscope schema" if current is None else f"is at revision {current}"
        raise SchemaOutOfDateError(
            f"the database at {where} {state}, but this flowscope needs revision {head}: "
            "run `flowscope db upgrade` (or `alembic upgrade head`), "
            "or pass migrate=True to flowscope.connect()"
        )
