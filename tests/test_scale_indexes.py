"""Revision 0005: concurrently built indexes, recovery from a half-built (INVALID) one, and a
build blocked by an open transaction that gives up, naming it, instead of waiting forever."""

from __future__ import annotations

import time
from collections.abc import Callable

import flowscope
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


def _stamp(conn: sa.Connection) -> str:
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()


@pytest.mark.parametrize("hold", ["a write", "a snapshot"])
def test_a_blocked_concurrent_build_gives_up_naming_the_blocker(
    create_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch, hold: str
) -> None:
    """An idle-in-transaction session used to make revision 0005 wait forever; now the
    upgrade stops within a bounded time, names it, and a rerun cleans the half-built index."""
    monkeypatch.setenv("FLOWSCOPE_MIGRATION_LOCK_TIMEOUT", "200ms")
    monkeypatch.setenv("FLOWSCOPE_MIGRATION_LOCK_RETRIES", "2")
    url = create_database()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        _migrate.upgrade(conn, "0004")
        conn.commit()
        conn.execute(
            sa.text(
                "INSERT INTO workflows (id, name, owner, nodes, edges, created_by, updated_by)"
                " VALUES ('wf_1', 'w', 'u', '[]', '[]', 'u', 'u')"
            )
        )
        conn.commit()
    other = sa.create_engine(
        url, poolclass=sa.pool.NullPool, connect_args={"application_name": "stuck-report"}
    )
    with other.connect() as stuck:
        if hold == "a write":  # a row inserted, never committed
            stuck.execute(
                sa.text(
                    "INSERT INTO executions (id, workflow_id, owner) VALUES ('ex_1', 'wf_1', 'u')"
                )
            )
        else:  # a REPEATABLE READ snapshot, left open
            stuck = stuck.execution_options(isolation_level="REPEATABLE READ")
            stuck.execute(sa.text("SELECT count(*) FROM workflows")).scalar_one()
        pid = stuck.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as conn:
            started = time.monotonic()
            with pytest.raises(flowscope.DatabaseError) as caught:
                _migrate.upgrade(conn, "0005")
            elapsed = time.monotonic() - started
            message = str(caught.value)
            assert elapsed < 10, elapsed  # 3 attempts of 200 ms, 1 s and 2 s apart
            for part in (
                f"pid {pid} (application 'stuck-report', state 'idle in transaction'",
                "INDEX CONCURRENTLY",  # CREATE, or DROP of the half-built index on a retry
                "idx_executions_created_id",
                f"pg_terminate_backend(pid) for pid {pid}",
                "flowscope db upgrade",
                "FLOWSCOPE_MIGRATION_LOCK_TIMEOUT",
            ):
                assert part in message, message
            assert _stamp(conn) == "0004"
            # the timed-out build left its half-built (INVALID) index behind
            assert [valid for valid, _ in _indexes(conn).values()] == [False]
            # the caller's session keeps its own lock_timeout
            assert conn.execute(sa.text("SHOW lock_timeout")).scalar_one() == "0"
            conn.rollback()
        stuck.rollback()
    with engine.connect() as conn:
        _migrate.upgrade(conn, "0005")  # the blocker is gone: the INVALID index is rebuilt
        conn.commit()
        found = _indexes(conn)
        assert set(found) == set(NAMES) and all(valid for valid, _ in found.values())
        assert _stamp(conn) == "0005"
    engine.dispose()
    other.dispose()
