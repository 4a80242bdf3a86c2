"""Distributions: ``durations`` (run time) and ``queue_wait`` (``started_at - created_at``).

Both are one GROUP BY over the filtered rows with ``count``, ``avg``, ``min``,
``max`` and ``percentile_cont`` (linear interpolation, like pandas' default
``quantile``) computed by PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

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
    qs = [q for q, _ in named]
    if named:  # one ordered-set aggregate for all percentiles: one sort per group
        measures.append(
            Measure(
                "pcts",
                lambda r: sa.func.percentile_cont(
                    sa.literal(qs, postgresql.ARRAY(FLOAT))
                ).within_group(r.v),
                FLT,
            )
        )
    inner = grouped(rows, keys, measures, freq=freq, flt=flt).subquery("g")
    group = [inner.c[f"k_{k}"] for k in keys] + ([inner.c.bucket] if freq is not None else [])
    out = [c for c in inner.c if c.name != "pcts"]
    if named:
        pcts = sa.type_coerce(inner.c.pcts, postgresql.ARRAY(FLOAT))
        out += [pcts[i + 1].label(name) for i, (_, name) in enumerate(named)]
    cols, rename = key_columns(keys, freq)
    cols.update({m.name: m.dtype for m in measures if m.name != "pcts"})
    cols.update({name: FLT for _, name in named})
    return Query(
        sa.select(*out).order_by(*group),
        cols,
        rename,
        attrs={"percentiles": "exact (percentile_cont)"},
        scope=flt,
    )


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
