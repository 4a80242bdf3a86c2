"""Provenance: which database, snapshot and reader a derived copy came from.

Every copy flowscope makes of the database (the mirror, an incremental export, a
retention archive, any Parquet file it writes) records its **source**, a description
of the database that survives nothing but the same database:

* ``instance_id``: a random id created with the schema (revision 0009, table
  ``flowscope_instance``): a database dropped and created again, a re-created embedded
  data directory or a test database re-made by a fixture has another one;
* ``database_oid``: the database's OID in its cluster: a logical restore (``pg_dump``
  into a new database, ``CREATE DATABASE ... TEMPLATE``) has another one;
* ``system_identifier`` and ``timeline`` of the cluster (``pg_control_system()``,
  ``pg_control_checkpoint()``, where the login may read them): another cluster, or one
  restored to a point in time and promoted, differs;
* and the copy's snapshot: transaction ids only grow, so a server whose next transaction
  id is below the one a copy had already seen went back in time (a physical restore of
  an older backup).

:func:`changed` compares a recorded source with the current one and says why they differ;
the mirror then copies afresh, and an incremental export refuses to append.

Parquet files carry a provenance record (the source, the snapshot, the as-of time, the
table and filter, the reading identity, flowscope's version and the schema revision) in
their key-value metadata under ``flowscope.provenance``; :func:`provenance` reads it back.

Example:
    >>> changed({"instance_id": "a", "database_oid": 5}, None,
    ...         {"instance_id": "b", "database_oid": 5}, None)
    'the database was created again (instance id a is now b)'
    >>> changed({"instance_id": "a"}, "100:120:", {"instance_id": "a"}, "90:95:")
    'the database went back in time (its next transaction id 95 is below 120, which the copy had seen): restored from an older state'
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .errors import ValidationError

if TYPE_CHECKING:
    import pyarrow as pa

    from ._session import Session

__all__ = ["METADATA_KEY", "changed", "provenance", "read_source", "record", "with_provenance"]

#: The Parquet key-value metadata key of a file's provenance record.
METADATA_KEY = b"flowscope.provenance"
FORMAT = "flowscope-provenance/1"

_INSTANCE = sa.table("flowscope_instance", sa.column("id"))
_DATABASE = sa.table("pg_database", sa.column("oid"), sa.column("datname"))
# What identifies the source, and how a difference reads: (key, what it means).
_IDENTITY = (
    ("instance_id", "the database was created again (instance id {old} is now {new})"),
    ("database_oid", "the database was replaced (its OID {old} is now {new}): restored or copied"),
    ("system_identifier", "the database is in another cluster (system id {old} is now {new})"),
    ("timeline", "the cluster changed timeline ({old} is now {new}): restored or failed over"),
)


def read_source(conn: sa.Connection) -> dict[str, Any]:
    """The source of what ``conn`` reads: instance id, database OID and name, and, where
    the login may read them, the cluster's system identifier and timeline.

    Example:
        >>> from flowscope._session import session_of
        >>> with session_of(client).read_transaction() as conn:
        ...     source = read_source(conn)
        >>> sorted(source)
        ['database', 'database_oid', 'instance_id', 'system_identifier', 'timeline']
    """
    can = sa.func.has_function_privilege
    row = conn.execute(
        sa.select(
            sa.cast(sa.select(_INSTANCE.c.id).scalar_subquery(), sa.Text).label("instance_id"),
            sa.cast(
                sa.select(_DATABASE.c.oid)
                .where(_DATABASE.c.datname == sa.func.current_database())
                .scalar_subquery(),
                sa.BigInteger,
            ).label("database_oid"),
            sa.func.current_database().label("database"),
            can("pg_control_system()", "EXECUTE").label("control"),
            can("pg_control_checkpoint()", "EXECUTE").label("checkpoint"),
        )
    ).one()
    source: dict[str, Any] = {
        "instance_id": row.instance_id,
        "database_oid": int(row.database_oid),
        "database": row.database,
        "system_identifier": None,
        "timeline": None,
    }
    if row.control:  # constant statements: no input reaches them
        source["system_identifier"] = conn.execute(
            sa.text("SELECT system_identifier::text FROM pg_control_system()")
        ).scalar_one()
    if row.checkpoint:
        source["timeline"] = int(
            conn.execute(sa.text("SELECT timeline_id FROM pg_control_checkpoint()")).scalar_one()
        )
    return source


def of_transaction(conn: sa.Connection) -> dict[str, Any]:
    """The provenance a frame carries in ``attrs["provenance"]``: the ``source`` of the
    open transaction ``conn`` (read once per pooled connection: a connection never
    outlives its database) and its ``snapshot`` and ``as_of`` (the database clock).

    Example:
        >>> frame = client.analytics.status_breakdown()
        >>> sorted(frame.attrs["provenance"])
        ['as_of', 'snapshot', 'source']
    """
    from ._changes import take_point

    source = conn.info.get("flowscope.source")
    if source is None:
        source = conn.info["flowscope.source"] = read_source(conn)
    point = take_point(conn)
    return {"source": dict(source), "snapshot": point.snapshot, "as_of": point.as_of.isoformat()}


def _xmax(snapshot: str | None) -> int | None:
    """The ``xmax`` of a ``pg_snapshot`` text (``xmin:xmax:xip,...``): the first
    transaction id not yet assigned when it was taken."""
    if not snapshot:
        return None
    try:
        return int(snapshot.split(":")[1])
    except (IndexError, ValueError):
        return None


def changed(
    recorded: Mapping[str, Any] | None,
    recorded_snapshot: str | None,
    current: Mapping[str, Any],
    current_snapshot: str | None,
) -> str | None:
    """Why a copy's recorded source is not the current database, or None when it is.

    A value recorded or read as None (unreadable) is not compared; a copy that records
    no source at all (written by an older flowscope) cannot be trusted.
    """
    if not recorded:
        return "the copy records no source database (written by an older flowscope)"
    for key, why in _IDENTITY:
        old, new = recorded.get(key), current.get(key)
        # the instance id is always readable: its row gone (a TRUNCATE) is a change too
        if old is not None and (new is not None or key == "instance_id") and old != new:
            return why.format(old=old, new=new)
    seen, now = _xmax(recorded_snapshot), _xmax(current_snapshot)
    if seen is not None and now is not None and now < seen:
        return (
            f"the database went back in time (its next transaction id {now} is below {seen},"
            " which the copy had seen): restored from an older state"
        )
    return None


def record(
    session: Session,
    source: Mapping[str, Any],
    *,
    as_of: Any,
    snapshot: str | None = None,
    table: str | None = None,
    filter: Any = None,
) -> dict[str, Any]:
    """A provenance record: the source, the snapshot and as-of time, what was read and by
    whom, flowscope's version and the schema revision (JSON-ready)."""
    from importlib.metadata import PackageNotFoundError, version

    from ._migrate import newest_script

    try:
        flowscope_version: str | None = version("flowscope")
    except PackageNotFoundError:  # run from a source tree that is not installed
        flowscope_version = None

    return {
        "format": FORMAT,
        "source": dict(source),
        "snapshot": snapshot,
        "as_of": as_of.isoformat() if hasattr(as_of, "isoformat") else as_of,
        "table": table,
        "filter": _jsonable(filter),
        "reader": {
            "login": session.role,
            "organization_id": session.organization_id,
            "user_id": session.user_id,
        },
        "flowscope_version": flowscope_version,
        "schema_revision": newest_script(),
    }


