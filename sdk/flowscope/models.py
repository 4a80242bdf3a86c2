"""The flowscope schema as SQLModel classes.

Phase 1 of ``schema-design.md`` (``workflows``, ``executions``, ``users``) is
matched column for column: types, lengths, nullability, server defaults, named
CHECK constraints, the cascading foreign key and every index (GIN, partial and
the full-text expression index). Phase 2 adds ``organizations`` and
``audit_log``. Helper functions, triggers, row-level security and grants live
in the Alembic revisions (``migrations/versions``), which create the schema;
``alembic check`` keeps these classes and the revisions in agreement.

Python attribute ``metadata_`` maps to the database column ``metadata`` (the
name ``metadata`` is reserved by SQLAlchemy's declarative classes); frames and
exports use the database name.

Example:
    >>> from flowscope.models import Execution, Workflow
    >>> Workflow.__tablename__
    'workflows'
    >>> str(Execution.__table__.c.duration_seconds.type)
    'NUMERIC(10, 3)'
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import Field, SQLModel

__all__ = [
    "AUDIT_LOG",
    "EXECUTIONS",
    "EXECUTION_STATUSES",
    "FAILED_EXECUTION_STATUSES",
    "ORGANIZATIONS",
    "SECRET_COLUMNS",
    "TERMINAL_EXECUTION_STATUSES",
    "USERS",
    "WORKFLOWS",
    "WORKFLOW_STATUSES",
    "AuditAction",
    "AuditLogEntry",
    "Execution",
    "ExecutionStatus",
    "Organization",
    "User",
    "Workflow",
    "WorkflowStatus",
]


class WorkflowStatus(StrEnum):
    """The statuses of a workflow: the ``valid_status`` CHECK, the input Literal and the
    filter values all come from here."""

    DRAFT = "draft"
    ACTIVE = "active"
    ARCHIVED = "archived"


class ExecutionStatus(StrEnum):
    """The statuses of an execution (``valid_execution_status``), in lifecycle order."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"


class AuditAction(StrEnum):
    """What an audit log entry records (``valid_audit_action``)."""

    INSERT = "INSERT"
    UPDATE = "UPDATE"
    DELETE = "DELETE"


def _values(*members: StrEnum) -> tuple[str, ...]:
    return tuple(m.value for m in members)


WORKFLOW_STATUSES = _values(*WorkflowStatus)
EXECUTION_STATUSES = _values(*ExecutionStatus)
#: an execution in one of these has ended (``completed_at`` is set)
TERMINAL_EXECUTION_STATUSES = _values(
    ExecutionStatus.COMPLETED,
    ExecutionStatus.FAILED,
    ExecutionStatus.CANCELLED,
    ExecutionStatus.TIMEOUT,
)
#: an execution in one of these failed (what failure rates count)
FAILED_EXECUTION_STATUSES = _values(ExecutionStatus.FAILED, ExecutionStatus.TIMEOUT)
#: columns that never leave the database (reads, exports, mirrors, audit)
SECRET_COLUMNS: dict[str, frozenset[str]] = {"users": frozenset({"password_hash"})}


def _one_of(column: str, enum: type[StrEnum]) -> str:
    """The CHECK text ``column IN ('a', 'b')`` for an enum's values."""
    return f"{column} IN ({', '.join(repr(m.value) for m in enum)})"


_NOW = sa.text("CURRENT_TIMESTAMP")
_TZ = sa.DateTime(timezone=True)


def _created_at() -> Any:
    return Field(
        default=None, sa_type=_TZ, nullable=False, sa_column_kwargs={"server_default": _NOW}
    )


def _ts() -> Any:
    return Field(default=None, sa_type=_TZ, nullable=True)


def _jsonb_object_default(nullable: bool = True) -> Any:
    return Field(
        default=None,
        sa_type=postgresql.JSONB,
        nullable=nullable,
        sa_column_kwargs={"name": "metadata", "server_default": sa.text("'{}'::jsonb")},
    )


