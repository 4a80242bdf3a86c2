"""client.executions: creation, every legal and illegal transition, races, filters."""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import flowscope
import pytest
import sqlalchemy as sa

from ._helpers import make_workflow, row_counts

VERBS: dict[str, Callable[[flowscope.Client, str], Any]] = {
    "start": lambda c, i: c.executions.start(i),
    "complete": lambda c, i: c.executions.complete(i, result={"ok": True}),
    "fail": lambda c, i: c.executions.fail(i, error="boom"),
    "cancel": lambda c, i: c.executions.cancel(i),
    "time_out": lambda c, i: c.executions.time_out(i),
}
LEGAL = {
    "queued": {"start": "running", "cancel": "cancelled"},
    "running": {
        "complete": "completed",
        "fail": "failed",
        "cancel": "cancelled",
        "time_out": "timeout",
    },
}
PATHS = {  # how to reach each status from queued
    "queued": [],
    "running": ["start"],
    "completed": ["start", "complete"],
    "failed": ["start", "fail"],
    "cancelled": ["cancel"],
    "timeout": ["start", "time_out"],
}


def _execution_in(client: flowscope.Client, status: str) -> flowscope.ExecutionPublic:
    wf = make_workflow(client)
    ex = client.executions.create(workflow_id=wf.id)
    for verb in PATHS[status]:
        ex = VERBS[verb](client, ex.id)
    assert ex.status == status
    return ex


def test_create_records_workflow_version_org_and_owner(client: flowscope.Client) -> None:
    org = client.organizations.create(name="Acme", slug="acme")
    wf = make_workflow(client, owner="ana", organization_id=org.id)
    client.workflows.update(wf.id, name="v2")
    client.workflows.update(wf.id, name="v3")
    ex = client.executions.create(
        workflow_id=wf.id,
        parameters={"day": "2026-01-01"},
        metadata={"source": "cron", "workflow_version": 99},
        trace_id="t-1",
    )
    assert ex.id.startswith("ex_") and ex.status == "queued"
    assert ex.metadata == {"source": "cron", "workflow_version": 3}
    assert (ex.organization_id, ex.owner, ex.trace_id) == (org.id, "ana", "t-1")
    assert ex.parameters == {"day": "2026-01-01"}
    assert (ex.steps_completed, ex.steps_total, ex.started_at) == (0, 0, None)
    assert (
        client.executions.create(flowscope.ExecutionCreate(workflow_id=wf.id, owner="bo")).owner
        == "bo"
    )
    other = client.organizations.create(name="Other", slug="other")
    with pytest.raises(flowscope.ValidationError, match="belongs to organization"):
        client.executions.create(workflow_id=wf.id, organization_id=other.id)


def test_create_refuses_missing_deleted_workflow_and_bad_input(
    client: flowscope.Client, engine: sa.Engine
) -> None:
    wf = make_workflow(client)
    client.workflows.delete(wf.id)
    before = row_counts(engine)
    with pytest.raises(flowscope.NotFoundError):
        client.executions.create(workflow_id=wf.id)
    with pytest.raises(flowscope.NotFoundError):
        client.executions.create(workflow_id="wf_missing")
    for bad in (
        {"parameters": [1]},
        {"parameters": "x"},
        {"status": "running"},
        {"trace_id": "t" * 256},
    ):
        with pytest.raises(flowscope.ValidationError):
            client.executions.create(workflow_id=wf.id, **bad)
    with pytest.raises(flowscope.ValidationError):
        client.executions.create()
    assert row_counts(engine) == before


@pytest.mark.parametrize(("source", "verb"), [(s, v) for s, verbs in LEGAL.items() for v in verbs])
def test_legal_transitions(client: flowscope.Client, source: str, verb: str) -> None:
    ex = _execution_in(client, source)
    after = VERBS[verb](client, ex.id)
    assert after.status == LEGAL[source][verb]
    if verb == "start":
        assert after.started_at is not None and after.completed_at is None
    else:
        assert after.completed_at is not None
        if after.started_at is not None:
            assert after.duration_seconds is not None and after.duration_seconds >= 0
        else:  # cancelled while queued: no duration
            assert after.duration_seconds is None
    if verb == "complete":
        assert after.result == {"ok": True}
    if verb == "fail":
        assert after.error == {"message": "boom"}
    assert client.executions.get(ex.id) == after


@pytest.mark.parametrize(
    ("source", "verb"),
    [(s, v) for s in PATHS for v in VERBS if v not in LEGAL.get(s, {})],
)
def test_illegal_transitions_change_nothing(
    client: flowscope.Client, source: str, verb: str
) -> None:
    ex = _execution_in(client, source)
    with pytest.raises(flowscope.ConflictError, match=f"it is {source}"):
        VERBS[verb](client, ex.id)
    assert client.executions.get(ex.id) == ex


def test_transition_of_missing_execution(client: flowscope.Client) -> None:
    for verb in VERBS:
        with pytest.raises(flowscope.NotFoundError):
            VERBS[verb](client, "ex_missing")


