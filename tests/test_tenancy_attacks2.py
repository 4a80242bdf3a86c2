"""Issue 23, second adversarial round: each finding reproduced with a tenant's own client,
refused by PostgreSQL since revision 0010 (files, maintenance and the analytics grid are
client-side by nature). The outcome is always checked from a separate superuser connection.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import flowscope
import pytest
import sqlalchemy as sa

from ._helpers import first_row
from ._helpers import office as make_office


@pytest.fixture
def office(client: flowscope.Client, engine: sa.Engine) -> dict[str, Any]:
    """See :func:`tests._helpers.office` (the engine fixture empties the database first)."""
    return make_office(client)


def _owner(engine: sa.Engine, workflow_id: str) -> str:
    return first_row(engine, "SELECT owner FROM workflows WHERE id = :i", i=workflow_id).owner


# -- 1. hand-over needs the write scope and a live identity ---------------------------------
def test_hand_over_needs_the_write_scope_and_a_live_identity(
    client: flowscope.Client, office: dict[str, Any], engine: sa.Engine
) -> None:
    users, wfs, scoped = office["users"], office["wfs"], office["as"]
    for name in ("reader", "none", "bo"):
        scoped[name].sql("SELECT 1")  # provisioned before anything changes
    client.users.update(users["bo"], is_active=False)  # bo's client was made before
    for name in ("reader", "none", "bo"):
        wf = wfs[f"{name}_private"]
        with pytest.raises(flowscope.FlowscopeError):
            scoped[name].sql("SELECT flowscope_hand_over(:w, :o)", {"w": wf.id, "o": users["ana"]})
        assert _owner(engine, wf.id) == users[name]
    # a live owner with the write scope still hands over
    scoped["ana"].workflows.update(wfs["ana_private"].id, owner=users["wide"])
    assert _owner(engine, wfs["ana_private"].id) == users["wide"]


# -- 2. a reused id exposes no earlier owner's audit history --------------------------------
def test_a_reused_id_exposes_no_earlier_owners_history(
    client: flowscope.Client, office: dict[str, Any], engine: sa.Engine
) -> None:
    ana, bo = office["as"]["ana"], office["as"]["bo"]
    users = office["users"]
    wf = bo.workflows.create(name="mine", owner=users["bo"], metadata={"k": "s3cret"})
    run = bo.executions.create(workflow_id=wf.id, metadata={"k": "s3cret"})
    bo.workflows.update(wf.id, description="edited s3cret")
    bo.sql("DELETE FROM executions WHERE id = :i", {"i": run.id})
    bo.sql("DELETE FROM workflows WHERE id = :i", {"i": wf.id})
    with pytest.raises(flowscope.ConflictError):
        ana.workflows.create(id=wf.id, name="reclaimed", owner=users["ana"])
    own = ana.workflows.create(name="own", owner=users["ana"])
    with pytest.raises(flowscope.ConflictError):
        ana.sql(
            "INSERT INTO executions (id, workflow_id, organization_id, owner)"
            " VALUES (:i, :w, :o, :me)",
            {"i": run.id, "w": own.id, "o": office["org"].id, "me": users["ana"]},
        )
    with pytest.raises(flowscope.FlowscopeError):  # nor by renaming an own row
        ana.sql("UPDATE workflows SET id = :i WHERE id = :w", {"i": wf.id, "w": own.id})
    for table, row_id in (("workflows", wf.id), ("executions", run.id)):
        assert "s3cret" not in repr(ana.audit.history(table, row_id))
    rows = ana.sql(
        "SELECT changes::text AS c FROM audit_log WHERE row_id IN (:w, :r)",
        {"w": wf.id, "r": run.id},
    )
    assert "s3cret" not in repr(rows)
    assert first_row(engine, "SELECT count(*) AS n FROM workflows WHERE id = :i", i=wf.id).n == 0
    # the same lineage may come back (a replaced demo load, a restore by its owner)
    again = bo.workflows.create(id=wf.id, name="mine again", owner=users["bo"])
    assert again.id == wf.id


# -- 3. a removed user keeps no login --------------------------------------------------------
def _login(engine: sa.Engine, role: str) -> Any:
    return first_row(
        engine,
        "SELECT r.rolcanlogin AS login, r.rolconnlimit AS connlimit,"
        " (SELECT count(*) FROM pg_stat_activity a WHERE a.usename = r.rolname) AS sessions"
        " FROM pg_roles r WHERE r.rolname = :r",
        r=role,
    )


@pytest.mark.parametrize("how", ["deactivate", "delete"])
def test_a_removed_user_keeps_no_login(
    client: flowscope.Client, office: dict[str, Any], engine: sa.Engine, how: str
) -> None:
    bo = office["as"]["bo"]
    bo.sql("ALTER ROLE CURRENT_USER PASSWORD 'chosen by the tenant'")  # allowed by PostgreSQL
    bo.sql("ALTER ROLE CURRENT_USER SET work_mem = '1GB'")
    role = bo.role
    assert role is not None and _login(engine, role).login
    hold = threading.Event()

    def idle_session() -> None:  # a session of the user, open while it is removed
        try:
            with bo.transaction() as conn:
                conn.execute(sa.text("SELECT 1"))
                hold.set()
                conn.execute(sa.text("SELECT pg_sleep(30)"))
        except flowscope.FlowscopeError:
            pass

    t = threading.Thread(target=idle_session)
    t.start()
    assert hold.wait(10)
    started = time.perf_counter()
    if how == "deactivate":
        client.users.update(office["users"]["bo"], is_active=False)
    else:
        client.users.delete(office["users"]["bo"])
    t.join(20)
    assert time.perf_counter() - started < 10  # the session was ended, not left to run
    after = _login(engine, role)
    assert (after.login, after.connlimit, after.sessions) == (False, 0, 0)
    settings = first_row(
        engine,
        "SELECT count(*) AS n FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole"
        " WHERE r.rolname = :r",
        r=role,
    )
    assert settings.n == 0
    with pytest.raises(flowscope.FlowscopeError):
        bo.sql("SELECT 1")
    if how == "deactivate":  # back again: the login works again
        client.users.update(office["users"]["bo"], is_active=True)
        assert _login(engine, role).login
        assert bo.sql("SELECT current_user::text AS u")[0]["u"] == role


# -- 4. is_public grants reading, never writing, on runs -------------------------------------
def test_public_runs_are_read_only_for_non_owners(
    client: flowscope.Client, office: dict[str, Any], engine: sa.Engine
) -> None:
    bo, run, wfs = office["as"]["bo"], office["run"], office["wfs"]
    assert [r["id"] for r in bo.sql("SELECT id FROM executions")] == [run.id]  # readable
    before = first_row(
        engine, "SELECT workflow_id, metadata::text AS m FROM executions WHERE id = :i", i=run.id
    )
    for statement in (
        "UPDATE executions SET metadata = '{\"x\": 1}' WHERE id = :i RETURNING id",
        "UPDATE executions SET workflow_id = :mine WHERE id = :i RETURNING id",
        "UPDATE executions SET owner = :me WHERE id = :i RETURNING id",
        "DELETE FROM executions WHERE id = :i RETURNING id",
    ):
        params = {"i": run.id, "mine": wfs["bo_private"].id, "me": office["users"]["bo"]}
        assert bo.sql(statement, params) == []
    with pytest.raises(flowscope.FlowscopeError):
        bo.executions.purge(run.id)
    with pytest.raises(flowscope.FlowscopeError):
        bo.executions.update(run.id, metadata={"x": 1})
    after = first_row(
        engine, "SELECT workflow_id, metadata::text AS m FROM executions WHERE id = :i", i=run.id
    )
    assert after == before
    # bo still runs the public workflow, and drives his own run of it
    mine = bo.executions.create(workflow_id=wfs["ana_public"].id)
    assert bo.executions.update(mine.id, metadata={"x": 1}).metadata == {"x": 1}
    # ana drives runs of her workflow, bo's included
    assert office["as"]["ana"].executions.update(mine.id, metadata={"y": 2}).metadata == {"y": 2}


# -- 5. owner changes stay inside the organization, to existing, active users ----------------
def test_owner_changes_name_an_active_user_of_the_organization(
    client: flowscope.Client, office: dict[str, Any], engine: sa.Engine
) -> None:
    users, wfs = office["users"], office["wfs"]
    client.users.update(users["reader"], is_active=False)
    for name in ("ana", "wide"):
        tenant = office["as"][name]
        wf = wfs[f"{name}_private"]
        for owner in (users["b"], "usr_does_not_exist", users["reader"]):
            with pytest.raises(flowscope.ValidationError):
                tenant.sql(
                    "UPDATE workflows SET owner = :o WHERE id = :w", {"o": owner, "w": wf.id}
                )
            with pytest.raises(flowscope.ValidationError):
                tenant.workflows.update(wf.id, owner=owner)
            assert _owner(engine, wf.id) == users[name]
    # within the organization, to an active user: allowed
    office["as"]["wide"].sql(
        "UPDATE workflows SET owner = :o WHERE id = :w",
        {"o": users["bo"], "w": wfs["wide_private"].id},
    )
    assert _owner(engine, wfs["wide_private"].id) == users["bo"]


# -- 6. export outputs are owner-only ----------------------------------------------------------
def _modes(root: Path) -> set[tuple[str, int]]:
    out = set()
    for path in [root, *root.rglob("*")]:
        kind = "dir" if path.is_dir() else "file"
        out.add((kind, stat.S_IMODE(path.stat().st_mode)))
    return out


def test_export_outputs_are_owner_only(
    client: flowscope.Client, office: dict[str, Any], tmp_path: Path
) -> None:
    old = os.umask(0o022)
    try:
        client.export.parquet("executions", tmp_path / "new" / "deep" / "e.parquet")
        client.export.parquet("executions", tmp_path / "parts", partition_by=["day"])
        client.export.parquet("executions", tmp_path / "inc", incremental=True)
        tenant = office["as"]["ana"]
        tenant.export.parquet("workflows", tmp_path / "tenant" / "w.parquet")
    finally:
        os.umask(old)
    for sub in ("new", "parts", "inc", "tenant"):
        assert _modes(tmp_path / sub) <= {("dir", 0o700), ("file", 0o600)}, sub


# -- 7. emails are normalised by the database ----------------------------------------------------
def test_email_case_cannot_shadow_another_login(
    client: flowscope.Client, office: dict[str, Any], engine: sa.Engine
) -> None:
    users = office["users"]
    client.users.set_password(users["ana"], "the victim's passphrase")
    bo = office["as"]["bo"]
    for email in ("ANA@EXAMPLE.COM", "Ana@example.com", " ana@Example.com"):
        with pytest.raises(flowscope.ConflictError):
            bo.sql("UPDATE users SET email = :e WHERE id = :me", {"e": email, "me": users["bo"]})
    bo.sql("UPDATE users SET email = 'Bo.New@EXAMPLE.COM' WHERE id = :me", {"me": users["bo"]})
    assert first_row(engine, "SELECT email FROM users WHERE id = :i", i=users["bo"]).email == (
        "Bo.New@example.com"
    )
    with pytest.raises(flowscope.ConflictError):
        client.sql(
            "INSERT INTO users (id, username, email, organization_id, password_hash)"
            " VALUES ('usr_x', 'x', 'BO.NEW@example.COM', :o, '')",
            {"o": office["org"].id},
        )
    assert (
        client.users.authenticate("ana@example.com", "the victim's passphrase").id == users["ana"]
    )
    with pytest.raises(flowscope.AuthenticationError):
        client.users.authenticate("ANA@EXAMPLE.COM", "wrong")
    counts = first_row(
        engine, "SELECT failed_login_attempts AS n FROM users WHERE id = :i", i=users["bo"]
    )
    assert not counts.n


# -- 8. maintenance never queues a lock that stalls writers --------------------------------------
def test_maintenance_does_not_stall_writers_behind_a_reader(
    client: flowscope.Client, office: dict[str, Any]
) -> None:
    reader, writer = office["as"]["reader"], office["as"]["ana"]
    reading, release = threading.Event(), threading.Event()

    def long_read() -> None:
        with reader.transaction() as conn:
            conn.execute(sa.text("SELECT count(*) FROM audit_log"))
            reading.set()
            release.wait(30)

    result: dict[str, Any] = {}

    def maintain() -> None:
        try:
            result["report"] = client.maintenance.maintain(
                months_ahead=0,
                today=datetime.now(UTC).date() + timedelta(days=3700),
                lock_timeout=20,
            )
        except flowscope.FlowscopeError as exc:  # pragma: no cover - reported below
            result["error"] = exc

    t_read, t_maint = threading.Thread(target=long_read), threading.Thread(target=maintain)
    t_read.start()
    try:
        assert reading.wait(10)
        t_maint.start()
        time.sleep(1.0)  # maintenance is waiting for the reader now
        for i in range(3):
            started = time.perf_counter()
            writer.workflows.update(office["wfs"]["ana_private"].id, description=f"w{i}")
            assert time.perf_counter() - started < 1.0
    finally:
        release.set()
        t_read.join()
        if t_maint.is_alive() or t_maint.ident is not None:
            t_maint.join(30)
    assert "error" not in result, result
    assert len(result["report"].created) == 1


# -- 9. the grid limit counts the whole result ---------------------------------------------------
def test_the_grid_limit_counts_every_group(
    client: flowscope.Client, office: dict[str, Any]
) -> None:
    for wf in list(office["wfs"].values())[:3]:
        client.executions.create(workflow_id=wf.id)
    until = datetime.now(UTC) + timedelta(minutes=1)
    since = until - timedelta(minutes=40_000)  # 40,000 buckets, 3+ groups: over 100,000 cells
    with pytest.raises(flowscope.ValidationError, match="100,000"):
        client.analytics.status_breakdown(by="workflow_id", freq="1min", since=since, until=until)
    with pytest.raises(flowscope.ValidationError, match="100,000"):
        client.analytics.durations(by="workflow_id", freq="1min", since=since, until=until)
    # one group of the same grid is fine
    frame = client.analytics.status_breakdown(freq="1min", since=since, until=until)
    assert 40_000 <= len(frame) <= 40_001  # since is not on a minute
