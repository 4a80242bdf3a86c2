"""Faults, tried for real: a PostgreSQL these tests start, pause (SIGSTOP) and cut through a
proxy of their own (``faultproxy.py``), on both transports (binary COPY and ADBC).

Every case ends in a flowscope error of the right class within its deadline, loses and
duplicates nothing, and leaves the process usable: the next call succeeds.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flowscope
import psutil
import pytest
import sqlalchemy as sa
from flowscope import _deadline

from tests.faultproxy import FaultProxy
from tests.pgcluster import Cluster, start_cluster

DEADLINE = 1.5  # the client deadline of these tests (seconds)
SLACK = 2.5  # what a case may take beyond it
DATABASE = "faults"
STUCK = (flowscope.QueryTimeoutError, flowscope.ConnectionFailedError)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = start_cluster(replica=False)
    try:
        engine = sa.create_engine(c.primary_url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {DATABASE}"))
        engine.dispose()
        with flowscope.connect(c.primary_url(DATABASE), migrate=True) as client:
            org = client.organizations.create(name="Faults", slug="faults")
            for i in range(3):
                wf = client.workflows.create(
                    name=f"wf {i}", owner="ana", nodes=[], edges=[], organization_id=org.id
                )
                for _ in range(20):
                    client.executions.create(workflow_id=wf.id)
        yield c
    finally:
        c.stop()


@pytest.fixture(autouse=True)
def quiet(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """No driver traceback reaches the user: none printed, none logged by SQLAlchemy/psycopg."""
    yield
    assert "Traceback" not in capfd.readouterr().err
    noisy = [
        r
        for r in caplog.records
        if r.name.split(".")[0] in ("sqlalchemy", "psycopg") and r.exc_info is not None
    ]
    assert not noisy, [r.getMessage() for r in noisy]


@pytest.fixture
def proxy(cluster: Cluster) -> Iterator[FaultProxy]:
    p = FaultProxy(cluster.primary_port)
    yield p
    p.close()


@pytest.fixture(params=["copy", "adbc"])
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FLOWSCOPE_EXPORT_TRANSPORT", request.param)
    return str(request.param)


def _count(cluster: Cluster, sql: str = "SELECT count(*) FROM executions") -> int:
    engine = sa.create_engine(cluster.primary_url(DATABASE), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())
    finally:
        engine.dispose()


def _server_processes(cluster: Cluster) -> list[psutil.Process]:
    pid = int((cluster.primary_dir / "postmaster.pid").read_text().split()[0])
    postmaster = psutil.Process(pid)
    return [postmaster, *postmaster.children()]


@contextlib.contextmanager
def _paused(cluster: Cluster) -> Iterator[None]:
    """The whole server stopped (SIGSTOP): TCP stays up, nothing answers."""
    processes = _server_processes(cluster)
    for p in processes:
        p.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for p in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGCONT)


def _fails_within(
    call: Callable[[], Any],
    error: type[BaseException] | tuple[type[BaseException], ...],
    seconds: float,
) -> tuple[BaseException, float]:
    start = time.monotonic()
    with pytest.raises(error) as caught:
        call()
    elapsed = time.monotonic() - start
    assert elapsed < seconds, f"{caught.value!r} after {elapsed:.1f} s"
    return caught.value, elapsed


READS: dict[str, Callable[[flowscope.Client, Path], Any]] = {
    "to_pandas": lambda c, tmp: c.executions.to_pandas(),
    "export": lambda c, tmp: c.export.parquet("executions", tmp / "x.parquet", progress=False),
    "query_arrow": lambda c, tmp: c.query_arrow("SELECT id FROM executions"),
    "mirror": lambda c, tmp: c.mirror(tmp / "mirror").sync(progress=False),
}


# -- a stuck server or network: the deadline, then the next call works --------------------------
@pytest.mark.parametrize("read", ["to_pandas", "export"])
def test_a_stalled_network_ends_in_a_timeout_and_the_client_recovers(
    proxy: FaultProxy, transport: str, read: str, tmp_path: Path
) -> None:
    with flowscope.connect(proxy.url(DATABASE), timeout=DEADLINE) as client:
        assert len(client.executions.to_pandas()) == 60  # a warm pool
        proxy.stall()
        try:
            # the pool's ping or the read itself times out; a new connection cannot open
            _fails_within(lambda: READS[read](client, tmp_path), STUCK, DEADLINE + SLACK)
        finally:
            proxy.resume()
        assert len(client.executions.to_pandas()) == 60
        assert not (tmp_path / "x.parquet").exists()


def test_a_paused_server_ends_in_a_timeout_on_a_warm_pool(cluster: Cluster) -> None:
    with flowscope.connect(cluster.primary_url(DATABASE), timeout=DEADLINE) as client:
        assert client.workflows.count() == 3
        with _paused(cluster):
            _fails_within(client.workflows.count, STUCK, DEADLINE + SLACK)
        assert client.workflows.count() == 3


def test_a_cut_connection_during_a_read_is_a_connection_error(
    proxy: FaultProxy, transport: str, tmp_path: Path
) -> None:
    with flowscope.connect(proxy.url(DATABASE), timeout=10) as client:
        client.workflows.count()
        proxy.cut_after(b"COPY")  # the read starts, then the connection goes
        err, _ = _fails_within(
            lambda: READS["export"](client, tmp_path), flowscope.ConnectionFailedError, 5
        )
        assert proxy.cuts_on_trigger == 1
        assert "lost the connection" in str(err), err
        assert not (tmp_path / "x.parquet").exists()
        assert client.workflows.count() == 3


def test_a_server_shutdown_of_the_session_is_a_connection_error(cluster: Cluster) -> None:
    with flowscope.connect(cluster.primary_url(DATABASE), timeout=10) as client:
        pid = client.sql("SELECT pg_backend_pid() AS pid")[0]["pid"]

        def terminate() -> None:
            time.sleep(0.3)
            with flowscope.connect(cluster.primary_url(DATABASE)) as admin:
                admin.sql("SELECT pg_terminate_backend(:p)", {"p": pid})

        threading.Thread(target=terminate).start()
        err, _ = _fails_within(
            lambda: client.sql("SELECT pg_sleep(5), pg_backend_pid()"),
            flowscope.ConnectionFailedError,
            4,
        )
        assert "lost the connection" in str(err)
        assert client.workflows.count() == 3


# -- a COMMIT whose answer never came ------------------------------------------------------------
def test_a_connection_lost_after_commit_says_the_outcome_is_unknown(
    cluster: Cluster, proxy: FaultProxy
) -> None:
    before = _count(cluster, "SELECT count(*) FROM workflows")
    with flowscope.connect(proxy.url(DATABASE), timeout=5) as client:
        client.workflows.count()
        proxy.cut_after(b"COMMIT")
        err, _ = _fails_within(
            lambda: client.workflows.create(name="maybe", owner="ana", nodes=[], edges=[]),
            flowscope.CommitUnknownError,
            5,
        )
        assert proxy.cuts_on_trigger == 1
        assert not isinstance(err, flowscope.ConnectionFailedError)
        assert len(err.ids) == 1 and err.ids[0] in str(err)
        assert "may or may not have been committed" in str(err)
        # it was committed: the ids say what to look up, nothing is written twice
        assert client.workflows.get(err.ids[0]).name == "maybe"
    assert _count(cluster, "SELECT count(*) FROM workflows") == before + 1
    with sa.create_engine(cluster.primary_url(DATABASE), poolclass=sa.pool.NullPool).begin() as c:
        c.execute(sa.text("DELETE FROM workflows WHERE id = :i"), {"i": err.ids[0]})


def test_a_bulk_load_whose_commit_is_lost_names_the_ids_it_sent(
    cluster: Cluster, proxy: FaultProxy
) -> None:
    before = _count(cluster, "SELECT count(*) FROM workflows")
    rows = [{"name": f"bulk {i}", "owner": "ana", "nodes": [], "edges": []} for i in range(3)]
    with flowscope.connect(proxy.url(DATABASE), timeout=5) as client:
        client.workflows.count()
        proxy.cut_after(b"COMMIT")
        err, _ = _fails_within(
            lambda: client.workflows.ingest(rows), flowscope.CommitUnknownError, 5
        )
        assert len(err.ids) == 3 and all(i in str(err) for i in err.ids)
        # committed: every id it names is there, once
        assert sorted(client.workflows.get(i).name for i in err.ids) == ["bulk 0", "bulk 1", "bulk 2"]  # fmt: skip
    assert _count(cluster, "SELECT count(*) FROM workflows") == before + 3
    with sa.create_engine(cluster.primary_url(DATABASE), poolclass=sa.pool.NullPool).begin() as c:
        c.execute(sa.text("DELETE FROM workflows WHERE id = ANY(:i)"), {"i": err.ids})


# -- a writer that fails: the stream closes, the connection is neither locked nor lost ----------
@pytest.mark.parametrize("step", [1, 2, 3])
def test_a_failing_export_writer_leaves_no_locked_connection(
    cluster: Cluster, transport: str, step: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowscope.export import _atomic

    calls = {"n": 0}
    write = _atomic._Sink.write

    def full(self: Any, batch: Any) -> None:
        calls["n"] += 1
        if calls["n"] == step:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.parquet"))
        write(self, batch)

    monkeypatch.setattr(_atomic._Sink, "write", full)
    target = tmp_path / "x.parquet"
    with flowscope.connect(cluster.primary_url(DATABASE), timeout=10, pool_size=1) as client:
        with pytest.raises(flowscope.ConfigurationError) as caught:
            client.export.parquet("executions", target, progress=False, batch_size=7)
        assert "No space left" in str(caught.value) and str(target) in str(caught.value)
        del caught  # the traceback holds the failed call's frames: let the collector have them
        _collects_garbage()
        monkeypatch.setattr(_atomic._Sink, "write", write)
        assert client.export.parquet("executions", target, progress=False).rows == 60


def test_a_failing_mirror_writer_is_a_file_error_not_a_database_error(
    cluster: Cluster, transport: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowscope.mirror import _store

    write = _store.ParquetOut.write

    def full(self: Any, batch: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(self.final))

    monkeypatch.setattr(_store.ParquetOut, "write", full)
    with flowscope.connect(cluster.primary_url(DATABASE), timeout=10, pool_size=1) as client:
        with pytest.raises(flowscope.FlowscopeError) as caught:
            client.mirror(tmp_path / "m").sync(progress=False)
        assert not isinstance(caught.value, flowscope.DatabaseError), caught.value
        assert "No space left" in str(caught.value)
        del caught
        _collects_garbage()
        monkeypatch.setattr(_store.ParquetOut, "write", write)
        assert client.mirror(tmp_path / "m").sync(progress=False).rows["executions"] == 60


def _collects_garbage() -> None:
    """gc.collect() returns (it hung in psycopg's rollback behind an abandoned COPY)."""
    done = threading.Event()
    threading.Thread(target=lambda: (gc.collect(), done.set()), daemon=True).start()
    assert done.wait(10), "gc.collect() hangs: a connection is still locked"


# -- Ctrl-C ---------------------------------------------------------------------------------------
def test_ctrl_c_interrupts_a_stalled_read_within_two_seconds(
    proxy: FaultProxy, transport: str, tmp_path: Path
) -> None:
    with flowscope.connect(proxy.url(DATABASE), timeout=60) as client:
        client.workflows.count()
        proxy.stall()
        sent: list[float] = []

        def interrupt() -> None:
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)

        threading.Timer(0.5, interrupt).start()
        gc.disable()  # a signal that lands in a gc callback is lost (Python prints it)
        try:
            with pytest.raises(KeyboardInterrupt):
                READS["export"](client, tmp_path)
            assert sent and time.monotonic() - sent[0] < 2.0
        finally:
            gc.enable()
            proxy.resume()
        assert client.workflows.count() == 3


