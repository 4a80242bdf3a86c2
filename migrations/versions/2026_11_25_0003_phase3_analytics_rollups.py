"""Phase 3: materialized views rolling executions up per UTC day, for fast analytics.

* ``flowscope_executions_daily``: one row per organization, workflow, owner,
  workflow version (``metadata->>'workflow_version'``), UTC day of ``created_at``
  and status, with counts (``executions``, ``started``), duration count / sum /
  min / max, queue-wait sum, and a mergeable duration sketch: logarithmic buckets
  ``k = ceil(ln(d) / ln(gamma))`` with ``gamma = 1.01 / 0.99`` (DDSketch), stored
  as two parallel arrays ``sketch_keys int[]`` / ``sketch_counts bigint[]``
  (``k = -2147483648`` holds zero durations). Summing the counts of any set of
  rows per key and reading the key of a rank back as ``2 * gamma^k / (gamma + 1)``
  gives every quantile within 1% relative error.
* ``flowscope_executions_daily_org``: the same per organization, day and status
  only (plus the workflow's soft-delete state at refresh time), built from the
  view above: a few rows per organization and day, for answers that need no
  workflow-level key or filter.
* ``flowscope_execution_events_daily_org``: created / started / finished events
  per organization, status, UTC day of ``created_at`` and UTC day of the event
  (throughput by event time, filterable by creation time).
* Every view has a unique index, so ``REFRESH MATERIALIZED VIEW CONCURRENTLY`` works;
  ``flowscope_rollup_refreshes`` records when each was last refreshed.
* Materialized views cannot carry row-level security, so the tenant role gets no
  privilege on them: it reads ``*_visible`` views (owner's rights,
  ``security_barrier``) that return only its organization's rows
  (``flowscope_current_organization()``), or every row for other roles.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_ROLE = "flowscope_tenant"
ZERO_KEY = -2147483648
LN_GAMMA = "ln(1.01 / 0.99)"

DAILY = f"""
CREATE MATERIALIZED VIEW flowscope_executions_daily AS
WITH keyed AS (
    SELECT e.organization_id, e.workflow_id, e.owner,
           e.metadata->>'workflow_version' AS workflow_version,
           (timezone('UTC', e.created_at))::date AS day,
           e.status, e.started_at, e.created_at,
           e.duration_seconds::float8 AS d,
           CASE WHEN e.duration_seconds IS NULL THEN NULL
                WHEN e.duration_seconds = 0 THEN {ZERO_KEY}
                ELSE ceil(ln(e.duration_seconds::float8) / {LN_GAMMA})::int END AS k
    FROM executions e
), per_key AS (
    SELECT organization_id, workflow_id, owner, workflow_version, day, status, k,
           count(*) AS executions, count(started_at) AS started, count(d) AS duration_count,
           sum(d) AS duration_sum, min(d) AS duration_min, max(d) AS duration_max,
           sum(extract(epoch FROM started_at - created_at))::float8 AS wait_sum
    FROM keyed
    GROUP BY organization_id, workflow_id, owner, workflow_version, day, status, k
)
SELECT organization_id, workflow_id, owner, workflow_version, day, status,
       sum(executions)::bigint AS executions,
       sum(started)::bigint AS started,
       sum(duration_count)::bigint AS duration_count,
       sum(duration_sum) AS duration_sum,
       min(duration_min) AS duration_min,
       max(duration_max) AS duration_max,
       sum(wait_sum) AS wait_sum,
       array_agg(k ORDER BY k) FILTER (WHERE k IS NOT NULL) AS sketch_keys,
       array_agg(duration_count ORDER BY k) FILTER (WHERE k IS NOT NULL) AS sketch_counts
