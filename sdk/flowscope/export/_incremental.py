"""The incremental dataset: its manifest, tombstones, and settling what a killed run left.

An incremental export (``client.export.parquet(..., incremental=True)``) keeps a manifest
(``_flowscope_manifest.json``) in the dataset's directory: one entry per run (its files,
rows, tombstones, and its place in the change feed of :mod:`flowscope._changes`), and the
``pending`` run whose files are complete but not all renamed yet.

Example:
    >>> _manifest({"table": "executions", "partition_by": [], "time_column": "created_at"},
    ...           None)["runs"]
    []
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from .. import _changes
from .._changes import TABLES as TABLES_BY_NAME
from .._files import fsync_dir, write_json
from ..errors import ValidationError
from ..models import AUDIT_LOG
from ._schema import TIME_COLUMN, _Plan

if TYPE_CHECKING:
    import pyarrow as pa

__all__: list[str] = []

_MANIFEST = "_flowscope_manifest.json"
_MANIFEST_FORMAT = "flowscope-export/1"
_PART_FILE = re.compile(r"part-\d{8}T\d{6}-[0-9a-f]{6}(-deleted)?(-0)?\.parquet")


def _tombstones(
    conn: sa.Connection,
    name: str,
    since: tuple[int, str | None],
    fresh: set[str],
    plan: _Plan,
    version: int,
    keys: Sequence[str],
    vanished: Mapping[str, tuple[Any, Any]] | None = None,
) -> pa.Table | None:
    """Tombstone rows for the ids changed since ``since`` that this run did not export
    (deleted, no longer visible, or no longer matching the export's filter), and for the
    ``vanished`` ones (:func:`reconcile`), sorted by partition: ``id``, ``_version``,
    ``_deleted = true``; ``organization_id`` and the time column (so ``day``) from the
    row's last full image in the audit log (or, for a row whose audit rows the login no
    longer sees, from the dataset); other columns NULL. None: nothing left."""
    import pyarrow as pa
    import pyarrow.compute as pc

    vanished = vanished or {}
    changed = {r[0] for r in conn.execute(_changes.changed_ids(name, *since))}
    gone = sorted((changed | vanished.keys()) - fresh)
    if not gone:
        return None
    time_col = TIME_COLUMN[name]
    a = AUDIT_LOG.c
    ids = sa.literal(gone, postgresql.ARRAY(sa.Text))
    images = (
        sa.select(
            a.row_id,
            a.organization_id,
            sa.cast(a.changes[time_col].astext, sa.DateTime(timezone=True)).label("at"),
        )
        .where(a.table_name == name, a.row_id == sa.any_(ids), a.action.in_(["INSERT", "DELETE"]))
        .order_by(a.transaction_id, a.occurred_at)
    )
    known = dict(vanished)
    known.update({r.row_id: (r.organization_id, r.at) for r in conn.execute(images)})  # the last
    values: dict[str, Any] = {
        "id": gone,
        "_version": [version] * len(gone),
        "_deleted": [True] * len(gone),
        "organization_id": [known.get(i, (None, None))[0] for i in gone],
        time_col: [known.get(i, (None, None))[1] for i in gone],
    }
    columns = []
    for field in plan.schema:
        if field.name in values:
            columns.append(pa.array(values[field.name], field.type))
        elif isinstance(field.type, pa.BaseExtensionType):
            storage = pa.nulls(len(gone), field.type.storage_type)
            columns.append(pa.ExtensionArray.from_storage(field.type, storage))
        else:
            columns.append(pa.nulls(len(gone), field.type))
    table = pa.Table.from_arrays(columns, schema=plan.schema)
    if "day" in keys:
        day = pc.cast(table.column(time_col), pa.timestamp("us")).cast(pa.date32())
        table = table.set_column(table.schema.get_field_index("day"), "day", day)
    return table.sort_by([(k, "ascending") for k in keys]) if keys else table


def held_rows(
    root: Path, manifest: Mapping[str, Any] | None, name: str
) -> dict[str, tuple[Any, Any]]:
    """The rows the dataset holds now (the latest version of each id, not a tombstone):
    id → (``organization_id``, time column), read from the runs' files (partition
    columns from their directory names)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    files = [str(root / f) for run in (manifest or {}).get("runs", []) for f in run["files"]]
    if not files:
        return {}
    data = ds.dataset(files, format="parquet", partitioning="hive", partition_base_dir=str(root))
    time_col = TIME_COLUMN[name]
    wanted = ["id", "_version", "_deleted", time_col]
    has_org = "organization_id" in data.schema.names
    if has_org:
        wanted.append("organization_id")
    rows = data.to_table(columns=wanted).sort_by([("_version", "ascending")])
    latest = rows.group_by("id", use_threads=False).aggregate(
        [(c, "last") for c in wanted if c not in ("id", "_version")]
    )
    live = latest.filter(pc.invert(pc.fill_null(latest.column("_deleted_last"), False)))
    ids = live.column("id").to_pylist()
    at = live.column(f"{time_col}_last").to_pylist()
    org = live.column("organization_id_last") if has_org else pa.nulls(len(ids))
    return dict(zip(ids, zip(org.to_pylist(), at, strict=True), strict=True))


