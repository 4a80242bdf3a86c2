"""Revision 0005: concurrently built indexes, and recovery from a half-built (INVALID) one."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flowscope import _migrate

NAMES = (
    "idx_executions_created_id",
    "idx_executions_status_created_id",
    "idx_executions_org_created_id",
    "idx_executions_workflow_created_id",
)


def _indexes(conn: sa.Connection) -> dict[str, tuple[bool, str]]:
    rows = conn.execute(
        sa.text(
            "SELECT c.relname, i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = ANY(:n)"
        ),
        {"n": list(NAMES)},
    )
    return {name: (valid, definition) for name, valid, definition in rows}


def test_invalid_half_built_index_is_rebuilt(create_database: Callable[[], str]) -> None:
    engine = sa.create_engine(create_database(), poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        _migrate.upgrade(conn, "0004")
        conn.commit()
        conn.execute(
            sa.text(
                "INSERT INTO workflows (id, name, owner, nodes, edges, created_by, updated_by)"
                " VALUES ('wf_1', 'w', 'u', '[]', '[]', 'u', 'u');"
                " INSERT INTO executions (id, workflow_id, owner) VALUES"
                " ('ex_1', 'wf_1', 'u'), ('ex_2', 'wf_1', 'u')"
            )
        )
        conn.commit()
    # a CONCURRENTLY build that fails half-way leaves an INVALID index with the same name
    auto = engine.execution_options(isolation_level="AUTOCOMMIT")
    with auto.connect() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.execute(
            sa.text(
                "CREATE UNIQUE INDEX CONCURRENTLY idx_executions_created_id ON executions (owner)"
            )
        )
    with engine.connect() as conn:
        assert _indexes(conn)["idx_executions_created_id"][0] is False
        _migrate.upgrade(conn, "0005")
        conn.commit()
        found = _indexes(conn)
        assert set(found) == set(NAMES)
        assert all(valid for valid, _ in found.values())
        assert "(created_at, id) INCLUDE (status)" in found["idx_executions_created_id"][1]
        assert "UNIQUE" not in found["idx_executions_created_id"][1]
        _migrate.downgrade(conn, "0004")
        conn.commit()
        assert _indexes(conn) == {}
        _migrate.upgrade(conn, "head")
        conn.commit()
    engine.dispose()
