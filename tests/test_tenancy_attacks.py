"""A hostile tenant, through every public entry point: each attack must end in a flowscope
error or in no foreign row, and leave no trace (checked from a separate superuser
connection, and through the same pool afterwards).

The tenant logs in as its organization's own role (revision 0006); these tests hold
with no text guard in ``sql()``. ``ATTACKS`` counts what was tried and how it ended; the
totals are printed at the end of the module (run with ``-s``) and reported in the issue.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flowscope
import pytest
import sqlalchemy as sa

from ._helpers import make_workflow, two_organizations

ATTACKS: Counter[str] = Counter()
MAINTENANCE_LOCK = 0x666C6F77


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    tried = sum(v for k, v in ATTACKS.items() if k.startswith("tried"))
    refused = sum(v for k, v in ATTACKS.items() if k.startswith("refused"))
    print(f"\nattacks tried: {tried}, refused: {refused}; {dict(sorted(ATTACKS.items()))}")


@pytest.fixture
def world(client: flowscope.Client, engine: sa.Engine) -> dict[str, Any]:
    """Two organizations A and B, each with a workflow, an execution and users; a reader of A."""
    # organization-wide reach (revision 0007); tests/test_ownership.py has the owners
    out = two_organizations(
        client, scopes=["workflow:read:all", "workflow:write:all", "workflow:execute"]
    )
    out["reader"] = client.users.create(
        username="reader",
        email="reader@example.com",
        organization_id=out["a"]["org"].id,
        scopes=["workflow:read:all"],
    )
    out["nobody"] = client.users.create(
        username="nobody", email="nobody@example.com", organization_id=out["a"]["org"].id, scopes=[]
    )
    return out


def _state(engine: sa.Engine) -> dict[str, Any]:
    """Everything an attack could leave behind, read as the superuser."""
    with engine.connect() as conn:
        q = lambda sql: conn.execute(sa.text(sql)).all()  # noqa: E731
        return {
            "workflows": q("SELECT id, name, organization_id, owner FROM workflows ORDER BY id"),
            "executions": q("SELECT id, organization_id, status FROM executions ORDER BY id"),
            "users": q(
                "SELECT id, organization_id, is_admin, scopes::text, password_hash"
                " FROM users ORDER BY id"
            ),
            "organizations": q("SELECT id, name FROM organizations ORDER BY id"),
            "relations": q(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n"
                " ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog',"
                " 'information_schema', 'pg_toast') ORDER BY 1, 2"
            ),
            "functions": q(
                "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1"
            ),
            "large_objects": q("SELECT count(*) FROM pg_largeobject_metadata"),
            "tenant_roles": q(
                "SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolbypassrls"
                " FROM pg_roles WHERE rolname IN (SELECT role_name FROM flowscope_identities)"
                " ORDER BY 1"
            ),
            "memberships": q(
                "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member"
                " WHERE r.rolname IN (SELECT role_name FROM flowscope_identities)"
            ),
        }


def attack(kind: str, call: Callable[[], Any], *, foreign: tuple[str, ...] = ()) -> str:
    """Run one attack: it must raise a FlowscopeError or return nothing of ``foreign``."""
    ATTACKS[f"tried {kind}"] += 1
    try:
        result = call()
    except flowscope.FlowscopeError:
        ATTACKS[f"refused {kind}"] += 1
        return "error"
    except Exception as exc:  # pragma: no cover - reported
        pytest.fail(f"{kind}: a non-flowscope error escaped: {exc!r}")
    text = repr(result)
    leaked = [f for f in foreign if f in text]
    assert not leaked, f"{kind}: foreign data {leaked} in {text[:300]}"
    ATTACKS[f"refused {kind}"] += 1
    return "empty"


def _no_trace(
    engine: sa.Engine, before: dict[str, Any], *, changed: set[str] = frozenset()
) -> None:  # type: ignore[assignment]
    after = _state(engine)
    for key, value in before.items():
        if key not in changed:
            assert after[key] == value, f"{key} changed: {value} -> {after[key]}"


# -- raw SQL ----------------------------------------------------------------------------
HOSTILE_SQL: list[tuple[str, str]] = [
    ("role", "RESET ROLE"),
    ("role", "SET ROLE postgres"),
    ("role", "SELECT set_config('role', 'postgres', false)"),
    ("role", "SELECT set_config('ro' || 'le', 'postgres', true)"),
    ("role", "SET SESSION AUTHORIZATION postgres"),
    ("role", "SELECT set_config('session_authorization', 'postgres', false)"),
    (
        "setting",
        "SELECT length(set_config('flowscope.organization_id', :b, false)) AS s,"
        " (SELECT string_agg(id, ',') FROM workflows) AS ids",
    ),
    (
        "mid-statement",
        "SELECT query_to_xml('select length(set_config(''flowscope.organization_id'', '''"
        " || :b || ''', true)), (select string_agg(id || name, '','') from workflows)',"
        " false, false, '')::text AS x",
    ),
    (
        "mid-statement",
        "SELECT query_to_xml('select set_config(''ro'' || ''le'', ''postgres'', true),"
        " pg_read_file(''/etc/hostname'')', false, false, '')::text AS x",
    ),
    (
        "mid-statement",
        "SELECT query_to_xmlschema('select * from flowscope_identities', false, false, '')::text",
    ),
    ("do", "/* harmless */ DO $$ BEGIN EXECUTE 'CREATE TABLE public.evil (x int)'; END $$"),
    ("do", "DO $$ BEGIN PERFORM set_config('role', 'postgres', false); END $$"),
    ("do", "DO $$ BEGIN EXECUTE 'ALTER TABLE workflows DISABLE ROW LEVEL SECURITY'; END $$"),
    ("ddl", "CREATE TEMP TABLE workflows (id text, name text, organization_id text)"),
    ("ddl", "CREATE TEMP TABLE audit_log (x int)"),
    ("ddl", "CREATE TABLE public.evil (x int)"),
    ("ddl", "CREATE FUNCTION public.evil() RETURNS int LANGUAGE sql AS 'select 1'"),
    ("ddl", "CREATE VIEW public.evil AS SELECT 1"),
    ("ddl", "CREATE SCHEMA evil"),
    ("ddl", "ALTER TABLE workflows DISABLE ROW LEVEL SECURITY"),
    ("ddl", "DROP POLICY tenant_isolation ON workflows"),
    ("ddl", "TRUNCATE workflows"),
    ("ddl", "GRANT SELECT ON workflows TO PUBLIC"),
    ("ddl", "ALTER ROLE CURRENT_USER SUPERUSER"),
    ("ddl", "ALTER ROLE CURRENT_USER BYPASSRLS"),
    ("server files", "SELECT pg_read_file('/etc/hostname')"),
    ("server files", "SELECT pg_ls_dir('.')"),
    ("server files", "COPY workflows TO '/tmp/flowscope-evil'"),
    ("server files", "COPY (SELECT 1) TO PROGRAM 'touch /tmp/flowscope-evil'"),
    ("large objects", "SELECT lo_import('/etc/hostname')"),
    ("large objects", "SELECT lo_from_bytea(0, 'x'::bytea)"),
    ("large objects", "SELECT lo_create(0)"),
    ("sequences", "SELECT nextval(pg_get_serial_sequence('audit_log', 'id'))"),
    ("sequences", "SELECT setval(pg_get_serial_sequence('audit_log', 'id'), 1)"),
    ("secrets", "SELECT password_hash FROM users"),
    ("secrets", "SELECT * FROM users"),
    ("secrets", "SELECT count(*) FROM users WHERE password_hash LIKE '$argon2%'"),
    ("secrets", "SELECT * FROM flowscope_identities"),
    ("secrets", "UPDATE users SET full_name = 'x' WHERE password_hash IS NOT NULL"),
    ("foreign rows", "SELECT id, name FROM workflows WHERE organization_id = :b"),
    ("foreign rows", "SELECT id FROM executions WHERE organization_id = :b"),
    ("foreign rows", "SELECT id, username FROM users WHERE organization_id = :b"),
    ("foreign rows", "SELECT id, name FROM organizations WHERE id = :b"),
    ("foreign rows", "SELECT row_id, changes::text FROM audit_log WHERE organization_id = :b"),
    ("foreign rows", "UPDATE workflows SET name = 'pwned' WHERE organization_id = :b RETURNING id"),
    ("foreign rows", "DELETE FROM executions WHERE organization_id = :b RETURNING id"),
    ("foreign rows", "UPDATE workflows SET organization_id = :b RETURNING id"),
    (
        "foreign rows",
        "INSERT INTO workflows (id, name, owner, nodes, edges, created_by, updated_by,"
        " organization_id) VALUES ('wf_evil', 'x', 'o', '[]', '[]', 'o', 'o', :b)",
    ),
    ("rollups", "SELECT * FROM flowscope_executions_daily"),
    ("rollups", "SELECT * FROM flowscope_executions_daily_org"),
    ("rollups", "SELECT organization_id FROM flowscope_executions_daily_org_visible"),
    ("rollups", "REFRESH MATERIALIZED VIEW flowscope_executions_daily"),
    ("partitions", "SELECT * FROM audit_log_default"),
    ("partitions", "SELECT tableoid::regclass::text, row_id FROM audit_log"),
    (
        "signals",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
    ),
    (
        "signals",
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
    ),
    ("locks", "LOCK TABLE flowscope_identities IN ACCESS EXCLUSIVE MODE"),
    ("locks", "LOCK TABLE users IN ACCESS EXCLUSIVE MODE"),
    ("several statements", "SELECT 1; SELECT id FROM workflows WHERE organization_id = :b"),
]


def test_hostile_sql_is_refused_and_leaves_no_trace(
    client: flowscope.Client, world: dict[str, Any], engine: sa.Engine
) -> None:
    a, b = world["a"], world["b"]
    foreign = (b["org"].id, b["wf"].id, b["ex"].id, b["user"].id, "argon2", "fs_")
    tenants = {
        "org admin": client.scoped(a["org"].id),
        "writer": client.scoped(a["org"].id, user_id=a["user"].id),
        "reader": client.scoped(a["org"].id, user_id=world["reader"].id),
    }
    for tenant in tenants.values():
        tenant.workflows.count()  # provisions the login
    before = _state(engine)
    for tenant in tenants.values():
        for kind, statement in HOSTILE_SQL:
            params = {"b": b["org"].id} if ":b" in statement else None
            attack(
                f"sql {kind}",
                lambda s=statement, p=params, t=tenant: t.sql(s, p),
                foreign=foreign,
            )
        # the same pool afterwards: the tenant's own identity, nothing left on the session
        after = tenant.sql(
            "SELECT session_user::text AS s, current_user::text AS c,"
            " current_setting('search_path') AS path,"
            " (SELECT count(*) FROM pg_prepared_statements) AS prepared,"
            " (SELECT count(*) FROM pg_cursors WHERE name <> '') AS cursors,"
            " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            "  AND pid = pg_backend_pid()) AS advisory,"
            " (SELECT string_agg(id, ',') FROM workflows) AS ids"
        )[0]
        assert after["s"] == after["c"] == tenant.role, after
        assert after["path"] == '"$user", public' and after["ids"] == a["wf"].id, after
        assert after["prepared"] == 1, after  # this statement (sql() sends one prepared statement)
        assert after["cursors"] == after["advisory"] == 0, after
    # A's own rows changed (the writer renamed nothing: every statement aimed at B)
    _no_trace(engine, before)


def test_session_state_never_crosses_to_the_next_user_of_a_connection(
    client: flowscope.Client, world: dict[str, Any], engine: sa.Engine
) -> None:
    """Settings, cursors, prepared statements, LISTEN and advisory locks are gone at check-in."""
    a = world["a"]
    tenant = client.scoped(a["org"].id)
    tenant.workflows.count()
    leftovers = [
        "SELECT set_config('search_path', 'pg_temp, public', false)",
        "SELECT set_config('statement_timeout', '1', false)",
        "SELECT set_config('flowscope.user_id', 'usr_forged', false)",
        f"SELECT pg_advisory_lock({MAINTENANCE_LOCK})",
        "PREPARE evil AS SELECT 1",
        "LISTEN evil",
    ]
    for statement in leftovers:
        attack("session leftovers", lambda s=statement: tenant.sql(s))
    with tenant.transaction() as conn:
        conn.execute(sa.text("DECLARE evil CURSOR WITH HOLD FOR SELECT 1"))
    ATTACKS["tried session leftovers"] += 1
    # every later checkout of that pool (size 5: use them all) starts clean
    for _ in range(6):
        row = tenant.sql(
            "SELECT current_setting('search_path') AS path,"
            " current_setting('statement_timeout') AS timeout,"
            " (SELECT count(*) FROM pg_prepared_statements) AS prepared,"
            " (SELECT count(*) FROM pg_cursors WHERE name <> '') AS cursors,"
            " (SELECT count(*) FROM pg_listening_channels()) AS listening"
        )[0]
        assert row == {
            "path": '"$user", public',
            "timeout": "0",
            "prepared": 1,  # this very statement (sql() sends one prepared statement)
            "cursors": 0,
            "listening": 0,
        }
    ATTACKS["refused session leftovers"] += 1
    # nobody holds the maintenance lock: maintenance runs at once
    report = client.maintenance.maintain(months_ahead=0, dry_run=True, lock_timeout=2)
    assert report is not None


def test_admin_temp_objects_cannot_capture_the_audit_log(
    client: flowscope.Client, world: dict[str, Any], engine: sa.Engine
) -> None:
    """SECURITY DEFINER functions resolve pg_temp last: a temp ``audit_log`` catches nothing."""
    wf = world["a"]["wf"]
    with client.transaction() as conn:
        conn.execute(sa.text("CREATE TEMP TABLE audit_log (LIKE public.audit_log)"))
        conn.execute(sa.text("UPDATE workflows SET name = 'renamed' WHERE id = :i"), {"i": wf.id})
        assert conn.execute(sa.text("SELECT count(*) FROM pg_temp.audit_log")).scalar() == 0
    with engine.connect() as conn:
        n = conn.execute(
            sa.text(
                "SELECT count(*) FROM public.audit_log WHERE row_id = :i AND action = 'UPDATE'"
            ),
            {"i": wf.id},
        ).scalar()
    assert n == 1
    ATTACKS["tried temp shadowing"] += 1
    ATTACKS["refused temp shadowing"] += 1


# -- scopes are privileges ----------------------------------------------------------------
def test_a_reader_cannot_write_and_a_user_without_scope_cannot_read(
    client: flowscope.Client, world: dict[str, Any], engine: sa.Engine
) -> None:
    a = world["a"]
    reader = client.scoped(a["org"].id, user_id=world["reader"].id)
    nobody = client.scoped(a["org"].id, user_id=world["nobody"].id)
    reader.workflows.count()
    with pytest.raises(flowscope.PermissionDeniedError):
        nobody.workflows.count()  # provisioned all the same, with no privilege on workflows
    before = _state(engine)
    me = world["reader"].id
    for statement in (
        "UPDATE users SET is_admin = true WHERE id = :me",
        "UPDATE users SET scopes = '[\"admin\"]' WHERE id = :me",
        "UPDATE workflows SET name = 'x'",
        "DELETE FROM executions",
        "INSERT INTO executions (id, workflow_id, organization_id) VALUES ('ex_evil', :w, :o)",
        "UPDATE organizations SET name = 'x'",
        "UPDATE users SET full_name = 'x' WHERE id <> :me",
    ):
        params = {"me": me, "w": a["wf"].id, "o": a["org"].id}
        outcome = attack("scope write", lambda s=statement, p=params: reader.sql(s, p))
        assert outcome == "error" or "users SET full_name" in statement
    for call in (
        lambda: nobody.sql("SELECT id FROM workflows"),
        lambda: nobody.sql("SELECT id FROM executions"),
        lambda: nobody.sql("SELECT row_id FROM audit_log"),
        lambda: nobody.analytics.status_breakdown(),
        lambda: nobody.analytics.durations(),
        lambda: nobody.workflows.count(),
        lambda: nobody.export.parquet("executions", Path("/tmp/never.parquet")),
    ):
        assert attack("scope read", call) == "error"
    _no_trace(engine, before)
    # self-service still works through the same privileges
    assert reader.users.update(me, full_name="Rea Der").full_name == "Rea Der"
    reader.users.set_password(me, "another long passphrase")
    assert client.users.authenticate("reader", "another long passphrase").id == me
    # a grant takes effect at once, a revoke too (PostgreSQL privileges follow the scopes)
    client.users.grant(me, "workflow:write:all")
    reader.sql("UPDATE workflows SET name = 'granted' WHERE id = :w", {"w": a["wf"].id})
    client.users.revoke(me, "workflow:write:all")
    assert attack("scope write", lambda: reader.sql("UPDATE workflows SET name = 'x'")) == "error"
    client.users.update(me, is_active=False)
    assert attack("scope read", lambda: reader.sql("SELECT id FROM workflows")) == "error"


def test_the_audit_actor_is_the_login_identity(
    client: flowscope.Client, world: dict[str, Any], engine: sa.Engine
) -> None:
    a = world["a"]
    writer = client.scoped(a["org"].id, user_id=a["user"].id)
    with writer.transaction() as conn:
        conn.execute(sa.text("SELECT set_config('flowscope.user_id', 'usr_forged', true)"))
        conn.execute(
            sa.text("UPDATE workflows SET name = 'forged?' WHERE id = :i"), {"i": a["wf"].id}
        )
    writer.sql(
        "SELECT set_config('flowscope.user_id', 'usr_forged', false),"
        " (SELECT count(*) FROM workflows) AS n"
    )
    writer.workflows.update(a["wf"].id, name="again")
    with engine.connect() as conn:
        actors = (
            conn.execute(
                sa.text(
                    "SELECT DISTINCT actor FROM audit_log WHERE row_id = :i AND action = 'UPDATE'"
                ),
                {"i": a["wf"].id},
            )
            .scalars()
            .all()
        )
    assert actors == [a["user"].id]
    ATTACKS["tried audit forgery"] += 2
    ATTACKS["refused audit forgery"] += 2


# -- integrity across organizations -----------------------------------------------------
def test_an_execution_cannot_point_into_another_organization(
    client: flowscope.Client, world: dict[str, Any], engine: sa.Engine
) -> None:
    a, b = world["a"], world["b"]
    tenant = client.scoped(a["org"].id)
    tenant.workflows.count()
    before = _state(engine)
    for workflow_id in (b["wf"].id, "wf_does_not_exist"):
        with pytest.raises(flowscope.ConflictError):
            tenant.sql(
                "INSERT INTO executions (id, workflow_id, organization_id, owner)"
                " VALUES ('ex_evil', :w, :o, 'o')",
                {"w": workflow_id, "o": a["org"].id},
            )
    with pytest.raises((flowscope.ConflictError, flowscope.ValidationError)):
        tenant.executions.ingest([{"workflow_id": b["wf"].id, "organization_id": a["org"].id}])
    # the admin is held to it too
    with pytest.raises(flowscope.ConflictError):
        client.sql(
            "INSERT INTO executions (id, workflow_id, organization_id, owner)"
            " VALUES ('ex_x', :w, :o, 'o')",
            {"w": b["wf"].id, "o": a["org"].id},
        )
    with pytest.raises(flowscope.ConflictError):
        client.sql(
            "UPDATE workflows SET organization_id = :o WHERE id = :w",
            {"w": b["wf"].id, "o": a["org"].id},
        )
    _no_trace(engine, before)
    ATTACKS["tried integrity"] += 5
    ATTACKS["refused integrity"] += 5


# -- other entry points -------------------------------------------------------------------
def test_exports_and_analytics_of_a_hostile_tenant(
    client: flowscope.Client, world: dict[str, Any], engine: sa.Engine, tmp_path: Path
) -> None:
    a, b = world["a"], world["b"]
    tenant = client.scoped(a["org"].id)
    tenant.workflows.count()
    before = _state(engine)
    foreign = (b["org"].id, b["wf"].id, b["ex"].id)
    selects = [
        sa.select(sa.func.pg_read_file("/etc/hostname").label("x")),
        sa.select(sa.func.set_config("role", "postgres", True).label("x")),
        sa.select(
            sa.func.length(
                sa.func.set_config("flowscope.organization_id", b["org"].id, True)
            ).label("x"),
            sa.text("(SELECT string_agg(id, ',') FROM workflows) AS ids"),
        ),
        sa.select(
            sa.func.query_to_xml(
                "select set_config('ro'||'le','postgres',true), pg_read_file('/etc/hostname')",
                False,
                False,
                "",
            ).label("x")
        ),
        sa.select(sa.text("id, name FROM workflows WHERE organization_id = :b")).params(
            b=b["org"].id
        ),
    ]
    for n, select in enumerate(selects):
        path = tmp_path / f"x{n}.parquet"
        outcome = attack(
            "export select", lambda s=select, p=path: tenant.export.parquet(s, p), foreign=foreign
        )
        if outcome == "empty" and path.exists():
            import pyarrow.parquet as pq

            text = repr(pq.read_table(path).to_pylist())
            assert not [f for f in foreign if f in text], text
    attack(
        "export table",
        lambda: tenant.export.parquet(
            "executions", tmp_path / "e.parquet", organization_id=b["org"].id
        ),
    )
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "e.parquet").num_rows == 0
    for call in (
        lambda: tenant.analytics.status_breakdown(organization_id=b["org"].id),
        lambda: tenant.analytics.durations(by="workflow_id"),
        lambda: tenant.analytics.tags(),
        lambda: tenant.analytics.status_breakdown(by="organization_id", use_rollups=True),
    ):
        frame = attack("analytics", call)
        del frame
    refreshed = attack("analytics", lambda: tenant.analytics.refresh_rollups())
    assert refreshed == "error"
    frame = repr(tenant.analytics.status_breakdown(by="organization_id").to_dict())
    assert a["org"].id in frame and b["org"].id not in frame
    for call in (
        lambda: tenant.audit.history("workflows", b["wf"].id),
        lambda: tenant.workflows.get(b["wf"].id),
        lambda: tenant.users.authenticate("user_b", "a long passphrase"),
        lambda: tenant.maintenance.maintain(),
        lambda: tenant.organizations.create(name="evil", slug="evil"),
    ):
        attack("resources", call, foreign=foreign)
    _no_trace(engine, before)


def test_bounded_work(client: flowscope.Client, world: dict[str, Any], database_url: str) -> None:
    # a grid of 157M buckets is refused before anything is sent
    with pytest.raises(flowscope.ValidationError, match="limit of 100,000"):
        client.analytics.status_breakdown(freq="1min", since="1900-01-01", until="2200-01-01")
    ATTACKS["tried bounded work"] += 1
    ATTACKS["refused bounded work"] += 1
    # a per-client statement timeout ends in a flowscope error, for a tenant too
    slow = flowscope.connect(database_url, statement_timeout=0.2)
    try:
        for c in (slow, slow.scoped(world["a"]["org"].id)):
            started = time.perf_counter()
            with pytest.raises(flowscope.QueryTimeoutError):
                c.sql("SELECT pg_sleep(5)")
            assert time.perf_counter() - started < 3
            # a tenant cannot lift it for later calls: the session default comes back
            c.sql("SELECT set_config('statement_timeout', '0', false)")
            with pytest.raises(flowscope.QueryTimeoutError):
                c.sql("SELECT pg_sleep(5)")
            ATTACKS["tried bounded work"] += 2
            ATTACKS["refused bounded work"] += 2
    finally:
        slow.close()
    with pytest.raises(flowscope.ConfigurationError):
        flowscope.connect(database_url, statement_timeout=-1)


def test_a_held_advisory_lock_cannot_stall_maintenance(
    client: flowscope.Client, world: dict[str, Any]
) -> None:
    tenant = client.scoped(world["a"]["org"].id)
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with tenant.transaction() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MAINTENANCE_LOCK})
            holding.set()
            release.wait(20)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert holding.wait(10)
        started = time.perf_counter()
        with pytest.raises(flowscope.QueryTimeoutError, match="maintenance lock"):
            client.maintenance.maintain(months_ahead=0, lock_timeout=0.5)
        assert time.perf_counter() - started < 5
    finally:
        release.set()
        t.join()
    ATTACKS["tried locks"] += 1
    ATTACKS["refused locks"] += 1


def test_tenant_logins_are_least_privilege(
    client: flowscope.Client, world: dict[str, Any], engine: sa.Engine
) -> None:
    a = world["a"]
    tenant = client.scoped(a["org"].id, user_id=world["reader"].id)
    tenant.workflows.count()
    role = tenant.role
    assert role is not None and role.startswith("fs_")
    with engine.connect() as conn:
        row = (
            conn.execute(
                sa.text(
                    "SELECT r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls,"
                    " r.rolreplication, r.rolcanlogin,"
                    " (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid) AS member_of,"
                    " has_database_privilege(r.rolname, current_database(), 'TEMP') AS temp,"
                    " has_schema_privilege(r.rolname, 'public', 'CREATE') AS create_public,"
                    " has_column_privilege(r.rolname, 'users', 'password_hash', 'SELECT') AS secret,"
                    " has_table_privilege(r.rolname, 'flowscope_identities', 'SELECT') AS identities,"
                    " has_table_privilege(r.rolname, 'workflows', 'INSERT') AS write_workflows,"
                    " has_table_privilege(r.rolname, 'workflows', 'SELECT') AS read_workflows"
                    " FROM pg_roles r WHERE r.rolname = :r"
                ),
                {"r": role},
            )
            .one()
            ._asdict()
        )
    assert row == {
        "rolsuper": False,
        "rolinherit": False,
        "rolcreaterole": False,
        "rolcreatedb": False,
        "rolbypassrls": False,
        "rolreplication": False,
        "rolcanlogin": True,
        "member_of": 0,
        "temp": False,
        "create_public": False,
        "secret": False,
        "identities": False,
        "write_workflows": False,
        "read_workflows": True,
    }


def test_two_tenants_alternating_over_one_connection_each(
    database_url: str, world: dict[str, Any]
) -> None:
    """Pools of one connection per identity, two tenants and the admin interleaved."""
    root = flowscope.connect(database_url, pool_size=1)
    errors: list[str] = []

    def run(key: str, other: str) -> None:
        me, them = world[key], world[other]
        scoped = root.scoped(me["org"].id)
        try:
            for i in range(25):
                scoped.sql(
                    "SELECT set_config('flowscope.organization_id', :o, false)",
                    {"o": them["org"].id},
                )
                seen = {
                    r["organization_id"]
                    for r in scoped.sql("SELECT organization_id FROM executions")
                }
                if seen != {me["org"].id}:
                    errors.append(f"{key} saw {seen}")
                if i % 5 == 0 and root.workflows.count() != 2:
                    errors.append("admin saw the wrong rows")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=p) for p in (("a", "b"), ("b", "a"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    root.close()
    assert errors == []
    ATTACKS["tried pool crossing"] += 50
    ATTACKS["refused pool crossing"] += 50


def test_identity_roles_go_with_their_organization(
    client: flowscope.Client, world: dict[str, Any], engine: sa.Engine
) -> None:
    b = world["b"]
    tenant = client.scoped(b["org"].id)
    tenant.workflows.count()
    role = tenant.role
    client.close()  # pools closed before the role goes
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT flowscope_drop_identities(:o)"), {"o": b["org"].id})
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM pg_roles WHERE rolname = :r"), {"r": role}
            ).scalar()
            == 0
        )


def test_retention_of_a_tenant_stays_in_its_organization(
    client: flowscope.Client, world: dict[str, Any], engine: sa.Engine, tmp_path: Path
) -> None:
    a, b = world["a"], world["b"]
    client.sql(
        "UPDATE executions SET status = 'completed', started_at = now() - interval '40 days',"
        " completed_at = now() - interval '39 days', created_at = now() - interval '40 days'"
    )
    reader = client.scoped(a["org"].id, user_id=world["reader"].id)
    with pytest.raises(flowscope.PermissionDeniedError):
        reader.retention.prune(older_than="30D", archive_to=tmp_path / "r")
    report = client.scoped(a["org"].id).retention.prune(older_than="30D", archive_to=tmp_path / "a")
    assert report.rows == 1
    with engine.connect() as conn:
        left = conn.execute(sa.text("SELECT id FROM executions")).scalars().all()
    assert left == [b["ex"].id]
    ATTACKS["tried retention"] += 2
    ATTACKS["refused retention"] += 2


def test_a_non_superuser_owner_with_createrole(server_url: str, world: dict[str, Any]) -> None:
    """The whole design on a server where flowscope's admin login is an ordinary role with
    CREATEROLE (owner of its database), not a superuser."""
    import secrets

    from flowscope import _migrate
    from flowscope.testing import drop_identities

    suffix = secrets.token_hex(4)
    owner, database = f"flowscope_owner_{suffix}", f"flowscope_owned_{suffix}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{owner}" LOGIN CREATEROLE'))
        conn.execute(sa.text(f'CREATE DATABASE "{database}" OWNER "{owner}"'))
    url = sa.make_url(server_url).set(database=database, username=owner)
    owned = url.render_as_string(hide_password=False)
    try:
        engine = sa.create_engine(owned, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            _migrate.upgrade(conn)
            conn.commit()
        engine.dispose()
        client = flowscope.connect(owned)
        try:
            a = client.organizations.create(name="A", slug="a")
            b = client.organizations.create(name="B", slug="b")
            make_workflow(client, organization_id=b.id)
            tenant = client.scoped(a.id)
            assert tenant.workflows.count() == 0
            make_workflow(tenant, organization_id=a.id)
            assert [r["n"] for r in tenant.sql("SELECT count(*) AS n FROM workflows")] == [1]
            with pytest.raises(flowscope.PermissionDeniedError):
                tenant.sql("SET ROLE postgres")
            with pytest.raises(flowscope.PermissionDeniedError):
                tenant.sql(f'SET ROLE "{owner}"')
        finally:
            client.close()
        drop_identities(owned)
        ATTACKS["tried non-superuser owner"] += 2
        ATTACKS["refused non-superuser owner"] += 2
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{owner}"'))
        admin.dispose()
