"""A local columnar mirror: the rows a client may read, as Parquet, queried by DuckDB.

``mirror = client.mirror()`` keeps a copy of ``workflows`` and ``executions`` (every
column, soft-deleted rows included, exactly what the client's login may read) under the
client's data directory, one directory per database and identity. ``mirror.sync()``
brings it up to date through the change feed of :mod:`flowscope._changes` (inserts,
updates, deletes, transactions that commit late); ``mirror.analytics`` has every method
of ``client.analytics``, answered by DuckDB from the same query builders
(:mod:`flowscope.analytics._duckdb`); ``mirror.duckdb()`` is a DuckDB connection with
views ``executions`` and ``workflows`` for your own SQL.

Storage (``<data dir>/mirrors/<database>/<identity>/``, directories ``0700``, files ``0600``)::

    mirror.json                         the state: identity, files, horizon, as-of time
    executions/base-000001-0.parquet    a full copy, as of a sync
    executions/delta-000007.parquet     the newest version of every row changed since
    executions/deleted-000007.parquet   ids deleted since the base
    workflows/...

A table is ``base`` minus the ids of ``delta`` and ``deleted``, plus ``delta``. A sync
writes new, uniquely named files (temp name, fsync, rename), then replaces
``mirror.json`` atomically: a sync killed at any point leaves the previous state, and the
next sync removes the files it does not list. When the delta grows past
:data:`COMPACT_MIN_ROWS` rows (and 5 % of the base) a sync rewrites the base.

Example:
    >>> mirror = client.mirror()                                   # doctest: +SKIP
    >>> mirror.sync()                                              # doctest: +SKIP
    SyncReport(full=True, added=1000000, changed=0, removed=0, seconds=3.1, as_of=...)
    >>> mirror.analytics.durations(by="workflow")                  # doctest: +SKIP
    >>> mirror.duckdb().sql("SELECT status, count(*) FROM executions GROUP BY 1")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from . import _changes
from ._files import directory_lock, fsync_dir
from .analytics import Analytics
from .errors import ConfigurationError, FlowscopeError, PermissionDeniedError, ValidationError
from .filters import ExecutionFilter, WorkflowFilter

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    import pyarrow as pa

    from ._session import Session
    from .analytics._base import Query

__all__ = ["COMPACT_MIN_ROWS", "Mirror", "MirrorAnalytics", "SyncReport", "default_path"]

_FORMAT = "flowscope-mirror/1"
_STATE = "mirror.json"
#: The tables a mirror holds, in the order a sync reads them.
MIRRORED = ("workflows", "executions")
#: A sync rewrites a table's base when its delta + deletions exceed this many rows and 5 %
#: of the base (an incremental sync's cost follows the delta it rewrites).
COMPACT_MIN_ROWS = 100_000
_ROW_GROUP = 122_880  # DuckDB's own row group size: one thread per group
_FILTER = {
    "workflows": WorkflowFilter(include_deleted=True),
    "executions": ExecutionFilter(include_deleted_workflows=True),
}
_FILE = re.compile(r"(base|delta|deleted)-\d{6}(-\d+)?\.parquet")


@dataclasses.dataclass(frozen=True)
class SyncReport:
    """What a sync did: rows ``added``, ``changed``, ``removed`` (all tables), ``rows`` per
    table after it, ``seconds``, ``as_of`` (the database time the mirror now reflects)
    and whether it was a ``full`` copy."""

    full: bool
    added: int
    changed: int
    removed: int
    rows: dict[str, int]
    seconds: float
    as_of: datetime

    def __repr__(self) -> str:
        return (
            f"SyncReport(full={self.full}, added={self.added}, changed={self.changed},"
            f" removed={self.removed}, seconds={self.seconds:.2f}, as_of={self.as_of.isoformat()})"
        )


def _hash(*parts: str | None) -> str:
    return hashlib.sha256("\x1f".join(p or "" for p in parts).encode()).hexdigest()[:16]


def _database_key(url: str) -> str:
    """Host, port, socket directory and database of a URL (never the user or password)."""
    u = sa.make_url(url)
    return _hash(u.host, str(u.port or ""), str(u.query.get("host", "")), u.database)


def _identity(session: Session) -> dict[str, str | None]:
    return {
        "database": _database_key(session.url),
        "organization_id": session.organization_id,
        "user_id": session.user_id if session.is_tenant else None,
    }


def default_path(session: Session, data_dir: Path) -> Path:
    """``<data_dir>/mirrors/<database>/<identity>``: one mirror per database and identity.

    Example:
        >>> from flowscope._session import Session
        >>> s = Session(None, url="postgresql://me@db:5432/orchestrator")
        >>> default_path(s, Path("/data")).parent.parent
        PosixPath('/data/mirrors')
    """
    who = _identity(session)
    name = (
        "admin" if who["organization_id"] is None else _hash(who["organization_id"], who["user_id"])
    )
    return data_dir / "mirrors" / str(who["database"]) / name


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


class Mirror:
    """A local copy of the rows a client may read (see the module docstring).

    Create one with :meth:`flowscope.Client.mirror`. Opening a mirror directory that
    belongs to another database or identity raises :class:`PermissionDeniedError`.

    Example:
        >>> mirror = client.mirror()                               # doctest: +SKIP
        >>> report = mirror.sync(progress=False)                   # doctest: +SKIP
        >>> mirror.analytics.status_breakdown(by="workflow")       # doctest: +SKIP
    """

    def __init__(self, session: Session, path: Path) -> None:
        self._session = session
        self.path = Path(path)
        self._identity = _identity(session)
        self._con: Any = None
        self._con_sequence: int | None = None
        try:
            _private_dir(self.path)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the mirror directory {self.path}: {exc}"
            ) from exc
        self._check(self._state())

    def __repr__(self) -> str:
        state = self._state()
        when = state["as_of"] if state else "never synced"
        return f"<flowscope.Mirror {self.path} as of {when}>"

    # -- state -----------------------------------------------------------------------
    def _state(self) -> dict[str, Any] | None:
        path = self.path / _STATE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ValidationError(f"cannot read the mirror state {path}: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValidationError(f"{path} is not a flowscope mirror")
        return data

    def _check(self, state: dict[str, Any] | None) -> None:
        if state is not None and state.get("identity") != self._identity:
            raise PermissionDeniedError(
                f"the mirror in {self.path} belongs to another database or identity"
                f" ({_describe(state.get('identity'))}); this client is"
                f" {_describe(self._identity)}"
            )

    def _save(self, state: dict[str, Any]) -> None:
        path = self.path / _STATE
        temp = self.path / f".{_STATE}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(state, handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
            _step("before-state")
            os.replace(temp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        fsync_dir(self.path)

    @property
    def as_of(self) -> datetime | None:
        """The database time the mirror reflects (None: never synced)."""
        state = self._state()
        return datetime.fromisoformat(state["as_of"]) if state else None

    # -- sync ------------------------------------------------------------------------
    def sync(self, *, full: bool = False, progress: bool = True) -> SyncReport:
        """Bring the mirror up to date; returns what changed.

        The first sync (or ``full=True``) copies both tables; later ones read only the rows
        the audit log names as changed since the previous sync's snapshot (see
        :mod:`flowscope._changes`). Everything is read in one REPEATABLE READ snapshot, as
        this client's login (a scoped client's mirror holds its organization's rows only).
        One sync at a time per mirror (another gets :class:`ConflictError`); a sync killed
        at any point leaves the mirror as it was.

        Example:
            >>> client.mirror().sync(progress=False)                 # doctest: +SKIP
            SyncReport(full=False, added=120, changed=37, removed=2, seconds=0.08, as_of=...)
        """
        from ._session import READ

        started = time.perf_counter()
        self._session.require(READ)
        with directory_lock(self.path, "a mirror sync"):
            state = self._state()
            self._check(state)
            self._sweep(state)
            full = full or state is None
            with _changes.snapshot(self._session) as conn:
                point = _changes.take_point(conn)
                sequence = (state["sequence"] if state else 0) + 1
                tables: dict[str, Any] = {}
                added = changed = removed = 0
                for name in MIRRORED:
                    if full or state is None:
                        tables[name], n = self._copy(conn, name, sequence, progress)
                        added += n
                    else:
                        old = state["tables"][name]
                        tables[name], counts = self._apply(
                            conn, name, old, state["horizon"], state.get("snapshot"), sequence
                        )
                        added, changed, removed = (
                            added + counts[0],
                            changed + counts[1],
                            removed + counts[2],
                        )
            _step("files-ready")
            previous = _files(state) if state else []
            new_state = {
                "format": _FORMAT,
                "identity": self._identity,
                "sequence": sequence,
                "horizon": point.horizon,
                "snapshot": point.snapshot,
                "as_of": point.as_of.astimezone(UTC).isoformat(),
                "synced_at": datetime.now(UTC).isoformat(),
                "tables": tables,
                "previous_files": previous,
            }
            self._save(new_state)
            _step("after-state")
            self._sweep(new_state)
        return SyncReport(
            full=full,
            added=added,
            changed=changed,
            removed=removed,
            rows={n: int(t["rows"]) for n, t in tables.items()},
            seconds=time.perf_counter() - started,
            as_of=point.as_of,
        )

    def _sweep(self, state: dict[str, Any] | None) -> None:
        """Remove files no state lists (a killed sync's) and temp files; we hold the lock.
        The previous state's files stay one more sync, for connections still reading them."""
        keep = set(_files(state)) | set(state.get("previous_files", [])) if state else set()
        for name in MIRRORED:
            folder = self.path / name
            if not folder.is_dir():
                continue
            for item in folder.iterdir():
                rel = f"{name}/{item.name}"
                if (
                    item.name.startswith(".")
                    and item.name.endswith(".tmp")
                    or _FILE.fullmatch(item.name)
                    and rel not in keep
                ):
                    item.unlink(missing_ok=True)
        for temp in self.path.glob(f".{_STATE}.*.tmp"):
            temp.unlink(missing_ok=True)

    def _plan(self, name: str, where: Any = None) -> Any:
        from .export import _plan

        return _plan(name, _FILTER[name], extra_where=where)

    def _copy(
        self, conn: sa.Connection, name: str, sequence: int, progress: bool
    ) -> tuple[dict[str, Any], int]:
        """A full copy of ``name`` into a new base file."""
        from ._display import progress_bar
        from .export import _estimate_rows, _stream_plan

        plan = self._plan(name)
        rel = f"{name}/base-{sequence:06d}-0.parquet"
        total = _estimate_rows(self._session, name) if progress else None
        bar = progress_bar(progress, desc=f"mirror {name}", total=total, unit=" rows")
        try:
            with _ParquetOut(self.path / rel, plan.schema) as out:
                shared = _changes.export_snapshot(conn)
                stream = _stream_plan(
                    self._session, plan, batch_size=None, conn=conn, snapshot=shared
                )
                for batch in stream:
                    out.write(batch)
                    bar.update(batch.num_rows)
                    _step("batch")
                rows = out.rows
        finally:
            bar.close()
        entry = {"base": [rel], "delta": None, "deleted": None, "rows": rows, "base_rows": rows}
        entry.update(delta_rows=0, deleted_rows=0)
        return entry, rows

    def _apply(
        self,
        conn: sa.Connection,
        name: str,
        old: dict[str, Any],
        horizon: int,
        seen: str | None,
        sequence: int,
    ) -> tuple[dict[str, Any], tuple[int, int, int]]:
        """Fold the changes since ``horizon`` into ``name``'s delta (or a new base)."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        from .export import _stream_plan

        plan = self._plan(name, _changes.changed_rows(name, horizon, seen))
        batches = list(_stream_plan(self._session, plan, batch_size=None, conn=conn))
        fresh = pa.Table.from_batches(batches, schema=plan.schema)
        gone = [r[0] for r in conn.execute(_changes.deleted_ids(name, horizon, seen))]
        fresh_ids = fresh.column("id")
        touched = pa.concat_arrays(
            [fresh_ids.combine_chunks().cast(pa.string()), pa.array(gone, pa.string())]
        )
        if len(touched) == 0:
            return dict(old), (0, 0, 0)
        present = self._present(old, touched)
        added = sum(1 for i in fresh_ids.to_pylist() if i not in present)
        changed = len(fresh) - added
        removed = sum(1 for i in gone if i in present)
        # the new delta: the old one without the touched ids, plus the fresh versions
        parts = [fresh]
        if old["delta"]:
            prev = pq.read_table(self.path / old["delta"], schema=plan.schema)
            parts.insert(0, prev.filter(pc.invert(pc.is_in(prev.column("id"), touched))))
        delta = pa.concat_tables(parts)
        deleted_ids = set(gone)
        if old["deleted"]:
            deleted_ids |= set(pq.read_table(self.path / old["deleted"]).column("id").to_pylist())
        deleted_ids -= set(fresh_ids.to_pylist())
        rows = int(old["rows"]) + added - removed
        entry = {"base": old["base"], "base_rows": old["base_rows"], "rows": rows}
        if len(delta) + len(deleted_ids) > max(COMPACT_MIN_ROWS, int(old["base_rows"]) // 20):
            rel = f"{name}/base-{sequence:06d}-0.parquet"
            excluded = pa.concat_arrays(
                [delta.column("id").combine_chunks(), pa.array(sorted(deleted_ids), pa.string())]
            )
            with _ParquetOut(self.path / rel, plan.schema) as out:
                for base in old["base"]:
                    for batch in pq.ParquetFile(self.path / base).iter_batches(_ROW_GROUP):
                        keep = pc.invert(pc.is_in(batch.column("id"), excluded))
                        out.write(batch.filter(keep))
                for batch in delta.to_batches(_ROW_GROUP):
                    out.write(batch)
                written = out.rows
            entry.update(base=[rel], base_rows=written, delta=None, deleted=None, rows=written)
            entry.update(delta_rows=0, deleted_rows=0)
            return entry, (added, changed, removed)
        delta_rel = f"{name}/delta-{sequence:06d}.parquet"
        with _ParquetOut(self.path / delta_rel, plan.schema) as out:
            for batch in delta.to_batches(_ROW_GROUP):
                out.write(batch)
        deleted_rel = None
        if deleted_ids:
            deleted_rel = f"{name}/deleted-{sequence:06d}.parquet"
            ids = pa.table({"id": pa.array(sorted(deleted_ids), pa.string())})
            with _ParquetOut(self.path / deleted_rel, ids.schema) as out:
                for batch in ids.to_batches():
                    out.write(batch)
        entry.update(delta=delta_rel, deleted=deleted_rel)
        entry.update(delta_rows=len(delta), deleted_rows=len(deleted_ids))
        return entry, (added, changed, removed)

    def _present(self, entry: dict[str, Any], ids: pa.Array) -> set[str]:
        """Which of ``ids`` the mirror holds now (before this sync)."""
        import duckdb
        import pyarrow as pa

        con = duckdb.connect()
        try:
            rel = _table_relation(con, self.path, entry)
            wanted = con.from_arrow(pa.table({"id": ids}))
            found = rel.select("id").join(wanted, "id", how="semi")
            return {r[0] for r in found.fetchall()}
        finally:
            con.close()

    # -- reading ---------------------------------------------------------------------
    def duckdb(self) -> duckdb.DuckDBPyConnection:
        """A new DuckDB connection with views ``executions`` and ``workflows`` over the mirror.

        Tenancy is applied by construction: the files hold only the rows this client's
        login may read. The views show the state of the last sync when the connection was
        made (call again after a sync; the files of the state before stay until the next
        sync). Timestamps are ``TIMESTAMP WITH TIME ZONE`` and the session's TimeZone is UTC.

        Raises:
            ValidationError: the mirror was never synced.

        Example:
            >>> con = client.mirror().duckdb()                                  # doctest: +SKIP
            >>> con.sql("SELECT owner, count(*) FROM executions GROUP BY owner").df()  # doctest: +SKIP
        """
        import duckdb

        state = self._state()
        self._check(state)
        if state is None:
            raise ValidationError(f"the mirror in {self.path} was never synced: call sync() first")
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        for name in MIRRORED:
            _table_relation(con, self.path, state["tables"][name]).create_view(name)
        return con

    def _connection(self) -> tuple[Any, dict[str, Any]]:
        """The mirror's own DuckDB connection, rebuilt after a sync."""
        state = self._state()
        self._check(state)
        if state is None:
            raise ValidationError(f"the mirror in {self.path} was never synced: call sync() first")
        if self._con is None or self._con_sequence != state["sequence"]:
            if self._con is not None:
                self._con.close()
            self._con = self.duckdb()
            self._con_sequence = state["sequence"]
        return self._con, state

    @property
    def analytics(self) -> MirrorAnalytics:
        """Every method of ``client.analytics``, answered by DuckDB over the mirror.

        Example:
            >>> client.mirror().analytics.durations(by="workflow")   # doctest: +SKIP
        """
        return MirrorAnalytics(self._session, self)

    def close(self) -> None:
        """Close the mirror's DuckDB connection (files stay)."""
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> Mirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MirrorAnalytics(Analytics):
    """:class:`flowscope.analytics.Analytics` answered by DuckDB over a :class:`Mirror`.

    The same builders make the same frames (columns, dtypes, row order); only the engine
    differs. ``frame.attrs`` holds ``engine`` (``"duckdb"``), ``mirror_as_of`` (the
    database time the mirror reflects) and ``mirror_age_seconds``. ``use_rollups`` is
    accepted and ignored (the mirror is exact and fast); :meth:`refresh_rollups` syncs
    the mirror and :meth:`rollups_refreshed_at` is its as-of time.

    Example:
        >>> mirror.analytics.tags().head()        # doctest: +SKIP
    """

    def __init__(self, session: Session, mirror: Mirror) -> None:
        super().__init__(session)
        self._mirror = mirror

    def __repr__(self) -> str:
        return f"<flowscope.MirrorAnalytics of {self._mirror.path}>"

    def _run(self, query: Query) -> pd.DataFrame:
        import duckdb

        from .analytics import _base
        from .analytics._duckdb import compile_for_duckdb

        con, state = self._mirror._connection()
        sql, params = compile_for_duckdb(query.select)
        try:
            result = con.execute(sql, params)
            names = [d[0] for d in result.description]
            rows = result.fetchall()
        except duckdb.Error as exc:
            raise FlowscopeError(f"the mirror's DuckDB query failed: {exc}") from exc
        frame = _base.finish(query, names, rows)
        as_of = datetime.fromisoformat(state["as_of"])
        frame.attrs.update(
            engine="duckdb",
            mirror_as_of=as_of,
            mirror_age_seconds=(datetime.now(UTC) - as_of).total_seconds(),
        )
        return frame

    def _rollups(self, use_rollups: bool | None) -> bool:
        return False

    def refresh_rollups(self, *, concurrently: bool = True) -> datetime:
        """Sync the mirror (its answers are exact; there are no rollups); returns its as-of time.

        Example:
            >>> mirror.analytics.refresh_rollups()   # doctest: +SKIP
        """
        return self._mirror.sync(progress=False).as_of

    def rollups_refreshed_at(self) -> datetime | None:
        """The database time the mirror reflects (None: never synced).

        Example:
            >>> mirror.analytics.rollups_refreshed_at()   # doctest: +SKIP
        """
        return self._mirror.as_of


# -- helpers ---------------------------------------------------------------------------
def _describe(identity: Any) -> str:
    if not isinstance(identity, dict):
        return "unknown"
    org = identity.get("organization_id")
    return f"organization {org!r}" if org else "the admin login"


def _files(state: dict[str, Any] | None) -> list[str]:
    if not state:
        return []
    out: list[str] = []
    for entry in state["tables"].values():
        out += list(entry["base"])
        out += [f for f in (entry.get("delta"), entry.get("deleted")) if f]
    return out


def _table_relation(con: Any, root: Path, entry: dict[str, Any]) -> Any:
    """``base`` minus the ids of ``delta`` and ``deleted``, plus ``delta``."""
    base = con.read_parquet([str(root / f) for f in entry["base"]])
    excluded = []
    delta = None
    if entry.get("delta"):
        delta = con.read_parquet(str(root / entry["delta"]))
        excluded.append(delta.select("id"))
    if entry.get("deleted"):
        excluded.append(con.read_parquet(str(root / entry["deleted"])).select("id"))
    if not excluded:
        return base
    ids = excluded[0] if len(excluded) == 1 else excluded[0].union(excluded[1])
    rel = base.join(ids, "id", how="anti")
    return rel.union(delta) if entry.get("delta") else rel


class _ParquetOut:
    """A Parquet file written as a hidden temp file, fsynced, made ``0600`` and renamed."""

    def __init__(self, final: Path, schema: pa.Schema) -> None:
        import pyarrow.parquet as pq

        _private_dir(final.parent)
        self.final = final
        self.temp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
        fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        self._writer = pq.ParquetWriter(self.temp, schema, compression="zstd")
        self._buffer: list[Any] = []
        self._buffered = 0
        self.rows = 0

    def write(self, batch: Any) -> None:
        if batch.num_rows == 0:
            return
        self._buffer.append(batch)
        self._buffered += batch.num_rows
        self.rows += batch.num_rows
        if self._buffered >= _ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._buffer:
            self._writer.write_table(pa.Table.from_batches(self._buffer), row_group_size=_ROW_GROUP)
            self._buffer, self._buffered = [], 0

    def __enter__(self) -> _ParquetOut:
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        try:
            if kind is None:
                self._flush()
            self._writer.close()
            if kind is None:
                with open(self.temp, "rb") as handle:
                    os.fsync(handle.fileno())
                os.replace(self.temp, self.final)
                fsync_dir(self.final.parent)
        finally:
            self.temp.unlink(missing_ok=True)


def _step(name: str) -> None:
    """A named point of a sync, for the crash tests (they kill the process here); no-op."""
