"""The options several commands share, each defined once: the execution filter of the
list, analytics and export commands, paging, grouping, and the duration options (checked
with the SDK's one duration syntax, :mod:`flowscope._durations`, before connecting)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar

import typer

from ._app import with_options

_F = TypeVar("_F", bound=Callable[..., Any])

Since = Annotated[
    str | None, typer.Option(help="Only executions created at or after (ISO 8601; naive = UTC).")
]
Until = Annotated[
    str | None, typer.Option(help="Only executions created before (ISO 8601; naive = UTC).")
]
Workflow = Annotated[
    list[str] | None, typer.Option("--workflow", "-w", help="Workflow id (repeatable).")
]
Status = Annotated[list[str] | None, typer.Option("--status", "-s", help="Status (repeatable).")]
Organization = Annotated[
    list[str] | None, typer.Option("--organization", "-o", help="Organization id (repeatable).")
]
Owner = Annotated[list[str] | None, typer.Option("--owner", help="Owner (repeatable).")]
Tag = Annotated[
    list[str] | None,
    typer.Option("--tag", "-t", help="Workflows with ALL these tags (repeatable)."),
]
AnyTag = Annotated[
    list[str] | None,
    typer.Option("--any-tag", help="Workflows with ANY of these tags (repeatable)."),
]
By = Annotated[
    list[str] | None,
    typer.Option(
        "--by",
        "-b",
        help="Group by: workflow, workflow_id, owner, organization_id, status, tag,"
        " day, workflow_version (repeatable or comma-separated).",
    ),
]
Freq = Annotated[
    str | None,
    typer.Option(help="Time buckets (UTC), pandas offset aliases: 15min, 1h, 1D, 1W, 1MS."),
]
Limit = Annotated[int, typer.Option(help="At most this many rows.")]
After = Annotated[
    str | None, typer.Option(help="Continue after this cursor (from a previous page).")
]
OrderBy = Annotated[
    str | None, typer.Option(help="Sort column, '-' prefixed for descending (e.g. -created_at).")
]

# The shared execution filter: option name → its one definition.
FILTER_OPTIONS: dict[str, Any] = {
    "since": Since,
    "until": Until,
    "workflow": Workflow,
    "status": Status,
    "organization": Organization,
    "owner": Owner,
    "tag": Tag,
    "any_tag": AnyTag,
}


def with_filters(
    *, omit: tuple[str, ...] = (), replace: Mapping[str, Any] | None = None
) -> Callable[[_F], _F]:
    """Give a command the shared filter options (``--since``, ``--until``, ``--workflow``,
    ``--status``, ``--organization``, ``--owner``, ``--tag``, ``--any-tag``) minus ``omit``
    (``replace`` swaps an option's definition, e.g. for another help text). The command
    declares a keyword-only ``filters`` and receives the options' values as a dict."""
    options = {n: {**FILTER_OPTIONS, **(replace or {})}[n] for n in FILTER_OPTIONS}
    options = {n: a for n, a in options.items() if n not in omit}

    def decorate(fn: _F) -> _F:
        return with_options(fn, options, lambda f, values, kw: f(filters=values, **kw))

    return decorate


def parse_time(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 option as a UTC datetime (naive = UTC), or a ValidationError naming it."""
    from ..errors import ValidationError
    from ..filters import to_utc

    try:
        return to_utc(value)
    except ValueError as exc:
        raise ValidationError(f"{option}: {exc}") from exc


def execution_filter(
    *,
    since: str | None = None,
    until: str | None = None,
    workflow: list[str] | None = None,
    status: list[str] | None = None,
    organization: list[str] | None = None,
    owner: list[str] | None = None,
    tag: list[str] | None = None,
    any_tag: list[str] | None = None,
) -> Any:
    """The SDK's ExecutionFilter of the shared filter options."""
    from ..filters import ExecutionFilter, coerce_filter

    return coerce_filter(
        ExecutionFilter,
        since=parse_time(since, "--since"),
        until=parse_time(until, "--until"),
        workflow_ids=workflow or None,
        status=status or None,
        organization_id=organization or None,
        owner=owner or None,
        tags_all=tag or None,
        tags_any=any_tag or None,
    )


def split(values: list[str] | None) -> list[str] | None:
    """``--by a --by b`` and ``--by a,b`` alike."""
    if not values:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def check_frequency(value: str | None, option: str) -> str | None:
    """Check a frequency option before connecting (the SDK parses it again, the same way)."""
    from .._durations import parse_frequency

    if value is not None:
        parse_frequency(value, name=option)
    return value


def duration(value: str, option: str) -> timedelta:
    """A duration option (``90D``, ``12h``, ``30min``...) as a timedelta, checked before
    connecting; the old spellings (``30M``, ``12H``) fail naming the new ones."""
    from .._durations import parse_duration

    return parse_duration(value, name=option)
