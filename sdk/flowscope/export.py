"""Arrow schemas, streaming reads and Parquet export, at the rate PostgreSQL sends rows.

Every table has one explicit Arrow schema derived from the models (never inferred
batch by batch):

=====================  ==================================================
PostgreSQL             Arrow
=====================  ==================================================
TIMESTAMPTZ            ``timestamp[us, tz=UTC]``
NUMERIC(10,3)          ``decimal128(10, 3)`` (``decimal="float64"``: float64)
TEXT[]                 ``list<string>``
JSONB                  ``pa.json_()`` (Arrow's JSON extension type over UTF-8)
VARCHAR / TEXT         ``string``
INTEGER / BIGINT       ``int32`` / ``int64`` (nullable)
BOOLEAN                ``bool`` (nullable)
=====================  ==================================================

``users`` never includes ``password_hash``.

How rows travel: one ``COPY (SELECT ...) TO STDOUT (FORMAT binary)`` in the
client's scope (so row-level security applies to scoped clients). Every CopyData
message is one row, so a batch of messages is decoded with numpy all at once:
field offsets for all rows per column, fixed-width values gathered and
byte-swapped, strings copied out by one Arrow ``take``, NUMERIC rebuilt from its
base-10000 digits into ``decimal128``. No value is formatted as text on the
server or parsed per row in Python, and memory stays constant whatever the
table size (one batch in flight, one being written). JSONB travels as text
(``::text``) and ``TEXT[]`` as a JSON array parsed by Arrow's JSON reader.

The faster transport, used when ``adbc-driver-postgresql`` is installed: ADBC's
streaming reader (libpq binary COPY decoded in C++), each batch then cast to
the same explicit schema (NUMERIC text → ``decimal128`` by an exact, safe cast or
float64; JSON text wrapped as ``pa.json_()`` without parsing; TEXT[] read natively
as lists). It runs in one transaction, logged in as the session's own identity (a
tenant's role), so row-level security is the same. ADBC holds the
whole result of a query with bound parameters in memory, so the filter's values are
bound to transaction-local settings (``set_config($1, $2, true)``) that the query reads
back with a cast; values of other kinds (arrays, NULL, Decimal) keep the query on COPY.
``FLOWSCOPE_EXPORT_TRANSPORT=copy`` forces the COPY decoder, ``=adbc`` requires ADBC.

Example:
    >>> import flowscope
    >>> client = flowscope.connect()                                # doctest: +SKIP
    >>> table = flowscope.read_arrow(client, "executions", status="failed")  # doctest: +SKIP
    >>> client.export.parquet("executions", "runs.parquet", since="2026-01-01")  # doctest: +SKIP
    ExportResult(rows=10233, files=1, bytes=812345, seconds=0.41)
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import glob
import json
import os
import re
import shutil
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from . import _changes, _db
from ._boundary import Guarded, boundary
from ._files import (
    directory_lock,
    fsync_dir,
    owned_temp_dir,
    owned_temp_file,
    release,
    sweep_stale,
)
from ._frames import Decimal as Decimal  # re-exported: the read signatures use it
from ._frames import arrow_type as _arrow_type
from ._frames import pandas_dtype
from ._session import session_of
from .errors import (
    ConfigurationError,
    DatabaseError,
    FlowscopeError,
    ValidationError,
)
from .filters import (
    AuditFilter,
    ExecutionFilter,
    OrganizationFilter,
    UserFilter,
    WorkflowFilter,
    coerce_filter,
)
from .models import AUDIT_LOG, EXECUTIONS, ORGANIZATIONS, SECRET_COLUMNS, USERS, WORKFLOWS

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from ._session import Session

__all__ = [
    "TABLES",
    "Export",
    "ExportResult",
    "arrow_schema",
    "iter_batches",
    "read_arrow",
    "read_pandas",
]

#: Exportable tables, by name.
TABLES: dict[str, sa.Table] = {
    "workflows": WORKFLOWS,
    "executions": EXECUTIONS,
    "users": USERS,
    "organizations": ORGANIZATIONS,
    "audit_log": AUDIT_LOG,
}
# The column that orders a table in time: partitions by day, incremental high-water mark.
_TIME_COLUMN = {
    "workflows": "created_at",
    "executions": "created_at",
    "users": "created_at",
    "organizations": "created_at",
    "audit_log": "occurred_at",
}
_FILTERS: dict[str, type[Any]] = {
    "workflows": WorkflowFilter,
    "executions": ExecutionFilter,
    "users": UserFilter,
    "organizations": OrganizationFilter,
    "audit_log": AuditFilter,
}
_PARTITIONS = ("day", "organization_id")
_MANIFEST = "_flowscope_manifest.json"
_DEFAULT_BATCH = 32_768
# ADBC's batch size hint (its default is 16 MB). Smaller batches keep the Parquet writer
# thread busy sooner and hold less in flight: 1M executions went 2.6 s → 2.4 s and peak RSS
# 256 → 206 MB at 4 MB (1 and 2 MB: slower again; benchmarks/RESULTS_io.md).
_ADBC_BATCH_BYTES = 4 << 20
# A Parquet row group closes at this many rows or this many bytes of Arrow data, whichever
# comes first (DuckDB writes 122,880 rows). For 1M executions 65,536 rows measured faster
# and 25 MB lighter than 131,072 (2.57 s / 226 MB against 2.67 s / 253 MB through ADBC).
_ROW_GROUP_ROWS = 65_536
_ROW_GROUP_BYTES = 32 << 20
_MAX_BATCH_BYTES = 16 << 20
# Rows per batch of the COPY decoder when the caller leaves the size to flowscope (Parquet
# export): 1M executions peaked at 240 MB RSS against 280 MB with 32,768, at the same speed.
_COPY_BATCH = 16_384
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


# -- schemas ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Column:
    name: str
    expr: Any  # what the SELECT returns for it (in a form the binary decoder reads)
    type: pa.DataType
    kind: Literal["plain", "json", "nested"]  # json: text → pa.json_(); nested: JSON text → list
    wire: str = ""  # the PostgreSQL type on the wire when it differs from the Arrow type's
    native: Any = None  # for ADBC, when it reads the column natively (TEXT[] → list)


def _column(name: str, expr: Any, sa_type: Any, *, decimal: Decimal) -> _Column:
    import pyarrow as pa

    arrow = _arrow_type(sa_type, decimal=decimal)
    if isinstance(arrow, pa.JsonType):
        return _Column(name, sa.cast(expr, sa.Text), arrow, "json")
    if pa.types.is_list(arrow):
        to_json = sa.cast(sa.func.to_json(expr), sa.Text)
        return _Column(name, to_json, arrow, "nested", native=expr)
    if isinstance(sa_type, sa.Float):
        return _Column(name, sa.cast(expr, sa.Float(53)), arrow, "plain", "float8")
    if isinstance(sa_type, sa.Numeric) and arrow == pa.float64():
        return _Column(name, expr, arrow, "plain", "numeric")
    return _Column(name, expr, arrow, "plain")


_FLATTEN_TYPES: dict[str, Any] = {
    "string": "string",
    "str": "string",
    "float64": "float64",
    "float": "float64",
    "int64": "int64",
    "int": "int64",
    "bool": "bool",
    "json": "json",
}


def _flatten_column(table: sa.Table, key: str, kind: Any, *, decimal: Decimal) -> _Column:
    """``parameters.lr`` → the value at that path of a JSONB column, as its own column."""
    import pyarrow as pa

    if not isinstance(key, str) or "." not in key:
        raise ValidationError(f"flatten keys look like 'parameters.lr', got {key!r}")
    source, *path = key.split(".")
    column = table.c.get(source)
    if column is None or not isinstance(column.type, postgresql.JSONB) or not all(path):
        raise ValidationError(
            f"cannot flatten {key!r}: {source!r} is not a JSONB column of {table.name}"
        )
    if isinstance(kind, pa.DataType):
        kind = {
            pa.string(): "string",
            pa.float64(): "float64",
            pa.int64(): "int64",
            pa.bool_(): "bool",
        }.get(kind, "json" if isinstance(kind, pa.JsonType) else kind)
    resolved = _FLATTEN_TYPES.get(kind) if isinstance(kind, str) else None
    if resolved is None:
        raise ValidationError(
            f"flatten type for {key!r} must be one of {sorted(set(_FLATTEN_TYPES.values()))},"
            f" got {kind!r}"
        )
    path_param = sa.literal(path, type_=postgresql.ARRAY(sa.Text))
    value = column.op("#>")(path_param)
    text = column.op("#>>")(path_param)
    typeof = sa.func.jsonb_typeof(value)
    if resolved == "json":
        return _Column(key, sa.cast(value, sa.Text), pa.json_(), "json")
    if resolved == "string":
        return _Column(key, text, pa.string(), "plain")
    if resolved == "float64":
        expr = sa.case((typeof == "number", sa.cast(text, sa.Float(53))))
        return _Column(key, expr, pa.float64(), "plain")
    if resolved == "int64":
        expr = sa.case(
            (
                sa.and_(typeof == "number", text.op("~")(r"^-?[0-9]{1,18}$")),
                sa.cast(text, sa.BigInteger),
            )
        )
        return _Column(key, expr, pa.int64(), "plain")
    expr = sa.case((typeof == "boolean", sa.cast(text, sa.Boolean)))
    return _Column(key, expr, pa.bool_(), "plain")


@dataclasses.dataclass(frozen=True)
class _Plan:
    """A SELECT and the Arrow schema its rows become."""

    select: sa.Select[Any]
    columns: tuple[_Column, ...]
    table: str | None

    @property
    def schema(self) -> pa.Schema:
        import pyarrow as pa

        return pa.schema([pa.field(c.name, c.type) for c in self.columns])


def _table(name: Any) -> sa.Table:
    if not isinstance(name, str) or name not in TABLES:
        raise ValidationError(f"unknown table {name!r}; one of {sorted(TABLES)}")
    return TABLES[name]


def _where(name: str, filter: Any, filter_fields: Mapping[str, Any]) -> Any:
    cls = _FILTERS.get(name)
    if cls is None:
        if filter is not None and hasattr(filter, "clause"):
            return filter.clause()
        if filter is not None or filter_fields:
            raise ValidationError(f"{name} cannot be filtered here (export all of it)")
        return sa.true()
    return coerce_filter(cls, filter, **filter_fields).clause()


def _plan(
    name: str,
    filter: Any = None,
    *,
    columns: Sequence[str] | None = None,
    flatten: Sequence[str] | Mapping[str, Any] | None = None,
    decimal: Decimal = "decimal128",
    extra_where: Any = None,
    extra: Sequence[tuple[str, Any, Any]] = (),
    filter_fields: Mapping[str, Any] | None = None,
) -> _Plan:
    table = _table(name)
    if decimal not in ("decimal128", "float64"):
        raise ValidationError(f"decimal must be 'decimal128' or 'float64', got {decimal!r}")
    secret = SECRET_COLUMNS.get(name, frozenset())
    available = [c.name for c in table.columns if c.name not in secret]
    if columns is None:
        chosen = available
    else:
        if isinstance(columns, str):
            columns = [columns]
        if not isinstance(columns, Sequence) or not all(isinstance(c, str) for c in columns):
            raise ValidationError(f"columns must be a list of column names, not {columns!r}")
        unknown = [c for c in columns if c not in available]
        if unknown:
            raise ValidationError(
                f"unknown column(s) {unknown} for {name}; available: {', '.join(available)}"
            )
        chosen = list(dict.fromkeys(columns))
    cols = [_column(c, table.c[c], table.c[c].type, decimal=decimal) for c in chosen]
    if flatten is not None and (
        isinstance(flatten, str) or not isinstance(flatten, Mapping | Sequence)
    ):
        raise ValidationError(
            f"flatten is a list of keys like ['parameters.lr'] or a mapping of key to type,"
            f" not {flatten!r}"
        )
    if flatten:
        items = (
            flatten.items() if isinstance(flatten, Mapping) else ((k, "string") for k in flatten)
        )
        for key, kind in items:
            if key in {c.name for c in cols}:
                raise ValidationError(f"flatten key {key!r} repeats a column name")
            cols.append(_flatten_column(table, key, kind, decimal=decimal))
    for label, expr, sa_type in extra:
        cols.append(_column(label, expr, sa_type, decimal=decimal))
    where = _where(name, filter, filter_fields or {})
    stmt = sa.select(*(c.expr.label(c.name) for c in cols)).select_from(table).where(where)
    if extra_where is not None:
        stmt = stmt.where(extra_where)
    return _Plan(stmt, tuple(cols), name)


# PostgreSQL type oids → SQLAlchemy types, for queries (the server says what it returns).
_OID_TYPES: dict[int, Any] = {
    16: sa.Boolean(),
    20: sa.BigInteger(),
    21: sa.SmallInteger(),
    23: sa.Integer(),
    25: sa.Text(),
    1042: sa.Text(),
    1043: sa.Text(),
    700: sa.Float(),
    701: sa.Float(),
    1082: sa.Date(),
    1114: sa.DateTime(timezone=False),
    1184: sa.DateTime(timezone=True),
    114: postgresql.JSONB(),
    3802: postgresql.JSONB(),
    1009: postgresql.ARRAY(sa.Text),
    1015: postgresql.ARRAY(sa.Text),
    1007: postgresql.ARRAY(sa.Integer),
    1016: postgresql.ARRAY(sa.BigInteger),
}


def _plan_query(session: Session, query: sa.Select[Any], *, decimal: Decimal) -> _Plan:
    """A plan for any SELECT: column types come from the server's result description."""
    sub = query.subquery("q")
    # The server names the columns: a query of text() columns (``select(text("id"))``)
    # has none SQLAlchemy knows of, and ``SELECT q.*`` still returns them all.
    with session.read_transaction() as conn:
        every: sa.Select[Any] = sa.select(sa.literal_column("q.*")).select_from(sub)
        result = conn.execute(every.limit(0))
        description = result.cursor.description if result.cursor is not None else None
        result.close()
    assert description is not None
    names = [str(d[0]) for d in description]
    if not names:
        raise ValidationError("the query returns no columns: select at least one")
    if len(set(names)) != len(names):
        raise ValidationError(f"the query's column names repeat: {names}")
    cols = []
    for name, desc_tuple in zip(names, description, strict=True):
        desc: Any = desc_tuple  # psycopg's Column: name, type_code, precision, scale
        column = sub.c[name] if name in sub.c else sa.column(name)
        sa_type = _OID_TYPES.get(desc.type_code)
        expr: Any = column
        if desc.type_code == 1700:
            precision, scale = desc.precision, desc.scale
            sa_type = sa.Numeric(precision, scale) if precision else sa.Numeric()
        elif sa_type is None:  # anything else (uuid, interval, ...) travels as its text form
            sa_type, expr = sa.Text(), sa.cast(column, sa.Text)
        cols.append(_column(column.name, expr, sa_type, decimal=decimal))
    stmt = sa.select(*(c.expr.label(c.name) for c in cols)).select_from(sub)
    return _Plan(stmt, tuple(cols), None)


