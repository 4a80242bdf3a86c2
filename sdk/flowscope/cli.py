"""The ``flowscope`` command line (typer).

Every command takes the global ``--database-url`` (default: ``FLOWSCOPE_DATABASE_URL``,
then the embedded database in ``--data-dir`` / ``FLOWSCOPE_DATA_DIR``). Errors are
one line on stderr and a non-zero exit status, never a traceback.

Example:
    $ flowscope demo
    $ flowscope db upgrade
    $ flowscope --database-url postgresql://me@db:5432/orchestrator db current
"""

from __future__ import annotations

import enum
import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from .errors import FlowscopeError

if TYPE_CHECKING:
    import pandas as pd

    from ._client import Client

app = typer.Typer(
    no_args_is_help=True,
    help="Read, write and analyse a flowscope database.",
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(no_args_is_help=True, help="Schema migrations and rollups.")
app.add_typer(db_app, name="db")

_P = ParamSpec("_P")
_R = TypeVar("_R")


class OutputFormat(enum.StrEnum):
    """How a command prints a table."""

    table = "table"
    csv = "csv"
    json = "json"


@dataclass
class _State:
    database_url: str | None = None
    data_dir: Path | None = None
    traceback: bool = False


# -- global options ----------------------------------------------------------------------
@app.callback()
def _global_options(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="FLOWSCOPE_DATABASE_URL",
            help="PostgreSQL URL. Default: FLOWSCOPE_DATABASE_URL, then the embedded database.",
            show_envvar=False,
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="FLOWSCOPE_DATA_DIR",
            help="Where the embedded database lives (when no URL is given).",
            show_envvar=False,
        ),
    ] = None,
    traceback: Annotated[
        bool, typer.Option("--traceback", hidden=True, help="Show tracebacks (debugging).")
    ] = False,
) -> None:
    """Read, write and analyse a flowscope database."""
    _STATE.database_url = database_url or None
    _STATE.data_dir = data_dir
    _STATE.traceback = traceback


_STATE = _State()  # set by the global options; one command runs per process (or CliRunner call)


def _state() -> _State:
    return _STATE


# Kept for compatibility: ``flowscope db upgrade --database-url URL`` (after the command).
DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="PostgreSQL URL (overrides the global option)."),
]
Format = Annotated[
    OutputFormat,
    typer.Option("--format", "-f", help="Output: an aligned table, CSV or JSON records."),
]


