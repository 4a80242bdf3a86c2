"""``compare``: the current period against the previous one of the same length.

One GROUP BY over ``[end - 2 * period, end)`` with every aggregate computed twice
(``FILTER (WHERE created_at >= end - period)`` and its complement), reshaped into
one row per group and metric: ``current``, ``previous``, ``change`` and
``relative_change`` (``change / previous``; NA when previous is 0 or NA).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ..filters import ExecutionFilter
from ..models import FAILED_EXECUTION_STATUSES, TERMINAL_EXECUTION_STATUSES
from ._base import FLOAT, FLT, STR, E, Query, key_columns, p50_p95, rows_cte, seconds

FAILED = FAILED_EXECUTION_STATUSES
TERMINAL = TERMINAL_EXECUTION_STATUSES
METRICS = (
    "executions",
    "completed",
    "failed",
    "failure_rate",
    "mean_seconds",
    "p50_seconds",
    "p95_seconds",
    "mean_wait_seconds",
)


def compare_query(
    flt: ExecutionFilter, keys: Sequence[str], period: timedelta, end: datetime
) -> Query:
    start = end - 2 * period
    middle = end - period
    window = flt.model_copy(update={"since": start, "until": end})
    rows = rows_cte(
        window,
        keys,
        {
            "cur": E.c.created_at >= sa.literal(middle, sa.DateTime(timezone=True)),
            "status": E.c.status,
            "d": sa.cast(E.c.duration_seconds, FLOAT),
            "wait": seconds(E.c.started_at - E.c.created_at),
        },
    )
    r = rows.c
    group = [r[f"k_{k}"] for k in keys]
    cols: list[Any] = []
    for side, cond in (("cur", r.cur), ("prev", sa.not_(r.cur))):
        cols += [
            sa.func.count().filter(cond).label(f"executions_{side}"),
            sa.func.count().filter(cond, r.status == "completed").label(f"completed_{side}"),
            sa.func.count().filter(cond, r.status.in_(FAILED)).label(f"failed_{side}"),
            sa.func.count().filter(cond, r.status.in_(TERMINAL)).label(f"finished_{side}"),
            sa.func.avg(r.d).filter(cond).label(f"mean_seconds_{side}"),
            p50_p95(r.d, cond)[0].label(f"p50_seconds_{side}"),
            p50_p95(r.d, cond)[1].label(f"p95_seconds_{side}"),
            sa.func.avg(r.wait).filter(cond).label(f"mean_wait_seconds_{side}"),
        ]
    stmt = sa.select(*group, *cols).group_by(*group).order_by(*group)
    kcols, rename = key_columns(keys, None)
    contract = {
        **kcols,
        "metric": STR,
        "current": FLT,
        "previous": FLT,
        "change": FLT,
        "relative_change": FLT,
    }

    def post(frame: Any) -> Any:
        import pandas as pd

        from ._base import ratio

        parts = []
        for side in ("cur", "prev"):
            frame[f"failure_rate_{side}"] = ratio(
                frame[f"failed_{side}"], frame[f"finished_{side}"]
            )
        for metric in METRICS:
            part = frame[list(kcols)].copy()
            part["metric"] = metric
            part["current"] = pd.to_numeric(frame[f"{metric}_cur"]).astype("Float64")
            part["previous"] = pd.to_numeric(frame[f"{metric}_prev"]).astype("Float64")
            parts.append(part)
        if not parts or not len(frame):
            return frame.iloc[0:0]
        out = pd.concat(parts, ignore_index=True)
        out["change"] = out["current"] - out["previous"]
        out["relative_change"] = ratio(out["change"], out["previous"])
        order = {m: i for i, m in enumerate(METRICS)}
        out["_m"] = out["metric"].map(order)
        out = out.sort_values([*kcols, "_m"], kind="stable").drop(columns="_m")
        return out.reset_index(drop=True)

    attrs = {
        "current_period": (middle, end),
        "previous_period": (start, middle),
    }
    return Query(stmt, contract, rename, post=post, attrs=attrs, scope=window)
