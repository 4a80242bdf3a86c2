"""Row-level access control via ownership: own and public workflows, enforced by PostgreSQL.

Inside an organization, a tenant login (revision 0006) now sees:

* the workflows its user owns (``workflows.owner`` = the user's id), the
  organization's public ones (``is_public``), and, with ``workflow:read:all``, all of
  them;
* the executions of the workflows it sees (``workflow:read:all``: all of them);
* the audit history of what it sees (rows of workflows and executions it cannot
  see are hidden; users' and the organization's rows as before).

Writing a workflow (update, delete) needs ownership or ``workflow:write:all``;
creating one needs ``owner`` to be the acting user (or ``workflow:write:all``).
``is_public`` grants reading, never writing. A workflow is handed over by updating
its ``owner`` (by its owner or an organization-wide writer) to a user of the same
organization, through ``flowscope_hand_over()`` (row-level security would refuse an
``UPDATE`` whose new row its author may no longer read); the previous owner keeps
nothing but what ``is_public`` gives. Creating and driving executions needs
``workflow:execute`` and a workflow the user sees. ``admin`` / ``is_admin`` and an
organization's own login (no user) see and change everything in the organization.

The policies are RESTRICTIVE, on top of the organization's; the scope tests are
InitPlans (once per statement), and an organization-wide user short-circuits the
ownership test, so its queries cost what they did.

Rollups carry no ownership: their ``*_visible`` views return rows only to
organization-wide readers (flowscope answers other users from raw rows).

Upgrade keeps every user's reach: a user holding ``workflow:read`` (which meant the
whole organization until now) is granted ``workflow:read:all``, and
``workflow:write`` gets ``workflow:write:all``. Downgrade removes the two scopes.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PINNED = "SET search_path = pg_catalog, public, pg_temp"
ORG = "(SELECT public.flowscope_session_organization())"
ME = "(SELECT public.flowscope_session_user())"
READ_ALL = "(SELECT public.flowscope_session_can('workflow:read:all'))"
WRITE_ALL = "(SELECT public.flowscope_session_can('workflow:write:all'))"
# org-wide scopes granted on upgrade to the users whose scope meant the whole organization
WIDENED = (("workflow:read", "workflow:read:all"), ("workflow:write", "workflow:write:all"))
ROLLUP_VIEWS = (
    "flowscope_executions_daily",
    "flowscope_executions_daily_org",
    "flowscope_execution_events_daily_org",
)

CAN_FUNCTION = f"""
CREATE FUNCTION flowscope_session_can(p_scope TEXT) RETURNS BOOLEAN
LANGUAGE sql STABLE SECURITY DEFINER {PINNED} AS $$
    SELECT i.user_id IS NULL
        OR coalesce(u.is_admin, false) OR coalesce(u.scopes ? 'admin', false)
        OR coalesce(u.scopes ? p_scope, false)
    FROM public.flowscope_identities i
    LEFT JOIN public.users u ON u.id = i.user_id AND u.deleted_at IS NULL
        AND u.is_active IS DISTINCT FROM false
    WHERE i.role_name = session_user::text
$$;
"""


HAND_OVER_FUNCTION = f"""
CREATE FUNCTION flowscope_hand_over(p_workflow VARCHAR, p_owner VARCHAR) RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER {PINNED} AS $$
DECLARE
    org VARCHAR := public.flowscope_session_organization();
    me VARCHAR := public.flowscope_session_user();
    current_owner VARCHAR;
