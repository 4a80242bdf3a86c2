"""Phase 3: the audit log becomes a monthly range-partitioned table.

The audit log only grows; partitioning it by month on ``occurred_at`` lets
retention drop a month with ``DETACH PARTITION`` + ``DROP TABLE`` instead of a
huge ``DELETE``, and keeps recent-month queries on small tables.

* The primary key becomes ``(id, occurred_at)``: PostgreSQL requires the
  partition key in every unique constraint. ``id`` is still an identity column
  and still unique in practice.
* Partitions ``audit_log_YYYY_MM`` (UTC months) are created from the month of the
  oldest existing row through three months ahead, plus ``audit_log_default``
  for anything outside them (a row with no partition would fail the audited
  write). ``flowscope db maintain`` / ``client.maintenance.maintain()`` creates
  the coming months and drops those past retention.
* Conversion keeps every row: the old table is renamed, the new one created,
  rows copied with their ids (``OVERRIDING SYSTEM VALUE``), the identity
  sequence moved past the highest id, the old table dropped. The downgrade does
  the reverse.
* Tenancy: the policy ``tenant_isolation`` and ``GRANT SELECT`` are on the
  parent. Partitions do not inherit the RLS flag, so tenants get no privilege
  on them at all (they reach rows only through the parent, which filters), and
  each partition also has RLS enabled with no policy: deny-all for anyone but
  the owner, should a grant ever be added by mistake.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_ROLE = "flowscope_tenant"
MONTHS_AHEAD = 3

COLUMNS = """
    occurred_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    table_name VARCHAR(63) NOT NULL,
    row_id VARCHAR(255) NOT NULL,
    action VARCHAR(10) NOT NULL,
    actor VARCHAR(255),
    organization_id VARCHAR(255),
    changes JSONB NOT NULL DEFAULT '{}',
    transaction_id BIGINT NOT NULL DEFAULT txid_current(),
    CONSTRAINT valid_audit_action CHECK (action IN ('INSERT', 'UPDATE', 'DELETE'))"""
COLUMN_NAMES = (
    "id, occurred_at, table_name, row_id, action, actor, organization_id, changes, transaction_id"
)
INDEXES = (
    ("idx_audit_log_row", "(table_name, row_id, occurred_at)"),
    ("idx_audit_log_occurred", "(occurred_at)"),
    ("idx_audit_log_org", "(organization_id, occurred_at)"),
)


def _add_months(d: date, months: int) -> date:
    index = d.year * 12 + d.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _partition_name(month: date) -> str:
    return f"audit_log_{month.year:04d}_{month.month:02d}"


def _create_partition(month: date) -> None:
    name = _partition_name(month)
    op.execute(
        f"CREATE TABLE {name} PARTITION OF audit_log"
        f" FOR VALUES FROM ('{month.isoformat()} 00:00:00+00')"
        f" TO ('{_add_months(month, 1).isoformat()} 00:00:00+00')"
    )
    _protect(name)


def _protect(name: str) -> None:
    op.execute(f"REVOKE ALL ON {name} FROM PUBLIC")
    op.execute(f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY")


def _tenancy(table: str) -> None:
    op.execute(f"GRANT SELECT ON {table} TO {TENANT_ROLE}")
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {table} FOR SELECT TO {TENANT_ROLE}"
        " USING (organization_id = flowscope_current_organization())"
    )


def _rename_old(new_name: str) -> None:
    op.execute(f"ALTER TABLE audit_log RENAME TO {new_name}")
    op.execute(f"ALTER TABLE {new_name} RENAME CONSTRAINT audit_log_pkey TO {new_name}_pkey")
    op.execute(f"ALTER SEQUENCE audit_log_id_seq RENAME TO {new_name}_id_seq")
    for index, _ in INDEXES:
        op.execute(f"ALTER INDEX {index} RENAME TO {index.replace('audit_log', new_name)}")


def _copy_and_drop(old: str) -> None:
    op.execute(f"LOCK TABLE {old} IN ACCESS EXCLUSIVE MODE")
    op.execute(
        f"INSERT INTO audit_log ({COLUMN_NAMES}) OVERRIDING SYSTEM VALUE"
        f" SELECT {COLUMN_NAMES} FROM {old}"
    )
    # the identity continues after the highest id copied
    op.execute(
        "SELECT setval(pg_get_serial_sequence('audit_log', 'id'),"
        f" COALESCE((SELECT max(id) FROM {old}), 0) + 1, false)"
    )
    op.execute(f"DROP TABLE {old}")


def upgrade() -> None:
    bind = op.get_bind()
    old = "audit_log_unpartitioned"
    op.execute("LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE")
    oldest = bind.execute(
        sa.text("SELECT min(occurred_at) AT TIME ZONE 'UTC' FROM audit_log")
    ).scalar()
    _rename_old(old)
    op.execute(f"""
CREATE TABLE audit_log (
    id BIGINT GENERATED ALWAYS AS IDENTITY,{COLUMNS},
    CONSTRAINT audit_log_pkey PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at)""")
    for index, columns in INDEXES:
        op.execute(f"CREATE INDEX {index} ON audit_log {columns}")
    this_month = datetime.now(UTC).date().replace(day=1)
    first = min(this_month, oldest.date().replace(day=1)) if oldest is not None else this_month
    month = first
    while month <= _add_months(this_month, MONTHS_AHEAD):
        _create_partition(month)
        month = _add_months(month, 1)
    op.execute("CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT")
    _protect("audit_log_default")
    _copy_and_drop(old)
    _tenancy("audit_log")


def downgrade() -> None:
    old = "audit_log_partitioned"
    op.execute("LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE")
    _rename_old(old)
    op.execute(f"""
CREATE TABLE audit_log (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,{COLUMNS}
)""")
    for index, columns in INDEXES:
        op.execute(f"CREATE INDEX {index} ON audit_log {columns}")
    _copy_and_drop(old)  # drops the partitions with their parent
    _tenancy("audit_log")
