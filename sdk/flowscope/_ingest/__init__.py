"""Bulk ingest of workflows and executions: validate every row, then one binary COPY.

The whole load is one transaction: all rows or none. Rows are checked in Python
first (types, lengths, allowed statuses, JSON shapes, timestamps, references to
workflows) so a bad row raises :class:`~flowscope.ValidationError` naming its
index and field before anything is sent; the database's constraints are the
backstop. Executions that arrive finished get ``duration_seconds`` computed as
the spec's trigger would (it only fires on UPDATE), and
``metadata.workflow_version`` is filled from the workflow when missing.

Unscoped clients COPY straight into the table. Row-level security forbids
``COPY FROM`` into a table with RLS, so a scoped client COPYs into a temporary
table and moves the rows with one ``INSERT ... SELECT`` (the policies check
every row).

Example:
    >>> from flowscope._ingest import ingest
    >>> ingest(client, "executions", [{"workflow_id": "wf_1", "status": "completed",  # doctest: +SKIP
    ...     "started_at": "2026-01-01T10:00:00Z", "completed_at": "2026-01-01T10:00:02.5Z"}])
    IngestResult(rows=1, seconds=0.01)
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .._boundary import boundary
from .._session import EXECUTE, WRITE, session_of
from ..errors import PermissionDeniedError, ValidationError
from ..models import EXECUTION_STATUSES, WORKFLOW_STATUSES

if TYPE_CHECKING:
    from .._session import Session

__all__ = ["INGESTABLE", "IngestResult", "ingest"]

INGESTABLE = ("executions", "workflows")
_ID_PREFIX = {"executions": "ex", "workflows": "wf"}
_MISSING: Any = object()
_INT4 = 2_147_483_647
_MAX_ERRORS = 20
_MILLI = Decimal("0.001")
_DURATION_LIMIT = Decimal("10000000")  # NUMERIC(10, 3) holds < 10^7


@dataclasses.dataclass(frozen=True)
class IngestResult:
    """What an ingest wrote: ``rows`` and ``seconds``."""

    rows: int
    seconds: float

    def __repr__(self) -> str:
        return f"IngestResult(rows={self.rows}, seconds={self.seconds:.2f})"


class _RowError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# -- converters: value → what psycopg's binary COPY dumpers take (raise _RowError) ---------
def _string(name: str, max_length: int | None = 255) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise _RowError(name, f"expected a string, got {type(value).__name__}")
        if max_length is not None and len(value) > max_length:
            raise _RowError(name, f"longer than {max_length} characters")
        if "\x00" in value:
            raise _RowError(name, "contains a NUL character")
        return value

    return convert


def _choice(name: str, allowed: Sequence[str]) -> Callable[[Any], Any]:
    allowed_set = frozenset(allowed)

    def convert(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value in allowed_set):
            return value
        raise _RowError(name, f"must be one of {', '.join(allowed)}; got {value!r}")

    convert.allowed = allowed_set  # type: ignore[attr-defined]
    return convert


def _int4(name: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, Integral):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise _RowError(name, f"expected an integer, got {value!r}")
        value = int(value)
        if not -_INT4 - 1 <= value <= _INT4:
            raise _RowError(name, "out of the INTEGER range")
        return value

    return convert


def _boolean(name: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if value is None or value is True or value is False:
            return value
        if type(value).__name__ == "bool_":  # numpy
            return bool(value)
        raise _RowError(name, f"expected a boolean, got {value!r}")

    return convert


def _timestamp(name: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, datetime):
            if value.tzinfo is None:
                return value.replace(tzinfo=UTC)
            return value
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise _RowError(name, f"not an ISO 8601 timestamp: {value!r}") from None
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        raise _RowError(name, f"expected a timestamp, got {type(value).__name__}")

    return convert


def _duration(name: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool):
            raise _RowError(name, "expected a number of seconds")
        try:
            if isinstance(value, float):
                if not math.isfinite(value):
                    raise _RowError(name, "must be finite")
                value = Decimal(repr(value))
            elif isinstance(value, Decimal):
                pass
            elif isinstance(value, Integral):
                value = Decimal(int(value))
            elif isinstance(value, Real):
                value = Decimal(repr(float(value)))
            else:
                raise _RowError(name, f"expected a number of seconds, got {value!r}")
            value = value.quantize(_MILLI, rounding=ROUND_HALF_UP)
        except InvalidOperation:
            raise _RowError(name, f"not a number of seconds: {value!r}") from None
        if not value.is_finite() or value < 0 or value >= _DURATION_LIMIT:
            raise _RowError(name, "must be >= 0 and < 10000000 seconds")
        return value

    return convert


class _Json(str):
    """JSON text ready for the jsonb binary COPY dumper below."""

    __slots__ = ()


_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _fast_dumps() -> Callable[[Any], str]:
    """json.dumps without its per-call set-up (the C encoder, made once)."""
    from json import encoder

    make = getattr(encoder, "c_make_encoder", None)
    basestring = getattr(encoder, "c_encode_basestring", None)
    if make is None or basestring is None:  # pragma: no cover - no C accelerator
        return _dumps
    encode = make(None, _not_json, basestring, None, ":", ",", False, False, False)
    join = "".join

    def dumps(value: Any) -> str:
        return join(encode(value, 0))

    return dumps


_fast_json = _fast_dumps()


def _json(name: str, shape: type | None = None, default: Any = None) -> Callable[[Any], Any]:
    shape_name = "object" if shape is dict else "array" if shape is list else ""

    def convert(value: Any) -> Any:
        if value is None:
            value = default
            if value is None:
                return None
        if shape is not None and not isinstance(value, shape):
            raise _RowError(name, f"must be a JSON {shape_name}, got {type(value).__name__}")
        try:
            text = _fast_json(value)
        except (TypeError, ValueError, RecursionError) as exc:
            raise _RowError(name, f"not JSON-serialisable: {exc}") from None
        if "\\u0000" in text:
            raise _RowError(name, "contains a NUL character")
        return _Json(text)

    return convert


def _text_list(name: str) -> Callable[[Any], Any]:
    check = _string(name, None)

    def convert(value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise _RowError(name, "must be a list of strings")
        items = list(value)
        for item in items:
            if item is None:
                raise _RowError(name, "must not contain nulls")
            check(item)
        return items

    return convert


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    sql_type: str  # for psycopg's COPY set_types
    convert: Callable[[Any], Any]  # the complete check (the slow path; raises _RowError)
    fast: str = "other"  # which inline fast path the generated row converter uses


_EXECUTION_FIELDS = (
    _Field("id", "text", _string("id"), "str255"),
    _Field("workflow_id", "text", _string("workflow_id"), "str255"),
    _Field("owner", "text", _string("owner"), "str255"),
    _Field("organization_id", "text", _string("organization_id"), "str255"),
    _Field("status", "text", _choice("status", EXECUTION_STATUSES), "choice"),
    _Field("parameters", "jsonb", _json("parameters", dict, {}), "json_dict"),
    _Field("result", "jsonb", _json("result"), "json"),
    _Field("error", "jsonb", _json("error"), "json"),
    _Field("started_at", "timestamptz", _timestamp("started_at"), "ts"),
    _Field("completed_at", "timestamptz", _timestamp("completed_at"), "ts"),
    _Field("duration_seconds", "numeric", _duration("duration_seconds")),
    _Field("current_step", "text", _string("current_step"), "str255"),
    _Field("steps_completed", "int4", _int4("steps_completed"), "int4"),
    _Field("steps_total", "int4", _int4("steps_total"), "int4"),
    _Field("metadata", "jsonb", lambda v: v, "pass"),  # finished after workflow_version is set
    _Field("trace_id", "text", _string("trace_id"), "str255"),
    _Field("created_at", "timestamptz", _timestamp("created_at"), "ts"),
    _Field("updated_at", "timestamptz", _timestamp("updated_at"), "ts"),
)
_WORKFLOW_FIELDS = (
    _Field("id", "text", _string("id"), "str255"),
    _Field("name", "text", _string("name"), "str255"),
    _Field("description", "text", _string("description", None)),
    _Field("version", "int4", _int4("version"), "int4"),
    _Field("owner", "text", _string("owner"), "str255"),
    _Field("organization_id", "text", _string("organization_id"), "str255"),
    _Field("nodes", "jsonb", _json("nodes", list), "json_list"),
    _Field("edges", "jsonb", _json("edges", list), "json_list"),
    _Field("metadata", "jsonb", _json("metadata", dict, {}), "json_dict"),
    _Field("tags", "text[]", _text_list("tags")),
    _Field("status", "text", _choice("status", WORKFLOW_STATUSES), "choice"),
    _Field("is_public", "bool", _boolean("is_public"), "bool"),
    _Field("created_at", "timestamptz", _timestamp("created_at"), "ts"),
    _Field("updated_at", "timestamptz", _timestamp("updated_at"), "ts"),
    _Field("created_by", "text", _string("created_by"), "str255"),
    _Field("updated_by", "text", _string("updated_by"), "str255"),
    _Field("deleted_at", "timestamptz", _timestamp("deleted_at"), "ts"),
)
_FIELDS = {"executions": _EXECUTION_FIELDS, "workflows": _WORKFLOW_FIELDS}
_JSON_FIELDS = {
    "executions": frozenset({"parameters", "result", "error", "metadata"}),
    "workflows": frozenset({"nodes", "edges", "metadata"}),
}
_metadata_json = _json("metadata", dict, {})


# -- ids ----------------------------------------------------------------------------------
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)


def _new_ids(table: str, n: int) -> list[str]:
    """``n`` ids like ``ex_01JD...`` (a prefix and a ULID: 48-bit ms time + 80 random bits)."""
    if n == 0:
        return []
    millis = int(time.time() * 1000) & ((1 << 48) - 1)
    stamp_text = "".join(_ALPHABET[(millis >> (5 * (9 - k))) & 31] for k in range(10))
    randomness = base64.b32encode(os.urandom(10 * n)).translate(_CROCKFORD).decode()
    prefix = f"{_ID_PREFIX[table]}_{stamp_text}"
    return [prefix + randomness[i : i + 16] for i in range(0, 16 * n, 16)]


# -- inputs ---------------------------------------------------------------------------------
def _records(table: str, rows: Any) -> list[Mapping[str, Any]]:
    """Any accepted input → a list of mappings with database column names."""
    json_fields = _JSON_FIELDS[table]
    module = type(rows).__module__
    if module.startswith("pandas") and hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        import pyarrow as pa

        frame = rows
        text_json = [
            c
            for c in frame.columns
            if c in json_fields
            and isinstance(getattr(frame[c].dtype, "pyarrow_dtype", None), pa.JsonType)
        ]
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        if text_json:
            records = _parse_json_text(records, text_json)
        return records
    if module.startswith("pyarrow") and hasattr(rows, "to_pylist"):
        import pyarrow as pa

        if isinstance(rows, pa.RecordBatch):
            rows = pa.Table.from_batches([rows])
        text_json = [
            f.name
            for f in rows.schema
            if f.name in json_fields
            and (isinstance(f.type, pa.JsonType) or pa.types.is_string(f.type))
        ]
        records = rows.to_pylist()
        if text_json:
            records = _parse_json_text(records, text_json)
        return records
    if isinstance(rows, (Mapping, str | bytes)) or not isinstance(rows, Iterable):
        raise ValidationError(
            "rows: ingest takes many rows: a list of dicts, a DataFrame or an Arrow table,"
            f" not {type(rows).__name__}",
            errors=[{"loc": ("rows",), "msg": "not a collection of rows", "index": None}],
        )
    out: list[Mapping[str, Any]] = []
    for row in rows:
        if isinstance(row, Mapping):
            out.append(row)
        elif hasattr(row, "model_dump"):
            dumped = row.model_dump(exclude_unset=True)
            if "metadata_" in dumped:
                dumped["metadata"] = dumped.pop("metadata_")
            out.append(dumped)
        else:
            out.append(row)  # reported as a bad row below
    return out


def _parse_json_text(records: list[dict[str, Any]], fields: list[str]) -> list[dict[str, Any]]:
    for index, record in enumerate(records):
        for name in fields:
            value = record.get(name)
            if isinstance(value, str):
                try:
                    record[name] = json.loads(value)
                except ValueError:
                    raise ValidationError(
                        f"row {index}: {name}: not valid JSON text",
                        errors=[{"loc": (name,), "msg": "not valid JSON text", "index": index}],
                    ) from None
    return records


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
        >>> client.executions.ingest([                                   # doctest: +SKIP
        ...     {"workflow_id": "wf_1", "status": "completed",
        ...      "started_at": "2026-01-01T10:00:00Z", "completed_at": "2026-01-01T10:00:02.5Z"},
        ... ])
        IngestResult(rows=1, seconds=0.01)
    """
    started = time.perf_counter()
    session = session_of(client)
    if table not in _FIELDS:
        raise ValidationError(f"ingest supports {', '.join(INGESTABLE)}, not {table!r}")
    fields = _FIELDS[table]
    session.require(EXECUTE if table == "executions" else WRITE)
    records = _records(table, rows)
    if not records:
        return IngestResult(rows=0, seconds=time.perf_counter() - started)
    _check_scope(session, records)
    errors: list[dict[str, Any]] = []
    with session.transaction() as conn:
        now = conn.execute(sa.text("SELECT now()")).scalar_one()
        complete: Callable[[list[Any]], None]
        if table == "executions":
            complete = _ExecutionDefaults(session, conn, records, now)
        else:
            complete = _WorkflowDefaults(session, records, now)
        convert = _row_converter(fields)
        loader = _json_loader if session.is_tenant else _copier
        with loader(conn, table, fields) as write:
            for index, record in enumerate(records):
                try:
                    values = convert(record)
                    complete(values)
                except _RowError as exc:
                    errors.append({"loc": (exc.field,), "msg": exc.message, "index": index})
                    if len(errors) >= _MAX_ERRORS:
                        break
                    continue
                if not errors:
                    write(values)
            if errors:
                # aborts the COPY; the transaction rolls back
                _raise(errors, len(records), stopped=len(errors) >= _MAX_ERRORS)
    return IngestResult(rows=len(records), seconds=time.perf_counter() - started)


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


