"""The mirror's files: its state (``mirror.json``), Parquet files written crash-safely,
which files a state lists, and a table as ``base - (delta + deleted) + delta``."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .._files import fsync_dir
from ..errors import PermissionDeniedError, ValidationError
from ..filters import ExecutionFilter, WorkflowFilter

if TYPE_CHECKING:
    import pyarrow as pa

    from .._session import Session

FORMAT = "flowscope-mirror/1"
STATE = "mirror.json"
#: The tables a mirror holds, in the order a sync reads them.
MIRRORED = ("workflows", "executions")
#: A sync rewrites a table's base when its delta + deletions exceed this many rows and 5 %
#: of the base (an incremental sync's cost follows the delta it rewrites).
COMPACT_MIN_ROWS = 100_000
ROW_GROUP = 122_880  # DuckDB's own row group size: one thread per group
FILTERS: dict[str, Any] = {
    "workflows": WorkflowFilter(include_deleted=True),
    "executions": ExecutionFilter(include_deleted_workflows=True),
}
_FILE = re.compile(r"(base|delta|deleted)-\d{6}(-\d+)?\.parquet")


@dataclasses.dataclass(frozen=True)
class SyncReport:
    """What a sync did: rows ``added``, ``changed``, ``removed`` (all tables), ``rows`` per
    table after it, ``seconds``, ``as_of`` (the database time the mirror now reflects)
    and whether it was a ``full`` copy; ``reason``: why a mirror that had been synced was
    copied afresh (its source database changed: :mod:`flowscope._provenance`), or None."""

    full: bool
    added: int
    changed: int
    removed: int
    rows: dict[str, int]
    seconds: float
    as_of: datetime
    reason: str | None = None

    def __repr__(self) -> str:
        return (
            f"SyncReport(full={self.full}, added={self.added}, changed={self.changed},"
            f" removed={self.removed}, seconds={self.seconds:.2f}, as_of={self.as_of.isoformat()}"
            + (f", reason={self.reason!r})" if self.reason else ")")
        )


def _hash(*parts: str | None) -> str:
    return hashlib.sha256("\x1f".join(p or "" for p in parts).encode()).hexdigest()[:16]


def _database_key(url: str) -> str:
    """Host, port, socket directory and database of a URL (never the user or password)."""
    u = sa.make_url(url)
    return _hash(u.host, str(u.port or ""), str(u.query.get("host", "")), u.database)


def identity(session: Session) -> dict[str, str | None]:
    """Who a mirror belongs to: the database, the organization and (for a tenant) the user."""
    return {
        "database": _database_key(session.url),
        "organization_id": session.organization_id,
        "user_id": session.user_id if session.is_tenant else None,
    }


def default_path(session: Session, data_dir: Path) -> Path:
    """``<data_dir>/mirrors/<database>/<identity>``: one mirror per database and identity.

    Example:
        >>> from flowscope._session import Session
        >>> s = Session(None, url="postgresql://me@db:5432/orchestrator")
        >>> default_path(s, Path("/data")).parent.parent
        PosixPath('/data/mirrors')
    """
    who = identity(session)
    name = (
        "admin" if who["organization_id"] is None else _hash(who["organization_id"], who["user_id"])
    )
    return data_dir / "mirrors" / str(who["database"]) / name


def private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def read_state(root: Path) -> dict[str, Any] | None:
    path = root / STATE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValidationError(f"cannot read the mirror state {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValidationError(f"{path} is not a flowscope mirror")
    return data


def check_owner(root: Path, state: dict[str, Any] | None, who: dict[str, Any]) -> None:
    if state is not None and state.get("identity") != who:
        raise PermissionDeniedError(
            f"the mirror in {root} belongs to another database or identity"
            f" ({_describe(state.get('identity'))}); this client is {_describe(who)}"
        )


def save_state(root: Path, state: dict[str, Any]) -> None:
    """Replace ``mirror.json`` atomically (temp file, fsync, rename, fsync the directory)."""
    path = root / STATE
    temp = root / f".{STATE}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(state, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        step("before-state")
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    fsync_dir(root)


def sweep(root: Path, state: dict[str, Any] | None) -> None:
    """Remove files no state lists (a killed sync's) and temp files; the caller holds the
    lock. The previous state's files stay one more sync, for connections still reading them."""
    keep = set(files(state)) | set(state.get("previous_files", [])) if state else set()
    for name in MIRRORED:
        folder = root / name
        if not folder.is_dir():
            continue
        for item in folder.iterdir():
            rel = f"{name}/{item.name}"
            if (
                item.name.startswith(".")
                and item.name.endswith(".tmp")
                or _FILE.fullmatch(item.name)
                and rel not in keep
            ):
                item.unlink(missing_ok=True)
    for temp in root.glob(f".{STATE}.*.tmp"):
        temp.unlink(missing_ok=True)


def _describe(who: Any) -> str:
    if not isinstance(who, dict):
        return "unknown"
    org = who.get("organization_id")
    return f"organization {org!r}" if org else "the admin login"


def files(state: dict[str, Any] | None) -> list[str]:
    """Every file a state lists, relative to the mirror's root."""
    if not state:
        return []
    out: list[str] = []
    for entry in state["tables"].values():
        out += list(entry["base"])
        out += [f for f in (entry.get("delta"), entry.get("deleted")) if f]
    return out


def table_relation(con: Any, root: Path, entry: dict[str, Any]) -> Any:
    """``base`` minus the ids of ``delta`` and ``deleted``, plus ``delta``."""
    base = con.read_parquet([str(root / f) for f in entry["base"]])
    excluded = []
    delta = None
    if entry.get("delta"):
        delta = con.read_parquet(str(root / entry["delta"]))
        excluded.append(delta.select("id"))
    if entry.get("deleted"):
        excluded.append(con.read_parquet(str(root / entry["deleted"])).select("id"))
    if not excluded:
        return base
    ids = excluded[0] if len(excluded) == 1 else excluded[0].union(excluded[1])
    rel = base.join(ids, "id", how="anti")
    return rel.union(delta) if entry.get("delta") else rel


class ParquetOut:
    """A Parquet file written as a hidden temp file, fsynced, made ``0600`` and renamed."""

    def __init__(
        self, final: Path, schema: pa.Schema, origin: dict[str, Any] | None = None
    ) -> None:
        import pyarrow.parquet as pq

        from .._provenance import with_provenance
        from ..export._atomic import dictionary_columns

        schema = with_provenance(schema, origin)

        private_dir(final.parent)
        self.final = final
        self.temp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
        fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        # dictionaries for the low-cardinality strings only, as export writes them (an id or
        # a JSON column gains nothing from one and costs a tenth of the write)
        self._writer = pq.ParquetWriter(
            self.temp, schema, compression="zstd", use_dictionary=dictionary_columns(schema)
        )
        self._buffer: list[Any] = []
        self._buffered = 0
        self.rows = 0

    def write(self, batch: Any) -> None:
        if batch.num_rows == 0:
            return
        self._buffer.append(batch)
        self._buffered += batch.num_rows
        self.rows += batch.num_rows
        if self._buffered >= ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._buffer:
            self._writer.write_table(pa.Table.from_batches(self._buffer), row_group_size=ROW_GROUP)
            self._buffer, self._buffered = [], 0

    def __enter__(self) -> ParquetOut:
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        try:
            if kind is None:
                self._flush()
            self._writer.close()
            if kind is None:
                with open(self.temp, "rb") as handle:
                    os.fsync(handle.fileno())
                os.replace(self.temp, self.final)
                fsync_dir(self.final.parent)
        finally:
            self.temp.unlink(missing_ok=True)


def step(name: str) -> None:
    """A named point of a sync, for the crash tests (they replace it to kill the process
    there); a no-op."""
