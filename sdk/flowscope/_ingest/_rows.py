"""Completing rows before they are sent: ids, owners, organizations and server defaults,
and for executions the workflow reference, the status the timestamps imply, the duration
and ``metadata.workflow_version``.

A COPY that names a column sends NULL where a row has no value, never the column's
default, so ingest fills every default itself (the values come from the models, see
``_columns``); what is left here is what the database cannot say: the client's user and
organization, the workflow's owner and version, the duration the spec's trigger would
compute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..models import EXECUTIONS, WORKFLOWS, new_ids
from ._columns import NOW, Json, RowError, columns, numeric_bounds

if TYPE_CHECKING:
    from .._session import Session

__all__ = ["ExecutionRows", "WorkflowRows"]


def _ids(table: str) -> Iterator[str]:
    """New ids for ``table``, made 4,096 at a time."""
    while True:
        yield from new_ids(table, 4096)


class _Rows:
    """What every table's rows get: positions by name, the defaults and required columns."""

    def __init__(self, table: sa.Table, now: datetime, *, filled: Sequence[str]) -> None:
        cols = columns(table)
        self.at = {c.name: i for i, c in enumerate(cols)}
        self.new_id = _ids(table.name).__next__
        self.defaults: tuple[tuple[int, Any], ...] = tuple(
            (i, now if c.default is NOW else c.default)
            for i, c in enumerate(cols)
            if c.has_default and c.name not in filled
        )
        # NOT NULL without a default, and not filled in by the subclass: the row must give it
        self.required = tuple(
            (i, c.name) for i, c in enumerate(cols) if c.required and c.name not in filled
        )

    def positions(self, *names: str) -> tuple[int, ...]:
        return tuple(self.at[name] for name in names)


class ExecutionRows(_Rows):
    """Defaults, workflow references, ``workflow_version`` and duration for execution rows."""

    def __init__(
        self, session: Session, conn: Any, records: list[Mapping[str, Any]], now: datetime
    ) -> None:
        filled = ("id", "workflow_id", "owner", "organization_id", "status", "metadata")
        super().__init__(EXECUTIONS, now, filled=filled)
        given = {r.get("workflow_id") for r in records if isinstance(r, Mapping)}
        wanted: set[str] = {w for w in given if isinstance(w, str)}
        w = WORKFLOWS.c
        self.workflows: dict[str, Any] = {}
        ordered = sorted(wanted)
        for start in range(0, len(ordered), 10_000):
            chunk = ordered[start : start + 10_000]
            for row in conn.execute(
                sa.select(w.id, w.version, w.owner, w.organization_id).where(w.id.in_(chunk))
            ):
                self.workflows[row.id] = row
        self.user = session.user_id
        self.org = session.organization_id
        self.at_ = self.positions(
            "id", "workflow_id", "owner", "organization_id", "status", "started_at",
            "completed_at", "duration_seconds", "metadata",
        )  # fmt: skip
        self.metadata: Callable[[Any], Any] = columns(EXECUTIONS)[self.at["metadata"]].convert
        self.quantum, self.bound, sql_type = numeric_bounds(EXECUTIONS.c.duration_seconds.type)
        self.too_long = f"duration longer than {sql_type} holds"

    def __call__(self, t: list[Any]) -> None:
        id_, workflow_id_, owner, org, status, started, completed, duration, meta_ = self.at_
        workflow_id = t[workflow_id_]
        if workflow_id is None:
            raise RowError("workflow_id", "required")
        workflow = self.workflows.get(workflow_id)
        if workflow is None:
            raise RowError("workflow_id", f"no workflow {workflow_id!r} (visible to this client)")
        if t[id_] is None:
            t[id_] = self.new_id()
        if t[owner] is None:
            t[owner] = self.user or workflow.owner
        if t[org] is None:
            t[org] = self.org or workflow.organization_id
        start, end = t[started], t[completed]
        _check_status(t, status, start, end)
        if start is not None and end is not None:
            if end < start:
                raise RowError("completed_at", "earlier than started_at")
            if t[duration] is None:  # as the spec's trigger: the seconds between, rounded
                delta = end - start
                micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
                seconds = Decimal(micros).scaleb(-6).quantize(self.quantum, rounding=ROUND_HALF_UP)
                if seconds >= self.bound:
                    raise RowError("completed_at", self.too_long)
                t[duration] = seconds
        meta = t[meta_]
        if meta is None:
            t[meta_] = Json('{"workflow_version":' + str(int(workflow.version)) + "}")
        else:
            if isinstance(meta, dict) and "workflow_version" not in meta:
                meta = {**meta, "workflow_version": workflow.version}
            t[meta_] = self.metadata(meta)
        for i, name in self.required:
            if t[i] is None:
                raise RowError(name, "required")
        for i, value in self.defaults:
            if t[i] is None:
                t[i] = value


def _check_status(t: list[Any], i: int, start: Any, end: Any) -> None:
    """The status must agree with the timestamps; a missing one is implied when it can be:
    no timestamps → ``queued``, ``started_at`` only → ``running``. With ``completed_at``
    the run ended, but how (completed, failed, cancelled, timeout) is not implied."""
    status = t[i]
    if status is None:
        if end is not None:
            raise RowError(
                "status",
                "required when completed_at is set (completed, failed, cancelled or timeout)",
            )
        t[i] = "running" if start is not None else "queued"
    elif status == "queued" and (start is not None or end is not None):
        raise RowError("status", "a queued execution has no started_at or completed_at")
    elif status == "running" and end is not None:
        raise RowError("status", "a running execution has no completed_at")


class WorkflowRows(_Rows):
    """Ids, owner, organization, ``created_by``/``updated_by`` and defaults for workflow rows."""

    def __init__(self, session: Session, records: list[Mapping[str, Any]], now: datetime) -> None:
        super().__init__(WORKFLOWS, now, filled=("id", "created_by", "updated_by"))
        self.user = session.user_id
        self.org = session.organization_id
        self.at_ = self.positions("id", "owner", "organization_id", "created_by", "updated_by")

    def __call__(self, t: list[Any]) -> None:
        id_, owner, org, created_by, updated_by = self.at_
        if t[owner] is None:
            t[owner] = self.user
        for i, name in self.required:
            if t[i] is None:
                raise RowError(name, "required")
        if t[id_] is None:
            t[id_] = self.new_id()
        if t[org] is None:
            t[org] = self.org
        if t[created_by] is None:
            t[created_by] = self.user or t[owner]
        if t[updated_by] is None:
            t[updated_by] = t[created_by]
        for i, value in self.defaults:
            if t[i] is None:
                t[i] = value
