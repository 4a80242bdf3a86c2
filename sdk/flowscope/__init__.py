"""flowscope: read, write and analyse a workflow-orchestration PostgreSQL database.

Example:
    >>> import flowscope
    >>> client = flowscope.connect()          # embedded PostgreSQL  # doctest: +SKIP
    >>> client.workflows.count()                                      # doctest: +SKIP
    0
"""

from __future__ import annotations

from ._client import Client, connect
from .errors import (
    AccountLockedError,
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    ConnectionFailedError,
    DatabaseError,
    FlowscopeError,
    NotFoundError,
    PermissionDeniedError,
    SchemaOutOfDateError,
    ValidationError,
)
from ._ingest import IngestResult, ingest
from .export import Export, ExportResult, arrow_schema, iter_batches, read_arrow, read_pandas
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
    "Export",
    "ExportResult",
    "FlowscopeError",
    "IngestResult",
    "NotFoundError",
    "PermissionDeniedError",
    "SchemaOutOfDateError",
    "ValidationError",
    "WorkflowFilter",
    "__version__",
    "arrow_schema",
    "connect",
    "ingest",
    "iter_batches",
    "read_arrow",
    "read_pandas",
]