# -- errors that say what happened -------------------------------------------------------------
def test_one_mapping_names_what_happened() -> None:
    import psycopg
    from flowscope import _db

    def wrapped(orig: Exception) -> sa.exc.DBAPIError:
        return sa.exc.OperationalError("SELECT 1", {}, orig)

    timeout = _db.translate(wrapped(_deadline.DeadlineExceeded("no answer within 1 s")))
    assert isinstance(timeout, flowscope.QueryTimeoutError)
    lost = _db.translate(
        wrapped(psycopg.OperationalError("server closed the connection unexpectedly"))
    )
    assert isinstance(lost, flowscope.ConnectionFailedError) and "lost the connection" in str(lost)
    refused = _db.translate(wrapped(psycopg.OperationalError("connection refused")))
    assert isinstance(refused, flowscope.ConnectionFailedError) and "cannot connect" in str(refused)
    # an upgrade whose connection died inside its transaction, then used again
    pending = sa.exc.PendingRollbackError(
        "Can't reconnect until invalid transaction is rolled back.  Please rollback() fully"
    )
    assert isinstance(_db.translate(pending), flowscope.ConnectionFailedError)
    # a local file error inside a database block stays a file error (the boundary names the path)
    with pytest.raises(OSError, match="No space left"), _db.translating("postgresql://u@h/x"):
        raise OSError(errno.ENOSPC, "No space left on device", "/x")


