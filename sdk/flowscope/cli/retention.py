"""``flowscope prune``: archive old rows to Parquet, then delete them (``client.retention``)."""

from __future__ import annotations

from typing import Annotated

import typer

from ._app import app, command, connect
from ._filters import duration


@command(app, "prune")
def prune(
    table: Annotated[str, typer.Argument(help="Table to prune.")] = "executions",
    older_than: Annotated[
        str,
        typer.Option(
            help="Age of the rows to prune, a pandas offset alias: 90D, 12h, 2W, 30min, 45s"
            " (a fixed length: no calendar months)."
        ),
    ] = "90D",
    archive_to: Annotated[
        str, typer.Option(help="Directory for the Parquet archive and its manifest.")
    ] = "",
    batch_size: Annotated[int, typer.Option(help="Rows per batch/file/transaction.")] = 10_000,
    dry_run: Annotated[bool, typer.Option(help="Only count what would be pruned.")] = False,
    vacuum: Annotated[bool, typer.Option(help="VACUUM (ANALYZE) the table afterwards.")] = True,
) -> None:
    """Archive rows older than --older-than to Parquet, then delete them (resumable)."""
    from ..errors import ValidationError

    age = duration(older_than, "--older-than")  # before connecting
    if not archive_to and not dry_run:
        raise ValidationError("--archive-to is required (unless --dry-run)")
    with connect() as client:
        report = client.retention.prune(
            table,
            older_than=age,
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
