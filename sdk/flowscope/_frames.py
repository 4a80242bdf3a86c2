"""The frame contract, and frames in other shapes (Arrow with ``attrs``, polars).

**One map from database types to dtypes.** Every pandas frame flowscope returns, whatever
made it (``client.analytics.*``, ``client.<table>.to_pandas()``, ``client.audit.to_frame()``,
``client.query()``, the mirror's analytics), types its columns by the column's database type,
through :func:`arrow_type` (database → Arrow: export's schemas and Parquet use it too) and
:func:`pandas_dtype` (Arrow → pandas). :func:`frame_dtype` is the two in one, and
:func:`conform` applies it to rows that did not come through Arrow (analytics, audit):

========================================  =======================  ============================================
PostgreSQL                                Arrow                    pandas
========================================  =======================  ============================================
``bigint`` / ``integer`` / ``smallint``   ``int64/32/16``          ``Int64`` / ``Int32`` / ``Int16`` (``pd.NA``)
``double precision`` / ``real``           ``float64``              ``Float64`` (missing = ``pd.NA``)
``numeric(p, s)``                         ``decimal128(p, s)``     ``decimal128(p, s)[pyarrow]`` (exact);
                                                                   ``Float64`` with ``decimal="float64"``
``numeric`` (no precision)                ``float64``              ``Float64``
``text`` / ``varchar``                    ``string``               :data:`STRING`: ``str`` (pandas 3),
                                                                   ``string[pyarrow]`` (pandas 2)
``timestamptz``                           ``timestamp[us, UTC]``   ``datetime64[us, UTC]``
``timestamp``                             ``timestamp[us]``        ``datetime64[us]``
``date``                                  ``date32``               ``date32[day][pyarrow]``
``boolean``                               ``bool``                 ``boolean`` (missing = ``pd.NA``)
``jsonb`` / ``json``                      ``arrow.json``           ``extension<arrow.json>[pyarrow]``: JSON
                                                                   text as PostgreSQL writes it
                                                                   (``json.loads`` gives the value)
``T[]``                                   ``list<T>``              ``list<T>[pyarrow]``
========================================  =======================  ============================================

A column keeps its dtype when nothing matches (an empty frame has the same dtypes), and a
column that is all missing keeps it too. Analytics columns are declared by database type
(counts ``bigint``, measures ``double precision``, keys ``text``, times ``timestamptz``:
:mod:`flowscope.analytics._base`), so they follow the same map.

The helpers at the end give the same results to Arrow and polars users: ``pl.from_arrow``
wraps Arrow buffers without copying them, so a read streamed into Arrow reaches polars
with no second copy of the data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from .errors import ConfigurationError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "ATTRS_KEY",
    "STRING",
    "Decimal",
    "arrow_type",
    "conform",
    "frame_dtype",
    "frame_to_arrow",
    "pandas_dtype",
    "require_polars",
    "to_polars",
]

#: How NUMERIC reads: exact ``decimal128(p, s)`` or ``float64``.
Decimal = Literal["decimal128", "float64"]


def _string_dtype() -> str:
    from importlib.metadata import version

    major = int(version("pandas").split(".")[0])
    return "str" if major >= 3 else "string[pyarrow]"


#: The dtype of every string column flowscope returns. pandas 3: ``str``, pandas' own
#: default (Arrow-backed, missing = ``NaN``), so flowscope frames join and compare with a
#: user's frames without dtype mismatches; pandas 2: ``string[pyarrow]`` (missing = ``pd.NA``),
#: the Arrow-backed string dtype there (pandas 2's default, ``object``, is not typed).
STRING = _string_dtype()


def arrow_type(sql_type: Any, *, decimal: Decimal = "decimal128") -> pa.DataType:
    """The Arrow type of a database column type (a SQLAlchemy type): the first half of the
    contract, shared by reads, Parquet export and every frame.

    Example:
        >>> import sqlalchemy as sa
        >>> arrow_type(sa.Numeric(10, 3)), arrow_type(sa.Numeric(10, 3), decimal="float64")
        (Decimal128Type(decimal128(10, 3)), DataType(double))
    """
    import pyarrow as pa

    if isinstance(sql_type, type):
        sql_type = sql_type()
    if isinstance(sql_type, sa.TypeDecorator):
        sql_type = sql_type.load_dialect_impl(postgresql.dialect())
    if isinstance(sql_type, postgresql.JSONB | postgresql.JSON | sa.JSON):
        return pa.json_()
    if isinstance(sql_type, sa.ARRAY):
        return pa.list_(arrow_type(sql_type.item_type, decimal=decimal))
    if isinstance(sql_type, sa.DateTime):
        return pa.timestamp("us", tz="UTC" if sql_type.timezone else None)
    if isinstance(sql_type, sa.Date):
        return pa.date32()
    if isinstance(sql_type, sa.Boolean):
        return pa.bool_()
    if isinstance(sql_type, sa.BigInteger):
        return pa.int64()
    if isinstance(sql_type, sa.SmallInteger):
        return pa.int16()
    if isinstance(sql_type, sa.Integer):
        return pa.int32()
    if isinstance(sql_type, sa.Float):
        return pa.float64()
    if isinstance(sql_type, sa.Numeric):
        if decimal == "float64" or sql_type.precision is None:
            return pa.float64()
        return pa.decimal128(sql_type.precision, sql_type.scale or 0)
    if isinstance(sql_type, sa.String | sa.Text | sa.Enum):
        return pa.string()
    raise ConfigurationError(f"no Arrow type for the SQL type {sql_type!r}")


def pandas_dtype(type_: pa.DataType) -> Any:
    """The pandas dtype of an Arrow type (a ``types_mapper`` for ``Table.to_pandas``): the
    second half of the contract. ``None`` for timestamps: pyarrow's own conversion gives
    ``datetime64[us, UTC]`` (:func:`frame_dtype` names it).

    Example:
        >>> import pyarrow as pa
        >>> pandas_dtype(pa.int32()), pandas_dtype(pa.timestamp("us", tz="UTC"))
        (Int32Dtype(), None)
    """
    import pandas as pd
    import pyarrow as pa

    if pa.types.is_timestamp(type_):
        return None  # datetime64[us, UTC]
    simple = {
        pa.string(): pd.api.types.pandas_dtype(STRING),
        pa.int16(): pd.Int16Dtype(),
        pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.float64(): pd.Float64Dtype(),
    }
    if type_ in simple:
        return simple[type_]
    return pd.ArrowDtype(type_)


def frame_dtype(type_: Any, *, decimal: Decimal = "decimal128") -> Any:
    """The pandas dtype of a column in every flowscope frame, from its database type (a
    SQLAlchemy type) or its Arrow type: :func:`pandas_dtype` of :func:`arrow_type`.

    Example:
        >>> import sqlalchemy as sa
        >>> frame_dtype(sa.BigInteger()), frame_dtype(sa.DateTime(timezone=True))
        (Int64Dtype(), datetime64[us, UTC])
    """
    import pandas as pd
    import pyarrow as pa

    arrow = type_ if isinstance(type_, pa.DataType) else arrow_type(type_, decimal=decimal)
    if pa.types.is_timestamp(arrow):
        if arrow.tz is None:
            return pd.api.types.pandas_dtype(f"datetime64[{arrow.unit}]")
        return pd.DatetimeTZDtype(arrow.unit, arrow.tz)
    return pandas_dtype(arrow)


def conform(frame: pd.DataFrame, columns: Mapping[str, Any]) -> pd.DataFrame:
    """``frame`` (rows as the driver gave them) with the contract's dtypes: the columns named
    by ``columns`` (name → database type), in that order; a missing column is all NA.

    Example:
        >>> import pandas as pd, sqlalchemy as sa
        >>> raw = pd.DataFrame({"n": [1, None], "changes": [{"a": 1}, None]})
        >>> typed = conform(raw, {"n": sa.BigInteger(), "changes": sa.JSON()})
        >>> typed.dtypes.astype(str).tolist(), typed["changes"][0]
        (['Int64', 'extension<arrow.json>[pyarrow]'], '{"a": 1}')
    """
    import pandas as pd

    dtypes = {name: frame_dtype(type_) for name, type_ in columns.items()}
    out = {}
    for name, dtype in dtypes.items():
        column = (
            frame[name].reset_index(drop=True)
            if name in frame.columns
            else pd.Series([None] * len(frame), dtype=object)
        )
        out[name] = _converted(column, dtype)
    return pd.DataFrame(out, columns=list(dtypes))


def _converted(column: pd.Series, dtype: Any) -> pd.Series:
    import pandas as pd
    import pyarrow as pa

    if len(column) == 0:
        return pd.Series([], dtype=dtype)
    values = column.astype(object).where(column.notna(), None)
    if isinstance(dtype, pd.ArrowDtype):  # first: pandas 2's is_*_dtype fail on arrow.json
        arrow = dtype.pyarrow_dtype
        if isinstance(arrow, pa.BaseExtensionType):  # JSON: text, as PostgreSQL writes it
            text = [v if v is None or isinstance(v, str) else _json(v) for v in values]
            array = pa.ExtensionArray.from_storage(arrow, pa.array(text, arrow.storage_type))
        else:
            array = pa.array(values.tolist(), arrow)
        return pd.Series(pd.arrays.ArrowExtensionArray(array))
    if isinstance(dtype, pd.DatetimeTZDtype):
        return pd.to_datetime(column, utc=True).astype(dtype)
    if pd.api.types.is_datetime64_dtype(dtype):
        return pd.to_datetime(column).astype(dtype)
    if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
        return pd.to_numeric(values).astype(dtype)
    return values.astype(dtype)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


#: where a frame's ``attrs`` travel in an Arrow schema's metadata (JSON)
ATTRS_KEY = b"flowscope.attrs"


def frame_to_arrow(frame: pd.DataFrame) -> pa.Table:
    """A flowscope frame as an Arrow table: its index as columns (a RangeIndex is
    dropped), Arrow-backed columns as they are, ``attrs`` in the schema metadata.

    Example:
        >>> import pandas as pd
        >>> f = pd.DataFrame({"n": pd.array([1, None], dtype="Int64")})
        >>> f.attrs["engine"] = "postgresql"
        >>> t = frame_to_arrow(f)
        >>> t.column("n").to_pylist(), t.schema.metadata[ATTRS_KEY]
        ([1, None], b'{"engine": "postgresql"}')
    """
    import pandas as pd
    import pyarrow as pa

    keep_index = not isinstance(frame.index, pd.RangeIndex)
    bare = frame.copy(deep=False)  # attrs travel below, as JSON that takes any value
    bare.attrs = {}
    table = pa.Table.from_pandas(bare, preserve_index=keep_index)
    metadata = {ATTRS_KEY: json.dumps(frame.attrs, default=str).encode()}
    return table.replace_schema_metadata(metadata)


def require_polars() -> Any:
    """The polars module, or a ConfigurationError naming the extra to install."""
    try:
        import polars
    except ImportError:
        raise ConfigurationError(
            "polars is not installed: pip install 'flowscope[polars]'"
        ) from None
    return polars


def to_polars(table: pa.Table) -> Any:
    """An Arrow table as a polars DataFrame, sharing its buffers (no copy of the data).

    Example:
        >>> import pyarrow as pa
        >>> to_polars(pa.table({"x": [1, 2]})).shape
        (2, 1)
    """
    import pyarrow as pa

    # JSON columns (the ``arrow.json`` extension type) reach polars as their storage, JSON
    # text (``pl.col(c).str.json_decode()``): the same buffers, no copy, no warning
    plain = pa.table(
        [
            column.cast(column.type.storage_type)
            if isinstance(column.type, pa.BaseExtensionType)
            else column
            for column in table.columns
        ],
        names=table.column_names,
    )
    return require_polars().from_arrow(plain, rechunk=False)
