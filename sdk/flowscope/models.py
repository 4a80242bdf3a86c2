"""The flowscope schema as SQLModel classes: every column declared once.

Phase 1 of ``schema-design.md`` (``workflows``, ``executions``, ``users``) is
matched column for column: types, lengths, nullability, server defaults, named
CHECK constraints, the cascading foreign key and every index (GIN, partial and
the full-text expression index). Phase 2 adds ``organizations`` and
``audit_log``. Helper functions, triggers, row-level security and grants live
in the Alembic revisions (``migrations/versions``), which create the schema;
``alembic check`` keeps these classes and the revisions in agreement.

Each table follows SQLModel's own pattern, and each field is written once:

* ``XBase``: the fields a caller gives, with their column and their validation;
* ``_XState``: the columns the database or the lifecycle manages (timestamps, counters);
* ``X(..., table=True)``: the table, ``XBase`` + ``_XState`` + table-only columns;
* ``XCreate`` (``XBase`` as input), ``XUpdate`` (``XBase`` with every field optional,
  minus the ones that never change) and ``XPublic`` (``XBase`` + ``_XState``, read-only).

Statuses are :class:`~enum.StrEnum` s; their values make the CHECK constraints,
the input Literals and the filters' values. Failed and terminal statuses, secret
columns and id prefixes are defined here and nowhere else.

Python attribute ``metadata_`` maps to the database column ``metadata`` (the
name ``metadata`` is reserved by SQLAlchemy's declarative classes); input
models accept ``metadata=`` (or ``metadata_=``), dumps use the database name, and
the public models answer ``.metadata`` too.

Example:
    >>> from flowscope.models import Execution, Workflow
    >>> Workflow.__tablename__
    'workflows'
    >>> str(Execution.__table__.c.duration_seconds.type)
    'NUMERIC(10, 3)'
    >>> [c.name for c in Execution.__table__.c][:4]
    ['id', 'workflow_id', 'owner', 'organization_id']
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Optional, TypeAlias

import sqlalchemy as sa
from pydantic import (
    AfterValidator,
    AliasChoices,
    ConfigDict,
    EmailStr,
    JsonValue,
    StringConstraints,
    model_validator,
)
from pydantic.fields import FieldInfo
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
    "AuditLogEntryPublic",
    "Execution",
    "ExecutionBase",
    "ExecutionCreate",
    "ExecutionPublic",
    "ExecutionStatus",
    "ExecutionUpdate",
    "Organization",
    "OrganizationBase",
    "OrganizationCreate",
    "OrganizationPublic",
    "OrganizationUpdate",
    "User",
    "UserBase",
    "UserCreate",
    "UserPublic",
    "UserUpdate",
    "Workflow",
    "WorkflowBase",
    "WorkflowCreate",
    "WorkflowPublic",
    "WorkflowStatus",
    "WorkflowUpdate",
    "new_id",
]


# -- statuses and other facts, each written once ---------------------------------------------
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
#: the readable prefix of each table's ids (``wf_01J...``)
ID_PREFIXES = {"workflows": "wf", "executions": "ex", "users": "usr", "organizations": "org"}

if TYPE_CHECKING:  # the Literals are made from the enums, which a type checker cannot follow
    WorkflowStatusName: TypeAlias = str
    ExecutionStatusName: TypeAlias = str
    AuditActionName: TypeAlias = str
else:
    WorkflowStatusName = Literal[WORKFLOW_STATUSES]
    ExecutionStatusName = Literal[EXECUTION_STATUSES]
    AuditActionName = Literal[_values(*AuditAction)]


def _one_of(column: str, enum: type[StrEnum]) -> str:
    """The CHECK text ``column IN ('a', 'b')`` for an enum's values."""
    return f"{column} IN ({', '.join(repr(m.value) for m in enum)})"


def new_id(table: str) -> str:
    """A new id for a row of ``table``: a readable prefix and a ULID (sortable by creation time).

    Example:
        >>> new_id("workflows").startswith("wf_") and len(new_id("workflows")) == 29
        True
    """
    from ulid import ULID

    return f"{ID_PREFIXES[table]}_{ULID()}"


# -- value types: validation mirrors the database ---------------------------------------------
INT4_MAX = 2_147_483_647


def _no_at(value: str) -> str:
    if "@" in value:
        raise ValueError(
            "a username cannot contain '@': a log-in with '@' is matched against emails only"
        )
    return value


