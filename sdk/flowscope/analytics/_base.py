"""Shared pieces of the analytics query builders.

* grouping keys (a whitelist: each name maps to one SQL expression),
* pandas-style frequencies compiled to UTC bucket expressions,
* the filtered ``rows`` CTE every call starts from,
* zero-filling of bucket grids (every bucket in the range, zeros not gaps),
* :class:`Query`: a Select plus its column contract, and :func:`run`, the one
  place where a query meets the database and becomes a typed DataFrame.

A column contract names each column's database type (:data:`INT` ``bigint``, :data:`FLT`
``double precision``, :data:`STR` ``text``, :data:`BOOL` ``boolean``, :data:`TS`
``timestamptz``); its pandas dtype comes from the one map of :mod:`flowscope._frames`
(``Int64``, ``Float64``, :data:`flowscope._frames.STRING`, ``boolean``,
``datetime64[us, UTC]``), the map every other flowscope frame follows.

Builders do no I/O. Time arithmetic is done on ``timestamp without time zone``
values in UTC (``timezone('UTC', created_at)``), so the session's TimeZone and
daylight-saving shifts never move a bucket.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement, Grouping

from .. import _provenance
from .._durations import parse_frequency
from .._frames import conform
from .._settings import analytics_work_mem
from ..errors import ValidationError
from ..filters import ExecutionFilter, coerce_filter
from ..models import EXECUTIONS, WORKFLOWS

if TYPE_CHECKING:
    import pandas as pd

    from .._session import Session

E = EXECUTIONS
W = WORKFLOWS
UTC_ZONE: Any = sa.literal_column("'UTC'")
FLOAT: Any = postgresql.DOUBLE_PRECISION()

# the database types of the column contracts (their dtypes: flowscope._frames)
INT: Any = sa.BigInteger()  # counts: Int64
FLT: Any = FLOAT  # measures (seconds, rates): Float64
STR: Any = sa.Text()  # keys and labels: flowscope._frames.STRING
BOOL: Any = sa.Boolean()  # boolean
TS: Any = sa.DateTime(timezone=True)  # times: datetime64[us, UTC]


def utc_naive(column: Any) -> ColumnElement[Any]:
    """``timezone('UTC', ts)``: a timestamptz as the wall-clock time in UTC."""
    return sa.func.timezone(UTC_ZONE, column, type_=sa.DateTime())


def utc_aware(column: Any) -> ColumnElement[Any]:
    """The inverse of :func:`utc_naive`."""
    return sa.func.timezone(UTC_ZONE, column, type_=sa.DateTime(timezone=True))


def seconds(interval: Any) -> ColumnElement[float]:
    """``extract(epoch from interval)`` as double precision."""
    return sa.cast(sa.extract("epoch", interval), FLOAT)


# -- grouping keys -------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    name: str
    type: Any  # the column's database type (STR, TS)
    needs_workflow: bool = False
    needs_tag: bool = False
    description: str = ""


KEYS: dict[str, Key] = {
    k.name: k
    for k in (
        Key("workflow_id", STR, description="executions.workflow_id"),
        Key("workflow", STR, needs_workflow=True, description="the workflow's name"),
        Key("owner", STR, description="executions.owner"),
        Key("organization_id", STR, description="executions.organization_id"),
        Key("status", STR, description="executions.status"),
        Key(
            "tag", STR, needs_workflow=True, needs_tag=True, description="each tag of the workflow"
        ),
        Key("day", TS, description="UTC day of created_at"),
        Key(
            "workflow_version",
            STR,
            description="executions.metadata->>'workflow_version' (the version that ran)",
        ),
    )
}


def key_expression(name: str, tag_column: Any = None) -> ColumnElement[Any]:
    """The SQL expression of a grouping key over ``executions`` (and ``workflows``)."""
    if name == "workflow":
        return W.c.name
    if name == "tag":
        return tag_column
    if name == "day":
        return sa.func.date_trunc("day", utc_naive(E.c.created_at), type_=sa.DateTime())
    if name == "workflow_version":
        return E.c.metadata["workflow_version"].astext
    return E.c[name]


def parse_by(
    by: str | Sequence[str] | None, allowed: Iterable[str] | None = None
) -> tuple[str, ...]:
    """Validate grouping keys against the whitelist; a string is one key."""
    valid = list(allowed) if allowed is not None else list(KEYS)
    if by is None:
        return ()
    if not isinstance(by, str | Sequence):
        raise ValidationError(
            f"by must be a grouping key or a list of them ({', '.join(valid)}), not {by!r}",
            errors=[{"loc": ("by",), "msg": "not a key or a list of keys", "index": None}],
        )
    keys = (by,) if isinstance(by, str) else tuple(by)
    bad = [k for k in keys if not isinstance(k, str) or k not in valid]
    if bad:
        raise ValidationError(
            f"cannot group by {', '.join(map(repr, bad))}; valid keys: {', '.join(valid)}",
            errors=[{"loc": ("by",), "msg": f"invalid key {k!r}", "index": None} for k in bad],
        )
    if len(set(keys)) != len(keys):
        raise ValidationError(f"duplicate grouping keys in {list(keys)}")
    return keys


# -- frequencies ---------------------------------------------------------------------

# date_bin origin: a Monday at midnight, so weekly buckets start on Mondays (ISO weeks)
_ORIGIN = datetime(2000, 1, 3)


@dataclass(frozen=True)
class Freq:
    """A pandas-style frequency: ``n`` times ``unit`` (mins, hours, days, weeks, months)."""

    n: int
    unit: str
    text: str

    @property
    def fixed(self) -> timedelta | None:
        if self.unit == "months":
            return None
        return timedelta(**{self.unit.replace("mins", "minutes"): self.n})

    def step(self) -> ColumnElement[Any]:
        order = ("years", "months", "weeks", "days", "hours", "mins")
        args = [sa.literal(self.n if u == self.unit else 0, sa.Integer) for u in order]
        return sa.func.make_interval(*args, type_=postgresql.INTERVAL())

    def floor(self, naive: Any) -> ColumnElement[Any]:
        """The start of the bucket holding a naive-UTC timestamp."""
        if self.unit == "months":
            month = sa.func.date_trunc("month", naive, type_=sa.DateTime())
            if self.n == 1:
                return month
            index = sa.cast(
                sa.extract("year", month) * 12 + sa.extract("month", month) - 1, sa.Integer
            )
            back = sa.func.make_interval(0, sa.func.mod(index, self.n), type_=postgresql.INTERVAL())
            return sa.type_coerce(month - back, sa.DateTime())
        if self.n == 1 and self.unit in ("hours", "days"):
            return sa.func.date_trunc(self.unit[:-1], naive, type_=sa.DateTime())
        return sa.func.date_bin(
            self.step(), naive, sa.literal(_ORIGIN, sa.DateTime()), type_=sa.DateTime()
        )


def parse_freq(freq: str | None, *, name: str = "freq") -> Freq | None:
    """Parse ``"1h"``, ``"15min"``, ``"1D"``, ``"1W"`` (weeks from Monday) or ``"1MS"`` (month
    starts): flowscope's one syntax (:func:`flowscope._durations.parse_frequency`)."""
    if freq is None:
        return None
    parsed = parse_frequency(freq, name=name)
    return Freq(parsed.n, parsed.unit, parsed.text)


