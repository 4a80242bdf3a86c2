"""client.workflows: every verb, every filter, keyset pagination, optimistic concurrency, indexes."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import flowscope
import pytest
import sqlalchemy as sa
from flowscope.models import WORKFLOWS

from ._helpers import acting_as, explain, make_workflow, row_counts


def test_create_defaults_and_ids(client: flowscope.Client) -> None:
    wf = client.workflows.create(name="nightly", owner="ana", nodes=[{"id": "a"}], edges=[])
    assert wf.id.startswith("wf_") and len(wf.id) == 3 + 26
    assert (wf.version, wf.status, wf.is_public, wf.tags) == (1, "draft", False, [])
    assert wf.metadata == {} and wf.metadata_ == {}
    assert wf.created_by == wf.updated_by == "ana"
    assert client.workflows.get(wf.id) == wf
    # ids sort by creation time (ULID)
    later = make_workflow(client)
    assert later.id > wf.id


def test_create_accepts_model_and_metadata_alias(client: flowscope.Client) -> None:
    a = client.workflows.create(
        flowscope.WorkflowCreate(name="a", owner="o", nodes=[], edges=[], metadata_={"k": 1})
    )
    b = client.workflows.create(name="b", owner="o", metadata={"k": 2}, id="wf_custom")
    assert a.metadata == {"k": 1} and b.metadata == {"k": 2} and b.id == "wf_custom"
    with pytest.raises(flowscope.ConflictError, match="id"):
        client.workflows.create(name="c", owner="o", id="wf_custom")


def test_owner_defaults_to_acting_user(client: flowscope.Client) -> None:
    with pytest.raises(flowscope.ValidationError, match="owner"):
        client.workflows.create(name="x")
    client.users.create(id="usr_bo", username="bo", email="bo@example.com", is_admin=True)
    wf = acting_as(client, "usr_bo").workflows.create(name="mine")
    assert (wf.owner, wf.created_by, wf.updated_by) == ("usr_bo", "usr_bo", "usr_bo")


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "running"},
        {"nodes": {"a": 1}},
        {"edges": "[]"},
        {"name": "x" * 256},
        {"name": ""},
        {"metadata": [1, 2]},
        {"tags": "etl"},
        {"owner": "o" * 256},
        {"colour": "red"},
        {"nodes": [float("nan")]},
        {"description": "nul\x00byte"},
    ],
)
def test_invalid_create_writes_nothing(
    client: flowscope.Client, engine: sa.Engine, fields: dict[str, object]
) -> None:
    before = row_counts(engine)
    with pytest.raises(flowscope.ValidationError):
        make_workflow(client, **fields)
    assert row_counts(engine) == before


def test_get_missing_and_bad_id(client: flowscope.Client) -> None:
    with pytest.raises(flowscope.NotFoundError, match="wf_nope"):
        client.workflows.get("wf_nope")
    for bad in ("", 5, None, "x" * 300):
        with pytest.raises(flowscope.ValidationError):
            client.workflows.get(bad)  # type: ignore[arg-type]


def test_update_bumps_version_and_sets_fields(client: flowscope.Client) -> None:
    wf = make_workflow(client, tags=["a"])
    up = client.workflows.update(wf.id, status="active", tags=["a", "b"], metadata_={"x": 1})
    assert (up.version, up.status, up.tags, up.metadata) == (2, "active", ["a", "b"], {"x": 1})
    assert up.updated_at >= wf.updated_at
    up = client.workflows.update(wf.id, flowscope.WorkflowUpdate(description="d"))
    assert (up.version, up.description, up.status) == (3, "d", "active")
    with pytest.raises(flowscope.ValidationError, match="no changes"):
        client.workflows.update(wf.id)
    with pytest.raises(flowscope.ValidationError, match="name cannot be null"):
        client.workflows.update(wf.id, name=None)
    with pytest.raises(flowscope.ValidationError):
        client.workflows.update(wf.id, status="bogus")
    with pytest.raises(flowscope.NotFoundError):
        client.workflows.update("wf_missing", name="n")
    assert client.workflows.get(wf.id).version == 3


def test_expected_version_conflict(client: flowscope.Client) -> None:
    wf = make_workflow(client)
    client.workflows.update(wf.id, name="first", expected_version=1)
    with pytest.raises(flowscope.ConflictError, match="version 2, not 1"):
        client.workflows.update(wf.id, name="lost", expected_version=1)
    assert client.workflows.get(wf.id).name == "first"
    with pytest.raises(flowscope.NotFoundError):
        client.workflows.update("wf_missing", name="n", expected_version=1)
    with pytest.raises(flowscope.ValidationError):
        client.workflows.update(wf.id, name="n", expected_version=0)


def test_concurrent_updates_with_same_expected_version(client: flowscope.Client) -> None:
    wf = make_workflow(client)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def writer(i: int) -> None:
        barrier.wait()
        try:
            client.workflows.update(wf.id, name=f"w{i}", expected_version=1)
            outcomes.append("won")
        except flowscope.ConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 3 + ["won"]
    assert client.workflows.get(wf.id).version == 2


def test_soft_delete_restore_purge(client: flowscope.Client, engine: sa.Engine) -> None:
    wf = make_workflow(client)
    ex = client.executions.create(workflow_id=wf.id)
    client.workflows.delete(wf.id)
    with pytest.raises(flowscope.NotFoundError):
        client.workflows.get(wf.id)
    assert client.workflows.get(wf.id, include_deleted=True).deleted_at is not None
    assert client.workflows.count() == 0
    assert client.workflows.count(include_deleted=True) == 1
    with pytest.raises(flowscope.NotFoundError):
        client.workflows.delete(wf.id)  # already deleted
    with pytest.raises(flowscope.NotFoundError):
        client.workflows.update(wf.id, name="ghost")
    restored = client.workflows.restore(wf.id)
    assert restored.deleted_at is None and client.workflows.count() == 1
    assert client.workflows.restore(wf.id).deleted_at is None  # idempotent
    with pytest.raises(flowscope.NotFoundError):
        client.workflows.restore("wf_missing")
    client.workflows.purge(wf.id)
    with pytest.raises(flowscope.NotFoundError):
        client.workflows.get(wf.id, include_deleted=True)
    with pytest.raises(flowscope.NotFoundError):
        client.executions.get(ex.id)  # ON DELETE CASCADE
    with pytest.raises(flowscope.NotFoundError):
        client.workflows.purge(wf.id)
    assert row_counts(engine)["executions"] == 0


def test_every_filter(client: flowscope.Client) -> None:
    acme = client.organizations.create(name="Acme", slug="acme")
    a = make_workflow(
        client,
        name="Nightly billing export",
        description="exports invoices",
        owner="ana",
        organization_id=acme.id,
        status="active",
        tags=["etl", "billing"],
    )
    b = make_workflow(client, name="Hourly sync", owner="bo", status="draft", tags=["etl"])
    c = make_workflow(client, name="Report", owner="ana", status="archived", tags=["report"])
    d = make_workflow(client, name="Deleted billing", owner="cy", tags=["billing"])
    client.workflows.delete(d.id)

    def ids(**kw: object) -> set[str]:
        return {w.id for w in client.workflows.iter(**kw)}

    assert ids() == {a.id, b.id, c.id}
    assert ids(owner="ana") == {a.id, c.id}
    assert ids(owner=["bo", "cy"]) == {b.id}
    assert ids(organization_id=acme.id) == {a.id}
    assert ids(status=["draft", "archived"]) == {b.id, c.id}
    assert ids(tags_any=["billing", "report"]) == {a.id, c.id}
    assert ids(tags_all=["etl", "billing"]) == {a.id}
    assert ids(search="invoices") == {a.id}
    assert ids(search="billing") == {a.id}
    assert ids(search="billing", include_deleted=True) == {a.id, d.id}
    assert ids(include_deleted=True) == {a.id, b.id, c.id, d.id}
    assert ids(ids=[a.id, d.id]) == {a.id}
    now = datetime.now(UTC)
    assert ids(created_after=now - timedelta(hours=1)) == {a.id, b.id, c.id}
    assert ids(created_before=now - timedelta(hours=1)) == set()
    f = flowscope.WorkflowFilter(owner="ana", tags_any=["etl"])
    assert client.workflows.count(f) == 1
    assert client.workflows.count(f, status="archived") == 0
    assert [w.id for w in client.workflows.list(f).items] == [a.id]
    with pytest.raises(flowscope.ValidationError):
        client.workflows.count(status="running")
    with pytest.raises(flowscope.ValidationError):
        client.workflows.list(colour="red")
    with pytest.raises(flowscope.ValidationError):
        client.workflows.count(flowscope.ExecutionFilter())  # type: ignore[arg-type]


def test_keyset_pagination_with_ties(client: flowscope.Client, engine: sa.Engine) -> None:
    # 25 rows in one statement: identical created_at, so the id tie-break matters
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO workflows (id, name, owner, nodes, edges, created_by, updated_by)"
                " SELECT 'wf_' || lpad(g::text, 3, '0'), 'n' || (g % 4), 'o', '[]', '[]', 'o', 'o'"
                " FROM generate_series(1, 25) g"
            )
        )
    seen: list[str] = []
    page = client.workflows.list(limit=10)
    pages = 1
    seen += [w.id for w in page.items]
    while page.has_more:
        assert page.next_cursor
        page = client.workflows.list(limit=10, after=page.next_cursor)
        seen += [w.id for w in page.items]
        pages += 1
    assert pages == 3 and len(seen) == 25 and len(set(seen)) == 25
    assert seen == sorted(seen, reverse=True)  # -created_at, then -id
    assert page.next_cursor is None and len(page) == 5
    by_name = [w.name for w in client.workflows.iter(order_by="name", page_size=7)]
    assert by_name == sorted(by_name) and len(by_name) == 25
    exact = client.workflows.list(limit=25)
    assert len(exact) == 25 and not exact.has_more


def test_bad_pagination_arguments(client: flowscope.Client) -> None:
    make_workflow(client)
    make_workflow(client)
    page = client.workflows.list(limit=1)
    for kwargs in (
        {"limit": 0},
        {"limit": 10_001},
        {"limit": "5"},
        {"order_by": "owner; DROP TABLE workflows"},
        {"order_by": 3},
        {"after": "not-a-cursor"},
        {"after": page.next_cursor, "order_by": "name"},  # cursor from another ordering
    ):
        with pytest.raises(flowscope.ValidationError):
            client.workflows.list(**kwargs)  # type: ignore[arg-type]


def test_tag_and_search_filters_use_the_spec_indexes(
    client: flowscope.Client, engine: sa.Engine
) -> None:
    # 5,000 workflows, a handful tagged "etl"/described "nightly": selective filters
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO workflows (id, name, owner, nodes, edges, created_by, updated_by,"
                " tags, description)"
                " SELECT 'wf_' || g, 'job ' || g, 'o', '[]', '[]', 'o', 'o',"
                " CASE WHEN g % 1000 = 0 THEN ARRAY['etl', 'x'] ELSE ARRAY['common'] END,"
                " CASE WHEN g % 1000 = 0 THEN 'nightly export' ELSE 'plain' END"
                " FROM generate_series(1, 5000) g"
            )
        )
        conn.execute(sa.text("ANALYZE workflows"))

    def plan(**kw: object) -> str:
        f = flowscope.WorkflowFilter(**kw)  # type: ignore[arg-type]
        return explain(engine, sa.select(WORKFLOWS.c.id).where(f.clause()))

    assert "idx_workflows_tags" in plan(tags_any=["etl"])
    assert "idx_workflows_tags" in plan(tags_all=["etl", "x"])
    assert "idx_workflows_search" in plan(search="nightly")
    assert client.workflows.count(tags_all=["etl", "x"], search="nightly") == 5


def test_transactions_nest_as_savepoints(client: flowscope.Client) -> None:
    """Writes inside client.transaction() join it: all or nothing, inner errors undo only
    their own block."""
    with client.transaction():
        wf = client.workflows.create(name="both", owner="o")
        client.executions.ingest([{"workflow_id": wf.id, "id": "ex_1"}])
        # still one transaction: a second connection would not see the uncommitted workflow
        with client.transaction() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM workflows")).scalar() == 1
    assert client.workflows.count() == 1 and client.executions.count() == 1

    with pytest.raises(RuntimeError, match="changed my mind"), client.transaction():
        client.workflows.create(name="neither", owner="o", id="wf_neither")
        client.executions.ingest([{"workflow_id": "wf_neither"}])
        raise RuntimeError("changed my mind")
    assert client.workflows.count() == 1 and client.executions.count() == 1

    with client.transaction():
        kept = client.workflows.create(name="kept", owner="o")
        with pytest.raises(flowscope.ConflictError):  # the database refuses: a duplicate id
            client.executions.ingest([{"workflow_id": kept.id, "id": "ex_1"}])
        client.executions.ingest([{"workflow_id": kept.id, "id": "ex_2"}])
    assert {w.name for w in client.workflows.iter()} == {"both", "kept"}
    assert sorted(e.id for e in client.executions.iter()) == ["ex_1", "ex_2"]
