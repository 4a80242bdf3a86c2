"""Tenancy bound to the login identity, not to a setting: one login role per tenant identity.

Before this revision a scoped client logged in as the owner and stepped down with
``SET LOCAL ROLE flowscope_tenant`` plus a transaction-local organization setting;
any SQL could step back up. From here on:

* ``flowscope_identities`` maps a login role to ``(organization_id, user_id)``
  (``user_id`` NULL: the organization's own identity, which acts as its
  administrator). Tenants have no privilege on it.
* Each identity is a real login role, created by ``flowscope_provision_identity()``
  (called by an admin client: it needs ``CREATEROLE``): ``LOGIN NOINHERIT
  NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS``, member of no
  role, owning nothing, with a random password kept in ``flowscope_identities``
  (for servers that ask for one). ``SET ROLE`` has nowhere to go.
* Policies derive the organization from ``session_user`` (which no SQL can change)
  through ``flowscope_session_organization()``, called once per statement as an
  InitPlan (``(SELECT ...)``), so it costs one index probe per query, not per row.
* Scopes are PostgreSQL privileges: ``flowscope_sync_identity()`` grants each login
  exactly what its user's scopes allow (``workflow:read`` → SELECT,
  ``workflow:write`` → writes on workflows, ``workflow:execute`` → writes on
  executions, ``admin`` → users and the organization). A trigger on ``users``
  re-syncs when scopes, ``is_admin``, ``is_active``, ``deleted_at`` or the
  organization change, so a grant or revoke takes effect at once.
  ``password_hash`` is never readable by a tenant (column privileges).
* The audit actor of a tenant is its identity's user, whatever the session sets.
* SECURITY DEFINER functions pin ``search_path = pg_catalog, public, pg_temp``
  (pg_temp last) and qualify the names they write.
* An execution's organization always equals its workflow's (statement triggers,
  checked against rows RLS would hide too, with one message whether the workflow
  exists elsewhere or not at all, so the check reveals nothing).
* PUBLIC loses TEMP on this database and CREATE on schema ``public``.
* The NOLOGIN role ``flowscope_tenant`` of revision 0002 is dropped (if no other
  database uses it).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_TENANT_ROLE = "flowscope_tenant"
TENANT_TABLES = ("workflows", "executions", "users")
ROLLUP_VIEWS = (
    "flowscope_executions_daily",
    "flowscope_executions_daily_org",
    "flowscope_execution_events_daily_org",
)
SECRET_COLUMNS = ("password_hash",)
# server-side large-object constructors: any role may call them, and what they create
# outlives the transaction (and would be owned by a tenant login)
LARGE_OBJECT_FUNCTIONS = (
    "lo_creat(integer)",
    "lo_create(oid)",
    "lo_import(text)",
    "lo_import(text, oid)",
    "lo_from_bytea(oid, bytea)",
)
# columns a user may change on their own row (the password through its hash)
SELF_SERVICE = (
    "full_name",
    "avatar_url",
    "email",
    "password_hash",
    "password_changed_at",
    "failed_login_attempts",
    "locked_until",
)
PINNED = "SET search_path = pg_catalog, public, pg_temp"
ORG = "(SELECT public.flowscope_session_organization())"

SESSION_FUNCTIONS = f"""
CREATE FUNCTION flowscope_session_organization() RETURNS VARCHAR
LANGUAGE sql STABLE SECURITY DEFINER {PINNED} AS $$
    SELECT organization_id FROM public.flowscope_identities WHERE role_name = session_user::text
$$;
CREATE FUNCTION flowscope_session_user() RETURNS VARCHAR
LANGUAGE sql STABLE SECURITY DEFINER {PINNED} AS $$
    SELECT user_id FROM public.flowscope_identities WHERE role_name = session_user::text
$$;
CREATE FUNCTION flowscope_session_is_tenant() RETURNS BOOLEAN
LANGUAGE sql STABLE SECURITY DEFINER {PINNED} AS $$
    SELECT EXISTS (SELECT 1 FROM public.flowscope_identities WHERE role_name = session_user::text)
$$;
CREATE FUNCTION flowscope_session_is_admin() RETURNS BOOLEAN
LANGUAGE sql STABLE SECURITY DEFINER {PINNED} AS $$
    SELECT i.user_id IS NULL
        OR coalesce(u.is_admin, false) OR coalesce(u.scopes ? 'admin', false)
    FROM public.flowscope_identities i
    LEFT JOIN public.users u ON u.id = i.user_id AND u.deleted_at IS NULL
        AND u.is_active IS DISTINCT FROM false
    WHERE i.role_name = session_user::text
