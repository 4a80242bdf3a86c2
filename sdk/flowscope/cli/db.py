"""``flowscope db``: schema migrations, audit-log partitions and the analytics rollups.

``db refresh-rollups`` is the one spelling of the rollup refresh; ``analytics refresh``
remains as a hidden, deprecated alias of it (:mod:`.analytics`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from ._app import command, connect, engine_url, group

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

app = group("Schema migrations, audit-log partitions and rollups.")


@contextmanager
def _migration_connection() -> Iterator[Connection]:
    """A plain connection (no schema check: the schema may be behind) for the migrations."""
    from .. import _db

    url = engine_url()
    engine = _db.create_engine(url)
    try:
        with _db.translating(url), engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _migrate_to(revision: str, step: Callable[[Connection, str], None]) -> None:
    from .. import _migrate

    with _migration_connection() as conn:
        step(conn, revision)
        conn.commit()
        typer.echo(f"database at revision {_migrate.current_revision(conn) or 'base'}")


@command(app, "upgrade")
def upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Migrate the database up to REVISION (default: head)."""
    from .. import _migrate

    _migrate_to(revision, _migrate.upgrade)


@command(app, "downgrade", context_settings={"ignore_unknown_options": True})  # -1 is a revision
def downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base.")],
) -> None:
    """Migrate the database down to REVISION."""
    from .. import _migrate

    _migrate_to(revision, _migrate.downgrade)


@command(app, "current")
def current() -> None:
    """Print the database's revision and the latest one this flowscope knows."""
    from .. import _migrate

    with _migration_connection() as conn:
        revision = _migrate.current_revision(conn)
    typer.echo(f"current: {revision or 'base'}  head: {_migrate.head_revision()}")


@command(app, "maintain")
def maintain(
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
) -> None:
    """Create the coming months' audit-log partitions; retire those past retention."""
    with connect() as client:
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


Concurrently = Annotated[
    bool,
    typer.Option(
        help="Keep the rollups readable while refreshing (slower); --no-concurrently locks."
    ),
]


@command(app, "refresh-rollups")
def refresh_rollups(concurrently: Concurrently = True) -> None:
    """Refresh the daily analytics rollups (materialized views) and record when."""
    with connect() as client:
        refreshed = client.analytics.refresh_rollups(concurrently=concurrently)
    typer.echo(f"rollups refreshed at {refreshed.isoformat()}")
