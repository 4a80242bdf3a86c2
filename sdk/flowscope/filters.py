"""Typed, flat filters that compile to SQLAlchemy expressions.

One filter object serves ``list``, ``count``, analytics and export alike, so a
slice of the data is described once. Filters never take free-text SQL: every
value is bound as a parameter.

Example:
    >>> from flowscope.filters import ExecutionFilter
    >>> f = ExecutionFilter(status=["failed", "timeout"], since="2026-01-01")
    >>> f.since.isoformat()
    '2026-01-01T00:00:00+00:00'
    >>> print(f.clause().compile(compile_kwargs={"literal_binds": True}))  # doctest: +ELLIPSIS
    executions.status = ANY (ARRAY['failed', 'timeout']) AND executions.created_at >= '2026-01-01 00:00:00+00:00' AND ...
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, ClassVar, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement

from ._modelkit import check_storable
from .models import (
    AUDIT_LOG,
    EXECUTIONS,
    ORGANIZATIONS,
    USERS,
    WORKFLOWS,
    AuditActionName,
    AuditedTableName,
    ExecutionStatusName,
    WorkflowStatusName,
)

__all__ = [
    "AuditFilter",
    "ExecutionFilter",
    "OrganizationFilter",
    "UserFilter",
    "WorkflowFilter",
    "coerce_filter",
    "to_utc",
]


def to_utc(value: datetime | date | str | None) -> datetime | None:
    """Parse/normalise a timestamp to an aware UTC ``datetime`` (naive means UTC).

    Example:
        >>> to_utc("2026-03-01T12:00:00+01:00").isoformat()
        '2026-03-01T11:00:00+00:00'
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"not an ISO 8601 timestamp: {value!r}") from exc
    if hasattr(value, "to_pydatetime"):  # pandas.Timestamp
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        raise ValueError(f"not a timestamp: {value!r}")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"timestamp out of range: {value!r}") from None


def _as_list(value: Any) -> list[Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence | set | frozenset | tuple):
        return list(value)
    raise ValueError("expected a string or a list of strings")


def _any(column: Any, values: list[Any]) -> ColumnElement[bool]:
    """``column = ANY(:values)``: the list travels as one array parameter, however long
    (an ``IN`` list binds one parameter per value, and a statement takes at most 65,535).

    Example:
        >>> print(_any(EXECUTIONS.c.id, ["a", "b"]).compile(compile_kwargs={"literal_binds": True}))
        executions.id = ANY (ARRAY['a', 'b'])
    """
    return column == sa.any_(sa.bindparam(None, list(values), type_=postgresql.ARRAY(sa.Text)))


def _text_array(values: list[str]) -> Any:
    return sa.cast(sa.literal(values, type_=postgresql.ARRAY(sa.Text)), postgresql.ARRAY(sa.Text))


class _Filter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _lists(cls, value: Any, info: Any) -> Any:
        annotation = str(cls.model_fields[info.field_name].annotation)
        if annotation.startswith("list[") and value is not None:
            return _as_list(value)
        return value

    @model_validator(mode="after")
    def _storable(self) -> Any:
        for name in type(self).model_fields:
            check_storable(getattr(self, name), name)
        return self

    def is_empty(self) -> bool:
        """True when no field was given (the filter selects everything but soft-deleted rows).

        Example:
            >>> ExecutionFilter().is_empty(), ExecutionFilter(status="failed").is_empty()
            (True, False)
        """
        return not self.model_fields_set


class WorkflowFilter(_Filter):
    """Which workflows: every field is optional and they combine with AND.

    ``tags_any``/``tags_all`` use the GIN index on ``tags`` (``&&``/``@>``);
    ``search`` is full-text (``websearch_to_tsquery('english', ...)``) against the
    spec's expression index. Soft-deleted workflows are excluded unless
    ``include_deleted=True``.
    """

    ids: list[str] | None = None
    owner: list[str] | None = None
    organization_id: list[str] | None = None
    status: list[WorkflowStatusName] | None = None
    tags_any: list[str] | None = None
    tags_all: list[str] | None = None
    search: str | None = None
    include_deleted: bool = False
    created_after: datetime | None = None
    created_before: datetime | None = None

    _utc = field_validator("created_after", "created_before", mode="before")(
        lambda cls, v: to_utc(v)
    )

    def clause(self) -> ColumnElement[bool]:
        """The WHERE expression over ``workflows`` (``sa.true()`` when empty).

        Example:
            >>> where = WorkflowFilter(owner="usr_demo_ana", status="active").clause()
            >>> print(where.compile(compile_kwargs={"literal_binds": True}))
            workflows.owner = ANY (ARRAY['usr_demo_ana']) AND workflows.status = ANY (ARRAY['active']) AND workflows.deleted_at IS NULL
        """
        w = WORKFLOWS.c
        parts: list[ColumnElement[bool]] = []
        if self.ids is not None:
            parts.append(_any(w.id, self.ids))
        if self.owner is not None:
            parts.append(_any(w.owner, self.owner))
        if self.organization_id is not None:
            parts.append(_any(w.organization_id, self.organization_id))
        if self.status is not None:
            parts.append(_any(w.status, self.status))
        if self.tags_any:
            parts.append(w.tags.op("&&")(_text_array(self.tags_any)))
        if self.tags_all:
            parts.append(w.tags.op("@>")(_text_array(self.tags_all)))
        if self.search:
            document = sa.func.to_tsvector(
                sa.literal_column("'english'::regconfig"),
                w.name.op("||")(sa.literal_column("' '")).op("||")(
                    sa.func.coalesce(w.description, sa.literal_column("''"))
                ),
            )
            query = sa.func.websearch_to_tsquery(
                sa.literal_column("'english'::regconfig"), sa.bindparam("search", self.search)
            )
            parts.append(document.op("@@")(query))
        if not self.include_deleted:
            parts.append(w.deleted_at.is_(None))
        if self.created_after is not None:
            parts.append(w.created_at >= self.created_after)
        if self.created_before is not None:
            parts.append(w.created_at < self.created_before)
        return sa.and_(sa.true(), *parts) if parts else sa.true()


