"""The :class:`Mirror`: its state, a sync, and the DuckDB connections that read it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _changes, _provenance
from .._boundary import Guarded
from .._files import directory_lock
from ..errors import ConfigurationError, FlowscopeError, ValidationError
from . import _store, _sync
from ._store import MIRRORED, SyncReport

if TYPE_CHECKING:
    import duckdb

    from .._session import Session
    from ._analytics import MirrorAnalytics


class Mirror(Guarded):
    """A local copy of the rows a client may read (see :mod:`flowscope.mirror`).

    Create one with :meth:`flowscope.Client.mirror`. Opening a mirror directory that
    belongs to another database or identity raises :class:`PermissionDeniedError`.

    Example:
        >>> mirror = client.mirror(tmp_path / "mirror")
        >>> report = mirror.sync(progress=False)
        >>> status = mirror.analytics.status_breakdown()
        >>> [int(status.at[0, c]) for c in ("completed", "failed", "total")]
        [1897, 93, 2000]
    """

    def __init__(self, session: Session, path: Path) -> None:
        self._session = session
        self.path = Path(path)
        self._identity = _store.identity(session)
        self._con: Any = None
        self._con_state: dict[str, Any] = {"sequence": None}  # the state _con holds
        self._con_replaced = 0  # the rows refreshes replaced in _con since its load
        try:
            _store.private_dir(self.path)
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
        return _store.read_state(self.path)

    def _check(self, state: dict[str, Any] | None) -> None:
        _store.check_owner(self.path, state, self._identity)

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
        :mod:`flowscope._changes`), and, for a scoped client, the executions of the
        workflows it started or stopped seeing (a handover, ``is_public``, a move between
        organizations: see :mod:`flowscope.mirror._sync`). Everything is read in one
        REPEATABLE READ snapshot, as this client's login (a scoped client's mirror holds
        what it may read only). One sync at a time per mirror (another gets
        :class:`ConflictError`); a sync killed at any point leaves the mirror as it was.

        The mirror records its source database (:mod:`flowscope._provenance`): a mirror of
        a database that was dropped and created again, restored from an older state or
        replaced by another under the same name is copied afresh, never brought up to
        date from the wrong rows (the report says why, in ``reason``).

        Example:
            >>> mirror = client.mirror(tmp_path / "mirror")
            >>> first = mirror.sync(progress=False)
            >>> again = mirror.sync(progress=False)   # nothing changed since: nothing to copy
            >>> again.full, again.added, again.changed, again.removed
            (False, 0, 0, 0)
        """
        from .._session import READ

        started = time.perf_counter()
        self._session.require(READ)
        with directory_lock(self.path, "a mirror sync"):
            state = self._state()
            self._check(state)
            _store.sweep(self.path, state)
            full = full or state is None
            with _changes.snapshot(self._session) as conn:
                point = _changes.take_point(conn)
                source = _provenance.read_source(conn)
                reason = None
                if state is not None:  # a copy of another database is never brought up to date
                    reason = _provenance.changed(
                        state.get("source"), state.get("snapshot"), source, point.snapshot
                    )
                    full = full or reason is not None
                origins = {
                    name: _provenance.record(
                        self._session,
                        source,
                        as_of=point.as_of.astimezone(UTC),
                        snapshot=point.snapshot,
                        table=name,
                        filter=_store.FILTERS[name],
                    )
                    for name in MIRRORED
                }
                sequence = (state["sequence"] if state else 0) + 1
                tables: dict[str, Any] = {}
                added = changed = removed = 0
                visibility: tuple[list[str], list[str]] = ([], [])
                recount = False
                if state is not None and not full and self._session.is_tenant:
                    old = state["tables"]["workflows"]
                    visibility = _sync.reconcile_visibility(self.path, conn, old)
                    recount = self._session.user_id is not None and _sync.restricted(conn)
                for name in MIRRORED:
                    if full or state is None:
                        tables[name], n = _sync.copy(
                            self._session, self.path, conn, name, sequence, progress, origins[name]
                        )
                        added += n
                    else:
                        since = (state["horizon"], state.get("snapshot"))
                        tables[name], counts = _sync.apply(
                            self._session,
                            self.path,
                            conn,
                            name,
                            state["tables"][name],
                            since,
                            sequence,
                            visibility,
                            recount and name == "executions",
                            origins[name],
                        )
                        added += counts[0]
                        changed += counts[1]
                        removed += counts[2]
            _store.step("files-ready")
            new_state = {
                "format": _store.FORMAT,
                "identity": self._identity,
                "sequence": sequence,
                "horizon": point.horizon,
                "snapshot": point.snapshot,
                "source": source,
                "as_of": point.as_of.astimezone(UTC).isoformat(),
                "synced_at": datetime.now(UTC).isoformat(),
                "tables": tables,
                "previous_files": _store.files(state),
            }
            _store.save_state(self.path, new_state)
            _store.step("after-state")
            _store.sweep(self.path, new_state)
        return SyncReport(
            full=full,
            added=added,
            changed=changed,
            removed=removed,
            rows={n: int(t["rows"]) for n, t in tables.items()},
            seconds=time.perf_counter() - started,
            as_of=point.as_of,
            reason=reason,
        )

    # -- reading ---------------------------------------------------------------------
    def _synced_state(self) -> dict[str, Any]:
        state = self._state()
        self._check(state)
        if state is None:
            raise ValidationError(f"the mirror in {self.path} was never synced: call sync() first")
        return state

    def duckdb(self) -> duckdb.DuckDBPyConnection:
        """A new DuckDB connection with views ``executions`` and ``workflows`` over the mirror.

        Tenancy is applied by construction: the files hold only the rows this client's
        login may read. The views show the state of the last sync when the connection was
        made (call again after a sync; the files of the state before stay until the next
        sync). Timestamps are ``TIMESTAMP WITH TIME ZONE`` and the session's TimeZone is UTC.

        Raises:
            ValidationError: the mirror was never synced.

        Example:
            >>> mirror = client.mirror(tmp_path / "mirror")
            >>> _ = mirror.sync(progress=False)
            >>> con = mirror.duckdb()
            >>> con.sql("SELECT count(DISTINCT owner) FROM executions").fetchall()
            [(12,)]
        """
        import duckdb

        state = self._synced_state()
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        for name in MIRRORED:
            _store.table_relation(con, self.path, state["tables"][name]).create_view(name)
        return con

    def _connection(self) -> tuple[Any, dict[str, Any]]:
        """The mirror's own DuckDB connection for analytics: native tables loaded from the
        files (:mod:`flowscope.mirror._native`); after a sync that kept the base files, the
        tables are refreshed in place from the delta (:func:`flowscope.mirror._native.refresh`)."""
        import duckdb

        from . import _native

        state = self._synced_state()
        if self._con is not None and self._con_state["sequence"] != state["sequence"]:
            try:  # the delta only, when the base is the same
                replaced = _native.refresh(
                    self._con, self.path, self._con_state, state, self._con_replaced
                )
                if replaced is not None:
                    self._con_state, self._con_replaced = state, replaced
            except duckdb.Error:
                pass  # rolled back (a value the ENUM types lack, files swept): load afresh
        if self._con is None or self._con_state["sequence"] != state["sequence"]:
            self.close()
            try:
                self._con = _native.load(self.path, state)
            except duckdb.Error as exc:  # e.g. out of memory
                raise FlowscopeError(
                    f"cannot load the mirror in {self.path} into DuckDB: {exc}"
                ) from exc
            self._con_state, self._con_replaced = state, 0
        return self._con, state

    @property
    def analytics(self) -> MirrorAnalytics:
        """Every method of ``client.analytics``, answered by DuckDB over the mirror.

        The first call after opening the mirror loads it into DuckDB's own tables (about
        0.7 s per million executions); later calls read them, and the first call after a
        sync brings them up to date from what the sync changed (a full load again after a
        sync that rewrote a table's base, or that brought a workflow, owner, organization
        or status the tables have not seen).

        Example:
            >>> mirror = client.mirror(tmp_path / "mirror")
            >>> _ = mirror.sync(progress=False)
            >>> frame = mirror.analytics.durations(by="workflow")
            >>> frame.attrs["engine"], len(frame)
            ('duckdb', 182)
        """
        from ._analytics import MirrorAnalytics

        return MirrorAnalytics(self._session, self)

    def close(self) -> None:
        """Close the mirror's DuckDB connection (files stay).

        Example:
            >>> with client.mirror(tmp_path / "mirror") as mirror:   # closed at the end
            ...     _ = mirror.sync(progress=False)
            >>> mirror.as_of is not None   # the files stay: synced
            True
        """
        if self._con is not None:
            self._con.close()
            self._con = None
            self._con_state = {"sequence": None}

    def __enter__(self) -> Mirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
