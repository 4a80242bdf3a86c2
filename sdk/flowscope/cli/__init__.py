"""The ``flowscope`` command line (typer).

Every command takes the global ``--database-url`` (default: ``FLOWSCOPE_DATABASE_URL``,
then the embedded database in ``--data-dir`` / ``FLOWSCOPE_DATA_DIR``). Errors are
one line on stderr and a non-zero exit status, never a traceback.

Example:
    $ flowscope demo
    $ flowscope db upgrade
    $ flowscope analytics durations --by workflow --since 2026-06-01
    $ flowscope --database-url postgresql://me@db:5432/orchestrator db current
"""

from __future__ import annotations

import enum
import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from ..errors import FlowscopeError

if TYPE_CHECKING:
    import pandas as pd

    from .._client import Client

app = typer.Typer(
    no_args_is_help=True,
    help="Read, write and analyse a flowscope database.",
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(no_args_is_help=True, help="Schema migrations and rollups.")
workflows_app = typer.Typer(no_args_is_help=True, help="Browse workflows.")
executions_app = typer.Typer(no_args_is_help=True, help="Browse executions.")
analytics_app = typer.Typer(
    no_args_is_help=True, help="Analytics over executions, computed in PostgreSQL."
)
users_app = typer.Typer(no_args_is_help=True, help="User accounts.")
mirror_app = typer.Typer(
    no_args_is_help=True, help="The local columnar mirror (Parquet + DuckDB) of readable rows."
)
app.add_typer(db_app, name="db")
app.add_typer(workflows_app, name="workflows")
app.add_typer(executions_app, name="executions")
app.add_typer(analytics_app, name="analytics")
app.add_typer(users_app, name="users")
app.add_typer(mirror_app, name="mirror")

_P = ParamSpec("_P")
_R = TypeVar("_R")


class OutputFormat(enum.StrEnum):
    """How a command prints a table."""

    table = "table"
    csv = "csv"
    json = "json"


@dataclass
class _State:
    database_url: str | None = None
    data_dir: Path | None = None
    traceback: bool = False


# -- global options ----------------------------------------------------------------------
@app.callback()
def _global_options(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="FLOWSCOPE_DATABASE_URL",
            help="PostgreSQL URL. Default: FLOWSCOPE_DATABASE_URL, then the embedded database.",
            show_envvar=False,
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="FLOWSCOPE_DATA_DIR",
            help="Where the embedded database lives (when no URL is given).",
            show_envvar=False,
        ),
    ] = None,
    traceback: Annotated[
        bool, typer.Option("--traceback", hidden=True, help="Show tracebacks (debugging).")
    ] = False,
) -> None:
    """Read, write and analyse a flowscope database."""
    _STATE.database_url = database_url or None
    _STATE.data_dir = data_dir
    _STATE.traceback = traceback


_STATE = _State()  # set by the global options; one command runs per process (or CliRunner call)


def _state() -> _State:
    return _STATE


# Kept for compatibility: ``flowscope db upgrade --database-url URL`` (after the command).
DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="PostgreSQL URL (overrides the global option)."),
]
Format = Annotated[
    OutputFormat,
    typer.Option("--format", "-f", help="Output: an aligned table, CSV or JSON records."),
]
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
    str | None, typer.Option(help="Time buckets (UTC), pandas style: 15min, 1h, 1D, 1W, 1MS.")
]
PeriodEnd = Annotated[
    str | None, typer.Option("--until", help="End of the current period (default: now).")
]
Limit = Annotated[int, typer.Option(help="At most this many rows.")]
After = Annotated[
    str | None, typer.Option(help="Continue after this cursor (from a previous page).")
]
OrderBy = Annotated[
    str | None, typer.Option(help="Sort column, '-' prefixed for descending (e.g. -created_at).")
]


