"""Ownership, lineage and logins (issue 23): holes inside the tenancy model, closed by PostgreSQL.

* **Logins follow their user.** ``flowscope_sync_login()`` runs after every identity sync
  (``flowscope_sync_identities()``, called by the trigger on ``users``): a login whose user
  is deactivated, deleted or moved away becomes ``NOLOGIN CONNECTION LIMIT 0`` with no
  password and no role settings, and its open sessions are ended; a live one gets
  ``LOGIN`` back and its password and settings reset (undoing an
  ``ALTER ROLE CURRENT_USER PASSWORD/SET ...``, which PostgreSQL lets every role run on
  itself and no privilege can refuse).
* **Hand-over needs the write scope and a live identity**: ``EXECUTE`` on
  ``flowscope_hand_over()`` is revoked from ``PUBLIC`` and granted by the sync to live
  logins holding ``workflow:write``/``workflow:write:all``/``admin`` (and organization
  logins).
* **Owners are users of the organization**: a tenant's change of ``workflows.owner`` (by
  ``UPDATE`` or hand-over) must name an active, undeleted user of the workflow's
  organization (``check_violation``). Creating a workflow is unchanged (revision 0007: the
  acting user, or any name for organization-wide writers and organization logins).
* **Lineage**: ids never change (``UPDATE ... SET id`` is refused), and a tenant cannot take
  the id of a deleted workflow or execution of its organization for another lineage (a
  workflow with another owner, an execution of another owner or workflow): its audit
  history stays with its lineage (``unique_violation``). Admin logins may (a replaced
  demo load re-creates its ids).
* **Public runs are read-only for non-owners**: the executions policy is split per
  command; reading follows the workflow (own, public or ``workflow:read:all``), writing
  needs ``workflow:read:all``, the workflow's ownership, or the run's.
* **Dropping a login always works**: ``flowscope_drop_identities()`` takes the role's
  privileges first when the admin is no superuser, so ``DROP OWNED`` removes what a tenant
  may leave behind (``ALTER DEFAULT PRIVILEGES ...``) and ``DROP ROLE`` succeeds.
* **Emails are normalised by the database** (``flowscope_normal_email()``: trimmed, domain
  lower-cased, as ``UserCreate`` does) whatever statement writes them, and unique ignoring
  case (``users_email_lower_key``): a case variant cannot shadow another login.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PINNED = "SET search_path = pg_catalog, public, pg_temp"
HAND_OVER = "public.flowscope_hand_over(VARCHAR, VARCHAR)"
ME = "(SELECT public.flowscope_session_user())"
READ_ALL = "(SELECT public.flowscope_session_can('workflow:read:all'))"
VISIBLE_WORKFLOW = "workflow_id IN (SELECT id FROM public.workflows)"
# a run is written by organization-wide readers (as before), its workflow's owner, or its own
WRITABLE_RUN = (
    f"{READ_ALL} OR workflow_id IN (SELECT id FROM public.workflows WHERE owner = {ME})"
    f" OR (owner = {ME} AND {VISIBLE_WORKFLOW})"
)

SYNC_LOGIN = f"""
CREATE FUNCTION flowscope_sync_login(p_role TEXT) RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
DECLARE
    ident RECORD;
    u RECORD;
    live BOOLEAN := false;
    can_write BOOLEAN := false;
    borrowed BOOLEAN;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p_role) THEN
        RETURN;
    END IF;
    SELECT * INTO ident FROM public.flowscope_identities WHERE role_name = p_role;
    IF FOUND AND ident.user_id IS NULL THEN
        live := true;
        can_write := true;
    ELSIF FOUND THEN
        SELECT * INTO u FROM public.users WHERE id = ident.user_id;
        live := FOUND AND u.deleted_at IS NULL AND u.is_active IS DISTINCT FROM false
            AND (u.organization_id IS NULL OR u.organization_id = ident.organization_id);
        can_write := live AND (coalesce(u.is_admin, false) OR coalesce(
            u.scopes ?| ARRAY['admin', 'workflow:write', 'workflow:write:all'], false));
    END IF;
    EXECUTE format('REVOKE ALL ON FUNCTION {HAND_OVER} FROM %I', p_role);
    IF can_write THEN
        EXECUTE format('GRANT EXECUTE ON FUNCTION {HAND_OVER} TO %I', p_role);
    END IF;
    -- settings a role may set on itself (ALTER ROLE CURRENT_USER SET ...) go on every sync
    EXECUTE format('ALTER ROLE %I RESET ALL', p_role);
    IF live THEN
        EXECUTE format('ALTER ROLE %I WITH LOGIN CONNECTION LIMIT -1 PASSWORD %L',
                       p_role, ident.login_secret);
        RETURN;
    END IF;
    EXECUTE format('ALTER ROLE %I WITH NOLOGIN CONNECTION LIMIT 0 PASSWORD NULL', p_role);
    -- its open sessions end now; a non-superuser admin needs the role's privileges to signal
    -- them, held only for this (the role is a member of nothing, nothing becomes its)
    borrowed := NOT pg_has_role(current_user, p_role, 'USAGE');
    BEGIN
        IF borrowed THEN
            EXECUTE format('GRANT %I TO %I', p_role, current_user)
                || CASE WHEN current_setting('server_version_num')::int >= 160000
                        THEN ' WITH INHERIT TRUE, SET FALSE' ELSE '' END;
        END IF;
        PERFORM pg_terminate_backend(a.pid) FROM pg_stat_activity a
        WHERE a.usename = p_role AND a.pid <> pg_backend_pid();
        IF borrowed THEN
            EXECUTE format('REVOKE %I FROM %I', p_role, current_user);
        END IF;
    EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
        RAISE WARNING 'flowscope: could not end the sessions of %: they end when they disconnect',
            p_role;
    END;
