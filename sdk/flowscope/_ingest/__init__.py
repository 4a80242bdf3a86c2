"""Bulk ingest of workflows and executions: validate every row, then one binary COPY.

The whole load is one transaction: all rows or none. Rows are checked in Python
first (types, lengths, allowed statuses, JSON shapes, timestamps, references to
workflows) so a bad row raises :class:`~flowscope.ValidationError` naming its
index and field before anything is sent; the database's constraints are the
backstop. Executions that arrive finished get ``duration_seconds`` computed as
the spec's trigger would (it only fires on UPDATE), and
``metadata.workflow_version`` is filled from the workflow when missing.

What a column takes (its type, length, statuses, JSON shape, default, whether a row
must give it) is read from the SQLModel tables in :mod:`flowscope.models`
(``_columns``); what the database cannot say (owners, organizations, the duration,
the workflow's version) is filled in by ``_rows``. Unscoped clients COPY straight into
the table; row-level security forbids ``COPY FROM`` into a table with RLS, so a scoped
client sends the rows as JSON to one ``INSERT ... SELECT`` per 5,000 rows (the policies
check every row; see ``_load``).

Example:
    >>> from flowscope._ingest import ingest
    >>> ingest(client, "executions", [{"workflow_id": "wf_demo_0001", "status": "completed",
    ...     "started_at": "2026-01-01T10:00:00Z", "completed_at": "2026-01-01T10:00:02.5Z"}])
    IngestResult(rows=1, seconds=...)
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .._boundary import boundary
from .._session import EXECUTE, WRITE, note_written, session_of
from ..errors import PermissionDeniedError, ValidationError
from ..models import EXECUTIONS, WORKFLOWS
from ._columns import RowError, columns, row_converter
from ._load import copier, json_loader, records
from ._rows import ExecutionRows, WorkflowRows

if TYPE_CHECKING:
    from .._session import Session

__all__ = ["INGESTABLE", "IngestResult", "ingest"]

_TABLES = {t.name: t for t in (EXECUTIONS, WORKFLOWS)}
INGESTABLE = tuple(sorted(_TABLES))
_MAX_ERRORS = 20


@dataclasses.dataclass(frozen=True)
class IngestResult:
    """What an ingest wrote: ``rows`` and ``seconds``."""

    rows: int
    seconds: float

    def __repr__(self) -> str:
        return f"IngestResult(rows={self.rows}, seconds={self.seconds:.2f})"


# -- ingest -------------------------------------------------------------------------------
@boundary
def ingest(client: Any, table: str, rows: Any) -> IngestResult:
    """Validate ``rows`` and load them into ``table`` with one binary COPY, all or nothing.

    ``rows``: an iterable of dicts or models, a pandas DataFrame or an Arrow
    table, with database column names (``metadata``, not ``metadata_``).
    Missing ids are generated (``ex_…``/``wf_…``); missing values get the
    schema's defaults. For executions: ``owner`` and ``organization_id`` default
    to the client's user/organization, else the workflow's;
    ``metadata.workflow_version`` to the workflow's version; ``duration_seconds``
    is computed from ``started_at``/``completed_at`` when not given (as the
    spec's trigger does on UPDATE: rounded to milliseconds). The ``status`` must
    agree with the timestamps: without one, a row with no timestamps is
    ``queued`` and one with only ``started_at`` is ``running``; a row with
    ``completed_at`` needs its terminal status (``completed``, ``failed``,
    ``cancelled`` or ``timeout``), and ``queued`` with a timestamp or ``running``
    with ``completed_at`` is refused (:class:`ValidationError`).

    Every row is checked before it is sent and all rows travel in one
    transaction, so a bad row means nothing is written. (Rows are validated
    while the COPY streams, so validation overlaps the database's work; the
    first bad row stops sending, the remaining rows are still checked so the
    error lists up to 20 problems, and the transaction is rolled back.)

    Raises:
        ValidationError: a bad row (the message and ``.errors`` name the row index
            and field); nothing was written.
        PermissionDeniedError: a row names another organization than the scoped
            client's; nothing was written.

    Example:
        >>> client.executions.ingest([
        ...     {"workflow_id": "wf_demo_0002", "status": "completed",
        ...      "started_at": "2026-01-01T10:00:00Z", "completed_at": "2026-01-01T10:00:02.5Z"},
        ... ]).rows
        1
    """
    started = time.perf_counter()
    session = session_of(client)
    if table not in _TABLES:
        raise ValidationError(f"ingest supports {', '.join(INGESTABLE)}, not {table!r}")
    cols = columns(_TABLES[table])
    session.require(EXECUTE if table == "executions" else WRITE)
    rows = records(cols, rows)
    if not rows:
        return IngestResult(rows=0, seconds=time.perf_counter() - started)
    _check_scope(session, rows)
    errors: list[dict[str, Any]] = []
    with session.transaction() as conn:
        now = conn.execute(sa.text("SELECT now()")).scalar_one()
        complete: Callable[[list[Any]], None]
        if table == "executions":
            complete = ExecutionRows(session, conn, rows, now)
            convert = _converter(table, deferred=("metadata",))  # ExecutionRows finishes it
        else:
            complete = WorkflowRows(session, rows, now)
            convert = _converter(table)
        loader = json_loader if session.is_tenant else copier
        id_at = [c.name for c in cols].index("id")
        sent: list[str] = []  # for CommitUnknownError: the ids a lost COMMIT may have written
        with loader(conn, table, cols) as write:
            for index, record in enumerate(rows):
                try:
                    values = convert(record)
                    complete(values)
                except RowError as exc:
                    errors.append({"loc": (exc.field,), "msg": exc.message, "index": index})
                    if len(errors) >= _MAX_ERRORS:
                        break
                    continue
                if not errors:
                    write(values)
                    sent.append(str(values[id_at]))
            if errors:
                # aborts the COPY; the transaction rolls back
                _raise(errors, len(rows), stopped=len(errors) >= _MAX_ERRORS)
        note_written(sent)
    return IngestResult(rows=len(rows), seconds=time.perf_counter() - started)


@functools.cache
def _converter(table: str, *, deferred: tuple[str, ...] = ()) -> Callable[[Any], list[Any]]:
    return row_converter(columns(_TABLES[table]), deferred=deferred)


def _check_scope(session: Session, records: list[Mapping[str, Any]]) -> None:
    """A scoped client ingests into its own organization only (RLS is the backstop)."""
    scope = session.organization_id
    if scope is None:
        return
    for index, record in enumerate(records):
        org = record.get("organization_id") if isinstance(record, Mapping) else None
        if org is not None and org != scope:
            raise PermissionDeniedError(
                f"row {index}: organization_id {org!r} is outside this client's"
                f" organization {scope!r}; nothing was written"
            )


def _raise(errors: list[dict[str, Any]], total: int, *, stopped: bool = False) -> None:
    def describe(e: dict[str, Any]) -> str:
        where = f"row {e['index']}"
        return f"{where}: {e['loc'][0]}: {e['msg']}" if e["loc"][0] else f"{where}: {e['msg']}"

    shown = "; ".join(describe(e) for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    count = f"at least {len(errors)}" if stopped else str(len(errors))
    raise ValidationError(
        f"{count} of {total} rows are invalid, nothing was written: {shown}{more}",
        errors=errors,
    )