_FAST_CHECKS = {
    # a condition under which the value is NOT already fine (then the full converter runs)
    "str255": "type(v) is not str or len(v) > 255 or '\\x00' in v",
    "choice": "type(v) is not str or v not in choices_{i}",
    "ts": "type(v) is not datetime or v.tzinfo is None",
    "int4": "type(v) is not int or not -2147483648 <= v <= 2147483647",
    "bool": "v is not True and v is not False",
}
_JSON_SHAPES = {"json_dict": "type(v) is dict", "json_list": "type(v) is list", "json": "True"}


def _row_converter(fields: Sequence[_Field]) -> Callable[[Any], list[Any]]:
    """A row checker generated for this table: inline type checks for the common, valid
    case; the full converter (which explains what is wrong) for anything else."""
    namespace: dict[str, Any] = {
        "Mapping": Mapping,
        "datetime": datetime,
        "_RowError": _RowError,
        "allowed": frozenset(f.name for f in fields),
        "dumps": _fast_json,
        "J": _Json,
    }
    lines = [
        "def convert(record):",
        "    if type(record) is not dict and not isinstance(record, Mapping):",
        "        raise _RowError('', 'expected a dict or a model, got ' + type(record).__name__)",
        "    if not allowed.issuperset(record):",
        "        unknown = sorted(map(str, set(record) - allowed))",
        "        raise _RowError(unknown[0], 'unknown field(s) ' + repr(unknown))",
        "    get = record.get",
    ]
    out = []
    for i, field in enumerate(fields):
        namespace[f"c_{i}"] = field.convert
        lines.append(f"    v = get({field.name!r})")
        if field.fast == "pass":
            pass
        elif field.fast in _JSON_SHAPES:
            lines += [
                "    if v is not None:",
                f"        if {_JSON_SHAPES[field.fast]}:",
                "            try:",
                "                t = dumps(v)",
                "            except (TypeError, ValueError, RecursionError):",
                "                t = None",
                f"            v = J(t) if t is not None and '\\\\u0000' not in t else c_{i}(v)",
                "        else:",
                f"            v = c_{i}(v)",
            ]
        elif field.fast in _FAST_CHECKS:
            if field.fast == "choice":
                namespace[f"choices_{i}"] = field.convert.allowed  # type: ignore[attr-defined]
            check = _FAST_CHECKS[field.fast].format(i=i)
            lines += [f"    if v is not None and ({check}):", f"        v = c_{i}(v)"]
        else:
            lines += ["    if v is not None:", f"        v = c_{i}(v)"]
        lines.append(f"    v_{i} = v")
        out.append(f"v_{i}")
    lines.append(f"    return [{', '.join(out)}]")
    # the source is built from this module's constants only (field names, checks), no input
    exec(
        compile("\n".join(lines), f"<flowscope row converter {fields[1].name}>", "exec"), namespace
    )
    converter: Callable[[Any], list[Any]] = namespace["convert"]
    return converter


