"""``flowscope lake``: Apache Iceberg tables of readable rows, kept in step with the database."""

from __future__ import annotations

from typing import Annotated

import typer

from ._app import command, connect, group

app = group("Apache Iceberg tables (executions, workflows) of readable rows.")


@command(app, "sync")
def sync(
    warehouse: Annotated[
        str | None,
        typer.Option(help="Warehouse path (with no --catalog: catalog.db, SQLite, beside it)."),
    ] = None,
    catalog: Annotated[
        str | None,
        typer.Option(help="A pyiceberg catalog by name (.pyiceberg.yaml, PYICEBERG_* variables)."),
    ] = None,
    namespace: Annotated[str, typer.Option(help="The Iceberg namespace of the tables.")] = (
        "flowscope"
    ),
    full: Annotated[bool, typer.Option(help="Load everything again.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Bring the Iceberg tables up to date (one commit per table: inserts, updates, deletes)."""
    with connect() as client:
        lake = client.lake(warehouse, catalog=catalog, namespace=namespace)
        report = lake.sync(full=full, progress=progress)
    typer.echo(
        f"{namespace}: {'full load' if report.full else 'incremental'}, {report.added:,} added,"
        f" {report.changed:,} changed, {report.removed:,} removed in {report.seconds:.2f} s;"
        f" as of {report.as_of.isoformat()}"
        f" ({', '.join(f'{n} {r:,}' for n, r in report.rows.items())})"
    )
