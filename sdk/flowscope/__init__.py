"""flowscope: read, write and analyse a workflow-orchestration PostgreSQL database.

Example:
    >>> import flowscope
    >>> client = flowscope.connect()          # embedded PostgreSQL  # doctest: +SKIP
    >>> client.workflows.count()                                      # doctest: +SKIP
    0
"""

from __future__ import annotations

from ._client import Client, connect
from ._maintenance import MaintenanceReport
from ._retention import PruneReport
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
from .filters import ExecutionFilter, WorkflowFilter

__version__ = "0.1.0"

__all__ = [
    "AccountLockedError",
    "AuthenticationError",
    "Client",
    "ConfigurationError",
    "ConflictError",
    "ConnectionFailedError",
    "DatabaseError",
    "ExecutionFilter",
    "FlowscopeError",
    "FlowscopeWarning",
    "MaintenanceReport",
    "NotFoundError",
    "PermissionDeniedError",
    "PruneReport",
    "ReplicaUnavailableWarning",
    "SchemaOutOfDateError",
    "ValidationError",
    "WorkflowFilter",
    "__version__",
    "connect",
]