END;
$$;
"""


def _sync_identities(*, with_login: bool) -> str:
    login = "\n        PERFORM public.flowscope_sync_login(r);" if with_login else ""
    return f"""
CREATE OR REPLACE FUNCTION flowscope_sync_identities(p_user VARCHAR DEFAULT NULL) RETURNS INTEGER
LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
DECLARE
    r TEXT;
    n INTEGER := 0;
BEGIN
    FOR r IN SELECT role_name FROM public.flowscope_identities
             WHERE p_user IS NULL OR user_id = p_user ORDER BY role_name
    LOOP
        PERFORM public.flowscope_sync_identity(r);{login}
        n := n + 1;
    END LOOP;
    RETURN n;
END;
$$;
"""


def _drop_identities(*, take_privileges: bool) -> str:
    # a tenant may leave default privileges behind (ALTER DEFAULT PRIVILEGES GRANT ...), which
    # only DROP OWNED removes; a non-superuser admin needs the role's privileges for that
    take = (
        """
        IF NOT pg_has_role(current_user, r, 'USAGE') THEN
            BEGIN
                EXECUTE format('GRANT %I TO %I', r, current_user)
                    || CASE WHEN current_setting('server_version_num')::int >= 160000
                            THEN ' WITH INHERIT TRUE, SET FALSE' ELSE '' END;
            EXCEPTION WHEN insufficient_privilege OR undefined_object THEN
                NULL;
            END;
        END IF;"""
        if take_privileges
        else ""
    )
    return f"""
CREATE OR REPLACE FUNCTION flowscope_drop_identities(p_org VARCHAR DEFAULT NULL) RETURNS INTEGER
LANGUAGE plpgsql {PINNED} AS $$
DECLARE
    r TEXT;
    n INTEGER := 0;
BEGIN
    FOR r IN SELECT i.role_name FROM public.flowscope_identities i
             WHERE p_org IS NULL OR i.organization_id = p_org ORDER BY 1
    LOOP
        DELETE FROM public.flowscope_identities WHERE role_name = r;
        PERFORM public.flowscope_sync_identity(r);  -- no row left: revokes everything{take}
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


