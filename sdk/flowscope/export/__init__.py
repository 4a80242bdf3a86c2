"""Arrow schemas, streaming reads and Parquet export, at the rate PostgreSQL sends rows.

Every table has one explicit Arrow schema derived from the models (never inferred
batch by batch; :mod:`._schema`):

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
NOT NULL               a non-nullable field (a required Parquet column)
=====================  ==================================================

``users`` never includes ``password_hash``.

The modules: :mod:`._schema` (Arrow schemas from the SQLModel tables), :mod:`._copy` (the
binary COPY decoder, the default transport), :mod:`._adbc` (the faster ADBC transport,
used when ``adbc-driver-postgresql`` is installed), :mod:`._read` (the one read signature,
plans and streams), :mod:`._atomic` (the crash-safe Parquet writer, which retention's
archives use too), :mod:`._parquet` (``client.export.parquet``) and :mod:`._incremental`
(the incremental dataset's manifest and tombstones).

Reads are ``client.<resource>.to_arrow()`` / ``to_pandas()`` / ``to_polars()`` /
``iter_batches()``; :func:`read_arrow`, :func:`read_pandas` and :func:`iter_batches` are
their aliases for a table named by a string.

Example:
    >>> table = client.executions.to_arrow(status="failed")
    >>> table.num_rows
    93
    >>> client.export.parquet("executions", tmp_path / "runs.parquet", since="2026-06-01",
    ...                       progress=False)  # doctest: +ELLIPSIS
    ExportResult(rows=553, files=1, bytes=..., seconds=...)
"""

from __future__ import annotations

# The mirror (flowscope.mirror), the client (query, query_arrow) and the resources use
# these too (``x as x``: re-exported on purpose).
from ._adbc import adbc_uri as adbc_uri
from ._parquet import Export, ExportResult
from ._read import _estimate_rows as _estimate_rows
from ._read import _plan as _plan
from ._read import _plan_query as _plan_query
from ._read import _stream_plan as _stream_plan
from ._read import iter_batches, read_arrow, read_pandas
from ._read import query_arrow as query_arrow
from ._read import to_pandas as to_pandas
from ._schema import TABLES, arrow_schema
from ._schema import Decimal as Decimal

__all__ = [
    "TABLES",
    "Export",
    "ExportResult",
    "arrow_schema",
    "iter_batches",
    "read_arrow",
    "read_pandas",
]
