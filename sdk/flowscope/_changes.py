"""Change capture: which rows of a table changed since a copy was taken, without guessing.

Shared by the local mirror (:mod:`flowscope.mirror`) and incremental Parquet export.

**Why not timestamps.** ``created_at``/``updated_at`` are the writing transaction's *start*
(``now()``): a transaction that began before a copy was taken and commits after it writes
rows "older" than the copy, which a ``WHERE updated_at > last_copy`` never sees again; and
deletions leave no row at all.

**What instead.** Every INSERT, UPDATE and DELETE on ``workflows`` and ``executions`` writes
audit rows *in the same transaction*, stamped with that transaction's 64-bit id
(``audit_log.transaction_id``, revision 0008 indexes it). A copy is read in one
REPEATABLE READ snapshot and remembers that snapshot's ``horizon``,
``pg_snapshot_xmin(pg_current_snapshot())``: the oldest transaction still running. Every
transaction older than the horizon had ended, so its effects are in the copy (or it
aborted). Hence the rows that may differ from the copy now are exactly those with an
audit row of ``transaction_id >= horizon``, committed late or not; their current state
(present: the new version; absent or no longer visible: deleted) is read in the next
snapshot. Rows of transactions that were already visible to the copy are re-read, which is
harmless. A copy's cost follows the number of changed rows.

Limits: changes made with triggers disabled (``session_replication_role = replica``, as
``benchmarks/datagen.py`` loads) are invisible to the feed; audit partitions dropped by
retention take their changes with them (a copy older than the audit retention must be
taken again in full); a change of *visibility* without a change of the row (a policy or a
scope) is not a change of the row (take the copy again in full); an UPDATE that changes no
column but ``updated_at`` writes no audit row (the audit trigger skips it), so a copy keeps
that row's previous ``updated_at``.

Example:
    >>> import sqlalchemy as sa
    >>> print(changed_ids("executions", 7))  # doctest: +NORMALIZE_WHITESPACE
    SELECT DISTINCT audit_log.row_id FROM audit_log
    WHERE audit_log.table_name = :table_name_1 AND audit_log.transaction_id >= :param_1
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .models import AUDIT_LOG, EXECUTIONS, WORKFLOWS

__all__ = ["TABLES", "Point", "changed_ids", "changed_rows", "deleted_ids", "take_point"]

#: The tables whose changes the audit log carries, by name.
TABLES: dict[str, sa.Table] = {"workflows": WORKFLOWS, "executions": EXECUTIONS}


@dataclasses.dataclass(frozen=True)
class Point:
    """A snapshot's place in the change feed.

    ``horizon``: the oldest transaction still running when the snapshot was taken (every
    older one is in it); ``as_of``: the database clock at the snapshot (UTC).
    """

    horizon: int
    as_of: datetime


def take_point(conn: Connection) -> Point:
    """The :class:`Point` of ``conn``'s snapshot: call it first in a REPEATABLE READ
    transaction, so the snapshot it reports is the one every later read uses."""
    xmin = sa.func.pg_snapshot_xmin(sa.func.pg_current_snapshot())
    row = conn.execute(
        sa.select(
            sa.cast(sa.cast(xmin, sa.Text), sa.BigInteger).label("horizon"),
            sa.func.now().label("as_of"),
        )
    ).one()
    return Point(int(row.horizon), row.as_of)


def changed_ids(table: str, since: int) -> sa.Select[Any]:
    """Ids of ``table`` rows written by transactions ``>= since`` (inserted, updated or deleted)."""
    a = AUDIT_LOG.c
    return (
        sa.select(a.row_id)
        .where(a.table_name == table, a.transaction_id >= sa.literal(since, sa.BigInteger))
        .distinct()
    )


def changed_rows(table: str, since: int) -> Any:
    """The WHERE clause selecting the current version of every row changed since ``since``."""
    return TABLES[table].c.id.in_(changed_ids(table, since).scalar_subquery())


def deleted_ids(table: str, since: int) -> sa.Select[Any]:
    """Ids changed since ``since`` that are no longer (visible) in ``table``: deletions."""
    t = TABLES[table]
    ids = changed_ids(table, since).subquery("changed")
    return sa.select(ids.c.row_id.label("id")).where(~sa.exists().where(t.c.id == ids.c.row_id))
