"""Every copy knows its source: a mirror, an incremental export or a prune archive of a
database that was dropped and created again, or restored from an older state, is never
read as that database's current rows; every Parquet file says where it came from; an
incremental export tombstones what its reader can no longer see."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flowscope
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from flowscope import _migrate, _provenance
from flowscope.testing import drop_identities

from ._helpers import make_workflow

pytestmark = pytest.mark.slow


def _admin(server_url: str) -> sa.Engine:
    return sa.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def _name(url: str) -> str:
    name = sa.make_url(url).database
    assert name is not None
    return name


def _migrate_to_head(url: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        _migrate.upgrade(conn)
        conn.commit()
    engine.dispose()


def _recreate(server_url: str, url: str) -> None:
    """DROP DATABASE and CREATE DATABASE under the same name, migrated again."""
    drop_identities(url)
    admin = _admin(server_url)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{_name(url)}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{_name(url)}"'))
    admin.dispose()
    _migrate_to_head(url)


def _add_runs(client: flowscope.Client, n: int, name: str = "wf") -> list[str]:
    wf = make_workflow(client, name=name)
    return [client.executions.create(workflow_id=wf.id).id for _ in range(n)]


def _ids(client: flowscope.Client, table: str = "executions") -> set[str]:
    return {r["id"] for r in client.sql(f"SELECT id FROM {table}")}


def _mirror_ids(mirror: Any, table: str = "executions") -> set[str]:
    con = mirror.duckdb()
    try:
        return {r[0] for r in con.sql(f"SELECT id FROM {table}").fetchall()}
    finally:
        con.close()


def _dataset_ids(root: Path) -> set[str]:
    """The dataset read as its docstring says: the latest version per id, minus tombstones."""
    import duckdb

    files = [str(root / f) for r in json.loads((root / "_flowscope_manifest.json").read_text())["runs"] for f in r["files"]]  # fmt: skip
    if not files:
        return set()
    con = duckdb.connect()
    try:
        rows = con.execute(
            "SELECT id FROM (SELECT id, _deleted, row_number() OVER (PARTITION BY id"
            " ORDER BY _version DESC) AS latest FROM read_parquet(?, hive_partitioning = true))"
            " WHERE latest = 1 AND NOT _deleted",
            [files],
        ).fetchall()
    finally:
        con.close()
    return {r[0] for r in rows}


@pytest.fixture
def own_database(
    create_database: Callable[[], str], server_url: str
) -> Iterator[tuple[str, Callable[[], flowscope.Client]]]:
    """A database of this test's own (it is dropped and re-created), and a client factory."""
    url = create_database()
    _migrate_to_head(url)
    clients: list[flowscope.Client] = []

    def connect() -> flowscope.Client:
        client = flowscope.connect(url, migrate=False)
        clients.append(client)
        return client

    yield url, connect
    for client in clients:
        client.close()


def test_a_recreated_database_is_mirrored_afresh_and_refused_by_an_incremental_export(
    own_database, server_url, tmp_path
) -> None:
    url, connect = own_database
    old = connect()
    _add_runs(old, 5)
    mirror_dir, lake = tmp_path / "mirror", tmp_path / "lake"
    first = old.mirror(mirror_dir).sync(progress=False)
    assert first.full and first.reason is None and first.rows["executions"] == 5
    old.export.parquet("executions", lake, incremental=True, progress=False)
    manifest_before = (lake / "_flowscope_manifest.json").read_bytes()
    files_before = sorted(p.relative_to(lake) for p in lake.rglob("*"))
    old.close()

    _recreate(server_url, url)
    new = connect()
    now = set(_add_runs(new, 3))
    report = new.mirror(mirror_dir).sync(progress=False)
    assert report.full and "created again" in (report.reason or "")
    assert report.rows["executions"] == 3 and "reason=" in repr(report)
    mirror = new.mirror(mirror_dir)
    assert _mirror_ids(mirror) == now == _ids(new)
    assert int(mirror.analytics.status_breakdown().at[0, "total"]) == 3
    mirror.close()
    again = new.mirror(mirror_dir).sync(progress=False)  # the same database from now on
    assert not again.full and again.reason is None

    with pytest.raises(flowscope.SourceChangedError, match="created again.*new, empty directory"):
        new.export.parquet("executions", lake, incremental=True, progress=False)
    assert (lake / "_flowscope_manifest.json").read_bytes() == manifest_before  # nothing written
    assert sorted(p.relative_to(lake) for p in lake.rglob("*")) == files_before
    fresh = new.export.parquet("executions", tmp_path / "lake2", incremental=True, progress=False)
    assert fresh.rows == 3