# -- concurrent start-up and migration ------------------------------------------------------------
def _run_all(
    scripts: list[list[str]], env: dict[str, str]
) -> list[subprocess.CompletedProcess[str]]:
    procs = [
        subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for args in scripts
    ]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def test_concurrent_upgrades_of_a_fresh_database_all_succeed(cluster: Cluster) -> None:
    engine = sa.create_engine(cluster.primary_url(), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE DATABASE upgrades"))
    engine.dispose()
    env = {**os.environ, "FLOWSCOPE_DATABASE_URL": cluster.primary_url("upgrades")}
    cli = [sys.executable, "-m", "flowscope.cli", "db", "upgrade"]
    results = _run_all([cli] * 3, env)
    for r in results:
        assert r.returncode == 0, r.stderr
    with flowscope.connect(cluster.primary_url("upgrades")) as client:
        assert client.workflows.count() == 0


def test_an_upgrade_killed_during_create_index_concurrently_is_a_connection_error(
    cluster: Cluster,
) -> None:
    admin = sa.create_engine(cluster.primary_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("CREATE DATABASE killed"))
    url = cluster.primary_url("killed")
    side = sa.create_engine(url, poolclass=sa.pool.NullPool)
    # a transaction holding a snapshot: CREATE INDEX CONCURRENTLY waits for it
    blocker = side.connect().execution_options(isolation_level="REPEATABLE READ")
    blocker.execute(sa.text("SELECT count(*) FROM pg_class"))
    killed: list[int] = []

    def kill() -> None:
        find = sa.text(
            "SELECT pid FROM pg_stat_activity WHERE datname = 'killed'"
            " AND query ILIKE 'CREATE INDEX CONCURRENTLY%' AND state = 'active'"
        )
        end = time.monotonic() + 30
        with side.connect() as conn:
            while not killed and time.monotonic() < end:
                pids = conn.execute(find).scalars().all()
                for pid in pids:
                    conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
                    killed.append(pid)
                conn.rollback()
                time.sleep(0.05)

    killer = threading.Thread(target=kill)
    killer.start()
    try:
        with pytest.raises(flowscope.ConnectionFailedError, match="lost the connection"):
            flowscope.connect(url, migrate=True)
    finally:
        killer.join()
        blocker.close()
    assert killed
    with flowscope.connect(url, migrate=True) as client:  # the next upgrade completes it
        assert client.workflows.count() == 0
    side.dispose()
    admin.dispose()


CONNECT = """
import sys, flowscope
with flowscope.connect(data_dir=sys.argv[1]) as client:
    print(client.workflows.count())
"""


def test_processes_starting_together_on_a_fresh_embedded_directory_all_succeed(
    tmp_path: Path,
) -> None:
    from flowscope import _embedded

    data_dir = _embedded.temporary_data_dir(prefix="flowscope-faults-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSCOPE_")}
    results = _run_all([[sys.executable, "-c", CONNECT, str(data_dir)]] * 3, env)
    for r in results:
        assert r.returncode == 0 and r.stdout.strip() == "0", r.stderr
    deadline = time.monotonic() + 30  # the last owner stops the server, the directory goes
    while data_dir.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not data_dir.exists()


