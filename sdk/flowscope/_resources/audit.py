"""``client.audit``: read the audit log written by the database's triggers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .._frames import conform
from ..errors import ValidationError
from ..filters import AuditFilter
from ..models import AUDIT_LOG, AuditLogEntryPublic
from ._base import READ, Resource, check_id
from ._io import TableIO

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["AUDITED_TABLES", "Audit"]

AUDITED_TABLES = ("workflows", "executions", "users", "organizations")


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
        >>> for e in client.audit.history("workflows", "wf_demo_0001"):
        ...     print(e.action, e.actor, sorted(e.changes)[:3])
        INSERT None ['created_at', 'created_by', 'deleted_at']
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
            >>> wf = client.workflows.create(name="scratch", owner="usr_demo_ana",
            ...                              organization_id="org_demo_acme", nodes=[], edges=[])
            >>> wf = client.workflows.update(wf.id, status="active", expected_version=1)
            >>> client.workflows.purge(wf.id)
            >>> [e.action for e in client.audit.history("workflows", wf.id)]
            ['INSERT', 'UPDATE', 'DELETE']
            >>> sorted(client.audit.history("workflows", wf.id)[1].changes)
            ['status', 'version']
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
        """Matching entries as a pandas DataFrame, oldest first (read where ``list`` reads).

        The columns and dtypes of :meth:`to_pandas`, also when nothing matches (the frame
        contract, :mod:`flowscope._frames`): ``id`` and ``transaction_id`` ``Int64``,
        ``occurred_at`` ``datetime64[us, UTC]``, text columns :data:`flowscope._frames.STRING`,
        and ``changes`` ``extension<arrow.json>[pyarrow]``, JSON text as PostgreSQL writes
        it (``frame["changes"].map(json.loads)`` gives dicts; :meth:`history` and :meth:`list`
        give them parsed).

        Example:
            >>> frame = client.audit.to_frame(table_name="users", action="UPDATE")
            >>> frame.shape
            (2, 9)
            >>> frame[["row_id", "action"]].values.tolist()
            [['usr_admin', 'UPDATE'], ['usr_admin', 'UPDATE']]
            >>> import json
            >>> json.loads(frame["changes"][0])["scopes"]["new"][-1]
            'workflow:read:all'
        """
        import pandas as pd

        f = self._filter(filter, **filter_fields)
        self._require(self.read_scope)
        # JSON as PostgreSQL's text, the form reads and exports carry (not re-serialised here)
        selected = [
            sa.cast(c, sa.Text).label(c.name) if isinstance(c.type, sa.JSON) else c
            for c in self.columns
        ]
        stmt = sa.select(*selected).where(f.clause()).order_by(self.table.c.id)
        with self._session.read_transaction() as conn:
            result = conn.execute(stmt)
            frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
        return conform(frame, {c.name: c.type for c in self.columns})

    def _readonly(self, *args: Any, **kwargs: Any) -> Any:
        raise ValidationError("the audit log is append-only and written by the database")

    create = update = delete = restore = purge = _readonly

    def get(
        self, id: Any, *, include_deleted: bool = False, read_your_writes: bool | None = None
    ) -> AuditLogEntryPublic:
        """One entry by its (integer) id (read where ``Resource.get`` reads).

        Example:
            >>> entry = client.audit.get(1)
            >>> entry.table_name, entry.row_id, entry.action, entry.actor
            ('users', 'usr_admin', 'UPDATE', None)
        """
        if not isinstance(id, int) or isinstance(id, bool):
            raise ValidationError("audit log entry ids are integers")
        self._require(self.read_scope)
        with self._point_read(read_your_writes) as conn:
            row = conn.execute(sa.select(*self.columns).where(self.table.c.id == id)).first()
        if row is None:
            raise self._not_found(str(id))
        return self._public(row)
