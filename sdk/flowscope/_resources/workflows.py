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


class Workflows(Resource[WorkflowPublic], TableIO, IngestMixin):
    """Create, read, list, update (versioned), soft-delete, restore and purge workflows.

    ``list``/``count``/``iter`` take a :class:`flowscope.WorkflowFilter` or its
    fields as keywords (``owner``, ``organization_id``, ``status``, ``tags_any``,
    ``tags_all``, ``search``, ``include_deleted``, ``created_after``,
    ``created_before``, ``ids``).

    Example:
        >>> wf = client.workflows.create(name="nightly etl", owner="ana",   # doctest: +SKIP
        ...                              nodes=[{"id": "a"}], edges=[], tags=["etl"])
        >>> wf = client.workflows.update(wf.id, status="active", expected_version=1)  # doctest: +SKIP
        >>> wf.version                                                       # doctest: +SKIP
        2
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
            >>> wf = client.workflows.get("wf_01J...")                          # doctest: +SKIP
            >>> client.workflows.update(wf.id, tags=["etl", "daily"],          # doctest: +SKIP
            ...                         expected_version=wf.version)
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
        stmt = (
            sa.update(self.table)
            .where(where)
            .values(**values, version=w.version + 1)
            .returning(*self.columns)
        )
        with self._session.transaction() as conn:
            row = conn.execute(stmt).first()
            if row is None and expected_version is not None:
                current = conn.execute(
                    sa.select(w.version).where(w.id == id, w.deleted_at.is_(None))
                ).scalar_one_or_none()
                if current is not None:
                    raise ConflictError(
                        f"workflow {id!r} is at version {current}, not {expected_version}:"
                        " it was changed meanwhile; re-read it and retry"
                    )
        if row is None:
            raise self._not_found(id)
        return self._public(row)
