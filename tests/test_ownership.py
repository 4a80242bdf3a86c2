"""Row-level access control via ownership (revision 0007), enforced by PostgreSQL.

Two users of one organization: each sees the workflows it owns, the organization's
public ones and their executions, and changes only its own; organization-wide scopes
and admins see everything. Every entry point is tried, and the outcome is checked from
a separate superuser connection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flowscope
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from flowscope import _migrate

OWN = ["workflow:read", "workflow:write", "workflow:execute"]


@pytest.fixture
def office(client: flowscope.Client, engine: sa.Engine) -> dict[str, Any]:
    """Organization A: users ana and bo (own-and-public reach), wide (organization-wide), and
    ana's private and public workflows and bo's private one, each with two executions."""
    org = client.organizations.create(name="A", slug="a")
    other = client.organizations.create(name="B", slug="b")
    users = {
        name: client.users.create(
            username=name, email=f"{name}@example.com", organization_id=org.id, scopes=scopes
        ).id
        for name, scopes in (
            ("ana", OWN),
            ("bo", OWN),
            ("wide", ["workflow:read:all", "workflow:write:all", "workflow:execute"]),
        )
    }
    wfs = {}
    for key, owner, public in (
        ("ana_private", "ana", False),
        ("ana_public", "ana", True),
        ("bo_private", "bo", False),
    ):
        wf = client.workflows.create(
            name=key,
            owner=users[owner],
            organization_id=org.id,
            nodes=[],
            edges=[],
            is_public=public,
            tags=[key],
        )
        runs = [client.executions.create(workflow_id=wf.id) for _ in range(2)]
        client.executions.complete(client.executions.start(runs[0].id).id)
        wfs[key] = {"wf": wf, "runs": [r.id for r in runs]}
    b_wf = client.workflows.create(
        name="b", owner="x", organization_id=other.id, nodes=[], edges=[], is_public=True
    )
    client.executions.create(workflow_id=b_wf.id)
    as_ = {name: client.scoped(org.id, user_id=uid) for name, uid in users.items()}
    return {"org": org, "users": users, "wfs": wfs, "as": as_}


def _ids(office: dict[str, Any], *keys: str) -> set[str]:
    return {office["wfs"][k]["wf"].id for k in keys}


def _runs(office: dict[str, Any], *keys: str) -> set[str]:
    return {r for k in keys for r in office["wfs"][k]["runs"]}


def test_a_user_sees_its_own_and_the_public_workflows(office: dict[str, Any]) -> None:
    bo, ana, wide = office["as"]["bo"], office["as"]["ana"], office["as"]["wide"]
    seen = _ids(office, "bo_private", "ana_public")
    assert {w.id for w in bo.workflows.iter()} == seen
    assert bo.workflows.count() == 2
    assert {w.id for w in ana.workflows.iter()} == _ids(office, "ana_private", "ana_public")
    assert {w.id for w in wide.workflows.iter()} == _ids(
        office, "ana_private", "ana_public", "bo_private"
    )
    private = office["wfs"]["ana_private"]["wf"].id
    with pytest.raises(flowscope.NotFoundError):
        bo.workflows.get(private)
    assert bo.workflows.get(office["wfs"]["ana_public"]["wf"].id).is_public
    # executions follow their workflow
    assert {e.id for e in bo.executions.iter()} == _runs(office, "bo_private", "ana_public")
    assert bo.executions.count() == 4
    with pytest.raises(flowscope.NotFoundError):
        bo.executions.get(office["wfs"]["ana_private"]["runs"][0])
    assert bo.executions.count(workflow_ids=[private]) == 0
    # raw SQL is under the same policies
    rows = bo.sql("SELECT id FROM workflows UNION ALL SELECT id FROM executions")
    assert {r["id"] for r in rows} == seen | _runs(office, "bo_private", "ana_public")


def test_public_is_read_only_and_private_is_invisible(
    office: dict[str, Any], engine: sa.Engine
) -> None:
    bo = office["as"]["bo"]
    public = office["wfs"]["ana_public"]["wf"].id
    private = office["wfs"]["ana_private"]["wf"].id
    with pytest.raises(flowscope.PermissionDeniedError, match="owner"):
        bo.workflows.update(public, name="mine now")
    with pytest.raises(flowscope.PermissionDeniedError):
        bo.workflows.update(public, name="mine now", expected_version=1)
    with pytest.raises(flowscope.PermissionDeniedError):
        bo.workflows.delete(public)
    with pytest.raises(flowscope.NotFoundError):
        bo.workflows.update(private, name="x")
    with pytest.raises(flowscope.NotFoundError):
        bo.workflows.delete(private)
    # a workflow owned by someone else cannot be created, nor can one be taken over
    with pytest.raises(flowscope.PermissionDeniedError):
        bo.workflows.create(name="forged", owner=office["users"]["ana"], nodes=[], edges=[])
    assert bo.sql(
        "UPDATE workflows SET owner = :me RETURNING id", {"me": office["users"]["bo"]}
    ) == [{"id": office["wfs"]["bo_private"]["wf"].id}]
    assert (
        bo.sql("UPDATE workflows SET is_public = true WHERE id = :i RETURNING id", {"i": private})
        == []
    )
    # executions are driven (and deleted) by the owner of their workflow or of the run
    # itself; runs of a public workflow are read-only for others (revision 0010)
    deleted = bo.sql("DELETE FROM executions RETURNING workflow_id")
    assert {r["workflow_id"] for r in deleted} == _ids(office, "bo_private")
    # executions: on a workflow it sees (public) yes, on a private one of ana no
    run = bo.executions.create(workflow_id=public)
    assert run.workflow_id == public
    with pytest.raises((flowscope.ValidationError, flowscope.NotFoundError)):
        bo.executions.create(workflow_id=private)
    with pytest.raises(flowscope.FlowscopeError):
        bo.sql(
            "INSERT INTO executions (id, workflow_id, organization_id, owner)"
            " VALUES ('ex_evil', :w, :o, 'bo')",
            {"w": private, "o": office["org"].id},
        )
    with engine.connect() as conn:
        names = dict(conn.execute(sa.text("SELECT id, name FROM workflows")).all())
        owners = dict(conn.execute(sa.text("SELECT id, owner FROM workflows")).all())
        left = conn.execute(sa.text("SELECT count(*) FROM executions")).scalar()
    assert names[public] == "ana_public" and names[private] == "ana_private"
    assert owners[private] == office["users"]["ana"] and owners[public] == office["users"]["ana"]
    assert left == 6 - 2 + 1 + 1  # bo deleted the two of his workflow, created one; B's one


def test_handing_a_workflow_over(office: dict[str, Any]) -> None:
    bo, ana = office["as"]["bo"], office["as"]["ana"]
    mine = office["wfs"]["bo_private"]["wf"].id
    handed = bo.workflows.update(mine, owner=office["users"]["ana"])
    assert handed.owner == office["users"]["ana"]
    with pytest.raises(flowscope.NotFoundError):  # private and no longer bo's
        bo.workflows.get(mine)
    assert ana.workflows.update(mine, name="ana's now").name == "ana's now"
    # nobody takes what is not theirs, and a workflow stays in its organization
    public = office["wfs"]["ana_public"]["wf"].id
    with pytest.raises(flowscope.PermissionDeniedError):
        bo.workflows.update(public, owner=office["users"]["bo"])
    with pytest.raises(flowscope.PermissionDeniedError):
        bo.sql("SELECT flowscope_hand_over(:w, :o)", {"w": public, "o": office["users"]["bo"]})
    with pytest.raises(flowscope.ValidationError):
        ana.workflows.update(public, owner="usr_of_another_org")
    # other changes and the handover together; the audit names the acting user
    again = ana.workflows.update(mine, owner=office["users"]["bo"], description="yours")
    assert (again.owner, again.description) == (office["users"]["bo"], "yours")
    assert bo.workflows.get(mine).description == "yours"
    history = office["as"]["wide"].audit.history("workflows", mine)
    assert {e.actor for e in history if e.action == "UPDATE"} == {
        office["users"]["bo"],
        office["users"]["ana"],
    }


def test_analytics_export_and_audit_count_only_what_a_user_sees(
    client: flowscope.Client, office: dict[str, Any], tmp_path: Path
) -> None:
    bo, wide = office["as"]["bo"], office["as"]["wide"]
    visible = _runs(office, "bo_private", "ana_public")
    client.analytics.refresh_rollups()
    for use_rollups in (False, True):
        frame = bo.analytics.status_breakdown(use_rollups=use_rollups)
        assert int(frame["total"].sum()) == 4, frame
        if use_rollups:
            assert frame.attrs["rollups"] is False
            assert "ownership" in frame.attrs["rollups_fallback"]
        wide_frame = wide.analytics.status_breakdown(use_rollups=use_rollups)
        assert int(wide_frame["total"].sum()) == 6
    assert wide.analytics.status_breakdown(use_rollups=True).attrs["rollups"] is True
    tags = bo.analytics.tags()
    assert "ana_private" not in set(tags.index.astype(str)) | set(map(str, tags.get("tag", [])))
    # the rollup views themselves return nothing to a restricted user
    assert bo.sql("SELECT count(*) AS n FROM flowscope_executions_daily_org_visible") == [{"n": 0}]
    bo.export.parquet("executions", tmp_path / "runs.parquet")
    assert set(pq.read_table(tmp_path / "runs.parquet").column("id").to_pylist()) == visible
    private = office["wfs"]["ana_private"]["wf"].id
    assert bo.audit.history("workflows", private) == []
    assert bo.audit.history("executions", office["wfs"]["ana_private"]["runs"][0]) == []
    assert [e.action for e in bo.audit.history("workflows", office["wfs"]["ana_public"]["wf"].id)]
    assert wide.audit.history("workflows", private)
    seen_rows = {r["row_id"] for r in bo.sql("SELECT row_id FROM audit_log")}
    assert private not in seen_rows and not (_runs(office, "ana_private") & seen_rows)


def test_admins_and_organization_logins_see_everything(
    client: flowscope.Client, office: dict[str, Any]
) -> None:
    boss = client.users.create(
        username="boss", email="boss@example.com", organization_id=office["org"].id, is_admin=True
    )
    everything = _ids(office, "ana_private", "ana_public", "bo_private")
    for c in (client.scoped(office["org"].id), client.scoped(office["org"].id, user_id=boss.id)):
        assert {w.id for w in c.workflows.iter()} == everything
        assert c.executions.count() == 6
        c.workflows.update(office["wfs"]["ana_private"]["wf"].id, description="seen by admin")


def test_upgrade_keeps_every_users_reach(create_database: Any) -> None:
    url = create_database()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        _migrate.upgrade(conn, "0006")
        conn.commit()
        conn.execute(
            sa.text(
                "INSERT INTO users (id, username, email, password_hash, scopes) VALUES"
                " ('u1', 'u1', 'u1@x.io', '!', '[\"workflow:read\", \"workflow:write\"]'),"
                " ('u2', 'u2', 'u2@x.io', '!', '[\"workflow:read\", \"workflow:execute\"]'),"
                " ('u3', 'u3', 'u3@x.io', '!', '[]')"
            )
        )
        conn.commit()
        _migrate.upgrade(conn, "0007")
        conn.commit()
        scopes = dict(conn.execute(sa.text("SELECT id, scopes FROM users ORDER BY id")).all())
        assert set(scopes["u1"]) == {
            "workflow:read",
            "workflow:write",
            "workflow:read:all",
            "workflow:write:all",
        }
        assert set(scopes["u2"]) == {"workflow:read", "workflow:execute", "workflow:read:all"}
        assert scopes["u3"] == []
        _migrate.downgrade(conn, "0006")
        conn.commit()
        scopes = dict(conn.execute(sa.text("SELECT id, scopes FROM users ORDER BY id")).all())
        assert set(scopes["u1"]) == {"workflow:read", "workflow:write"}
        _migrate.upgrade(conn, "head")
        conn.commit()
    engine.dispose()


def test_the_mirror_holds_what_the_user_sees(
    office: dict[str, Any], engine: sa.Engine, tmp_path: Path
) -> None:
    pytest.importorskip("duckdb")
    bo, wide = office["as"]["bo"], office["as"]["wide"]
    mirror = bo.mirror(tmp_path / "bo")
    mirror.sync(progress=False)
    con = mirror.duckdb()
    workflows = {r[0] for r in con.sql("SELECT id FROM workflows").fetchall()}
    executions = {r[0] for r in con.sql("SELECT id FROM executions").fetchall()}
    con.close()
    assert workflows == _ids(office, "bo_private", "ana_public")
    assert executions == _runs(office, "bo_private", "ana_public")
    assert int(mirror.analytics.status_breakdown()["total"].sum()) == 4
    # a workflow handed over to bo (private) reaches bo's mirror at the next sync, and so do
    # its executions, although they did not change, only their visibility (the mirror
    # compares the workflows its login sees with the ones it holds: flowscope.mirror._sync)
    ana = office["as"]["ana"]
    handed = office["wfs"]["ana_private"]["wf"].id
    ana.workflows.update(handed, owner=office["users"]["bo"])
    mirror.sync(progress=False)
    con = mirror.duckdb()
    assert handed in {r[0] for r in con.sql("SELECT id FROM workflows").fetchall()}
    con.close()
    assert int(mirror.analytics.status_breakdown()["total"].sum()) == 6
    mirror.sync(progress=False, full=True)  # a full sync agrees
    assert int(mirror.analytics.status_breakdown()["total"].sum()) == 6
    # another identity may not open bo's mirror
    with pytest.raises(flowscope.PermissionDeniedError):
        wide.mirror(tmp_path / "bo")
