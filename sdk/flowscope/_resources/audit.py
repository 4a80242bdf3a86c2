"""``client.audit``: read the audit log written by the database's triggers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .._frames import STRING
from ..errors import ValidationError
from ..filters import AuditFilter
from ..models import AUDIT_LOG, AuditLogEntryPublic
from ._base import READ, Resource, check_id
from ._io import TableIO

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["AUDITED_TABLES", "Audit"]

AUDITED_TABLES = ("workflows", "executions", "users", "organizations")
FRAME_COLUMNS = {
    "id": "Int64",
    "occurred_at": "datetime64[us, UTC]",
    "table_name": STRING,
    "row_id": STRING,
    "action": STRING,
    "actor": STRING,
    "organization_id": STRING,
    "changes": "object",
    "transaction_id": "Int64",
}


class Audit(Resource[AuditLogEntryPublic], TableIO):
    """Who changed what, when: every INSERT, UPDATE and DELETE on the four tables.

    Entries are written by statement-level triggers (migration 0002), never by
    the client; this resource only reads them. ``changes`` holds the new row
    (INSERT), the old row (DELETE) or ``{column: {"old", "new"}}`` (UPDATE);
    ``password_hash`` is always ``"[redacted]"``. A scoped client sees only its
    organization's entries. ``history``, ``list``, ``count`` and ``to_frame``
    read a replica when the client has one (``connect(read_url=...)``); pass
    ``read_your_writes`` to ``connect`` to see entries of writes just made.

    Example:
        >>> for e in client.audit.history("workflows", "wf_01J..."):   # doctest: +SKIP
        ...     print(e.occurred_at, e.action, e.actor, sorted(e.changes))
    """

    table = AUDIT_LOG
    public_model = AuditLogEntryPublic
    filter_class = AuditFilter
    noun = "audit log entry"
    sortable = ("id", "occurred_at")
    default_order = "-id"
    read_scope = READ

    def history(self, table: str, row_id: str) -> list[AuditLogEntryPublic]:
        """Every entry of one row, oldest first.

        Example:
            >>> [e.action for e in client.audit.history("workflows", wf.id)]   # doctest: +SKIP
            ['INSERT', 'UPDATE', 'DELETE']
        """
        if table not in AUDITED_TABLES:
            raise ValidationError(f"table must be one of {', '.join(AUDITED_TABLES)}")
        check_id(row_id, "row")
        self._require(self.read_scope)
        a = self.table.c
        stmt = (
            sa.select(*self.columns).where(a.table_name == table, a.row_id == row_id).order_by(a.id)
        )
        with self._session.read_transaction() as conn:
            return [self._public(r) for r in conn.execute(stmt)]

    def to_frame(self, filter: Any = None, **filter_fields: Any) -> pd.DataFrame:
        """Matching entries as a pandas DataFrame (columns and dtypes fixed, also when empty).

        Example:
            >>> client.audit.to_frame(table_name="users", action="UPDATE")   # doctest: +SKIP
        """
        import pandas as pd

        f = self._filter(filter, **filter_fields)
        self._require(self.read_scope)
        stmt = sa.select(*self.columns).where(f.clause()).order_by(self.table.c.id)
        with self._session.read_transaction() as conn:
            rows = [dict(r._mapping) for r in conn.execute(stmt)]
        frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
        return frame.astype(FRAME_COLUMNS)

    def _readonly(self, *args: Any, **kwargs: Any) -> Any:
        raise ValidationError("the audit log is append-only and written by the database")

    create = update = delete = restore = purge = _readonly

    def get(
        self, id: Any, *, include_deleted: bool = False, read_your_writes: bool | None = None
    ) -> AuditLogEntryPublic:
        """One entry by its (integer) id (read where ``Resource.get`` reads).

        Example:
            >>> client.audit.get(1).action     # doctest: +SKIP
            'INSERT'
        """
        if not isinstance(id, int) or isinstance(id, bool):
            raise ValidationError("audit log entry ids are integers")
        self._require(self.read_scope)
        with self._point_read(read_your_writes) as conn:
            row = conn.execute(sa.select(*self.columns).where(self.table.c.id == id)).first()
        if row is None:
            raise self._not_found(str(id))
        return self._public(row)
