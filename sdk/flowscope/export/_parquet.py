"""Parquet export: ``client.export.parquet(...)``, one file, a partitioned dataset or an
incremental one, written with the crash-safe writer of :mod:`._atomic`.

Example:
    >>> client.export.parquet("executions", tmp_path / "runs.parquet", since="2026-06-01",
    ...                       progress=False)  # doctest: +ELLIPSIS
    ExportResult(rows=553, files=1, bytes=..., seconds=...)
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import glob
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .. import _changes, _provenance
from .._boundary import Guarded
from .._files import (
    directory_lock,
    fsync_dir,
    owned_temp_dir,
    private_dirs,
    release,
    sweep_stale,
)
from ..errors import ConfigurationError, FlowscopeError, SourceChangedError, ValidationError
from . import _atomic, _incremental
from ._atomic import _Sink
from ._incremental import _manifest, _save_manifest, _settle, _tombstones
from ._read import ReadOptions, _estimate_select_rows, _plan_query, _stream_plan, read_options
from ._schema import TIME_COLUMN, table

if TYPE_CHECKING:
    from .._session import Session

__all__ = ["Export", "ExportResult"]

_PARTITIONS = ("day", "organization_id")
_COMPRESSIONS = ("zstd", "snappy", "gzip", "brotli", "lz4", "none")


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What an export wrote: ``rows``, ``files`` (paths), ``bytes``, ``seconds``.

    ``high_water_mark`` is the newest time-column value exported (incremental mode),
    or None; ``deleted``: the tombstones an incremental run wrote (not in ``rows``).
    """

    rows: int
    files: tuple[Path, ...]
    bytes: int
    seconds: float
    high_water_mark: datetime | None = None
    deleted: int = 0

    def __repr__(self) -> str:
        return (
            f"ExportResult(rows={self.rows}, files={len(self.files)}, bytes={self.bytes},"
            f" seconds={self.seconds:.2f})"
        )

    @property
    def rows_per_second(self) -> float:
        """Throughput of the export."""
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def _progress(enabled: bool, desc: str, total: int | None) -> Any:
    from .._display import progress_bar

    return progress_bar(
        enabled,
        total=total,
        desc=desc,
        unit=" rows",
        unit_scale=True,
        leave=True,
        dynamic_ncols=True,
    )


