"""flowscope: read, write and analyse a workflow-orchestration PostgreSQL database.

Example:
    >>> import flowscope
    >>> client = flowscope.connect(url)    # without a URL: the embedded PostgreSQL
    >>> client.workflows.count()
    200
    >>> client.analytics.status_breakdown()[["completed", "failed", "total"]]
       completed  failed  total
    0       1897      93   2000
    >>> client.close()
"""

from __future__ import annotations

import typing

from ._client import Client, connect
from .errors import (
    AccountLockedError,
    AuthenticationError,
    CommitUnknownError,
    ConfigurationError,
    ConflictError,
    ConnectionFailedError,
    DatabaseError,
    FlowscopeError,
    FlowscopeWarning,
    NotFoundError,
    PermissionDeniedError,
    QueryTimeoutError,
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

if typing.TYPE_CHECKING:
    from ._embedded import temporary_data_dir
    from ._ingest import IngestResult, ingest
    from ._maintenance import MaintenanceReport
    from ._resources._page import Page
    from ._retention import PruneReport
    from .analytics import Analytics

__version__ = "0.1.0"

# Imported on first use, so `import flowscope` for a script that only exports or reads does
# not load the analytics, ingest and maintenance modules (each client resource is lazy too).
_LAZY = {
    "Analytics": ".analytics",
    "IngestResult": "._ingest",
    "MaintenanceReport": "._maintenance",
    "Page": "._resources._page",
    "PruneReport": "._retention",
    "ingest": "._ingest",
    "temporary_data_dir": "._embedded",
}


def __getattr__(name: str) -> typing.Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'flowscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AccountLockedError",
    "Analytics",
    "AuditFilter",
    "AuditLogEntryPublic",
    "AuthenticationError",
    "Client",
    "CommitUnknownError",
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
    "QueryTimeoutError",
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
    "temporary_data_dir",
]