# -- errors ------------------------------------------------------------------------------
def _fail(message: str, code: int = 1) -> None:
    lines = message.strip().splitlines() or ["failed"]
    typer.secho(f"error: {lines[0]}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=code)


def _command(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn every error into one line on stderr and exit status 1 (130 on Ctrl-C)."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except FlowscopeError as exc:
            if _state().traceback:
                raise
            _fail(str(exc))
        except KeyboardInterrupt:
            _fail("interrupted", code=130)
        except Exception as exc:
            if _state().traceback:
                raise
            _fail(f"unexpected {type(exc).__name__}: {exc} (run with --traceback for details)")
        raise AssertionError("unreachable")  # pragma: no cover

    return wrapper


# -- connections and output ------------------------------------------------------------
def _engine_url(database_url: str | None) -> str:
    from . import _db, _embedded, _settings

    url = database_url or _state().database_url
    if url:
        return _db.normalize_url(url)
    return _embedded.ensure_database(_state().data_dir or _settings.load().data_dir)


@contextmanager
def _connect(database_url: str | None = None) -> Iterator[Client]:
    import flowscope

    state = _state()
    with flowscope.connect(database_url or state.database_url, data_dir=state.data_dir) as client:
        yield client


def _emit(frame: pd.DataFrame, fmt: OutputFormat, *, title: str | None = None) -> None:
    """Print a DataFrame as an aligned table, CSV or JSON records (UTC ISO times)."""
    if fmt is OutputFormat.csv:
        typer.echo(frame.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ"), nl=False)
    elif fmt is OutputFormat.json:
        typer.echo(frame.to_json(orient="records", date_format="iso", date_unit="ms"))
    else:
        if title:
            typer.secho(title, bold=True)
        if frame.empty:
            typer.echo("(no rows)")
        else:
            typer.echo(_table_text(frame))


def _table_text(frame: pd.DataFrame) -> str:
    import pandas as pd

    shown = frame.copy()
    for name in shown.columns:
        column = shown[name]
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            shown[name] = column.dt.strftime("%Y-%m-%d %H:%M:%S").astype("string")
        elif pd.api.types.is_float_dtype(column.dtype):
            shown[name] = column.round(3)
    with pd.option_context("display.width", 200, "display.max_columns", 40):
        return shown.to_string(index=False, na_rep="-")


def _parse_time(value: str | None, option: str) -> datetime | None:
    from .errors import ValidationError
    from .filters import to_utc

    try:
        return to_utc(value)
    except ValueError as exc:
        raise ValidationError(f"{option}: {exc}") from exc


# -- db ----------------------------------------------------------------------------------
@db_app.command("upgrade")
@_command
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    database_url: DatabaseUrl = None,
) -> None:
    """Migrate the database up to REVISION (default: head)."""
    from . import _db, _migrate

    url = _engine_url(database_url)
    engine = _db.create_engine(url)
    try:
        with _db.translating(url), engine.connect() as conn:
            _migrate.upgrade(conn, revision)
            conn.commit()
            typer.echo(f"database at revision {_migrate.current_revision(conn)}")
    finally:
        engine.dispose()


@db_app.command("downgrade")
@_command
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Migrate the database down to REVISION."""
    from . import _db, _migrate

    url = _engine_url(database_url)
    engine = _db.create_engine(url)
    try:
        with _db.translating(url), engine.connect() as conn:
            _migrate.downgrade(conn, revision)
            conn.commit()
            typer.echo(f"database at revision {_migrate.current_revision(conn) or 'base'}")
    finally:
        engine.dispose()


@db_app.command("current")
@_command
def db_current(database_url: DatabaseUrl = None) -> None:
    """Print the database's revision and the latest one this flowscope knows."""
    from . import _db, _migrate

    url = _engine_url(database_url)
    engine = _db.create_engine(url)
    try:
        with _db.translating(url), engine.connect() as conn:
            current = _migrate.current_revision(conn)
        typer.echo(f"current: {current or 'base'}  head: {_migrate.head_revision()}")
    finally:
        engine.dispose()


# -- demo --------------------------------------------------------------------------------
@app.command("demo")
@_command
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
    database_url: DatabaseUrl = None,
) -> None:
    """Load realistic demo data (idempotent) and print a few analytics tables."""
    from . import demo as demo_data

    moment = _parse_time(now, "--now") or demo_data.DEMO_NOW
    demo_data._check_arguments(workflows, executions, seed, moment, days)  # before connecting
    with _connect(database_url) as client:
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
            progress=sys.stderr.isatty(),
        )
        verb = f"loaded in {info.seconds:.1f} s" if info.created else "already loaded, unchanged"
        typer.echo(f"{info} ({verb})")
        if tables:
            _demo_tables(client, info)


def _describe(client: Client) -> str:
    from . import _db

    return _db.describe_host(client.url)


def _demo_tables(client: Client, info: Any) -> None:
    """A first look at the demo data (the analytics calls land with their issue)."""
    typer.echo(
        f"planted: a regression in {info.regression_workflow_name!r} "
        f"({info.regression_workflow_id}) since version {info.regression_version}, "
        f"a warehouse outage {info.incident_start:%Y-%m-%d %H:%M}–{info.incident_end:%H:%M} UTC"
    )


def main() -> None:
    """Entry point of the ``flowscope`` console script."""
    try:
        app()
    except FlowscopeError as exc:  # pragma: no cover - commands catch their own
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(1)