class Workflow(SQLModel, table=True):
    """A workflow definition: a JSONB graph of ``nodes`` and ``edges``."""

    __tablename__ = "workflows"
    __table_args__ = (
        sa.CheckConstraint(_one_of("status", WorkflowStatus), name="valid_status"),
        sa.CheckConstraint("jsonb_typeof(nodes) = 'array'", name="valid_nodes"),
        sa.CheckConstraint("jsonb_typeof(edges) = 'array'", name="valid_edges"),
        sa.Index("idx_workflows_owner", "owner", postgresql_where=sa.text("deleted_at IS NULL")),
        sa.Index(
            "idx_workflows_org", "organization_id", postgresql_where=sa.text("deleted_at IS NULL")
        ),
        sa.Index("idx_workflows_status", "status", postgresql_where=sa.text("deleted_at IS NULL")),
        sa.Index("idx_workflows_created", sa.text("created_at DESC")),
        sa.Index("idx_workflows_tags", "tags", postgresql_using="gin"),
        sa.Index("idx_workflows_metadata", "metadata", postgresql_using="gin"),
        sa.Index(
            "idx_workflows_search",
            # the spec's expression, written as PostgreSQL normalises it so autogenerate agrees
            sa.text(
                "to_tsvector('english'::regconfig, "
                "(name::text || ' '::text) || COALESCE(description, ''::text))"
            ),
            postgresql_using="gin",
            postgresql_where=sa.text("deleted_at IS NULL"),
        ),
    )

    id: str = Field(primary_key=True, max_length=255)
    name: str = Field(max_length=255)
    description: str | None = Field(default=None, sa_type=sa.Text)
    version: int = Field(
        default=None,
        sa_type=sa.Integer,
        nullable=False,
        sa_column_kwargs={"server_default": sa.text("1")},
    )
    owner: str = Field(max_length=255)
    organization_id: str | None = Field(
        default=None, max_length=255, foreign_key="organizations.id", ondelete="RESTRICT"
    )
    nodes: list[Any] = Field(sa_type=postgresql.JSONB, nullable=False)
    edges: list[Any] = Field(sa_type=postgresql.JSONB, nullable=False)
    metadata_: dict[str, Any] | None = _jsonb_object_default()
    tags: list[str] | None = Field(
        default=None,
        sa_type=postgresql.ARRAY(sa.Text),
        sa_column_kwargs={"server_default": sa.text("'{}'::text[]")},
    )
    status: str | None = Field(
        default=None,
        sa_type=sa.String(50),
        sa_column_kwargs={"server_default": sa.text("'draft'::character varying")},
    )
    is_public: bool | None = Field(
        default=None, sa_type=sa.Boolean, sa_column_kwargs={"server_default": sa.false()}
    )
    created_at: datetime = _created_at()
    updated_at: datetime = _created_at()
    created_by: str = Field(max_length=255)
    updated_by: str = Field(max_length=255)
    deleted_at: datetime | None = _ts()