_E = {f.name: i for i, f in enumerate(_EXECUTION_FIELDS)}
_W = {f.name: i for i, f in enumerate(_WORKFLOW_FIELDS)}


class _ExecutionDefaults:
    """Defaults, workflow references, ``workflow_version`` and duration for execution rows."""

    def __init__(
        self, session: Session, conn: Any, records: list[Mapping[str, Any]], now: datetime
    ) -> None:
        from ..models import WORKFLOWS

        given = {r.get("workflow_id") for r in records if isinstance(r, Mapping)}
        wanted: set[str] = {w for w in given if isinstance(w, str)}
        w = WORKFLOWS.c
        self.workflows: dict[str, Any] = {}
        ordered = sorted(wanted)
        for start in range(0, len(ordered), 10_000):
            chunk = ordered[start : start + 10_000]
            for row in conn.execute(
                sa.select(w.id, w.version, w.owner, w.organization_id).where(w.id.in_(chunk))
            ):
                self.workflows[row.id] = row
        self.user = session.user_id
        self.org = session.organization_id
        self.now = now
        self.ids: Iterator[str] = iter(())

    def __call__(self, t: list[Any]) -> None:
        workflow_id = t[1]
        if workflow_id is None:
            raise _RowError("workflow_id", "required")
        workflow = self.workflows.get(workflow_id)
        if workflow is None:
            raise _RowError("workflow_id", f"no workflow {workflow_id!r} (visible to this client)")
        if t[0] is None:
            t[0] = self._new_id()
        if t[2] is None:
            t[2] = self.user or workflow.owner
        if t[3] is None:
            t[3] = self.org or workflow.organization_id
        if t[5] is None:
            t[5] = _EMPTY_OBJECT
        start, end = t[8], t[9]
        _check_status(t, start, end)
        if start is not None and end is not None:
            if end < start:
                raise _RowError("completed_at", "earlier than started_at")
            if t[10] is None:
                delta = end - start
                micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
                duration = Decimal(micros).scaleb(-6).quantize(_MILLI, rounding=ROUND_HALF_UP)
                if duration >= _DURATION_LIMIT:
                    raise _RowError("completed_at", "duration longer than NUMERIC(10,3) holds")
                t[10] = duration
        if t[12] is None:
            t[12] = 0
        if t[13] is None:
            t[13] = 0
        meta = t[14]
        if meta is None:
            t[14] = _Json('{"workflow_version":' + str(int(workflow.version)) + "}")
        else:
            if isinstance(meta, dict) and "workflow_version" not in meta:
                meta = {**meta, "workflow_version": workflow.version}
            t[14] = _metadata_json(meta)
        if t[16] is None:
            t[16] = self.now
        if t[17] is None:
            t[17] = self.now

    def _new_id(self) -> str:
        try:
            return next(self.ids)
        except StopIteration:
            self.ids = iter(_new_ids("executions", 4096))
            return next(self.ids)