BEGIN
    -- row-level security checks an UPDATE's new row against what the login may read, so a
    -- private workflow cannot leave its owner by UPDATE: this function does it, for a
    -- tenant login that owns the workflow (or may write all), to a user of its organization
    IF org IS NULL THEN
        RAISE EXCEPTION 'flowscope_hand_over is for tenant logins'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT w.owner INTO current_owner FROM public.workflows w
    WHERE w.id = p_workflow AND w.organization_id = org AND w.deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND OR NOT (current_owner IS NOT DISTINCT FROM me
                         OR public.flowscope_session_can('workflow:write:all')) THEN
        RAISE EXCEPTION 'workflow % is not this user''s to hand over', p_workflow
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.users u WHERE u.id = p_owner
                   AND u.organization_id = org AND u.deleted_at IS NULL) THEN
        RAISE EXCEPTION 'the new owner % is not a user of this organization', p_owner
            USING ERRCODE = 'check_violation';
    END IF;
    UPDATE public.workflows SET owner = p_owner, version = version + 1,
        updated_by = coalesce(me, updated_by)
    WHERE id = p_workflow;
END;
$$;
"""


def _visible_view(name: str, *, ownership: bool) -> str:
    where = f"{ORG} IS NULL OR organization_id = {ORG}"
    if ownership:
        where = f"{ORG} IS NULL OR (organization_id = {ORG} AND {READ_ALL})"
    return (
        f"CREATE OR REPLACE VIEW {name}_visible WITH (security_barrier) AS"
        f" SELECT * FROM {name} WHERE {where}"
    )


def upgrade() -> None:
    op.execute(CAN_FUNCTION)
    op.execute(HAND_OVER_FUNCTION)
    for base, wide in WIDENED:
        # the trigger on users re-grants the logins of the users changed here
        op.execute(
            f"UPDATE users SET scopes = scopes || '[\"{wide}\"]'::jsonb"
            f" WHERE scopes ? '{base}' AND NOT scopes ? '{wide}'"
        )
    op.execute(
        "CREATE POLICY ownership_read ON workflows AS RESTRICTIVE FOR SELECT"
        f" USING ({READ_ALL} OR owner = {ME} OR is_public)"
    )
    op.execute(
        "CREATE POLICY ownership_insert ON workflows AS RESTRICTIVE FOR INSERT"
        f" WITH CHECK ({WRITE_ALL} OR owner = {ME})"
    )
    # WITH CHECK (true): the owner may hand the workflow over to another owner
    op.execute(
        "CREATE POLICY ownership_update ON workflows AS RESTRICTIVE FOR UPDATE"
        f" USING ({WRITE_ALL} OR owner = {ME}) WITH CHECK (true)"
    )
    op.execute(
        "CREATE POLICY ownership_delete ON workflows AS RESTRICTIVE FOR DELETE"
        f" USING ({WRITE_ALL} OR owner = {ME})"
    )
    # an execution is as visible as its workflow (the subquery is under workflows' policies)
    op.execute(
        "CREATE POLICY ownership ON executions AS RESTRICTIVE"
        f" USING ({READ_ALL} OR workflow_id IN (SELECT id FROM public.workflows))"
        f" WITH CHECK ({READ_ALL} OR workflow_id IN (SELECT id FROM public.workflows))"
    )
    op.execute(
        "CREATE POLICY ownership ON audit_log AS RESTRICTIVE FOR SELECT"
        f" USING ({READ_ALL} OR table_name NOT IN ('workflows', 'executions')"
        " OR (table_name = 'workflows' AND row_id IN (SELECT id FROM public.workflows))"
        " OR (table_name = 'executions' AND row_id IN (SELECT id FROM public.executions)))"
    )
    for name in ROLLUP_VIEWS:
        op.execute(_visible_view(name, ownership=True))


def downgrade() -> None:
    for name in ROLLUP_VIEWS:
        op.execute(_visible_view(name, ownership=False))
    op.execute("DROP POLICY ownership ON audit_log")
    op.execute("DROP POLICY ownership ON executions")
    for verb in ("read", "insert", "update", "delete"):
        op.execute(f"DROP POLICY ownership_{verb} ON workflows")
    for _, wide in WIDENED:
        op.execute(f"UPDATE users SET scopes = scopes - '{wide}' WHERE scopes ? '{wide}'")
    op.execute("DROP FUNCTION flowscope_hand_over(VARCHAR, VARCHAR)")
    op.execute("DROP FUNCTION flowscope_session_can(TEXT)")