class ExecutionFilter(_Filter):
    """Which executions: every field is optional and they combine with AND.

    ``since``/``until`` bound ``created_at`` (half-open: ``since <= t < until``;
    naive timestamps mean UTC). Workflow-level conditions (``tags_any``,
    ``tags_all``, soft-deleted workflows) become one semi-join on ``workflows``.
    Executions of soft-deleted workflows are excluded unless
    ``include_deleted_workflows=True``.
    """

    ids: list[str] | None = None
    workflow_ids: list[str] | None = None
    owner: list[str] | None = None
    organization_id: list[str] | None = None
    status: list[ExecutionStatusName] | None = None
    since: datetime | None = None
    until: datetime | None = None
    tags_any: list[str] | None = None
    tags_all: list[str] | None = None
    trace_id: str | None = None
    include_deleted_workflows: bool = False

    _utc = field_validator("since", "until", mode="before")(lambda cls, v: to_utc(v))

    def workflow_clause(self) -> ColumnElement[bool] | None:
        """Conditions on the executions' workflows, or None when there are none.

        Example:
            >>> where = ExecutionFilter(tags_all=["finance"]).workflow_clause()
            >>> print(where.compile(compile_kwargs={"literal_binds": True}))
            (workflows.tags @> CAST(ARRAY['finance'] AS ARRAY)) AND workflows.deleted_at IS NULL
            >>> print(ExecutionFilter(include_deleted_workflows=True).workflow_clause())
            None
        """
        w = WORKFLOWS.c
        parts: list[ColumnElement[bool]] = []
        if self.tags_any:
            parts.append(w.tags.op("&&")(_text_array(self.tags_any)))
        if self.tags_all:
            parts.append(w.tags.op("@>")(_text_array(self.tags_all)))
        if not self.include_deleted_workflows:
            parts.append(w.deleted_at.is_(None))
        return sa.and_(*parts) if parts else None

    #: the list fields and the ``executions`` column each one matches
    _MATCHES: ClassVar[dict[str, str]] = {
        "ids": "id",
        "workflow_ids": "workflow_id",
        "owner": "owner",
        "organization_id": "organization_id",
        "status": "status",
    }

    def clause(
        self, table: sa.FromClause | None = None, *, times: bool = True, workflows: bool = True
    ) -> ColumnElement[bool]:
        """The WHERE expression over ``executions`` (or an alias of it, or a relation with
        its columns, such as a rollup view: ``times=False`` leaves out ``since``/``until``,
        ``workflows=False`` the semi-join on ``workflows``).

        Example:
            >>> f = ExecutionFilter(owner="ana", status="failed", include_deleted_workflows=True)
            >>> print(f.clause().compile(compile_kwargs={"literal_binds": True}))
            executions.owner = ANY (ARRAY['ana']) AND executions.status = ANY (ARRAY['failed'])
        """
        e = (table if table is not None else EXECUTIONS).c
        parts: list[ColumnElement[bool]] = [
            _any(e[column], getattr(self, field))
            for field, column in self._MATCHES.items()
            if getattr(self, field) is not None
        ]
        if times and self.since is not None:
            parts.append(e.created_at >= self.since)
        if times and self.until is not None:
            parts.append(e.created_at < self.until)
        if self.trace_id is not None:
            parts.append(e.trace_id == self.trace_id)
        on_workflows = self.workflow_clause() if workflows else None
        if on_workflows is not None:
            w = WORKFLOWS.c
            parts.append(e.workflow_id.in_(sa.select(w.id).where(on_workflows)))
        return sa.and_(*parts) if parts else sa.true()


