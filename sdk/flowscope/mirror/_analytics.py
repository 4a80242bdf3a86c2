"""``mirror.analytics``: the methods of ``client.analytics``, answered by DuckDB."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..analytics import Analytics

if TYPE_CHECKING:
    import pandas as pd

    from .._session import Session
    from ..analytics._base import Query
    from ._mirror import Mirror


class MirrorAnalytics(Analytics):
    """:class:`flowscope.analytics.Analytics` answered by DuckDB over a :class:`Mirror`.

    The same builders make the same frames (columns, dtypes, row order); only the engine
    differs. ``frame.attrs`` holds ``engine`` (``"duckdb"``), ``mirror_as_of`` (the
    database time the mirror reflects), ``mirror_age_seconds`` and ``provenance`` (the
    source database, snapshot and as-of time of the sync it answers from). ``use_rollups`` is
    accepted and ignored (the mirror is exact and fast); :meth:`refresh_rollups` syncs
    the mirror and :meth:`rollups_refreshed_at` is its as-of time.

    Example:
        >>> mirror = client.mirror(tmp_path / "mirror")
        >>> _ = mirror.sync(progress=False)
        >>> tags = mirror.analytics.tags()
        >>> tags.attrs["engine"], tags.columns[0]
        ('duckdb', 'tag')
    """

    def __init__(self, session: Session, mirror: Mirror) -> None:
        super().__init__(session)
        self._mirror = mirror

    def __repr__(self) -> str:
        return f"<flowscope.MirrorAnalytics of {self._mirror.path}>"

    def _run(self, query: Query) -> pd.DataFrame:
        from ..analytics._engines import duckdb_frame
        from ._native import compile_native

        con, state = self._mirror._connection()
        frame = duckdb_frame(con, query, compile_native(query.select), "the mirror's")
        as_of = datetime.fromisoformat(state["as_of"])
        frame.attrs.update(
            engine="duckdb",
            mirror_as_of=as_of,
            mirror_age_seconds=(datetime.now(UTC) - as_of).total_seconds(),
            provenance={
                "source": state.get("source"),
                "snapshot": state.get("snapshot"),
                "as_of": as_of,
            },
        )
        return frame

    def _rollups(self, use_rollups: bool | None) -> bool:
        return False

    def refresh_rollups(self, *, concurrently: bool = True) -> datetime:
        """Sync the mirror (its answers are exact; there are no rollups); returns its as-of time.

        Example:
            >>> mirror = client.mirror(tmp_path / "mirror")
            >>> mirror.analytics.refresh_rollups() == mirror.as_of
            True
        """
        return self._mirror.sync(progress=False).as_of

    def rollups_refreshed_at(self) -> datetime | None:
        """The database time the mirror reflects (None: never synced).

        Example:
            >>> mirror = client.mirror(tmp_path / "mirror")
            >>> _ = mirror.sync(progress=False)
            >>> mirror.analytics.rollups_refreshed_at() == mirror.as_of
            True
        """
        return self._mirror.as_of
