"""The migrated schema is the spec's, object for object, and behaves as the spec says."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from flowscope import _migrate

from .catalog import SHARED_SPEC, SPEC, snapshot, spec_phase1_ddl


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def test_vendored_spec_is_the_shared_spec() -> None:
    if not SHARED_SPEC.exists():
        pytest.skip("shared/spec is not beside this checkout")
    assert SPEC.read_text() == SHARED_SPEC.read_text()


@pytest.fixture(scope="module")
def spec_and_migrated(create_database: Callable[[], str]) -> tuple[dict, dict]:  # type: ignore[type-arg]
    """Catalog snapshots of (the spec's DDL applied verbatim, migrations at revision 0001)."""
    spec_url, migrated_url = create_database(), create_database()
    engine = _engine(spec_url)
    with engine.begin() as conn:
        for block in spec_phase1_ddl():
            conn.exec_driver_sql(block)
        spec = snapshot(conn)
    engine.dispose()
    engine = _engine(migrated_url)
    with engine.connect() as conn:
        _migrate.upgrade(conn, "0001")
        conn.commit()
        migrated = snapshot(conn)
    engine.dispose()
    return spec, migrated


@pytest.mark.parametrize(
    "kind", ["tables", "columns", "constraints", "indexes", "triggers", "functions"]
)
def test_phase1_catalog_equals_spec(spec_and_migrated, kind: str) -> None:  # type: ignore[no-untyped-def]
    spec, migrated = spec_and_migrated
    assert migrated[kind] == spec[kind]


def test_phase1_has_every_named_object(spec_and_migrated) -> None:  # type: ignore[no-untyped-def]
    _, migrated = spec_and_migrated
    assert migrated["tables"] == ["executions", "users", "workflows"]
    index_names = {r[1] for r in migrated["indexes"]}
    assert {
        "idx_workflows_owner", "idx_workflows_org", "idx_workflows_status",
        "idx_workflows_created", "idx_workflows_tags", "idx_workflows_metadata",
        "idx_workflows_search", "idx_executions_workflow", "idx_executions_owner",
        "idx_executions_status", "idx_executions_created", "idx_executions_trace",
        "idx_executions_workflow_status", "idx_users_username", "idx_users_email",
        "idx_users_org", "idx_users_active",
    } <= index_names  # fmt: skip
    assert {r[1] for r in migrated["triggers"]} == {
        "update_workflows_updated_at",
        "update_executions_updated_at",
        "calculate_execution_duration",
        "update_users_updated_at",
    }
    assert {r[0] for r in migrated["functions"]} == {
        "update_updated_at_column",
        "calculate_duration",
    }
    types = {(r[0], r[2]): r[3] for r in migrated["columns"]}
    assert types[("workflows", "nodes")] == "jsonb"
    assert types[("workflows", "tags")] == "text[]"
    assert types[("executions", "duration_seconds")] == "numeric(10,3)"
    assert types[("executions", "created_at")] == "timestamp with time zone"
    assert types[("users", "username")] == "character varying(255)"
    search = next(r[2] for r in migrated["indexes"] if r[1] == "idx_workflows_search")
    assert "USING gin (to_tsvector('english'::regconfig" in search
    assert search.endswith("WHERE (deleted_at IS NULL)")


def test_head_keeps_phase1_objects(spec_and_migrated, client) -> None:  # type: ignore[no-untyped-def]
    """Later revisions add objects; they never alter the spec's phase-1 definitions."""
    spec, _ = spec_and_migrated
    with client.engine.connect() as conn:
        head = snapshot(conn)
    # every spec column is there, unchanged (type, nullability, default, position); a later
    # revision may add columns after them
    spec_columns = {(r[0], r[2]) for r in spec["columns"]}
    head_columns = [r for r in head["columns"] if (r[0], r[2]) in spec_columns]
    assert head_columns == spec["columns"]
    head_indexes = set(head["indexes"])
    assert set(spec["indexes"]) <= head_indexes
    assert set(spec["triggers"]) <= set(head["triggers"])
    spec_checks = {r for r in spec["constraints"] if r[2] in ("c", "u", "p", "f")}
    assert spec_checks <= set(head["constraints"])


# --- behaviour -----------------------------------------------------------------------

WF = {
    "id": "wf_1",
    "name": "Nightly ETL",
    "owner": "ana",
    "nodes": "[]",
    "edges": "[]",
    "created_by": "ana",
    "updated_by": "ana",
}


def _insert_workflow(conn: sa.Connection, **overrides: object) -> None:
    row = {**WF, **overrides}
    cols = ", ".join(row)
    params = ", ".join(f"CAST(:{k} AS jsonb)" if k in ("nodes", "edges") else f":{k}" for k in row)
    conn.execute(sa.text(f"INSERT INTO workflows ({cols}) VALUES ({params})"), row)


def test_server_defaults(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        _insert_workflow(conn)
        row = conn.execute(sa.text("SELECT * FROM workflows")).mappings().one()
        assert row["version"] == 1
        assert row["metadata"] == {}
        assert row["tags"] == []
        assert row["status"] == "draft"
        assert row["is_public"] is False
        assert row["created_at"].tzinfo is not None
        conn.execute(
            sa.text(
                "INSERT INTO executions (id, workflow_id, owner) VALUES ('ex_1', 'wf_1', 'ana')"
            )
        )
        ex = conn.execute(sa.text("SELECT * FROM executions")).mappings().one()
        assert (ex["status"], ex["parameters"], ex["steps_completed"], ex["steps_total"]) == (
            "queued", {}, 0, 0,
        )  # fmt: skip


def test_updated_at_moves_on_update(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        _insert_workflow(conn)
        conn.execute(
            sa.text(
                "UPDATE workflows SET created_at = created_at - interval '1 day', updated_at = :t"
            ),
            {"t": datetime(2020, 1, 1, tzinfo=UTC)},
        )
    with engine.begin() as conn:
        before = conn.execute(sa.text("SELECT updated_at FROM workflows")).scalar_one()
        conn.execute(sa.text("UPDATE workflows SET name = 'renamed'"))
        after = conn.execute(sa.text("SELECT updated_at FROM workflows")).scalar_one()
    # the trigger overrides the explicit 2020 value with the statement's timestamp
    assert before.year > 2020 and after >= before


def test_duration_computed_when_completed_at_first_set(engine: sa.Engine) -> None:
    start = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    with engine.begin() as conn:
        _insert_workflow(conn)
        conn.execute(
            sa.text(
                "INSERT INTO executions (id, workflow_id, owner, status, started_at)"
                " VALUES ('ex_1', 'wf_1', 'ana', 'running', :s)"
            ),
            {"s": start},
        )
        conn.execute(
            sa.text("UPDATE executions SET completed_at = :c, status = 'completed'"),
            {"c": start + timedelta(seconds=12, microseconds=345600)},
        )
        assert conn.execute(
            sa.text("SELECT duration_seconds FROM executions")
        ).scalar_one() == Decimal("12.346")
        # a later change of completed_at does not fire the trigger again (OLD.completed_at is set)
        conn.execute(
            sa.text("UPDATE executions SET completed_at = :c"), {"c": start + timedelta(seconds=99)}
        )
        assert conn.execute(
            sa.text("SELECT duration_seconds FROM executions")
        ).scalar_one() == Decimal("12.346")


@pytest.mark.parametrize(
    ("table", "statement", "constraint"),
    [
        ("workflows", "UPDATE workflows SET status = 'paused'", "valid_status"),
        ("workflows", "UPDATE workflows SET nodes = '{}'::jsonb", "valid_nodes"),
        ("workflows", "UPDATE workflows SET edges = '\"x\"'::jsonb", "valid_edges"),
        ("executions", "UPDATE executions SET status = 'done'", "valid_execution_status"),
        ("executions", "UPDATE executions SET parameters = '[]'::jsonb", "valid_parameters"),
        ("executions", "UPDATE executions SET duration_seconds = -0.001", "valid_duration"),
    ],
)
def test_check_constraints_reject_bad_rows(
    engine: sa.Engine, table: str, statement: str, constraint: str
) -> None:
    with engine.begin() as conn:
        _insert_workflow(conn)
        conn.execute(
            sa.text(
                "INSERT INTO executions (id, workflow_id, owner) VALUES ('ex_1', 'wf_1', 'ana')"
            )
        )
    with pytest.raises(sa.exc.IntegrityError, match=constraint), engine.begin() as conn:
        conn.execute(sa.text(statement))


def test_executions_cascade_with_their_workflow(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        _insert_workflow(conn)
        conn.execute(
            sa.text(
                "INSERT INTO executions (id, workflow_id, owner) VALUES ('ex_1', 'wf_1', 'ana')"
            )
        )
        conn.execute(sa.text("DELETE FROM workflows"))
        assert conn.execute(sa.text("SELECT count(*) FROM executions")).scalar_one() == 0


def test_username_and_email_are_unique(engine: sa.Engine) -> None:
    insert = sa.text(
        "INSERT INTO users (id, username, email, password_hash) VALUES (:i, :u, :e, '!')"
    )
    with engine.begin() as conn:
        conn.execute(insert, {"i": "u1", "u": "ana", "e": "ana@x.io"})
    for dup in ({"i": "u2", "u": "ana", "e": "b@x.io"}, {"i": "u3", "u": "bo", "e": "ana@x.io"}):
        with pytest.raises(sa.exc.IntegrityError, match="_key"), engine.begin() as conn:
            conn.execute(insert, dup)
