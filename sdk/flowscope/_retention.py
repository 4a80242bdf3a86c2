"""Retention: move old rows to Parquet archives, then delete them, in crash-safe batches.

Each batch runs in ONE database transaction:

1. ``SELECT ... FOR UPDATE`` the oldest ``batch_size`` rows past the cutoff;
2. write them to ``<archive>/<table>-<run>-<batch>.parquet`` with export's crash-safe
   writer (:func:`flowscope.export._atomic.write_parquet`: temporary file, row count read
   back and checked, fsync, ``os.replace``, directory fsync), in export's Arrow schema of
   the table (derived from the models: an archive reads like an export);
3. record the batch in the manifest with the transaction id, as ``pending``
   (the manifest is replaced atomically as well);
4. ``DELETE`` exactly those ids, checking the count;
5. ``COMMIT``; mark the batch ``done``.

A run interrupted anywhere resumes on the next call with the same archive
directory: a ``pending`` batch whose transaction committed
(``pg_xact_status``) is marked done; one that did not is discarded (its rows
are still in the table) and redone; files the manifest never recorded are
removed. So the archive plus the table always equals the data before, with no
row in both and none in neither.

One prune runs per archive directory at a time: an ``flock`` on the directory
itself (:func:`flowscope._files.directory_lock`), so no lock file is created or
left behind. ``dry_run`` only reads: it creates no directory, lock or file.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from . import _changes, _provenance
from ._boundary import Guarded
from ._durations import parse_duration
from ._files import directory_lock, private_dirs, sweep_stale, write_json
from .errors import (
    ConfigurationError,
    ConflictError,
    DatabaseError,
    SourceChangedError,
    ValidationError,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from ._session import Session

__all__ = ["PruneReport", "Retention"]

MANIFEST = "prune-manifest.json"
TABLES = ("executions",)


@dataclass(frozen=True)
class PruneReport:
    """What :meth:`Retention.prune` did (or, with ``dry_run``, would do)."""

    table: str
    cutoff: datetime
    """Rows created before this instant (UTC) were pruned."""
    rows: int
    """Rows archived and deleted by this call (would be, with ``dry_run``)."""
    batches: int
    files: list[Path] = field(default_factory=list)
    """Archive files written by this call."""
    resumed: bool = False
    """This call continued an interrupted run."""
    dry_run: bool = False
    seconds: float = 0.0


class Retention(Guarded):
    """``client.retention``: archive-then-delete of old rows.

    Example:
        >>> report = client.retention.prune("executions", older_than="90D",
        ...                                 archive_to=tmp_path / "failed",
        ...                                 statuses=("failed", "cancelled"), batch_size=50)
        >>> report.rows, report.batches, len(report.files)
        (100, 2, 2)
        >>> pd.read_parquet(report.files[0]).shape
        (50, 18)
        >>> client.executions.count(status="failed")
        0
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def prune(
        self,
        table: str = "executions",
        *,
        older_than: str | timedelta = "90D",
        archive_to: str | os.PathLike[str],
        batch_size: int = 10_000,
        dry_run: bool = False,
        statuses: tuple[str, ...] | None = None,
        vacuum: bool = True,
        _hook: Callable[[str, int], None] | None = None,
    ) -> PruneReport:
        """Archive rows older than ``older_than`` to Parquet, then delete them, batch by batch.

        Only finished executions are pruned by default (``statuses``: completed,
        failed, cancelled, timeout), chosen by ``created_at``. A batch is deleted
        only after its archive file is durably on disk with the right row count,
        in the same transaction that read the rows (locked ``FOR UPDATE``), so
        nothing is lost, and nothing is archived twice.

        An interrupted run (crash, kill, error) resumes when called again with the
        same ``archive_to``: it keeps the original cutoff, completes or discards
        the half-done batch, and goes on. The directory's ``prune-manifest.json``
        lists every batch file with its row count and cutoff.

        The deletions are audited like any other (one ``audit_log`` row per pruned
        row); those entries are retired with their month's audit partition
        (:meth:`Maintenance.maintain` with ``retention_months``).

        Args:
            table: the table to prune; ``"executions"``.
            older_than: age of the rows to prune, a fixed length in pandas' offset aliases:
                ``"90D"`` (days), ``"12h"``, ``"2W"``, ``"30min"``, ``"45s"``, or a
                ``timedelta``; calendar months are refused (write ``"90D"``), and the old
                ``"30M"``/``"12H"`` spellings are errors naming the new ones
                (:mod:`flowscope._durations`). Measured from the database's clock at the
                start of the run.
            archive_to: a directory for the Parquet files and the manifest (created).
            batch_size: rows per batch, file and transaction (1 to 1,000,000).
            dry_run: only count what would be pruned; write and delete nothing.
            statuses: the execution statuses that may be pruned (default: the terminal ones).
            vacuum: run ``VACUUM (ANALYZE)`` on the table after a prune that deleted rows.
                Autovacuum waits for 20% of the table to be dead; until then the deleted
                rows clear the visibility map, and index-only scans (status counts over a
                time range) turn into sequential scans (measured: 2 s → 8 s at 9M rows).

        Raises:
            ValidationError: bad arguments.
            PermissionDeniedError: the acting user lacks ``admin`` (a scoped client's
                login needs ``DELETE`` on executions too: PostgreSQL checks it, and RLS
                keeps the prune to its organization).
            ConflictError: another prune is running on this archive directory, or
                the unfinished run there was for different arguments.

        Example:
            >>> dry = client.retention.prune(older_than="90D", archive_to=tmp_path / "completed",
            ...                              statuses=("completed",), dry_run=True)
            >>> dry.rows, dry.batches, dry.files
            (1897, 1, [])
            >>> client.executions.count(status="completed")
            1897
        """
        from .models import EXECUTION_STATUSES, EXECUTIONS, TERMINAL_EXECUTION_STATUSES

        started = time.perf_counter()
        if table not in TABLES:
            raise ValidationError(f"prune supports the tables {', '.join(TABLES)}; got {table!r}")
        age = parse_duration(older_than, name="older_than")
        try:  # before anything is created: an age that reaches before the year 1
            datetime.now(UTC) - age - timedelta(days=2)
        except OverflowError:
            raise ValidationError(
                f"older_than {older_than!r} reaches before the year 1: give a shorter age"
            ) from None
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise ValidationError("batch_size must be an integer")
        if not 1 <= batch_size <= 1_000_000:
            raise ValidationError("batch_size must be between 1 and 1,000,000")
        wanted = tuple(TERMINAL_EXECUTION_STATUSES if statuses is None else statuses)
        bad = [s for s in wanted if s not in EXECUTION_STATUSES]
        if bad or not wanted:
            raise ValidationError(
                f"statuses must be among {EXECUTION_STATUSES}; got {bad or wanted}"
            )
        from ._session import ADMIN

        self._session.require(ADMIN)
        if not isinstance(archive_to, str | os.PathLike):
            raise ValidationError(f"archive_to must be a directory path, not {archive_to!r}")
        directory = Path(archive_to)
        if dry_run:  # count only: no directory, lock or file is created
            manifest = _Manifest.load(directory)
            run = manifest.unfinished()
            if run is not None and (run["table"] != table or run["statuses"] != list(wanted)):
                raise ConflictError(
                    f"{directory} holds an unfinished prune of {run['table']!r}"
                    f" (statuses {run['statuses']}): finish it with the same arguments first"
                )
            cutoff = datetime.fromisoformat(run["cutoff"]) if run is not None else self._cutoff(age)
            t = EXECUTIONS
            where = sa.and_(t.c.created_at < cutoff, t.c.status.in_(wanted))
            with self._session.read_transaction() as conn:
                count = conn.execute(
                    sa.select(sa.func.count()).select_from(t).where(where)
                ).scalar_one()
            return PruneReport(
                table=table,
                cutoff=cutoff,
                rows=int(count),
                batches=-(-int(count) // batch_size),
                resumed=run is not None,
                dry_run=True,
                seconds=time.perf_counter() - started,
            )
        try:
            private_dirs(directory)
        except OSError as exc:
            raise ConfigurationError(f"cannot create archive directory {directory}: {exc}") from exc

        with directory_lock(directory, "a prune"):
            sweep_stale(list(directory.glob(".*.tmp")))  # what a killed run was writing
            manifest = _Manifest.load(directory)
            run = manifest.unfinished()
            resumed = run is not None
            if run is not None:
                if run["table"] != table or run["statuses"] != list(wanted):
                    raise ConflictError(
                        f"{directory} holds an unfinished prune of {run['table']!r}"
                        f" (statuses {run['statuses']}): finish it with the same arguments first"
                    )
                cutoff = datetime.fromisoformat(run["cutoff"])
                self._check_source(directory, run)
                self._recover(manifest, run, directory)
            else:
                cutoff = self._cutoff(age)

            t = EXECUTIONS
            where = sa.and_(t.c.created_at < cutoff, t.c.status.in_(wanted))
            if run is None:
                run = manifest.new_run(table=table, cutoff=cutoff, statuses=wanted)
                with self._session.read_transaction() as conn:
                    run["source"] = _provenance.read_source(conn)
                manifest.save()
            files: list[Path] = []
            rows_total = 0
            while True:
                written = self._one_batch(manifest, run, directory, where, batch_size, _hook)
                if written is None:
                    break
                files.append(written[0])
                rows_total += written[1]
            run["finished_at"] = datetime.now(UTC).isoformat()
            manifest.save()
            if vacuum and rows_total:
                self._vacuum(table)
            return PruneReport(
                table=table,
                cutoff=cutoff,
                rows=rows_total,
                batches=len(files),
                files=files,
                resumed=resumed,
                seconds=time.perf_counter() - started,
            )

    def _check_source(self, directory: Path, run: dict[str, Any]) -> None:
        """An unfinished run is resumed on the database it archived from only: its pending
        batch is settled by that database's transaction ids."""
        with self._session.read_transaction() as conn:
            point = _changes.take_point(conn)
            source = _provenance.read_source(conn)
        recorded = run.get("source") or source  # a run of an older flowscope: trusted
        reason = _provenance.changed(recorded, None, source, point.snapshot)
        if reason is not None:
            raise SourceChangedError(
                f"{directory} holds an unfinished prune of another database ({reason}):"
                " finish it on that database, or archive into a new directory"
            )

    def _cutoff(self, age: timedelta) -> datetime:
        """The database's ``now()`` minus ``age``, in UTC."""
        with self._session.read_transaction() as conn:
            now = conn.execute(sa.text("SELECT now()")).scalar_one()
        try:
            return (now - age).astimezone(UTC)
        except OverflowError:
            raise ValidationError(
                f"older_than {age} reaches before the year 1: give a shorter age"
            ) from None

    # -- one batch -------------------------------------------------------------------
    def _one_batch(
        self,
        manifest: _Manifest,
        run: dict[str, Any],
        directory: Path,
        where: sa.ColumnElement[bool],
        batch_size: int,
        hook: Callable[[str, int], None] | None,
    ) -> tuple[Path, int] | None:
        from .export._atomic import write_parquet
        from .models import EXECUTIONS as t

        number = len(run["batches"]) + 1
        name = f"{run['table']}-{run['id']}-{number:06d}.parquet"
        path = directory / name
        with self._session.transaction() as conn:
            archive = _archive_batch(self._session, conn, run["table"], where, batch_size)
            if archive.num_rows == 0:
                return None
            origin = _provenance.record(
                self._session,
                run.get("source") or _provenance.read_source(conn),
                as_of=conn.execute(sa.select(sa.func.now())).scalar_one(),
                table=run["table"],
                filter={"created_before": run["cutoff"], "status": run["statuses"]},
            )
            archive = archive.replace_schema_metadata(
                _provenance.with_provenance(archive.schema, origin).metadata
            )
            write_parquet(archive, path)
            rows = archive.column("id").to_pylist()
            if hook:
                hook("archived", number)
            xid = conn.execute(sa.text("SELECT pg_current_xact_id()::text")).scalar_one()
            batch = {"file": name, "rows": len(rows), "xid": xid, "state": "pending"}
            run["batches"].append(batch)
            manifest.save()
            doomed = sa.bindparam("ids", rows, type_=postgresql.ARRAY(sa.String))
            deleted = conn.execute(sa.delete(t).where(t.c.id == sa.any_(doomed))).rowcount
            if deleted != len(rows):
                raise DatabaseError(
                    f"prune: deleted {deleted} rows but archived {len(rows)}; rolled back"
                )
            if hook:
                hook("deleting", number)
        # committed: the rows are gone from the table and in the file
        if hook:
            hook("committed", number)
        batch["state"] = "done"
        manifest.save()
        return path, len(rows)

    def _recover(self, manifest: _Manifest, run: dict[str, Any], directory: Path) -> None:
        """Settle the batches an interrupted run left ``pending``; remove stray files."""
        kept: list[dict[str, Any]] = []
        for batch in run["batches"]:
            if batch["state"] == "pending":
                status = self._xact_status(batch["xid"])
                deadline = time.monotonic() + 10
                while status == "in progress" and time.monotonic() < deadline:
                    # a killed client's transaction ends when the server notices the
                    # closed connection; give it a moment
                    time.sleep(0.1)
                    status = self._xact_status(batch["xid"])
                if status == "in progress":
                    raise ConflictError(
                        f"a prune transaction ({batch['xid']}) is still running for {directory}"
                    )
                if status == "committed" or (
                    status is None and not self._rows_present(directory / batch["file"])
                ):
                    batch["state"] = "done"
                else:  # rolled back: the rows are still in the table; redo them
                    (directory / batch["file"]).unlink(missing_ok=True)
                    continue
            kept.append(batch)
        run["batches"] = kept
        known = {b["file"] for b in kept}
        for stray in directory.glob(f"{run['table']}-{run['id']}-*.parquet*"):
            if stray.name not in known:
                stray.unlink()
        manifest.save()

    def _vacuum(self, table: str) -> None:
        from . import _db

        engine = self._session.engine.execution_options(isolation_level="AUTOCOMMIT")
        with _db.translating(self._session.url), engine.connect() as conn:
            conn.execute(sa.text(f"VACUUM (ANALYZE) {TABLES[TABLES.index(table)]}"))

    def _xact_status(self, xid: str) -> str | None:
        with self._session.transaction() as conn:
            try:
                return conn.execute(
                    sa.text("SELECT pg_xact_status(CAST(:x AS xid8))"), {"x": xid}
                ).scalar_one()
            except DatabaseError:  # pragma: no cover - too old to know
                return None

    def _rows_present(self, path: Path) -> bool:
        import pyarrow.parquet as pq

        from .models import EXECUTIONS as t

        if not path.exists():
            return True  # never written durably: the delete cannot have happened
        ids = pq.read_table(path, columns=["id"]).column("id").to_pylist()
        with self._session.transaction() as conn:
            found = conn.execute(
                sa.select(sa.func.count()).select_from(t).where(t.c.id.in_(ids))
            ).scalar_one()
        return bool(found)


# -- archive files -----------------------------------------------------------------------


def _archive_batch(
    session: Session, conn: sa.Connection, table: str, where: Any, batch_size: int
) -> pa.Table:
    """The oldest ``batch_size`` rows of ``table`` matching ``where``, locked ``FOR UPDATE``
    in ``conn``'s transaction, as an Arrow table in export's schema of the table (derived
    from the models), read by export's binary COPY decoder: an archive is an export."""
    import dataclasses

    import pyarrow as pa

    from .export import TABLES as EXPORTABLE
    from .export import _plan, _stream_plan

    plan = _plan(table, extra_where=where)
    c = EXPORTABLE[table].c
    select = plan.select.order_by(c.created_at, c.id).limit(batch_size).with_for_update()
    plan = dataclasses.replace(plan, select=select)
    batches = list(_stream_plan(session, plan, batch_size=None, conn=conn))
    return pa.Table.from_batches(batches, schema=plan.schema)


# -- manifest ----------------------------------------------------------------------------


@dataclass
class _Manifest:
    directory: Path
    data: dict[str, Any]

    @classmethod
    def load(cls, directory: Path) -> _Manifest:
        path = directory / MANIFEST
        if not path.exists():
            return cls(directory, {"version": 1, "runs": []})
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise ConfigurationError(f"{path} is not a prune manifest: {exc}") from exc
        return cls(directory, data)

    def unfinished(self) -> dict[str, Any] | None:
        for run in self.data["runs"]:
            if run.get("finished_at") is None:
                return run
        return None

    def new_run(self, *, table: str, cutoff: datetime, statuses: tuple[str, ...]) -> dict[str, Any]:
        run = {
            "id": datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3),
            "table": table,
            "cutoff": cutoff.isoformat(),
            "statuses": list(statuses),
            "started_at": datetime.now(UTC).isoformat(),
            "finished_at": None,
            "batches": [],
        }
        self.data["runs"].append(run)
        return run

    def save(self) -> None:
        write_json(self.directory / MANIFEST, self.data)
