"""client.audit: one entry per kind of change per table, actors, redaction, reading APIs."""

from __future__ import annotations

import flowscope
import pytest
import sqlalchemy as sa

from ._helpers import acting_as, make_workflow


@pytest.fixture
def acting(client: flowscope.Client, engine: sa.Engine) -> flowscope.Client:
    """The same database, with an acting admin user recorded as the actor."""
    client.users.create(id="usr_root", username="root", email="root@example.com", is_admin=True)
    return acting_as(client, "usr_root")


def _actions(client: flowscope.Client, table: str, row_id: str) -> list[str]:
    return [e.action for e in client.audit.history(table, row_id)]


def test_every_kind_of_change_on_every_table(acting: flowscope.Client) -> None:
    c = acting
    org = c.organizations.create(name="Acme", slug="acme")
    c.organizations.update(org.id, name="Acme Inc.")
    wf = make_workflow(c, organization_id=org.id)
    c.workflows.update(wf.id, status="active")
    ex = c.executions.create(workflow_id=wf.id)
    c.executions.start(ex.id)
    user = c.users.create(username="ana", email="ana@example.com", organization_id=org.id)
    c.users.update(user.id, full_name="Ana")

    c.executions.delete(ex.id)
    c.workflows.delete(wf.id)  # soft: an UPDATE of deleted_at
    c.workflows.purge(wf.id)
    c.users.purge(user.id)
    c.organizations.purge(org.id)

    assert _actions(c, "organizations", org.id) == ["INSERT", "UPDATE", "DELETE"]
    assert _actions(c, "workflows", wf.id) == ["INSERT", "UPDATE", "UPDATE", "DELETE"]
    assert _actions(c, "executions", ex.id) == ["INSERT", "UPDATE", "DELETE"]
    assert _actions(c, "users", user.id) == ["INSERT", "UPDATE", "DELETE"]

    history = c.audit.history("workflows", wf.id)
    insert, update, soft_delete, delete = history
    assert insert.changes["name"] == "wf" and insert.changes["version"] == 1
    assert update.changes == {
        "status": {"old": "draft", "new": "active"},
        "version": {"old": 1, "new": 2},
    }
    assert set(soft_delete.changes) == {"deleted_at"}
    assert soft_delete.changes["deleted_at"]["old"] is None
    assert delete.changes["id"] == wf.id
    assert all(e.actor == "usr_root" and e.organization_id == org.id for e in history)
    assert all(e.occurred_at is not None for e in history)
    started = c.audit.history("executions", ex.id)[1]
    assert started.changes["status"] == {"old": "queued", "new": "running"}


def test_password_hashes_are_redacted(acting: flowscope.Client, engine: sa.Engine) -> None:
    u = acting.users.create(username="ana", email="ana@example.com", password="a long passphrase")
    acting.users.set_password(u.id, "another long passphrase")
    with pytest.raises(flowscope.AuthenticationError):
        acting.users.authenticate("ana", "wrong password")
    acting.users.purge(u.id)
    entries = acting.audit.history("users", u.id)
    assert [e.action for e in entries] == ["INSERT", "UPDATE", "UPDATE", "DELETE"]
    assert entries[0].changes["password_hash"] == "[redacted]"
    assert entries[1].changes["password_hash"] == {"old": "[redacted]", "new": "[redacted]"}
    assert entries[2].changes == {"failed_login_attempts": {"old": 0, "new": 1}}
    assert entries[3].changes["password_hash"] == "[redacted]"
    with engine.connect() as conn:
        leaked = conn.execute(
            sa.text("SELECT count(*) FROM audit_log WHERE changes::text LIKE '%$argon2%'")
        ).scalar_one()
    assert leaked == 0


def test_list_filters_pages_and_frame(acting: flowscope.Client, client: flowscope.Client) -> None:
    wfs = [make_workflow(acting, name=f"w{i}") for i in range(5)]
    acting.workflows.update(wfs[0].id, name="renamed")
    assert acting.audit.count(table_name="workflows") == 6
    assert acting.audit.count(table_name="workflows", action="UPDATE") == 1
    assert (
        acting.audit.count(actor="usr_root", table_name="users") == 0
    )  # root was created by nobody
    assert acting.audit.count(table_name="users", row_id="usr_root") == 1
    seen = [e.id for e in acting.audit.iter(table_name="workflows", page_size=4)]
    assert len(seen) == 6 and seen == sorted(seen, reverse=True)
    page = acting.audit.list(table_name="workflows", order_by="occurred_at", limit=5)
    assert page.has_more and len(page) == 5
    frame = acting.audit.to_frame(table_name="workflows")
    assert len(frame) == 6 and list(frame.columns)[:3] == ["id", "occurred_at", "table_name"]
    assert (
        str(frame["occurred_at"].dtype).startswith("datetime64")
        and frame["id"].is_monotonic_increasing
    )
    empty = acting.audit.to_frame(table_name="organizations")
    assert len(empty) == 0 and list(empty.columns) == list(frame.columns)
    assert (empty.dtypes == frame.dtypes).all()
    first = acting.audit.get(seen[-1])  # the oldest workflows entry: w0's INSERT
    assert (first.table_name, first.action, first.row_id) == ("workflows", "INSERT", wfs[0].id)
    with pytest.raises(flowscope.NotFoundError):
        acting.audit.get(10**9)
    for bad in (
        lambda: acting.audit.history("passwords", "x"),
        lambda: acting.audit.list(table_name="alembic_version"),
        lambda: acting.audit.list(action="TRUNCATE"),
        lambda: acting.audit.get("1"),
        lambda: acting.audit.create(table_name="workflows"),
    ):
        with pytest.raises(flowscope.ValidationError):
            bad()


def test_scoped_clients_see_only_their_organizations_entries(client: flowscope.Client) -> None:
    a = client.organizations.create(name="A", slug="a")
    b = client.organizations.create(name="B", slug="b")
    wa = make_workflow(client, organization_id=a.id)
    wb = make_workflow(client, organization_id=b.id)
    scoped = client.scoped(a.id)
    assert {e.row_id for e in scoped.audit.iter()} == {a.id, wa.id}
    assert scoped.audit.history("workflows", wb.id) == []
    assert scoped.sql("SELECT count(*) AS n FROM audit_log")[0]["n"] == 2
    with pytest.raises(flowscope.PermissionDeniedError):
        scoped.sql("DELETE FROM audit_log")
    with pytest.raises(flowscope.PermissionDeniedError):
        scoped.sql("UPDATE audit_log SET actor = 'x'")
