"""flowscope: read, write and analyse a workflow-orchestration PostgreSQL database.

Example:
    >>> import flowscope
    >>> client = flowscope.connect()          # embedded PostgreSQL  # doctest: +SKIP
    >>> client.workflows.count()                                      # doctest: +SKIP
    0
"""

from __future__ import annotations

from ._client import Client, connect
from ._ingest import IngestResult, ingest
from ._maintenance import MaintenanceReport
from ._resources._base import Page
from ._retention import PruneReport
from .analytics import Analytics
from .errors import (
    AccountLockedError,
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    ConnectionFailedError,
    DatabaseError,
    FlowscopeError,
    FlowscopeWarning,
    NotFoundError,
    PermissionDeniedError,
    ReplicaUnavailableWarning,
    SchemaOutOfDateError,
    ValidationError,
)
from .export import Export, ExportResult, arrow_schema, iter_batches, read_arrow, read_pandas
from .filters import AuditFilter, ExecutionFilter, OrganizationFilter, UserFilter, WorkflowFilter
from .models import (
    AuditLogEntryPublic,
    ExecutionCreate,
    ExecutionPublic,
    ExecutionUpdate,
    OrganizationCreate,
    OrganizationPublic,
    OrganizationUpdate,
    UserCreate,
    UserPublic,
    UserUpdate,
    WorkflowCreate,
    WorkflowPublic,
    WorkflowUpdate,
)

__version__ = "0.1.0"

__all__ = [
    "AccountLockedError",
    "Analytics",
    "AuditFilter",
    "AuditLogEntryPublic",
    "AuthenticationError",
    "Client",
    "ConfigurationError",
    "ConflictError",
    "ConnectionFailedError",
    "DatabaseError",
    "ExecutionCreate",
    "ExecutionFilter",
    "ExecutionPublic",
    "ExecutionUpdate",
    "Export",
    "ExportResult",
    "FlowscopeError",
    "FlowscopeWarning",
    "IngestResult",
    "MaintenanceReport",
    "NotFoundError",
    "OrganizationCreate",
    "OrganizationFilter",
    "OrganizationPublic",
    "OrganizationUpdate",
    "Page",
    "PermissionDeniedError",
    "PruneReport",
    "ReplicaUnavailableWarning",
    "SchemaOutOfDateError",
    "UserCreate",
    "UserFilter",
    "UserPublic",
    "UserUpdate",
    "ValidationError",
    "WorkflowCreate",
    "WorkflowFilter",
    "WorkflowPublic",
    "WorkflowUpdate",
    "__version__",
    "arrow_schema",
    "connect",
    "ingest",
    "iter_batches",
    "read_arrow",
    "read_pandas",
]