$$;
CREATE OR REPLACE FUNCTION flowscope_current_organization() RETURNS VARCHAR
LANGUAGE sql STABLE {PINNED} AS $$
    SELECT public.flowscope_session_organization()
$$;
"""

OLD_CURRENT_ORG = """
CREATE OR REPLACE FUNCTION flowscope_current_organization()
RETURNS VARCHAR AS $$
    SELECT NULLIF(current_setting('flowscope.organization_id', true), '')
$$ LANGUAGE sql STABLE;
"""

SYNC_FUNCTION = f"""
CREATE FUNCTION flowscope_sync_identity(p_role TEXT) RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
DECLARE
    ident RECORD;
    u RECORD;
    is_adm BOOLEAN := false;
    can_read BOOLEAN := false;
    can_write BOOLEAN := false;
    can_execute BOOLEAN := false;
    visible TEXT;
    self_service TEXT;
    v TEXT;
BEGIN
    -- one sync at a time: concurrent GRANTs on one table collide in the catalog. Tenants
    -- have no privilege on this table, so they cannot hold this lock.
    LOCK TABLE public.flowscope_identities IN SHARE ROW EXCLUSIVE MODE;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p_role) THEN
        RETURN;
    END IF;
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA public FROM %I', p_role);
    EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM %I', p_role);
    EXECUTE format('REVOKE ALL ON SCHEMA public FROM %I', p_role);
    SELECT * INTO ident FROM public.flowscope_identities WHERE role_name = p_role;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF ident.user_id IS NULL THEN
        is_adm := true;
    ELSE
        SELECT * INTO u FROM public.users WHERE id = ident.user_id;
        IF NOT FOUND OR u.deleted_at IS NOT NULL OR u.is_active IS FALSE
           OR (u.organization_id IS NOT NULL AND u.organization_id <> ident.organization_id) THEN
            RETURN;  -- no privileges at all
        END IF;
        is_adm := coalesce(u.is_admin, false) OR coalesce(u.scopes ? 'admin', false);
        -- an organization-wide scope (revision 0007) implies the plain one
        can_read := coalesce(u.scopes ?| ARRAY['workflow:read', 'workflow:read:all'], false);
        can_write := coalesce(u.scopes ?| ARRAY['workflow:write', 'workflow:write:all'], false);
        can_execute := coalesce(u.scopes ? 'workflow:execute', false);
    END IF;
    IF is_adm THEN
        can_read := true; can_write := true; can_execute := true;
    END IF;
    SELECT string_agg(quote_ident(column_name::text), ', ' ORDER BY ordinal_position) INTO visible
    FROM information_schema.columns
    WHERE table_schema = 'public' AND table_name = 'users'
      AND column_name::text <> ALL (ARRAY{list(SECRET_COLUMNS)!r});
    self_service := '{", ".join(SELF_SERVICE)}';
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', p_role);
    EXECUTE format('GRANT SELECT ON public.organizations TO %I', p_role);
    EXECUTE format('GRANT SELECT (%s) ON public.users TO %I', visible, p_role);
    EXECUTE format('GRANT UPDATE (%s) ON public.users TO %I', self_service, p_role);
    IF can_read THEN
        EXECUTE format('GRANT SELECT ON public.workflows, public.executions, public.audit_log TO %I', p_role);
        FOR v IN SELECT c.relname FROM pg_class c
                 WHERE c.relnamespace = 'public'::regnamespace
                   AND (c.relname LIKE 'flowscope\\_%\\_visible' OR c.relname = 'flowscope_rollup_refreshes')
        LOOP
            EXECUTE format('GRANT SELECT ON public.%I TO %I', v, p_role);
        END LOOP;
    END IF;
    IF can_write THEN
        EXECUTE format('GRANT INSERT, UPDATE, DELETE ON public.workflows TO %I', p_role);
    END IF;
    IF can_execute THEN
        EXECUTE format('GRANT INSERT, UPDATE, DELETE ON public.executions TO %I', p_role);
    END IF;
    IF is_adm THEN
        EXECUTE format('GRANT INSERT (%s, password_hash), UPDATE (%s, password_hash), DELETE'
                       ' ON public.users TO %I', visible, visible, p_role);
        EXECUTE format('GRANT UPDATE ON public.organizations TO %I', p_role);
    END IF;