NonEmpty255 = Annotated[str, StringConstraints(min_length=1, max_length=255)]
#: A username: never an email address (``authenticate("x@y")`` looks at emails only).
Username = Annotated[str, StringConstraints(min_length=1, max_length=255), AfterValidator(_no_at)]
Email = Annotated[EmailStr, StringConstraints(max_length=255)]
Slug = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[a-z0-9][a-z0-9_-]*$")
]
Scope = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=1024)]
if TYPE_CHECKING:  # JSON is validated as JSON, and typed as what callers read from it
    JsonObject: TypeAlias = dict[str, Any]
    JsonArray: TypeAlias = list[Any]
else:
    JsonObject = dict[str, JsonValue]
    JsonArray = list[JsonValue]

_NOW = sa.text("CURRENT_TIMESTAMP")
_TZ = sa.DateTime(timezone=True)
_JSONB = postgresql.JSONB


def _str(*, required: bool = False, **kwargs: Any) -> Any:
    """A VARCHAR(255) column; ``required``: NOT NULL (the client may still fill it in)."""
    return Field(default=None, max_length=255, nullable=not required, **kwargs)


def _id() -> Any:
    return Field(default=None, primary_key=True, min_length=1, max_length=255)


def _server(sa_type: Any, default: str | Any, *, nullable: bool = True, **kwargs: Any) -> Any:
    """A column with a server default (``default``: SQL text or a SQLAlchemy element)."""
    server_default = sa.text(default) if isinstance(default, str) else default
    return Field(
        default=None,
        sa_type=sa_type,
        nullable=nullable,
        sa_column_kwargs={"server_default": server_default},
        **kwargs,
    )


def _ts(*, now: bool = False) -> Any:
    """A timestamptz: ``now``: NOT NULL DEFAULT CURRENT_TIMESTAMP."""
    return _server(_TZ, _NOW, nullable=False) if now else Field(default=None, sa_type=_TZ)


def _org() -> Any:
    return Field(
        default=None,
        min_length=1,
        max_length=255,
        foreign_key="organizations.id",
        ondelete="RESTRICT",
    )


def _metadata() -> Any:
    return Field(
        default=None,
        sa_type=_JSONB,
        sa_column_kwargs={"name": "metadata", "server_default": sa.text("'{}'::jsonb")},
        schema_extra={
            "validation_alias": AliasChoices("metadata", "metadata_"),
            "serialization_alias": "metadata",
        },
    )


# -- the three kinds of model ------------------------------------------------------------------
class _Model(SQLModel):
    """Every flowscope model: dumps use database column names (``metadata``)."""

    model_config = ConfigDict(  # type: ignore[assignment]
        serialize_by_alias=True, validate_by_name=True, validate_by_alias=True
    )


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


class _In(SQLModel):
    """Input models: unknown fields are errors, every value must be storable."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    @model_validator(mode="after")
    def _storable(self) -> Any:
        for name in type(self).model_fields:
            _check_storable(getattr(self, name), name)
        return self

    def values(self) -> dict[str, Any]:
        """The fields that were set, keyed by database column name."""
        return self.model_dump(exclude_unset=True)


class _Update(_In):
    """Changes to a row: the base's fields, each optional (only the given ones change),
    minus ``fixed``, the ones that never change after creation."""

    fixed: ClassVar[tuple[str, ...]] = ("id",)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        fields = {}
        for name, info in cls.__pydantic_fields__.items():
            if name in cls.fixed:
                continue
            optional = FieldInfo.merge_field_infos(info, default=None)
            optional.annotation = Optional[info.annotation]  # type: ignore[assignment]  # noqa: UP045
            fields[name] = optional
        cls.__pydantic_fields__ = fields
        cls.model_rebuild(force=True)


class _Out(SQLModel):
    """Public models: read from database rows (not validated again); extra columns are
    ignored, instances are frozen."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # type: ignore[assignment]

    @classmethod
    def from_row(cls, row: Any) -> Any:
        """An instance from a row mapping, trusting the database's types and constraints."""
        return cls.model_construct(**row)

    def _repr_html_(self) -> str:
        """Jupyter: one field per row, long values (graphs, JSON) summarised."""
        from ._display import html_record

        return html_record(type(self).__name__, self.model_dump())


class _MetadataAlias:
    @property
    def metadata(self) -> Any:
        """The ``metadata`` column (the field is ``metadata_``; SQLModel reserves the name)."""
        return self.metadata_  # type: ignore[attr-defined]


class _Stamped(_Model):
    created_at: datetime = _ts(now=True)
    updated_at: datetime = _ts(now=True)


