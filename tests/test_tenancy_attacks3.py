"""Issue 23, third round: attacks the earlier rounds did not try, by family (lineage, role
attributes, definer functions, policies per command, files). ``attempt()`` records each
with its outcome (``refused``: a flowscope error; ``empty``: no row; ``allowed``: what
PostgreSQL lets every role do, checked harmless afterwards); the list is printed at the end
of the module (run with ``-s``) and reported in the issue.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flowscope
import pytest
import sqlalchemy as sa

from ._helpers import first_row
from ._helpers import office as make_office

ROUND: list[tuple[str, str, str]] = []


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"\nthird round: {len(ROUND)} attacks")
    for family, name, outcome in ROUND:
        print(f"  {family:<22} {name:<62} {outcome}")


@pytest.fixture
def office(client: flowscope.Client, engine: sa.Engine) -> dict[str, Any]:
    return make_office(client)


def attempt(family: str, name: str, call: Callable[[], Any], *, expect: str | set[str]) -> Any:
    """Run one attack and record it; its outcome (``refused``, ``empty`` or, when ``expect``
    says so, ``allowed``: the caller then checks it did no harm) must be one of ``expect``."""
    expected = {expect} if isinstance(expect, str) else expect
    result: Any = None
    try:
        result = call()
    except flowscope.FlowscopeError as exc:
        outcome = f"refused ({type(exc).__name__})"
    else:
        harmless = "allowed (harmless: checked below)"
        outcome = harmless if "allowed" in expected else "empty" if result in ([], None) else "rows"
    ROUND.append((family, name, outcome))
    assert outcome.split()[0] in expected, (name, outcome, result)
    return result


# -- lineage ------------------------------------------------------------------------------
def test_lineage(client: flowscope.Client, office: dict[str, Any], engine: sa.Engine) -> None:
    users, wfs, org = office["users"], office["wfs"], office["org"]
    ana, bo = office["as"]["ana"], office["as"]["bo"]
    gone = bo.workflows.create(name="gone", owner=users["bo"], metadata={"k": "s3cret"})
    gone_run = bo.executions.create(workflow_id=gone.id, metadata={"k": "s3cret"})
    bo.sql("DELETE FROM executions WHERE id = :i", {"i": gone_run.id})
    bo.sql("DELETE FROM workflows WHERE id = :i", {"i": gone.id})
    own_run = ana.executions.create(workflow_id=wfs["ana_private"].id)
    insert_wf = (
        "INSERT INTO workflows (id, name, owner, organization_id, nodes, edges, created_by,"
        " updated_by) VALUES (:i, 'x', :o, :org, '[]', '[]', :o, :o)"
    )
    lineage = [
        (
            "reclaim a purged workflow id with ON CONFLICT DO NOTHING",
            lambda: ana.sql(
                insert_wf + " ON CONFLICT DO NOTHING",
                {"i": gone.id, "o": users["ana"], "org": org.id},
            ),
        ),
        (
            "reclaim it in a multi-row INSERT ... SELECT",
            lambda: ana.sql(
                "INSERT INTO workflows (id, name, owner, organization_id, nodes, edges,"
                " created_by, updated_by) SELECT v, 'x', :o, :org, '[]', '[]', :o, :o"
                " FROM unnest(ARRAY['wf_fresh_1', :i]) v",
                {"i": gone.id, "o": users["ana"], "org": org.id},
            ),
        ),
        (
            "reclaim a purged workflow id through bulk ingest (COPY)",
            lambda: ana.workflows.ingest(
                [{"id": gone.id, "name": "x", "owner": users["ana"], "nodes": [], "edges": []}]
            ),
        ),
        (
            "reclaim a purged run id through bulk ingest (COPY)",
            lambda: ana.executions.ingest(
                [{"id": gone_run.id, "workflow_id": wfs["ana_private"].id, "owner": users["ana"]}]
            ),
        ),
        (
            "reclaim it naming the earlier owner",
            lambda: ana.sql(insert_wf, {"i": gone.id, "o": users["bo"], "org": org.id}),
        ),
        (
            "rename an own run to a purged run id",
            lambda: ana.sql(
                "UPDATE executions SET id = :i WHERE id = :r", {"i": gone_run.id, "r": own_run.id}
            ),
        ),
        (
            "rename an own workflow to a fresh id (history left behind)",
            lambda: ana.sql(
                "UPDATE workflows SET id = 'wf_renamed' WHERE id = :w",
                {"w": wfs["ana_private"].id},
            ),
        ),
        (
            "erase the purged row's history",
            lambda: ana.sql("DELETE FROM audit_log WHERE row_id = :i", {"i": gone.id}),
        ),
        (
            "rewrite the purged row's history",
            lambda: ana.sql(
                "UPDATE audit_log SET changes = '{}' WHERE row_id = :i", {"i": gone.id}
            ),
        ),
        (
            "move an own run to another organization",
            lambda: ana.sql(
                "UPDATE executions SET organization_id = :o WHERE id = :r",
                {"o": office["other"].id, "r": own_run.id},
            ),
        ),
        (
            "move an own run onto another owner's private workflow",
            lambda: ana.sql(
                "UPDATE executions SET workflow_id = :w WHERE id = :r",
                {"w": wfs["bo_private"].id, "r": own_run.id},
            ),
        ),
    ]
    for name, call in lineage:
        attempt("lineage", name, call, expect="refused")
    # another organization may use the same id: it sees none of A's history
    b_client = client.scoped(office["other"].id, user_id=users["b"])
    attempt(
        "lineage",
        "another organization takes the purged id",
        lambda: b_client.workflows.create(id=gone.id, name="b's", owner=users["b"]),
        expect="allowed",
    )
    for table, row_id in (("workflows", gone.id), ("executions", gone_run.id)):
        history = b_client.audit.history(table, row_id)
        assert "s3cret" not in repr(history) and len(history) <= 1
    assert "s3cret" not in repr(ana.audit.history("workflows", gone.id))
    assert first_row(engine, "SELECT count(*) AS n FROM workflows WHERE id = 'wf_fresh_1'").n == 0


# -- role attributes -----------------------------------------------------------------------
def _role(engine: sa.Engine, role: str) -> Any:
    return first_row(
        engine,
        "SELECT r.rolname, r.rolcanlogin, r.rolconnlimit, r.rolvaliduntil, a.rolpassword,"
        " (SELECT count(*) FROM pg_db_role_setting s WHERE s.setrole = r.oid) AS settings,"
        " (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid) AS member_of"
        " FROM pg_roles r JOIN pg_authid a ON a.oid = r.oid WHERE r.rolname = :r",
        r=role,
    )


def test_role_attributes(
    client: flowscope.Client, office: dict[str, Any], engine: sa.Engine, database_url: str
) -> None:
    bo, ana = office["as"]["bo"], office["as"]["ana"]
    ana.sql("SELECT 1")
    role, other = bo.role, ana.role
    assert role is not None and other is not None
    before = _role(engine, role)
    refused = [
        ("raise its own connection limit", "ALTER ROLE CURRENT_USER CONNECTION LIMIT 1000"),
        ("extend its own password validity", "ALTER ROLE CURRENT_USER VALID UNTIL 'infinity'"),
        ("rename itself", "ALTER ROLE CURRENT_USER RENAME TO fs_evil"),
        ("give itself CREATEDB", "ALTER ROLE CURRENT_USER CREATEDB"),
        (
            "preload a library at its next login",
            "ALTER ROLE CURRENT_USER SET session_preload_libraries = 'auto_explain'",
        ),
        ("create a role", "CREATE ROLE fs_evil LOGIN"),
        ("join another tenant's role", f'GRANT "{other}" TO CURRENT_USER'),
        ("drop itself", "DROP ROLE CURRENT_USER"),
        ("comment on its role", f"COMMENT ON ROLE \"{role}\" IS 'x'"),
    ]
    for name, statement in refused:
        attempt("role attributes", name, lambda s=statement: bo.sql(s), expect="refused")
    allowed = [
        ("set its own password", "ALTER ROLE CURRENT_USER PASSWORD 'chosen by the tenant'"),
        ("set role=postgres for its next logins", "ALTER ROLE CURRENT_USER SET role = 'postgres'"),
        (
            "put pg_temp first for its next logins",
            "ALTER ROLE CURRENT_USER SET search_path = 'pg_temp, public'",
        ),
        (
            "leave default privileges behind",
            "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC",
        ),
    ]
    for name, statement in allowed:
        attempt("role attributes", name, lambda s=statement: bo.sql(s), expect="allowed")
    changed = _role(engine, role)
    assert changed.settings >= 1 and changed.rolpassword != before.rolpassword
    # harmless: a later login is still the tenant, and the next sync resets all of it
    assert bo.sql("SELECT current_user::text AS u")[0]["u"] == role
    client.users.grant(office["users"]["bo"], "workflow:read:all")
    reset = _role(engine, role)
    assert (reset.settings, reset.rolcanlogin, reset.rolconnlimit, reset.member_of) == (
        0,
        True,
        -1,
        0,
    )
    assert reset.rolpassword != changed.rolpassword and reset.rolvaliduntil is None
    # a removed user's role cannot be used to log in directly, whatever password it set
    client.users.update(office["users"]["bo"], is_active=False)
    direct = sa.create_engine(
        sa.make_url(database_url).set(username=role, password="chosen by the tenant"),
        poolclass=sa.pool.NullPool,
    )

    def log_in() -> Any:
        try:
            with direct.connect() as conn:
                return conn.execute(sa.text("SELECT 1")).all()
        except sa.exc.OperationalError as exc:
            raise flowscope.PermissionDeniedError(str(exc)) from exc

    attempt("role attributes", "log in directly after removal", log_in, expect="refused")
    direct.dispose()
    # the default privileges it left do not keep its role alive
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT flowscope_drop_identities(:o)"), {"o": office["org"].id})
    assert first_row(engine, "SELECT count(*) AS n FROM pg_roles WHERE rolname = :r", r=role).n == 0


# -- definer functions -----------------------------------------------------------------------
def test_definer_functions(
    client: flowscope.Client, office: dict[str, Any], engine: sa.Engine
) -> None:
    users, wfs, org = office["users"], office["wfs"], office["org"]
    ana = office["as"]["ana"]
    b_wf = client.workflows.create(name="b", owner=users["b"], organization_id=office["other"].id)
    soft = ana.workflows.create(name="soft", owner=users["ana"])
    ana.workflows.delete(soft.id)
    calls = [
        ("sync its own grants", "SELECT flowscope_sync_identity(current_user::text)", {}),
        ("sync every login", "SELECT flowscope_sync_identities()", {}),
        ("sync its own login", "SELECT flowscope_sync_login(current_user::text)", {}),
        (
            "provision its organization's own (admin) login",
            "SELECT * FROM flowscope_provision_identity(:o, NULL)",
            {"o": org.id},
        ),
        ("drop every login", "SELECT flowscope_drop_identities()", {}),
        (
            "hand over another organization's workflow",
            "SELECT flowscope_hand_over(:w, :o)",
            {"w": b_wf.id, "o": users["ana"]},
        ),
        (
            "hand over to nobody (NULL)",
            "SELECT flowscope_hand_over(:w, NULL)",
            {"w": wfs["ana_private"].id},
        ),
        (
            "hand over a soft-deleted workflow",
            "SELECT flowscope_hand_over(:w, :o)",
            {"w": soft.id, "o": users["bo"]},
        ),
        ("call the owner check outside a trigger", "SELECT flowscope_check_workflow_owner()", {}),
        ("call the login trigger function", "SELECT flowscope_identity_changed()", {}),
        ("call the reuse check outside a trigger", "SELECT flowscope_check_reused_ids()", {}),
    ]
    for name, statement, params in calls:
        attempt(
            "definer functions", name, lambda s=statement, p=params: ana.sql(s, p), expect="refused"
        )
    owners = dict(first_row(engine, "SELECT json_object_agg(id, owner) AS o FROM workflows").o)
    assert owners[wfs["ana_private"].id] == users["ana"] and owners[b_wf.id] == users["b"]
    assert owners[soft.id] == users["ana"]


# -- policies, command by command ------------------------------------------------------------
def test_policies_per_command(
    client: flowscope.Client, office: dict[str, Any], engine: sa.Engine
) -> None:
    users, wfs, org, run = office["users"], office["wfs"], office["org"], office["run"]
    bo, reader = office["as"]["bo"], office["as"]["reader"]
    mine = bo.executions.create(workflow_id=wfs["bo_private"].id)
    p = {
        "r": run.id,
        "pub": wfs["ana_public"].id,
        "priv": wfs["ana_private"].id,
        "me": users["bo"],
        "ana": users["ana"],
        "o": org.id,
        "mine": mine.id,
    }
    before = first_row(
        engine, "SELECT row_to_json(e)::text AS j FROM executions e WHERE id = :r", r=run.id
    )
    attacks: list[tuple[str, str, str | set[str]]] = [
        (
            "start a run of a public workflow in another owner's name",
            "INSERT INTO executions (id, workflow_id, organization_id, owner)"
            " VALUES ('ex_forged', :pub, :o, :ana)",
            "refused",
        ),
        (
            "upsert over another owner's public run",
            "INSERT INTO executions (id, workflow_id, organization_id, owner)"
            " VALUES (:r, :pub, :o, :me) ON CONFLICT (id) DO UPDATE SET status = 'failed'",
            "refused",
        ),
        (
            "MERGE ... UPDATE another owner's public run",
            "MERGE INTO executions e USING (SELECT CAST(:r AS varchar) AS id) s ON e.id = s.id"
            " WHEN MATCHED THEN UPDATE SET status = 'failed'",
            {"refused", "empty"},
        ),
        (
            "MERGE ... DELETE another owner's public run",
            "MERGE INTO executions e USING (SELECT CAST(:r AS varchar) AS id) s ON e.id = s.id"
            " WHEN MATCHED THEN DELETE",
            {"refused", "empty"},
        ),
        (
            "take a public run over (owner = me)",
            "UPDATE executions SET owner = :me WHERE workflow_id = :pub RETURNING id",
            "empty",
        ),
        (
            "cancel every public run by a join",
            "UPDATE executions e SET status = 'cancelled' FROM workflows w"
            " WHERE w.id = e.workflow_id AND w.is_public RETURNING e.id",
            "empty",
        ),
        (
            "delete public runs by a join",
            "DELETE FROM executions e USING workflows w WHERE w.id = e.workflow_id"
            " AND w.is_public RETURNING e.id",
            "empty",
        ),
        (
            "lock another owner's public run",
            "SELECT id FROM executions WHERE id = :r FOR UPDATE",
            "empty",
        ),
        (
            "make another owner's public workflow private",
            "UPDATE workflows SET is_public = false WHERE id = :pub RETURNING id",
            "empty",
        ),
        (
            "move an own run onto another owner's private workflow",
            "UPDATE executions SET workflow_id = :priv WHERE id = :mine RETURNING id",
            "refused",
        ),
    ]
    for name, statement, expect in attacks:
        attempt("policies per command", name, lambda s=statement: bo.sql(s, p), expect=expect)
    attempt(
        "policies per command",
        "a reader locks workflows (SELECT ... FOR UPDATE)",
        lambda: reader.sql("SELECT id FROM workflows FOR UPDATE"),
        expect="refused",
    )
    for verb in ("start", "cancel", "delete"):
        attempt(
            "policies per command",
            f"executions.{verb}() on another owner's public run",
            lambda v=verb: getattr(bo.executions, v)(run.id),
            expect="refused",
        )
        with pytest.raises(flowscope.PermissionDeniedError, match="not its to change"):
            getattr(bo.executions, verb)(run.id)
    after = first_row(
        engine, "SELECT row_to_json(e)::text AS j FROM executions e WHERE id = :r", r=run.id
    )
    assert after == before
    # creating is not changing an owner: an organization-wide writer may name anyone, and a
    # name of another organization's user gives that user nothing
    created = attempt(
        "policies per command",
        "create a workflow 'owned' by another organization's user",
        lambda: office["as"]["wide"].workflows.create(name="gift", owner=users["b"]),
        expect="allowed",
    )
    b_client = client.scoped(office["other"].id, user_id=users["b"])
    assert created.organization_id == org.id and b_client.workflows.count() == 0


# -- files -------------------------------------------------------------------------------------
def _modes(root: Path) -> set[tuple[str, int]]:
    paths = [root, *root.rglob("*")] if root.is_dir() else [root]
    return {("dir" if q.is_dir() else "file", stat.S_IMODE(q.stat().st_mode)) for q in paths}


def test_files(client: flowscope.Client, office: dict[str, Any], tmp_path: Path) -> None:
    private = {("dir", 0o700), ("file", 0o600)}
    client.sql(
        "UPDATE executions SET status = 'completed', started_at = now() - interval '40 days',"
        " completed_at = now() - interval '39 days', created_at = now() - interval '40 days'"
    )

    def archive() -> Any:
        client.retention.prune(older_than="30D", archive_to=tmp_path / "archive" / "deep")
        return _modes(tmp_path / "archive")

    attempt("files", "a retention archive other local users could read", archive, expect="allowed")
    assert _modes(tmp_path / "archive") <= private
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (shared / "w.parquet").symlink_to(victim)
    old = os.umask(0)
    try:
        attempt(
            "files",
            "an export under umask 0 into a shared 0755 directory",
            lambda: client.export.parquet("workflows", shared / "x.parquet"),
            expect="allowed",
        )
        attempt(
            "files",
            "make an export overwrite a symlink's target",
            lambda: client.export.parquet("workflows", shared / "w.parquet"),
            expect="allowed",
        )
        for n in range(2):  # a second run writes a delta and rewrites the manifest
            attempt(
                "files",
                f"an incremental export (run {n + 1}) under umask 0",
                lambda: client.export.parquet("workflows", tmp_path / "inc", incremental=True),
                expect="allowed",
            )
            client.workflows.update(office["wfs"]["ana_private"].id, description=f"d{n}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # an existing directory is left alone
    for name in ("x.parquet", "w.parquet"):
        assert stat.S_IMODE((shared / name).lstat().st_mode) == 0o600
    assert not (shared / "w.parquet").is_symlink() and victim.read_text() == "keep me"
    assert _modes(tmp_path / "inc") <= private


def test_a_non_superuser_admin_disables_and_drops_what_a_login_left(server_url: str) -> None:
    """With an ordinary CREATEROLE owner as flowscope's admin: a removed user's login is
    disabled and its sessions ended, and its role is dropped although it left default
    privileges behind."""
    import secrets

    from flowscope import _migrate

    suffix = secrets.token_hex(4)
    owner, database = f"flowscope_owner_{suffix}", f"flowscope_owned_{suffix}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{owner}" LOGIN CREATEROLE'))
        conn.execute(sa.text(f'CREATE DATABASE "{database}" OWNER "{owner}"'))
    owned = sa.make_url(server_url).set(database=database, username=owner)
    url = owned.render_as_string(hide_password=False)
    try:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            _migrate.upgrade(conn)
            conn.commit()
        client = flowscope.connect(url)
        try:
            org = client.organizations.create(name="A", slug="a")
            user = client.users.create(
                username="u",
                email="u@example.com",
                organization_id=org.id,
                scopes=["workflow:read"],
            )
            tenant = client.scoped(org.id, user_id=user.id)
            attempt(
                "role attributes",
                "leave default privileges behind (non-superuser admin)",
                lambda: tenant.sql("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC"),
                expect="allowed",
            )
            role = tenant.role
            count = "SELECT count(*) FROM pg_stat_activity WHERE usename = :r"
            with engine.connect() as conn:  # the tenant's pooled connection is open
                assert conn.execute(sa.text(count), {"r": role}).scalar() >= 1
            client.users.update(user.id, is_active=False)
            with engine.connect() as conn:
                login = conn.execute(
                    sa.text("SELECT rolcanlogin FROM pg_roles WHERE rolname = :r"), {"r": role}
                ).scalar()
                sessions = conn.execute(sa.text(count), {"r": role}).scalar()
                members = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r"
                        " ON r.oid = m.roleid WHERE r.rolname = :r AND m.member <> m.grantor"
                        " AND m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user)"
                        " AND NOT m.admin_option"
                    ),
                    {"r": role},
                ).scalar()
            assert (login, sessions, members) == (False, 0, 0)  # ended; nothing borrowed kept
        finally:
            client.close()
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT flowscope_drop_identities()")).scalar() == 1
            left = conn.execute(
                sa.text("SELECT count(*) FROM pg_roles WHERE rolname = :r"), {"r": role}
            ).scalar()
        assert left == 0
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{owner}"'))
        admin.dispose()