@boundary
def arrow_schema(
    table: str,
    *,
    columns: Sequence[str] | None = None,
    flatten: Sequence[str] | Mapping[str, Any] | None = None,
    decimal: Decimal = "decimal128",
) -> pa.Schema:
    """The Arrow schema rows of ``table`` are read and exported with.

    Example:
        >>> from flowscope.export import arrow_schema
        >>> arrow_schema("executions").field("duration_seconds").type
        Decimal128Type(decimal128(10, 3))
        >>> str(arrow_schema("workflows").field("tags").type)
        'list<item: string>'
        >>> "password_hash" in arrow_schema("users").names
        False
    """
    return _plan(table, columns=columns, flatten=flatten, decimal=decimal).schema


# -- streaming ----------------------------------------------------------------------------
def _compile(stmt: sa.Select[Any]) -> tuple[str, dict[str, Any]]:
    from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg

    compiled = stmt.compile(
        dialect=pg_psycopg.dialect(), compile_kwargs={"render_postcompile": True}
    )
    return str(compiled), dict(compiled.params)


_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds
_PG_EPOCH_DAYS = 10_957
_HEADER = b"PGCOPY\n\xff\r\n\x00"


def _wire(column: _Column) -> str:
    import pyarrow as pa

    if column.wire:
        return column.wire
    t = column.type
    if column.kind != "plain" or pa.types.is_string(t):
        return "text"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_decimal(t):
        return "numeric"
    return {
        pa.int16(): "int2",
        pa.int32(): "int4",
        pa.int64(): "int8",
        pa.bool_(): "bool",
        pa.float64(): "float8",
        pa.date32(): "date",
    }[t]


class _Decoder:
    """Decodes whole rows of ``COPY ... (FORMAT binary)`` into RecordBatches, vectorised.

    Each CopyData message is one row, so row starts are known; every field's
    length and start are then found for all rows at once with numpy, and
    columns are built straight from the message bytes (strings as Arrow string
    views into the batch buffer, then one cast to ``string``).
    """

    def __init__(self, plan: _Plan) -> None:
        self.schema = plan.schema
        self.columns = plan.columns
        self.wires = [_wire(c) for c in plan.columns]

    def __call__(self, chunks: list[Any]) -> pa.RecordBatch:
        import numpy as np
        import pyarrow as pa

        n = len(chunks)
        sizes = np.fromiter(map(len, chunks), dtype=np.int64, count=n)
        data = b"".join(chunks) + bytes(16)  # padding: fixed-width reads past a NULL stay inside
        u8 = np.frombuffer(data, dtype=np.uint8)
        buffer = pa.py_buffer(data)
        pos = np.zeros(n, dtype=np.int64)
        if n > 1:
            np.cumsum(sizes[:-1], out=pos[1:])
        pos += 2  # the field count
        arrays = []
        for column, wire in zip(self.columns, self.wires, strict=True):
            lengths = _be(u8, pos, 4, ">i4")
            starts = pos + 4
            pos = starts + np.maximum(lengths, 0)
            valid = lengths >= 0
            array = _decode(wire, column.type, u8, buffer, starts, lengths, valid)
            if column.kind == "json":
                array = pa.ExtensionArray.from_storage(pa.json_(), array)
            elif column.kind == "nested":
                array = _parse_json_lists(array, column.type)
            arrays.append(array)
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)


