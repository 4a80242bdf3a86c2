"""Arrow to Iceberg at one place: the export's faithful Arrow types, mapped to what
Iceberg has, and the tables' schema and partition spec.

Iceberg has no JSON type: a JSON column (``arrow.json``) becomes its text (``string``),
its field's ``doc`` saying ``JSON``. Decimals stay decimals (``decimal(10, 3)``),
timestamps stay tz-aware UTC microseconds (``timestamptz``), lists of text stay lists.
Tables are partitioned by month of ``created_at``, so a sync rewrites the months whose
rows changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

JSON_DOC = "JSON"  # the doc of a column whose text is JSON (Iceberg has no JSON type)
PARTITION = "created_at"


def arrow_schema(schema: pa.Schema) -> pa.Schema:
    """The Arrow schema of the rows written to Iceberg (JSON extension types: their text)."""
    import pyarrow as pa

    fields = []
    for field in schema:
        kind = field.type
        if isinstance(kind, pa.BaseExtensionType):
            kind = kind.storage_type
        if pa.types.is_large_string(kind):
            kind = pa.string()
        fields.append(pa.field(field.name, kind, nullable=field.nullable))
    return pa.schema(fields)


def convert(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` (export types) in the Iceberg-ready ``schema`` (:func:`arrow_schema`)."""
    import pyarrow as pa

    columns = []
    for field, column in zip(schema, table.columns, strict=True):
        chunks = [c.storage if isinstance(c, pa.ExtensionArray) else c for c in column.chunks]
        columns.append(pa.chunked_array(chunks, type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def iceberg_schema(schema: pa.Schema, json_columns: set[str]) -> Any:
    """The Iceberg schema of an Arrow schema (fresh field ids; JSON columns documented)."""
    from pyiceberg.io.pyarrow import _ConvertToIcebergWithoutIDs, visit_pyarrow
    from pyiceberg.schema import Schema, assign_fresh_schema_ids

    converted: Any = visit_pyarrow(schema, _ConvertToIcebergWithoutIDs())
    fields = [
        f.model_copy(update={"doc": JSON_DOC}) if f.name in json_columns else f
        for f in converted.fields
    ]
    return assign_fresh_schema_ids(Schema(*fields))


def id_in(ids: list[str]) -> Any:
    """The row filter ``id IN ids`` (pyiceberg's ``In``, typed loosely: its pydantic
    signature confuses mypy)."""
    from pyiceberg.expressions import In

    make: Any = In
    return make("id", ids)


def partition_spec(schema: Any) -> Any:
    """By month of ``created_at``."""
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import MonthTransform

    source = schema.find_field(PARTITION).field_id
    return PartitionSpec(
        PartitionField(
            source_id=source, field_id=1000, transform=MonthTransform(), name="created_at_month"
        )
    )
