"""Answers from the phase-3 daily rollups (materialized views), merged with recent raw rows.

The views (revision 0003) hold one row per organization, workflow, owner,
workflow version, UTC day and status, with counts, duration sums/min/max and a
log-bucket duration sketch (DDSketch, ``gamma = 1.01 / 0.99``). A rollup answer
reads the views for the whole UTC days that the filter covers *and* that ended
before the last refresh, and the raw ``executions`` table for everything else
(rows since the refresh day, partial days at the edges of ``since``/``until``).
Counts and sums are therefore exact as of the refresh; percentiles come from the
merged sketch: within 1% relative error of the exact ones.

Tenants read the views through ``*_visible`` views that return only their
organization's rows (materialized views cannot carry row-level security), and
only to organization-wide readers: a user who sees its own and public workflows
only (revision 0007) is answered from the raw rows.

A call falls back to the raw table (``frame.attrs["rollups"] is False`` with a
``rollups_fallback`` reason) when the filter selects by ``ids``/``trace_id``,
the frequency is finer than a day, or the rollups were never refreshed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from .. import _db
from ..filters import ExecutionFilter
from ..models import EXECUTION_STATUSES, EXECUTIONS
from . import _base
from ._base import FLOAT, FLT, INT, E, Freq, Measure, Query, W

if TYPE_CHECKING:
    import pandas as pd

    from .._session import Session

GAMMA = 1.01 / 0.99
LN_GAMMA = math.log(GAMMA)
ZERO_KEY = -2147483648
VIEWS = (
    "flowscope_executions_daily",
    "flowscope_executions_daily_org",
    "flowscope_execution_events_daily_org",
)
ORG_KEYS = frozenset({"organization_id", "status", "day"})


def _execution_columns(*names: str) -> list[Any]:
    """Columns a view keeps from ``executions``: their types come from the model."""
    return [sa.column(n, EXECUTIONS.c[n].type) for n in names]


def _columns(**types: Any) -> list[Any]:
    return [sa.column(n, t) for n, t in types.items()]


COUNT = sa.BigInteger()
DAY = sa.Date()
#: aggregates of the daily views (revision 0003), per key and day
_DAILY_MEASURES = _columns(
    executions=COUNT,
    started=COUNT,
    duration_count=COUNT,
    duration_sum=FLOAT,
    duration_min=FLOAT,
    duration_max=FLOAT,
    wait_sum=FLOAT,
    sketch_keys=postgresql.ARRAY(sa.Integer),
    sketch_counts=postgresql.ARRAY(sa.BigInteger),
)
DAILY = sa.table(
    "flowscope_executions_daily_visible",
    *_execution_columns("organization_id", "workflow_id", "owner"),
    *_columns(workflow_version=sa.String(), day=DAY),
    *_execution_columns("status"),
    *_DAILY_MEASURES,
)
DAILY_ORG = sa.table(
    "flowscope_executions_daily_org_visible",
    *_execution_columns("organization_id"),
    *_columns(day=DAY),
    *_execution_columns("status"),
    *[sa.column(c.name, c.type) for c in _DAILY_MEASURES],
    *_columns(workflow_deleted=sa.Boolean()),
)
EVENTS_ORG = sa.table(
    "flowscope_execution_events_daily_org_visible",
    *_execution_columns("organization_id"),
    *_columns(created_day=DAY, day=DAY),
    *_execution_columns("status"),
    *_columns(kind=sa.String(), workflow_deleted=sa.Boolean(), n=COUNT),
)
REFRESHES = sa.table(
    "flowscope_rollup_refreshes",
    sa.column("name", sa.String()),
    sa.column("refreshed_at", sa.DateTime(timezone=True)),
)


# -- refreshing ----------------------------------------------------------------------


def refresh(session: Session, concurrently: bool = True) -> datetime:
    """REFRESH (CONCURRENTLY) both views and record the transaction's start time.

    One refresh at a time: two at once fail in the catalog ("tuple concurrently
    updated"), so each first locks the refresh table in a self-conflicting mode (a
    lock no tenant login may take: it has no privilege on that table) and a second
    caller waits for the first, then refreshes again."""
    how = "CONCURRENTLY " if concurrently else ""

    def run() -> datetime | None:
        with session.transaction() as conn:
            conn.execute(
                sa.text("LOCK TABLE flowscope_rollup_refreshes IN SHARE ROW EXCLUSIVE MODE")
            )
            conn.execute(sa.text("SET LOCAL work_mem = '256MB'"))  # aggregate in memory
            for view in VIEWS:  # constant names, not input
                conn.execute(sa.text(f"REFRESH MATERIALIZED VIEW {how}{view}"))
            insert = postgresql.insert(REFRESHES).values(
                [{"name": v, "refreshed_at": sa.func.now()} for v in VIEWS]
            )
            upsert = insert.on_conflict_do_update(
                index_elements=[REFRESHES.c.name],
                set_={"refreshed_at": insert.excluded.refreshed_at},
            ).returning(REFRESHES.c.refreshed_at)
            return conn.execute(upsert).scalars().first()

    from .._session import _WRITE_TX

    # (a deadlock with a tenant login's provisioning is retried; inside a caller's
    # transaction it is the caller's to retry)
    when = run() if _WRITE_TX.get() is not None else _db.retry_transient(run)
    assert when is not None
    return when.astimezone(UTC)


def _sees_whole_organization(conn: Any) -> bool:
    """Within a tenant's transaction: may it read every workflow of its organization?"""
    from .._session import READ_ALL

    can = sa.func.flowscope_session_can(READ_ALL, type_=sa.Boolean)
    return bool(conn.execute(sa.select(can)).scalar())