def _be(u8: Any, starts: Any, width: int, dtype: str) -> Any:
    """Big-endian fixed-width values at ``starts`` (one per row)."""
    import numpy as np

    index = (starts[:, None] + np.arange(width)).ravel()
    return np.take(u8, index).view(dtype).astype(dtype[1:])


def _validity(valid: Any) -> Any:
    import numpy as np
    import pyarrow as pa

    if valid.all():
        return None
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


def _decode(
    wire: str, type_: pa.DataType, u8: Any, buffer: Any, starts: Any, lengths: Any, valid: Any
) -> pa.Array:
    import numpy as np
    import pyarrow as pa

    n = len(starts)
    bitmap = _validity(valid)
    if wire == "text":
        # Offsets s0, e0, s1, e1, ... over the whole batch buffer make a binary array whose
        # even values are this column's strings and odd values the bytes between them;
        # one C++ take of the even values copies the strings out contiguously.
        ends = starts + np.maximum(lengths, 0)
        offsets = np.empty(2 * n, dtype=np.int32)
        offsets[0::2] = starts
        offsets[1::2] = ends
        if n == 0:
            return pa.array([], type=pa.string())
        interleaved = pa.Array.from_buffers(
            pa.binary(), 2 * n - 1, [None, pa.py_buffer(offsets), buffer]
        )
        taken = interleaved.take(pa.array(np.arange(0, 2 * n, 2, dtype=np.int32)))
        _, taken_offsets, taken_data = taken.buffers()
        return pa.Array.from_buffers(pa.string(), n, [bitmap, taken_offsets, taken_data])
    if wire in ("int2", "int4", "int8", "float8"):
        width, dtype = {
            "int2": (2, ">i2"),
            "int4": (4, ">i4"),
            "int8": (8, ">i8"),
            "float8": (8, ">f8"),
        }[wire]
        values = _be(u8, starts, width, dtype)
        return pa.Array.from_buffers(type_, n, [bitmap, pa.py_buffer(values)])
    if wire == "bool":
        return pa.array(u8[starts] != 0, mask=~valid if bitmap is not None else None)
    if wire == "timestamp":
        values = _be(u8, starts, 8, ">i8") + _PG_EPOCH_US
        return pa.Array.from_buffers(type_, n, [bitmap, pa.py_buffer(values)])
    if wire == "date":
        values = (_be(u8, starts, 4, ">i4") + _PG_EPOCH_DAYS).astype(np.int32)
        return pa.Array.from_buffers(type_, n, [bitmap, pa.py_buffer(values)])
    if wire == "numeric":
        return _numeric(type_, u8, starts, valid)
    raise AssertionError(wire)  # pragma: no cover


def _numeric(type_: pa.DataType, u8: Any, starts: Any, valid: Any) -> pa.Array:
    """NUMERIC's binary form (base-10000 digits) → decimal128(p, s) or float64."""
    import numpy as np
    import pyarrow as pa

    n = len(starts)
    ndigits = np.where(valid, _be(u8, starts, 2, ">i2"), 0).astype(np.int64)
    weight = _be(u8, starts + 2, 2, ">i2").astype(np.int64)
    sign = _be(u8, starts + 4, 2, ">u2")
    special = (sign != 0) & (sign != 0x4000)  # NaN, ±Infinity: no Arrow decimal for them
    valid = valid & ~special
    ndigits = np.where(special, 0, ndigits)
    most = int(ndigits.max()) if n else 0
    if pa.types.is_decimal(type_):
        scale = type_.scale
        unscaled = np.zeros(n, dtype=np.int64)
        for i in range(most):
            digit = np.where(i < ndigits, _be(u8, starts + 8 + 2 * i, 2, ">i2"), 0).astype(np.int64)
            exponent = 4 * (weight - i) + scale
            up = np.power(10, np.clip(exponent, 0, 18), dtype=np.int64)
            down = np.power(10, np.clip(-exponent, 0, 18), dtype=np.int64)
            unscaled += np.where(exponent >= 0, digit * up, digit // down)
        unscaled = np.where(sign == 0x4000, -unscaled, unscaled)
        pairs = np.empty((n, 2), dtype="<i8")
        pairs[:, 0] = unscaled
        pairs[:, 1] = unscaled >> 63  # two's complement sign extension to 128 bits
        return pa.Array.from_buffers(type_, n, [_validity(valid), pa.py_buffer(pairs)])
    total = np.zeros(n, dtype=np.float64)
    for i in range(most):
        digit = np.where(i < ndigits, _be(u8, starts + 8 + 2 * i, 2, ">i2"), 0)
        total += digit * np.power(10000.0, (weight - i).astype(np.float64))
    total = np.where(sign == 0x4000, -total, total)
    return pa.Array.from_buffers(pa.float64(), n, [_validity(valid), pa.py_buffer(total)])


def _parse_json_lists(array: pa.Array, type_: pa.DataType) -> pa.Array:
    """JSON arrays (one per row, as text) → a list array, with Arrow's C++ JSON reader."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pjson

    if len(array) == 0:
        return pa.array([], type=type_)
    wrapped = pc.binary_join_element_wise(
        '{"v":', pc.fill_null(array.cast(pa.string()), "null"), "}", ""
    )
    one_list = pa.ListArray.from_arrays(pa.array([0, len(wrapped)], pa.int32()), wrapped)
    lines = pc.binary_join(one_list, "\n")[0]
    schema = pa.schema([pa.field("v", type_)])
    parsed = pjson.read_json(
        pa.BufferReader(lines.as_buffer()),
        parse_options=pjson.ParseOptions(explicit_schema=schema, newlines_in_values=False),
        read_options=pjson.ReadOptions(use_threads=False, block_size=max(1 << 20, 2 * len(array))),
    )
    return parsed.column("v").combine_chunks()


def _copy_batches(
    session: Session,
    plan: _Plan,
    *,
    batch_size: int,
    max_bytes: int = _MAX_BATCH_BYTES,
    conn: sa.Connection | None = None,
) -> Iterator[list[Any]]:
    """Run ``COPY (plan) TO STDOUT (FORMAT binary)`` in the client's scope and yield the
    rows (one CopyData message each) in lists of at most ``batch_size`` rows / ``max_bytes``.

    Everything happens in the caller's thread: measured here, a separate draining thread
    cost more in GIL hand-offs than it won in overlap. Closing the generator early exits
    the COPY (psycopg cancels it) and rolls the transaction back. ``conn``: run inside this
    open transaction instead (one snapshot for several reads, as the mirror's sync does).
    """
    sql, params = _compile(plan.select)
    copy_sql = "COPY (" + sql + ") TO STDOUT (FORMAT binary)"
    opened = contextlib.nullcontext(conn) if conn is not None else session.read_transaction()
    with opened as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur, cur.copy(copy_sql, params) as copy:
            rows: list[Any] = []
            size = 0
            messages = iter(copy)
            first = next(messages, None)
            if first is not None:
                first = bytes(first)
                if not first.startswith(_HEADER):  # pragma: no cover - protocol change
                    raise FlowscopeError("unexpected COPY binary header")
                skip = 19 + int.from_bytes(first[15:19], "big")
                if len(first) > skip + 2:  # a row (not only the trailer) follows the header
                    rows.append(first[skip:])
            append = rows.append
            for chunk in messages:
                length = len(chunk)
                if length == 2:  # the trailer (a row is longer: count + one field)
                    continue
                append(chunk)
                size += length
                if len(rows) >= batch_size or size >= max_bytes:
                    yield rows
                    rows, size = [], 0
                    append = rows.append
            if rows:
                yield rows


def _stream_plan(
    session: Session,
    plan: _Plan,
    *,
    batch_size: int | None = _DEFAULT_BATCH,
    conn: sa.Connection | None = None,
    snapshot: str | None = None,
) -> Iterator[pa.RecordBatch]:
    """The plan's rows as RecordBatches of at most ``batch_size`` rows; ``None``: each
    transport's own size (ADBC's 4 MB batches as they come, the COPY decoder's
    :data:`_COPY_BATCH` rows), which the Parquet export uses.

    ``conn``: read in that open transaction (the COPY decoder runs on it); with
    ``snapshot`` (its ``pg_export_snapshot()``), ADBC may read instead, in a transaction
    that imports the snapshot: the same rows, at ADBC's speed."""
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValidationError(f"batch_size must be a positive integer, got {batch_size!r}")
    from ._session import READ

    session.require(READ)
    adbc = _adbc_query(session, plan) if conn is None or snapshot is not None else None
    if adbc is not None:
        yield from _adbc_batches(
            session, plan, adbc, batch_size=batch_size or sys.maxsize, snapshot=snapshot
        )
        return
    decode = _Decoder(plan)
    with _db.translating(session.url):
        for chunks in _copy_batches(session, plan, batch_size=batch_size or _COPY_BATCH, conn=conn):
            yield decode(chunks)


# -- the ADBC transport ---------------------------------------------------------------------
# ``FLOWSCOPE_EXPORT_TRANSPORT``: "auto" (ADBC when installed, the client has no read replicas,
# no write transaction of the client is open, and every parameter is a simple value), "adbc" (the same, but an error when ADBC is not installed), "copy" (the binary
# COPY decoder above, always). Queries with parameters always take the COPY decoder.
_TRANSPORT_ENV = "FLOWSCOPE_EXPORT_TRANSPORT"


def _transport() -> str:
    value = os.environ.get(_TRANSPORT_ENV, "auto").strip().lower() or "auto"
    if value not in ("auto", "adbc", "copy"):
        raise ConfigurationError(f"{_TRANSPORT_ENV} must be auto, adbc or copy; got {value!r}")
    return value


def adbc_uri(url: str | sa.URL, *, statement_timeout: float | None = None) -> str | None:
    """The libpq URI ADBC connects with, for a flowscope database URL (None: not expressible).

    Example:
        >>> adbc_uri("postgresql+psycopg://u:p%40ss@db:5433/x")
        'postgresql://u:p%40ss@db:5433/x?application_name=flowscope'
        >>> adbc_uri("postgresql://postgres:@/flowscope?host=/tmp/pg")
        'postgresql://postgres@/flowscope?host=%2Ftmp%2Fpg&application_name=flowscope'
    """
    u = sa.make_url(_db.normalize_url(url))
    quote = urllib.parse.quote
    if isinstance(u.host, tuple) or any(isinstance(v, tuple) for v in u.query.values()):
        return None  # several hosts: leave it to psycopg
    auth = ""
    if u.username:
        auth = quote(u.username, safe="")
        if u.password:
            auth += ":" + quote(str(u.password), safe="")
        auth += "@"
    host = u.host or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{u.port}" if u.port else ""
    database = quote(u.database or "", safe="")
    query = dict(u.query)
    query.setdefault("application_name", "flowscope")
    if statement_timeout is not None:
        query["options"] = f"-c statement_timeout={round(statement_timeout * 1000)}"
    return f"postgresql://{auth}{host}{port}/{database}?" + urllib.parse.urlencode(query)


def _adbc_query(session: Session, plan: _Plan) -> tuple[str, str, list[tuple[str, str]]] | None:
    """(uri, SQL, settings it reads) when this plan can go through ADBC, else None."""
    choice = _transport()
    if choice == "copy":
        return None
    from ._session import _WRITE_TX

    if session.replicas is not None or _WRITE_TX.get() is not None:
        # read_transaction() decides where reads go (a replica, read-your-writes waits, the
        # open write transaction's own connection): the COPY decoder runs inside it.
        return None
    try:
        import adbc_driver_postgresql.dbapi  # noqa: F401
    except ImportError:
        if choice == "adbc":
            raise ConfigurationError(
                "adbc-driver-postgresql is not installed (pip install adbc-driver-postgresql)"
            ) from None
        return None
    from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg

    stmt = plan.select
    if any(c.native is not None for c in plan.columns):  # TEXT[] as itself: ADBC reads lists
        stmt = stmt.with_only_columns(
            *((c.native if c.native is not None else c.expr).label(c.name) for c in plan.columns)
        )
    compiled = stmt.compile(
        dialect=pg_psycopg.dialect(paramstyle="numeric_dollar"),
        compile_kwargs={"render_postcompile": True},
    )
    positions = compiled.positiontup or []
    params = [compiled.params[name] for name in positions]
    uri = adbc_uri(session.login_url, statement_timeout=session.statement_timeout)
    if uri is None:
        return None
    # ADBC (1.13) runs a query with bound parameters as a prepared statement and hands back
    # its whole result at once (measured: 860 MB peak for 1M executions, against 173 MB
    # streamed), so the query ADBC runs has none: each value is bound to a transaction-local
    # setting (``set_config($1, $2, true)``) and the query reads it back with a cast.
    sql = str(compiled)
    marks = re.findall(r"\$(\d+)(?![0-9])", sql)
    if sorted(map(int, marks)) != list(range(1, len(params) + 1)):
        return None  # a "$n" of the query's own text (a literal): leave it to psycopg
    settings: list[tuple[str, str]] = []
    refs: dict[str, str] = {}
    for i, value in enumerate(params, 1):
        as_text = _setting_text(value)
        if as_text is None:
            return None  # None, arrays, Decimal...: psycopg binds them, COPY streams them
        text, sql_type = as_text
        settings.append((f"flowscope_export.p{i}", text))
        refs[str(i)] = f"CAST(current_setting('flowscope_export.p{i}') AS {sql_type})"

    def ref(match: re.Match[str]) -> str:
        return refs[match.group(1)]

    return uri, re.sub(r"\$(\d+)(?![0-9])", ref, sql), settings


def _setting_text(value: Any) -> tuple[str, str] | None:
    """A parameter as (text, the SQL type to cast it back to), or None when not simple."""
    if isinstance(value, bool):
        return ("true" if value else "false"), "boolean"
    if isinstance(value, int):
        return str(value), "numeric" if abs(value) >= 2**63 else "bigint"
    if isinstance(value, float):
        return repr(value), "double precision"
    if isinstance(value, str):
        return (value, "text") if "\x00" not in value else None
    if isinstance(value, datetime):
        return value.isoformat(), "timestamptz" if value.tzinfo is not None else "timestamp"
    if isinstance(value, date):
        return value.isoformat(), "date"
    if isinstance(value, list) and all(isinstance(v, str) and "\x00" not in v for v in value):
        # a filter's list (= ANY(:values)) as an array literal: {"a","b \"c\""}
        quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in value)
        return "{" + ",".join(quoted) + "}", "text[]"
    return None


