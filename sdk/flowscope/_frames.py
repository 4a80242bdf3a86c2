"""Frames in other shapes: pandas → Arrow (with ``attrs``), Arrow → polars (zero-copy).

flowscope computes every result once; these helpers give the same result to Arrow
and polars users. ``pl.from_arrow`` wraps Arrow buffers without copying them, so a
read streamed into Arrow reaches polars with no second copy of the data.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "ATTRS_KEY",
    "STRING",
    "frame_to_arrow",
    "pandas_dtype",
    "require_polars",
    "to_polars",
]


def _string_dtype() -> str:
    from importlib.metadata import version

    major = int(version("pandas").split(".")[0])
    return "str" if major >= 3 else "string[pyarrow]"


#: The dtype of every string column flowscope returns. pandas 3: ``str``, pandas' own
#: default (Arrow-backed, missing = ``NaN``), so flowscope frames join and compare with a
#: user's frames without dtype mismatches; pandas 2: ``string[pyarrow]`` (missing = ``pd.NA``),
#: the Arrow-backed string dtype there (pandas 2's default, ``object``, is not typed).
STRING = _string_dtype()


def pandas_dtype(type_: pa.DataType) -> Any:
    """The pandas dtype of an Arrow type in every flowscope frame (a ``types_mapper``):
    nullable ints, booleans and floats, :data:`STRING` strings, ``datetime64[us, UTC]``
    timestamps (``None``: pyarrow's own conversion) and ``pd.ArrowDtype`` for the rest
    (decimals, lists, JSON).

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
    table = pa.Table.from_pandas(frame, preserve_index=keep_index)
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
        >>> to_polars(pa.table({"x": [1, 2]})).shape      # doctest: +SKIP
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