def _check_status(t: list[Any], start: Any, end: Any) -> None:
    """The status must agree with the timestamps; a missing one is implied when it can be:
    no timestamps → ``queued``, ``started_at`` only → ``running``. With ``completed_at``
    the run ended, but how (completed, failed, cancelled, timeout) is not implied."""
    status = t[4]
    if status is None:
        if end is not None:
            raise _RowError(
                "status",
                "required when completed_at is set (completed, failed, cancelled or timeout)",
            )
        t[4] = "running" if start is not None else "queued"
    elif status == "queued" and (start is not None or end is not None):
        raise _RowError("status", "a queued execution has no started_at or completed_at")
    elif status == "running" and end is not None:
        raise _RowError("status", "a running execution has no completed_at")


class _WorkflowDefaults:
    def __init__(self, session: Session, records: list[Mapping[str, Any]], now: datetime) -> None:
        self.user = session.user_id
        self.org = session.organization_id
        self.now = now
        self.ids: Iterator[str] = iter(())

    def __call__(self, t: list[Any]) -> None:
        if t[4] is None:
            t[4] = self.user
        for position, name in ((1, "name"), (4, "owner"), (6, "nodes"), (7, "edges")):
            if t[position] is None:
                raise _RowError(name, "required")
        if t[0] is None:
            try:
                t[0] = next(self.ids)
            except StopIteration:
                self.ids = iter(_new_ids("workflows", 4096))
                t[0] = next(self.ids)
        if t[3] is None:
            t[3] = 1
        if t[5] is None:
            t[5] = self.org
        if t[8] is None:
            t[8] = _EMPTY_OBJECT
        if t[9] is None:
            t[9] = []
        if t[10] is None:
            t[10] = "draft"
        if t[11] is None:
            t[11] = False
        if t[12] is None:
            t[12] = self.now
        if t[13] is None:
            t[13] = self.now
        if t[14] is None:
            t[14] = self.user or t[4]
        if t[15] is None:
            t[15] = t[14]


