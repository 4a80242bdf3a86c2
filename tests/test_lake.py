"""The Iceberg lake: after inserts, updates, deletes, a late commit and a visibility change,
readers that do not use flowscope (pyiceberg's own scan, polars) see PostgreSQL's rows; a
failed sync leaves the previous snapshot; as_of reads a past sync; another database is
refused."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import flowscope
import pandas as pd
import polars as pl
import pytest
import sqlalchemy as sa
from flowscope.lake import Lake
from pyiceberg.catalog.sql import SqlCatalog

from . import _analytics_data as data
from ._helpers import change_some_rows, make_workflow

COLUMNS = {
    "executions": ["id", "status", "duration_seconds", "updated_at"],
    "workflows": ["id", "name", "deleted_at"],
}


@pytest.fixture
def seeded(client: flowscope.Client, engine: sa.Engine, tmp_path: Path) -> tuple[Any, Lake]:
    data.insert(engine)
    lake = client.lake(tmp_path / "lake")
    lake.sync(progress=False)
    return client, lake


def _pg(engine: sa.Engine, name: str, ids: set[str] | None = None) -> pd.DataFrame:
    cols = ", ".join(COLUMNS[name])
    with engine.connect() as conn:
        frame = pd.read_sql(sa.text(f"SELECT {cols} FROM {name}"), conn)
    if ids is not None:
        frame = frame[frame["id"].isin(ids)]
    return frame.sort_values("id").reset_index(drop=True)


def _catalog(warehouse: Path) -> SqlCatalog:
    """The lake's catalog, opened by pyiceberg alone."""
    return SqlCatalog(
        "flowscope", uri=f"sqlite:///{warehouse / 'catalog.db'}", warehouse=warehouse.as_uri()
    )


def _by_pyiceberg(warehouse: Path, name: str) -> pd.DataFrame:
    table = _catalog(warehouse).load_table(("flowscope", name))
    frame = table.scan(selected_fields=tuple(COLUMNS[name])).to_arrow().to_pandas()
    return frame[COLUMNS[name]].sort_values("id").reset_index(drop=True)


def _by_polars(warehouse: Path, name: str) -> pd.DataFrame:
    table = _catalog(warehouse).load_table(("flowscope", name))
    frame = pl.scan_iceberg(table.metadata_location).select(COLUMNS[name]).collect()
    return frame.to_pandas().sort_values("id").reset_index(drop=True)


def _same_rows(pg: pd.DataFrame, lake: pd.DataFrame, name: str) -> None:
    assert pg["id"].tolist() == lake["id"].tolist(), name
    if name == "executions":
        assert pg["status"].tolist() == lake["status"].tolist()
        assert _decimals(pg["duration_seconds"]) == _decimals(lake["duration_seconds"])
        assert (pd.to_datetime(pg["updated_at"], utc=True) == lake["updated_at"]).all()
    else:
        assert pg["name"].tolist() == lake["name"].tolist()
        pg_deleted = pd.to_datetime(pg["deleted_at"], utc=True)
        assert pg_deleted.isna().tolist() == lake["deleted_at"].isna().tolist()
        assert (pg_deleted.dropna() == lake["deleted_at"].dropna()).all()


def _decimals(values: pd.Series) -> list[Decimal | None]:
    return [None if pd.isna(v) else Decimal(str(v)).normalize() for v in values]


def _assert_lake_equals(warehouse: Path, engine: sa.Engine, visible=None) -> None:
    for name in ("executions", "workflows"):
        pg = _pg(engine, name, None if visible is None else visible[name])
        _same_rows(pg, _by_pyiceberg(warehouse, name), name)
        _same_rows(pg, _by_polars(warehouse, name), name)


def test_types_are_faithful(seeded, tmp_path) -> None:
    """Decimal stays decimal, timestamps are tz-aware UTC, JSON is its text, and the
    tables are partitioned by month of created_at."""
    _, lake = seeded
    table = _catalog(tmp_path / "lake").load_table(("flowscope", "executions"))
    types = {f.name: str(f.field_type) for f in table.schema().fields}
    assert types["duration_seconds"] == "decimal(10, 3)"
    assert types["created_at"] == types["started_at"] == "timestamptz"
    assert types["result"] == "string"
    assert table.schema().find_field("result").doc == "JSON"
    assert [str(f.transform) for f in table.spec().fields] == ["month"]
    arrow = lake.to_arrow("executions")
    assert str(arrow.schema.field("created_at").type) == "timestamp[us, tz=UTC]"