def _refreshed_at(conn: Any) -> datetime | None:
    when = conn.execute(
        sa.select(sa.func.min(REFRESHES.c.refreshed_at)).where(REFRESHES.c.name.in_(VIEWS))
    ).scalar()
    return when.astimezone(UTC) if when is not None else None


def refreshed_at(session: Session) -> datetime | None:
    with session.read_transaction() as conn:
        return _refreshed_at(conn)


# -- which days come from the views --------------------------------------------------


def _day_floor(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def covered_range(flt: ExecutionFilter, refreshed: datetime) -> tuple[datetime, datetime] | None:
    """The whole UTC days ``[lo, hi)`` answered from the views (None: none)."""
    hi = _day_floor(refreshed)
    if flt.until is not None:
        hi = min(hi, _day_floor(flt.until))
    lo = None
    if flt.since is not None:
        lo = _day_floor(flt.since)
        if lo < flt.since:
            lo += timedelta(days=1)
    if lo is not None and lo >= hi:
        return None
    return (lo or datetime(1, 1, 2, tzinfo=UTC), hi)


def fallback_reason(
    flt: ExecutionFilter, freq: Freq | None, refreshed: datetime | None
) -> str | None:
    if refreshed is None:
        return "the rollups were never refreshed"
    if flt.ids is not None or flt.trace_id is not None:
        return "filters on ids/trace_id need the raw table"
    if freq is not None and freq.unit in ("mins", "hours"):
        return f"freq={freq.text!r} is finer than the daily rollups"
    return None


# -- the two halves --------------------------------------------------------------------


def _key_on_view(view: Any, name: str, tag_col: Any, day_col: Any) -> Any:
    if name == "workflow":
        return W.c.name
    if name == "tag":
        return tag_col
    if name == "day":
        return sa.cast(day_col, sa.DateTime())
    return view.c[name]


def _view_from(view: Any, keys: Sequence[str]) -> tuple[Any, Any]:
    src: Any = view
    tag_col = None
    if any(_base.KEYS[k].needs_workflow for k in keys):
        src = src.join(W, W.c.id == view.c.workflow_id)
    if "tag" in keys:
        t = sa.func.unnest(W.c.tags).table_valued("tag").render_derived(name="t").lateral()
        src = src.join(t, sa.true(), isouter=True)
        tag_col = t.c.tag
    return src, tag_col


def org_level(flt: ExecutionFilter, keys: Sequence[str]) -> bool:
    """Can the organization-level views answer (no workflow-level key or filter)?"""
    return (
        set(keys) <= ORG_KEYS
        and flt.workflow_ids is None
        and flt.owner is None
        and not flt.tags_any
        and not flt.tags_all
    )


def _view_where(
    view: Any, flt: ExecutionFilter, day_col: Any, cover: tuple[datetime, datetime]
) -> list[Any]:
    """The filter on a view: its days inside ``cover``, the rest as on ``executions``
    (the organization-level view has no workflow column: it carries the workflows'
    soft-delete state instead, and :func:`org_level` keeps workflow filters away)."""
    where: list[Any] = [day_col >= cover[0].date(), day_col < cover[1].date()]
    per_workflow = "workflow_id" in view.c
    where.append(flt.clause(view, times=False, workflows=per_workflow))
    if not per_workflow and not flt.include_deleted_workflows:
        where.append(sa.not_(view.c.workflow_deleted))
    return where


def _raw_outside(cover: tuple[datetime, datetime] | None) -> list[Any]:
    if cover is None:
        return []
    lo = sa.literal(cover[0], sa.DateTime(timezone=True))
    hi = sa.literal(cover[1], sa.DateTime(timezone=True))
    return [sa.or_(E.c.created_at < lo, E.c.created_at >= hi)]


def _halves(
    view: Any,
    day_col: Any,
    flt: ExecutionFilter,
    keys: Sequence[str],
    freq: Freq | None,
    cover: tuple[datetime, datetime] | None,
    view_cols: Callable[[Any], dict[str, Any]],
    raw_cols: dict[str, Any],
    bucket_col: Any = None,
    raw_time: Any = None,
    raw_where: Sequence[Any] = (),
) -> list[sa.Select[Any]]:
    """SELECTs with the same columns: the covered days from a view, the rest from the raw table."""
    parts: list[sa.Select[Any]] = []
    if cover is not None:
        src, tag_col = _view_from(view, keys)
        cols = [_key_on_view(view, k, tag_col, day_col).label(f"k_{k}") for k in keys]
        if freq is not None:
            b = bucket_col if bucket_col is not None else day_col
            cols.append(freq.floor(sa.cast(b, sa.DateTime())).label("bucket"))
        cols += [c.label(n) for n, c in view_cols(view).items()]
        parts.append(
            sa.select(*cols).select_from(src).where(*_view_where(view, flt, day_col, cover))
        )
    src, tag_col = _base.base_from(keys)
    cols = [_base.key_expression(k, tag_col).label(f"k_{k}") for k in keys]
    if freq is not None:
        ts = raw_time if raw_time is not None else E.c.created_at
        cols.append(freq.floor(_base.utc_naive(ts)).label("bucket"))
    cols += [c.label(n) for n, c in raw_cols.items()]
    parts.append(
        sa.select(*cols).select_from(src).where(flt.clause(), *_raw_outside(cover), *raw_where)
    )
    return parts


# -- sketch percentiles ----------------------------------------------------------------


def sketch_key(value: Any) -> Any:
    """The log bucket of a duration (``ZERO_KEY`` for 0)."""
    return sa.case(
        (value == 0, sa.literal(ZERO_KEY)),
        else_=sa.cast(sa.func.ceil(sa.func.ln(value) / sa.literal(LN_GAMMA, FLOAT)), sa.Integer),
    )


def _estimate(key: Any) -> Any:
    return sa.case(
        (key == ZERO_KEY, sa.literal(0.0, FLOAT)),
        else_=2 * sa.func.power(sa.literal(GAMMA, FLOAT), key) / sa.literal(GAMMA + 1, FLOAT),
    )


def sketch_percentiles(
    sketch_rows: sa.CTE, group: Sequence[str], named: Sequence[tuple[float, str]]
) -> sa.Select[Any]:
    """Per group, each percentile interpolated (like percentile_cont) between sketch estimates."""
    s = sketch_rows.c
    gcols = [s[g] for g in group]
    merged = (
        sa.select(*gcols, s.b, sa.func.sum(s.n).label("n")).group_by(*gcols, s.b).cte("sk_merged")
    )
    m = merged.c
    mg = [m[g] for g in group]
    cum = sa.select(
        *mg,
        m.b,
        sa.func.sum(m.n).over(partition_by=mg, order_by=m.b).label("cum"),
        sa.func.sum(m.n).over(partition_by=mg).label("total"),
    ).cte("sk_cum")
    c = cum.c
    cg = [c[g] for g in group]
    inner_cols: list[Any] = []
    for i, (q, _name) in enumerate(named):
        pos = sa.literal(q, FLOAT) * (c.total - 1)
        j = sa.func.floor(pos)
        inner_cols += [
            sa.func.min(c.b).filter(c.cum > j).label(f"lo{i}"),
            sa.func.min(c.b).filter(c.cum > j + 1).label(f"hi{i}"),
            sa.func.max(pos - j).label(f"f{i}"),
        ]
    inner = sa.select(*cg, *inner_cols).group_by(*cg).subquery("sk_pos")
    p = inner.c
    outs = []
    for i, (_q, name) in enumerate(named):
        lo = _estimate(p[f"lo{i}"])
        hi = sa.func.coalesce(_estimate(p[f"hi{i}"]), lo)
        outs.append((lo + p[f"f{i}"] * (hi - lo)).label(name))
    return sa.select(*[p[g] for g in group], *outs)


# -- calls -----------------------------------------------------------------------------


def _attrs(
    refreshed: datetime | None, cover: Any, reason: str | None, approx: bool
) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "rollups": reason is None,
        "rollups_refreshed_at": refreshed,
        "rollups_days": (cover[0] if cover and cover[0].year > 1 else None, cover[1])
        if cover
        else None,
    }
    if reason is not None:
        attrs["rollups_fallback"] = reason
    if approx:
        attrs["percentiles"] = (
            "approximate: log-bucket sketch, within 1% relative error"
            if reason is None
            else "exact"
        )
    return attrs