_EMPTY_OBJECT = _Json("{}")
assert [f.name for f in _EXECUTION_FIELDS][:6] == [
    "id",
    "workflow_id",
    "owner",
    "organization_id",
    "status",
    "parameters",
]
assert _E["metadata"] == 14 and _E["created_at"] == 16 and _E["duration_seconds"] == 10
assert _W["created_by"] == 14 and _W["tags"] == 9 and _W["is_public"] == 11


@contextlib.contextmanager
def _copier(
    conn: Any, table: str, fields: Sequence[_Field]
) -> Iterator[Callable[[Sequence[Any]], None]]:
    """A binary ``COPY ... FROM STDIN`` with explicit types; yields ``write_row``."""
    from psycopg import sql
    from psycopg.adapt import Dumper
    from psycopg.pq import Format

    raw = conn.connection.driver_connection
    names = [f.name for f in fields]
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in names)
    with raw.cursor() as cur:
        jsonb_oid = cur.adapters.types["jsonb"].oid

        class JsonbText(Dumper):
            """Pre-serialised JSON text → jsonb's binary form (version byte 1 + UTF-8 text)."""

            format = Format.BINARY
            oid = jsonb_oid

            def dump(self, obj: Any) -> bytes:
                return b"\x01" + obj.encode()

        cur.adapters.register_dumper(_Json, JsonbText)
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
            sql.Identifier(table), columns
        )
        with cur.copy(statement) as copy:
            copy.set_types([f.sql_type for f in fields])
            yield copy.write_row