FROM per_key
GROUP BY organization_id, workflow_id, owner, workflow_version, day, status
"""

KEYS = "organization_id, workflow_id, owner, workflow_version, day"

# Organization-level rollups, built from the workflow-level ones: a few rows per
# organization and day, for answers that need no workflow-level key or filter.
# ``workflow_deleted`` is the workflow's soft-delete state as of the refresh.
DAILY_ORG = """
CREATE MATERIALIZED VIEW flowscope_executions_daily_org AS
WITH rows AS (
    SELECT d.*, (w.deleted_at IS NOT NULL) AS workflow_deleted
    FROM flowscope_executions_daily d JOIN workflows w ON w.id = d.workflow_id
), sketch AS (
    SELECT r.organization_id, r.day, r.status, r.workflow_deleted, s.k, sum(s.n) AS n
    FROM rows r CROSS JOIN LATERAL unnest(r.sketch_keys, r.sketch_counts) AS s(k, n)
    GROUP BY 1, 2, 3, 4, 5
), sketches AS (
    SELECT organization_id, day, status, workflow_deleted,
           array_agg(k ORDER BY k) AS sketch_keys, array_agg(n::bigint ORDER BY k) AS sketch_counts
    FROM sketch GROUP BY 1, 2, 3, 4
), totals AS (
    SELECT organization_id, day, status, workflow_deleted,
           sum(executions)::bigint AS executions, sum(started)::bigint AS started,
           sum(duration_count)::bigint AS duration_count, sum(duration_sum) AS duration_sum,
           min(duration_min) AS duration_min, max(duration_max) AS duration_max,
           sum(wait_sum) AS wait_sum
    FROM rows GROUP BY 1, 2, 3, 4
)
SELECT t.*, s.sketch_keys, s.sketch_counts
FROM totals t LEFT JOIN sketches s
  ON coalesce(s.organization_id, '') = coalesce(t.organization_id, '') AND s.day = t.day
 AND s.status = t.status AND s.workflow_deleted = t.workflow_deleted
"""

EVENTS_ORG = """
CREATE MATERIALIZED VIEW flowscope_execution_events_daily_org AS
SELECT e.organization_id,
       (timezone('UTC', e.created_at))::date AS created_day,
       (timezone('UTC', ev.at))::date AS day,
       e.status, ev.kind, (w.deleted_at IS NOT NULL) AS workflow_deleted, count(*) AS n
FROM executions e
JOIN workflows w ON w.id = e.workflow_id
CROSS JOIN LATERAL (VALUES ('created', e.created_at), ('started', e.started_at),
                           ('finished', e.completed_at)) AS ev(kind, at)
WHERE ev.at IS NOT NULL
GROUP BY 1, 2, 3, 4, 5, 6
"""
VIEWS = (
    "flowscope_executions_daily",
    "flowscope_executions_daily_org",
    "flowscope_execution_events_daily_org",
)


def _visible(name: str) -> str:
    return f"""
CREATE VIEW {name}_visible WITH (security_barrier) AS
SELECT * FROM {name}
WHERE current_user <> '{TENANT_ROLE}'
   OR organization_id = flowscope_current_organization()
"""


def upgrade() -> None:
    op.execute("SET LOCAL work_mem = '256MB'")  # in-memory aggregation on big tables
    op.execute(DAILY)
    op.execute(
        f"CREATE UNIQUE INDEX flowscope_executions_daily_key ON flowscope_executions_daily"
        f" ({KEYS}, status) NULLS NOT DISTINCT"
    )
    op.execute("CREATE INDEX flowscope_executions_daily_day ON flowscope_executions_daily (day)")
    op.execute(DAILY_ORG)
    op.execute(
        "CREATE UNIQUE INDEX flowscope_executions_daily_org_key ON flowscope_executions_daily_org"
        " (organization_id, day, status, workflow_deleted) NULLS NOT DISTINCT"
    )
    op.execute(EVENTS_ORG)
    op.execute(
        "CREATE UNIQUE INDEX flowscope_execution_events_daily_org_key"
        " ON flowscope_execution_events_daily_org"
        " (organization_id, created_day, day, status, kind, workflow_deleted) NULLS NOT DISTINCT"
    )
    op.execute(
        "CREATE TABLE flowscope_rollup_refreshes ("
        " name VARCHAR(63) PRIMARY KEY,"
        " refreshed_at TIMESTAMP WITH TIME ZONE NOT NULL)"
    )
    op.execute(
        "INSERT INTO flowscope_rollup_refreshes (name, refreshed_at) VALUES "
        + ", ".join(f"('{name}', now())" for name in VIEWS)
    )
    for name in VIEWS:
        op.execute(f"REVOKE ALL ON {name} FROM PUBLIC")
        op.execute(_visible(name))
        op.execute(f"GRANT SELECT ON {name}_visible TO {TENANT_ROLE}")
    op.execute(f"GRANT SELECT ON flowscope_rollup_refreshes TO {TENANT_ROLE}")


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}_visible")
        op.execute(f"DROP MATERIALIZED VIEW IF EXISTS {name}")
    op.execute("DROP TABLE IF EXISTS flowscope_rollup_refreshes")
