"""Distributions: ``durations`` (run time) and ``queue_wait`` (``started_at - created_at``).

Both are one GROUP BY over the filtered rows with ``count``, ``avg``, ``min``,
``max`` and ``percentile_cont`` (linear interpolation, like pandas' default
``quantile``) computed by PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ..filters import ExecutionFilter
from ._base import (
    FLOAT,
    FLT,
    INT,
    E,
    Freq,
    Measure,
    Query,
    grouped,
    key_columns,
    percentile_names,
    rows_cte,
    seconds,
)


def _distribution(
    flt: ExecutionFilter,
    keys: Sequence[str],
    freq: Freq | None,
    percentiles: Sequence[float],
    *,
    value: Any,
    count_name: str,
    suffix: str,
) -> Query:
    named = percentile_names(percentiles, suffix)
    rows = rows_cte(flt, keys, {"v": value}, freq=freq)
    measures = [
        Measure("executions", lambda r: sa.func.count(), INT, zero=True),
        Measure(count_name, lambda r: sa.func.count(r.v), INT, zero=True),
        Measure(f"mean_{suffix}", lambda r: sa.func.avg(r.v), FLT),
        Measure(f"min_{suffix}", lambda r: sa.func.min(r.v), FLT),
        Measure(f"max_{suffix}", lambda r: sa.func.max(r.v), FLT),
    ]
    for q, name in named:
        measures.append(
            Measure(
                name,
                lambda r, q=q: sa.func.percentile_cont(sa.literal(q, FLOAT)).within_group(r.v),
                FLT,
            )
        )
    cols, rename = key_columns(keys, freq)
    cols.update({m.name: m.dtype for m in measures})
    return Query(grouped(rows, keys, measures, freq=freq, flt=flt), cols, rename)


def durations_query(
    flt: ExecutionFilter,
    keys: Sequence[str],
    freq: Freq | None,
    percentiles: Sequence[float],
) -> Query:
    """Run-time statistics of ``duration_seconds`` (NULL durations are not counted in ``count``)."""
    return _distribution(
        flt,
        keys,
        freq,
        percentiles,
        value=sa.cast(E.c.duration_seconds, FLOAT),
        count_name="count",
        suffix="seconds",
    )


def queue_wait_query(
    flt: ExecutionFilter,
    keys: Sequence[str],
    freq: Freq | None,
    percentiles: Sequence[float],
) -> Query:
    """Queue-wait statistics: ``started_at - created_at`` of executions that started."""
    return _distribution(
        flt,
        keys,
        freq,
        percentiles,
        value=seconds(E.c.started_at - E.c.created_at),
        count_name="started",
        suffix="wait_seconds",
    )