_JSON_CHUNK = 5_000


@contextlib.contextmanager
def _json_loader(
    conn: Any, table: str, fields: Sequence[_Field]
) -> Iterator[Callable[[Sequence[Any]], None]]:
    """For a tenant login: ``INSERT ... SELECT FROM jsonb_to_recordset(...)`` in chunks.

    PostgreSQL refuses ``COPY FROM`` into a table with row-level security, and a
    tenant may not create the temporary table a COPY could be staged in; one JSON
    parameter per chunk of rows is the next fastest single statement.
    """
    from psycopg import sql

    names = [f.name for f in fields]
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in names)
    record = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(f.sql_type)) for f in fields
    )
    statement = sql.SQL(
        "INSERT INTO {} ({}) SELECT {} FROM jsonb_to_recordset(%s::jsonb) AS r({})"
    ).format(sql.Identifier(table), columns, columns, record)
    raw = conn.connection.driver_connection
    pending: list[str] = []

    def flush() -> None:
        if pending:
            with raw.cursor() as cur:
                cur.execute(statement, ("[" + ",".join(pending) + "]",))
            pending.clear()

    def write(values: Sequence[Any]) -> None:
        parts = []
        for name, value in zip(names, values, strict=True):
            if isinstance(value, _Json):
                text = str(value)
            elif isinstance(value, datetime):
                text = _dumps(value.isoformat())
            elif isinstance(value, Decimal):
                text = str(value)
            else:
                text = _dumps(value)
            parts.append(f"{_dumps(name)}:{text}")
        pending.append("{" + ",".join(parts) + "}")
        if len(pending) >= _JSON_CHUNK:
            flush()

    yield write
    flush()
