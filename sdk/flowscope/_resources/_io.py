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

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from .._ingest import IngestResult
    from .._session import Session
    from ..export import Decimal

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
    """Arrow/pandas reads of one table with its explicit schema (see :mod:`flowscope.export`)."""

    _session: Session

    def to_arrow(
        self,
        filter: Any = None,
        /,
        *,
        columns: Sequence[str] | None = None,
        flatten: Sequence[str] | Mapping[str, Any] | None = None,
        decimal: Decimal = "decimal128",
        batch_size: int = 32_768,
        **filter_fields: Any,
    ) -> pa.Table:
        """The matching rows as one Arrow table (explicit schema; JSONB as ``pa.json_()``).

        Example:
            >>> client.executions.to_arrow(status="failed", since="2026-06-01")  # doctest: +SKIP
            pyarrow.Table
            id: string
            ...
        """
        from ..export import read_arrow

        return read_arrow(
            self._session,
            _table_name(self),
            filter,
            columns=columns,
            flatten=flatten,
            decimal=decimal,
            batch_size=batch_size,
            **filter_fields,
        )

    def to_pandas(
        self,
        filter: Any = None,
        /,
        *,
        columns: Sequence[str] | None = None,
        flatten: Sequence[str] | Mapping[str, Any] | None = None,
        decimal: Decimal = "decimal128",
        batch_size: int = 32_768,
        **filter_fields: Any,
    ) -> pd.DataFrame:
        """The matching rows as a DataFrame with nullable / Arrow-backed dtypes.

        Example:
            >>> df = client.executions.to_pandas(status="completed", decimal="float64")  # doctest: +SKIP
            >>> df["duration_seconds"].dtype                                             # doctest: +SKIP
            Float64Dtype()
        """
        from ..export import read_pandas

        return read_pandas(
            self._session,
            _table_name(self),
            filter,
            columns=columns,
            flatten=flatten,
            decimal=decimal,
            batch_size=batch_size,
            **filter_fields,
        )

    def to_polars(self, filter: Any = None, /, **options: Any) -> Any:
        """The matching rows as a polars DataFrame: :meth:`to_arrow` (same arguments),
        wrapped without a copy (``pip install 'flowscope[polars]'``).

        Example:
            >>> client.executions.to_polars(status="failed").select("id", "error")  # doctest: +SKIP
        """
        from .._frames import require_polars, to_polars

        require_polars()  # before anything is read
        return to_polars(self.to_arrow(filter, **options))

    def iter_batches(
        self,
        filter: Any = None,
        /,
        *,
        columns: Sequence[str] | None = None,
        flatten: Sequence[str] | Mapping[str, Any] | None = None,
        decimal: Decimal = "decimal128",
        batch_size: int = 32_768,
        **filter_fields: Any,
    ) -> Iterator[pa.RecordBatch]:
        """Stream the matching rows as RecordBatches in constant memory.

        Example:
            >>> for batch in client.executions.iter_batches(batch_size=100_000):  # doctest: +SKIP
            ...     handle(batch)
        """
        from ..export import iter_batches

        return iter_batches(
            self._session,
            _table_name(self),
            filter,
            columns=columns,
            flatten=flatten,
            decimal=decimal,
            batch_size=batch_size,
            **filter_fields,
        )


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