def test_incremental_sync_follows_inserts_updates_and_deletes(seeded, engine, tmp_path) -> None:
    client, lake = seeded
    warehouse = tmp_path / "lake"
    _assert_lake_equals(warehouse, engine)
    before = {n: lake.table(n).current_snapshot().snapshot_id for n in ("executions", "workflows")}
    change_some_rows(client, engine)
    report = lake.sync(progress=False)
    assert not report.full
    assert (report.added, report.removed) == (2, 4)
    assert report.changed >= 4
    _assert_lake_equals(warehouse, engine)
    for name in ("executions", "workflows"):  # one commit per table, its parent the last sync
        table = lake.table(name)
        chain, snap = [], table.current_snapshot()
        while snap.snapshot_id != before[name]:
            chain.append(snap.summary.operation.value)
            snap = table.snapshot_by_id(snap.parent_snapshot_id)
        assert chain[0] == "append" and len(chain) <= 2  # the delete, then the append
    again = lake.sync(progress=False)
    assert (again.added, again.changed, again.removed) == (0, 0, 0)
    _assert_lake_equals(warehouse, engine)


def test_a_late_commit_is_not_missed(seeded, engine, tmp_path) -> None:
    """A transaction that began before a sync and commits after it reaches the next sync."""
    _, lake = seeded
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE executions SET status = 'cancelled'"
                    " WHERE id IN (SELECT id FROM executions WHERE status = 'queued' LIMIT 2)"
                )
            )
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    assert holding.wait(30)
    lake.sync(progress=False)  # the update is not committed yet
    release.set()
    thread.join()
    report = lake.sync(progress=False)
    assert report.changed == 2
    _assert_lake_equals(tmp_path / "lake", engine)


def test_a_failed_sync_leaves_the_previous_snapshot(seeded, engine, tmp_path, monkeypatch) -> None:
    from flowscope.lake import _lake

    client, lake = seeded
    warehouse = tmp_path / "lake"
    before = {n: lake.table(n).current_snapshot().snapshot_id for n in ("executions", "workflows")}
    expected = {n: _by_pyiceberg(warehouse, n) for n in ("executions", "workflows")}
    client.executions.create(workflow_id="wf_etl")
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM executions WHERE id = (SELECT min(id) FROM executions)"))

    def fail(name: str) -> None:
        if name == "before-commit":
            raise RuntimeError("killed")

    monkeypatch.setattr(_lake, "step", fail)
    with pytest.raises(RuntimeError, match="killed"):
        lake.sync(progress=False)
    for name in ("executions", "workflows"):
        assert lake.table(name).current_snapshot().snapshot_id == before[name]
        _same_rows(expected[name], _by_pyiceberg(warehouse, name), name)
    monkeypatch.undo()
    report = lake.sync(progress=False)
    assert (report.added, report.removed) == (1, 1)
    _assert_lake_equals(warehouse, engine)


def test_as_of_reads_a_past_sync(seeded, engine) -> None:
    client, lake = seeded
    first = lake.as_of
    count = lake.to_arrow("executions").num_rows
    client.executions.create(workflow_id="wf_etl")
    later = lake.sync(progress=False)
    assert lake.to_arrow("executions").num_rows == count + 1
    assert lake.to_arrow("executions", as_of=first).num_rows == count
    assert lake.to_pandas("executions", as_of=later.as_of).shape[0] == count + 1
    with pytest.raises(flowscope.ValidationError):
        lake.to_arrow("executions", as_of=datetime(2000, 1, 1, tzinfo=UTC))
    summary = lake.table("executions").current_snapshot().summary.additional_properties
    assert {"flowscope.source", "flowscope.horizon", "flowscope.as_of"} <= set(summary)


def test_a_lake_of_another_database_is_refused(seeded, engine) -> None:
    client, lake = seeded
    with engine.begin() as conn:  # as if the database had been created again
        conn.execute(sa.text("UPDATE flowscope_instance SET id = gen_random_uuid()"))
    with pytest.raises(flowscope.SourceChangedError, match="created again"):
        lake.sync(progress=False)
    assert lake.sync(full=True, progress=False).full
    _assert_lake_equals(lake_path(lake), engine)


def lake_path(lake: Lake) -> Path:
    return Path(lake.catalog.properties["warehouse"].removeprefix("file://"))


OWN = ["workflow:read", "workflow:write", "workflow:execute"]


