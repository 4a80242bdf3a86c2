"""Every exception flowscope raises, under one root.

Callers catch :class:`FlowscopeError` or one precise child; no other exception escapes
a public call: driver errors (psycopg, SQLAlchemy) are translated at the database
boundary (``flowscope._db``), and the error boundary of the public API
(``flowscope._boundary``) turns the rest into flowscope errors (wrong arguments into
:class:`ValidationError`, unwritable paths into :class:`ConfigurationError`), always
with ``raise ... from exc`` so the cause stays visible.

::

    FlowscopeError
    ├── ValidationError            bad input, caught before the database is touched
    ├── NotFoundError              get()/update() of an id that does not exist (or is not visible)
    ├── ConflictError              unique violation, stale version, illegal state transition
    │   └── SourceChangedError     a copy (mirror, incremental export) of another database
    ├── PermissionDeniedError      missing scope, or a row outside the client's organization
    ├── AuthenticationError        wrong username/email or password
    │   └── AccountLockedError     too many failures; carries ``locked_until``
    ├── ConfigurationError         bad settings (URL, data directory, options)
    └── DatabaseError              anything else the database refused
        ├── ConnectionFailedError  the server cannot be reached (names the host)
        ├── QueryTimeoutError      the statement (or a lock wait, or the wait for a free
        │                          pooled connection: ``pool_timeout``, or the client's
        │                          deadline: ``connect(timeout=)``) ran past its limit
        ├── CommitUnknownError     the connection was lost after COMMIT was sent: the rows
        │                          may or may not be committed (``ids`` says what to check)
        └── SchemaOutOfDateError   the database is not at the migrations' head

Warnings (``warnings.warn``; nothing failed, but you should know)::

    FlowscopeWarning (UserWarning)
    └── ReplicaUnavailableWarning  a read replica was unreachable; the read went to the primary

Example:
    >>> import flowscope
    >>> try:
    ...     raise flowscope.NotFoundError("workflow 'wf_x' not found")
    ... except flowscope.FlowscopeError as exc:
    ...     print(type(exc).__name__, exc)
    NotFoundError workflow 'wf_x' not found
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = [
    "AccountLockedError",
    "AuthenticationError",
    "CommitUnknownError",
    "ConfigurationError",
    "ConflictError",
    "ConnectionFailedError",
    "DatabaseError",
    "FlowscopeError",
    "FlowscopeWarning",
    "NotFoundError",
    "PermissionDeniedError",
    "QueryTimeoutError",
    "ReplicaUnavailableWarning",
    "SchemaOutOfDateError",
    "SourceChangedError",
    "ValidationError",
]


class FlowscopeError(Exception):
    """Root of every flowscope exception."""


class ValidationError(FlowscopeError, ValueError):
    """Input breaks a rule of the schema; nothing was written.

    ``errors`` is a list of ``{"loc": (...), "msg": str, "index": int | None}``
    dicts (``index`` is the row number for bulk operations).
    """

    def __init__(self, message: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors: list[dict[str, Any]] = errors or []


class NotFoundError(FlowscopeError, LookupError):
    """The row does not exist, or is not visible to this client."""


class ConflictError(FlowscopeError):
    """The change conflicts with the current state (unique value, version, transition)."""


class SourceChangedError(ConflictError):
    """A derived copy (an incremental export) was taken from another database than the one
    the client reads now: dropped and created again, restored from an older state, another
    cluster (see :mod:`flowscope._provenance`). Nothing was written; start a new copy."""


class PermissionDeniedError(FlowscopeError, PermissionError):
    """The client lacks the scope or tenancy to do this."""


class AuthenticationError(FlowscopeError):
    """Wrong username/email or password (deliberately not saying which)."""


class AccountLockedError(AuthenticationError):
    """Too many failed log-ins; the account is locked until ``locked_until``."""

    def __init__(self, message: str, *, locked_until: datetime | None = None) -> None:
        super().__init__(message)
        self.locked_until = locked_until


class ConfigurationError(FlowscopeError):
    """A setting (URL, environment variable, option) is not usable."""


class DatabaseError(FlowscopeError):
    """The database refused the operation for a reason not covered above."""


class ConnectionFailedError(DatabaseError, ConnectionError):
    """The database server cannot be reached."""


class QueryTimeoutError(DatabaseError, TimeoutError):
    """A statement ran past the client's ``statement_timeout``, or waited too long for a lock,
    or no pooled connection came free within ``connect(pool_timeout=)``.

    Example:
        >>> client = flowscope.connect(url, statement_timeout=0.5)
        >>> client.sql("SELECT pg_sleep(5)")
        Traceback (most recent call last):
        ...
        flowscope.errors.QueryTimeoutError: canceling statement due to statement timeout
        >>> client.close()
    """


class CommitUnknownError(DatabaseError):
    """The connection was lost after COMMIT was sent: the transaction may have been committed
    or not, and a blind retry may write its rows twice. ``ids`` lists the ids it wrote (when
    flowscope knows them): look them up (``client.<table>.get(id)``) before writing again.

    Deliberately not a :class:`ConnectionFailedError`: code that retries on a lost
    connection must not retry this.

    Example:
        >>> err = CommitUnknownError("lost after COMMIT", ids=["wf_a"])
        >>> err.ids, isinstance(err, ConnectionFailedError)
        (['wf_a'], False)
    """

    def __init__(self, message: str, *, ids: list[str] | None = None) -> None:
        super().__init__(message)
        self.ids: list[str] = list(ids or [])


class SchemaOutOfDateError(DatabaseError):
    """The database schema is not at the revision this flowscope expects."""


class FlowscopeWarning(UserWarning):
    """Root of every warning flowscope issues."""


class ReplicaUnavailableWarning(FlowscopeWarning):
    """A read replica could not be reached; reads go to the primary until it is back.

    Example (a replica that is down; ``warnings.simplefilter("error", ...)`` makes it an error):

        >>> import warnings, flowscope
        >>> client = flowscope.connect(url, read_url="postgresql://reader@127.0.0.1:1/orchestrator")
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     client.workflows.count()      # read from the primary instead
        200
        >>> print(caught[0].message)
        read replica 127.0.0.1:1/orchestrator is unreachable (...); skipping it for 30 s, reading from another replica or the primary
        >>> client.close()
    """