def _run(
    session: Session,
    flt: ExecutionFilter,
    freq: Freq | None,
    build: Callable[[tuple[datetime, datetime] | None], Query],
    exact: Callable[[], Query],
    approx: bool = False,
    unsupported: str | None = None,
) -> pd.DataFrame:
    """Read the refresh time and run the rollup query in the same transaction (or fall back)."""
    with session.read_transaction() as conn:
        refreshed = _refreshed_at(conn)
        reason = unsupported or fallback_reason(flt, freq, refreshed)
        if reason is None and session.is_tenant and not _sees_whole_organization(conn):
            reason = "this user sees its own and public workflows only; rollups carry no ownership"
        cover = covered_range(flt, refreshed) if refreshed is not None and reason is None else None
        frame = _base.execute(conn, build(cover) if reason is None else exact())
    frame.attrs.update(_attrs(refreshed, cover, reason, approx))
    return frame


def status_breakdown(
    session: Session, flt: ExecutionFilter, keys: Sequence[str], freq: Freq | None, normalize: bool
) -> pd.DataFrame:
    from .status import add_rates, status_query

    def build(cover: Any) -> Query:
        view = DAILY_ORG if org_level(flt, keys) else DAILY
        parts = _halves(
            view,
            view.c.day,
            flt,
            keys,
            freq,
            cover,
            lambda v: {"status": v.c.status, "n": v.c.executions},
            {"status": E.c.status, "n": sa.literal(1, sa.BigInteger)},
        )
        rows = sa.union_all(*parts).cte("rows")
        measures = [
            Measure(
                s,
                lambda r, s=s: sa.func.coalesce(sa.func.sum(r.n).filter(r.status == s), 0),
                INT,
                zero=True,
            )
            for s in EXECUTION_STATUSES
        ] + [Measure("total", lambda r: sa.func.sum(r.n), INT, zero=True)]
        exact = status_query(flt, keys, freq, normalize)
        return Query(
            _base.grouped(rows, keys, measures, freq=freq, flt=flt),
            exact.columns,
            exact.rename,
            post=lambda f: add_rates(f, normalize),
        )

    return _run(session, flt, freq, build, lambda: status_query(flt, keys, freq, normalize))