def test_a_scoped_lake_follows_visibility(client, engine, tmp_path) -> None:
    """A user who sees its own and public workflows: an is_public flip brings (and takes)
    the workflow and its executions; a deletion out of its sight is reconciled."""
    org = client.organizations.create(name="A", slug="a")
    users = {
        n: client.users.create(
            username=n, email=f"{n}@x.org", organization_id=org.id, scopes=OWN
        ).id
        for n in ("ana", "bo")
    }
    wfs = {
        key: make_workflow(
            client, name=key, owner=users[key[:3].rstrip("_")], organization_id=org.id
        ).id
        for key in ("ana_own", "bo_own")
    }
    for wf in wfs.values():
        for _ in range(2):
            client.executions.create(workflow_id=wf)
    ana = client.scoped(org.id, user_id=users["ana"])
    lake = ana.lake(tmp_path / "ana")
    lake.sync(progress=False)

    def sees() -> dict[str, set[str]]:
        return {t: {r["id"] for r in ana.sql(f"SELECT id FROM {t}")} for t in COLUMNS}

    _assert_lake_equals(tmp_path / "ana", engine, sees())
    assert len(sees()["executions"]) == 2
    client.workflows.update(wfs["bo_own"], is_public=True)  # bo's workflow becomes visible
    lake.sync(progress=False)
    assert len(sees()["executions"]) == 4
    _assert_lake_equals(tmp_path / "ana", engine, sees())
    client.workflows.update(wfs["bo_own"], is_public=False)  # and leaves again
    lake.sync(progress=False)
    _assert_lake_equals(tmp_path / "ana", engine, sees())
    assert len(sees()["executions"]) == 2


def test_the_cli_syncs_a_lake(client, engine, database_url, tmp_path) -> None:
    from .test_cli import invoke

    data.insert(engine)
    warehouse = tmp_path / "cli"
    code, out, err = invoke("lake", "sync", "--warehouse", str(warehouse), "--no-progress", url=database_url)  # fmt: skip
    assert code == 0, err
    assert "full load" in out and "executions 301" in out
    client.executions.create(workflow_id="wf_etl")
    code, out, err = invoke("lake", "sync", "--warehouse", str(warehouse), "--no-progress", url=database_url)  # fmt: skip
    assert code == 0, err
    assert "incremental, 1 added" in out
    _assert_lake_equals(warehouse, engine)


def test_a_load_in_chunks_is_one_commit(seeded, engine, tmp_path, monkeypatch) -> None:
    """A full load appends in chunks inside one transaction: readers see the old table
    or the whole new one (the chunks' snapshots are committed together)."""
    from flowscope.lake import _sync

    _, lake = seeded
    monkeypatch.setattr(_sync, "LOAD_CHUNK", 64)
    metadata = _catalog(tmp_path / "lake").load_table(("flowscope", "executions")).metadata_location
    assert lake.sync(full=True, progress=False).full
    table = _catalog(tmp_path / "lake").load_table(("flowscope", "executions"))
    assert table.metadata.metadata_log[-1].metadata_file == metadata  # one commit since
    _assert_lake_equals(tmp_path / "lake", engine)


def test_a_sync_that_loses_a_commit_race_is_a_conflict(
    seeded, engine, tmp_path, monkeypatch
) -> None:
    from flowscope.lake import _lake

    client, lake = seeded
    other = client.lake(tmp_path / "lake")
    client.executions.create(workflow_id="wf_etl")
    raced = []

    def race(name: str) -> None:
        if name == "before-commit" and not raced:
            raced.append(True)
            other.sync(progress=False)  # commits first

    monkeypatch.setattr(_lake, "step", race)
    with pytest.raises(flowscope.ConflictError, match="another writer"):
        lake.sync(progress=False)  # pyiceberg's retry would append the rows twice
    monkeypatch.undo()
    lake.sync(progress=False)
    _assert_lake_equals(tmp_path / "lake", engine)


def test_the_users_catalog(client, engine, tmp_path) -> None:
    """A catalog by name and properties (as pyiceberg's config file or PYICEBERG_* variables
    give them): the tables are where that catalog says, readable through it."""
    from pyiceberg.catalog import load_catalog

    data.insert(engine)
    props = {"type": "sql", "uri": f"sqlite:///{tmp_path / 'team.db'}"}
    props["warehouse"] = (tmp_path / "team-warehouse").as_uri()
    (tmp_path / "team-warehouse").mkdir()
    lake = client.lake(catalog="team", properties=props, namespace="orchestrator")
    lake.sync(progress=False)
    table = load_catalog("team", **props).load_table(("orchestrator", "executions"))
    assert table.scan().to_arrow().num_rows == 301
    assert table.location().startswith(props["warehouse"])
    with pytest.raises(flowscope.ConfigurationError):
        client.lake()  # neither a warehouse nor a catalog