class Export(Guarded):
    """Parquet export: ``client.export.parquet(...)``.

    Example:
        >>> result = client.export.parquet("executions", tmp_path / "out" / "runs",
        ...                                partition_by=["day"], progress=False)
        >>> result.rows, len(result.files)
        (2000, 120)
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def __repr__(self) -> str:
        return f"<flowscope.Export of {self._session!r}>"

    def parquet(
        self,
        table_or_query: str | sa.Select[Any],
        path: str | os.PathLike[str],
        filter: Any = None,
        /,
        *,
        partition_by: Sequence[str] | None = None,
        compression: str | None = "zstd",
        progress: bool = True,
        incremental: bool = False,
        **options: Any,
    ) -> ExportResult:
        """Stream a table (or a SQLAlchemy ``Select``) into Parquet, atomically.

        ``filter`` and ``options`` are those of every read (``client.executions.to_arrow``;
        :func:`flowscope.export._read.read_options`): ``columns``, ``flatten``, ``decimal``,
        ``batch_size`` and the filter's fields as keywords (``status="failed"``); a query
        takes ``decimal`` and ``batch_size`` only.

        * No ``partition_by`` and not ``incremental``: one file at ``path``.
        * ``partition_by=["day"]`` or ``["organization_id", "day"]``: a Hive-style
          dataset under the directory ``path`` (``day=2026-03-01/part-….parquet``;
          ``day`` is the UTC date of the table's time column, ``created_at`` or
          ``occurred_at`` for ``audit_log``; NULL values go to
          ``__HIVE_DEFAULT_PARTITION__``). Partition columns live in the directory
          names, not in the files, as Hive, pyarrow, pandas and DuckDB expect.
        * ``incremental=True``: ``path`` is a dataset directory with a manifest
          (``_flowscope_manifest.json``); each run appends, as new files, what changed
          since the previous run. Runs read the change feed of :mod:`flowscope._changes`
          (the audit log's transaction ids, in one REPEATABLE READ snapshot whose
          ``horizon``, ``snapshot`` and ``as_of`` the manifest records), not a time
          mark: rows committed late by long transactions, rows updated after they were
          exported and deletions all reach the dataset, and a run with nothing changed
          adds no file. For a scoped client each run also compares the ids it reads now
          with the dataset's, so rows it stopped seeing without a change of theirs (a
          workflow made private or handed over, and its executions) are tombstoned and
          rows it started seeing are added. The manifest records the source database
          (:mod:`flowscope._provenance`): a run on a database dropped and created again,
          or restored from an older state, raises :class:`SourceChangedError` and writes
          nothing; export into a new directory to start a new dataset. Every row carries two columns: ``_version`` (the run that wrote
          it: 1, 2, ...) and ``_deleted``. A row deleted, no longer visible to the
          client or no longer matching ``filter`` since the previous run becomes a
          *tombstone*: ``id``, ``_version``, ``_deleted = true``, its
          ``organization_id`` and time column from the audit log (so it sits in its own
          partition), every other column NULL, in ``part-<run>-deleted`` files. The
          table is the dataset read "latest version per id", e.g. in DuckDB::

              SELECT * EXCLUDE (_version, _deleted, latest) FROM (
                  SELECT *, row_number() OVER (PARTITION BY id ORDER BY _version DESC)
                         AS latest
                  FROM read_parquet('lake/executions/**/*.parquet', hive_partitioning = true))
              WHERE latest = 1 AND NOT _deleted

          ``audit_log`` is append-only: its runs add new entries and no tombstones
          (entries dropped by retention stay in the dataset). Limits: those of the
          change feed (changes made with triggers disabled are not seen; a dataset
          older than the audit retention must be exported again); a dataset written
          by a flowscope older than the change feed is refused (export it again).

        What a crash (even ``kill -9``) leaves, and what the next run does with it:

        * one file: written beside ``path`` (``.name.*.tmp``), checked, fsynced and
          renamed over it: ``path`` holds the old file or the new one, never a part.
        * a partitioned dataset: built in a hidden sibling directory
          (``.name.*.tmp``) and renamed into place as a whole: ``path`` is absent
          (or empty) or complete.
        * an incremental run: its files are written as hidden temp files inside the
          dataset; once all are complete the manifest records them as ``pending``
          (with the new high-water mark), then they are renamed into place and the
          manifest marks the run done. The next run first settles a pending run
          (renames what is left and records it), and removes temp files, files no
          manifest run lists (their rows are exported again) and empty partition
          directories. Rows are never in the dataset twice. One incremental run at
          a time per dataset (an ``flock`` on its directory; another gets
          :class:`ConflictError`).

        Leftover temp files and directories of killed runs are removed by the next
        export to the same path; on an ordinary error nothing is left at all.
        ``progress`` shows a ``tqdm.auto`` bar with rows/s. ``batch_size`` caps the
        rows read per batch (default: the transport's own size, which keeps memory
        flat); batches are gathered into row groups of ~65,536 rows either way.

        Raises:
            ValidationError: bad arguments, a non-empty target for a partitioned export.
            ConfigurationError: ``path`` cannot be written (its parent is a file, no
                permission, no space left...); the message names the path.
            ConflictError: another incremental export is writing the same dataset.
            SourceChangedError: the incremental dataset is a copy of another database.

        Every file records its provenance (the source database, snapshot, as-of time,
        table, filter and reader) in its Parquet metadata: :func:`flowscope.provenance`.

        Example:
            >>> client.export.parquet("executions", tmp_path / "failed.parquet", status="failed",
            ...                       progress=False)  # doctest: +ELLIPSIS
            ExportResult(rows=93, files=1, bytes=..., seconds=...)
            >>> lake = tmp_path / "lake" / "executions"
            >>> first = client.export.parquet("executions", lake, incremental=True,
            ...                               partition_by=["organization_id", "day"], progress=False)
            >>> first.rows, len(first.files), first.high_water_mark.isoformat()
            (2000, 355, '2026-06-29T19:33:00.915000+00:00')
            >>> again = client.export.parquet("executions", lake, incremental=True,
            ...                               partition_by=["organization_id", "day"], progress=False)
            >>> again.rows, len(again.files), again.deleted  # nothing changed since the first run
            (0, 0, 0)
        """
        started = time.perf_counter()
        if path is None or not isinstance(path, str | os.PathLike):
            raise ValidationError(f"path must be a file or directory path, got {path!r}")
        target = Path(path)
        if isinstance(partition_by, str):
            raise ValidationError("partition_by is a list, e.g. ['day']")
        keys = list(partition_by or [])
        bad = [k for k in keys if k not in _PARTITIONS]
        if bad or len(set(keys)) != len(keys):
            raise ValidationError(
                f"partition_by takes 'day' and/or 'organization_id', got {partition_by!r}"
            )
        if compression is not None and compression not in _COMPRESSIONS:
            raise ValidationError(f"unknown compression {compression!r}")
        read = read_options(filter, **{"batch_size": None, **options})
        if isinstance(table_or_query, sa.Select):
            if incremental:
                raise ValidationError("incremental export needs a table name, not a query")
            if filter is not None or read.filter_fields or read.columns or read.flatten:
                raise ValidationError("filters/columns/flatten apply to table exports only")
        else:
            table(table_or_query)
        try:
            with contextlib.ExitStack() as stack:
                if incremental:
                    if target.exists() and not target.is_dir():
                        raise ValidationError(f"{target} exists and is not a directory")
                    private_dirs(target)
                    stack.enter_context(directory_lock(target, "an incremental export"))
                    manifest = _settle(target)
                    # one snapshot: what the run reads, and where the next run starts
                    conn = stack.enter_context(_changes.snapshot(self._session))
                else:
                    manifest, conn = None, None
                    _prepare_target(target, dataset=bool(keys))
                return self._write(
                    table_or_query,
                    target,
                    read,
                    manifest,
                    started=started,
                    keys=keys,
                    compression=compression,
                    progress=progress,
                    incremental=incremental,
                    conn=conn,
                )
        except FlowscopeError:  # ConnectionFailedError, QueryTimeoutError are OSErrors too
            raise
        except OSError as exc:
            raise _path_error(target, exc) from exc

    def _write(
        self,
        table_or_query: str | sa.Select[Any],
        target: Path,
        read: ReadOptions,
        manifest: dict[str, Any] | None,
        *,
        started: float,
        keys: list[str],
        compression: str | None,
        progress: bool,
        incremental: bool,
        conn: sa.Connection | None,
    ) -> ExportResult:
        extra: list[tuple[str, Any, Any]] = []
        extra_where = None
        vanished: dict[str, tuple[Any, Any]] = {}
        if conn is not None:  # incremental: the run's snapshot, and the source it reads
            point = _changes.take_point(conn)
            source = _provenance.read_source(conn)
            if manifest is not None and manifest.get("runs"):
                _check_source(target, manifest, source, point)
        else:
            with self._session.read_transaction() as first:
                point = _changes.take_point(first)
                source = _provenance.read_source(first)
        hwm_before: datetime | None = None
        since: tuple[int, str | None] | None = None  # the previous run's place in the feed
        version = 0
        if isinstance(table_or_query, sa.Select):
            plan = _plan_query(self._session, table_or_query, decimal=read.decimal)
            missing = [k for k in keys if k not in {c.name for c in plan.columns}]
            if missing:
                raise ValidationError(f"the query has no column(s) {missing} to partition by")
            time_col = None
            name = "query"
        else:
            name = str(table_or_query)
            t = table(table_or_query)
            time_col = TIME_COLUMN[name]
            columns = read.columns
            if "organization_id" in keys and "organization_id" not in t.c:
                raise ValidationError(f"{name} has no organization_id to partition by")
            if manifest is not None:
                if manifest.get("table") != name or manifest.get("partition_by") != keys:
                    raise ValidationError(
                        f"{target} holds an export of {manifest.get('table')!r} partitioned by"
                        f" {manifest.get('partition_by')}, not {name!r} by {keys}"
                    )
                if manifest.get("high_water_mark"):
                    hwm_before = datetime.fromisoformat(manifest["high_water_mark"])
                if manifest.get("horizon") is None and manifest.get("runs"):
                    raise ValidationError(
                        f"{target} was written by an older flowscope, whose created_at mark"
                        " misses late and changed rows: export again into a new directory"
                    )
                if manifest.get("horizon") is not None:
                    since = (int(manifest["horizon"]), manifest.get("snapshot"))
                    extra_where = _changes.changed_where(name, *since)
                if conn is not None and self._session.is_tenant and name in _changes.TABLES:
                    # rows the login stopped (or started) seeing without a change of theirs
                    vanished, appeared = _incremental.reconcile(
                        conn, target, manifest, name, read.plan(name).select.whereclause
                    )
                    if appeared is not None and extra_where is not None:
                        extra_where = sa.or_(extra_where, appeared)
            if incremental:
                version = len(manifest.get("runs", [])) + 1 if manifest else 1
                extra += [
                    ("_version", sa.literal(version, sa.BigInteger), sa.BigInteger()),
                    ("_deleted", sa.false(), sa.Boolean()),
                ]
                if columns is not None and "id" not in columns:
                    columns = ["id", *columns]
            for key in keys:
                if key == "day":
                    day = sa.cast(sa.func.timezone("UTC", t.c[time_col]), sa.Date)
                    extra.append(("day", day, sa.Date()))
                elif columns is not None and key not in columns:
                    columns = [*columns, key]
            read = dataclasses.replace(read, columns=columns)
            plan = read.plan(name, extra=extra, extra_where=extra_where)
            if time_col not in {c.name for c in plan.columns} and incremental:
                raise ValidationError(f"incremental export needs the column {time_col!r}")
            if incremental:  # tombstones hold NULLs in NOT NULL columns
                plan = plan.relaxed()
        if keys:
            plan = dataclasses.replace(
                plan, select=plan.select.order_by(*(sa.literal_column(f'"{k}"') for k in keys))
            )
        dataset = bool(keys) or incremental
        compression_arg = None if compression in (None, "none") else compression
        file_schema = plan.schema
        for key in keys:
            file_schema = file_schema.remove(file_schema.get_field_index(key))
        origin = _provenance.record(
            self._session,
            source,
            as_of=point.as_of.astimezone(UTC),
            snapshot=point.snapshot,
            table=name,
            filter=_filter_of(read),
        )
        file_schema = _provenance.with_provenance(file_schema, origin)
        run = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        # Where the files are written: the dataset itself (incremental: hidden temp files
        # until the manifest has them), or a hidden sibling directory renamed into place
        # as a whole (a new partitioned dataset), or beside the single file.
        staging: Path | None = None
        staging_lock: int | None = None
        if dataset and not incremental:
            staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
            staging_lock = owned_temp_dir(staging)
        sink = _Sink(
            staging or target,
            file_schema,
            keys,
            compression=compression_arg,
            single=None if dataset else target,
            name=f"part-{run}",
        )
        sinks = [sink]
        rows = deleted = 0
        hwm: datetime | None = None
        fresh_ids: set[str] = set()
        # the planner's estimate of this very query (filters included): a total and an ETA
        total = _estimate_select_rows(self._session, plan.select) if progress else None
        bar = _progress(progress, f"export {name}", total)
        # Parquet encoding runs in a worker thread, overlapping the next batch's parsing.
        from concurrent.futures import Future, ThreadPoolExecutor

        pending: Future[None] | None = None
        try:
            with (
                contextlib.ExitStack() as streams,
                ThreadPoolExecutor(1, thread_name_prefix="flowscope-parquet") as pool,
            ):
                try:
                    shared = _changes.export_snapshot(conn) if conn is not None else None
                    stream = streams.enter_context(  # closed before the transaction ends
                        contextlib.closing(
                            _stream_plan(
                                self._session,
                                plan,
                                batch_size=read.batch_size,
                                conn=conn,
                                snapshot=shared,
                            )
                        )
                    )
                    for batch in stream:
                        if time_col is not None and incremental and batch.num_rows:
                            import pyarrow.compute as pc

                            newest = pc.max(batch.column(time_col)).as_py()
                            if newest is not None and (hwm is None or newest > hwm):
                                hwm = newest
                            if since is not None:
                                fresh_ids.update(batch.column("id").to_pylist())
                        if pending is not None:
                            pending.result()
                        pending = pool.submit(sink.write, batch)
                        rows += batch.num_rows
                        bar.update(batch.num_rows)
                    if pending is not None:
                        pending.result()
                    if since is not None and conn is not None and name in _changes.TABLES:
                        gone = _tombstones(
                            conn, name, since, fresh_ids, plan, version, keys, vanished
                        )
                        if gone is not None:
                            tombs = _Sink(
                                target,
                                file_schema,
                                keys,
                                compression=compression_arg,
                                single=None,
                                name=f"part-{run}-deleted",
                            )
                            sinks.append(tombs)
                            for batch in gone.to_batches():
                                tombs.write(batch)
                            deleted = gone.num_rows
                finally:
                    if pending is not None:
                        pending.cancel()
            for each in sinks:
                each.finish()
            _atomic._step("files-ready")
            new_mark = hwm if hwm is not None else hwm_before
            if incremental:
                written = [f for each in sinks for f in each.files]
                entry = {
                    "finished_at": None,
                    "rows": rows,
                    "deleted": deleted,
                    "files": [str(f.final.relative_to(target)) for f in written],
                    "high_water_mark": new_mark.isoformat() if new_mark else None,
                    "version": version,
                    "horizon": point.horizon,
                    "snapshot": point.snapshot,
                    "source": source,
                    "as_of": point.as_of.astimezone(UTC).isoformat(),
                }
                head = {"table": name, "partition_by": keys, "time_column": time_col}
                if written:  # the intent: after it, a rerun renames these into place
                    temps = [str(f.temp.relative_to(target)) for f in written]
                    _save_manifest(
                        target, _manifest(head, manifest, pending={**entry, "temps": temps})
                    )
                    _atomic._step("intent-written")
                sizes = [size for each in sinks for size in each.commit(announce=True)]
                _atomic._step("before-manifest")
                entry["finished_at"] = datetime.now(UTC).isoformat()
                _save_manifest(target, _manifest(head, manifest, done=entry))
                _atomic._step("after-manifest")
                files = tuple(f.final for f in written)
            else:
                sizes = sink.commit(announce=staging is None)
                if staging is not None:
                    _publish(staging, target)
                    staging = None
                    _atomic._step("renamed")
                    files = tuple(target / p.relative_to(sink.root) for p in sink.paths)
                else:
                    files = sink.paths
        except BaseException:
            for each in sinks:
                each.abort()
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            release(staging_lock)
            bar.close()
        return ExportResult(
            rows=rows,
            files=files,
            bytes=sum(sizes),
            seconds=time.perf_counter() - started,
            high_water_mark=(hwm if hwm is not None else hwm_before) if incremental else None,
            deleted=deleted,
        )


def _check_source(
    target: Path, manifest: dict[str, Any], source: dict[str, Any], point: _changes.Point
) -> None:
    """Refuse to append to a dataset exported from another database (see
    :mod:`flowscope._provenance`). A dataset of an older flowscope, which recorded no
    source, adopts this one (only a database that went back in time is told apart)."""
    recorded = manifest.get("source") or source
    reason = _provenance.changed(recorded, manifest.get("snapshot"), source, point.snapshot)
    if reason is not None:
        raise SourceChangedError(
            f"{target} was exported from another database than this client reads: {reason}."
            " Its rows are not this database's: export into a new, empty directory (or remove"
            f" {target}) to start a new dataset"
        )


def _filter_of(read: ReadOptions) -> Any:
    if read.filter is not None:
        return read.filter
    return dict(read.filter_fields) or None


def _path_error(target: Path, exc: OSError) -> ConfigurationError:
    """An OS error on the export's path → a flowscope error naming the path."""
    where = exc.filename if exc.filename is not None else target
    reason = exc.strerror or str(exc) or type(exc).__name__
    detail = f" ({where}: {reason})" if str(where) != str(target) else f": {reason}"
    return ConfigurationError(f"cannot write the export to {target}{detail}")


def _prepare_target(target: Path, *, dataset: bool) -> None:
    """Check a single-file or new-dataset target, create its parent and sweep the
    leftovers of killed exports to it (temp files or staging directories no one holds)."""
    if dataset:
        if target.exists() and not target.is_dir():
            raise ValidationError(f"{target} exists and is not a directory")
        if target.exists() and any(target.iterdir()):
            raise ValidationError(
                f"{target} is not empty: remove it, or use incremental=True to append"
            )
    elif target.is_dir():
        raise ValidationError(f"{target} is a directory; give a file path (or partition_by)")
    private_dirs(target.parent)
    sweep_stale(list(target.parent.glob(f".{glob.escape(target.name)}.*.tmp")))


def _publish(staging: Path, target: Path) -> None:
    """Rename a complete staged dataset onto ``target`` (absent or an empty directory)."""
    try:
        os.rename(staging, target)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise ValidationError(
                f"{target} is not empty (another export wrote it meanwhile)"
            ) from exc
        raise
    fsync_dir(target.parent)
