"""``failures``: failed and timed-out executions grouped by error signature.

The signature is the error JSON's type (``type``, else ``code``, else ``name``)
and its message (``message``, else ``msg``, else the JSON string itself)
normalised so that runs of the same fault group together: UUIDs become
``<uuid>``, hex and decimal numbers ``<n>``, whitespace collapses, and the result
is cut to 200 characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ..filters import ExecutionFilter
from ..models import FAILED_EXECUTION_STATUSES
from ._base import FLOAT, FLT, INT, STR, TS, E, Query, key_columns, rows_cte

FAILED = FAILED_EXECUTION_STATUSES
UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
HEX_RE = r"0x[0-9a-f]+"
NUMBER_RE = r"[0-9]+(\.[0-9]+)*"
MESSAGE_CHARS = 200


def error_type(error: Any) -> Any:
    return sa.func.coalesce(error["type"].astext, error["code"].astext, error["name"].astext)


def normalised_message(error: Any) -> Any:
    raw = sa.func.coalesce(
        error["message"].astext,
        error["msg"].astext,
        sa.case(
            (sa.func.jsonb_typeof(error) == "string", error.op("#>>")(sa.literal_column("'{}'"))),
            else_=None,
        ),
    )
    text = sa.func.regexp_replace(raw, sa.literal(UUID_RE), sa.literal("<uuid>"), sa.literal("gi"))
    text = sa.func.regexp_replace(text, sa.literal(HEX_RE), sa.literal("<n>"), sa.literal("gi"))
    text = sa.func.regexp_replace(text, sa.literal(NUMBER_RE), sa.literal("<n>"), sa.literal("g"))
    text = sa.func.regexp_replace(text, sa.literal(r"\s+"), sa.literal(" "), sa.literal("g"))
    return sa.func.left(sa.func.btrim(text), MESSAGE_CHARS)


def failures_query(flt: ExecutionFilter, keys: Sequence[str], top: int | None) -> Query:
    rows = rows_cte(
        flt,
        keys,
        {
            "error_type": error_type(E.c.error),
            "message": normalised_message(E.c.error),
            "id": E.c.id,
            "workflow_id": E.c.workflow_id,
            "status": E.c.status,
            "created_at": E.c.created_at,
            "current_step": E.c.current_step,
            "steps_completed": E.c.steps_completed,
            "progress": sa.cast(E.c.steps_completed, FLOAT) / sa.func.nullif(E.c.steps_total, 0),
        },
        extra_where=[E.c.status.in_(FAILED)],
    )
    r = rows.c
    group = [r[f"k_{k}"] for k in keys] + [r.error_type, r.message]
    stmt = (
        sa.select(
            *group,
            sa.func.count().label("executions"),
            sa.func.count().filter(r.status == "failed").label("failed"),
            sa.func.count().filter(r.status == "timeout").label("timeout"),
            sa.func.count(sa.distinct(r.workflow_id)).label("workflows"),
            sa.func.min(r.created_at).label("first_seen"),
            sa.func.max(r.created_at).label("last_seen"),
            sa.func.mode().within_group(r.current_step).label("current_step"),
            sa.cast(sa.func.avg(r.steps_completed), FLOAT).label("mean_steps_completed"),
            sa.func.avg(r.progress).label("mean_progress"),
            sa.func.min(r.id).label("example_id"),
        )
        .group_by(*group)
        .order_by(
            sa.literal_column("executions").desc(),
            sa.literal_column("last_seen").desc(),
            *group,
        )
    )
    if top is not None:
        stmt = stmt.limit(top)
    cols, rename = key_columns(keys, None)
    cols.update(
        {
            "error_type": STR,
            "message": STR,
            "executions": INT,
            "failed": INT,
            "timeout": INT,
            "workflows": INT,
            "first_seen": TS,
            "last_seen": TS,
            "current_step": STR,
            "mean_steps_completed": FLT,
            "mean_progress": FLT,
            "example_id": STR,
        }
    )
    return Query(stmt, cols, rename, scope=flt)