class Execution(SQLModel, table=True):
    """One run of a workflow."""

    __tablename__ = "executions"
    __table_args__ = (
        sa.CheckConstraint(_one_of("status", ExecutionStatus), name="valid_execution_status"),
        sa.CheckConstraint("jsonb_typeof(parameters) = 'object'", name="valid_parameters"),
        sa.CheckConstraint(
            "duration_seconds IS NULL OR duration_seconds >= 0", name="valid_duration"
        ),
        sa.Index("idx_executions_workflow", "workflow_id"),
        sa.Index("idx_executions_owner", "owner"),
        sa.Index("idx_executions_status", "status"),
        sa.Index("idx_executions_created", sa.text("created_at DESC")),
        sa.Index(
            "idx_executions_trace", "trace_id", postgresql_where=sa.text("trace_id IS NOT NULL")
        ),
        sa.Index(
            "idx_executions_workflow_status", "workflow_id", "status", sa.text("created_at DESC")
        ),
        # phase 2: tenancy filters and per-organization analytics
        sa.Index("idx_executions_org", "organization_id", sa.text("created_at DESC")),
        # phase 3 (revision 0005): keyset pages, analytics ranges, pruning at scale
        sa.Index("idx_executions_created_id", "created_at", "id", postgresql_include=["status"]),
        sa.Index("idx_executions_status_created_id", "status", "created_at", "id"),
        sa.Index("idx_executions_org_created_id", "organization_id", "created_at", "id"),
        sa.Index("idx_executions_workflow_created_id", "workflow_id", "created_at", "id"),
    )

    id: str = Field(primary_key=True, max_length=255)
    workflow_id: str = Field(max_length=255, foreign_key="workflows.id", ondelete="CASCADE")
    owner: str = Field(max_length=255)
    organization_id: str | None = Field(
        default=None, max_length=255, foreign_key="organizations.id", ondelete="RESTRICT"
    )
    status: str = Field(
        default=None,
        sa_type=sa.String(50),
        nullable=False,
        sa_column_kwargs={"server_default": sa.text("'queued'::character varying")},
    )
    parameters: dict[str, Any] | None = Field(
        default=None,
        sa_type=postgresql.JSONB,
        sa_column_kwargs={"server_default": sa.text("'{}'::jsonb")},
    )
    result: Any | None = Field(default=None, sa_type=postgresql.JSONB)
    error: Any | None = Field(default=None, sa_type=postgresql.JSONB)
    started_at: datetime | None = _ts()
    completed_at: datetime | None = _ts()
    duration_seconds: Decimal | None = Field(default=None, sa_type=sa.Numeric(10, 3))
    current_step: str | None = Field(default=None, max_length=255)
    steps_completed: int | None = Field(
        default=None, sa_type=sa.Integer, sa_column_kwargs={"server_default": sa.text("0")}
    )
    steps_total: int | None = Field(
        default=None, sa_type=sa.Integer, sa_column_kwargs={"server_default": sa.text("0")}
    )
    metadata_: dict[str, Any] | None = _jsonb_object_default()
    trace_id: str | None = Field(default=None, max_length=255)
    created_at: datetime = _created_at()
    updated_at: datetime = _created_at()


class User(SQLModel, table=True):
    """A user account. ``password_hash`` never leaves this class (see ``UserPublic``)."""

    __tablename__ = "users"
    __table_args__ = (
        sa.Index("idx_users_username", "username", postgresql_where=sa.text("deleted_at IS NULL")),
        sa.Index("idx_users_email", "email", postgresql_where=sa.text("deleted_at IS NULL")),
        sa.Index(
            "idx_users_org", "organization_id", postgresql_where=sa.text("deleted_at IS NULL")
        ),
        sa.Index("idx_users_active", "is_active", postgresql_where=sa.text("deleted_at IS NULL")),
    )

    id: str = Field(primary_key=True, max_length=255)
    username: str = Field(max_length=255, unique=True)
    email: str = Field(max_length=255, unique=True)
    password_hash: str = Field(max_length=255, repr=False)
    full_name: str | None = Field(default=None, max_length=255)
    avatar_url: str | None = Field(default=None, sa_type=sa.Text)
    organization_id: str | None = Field(
        default=None, max_length=255, foreign_key="organizations.id", ondelete="RESTRICT"
    )
    is_active: bool | None = Field(
        default=None, sa_type=sa.Boolean, sa_column_kwargs={"server_default": sa.true()}
    )
    is_admin: bool | None = Field(
        default=None, sa_type=sa.Boolean, sa_column_kwargs={"server_default": sa.false()}
    )
    email_verified: bool | None = Field(
        default=None, sa_type=sa.Boolean, sa_column_kwargs={"server_default": sa.false()}
    )
    scopes: list[str] | None = Field(
        default=None,
        sa_type=postgresql.JSONB,
        sa_column_kwargs={
            "server_default": sa.text('\'["workflow:read", "workflow:execute"]\'::jsonb')
        },
    )
    last_login: datetime | None = _ts()
    password_changed_at: datetime | None = _ts()
    failed_login_attempts: int | None = Field(
        default=None, sa_type=sa.Integer, sa_column_kwargs={"server_default": sa.text("0")}
    )
    locked_until: datetime | None = _ts()
    created_at: datetime = _created_at()
    updated_at: datetime = _created_at()
    deleted_at: datetime | None = _ts()


