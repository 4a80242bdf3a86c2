"""``client.executions``: runs of workflows and their lifecycle.

Legal transitions (anything else raises :class:`flowscope.ConflictError` and
changes nothing)::

    queued  --start-->   running
    queued  --cancel-->  cancelled
    running --complete--> completed | --fail--> failed | --cancel--> cancelled
            --time_out--> timeout
    completed, failed, cancelled, timeout: final

Each transition is ONE ``UPDATE ... WHERE id = :id AND status IN (...) RETURNING``,
so two clients racing to finish the same execution cannot both win: PostgreSQL
locks the row, the loser re-checks the condition after the winner commits and
matches nothing. ``duration_seconds`` is filled by the spec's trigger when
``completed_at`` is set.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from pydantic import JsonValue, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.dialects import postgresql

from .._modelkit import check_storable
from .._session import note_written
from ..errors import ConflictError, NotFoundError, ValidationError
from ..filters import ExecutionFilter
from ..models import (
    EXECUTIONS,
    INT4_MAX,
    WORKFLOWS,
    ExecutionCreate,
    ExecutionPublic,
    ExecutionStatus,
    ExecutionUpdate,
    new_id,
)
from ._base import EXECUTE, READ, Resource, check_id, parse, validation_error
from ._io import IngestMixin, TableIO

__all__ = ["TRANSITIONS", "Executions"]

# verb -> (statuses it may leave, status it enters)
_S = ExecutionStatus
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "start": ((_S.QUEUED,), _S.RUNNING),
    "complete": ((_S.RUNNING,), _S.COMPLETED),
    "fail": ((_S.RUNNING,), _S.FAILED),
    "cancel": ((_S.QUEUED, _S.RUNNING), _S.CANCELLED),
    "time_out": ((_S.RUNNING,), _S.TIMEOUT),
}

_JSON = TypeAdapter(JsonValue)


def _json(value: Any, what: str) -> Any:
    try:
        checked = _JSON.validate_python(value)
        check_storable(checked, what)
    except PydanticValidationError as exc:
        raise validation_error(exc, what) from None
    except ValueError as exc:
        raise ValidationError(f"invalid {what}: {exc}") from None
    return checked


class Executions(Resource[ExecutionPublic], TableIO, IngestMixin):
    """Create (queued), read, list, drive and delete executions.

    ``list``/``count``/``iter`` take a :class:`flowscope.ExecutionFilter` or its
    fields as keywords (``workflow_ids``, ``status``, ``owner``, ``since``,
    ``until``, ``tags_any``, ...). ``delete`` is a hard delete (the table has no
    ``deleted_at``).

    Example:
        >>> ex = client.executions.create(workflow_id="wf_demo_0001", parameters={"day": "2026-07-01"})
        >>> ex = client.executions.start(ex.id)
        >>> ex = client.executions.complete(ex.id, result={"rows": 10})
        >>> ex.status, ex.result, ex.duration_seconds > 0
        ('completed', {'rows': 10}, True)
        >>> client.executions.count(workflow_ids=["wf_demo_0008"], status="completed")
        65
    """

    table = EXECUTIONS
    public_model = ExecutionPublic
    create_model = ExecutionCreate
    update_model = ExecutionUpdate
    filter_class = ExecutionFilter
    noun = "execution"
    sortable = ("created_at", "updated_at", "status", "id")
    read_scope = READ
    write_scope = EXECUTE

    def create(self, data: Any = None, /, **fields: Any) -> ExecutionPublic:
        """Queue an execution of a (not deleted, visible) workflow.

        ``organization_id`` is the workflow's; ``owner`` defaults to the client's
        user, else the workflow's owner; ``metadata["workflow_version"]`` records
        the workflow's version at this moment (one INSERT ... SELECT).

        Example:
            >>> ex = client.executions.create(workflow_id="wf_demo_0001", parameters={"n": 1})
            >>> ex.id, ex.status, ex.owner, ex.organization_id
            ('ex_...', 'queued', 'usr_demo_dara', 'org_demo_acme')
            >>> ex.metadata      # the workflow's version when it was queued
            {'workflow_version': 4}
        """
        model = parse(self.create_model, data, fields, "new execution")
        self._require(self.write_scope)
        v = model.model_dump(exclude_none=True)
        org = v.get("organization_id")
        self._check_tenant_org(org)
        w = WORKFLOWS.c
        meta = dict(v.get("metadata") or {})
        meta.pop("workflow_version", None)
        metadata = sa.func.jsonb_set(
            sa.cast(sa.literal(json.dumps(meta)), postgresql.JSONB),
            sa.literal_column("'{workflow_version}'::text[]"),
            sa.func.to_jsonb(w.version),
        )
        owner = v.get("owner") or self._session.user_id
        e = EXECUTIONS.c
        # what the workflow decides; every other given field is inserted as given
        values: dict[str, Any] = {
            "id": sa.literal(v.pop("id", None) or new_id("executions"), e.id.type),
            "workflow_id": w.id,
            "owner": sa.literal(owner, e.owner.type) if owner else w.owner,
            "organization_id": w.organization_id,
            "parameters": sa.literal(v.pop("parameters", None) or {}, e.parameters.type),
            "metadata": metadata,
        }
        values.update((k, sa.literal(x, e[k].type)) for k, x in v.items() if k not in values)
        select = sa.select(*values.values()).where(
            w.id == model.workflow_id, w.deleted_at.is_(None)
        )
        if org is not None:
            select = select.where(w.organization_id == org)
        stmt = sa.insert(EXECUTIONS).from_select(list(values), select).returning(*self.columns)
        with self._session.transaction() as conn:
            row = conn.execute(stmt).first()
            if row is not None:
                note_written([str(row.id)])
            if row is None and org is not None:
                actual = conn.execute(
                    sa.select(w.organization_id).where(
                        w.id == model.workflow_id,
                        w.deleted_at.is_(None),
                    )
                ).first()
                if actual is not None:
                    raise ValidationError(
                        f"workflow {model.workflow_id!r} belongs to organization "
                        f"{actual[0]!r}, not {org!r}"
                    )
        if row is None:
            raise NotFoundError(f"workflow {model.workflow_id!r} not found")
        return self._public(row)

    # -- lifecycle ---------------------------------------------------------------------------
    def _transition(self, verb: str, id: str, values: dict[str, Any]) -> ExecutionPublic:
        check_id(id, self.noun)
        self._require(self.write_scope)
        sources, target = TRANSITIONS[verb]
        return self._update_if_status(
            id,
            sources,
            {"status": target, **values},
            f"cannot {verb.replace('_', ' ')} execution {id!r}",
            f" (allowed from {' or '.join(sources)})",
        )

    def _update_if_status(
        self, id: str, allowed: Sequence[str], values: dict[str, Any], refusal: str, hint: str = ""
    ) -> ExecutionPublic:
        """One conditional ``UPDATE ... WHERE status IN (allowed) RETURNING``; when no row
        matched, say why: no such execution, ``ConflictError`` naming its status, or
        ``PermissionDeniedError`` (row-level security: another owner's run)."""
        e = self.table.c
        stmt = (
            sa.update(self.table)
            .where(e.id == id, e.status.in_(allowed))
            .values(**values)
            .returning(*self.columns)
        )
        with self._session.transaction() as conn:
            row = conn.execute(stmt).first()
            if row is None:
                current = conn.execute(sa.select(e.status).where(e.id == id)).scalar_one_or_none()
                if current is None:
                    raise self._not_found(id)
                if current not in allowed:
                    raise ConflictError(f"{refusal}: it is {current}{hint}")
        if row is None:  # visible, in an allowed status, yet not this client's to change
            raise self._refused(id)
        return self._public(row)

    def start(self, id: str) -> ExecutionPublic:
        """queued → running; sets ``started_at`` (database clock).

        Example:
            >>> client.executions.start("exe_demo_0002000").status
            'running'
            >>> client.executions.start("exe_demo_0002000")
            Traceback (most recent call last):
            ...
            flowscope.errors.ConflictError: cannot start execution 'exe_demo_0002000': it is running (allowed from queued)
        """
        return self._transition("start", id, {"started_at": sa.func.now()})

    def complete(self, id: str, *, result: Any = None) -> ExecutionPublic:
        """running → completed with an optional JSON ``result``; sets ``completed_at``.

        Example:
            >>> ex = client.executions.start(client.executions.create(workflow_id="wf_demo_0001").id)
            >>> ex = client.executions.complete(ex.id, result={"rows": 10})
            >>> ex.status, ex.result
            ('completed', {'rows': 10})
        """
        values: dict[str, Any] = {"completed_at": sa.func.now()}
        if result is not None:
            values["result"] = _json(result, "result")
        return self._transition("complete", id, values)

    def fail(self, id: str, *, error: Any = None) -> ExecutionPublic:
        """running → failed with an optional JSON ``error`` (a string becomes ``{"message": ...}``).

        Example:
            >>> ex = client.executions.start(client.executions.create(workflow_id="wf_demo_0001").id)
            >>> client.executions.fail(ex.id, error="disk full").error
            {'message': 'disk full'}
        """
        values: dict[str, Any] = {"completed_at": sa.func.now()}
        if error is not None:
            if isinstance(error, str):
                error = {"message": error}
            elif isinstance(error, BaseException):
                error = {"type": type(error).__name__, "message": str(error)}
            values["error"] = _json(error, "error")
        return self._transition("fail", id, values)

    def cancel(self, id: str) -> ExecutionPublic:
        """queued or running → cancelled; sets ``completed_at``.

        Example:
            >>> ex = client.executions.create(workflow_id="wf_demo_0001")
            >>> client.executions.cancel(ex.id).status
            'cancelled'
        """
        return self._transition("cancel", id, {"completed_at": sa.func.now()})

    def time_out(self, id: str) -> ExecutionPublic:
        """running → timeout; sets ``completed_at``.

        Example:
            >>> ex = client.executions.start(client.executions.create(workflow_id="wf_demo_0001").id)
            >>> client.executions.time_out(ex.id).status
            'timeout'
        """
        return self._transition("time_out", id, {"completed_at": sa.func.now()})

    def progress(
        self,
        id: str,
        *,
        current_step: str | None = None,
        steps_completed: int | None = None,
        steps_total: int | None = None,
    ) -> ExecutionPublic:
        """Record step progress of a running execution (ConflictError if it is not running).

        Example:
            >>> ex = client.executions.start(client.executions.create(workflow_id="wf_demo_0001").id)
            >>> ex = client.executions.progress(ex.id, current_step="n3", steps_completed=2, steps_total=9)
            >>> ex.status, ex.current_step, ex.steps_completed, ex.steps_total
            ('running', 'n3', 2, 9)
        """
        check_id(id, self.noun)
        changes = {
            k: v
            for k, v in {
                "current_step": current_step,
                "steps_completed": steps_completed,
                "steps_total": steps_total,
            }.items()
            if v is not None
        }
        model = parse(ExecutionUpdate, None, changes, "execution progress")
        values = model.model_dump(exclude_unset=True)
        if not values:
            raise ValidationError("progress() needs current_step, steps_completed or steps_total")
        if (
            steps_completed is not None
            and steps_total is not None
            and steps_completed > steps_total
        ):
            raise ValidationError("steps_completed cannot exceed steps_total")
        assert max(values.get("steps_total", 0), values.get("steps_completed", 0)) <= INT4_MAX
        self._require(self.write_scope)
        return self._update_if_status(
            id, [ExecutionStatus.RUNNING], values, f"cannot record progress of execution {id!r}"
        )