def _jsonable(filter: Any) -> Any:
    if filter is None:
        return None
    if hasattr(filter, "model_dump"):
        return filter.model_dump(mode="json", exclude_defaults=True)
    if isinstance(filter, Mapping):
        return {str(k): _jsonable_value(v) for k, v in filter.items()}
    return _jsonable_value(filter)


def _jsonable_value(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def with_provenance(schema: pa.Schema, entry: Mapping[str, Any] | None) -> pa.Schema:
    """``schema`` with the record ``entry`` in its metadata (a Parquet writer stores it as
    the file's key-value metadata)."""
    if entry is None:
        return schema
    metadata = dict(schema.metadata or {})
    metadata[METADATA_KEY] = json.dumps(entry, sort_keys=True).encode()
    return schema.with_metadata(metadata)


def provenance(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Where a file or directory flowscope wrote came from.

    A Parquet file (an export, a mirror file, a retention archive) gives the record in
    its metadata: ``source`` (the database: instance id, OID, name, cluster system id and
    timeline), ``snapshot`` and ``as_of`` (what it reflects), ``table`` and ``filter``,
    ``reader`` (the login, organization and user that read it), ``flowscope_version`` and
    ``schema_revision``. A mirror directory or an incremental export's directory gives
    the source and snapshot of its last sync or run.

    Raises:
        ValidationError: ``path`` is none of these, or records no provenance.

    Example:
        >>> out = client.export.parquet("workflows", tmp_path / "wf.parquet", progress=False)
        >>> info = flowscope.provenance(tmp_path / "wf.parquet")
        >>> from flowscope._migrate import newest_script
        >>> info["table"], info["reader"]["login"] is None, info["schema_revision"] == newest_script()
        ('workflows', True, True)
        >>> info["source"]["database"] == client.sql("SELECT current_database() AS d")[0]["d"]
        True
    """
    target = Path(path)
    if target.is_dir():
        for name, keys in (
            ("mirror.json", ("source", "snapshot", "as_of")),
            ("_flowscope_manifest.json", ("source", "snapshot", "as_of", "table")),
        ):
            state = target / name
            if state.exists():
                try:
                    recorded = json.loads(state.read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    raise ValidationError(f"cannot read {state}: {exc}") from exc
                if not recorded.get("source"):
                    raise ValidationError(f"{target} records no provenance (an older flowscope)")
                return {k: recorded.get(k) for k in keys}
        raise ValidationError(f"{target} is neither a mirror nor an incremental export")
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(target).metadata or {}
    except FileNotFoundError as exc:
        raise ValidationError(f"no such file: {target}") from exc
    except (OSError, ValueError) as exc:  # pyarrow: not a Parquet file
        raise ValidationError(f"{target} is not a Parquet file: {exc}") from exc
    raw = metadata.get(METADATA_KEY)
    if raw is None:
        raise ValidationError(f"{target} records no flowscope provenance")
    data: dict[str, Any] = json.loads(raw)
    return data
