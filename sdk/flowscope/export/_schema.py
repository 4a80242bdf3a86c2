"""Arrow schemas, derived from the SQLModel tables of :mod:`flowscope.models`.

Nothing here lists a table's columns: each Arrow field comes from the table column's
SQLAlchemy type (NUMERIC's precision and scale, timezone of timestamps, array item types)
and its nullability; secret columns (``models.SECRET_COLUMNS``) are left out. A column
added to a table in ``models.py`` is read, exported and archived with no edit here.

Example:
    >>> str(table_schema("executions").field("created_at"))
    'pyarrow.Field<created_at: timestamp[us, tz=UTC] not null>'
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from .. import models
from .._boundary import boundary
from .._frames import Decimal, arrow_type
from ..errors import ValidationError
from ..models import SECRET_COLUMNS

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["TABLES", "TIME_COLUMN", "Decimal", "arrow_schema", "table_columns", "table_schema"]

#: Exportable tables, by name.
TABLES: dict[str, sa.Table] = models.TABLES
#: The column that orders a table in time: partitions by day, incremental high-water mark.
TIME_COLUMN = {name: "occurred_at" if name == "audit_log" else "created_at" for name in TABLES}


@dataclasses.dataclass(frozen=True)
class _Column:
    name: str
    expr: Any  # what the SELECT returns for it (in a form the binary decoder reads)
    type: pa.DataType
    kind: Literal["plain", "json", "nested"]  # json: text → pa.json_(); nested: JSON text → list
    wire: str = ""  # the PostgreSQL type on the wire when it differs from the Arrow type's
    native: Any = None  # for ADBC, when it reads the column natively (TEXT[] → list)
    nullable: bool = True  # False: the table column is NOT NULL (a required Parquet field)


def _column(
    name: str, expr: Any, sa_type: Any, *, decimal: Decimal, nullable: bool = True
) -> _Column:
    import pyarrow as pa

    arrow = arrow_type(sa_type, decimal=decimal)
    make = functools.partial(_Column, name, type=arrow, nullable=nullable)
    if isinstance(arrow, pa.JsonType):
        return make(sa.cast(expr, sa.Text), kind="json")
    if pa.types.is_list(arrow):
        return make(sa.cast(sa.func.to_json(expr), sa.Text), kind="nested", native=expr)
    if isinstance(sa_type, sa.Float):
        return make(sa.cast(expr, sa.Float(53)), kind="plain", wire="float8")
    if isinstance(sa_type, sa.Numeric) and arrow == pa.float64():
        return make(expr, kind="plain", wire="numeric")
    return make(expr, kind="plain")


def table(name: Any) -> sa.Table:
    """The exportable table called ``name`` (:class:`ValidationError` for any other)."""
    if not isinstance(name, str) or name not in TABLES:
        raise ValidationError(f"unknown table {name!r}; one of {sorted(TABLES)}")
    return TABLES[name]


def table_columns(
    name: str, columns: Sequence[str] | None = None, *, decimal: Decimal = "decimal128"
) -> list[_Column]:
    """The columns of ``name`` (all but the secret ones, or ``columns``, in that order).

    Example:
        >>> [c.name for c in table_columns("users")][:3]
        ['id', 'username', 'email']
    """
    t = table(name)
    if decimal not in ("decimal128", "float64"):
        raise ValidationError(f"decimal must be 'decimal128' or 'float64', got {decimal!r}")
    secret = SECRET_COLUMNS.get(name, frozenset())
    available = [c.name for c in t.columns if c.name not in secret]
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
    return [
        _column(c, t.c[c], t.c[c].type, decimal=decimal, nullable=bool(t.c[c].nullable))
        for c in chosen
    ]


def schema_of(columns: Sequence[_Column]) -> pa.Schema:
    import pyarrow as pa

    return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in columns])


def table_schema(name: str, *, decimal: Decimal = "decimal128") -> pa.Schema:
    """The Arrow schema of every (non-secret) column of ``name``, NOT NULL kept.

    Example:
        >>> table_schema("executions").field("duration_seconds").type
        Decimal128Type(decimal128(10, 3))
    """
    return schema_of(table_columns(name, decimal=decimal))


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


def flatten_column(t: sa.Table, key: str, kind: Any) -> _Column:
    """``parameters.lr`` → the value at that path of a JSONB column, as its own column."""
    import pyarrow as pa

    if not isinstance(key, str) or "." not in key:
        raise ValidationError(f"flatten keys look like 'parameters.lr', got {key!r}")
    source, *path = key.split(".")
    column = t.c.get(source)
    if column is None or not isinstance(column.type, postgresql.JSONB) or not all(path):
        raise ValidationError(
            f"cannot flatten {key!r}: {source!r} is not a JSONB column of {t.name}"
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


def flatten_columns(
    t: sa.Table, flatten: Sequence[str] | Mapping[str, Any] | None, taken: set[str]
) -> list[_Column]:
    """The columns ``flatten`` asks for: a list of keys (strings) or a mapping key → type."""
    if flatten is not None and (
        isinstance(flatten, str) or not isinstance(flatten, Mapping | Sequence)
    ):
        raise ValidationError(
            f"flatten is a list of keys like ['parameters.lr'] or a mapping of key to type,"
            f" not {flatten!r}"
        )
    if not flatten:
        return []
    items = flatten.items() if isinstance(flatten, Mapping) else ((k, "string") for k in flatten)
    out = []
    for key, kind in items:
        if key in taken:
            raise ValidationError(f"flatten key {key!r} repeats a column name")
        out.append(flatten_column(t, key, kind))
    return out


@dataclasses.dataclass(frozen=True)
class _Plan:
    """A SELECT and the Arrow schema its rows become."""

    select: sa.Select[Any]
    columns: tuple[_Column, ...]
    table: str | None

    @property
    def schema(self) -> pa.Schema:
        return schema_of(self.columns)

    def relaxed(self) -> _Plan:
        """The same plan with every field nullable (a dataset that holds tombstones)."""
        columns = tuple(dataclasses.replace(c, nullable=True) for c in self.columns)
        return dataclasses.replace(self, columns=columns)


# PostgreSQL type oids → SQLAlchemy types, for queries (the server says what it returns).
OID_TYPES: dict[int, Any] = {
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
    cols = table_columns(table, columns, decimal=decimal)
    cols += flatten_columns(TABLES[table], flatten, {c.name for c in cols})
    return schema_of(cols)