class _SoftDeleted(_Stamped):
    deleted_at: datetime | None = _ts()


# -- workflows -----------------------------------------------------------------------------
class WorkflowBase(_Model):
    """The fields a caller gives for a workflow (``owner`` and ``created_by`` default to
    the client's user)."""

    id: str = _id()
    name: NonEmpty255 = Field(max_length=255)
    description: str | None = Field(default=None, sa_type=sa.Text)
    owner: str | None = _str(required=True, min_length=1)
    organization_id: str | None = _org()
    nodes: JsonArray = Field(default_factory=list, sa_type=_JSONB, nullable=False)
    edges: JsonArray = Field(default_factory=list, sa_type=_JSONB, nullable=False)
    metadata_: JsonObject | None = _metadata()
    tags: list[str] | None = _server(postgresql.ARRAY(sa.Text), "'{}'::text[]")
    status: WorkflowStatusName | None = _server(sa.String(50), "'draft'::character varying")
    is_public: bool | None = _server(sa.Boolean, sa.false())
    created_by: str | None = _str(required=True, min_length=1)
    updated_by: str | None = _str(required=True, min_length=1)


class _WorkflowState(_Model):
    version: int = _server(sa.Integer, "1", nullable=False)


class Workflow(_SoftDeleted, _WorkflowState, WorkflowBase, table=True):
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


class WorkflowCreate(WorkflowBase, _In):
    """A new workflow. ``owner``/``created_by`` default to the client's user.

    Example:
        >>> WorkflowCreate(name="etl", owner="ana", nodes=[], edges=[]).status is None
        True
    """


class WorkflowUpdate(WorkflowBase, _Update):
    """Changes to a workflow (every field optional; only the given ones change).

    Example:
        >>> WorkflowUpdate(status="active", metadata={"team": "data"}).values()
        {'metadata': {'team': 'data'}, 'status': 'active'}
    """

    fixed = ("id", "created_by")


class WorkflowPublic(_SoftDeleted, _WorkflowState, WorkflowBase, _MetadataAlias, _Out):  # type: ignore[override]
    """A workflow as the client returns it."""


# -- executions ----------------------------------------------------------------------------
class ExecutionBase(_Model):
    """The fields a caller gives for an execution."""

    id: str = _id()
    workflow_id: str = Field(
        min_length=1, max_length=255, foreign_key="workflows.id", ondelete="CASCADE"
    )
    owner: str | None = _str(required=True, min_length=1)
    organization_id: str | None = _org()
    parameters: JsonObject | None = _server(_JSONB, "'{}'::jsonb")
    metadata_: JsonObject | None = _metadata()
    trace_id: str | None = _str()
    current_step: str | None = _str()
    steps_completed: int | None = _server(sa.Integer, "0", ge=0, le=INT4_MAX)
    steps_total: int | None = _server(sa.Integer, "0", ge=0, le=INT4_MAX)


class _ExecutionState(_Model):
    status: ExecutionStatusName = _server(
        sa.String(50), "'queued'::character varying", nullable=False
    )
    result: Any | None = Field(default=None, sa_type=_JSONB)
    error: Any | None = Field(default=None, sa_type=_JSONB)
    started_at: datetime | None = _ts()
    completed_at: datetime | None = _ts()
    duration_seconds: Decimal | None = Field(default=None, sa_type=sa.Numeric(10, 3))


class Execution(_Stamped, _ExecutionState, ExecutionBase, table=True):
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


class ExecutionCreate(ExecutionBase, _In):
    """A new (queued) execution of a workflow.

    ``owner`` defaults to the client's user, else the workflow's owner;
    ``organization_id`` is the workflow's. ``metadata.workflow_version`` is set to
    the workflow's version at creation.

    Example:
        >>> ExecutionCreate(workflow_id="wf_1", parameters={"n": 3}).parameters
        {'n': 3}
    """


class ExecutionUpdate(ExecutionBase, _Update):
    """Changes to an execution outside its lifecycle (status changes go through the verbs).

    Example:
        >>> ExecutionUpdate(current_step="load", steps_completed=2).values()
        {'current_step': 'load', 'steps_completed': 2}
    """

    fixed = ("id", "workflow_id", "organization_id", "parameters")


class ExecutionPublic(_Stamped, _ExecutionState, ExecutionBase, _MetadataAlias, _Out):  # type: ignore[override]
    """An execution as the client returns it."""


