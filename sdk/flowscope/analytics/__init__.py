"""``client.analytics``: analytics computed in PostgreSQL, returned as typed pandas DataFrames.

Every call takes the shared :class:`flowscope.ExecutionFilter` (positionally, or
its fields as keywords: ``since=``, ``until=``, ``workflow_ids=``, ``owner=``,
``organization_id=``, ``status=``, ``tags_any=``, ``tags_all=``,
``include_deleted_workflows=``) and returns a DataFrame with a fixed column
contract: ``Int64`` counts, ``Float64`` measures (seconds, rates), ``string``
keys and ``datetime64[us, UTC]`` times. Nothing matches → the same columns, no
rows (without ``by``/``freq`` a call returns its one total row, with zero counts). Executions of soft-deleted workflows are left out unless
``include_deleted_workflows=True``.

Grouping keys (``by=``, a name or a list of names): ``workflow_id``, ``workflow``
(the name), ``owner``, ``organization_id``, ``status``, ``tag`` (an execution
counts under each tag of its workflow; untagged ones under ``<NA>``), ``day``
(UTC) and ``workflow_version`` (``executions.metadata->>'workflow_version'``).
Frequencies (``freq=``): ``"15min"``, ``"1h"``, ``"1D"``, ``"1W"`` (weeks from
Monday 00:00 UTC), ``"1MS"`` (calendar months), all in UTC; buckets are labelled
by their start and every bucket of the range is returned (``since``..``until``
when given, else the data's), empty ones with zero counts.

Example (the examples here run on the demo data, :func:`flowscope.demo.generate`):
    >>> frame = client.analytics.durations(by="workflow", since="2026-06-01")
    >>> frame.shape
    (124, 10)
    >>> frame.columns.tolist()  # doctest: +NORMALIZE_WHITESPACE
    ['workflow', 'executions', 'count', 'mean_seconds', 'min_seconds', 'max_seconds',
     'p50_seconds', 'p90_seconds', 'p95_seconds', 'p99_seconds']
    >>> frame = client.analytics.status_breakdown(by="tag", freq="1D", since="2026-06-23")
    >>> frame.shape, frame["bucket"].dtype
    ((112, 11), datetime64[us, UTC])
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .._boundary import Guarded
from ..errors import ValidationError
from ..filters import ExecutionFilter
from . import _base

if TYPE_CHECKING:
    import pandas as pd

    from .._session import Session

__all__ = ["GROUP_KEYS", "Analytics"]

GROUP_KEYS: tuple[str, ...] = tuple(_base.KEYS)
DEFAULT_PERCENTILES = (0.5, 0.9, 0.95, 0.99)


class Analytics(Guarded):
    """Analytics over executions: durations, statuses, tags, throughput, failures, comparisons.

    ``use_rollups`` is this client's default for calls that can answer from the
    phase-3 daily rollups (see :meth:`refresh_rollups`).

    Example:
        >>> frame = client.analytics.status_breakdown(by="workflow", since="2026-06-01")
        >>> top = frame.sort_values(["failed", "workflow"], ascending=[False, True]).head(3)
        >>> top[["workflow", "total", "failed", "failure_rate"]].round(2)
                        workflow  total  failed  failure_rate
        120    web-events export     54       5          0.09
        3    churn-model cleanup     16       2          0.13
        83        pricing ingest     18       2          0.11
    """

    def __init__(
        self, session: Session, *, use_rollups: bool = False, engine: str | None = None
    ) -> None:
        from .._settings import analytics_engine
        from ._engines import check

        self._session = session
        self.use_rollups = use_rollups
        self._engine = check(engine if engine is not None else analytics_engine())

    @property
    def engine(self) -> str:
        """Where calls are computed: ``"auto"``, ``"postgresql"`` or ``"pull"`` (see
        :mod:`flowscope.analytics._engines`); ``frame.attrs["engine"]`` says which answered."""
        return self._engine

    def using(self, engine: str) -> Analytics:
        """The same analytics, computed by ``engine`` (``"auto"``, ``"postgresql"``: all in
        the database, or ``"pull"``: the needed columns streamed as Arrow, DuckDB in-process).
        A mirror's analytics always answer from the mirror.

        Example:
            >>> pulled = client.analytics.using("pull").tags()
            >>> exact = client.analytics.using("postgresql").tags()
            >>> pulled.attrs["engine"], exact.attrs["engine"], len(pulled) == len(exact)
            ('pull', 'postgresql', True)
        """
        import copy

        from ._engines import check

        clone = copy.copy(self)
        clone._engine = check(engine)
        return clone

    def __repr__(self) -> str:
        return f"<flowscope.Analytics of {self._session!r}>"

    @property
    def arrow(self) -> _Twin:
        """The same methods, returning ``pyarrow.Table`` (the frame's index as columns,
        ``attrs`` in the schema metadata under ``flowscope.attrs``).

        Example:
            >>> table = client.analytics.arrow.durations(by="workflow")
            >>> table.num_rows, table.schema.field("p50_seconds").type
            (182, DataType(double))
        """
        from .._frames import frame_to_arrow

        return _Twin(self, frame_to_arrow, "pyarrow.Table")

    @property
    def polars(self) -> _Twin:
        """The same methods, returning ``polars.DataFrame`` (through Arrow, without a second
        copy; needs ``pip install 'flowscope[polars]'``).

        Example:
            >>> client.analytics.polars.status_breakdown(by="workflow").shape
            (182, 10)
        """
        from .._frames import frame_to_arrow, require_polars, to_polars

        require_polars()
        return _Twin(self, lambda frame: to_polars(frame_to_arrow(frame)), "polars.DataFrame")

    # -- distributions -----------------------------------------------------------------
    def durations(
        self,
        filter: ExecutionFilter | None = None,
        /,
        *,
        by: str | Sequence[str] | None = None,
        freq: str | None = None,
        percentiles: Sequence[float] = DEFAULT_PERCENTILES,
        use_rollups: bool | None = None,
        **filter_fields: Any,
    ) -> pd.DataFrame:
        """Run-time statistics of ``duration_seconds`` per group (and per bucket with ``freq``).

        Columns: the ``by`` keys, ``bucket`` (with ``freq``), ``executions``
        (Int64: rows in the group), ``count`` (Int64: rows with a duration),
        ``mean_seconds``, ``min_seconds``, ``max_seconds`` and one
        ``p<q>_seconds`` per percentile (``p50_seconds``, ``p99_9_seconds``…),
        Float64, NA when no row has a duration. Percentiles are exact
        (``percentile_cont``) unless answered from rollups (``use_rollups``),
        where they come from a 1%-accurate log-bucket sketch.

        Example (the demo's regression: version 3 of ``wf_demo_0008`` runs slower):

            >>> frame = client.analytics.durations(
            ...     by="workflow_version", workflow_ids=["wf_demo_0008"], since="2026-06-09",
            ...     percentiles=(0.5, 0.99))
            >>> frame[["workflow_version", "executions", "p50_seconds", "p99_seconds"]].round(1)
              workflow_version  executions  p50_seconds  p99_seconds
            0                2           7         73.6         84.8
            1                3           3        128.2        135.9
        """
        flt = _base.as_filter(filter, filter_fields)
        keys = _base.parse_by(by)
        fq = _base.parse_freq(freq)
        if self._rollups(use_rollups):
            from . import rollups

            return rollups.durations(self._session, flt, keys, fq, percentiles)
        from .durations import durations_query

        return self._run(durations_query(flt, keys, fq, percentiles))

    def queue_wait(
        self,
        filter: ExecutionFilter | None = None,
        /,
        *,
        by: str | Sequence[str] | None = None,
        freq: str | None = None,
        percentiles: Sequence[float] = DEFAULT_PERCENTILES,
        **filter_fields: Any,
    ) -> pd.DataFrame:
        """Time spent queued (``started_at - created_at``), kept apart from run time.

        Columns: the ``by`` keys, ``bucket`` (with ``freq``), ``executions``,
        ``started`` (Int64: rows with ``started_at``), ``mean_wait_seconds``,
        ``min_wait_seconds``, ``max_wait_seconds``, ``p<q>_wait_seconds``.

        Example:
            >>> frame = client.analytics.queue_wait(by="organization_id", since="2026-06-23")
            >>> frame[["organization_id", "started", "p50_wait_seconds"]].round(2)
                organization_id  started  p50_wait_seconds
            0     org_demo_acme       59              1.32
            1   org_demo_globex       32              1.17
            2  org_demo_initech       59              1.88
        """
        from .durations import queue_wait_query

        flt = _base.as_filter(filter, filter_fields)
        query = queue_wait_query(flt, _base.parse_by(by), _base.parse_freq(freq), percentiles)
        return self._run(query)

    # -- statuses ----------------------------------------------------------------------
    def status_breakdown(
        self,
        filter: ExecutionFilter | None = None,
        /,
        *,
        by: str | Sequence[str] | None = None,
        freq: str | None = None,
        normalize: bool = False,
        use_rollups: bool | None = None,
        **filter_fields: Any,
    ) -> pd.DataFrame:
        """Executions per status: one column per status (all six), totals and rates.

        Columns: the ``by`` keys, ``bucket`` (with ``freq``), ``queued``,
        ``running``, ``completed``, ``failed``, ``cancelled``, ``timeout`` (Int64
        counts, or Float64 shares of ``total`` with ``normalize=True``), ``total``
        (Int64), ``success_rate`` (completed / finished) and ``failure_rate``
        ((failed + timeout) / finished), Float64, NA when nothing finished.

        Example:
            >>> frame = client.analytics.status_breakdown(by="organization_id", since="2026-06-01")
            >>> frame[["organization_id", "completed", "failed", "total", "failure_rate"]].round(3)
                organization_id  completed  failed  total  failure_rate
            0     org_demo_acme        179       9    188         0.048
            1   org_demo_globex        137       5    144         0.035
            2  org_demo_initech        207      11    221          0.05
            >>> frame = client.analytics.status_breakdown(freq="1D", normalize=True, since="2026-06-27")
            >>> frame[["bucket", "completed", "failed", "total"]]
                                 bucket  completed   failed  total
            0 2026-06-27 00:00:00+00:00      0.875      0.0      8
            1 2026-06-28 00:00:00+00:00        1.0      0.0      7
            2 2026-06-29 00:00:00+00:00     0.8125  0.09375     32
        """
        flt = _base.as_filter(filter, filter_fields)
        keys = _base.parse_by(by)
        fq = _base.parse_freq(freq)
        if self._rollups(use_rollups):
            from . import rollups

            return rollups.status_breakdown(self._session, flt, keys, fq, bool(normalize))
        from .status import status_query

        return self._run(status_query(flt, keys, fq, bool(normalize)))

    # -- tags --------------------------------------------------------------------------
    def tags(self, filter: ExecutionFilter | None = None, /, **filter_fields: Any) -> pd.DataFrame:
        """Per tag: ``workflows``, ``executions``, ``completed``, ``failed`` (failed +
        timeout), ``finished``, ``failure_rate``, ``p50_seconds``, ``p95_seconds``.

        An execution counts under every tag of its workflow; executions of
        untagged workflows are not in the result. Sorted by executions, descending.

        Example:
            >>> frame = client.analytics.tags(since="2026-06-01")
            >>> frame[["tag", "workflows", "executions", "failure_rate"]].head(3).round(3)
                    tag  workflows  executions  failure_rate
            0    hourly         38         307         0.049
            1  pipeline         54         213         0.061
            2        ml         24         157         0.038
        """
        from .tags import tags_query

        return self._run(tags_query(_base.as_filter(filter, filter_fields)))

    def tag_pairs(
        self, filter: ExecutionFilter | None = None, /, **filter_fields: Any
    ) -> pd.DataFrame:
        """Tag co-occurrence: per pair of tags on the same workflow (``tag_a < tag_b``), the
        counts of :meth:`tags` over the executions of workflows carrying both.

        Example:
            >>> client.analytics.tag_pairs()[["tag_a", "tag_b", "workflows", "executions"]].head(3)
                   tag_a     tag_b  workflows  executions
            0     hourly  pipeline         25         539
            1     hourly        ml         11         331
            2  analytics  pipeline          9         255
        """
        from .tags import tag_pairs_query

        return self._run(tag_pairs_query(_base.as_filter(filter, filter_fields)))

    # -- time lines --------------------------------------------------------------------
    def throughput(
        self,
        filter: ExecutionFilter | None = None,
        /,
        *,
        freq: str = "1D",
        by: str | Sequence[str] | None = None,
        use_rollups: bool | None = None,
        **filter_fields: Any,
    ) -> pd.DataFrame:
        """Executions ``created``, ``started`` and ``finished`` (``completed_at``) per bucket.

        Each is counted in the bucket of its own timestamp (the filter's
        ``since``/``until`` select executions by ``created_at``). Columns: the
        ``by`` keys, ``bucket``, ``created``, ``started``, ``finished`` (Int64).

        Example:
            >>> client.analytics.throughput(freq="1D", since="2026-06-24")
                                 bucket  created  started  finished
            0 2026-06-24 00:00:00+00:00       26       26        26
            1 2026-06-25 00:00:00+00:00       33       33        33
            2 2026-06-26 00:00:00+00:00       25       25        25
            3 2026-06-27 00:00:00+00:00        8        8         8
            4 2026-06-28 00:00:00+00:00        7        7         7
            5 2026-06-29 00:00:00+00:00       32       31        29
        """
        flt = _base.as_filter(filter, filter_fields)
        keys = _base.parse_by(by)
        fq = _base.parse_freq(freq)
        if fq is None:
            raise ValidationError("throughput() needs a freq such as '1h' or '1D'")
        if self._rollups(use_rollups):
            from . import rollups

            return rollups.throughput(self._session, flt, keys, fq)
        from .timeline import throughput_query

        return self._run(throughput_query(flt, keys, fq))

    def concurrency(
        self, filter: ExecutionFilter | None = None, /, *, freq: str = "1h", **filter_fields: Any
    ) -> pd.DataFrame:
        """Running executions over time.

        An execution runs over ``[started_at, completed_at)`` (without
        ``completed_at`` it is still running). Columns: ``bucket``, ``started``,
        ``finished`` (Int64 events in the bucket), ``running`` (running at the
        bucket's start) and ``peak`` (most running at once within the bucket).

        Example (the nightly batches, 01:00-03:00 UTC):

            >>> client.analytics.concurrency(freq="1h", since="2026-06-29 01:00", until="2026-06-29 05:00")
                                 bucket  started  finished  running  peak
            0 2026-06-29 01:00:00+00:00        0         0        0     0
            1 2026-06-29 02:00:00+00:00        3         3        0     2
            2 2026-06-29 03:00:00+00:00        1         1        0     1
            3 2026-06-29 04:00:00+00:00        0         0        0     0
        """
        from .timeline import concurrency_query

        flt = _base.as_filter(filter, filter_fields)
        fq = _base.parse_freq(freq)
        if fq is None:
            raise ValidationError("concurrency() needs a freq such as '1h'")
        return self._run(concurrency_query(flt, fq))

    # -- failures ----------------------------------------------------------------------
    def failures(
        self,
        filter: ExecutionFilter | None = None,
        /,
        *,
        by: str | Sequence[str] | None = None,
        top: int | None = 20,
        **filter_fields: Any,
    ) -> pd.DataFrame:
        """Failed and timed-out executions grouped by error signature, most frequent first.

        Columns: the ``by`` keys, ``error_type``, ``message`` (normalised: UUIDs →
        ``<uuid>``, numbers → ``<n>``), ``executions``, ``failed``, ``timeout``,
        ``workflows`` (Int64), ``first_seen``, ``last_seen`` (created_at, UTC),
        ``current_step`` (the most common step they stopped at),
        ``mean_steps_completed``, ``mean_progress`` (steps_completed /
        steps_total), ``example_id`` (one execution to look at). ``top`` limits
        the rows (None: all).

        Example:
            >>> frame = client.analytics.failures(since="2026-06-01", top=3)
            >>> frame[["error_type", "executions", "workflows"]]
                    error_type  executions  workflows
            0        HTTPError           9          8
            1         KeyError           6          6
            2  ConnectionError           5          5
            >>> frame["message"].tolist()  # doctest: +NORMALIZE_WHITESPACE
            ['<n> Service Unavailable from api.partner.example (attempt <n>/<n>)',
             "missing field 'customer_id' in record <n>",
             'could not connect to warehouse.internal:<n>: connection refused']
        """
        from .failures import failures_query

        if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
            raise ValidationError(f"top must be a positive integer or None, not {top!r}")
        flt = _base.as_filter(filter, filter_fields)
        return self._run(failures_query(flt, _base.parse_by(by), top))

    # -- comparisons -------------------------------------------------------------------
    def compare(
        self,
        filter: ExecutionFilter | None = None,
        /,
        *,
        period: str = "7D",
        by: str | Sequence[str] | None = None,
        **filter_fields: Any,
    ) -> pd.DataFrame:
        """The current period against the previous one of the same length.

        The current period ends at the filter's ``until`` (default: now) and lasts
        ``period`` (``"24h"``, ``"7D"``, ``"2W"``…); ``since`` is not used. One
        row per group and metric (``executions``, ``completed``, ``failed``,
        ``failure_rate``, ``mean_seconds``, ``p50_seconds``, ``p95_seconds``,
        ``mean_wait_seconds``) with ``current``, ``previous``, ``change``
        (current - previous) and ``relative_change`` (change / previous), Float64.
        ``frame.attrs`` holds both periods.

        Example (the week before the demo's ``now`` against the week before that):

            >>> frame = client.analytics.compare(period="7D", until="2026-06-30",
            ...                                  workflow_ids=["wf_demo_0008"])
            >>> frame.round(1)
                          metric  current  previous  change  relative_change
            0         executions      3.0       2.0     1.0              0.5
            1          completed      3.0       2.0     1.0              0.5
            2             failed      0.0       0.0     0.0             <NA>
            3       failure_rate      0.0       0.0     0.0             <NA>
            4       mean_seconds    121.2      71.1    50.0              0.7
            5        p50_seconds    128.2      71.1    57.0              0.8
            6        p95_seconds    135.2      82.1    53.2              0.6
            7  mean_wait_seconds      2.6       4.3    -1.7             -0.4
            >>> frame.attrs["current_period"]
            (datetime.datetime(2026, 6, 23, 0, 0, tzinfo=datetime.timezone.utc), datetime.datetime(2026, 6, 30, 0, 0, tzinfo=datetime.timezone.utc))
        """
        from .._durations import parse_duration
        from .compare import compare_query

        flt = _base.as_filter(filter, filter_fields)
        length = parse_duration(period, name="period")  # a fixed length: no calendar months
        if flt.since is not None:
            raise ValidationError(
                "compare() derives both periods from until and period; drop since"
            )
        end = flt.until or datetime.now(UTC)
        try:  # the previous period starts two periods before the end
            end - 2 * length
        except OverflowError:
            raise ValidationError(
                f"period={period!r} twice back from {end:%Y-%m-%d} reaches before the year 1",
                errors=[{"loc": ("period",), "msg": "reaches before the year 1", "index": None}],
            ) from None
        return self._run(compare_query(flt, _base.parse_by(by), length, end))

    def summary(
        self,
        filter: ExecutionFilter | None = None,
        /,
        *,
        sort: str = "executions",
        descending: bool = True,
        limit: int | None = None,
        **filter_fields: Any,
    ) -> pd.DataFrame:
        """A leaderboard: one row per workflow with matching executions.

        Columns: ``workflow_id``, ``workflow``, ``owner``, ``organization_id`` (of
        the workflow), ``executions``, ``completed``, ``failed``, ``finished``
        (Int64), ``failure_rate``, ``mean_seconds``, ``p50_seconds``,
        ``p95_seconds`` (Float64), ``last_run_at`` (UTC), ``last_status``. Sorted by
        ``sort`` (any of these columns; NAs last), then ``workflow_id``.

        Example:
            >>> frame = client.analytics.summary(limit=3)
            >>> frame[["workflow", "executions", "failed", "failure_rate"]].round(3)
                        workflow  executions  failed  failure_rate
            0  web-events export         203      28         0.138
            1   features scoring         130       3         0.023
            2    payroll scoring          96       2         0.021
        """
        from .summary import summary_query

        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise ValidationError(f"limit must be a positive integer or None, not {limit!r}")
        flt = _base.as_filter(filter, filter_fields)
        return self._run(summary_query(flt, sort, bool(descending), limit))

    # -- rollups -----------------------------------------------------------------------
    def refresh_rollups(self, *, concurrently: bool = True) -> datetime:
        """Refresh the daily rollups and record when; returns that time (UTC).

        ``REFRESH MATERIALIZED VIEW CONCURRENTLY`` by default, so readers are never
        blocked; ``concurrently=False`` rebuilds faster but locks readers out while
        it runs. Needs an unscoped (admin) client (a tenant gets
        :class:`PermissionDeniedError`).

        Example:
            >>> refreshed = client.analytics.refresh_rollups()
            >>> refreshed.tzinfo, client.analytics.rollups_refreshed_at() == refreshed
            (datetime.timezone.utc, True)
            >>> client.analytics.status_breakdown(use_rollups=True)[["completed", "failed", "total"]]
               completed  failed  total
            0       1897      93   2000
        """
        from . import rollups

        return rollups.refresh(self._session, concurrently=concurrently)

    def rollups_refreshed_at(self) -> datetime | None:
        """When the rollups were last refreshed (None: never).

        Example:
            >>> client.analytics.rollups_refreshed_at()   # the time of the last refresh
            datetime.datetime(..., tzinfo=datetime.timezone.utc)
        """
        from . import rollups

        return rollups.refreshed_at(self._session)

    def _run(self, query: _base.Query) -> pd.DataFrame:
        """Where a built query meets an engine (:mod:`._engines`; DuckDB in the mirror's)."""
        from . import _engines

        if _engines.choose(self._session, query, self._engine, rollups=False) == "pull":
            return _engines.pull_run(self._session, query)
        return _base.run(self._session, query)

    def _rollups(self, use_rollups: bool | None) -> bool:
        return self.use_rollups if use_rollups is None else bool(use_rollups)


_FRAME_METHODS = (
    "durations",
    "queue_wait",
    "status_breakdown",
    "tags",
    "tag_pairs",
    "throughput",
    "concurrency",
    "failures",
    "compare",
    "summary",
)


class _Twin:
    """``client.analytics`` with every frame-returning method converted (Arrow, polars)."""

    def __init__(self, analytics: Analytics, convert: Any, kind: str) -> None:
        self._analytics = analytics
        self._convert = convert
        self._kind = kind

    def __repr__(self) -> str:
        return f"<flowscope.Analytics returning {self._kind}>"

    def __dir__(self) -> list[str]:
        return list(_FRAME_METHODS)

    def __getattr__(self, name: str) -> Any:
        if name not in _FRAME_METHODS:
            raise AttributeError(name)
        method = getattr(self._analytics, name)
        convert = self._convert

        def call(*args: Any, **kwargs: Any) -> Any:
            return convert(method(*args, **kwargs))

        call.__name__ = name
        call.__doc__ = method.__doc__
        return call
