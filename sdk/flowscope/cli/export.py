"""``flowscope export``: a table (optionally filtered) to Parquet, through ``client.export``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ._app import Progress, app, command, connect, show_progress
from ._filters import execution_filter, parse_time, with_filters


@command(app, "export")
@with_filters()
def export(
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
    progress: Progress = None,
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
        flt = execution_filter(**filters)
    elif table == "workflows":
        from ..filters import WorkflowFilter, coerce_filter

        flt = coerce_filter(
            WorkflowFilter,
            ids=filters["workflow"] or None,
            status=filters["status"] or None,
            created_after=parse_time(filters["since"], "--since"),
            created_before=parse_time(filters["until"], "--until"),
            owner=filters["owner"] or None,
            organization_id=filters["organization"] or None,
            tags_all=filters["tag"] or None,
            tags_any=filters["any_tag"] or None,
        )
    elif any(filters.values()):
        raise ValidationError(f"{table} takes no filters")
    with connect() as client:
        result = client.export.parquet(
            table,
            path,
            flt,
            columns=column or None,
            flatten=flatten or None,
            partition_by=partition_by or None,
            compression=compression,
            incremental=incremental,
            progress=show_progress(progress),
        )
    typer.echo(
        f"exported {result.rows:,} rows to {len(result.files)} file(s),"
        f" {result.bytes:,} bytes in {result.seconds:.2f} s"
    )
