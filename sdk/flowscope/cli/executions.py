"""``flowscope executions``: browse executions (``client.executions``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ._app import command, connect, group
from ._filters import After, Limit, OrderBy, execution_filter, with_filters
from ._output import Format, OutputFormat, emit_one, emit_page

app = group("Browse executions.")

COLUMNS = [
    "id",
    "workflow_id",
    "status",
    "created_at",
    "duration_seconds",
    "current_step",
    "steps_completed",
    "steps_total",
]


@command(app, "list")
@with_filters()
def list_(
    order_by: OrderBy = None,
    limit: Limit = 20,
    after: After = None,
    fmt: Format = OutputFormat.table,
    *,
    filters: dict[str, Any],
) -> None:
    """List executions (newest first), one page at a time."""
    flt = execution_filter(**filters)
    with connect() as client:
        page = client.executions.list(flt, order_by=order_by, limit=limit, after=after)
        emit_page(page, COLUMNS, fmt)


@command(app, "show")
def show(
    execution_id: Annotated[str, typer.Argument(help="The execution's id.")],
    fmt: Format = OutputFormat.table,
) -> None:
    """Show one execution."""
    emit_one("executions", execution_id, fmt)
