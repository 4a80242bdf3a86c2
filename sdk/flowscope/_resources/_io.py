"""Data in and out for the resources: ``to_arrow``/``to_pandas``/``iter_batches`` and ``ingest``.

Mixed into the resource classes (``client.executions``, ``client.workflows``, ...),
which carry ``self._session`` and their table (``table`` or ``_table_name``).

Example:
    >>> t = client.executions.to_arrow(status="completed",
    ...                                flatten={"result.records_processed": "int64"})
    >>> t.num_rows, t.schema.field("result.records_processed").type
    (1897, DataType(int64))
    >>> client.workflows.to_pandas(tags_any=["finance"]).shape
    (43, 17)
    >>> rows = pd.DataFrame({"workflow_id": ["wf_demo_0001", "wf_demo_0002"],
    ...                      "status": ["completed", "completed"],
    ...                      "started_at": ["2026-01-01T10:00:00Z", "2026-01-01T11:00:00Z"],
    ...                      "completed_at": ["2026-01-01T10:00:03Z", "2026-01-01T11:00:05Z"]})
    >>> client.executions.ingest(rows)  # doctest: +ELLIPSIS
    IngestResult(rows=2, seconds=...)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..export._read import ReadOptions, reads, to_pandas

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from .._ingest import IngestResult
    from .._session import Session

__all__ = ["IngestMixin", "TableIO"]


def _table_name(resource: Any) -> str:
    name = getattr(resource, "_table_name", None)
    if name is None:
        table = getattr(resource, "table", None)
        name = getattr(table, "name", None)
    if not isinstance(name, str):  # pragma: no cover - a wiring mistake
        raise TypeError(f"{type(resource).__name__} names no table for TableIO")
    return name


class TableIO:
    """Arrow/pandas/polars reads of one table with its explicit schema (see
    :mod:`flowscope.export`): flowscope's one read surface.

    Every read takes the same arguments, declared once
    (:func:`flowscope.export._read.read_options`): ``filter`` (or its fields as keywords:
    ``status="failed"``, ``since=...``), ``columns``, ``flatten`` (JSON keys as their own
    columns: ``["parameters.lr"]`` or ``{"parameters.lr": "float64"}``), ``decimal``
    (``"float64"`` reads NUMERIC as float64) and ``batch_size``.
    """

    _session: Session

    @reads
    def to_arrow(self, options: ReadOptions) -> pa.Table:
        """The matching rows as one Arrow table (explicit schema; JSONB as ``pa.json_()``).

        Example:
            >>> failed = client.executions.to_arrow(status="failed", since="2026-06-01")
            >>> failed  # doctest: +ELLIPSIS
            pyarrow.Table
            id: string not null
            workflow_id: string not null
            ...
            >>> failed.num_rows
            25
            >>> t = client.executions.to_arrow(status="completed",
            ...                                flatten={"result.records_processed": "float64"})
            >>> t.schema.field("result.records_processed").type
            DataType(double)
        """
        return options.arrow(self._session, _table_name(self))

    @reads
    def to_pandas(self, options: ReadOptions) -> pd.DataFrame:
        """The matching rows as a DataFrame with nullable / Arrow-backed dtypes
        (:func:`flowscope._frames.pandas_dtype`): the same columns when nothing matches.

        Example:
            >>> df = client.executions.to_pandas(status="completed", decimal="float64")
            >>> df["duration_seconds"].dtype
            Float64Dtype()
        """
        return to_pandas(options.arrow(self._session, _table_name(self)))

    @reads
    def to_polars(self, options: ReadOptions) -> Any:
        """The matching rows as a polars DataFrame: :meth:`to_arrow` wrapped without a
        copy (``pip install 'flowscope[polars]'``).

        Example:
            >>> client.executions.to_polars(status="failed").select("id", "error").shape
            (93, 2)
        """
        from .._frames import require_polars, to_polars

        require_polars()  # before anything is read
        return to_polars(options.arrow(self._session, _table_name(self)))

    @reads
    def iter_batches(self, options: ReadOptions) -> Iterator[pa.RecordBatch]:
        """Stream the matching rows as RecordBatches of ``batch_size`` rows in constant
        memory; closing the iterator early cancels the query.

        Example:
            >>> for batch in client.executions.iter_batches(status="failed", batch_size=40):
            ...     print(batch.num_rows)
            40
            40
            13
        """
        return options.batches(self._session, _table_name(self))


class IngestMixin:
    """Bulk load through one validated binary COPY (see :func:`flowscope._ingest.ingest`)."""

    _session: Session

    def ingest(self, rows: Any, /) -> IngestResult:
        """Validate every row, then load them all in one transaction (all or nothing).

        ``rows``: dicts or models, a pandas DataFrame or an Arrow table. A bad row
        raises :class:`flowscope.ValidationError` naming its index and field.

        Example:
            >>> client.executions.ingest([{"workflow_id": "wf_demo_0001", "status": "completed",
            ...     "started_at": "2026-01-01T10:00:00Z", "completed_at": "2026-01-01T10:00:03Z"}])
            ... # doctest: +ELLIPSIS
            IngestResult(rows=1, seconds=...)
        """
        from .._ingest import ingest

        return ingest(self._session, _table_name(self), rows)