# -- errors ------------------------------------------------------------------------------
def _fail(message: str, code: int = 1) -> None:
    lines = message.strip().splitlines() or ["failed"]
    typer.secho(f"error: {lines[0]}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=code)


def _command(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn every error into one line on stderr and exit status 1 (130 on Ctrl-C)."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except FlowscopeError as exc:
            if _state().traceback:
                raise
            _fail(str(exc))
        except KeyboardInterrupt:
            _fail("interrupted", code=130)
        except Exception as exc:
            if _state().traceback:
                raise
            _fail(f"unexpected {type(exc).__name__}: {exc} (run with --traceback for details)")
        raise AssertionError("unreachable")  # pragma: no cover

    return wrapper


# -- connections and output ------------------------------------------------------------
def _engine_url(database_url: str | None) -> str:
    from .. import _db, _embedded, _settings

    url = database_url or _state().database_url
    if url:
        return _db.normalize_url(url)
    return _embedded.ensure_database(_state().data_dir or _settings.load().data_dir)


@contextmanager
def _connect(database_url: str | None = None) -> Iterator[Client]:
    import flowscope

    state = _state()
    with flowscope.connect(database_url or state.database_url, data_dir=state.data_dir) as client:
        yield client


def _emit(frame: pd.DataFrame, fmt: OutputFormat, *, title: str | None = None) -> None:
    """Print a DataFrame as an aligned table, CSV or JSON records (UTC ISO times)."""
    if fmt is OutputFormat.csv:
        typer.echo(frame.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ"), nl=False)
    elif fmt is OutputFormat.json:
        typer.echo(frame.to_json(orient="records", date_format="iso", date_unit="ms"))
    else:
        if title:
            typer.secho(title, bold=True)
        if frame.empty:
            typer.echo("(no rows)")
        else:
            typer.echo(_table_text(frame))


def _table_text(frame: pd.DataFrame) -> str:
    import pandas as pd

    shown = frame.copy()
    for name in shown.columns:
        column = shown[name]
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            shown[name] = column.dt.strftime("%Y-%m-%d %H:%M:%S").astype("string")
        elif pd.api.types.is_float_dtype(column.dtype):
            shown[name] = column.round(3)
    with pd.option_context("display.width", 200, "display.max_columns", 40):
        return shown.to_string(index=False, na_rep="-")


def _parse_time(value: str | None, option: str) -> datetime | None:
    from ..errors import ValidationError
    from ..filters import to_utc

    try:
        return to_utc(value)
    except ValueError as exc:
        raise ValidationError(f"{option}: {exc}") from exc


# -- db ----------------------------------------------------------------------------------
@db_app.command("upgrade")
@_command
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    database_url: DatabaseUrl = None,
) -> None:
    """Migrate the database up to REVISION (default: head)."""
    from .. import _db, _migrate

    url = _engine_url(database_url)
    engine = _db.create_engine(url)
    try:
        with _db.translating(url), engine.connect() as conn:
            _migrate.upgrade(conn, revision)
            conn.commit()
            typer.echo(f"database at revision {_migrate.current_revision(conn)}")
    finally:
        engine.dispose()


@db_app.command("downgrade")
@_command
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Migrate the database down to REVISION."""
    from .. import _db, _migrate

    url = _engine_url(database_url)
    engine = _db.create_engine(url)
    try:
        with _db.translating(url), engine.connect() as conn:
            _migrate.downgrade(conn, revision)
            conn.commit()
            typer.echo(f"database at revision {_migrate.current_revision(conn) or 'base'}")
    finally:
        engine.dispose()


@db_app.command("current")
@_command
def db_current(database_url: DatabaseUrl = None) -> None:
    """Print the database's revision and the latest one this flowscope knows."""
    from .. import _db, _migrate

    url = _engine_url(database_url)
    engine = _db.create_engine(url)
    try:
        with _db.translating(url), engine.connect() as conn:
            current = _migrate.current_revision(conn)
        typer.echo(f"current: {current or 'base'}  head: {_migrate.head_revision()}")
    finally:
        engine.dispose()


@db_app.command("maintain")
@_command
def db_maintain(
    months_ahead: Annotated[
        int, typer.Option(help="Create audit-log partitions this many months ahead.")
    ] = 3,
    retention_months: Annotated[
        int | None,
        typer.Option(help="Drop audit-log months older than this many months (default: keep)."),
    ] = None,
    keep_detached: Annotated[
        bool, typer.Option(help="Detach old partitions but keep them as tables.")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Only report what would be done.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Create the coming months' audit-log partitions; retire those past retention."""
    with _connect(database_url) as client:
        report = client.maintenance.maintain(
            months_ahead=months_ahead,
            retention_months=retention_months,
            drop=not keep_detached,
            dry_run=dry_run,
        )
    verb = "would " if dry_run else ""
    typer.echo(f"{verb}create: {', '.join(report.created) or '-'}")
    typer.echo(f"{verb}{'detach' if keep_detached else 'drop'}: {', '.join(report.dropped) or '-'}")
    if report.moved_from_default or report.deleted_from_default:
        typer.echo(
            f"rows moved from default partition: {report.moved_from_default},"
            f" deleted past retention: {report.deleted_from_default}"
        )


@app.command("prune")
@_command
def prune(
    table: Annotated[str, typer.Argument(help="Table to prune.")] = "executions",
    older_than: Annotated[
        str, typer.Option(help="Age of rows to prune: 90D, 12H, 2W, 30M (minutes), 45S.")
    ] = "90D",
    archive_to: Annotated[
        str, typer.Option(help="Directory for the Parquet archive and its manifest.")
    ] = "",
    batch_size: Annotated[int, typer.Option(help="Rows per batch/file/transaction.")] = 10_000,
    dry_run: Annotated[bool, typer.Option(help="Only count what would be pruned.")] = False,
    vacuum: Annotated[bool, typer.Option(help="VACUUM (ANALYZE) the table afterwards.")] = True,
    database_url: DatabaseUrl = None,
) -> None:
    """Archive rows older than --older-than to Parquet, then delete them (resumable)."""
    from ..errors import ValidationError

    if not archive_to and not dry_run:
        raise ValidationError("--archive-to is required (unless --dry-run)")
    with _connect(database_url) as client:
        report = client.retention.prune(
            table,
            older_than=older_than,
            archive_to=archive_to or ".",
            batch_size=batch_size,
            dry_run=dry_run,
            vacuum=vacuum,
        )
    what = "would prune" if dry_run else "pruned"
    resumed = " (resumed an interrupted run)" if report.resumed else ""
    typer.echo(
        f"{what} {report.rows} {table} rows created before {report.cutoff.isoformat()}"
        f" in {report.batches} batches{resumed} ({report.seconds:.1f} s)"
    )


# -- demo --------------------------------------------------------------------------------
@app.command("demo")
@_command
def demo(
    workflows: Annotated[int, typer.Option(help="How many workflows.")] = 200,
    executions: Annotated[int, typer.Option(help="How many executions.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same data.")] = 0,
    now: Annotated[
        str | None,
        typer.Option(help="Reference time (ISO 8601, UTC if naive). Default: 2026-06-30T00:00Z."),
    ] = None,
    days: Annotated[int, typer.Option(help="How many days of history.")] = 120,
    replace: Annotated[
        bool, typer.Option("--replace", help="Reload demo data made with other arguments.")
    ] = False,
    tables: Annotated[
        bool, typer.Option("--tables/--no-tables", help="Print analytics tables afterwards.")
    ] = True,
    database_url: DatabaseUrl = None,
) -> None:
    """Load realistic demo data (idempotent) and print a few analytics tables."""
    from .. import demo as demo_data

    moment = _parse_time(now, "--now") or demo_data.DEMO_NOW
    demo_data._check_arguments(workflows, executions, seed, moment, days)  # before connecting
    with _connect(database_url) as client:
        where = "the embedded database" if client.embedded else _describe(client)
        typer.echo(f"flowscope demo on {where}")
        info = demo_data.generate(
            client,
            workflows=workflows,
            executions=executions,
            seed=seed,
            now=moment,
            days=days,
            replace=replace,
            progress=sys.stderr.isatty(),
        )
        verb = f"loaded in {info.seconds:.1f} s" if info.created else "already loaded, unchanged"
        typer.echo(f"{info} ({verb})")
        if tables:
            _demo_tables(client, info)


def _describe(client: Client) -> str:
    from .. import _db

    return _db.describe_host(client.url)


def _demo_tables(client: Client, info: Any) -> None:
    """A first look at the demo data through the analytics calls."""
    analytics = client.analytics
    typer.echo("")
    status = analytics.status_breakdown(by="organization_id")
    _emit(
        status[["organization_id", "total", "completed", "failed", "timeout", "failure_rate"]],
        OutputFormat.table,
        title="How runs end, per organization  (flowscope analytics status --by organization_id)",
    )
    typer.echo("")
    board = analytics.summary(sort="executions", limit=5)
    _emit(
        board[["workflow", "executions", "failure_rate", "p50_seconds", "p95_seconds"]],
        OutputFormat.table,
        title="Busiest workflows  (flowscope analytics summary)",
    )
    typer.echo("")
    failures = analytics.failures(top=5)
    _emit(
        failures[["error_type", "message", "executions", "workflows", "current_step"]],
        OutputFormat.table,
        title="Top failure signatures  (flowscope analytics failures)",
    )
    typer.echo("")
    change = analytics.compare(period="7D", by="workflow", until=info.now)
    runs = change[change.metric == "executions"].set_index("workflow")["current"]
    p50 = change[change.metric == "p50_seconds"].set_index("workflow")
    p50 = p50[runs.reindex(p50.index) >= 20].sort_values("relative_change", ascending=False)
    slower = p50.head(3).reset_index()[["workflow", "previous", "current", "relative_change"]]
    _emit(
        slower.rename(
            columns={"previous": "p50_before", "current": "p50_now", "relative_change": "change"}
        ),
        OutputFormat.table,
        title="Slower than the week before  (flowscope analytics compare --by workflow)",
    )
    typer.echo("")
    typer.echo(
        "next: flowscope analytics durations --by workflow_version "
        f"--workflow {info.regression_workflow_id}   (and the notebooks in notebooks/)"
    )


# -- shared pieces of the resource and analytics commands ----------------------------
def _execution_filter(
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
    from ..filters import ExecutionFilter, coerce_filter

    return coerce_filter(
        ExecutionFilter,
        since=_parse_time(since, "--since"),
        until=_parse_time(until, "--until"),
        workflow_ids=workflow or None,
        status=status or None,
        organization_id=organization or None,
        owner=owner or None,
        tags_all=tag or None,
        tags_any=any_tag or None,
    )


# The shared execution filter of the list, analytics and export commands: one definition of
# each option (name, short flag, help), injected into each command's signature.
_FILTER_OPTIONS: dict[str, Any] = {
    "since": Since,
    "until": Until,
    "workflow": Workflow,
    "status": Status,
    "organization": Organization,
    "owner": Owner,
    "tag": Tag,
    "any_tag": AnyTag,
}
_TRAILING = ("fmt", "database_url")  # injected options go before these


def _with_filter_options(
    *, omit: tuple[str, ...] = (), replace: dict[str, Any] | None = None
) -> Callable[[Callable[..., _R]], Callable[..., _R]]:
    """Give a command the shared filter options (``--since``, ``--until``, ``--workflow``,
    ``--status``, ``--organization``, ``--owner``, ``--tag``, ``--any-tag``) minus ``omit``
    (``replace`` swaps an option's annotation, e.g. for another help text). The command
    declares a parameter ``filters`` and receives the options' values as a dict; typer sees
    them as ordinary options."""
    import inspect
    import typing

    names = [n for n in _FILTER_OPTIONS if n not in omit]
    options = {**_FILTER_OPTIONS, **(replace or {})}

    def decorate(fn: Callable[..., _R]) -> Callable[..., _R]:
        hints = typing.get_type_hints(fn, include_extras=True)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(fn).parameters.values()
            if p.name != "filters"
        ]
        injected = [
            inspect.Parameter(
                n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=options[n]
            )
            for n in names
        ]
        params = [
            *(p for p in own if p.name not in _TRAILING),
            *injected,
            *(p for p in own if p.name in _TRAILING),
        ]

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> _R:
            filters = {n: kwargs.pop(n) for n in names}
            return fn(filters=filters, **kwargs)

        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate


def _split(values: list[str] | None) -> list[str] | None:
    """``--by a --by b`` and ``--by a,b`` alike."""
    if not values:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _page_frame(items: list[Any], columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    from .._display import summarize

    records = []
    for item in items:
        data = item.model_dump()
        records.append(
            {
                c: (
                    data.get(c)
                    if data.get(c) is None or isinstance(data.get(c), str | int | float | datetime)
                    else summarize(data.get(c), width=60)
                )
                for c in columns
            }
        )
    frame = pd.DataFrame.from_records(records, columns=columns)
    for c in columns:
        if frame[c].dtype == object and not frame[c].map(lambda v: isinstance(v, datetime)).any():
            frame[c] = frame[c].astype("string")
        elif frame[c].dtype == object:
            frame[c] = pd.to_datetime(frame[c], utc=True)
    return frame


def _emit_page(page: Any, columns: list[str], fmt: OutputFormat) -> None:
    _emit(_page_frame(page.items, columns), fmt)
    if page.has_more:
        typer.echo(f"more rows: add --after {page.next_cursor}", err=True)


def _emit_record(item: Any, fmt: OutputFormat) -> None:
    from .._display import summarize

    if fmt is OutputFormat.json:
        typer.echo(item.model_dump_json())
        return
    data = item.model_dump()
    if fmt is OutputFormat.csv:
        import pandas as pd

        frame = pd.DataFrame(
            {"field": list(data), "value": [summarize(v, width=10_000) for v in data.values()]}
        )
        _emit(frame, fmt)
        return
    width = max(len(k) for k in data)
    for key, value in data.items():
        typer.echo(f"{key:<{width}}  {summarize(value, width=100)}")


# -- workflows ---------------------------------------------------------------------------
_WORKFLOW_COLUMNS = ["id", "name", "status", "version", "owner", "organization_id", "tags"]


@workflows_app.command("list")
@_command
def workflows_list(
    owner: Owner = None,
    organization: Organization = None,
    status: Status = None,
    tag: Tag = None,
    any_tag: AnyTag = None,
    search: Annotated[
        str | None, typer.Option(help="Full-text search in name and description.")
    ] = None,
    include_deleted: Annotated[bool, typer.Option(help="Include soft-deleted workflows.")] = False,
    order_by: OrderBy = None,
    limit: Limit = 20,
    after: After = None,
    fmt: Format = OutputFormat.table,
    database_url: DatabaseUrl = None,
) -> None:
    """List workflows (newest first), one page at a time."""
    with _connect(database_url) as client:
        page = client.workflows.list(
            order_by=order_by,
            limit=limit,
            after=after,
            owner=owner or None,
            organization_id=organization or None,
            status=status or None,
            tags_all=tag or None,
            tags_any=any_tag or None,
            search=search,
            include_deleted=include_deleted or None,
        )
        _emit_page(page, _WORKFLOW_COLUMNS, fmt)


@workflows_app.command("show")
@_command
def workflows_show(
    workflow_id: Annotated[str, typer.Argument(help="The workflow's id.")],
    fmt: Format = OutputFormat.table,
    database_url: DatabaseUrl = None,
) -> None:
    """Show one workflow (its graph summarised; --format json for everything)."""
    with _connect(database_url) as client:
        workflow = client.workflows.get(workflow_id)
    _emit_record(workflow, fmt)
    if fmt is OutputFormat.table and workflow.nodes:
        steps = " → ".join(str(n.get("name", n.get("id", "?"))) for n in workflow.nodes)
        typer.echo(f"{'steps':<{len('organization_id')}}  {steps}")


# -- executions --------------------------------------------------------------------------
_EXECUTION_COLUMNS = [
    "id",
    "workflow_id",
    "status",
    "created_at",
    "duration_seconds",
    "current_step",
    "steps_completed",
    "steps_total",
]


@executions_app.command("list")
@_command
@_with_filter_options()
def executions_list(
    order_by: OrderBy = None,
    limit: Limit = 20,
    after: After = None,
    fmt: Format = OutputFormat.table,
    database_url: DatabaseUrl = None,
    *,
    filters: dict[str, Any],
) -> None:
    """List executions (newest first), one page at a time."""
    flt = _execution_filter(**filters)
    with _connect(database_url) as client:
        page = client.executions.list(flt, order_by=order_by, limit=limit, after=after)
        _emit_page(page, _EXECUTION_COLUMNS, fmt)


@executions_app.command("show")
@_command
def executions_show(
    execution_id: Annotated[str, typer.Argument(help="The execution's id.")],
    fmt: Format = OutputFormat.table,
    database_url: DatabaseUrl = None,
) -> None:
    """Show one execution."""
    with _connect(database_url) as client:
        execution = client.executions.get(execution_id)
    _emit_record(execution, fmt)


# -- analytics ---------------------------------------------------------------------------
@analytics_app.command("durations")
@_command
@_with_filter_options()
def analytics_durations(
    by: By = None,
    freq: Freq = None,
    percentiles: Annotated[
        str, typer.Option(help="Comma-separated quantiles between 0 and 1.")
    ] = "0.5,0.9,0.95,0.99",
    fmt: Format = OutputFormat.table,
    database_url: DatabaseUrl = None,
    *,
    filters: dict[str, Any],
) -> None:
    """Duration percentiles (seconds) per group and/or time bucket."""
    from ..errors import ValidationError

    try:
        qs = tuple(float(q) for q in percentiles.split(",") if q.strip())
    except ValueError as exc:
        raise ValidationError(f"--percentiles: not a list of numbers: {percentiles!r}") from exc
    flt = _execution_filter(**filters)
    with _connect(database_url) as client:
        frame = client.analytics.durations(flt, by=_split(by), freq=freq, percentiles=qs)
    _emit(frame, fmt)


@analytics_app.command("status")
@_command
@_with_filter_options()
def analytics_status(
    by: By = None,
    freq: Freq = None,
    normalize: Annotated[bool, typer.Option(help="Shares of the total instead of counts.")] = False,
    fmt: Format = OutputFormat.table,
    database_url: DatabaseUrl = None,
    *,
    filters: dict[str, Any],
) -> None:
    """Executions per status, with success and failure rates."""
    flt = _execution_filter(**filters)
    with _connect(database_url) as client:
        frame = client.analytics.status_breakdown(
            flt, by=_split(by), freq=freq, normalize=normalize
        )
    _emit(frame, fmt)


@analytics_app.command("tags")
@_command
@_with_filter_options()
def analytics_tags(
    pairs: Annotated[
        bool, typer.Option("--pairs", help="Pairs of tags that occur together.")
    ] = False,
    fmt: Format = OutputFormat.table,
    database_url: DatabaseUrl = None,
    *,
    filters: dict[str, Any],
) -> None:
    """Per tag (or tag pair): workflows, executions, failure rate, p50/p95 duration."""
    flt = _execution_filter(**filters)
    with _connect(database_url) as client:
        frame = client.analytics.tag_pairs(flt) if pairs else client.analytics.tags(flt)
    _emit(frame, fmt)


@analytics_app.command("failures")
@_command
@_with_filter_options(omit=("status",))
def analytics_failures(
    by: By = None,
    top: Annotated[int, typer.Option(help="The most frequent signatures (per group).")] = 20,
    fmt: Format = OutputFormat.table,
    database_url: DatabaseUrl = None,
    *,
    filters: dict[str, Any],
) -> None:
    """Failures grouped by error signature, with where they stopped."""
    flt = _execution_filter(**filters)
    with _connect(database_url) as client:
        frame = client.analytics.failures(flt, by=_split(by), top=top)
    _emit(frame, fmt)


@analytics_app.command("compare")
@_command
@_with_filter_options(omit=("since",), replace={"until": PeriodEnd})
def analytics_compare(
    period: Annotated[str, typer.Option(help="Length of each period: 24h, 7D, 2W…")] = "7D",
    by: By = None,
    fmt: Format = OutputFormat.table,
    database_url: DatabaseUrl = None,
    *,
    filters: dict[str, Any],
) -> None:
    """The current period against the previous one: each metric, its previous value, the change."""
    flt = _execution_filter(**filters)
    with _connect(database_url) as client:
        frame = client.analytics.compare(flt, period=period, by=_split(by))
    _emit(frame, fmt)


@analytics_app.command("summary")
@_command
@_with_filter_options()
def analytics_summary(
    sort: Annotated[str, typer.Option(help="Sort by this column (descending).")] = "executions",
    ascending: Annotated[bool, typer.Option(help="Sort ascending instead.")] = False,
    limit: Annotated[int | None, typer.Option(help="At most this many workflows.")] = 20,
    fmt: Format = OutputFormat.table,
    database_url: DatabaseUrl = None,
    *,
    filters: dict[str, Any],
) -> None:
    """The leaderboard: one row per workflow (runs, failure rate, p50/p95, last run)."""
    flt = _execution_filter(**filters)
    with _connect(database_url) as client:
        frame = client.analytics.summary(flt, sort=sort, descending=not ascending, limit=limit)
    _emit(frame, fmt)


Concurrently = Annotated[
    bool,
    typer.Option(
        help="Keep the rollups readable while refreshing (slower); --no-concurrently locks."
    ),
]


@db_app.command("refresh-rollups")
@_command
def db_refresh_rollups(concurrently: Concurrently = True, database_url: DatabaseUrl = None) -> None:
    """Refresh the daily analytics rollups (materialized views) and record when."""
    with _connect(database_url) as client:
        refreshed = client.analytics.refresh_rollups(concurrently=concurrently)
    typer.echo(f"rollups refreshed at {refreshed.isoformat()}")


@analytics_app.command("refresh")
@_command
def analytics_refresh(concurrently: Concurrently = True, database_url: DatabaseUrl = None) -> None:
    """Refresh the daily analytics rollups (same as: flowscope db refresh-rollups)."""
    db_refresh_rollups(concurrently=concurrently, database_url=database_url)


# -- mirror ----------------------------------------------------------------------------
@mirror_app.command("sync")
@_command
def mirror_sync(
    path: Annotated[
        str | None, typer.Option(help="Mirror directory (default: under the data directory).")
    ] = None,
    full: Annotated[bool, typer.Option(help="Copy everything again.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    database_url: DatabaseUrl = None,
) -> None:
    """Bring the local mirror up to date (inserts, updates and deletes since the last sync)."""
    with _connect(database_url) as client:
        mirror = client.mirror(path)
        report = mirror.sync(full=full, progress=progress)
    typer.echo(
        f"{mirror.path}: {'full copy' if report.full else 'incremental'}, {report.added:,} added,"
        f" {report.changed:,} changed, {report.removed:,} removed in {report.seconds:.2f} s;"
        f" as of {report.as_of.isoformat()}"
        f" ({', '.join(f'{n} {r:,}' for n, r in report.rows.items())})"
    )


# -- export ----------------------------------------------------------------------------
@app.command("export")
@_command
@_with_filter_options()
def export_command(
    table: Annotated[
        str, typer.Argument(help="executions, workflows, users, organizations or audit_log.")
    ],
    path: Annotated[str, typer.Argument(help="Parquet file, or dataset directory.")],
    column: Annotated[list[str] | None, typer.Option(help="Only these columns.")] = None,
    flatten: Annotated[
        list[str] | None, typer.Option(help="JSON key to a column, e.g. parameters.lr")
    ] = None,
    partition_by: Annotated[
        list[str] | None, typer.Option(help="day and/or organization_id.")
    ] = None,
    compression: Annotated[str, typer.Option(help="zstd, snappy, gzip, none.")] = "zstd",
    incremental: Annotated[
        bool, typer.Option(help="Append rows newer than the dataset's high-water mark.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    database_url: DatabaseUrl = None,
    *,
    filters: dict[str, Any],
) -> None:
    """Export TABLE (optionally filtered) to Parquet at PATH, streaming and atomically.

    The filter options are those of `executions list` and `analytics`; for workflows,
    --since/--until bound created_at and --workflow picks ids.

    Example: flowscope export executions runs.parquet --status failed --since 2026-06-01
    """
    from ..errors import ValidationError

    flt: Any = None
    if table == "executions":
        flt = _execution_filter(**filters)
    elif table == "workflows":
        from ..filters import WorkflowFilter, coerce_filter

        flt = coerce_filter(
            WorkflowFilter,
            ids=filters["workflow"] or None,
            status=filters["status"] or None,
            created_after=_parse_time(filters["since"], "--since"),
            created_before=_parse_time(filters["until"], "--until"),
            owner=filters["owner"] or None,
            organization_id=filters["organization"] or None,
            tags_all=filters["tag"] or None,
            tags_any=filters["any_tag"] or None,
        )
    elif any(filters.values()):
        raise ValidationError(f"{table} takes no filters")
    with _connect(database_url) as client:
        result = client.export.parquet(
            table,
            path,
            flt,
            columns=column or None,
            flatten=flatten or None,
            partition_by=partition_by or None,
            compression=compression,
            incremental=incremental,
            progress=progress,
        )
    typer.echo(
        f"exported {result.rows:,} rows to {len(result.files)} file(s),"
        f" {result.bytes:,} bytes in {result.seconds:.2f} s"
    )


# -- users -------------------------------------------------------------------------------
Password = Annotated[
    str,
    typer.Option(
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        help="The password (prompted for, unless given).",
    ),
]


@users_app.command("create")
@_command
def users_create(
    username: Annotated[str, typer.Argument(help="Unique user name.")],
    email: Annotated[str, typer.Option(help="Unique e-mail address.")],
    password: Password,
    full_name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    organization: Annotated[
        str | None, typer.Option("--organization", "-o", help="Organization id.")
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an administrator.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a user account (the password is stored as an argon2id hash)."""
    with _connect(database_url) as client:
        user = client.users.create(
            username=username,
            email=email,
            password=password,
            full_name=full_name,
            organization_id=organization,
            is_admin=admin,
        )
    typer.echo(f"created user {user.username} ({user.id})")


@users_app.command("set-password")
@_command
def users_set_password(
    user: Annotated[str, typer.Argument(help="User name or id.")],
    password: Password,
    database_url: DatabaseUrl = None,
) -> None:
    """Set a user's password (also unlocks the account)."""
    from ..errors import NotFoundError

    with _connect(database_url) as client:
        try:
            found = client.users.get_by_username(user)
        except NotFoundError:
            found = client.users.get(user)
        client.users.set_password(found.id, password)
    typer.echo(f"password set for {found.username} ({found.id})")


def main() -> None:
    """Entry point of the ``flowscope`` console script."""
    try:
        app()
    except FlowscopeError as exc:  # pragma: no cover - commands catch their own
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(1)
