"""A sync's work on one Iceberg table: a full load, or the changes since its last sync
(plus, for a scoped client, the rows whose visibility changed), in one transaction.

The rows are read as the export reads them (:func:`flowscope.export._read._plan`, the
mirror's filters, one REPEATABLE READ snapshot) and converted to Iceberg's types at one
place (:mod:`flowscope.lake._iceberg`).

**Visibility.** A scoped login sees an execution when it sees its workflow; a handover,
an ``is_public`` flip or a move between organizations changes what it sees without a
change of the rows the feed could show (see :mod:`flowscope.mirror._sync`). So for a
scoped client each incremental sync reads the ids it may read now (index-only reads) and
compares them with the table's: workflows that appeared are read with their executions,
ids the table holds and the login no longer reads (deleted out of its sight, or no
longer visible) are deleted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .. import _changes
from ..mirror._store import FILTERS
from ..mirror._sync import plan as _plan
from ..models import EXECUTIONS, WORKFLOWS
from . import _iceberg

if TYPE_CHECKING:
    import pyarrow as pa

    from ._lake import Lake

#: Table properties: pyiceberg's commit retry re-applies a sync's delete and append on top
#: of another writer's commit (rows twice); a sync that loses the race fails instead.
PROPERTIES = {"commit.retry.num-retries": "0"}
#: Rows per append while loading (each append of a load is part of one commit).
LOAD_CHUNK = 500_000


def _schemas(plan: Any) -> tuple[pa.Schema, Any]:
    import pyarrow as pa

    schema = _iceberg.arrow_schema(plan.schema)
    json_columns = {f.name for f in plan.schema if isinstance(f.type, pa.BaseExtensionType)}
    return schema, _iceberg.iceberg_schema(schema, json_columns)


def load(
    lake: Lake,
    conn: sa.Connection,
    name: str,
    table: Any,
    properties: dict[str, str],
    progress: bool,
) -> int:
    """Load all of ``name`` in one commit (replacing what the table held); the row count."""
    import pyarrow as pa
    from pyiceberg.expressions import AlwaysTrue

    from .._display import progress_bar
    from ..export import _estimate_rows, _stream_plan
    from ._lake import step

    plan = _plan(name)
    schema, iceberg_schema = _schemas(plan)
    if table is None:
        lake.catalog.create_namespace_if_not_exists(lake.namespace)
        table = lake.catalog.create_table(
            (lake.namespace, name),
            schema=iceberg_schema,
            partition_spec=_iceberg.partition_spec(iceberg_schema),
            properties=PROPERTIES,
        )
    total = _estimate_rows(lake._session, name) if progress else None
    bar = progress_bar(progress, desc=f"lake {name}", total=total, unit=" rows")
    rows = 0
    try:
        with _transaction(table) as tx:
            if table.current_snapshot() is not None:
                tx.delete(AlwaysTrue())
            shared = _changes.export_snapshot(conn)
            stream = _stream_plan(lake._session, plan, batch_size=None, conn=conn, snapshot=shared)
            pending: list[pa.RecordBatch] = []
            size = 0
            for batch in stream:
                pending.append(batch)
                size += batch.num_rows
                bar.update(batch.num_rows)
                step("batch")
                if size >= LOAD_CHUNK:
                    chunk = pa.Table.from_batches(pending, schema=plan.schema)
                    tx.append(_iceberg.convert(chunk, schema))
                    rows, pending, size = rows + size, [], 0
            last = pa.Table.from_batches(pending, schema=plan.schema)
            tx.append(_iceberg.convert(last, schema), snapshot_properties=properties)
            rows += size
            step("before-commit")
    finally:
        bar.close()
    return rows


@contextlib.contextmanager
def _transaction(table: Any) -> Iterator[Any]:
    """A pyiceberg transaction of ``table`` that never retries its commit
    (:data:`PROPERTIES`; set on tables made before): committed at the end, or not at all."""
    with table.transaction() as tx:
        if any(table.properties.get(k) != v for k, v in PROPERTIES.items()):
            tx.set_properties(PROPERTIES)
        yield tx


def held_ids(table: Any, column: str = "id", among: list[str] | None = None) -> set[str]:
    """The ``column`` values the Iceberg table holds (of the rows whose id is ``among``)."""
    from pyiceberg.expressions import AlwaysTrue

    if among is not None and not among:
        return set()
    where = AlwaysTrue() if among is None else _iceberg.id_in(among)
    found = table.scan(row_filter=where, selected_fields=(column,)).to_arrow()
    return set(found.column(column).to_pylist())


def apply(
    lake: Lake,
    conn: sa.Connection,
    name: str,
    table: Any,
    state: dict[str, Any],
    properties: dict[str, str],
) -> tuple[int, int, int]:
    """Commit the changes to ``name`` since its last sync: (added, changed, removed)."""
    import pyarrow as pa

    from ..export import _stream_plan
    from ._lake import step

    horizon, seen = int(state["horizon"]), state["snapshot"]
    where = _changes.changed_rows(name, horizon, seen)
    gone = {r[0] for r in conn.execute(_changes.deleted_ids(name, horizon, seen))}
    if lake._session.is_tenant:
        workflows = lake.table("workflows")
        appeared = sorted(_readable(conn, "workflows") - held_ids(workflows))
        if appeared:
            link = WORKFLOWS.c.id if name == "workflows" else EXECUTIONS.c.workflow_id
            where = sa.or_(where, link.in_(appeared))
        gone |= held_ids(table) - _readable(conn, name)
    plan = _plan(name, where)
    schema, _ = _schemas(plan)
    batches = list(_stream_plan(lake._session, plan, batch_size=None, conn=conn))
    fresh = _iceberg.convert(pa.Table.from_batches(batches, schema=plan.schema), schema)
    fresh_ids = set(fresh.column("id").to_pylist())
    gone -= fresh_ids
    present = held_ids(table, among=sorted(fresh_ids | gone))
    added = len(fresh_ids - present)
    changed = len(fresh_ids) - added
    removed = len(gone & present)
    with _transaction(table) as tx:
        if present:
            tx.delete(_iceberg.id_in(sorted(present)))
        step("batch")
        tx.append(fresh, snapshot_properties=properties)
        step("before-commit")
    return added, changed, removed


def _readable(conn: sa.Connection, name: str) -> set[str]:
    """The ids of ``name`` the login reads now (what the lake may hold)."""
    return _changes.visible_ids(conn, name, FILTERS[name].clause())
