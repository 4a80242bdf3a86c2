"""The :class:`Lake`: Iceberg tables ``executions`` and ``workflows`` kept in step with
the rows a client may read, one atomic commit per table and sync."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _changes, _provenance
from ..errors import (
    ConfigurationError,
    ConflictError,
    PermissionDeniedError,
    SourceChangedError,
    ValidationError,
)
from ..mirror._store import MIRRORED, SyncReport, identity

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from .._session import Session

#: Snapshot summary keys (Iceberg summaries are string to string).
KEY = "flowscope."
CATALOG_FILE = "catalog.db"


def step(name: str) -> None:
    """A named point of a sync, for the crash tests (they replace it to fail there); a no-op."""


def open_catalog(
    warehouse: str | Path | None, catalog: str | None, properties: Mapping[str, str] | None
) -> Any:
    """The user's pyiceberg catalog: ``catalog`` by name and/or ``properties`` through
    :func:`pyiceberg.catalog.load_catalog` (its ``.pyiceberg.yaml`` and ``PYICEBERG_*``
    variables apply); neither: a SQL catalog on ``<warehouse>/catalog.db`` (SQLite)."""
    from pyiceberg.catalog import load_catalog
    from pyiceberg.exceptions import NoSuchPropertyException

    props = dict(properties or {})
    if catalog is None and not props:
        if warehouse is None:
            raise ConfigurationError("a lake needs a warehouse path or a pyiceberg catalog")
        root = Path(warehouse).expanduser().resolve()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"cannot create the warehouse {root}: {exc}") from exc
        props = {"type": "sql", "uri": f"sqlite:///{root / CATALOG_FILE}"}
        props["warehouse"] = root.as_uri()
    elif warehouse is not None and "warehouse" not in props:
        path = str(warehouse)
        props["warehouse"] = path if "://" in path else Path(path).resolve().as_uri()
    try:
        return load_catalog(catalog or "flowscope", **props)
    except (NoSuchPropertyException, ValueError) as exc:
        raise ConfigurationError(f"cannot load the pyiceberg catalog {catalog!r}: {exc}") from exc


class Lake:
    """Apache Iceberg tables ``executions`` and ``workflows`` of the rows a client may read.

    Create one with :meth:`flowscope.Client.lake`. Any Iceberg reader (pyiceberg, polars,
    DuckDB, Spark, Trino) reads the tables from the catalog without flowscope.

    Example:
        >>> lake = client.lake(tmp_path / "lake")
        >>> report = lake.sync(progress=False)
        >>> lake.to_arrow("executions").num_rows
        2000
    """

    def __init__(
        self,
        session: Session,
        warehouse: str | Path | None = None,
        *,
        catalog: str | None = None,
        properties: Mapping[str, str] | None = None,
        namespace: str = "flowscope",
    ) -> None:
        self._session = session
        self.namespace = namespace
        self.catalog = open_catalog(warehouse, catalog, properties)
        self._identity = identity(session)

    def __repr__(self) -> str:
        when = self.as_of
        return f"<flowscope.Lake {self.namespace} as of {when.isoformat() if when else 'never'}>"

    # -- state ----------------------------------------------------------------------
    def table(self, name: str) -> Any:
        """The pyiceberg ``Table`` ``name`` (``executions`` or ``workflows``), or None."""
        from pyiceberg.exceptions import NoSuchTableError

        if name not in MIRRORED:
            raise ValidationError(f"a lake holds {', '.join(MIRRORED)}, not {name!r}")
        try:
            return self.catalog.load_table((self.namespace, name))
        except NoSuchTableError:
            return None

    def _state(self, table: Any) -> dict[str, Any] | None:
        snapshot = table.current_snapshot() if table is not None else None
        state = _summary(snapshot) if snapshot is not None else None
        if state is not None and state.get("identity") != self._identity:
            raise PermissionDeniedError(
                f"the lake table {table.name()} was synced by another database or identity"
            )
        return state

    @property
    def as_of(self) -> datetime | None:
        """The database time of the last sync (of both tables; None: never synced)."""
        times = [s["as_of"] for s in (self._state(self.table(n)) for n in MIRRORED) if s]
        return min(datetime.fromisoformat(t) for t in times) if len(times) == 2 else None

    # -- sync -------------------------------------------------------------------------
    def sync(self, *, full: bool = False, progress: bool = True) -> SyncReport:
        """Bring both tables up to date; returns what changed.

        The first sync (or ``full=True``) loads each table; later ones read the rows the
        change feed names as changed since that table's last sync (:mod:`flowscope._changes`)
        and, for a scoped client, the rows whose visibility changed; each table gets one
        atomic commit (a pyiceberg transaction: the changed and deleted ids deleted, their
        new versions appended), so a reader sees the previous sync or this one. The last
        snapshot of a commit records, in its summary, the source database, the change
        feed's horizon and snapshot and the as-of time (``flowscope.*`` keys).

        Raises:
            SourceChangedError: the lake was synced from another database (dropped and
                created again, restored, another cluster): a lake is shared by its
                readers, so it is never silently replaced; ``full=True`` loads it afresh.

        Example:
            >>> lake = client.lake(tmp_path / "lake")
            >>> first = lake.sync(progress=False)
            >>> again = lake.sync(progress=False)   # nothing changed: empty commits
            >>> again.full, again.added, again.changed, again.removed
            (False, 0, 0, 0)
        """
        from .._session import READ

        started = time.perf_counter()
        self._session.require(READ)
        tables = {name: self.table(name) for name in MIRRORED}
        states = {name: self._state(tables[name]) for name in MIRRORED}
        counts = [0, 0, 0]
        rows: dict[str, int] = {}
        loaded = False
        with _changes.snapshot(self._session) as conn, _committing(self.namespace):
            point = _changes.take_point(conn)
            source = _provenance.read_source(conn)
            for name, state in states.items():
                if state is not None and not full:
                    reason = _provenance.changed(
                        state["source"], state["snapshot"], source, point.snapshot
                    )
                    if reason is not None:
                        raise SourceChangedError(
                            f"the lake table {self.namespace}.{name} was synced from another"
                            f" database: {reason}; sync(full=True) loads it afresh"
                        )
            summary = {
                "identity": self._identity,
                "source": source,
                "horizon": point.horizon,
                "snapshot": point.snapshot,
                "as_of": point.as_of.astimezone(UTC).isoformat(),
            }
            properties = {KEY + k: json.dumps(v) for k, v in summary.items()}
            # executions first: a sync killed between the commits leaves workflows behind,
            # so the next one re-reads the executions of workflows that appeared (harmless)
            for name in ("executions", "workflows"):
                from . import _sync

                state = states[name]
                if full or state is None:
                    loaded = True
                    n = _sync.load(self, conn, name, tables[name], properties, progress)
                    counts[0] += n
                else:
                    added, changed, removed = _sync.apply(
                        self, conn, name, tables[name], state, properties
                    )
                    counts[0] += added
                    counts[1] += changed
                    counts[2] += removed
                rows[name] = _row_count(self.table(name))
        return SyncReport(
            full=loaded,
            added=counts[0],
            changed=counts[1],
            removed=counts[2],
            rows=rows,
            seconds=time.perf_counter() - started,
            as_of=point.as_of,
        )

    # -- reading ----------------------------------------------------------------------
    def snapshot_id(self, name: str, *, as_of: datetime | None = None) -> int:
        """The Iceberg snapshot id of the last sync of ``name`` whose as-of time is at
        or before ``as_of`` (None: the current one).

        Raises:
            ValidationError: never synced, or no sync that old.
        """
        table = self.table(name)
        state = self._state(table)
        if state is None:
            raise ValidationError(f"the lake table {name} was never synced: call sync() first")
        if as_of is None:
            return int(table.current_snapshot().snapshot_id)
        if as_of.tzinfo is None:
            raise ValidationError("as_of must be tz-aware (for example datetime.now(UTC))")
        best: tuple[datetime, int] | None = None
        for snap in table.snapshots():
            recorded = _summary(snap)
            if recorded is None or recorded.get("identity") != self._identity:
                continue
            when = datetime.fromisoformat(recorded["as_of"])
            if when <= as_of and (best is None or (when, snap.sequence_number) >= best):
                best = (when, snap.snapshot_id)
        if best is None:
            raise ValidationError(f"the lake table {name} has no sync as of {as_of.isoformat()}")
        return int(best[1])

    def to_arrow(self, name: str, *, as_of: datetime | None = None) -> pa.Table:
        """The table ``name`` as of the last sync (or the last one at or before ``as_of``).

        Example:
            >>> from datetime import UTC, datetime
            >>> lake = client.lake(tmp_path / "lake")
            >>> first = lake.sync(progress=False)
            >>> lake.to_arrow("workflows", as_of=datetime.now(UTC)).num_rows
            200
        """
        snapshot_id = self.snapshot_id(name, as_of=as_of)
        return self.table(name).scan(snapshot_id=snapshot_id).to_arrow()

    def to_pandas(self, name: str, *, as_of: datetime | None = None) -> pd.DataFrame:
        """:meth:`to_arrow` as a DataFrame (tz-aware timestamps, nullable dtypes).

        Example:
            >>> lake = client.lake(tmp_path / "lake")
            >>> first = lake.sync(progress=False)
            >>> str(lake.to_pandas("executions")["created_at"].dtype)
            'datetime64[us, UTC]'
        """
        from ..export._read import to_pandas

        return to_pandas(self.to_arrow(name, as_of=as_of))


@contextlib.contextmanager
def _committing(namespace: str) -> Iterator[None]:
    """Translate a lost commit race (another sync, or another writer, committed to the
    table since this sync read it: pyiceberg's optimistic concurrency) to ConflictError."""
    from pyiceberg.exceptions import CommitFailedException

    try:
        yield
    except CommitFailedException as exc:
        raise ConflictError(
            f"another writer committed to the lake {namespace} during this sync: {exc};"
            " nothing of this table was committed, sync again"
        ) from exc


def _summary(snapshot: Any) -> dict[str, Any] | None:
    """The ``flowscope.*`` keys of a snapshot's summary, decoded (None: not a sync's)."""
    props = snapshot.summary.additional_properties if snapshot.summary else {}
    if KEY + "as_of" not in props:
        return None
    return {k[len(KEY) :]: json.loads(v) for k, v in props.items() if k.startswith(KEY)}


def _row_count(table: Any) -> int:
    snap = table.current_snapshot()
    return int(snap.summary.additional_properties.get("total-records", 0)) if snap else 0
