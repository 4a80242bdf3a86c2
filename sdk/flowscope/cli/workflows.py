"""``flowscope workflows``: browse workflows (``client.workflows``)."""

from __future__ import annotations

from typing import Annotated

import typer

from ._app import command, connect, group
from ._filters import After, AnyTag, Limit, OrderBy, Organization, Owner, Status, Tag
from ._output import Format, OutputFormat, emit_one, emit_page

app = group("Browse workflows.")

COLUMNS = ["id", "name", "status", "version", "owner", "organization_id", "tags"]


@command(app, "list")
def list_(
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
) -> None:
    """List workflows (newest first), one page at a time."""
    with connect() as client:
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
        emit_page(page, COLUMNS, fmt)


@command(app, "show")
def show(
    workflow_id: Annotated[str, typer.Argument(help="The workflow's id.")],
    fmt: Format = OutputFormat.table,
) -> None:
    """Show one workflow (its graph summarised; --format json for everything)."""
    workflow = emit_one("workflows", workflow_id, fmt)
    if fmt is OutputFormat.table and workflow.nodes:
        steps = " → ".join(str(n.get("name", n.get("id", "?"))) for n in workflow.nodes)
        typer.echo(f"{'steps':<{len('organization_id')}}  {steps}")
