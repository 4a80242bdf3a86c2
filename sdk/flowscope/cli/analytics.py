"""``flowscope analytics``: analytics over executions, computed in PostgreSQL
(``client.analytics``); each command prints the frame of the call of the same name.

``analytics refresh`` is a hidden, deprecated alias of ``db refresh-rollups``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from . import db
from ._app import command, connect, group
from ._filters import (
    By,
    Freq,
    check_frequency,
    duration,
    execution_filter,
    split,
    with_filters,
)
from ._output import Format, OutputFormat, emit

if TYPE_CHECKING:
    import pandas as pd

    from ..analytics import Analytics

app = group("Analytics over executions, computed in PostgreSQL.")


def _print(
    filters: dict[str, Any],
    fmt: OutputFormat,
    call: Callable[[Analytics, Any], pd.DataFrame],
    *,
    freq: str | None = None,
) -> None:
    """Check the options (before connecting), run ``call(client.analytics, filter)``, print."""
    flt = execution_filter(**filters)
    check_frequency(freq, "--freq")
    with connect() as client:
        frame = call(client.analytics, flt)
    emit(frame, fmt)


PeriodEnd = Annotated[
    str | None, typer.Option("--until", help="End of the current period (default: now).")
]


@command(app, "durations")
@with_filters()
def durations(
    by: By = None,
    freq: Freq = None,
    percentiles: Annotated[
        str, typer.Option(help="Comma-separated quantiles between 0 and 1.")
    ] = "0.5,0.9,0.95,0.99",
    fmt: Format = OutputFormat.table,
    *,
    filters: dict[str, Any],
) -> None:
    """Duration percentiles (seconds) per group and/or time bucket."""
    from ..errors import ValidationError

    try:
        qs = tuple(float(q) for q in percentiles.split(",") if q.strip())
    except ValueError as exc:
        raise ValidationError(f"--percentiles: not a list of numbers: {percentiles!r}") from exc
    _print(
        filters,
        fmt,
        lambda a, f: a.durations(f, by=split(by), freq=freq, percentiles=qs),
        freq=freq,
    )


@command(app, "status")
@with_filters()
def status(
    by: By = None,
    freq: Freq = None,
    normalize: Annotated[bool, typer.Option(help="Shares of the total instead of counts.")] = False,
    fmt: Format = OutputFormat.table,
    *,
    filters: dict[str, Any],
) -> None:
    """Executions per status, with success and failure rates."""
    _print(
        filters,
        fmt,
        lambda a, f: a.status_breakdown(f, by=split(by), freq=freq, normalize=normalize),
        freq=freq,
    )


@command(app, "tags")
@with_filters()
def tags(
    pairs: Annotated[
        bool, typer.Option("--pairs", help="Pairs of tags that occur together.")
    ] = False,
    fmt: Format = OutputFormat.table,
    *,
    filters: dict[str, Any],
) -> None:
    """Per tag (or tag pair): workflows, executions, failure rate, p50/p95 duration."""
    _print(filters, fmt, lambda a, f: a.tag_pairs(f) if pairs else a.tags(f))


@command(app, "failures")
@with_filters(omit=("status",))
def failures(
    by: By = None,
    top: Annotated[int, typer.Option(help="The most frequent signatures (per group).")] = 20,
    fmt: Format = OutputFormat.table,
    *,
    filters: dict[str, Any],
) -> None:
    """Failures grouped by error signature, with where they stopped."""
    _print(filters, fmt, lambda a, f: a.failures(f, by=split(by), top=top))


@command(app, "compare")
@with_filters(omit=("since",), replace={"until": PeriodEnd})
def compare(
    period: Annotated[
        str, typer.Option(help="Length of each period, a pandas offset alias: 24h, 7D, 2W.")
    ] = "7D",
    by: By = None,
    fmt: Format = OutputFormat.table,
    *,
    filters: dict[str, Any],
) -> None:
    """The current period against the previous one: each metric, its previous value, the change."""
    duration(period, "--period")  # before connecting
    _print(filters, fmt, lambda a, f: a.compare(f, period=period, by=split(by)))


@command(app, "summary")
@with_filters()
def summary(
    sort: Annotated[str, typer.Option(help="Sort by this column (descending).")] = "executions",
    ascending: Annotated[bool, typer.Option(help="Sort ascending instead.")] = False,
    limit: Annotated[int | None, typer.Option(help="At most this many workflows.")] = 20,
    fmt: Format = OutputFormat.table,
    *,
    filters: dict[str, Any],
) -> None:
    """The leaderboard: one row per workflow (runs, failure rate, p50/p95, last run)."""
    _print(
        filters, fmt, lambda a, f: a.summary(f, sort=sort, descending=not ascending, limit=limit)
    )


# The same command as `flowscope db refresh-rollups` (kept there: the rollups are
# materialized views, refreshed from cron beside `db maintain`, and README documents
# that spelling); this one still works, hidden, and says so.
command(app, "refresh", deprecated="flowscope db refresh-rollups")(db.refresh_rollups)