INTEGRITY = rf"""
CREATE FUNCTION flowscope_identity_changed() RETURNS TRIGGER
LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
BEGIN
    PERFORM public.flowscope_sync_login(CASE WHEN TG_OP = 'DELETE' THEN OLD.role_name
                                             ELSE NEW.role_name END);
    RETURN NULL;
END;
$$;
CREATE FUNCTION flowscope_check_workflow_owner() RETURNS TRIGGER
LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
BEGIN
    IF NEW.owner IS NOT DISTINCT FROM OLD.owner OR NOT public.flowscope_session_is_tenant() THEN
        RETURN NEW;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.users u WHERE u.id = NEW.owner
                   AND u.organization_id = NEW.organization_id AND u.deleted_at IS NULL
                   AND u.is_active IS DISTINCT FROM false) THEN
        RAISE EXCEPTION 'a workflow''s owner must be an active user of its organization'
            USING ERRCODE = 'check_violation', TABLE = TG_TABLE_NAME, COLUMN = 'owner';
    END IF;
    RETURN NEW;
END;
$$;
CREATE FUNCTION flowscope_check_id_unchanged() RETURNS TRIGGER
LANGUAGE plpgsql {PINNED} AS $$
BEGIN
    RAISE EXCEPTION 'the id of a row never changes'
        USING ERRCODE = 'check_violation', TABLE = TG_TABLE_NAME, COLUMN = 'id';
END;
$$;
CREATE FUNCTION flowscope_check_reused_ids() RETURNS TRIGGER
LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
BEGIN
    -- the audit history of an id belongs to its lineage: a tenant takes a deleted row's id
    -- again only with the same owner (and, for a run, the same workflow); an admin login
    -- may (a replaced demo load re-creates its ids for other owners)
    IF NOT public.flowscope_session_is_tenant() THEN
        RETURN NULL;
    END IF;
    IF EXISTS (
        SELECT 1 FROM (SELECT to_jsonb(n) AS j FROM new_rows n OFFSET 0) n
        JOIN public.audit_log a ON a.table_name = TG_TABLE_NAME AND a.row_id = n.j->>'id'
            AND a.action = 'DELETE' AND a.organization_id = n.j->>'organization_id'
        WHERE (a.changes->>'owner') IS DISTINCT FROM (n.j->>'owner')
           OR (a.changes->>'workflow_id') IS DISTINCT FROM (n.j->>'workflow_id')
    ) THEN
        RAISE EXCEPTION 'this id belonged to a deleted row of another owner: use a new id'
            USING ERRCODE = 'unique_violation', TABLE = TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END;
$$;
CREATE FUNCTION flowscope_normal_email(p_email TEXT) RETURNS TEXT
LANGUAGE sql IMMUTABLE {PINNED} AS $$
    SELECT CASE WHEN strpos(e, '@') = 0 THEN e
                ELSE left(e, length(e) - strpos(reverse(e), '@'))
                     || lower(right(e, strpos(reverse(e), '@')))
           END
    FROM (SELECT btrim(p_email) AS e) t
$$;
CREATE FUNCTION flowscope_normalise_email() RETURNS TRIGGER
LANGUAGE plpgsql {PINNED} AS $$
BEGIN
    NEW.email := public.flowscope_normal_email(NEW.email);
    RETURN NEW;
END;
$$;
"""
FUNCTIONS = (
    "flowscope_normalise_email()",
    "flowscope_normal_email(TEXT)",
    "flowscope_check_reused_ids()",
    "flowscope_check_id_unchanged()",
    "flowscope_check_workflow_owner()",
    "flowscope_identity_changed()",
    "flowscope_sync_login(TEXT)",
)
TRIGGERS = (
    (  # a login provisioned gets what the sync of logins gives; a dropped one loses it
        "flowscope_identities_login",
        "flowscope_identities",
        "AFTER INSERT OR DELETE ON flowscope_identities FOR EACH ROW",
        "flowscope_identity_changed()",
    ),
    (
        "workflows_owner_in_organization",
        "workflows",
        "BEFORE UPDATE OF owner ON workflows FOR EACH ROW",
        "flowscope_check_workflow_owner()",
    ),
    *(
        (
            f"{t}_id_unchanged",
            t,
            f"BEFORE UPDATE OF id ON {t} FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)",
            "flowscope_check_id_unchanged()",
        )
        for t in ("workflows", "executions")
    ),
    *(
        (
            f"{t}_ids_not_reclaimed",
            t,
            f"AFTER INSERT ON {t} REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT",
            "flowscope_check_reused_ids()",
        )
        for t in ("workflows", "executions")
    ),
    (
        "users_email_normalised",
        "users",
        "BEFORE INSERT OR UPDATE OF email ON users FOR EACH ROW",
        "flowscope_normalise_email()",
    ),
)