class Organization(SQLModel, table=True):
    """A tenant (spec phase 2). Rows of the other tables belong to one by ``organization_id``."""

    __tablename__ = "organizations"
    __table_args__ = (
        sa.CheckConstraint("jsonb_typeof(settings) = 'object'", name="valid_settings"),
    )

    id: str = Field(primary_key=True, max_length=255)
    name: str = Field(max_length=255)
    slug: str = Field(max_length=255, unique=True)
    settings: dict[str, Any] = Field(
        default=None,
        sa_type=postgresql.JSONB,
        nullable=False,
        sa_column_kwargs={"server_default": sa.text("'{}'::jsonb")},
    )
    created_at: datetime = _created_at()
    updated_at: datetime = _created_at()
    deleted_at: datetime | None = _ts()


class AuditLogEntry(SQLModel, table=True):
    """One audited change (spec phase 2), written by statement-level triggers.

    ``changes`` holds the new row for INSERT, the old row for DELETE and
    ``{column: {"old": ..., "new": ...}}`` of the changed columns for UPDATE;
    ``password_hash`` is always ``"[redacted]"``.

    Phase 3: the table is range-partitioned by month on ``occurred_at``
    (partitions ``audit_log_YYYY_MM`` and ``audit_log_default``, managed by
    revision 0004 and ``client.maintenance``), so the primary key is
    ``(id, occurred_at)``.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        sa.CheckConstraint(_one_of("action", AuditAction), name="valid_audit_action"),
        sa.Index("idx_audit_log_row", "table_name", "row_id", "occurred_at"),
        sa.Index("idx_audit_log_occurred", "occurred_at"),
        sa.Index("idx_audit_log_org", "organization_id", "occurred_at"),
        # revision 0008: the change feed of mirrors and incremental exports (flowscope._changes)
        sa.Index("idx_audit_log_transaction", "transaction_id"),
        {"postgresql_partition_by": "RANGE (occurred_at)"},
    )

    id: int | None = Field(
        default=None,
        sa_type=sa.BigInteger,
        primary_key=True,
        sa_column_args=[sa.Identity(always=True)],
    )
    occurred_at: datetime = Field(
        default=None,
        sa_type=_TZ,
        primary_key=True,
        nullable=False,
        sa_column_kwargs={"server_default": _NOW},
    )
    table_name: str = Field(max_length=63)
    row_id: str = Field(max_length=255)
    action: str = Field(max_length=10)
    actor: str | None = Field(default=None, max_length=255)
    organization_id: str | None = Field(default=None, max_length=255)
    changes: dict[str, Any] = Field(
        default=None,
        sa_type=postgresql.JSONB,
        nullable=False,
        sa_column_kwargs={"server_default": sa.text("'{}'::jsonb")},
    )
    transaction_id: int = Field(
        default=None,
        sa_type=sa.BigInteger,
        nullable=False,
        sa_column_kwargs={"server_default": sa.text("txid_current()")},
    )


# Core tables, for query builders (typed handles on the classes' ``__table__``).
WORKFLOWS: sa.Table = Workflow.__table__  # type: ignore[attr-defined]
EXECUTIONS: sa.Table = Execution.__table__  # type: ignore[attr-defined]
USERS: sa.Table = User.__table__  # type: ignore[attr-defined]
ORGANIZATIONS: sa.Table = Organization.__table__  # type: ignore[attr-defined]
AUDIT_LOG: sa.Table = AuditLogEntry.__table__  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------
# Models the client takes and returns (no tables): XBase / XCreate / XUpdate / XPublic.
#
# They are pydantic models (SQLModel reserves the attribute name ``metadata``), so the
# JSONB column ``metadata`` is the field ``metadata`` here; ``metadata_=`` is accepted as
# an alias on input and ``.metadata_`` is a read-only alias on the public models.
# Validation mirrors the database: lengths <= 255, status enums, JSON arrays/objects,
# non-negative counters and durations, email shape; strings may not hold NUL bytes or
# lone surrogates and JSON numbers must be finite (PostgreSQL refuses both).
# ---------------------------------------------------------------------------------------

import math  # noqa: E402
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal, TypeAlias  # noqa: E402

from pydantic import (  # noqa: E402
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    EmailStr,
    JsonValue,
    StringConstraints,
    model_validator,
)
from pydantic import Field as PField  # noqa: E402

__all__ += [
    "AuditLogEntryPublic",
    "ExecutionBase",
    "ExecutionCreate",
    "ExecutionPublic",
    "ExecutionUpdate",
    "OrganizationBase",
    "OrganizationCreate",
    "OrganizationPublic",
    "OrganizationUpdate",
    "UserBase",
    "UserCreate",
    "UserPublic",
    "UserUpdate",
    "WorkflowBase",
    "WorkflowCreate",
    "WorkflowPublic",
    "WorkflowUpdate",
    "new_id",
]

ID_PREFIXES = {
    "workflows": "wf",
    "executions": "ex",
    "users": "usr",
    "organizations": "org",
}

INT4_MAX = 2_147_483_647

Str255 = Annotated[str, StringConstraints(max_length=255)]
NonEmpty255 = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=255)]


def _no_at(value: str) -> str:
    if "@" in value:
        raise ValueError(
            "a username cannot contain '@': a log-in with '@' is matched against emails only"
        )
    return value


#: A username: never an email address (``authenticate("x@y")`` looks at emails only).
Username = Annotated[str, StringConstraints(min_length=1, max_length=255), AfterValidator(_no_at)]
Slug = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[a-z0-9][a-z0-9_-]*$")
]
Scope = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
]
Count = Annotated[int, PField(ge=0, le=INT4_MAX)]
JsonObject = dict[str, JsonValue]
JsonArray = list[JsonValue]
if TYPE_CHECKING:  # the Literals are made from the enums, which a type checker cannot follow
    WorkflowStatusName: TypeAlias = str
    ExecutionStatusName: TypeAlias = str
    AuditActionName: TypeAlias = str
else:
    WorkflowStatusName = Literal[WORKFLOW_STATUSES]
    ExecutionStatusName = Literal[EXECUTION_STATUSES]
    AuditActionName = Literal[_values(*AuditAction)]


def new_id(table: str) -> str:
    """A new id for a row of ``table``: a readable prefix and a ULID (sortable by creation time).

    Example:
        >>> new_id("workflows").startswith("wf_") and len(new_id("workflows")) == 29
        True
    """
    from ulid import ULID

    return f"{ID_PREFIXES[table]}_{ULID()}"


def new_ids(table: str, n: int) -> list[str]:
    """``n`` new ids for rows of ``table`` at once, as :func:`new_id` makes them (for bulk loads).

    Example:
        >>> ids = new_ids("executions", 3)
        >>> len(set(ids)) == 3 and all(i.startswith("ex_") and len(i) == 29 for i in ids)
        True
    """
    import base64
    import os
    import time

    crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    millis = time.time_ns() // 1_000_000 & ((1 << 48) - 1)
    stamp = "".join(crockford[(millis >> (5 * (9 - k))) & 31] for k in range(10))
    # 80 random bits an id: 10 bytes are 16 base32 characters, re-lettered to Crockford's
    letters = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", crockford.encode())
    randomness = base64.b32encode(os.urandom(10 * n)).translate(letters).decode()
    prefix = f"{ID_PREFIXES[table]}_{stamp}"
    return [prefix + randomness[i : i + 16] for i in range(0, 16 * n, 16)]


def _check_storable(value: Any, where: str = "value") -> None:
    """Refuse what PostgreSQL cannot store: NUL bytes, lone surrogates, NaN/Infinity in JSON."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{where}: text may not contain NUL (\\x00) characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where}: text is not valid Unicode (lone surrogate)") from None
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: numbers must be finite (no NaN or Infinity)")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_storable(k, where)
            _check_storable(v, where)
    elif isinstance(value, list | tuple):
        for v in value:
            _check_storable(v, where)


