"""A sync's work on one table: a full copy, or the changes since the previous sync folded
into the table's delta (or a new base), plus the rows whose *visibility* changed.

**Visibility without a row change.** A scoped login sees an execution when it sees its
workflow (revision 0007); what it sees of a workflow depends on its ``owner``,
``is_public`` and ``organization_id`` and on the user's scopes. A handover, an
``is_public`` flip or a move between organizations changes the workflow row only; and a
workflow that becomes invisible takes its audit rows with it (the audit log's policy shows
a restricted login only the rows of what it sees now), so the change feed alone cannot
say that it left. Hence, for a scoped mirror, every incremental sync also compares the ids
of the workflows the login reads now (one index-only read of ``workflows``, in the same
snapshot) with the mirror's (:func:`reconcile_visibility`): a workflow that appeared is
read with all its executions, one that disappeared leaves with all of its executions.

**Deletions a restricted login cannot see.** For the same reason, a user who sees part of its
organization only never sees the audit row of a deleted execution. Its syncs compare, per
workflow, the number of executions it reads with the mirror's after the known changes, and
drop the ids of the workflows that differ that PostgreSQL no longer has
(:func:`missed_deletions`): one grouped count of what the user sees, per sync.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .. import _changes
from ..models import EXECUTIONS, WORKFLOWS
from . import _store

if TYPE_CHECKING:
    import pyarrow as pa

    from .._session import Session


def plan(name: str, where: Any = None) -> Any:
    from ..export import _plan

    return _plan(name, _store.FILTERS[name], extra_where=where)


def copy(
    session: Session,
    root: Path,
    conn: sa.Connection,
    name: str,
    sequence: int,
    progress: bool,
    origin: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], int]:
    """A full copy of ``name`` into a new base file (``origin``: its provenance record)."""
    from .._display import progress_bar
    from ..export import _estimate_rows, _stream_plan

    table_plan = plan(name)
    rel = f"{name}/base-{sequence:06d}-0.parquet"
    total = _estimate_rows(session, name) if progress else None
    bar = progress_bar(progress, desc=f"mirror {name}", total=total, unit=" rows")
    try:
        with _store.ParquetOut(root / rel, table_plan.schema, origin) as out:
            shared = _changes.export_snapshot(conn)
            stream = _stream_plan(session, table_plan, batch_size=None, conn=conn, snapshot=shared)
            with contextlib.closing(stream):  # a writer error ends the read at once
                for batch in stream:
                    out.write(batch)
                    bar.update(batch.num_rows)
                    _store.step("batch")
            rows = out.rows
    finally:
        bar.close()
    entry = {"base": [rel], "delta": None, "deleted": None, "rows": rows, "base_rows": rows}
    entry.update(delta_rows=0, deleted_rows=0)
    return entry, rows


def reconcile_visibility(
    root: Path, conn: sa.Connection, entry: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """The workflows that became visible to the login since the mirror's state ``entry``
    (of ``workflows``), and those that stopped being visible: (appeared, vanished)."""
    visible = _changes.visible_ids(conn, "workflows", _store.FILTERS["workflows"].clause())
    held = set(_ids(root, entry, "id"))
    return sorted(visible - held), sorted(held - visible)


def apply(
    session: Session,
    root: Path,
    conn: sa.Connection,
    name: str,
    old: dict[str, Any],
    since: tuple[int, str | None],
    sequence: int,
    visibility: tuple[list[str], list[str]] = ([], []),
    recount: bool = False,
    origin: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], tuple[int, int, int]]:
    """Fold the changes since ``since`` (horizon, snapshot) into ``name``'s delta (or a new
    base). ``visibility``: the workflows that appeared to / vanished from the login
    (:func:`reconcile_visibility`), whose rows (their executions) are read again / dropped;
    ``recount``: find the deletions the feed could not show (:func:`missed_deletions`)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from ..export import _stream_plan

    horizon, seen = since
    appeared, vanished = visibility
    where = _changes.changed_rows(name, horizon, seen)
    link = WORKFLOWS.c.id if name == "workflows" else EXECUTIONS.c.workflow_id
    if appeared:
        where = sa.or_(where, link.in_(appeared))
    table_plan = plan(name, where)
    batches = list(_stream_plan(session, table_plan, batch_size=None, conn=conn))
    fresh = pa.Table.from_batches(batches, schema=table_plan.schema)
    gone = [r[0] for r in conn.execute(_changes.deleted_ids(name, horizon, seen))]
    if vanished:
        gone += _ids(root, old, "id", "workflow_id" if name == "executions" else "id", vanished)
    if recount:
        gone += missed_deletions(root, conn, old, fresh, gone)
    fresh_ids = fresh.column("id")
    touched = pa.concat_arrays(
        [fresh_ids.combine_chunks().cast(pa.string()), pa.array(gone, pa.string())]
    )
    if len(touched) == 0:
        return dict(old), (0, 0, 0)
    present = set(_ids(root, old, "id", "id", touched))
    fresh_list = fresh_ids.to_pylist()
    added = sum(1 for i in fresh_list if i not in present)
    changed = len(fresh) - added
    gone_set = set(gone) - set(fresh_list)
    removed = sum(1 for i in gone_set if i in present)
    # the new delta: the old one without the touched ids, plus the fresh versions
    parts = [fresh]
    if old["delta"]:
        prev = pq.read_table(root / old["delta"], schema=table_plan.schema)
        parts.insert(0, prev.filter(pc.invert(pc.is_in(prev.column("id"), touched))))
    delta = pa.concat_tables(parts)
    deleted_ids = set(gone_set)
    if old["deleted"]:
        deleted_ids |= set(pq.read_table(root / old["deleted"]).column("id").to_pylist())
    deleted_ids -= set(fresh_list)
    rows = int(old["rows"]) + added - removed
    entry = {"base": old["base"], "base_rows": old["base_rows"], "rows": rows}
    if len(delta) + len(deleted_ids) > max(_store.COMPACT_MIN_ROWS, int(old["base_rows"]) // 20):
        return _compact(root, name, old, delta, deleted_ids, table_plan.schema, sequence, origin), (
            added,
            changed,
            removed,
        )
    delta_rel = f"{name}/delta-{sequence:06d}.parquet"
    with _store.ParquetOut(root / delta_rel, table_plan.schema, origin) as out:
        for batch in delta.to_batches(_store.ROW_GROUP):
            out.write(batch)
    deleted_rel = None
    if deleted_ids:
        deleted_rel = f"{name}/deleted-{sequence:06d}.parquet"
        ids = pa.table({"id": pa.array(sorted(deleted_ids), pa.string())})
        with _store.ParquetOut(root / deleted_rel, ids.schema, origin) as out:
            for batch in ids.to_batches():
                out.write(batch)
    entry.update(delta=delta_rel, deleted=deleted_rel)
    entry.update(delta_rows=len(delta), deleted_rows=len(deleted_ids))
    return entry, (added, changed, removed)


def restricted(conn: sa.Connection) -> bool:
    """Whether the login sees part of its organization only (a user without
    ``workflow:read:all``): the audit log then hides the deletion of what it saw."""
    can = sa.func.flowscope_session_can(sa.literal("workflow:read:all", sa.Text))
    return not conn.execute(sa.select(can)).scalar()


def missed_deletions(
    root: Path, conn: sa.Connection, old: dict[str, Any], fresh: pa.Table, gone: list[str]
) -> list[str]:
    """Executions deleted without the feed showing it (to a restricted login, the audit row
    of a deleted execution is hidden with the execution): per workflow, the login's count
    in PostgreSQL against the mirror's after this sync's known changes; where they differ,
    the ids the mirror would hold and PostgreSQL does not. One grouped count of the
    login's executions: a restricted user's sync pays a read of what it sees."""
    import duckdb
    import pyarrow as pa

    e = EXECUTIONS.c
    readable = _store.FILTERS["executions"].clause()
    counts: dict[str, int] = dict(
        conn.execute(
            sa.select(e.workflow_id, sa.func.count()).where(readable).group_by(e.workflow_id)
        ).all()
    )
    con = duckdb.connect()
    try:
        kept = _store.table_relation(con, root, old).select("id, workflow_id")
        replaced = pa.table(
            {
                "id": pa.concat_arrays(
                    [
                        fresh.column("id").combine_chunks().cast(pa.string()),
                        pa.array(gone, pa.string()),
                    ]
                )
            }
        )
        kept = kept.join(con.from_arrow(replaced), "id", how="anti")
        kept = kept.union(con.from_arrow(fresh.select(["id", "workflow_id"])))
        kept.create_view("kept")
        held = dict(con.execute("SELECT workflow_id, count(*) FROM kept GROUP BY 1").fetchall())
        differ = sorted(w for w in held if held[w] != counts.get(w, 0))
        if not differ:
            return []
        wanted = con.from_arrow(pa.table({"workflow_id": pa.array(differ, pa.string())}))
        ours = {r[0] for r in kept.join(wanted, "workflow_id", how="semi").select("id").fetchall()}
    finally:
        con.close()
    theirs = {
        r[0] for r in conn.execute(sa.select(e.id).where(readable, e.workflow_id.in_(differ)))
    }
    return sorted(ours - theirs)


def _compact(
    root: Path,
    name: str,
    old: dict[str, Any],
    delta: pa.Table,
    deleted_ids: set[str],
    schema: pa.Schema,
    sequence: int,
    origin: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A new base: the old one without the delta's and the deleted ids, plus the delta."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rel = f"{name}/base-{sequence:06d}-0.parquet"
    excluded = pa.concat_arrays(
        [delta.column("id").combine_chunks(), pa.array(sorted(deleted_ids), pa.string())]
    )
    with _store.ParquetOut(root / rel, schema, origin) as out:
        for base in old["base"]:
            for batch in pq.ParquetFile(root / base).iter_batches(_store.ROW_GROUP):
                keep = pc.invert(pc.is_in(batch.column("id"), excluded))
                out.write(batch.filter(keep))
        for batch in delta.to_batches(_store.ROW_GROUP):
            out.write(batch)
        written = out.rows
    entry = {"base": [rel], "base_rows": written, "delta": None, "deleted": None}
    entry.update(rows=written, delta_rows=0, deleted_rows=0)
    return entry


def _ids(
    root: Path, entry: dict[str, Any], column: str, key: str | None = None, among: Any = None
) -> list[str]:
    """The ``column`` values of the mirror's table (state ``entry``), of the rows whose
    ``key`` is one of ``among`` (all rows when ``key`` is None)."""
    import duckdb
    import pyarrow as pa

    con = duckdb.connect()
    try:
        rel = _store.table_relation(con, root, entry)
        if key is not None:
            values = among.cast(pa.string()) if isinstance(among, pa.Array) else among
            wanted = con.from_arrow(pa.table({key: pa.array(values, pa.string())}))
            rel = rel.join(wanted, key, how="semi")
        return [r[0] for r in rel.select(column).fetchall()]
    finally:
        con.close()