END;
$$;

CREATE FUNCTION flowscope_sync_identities(p_user VARCHAR DEFAULT NULL) RETURNS INTEGER
LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
DECLARE
    r TEXT;
    n INTEGER := 0;
BEGIN
    FOR r IN SELECT role_name FROM public.flowscope_identities
             WHERE p_user IS NULL OR user_id = p_user ORDER BY role_name
    LOOP
        PERFORM public.flowscope_sync_identity(r);
        n := n + 1;
    END LOOP;
    RETURN n;
END;
$$;

CREATE FUNCTION flowscope_users_changed() RETURNS TRIGGER
LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
BEGIN
    PERFORM public.flowscope_sync_identities(CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
    RETURN NULL;
END;
$$;
"""

PROVISION_FUNCTION = f"""
CREATE FUNCTION flowscope_provision_identity(p_org VARCHAR, p_user VARCHAR)
RETURNS TABLE (role_name TEXT, login_secret TEXT)
LANGUAGE plpgsql {PINNED} AS $$
#variable_conflict use_column
DECLARE
    r TEXT;
    s TEXT;
    u RECORD;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM public.organizations o WHERE o.id = p_org AND o.deleted_at IS NULL) THEN
        RAISE EXCEPTION 'organization % does not exist', p_org USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_user IS NOT NULL THEN
        SELECT * INTO u FROM public.users WHERE id = p_user;
        IF NOT FOUND OR u.deleted_at IS NOT NULL OR u.is_active IS FALSE THEN
            RAISE EXCEPTION 'acting user % is unknown, deleted or inactive', p_user
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF u.organization_id IS NOT NULL AND u.organization_id <> p_org THEN
            RAISE EXCEPTION 'user % does not belong to organization %', p_user, p_org
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    SELECT i.role_name, i.login_secret INTO r, s FROM public.flowscope_identities i
    WHERE i.organization_id = p_org AND i.user_id IS NOT DISTINCT FROM p_user;
    IF FOUND AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
        -- a login may change its own password and session defaults: undo both
        EXECUTE format('ALTER ROLE %I RESET ALL', r);
        EXECUTE format('ALTER ROLE %I PASSWORD %L', r, s);
        RETURN QUERY SELECT r, s;
        RETURN;
    END IF;
    r := coalesce(r, 'fs_' || left(md5(current_database() || chr(1) || p_org || chr(1)
                                        || coalesce(p_user, chr(2))), 28));
    s := replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
        -- left behind by a dropped database of the same name: take it over, reset
        EXECUTE format('ALTER ROLE %I WITH LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE'
                       ' NOREPLICATION NOBYPASSRLS PASSWORD %L', r, s);
    ELSE
        EXECUTE format('CREATE ROLE %I WITH LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE'
                       ' NOREPLICATION NOBYPASSRLS PASSWORD %L', r, s);
    END IF;
    INSERT INTO public.flowscope_identities AS i (role_name, organization_id, user_id, login_secret)
    VALUES (r, p_org, p_user, s)
    ON CONFLICT ON CONSTRAINT flowscope_identities_pkey DO UPDATE SET login_secret = excluded.login_secret;
    PERFORM public.flowscope_sync_identity(r);
    RETURN QUERY SELECT r, s;
END;
$$;

CREATE FUNCTION flowscope_drop_identities(p_org VARCHAR DEFAULT NULL) RETURNS INTEGER
LANGUAGE plpgsql {PINNED} AS $$
DECLARE
    r TEXT;
    n INTEGER := 0;
BEGIN
    FOR r IN SELECT i.role_name FROM public.flowscope_identities i
             WHERE p_org IS NULL OR i.organization_id = p_org ORDER BY 1
    LOOP
        DELETE FROM public.flowscope_identities WHERE role_name = r;
        PERFORM public.flowscope_sync_identity(r);  -- no row left: revokes everything
        BEGIN
            EXECUTE format('DROP OWNED BY %I', r);  -- anything it managed to own here
        EXCEPTION WHEN insufficient_privilege OR undefined_object THEN
            NULL;
        END;
        EXECUTE format('DROP ROLE IF EXISTS %I', r);
        n := n + 1;
    END LOOP;
    RETURN n;