# -- the filtered rows ---------------------------------------------------------------


def as_filter(filter: ExecutionFilter | None, fields: Mapping[str, Any]) -> ExecutionFilter:
    return coerce_filter(ExecutionFilter, filter, **fields)


def base_from(keys: Sequence[str], *, force_workflow: bool = False) -> tuple[Any, Any]:
    """FROM executions [JOIN workflows] [LEFT JOIN LATERAL unnest(tags)]; returns (from, tag column)."""
    needs_workflow = force_workflow or any(KEYS[k].needs_workflow for k in keys)
    needs_tag = any(KEYS[k].needs_tag for k in keys)
    src: Any = E
    tag_col = None
    if needs_workflow:
        src = src.join(W, W.c.id == E.c.workflow_id)
    if needs_tag:
        tags = sa.func.unnest(W.c.tags).table_valued("tag").render_derived(name="t").lateral()
        src = src.join(tags, sa.true(), isouter=True)
        tag_col = tags.c.tag
    return src, tag_col


def rows_cte(
    flt: ExecutionFilter,
    keys: Sequence[str],
    columns: Mapping[str, Any],
    *,
    freq: Freq | None = None,
    time_column: Any = None,
    extra_where: Sequence[ColumnElement[bool]] = (),
    name: str = "rows",
    force_workflow: bool = False,
) -> sa.CTE:
    """The filtered executions with the grouping keys (``k_<name>``), ``bucket`` and measures."""
    src, tag_col = base_from(keys, force_workflow=force_workflow)
    cols: list[Any] = [key_expression(k, tag_col).label(f"k_{k}") for k in keys]
    if freq is not None:
        ts = time_column if time_column is not None else E.c.created_at
        cols.append(freq.floor(utc_naive(ts)).label("bucket"))
    cols += [expr.label(n) for n, expr in columns.items()]
    stmt = sa.select(*cols).select_from(src).where(flt.clause(), *extra_where)
    return stmt.cte(name)