def _adbc_cast(array: pa.Array, target: pa.DataType) -> pa.Array:
    """One column as ADBC sends it → flowscope's type (no JSON parsing, exact decimals)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array.type, pa.BaseExtensionType):
        if array.type == target:
            return array
        array = array.storage  # arrow.json / arrow.opaque[numeric] over UTF-8
    if isinstance(target, pa.JsonType):
        if not pa.types.is_string(array.type):
            array = array.cast(pa.string())
        return pa.ExtensionArray.from_storage(target, array)
    if array.type == target:
        return array
    # NUMERIC text → decimal128 (a safe cast: a value that does not fit is an error) or float64
    return pc.cast(array, target, safe=True)


class _AdbcCaster:
    """Turns a RecordBatch from ADBC's reader into one of the plan's explicit schema."""

    def __init__(self, plan: _Plan) -> None:
        self.schema = plan.schema

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        import pyarrow as pa

        arrays = [_adbc_cast(batch.column(i), field.type) for i, field in enumerate(self.schema)]
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)


_SNAPSHOT_ID = re.compile(r"[0-9A-F]+-[0-9A-F]+(-[0-9]+)?")


def _adbc_batches(
    session: Session,
    plan: _Plan,
    query: tuple[str, str, list[tuple[str, str]]],
    *,
    batch_size: int,
    snapshot: str | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream the plan through ADBC (libpq binary COPY in C++), in one transaction, logged
    in as the session's own identity (a tenant's role: row-level security applies).
    ``snapshot``: an exported snapshot id the transaction imports first (REPEATABLE READ,
    READ ONLY); ``SET TRANSACTION SNAPSHOT`` takes no parameter, so the id, which the
    server generated, is checked against its format before it is spelled in."""
    import adbc_driver_manager
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow as pa

    uri, sql, settings = query
    cast = _AdbcCaster(plan)
    errors = (adbc_driver_manager.Error, pa.ArrowException, OSError)  # OSError: from the stream

    def fail(exc: BaseException) -> FlowscopeError:
        if isinstance(exc, adbc_driver_manager.Error):
            return _db.translate(exc, url=session.url)
        return DatabaseError(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))

    try:
        conn = adbc.connect(uri, autocommit=False)
    except errors as exc:
        raise fail(exc) from exc
    drained = False
    try:
        with conn.cursor() as cur:
            try:
                if snapshot is not None:
                    if not _SNAPSHOT_ID.fullmatch(snapshot):
                        raise ValidationError(f"not a snapshot id: {snapshot!r}")
                    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    cur.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                for name, value in settings:  # the query's values, bound (see _adbc_query)
                    cur.execute("SELECT set_config($1, $2, true)", (name, value))
                    cur.fetchall()
                with contextlib.suppress(adbc_driver_manager.Error):  # an older driver
                    cur.adbc_statement.set_options(
                        **{"adbc.postgresql.batch_size_hint_bytes": str(_ADBC_BATCH_BYTES)}
                    )
                cur.execute(sql)
                reader = cur.fetch_record_batch()
            except errors as exc:
                raise fail(exc) from exc
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    drained = True
                    break
                except errors as exc:
                    raise fail(exc) from exc
                for start in range(0, batch.num_rows, batch_size):
                    yield cast(batch.slice(start, batch_size))
    finally:
        if not drained:
            with contextlib.suppress(Exception):
                conn.adbc_connection.cancel()
        with contextlib.suppress(Exception):
            conn.rollback()
        with contextlib.suppress(Exception):
            conn.close()


