"""``summary``: a leaderboard with one row per workflow that has matching executions."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ..errors import ValidationError
from ..filters import ExecutionFilter
from ..models import FAILED_EXECUTION_STATUSES, TERMINAL_EXECUTION_STATUSES
from ._base import FLOAT, FLT, INT, STR, TS, E, Query, W, p50_p95, rows_cte

FAILED = FAILED_EXECUTION_STATUSES
TERMINAL = TERMINAL_EXECUTION_STATUSES

COLUMNS = {
    "workflow_id": STR,
    "workflow": STR,
    "owner": STR,
    "organization_id": STR,
    "executions": INT,
    "completed": INT,
    "failed": INT,
    "finished": INT,
    "failure_rate": FLT,
    "mean_seconds": FLT,
    "p50_seconds": FLT,
    "p95_seconds": FLT,
    "last_run_at": TS,
    "last_status": STR,
}
SORTABLE = tuple(COLUMNS)


def summary_query(flt: ExecutionFilter, sort: str, descending: bool, limit: int | None) -> Query:
    if sort not in SORTABLE:
        raise ValidationError(f"cannot sort by {sort!r}; valid columns: {', '.join(SORTABLE)}")
    rows = rows_cte(
        flt,
        (),
        {
            "workflow_id": E.c.workflow_id,
            "status": E.c.status,
            "d": sa.cast(E.c.duration_seconds, FLOAT),
            "created_at": E.c.created_at,
        },
    )
    r = rows.c
    failed = sa.func.count().filter(r.status.in_(FAILED))
    finished = sa.func.count().filter(r.status.in_(TERMINAL))
    last_status = sa.func.array_agg(
        postgresql.aggregate_order_by(r.status, r.created_at.desc()),
        type_=postgresql.ARRAY(sa.String),
    )[1]
    agg = (
        sa.select(
            r.workflow_id,
            sa.func.count().label("executions"),
            sa.func.count().filter(r.status == "completed").label("completed"),
            failed.label("failed"),
            finished.label("finished"),
            (sa.cast(failed, FLOAT) / sa.func.nullif(finished, 0)).label("failure_rate"),
            sa.func.avg(r.d).label("mean_seconds"),
            p50_p95(r.d)[0].label("p50_seconds"),
            p50_p95(r.d)[1].label("p95_seconds"),
            sa.func.max(r.created_at).label("last_run_at"),
            last_status.label("last_status"),
        )
        .group_by(r.workflow_id)
        .subquery("agg")
    )
    a = agg.c
    on_workflow = {"workflow": W.c.name, "owner": W.c.owner, "organization_id": W.c.organization_id}
    order_col = on_workflow[sort] if sort in on_workflow else a[sort]
    ordering = order_col.desc().nulls_last() if descending else order_col.asc().nulls_last()
    stmt = (
        sa.select(
            a.workflow_id,
            W.c.name.label("workflow"),
            W.c.owner,
            W.c.organization_id,
            *[a[c] for c in list(COLUMNS)[4:]],
        )
        .select_from(agg.join(W, W.c.id == a.workflow_id))
        .order_by(ordering, a.workflow_id)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return Query(stmt, dict(COLUMNS), scope=flt)
