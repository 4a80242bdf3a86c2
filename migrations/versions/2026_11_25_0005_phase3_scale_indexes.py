"""Phase 3: indexes for list pages, analytics and pruning at 10M executions.

Every list is a keyset page ordered by ``(<column>, id)`` and every analytics
call filters on a ``created_at`` range; retention prunes the oldest finished
executions first. The spec's single-column indexes cannot serve the row
comparison ``(created_at, id) < (:v, :id)`` nor a status filter with that
order, so a 10M-row table fell back to sorting (cf. Prefect's flow_run table at
~6M rows). Added:

* ``idx_executions_created_id``  ``(created_at, id) INCLUDE (status)``: default
  list order, keyset pages, the prune's batch order, and time-range status
  counts as index-only scans;
* ``idx_executions_status_created_id``  ``(status, created_at, id)``: lists and
  failure analytics filtered by status, the prune's status filter;
* ``idx_executions_org_created_id``  ``(organization_id, created_at, id)``: every
  tenant's (RLS-filtered) list and analytics;
* ``idx_executions_workflow_created_id``  ``(workflow_id, created_at, id)``: a
  workflow's executions, newest first (popular workflows have 100k+ rows).

They are built ``CONCURRENTLY`` (outside a transaction, in
``autocommit_block()``) so a live table keeps taking writes. A concurrent build
that failed leaves an INVALID index behind; each build first drops such a
half-built index, and checks afterwards that the new one is valid.

A concurrent build waits for every transaction that writes the table or holds
an older snapshot, so one session left idle in a transaction used to stall this
revision indefinitely. The migration environment (``env.py``) runs every statement
with a ``lock_timeout`` (``FLOWSCOPE_MIGRATION_LOCK_TIMEOUT``, 5 s): a build that
times out leaves its INVALID index, the upgrade is retried (the retry drops and
rebuilds it), and after the last retry it fails naming the blocking sessions.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("idx_executions_created_id", "executions", "(created_at, id) INCLUDE (status)"),
    ("idx_executions_status_created_id", "executions", "(status, created_at, id)"),
    ("idx_executions_org_created_id", "executions", "(organization_id, created_at, id)"),
    ("idx_executions_workflow_created_id", "executions", "(workflow_id, created_at, id)"),
)


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


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, columns in INDEXES:
            state = _state(name)
            if state is True:
                continue
            if state is False:  # a failed CONCURRENTLY build: drop and redo
                op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.execute(f"CREATE INDEX CONCURRENTLY {name} ON {table} {columns}")
            if _state(name) is not True:
                raise RuntimeError(f"index {name} was not built validly; rerun the upgrade")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, _, _ in reversed(INDEXES):
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
