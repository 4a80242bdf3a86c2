"""``flowscope mirror``: the local columnar mirror (Parquet + DuckDB) of readable rows."""

from __future__ import annotations

from typing import Annotated

import typer

from ._app import Progress, command, connect, group, show_progress

app = group("The local columnar mirror (Parquet + DuckDB) of readable rows.")


@command(app, "sync")
def sync(
    path: Annotated[
        str | None, typer.Option(help="Mirror directory (default: under the data directory).")
    ] = None,
    full: Annotated[bool, typer.Option(help="Copy everything again.")] = False,
    progress: Progress = None,
) -> None:
    """Bring the local mirror up to date (inserts, updates and deletes since the last sync)."""
    with connect() as client:
        mirror = client.mirror(path)
        report = mirror.sync(full=full, progress=show_progress(progress))
    typer.echo(
        f"{mirror.path}: {'full copy' if report.full else 'incremental'}, {report.added:,} added,"
        f" {report.changed:,} changed, {report.removed:,} removed in {report.seconds:.2f} s;"
        f" as of {report.as_of.isoformat()}"
        f" ({', '.join(f'{n} {r:,}' for n, r in report.rows.items())})"
    )
