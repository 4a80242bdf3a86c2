"""Change capture: an index on ``audit_log.transaction_id``, the change feed of mirrors and
incremental exports.

Every INSERT, UPDATE and DELETE on ``workflows`` and ``executions`` writes audit rows in
the same transaction, stamped with that transaction's id (``transaction_id``, the 64-bit
``txid_current()``). A copy synced at a snapshot whose oldest running transaction was
``h`` (``pg_snapshot_xmin(pg_current_snapshot())``) misses exactly the changes of
transactions ``>= h``: every older one had ended, so its effects were in that snapshot.
The next sync reads the ids of ``audit_log WHERE transaction_id >= h`` (inserts, updates
and deletes, including transactions that started long ago and committed late) and fetches
those rows; this index makes that read follow the number of changes, not the log's size.

``audit_log`` is partitioned: the index is created ``ON ONLY`` the parent, built
``CONCURRENTLY`` on each partition (a live log keeps taking writes; a half-built INVALID
one is dropped and rebuilt) and attached. Partitions created later inherit it.

Revision ID: 0008
Revises: 0007 (re-chained after 0007 when merged)
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "idx_audit_log_transaction"


def _state(name: str) -> bool | None:
    """None: no such index; True/False: it exists and is (not) valid."""
    return (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE c.relname = :n AND c.relnamespace = current_schema()::regnamespace"
            ),
            {"n": name},
        )
        .scalar()
    )


def _partitions() -> list[str]:
    rows = op.get_bind().execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'audit_log'::regclass ORDER BY c.relname"
        )
    )
    return [r[0] for r in rows]


def _attached(child: str) -> bool:
    return bool(
        op.get_bind()
        .execute(
            sa.text(
                "SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE c.relname = :c AND i.inhparent = to_regclass(:p))"
            ),
            {"c": child, "p": INDEX},
        )
        .scalar()
    )


def upgrade() -> None:
    quote = op.get_bind().dialect.identifier_preparer.quote
    with op.get_context().autocommit_block():
        if _state(INDEX) is None:
            op.execute(f"CREATE INDEX {INDEX} ON ONLY audit_log (transaction_id)")
        for partition in _partitions():
            child = f"{partition}_transaction_id_idx"
            state = _state(child)
            if state is False:  # a failed CONCURRENTLY build: drop and redo
                op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quote(child)}")
            if state is not True:
                op.execute(
                    f"CREATE INDEX CONCURRENTLY {quote(child)}"
                    f" ON {quote(partition)} (transaction_id)"
                )
            if not _attached(child):
                op.execute(f"ALTER INDEX {INDEX} ATTACH PARTITION {quote(child)}")
        if _state(INDEX) is not True:
            raise RuntimeError(f"index {INDEX} was not built validly; rerun the upgrade")


def downgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {INDEX}")