def reconcile(
    conn: sa.Connection,
    root: Path,
    manifest: Mapping[str, Any] | None,
    name: str,
    readable: Any,
) -> tuple[dict[str, tuple[Any, Any]], Any]:
    """Rows whose *visibility* changed for a scoped login without a change of the row
    (a workflow handed over or made private, and its executions; the audit log hides
    those changes from a login that no longer sees the row): compares the ids the login
    reads now (under ``readable``, the export's WHERE, and row security) with the rows the
    dataset holds. Returns the vanished rows (to tombstone, with their partition values)
    and a WHERE clause for the appeared ones (None: none), both in the run's snapshot."""
    held = held_rows(root, manifest, name)
    visible = _changes.visible_ids(conn, name, readable)
    vanished = {i: held[i] for i in held.keys() - visible}
    appeared = sorted(visible - held.keys())
    if not appeared:
        return vanished, None
    ids = sa.literal(appeared, postgresql.ARRAY(sa.Text))
    return vanished, TABLES_BY_NAME[name].c.id == sa.any_(ids)


def _read_manifest(root: Path) -> dict[str, Any] | None:
    path = root / _MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValidationError(f"cannot read the export manifest {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != _MANIFEST_FORMAT:
        raise ValidationError(f"{path} is not a flowscope export manifest")
    return data


def _manifest(
    head: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
    *,
    done: dict[str, Any] | None = None,
    pending: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest after ``previous``'s runs (+ ``done``), with ``pending`` in progress;
    ``head``: the dataset's ``table``, ``partition_by`` and ``time_column``."""
    runs = list((previous or {}).get("runs", []))
    if done is not None:
        runs.append(done)
    marks = [r["high_water_mark"] for r in runs if r.get("high_water_mark")]
    fed = [r for r in runs if r.get("horizon") is not None]
    last = fed[-1] if fed else {}
    return {
        "format": _MANIFEST_FORMAT,
        "table": head["table"],
        "partition_by": head["partition_by"],
        "time_column": head["time_column"],
        "high_water_mark": max(marks, key=datetime.fromisoformat) if marks else None,
        "horizon": last.get("horizon"),
        "snapshot": last.get("snapshot"),
        "as_of": last.get("as_of"),
        "source": last.get("source"),
        "version": last.get("version"),
        "rows": sum(r["rows"] for r in runs),
        "deleted": sum(r.get("deleted", 0) for r in runs),
        "runs": runs,
        "pending": pending,
    }


def _save_manifest(root: Path, data: dict[str, Any]) -> None:
    """Replace the manifest atomically (temp file, fsync, rename, directory fsync)."""
    write_json(root / _MANIFEST, data)


def _settle(root: Path) -> dict[str, Any] | None:
    """Bring an incremental dataset back to a committed state (the caller holds its lock).

    A ``pending`` run (killed after its files were complete) is finished: its remaining
    temp files are renamed into place and it is recorded; if any of its files is gone,
    it is undone instead (its rows are exported again). Then temp files, part files no
    run lists (renamed by a run killed before its manifest: their rows are above the
    high-water mark, so they would be exported twice) and empty partition directories
    are removed. Returns the manifest.
    """
    manifest = _read_manifest(root)
    if manifest is None:
        strays = [p for p in root.rglob("part-*.parquet") if _PART_FILE.fullmatch(p.name)]
        if strays:
            raise ValidationError(
                f"{root} holds exported files ({strays[0].relative_to(root)}, ...) but no"
                f" {_MANIFEST}: it is not an incremental export; choose an empty directory"
            )
    else:
        pending = manifest.get("pending")
        if pending:
            finals = [root / f for f in pending["files"]]
            temps = [root / t for t in pending["temps"]]
            complete = all(t.exists() or f.exists() for f, t in zip(finals, temps, strict=True))
            for final, temp in zip(finals, temps, strict=True):
                if not complete:
                    final.unlink(missing_ok=True)
                elif temp.exists():
                    os.replace(temp, final)
            for parent in {f.parent for f in finals}:
                fsync_dir(parent)
            done = None
            if complete:
                done = {k: v for k, v in pending.items() if k != "temps"}
                done["finished_at"] = datetime.now(UTC).isoformat()
                done["recovered"] = True
            manifest = _manifest(manifest, manifest, done=done)
            _save_manifest(root, manifest)
        listed = {f for run in manifest.get("runs", []) for f in run.get("files", [])}
        for part in root.rglob("part-*.parquet"):
            if _PART_FILE.fullmatch(part.name) and str(part.relative_to(root)) not in listed:
                part.unlink()
    for temp in root.rglob(".*.tmp"):  # we hold the dataset's lock: no one is writing these
        if temp.is_dir():
            shutil.rmtree(temp, ignore_errors=True)
        else:
            temp.unlink(missing_ok=True)
    partition_dirs = [p for p in root.rglob("*=*") if p.is_dir()]
    for directory in sorted(partition_dirs, key=lambda p: len(p.parts), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()
    return manifest