def durations(
    session: Session,
    flt: ExecutionFilter,
    keys: Sequence[str],
    freq: Freq | None,
    percentiles: Sequence[float],
) -> pd.DataFrame:
    from .durations import durations_query

    named = _base.percentile_names(percentiles, "seconds")
    d = sa.cast(E.c.duration_seconds, FLOAT)

    def build(cover: Any) -> Query:
        view = DAILY_ORG if org_level(flt, keys) else DAILY
        counts = _halves(
            view,
            view.c.day,
            flt,
            keys,
            freq,
            cover,
            lambda v: {
                "executions": v.c.executions,
                "dcount": v.c.duration_count,
                "dsum": v.c.duration_sum,
                "dmin": v.c.duration_min,
                "dmax": v.c.duration_max,
            },
            {
                "executions": sa.literal(1, sa.BigInteger),
                "dcount": sa.cast(d.is_not(None), sa.Integer),
                "dsum": d,
                "dmin": d,
                "dmax": d,
            },
        )
        sketch = _halves(
            view,
            view.c.day,
            flt,
            keys,
            freq,
            cover,
            lambda v: {
                "b": sa.func.unnest(v.c.sketch_keys),
                "n": sa.func.unnest(v.c.sketch_counts),
            },
            {"b": sketch_key(d), "n": sa.literal(1, sa.BigInteger)},
            raw_where=[E.c.duration_seconds.is_not(None)],
        )
        sketch_rows = sa.union_all(*sketch).cte("sketch_rows")
        group = [f"k_{k}" for k in keys] + (["bucket"] if freq is not None else [])
        pct = sketch_percentiles(sketch_rows, group, named).subquery("pct")
        count_rows = sa.union_all(*counts).subquery("count_rows")
        cr = count_rows.c
        nulls = [sa.cast(sa.null(), FLOAT).label(n) for _, n in named]
        rows = sa.union_all(
            sa.select(
                *[cr[g] for g in group], cr.executions, cr.dcount, cr.dsum, cr.dmin, cr.dmax, *nulls
            ),
            sa.select(
                *[pct.c[g] for g in group],
                sa.literal(0, sa.BigInteger).label("executions"),
                sa.literal(0, sa.BigInteger).label("dcount"),
                sa.cast(sa.null(), FLOAT).label("dsum"),
                sa.cast(sa.null(), FLOAT).label("dmin"),
                sa.cast(sa.null(), FLOAT).label("dmax"),
                *[pct.c[n] for _, n in named],
            ),
        ).cte("rows")
        measures = [
            Measure("executions", lambda r: sa.func.sum(r.executions), INT, zero=True),
            Measure("count", lambda r: sa.func.sum(r.dcount), INT, zero=True),
            Measure(
                "mean_seconds",
                lambda r: sa.func.sum(r.dsum) / sa.func.nullif(sa.func.sum(r.dcount), 0),
                FLT,
            ),
            Measure("min_seconds", lambda r: sa.func.min(r.dmin), FLT),
            Measure("max_seconds", lambda r: sa.func.max(r.dmax), FLT),
        ] + [Measure(n, lambda r, n=n: sa.func.max(r[n]), FLT) for _, n in named]
        exact = durations_query(flt, keys, freq, percentiles)
        return Query(
            _base.grouped(rows, keys, measures, freq=freq, flt=flt), exact.columns, exact.rename
        )

    return _run(
        session,
        flt,
        freq,
        build,
        lambda: durations_query(flt, keys, freq, percentiles),
        approx=True,
    )


