"""``flowscope demo``: load realistic demo data and take a first look through the analytics."""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._app import Progress, app, command, connect, show_progress
from ._filters import parse_time
from ._output import OutputFormat, emit

if TYPE_CHECKING:
    from .._client import Client


@command(app, "demo")
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
    progress: Progress = None,
) -> None:
    """Load realistic demo data (idempotent) and print a few analytics tables."""
    from .. import demo as demo_data

    moment = parse_time(now, "--now") or demo_data.DEMO_NOW
    demo_data._check_arguments(workflows, executions, seed, moment, days)  # before connecting
    with connect() as client:
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
            progress=show_progress(progress),
        )
        verb = f"loaded in {info.seconds:.1f} s" if info.created else "already loaded, unchanged"
        typer.echo(f"{info} ({verb})")
        if tables:
            _demo_tables(client, info)


def _describe(client: Client) -> str:
    from .. import _db

    return _db.describe_host(client.url)


def _demo_tables(client: Client, info: Any) -> None:
    """A first look at the demo data through the analytics calls.

    Each title names the command that prints the same table when pasted after the demo (a
    test runs them): the calls that depend on "now" take the demo's reference time.
    """
    analytics = client.analytics
    until = info.now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    typer.echo("")
    status = analytics.status_breakdown(by="organization_id")
    emit(
        status[["organization_id", "total", "completed", "failed", "timeout", "failure_rate"]],
        OutputFormat.table,
        title="How runs end, per organization  (flowscope analytics status --by organization_id)",
    )
    typer.echo("")
    board = analytics.summary(sort="executions", limit=5)
    emit(
        board[["workflow", "executions", "failure_rate", "p50_seconds", "p95_seconds"]],
        OutputFormat.table,
        title="Busiest workflows  (flowscope analytics summary --sort executions --limit 5)",
    )
    typer.echo("")
    failures = analytics.failures(top=5)
    emit(
        failures[["error_type", "message", "executions", "workflows", "current_step"]],
        OutputFormat.table,
        title="Top failure signatures  (flowscope analytics failures --top 5)",
    )
    typer.echo("")
    compared = analytics.compare(period="7D", by="workflow", until=info.now)
    runs = compared[compared.metric == "executions"].set_index("workflow")["current"]
    p50 = compared[compared.metric == "p50_seconds"].set_index("workflow")
    p50 = p50[runs.reindex(p50.index) >= 20].sort_values("relative_change", ascending=False)
    columns = ["workflow", "previous", "current", "change", "relative_change"]
    slower = p50.head(3).reset_index()[columns]
    emit(
        # the API's columns: change = current - previous (seconds), relative_change = change / previous
        slower.rename(columns={"previous": "p50_before", "current": "p50_now"}),
        OutputFormat.table,
        title="Slower than the week before, p50 seconds"
        f"  (flowscope analytics compare --period 7D --by workflow --until {until})",
    )
    typer.echo("")
    typer.echo(
        "next: flowscope analytics durations --by workflow_version "
        f"--workflow {info.regression_workflow_id}   (and the notebooks in notebooks/: make lab)"
    )
