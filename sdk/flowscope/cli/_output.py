"""How commands print: ``--format`` (defined once), tables, pages of records, one record."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    import pandas as pd


class OutputFormat(enum.StrEnum):
    """How a command prints a table."""

    table = "table"
    csv = "csv"
    json = "json"


Format = Annotated[
    OutputFormat,
    typer.Option("--format", "-f", help="Output: an aligned table, CSV or JSON records."),
]


def emit(frame: pd.DataFrame, fmt: OutputFormat, *, title: str | None = None) -> None:
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
            typer.echo(table_text(frame))


def table_text(frame: pd.DataFrame) -> str:
    """A frame as aligned text: times to the second (UTC), floats to 3 decimals, NA as -."""
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


def _page_frame(items: list[Any], columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    from .._display import summarize

    records = []
    for item in items:
        data = item.model_dump()
        records.append(
            {
                c: (
                    data.get(c)
                    if data.get(c) is None or isinstance(data.get(c), str | int | float | datetime)
                    else summarize(data.get(c), width=60)
                )
                for c in columns
            }
        )
    frame = pd.DataFrame.from_records(records, columns=columns)
    for c in columns:
        if frame[c].dtype == object and not frame[c].map(lambda v: isinstance(v, datetime)).any():
            frame[c] = frame[c].astype("string")
        elif frame[c].dtype == object:
            frame[c] = pd.to_datetime(frame[c], utc=True)
    return frame


def emit_page(page: Any, columns: list[str], fmt: OutputFormat) -> None:
    """Print a page of records (``columns`` of each); the cursor of the next one on stderr."""
    emit(_page_frame(page.items, columns), fmt)
    if page.has_more:
        typer.echo(f"more rows: add --after {page.next_cursor}", err=True)


def emit_record(item: Any, fmt: OutputFormat) -> None:
    """Print one record: field by field, as CSV (field, value) or as its JSON."""
    from .._display import summarize

    if fmt is OutputFormat.json:
        typer.echo(item.model_dump_json())
        return
    data = item.model_dump()
    if fmt is OutputFormat.csv:
        import pandas as pd

        frame = pd.DataFrame(
            {"field": list(data), "value": [summarize(v, width=10_000) for v in data.values()]}
        )
        emit(frame, fmt)
        return
    width = max(len(k) for k in data)
    for key, value in data.items():
        typer.echo(f"{key:<{width}}  {summarize(value, width=100)}")


def emit_one(resource: str, id: str, fmt: OutputFormat) -> Any:
    """Print ``client.<resource>.get(id)`` (see :func:`emit_record`); returns it."""
    from ._app import connect

    with connect() as client:
        item = getattr(client, resource).get(id)
    emit_record(item, fmt)
    return item