#: The most cells (groups × time buckets) one analytics call with ``freq`` may return. A
#: grid of ``freq`` over ``since``..``until`` above it is refused before anything is sent;
#: with several groups (or without ``since``) the database stops filling empty cells one
#: past the limit (:func:`empty_cells`) and the result is refused (:func:`finish`).
MAX_BUCKETS = 100_000


def empty_cells(select: sa.Select[Any]) -> sa.Subquery:
    """The cells (keys, bucket) of a grid, at most one more than :data:`MAX_BUCKETS` of
    them: enough to tell an over-large grid (:func:`finish` refuses it) without building it."""
    return select.limit(MAX_BUCKETS + 1).subquery("cells")


def check_cells(names: Sequence[str], rows: int) -> None:
    """Refuse a time-bucketed result (a ``bucket`` column) of more than :data:`MAX_BUCKETS` rows.

    Example:
        >>> check_cells(["k_workflow", "bucket", "n"], 100_001)
        Traceback (most recent call last):
        ...
        flowscope.errors.ValidationError: the result needs more than 100,000 cells (groups × time buckets), the limit: use a coarser freq, a shorter since/until range, or fewer groups
    """
    if "bucket" in names and rows > MAX_BUCKETS:
        raise ValidationError(
            f"the result needs more than {MAX_BUCKETS:,} cells (groups × time buckets), the"
            " limit: use a coarser freq, a shorter since/until range, or fewer groups"
        )


def check_grid(freq: Freq | None, flt: ExecutionFilter) -> None:
    """Raise ValidationError when ``freq`` over the filter's range needs more than
    :data:`MAX_BUCKETS` buckets (``until`` defaults to now; without ``since`` the grid
    starts at the first matching execution, so only the data bounds it).

    Example:
        >>> from flowscope.filters import ExecutionFilter
        >>> f = ExecutionFilter(since="1900-01-01", until="2200-01-01")
        >>> check_grid(parse_freq("1min"), f)
        Traceback (most recent call last):
        ...
        flowscope.errors.ValidationError: freq='1min' from 1900-01-01 00:00 to 2200-01-01 00:00 needs 157,785,120 time buckets, more than the limit of 100,000: use a coarser freq or a shorter since/until range
    """
    if freq is None or flt.since is None:
        return
    since = flt.since
    until = flt.until or max(datetime.now(UTC), since)
    if freq.fixed is not None:
        count = (until - since) / freq.fixed
    else:
        count = ((until.year - since.year) * 12 + until.month - since.month + 1) / freq.n
    if count > MAX_BUCKETS:
        raise ValidationError(
            f"freq={freq.text!r} from {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} needs"
            f" {int(count):,} time buckets, more than the limit of {MAX_BUCKETS:,}: use a"
            " coarser freq or a shorter since/until range"
        )


def series(freq: Freq, flt: ExecutionFilter, lo: Any, hi: Any, name: str = "buckets") -> sa.CTE:
    """Every bucket from the filter's ``since`` (or ``lo``) to its ``until`` (or ``hi``), inclusive."""
    check_grid(freq, flt)
    start: Any = (
        freq.floor(utc_naive(sa.literal(flt.since, sa.DateTime(timezone=True))))
        if flt.since
        else lo
    )
    if flt.until is not None:
        last = utc_naive(
            sa.literal(flt.until - timedelta(microseconds=1), sa.DateTime(timezone=True))
        )
        stop: Any = freq.floor(last)
    else:
        stop = hi
    gs = sa.func.generate_series(start, stop, freq.step()).table_valued("bucket").render_derived()
    return (
        sa.select(sa.type_coerce(gs.c.bucket, sa.DateTime()).label("bucket"))
        .select_from(gs)
        .cte(name)
    )