class _In(BaseModel):
    """Input models: unknown fields are errors, every value must be storable."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)

    @model_validator(mode="after")
    def _storable(self) -> Any:
        for name in type(self).model_fields:
            _check_storable(getattr(self, name), name)
        return self

    def values(self) -> dict[str, Any]:
        """The fields that were set, keyed by database column name."""
        return self.model_dump(exclude_unset=True)


class _Out(BaseModel):
    """Public models: built from database rows; extra columns are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    @property
    def metadata_(self) -> Any:
        """Alias of ``metadata`` (the tables' Python attribute name)."""
        return getattr(self, "metadata", None)

    def _repr_html_(self) -> str:
        """Jupyter: one field per row, long values (graphs, JSON) summarised."""
        from ._display import html_record

        return html_record(type(self).__name__, self.model_dump())


_META = PField(default=None, validation_alias=AliasChoices("metadata", "metadata_"))


# -- workflows -----------------------------------------------------------------------------
class WorkflowBase(_In):
    """Fields a caller may give for a workflow."""

    name: NonEmpty255
    description: str | None = None
    owner: NonEmpty255
    organization_id: Id | None = None
    nodes: JsonArray
    edges: JsonArray
    metadata: JsonObject | None = _META
    tags: list[str] | None = None
    status: WorkflowStatusName | None = None
    is_public: bool | None = None


