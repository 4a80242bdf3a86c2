"""Rows in, rows out: every accepted input as mappings, and the two ways rows reach a table.

Unscoped clients COPY straight into the table (binary, with explicit types). Row-level
security forbids ``COPY FROM`` into a table with RLS, and a tenant may not create the
temporary table a COPY could be staged in, so a scoped client sends chunks of rows as one
JSON parameter to ``INSERT ... SELECT FROM jsonb_to_recordset(...)`` (the policies check
every row).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..errors import ValidationError
from ._columns import Column, Json, dumps

__all__ = ["copier", "json_loader", "records"]

_JSON_CHUNK = 5_000


def records(cols: Sequence[Column], rows: Any) -> list[Mapping[str, Any]]:
    """Any accepted input → a list of mappings with database column names."""
    json_fields = frozenset(c.name for c in cols if c.kind == "json")
    module = type(rows).__module__
    if module.startswith("pandas") and hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        import pyarrow as pa

        frame = rows
        text_json = [
            c
            for c in frame.columns
            if c in json_fields
            and isinstance(getattr(frame[c].dtype, "pyarrow_dtype", None), pa.JsonType)
        ]
        out = frame.astype(object).where(frame.notna(), None).to_dict("records")
        if text_json:
            out = _parse_json_text(out, text_json)
        return out
    if module.startswith("pyarrow") and hasattr(rows, "to_pylist"):
        import pyarrow as pa

        if isinstance(rows, pa.RecordBatch):
            rows = pa.Table.from_batches([rows])
        text_json = [
            f.name
            for f in rows.schema
            if f.name in json_fields
            and (isinstance(f.type, pa.JsonType) or pa.types.is_string(f.type))
        ]
        out = rows.to_pylist()
        if text_json:
            out = _parse_json_text(out, text_json)
        return out
    if isinstance(rows, (Mapping, str | bytes)) or not isinstance(rows, Iterable):
        raise ValidationError(
            "rows: ingest takes many rows: a list of dicts, a DataFrame or an Arrow table,"
            f" not {type(rows).__name__}",
            errors=[{"loc": ("rows",), "msg": "not a collection of rows", "index": None}],
        )
    mappings: list[Mapping[str, Any]] = []
    for row in rows:
        if isinstance(row, Mapping):
            mappings.append(row)
        elif hasattr(row, "model_dump"):
            dumped = row.model_dump(exclude_unset=True)
            if "metadata_" in dumped:
                dumped["metadata"] = dumped.pop("metadata_")
            mappings.append(dumped)
        else:
            mappings.append(row)  # reported as a bad row by the converter
    return mappings


def _parse_json_text(rows: list[dict[str, Any]], fields: list[str]) -> list[dict[str, Any]]:
    for index, record in enumerate(rows):
        for name in fields:
            value = record.get(name)
            if isinstance(value, str):
                try:
                    record[name] = json.loads(value)
                except ValueError:
                    raise ValidationError(
                        f"row {index}: {name}: not valid JSON text",
                        errors=[{"loc": (name,), "msg": "not valid JSON text", "index": index}],
                    ) from None
    return rows


@contextlib.contextmanager
def copier(
    conn: Any, table: str, cols: Sequence[Column]
) -> Iterator[Callable[[Sequence[Any]], None]]:
    """A binary ``COPY ... FROM STDIN`` with explicit types; yields ``write_row``."""
    from psycopg import sql
    from psycopg.adapt import Dumper
    from psycopg.pq import Format

    raw = conn.connection.driver_connection
    columns = sql.SQL(", ").join(sql.Identifier(c.name) for c in cols)
    with raw.cursor() as cur:
        jsonb_oid = cur.adapters.types["jsonb"].oid

        class JsonbText(Dumper):
            """Pre-serialised JSON text → jsonb's binary form (version byte 1 + UTF-8 text)."""

            format = Format.BINARY
            oid = jsonb_oid

            def dump(self, obj: Any) -> bytes:
                return b"\x01" + obj.encode()

        cur.adapters.register_dumper(Json, JsonbText)
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
            sql.Identifier(table), columns
        )
        with cur.copy(statement) as copy:
            copy.set_types([c.sql_type for c in cols])
            yield copy.write_row


@contextlib.contextmanager
def json_loader(
    conn: Any, table: str, cols: Sequence[Column]
) -> Iterator[Callable[[Sequence[Any]], None]]:
    """For a tenant login: ``INSERT ... SELECT FROM jsonb_to_recordset(...)`` in chunks.

    PostgreSQL refuses ``COPY FROM`` into a table with row-level security, and a
    tenant may not create the temporary table a COPY could be staged in; one JSON
    parameter per chunk of rows is the next fastest single statement.
    """
    from psycopg import sql

    names = [c.name for c in cols]
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in names)
    record = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.sql_type)) for c in cols
    )
    statement = sql.SQL(
        "INSERT INTO {} ({}) SELECT {} FROM jsonb_to_recordset(%s::jsonb) AS r({})"
    ).format(sql.Identifier(table), columns, columns, record)
    raw = conn.connection.driver_connection
    pending: list[str] = []

    def flush() -> None:
        if pending:
            with raw.cursor() as cur:
                cur.execute(statement, ("[" + ",".join(pending) + "]",))
            pending.clear()

    def write(values: Sequence[Any]) -> None:
        parts = []
        for name, value in zip(names, values, strict=True):
            if isinstance(value, Json):
                text = str(value)
            elif isinstance(value, datetime):
                text = dumps(value.isoformat())
            elif isinstance(value, Decimal):
                text = str(value)
            else:
                text = dumps(value)
            parts.append(f"{dumps(name)}:{text}")
        pending.append("{" + ",".join(parts) + "}")
        if len(pending) >= _JSON_CHUNK:
            flush()

    yield write
    flush()
