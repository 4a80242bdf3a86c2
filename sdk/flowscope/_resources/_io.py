"""Data in and out for the resources: ``to_arrow``/``to_pandas``/``iter_batches`` and ``ingest``.

Mixed into the resource classes (``client.executions``, ``client.workflows``, ...),
which carry ``self._session`` and their table (``table`` or ``_table_name``).

Example:
    >>> client.executions.to_arrow(status="failed", flatten={"parameters.lr": "float64"})  # doctest: +SKIP
    >>> client.workflows.to_pandas(tags_any=["etl"])                                      # doctest: +SKIP
    >>> client.executions.ingest(rows)                                                    # doctest: +SKIP
    IngestResult(rows=100000, seconds=4.2)
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
            >>> client.executions.to_arrow(status="failed", since="2026-06-01")  # doctest: +SKIP
            pyarrow.Table
            id: string
            ...
            >>> t = client.executions.to_arrow(status="completed",  # doctest: +SKIP
            ...                                flatten={"parameters.lr": "float64"})
            >>> t.schema.field("parameters.lr").type                 # doctest: +SKIP
            DataType(double)
        """
        return options.arrow(self._session, _table_name(self))

    @reads
    def to_pandas(self, options: ReadOptions) -> pd.DataFrame:
        """The matching rows as a DataFrame with nullable / Arrow-backed dtypes
        (:func:`flowscope._frames.pandas_dtype`): the same columns when nothing matches.

        Example:
            >>> df = client.executions.to_pandas(status="completed", decimal="float64")  # doctest: +SKIP
            >>> df["duration_seconds"].dtype                                             # doctest: +SKIP
            Float64Dtype()
        """
        return to_pandas(options.arrow(self._session, _table_name(self)))

    @reads
    def to_polars(self, options: ReadOptions) -> Any:
        """The matching rows as a polars DataFrame: :meth:`to_arrow` wrapped without a
        copy (``pip install 'flowscope[polars]'``).

        Example:
            >>> client.executions.to_polars(status="failed").select("id", "error")  # doctest: +SKIP
        """
        from .._frames import require_polars, to_polars

        require_polars()  # before anything is read
        return to_polars(options.arrow(self._session, _table_name(self)))

    @reads
    def iter_batches(self, options: ReadOptions) -> Iterator[pa.RecordBatch]:
        """Stream the matching rows as RecordBatches of ``batch_size`` rows in constant
        memory; closing the iterator early cancels the query.

        Example:
            >>> for batch in client.executions.iter_batches(batch_size=100_000):  # doctest: +SKIP
            ...     handle(batch)
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
            >>> client.executions.ingest([{"workflow_id": "wf_1", "status": "completed",   # doctest: +SKIP
            ...     "started_at": "2026-01-01T10:00:00Z", "completed_at": "2026-01-01T10:00:03Z"}])
            IngestResult(rows=1, seconds=0.01)
        """
        from .._ingest import ingest

        return ingest(self._session, _table_name(self), rows)