def test_duration_comes_from_the_trigger(client: flowscope.Client, engine: sa.Engine) -> None:
    ex = _execution_in(client, "running")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE executions SET started_at = now() - interval '90.5 seconds' WHERE id = :i"
            ),
            {"i": ex.id},
        )
    done = client.executions.complete(ex.id)
    assert done.started_at is not None and done.completed_at is not None
    expected = Decimal(str(round((done.completed_at - done.started_at).total_seconds(), 3)))
    assert done.duration_seconds == expected
    assert Decimal("90.5") <= done.duration_seconds < Decimal("100")


def test_two_clients_race_to_finish(database_url: str, client: flowscope.Client) -> None:
    other = flowscope.connect(database_url)
    try:
        for round_ in range(8):
            ex = _execution_in(client, "running")
            barrier = threading.Barrier(2)
            wins: list[str] = []
            losses: list[str] = []

            def finish(
                c: flowscope.Client,
                verb: str,
                ex_id: str = ex.id,
                barrier: threading.Barrier = barrier,
                wins: list[str] = wins,
                losses: list[str] = losses,
            ) -> None:
                barrier.wait()
                try:
                    VERBS[verb](c, ex_id)
                    wins.append(verb)
                except flowscope.ConflictError:
                    losses.append(verb)

            second = "complete" if round_ % 2 == 0 else "fail"
            threads = [
                threading.Thread(target=finish, args=(client, "complete")),
                threading.Thread(target=finish, args=(other, second)),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(wins) == 1 and len(losses) == 1
            final = client.executions.get(ex.id)
            assert final.status == {"complete": "completed", "fail": "failed"}[wins[0]]
    finally:
        other.close()


def test_progress(client: flowscope.Client) -> None:
    queued = _execution_in(client, "queued")
    with pytest.raises(flowscope.ConflictError, match="queued"):
        client.executions.progress(queued.id, current_step="a")
    ex = client.executions.start(queued.id)
    ex = client.executions.progress(ex.id, current_step="load", steps_completed=2, steps_total=5)
    assert (ex.current_step, ex.steps_completed, ex.steps_total) == ("load", 2, 5)
    ex = client.executions.progress(ex.id, steps_completed=3)
    assert (ex.steps_completed, ex.steps_total) == (3, 5)
    for bad in (
        {"steps_completed": -1},
        {"steps_total": 2**31},
        {"steps_completed": 6, "steps_total": 5},
        {},
    ):
        with pytest.raises(flowscope.ValidationError):
            client.executions.progress(ex.id, **bad)
    with pytest.raises(flowscope.NotFoundError):
        client.executions.progress("ex_missing", steps_completed=1)


def test_update_delete_and_list_filters(client: flowscope.Client, engine: sa.Engine) -> None:
    a = make_workflow(client, tags=["etl"])
    b = make_workflow(client, tags=["report"])
    e1 = client.executions.create(workflow_id=a.id, owner="ana", trace_id="t1")
    e2 = client.executions.start(client.executions.create(workflow_id=a.id, owner="bo").id)
    e3 = client.executions.create(workflow_id=b.id, owner="ana")
    up = client.executions.update(e1.id, metadata={"note": "x"}, trace_id="t9")
    assert up.metadata == {"note": "x"} and up.trace_id == "t9" and up.status == "queued"
    with pytest.raises(flowscope.ValidationError):
        client.executions.update(e1.id, status="completed")

    def ids(**kw: Any) -> set[str]:
        return {e.id for e in client.executions.iter(**kw)}

    assert ids() == {e1.id, e2.id, e3.id}
    assert ids(workflow_ids=[a.id]) == {e1.id, e2.id}
    assert ids(status="running") == {e2.id}
    assert ids(owner="ana") == {e1.id, e3.id}
    assert ids(tags_any=["report"]) == {e3.id}
    assert ids(tags_all=["etl"]) == {e1.id, e2.id}
    assert ids(trace_id="t9") == {e1.id}
    assert ids(ids=[e1.id, e3.id]) == {e1.id, e3.id}
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE executions SET created_at = '2025-01-01' WHERE id = :i"), {"i": e3.id}
        )
    assert ids(since="2026-01-01") == {e1.id, e2.id}
    assert ids(until="2026-01-01") == {e3.id}
    client.workflows.delete(b.id)
    assert ids() == {e1.id, e2.id}
    assert ids(include_deleted_workflows=True) == {e1.id, e2.id, e3.id}
    f = flowscope.ExecutionFilter(workflow_ids=[a.id])
    assert client.executions.count(f) == 2 and client.executions.count(f, status="queued") == 1
    by_status = client.executions.list(order_by="status", limit=1)
    assert by_status.has_more and by_status.items[0].status == "queued"
    rest = client.executions.list(order_by="status", limit=5, after=by_status.next_cursor)
    assert [e.status for e in rest.items] == [
        "running"
    ] and not rest.has_more  # e3: deleted workflow
    client.executions.delete(e1.id)  # hard delete: no deleted_at on executions
    with pytest.raises(flowscope.NotFoundError):
        client.executions.get(e1.id)
    with pytest.raises(flowscope.NotFoundError):
        client.executions.delete(e1.id)
    with pytest.raises(flowscope.ValidationError):
        client.executions.restore(e2.id)
