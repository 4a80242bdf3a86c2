"""Tag analytics: ``tags`` (per tag) and ``tag_pairs`` (co-occurring tags).

An execution belongs to every tag of its workflow (the workflow's current
``tags``); executions of untagged workflows appear in neither result. Counts:
``workflows`` (distinct workflows with matching executions), ``executions``,
``completed``, ``failed`` (failed + timeout), ``finished`` (terminal statuses),
``failure_rate`` (failed / finished), and exact ``p50``/``p95`` durations.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..filters import ExecutionFilter
from ..models import FAILED_EXECUTION_STATUSES, TERMINAL_EXECUTION_STATUSES
from ._base import FLOAT, FLT, INT, STR, E, Query, W, p50_p95, ratio


def _measures(r: Any) -> list[Any]:
    return [
        sa.func.count(sa.distinct(r.workflow_id)).label("workflows"),
        sa.func.count().label("executions"),
        sa.func.count().filter(r.status == "completed").label("completed"),
        sa.func.count().filter(r.status.in_(FAILED_EXECUTION_STATUSES)).label("failed"),
        sa.func.count().filter(r.status.in_(TERMINAL_EXECUTION_STATUSES)).label("finished"),
        p50_p95(r.d)[0].label("p50_seconds"),
        p50_p95(r.d)[1].label("p95_seconds"),
    ]


_COLUMNS = {
    "workflows": INT,
    "executions": INT,
    "completed": INT,
    "failed": INT,
    "finished": INT,
    "failure_rate": FLT,
    "p50_seconds": FLT,
    "p95_seconds": FLT,
}


def _post(frame: Any) -> Any:
    frame["failure_rate"] = ratio(frame["failed"], frame["finished"])
    return frame


def tags_query(flt: ExecutionFilter) -> Query:
    t = sa.func.unnest(W.c.tags).table_valued("tag").render_derived(name="t").lateral()
    src = E.join(W, W.c.id == E.c.workflow_id).join(t, sa.true())
    rows = (
        sa.select(
            t.c.tag.label("tag"),
            E.c.workflow_id,
            E.c.status,
            sa.cast(E.c.duration_seconds, FLOAT).label("d"),
        )
        .select_from(src)
        .where(flt.clause())
        .cte("rows")
    )
    r = rows.c
    stmt = (
        sa.select(r.tag, *_measures(r))
        .group_by(r.tag)
        .order_by(sa.literal_column("executions").desc(), r.tag)
    )
    return Query(stmt, {"tag": STR, **_COLUMNS}, post=_post, scope=flt)


def tag_pairs_query(flt: ExecutionFilter) -> Query:
    a = sa.func.unnest(W.c.tags).table_valued("tag").render_derived(name="a").lateral()
    b = sa.func.unnest(W.c.tags).table_valued("tag").render_derived(name="b").lateral()
    src = E.join(W, W.c.id == E.c.workflow_id).join(a, sa.true()).join(b, a.c.tag < b.c.tag)
    rows = (
        sa.select(
            a.c.tag.label("tag_a"),
            b.c.tag.label("tag_b"),
            E.c.workflow_id,
            E.c.status,
            sa.cast(E.c.duration_seconds, FLOAT).label("d"),
        )
        .select_from(src)
        .where(flt.clause())
        .cte("rows")
    )
    r = rows.c
    stmt = (
        sa.select(r.tag_a, r.tag_b, *_measures(r))
        .group_by(r.tag_a, r.tag_b)
        .order_by(sa.literal_column("executions").desc(), r.tag_a, r.tag_b)
    )
    return Query(stmt, {"tag_a": STR, "tag_b": STR, **_COLUMNS}, post=_post, scope=flt)
