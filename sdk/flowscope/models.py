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

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias

import sqlalchemy as sa
from pydantic import AliasChoices
from sqlalchemy.dialects import postgresql
from sqlmodel import Field, SQLModel

from ._modelkit import (
    INT4_MAX,
    JSONB,
    NOW,
    TZ,
    Email,
    In,
    JsonArray,
    JsonObject,
    MetadataAlias,
    Model,
    NonEmpty255,
    Out,
    Password,
    Scope,
    Slug,
    Update,
    Username,
    primary_id,
    server_default,
    timestamptz,
    varchar,
)

__all__ = [
    "AUDIT_LOG",
    "EXECUTIONS",
    "EXECUTION_STATUSES",
    "FAILED_EXECUTION_STATUSES",
    "ORGANIZATIONS",
    "SECRET_COLUMNS",
    "TABLES",
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
#: the tables whose changes the audit log records (revision 0002's triggers)
AUDITED_TABLES = ("workflows", "executions", "users", "organizations")
#: the readable prefix of each table's ids (``wf_01J...``)
ID_PREFIXES = {"workflows": "wf", "executions": "ex", "users": "usr", "organizations": "org"}

if TYPE_CHECKING:  # the Literals are made from the enums, which a type checker cannot follow
    AuditedTableName: TypeAlias = str
    WorkflowStatusName: TypeAlias = str
    ExecutionStatusName: TypeAlias = str
    AuditActionName: TypeAlias = str
else:
    WorkflowStatusName = Literal[WORKFLOW_STATUSES]
    ExecutionStatusName = Literal[EXECUTION_STATUSES]
    AuditActionName = Literal[_values(*AuditAction)]
    AuditedTableName = Literal[AUDITED_TABLES]


def _one_of(column: str, enum: type[StrEnum]) -> str:
    """The CHECK text ``column IN ('a', 'b')`` for an enum's values."""
    return f"{column} IN ({', '.join(repr(m.value) for m in enum)})"


def new_id(table: str) -> str:
    """A new id for a row of ``table``: a readable prefix and a ULID (sortable by creation time).

    Example:
        >>> new_id("workflows").startswith("wf_") and len(new_id("workflows")) == 29
        True
    """
    return new_ids(table, 1)[0]


def new_ids(table: str, n: int) -> list[str]:
    """``n`` new ids for rows of ``table`` at once, as :func:`new_id` makes them (for bulk
    loads): the prefix, then a ULID (48 bits of milliseconds, 80 random bits, Crockford's
    base32), the ids of one call sharing their millisecond.

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
        sa_type=JSONB,
        sa_column_kwargs={"name": "metadata", "server_default": sa.text("'{}'::jsonb")},
        schema_extra={
            "validation_alias": AliasChoices("metadata", "metadata_"),
            "serialization_alias": "metadata",
        },
    )


class _Stamped(Model):
    created_at: datetime = timestamptz(now=True)
    updated_at: datetime = timestamptz(now=True)


class _SoftDeleted(_Stamped):
    deleted_at: datetime | None = timestamptz()


# -- workflows -----------------------------------------------------------------------------
class WorkflowBase(Model):
    """The fields a caller gives for a workflow (``owner`` and ``created_by`` default to
    the client's user)."""

    id: str = primary_id()
    name: NonEmpty255 = Field(max_length=255)
    description: str | None = Field(default=None, sa_type=sa.Text)
    owner: str | None = varchar(required=True, min_length=1)
    organization_id: str | None = _org()
    nodes: JsonArray = Field(default_factory=list, sa_type=JSONB, nullable=False)
    edges: JsonArray = Field(default_factory=list, sa_type=JSONB, nullable=False)
    metadata_: JsonObject | None = _metadata()
    tags: list[str] | None = server_default(postgresql.ARRAY(sa.Text), "'{}'::text[]")
    status: WorkflowStatusName | None = server_default(sa.String(50), "'draft'::character varying")
    is_public: bool | None = server_default(sa.Boolean, sa.false())
    created_by: str | None = varchar(required=True, min_length=1)
    updated_by: str | None = varchar(required=True, min_length=1)


class _WorkflowState(Model):
    version: int = server_default(sa.Integer, "1", nullable=False)


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


class WorkflowCreate(WorkflowBase, In):
    """A new workflow. ``owner``/``created_by`` default to the client's user.

    Example:
        >>> WorkflowCreate(name="etl", owner="ana", nodes=[], edges=[]).status is None
        True
    """


class WorkflowUpdate(WorkflowBase, Update):
    """Changes to a workflow (every field optional; only the given ones change).

    Example:
        >>> WorkflowUpdate(status="active", metadata={"team": "data"}).values()
        {'metadata': {'team': 'data'}, 'status': 'active'}
    """

    fixed = ("id", "created_by")


class WorkflowPublic(_SoftDeleted, _WorkflowState, WorkflowBase, MetadataAlias, Out):  # type: ignore[override]
    """A workflow as the client returns it."""


# -- executions ----------------------------------------------------------------------------
class ExecutionBase(Model):
    """The fields a caller gives for an execution."""

    id: str = primary_id()
    workflow_id: str = Field(
        min_length=1, max_length=255, foreign_key="workflows.id", ondelete="CASCADE"
    )
    owner: str | None = varchar(required=True, min_length=1)
    organization_id: str | None = _org()
    parameters: JsonObject | None = server_default(JSONB, "'{}'::jsonb")
    metadata_: JsonObject | None = _metadata()
    trace_id: str | None = varchar()
    current_step: str | None = varchar()
    steps_completed: int | None = server_default(sa.Integer, "0", ge=0, le=INT4_MAX)
    steps_total: int | None = server_default(sa.Integer, "0", ge=0, le=INT4_MAX)


class _ExecutionState(Model):
    status: ExecutionStatusName = server_default(
        sa.String(50), "'queued'::character varying", nullable=False
    )
    result: Any | None = Field(default=None, sa_type=JSONB)
    error: Any | None = Field(default=None, sa_type=JSONB)
    started_at: datetime | None = timestamptz()
    completed_at: datetime | None = timestamptz()
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


class ExecutionCreate(ExecutionBase, In):
    """A new (queued) execution of a workflow.

    ``owner`` defaults to the client's user, else the workflow's owner;
    ``organization_id`` is the workflow's. ``metadata.workflow_version`` is set to
    the workflow's version at creation.

    Example:
        >>> ExecutionCreate(workflow_id="wf_1", parameters={"n": 3}).parameters
        {'n': 3}
    """


class ExecutionUpdate(ExecutionBase, Update):
    """Changes to an execution outside its lifecycle (status changes go through the verbs).

    Example:
        >>> ExecutionUpdate(current_step="load", steps_completed=2).values()
        {'current_step': 'load', 'steps_completed': 2}
    """

    fixed = ("id", "workflow_id", "organization_id", "parameters")


class ExecutionPublic(_Stamped, _ExecutionState, ExecutionBase, MetadataAlias, Out):  # type: ignore[override]
    """An execution as the client returns it."""


# -- users ---------------------------------------------------------------------------------
class UserBase(Model):
    """The fields a caller gives for a user (never a password hash)."""

    id: str = primary_id()
    username: Username = Field(max_length=255, unique=True)
    email: Email = Field(max_length=255, unique=True)
    full_name: str | None = varchar()
    avatar_url: str | None = Field(default=None, sa_type=sa.Text)
    organization_id: str | None = _org()
    is_active: bool | None = server_default(sa.Boolean, sa.true())
    is_admin: bool | None = server_default(sa.Boolean, sa.false())
    email_verified: bool | None = server_default(sa.Boolean, sa.false())
    scopes: list[Scope] | None = server_default(
        JSONB, '\'["workflow:read", "workflow:execute"]\'::jsonb'
    )


class _UserState(Model):
    last_login: datetime | None = timestamptz()
    password_changed_at: datetime | None = timestamptz()
    failed_login_attempts: int | None = server_default(sa.Integer, "0")
    locked_until: datetime | None = timestamptz()


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
        # emails are unique ignoring case (revision 0010): a case variant shadows no login
        sa.Index("users_email_lower_key", sa.text("lower(email)"), unique=True),
    )

    password_hash: str = Field(max_length=255, repr=False)


class _PasswordInput(SQLModel):
    password: Password | None = Field(default=None, repr=False)


class UserCreate(UserBase, _PasswordInput, In):
    """A new user. ``password`` is hashed with argon2id; without one the account cannot log in.

    Example:
        >>> UserCreate(username="ana", email="ana@example.com", password="correct horse").username
        'ana'
    """


class UserUpdate(UserBase, _PasswordInput, Update):
    """Changes to a user. A ``password`` here is hashed like in :meth:`Users.set_password`.

    Example:
        >>> sorted(UserUpdate(full_name="Ana B", password="correct horse").values())
        ['full_name', 'password']
    """


class UserPublic(_SoftDeleted, _UserState, UserBase, Out):
    """A user as the client returns it: never the password hash."""

    HIDDEN: ClassVar[frozenset[str]] = SECRET_COLUMNS["users"]


# -- organizations -------------------------------------------------------------------------
class OrganizationBase(Model):
    """The fields a caller gives for an organization (a tenant)."""

    id: str = primary_id()
    name: NonEmpty255 = Field(max_length=255)
    slug: Slug = Field(max_length=255, unique=True)
    settings: JsonObject | None = server_default(JSONB, "'{}'::jsonb", nullable=False)


class Organization(_SoftDeleted, OrganizationBase, table=True):
    """A tenant (spec phase 2). Rows of the other tables belong to one by ``organization_id``."""

    __tablename__ = "organizations"
    __table_args__ = (
        sa.CheckConstraint("jsonb_typeof(settings) = 'object'", name="valid_settings"),
    )


class OrganizationCreate(OrganizationBase, In):
    """A new organization (tenant).

    Example:
        >>> OrganizationCreate(name="Acme", slug="acme").slug
        'acme'
    """


class OrganizationUpdate(OrganizationBase, Update):
    """Changes to an organization.

    Example:
        >>> OrganizationUpdate(name="Acme Corp").values()
        {'name': 'Acme Corp'}
    """


class OrganizationPublic(_SoftDeleted, OrganizationBase, Out):
    """An organization as the client returns it."""


# -- audit log -----------------------------------------------------------------------------
class _AuditLogRow(Model):
    id: int | None = Field(
        default=None,
        sa_type=sa.BigInteger,
        primary_key=True,
        sa_column_args=[sa.Identity(always=True)],
    )
    occurred_at: datetime = Field(
        default=None,
        sa_type=TZ,
        primary_key=True,
        nullable=False,
        sa_column_kwargs={"server_default": NOW},
    )
    table_name: str = Field(max_length=63)
    row_id: str = Field(max_length=255)
    action: AuditActionName = Field(sa_type=sa.String(10))
    actor: str | None = varchar()
    organization_id: str | None = varchar()
    changes: dict[str, Any] = server_default(JSONB, "'{}'::jsonb", nullable=False)
    transaction_id: int = server_default(sa.BigInteger, "txid_current()", nullable=False)


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


class AuditLogEntryPublic(_AuditLogRow, Out):
    """One audit log entry (see :class:`AuditLogEntry` for what ``changes`` holds)."""


# Core tables, for query builders (typed handles on the classes' ``__table__``).
WORKFLOWS: sa.Table = Workflow.__table__  # type: ignore[attr-defined]
EXECUTIONS: sa.Table = Execution.__table__  # type: ignore[attr-defined]
USERS: sa.Table = User.__table__  # type: ignore[attr-defined]
ORGANIZATIONS: sa.Table = Organization.__table__  # type: ignore[attr-defined]
AUDIT_LOG: sa.Table = AuditLogEntry.__table__  # type: ignore[attr-defined]
#: every table by name
TABLES: dict[str, sa.Table] = {
    t.name: t for t in (WORKFLOWS, EXECUTIONS, USERS, ORGANIZATIONS, AUDIT_LOG)
}
