"""A local columnar mirror: the rows a client may read, as Parquet, queried by DuckDB.

``mirror = client.mirror()`` keeps a copy of ``workflows`` and ``executions`` (every
column, soft-deleted rows included, exactly what the client's login may read) under the
client's data directory, one directory per database and identity. ``mirror.sync()``
brings it up to date through the change feed of :mod:`flowscope._changes` (inserts,
updates, deletes, transactions that commit late); ``mirror.analytics`` has every method
of ``client.analytics``, answered by DuckDB from the same query builders
(:mod:`flowscope.analytics._duckdb`); ``mirror.duckdb()`` is a DuckDB connection with
views ``executions`` and ``workflows`` for your own SQL.

Storage (``<data dir>/mirrors/<database>/<identity>/``, directories ``0700``, files ``0600``)::

    mirror.json                         the state: identity, files, horizon, as-of time
    executions/base-000001-0.parquet    a full copy, as of a sync
    executions/delta-000007.parquet     the newest version of every row changed since
    executions/deleted-000007.parquet   ids deleted since the base
    workflows/...

A table is ``base`` minus the ids of ``delta`` and ``deleted``, plus ``delta``. A sync
writes new, uniquely named files (temp name, fsync, rename), then replaces
``mirror.json`` atomically: a sync killed at any point leaves the previous state, and the
next sync removes the files it does not list. When the delta grows past
:data:`COMPACT_MIN_ROWS` rows (and 5 % of the base) a sync rewrites the base.

A scoped mirror also follows what its login may see without a row changing (a handover,
``is_public``, a move between organizations, a scope granted or revoked) and, for a user who
sees part of its organization, the deletions the audit log hides from it
(:mod:`flowscope.mirror._sync`). ``mirror.analytics`` loads the files into DuckDB's own
tables once per state (:mod:`flowscope.mirror._native`).

Example:
    >>> mirror = client.mirror(tmp_path / "mirror")   # default: the client's data directory
    >>> report = mirror.sync(progress=False)
    >>> report.full, report.added, report.removed
    (True, 2200, 0)
    >>> mirror.analytics.durations(by="workflow").shape
    (182, 10)
    >>> mirror.duckdb().sql("SELECT count(*) FROM executions WHERE status = 'failed'").fetchall()
    [(93,)]
"""

from __future__ import annotations

from ._analytics import MirrorAnalytics
from ._mirror import Mirror
from ._store import COMPACT_MIN_ROWS, SyncReport, default_path

__all__ = ["COMPACT_MIN_ROWS", "Mirror", "MirrorAnalytics", "SyncReport", "default_path"]
