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

# The exception tree is small and always loaded; everything else is imported on first
# use (``flowscope.connect``, ``flowscope.WorkflowCreate``...), so that ``import
# flowscope`` costs milliseconds, not the half second of SQLAlchemy, SQLModel and pydantic.
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
    SourceChangedError,
    ValidationError,
)

if typing.TYPE_CHECKING:
    from ._client import Client, connect
    from ._embedded import temporary_data_dir
    from ._ingest import IngestResult, ingest
    from ._maintenance import MaintenanceReport
    from ._provenance import provenance
    from ._resources._page import Page
    from ._retention import PruneReport
    from .analytics import Analytics
    from .export import Export, ExportResult, arrow_schema, iter_batches, read_arrow, read_pandas
    from .filters import (
        AuditFilter,
        ExecutionFilter,
        OrganizationFilter,
        UserFilter,
        WorkflowFilter,
    )
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

# Where each lazily loaded name lives.
_LAZY = {
    "Analytics": ".analytics",
    "Client": "._client",
    "connect": "._client",
    "IngestResult": "._ingest",
    "MaintenanceReport": "._maintenance",
    "Page": "._resources._page",
    "PruneReport": "._retention",
    "provenance": "._provenance",
    "ingest": "._ingest",
    "temporary_data_dir": "._embedded",
    **dict.fromkeys(
        ("Export", "ExportResult", "arrow_schema", "iter_batches", "read_arrow", "read_pandas"),
        ".export",
    ),
    **dict.fromkeys(
        ("AuditFilter", "ExecutionFilter", "OrganizationFilter", "UserFilter", "WorkflowFilter"),
        ".filters",
    ),
    **dict.fromkeys(
        (
            "AuditLogEntryPublic",
            "ExecutionCreate",
            "ExecutionPublic",
            "ExecutionUpdate",
            "OrganizationCreate",
            "OrganizationPublic",
            "OrganizationUpdate",
            "UserCreate",
            "UserPublic",
            "UserUpdate",
            "WorkflowCreate",
            "WorkflowPublic",
            "WorkflowUpdate",
        ),
        ".models",
    ),
}


def __getattr__(name: str) -> typing.Any:
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("_"):  # a submodule: flowscope.models, flowscope.demo, ...
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
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
    "SourceChangedError",
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
    "provenance",
    "read_arrow",
    "read_pandas",
    "temporary_data_dir",
]
