"""Bulk ingest: validation before anything is written, one transaction, durations,
workflow versions, generated ids, every input shape, tenancy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import flowscope
import pytest
import sqlalchemy as sa
from flowscope._ingest import ingest
from flowscope._ingest._columns import NOW, columns
from flowscope.models import (
    EXECUTIONS,
    ORGANIZATIONS,
    USERS,
    WORKFLOW_STATUSES,
    WORKFLOWS,
    Execution,
    ExecutionStatus,
)

from ._helpers import acting_as

T0 = datetime(2026, 5, 1, 8, 0, 0, 250_000, tzinfo=UTC)


@pytest.fixture
def base(client: flowscope.Client, engine: sa.Engine) -> flowscope.Client:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(ORGANIZATIONS),
            [{"id": "org_a", "name": "A", "slug": "a"}, {"id": "org_b", "name": "B", "slug": "b"}],
        )
        for uid, org, scopes in (
            ("usr_me", None, ["workflow:read", "workflow:execute"]),
            ("usr_a", "org_a", ["workflow:read:all", "workflow:execute", "workflow:write:all"]),
            ("usr_ro", "org_a", ["workflow:read"]),
        ):
            conn.execute(
                sa.insert(USERS).values(
                    id=uid,
                    username=uid,
                    email=f"{uid}@example.com",
                    password_hash="x",
                    organization_id=org,
                    scopes=scopes,
                )
            )
        for wid, org, version in (("wf_a", "org_a", 3), ("wf_b", "org_b", 1)):
            conn.execute(
                sa.insert(WORKFLOWS).values(
                    id=wid,
                    name=wid,
                    owner="usr_w",
                    organization_id=org,
                    nodes=[],
                    edges=[],
                    version=version,
                    created_by="usr_w",
                    updated_by="usr_w",
                )
            )
    return client


def _executions(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(sa.select(EXECUTIONS).order_by(EXECUTIONS.c.id)).mappings()
        ]


def _historical(n: int, workflow: str = "wf_a") -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        start = T0 + timedelta(minutes=i, microseconds=i)
        rows.append(
            {
                "id": f"ex_{i:03d}",
                "workflow_id": workflow,
                "owner": "usr_1",
                "status": "completed" if i % 2 == 0 else "failed",
                "parameters": {"i": i, "name": f"ñ{i}", "nested": {"x": [1, None]}},
                "result": {"ok": True} if i % 2 == 0 else None,
                "error": None if i % 2 == 0 else {"message": "bööm"},
                "started_at": start,
                "completed_at": start + timedelta(seconds=i, microseconds=1500),
                "steps_completed": 2,
                "steps_total": 2,
                "created_at": start,
            }
        )
    return rows


def test_ingest_dicts_computes_duration_and_version(
    base: flowscope.Client, engine: sa.Engine
) -> None:
    rows = _historical(25)
    rows[3]["metadata"] = {"workflow_version": 9, "k": "v"}
    rows[4]["duration_seconds"] = 1.5
    result = base.executions.ingest(rows)
    assert result.rows == 25
    stored = _executions(engine)
    assert [r["id"] for r in stored] == [r["id"] for r in rows]
    for src, got in zip(rows, stored, strict=True):
        assert got["started_at"] == src["started_at"]
        assert got["parameters"] == src["parameters"]
        assert got["result"] == src["result"]
        assert got["organization_id"] == "org_a"  # the workflow's
    # duration: as EXTRACT(EPOCH FROM completed_at - started_at) rounded to NUMERIC(10,3)
    with engine.connect() as conn:
        expected = dict(
            conn.execute(
                sa.text(
                    "SELECT id, EXTRACT(EPOCH FROM completed_at - started_at)::numeric(10,3)"
                    " FROM executions"
                )
            ).all()
        )
    for got in stored:
        if got["id"] == "ex_004":
            assert got["duration_seconds"] == Decimal("1.500")
        else:
            assert got["duration_seconds"] == expected[got["id"]]
    assert stored[1]["duration_seconds"] == Decimal("1.002")  # 1.0015 s rounds half up
    assert stored[0]["metadata"] == {"workflow_version": 3}
    assert stored[3]["metadata"] == {"workflow_version": 9, "k": "v"}
    # one statement-level audit row per ingested row
    with engine.connect() as conn:
        n = conn.execute(
            sa.text("SELECT count(*) FROM audit_log WHERE table_name = 'executions'")
        ).scalar()
    assert n == 25


def test_missing_values_get_defaults_and_ids(base: flowscope.Client, engine: sa.Engine) -> None:
    scoped_user = acting_as(base, "usr_me")
    ingest(scoped_user, "executions", [{"workflow_id": "wf_b"}, {"workflow_id": "wf_a"}])
    stored = _executions(engine)
    assert len(stored) == 2
    for row in stored:
        assert row["id"].startswith("ex_") and len(row["id"]) == 29
        assert row["status"] == "queued" and row["owner"] == "usr_me"
        assert row["parameters"] == {} and row["steps_completed"] == 0
        assert row["duration_seconds"] is None and row["created_at"] is not None
    assert len({r["id"] for r in stored}) == 2


def test_bad_row_is_named_and_nothing_is_written(base: flowscope.Client, engine: sa.Engine) -> None:
    before = _executions(engine)
    cases = [
        ({"status": "exploded"}, "status"),
        ({"owner": "x" * 256}, "owner"),
        ({"parameters": [1, 2]}, "parameters"),
        ({"steps_total": "three"}, "steps_total"),
        ({"started_at": "yesterday"}, "started_at"),
        ({"completed_at": T0 - timedelta(days=1)}, "completed_at"),
        ({"workflow_id": "wf_missing"}, "workflow_id"),
        ({"colour": "blue"}, "colour"),
        ({"result": {"x": float("nan")}}, "result"),
        ({"current_step": "a\x00b"}, "current_step"),
        ({"duration_seconds": -1}, "duration_seconds"),
    ]
    for change, field in cases:
        rows = _historical(30)
        rows[17].update(change)
        with pytest.raises(flowscope.ValidationError) as info:
            ingest(base, "executions", rows)
        assert info.value.errors[0]["index"] == 17, change
        assert info.value.errors[0]["loc"] == (field,), change
        assert "row 17" in str(info.value) and field in str(info.value)
        assert _executions(engine) == before
    rows = _historical(30)
    rows[2]["status"] = "nope"
    rows[29]["steps_total"] = -1.5
    with pytest.raises(flowscope.ValidationError) as info:
        ingest(base, "executions", rows)
    assert [e["index"] for e in info.value.errors] == [2, 29]


def test_error_count_says_when_checking_stopped(base: flowscope.Client, engine: sa.Engine) -> None:
    rows = _historical(30)
    bad = [dict(r) for r in rows]
    bad[3]["status"] = "nope"
    bad[4]["steps_total"] = "three"
    with pytest.raises(flowscope.ValidationError) as info:
        ingest(base, "executions", bad)
    assert [e["index"] for e in info.value.errors] == [3, 4]
    assert str(info.value).startswith("2 of 30 rows are invalid")
    many = [dict(r, status="nope") for r in rows]  # checking stops at the 20th bad row
    with pytest.raises(flowscope.ValidationError, match="at least 20 of 30 rows are invalid"):
        ingest(base, "executions", many)
    assert _executions(engine) == []


def test_database_error_rolls_everything_back(base: flowscope.Client, engine: sa.Engine) -> None:
    ingest(base, "executions", _historical(3))
    before = _executions(engine)
    rows = _historical(40)[3:]
    rows.append({**_historical(1)[0]})  # duplicate primary key, found by the database
    with pytest.raises(flowscope.ConflictError):
        ingest(base, "executions", rows)
    assert _executions(engine) == before


def test_dataframe_arrow_and_models(base: flowscope.Client, engine: sa.Engine) -> None:
    import pandas as pd
    import pyarrow as pa

    rows = _historical(6)
    ingest(base, "executions", pd.DataFrame(rows[:2]))
    ingest(base, "executions", [Execution(**r) for r in rows[2:4]])
    source = {r["id"]: r for r in rows}
    # round trip: the Arrow table flowscope reads can be ingested as is (JSON as text)
    table = base.executions.to_arrow()
    with engine.begin() as conn:
        conn.execute(sa.delete(EXECUTIONS))
    ingest(base, "executions", table)
    ingest(base, "executions", pa.Table.from_pylist(rows[4:6]).drop_columns(["parameters"]))
    frame = base.executions.to_pandas(ids=["ex_000", "ex_001"])
    with engine.begin() as conn:
        conn.execute(sa.delete(EXECUTIONS).where(EXECUTIONS.c.id.in_(["ex_000", "ex_001"])))
    ingest(base, "executions", frame)
    stored = {r["id"]: r for r in _executions(engine)}
    assert sorted(stored) == sorted(source)
    for key, got in stored.items():
        assert got["started_at"] == source[key]["started_at"]
        assert got["completed_at"] == source[key]["completed_at"]
        assert got["status"] == source[key]["status"]
    assert stored["ex_005"]["parameters"] == {}
    assert stored["ex_001"]["error"] == {"message": "bööm"}
    with pytest.raises(flowscope.ValidationError, match="many rows"):
        ingest(base, "executions", {"workflow_id": "wf_a"})


def test_workflows_ingest(base: flowscope.Client, engine: sa.Engine) -> None:
    result = base.workflows.ingest(
        [
            {"name": "Ünï", "owner": "usr_1", "nodes": [{"id": "n"}], "edges": [], "tags": ["a", ""]},
            {"id": "wf_x", "name": "x", "owner": "usr_1", "nodes": [], "edges": [], "status": "active"},
        ],
    )  # fmt: skip
    assert result.rows == 2
    with engine.connect() as conn:
        rows = {
            r["name"]: r
            for r in conn.execute(
                sa.select(WORKFLOWS).where(WORKFLOWS.c.name.in_(["Ünï", "x"]))
            ).mappings()
        }
    assert rows["Ünï"]["tags"] == ["a", ""] and rows["Ünï"]["id"].startswith("wf_")
    assert rows["Ünï"]["created_by"] == "usr_1" and rows["Ünï"]["status"] == "draft"
    assert rows["x"]["tags"] == [] and rows["x"]["version"] == 1
    with pytest.raises(flowscope.ValidationError, match="row 0: nodes"):
        ingest(base, "workflows", [{"name": "n", "owner": "o", "nodes": {}, "edges": []}])
    with pytest.raises(flowscope.ValidationError, match="row 1: edges: required"):
        ingest(base, "workflows", [{"name": "n", "owner": "o", "nodes": [], "edges": []}, {"name": "m", "owner": "o", "nodes": []}])  # fmt: skip


def test_scoped_ingest_stays_in_its_organization(base: flowscope.Client, engine: sa.Engine) -> None:
    scoped = base.scoped("org_a", user_id="usr_a")
    assert scoped.executions.ingest(_historical(5)).rows == 5
    stored = _executions(engine)
    assert {r["organization_id"] for r in stored} == {"org_a"}
    with pytest.raises(flowscope.PermissionDeniedError, match="row 1"):
        ingest(scoped, "executions", [{"workflow_id": "wf_a"}, {"workflow_id": "wf_a", "organization_id": "org_b"}])  # fmt: skip
    # another organization's workflow is invisible to the scoped client
    with pytest.raises(flowscope.ValidationError, match="no workflow 'wf_b'"):
        ingest(scoped, "executions", [{"workflow_id": "wf_b"}])
    assert len(_executions(engine)) == 5
    scoped.workflows.ingest([{"name": "w", "nodes": [], "edges": []}])
    with pytest.raises(flowscope.PermissionDeniedError, match="workflow:execute"):
        base.scoped("org_a", user_id="usr_ro").executions.ingest(_historical(1))
    with engine.connect() as conn:
        w = conn.execute(sa.select(WORKFLOWS).where(WORKFLOWS.c.name == "w")).mappings().one()
    assert w["organization_id"] == "org_a" and w["owner"] == "usr_a"


def test_columns_are_read_from_the_models() -> None:
    for table in (EXECUTIONS, WORKFLOWS):
        assert [c.name for c in columns(table)] == [c.name for c in table.columns]
    wf = {c.name: c for c in columns(WORKFLOWS)}
    assert wf["name"].max_length == 255 and wf["name"].required and not wf["id"].has_default
    assert wf["status"].choices == frozenset(WORKFLOW_STATUSES) and wf["status"].default == "draft"
    assert (wf["version"].default, wf["is_public"].default, wf["tags"].default) == (1, False, [])
    assert (
        wf["nodes"].shape is list
        and wf["metadata"].shape is dict
        and wf["metadata"].default == "{}"
    )
    assert wf["description"].sql_type == "text" and wf["tags"].sql_type == "text[]"
    ex = {c.name: c for c in columns(EXECUTIONS)}
    assert ex["result"].shape is None and ex["parameters"].shape is dict
    assert ex["created_at"].default is NOW and ex["steps_total"].default == 0
    assert not ex["status"].required and ex["workflow_id"].required


def test_values_are_converted_and_the_first_bad_column_is_named(
    base: flowscope.Client, engine: sa.Engine
) -> None:
    rows = _historical(3)
    rows[0]["status"] = ExecutionStatus.COMPLETED
    rows[1]["started_at"] = rows[1]["started_at"].replace(tzinfo=None)  # naive means UTC
    rows[1]["completed_at"] = rows[1]["completed_at"].isoformat()
    rows[2]["steps_total"] = 2.0
    ingest(base, "executions", rows)
    stored = _executions(engine)
    expected = _historical(3)
    assert stored[0]["status"] == "completed"
    assert stored[1]["started_at"] == expected[1]["started_at"]
    assert stored[1]["completed_at"] == expected[1]["completed_at"]
    assert stored[2]["steps_total"] == 2
    bad = _historical(1)
    bad[0].update(id="ex_bad", status="nope", steps_total="x", owner=5)
    with pytest.raises(flowscope.ValidationError) as info:
        ingest(base, "executions", bad)
    assert info.value.errors == [
        {"loc": ("owner",), "msg": "expected a string, got int", "index": 0}
    ]
