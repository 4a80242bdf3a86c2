"""FLOWSCOPE_* environment settings, read in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_DATABASE_URL = "FLOWSCOPE_DATABASE_URL"
ENV_READ_URL = "FLOWSCOPE_READ_URL"
ENV_DATA_DIR = "FLOWSCOPE_DATA_DIR"
ENV_ADMIN_PASSWORD = "FLOWSCOPE_ADMIN_PASSWORD"  # read by the first migration only


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    read_urls: tuple[str, ...]
    data_dir: Path


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
    )
