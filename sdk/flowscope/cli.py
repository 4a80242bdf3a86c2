"""The ``flowscope`` command line (typer).

Example:
    $ flowscope db upgrade
    $ flowscope demo
    $ flowscope analytics refresh
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from . import FlowscopeError

app = typer.Typer(no_args_is_help=True, help="Read, write and analyse a flowscope database.")
db_app = typer.Typer(no_args_is_help=True, help="Schema migrations.")
app.add_typer(db_app, name="db")
analytics_app = typer.Typer(no_args_is_help=True, help="Analytics rollups.")
app.add_typer(analytics_app, name="analytics")

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="FLOWSCOPE_DATABASE_URL",
        help="PostgreSQL URL; default: the embedded database.",
    ),
]


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=1)


def _engine_url(database_url: str | None) -> str:
    from . import _db, _embedded, _settings

    if database_url:
        return _db.normalize_url(database_url)
    return _embedded.ensure_database(_settings.load().data_dir)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    database_url: DatabaseUrl = None,
) -> None:
    """Migrate the database up to REVISION (default: head)."""
    from . import _db, _migrate

    try:
        url = _engine_url(database_url)
        engine = _db.create_engine(url)
        with _db.translating(url), engine.connect() as conn:
            _migrate.upgrade(conn, revision)
            conn.commit()
            typer.echo(f"database at revision {_migrate.current_revision(conn)}")
    except FlowscopeError as exc:
        _fail(exc)


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Migrate the database down to REVISION."""
    from . import _db, _migrate

    try:
        url = _engine_url(database_url)
        engine = _db.create_engine(url)
        with _db.translating(url), engine.connect() as conn:
            _migrate.downgrade(conn, revision)
            conn.commit()
            typer.echo(f"database at revision {_migrate.current_revision(conn) or 'base'}")
    except FlowscopeError as exc:
        _fail(exc)


@db_app.command("current")
def db_current(database_url: DatabaseUrl = None) -> None:
    """Print the database's revision and the latest one this flowscope knows."""
    from . import _db, _migrate

    try:
        url = _engine_url(database_url)
        engine = _db.create_engine(url)
        with _db.translating(url), engine.connect() as conn:
            current = _migrate.current_revision(conn)
        typer.echo(f"current: {current or 'base'}  head: {_migrate.head_revision()}")
    except FlowscopeError as exc:
        _fail(exc)


@db_app.command("maintain")
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
    import flowscope

    try:
        with flowscope.connect(database_url) as client:
            report = client.maintenance.maintain(
                months_ahead=months_ahead,
                retention_months=retention_months,
                drop=not keep_detached,
                dry_run=dry_run,
            )
        verb = "would " if dry_run else ""
        typer.echo(f"{verb}create: {', '.join(report.created) or '-'}")
        typer.echo(
            f"{verb}{'detach' if keep_detached else 'drop'}: {', '.join(report.dropped) or '-'}"
        )
        if report.moved_from_default or report.deleted_from_default:
            typer.echo(
                f"rows moved from default partition: {report.moved_from_default},"
                f" deleted past retention: {report.deleted_from_default}"
            )
    except FlowscopeError as exc:
        _fail(exc)


@app.command("prune")
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
    import flowscope

    if not archive_to and not dry_run:
        _fail(flowscope.ValidationError("--archive-to is required (unless --dry-run)"))
    try:
        with flowscope.connect(database_url) as client:
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
    except FlowscopeError as exc:
        _fail(exc)


@app.command("demo")
def demo(database_url: DatabaseUrl = None) -> None:
    """Connect (embedded by default) and show that the schema is there."""
    import flowscope

    try:
        client = flowscope.connect(database_url)
        rows = client.sql(
            "SELECT c.relname AS table, c.reltuples::bigint AS approx_rows FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1"
        )
        typer.echo(f"connected: {client!r}")
        for row in rows:
            typer.echo(f"  {row['table']}")
    except FlowscopeError as exc:
        _fail(exc)


@analytics_app.command("refresh")
def analytics_refresh(
    database_url: DatabaseUrl = None,
    concurrently: Annotated[
        bool, typer.Option(help="Keep the rollups readable while refreshing (slower).")
    ] = True,
) -> None:
    """Refresh the daily analytics rollups (materialized views) and record when."""
    import flowscope

    try:
        with flowscope.connect(database_url) as client:
            when = client.analytics.refresh_rollups(concurrently=concurrently)
        typer.echo(f"rollups refreshed at {when.isoformat()}")
    except FlowscopeError as exc:
        _fail(exc)


@app.command("export")
def export_command(
    table: Annotated[
        str, typer.Argument(help="executions, workflows, users, organizations or audit_log.")
    ],
    path: Annotated[str, typer.Argument(help="Parquet file, or dataset directory.")],
    status: Annotated[list[str] | None, typer.Option(help="Keep these statuses.")] = None,
    since: Annotated[str | None, typer.Option(help="created_at >= (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="created_at < (ISO 8601).")] = None,
    owner: Annotated[list[str] | None, typer.Option(help="Keep these owners.")] = None,
    workflow_id: Annotated[list[str] | None, typer.Option(help="Executions of these.")] = None,
    organization_id: Annotated[list[str] | None, typer.Option(help="These orgs.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Workflows tagged with any.")] = None,
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
) -> None:
    """Export TABLE (optionally filtered) to Parquet at PATH, streaming and atomically.

    Example: flowscope export executions runs.parquet --status failed --since 2026-06-01
    """
    import flowscope

    filters: dict[str, Any] = {}
    if table == "executions":
        filters = {
            "status": status,
            "since": since,
            "until": until,
            "owner": owner,
            "workflow_ids": workflow_id,
            "organization_id": organization_id,
            "tags_any": tag,
        }
    elif table == "workflows":
        filters = {
            "status": status,
            "created_after": since,
            "created_before": until,
            "owner": owner,
            "organization_id": organization_id,
            "tags_any": tag,
        }
        if workflow_id:
            filters["ids"] = workflow_id
    elif any((status, since, until, owner, workflow_id, organization_id, tag)):
        _fail(flowscope.ValidationError(f"{table} takes no filters"))
    try:
        client = flowscope.connect(database_url)
        try:
            result = client.export.parquet(
                table,
                path,
                columns=column or None,
                flatten=flatten or None,
                partition_by=partition_by or None,
                compression=compression,
                incremental=incremental,
                progress=progress,
                **{k: v for k, v in filters.items() if v},
            )
        finally:
            client.close()
        typer.echo(
            f"exported {result.rows:,} rows to {len(result.files)} file(s),"
            f" {result.bytes:,} bytes in {result.seconds:.2f} s"
        )
    except FlowscopeError as exc:
        _fail(exc)


def main() -> None:
    """Entry point of the ``flowscope`` console script."""
    try:
        app()
    except FlowscopeError as exc:  # pragma: no cover - commands catch their own
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(1)