@boundary
def iter_batches(
    client: Any,
    table: str,
    filter: Any = None,
    /,
    *,
    columns: Sequence[str] | None = None,
    flatten: Sequence[str] | Mapping[str, Any] | None = None,
    decimal: Decimal = "decimal128",
    batch_size: int = _DEFAULT_BATCH,
    **filter_fields: Any,
) -> Iterator[pa.RecordBatch]:
    """Stream ``table`` (optionally filtered) as Arrow RecordBatches of ``batch_size`` rows.

    Every batch has the table's explicit schema (:func:`arrow_schema`). Memory stays
    constant: at most a few batches are in flight. Closing the iterator early
    cancels the query.

    Example:
        >>> for batch in flowscope.iter_batches(client, "executions", status="failed"):  # doctest: +SKIP
        ...     print(batch.num_rows)
        65536
    """
    session = session_of(client)
    plan = _plan(
        table,
        filter,
        columns=columns,
        flatten=flatten,
        decimal=decimal,
        filter_fields=filter_fields,
    )
    return _stream_plan(session, plan, batch_size=batch_size)


@boundary
def read_arrow(
    client: Any,
    table: str,
    filter: Any = None,
    /,
    *,
    columns: Sequence[str] | None = None,
    flatten: Sequence[str] | Mapping[str, Any] | None = None,
    decimal: Decimal = "decimal128",
    batch_size: int = _DEFAULT_BATCH,
    **filter_fields: Any,
) -> pa.Table:
    """Read ``table`` (optionally filtered) into one Arrow table with the explicit schema.

    ``filter`` is an :class:`ExecutionFilter`/:class:`WorkflowFilter` (or pass its
    fields as keywords). ``flatten`` pulls JSON keys into their own columns: a
    list (``["parameters.lr"]``, strings) or a mapping of key → type
    (``{"parameters.lr": "float64", "result.accuracy": "float64"}``; types
    ``string``, ``float64``, ``int64``, ``bool``, ``json``). A value of another
    JSON type becomes NULL. ``decimal="float64"`` reads NUMERIC as float64.

    Example:
        >>> t = flowscope.read_arrow(client, "executions", status="completed",  # doctest: +SKIP
        ...                          flatten={"parameters.lr": "float64"})
        >>> t.schema.field("parameters.lr").type                                 # doctest: +SKIP
        DataType(double)
    """
    import pyarrow as pa

    session = session_of(client)
    plan = _plan(
        table,
        filter,
        columns=columns,
        flatten=flatten,
        decimal=decimal,
        filter_fields=filter_fields,
    )
    batches = list(_stream_plan(session, plan, batch_size=batch_size))
    return pa.Table.from_batches(batches, schema=plan.schema)


def query_arrow(
    client: Any,
    statement: str | sa.Select[Any],
    params: Mapping[str, Any] | None = None,
    *,
    decimal: Decimal = "decimal128",
) -> pa.Table:
    """Any query (SQL text with ``:name`` parameters, or a SQLAlchemy ``Select``) as an
    Arrow table with flowscope's column types, streamed, as the client's identity.

    Column types come from the server's description of the result: timestamps are
    ``timestamp[us, UTC]``, integers ``int16/32/64``, NUMERIC ``decimal128`` (or
    float64), JSON(B) ``arrow.json``, ``TEXT[]`` ``list<string>``, anything else text.

    Example:
        >>> t = flowscope.export.query_arrow(client, "SELECT status, count(*) AS n"   # doctest: +SKIP
        ...     " FROM executions GROUP BY status")
        >>> t.schema.field("n").type                                              # doctest: +SKIP
        DataType(int64)
    """
    import pyarrow as pa

    session = session_of(client)
    if params is not None and not isinstance(params, Mapping):
        raise ValidationError("params must be a mapping of names to values")
    if isinstance(statement, str):
        text = sa.text(statement)
        try:
            query: Any = (text.bindparams(**params) if params else text).columns()
        except sa.exc.ArgumentError as exc:
            raise ValidationError(f"params do not match the statement: {exc}") from exc
    elif isinstance(statement, sa.Select):
        if params:
            raise ValidationError("params go with a SQL string; a Select carries its own values")
        query = statement
    else:
        raise ValidationError("statement must be a SQL string or a SQLAlchemy Select")
    plan = _plan_query(session, query, decimal=decimal)
    batches = list(_stream_plan(session, plan, batch_size=None))
    return pa.Table.from_batches(batches, schema=plan.schema)


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow → pandas with the column contract: nullable ints/booleans/floats,
    pyarrow strings, tz-aware UTC timestamps, Arrow-backed decimals, lists and JSON."""
    return table.to_pandas(types_mapper=pandas_dtype)


@boundary
def read_pandas(
    client: Any,
    table: str,
    filter: Any = None,
    /,
    *,
    columns: Sequence[str] | None = None,
    flatten: Sequence[str] | Mapping[str, Any] | None = None,
    decimal: Decimal = "decimal128",
    batch_size: int = _DEFAULT_BATCH,
    **filter_fields: Any,
) -> pd.DataFrame:
    """Like :func:`read_arrow`, as a DataFrame with nullable / Arrow-backed dtypes.

    Strings are ``str`` on pandas 3 (``string[pyarrow]`` on pandas 2), integers ``Int32``/``Int64``, booleans
    ``boolean``, timestamps ``datetime64[us, UTC]``, NUMERIC ``decimal128(10, 3)[pyarrow]``
    (or ``Float64`` with ``decimal="float64"``), ``TEXT[]`` ``list<string>[pyarrow]``
    and JSONB ``extension<arrow.json>[pyarrow]`` (values are JSON text). The same
    columns come back when nothing matches.

    Example:
        >>> df = flowscope.read_pandas(client, "executions", status="failed")  # doctest: +SKIP
        >>> df.dtypes["created_at"]                                           # doctest: +SKIP
        datetime64[us, UTC]
    """
    return to_pandas(
        read_arrow(
            client,
            table,
            filter,
            columns=columns,
            flatten=flatten,
            decimal=decimal,
            batch_size=batch_size,
            **filter_fields,
        )
    )


# -- Parquet ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What an export wrote: ``rows``, ``files`` (paths), ``bytes``, ``seconds``.

    ``high_water_mark`` is the newest time-column value exported (incremental mode),
    or None; ``deleted``: the tombstones an incremental run wrote (not in ``rows``).
    """

    rows: int
    files: tuple[Path, ...]
    bytes: int
    seconds: float
    high_water_mark: datetime | None = None
    deleted: int = 0

    def __repr__(self) -> str:
        return (
            f"ExportResult(rows={self.rows}, files={len(self.files)}, bytes={self.bytes},"
            f" seconds={self.seconds:.2f})"
        )

    @property
    def rows_per_second(self) -> float:
        """Throughput of the export."""
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def _step(name: str) -> None:
    """A named point of the write protocol (``files-ready``, ``intent-written``, ``renamed``,
    ``before-manifest``, ``after-manifest``, ``batch``): nothing happens here. The crash
    tests replace it in a child process to kill that process at exactly this point."""


class _AtomicFile:
    """A Parquet file written beside its destination and renamed into place on commit.

    The temp file (``.name.<random>.tmp``) is ``flock``-ed while it exists, so a later run
    can tell a leftover of a killed process (sweep it) from a file being written now.
    """

    def __init__(
        self,
        final: Path,
        schema: pa.Schema,
        compression: str | None,
        dictionary: list[str] | bool = True,
    ) -> None:
        import pyarrow.parquet as pq

        self.final = final
        final.parent.mkdir(parents=True, exist_ok=True)
        self.temp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
        self.rows = 0
        self._writer: Any = None
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = self._pending_bytes = 0
        self._lock: int | None = owned_temp_file(self.temp)
        try:
            self._writer = pq.ParquetWriter(
                self.temp, schema, compression=compression, use_dictionary=dictionary
            )
        except BaseException:
            self.abort()
            raise

    def write(self, batch: pa.RecordBatch) -> None:
        # pyarrow starts a row group per write call: batches are gathered (not copied) into
        # row groups of ~_ROW_GROUP_ROWS, as Parquet readers (DuckDB, Spark) expect.
        if batch.num_rows == 0:
            return
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self._pending_bytes += batch.nbytes
        self.rows += batch.num_rows
        if self._pending_rows >= _ROW_GROUP_ROWS or self._pending_bytes >= _ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._pending_rows:
            self._writer.write_table(
                pa.Table.from_batches(self._pending), row_group_size=self._pending_rows
            )
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0

    def finish(self) -> None:
        """Close, check and fsync the temp file (it is renamed later by ``commit``)."""
        import pyarrow.parquet as pq

        if self._writer is None:
            return
        self._flush()
        self._writer.close()
        self._writer = None
        written = pq.ParquetFile(self.temp).metadata.num_rows
        if written != self.rows:  # pragma: no cover - a broken writer
            raise FlowscopeError(f"{self.temp} holds {written} rows, expected {self.rows}")
        with open(self.temp, "rb") as handle:
            os.fsync(handle.fileno())

    def commit(self) -> int:
        os.replace(self.temp, self.final)
        release(self._lock)
        self._lock = None
        return self.final.stat().st_size

    def abort(self) -> None:
        self._pending = []
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        if self._lock is not None:
            with contextlib.suppress(FileNotFoundError):
                self.temp.unlink()
            release(self._lock)
            self._lock = None