# -- the read paths over every client option, on both transports (issue 22, item 2) ---------------
RESERVED = "p@ss:w/o?r#d%+ &=x'\"\\"  # every character a URL or libpq reserves


@pytest.fixture(scope="module")
def reserved_role(cluster: Cluster) -> str:
    """A login whose password holds reserved characters, checked by SCRAM over TCP."""
    engine = sa.create_engine(cluster.primary_url(DATABASE), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE ROLE fs_reserved LOGIN SUPERUSER"))
        alter = sa.text("SELECT format('ALTER ROLE fs_reserved PASSWORD %L', CAST(:p AS text))")
        conn.execute(sa.text(conn.execute(alter, {"p": RESERVED}).scalar_one()))
        hba = cluster.primary_dir / "pg_hba.conf"
        hba.write_text("host all fs_reserved 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        conn.execute(sa.text("SELECT pg_reload_conf()"))
    engine.dispose()
    time.sleep(0.2)
    from urllib.parse import quote

    return f"fs_reserved:{quote(RESERVED, safe='')}"


def _option(
    name: str, cluster: Cluster, login: str, monkeypatch: pytest.MonkeyPatch
) -> flowscope.Client:
    port = cluster.primary_port
    if name == "statement_timeout":
        return flowscope.connect(cluster.primary_url(DATABASE), statement_timeout=30)
    if name == "statement_timeout_env":
        monkeypatch.setenv("FLOWSCOPE_STATEMENT_TIMEOUT", "30")
        return flowscope.connect(cluster.primary_url(DATABASE))
    if name == "application_name":
        return flowscope.connect(cluster.primary_url(DATABASE) + "?application_name=fs%20app")
    if name == "reserved_password":
        return flowscope.connect(f"postgresql://{login}@127.0.0.1:{port}/{DATABASE}")
    if name == "unix_socket":
        return flowscope.connect(
            f"postgresql://postgres@/{DATABASE}?host={cluster.root}&port={port}"
        )
    assert name == "scoped"
    with flowscope.connect(cluster.primary_url(DATABASE)) as admin:
        org = admin.sql("SELECT id FROM organizations")[0]["id"]
    return flowscope.connect(
        cluster.primary_url(DATABASE), organization_id=org, statement_timeout=30
    )


OPTIONS = [
    "statement_timeout",
    "statement_timeout_env",
    "application_name",
    "reserved_password",
    "unix_socket",
    "scoped",
]


@pytest.mark.parametrize("option", OPTIONS)
def test_every_read_path_works_with_every_client_option(
    cluster: Cluster,
    reserved_role: str,
    transport: str,
    option: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flowscope.export import _adbc

    used = {"adbc": 0}
    batches = _adbc._adbc_batches

    def spy(*args: Any, **kwargs: Any) -> Any:
        used["adbc"] += 1
        return batches(*args, **kwargs)

    monkeypatch.setattr(_adbc, "_adbc_batches", spy)
    with _option(option, cluster, reserved_role, monkeypatch) as client:
        assert len(READS["to_pandas"](client, tmp_path)) == 60
        assert READS["export"](client, tmp_path).rows == 60
        assert READS["query_arrow"](client, tmp_path).num_rows == 60
        assert READS["mirror"](client, tmp_path).rows["executions"] == 60
    assert (used["adbc"] > 0) == (transport == "adbc")


def test_a_wrong_reserved_password_is_refused(cluster: Cluster, reserved_role: str) -> None:
    url = f"postgresql://fs_reserved:wrong@127.0.0.1:{cluster.primary_port}/{DATABASE}"
    with pytest.raises(flowscope.FlowscopeError, match="password authentication failed"):
        flowscope.connect(url)
