"""``flowscope sql``: one read-only query, on the database or on the local mirror, as a table."""

from __future__ import annotations

from typing import Annotated

import typer

from ._app import app, command, connect
from ._output import Format, OutputFormat, emit


@command(app, "sql")
def sql(
    query: Annotated[str, typer.Argument(help="A query (SELECT, WITH, VALUES, TABLE...).")],
    mirror: Annotated[
        bool,
        typer.Option("--mirror", help="Run it on the local mirror (DuckDB) instead of PostgreSQL."),
    ] = False,
    path: Annotated[
        str | None, typer.Option(help="Mirror directory (default: under the data directory).")
    ] = None,
    fmt: Format = OutputFormat.table,
) -> None:
    """Run a read-only QUERY and print its rows.

    On PostgreSQL it runs in a READ ONLY transaction as the connection's identity (a
    statement that writes is refused by the server); with --mirror, on DuckDB over the
    mirror's views `executions` and `workflows`, where only SELECT statements are accepted.

    Example: flowscope sql "SELECT status, count(*) AS n FROM executions GROUP BY 1"
    """
    from ..errors import ValidationError

    with connect() as client:
        if not mirror:
            frame = client.query(query)
        else:
            import duckdb

            con = client.mirror(path).duckdb()
            try:
                try:
                    statements = con.extract_statements(query)
                except duckdb.Error as exc:
                    raise ValidationError(f"not a query DuckDB can parse: {exc}") from exc
                if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
                    raise ValidationError("--mirror runs one SELECT statement and nothing else")
                try:
                    frame = con.sql(query).df()
                except duckdb.Error as exc:
                    raise ValidationError(f"the mirror's DuckDB refused the query: {exc}") from exc
            finally:
                con.close()
    emit(frame, fmt)
