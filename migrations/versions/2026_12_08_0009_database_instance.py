"""Provenance: a per-database instance id, so a copy can tell its source from a look-alike.

A mirror, an incremental export or a retention archive of a database must never be read
as current for another database that merely has the same host, port and name (dropped and
created again, a re-created embedded data directory, a test database re-made by a fixture).
``flowscope_instance`` holds one row: a random ``id`` created with the database's schema.
Together with the database's OID and, where readable, the cluster's system identifier and
timeline (``pg_control_system()``, ``pg_control_checkpoint()``), it names the source of
every derived copy (:mod:`flowscope._provenance`). A database restored physically from an
older state keeps all of these; the copy's transaction-id horizon, ahead of the server's,
tells it apart.

The row is readable by every login (it is no secret and tenants' copies need it) and
written by nobody but the migration.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE flowscope_instance (
            singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
            id UUID NOT NULL DEFAULT gen_random_uuid(),
            created_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("INSERT INTO flowscope_instance DEFAULT VALUES")
    op.execute("REVOKE ALL ON flowscope_instance FROM PUBLIC")
    op.execute("GRANT SELECT ON flowscope_instance TO PUBLIC")


def downgrade() -> None:
    op.execute("DROP TABLE flowscope_instance")