def _partition_dir(keys: Sequence[str], values: Sequence[Any]) -> str:
    parts = []
    for key, value in zip(keys, values, strict=True):
        if value is None:
            text = _HIVE_NULL
        elif isinstance(value, date):
            text = value.isoformat()
        else:
            text = urllib.parse.quote(str(value), safe="")
        parts.append(f"{key}={text}")
    return "/".join(parts)


def _split_runs(
    batch: pa.RecordBatch, keys: Sequence[str]
) -> Iterator[tuple[tuple[Any, ...], int, int]]:
    """(partition values, offset, length) of each run of equal keys in a sorted batch."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = batch.num_rows
    if n == 0:
        return
    change = pa.array([False] * n)
    for key in keys:
        col = batch.column(key)
        if n > 1:
            prev, cur = col.slice(0, n - 1), col.slice(1)
            diff = pc.fill_null(pc.not_equal(prev, cur), True)
            both_null = pc.and_(pc.is_null(prev), pc.is_null(cur))
            diff = pc.and_not(diff, both_null)
            change = pc.or_(change, pa.concat_arrays([pa.array([False]), diff]))
    starts = [0, *[i for i in pc.indices_nonzero(change).to_pylist()]]
    bounds = [*starts, n]
    for start, end in zip(bounds, bounds[1:], strict=False):
        values = tuple(batch.column(k)[start].as_py() for k in keys)
        yield values, start, end - start


def _progress(enabled: bool, desc: str, total: int | None) -> Any:
    from ._display import progress_bar

    return progress_bar(
        enabled,
        total=total,
        desc=desc,
        unit=" rows",
        unit_scale=True,
        leave=True,
        dynamic_ncols=True,
    )


_NO_DICTIONARY = frozenset({"id", "trace_id", "row_id", "name", "description", "email", "username"})


class _Sink:
    """Writes batches to one file, or to one file per partition (rows arrive sorted by key)."""

    def __init__(
        self,
        root: Path,
        schema: pa.Schema,
        keys: Sequence[str],
        *,
        compression: str | None,
        single: Path | None,
        name: str,
    ) -> None:
        import pyarrow as pa

        self.root = root
        self.schema = schema
        self.keys = list(keys)
        self.compression = compression
        self.single = single
        self.name = name
        self.files: list[_AtomicFile] = []
        self.current: _AtomicFile | None = None
        self.current_key: tuple[Any, ...] | None = None
        self.seen: set[tuple[Any, ...]] = set()
        # Dictionary-encode low-cardinality strings only (ids and JSON gain nothing).
        self.dictionary = [
            f.name for f in schema if f.type == pa.string() and f.name not in _NO_DICTIONARY
        ]

    def _open(self, final: Path) -> _AtomicFile:
        if self.current is not None:
            self.current.finish()
        self.current = _AtomicFile(final, self.schema, self.compression, self.dictionary)
        self.files.append(self.current)
        return self.current

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        if not self.keys:
            current = self.current
            if current is None:
                final = self.single or self.root / f"{self.name}-0.parquet"
                current = self._open(final)
            current.write(batch)
            _step("batch")
            return
        for values, offset, length in _split_runs(batch, self.keys):
            if values != self.current_key or self.current is None:
                if values in self.seen:  # pragma: no cover - ORDER BY guarantees runs
                    raise FlowscopeError("partition rows arrived out of order")
                self.seen.add(values)
                self.current_key = values
                self._open(self.root / _partition_dir(self.keys, values) / f"{self.name}.parquet")
            assert self.current is not None
            self.current.write(batch.slice(offset, length).drop_columns(self.keys))
        _step("batch")

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(f.final for f in self.files)

    def finish(self) -> None:
        """Close, check and fsync every temp file (nothing is renamed yet)."""
        if not self.files and self.single is not None:
            self._open(self.single)  # an empty result is still a (valid, empty) file
        if self.current is not None:
            self.current.finish()
            self.current = None

    def commit(self, *, announce: bool = False) -> list[int]:
        """Rename every finished temp file into place; the directories are fsynced.
        ``announce``: pass the ``renamed`` step after each file (a dataset's own files)."""
        sizes = []
        for f in self.files:
            sizes.append(f.commit())
            if announce:
                _step("renamed")
        for parent in {f.final.parent for f in self.files}:
            fsync_dir(parent)
        return sizes

    def abort(self) -> None:
        for f in self.files:
            f.abort()


class Export(Guarded):
    """Parquet export: ``client.export.parquet(...)``.

    Example:
        >>> result = client.export.parquet("executions", "out/runs", partition_by=["day"])  # doctest: +SKIP
        >>> result.rows, len(result.files)                                                 # doctest: +SKIP
        (1000000, 180)
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def __repr__(self) -> str:
        return f"<flowscope.Export of {self._session!r}>"

    def parquet(
        self,
        table_or_query: str | sa.Select[Any],
        path: str | os.PathLike[str],
        filter: Any = None,
        /,
        *,
        columns: Sequence[str] | None = None,
        flatten: Sequence[str] | Mapping[str, Any] | None = None,
        partition_by: Sequence[str] | None = None,
        compression: str | None = "zstd",
        decimal: Decimal = "decimal128",
        progress: bool = True,
        incremental: bool = False,
        batch_size: int | None = None,
        **filter_fields: Any,
    ) -> ExportResult:
        """Stream a table (or a SQLAlchemy ``Select``) into Parquet, atomically.

        * No ``partition_by`` and not ``incremental``: one file at ``path``.
        * ``partition_by=["day"]`` or ``["organization_id", "day"]``: a Hive-style
          dataset under the directory ``path`` (``day=2026-03-01/part-….parquet``;
          ``day`` is the UTC date of the table's time column, ``created_at`` or
          ``occurred_at`` for ``audit_log``; NULL values go to
          ``__HIVE_DEFAULT_PARTITION__``). Partition columns live in the directory
          names, not in the files, as Hive, pyarrow, pandas and DuckDB expect.
        * ``incremental=True``: ``path`` is a dataset directory with a manifest
          (``_flowscope_manifest.json``); each run appends, as new files, what changed
          since the previous run. Runs read the change feed of :mod:`flowscope._changes`
          (the audit log's transaction ids, in one REPEATABLE READ snapshot whose
          ``horizon``, ``snapshot`` and ``as_of`` the manifest records), not a time
          mark: rows committed late by long transactions, rows updated after they were
          exported and deletions all reach the dataset, and a run with nothing changed
          adds no file. Every row carries two columns: ``_version`` (the run that wrote
          it: 1, 2, ...) and ``_deleted``. A row deleted, no longer visible to the
          client or no longer matching ``filter`` since the previous run becomes a
          *tombstone*: ``id``, ``_version``, ``_deleted = true``, its
          ``organization_id`` and time column from the audit log (so it sits in its own
          partition), every other column NULL, in ``part-<run>-deleted`` files. The
          table is the dataset read "latest version per id", e.g. in DuckDB::

              SELECT * EXCLUDE (_version, _deleted, latest) FROM (
                  SELECT *, row_number() OVER (PARTITION BY id ORDER BY _version DESC)
                         AS latest
                  FROM read_parquet('lake/executions/**/*.parquet', hive_partitioning = true))
              WHERE latest = 1 AND NOT _deleted

          ``audit_log`` is append-only: its runs add new entries and no tombstones
          (entries dropped by retention stay in the dataset). Limits: those of the
          change feed (changes made with triggers disabled are not seen; a dataset
          older than the audit retention must be exported again); a dataset written
          by a flowscope older than the change feed is refused (export it again).

        What a crash (even ``kill -9``) leaves, and what the next run does with it:

        * one file: written beside ``path`` (``.name.*.tmp``), checked, fsynced and
          renamed over it: ``path`` holds the old file or the new one, never a part.
        * a partitioned dataset: built in a hidden sibling directory
          (``.name.*.tmp``) and renamed into place as a whole: ``path`` is absent
          (or empty) or complete.
        * an incremental run: its files are written as hidden temp files inside the
          dataset; once all are complete the manifest records them as ``pending``
          (with the new high-water mark), then they are renamed into place and the
          manifest marks the run done. The next run first settles a pending run
          (renames what is left and records it), and removes temp files, files no
          manifest run lists (their rows are exported again) and empty partition
          directories. Rows are never in the dataset twice. One incremental run at
          a time per dataset (an ``flock`` on its directory; another gets
          :class:`ConflictError`).

        Leftover temp files and directories of killed runs are removed by the next
        export to the same path; on an ordinary error nothing is left at all.
        ``progress`` shows a ``tqdm.auto`` bar with rows/s. ``batch_size`` caps the
        rows read per batch (default: the transport's own size, which keeps memory
        flat); batches are gathered into row groups of ~65,536 rows either way.

        Raises:
            ValidationError: bad arguments, a non-empty target for a partitioned export.
            ConfigurationError: ``path`` cannot be written (its parent is a file, no
                permission, no space left...); the message names the path.
            ConflictError: another incremental export is writing the same dataset.

        Example:
            >>> client.export.parquet("executions", "failed.parquet", status="failed")  # doctest: +SKIP
            ExportResult(rows=1534, files=1, bytes=120443, seconds=0.12)
            >>> client.export.parquet("executions", "lake/executions", incremental=True,  # doctest: +SKIP
            ...                       partition_by=["organization_id", "day"], progress=False)
        """
        started = time.perf_counter()
        if path is None or not isinstance(path, str | os.PathLike):
            raise ValidationError(f"path must be a file or directory path, got {path!r}")
        target = Path(path)
        if isinstance(partition_by, str):
            raise ValidationError("partition_by is a list, e.g. ['day']")
        keys = list(partition_by or [])
        bad = [k for k in keys if k not in _PARTITIONS]
        if bad or len(set(keys)) != len(keys):
            raise ValidationError(
                f"partition_by takes 'day' and/or 'organization_id', got {partition_by!r}"
            )
        if compression is not None and compression not in (
            "zstd",
            "snappy",
            "gzip",
            "brotli",
            "lz4",
            "none",
        ):
            raise ValidationError(f"unknown compression {compression!r}")
        if isinstance(table_or_query, sa.Select):
            if incremental:
                raise ValidationError("incremental export needs a table name, not a query")
            if filter is not None or filter_fields or columns or flatten:
                raise ValidationError("filters/columns/flatten apply to table exports only")
        else:
            _table(table_or_query)
        try:
            with contextlib.ExitStack() as stack:
                if incremental:
                    if target.exists() and not target.is_dir():
                        raise ValidationError(f"{target} exists and is not a directory")
                    target.mkdir(parents=True, exist_ok=True)
                    stack.enter_context(directory_lock(target, "an incremental export"))
                    manifest = _settle(target)
                else:
                    manifest = None
                    _prepare_target(target, dataset=bool(keys))
                return self._write(
                    table_or_query,
                    target,
                    filter,
                    manifest,
                    started=started,
                    keys=keys,
                    columns=columns,
                    flatten=flatten,
                    compression=compression,
                    decimal=decimal,
                    progress=progress,
                    incremental=incremental,
                    batch_size=batch_size,
                    filter_fields=filter_fields,
                )
        except OSError as exc:
            raise _path_error(target, exc) from exc

    def _write(
        self,
        table_or_query: str | sa.Select[Any],
        target: Path,
        filter: Any,
        manifest: dict[str, Any] | None,
        *,
        started: float,
        keys: list[str],
        columns: Sequence[str] | None,
        flatten: Sequence[str] | Mapping[str, Any] | None,
        compression: str | None,
        decimal: Decimal,
        progress: bool,
        incremental: bool,
        batch_size: int | None,
        filter_fields: dict[str, Any],
    ) -> ExportResult:
        extra: list[tuple[str, Any, Any]] = []
        extra_where = None
        hwm_before: datetime | None = None
        since: tuple[int, str | None] | None = None  # the previous run's place in the feed
        version = 0
        if isinstance(table_or_query, sa.Select):
            plan = _plan_query(self._session, table_or_query, decimal=decimal)
            missing = [k for k in keys if k not in {c.name for c in plan.columns}]
            if missing:
                raise ValidationError(f"the query has no column(s) {missing} to partition by")
            time_col = None
            name = "query"
        else:
            name = str(table_or_query)
            table = _table(table_or_query)
            time_col = _TIME_COLUMN[name]
            if "organization_id" in keys and "organization_id" not in table.c:
                raise ValidationError(f"{name} has no organization_id to partition by")
            if manifest is not None:
                if manifest.get("table") != name or manifest.get("partition_by") != keys:
                    raise ValidationError(
                        f"{target} holds an export of {manifest.get('table')!r} partitioned by"
                        f" {manifest.get('partition_by')}, not {name!r} by {keys}"
                    )
                if manifest.get("high_water_mark"):
                    hwm_before = datetime.fromisoformat(manifest["high_water_mark"])
                if manifest.get("horizon") is None and manifest.get("runs"):
                    raise ValidationError(
                        f"{target} was written by an older flowscope, whose created_at mark"
                        " misses late and changed rows: export again into a new directory"
                    )
                if manifest.get("horizon") is not None:
                    since = (int(manifest["horizon"]), manifest.get("snapshot"))
                    extra_where = _changes.changed_where(name, *since)
            if incremental:
                version = len(manifest.get("runs", [])) + 1 if manifest else 1
                extra += [
                    ("_version", sa.literal(version, sa.BigInteger), sa.BigInteger()),
                    ("_deleted", sa.false(), sa.Boolean()),
                ]
                if columns is not None and "id" not in columns:
                    columns = ["id", *columns]
            for key in keys:
                if key == "day":
                    day = sa.cast(sa.func.timezone("UTC", table.c[time_col]), sa.Date)
                    extra.append(("day", day, sa.Date()))
                elif columns is not None and key not in columns:
                    columns = [*columns, key]
            plan = _plan(
                name,
                filter,
                columns=columns,
                flatten=flatten,
                decimal=decimal,
                extra=extra,
                extra_where=extra_where,
                filter_fields=filter_fields,
            )
            if time_col not in {c.name for c in plan.columns} and incremental:
                raise ValidationError(f"incremental export needs the column {time_col!r}")
        if keys:
            plan = dataclasses.replace(
                plan, select=plan.select.order_by(*(sa.literal_column(f'"{k}"') for k in keys))
            )
        dataset = bool(keys) or incremental
        compression_arg = None if compression in (None, "none") else compression
        file_schema = plan.schema
        for key in keys:
            file_schema = file_schema.remove(file_schema.get_field_index(key))
        run = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        # Where the files are written: the dataset itself (incremental: hidden temp files
        # until the manifest has them), or a hidden sibling directory renamed into place
        # as a whole (a new partitioned dataset), or beside the single file.
        staging: Path | None = None
        staging_lock: int | None = None
        if dataset and not incremental:
            staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
            staging_lock = owned_temp_dir(staging)
        sink = _Sink(
            staging or target,
            file_schema,
            keys,
            compression=compression_arg,
            single=None if dataset else target,
            name=f"part-{run}",
        )
        sinks = [sink]
        rows = deleted = 0
        hwm: datetime | None = None
        fresh_ids: set[str] = set()
        point: _changes.Point | None = None
        feed = contextlib.ExitStack()
        conn: sa.Connection | None = None
        if incremental:  # one snapshot: what it reads, and where the next run starts
            try:
                conn = feed.enter_context(_changes.snapshot(self._session))
                point = _changes.take_point(conn)
            except BaseException:
                feed.close()
                raise
        total = (
            _estimate_rows(self._session, name)
            if (progress and filter is None and not filter_fields)
            else None
        )
        bar = _progress(progress, f"export {name}", total if extra_where is None else None)
        # Parquet encoding runs in a worker thread, overlapping the next batch's parsing.
        from concurrent.futures import Future, ThreadPoolExecutor

        pending: Future[None] | None = None
        try:
            with feed, ThreadPoolExecutor(1, thread_name_prefix="flowscope-parquet") as pool:
                try:
                    shared = _changes.export_snapshot(conn) if conn is not None else None
                    stream = _stream_plan(
                        self._session, plan, batch_size=batch_size, conn=conn, snapshot=shared
                    )
                    for batch in stream:
                        if time_col is not None and incremental and batch.num_rows:
                            import pyarrow.compute as pc

                            newest = pc.max(batch.column(time_col)).as_py()
                            if newest is not None and (hwm is None or newest > hwm):
                                hwm = newest
                            if since is not None:
                                fresh_ids.update(batch.column("id").to_pylist())
                        if pending is not None:
                            pending.result()
                        pending = pool.submit(sink.write, batch)
                        rows += batch.num_rows
                        bar.update(batch.num_rows)
                    if pending is not None:
                        pending.result()
                    if since is not None and conn is not None and name in _changes.TABLES:
                        gone = _tombstones(conn, name, since, fresh_ids, plan, version, keys)
                        if gone is not None:
                            tombs = _Sink(
                                target,
                                file_schema,
                                keys,
                                compression=compression_arg,
                                single=None,
                                name=f"part-{run}-deleted",
                            )
                            sinks.append(tombs)
                            for batch in gone.to_batches():
                                tombs.write(batch)
                            deleted = gone.num_rows
                finally:
                    if pending is not None:
                        pending.cancel()
            for each in sinks:
                each.finish()
            _step("files-ready")
            new_mark = hwm if hwm is not None else hwm_before
            if incremental:
                assert point is not None
                written = [f for each in sinks for f in each.files]
                entry = {
                    "finished_at": None,
                    "rows": rows,
                    "deleted": deleted,
                    "files": [str(f.final.relative_to(target)) for f in written],
                    "high_water_mark": new_mark.isoformat() if new_mark else None,
                    "version": version,
                    "horizon": point.horizon,
                    "snapshot": point.snapshot,
                    "as_of": point.as_of.astimezone(UTC).isoformat(),
                }
                head = {"table": name, "partition_by": keys, "time_column": time_col}
                if written:  # the intent: after it, a rerun renames these into place
                    temps = [str(f.temp.relative_to(target)) for f in written]
                    _save_manifest(
                        target, _manifest(head, manifest, pending={**entry, "temps": temps})
                    )
                    _step("intent-written")
                sizes = [size for each in sinks for size in each.commit(announce=True)]
                _step("before-manifest")
                entry["finished_at"] = datetime.now(UTC).isoformat()
                _save_manifest(target, _manifest(head, manifest, done=entry))
                _step("after-manifest")
                files = tuple(f.final for f in written)
            else:
                sizes = sink.commit(announce=staging is None)
                if staging is not None:
                    _publish(staging, target)
                    staging = None
                    _step("renamed")
                    files = tuple(target / p.relative_to(sink.root) for p in sink.paths)
                else:
                    files = sink.paths
        except BaseException:
            for each in sinks:
                each.abort()
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            release(staging_lock)
            bar.close()
        return ExportResult(
            rows=rows,
            files=files,
            bytes=sum(sizes),
            seconds=time.perf_counter() - started,
            high_water_mark=(hwm if hwm is not None else hwm_before) if incremental else None,
            deleted=deleted,
        )


def _path_error(target: Path, exc: OSError) -> ConfigurationError:
    """An OS error on the export's path → a flowscope error naming the path."""
    where = exc.filename if exc.filename is not None else target
    reason = exc.strerror or str(exc) or type(exc).__name__
    detail = f" ({where}: {reason})" if str(where) != str(target) else f": {reason}"
    return ConfigurationError(f"cannot write the export to {target}{detail}")


def _prepare_target(target: Path, *, dataset: bool) -> None:
    """Check a single-file or new-dataset target, create its parent and sweep the
    leftovers of killed exports to it (temp files or staging directories no one holds)."""
    if dataset:
        if target.exists() and not target.is_dir():
            raise ValidationError(f"{target} exists and is not a directory")
        if target.exists() and any(target.iterdir()):
            raise ValidationError(
                f"{target} is not empty: remove it, or use incremental=True to append"
            )
    elif target.is_dir():
        raise ValidationError(f"{target} is a directory; give a file path (or partition_by)")
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(list(target.parent.glob(f".{glob.escape(target.name)}.*.tmp")))


def _publish(staging: Path, target: Path) -> None:
    """Rename a complete staged dataset onto ``target`` (absent or an empty directory)."""
    try:
        os.rename(staging, target)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise ValidationError(
                f"{target} is not empty (another export wrote it meanwhile)"
            ) from exc
        raise
    fsync_dir(target.parent)


def _estimate_rows(session: Session, name: str) -> int | None:
    if name not in TABLES:
        return None
    try:
        rows = session.sql(
            "SELECT reltuples::bigint AS n FROM pg_class WHERE oid = to_regclass(:t)",
            {"t": name},
        )
    except FlowscopeError:
        return None
    n = rows[0]["n"] if rows else None
    return int(n) if n is not None and n > 0 else None


# -- the incremental dataset's manifest ------------------------------------------------------
_MANIFEST_FORMAT = "flowscope-export/1"
_PART_FILE = re.compile(r"part-\d{8}T\d{6}-[0-9a-f]{6}(-deleted)?(-0)?\.parquet")


def _tombstones(
    conn: sa.Connection,
    name: str,
    since: tuple[int, str | None],
    fresh: set[str],
    plan: _Plan,
    version: int,
    keys: Sequence[str],
) -> pa.Table | None:
    """Tombstone rows for the ids changed since ``since`` that this run did not export
    (deleted, no longer visible, or no longer matching the export's filter), sorted by
    partition: ``id``, ``_version``, ``_deleted = true``; ``organization_id`` and the time
    column (so ``day``) from the row's last full image in the audit log; other columns NULL.
    None: nothing left."""
    import pyarrow as pa
    import pyarrow.compute as pc

    changed = {r[0] for r in conn.execute(_changes.changed_ids(name, *since))}
    gone = sorted(changed - fresh)
    if not gone:
        return None
    time_col = _TIME_COLUMN[name]
    a = AUDIT_LOG.c
    ids = sa.literal(gone, postgresql.ARRAY(sa.Text))
    images = (
        sa.select(
            a.row_id,
            a.organization_id,
            sa.cast(a.changes[time_col].astext, sa.DateTime(timezone=True)).label("at"),
        )
        .where(a.table_name == name, a.row_id == sa.any_(ids), a.action.in_(["INSERT", "DELETE"]))
        .order_by(a.transaction_id, a.occurred_at)
    )
    known = {r.row_id: (r.organization_id, r.at) for r in conn.execute(images)}  # the last
    values: dict[str, Any] = {
        "id": gone,
        "_version": [version] * len(gone),
        "_deleted": [True] * len(gone),
        "organization_id": [known.get(i, (None, None))[0] for i in gone],
        time_col: [known.get(i, (None, None))[1] for i in gone],
    }
    columns = []
    for field in plan.schema:
        if field.name in values:
            columns.append(pa.array(values[field.name], field.type))
        elif isinstance(field.type, pa.BaseExtensionType):
            storage = pa.nulls(len(gone), field.type.storage_type)
            columns.append(pa.ExtensionArray.from_storage(field.type, storage))
        else:
            columns.append(pa.nulls(len(gone), field.type))
    table = pa.Table.from_arrays(columns, schema=plan.schema)
    if "day" in keys:
        day = pc.cast(table.column(time_col), pa.timestamp("us")).cast(pa.date32())
        table = table.set_column(table.schema.get_field_index("day"), "day", day)
    return table.sort_by([(k, "ascending") for k in keys]) if keys else table


def _read_manifest(root: Path) -> dict[str, Any] | None:
    path = root / _MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValidationError(f"cannot read the export manifest {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != _MANIFEST_FORMAT:
        raise ValidationError(f"{path} is not a flowscope export manifest")
    return data


def _manifest(
    head: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
    *,
    done: dict[str, Any] | None = None,
    pending: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest after ``previous``'s runs (+ ``done``), with ``pending`` in progress;
    ``head``: the dataset's ``table``, ``partition_by`` and ``time_column``."""
    runs = list((previous or {}).get("runs", []))
    if done is not None:
        runs.append(done)
    marks = [r["high_water_mark"] for r in runs if r.get("high_water_mark")]
    fed = [r for r in runs if r.get("horizon") is not None]
    last = fed[-1] if fed else {}
    return {
        "format": _MANIFEST_FORMAT,
        "table": head["table"],
        "partition_by": head["partition_by"],
        "time_column": head["time_column"],
        "high_water_mark": max(marks, key=datetime.fromisoformat) if marks else None,
        "horizon": last.get("horizon"),
        "snapshot": last.get("snapshot"),
        "as_of": last.get("as_of"),
        "version": last.get("version"),
        "rows": sum(r["rows"] for r in runs),
        "deleted": sum(r.get("deleted", 0) for r in runs),
        "runs": runs,
        "pending": pending,
    }


def _save_manifest(root: Path, data: dict[str, Any]) -> None:
    """Replace the manifest atomically (temp file, fsync, rename, directory fsync)."""
    path = root / _MANIFEST
    temp = root / f".{_MANIFEST}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(temp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    fsync_dir(root)


def _settle(root: Path) -> dict[str, Any] | None:
    """Bring an incremental dataset back to a committed state (the caller holds its lock).

    A ``pending`` run (killed after its files were complete) is finished: its remaining
    temp files are renamed into place and it is recorded; if any of its files is gone,
    it is undone instead (its rows are exported again). Then temp files, part files no
    run lists (renamed by a run killed before its manifest: their rows are above the
    high-water mark, so they would be exported twice) and empty partition directories
    are removed. Returns the manifest.
    """
    manifest = _read_manifest(root)
    if manifest is None:
        strays = [p for p in root.rglob("part-*.parquet") if _PART_FILE.fullmatch(p.name)]
        if strays:
            raise ValidationError(
                f"{root} holds exported files ({strays[0].relative_to(root)}, ...) but no"
                f" {_MANIFEST}: it is not an incremental export; choose an empty directory"
            )
    else:
        pending = manifest.get("pending")
        if pending:
            finals = [root / f for f in pending["files"]]
            temps = [root / t for t in pending["temps"]]
            complete = all(t.exists() or f.exists() for f, t in zip(finals, temps, strict=True))
            for final, temp in zip(finals, temps, strict=True):
                if not complete:
                    final.unlink(missing_ok=True)
                elif temp.exists():
                    os.replace(temp, final)
            for parent in {f.parent for f in finals}:
                fsync_dir(parent)
            done = None
            if complete:
                done = {k: v for k, v in pending.items() if k != "temps"}
                done["finished_at"] = datetime.now(UTC).isoformat()
                done["recovered"] = True
            manifest = _manifest(manifest, manifest, done=done)
            _save_manifest(root, manifest)
        listed = {f for run in manifest.get("runs", []) for f in run.get("files", [])}
        for part in root.rglob("part-*.parquet"):
            if _PART_FILE.fullmatch(part.name) and str(part.relative_to(root)) not in listed:
                part.unlink()
    for temp in root.rglob(".*.tmp"):  # we hold the dataset's lock: no one is writing these
        if temp.is_dir():
            shutil.rmtree(temp, ignore_errors=True)
        else:
            temp.unlink(missing_ok=True)
    partition_dirs = [p for p in root.rglob("*=*") if p.is_dir()]
    for directory in sorted(partition_dirs, key=lambda p: len(p.parts), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()
    return manifest
