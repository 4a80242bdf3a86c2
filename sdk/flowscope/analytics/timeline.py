"""Time lines: ``throughput`` (created/started/finished per bucket) and ``concurrency``.

Concurrency treats each started execution as running over ``[started_at,
completed_at)``; one without ``completed_at`` is still running. The level
``L(t) = #(started_at <= t) - #(completed_at <= t)`` is computed by a window sum
over start (+1) and end (-1) events; per bucket ``b`` the frame reports
``running`` = ``L(b)`` (running at the bucket's start) and ``peak`` = the maximum
of ``L`` within the bucket.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ..filters import ExecutionFilter
from ._base import (
    INT,
    TS,
    E,
    Freq,
    Measure,
    Query,
    base_from,
    empty_cells,
    grouped,
    key_columns,
    key_expression,
    series,
    utc_naive,
)

_KINDS = {"created": "created_at", "started": "started_at", "finished": "completed_at"}


def throughput_query(flt: ExecutionFilter, keys: Sequence[str], freq: Freq) -> Query:
    # one pass: each execution becomes up to three (kind, time) events via a lateral unnest
    ev = (
        sa.func.unnest(
            sa.literal_column("ARRAY[1, 2, 3]"),
            postgresql.array([E.c.created_at, E.c.started_at, E.c.completed_at]),
        )
        .table_valued("k", "at")
        .render_derived(name="ev")
        .lateral()
    )
    src, tag_col = base_from(keys)
    events = (
        sa.select(
            *[key_expression(k, tag_col).label(f"k_{k}") for k in keys],
            freq.floor(utc_naive(ev.c.at)).label("bucket"),
            ev.c.k,
        )
        .select_from(src.join(ev, sa.true()))
        .where(flt.clause(), ev.c.at.is_not(None))
        .cte("events")
    )
    measures = [
        Measure(
            kind,
            lambda r, i=i: sa.func.count().filter(r.k == sa.literal_column(str(i))),
            INT,
            zero=True,
        )
        for i, kind in enumerate(_KINDS, start=1)
    ]
    cols, rename = key_columns(keys, freq)
    cols.update({kind: INT for kind in _KINDS})
    return Query(grouped(events, keys, measures, freq=freq, flt=flt), cols, rename, scope=flt)


def concurrency_query(flt: ExecutionFilter, freq: Freq) -> Query:
    # one scan: each started execution gives a +1 event and, once completed, a -1 event
    pair = (
        sa.func.unnest(
            sa.literal_column("ARRAY[1, -1]"),
            postgresql.array([E.c.started_at, E.c.completed_at]),
        )
        .table_valued("delta", "at")
        .render_derived(name="ev")
        .lateral()
    )
    ev = (
        sa.select(utc_naive(pair.c.at).label("t"), pair.c.delta)
        .select_from(E.join(pair, sa.true()))
        .where(flt.clause(), E.c.started_at.is_not(None), pair.c.at.is_not(None))
        .subquery("events")
    )
    level = sa.select(
        ev.c.t,
        ev.c.delta,
        freq.floor(ev.c.t).label("bucket"),
        sa.func.sum(ev.c.delta).over(order_by=ev.c.t).label("level"),
    ).cte("levels")
    lv = level.c
    per_bucket = (
        sa.select(
            lv.bucket,
            sa.func.sum(lv.delta).label("d"),
            sa.func.coalesce(sa.func.sum(lv.delta).filter(lv.t == lv.bucket), 0).label("d_exact"),
            sa.func.max(lv.level).label("m"),
            sa.func.count().filter(lv.delta > 0).label("started"),
            sa.func.count().filter(lv.delta < 0).label("finished"),
        )
        .group_by(lv.bucket)
        .cte("per_bucket")
    )
    # bounds from the small per-bucket aggregate, so the event scan runs once
    pb = per_bucket.c
    bounds = sa.select(sa.func.min(pb.bucket).label("lo"), sa.func.max(pb.bucket).label("hi")).cte(
        "bounds"
    )
    buckets = series(
        freq,
        flt,
        sa.select(bounds.c.lo).scalar_subquery(),
        sa.select(bounds.c.hi).scalar_subquery(),
    )
    cells = empty_cells(sa.select(buckets.c.bucket))
    zeros = sa.select(
        cells.c.bucket,
        sa.literal(0, sa.BigInteger).label("d"),
        sa.literal(0, sa.BigInteger).label("d_exact"),
        sa.null().label("m"),
        sa.literal(0, sa.BigInteger).label("started"),
        sa.literal(0, sa.BigInteger).label("finished"),
    )
    both = sa.union_all(sa.select(*per_bucket.c), zeros).subquery("both")
    b = both.c
    merged = (
        sa.select(
            b.bucket,
            sa.func.sum(b.d).label("d"),
            sa.func.sum(b.d_exact).label("d_exact"),
            sa.func.max(b.m).label("m"),
            sa.func.sum(b.started).label("started"),
            sa.func.sum(b.finished).label("finished"),
        )
        .group_by(b.bucket)
        .subquery("merged")
    )
    m = merged.c
    cum = sa.func.sum(m.d).over(order_by=m.bucket)
    running = cum - m.d + m.d_exact
    walked = sa.select(
        m.bucket,
        m.started,
        m.finished,
        running.label("running"),
        sa.func.greatest(running, m.m).label("peak"),
    ).subquery("walked")
    w = walked.c
    stmt = (
        sa.select(w.bucket, w.started, w.finished, w.running, w.peak)
        .where(w.bucket.in_(sa.select(buckets.c.bucket)))
        .order_by(w.bucket)
    )
    cols = {"bucket": TS, "started": INT, "finished": INT, "running": INT, "peak": INT}
    return Query(stmt, cols, scope=flt)
