"""FLOWSCOPE_* environment settings, read in one place."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

ENV_DATABASE_URL = "FLOWSCOPE_DATABASE_URL"
ENV_READ_URL = "FLOWSCOPE_READ_URL"
ENV_DATA_DIR = "FLOWSCOPE_DATA_DIR"
ENV_ADMIN_PASSWORD = "FLOWSCOPE_ADMIN_PASSWORD"  # read by the first migration only
ENV_ANALYTICS_WORK_MEM = "FLOWSCOPE_ANALYTICS_WORK_MEM"
ENV_ANALYTICS_ENGINE = "FLOWSCOPE_ANALYTICS_ENGINE"
ENV_STATEMENT_TIMEOUT = "FLOWSCOPE_STATEMENT_TIMEOUT"
ENV_TIMEOUT = "FLOWSCOPE_TIMEOUT"  # the client's deadline (flowscope._deadline)
ENV_MIGRATION_LOCK_TIMEOUT = "FLOWSCOPE_MIGRATION_LOCK_TIMEOUT"
ENV_MIGRATION_LOCK_RETRIES = "FLOWSCOPE_MIGRATION_LOCK_RETRIES"

#: ``work_mem`` for the analytics queries (per sort or hash, transaction-local); see
#: :func:`analytics_work_mem`.
DEFAULT_ANALYTICS_WORK_MEM = "64MB"
_MEMORY = re.compile(r"^[1-9][0-9]{0,6}(kB|MB|GB)$")
#: How long one migration statement waits for a lock before it gives up (and how many times
#: the migration is retried after that); see :func:`migration_lock_timeout`.
DEFAULT_MIGRATION_LOCK_TIMEOUT = "5s"
DEFAULT_MIGRATION_LOCK_RETRIES = 3
_DURATION = re.compile(r"^[1-9][0-9]{0,8}(ms|s|min)$")


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    read_urls: tuple[str, ...]
    data_dir: Path
    statement_timeout: str | None = None
    timeout: str | None = None


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("flowscope", appauthor=False))


def load() -> Settings:
    """Read the settings from the environment (empty values count as unset)."""
    url = os.environ.get(ENV_DATABASE_URL) or None
    read = os.environ.get(ENV_READ_URL) or ""
    data_dir = os.environ.get(ENV_DATA_DIR) or None
    return Settings(
        database_url=url,
        read_urls=tuple(u.strip() for u in read.split(",") if u.strip()),
        data_dir=Path(data_dir).expanduser() if data_dir else default_data_dir(),
        statement_timeout=os.environ.get(ENV_STATEMENT_TIMEOUT) or None,
        timeout=os.environ.get(ENV_TIMEOUT) or None,
    )


def analytics_engine() -> str:
    """The analytics engine of new clients: ``FLOWSCOPE_ANALYTICS_ENGINE``, one of ``auto``
    (the default), ``postgresql`` or ``pull`` (see :mod:`flowscope.analytics._engines`).

    Example:
        >>> import os
        >>> os.environ["FLOWSCOPE_ANALYTICS_ENGINE"] = "pull"
        >>> analytics_engine()
        'pull'
        >>> del os.environ["FLOWSCOPE_ANALYTICS_ENGINE"]
        >>> analytics_engine()
        'auto'
    """
    from .errors import ConfigurationError

    value = (os.environ.get(ENV_ANALYTICS_ENGINE) or "auto").strip().lower()
    if value not in ("auto", "postgresql", "pull"):
        raise ConfigurationError(
            f"{ENV_ANALYTICS_ENGINE}={value!r}: expected auto, postgresql or pull"
        )
    return value


def analytics_work_mem() -> str | None:
    """The ``work_mem`` of the analytics queries that compute percentiles, or None for the
    server's own.

    ``FLOWSCOPE_ANALYTICS_WORK_MEM``: a size such as ``64MB`` (the default), ``256MB``,
    ``512kB``; ``server`` keeps the server's setting. Percentiles need the rows of a
    group sorted; at the server default of 4 MB a 1M-row ``durations(by="workflow_id")``
    sorts on disk (2.8 s), with 64 MB in memory (1.5 s).

    Example:
        >>> import os
        >>> os.environ["FLOWSCOPE_ANALYTICS_WORK_MEM"] = "256MB"
        >>> analytics_work_mem()
        '256MB'
        >>> del os.environ["FLOWSCOPE_ANALYTICS_WORK_MEM"]
        >>> analytics_work_mem()
        '64MB'
    """
    from .errors import ConfigurationError

    value = (os.environ.get(ENV_ANALYTICS_WORK_MEM) or DEFAULT_ANALYTICS_WORK_MEM).strip()
    if value.lower() == "server":
        return None
    if not _MEMORY.match(value):
        raise ConfigurationError(
            f"{ENV_ANALYTICS_WORK_MEM}={value!r}: expected a size such as 64MB, 512kB, 1GB,"
            " or 'server'"
        )
    return value


def migration_lock_timeout() -> str:
    """``lock_timeout`` of every migration statement: a duration such as ``5s`` (the default),
    ``500ms`` or ``2min`` (``FLOWSCOPE_MIGRATION_LOCK_TIMEOUT``).

    ``CREATE INDEX CONCURRENTLY`` waits for every transaction older than it, and
    ``ALTER TABLE`` for every session holding a lock on the table: without a limit an
    idle-in-transaction session makes the upgrade wait forever. With one, the attempt
    fails, the migration is retried (:func:`migration_lock_retries`) and then stops with
    the blocking sessions named.

    Example:
        >>> import os
        >>> os.environ["FLOWSCOPE_MIGRATION_LOCK_TIMEOUT"] = "250ms"
        >>> migration_lock_timeout()
        '250ms'
        >>> del os.environ["FLOWSCOPE_MIGRATION_LOCK_TIMEOUT"]
        >>> migration_lock_timeout()
        '5s'
    """
    from .errors import ConfigurationError

    value = (os.environ.get(ENV_MIGRATION_LOCK_TIMEOUT) or DEFAULT_MIGRATION_LOCK_TIMEOUT).strip()
    if not _DURATION.match(value):
        raise ConfigurationError(
            f"{ENV_MIGRATION_LOCK_TIMEOUT}={value!r}: expected a duration such as 5s, 500ms, 2min"
        )
    return value


def migration_lock_retries() -> int:
    """How many times a migration that timed out waiting for a lock is tried again
    (``FLOWSCOPE_MIGRATION_LOCK_RETRIES``, 0 to 20; default 3, after 1, 2 and 4 seconds)."""
    from .errors import ConfigurationError

    value = (os.environ.get(ENV_MIGRATION_LOCK_RETRIES) or "").strip()
    if not value:
        return DEFAULT_MIGRATION_LOCK_RETRIES
    if not value.isdigit() or int(value) > 20:
        raise ConfigurationError(
            f"{ENV_MIGRATION_LOCK_RETRIES}={value!r}: expected a whole number from 0 to 20"
        )
    return int(value)
