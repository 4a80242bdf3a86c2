"""The root of the command line: the ``flowscope`` app, its global options, and
:func:`command`, which registers every command with the options all of them share.

A command module declares only its own options; :func:`command` adds the shared
ones (``--database-url`` after the command, and on request the execution filter of
:mod:`._filters`), turns every error into one line on stderr, and registers the
command, or a hidden deprecated alias of it.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from ..errors import FlowscopeError

if TYPE_CHECKING:
    from .._client import Client

_F = TypeVar("_F", bound=Callable[..., Any])

app = typer.Typer(
    no_args_is_help=True,
    help="Read, write and analyse a flowscope database.",
    pretty_exceptions_enable=False,
    add_completion=False,
)


def group(help: str) -> typer.Typer:
    """A noun's sub-command group (``flowscope <noun> <verb>``)."""
    return typer.Typer(no_args_is_help=True, help=help)


@dataclass
class State:
    """What the global options set; one command runs per process (or CliRunner call)."""

    database_url: str | None = None
    data_dir: Path | None = None
    traceback: bool = False


STATE = State()

_URL_HELP = "PostgreSQL URL. Default: FLOWSCOPE_DATABASE_URL, then the embedded database."
# The one --database-url: before the command (global, also read from the environment) or
# after it (the same option, added to every command by `command`; it wins).
DatabaseUrl = Annotated[str | None, typer.Option("--database-url", help=_URL_HELP)]


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"flowscope {version('flowscope')}")
        raise typer.Exit()


@app.callback()
def _global_options(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url", envvar="FLOWSCOPE_DATABASE_URL", help=_URL_HELP, show_envvar=False
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
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Read, write and analyse a flowscope database."""
    STATE.database_url = database_url or None
    STATE.data_dir = data_dir
    STATE.traceback = traceback


# -- errors ------------------------------------------------------------------------------
def fail(message: str, code: int = 1) -> typing.NoReturn:
    """Print ``error: <first line>`` on stderr and exit with ``code``."""
    lines = message.strip().splitlines() or ["failed"]
    typer.secho(f"error: {lines[0]}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=code)


_CANCELLED = "canceling statement due to user request"


def _interrupted(exc: BaseException) -> bool:
    """True when ``exc`` is, or was caused by, a Ctrl-C. A driver may catch the SIGINT
    itself: ADBC cancels the query and raises the server's answer, "canceling statement
    due to user request" (SQLSTATE 57014, as a statement timeout, but worded apart)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt) or _CANCELLED in str(current):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _one_line_errors(fn: _F) -> _F:
    """Turn every error into one line on stderr and exit status 1 (130 on Ctrl-C)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            fail("interrupted", code=130)
        except FlowscopeError as exc:
            if _interrupted(exc):
                fail("interrupted", code=130)
            if STATE.traceback:
                raise
            fail(str(exc))
        except Exception as exc:
            if _interrupted(exc):
                fail("interrupted", code=130)
            if STATE.traceback:
                raise
            fail(f"unexpected {type(exc).__name__}: {exc} (run with --traceback for details)")

    return typing.cast(_F, wrapper)


# -- registration ------------------------------------------------------------------------
_LAST = ("fmt", "database_url")  # added options go before these, in this order


def with_options(fn: _F, options: Mapping[str, Any], receive: Callable[..., Any]) -> _F:
    """``fn`` with the keyword options ``options`` (name → ``Annotated`` type, default
    None) added to its signature, where typer sees them as its own; the wrapper calls
    ``receive(fn, values_of_options, other_kwargs)``. ``fn`` may declare a keyword-only
    ``filters``, which typer does not see."""
    hints = typing.get_type_hints(fn, include_extras=True)
    own = [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in inspect.signature(fn).parameters.values()
        if p.name != "filters"
    ]
    added = [
        inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=a)
        for n, a in options.items()
    ]
    params = sorted(
        [*own, *added],
        key=lambda p: (_LAST.index(p.name) + 1) if p.name in _LAST else 0,
    )
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        values = {n: kwargs.pop(n) for n in options}
        return receive(fn, values, kwargs)

    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return typing.cast(_F, wrapper)


def _receive_url(fn: Callable[..., Any], values: dict[str, Any], kwargs: dict[str, Any]) -> Any:
    if values["database_url"]:
        STATE.database_url = values["database_url"]
    return fn(**kwargs)


def command(
    where: typer.Typer,
    name: str,
    *,
    deprecated: str | None = None,
    **typer_options: Any,
) -> Callable[[_F], _F]:
    """Register the decorated function as ``name`` on ``where`` with ``--database-url``
    and one-line errors; returns the function unchanged.

    With ``deprecated="flowscope db refresh-rollups"`` the command is registered hidden,
    as an alias that prints a one-line deprecation naming that spelling on stderr first.
    """

    def register(fn: _F) -> _F:
        target = fn
        if deprecated is not None:

            @functools.wraps(fn)
            def target(*args: Any, **kwargs: Any) -> Any:
                typer.secho(
                    f"warning: this spelling is deprecated; use: {deprecated}",
                    err=True,
                    fg=typer.colors.YELLOW,
                )
                return fn(*args, **kwargs)

            typer_options["hidden"] = True
            typer_options.setdefault("help", f"Deprecated: use `{deprecated}`.")
        wrapped = with_options(target, {"database_url": DatabaseUrl}, _receive_url)
        where.command(name, **typer_options)(_one_line_errors(wrapped))
        return fn

    return register


# -- progress bars ---------------------------------------------------------------------
Progress = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress",
        help="Show a progress bar on stderr (default: only when stderr is a terminal).",
        show_default=False,
    ),
]


def show_progress(progress: bool | None) -> bool:
    """The ``--progress/--no-progress`` choice, or whether stderr is a terminal."""
    import sys

    return sys.stderr.isatty() if progress is None else progress


# -- connections -------------------------------------------------------------------------
def engine_url() -> str:
    """The database URL of the options, or the embedded database's (started if needed)."""
    from .. import _db, _embedded, _settings

    if STATE.database_url:
        return _db.normalize_url(STATE.database_url)
    return _embedded.ensure_database(STATE.data_dir or _settings.load().data_dir)


@contextmanager
def connect() -> Iterator[Client]:
    """A client for the options' database (closed afterwards)."""
    import flowscope

    with flowscope.connect(STATE.database_url, data_dir=STATE.data_dir) as client:
        yield client