@dataclass(frozen=True)
class Measure:
    """An aggregate column: its SQL over the rows CTE, its dtype, and how empty buckets fill."""

    name: str
    build: Callable[..., Any]  # rows-CTE columns -> aggregate expression
    dtype: Any  # the column's database type (INT, FLT)
    zero: bool = False  # counts: empty buckets get 0; statistics: NULL


def grouped(
    rows: sa.CTE,
    keys: Sequence[str],
    measures: Sequence[Measure],
    *,
    freq: Freq | None,
    flt: ExecutionFilter,
) -> sa.Select[Any]:
    """GROUP BY keys (and bucket); with a frequency, every bucket of the range for every group."""
    r = rows.c
    group_cols = [r[f"k_{k}"] for k in keys] + ([r.bucket] if freq is not None else [])
    agg_cols = [m.build(r).label(m.name) for m in measures]
    agg = sa.select(*[c.label(c.name) for c in group_cols], *agg_cols).group_by(*group_cols)
    if freq is None:
        return agg.order_by(*[sa.literal_column(c.name) for c in group_cols])
    agg_cte = agg.cte("agg")
    # bounds from the (small) aggregate, so the rows CTE is read once and can be inlined
    bounds = sa.select(
        sa.func.min(agg_cte.c.bucket).label("lo"), sa.func.max(agg_cte.c.bucket).label("hi")
    ).cte("bounds")
    buckets = series(
        freq,
        flt,
        sa.select(bounds.c.lo).scalar_subquery(),
        sa.select(bounds.c.hi).scalar_subquery(),
    )
    a = agg_cte.c
    key_names = [f"k_{k}" for k in keys]
    if keys:
        groups = sa.select(*[a[k] for k in key_names]).distinct().cte("groups")
        zero_src: Any = groups.join(buckets, sa.true())
        zero_keys = [groups.c[k] for k in key_names]
    else:
        zero_src = buckets
        zero_keys = []
    cells = empty_cells(
        sa.select(
            *[zk.label(zk.name) for zk in zero_keys], buckets.c.bucket.label("bucket")
        ).select_from(zero_src)
    )
    zeros = sa.select(
        *[cells.c[k] for k in key_names],
        cells.c.bucket,
        *[(sa.literal(0, sa.BigInteger) if m.zero else sa.null()).label(m.name) for m in measures],
    )
    real = sa.select(*[a[k] for k in key_names], a.bucket, *[a[m.name] for m in measures]).where(
        a.bucket.in_(sa.select(buckets.c.bucket))
    )
    both = sa.union_all(real, zeros).subquery("filled")
    f = both.c
    out = sa.select(
        *[f[k] for k in key_names],
        f.bucket,
        *[
            (sa.func.sum(f[m.name]) if m.zero else sa.func.max(f[m.name])).label(m.name)
            for m in measures
        ],
    ).group_by(*[f[k] for k in key_names], f.bucket)
    return out.order_by(*[f[k] for k in key_names], f.bucket)


# -- queries and running them --------------------------------------------------------


@dataclass
class Query:
    """A Select and the DataFrame it becomes: ordered column names → database types
    (:data:`INT`, :data:`FLT`, :data:`STR`, :data:`TS`; dtypes by :mod:`flowscope._frames`).

    ``rename`` maps SQL labels (``k_workflow``, ``bucket``) to frame columns;
    ``post`` derives columns (ratios) on the small aggregated frame; ``scope``: a filter
    that every ``executions`` row the query reads matches (the pull engine reads only
    those; None: any row may be read).
    """

    select: sa.Select[Any]
    columns: dict[str, Any]
    rename: dict[str, str] = field(default_factory=dict)
    post: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    scope: ExecutionFilter | None = None