END;
$$;
"""

INTEGRITY_FUNCTIONS = f"""
CREATE FUNCTION flowscope_check_execution_organization() RETURNS TRIGGER
LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM new_rows n LEFT JOIN public.workflows w ON w.id = n.workflow_id
        WHERE w.id IS NULL OR w.organization_id IS DISTINCT FROM n.organization_id
    ) THEN
        RAISE EXCEPTION 'an execution must belong to an existing workflow of its own organization'
            USING ERRCODE = 'foreign_key_violation', TABLE = 'executions',
                  CONSTRAINT = 'executions_workflow_organization';
    END IF;
    RETURN NULL;
END;
$$;
CREATE FUNCTION flowscope_check_workflow_organization() RETURNS TRIGGER
LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM new_rows n JOIN old_rows o ON o.id = n.id
        JOIN public.executions e ON e.workflow_id = n.id
        WHERE n.organization_id IS DISTINCT FROM o.organization_id
          AND e.organization_id IS DISTINCT FROM n.organization_id
    ) THEN
        RAISE EXCEPTION 'a workflow with executions cannot move to another organization'
            USING ERRCODE = 'foreign_key_violation', TABLE = 'workflows',
                  CONSTRAINT = 'executions_workflow_organization';
    END IF;
    RETURN NULL;
END;
$$;
"""


def audit_function(*, identity_actor: bool) -> str:
    """The audit trigger function; with ``identity_actor`` a tenant's actor is its identity."""
    if identity_actor:
        header = "SET search_path = pg_catalog, public, pg_temp"
        actor = """
    acting_user VARCHAR;
BEGIN
    SELECT CASE WHEN i.role_name IS NULL
                THEN NULLIF(current_setting('flowscope.user_id', true), '')
                ELSE i.user_id END
    INTO acting_user
    FROM (SELECT 1) one
    LEFT JOIN public.flowscope_identities i ON i.role_name = session_user::text;"""
        target = "public.audit_log"
    else:
        header = "SET search_path = pg_catalog, public"
        actor = """
    acting_user VARCHAR := NULLIF(current_setting('flowscope.user_id', true), '');
BEGIN"""
        target = "audit_log"
    return rf"""
CREATE OR REPLACE FUNCTION flowscope_audit()
RETURNS TRIGGER
LANGUAGE plpgsql
SECURITY DEFINER
{header}
AS $$
DECLARE{actor}
    IF TG_OP = 'INSERT' THEN
        INSERT INTO {target} (table_name, row_id, action, actor, organization_id, changes)
        SELECT TG_TABLE_NAME, r.j->>'id', 'INSERT', acting_user,
               CASE WHEN TG_TABLE_NAME = 'organizations' THEN r.j->>'id'
                    ELSE r.j->>'organization_id' END,
               CASE WHEN r.j ? 'password_hash'
                    THEN r.j || '{{"password_hash": "[redacted]"}}'::jsonb ELSE r.j END
        FROM (SELECT to_jsonb(n) AS j FROM new_rows n OFFSET 0) r;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO {target} (table_name, row_id, action, actor, organization_id, changes)
        SELECT TG_TABLE_NAME, r.j->>'id', 'DELETE', acting_user,
               CASE WHEN TG_TABLE_NAME = 'organizations' THEN r.j->>'id'
                    ELSE r.j->>'organization_id' END,
               CASE WHEN r.j ? 'password_hash'
                    THEN r.j || '{{"password_hash": "[redacted]"}}'::jsonb ELSE r.j END
        FROM (SELECT to_jsonb(o) AS j FROM old_rows o OFFSET 0) r;
    ELSE
        INSERT INTO {target} (table_name, row_id, action, actor, organization_id, changes)
        SELECT TG_TABLE_NAME, n.j->>'id', 'UPDATE', acting_user,
               CASE WHEN TG_TABLE_NAME = 'organizations' THEN n.j->>'id'
                    ELSE n.j->>'organization_id' END,
               d.changes
        FROM (SELECT to_jsonb(o) AS j FROM old_rows o OFFSET 0) o
        JOIN (SELECT to_jsonb(n) AS j FROM new_rows n OFFSET 0) n ON n.j->>'id' = o.j->>'id'
        CROSS JOIN LATERAL (
            SELECT jsonb_object_agg(
                       k.key,
                       CASE WHEN k.key = 'password_hash'
                            THEN '{{"old": "[redacted]", "new": "[redacted]"}}'::jsonb
                            ELSE jsonb_build_object('old', o.j->k.key, 'new', k.value) END
                   ) AS changes
            FROM jsonb_each(n.j) k
            WHERE k.key <> 'updated_at' AND (o.j->k.key) IS DISTINCT FROM k.value
        ) d
        WHERE d.changes IS NOT NULL;
    END IF;
    RETURN NULL;
END;
$$;
"""


