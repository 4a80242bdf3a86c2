"""What ingest knows of a table's columns, derived from :mod:`flowscope.models`.

For every column of the SQLModel table: its name and order, the type its binary COPY
sends, a converter that checks a value as PostgreSQL would (length of ``VARCHAR(n)``,
the ``INTEGER`` range, ``NUMERIC(p, s)`` rounding and range, the statuses of the
CHECK constraint, the JSON shape of the model's annotation, timestamps), the Python
value of its server default (a COPY that names a column sends NULL, never the default)
and whether a row must give it (``NOT NULL`` and no default).

A converter takes a value and returns what psycopg's binary COPY dumpers take, or
raises :class:`RowError` naming the column. :func:`row_converter` checks a whole row:
inline type checks for the common, valid case, and the converters for the rest.

Example:
    >>> from flowscope.models import EXECUTIONS
    >>> status = {c.name: c for c in columns(EXECUTIONS)}["status"]
    >>> status.sql_type, status.default, status.required
    ('text', 'queued', False)
    >>> status.convert("exploded")
    Traceback (most recent call last):
    ...
    flowscope._ingest._columns.RowError: must be one of queued, running, completed, failed, cancelled, timeout; got 'exploded'
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import sys
import types
import typing
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from numbers import Integral, Real
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import SQLModel

__all__ = ["NOW", "Column", "Json", "RowError", "columns", "numeric_bounds", "row_converter"]

_INTEGERS = {"int2": 2**15, "int4": 2**31, "int8": 2**63}
_INTEGER_NAMES = {"int2": "SMALLINT", "int4": "INTEGER", "int8": "BIGINT"}


class RowError(Exception):
    """A value a column cannot take (``field`` names the column)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class Json(str):
    """JSON text ready for the jsonb binary COPY dumper (see ``_load``)."""

    __slots__ = ()


class _Now:
    def __repr__(self) -> str:
        return "NOW"


#: the default ``CURRENT_TIMESTAMP``: the load's transaction time
NOW: Any = _Now()
_NO_DEFAULT: Any = object()


@dataclasses.dataclass(frozen=True)
class Column:
    """One column as ingest sends it."""

    name: str
    sql_type: str  # for psycopg's COPY set_types and jsonb_to_recordset
    kind: str  # which inline check row_converter uses: text, choice, int, bool, timestamp, json
    convert: Callable[[Any], Any]  # the complete check (raises RowError)
    default: Any = _NO_DEFAULT  # the server default as a Python value, or NOW
    required: bool = False  # NOT NULL without a default
    max_length: int = sys.maxsize  # text
    choices: frozenset[str] = frozenset()  # choice
    bounds: tuple[int, int] = (0, 0)  # int: low, high
    shape: type | None = None  # json: dict, list or anything

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT


# -- converters: value → what psycopg's binary COPY dumpers take (raise RowError) ---------
def _text(name: str, max_length: int | None) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if not isinstance(value, str):
            raise RowError(name, f"expected a string, got {type(value).__name__}")
        if max_length is not None and len(value) > max_length:
            raise RowError(name, f"longer than {max_length} characters")
        if "\x00" in value:
            raise RowError(name, "contains a NUL character")
        return value

    return convert


def _choice(name: str, allowed: Sequence[str]) -> Callable[[Any], Any]:
    allowed_set = frozenset(allowed)

    def convert(value: Any) -> Any:
        if isinstance(value, str) and value in allowed_set:
            return str.__str__(value)  # a StrEnum member as its value
        raise RowError(name, f"must be one of {', '.join(allowed)}; got {value!r}")

    return convert


def _integer(name: str, sql_type: str) -> Callable[[Any], Any]:
    bound = _INTEGERS[sql_type]

    def convert(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, Integral):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise RowError(name, f"expected an integer, got {value!r}")
        value = int(value)
        if not -bound <= value < bound:
            raise RowError(name, f"out of the {_INTEGER_NAMES[sql_type]} range")
        return value

    return convert