class WorkflowCreate(WorkflowBase):
    """A new workflow. ``owner``/``created_by`` default to the client's user.

    Example:
        >>> WorkflowCreate(name="etl", owner="ana", nodes=[], edges=[]).status is None
        True
    """

    id: Id | None = None
    owner: NonEmpty255 | None = None  # type: ignore[assignment]
    nodes: JsonArray = PField(default_factory=list)
    edges: JsonArray = PField(default_factory=list)
    created_by: NonEmpty255 | None = None
    updated_by: NonEmpty255 | None = None


class WorkflowUpdate(_In):
    """Changes to a workflow (every field optional; only the given ones change)."""

    name: NonEmpty255 | None = None
    description: str | None = None
    owner: NonEmpty255 | None = None
    organization_id: Id | None = None
    nodes: JsonArray | None = None
    edges: JsonArray | None = None
    metadata: JsonObject | None = _META
    tags: list[str] | None = None
    status: WorkflowStatusName | None = None
    is_public: bool | None = None
    updated_by: NonEmpty255 | None = None


class WorkflowPublic(_Out):
    """A workflow as the client returns it."""

    id: str
    name: str
    description: str | None = None
    version: int
    owner: str
    organization_id: str | None = None
    nodes: list[Any]
    edges: list[Any]
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None
    status: str | None = None
    is_public: bool | None = None
    created_at: datetime
    updated_at: datetime
    created_by: str
    updated_by: str
    deleted_at: datetime | None = None


# -- executions ----------------------------------------------------------------------------
class ExecutionBase(_In):
    """Fields a caller may give for an execution."""

    workflow_id: Id
    owner: NonEmpty255 | None = None
    organization_id: Id | None = None
    parameters: JsonObject | None = None
    metadata: JsonObject | None = _META
    trace_id: Str255 | None = None


class ExecutionCreate(ExecutionBase):
    """A new (queued) execution of a workflow.

    ``owner`` defaults to the client's user, else the workflow's owner;
    ``organization_id`` is the workflow's. ``metadata.workflow_version`` is set to
    the workflow's version at creation.

    Example:
        >>> ExecutionCreate(workflow_id="wf_1", parameters={"n": 3}).parameters
        {'n': 3}
    """

    id: Id | None = None