def upgrade() -> None:
    op.execute(SYNC_LOGIN)
    op.execute("REVOKE ALL ON FUNCTION flowscope_sync_login(TEXT) FROM PUBLIC")
    op.execute(_sync_identities(with_login=True))
    op.execute(_drop_identities(take_privileges=True))
    op.execute(f"REVOKE EXECUTE ON FUNCTION {HAND_OVER} FROM PUBLIC")
    op.execute(INTEGRITY)
    for name, _, when, function in TRIGGERS:
        op.execute(f"CREATE TRIGGER {name} {when} EXECUTE FUNCTION {function}")
    op.execute(
        "UPDATE users SET email = flowscope_normal_email(email)"
        " WHERE email IS DISTINCT FROM flowscope_normal_email(email)"
    )
    op.execute("CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email))")
    op.execute("DROP POLICY ownership ON executions")
    op.execute(
        "CREATE POLICY ownership_read ON executions AS RESTRICTIVE FOR SELECT"
        f" USING ({READ_ALL} OR {VISIBLE_WORKFLOW})"
    )
    op.execute(
        "CREATE POLICY ownership_insert ON executions AS RESTRICTIVE FOR INSERT"
        f" WITH CHECK ({WRITABLE_RUN})"
    )
    op.execute(
        "CREATE POLICY ownership_update ON executions AS RESTRICTIVE FOR UPDATE"
        f" USING ({WRITABLE_RUN}) WITH CHECK ({WRITABLE_RUN})"
    )
    op.execute(
        f"CREATE POLICY ownership_delete ON executions AS RESTRICTIVE FOR DELETE USING ({WRITABLE_RUN})"
    )
    op.execute("SELECT flowscope_sync_identities()")


def downgrade() -> None:
    for verb in ("read", "insert", "update", "delete"):
        op.execute(f"DROP POLICY ownership_{verb} ON executions")
    op.execute(
        "CREATE POLICY ownership ON executions AS RESTRICTIVE"
        f" USING ({READ_ALL} OR {VISIBLE_WORKFLOW}) WITH CHECK ({READ_ALL} OR {VISIBLE_WORKFLOW})"
    )
    op.execute("DROP INDEX users_email_lower_key")
    for name, table, _, _ in TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON {table}")
    op.execute(_sync_identities(with_login=False))
    op.execute(_drop_identities(take_privileges=False))
    # every login back to what revision 0006 made: LOGIN, its secret, hand-over for PUBLIC
    op.execute("""
DO $$
DECLARE
    i RECORD;
BEGIN
    FOR i IN SELECT role_name, login_secret FROM flowscope_identities ORDER BY 1 LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = i.role_name) THEN
            EXECUTE format('REVOKE ALL ON FUNCTION flowscope_hand_over(VARCHAR, VARCHAR) FROM %I',
                           i.role_name);
            EXECUTE format('ALTER ROLE %I WITH LOGIN CONNECTION LIMIT -1 PASSWORD %L',
                           i.role_name, i.login_secret);
        END IF;
    END LOOP;
END
$$""")
    op.execute(f"GRANT EXECUTE ON FUNCTION {HAND_OVER} TO PUBLIC")
    for fn in FUNCTIONS:
        op.execute(f"DROP FUNCTION {fn}")