def _boolean(name: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if value is True or value is False:
            return value
        if type(value).__name__ == "bool_":  # numpy
            return bool(value)
        raise RowError(name, f"expected a boolean, got {value!r}")

    return convert


def _timestamp(name: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, datetime):
            if value.tzinfo is None:
                return value.replace(tzinfo=UTC)
            return value
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise RowError(name, f"not an ISO 8601 timestamp: {value!r}") from None
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        raise RowError(name, f"expected a timestamp, got {type(value).__name__}")

    return convert


def numeric_bounds(sa_type: Any) -> tuple[Decimal, Decimal, str]:
    """``NUMERIC(p, s)``: the step values are rounded to, the bound their size stays
    under, and the type's name."""
    precision, scale = sa_type.precision or 0, sa_type.scale or 0
    name = f"NUMERIC({precision},{scale})"
    return Decimal(1).scaleb(-scale), Decimal(10) ** (precision - scale), name


def _numeric(name: str, sa_type: sa.Numeric[Any]) -> Callable[[Any], Any]:
    quantum, bound, _ = numeric_bounds(sa_type)
    # a ``*_seconds`` column is a duration: never negative (its CHECK), said in seconds
    seconds = name.endswith("_seconds")
    what = "a number of seconds" if seconds else "a number"
    low = Decimal(0) if seconds else -bound
    out_of_range = f"must be {'>= 0' if seconds else f'> -{bound:f}'} and < {bound:f}" + (
        " seconds" if seconds else ""
    )

    def convert(value: Any) -> Any:
        if isinstance(value, bool):
            raise RowError(name, f"expected {what}")
        try:
            if isinstance(value, float):
                if not math.isfinite(value):
                    raise RowError(name, "must be finite")
                value = Decimal(repr(value))
            elif isinstance(value, Decimal):
                pass
            elif isinstance(value, Integral):
                value = Decimal(int(value))
            elif isinstance(value, Real):
                value = Decimal(repr(float(value)))
            else:
                raise RowError(name, f"expected {what}, got {value!r}")
            value = value.quantize(quantum, rounding=ROUND_HALF_UP)
        except InvalidOperation:
            raise RowError(name, f"not {what}: {value!r}") from None
        if not value.is_finite() or value < low or value >= bound or value <= -bound:
            raise RowError(name, out_of_range)
        return value

    return convert


_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _fast_dumps() -> Callable[[Any], str]:
    """json.dumps without its per-call set-up (the C encoder, made once)."""
    from json import encoder

    make = getattr(encoder, "c_make_encoder", None)
    basestring = getattr(encoder, "c_encode_basestring", None)
    if make is None or basestring is None:  # pragma: no cover - no C accelerator
        return _dumps
    encode = make(None, _not_json, basestring, None, ":", ",", False, False, False)
    join = "".join

    def dumps(value: Any) -> str:
        return join(encode(value, 0))

    return dumps


dumps = _fast_dumps()


def _json(name: str, shape: type | None) -> Callable[[Any], Any]:
    shape_name = "object" if shape is dict else "array" if shape is list else ""

    def convert(value: Any) -> Any:
        if shape is not None and not isinstance(value, shape):
            raise RowError(name, f"must be a JSON {shape_name}, got {type(value).__name__}")
        try:
            text = dumps(value)
        except (TypeError, ValueError, RecursionError) as exc:
            raise RowError(name, f"not JSON-serialisable: {exc}") from None
        if "\\u0000" in text:
            raise RowError(name, "contains a NUL character")
        return Json(text)

    return convert


def _text_list(name: str) -> Callable[[Any], Any]:
    check = _text(name, None)

    def convert(value: Any) -> Any:
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise RowError(name, "must be a list of strings")
        items = list(value)
        for item in items:
            if item is None:
                raise RowError(name, "must not contain nulls")
            check(item)
        return items

    return convert


# -- the columns of a table ------------------------------------------------------------------
@functools.cache
def columns(table: sa.Table) -> tuple[Column, ...]:
    """Every column of ``table``, in the table's order, as ingest sends it."""
    model = _model_of(table)
    return tuple(_column(table, c, model) for c in table.columns)


def _model_of(table: sa.Table) -> type[SQLModel]:
    for mapper in SQLModel._sa_registry.mappers:
        if mapper.local_table is table:
            return typing.cast(type[SQLModel], mapper.class_)
    raise TypeError(f"no SQLModel class maps {table.name}")  # pragma: no cover - a wiring mistake


def _column(table: sa.Table, column: sa.Column[Any], model: type[SQLModel]) -> Column:
    name = column.name
    sa_type = column.type
    if isinstance(sa_type, sa.TypeDecorator):  # sqlmodel's AutoString
        sa_type = sa_type.impl_instance
    spec: dict[str, Any]
    allowed = _choices(model, column)
    if allowed:
        spec = {"sql_type": "text", "kind": "choice", "convert": _choice(name, allowed)}
        spec["choices"] = frozenset(allowed)
    elif isinstance(sa_type, sa.String):
        length = getattr(sa_type, "length", None)
        spec = {"sql_type": "text", "kind": "text", "convert": _text(name, length)}
        spec["max_length"] = length or sys.maxsize
    elif isinstance(sa_type, postgresql.JSONB):
        shape = _json_shape(model, column)
        spec = {"sql_type": "jsonb", "kind": "json", "convert": _json(name, shape), "shape": shape}
    elif isinstance(sa_type, sa.DateTime):
        sql_type = "timestamptz" if sa_type.timezone else "timestamp"
        spec = {"sql_type": sql_type, "kind": "timestamp", "convert": _timestamp(name)}
    elif isinstance(sa_type, sa.Boolean):
        spec = {"sql_type": "bool", "kind": "bool", "convert": _boolean(name)}
    elif isinstance(sa_type, sa.Integer):
        sql_type = (
            "int8"
            if isinstance(sa_type, sa.BigInteger)
            else "int2"
            if isinstance(sa_type, sa.SmallInteger)
            else "int4"
        )
        bound = _INTEGERS[sql_type]
        spec = {"sql_type": sql_type, "kind": "int", "convert": _integer(name, sql_type)}
        spec["bounds"] = (-bound, bound - 1)
    elif isinstance(sa_type, sa.Numeric):
        spec = {"sql_type": "numeric", "kind": "other", "convert": _numeric(name, sa_type)}
    elif isinstance(sa_type, sa.ARRAY) and isinstance(sa_type.item_type, sa.String):
        spec = {"sql_type": "text[]", "kind": "other", "convert": _text_list(name)}
    else:  # pragma: no cover - a column type ingest does not know yet
        raise TypeError(f"ingest cannot send {table.name}.{name} of type {column.type}")
    default = _server_default(table, column, spec["kind"])
    required = not column.nullable and default is _NO_DEFAULT
    return Column(name=name, default=default, required=required, **spec)


def _options(model: type[SQLModel], column: sa.Column[Any]) -> tuple[Any, ...]:
    """The types the model's annotation of ``column`` allows (``X | None`` gives both)."""
    key = model.__mapper__.get_property_by_column(column).key  # type: ignore[attr-defined]
    annotation = model.model_fields[key].annotation
    return typing.get_args(annotation) if _is_union(annotation) else (annotation,)


def _choices(model: type[SQLModel], column: sa.Column[Any]) -> tuple[str, ...]:
    """The values a status column allows: its annotation's Literal, which the models make
    from the same enum as its CHECK constraint (empty: not a choice)."""
    return tuple(
        v
        for o in _options(model, column)
        if typing.get_origin(o) is Literal
        for v in typing.get_args(o)
    )


def _json_shape(model: type[SQLModel], column: sa.Column[Any]) -> type | None:
    """``dict`` or ``list`` when the model's annotation says so (``X | None`` counts), else
    None: any JSON value."""
    options = _options(model, column)
    shapes = {typing.get_origin(o) or o for o in options if o is not type(None)}
    return next(iter(shapes)) if len(shapes) == 1 and shapes <= {dict, list} else None


def _is_union(annotation: Any) -> bool:
    return isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union


_LITERAL = re.compile(r"'((?:[^']|'')*)'(?:::[a-z_ ]+(?:\[\])?)?", re.DOTALL)


def _server_default(table: sa.Table, column: sa.Column[Any], kind: str) -> Any:
    """The column's server default as the Python value ingest sends in its place."""
    default = column.server_default
    if default is None:
        return _NO_DEFAULT
    arg = getattr(default, "arg", None)
    if isinstance(arg, sa.sql.elements.True_ | sa.sql.elements.False_):
        return isinstance(arg, sa.sql.elements.True_)
    text = str(getattr(arg, "text", arg)).strip()
    if kind == "timestamp" and text.upper() in ("CURRENT_TIMESTAMP", "NOW()"):
        return NOW
    literal = _LITERAL.fullmatch(text)
    value = literal.group(1).replace("''", "'") if literal else text
    if kind in ("text", "choice"):
        return value
    if kind == "int" and re.fullmatch(r"-?\d+", value):
        return int(value)
    if kind == "json":
        return Json(dumps(json.loads(value)))
    if kind == "other" and isinstance(column.type, sa.ARRAY) and value == "{}":
        return []
    raise TypeError(  # pragma: no cover - a default ingest cannot mirror yet
        f"ingest cannot mirror the server default {text!r} of {table.name}.{column.name}"
    )


# -- a whole row -------------------------------------------------------------------------
def row_converter(
    cols: Sequence[Column], *, deferred: Collection[str] = ()
) -> Callable[[Any], list[Any]]:
    """A checker for rows of these columns: a record (a mapping) → the values in column
    order, converted; raises :class:`RowError` for the first bad one, in column order.

    The common case (each value of its column's own Python type, and fine) is checked
    inline, one kind of column after the other; a row with anything else goes through
    every column's converter, in column order. Columns in ``deferred`` are passed through
    as given (the caller finishes them).
    """
    names = tuple(c.name for c in cols)
    allowed = frozenset(names)
    checked = [(i, c) for i, c in enumerate(cols) if c.name not in deferred]
    texts = tuple((i, c.max_length) for i, c in checked if c.kind == "text")
    stamps = tuple(i for i, c in checked if c.kind == "timestamp")
    choices = tuple((i, c.choices) for i, c in checked if c.kind == "choice")
    ints = tuple((i, *c.bounds) for i, c in checked if c.kind == "int")
    bools = tuple(i for i, c in checked if c.kind == "bool")
    jsons = tuple((i, c.shape) for i, c in checked if c.kind == "json")
    others = tuple((i, c.convert) for i, c in checked if c.kind == "other")
    in_order = tuple((i, c.convert) for i, c in checked)
    J = Json

    def careful(record: Mapping[str, Any]) -> list[Any]:
        """Every value through its converter, in column order (the first bad one raises)."""
        values = list(map(record.get, names))
        for i, convert in in_order:
            if values[i] is not None:
                values[i] = convert(values[i])
        return values

    def convert(record: Any) -> list[Any]:
        if type(record) is not dict and not isinstance(record, Mapping):
            raise RowError("", "expected a dict or a model, got " + type(record).__name__)
        if not allowed.issuperset(record):
            unknown = sorted(map(str, set(record) - allowed))
            raise RowError(unknown[0], f"unknown field(s) {unknown!r}")
        values = list(map(record.get, names))
        for i, limit in texts:
            v = values[i]
            if v is not None and (type(v) is not str or len(v) > limit or "\x00" in v):
                return careful(record)
        for i in stamps:
            v = values[i]
            if v is not None and (not isinstance(v, datetime) or v.tzinfo is None):
                return careful(record)
        for i, options in choices:
            v = values[i]
            if v is not None and (type(v) is not str or v not in options):
                return careful(record)
        for i, low, high in ints:
            v = values[i]
            if v is not None and (type(v) is not int or not low <= v <= high):
                return careful(record)
        for i in bools:
            v = values[i]
            if v is not None and v is not True and v is not False:
                return careful(record)
        for i, shape in jsons:
            v = values[i]
            if v is not None:
                if shape is not None and type(v) is not shape:
                    return careful(record)
                try:
                    text = dumps(v)
                except (TypeError, ValueError, RecursionError):
                    return careful(record)
                if "\\u0000" in text:
                    return careful(record)
                values[i] = J(text)
        for i, full in others:
            v = values[i]
            if v is not None:
                try:
                    values[i] = full(v)
                except RowError:
                    return careful(record)
        return values

    return convert
