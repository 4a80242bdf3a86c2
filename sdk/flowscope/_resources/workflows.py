"""``client.workflows``: workflow definitions, with optimistic concurrency on ``version``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel

from ..errors import ConflictError, ValidationError
from ..filters import WorkflowFilter
from ..models import WORKFLOWS, WorkflowCreate, WorkflowPublic, WorkflowUpdate
from ._base import READ, WRITE, Resource, check_id, parse
from ._io import IngestMixin, TableIO

__all__ = ["Workflows"]


class _Row:
    """A row-like mapping (``._mapping``) for :meth:`Resource._public`."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._mapping = values


class Workflows(Resource[WorkflowPublic], TableIO, IngestMixin):
    """Create, read, list, update (versioned), soft-delete, restore and purge workflows.

    ``list``/``count``/``iter`` take a :class:`flowscope.WorkflowFilter` or its
    fields as keywords (``owner``, ``organization_id``, ``status``, ``tags_any``,
    ``tags_all``, ``search``, ``include_deleted``, ``created_after``,
    ``created_before``, ``ids``).

    Example:
        >>> wf = client.workflows.create(name="nightly etl", owner="usr_demo_ana",
        ...                              organization_id="org_demo_acme",
        ...                              nodes=[{"id": "a"}], edges=[], tags=["etl"])
        >>> wf.id, wf.status, wf.version, wf.organization_id
        ('wf_...', 'draft', 1, 'org_demo_acme')
        >>> wf = client.workflows.update(wf.id, status="active", expected_version=1)
        >>> wf.status, wf.version
        ('active', 2)
    """

    table = WORKFLOWS
    public_model = WorkflowPublic
    create_model = WorkflowCreate
    update_model = WorkflowUpdate
    filter_class = WorkflowFilter
    noun = "workflow"
    sortable = ("created_at", "updated_at", "name", "version", "id")
    read_scope = READ
    write_scope = WRITE

    def _insert_values(self, data: BaseModel) -> dict[str, Any]:
        values = super()._insert_values(data)
        actor = self._session.user_id
        owner = values.get("owner") or actor
        if owner is None:
            raise ValidationError("invalid new workflow: owner is required (no acting user_id)")
        values["owner"] = owner
        values.setdefault("created_by", actor or owner)
        values.setdefault("updated_by", values["created_by"])
        return values

    def update(
        self,
        id: str,
        data: Any = None,
        /,
        *,
        expected_version: int | None = None,
        **changes: Any,
    ) -> WorkflowPublic:
        """Change a workflow, bumping ``version`` by one, in one conditional UPDATE.

        With ``expected_version=N`` the update happens only if the stored version
        is still N; otherwise :class:`flowscope.ConflictError` names both versions
        and nothing changes (no update is lost silently). ``updated_by`` is the
        client's user unless given.

        Example:
            >>> wf = client.workflows.get("wf_demo_0002")
            >>> wf.version
            2
            >>> client.workflows.update(wf.id, tags=["etl", "daily"], expected_version=wf.version).version
            3
            >>> client.workflows.update(wf.id, description="stale", expected_version=wf.version)
            Traceback (most recent call last):
            ...
            flowscope.errors.ConflictError: ...
        """
        check_id(id, self.noun)
        if expected_version is not None and (
            not isinstance(expected_version, int)
            or isinstance(expected_version, bool)
            or not 1 <= expected_version <= 2_147_483_647
        ):
            raise ValidationError("expected_version must be a positive integer")
        model = parse(self.update_model, data, changes, "workflow update")
        self._require(self.write_scope)
        values = self._update_values(model)
        if self._session.user_id is not None:
            values.setdefault("updated_by", self._session.user_id)
        w = self.table.c
        where = self._update_where(id)
        if expected_version is not None:
            where = sa.and_(where, w.version == expected_version)
        base = sa.update(self.table).where(where).values(**values, version=w.version + 1)
        with self._session.transaction() as conn:
            if "owner" in values and self._session.is_tenant:
                row = self._hand_over(conn, where, base, values)
            else:
                row = conn.execute(base.returning(*self.columns)).first()
            if row is None and expected_version is not None:
                current = conn.execute(
                    sa.select(w.version).where(w.id == id, w.deleted_at.is_(None))
                ).scalar_one_or_none()
                if current is not None and current != expected_version:
                    raise ConflictError(
                        f"workflow {id!r} is at version {current}, not {expected_version}:"
                        " it was changed meanwhile; re-read it and retry"
                    )
        if row is None:
            raise self._refused(id)
        return self._public(row)

    def _hand_over(self, conn: Any, where: Any, update: Any, values: dict[str, Any]) -> Any:
        """An update that gives the workflow to another owner, for a tenant login.

        Row-level security checks an ``UPDATE``'s new row against what the login may
        read, so a private workflow cannot leave its owner by a plain ``UPDATE``: the
        other changes are made first, then ``flowscope_hand_over()`` (revision 0007)
        moves it, if this user owns it (or has ``workflow:write:all``), to a user of
        the organization, bumping ``version`` once more. Returns the row as it is now
        (rebuilt from the row read before when the user may no longer read it).
        """
        before = conn.execute(sa.select(*self.columns).where(where).with_for_update()).first()
        if before is None:
            return None
        owner = values.pop("owner")
        others = bool(set(values) - {"updated_by"})
        if others and conn.execute(update.values(owner=before.owner)).rowcount == 0:
            return None
        conn.execute(sa.select(sa.func.flowscope_hand_over(before.id, owner)))
        after = conn.execute(sa.select(*self.columns).where(self.table.c.id == before.id)).first()
        if after is not None:
            return after
        row = dict(before._mapping)
        row.update({k: v for k, v in values.items() if k in row})
        bumps = 2 if others else 1
        row.update(owner=owner, version=before.version + bumps)
        row["updated_at"] = conn.execute(sa.select(sa.func.now())).scalar_one()
        return _Row(row)
