"""The binary COPY decoder: ``COPY (SELECT ...) TO STDOUT (FORMAT binary)`` → RecordBatches.

Every CopyData message is one row, so a batch of messages is decoded with numpy all at
once: field offsets for all rows per column, fixed-width values gathered and byte-swapped,
strings copied out by one Arrow ``take``, NUMERIC rebuilt from its base-10000 digits into
``decimal128``. No value is formatted as text on the server or parsed per row in Python.
JSONB travels as text (``::text``) and ``TEXT[]`` as a JSON array parsed by Arrow's JSON
reader.

Example:
    >>> from flowscope.export._schema import table_columns
    >>> _wire(table_columns("executions", ["steps_total"])[0])
    'int4'
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..errors import FlowscopeError
from ._schema import _Column, _Plan

if TYPE_CHECKING:
    import pyarrow as pa

    from .._session import Session

__all__: list[str] = []

# A batch of COPY rows closes at this many bytes whatever its row count.
_MAX_BATCH_BYTES = 16 << 20


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
) -> Generator[list[Any], None, None]:
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