def test_a_database_restored_from_an_older_copy_is_told_apart(
    own_database, server_url, tmp_path
) -> None:
    """A logical restore: the database replaced by a copy taken before the last sync
    (same name, same instance id, an older state)."""
    url, connect = own_database
    name = _name(url)
    backup = f"{name}_bk"
    client = connect()
    kept = set(_add_runs(client, 4))
    client.close()
    admin = _admin(server_url)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{backup}" TEMPLATE "{name}"'))
        client = connect()
        _add_runs(client, 6, name="later")
        mirror_dir, lake = tmp_path / "mirror", tmp_path / "lake"
        assert client.mirror(mirror_dir).sync(progress=False).rows["executions"] == 10
        client.export.parquet("executions", lake, incremental=True, progress=False)
        client.close()
        with admin.connect() as conn:  # restore: the older copy takes the database's place
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'ALTER DATABASE "{backup}" RENAME TO "{name}"'))
        client = connect()
        report = client.mirror(mirror_dir).sync(progress=False)
        assert report.full and "OID" in (report.reason or "")
        mirror = client.mirror(mirror_dir)
        assert _mirror_ids(mirror) == kept == _ids(client)
        mirror.close()
        with pytest.raises(flowscope.SourceChangedError, match="restored or copied"):
            client.export.parquet("executions", lake, incremental=True, progress=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{backup}" WITH (FORCE)'))
        admin.dispose()


def test_a_source_that_went_back_in_time_is_refused() -> None:
    """A physical restore keeps every id: the copy's snapshot is ahead of the server's."""
    src = {"instance_id": "i", "database_oid": 1, "system_identifier": "7", "timeline": 1}
    assert _provenance.changed(src, "900:905:", src, "1000:1001:") is None
    why = _provenance.changed(src, "900:905:", src, "700:700:")
    assert why is not None and "back in time" in why
    assert "timeline" in (_provenance.changed(src, None, {**src, "timeline": 2}, None) or "")
    assert "cluster" in (
        _provenance.changed(src, None, {**src, "system_identifier": "8"}, None) or ""
    )
    # a value the login could not read is not compared
    assert _provenance.changed(src, None, {**src, "system_identifier": None}, None) is None
    assert "no source" in (_provenance.changed(None, None, src, None) or "")


def test_every_parquet_file_carries_its_provenance(client, tmp_path) -> None:
    _add_runs(client, 3)
    org = client.organizations.create(name="A", slug="a")
    single = tmp_path / "runs.parquet"
    client.export.parquet("executions", single, status="queued", progress=False)
    info = flowscope.provenance(single)
    source = info["source"]
    assert source["database"] == _name(client.url)
    assert source["instance_id"] == client.sql("SELECT id::text AS i FROM flowscope_instance")[0]["i"]  # fmt: skip
    assert info["table"] == "executions" and info["filter"] == {"status": "queued"}
    assert info["schema_revision"] == _migrate.head_revision()
    assert info["flowscope_version"] == flowscope.__version__
    assert info["reader"] == {"login": None, "organization_id": None, "user_id": None}
    assert info["as_of"] and info["snapshot"]
    # the file is still an ordinary Parquet file with the table's schema
    assert pq.read_table(single).num_rows == 3

    dataset = tmp_path / "by_day"
    client.export.parquet("executions", dataset, partition_by=["day"], progress=False)
    part = next(dataset.rglob("*.parquet"))
    assert flowscope.provenance(part)["source"] == source

    lake = tmp_path / "lake"
    client.export.parquet("executions", lake, incremental=True, progress=False)
    assert flowscope.provenance(lake)["source"] == source
    assert flowscope.provenance(next(lake.rglob("*.parquet")))["snapshot"]

    scoped = client.scoped(org.id)
    mirror = scoped.mirror(tmp_path / "mirror")
    mirror.sync(progress=False)
    base = next((tmp_path / "mirror" / "workflows").glob("base-*.parquet"))
    record = flowscope.provenance(base)
    assert record["table"] == "workflows" and record["source"] == source
    assert record["reader"]["organization_id"] == org.id and record["reader"]["login"]
    assert flowscope.provenance(tmp_path / "mirror")["source"] == source
    # frames carry it too: the database's, or the mirror's sync
    for frame in (client.analytics.status_breakdown(), mirror.analytics.status_breakdown()):
        assert frame.attrs["provenance"]["source"] == source
        assert frame.attrs["provenance"]["as_of"] and frame.attrs["provenance"]["snapshot"]
    mirror.close()

    with pytest.raises(flowscope.ValidationError, match="no flowscope provenance"):
        plain = tmp_path / "plain.parquet"
        pq.write_table(pq.read_table(single).replace_schema_metadata(None), plain)
        flowscope.provenance(plain)
    with pytest.raises(flowscope.ValidationError, match="neither a mirror"):
        flowscope.provenance(tmp_path)


def test_prune_archives_carry_provenance_and_an_unfinished_run_of_another_database_is_refused(
    own_database, server_url, tmp_path
) -> None:
    url, connect = own_database
    client = connect()
    ids = _add_runs(client, 4)
    client.sql(
        "UPDATE executions SET created_at = now() - interval '400 days' WHERE id = ANY(:ids)",
        {"ids": ids},
    )
    archive = tmp_path / "archive"
    report = client.retention.prune(older_than="90d", archive_to=archive, statuses=("queued",))
    assert report.rows == 4
    info = flowscope.provenance(report.files[0])
    assert info["table"] == "executions" and info["source"]["database"] == _name(url)

    # an unfinished run (as a killed prune leaves it) cannot be resumed on another database
    manifest = json.loads((archive / "prune-manifest.json").read_text())
    manifest["runs"][-1]["finished_at"] = None
    (archive / "prune-manifest.json").write_text(json.dumps(manifest))
    client.close()
    _recreate(server_url, url)
    with pytest.raises(flowscope.SourceChangedError, match="another database"):
        connect().retention.prune(older_than="90d", archive_to=archive, statuses=("queued",))


OWN = ["workflow:read", "workflow:write", "workflow:execute"]


def test_an_incremental_export_tombstones_what_its_reader_stopped_seeing(client, tmp_path) -> None:
    """A workflow made private, handed over or made public again changes what a user reads
    without any change to its executions: each next run follows it."""
    org = client.organizations.create(name="A", slug="a")
    users = {
        n: client.users.create(username=n, email=f"{n}@x.org", organization_id=org.id, scopes=OWN).id
        for n in ("ana", "bo")
    }  # fmt: skip
    public = make_workflow(client, name="p", owner=users["ana"], organization_id=org.id, is_public=True)  # fmt: skip
    private = make_workflow(client, name="q", owner=users["ana"], organization_id=org.id)
    for wf in (public, private):
        for _ in range(2):
            client.executions.create(workflow_id=wf.id)
    ana, bo = client.scoped(org.id, user_id=users["ana"]), client.scoped(org.id, user_id=users["bo"])  # fmt: skip
    lake = tmp_path / "bo"

    def run() -> Any:
        result = bo.export.parquet(
            "executions", lake, incremental=True, partition_by=["day"], progress=False
        )
        assert _dataset_ids(lake) == _ids(bo)
        return result

    assert run().rows == 2
    ana.workflows.update(public.id, is_public=False)  # bo no longer reads its runs
    hidden = run()
    assert hidden.deleted == 2 and _ids(bo) == set()
    ana.workflows.update(public.id, is_public=True)  # and reads them again
    assert run().rows == 2
    ana.workflows.update(private.id, owner=users["bo"])  # handed over: two more runs
    assert run().rows == 2 and len(_ids(bo)) == 4
    assert run().rows == 0  # nothing changed since


def test_a_database_emptied_by_the_test_fixture_is_a_new_source(client, database_url, tmp_path):
    """``flowscope.testing.reset_database`` (TRUNCATE: no audit rows, no change feed) gives
    the database a new instance id, so a mirror taken before is copied afresh."""
    from flowscope.testing import reset_database

    _add_runs(client, 3)
    mirror = client.mirror(tmp_path / "m")
    mirror.sync(progress=False)
    reset_database(database_url)
    _add_runs(client, 1)
    report = mirror.sync(progress=False)
    assert report.full and "created again" in (report.reason or "")
    assert _mirror_ids(mirror) == _ids(client)
    mirror.close()


def test_a_physical_restore_of_an_older_backup_is_told_apart(tmp_path) -> None:
    """The whole cluster put back to a file-level backup taken before the last sync: same
    instance id, OID, system identifier and timeline; only its transaction ids went back."""
    import subprocess

    from .pgcluster import start_cluster

    cluster = start_cluster(replica=False)
    try:
        admin = _admin(cluster.primary_url())
        with admin.connect() as conn:
            conn.execute(sa.text("CREATE DATABASE restored"))
        admin.dispose()
        url = cluster.primary_url("restored")
        _migrate_to_head(url)
        client = flowscope.connect(url, migrate=False)
        kept = set(_add_runs(client, 3))
        client.close()
        data = cluster.primary_dir
        backup = cluster.root / "backup"

        def stop() -> None:
            cluster._run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")

        stop()
        subprocess.run(["cp", "-a", str(data), str(backup)], check=True)
        cluster._pg_ctl_start(data, cluster.primary_port)
        client = flowscope.connect(url, migrate=False)
        for _ in range(3):  # transactions the backup has not seen
            _add_runs(client, 2, name="later")
        mirror_dir, lake = tmp_path / "mirror", tmp_path / "lake"
        assert client.mirror(mirror_dir).sync(progress=False).rows["executions"] == 9
        client.export.parquet("executions", lake, incremental=True, progress=False)
        client.close()
        stop()  # the restore: the old files take the data directory's place
        subprocess.run(["rm", "-rf", str(data)], check=True)
        subprocess.run(["mv", str(backup), str(data)], check=True)
        cluster._pg_ctl_start(data, cluster.primary_port)
        client = flowscope.connect(url, migrate=False)
        report = client.mirror(mirror_dir).sync(progress=False)
        assert report.full and "back in time" in (report.reason or ""), report
        mirror = client.mirror(mirror_dir)
        assert _mirror_ids(mirror) == kept == _ids(client)
        mirror.close()
        with pytest.raises(flowscope.SourceChangedError, match="back in time"):
            client.export.parquet("executions", lake, incremental=True, progress=False)
        client.close()
    finally:
        cluster.stop()
