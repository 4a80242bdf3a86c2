"""The ``flowscope`` command line (typer): one module per noun, over the client and the SDK.

Every command takes ``--database-url`` before or after it (default:
``FLOWSCOPE_DATABASE_URL``, then the embedded database in ``--data-dir`` /
``FLOWSCOPE_DATA_DIR``). Errors are one line on stderr and a non-zero exit status, never
a traceback. Durations and frequencies (``--older-than``, ``--period``, ``--freq``) are
pandas offset aliases, as in the SDK (:mod:`flowscope._durations`).

==================  ======================================================================
module              commands
==================  ======================================================================
:mod:`._app`        the app, its global options, ``command()`` (adds the shared options)
:mod:`._filters`    the shared filter, paging, grouping and duration options
:mod:`._output`     ``--format``: tables, CSV, JSON
:mod:`.db`          ``db upgrade | downgrade | current | maintain | refresh-rollups``
:mod:`.demo`        ``demo``
:mod:`.workflows`   ``workflows list | show``
:mod:`.executions`  ``executions list | show``
:mod:`.analytics`   ``analytics durations | status | tags | failures | compare | summary``
:mod:`.export`      ``export``
:mod:`.mirror`      ``mirror sync``
:mod:`.lake`        ``lake sync``
:mod:`.retention`   ``prune``
:mod:`.sql`         ``sql`` (read-only, on the database or ``--mirror``)
:mod:`.users`       ``users create | set-password``
==================  ======================================================================

Example:
    $ flowscope demo
    $ flowscope db upgrade
    $ flowscope analytics durations --by workflow --since 2026-06-01 --freq 1D
    $ flowscope prune executions --older-than 90D --archive-to archive/
    $ flowscope sql "SELECT status, count(*) AS n FROM executions GROUP BY 1"
    $ flowscope --database-url postgresql://me@db:5432/orchestrator db current
"""

from __future__ import annotations

import sys

import typer

from ..errors import FlowscopeError
from . import (
    analytics,
    db,
    demo,
    executions,
    export,
    lake,
    mirror,
    retention,
    sql,
    users,
    workflows,
)
from ._app import app

__all__ = ["app", "main"]

app.add_typer(db.app, name="db")
app.add_typer(workflows.app, name="workflows")
app.add_typer(executions.app, name="executions")
app.add_typer(analytics.app, name="analytics")
app.add_typer(users.app, name="users")
app.add_typer(mirror.app, name="mirror")
app.add_typer(lake.app, name="lake")
# demo, export, retention and sql register `demo`, `export`, `prune` and `sql` on the app itself
_TOP_LEVEL = (demo, export, retention, sql)


def main() -> None:
    """Entry point of the ``flowscope`` console script (and ``python -m flowscope.cli``)."""
    try:
        app()
    except FlowscopeError as exc:  # pragma: no cover - commands catch their own
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(1)