# -- users ---------------------------------------------------------------------------------
class UserBase(_Model):
    """The fields a caller gives for a user (never a password hash)."""

    id: str = _id()
    username: Username = Field(max_length=255, unique=True)
    email: Email = Field(max_length=255, unique=True)
    full_name: str | None = _str()
    avatar_url: str | None = Field(default=None, sa_type=sa.Text)
    organization_id: str | None = _org()
    is_active: bool | None = _server(sa.Boolean, sa.true())
    is_admin: bool | None = _server(sa.Boolean, sa.false())
    email_verified: bool | None = _server(sa.Boolean, sa.false())
    scopes: list[Scope] | None = _server(_JSONB, '\'["workflow:read", "workflow:execute"]\'::jsonb')


class _UserState(_Model):
    last_login: datetime | None = _ts()
    password_changed_at: datetime | None = _ts()
    failed_login_attempts: int | None = _server(sa.Integer, "0")
    locked_until: datetime | None = _ts()


class User(_SoftDeleted, _UserState, UserBase, table=True):
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

    password_hash: str = Field(max_length=255, repr=False)


class _PasswordInput(SQLModel):
    password: Password | None = Field(default=None, repr=False)


class UserCreate(UserBase, _PasswordInput, _In):
    """A new user. ``password`` is hashed with argon2id; without one the account cannot log in.

    Example:
        >>> UserCreate(username="ana", email="ana@example.com", password="correct horse").username
        'ana'
    """


class UserUpdate(UserBase, _PasswordInput, _Update):
    """Changes to a user. A ``password`` here is hashed like in :meth:`Users.set_password`.

    Example:
        >>> sorted(UserUpdate(full_name="Ana B", password="correct horse").values())
        ['full_name', 'password']
    """


class UserPublic(_SoftDeleted, _UserState, UserBase, _Out):
    """A user as the client returns it: never the password hash."""

    HIDDEN: ClassVar[frozenset[str]] = SECRET_COLUMNS["users"]


# -- organizations -------------------------------------------------------------------------
class OrganizationBase(_Model):
    """The fields a caller gives for an organization (a tenant)."""

    id: str = _id()
    name: NonEmpty255 = Field(max_length=255)
    slug: Slug = Field(max_length=255, unique=True)
    settings: JsonObject | None = _server(_JSONB, "'{}'::jsonb", nullable=False)


class Organization(_SoftDeleted, OrganizationBase, table=True):
    """A tenant (spec phase 2). Rows of the other tables belong to one by ``organization_id``."""

    __tablename__ = "organizations"
    __table_args__ = (
        sa.CheckConstraint("jsonb_typeof(settings) = 'object'", name="valid_settings"),
    )


class OrganizationCreate(OrganizationBase, _In):
    """A new organization (tenant).

    Example:
        >>> OrganizationCreate(name="Acme", slug="acme").slug
        'acme'
    """


class OrganizationUpdate(OrganizationBase, _Update):
    """Changes to an organization.

    Example:
        >>> OrganizationUpdate(name="Acme Corp").values()
        {'name': 'Acme Corp'}
    """


class OrganizationPublic(_SoftDeleted, OrganizationBase, _Out):
    """An organization as the client returns it."""


# -- audit log -----------------------------------------------------------------------------
class _AuditLogRow(_Model):
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
    action: AuditActionName = Field(sa_type=sa.String(10))
    actor: str | None = _str()
    organization_id: str | None = _str()
    changes: dict[str, Any] = _server(_JSONB, "'{}'::jsonb", nullable=False)
    transaction_id: int = _server(sa.BigInteger, "txid_current()", nullable=False)


class AuditLogEntry(_AuditLogRow, table=True):
    """One audited change (spec phase 2), written by statement-level triggers.

    ``changes`` holds the new row for INSERT, the old row for DELETE and
    ``{column: {"old": ..., "new": ...}}`` of the changed columns for UPDATE;
    secret columns (``password_hash``) are always ``"[redacted]"``.

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


class AuditLogEntryPublic(_AuditLogRow, _Out):
    """One audit log entry (see :class:`AuditLogEntry` for what ``changes`` holds)."""


# Core tables, for query builders (typed handles on the classes' ``__table__``).
WORKFLOWS: sa.Table = Workflow.__table__  # type: ignore[attr-defined]
EXECUTIONS: sa.Table = Execution.__table__  # type: ignore[attr-defined]
USERS: sa.Table = User.__table__  # type: ignore[attr-defined]
ORGANIZATIONS: sa.Table = Organization.__table__  # type: ignore[attr-defined]
AUDIT_LOG: sa.Table = AuditLogEntry.__table__  # type: ignore[attr-defined]
