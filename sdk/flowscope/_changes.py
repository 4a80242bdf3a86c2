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
snapshot. The copy also keeps its whole snapshot (``pg_current_snapshot()``, the
in-progress list included), so transactions ``>= horizon`` that it had already seen are
skipped (``pg_visible_in_snapshot``): a long transaction elsewhere on the server holds the
horizon back but makes no sync re-read what it already has. A copy's cost follows the number
of changed rows.

``audit_log`` itself is append-only and carries its own ``transaction_id``: its new rows
are those of transactions ``>= horizon`` not visible in the previous snapshot
(:func:`changed_where`); rows its retention drops are not reported as deleted.

Limits: changes made with triggers disabled (``session_replication_role = replica``, as
``benchmarks/datagen.py`` loads) are invisible to the feed; audit partitions dropped by
retention take their changes with them (a copy older than the audit retention must be
taken again in full); a change of *visibility* without a change of the row (a handover, an
``is_public`` flip or a scope seen by another login) is not a change of the row, and the audit
log shows a restricted login only the rows it still sees, so their deletions are hidden from
it too (the mirror and incremental export reconcile both for scoped logins:
:mod:`flowscope.mirror._sync`, :func:`flowscope.export._incremental.reconcile`); an UPDATE that changes no
column but ``updated_at`` writes no audit row (the audit trigger skips it), so a copy keeps
that row's previous ``updated_at``.

Example:
    >>> import sqlalchemy as sa
    >>> print(changed_ids("executions", 7))  # doctest: +NORMALIZE_WHITESPACE
    SELECT DISTINCT audit_log.row_id FROM audit_log
    WHERE audit_log.table_name = :table_name_1 AND audit_log.transaction_id >= :param_1
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.types import UserDefinedType

from . import _db
from .models import AUDIT_LOG, EXECUTIONS, ORGANIZATIONS, USERS, WORKFLOWS

if TYPE_CHECKING:
    from ._session import Session

__all__ = [
    "TABLES",
    "Point",
    "changed_ids",
    "changed_rows",
    "changed_where",
    "deleted_ids",
    "export_snapshot",
    "snapshot",
    "take_point",
    "visible_ids",
]

#: The tables whose changes the audit log carries (its triggers), by name.
TABLES: dict[str, sa.Table] = {
    "workflows": WORKFLOWS,
    "executions": EXECUTIONS,
    "users": USERS,
    "organizations": ORGANIZATIONS,
}


class _PgType(UserDefinedType[Any]):
    """A PostgreSQL type by name, for casts (``xid8``, ``pg_snapshot``)."""

    cache_ok = True

    def __init__(self, name: str) -> None:
        self.name = name

    def get_col_spec(self, **kw: Any) -> str:
        return self.name


@dataclasses.dataclass(frozen=True)
class Point:
    """A snapshot's place in the change feed.

    ``horizon``: the oldest transaction still running when the snapshot was taken (every
    older one is in it); ``snapshot``: the snapshot itself (``xmin:xmax:xip,...``), to skip
    the transactions ``>= horizon`` it had already seen; ``as_of``: the database clock at
    the snapshot (UTC).
    """

    horizon: int
    snapshot: str | None
    as_of: datetime


@contextlib.contextmanager
def snapshot(session: Session) -> Iterator[Connection]:
    """A READ ONLY, REPEATABLE READ transaction on the primary, as the session's login:
    every read of one copy (and :func:`take_point`, first) happens in it."""
    with _db.translating(session.url):
        conn = session.engine.connect().execution_options(isolation_level="REPEATABLE READ")
        with conn, conn.begin():
            conn.execute(sa.text("SET TRANSACTION READ ONLY"))
            yield conn


def export_snapshot(conn: Connection) -> str:
    """``pg_export_snapshot()``: an id another connection imports (``SET TRANSACTION
    SNAPSHOT``) to read exactly what ``conn``'s transaction reads, while it stays open."""
    return str(conn.execute(sa.select(sa.func.pg_export_snapshot())).scalar_one())


def take_point(conn: Connection) -> Point:
    """The :class:`Point` of ``conn``'s snapshot: call it first in a REPEATABLE READ
    transaction, so the snapshot it reports is the one every later read uses."""
    snapshot = sa.func.pg_current_snapshot()
    xmin = sa.func.pg_snapshot_xmin(snapshot)
    row = conn.execute(
        sa.select(
            sa.cast(sa.cast(xmin, sa.Text), sa.BigInteger).label("horizon"),
            sa.cast(snapshot, sa.Text).label("snapshot"),
            sa.func.now().label("as_of"),
        )
    ).one()
    return Point(int(row.horizon), row.snapshot, row.as_of)


def changed_ids(table: str, since: int, seen: str | None = None) -> sa.Select[Any]:
    """Ids of ``table`` rows written by transactions ``>= since`` (inserted, updated or
    deleted), except those of transactions visible in the snapshot ``seen``."""
    a = AUDIT_LOG.c
    where = [a.table_name == table, a.transaction_id >= sa.literal(since, sa.BigInteger)]
    if seen is not None:
        where.append(_unseen(a.transaction_id, seen))
    return sa.select(a.row_id).where(*where).distinct()


def _unseen(xid_column: Any, seen: str) -> Any:
    xid = sa.cast(sa.cast(xid_column, sa.Text), _PgType("xid8"))
    return ~sa.func.pg_visible_in_snapshot(
        xid, sa.cast(sa.literal(seen, sa.Text), _PgType("pg_snapshot"))
    )


def changed_where(table: str, since: int, seen: str | None = None) -> Any:
    """The WHERE clause selecting what changed in ``table`` since a copy at (``since``,
    ``seen``): for ``audit_log``, its rows written since; for the audited tables, the
    current version of every row changed since (:func:`changed_rows`).

    Example:
        >>> print(changed_where("audit_log", 7))
        audit_log.transaction_id >= :param_1
    """
    if table == "audit_log":
        a = AUDIT_LOG.c
        clause = a.transaction_id >= sa.literal(since, sa.BigInteger)
        return clause if seen is None else sa.and_(clause, _unseen(a.transaction_id, seen))
    return changed_rows(table, since, seen)


def changed_rows(table: str, since: int, seen: str | None = None) -> Any:
    """The WHERE clause selecting the current version of every row changed since ``since``."""
    return TABLES[table].c.id.in_(changed_ids(table, since, seen).scalar_subquery())


def visible_ids(conn: Connection, table: str, where: Any) -> set[str]:
    """The ids of ``table`` the login of ``conn`` reads now under ``where`` (row-level
    security applies): what a copy compares with its own ids to follow a change of
    *visibility*, which the feed cannot show (module docstring)."""
    return {r[0] for r in conn.execute(sa.select(TABLES[table].c.id).where(where))}


def deleted_ids(table: str, since: int, seen: str | None = None) -> sa.Select[Any]:
    """Ids changed since ``since`` that are no longer (visible) in ``table``: deletions."""
    t = TABLES[table]
    ids = changed_ids(table, since, seen).subquery("changed")
    return sa.select(ids.c.row_id.label("id")).where(~sa.exists().where(t.c.id == ids.c.row_id))
