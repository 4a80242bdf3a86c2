"""``status_breakdown``: one column per execution status, totals and rates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ..filters import ExecutionFilter
from ..models import (
    EXECUTION_STATUSES,
    FAILED_EXECUTION_STATUSES,
    TERMINAL_EXECUTION_STATUSES,
)
from ._base import FLT, INT, E, Freq, Measure, Query, grouped, key_columns, ratio, rows_cte

FAILED = FAILED_EXECUTION_STATUSES


def status_measures(status_col: Any = None) -> list[Measure]:
    return [
        Measure(
            s,
            lambda r, s=s: sa.func.count().filter(r.status == s),
            INT,
            zero=True,
        )
        for s in EXECUTION_STATUSES
    ] + [Measure("total", lambda r: sa.func.count(), INT, zero=True)]


def add_rates(frame: Any, normalize: bool = False) -> Any:
    finished = sum(frame[s].astype("Int64") for s in TERMINAL_EXECUTION_STATUSES)
    failed = sum(frame[s].astype("Int64") for s in FAILED)
    frame["success_rate"] = ratio(frame["completed"], finished)
    frame["failure_rate"] = ratio(failed, finished)
    if normalize:
        for s in EXECUTION_STATUSES:
            frame[s] = ratio(frame[s], frame["total"])
    return frame


def status_query(
    flt: ExecutionFilter, keys: Sequence[str], freq: Freq | None, normalize: bool
) -> Query:
    rows = rows_cte(flt, keys, {"status": E.c.status}, freq=freq)
    measures = status_measures()
    cols, rename = key_columns(keys, freq)
    for s in EXECUTION_STATUSES:
        cols[s] = FLT if normalize else INT
    cols.update({"total": INT, "success_rate": FLT, "failure_rate": FLT})
    return Query(
        grouped(rows, keys, measures, freq=freq, flt=flt),
        cols,
        rename,
        post=lambda f: add_rates(f, normalize),
        scope=flt,
    )