def _visible_view(name: str, *, identity: bool) -> str:
    if identity:
        where = f"{ORG} IS NULL OR organization_id = {ORG}"
    else:
        where = (
            f"current_user <> '{OLD_TENANT_ROLE}'"
            " OR organization_id = flowscope_current_organization()"
        )
    return (
        f"CREATE OR REPLACE VIEW {name}_visible WITH (security_barrier) AS"
        f" SELECT * FROM {name} WHERE {where}"
    )


def upgrade() -> None:
    op.execute("""
CREATE TABLE flowscope_identities (
    role_name VARCHAR(63) NOT NULL,
    organization_id VARCHAR(255) NOT NULL,
    user_id VARCHAR(255),
    login_secret TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT flowscope_identities_pkey PRIMARY KEY (role_name),
    CONSTRAINT flowscope_identities_key UNIQUE NULLS NOT DISTINCT (organization_id, user_id),
    CONSTRAINT flowscope_identities_organization_id_fkey FOREIGN KEY (organization_id)
        REFERENCES organizations(id) ON DELETE RESTRICT
)""")
    op.execute("REVOKE ALL ON flowscope_identities FROM PUBLIC")
    op.execute(SESSION_FUNCTIONS)
    op.execute(SYNC_FUNCTION)
    op.execute(PROVISION_FUNCTION)
    op.execute(INTEGRITY_FUNCTIONS)
    for fn in (
        "flowscope_sync_identity(TEXT)",
        "flowscope_sync_identities(VARCHAR)",
        "flowscope_provision_identity(VARCHAR, VARCHAR)",
        "flowscope_drop_identities(VARCHAR)",
    ):
        op.execute(f"REVOKE ALL ON FUNCTION {fn} FROM PUBLIC")
    op.execute(
        "CREATE TRIGGER flowscope_users_privileges"
        " AFTER UPDATE OF scopes, is_admin, is_active, deleted_at, organization_id OR DELETE"
        " ON users FOR EACH ROW EXECUTE FUNCTION flowscope_users_changed()"
    )
    op.execute(
        "CREATE TRIGGER executions_workflow_organization_insert AFTER INSERT ON executions"
        " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"
        " EXECUTE FUNCTION flowscope_check_execution_organization()"
    )
    op.execute(
        "CREATE TRIGGER executions_workflow_organization_update AFTER UPDATE ON executions"
        " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"
        " EXECUTE FUNCTION flowscope_check_execution_organization()"
    )
    op.execute(
        "CREATE TRIGGER workflows_executions_organization_update AFTER UPDATE ON workflows"
        " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT"
        " EXECUTE FUNCTION flowscope_check_workflow_organization()"
    )
    op.execute(audit_function(identity_actor=True))

    # policies keyed on the login identity, for every role that RLS applies to
    for table in (*TENANT_TABLES, "organizations", "audit_log"):
        op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
    for table in ("workflows", "executions"):
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table}"
            f" USING (organization_id = {ORG}) WITH CHECK (organization_id = {ORG})"
        )
    op.execute(
        f"CREATE POLICY tenant_isolation ON users USING (organization_id = {ORG})"
        f" WITH CHECK (organization_id = {ORG})"
    )
    # a non-admin changes its own row only (its column privileges say which fields)
    op.execute(
        "CREATE POLICY self_or_admin ON users AS RESTRICTIVE FOR UPDATE"
        " USING (id = (SELECT flowscope_session_user())"
        " OR (SELECT flowscope_session_is_admin()))"
    )
    op.execute(
        f"CREATE POLICY tenant_isolation ON organizations USING (id = {ORG}) WITH CHECK (id = {ORG})"
    )
    op.execute(
        f"CREATE POLICY tenant_isolation ON audit_log FOR SELECT USING (organization_id = {ORG})"
    )
    for name in ROLLUP_VIEWS:
        op.execute(_visible_view(name, identity=True))

    # the old NOLOGIN role: its grants go, then the role (if no other database uses it)
    op.execute(f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{OLD_TENANT_ROLE}') THEN
        EXECUTE 'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {OLD_TENANT_ROLE}';
        EXECUTE 'REVOKE ALL ON SCHEMA public FROM {OLD_TENANT_ROLE}';
        BEGIN
            EXECUTE 'DROP ROLE {OLD_TENANT_ROLE}';
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE NOTICE 'role {OLD_TENANT_ROLE} kept: still used by another database';
        WHEN insufficient_privilege THEN
            RAISE NOTICE 'role {OLD_TENANT_ROLE} kept: this login may not drop it';
        END;
    END IF;
END
$$""")
    # least privilege for everyone who is not the owner
    op.execute("""
DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END
$$""")
    op.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    _large_objects("REVOKE", "FROM")


def _large_objects(verb: str, direction: str) -> None:
    # pg_catalog's functions belong to the bootstrap superuser: a migration that runs as
    # another role cannot change them, and says so (the DBA can run the same statements)
    for fn in LARGE_OBJECT_FUNCTIONS:
        op.execute(f"""
DO $$
BEGIN
    EXECUTE '{verb} EXECUTE ON FUNCTION pg_catalog.{fn} {direction} PUBLIC';
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'flowscope: could not {verb.lower()} EXECUTE on {fn} (needs a superuser)';
END
$$""")


def downgrade() -> None:
    op.execute("SELECT flowscope_drop_identities()")
    _large_objects("GRANT", "TO")
    op.execute("""
DO $$
BEGIN
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO PUBLIC', current_database());
END
$$""")
    op.execute(f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{OLD_TENANT_ROLE}') THEN
        CREATE ROLE {OLD_TENANT_ROLE} NOLOGIN NOBYPASSRLS;
    END IF;
    IF NOT pg_has_role(current_user, '{OLD_TENANT_ROLE}', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT {OLD_TENANT_ROLE} TO %I', current_user);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'flowscope: could not grant {OLD_TENANT_ROLE} to %', current_user;
        END;
    END IF;
END
$$""")
    op.execute(OLD_CURRENT_ORG)
    op.execute(audit_function(identity_actor=False))
    op.execute(f"GRANT USAGE ON SCHEMA public TO {OLD_TENANT_ROLE}")
    op.execute(
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON workflows, executions, users, organizations"
        f" TO {OLD_TENANT_ROLE}"
    )
    op.execute(f"GRANT SELECT ON audit_log TO {OLD_TENANT_ROLE}")
    for name in ROLLUP_VIEWS:
        op.execute(_visible_view(name, identity=False))
        op.execute(f"GRANT SELECT ON {name}_visible TO {OLD_TENANT_ROLE}")
    op.execute(f"GRANT SELECT ON flowscope_rollup_refreshes TO {OLD_TENANT_ROLE}")
    op.execute("DROP POLICY self_or_admin ON users")
    for table in (*TENANT_TABLES, "organizations", "audit_log"):
        op.execute(f"DROP POLICY tenant_isolation ON {table}")
    for table in TENANT_TABLES:
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} FOR ALL TO {OLD_TENANT_ROLE}"
            " USING (organization_id = flowscope_current_organization())"
            " WITH CHECK (organization_id = flowscope_current_organization())"
        )
    op.execute(
        f"CREATE POLICY tenant_isolation ON organizations FOR ALL TO {OLD_TENANT_ROLE}"
        " USING (id = flowscope_current_organization())"
        " WITH CHECK (id = flowscope_current_organization())"
    )
    op.execute(
        f"CREATE POLICY tenant_isolation ON audit_log FOR SELECT TO {OLD_TENANT_ROLE}"
        " USING (organization_id = flowscope_current_organization())"
    )
    op.execute("DROP TRIGGER workflows_executions_organization_update ON workflows")
    op.execute("DROP TRIGGER executions_workflow_organization_update ON executions")
    op.execute("DROP TRIGGER executions_workflow_organization_insert ON executions")
    op.execute("DROP TRIGGER flowscope_users_privileges ON users")
    for fn in (
        "flowscope_check_workflow_organization()",
        "flowscope_check_execution_organization()",
        "flowscope_drop_identities(VARCHAR)",
        "flowscope_provision_identity(VARCHAR, VARCHAR)",
        "flowscope_users_changed()",
        "flowscope_sync_identities(VARCHAR)",
        "flowscope_sync_identity(TEXT)",
        "flowscope_session_is_admin()",
        "flowscope_session_is_tenant()",
        "flowscope_session_user()",
        "flowscope_session_organization()",
    ):
        op.execute(f"DROP FUNCTION {fn}")
    op.execute("DROP TABLE flowscope_identities")