class UserFilter(_Filter):
    """Which users (AND of the given fields); soft-deleted users only with ``include_deleted``.

    Example:
        >>> UserFilter(is_active=True, organization_id="org_1").organization_id
        ['org_1']
    """

    ids: list[str] | None = None
    username: list[str] | None = None
    email: list[str] | None = None
    organization_id: list[str] | None = None
    is_active: bool | None = None
    is_admin: bool | None = None
    include_deleted: bool = False

    def clause(self) -> ColumnElement[bool]:
        """The WHERE expression over ``users``.

        Example:
            >>> where = UserFilter(organization_id="org_demo_acme", is_active=True).clause()
            >>> print(where.compile(compile_kwargs={"literal_binds": True}))
            users.organization_id = ANY (ARRAY['org_demo_acme']) AND users.is_active IS true AND users.deleted_at IS NULL
        """
        u = USERS.c
        parts: list[ColumnElement[bool]] = []
        for name in ("ids", "username", "email", "organization_id"):
            values = getattr(self, name)
            if values is not None:
                parts.append(_any(u["id" if name == "ids" else name], values))
        if self.is_active is not None:
            parts.append(u.is_active.is_(self.is_active))
        if self.is_admin is not None:
            parts.append(u.is_admin.is_(self.is_admin))
        if not self.include_deleted:
            parts.append(u.deleted_at.is_(None))
        return sa.and_(*parts) if parts else sa.true()


class OrganizationFilter(_Filter):
    """Which organizations; soft-deleted ones only with ``include_deleted``.

    Example:
        >>> OrganizationFilter(slug="acme").slug
        ['acme']
    """

    ids: list[str] | None = None
    slug: list[str] | None = None
    include_deleted: bool = False

    def clause(self) -> ColumnElement[bool]:
        """The WHERE expression over ``organizations``.

        Example:
            >>> print(OrganizationFilter(slug="demo-acme").clause().compile(compile_kwargs={"literal_binds": True}))
            organizations.slug = ANY (ARRAY['demo-acme']) AND organizations.deleted_at IS NULL
        """
        o = ORGANIZATIONS.c
        parts: list[ColumnElement[bool]] = []
        if self.ids is not None:
            parts.append(_any(o.id, self.ids))
        if self.slug is not None:
            parts.append(_any(o.slug, self.slug))
        if not self.include_deleted:
            parts.append(o.deleted_at.is_(None))
        return sa.and_(*parts) if parts else sa.true()


class AuditFilter(_Filter):
    """Which audit log entries: table, row, action, actor, organization, time window.

    Example:
        >>> AuditFilter(table_name="users", action="UPDATE").action
        ['UPDATE']
    """

    table_name: list[AuditedTableName] | None = None
    row_id: list[str] | None = None
    action: list[AuditActionName] | None = None
    actor: list[str] | None = None
    organization_id: list[str] | None = None
    since: datetime | None = None
    until: datetime | None = None

    _utc = field_validator("since", "until", mode="before")(lambda cls, v: to_utc(v))

    def clause(self) -> ColumnElement[bool]:
        """The WHERE expression over ``audit_log``.

        Example:
            >>> where = AuditFilter(table_name="users", action="UPDATE").clause()
            >>> print(where.compile(compile_kwargs={"literal_binds": True}))
            audit_log.table_name = ANY (ARRAY['users']) AND audit_log.action = ANY (ARRAY['UPDATE'])
        """
        a = AUDIT_LOG.c
        parts: list[ColumnElement[bool]] = []
        for name in ("table_name", "row_id", "action", "actor", "organization_id"):
            values = getattr(self, name)
            if values is not None:
                parts.append(_any(a[name], values))
        if self.since is not None:
            parts.append(a.occurred_at >= self.since)
        if self.until is not None:
            parts.append(a.occurred_at < self.until)
        return sa.and_(*parts) if parts else sa.true()


_F = TypeVar("_F", bound=_Filter)


def coerce_filter(cls: type[_F], filter: _F | None = None, /, **fields: Any) -> _F:
    """Build a filter from an existing one and/or keyword fields, as a flowscope error on bad input.

    Example:
        >>> coerce_filter(ExecutionFilter, status="failed").status
        ['failed']
    """
    from pydantic import ValidationError as PydanticValidationError

    from .errors import ValidationError

    fields = {k: v for k, v in fields.items() if v is not None}
    try:
        if filter is None:
            return cls(**fields)
        if not isinstance(filter, cls):
            raise ValidationError(f"expected a {cls.__name__}, got {type(filter).__name__}")
        return filter if not fields else cls(**{**filter.model_dump(exclude_unset=True), **fields})
    except PydanticValidationError as exc:
        errors: list[dict[str, Any]] = [
            {"loc": tuple(e["loc"]), "msg": e["msg"], "index": None} for e in exc.errors()
        ]
        lines = "; ".join(".".join(map(str, e["loc"])) + f": {e['msg']}" for e in errors)
        raise ValidationError(f"invalid {cls.__name__}: {lines}", errors=errors) from None