def key_columns(keys: Sequence[str], freq: Freq | None) -> tuple[dict[str, Any], dict[str, str]]:
    """Contract and rename map for the grouping columns (``bucket`` last)."""
    cols = {k: KEYS[k].type for k in keys}
    rename = {f"k_{k}": k for k in keys}
    if freq is not None:
        cols["bucket"] = TS
    return cols, rename


def _has_ordered_set_aggregate(stmt: Any) -> bool:
    from sqlalchemy.sql import visitors
    from sqlalchemy.sql.elements import WithinGroup

    return any(isinstance(el, WithinGroup) for el in visitors.iterate(stmt))


def tune(conn: sa.Connection, stmt: Any) -> None:
    """Give a query with percentiles (``... WITHIN GROUP (ORDER BY ...)``, which sorts every
    group) the analytics ``work_mem`` (bound, transaction-local;
    :func:`flowscope._settings.analytics_work_mem`). Other queries keep the server's: a larger
    ``work_mem`` made the planner drop a parallel sort for ``concurrency()`` (2.2 s → 2.9 s)."""
    work_mem = analytics_work_mem()
    if work_mem is not None and _has_ordered_set_aggregate(stmt):
        conn.execute(sa.select(sa.func.set_config("work_mem", work_mem, True)))


def execute(conn: sa.Connection, query: Query) -> pd.DataFrame:
    """Run a query on an open (scoped) transaction and return its typed frame."""

    tune(conn, query.select)
    result = conn.execute(query.select)
    frame = finish(query, list(result.keys()), result.fetchall())
    frame.attrs["engine"] = "postgresql"
    frame.attrs["provenance"] = _provenance.of_transaction(conn)
    return frame


def finish(query: Query, names: list[str], rows: Sequence[Any]) -> pd.DataFrame:
    """The rows a query returned (from either engine) as its typed frame."""
    import pandas as pd

    check_cells(names, len(rows))
    frame = pd.DataFrame.from_records(rows, columns=names) if rows else pd.DataFrame(columns=names)
    frame = frame.rename(columns=query.rename)
    if query.post is not None:
        frame = query.post(frame)
    frame = conform(frame, query.columns)
    frame.attrs.update(query.attrs)
    return frame


def run(session: Session, query: Query) -> pd.DataFrame:
    """Execute a query in the client's scope (RLS applies) and return its typed frame."""
    with session.read_transaction() as conn:
        return execute(conn, query)


def ratio(num: Any, den: Any) -> Any:
    """num / den as Float64 with NA where den is 0 or NA."""
    import pandas as pd

    n = pd.to_numeric(num).astype("Float64")
    d = pd.to_numeric(den).astype("Float64")
    return (n / d.where(d != 0)).astype("Float64")


P50_P95: Any = sa.literal_column("ARRAY[0.5, 0.95]::float8[]")  # a constant, not input


def p50_p95(value: Any, *conditions: Any) -> tuple[Any, Any]:
    """``percentile_cont(ARRAY[0.5, 0.95])`` subscripted twice: PostgreSQL computes the identical
    aggregate once (one sort per group)."""
    agg: Any = sa.func.percentile_cont(P50_P95).within_group(value)
    if conditions:
        agg = agg.filter(*conditions)
    arr = sa.type_coerce(Grouping(agg), postgresql.ARRAY(FLOAT))
    return arr[sa.literal_column("1")], arr[sa.literal_column("2")]


def percentile_names(
    percentiles: Sequence[float], suffix: str = "seconds"
) -> list[tuple[float, str]]:
    """Validate percentiles (0 < q < 1) and name their columns ``p50_seconds``, ``p99_9_seconds``."""
    out: list[tuple[float, str]] = []
    if isinstance(percentiles, str | bytes) or not isinstance(percentiles, Sequence):
        raise ValidationError("percentiles must be a sequence of numbers between 0 and 1")
    for q in percentiles:
        if isinstance(q, bool) or not isinstance(q, int | float) or not 0 < q < 1:
            raise ValidationError(f"percentile {q!r} is not a number strictly between 0 and 1")
        label = f"{q * 100:.6g}".replace(".", "_")
        name = f"p{label}_{suffix}"
        if name in (n for _, n in out):
            raise ValidationError(f"duplicate percentile {q!r}")
        out.append((float(q), name))
    return out