def throughput(
    session: Session, flt: ExecutionFilter, keys: Sequence[str], freq: Freq
) -> pd.DataFrame:
    from .timeline import _KINDS, throughput_query

    def build(cover: Any) -> Query:
        view = EVENTS_ORG
        parts = _halves(
            view,
            view.c.created_day,
            flt,
            keys,
            freq,
            cover,
            lambda v: {"kind": v.c.kind, "n": v.c.n},
            {},
            bucket_col=view.c.day,
        )
        view_part = parts[:-1]
        # the raw half: one row per event of the executions outside the covered days
        raw_parts = []
        for kind, col in _KINDS.items():
            src, tag_col = _base.base_from(keys)
            cols = [_base.key_expression(k, tag_col).label(f"k_{k}") for k in keys]
            cols.append(freq.floor(_base.utc_naive(E.c[col])).label("bucket"))
            cols += [sa.literal(kind).label("kind"), sa.literal(1, sa.BigInteger).label("n")]
            raw_parts.append(
                sa.select(*cols)
                .select_from(src)
                .where(flt.clause(), *_raw_outside(cover), E.c[col].is_not(None))
            )
        rows = sa.union_all(*view_part, *raw_parts).cte("rows")
        measures = [
            Measure(
                k,
                lambda r, k=k: sa.func.coalesce(sa.func.sum(r.n).filter(r.kind == k), 0),
                INT,
                zero=True,
            )
            for k in _KINDS
        ]
        exact = throughput_query(flt, keys, freq)
        return Query(
            _base.grouped(rows, keys, measures, freq=freq, flt=flt), exact.columns, exact.rename
        )

    unsupported = (
        None
        if org_level(flt, keys)
        else "throughput rollups are per organization, status and day (no workflow-level keys)"
    )
    return _run(
        session,
        flt,
        freq,
        build,
        lambda: throughput_query(flt, keys, freq),
        unsupported=unsupported,
    )


__all__ = ["GAMMA", "ZERO_KEY", "refresh", "refreshed_at"]