class ExecutionUpdate(_In):
    """Changes to an execution outside its lifecycle (status changes go through the verbs)."""

    owner: NonEmpty255 | None = None
    metadata: JsonObject | None = _META
    trace_id: Str255 | None = None
    current_step: Str255 | None = None
    steps_completed: Count | None = None
    steps_total: Count | None = None


class ExecutionPublic(_Out):
    """An execution as the client returns it."""

    id: str
    workflow_id: str
    owner: str
    organization_id: str | None = None
    status: ExecutionStatusName
    parameters: dict[str, Any] | None = None
    result: Any | None = None
    error: Any | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_seconds: Decimal | None = PField(default=None, ge=0)
    current_step: str | None = None
    steps_completed: int | None = None
    steps_total: int | None = None
    metadata: dict[str, Any] | None = None
    trace_id: str | None = None
    created_at: datetime
    updated_at: datetime


# -- users ---------------------------------------------------------------------------------
class UserBase(_In):
    """Fields a caller may give for a user."""

    username: Username
    email: Annotated[EmailStr, StringConstraints(max_length=255)]
    full_name: Str255 | None = None
    avatar_url: str | None = None
    organization_id: Id | None = None
    is_active: bool | None = None
    is_admin: bool | None = None
    email_verified: bool | None = None
    scopes: list[Scope] | None = None


class UserCreate(UserBase):
    """A new user. ``password`` is hashed with argon2id; without one the account cannot log in.

    Example:
        >>> UserCreate(username="ana", email="ana@example.com", password="correct horse").username
        'ana'
    """

    id: Id | None = None
    password: Annotated[str, StringConstraints(min_length=8, max_length=1024)] | None = PField(
        default=None, repr=False
    )


class UserUpdate(_In):
    """Changes to a user. A ``password`` here is hashed like in :meth:`Users.set_password`."""

    username: Username | None = None
    email: Annotated[EmailStr, StringConstraints(max_length=255)] | None = None
    full_name: Str255 | None = None
    avatar_url: str | None = None
    organization_id: Id | None = None
    is_active: bool | None = None
    is_admin: bool | None = None
    email_verified: bool | None = None
    scopes: list[Scope] | None = None
    password: Annotated[str, StringConstraints(min_length=8, max_length=1024)] | None = PField(
        default=None, repr=False
    )


class UserPublic(_Out):
    """A user as the client returns it: never the password hash."""

    id: str
    username: str
    email: str
    full_name: str | None = None
    avatar_url: str | None = None
    organization_id: str | None = None
    is_active: bool | None = None
    is_admin: bool | None = None
    email_verified: bool | None = None
    scopes: list[str] | None = None
    last_login: datetime | None = None
    password_changed_at: datetime | None = None
    failed_login_attempts: int | None = None
    locked_until: datetime | None = None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None

    HIDDEN: ClassVar[frozenset[str]] = SECRET_COLUMNS["users"]


# -- organizations -------------------------------------------------------------------------
class OrganizationBase(_In):
    """Fields a caller may give for an organization."""

    name: NonEmpty255
    slug: Slug
    settings: JsonObject | None = None


class OrganizationCreate(OrganizationBase):
    """A new organization (tenant).

    Example:
        >>> OrganizationCreate(name="Acme", slug="acme").slug
        'acme'
    """

    id: Id | None = None


class OrganizationUpdate(_In):
    """Changes to an organization."""

    name: NonEmpty255 | None = None
    slug: Slug | None = None
    settings: JsonObject | None = None


class OrganizationPublic(_Out):
    """An organization as the client returns it."""

    id: str
    name: str
    slug: str
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None


# -- audit log -----------------------------------------------------------------------------
class AuditLogEntryPublic(_Out):
    """One audit log entry (see :class:`AuditLogEntry` for what ``changes`` holds)."""

    id: int
    occurred_at: datetime
    table_name: str
    row_id: str
    action: AuditActionName
    actor: str | None = None
    organization_id: str | None = None
    changes: dict[str, Any]
    transaction_id: int
