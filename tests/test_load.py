"""Under load (issue 13, item 6): threads sharing one client.

* 32 threads share one client (an admin one, then a scoped one: each tenant identity
  has a pool of its own) and mix CRUD, lifecycle transitions and analytics, through a
  pool smaller than the number of threads: no error, and nothing lost (every row
  written is there, once, in the state its thread left it, with its audit entries).
* When every connection is busy for longer than ``pool_timeout``, the caller gets a
  :class:`flowscope.QueryTimeoutError` naming the pool after that wait, not a hang.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import flowscope
import pytest
import sqlalchemy as sa

THREADS = 32
ROUNDS = 3


@pytest.fixture
def small_pool(database_url: str, client: flowscope.Client) -> Iterator[flowscope.Client]:
    """A client whose pools (its own and each tenant identity's) hold at most 6 connections."""
    c = flowscope.connect(database_url, pool_size=2, max_overflow=4, pool_timeout=60)
    try:
        yield c
    finally:
        c.close()


def _work(target: flowscope.Client, worker: int, extra: Callable[[int], None]) -> dict[str, Any]:
    """One thread's share: what it wrote and the state it left each row in."""
    done: dict[str, Any] = {"workflows": {}, "executions": {}}
    extra(worker)
    for r in range(ROUNDS):
        wf = target.workflows.create(
            name=f"w{worker}-{r}", owner=f"owner{worker}", nodes=[], edges=[], tags=["load"]
        )
        wf = target.workflows.update(wf.id, description="updated", expected_version=wf.version)
        done["workflows"][wf.id] = wf.version
        for k, verb in enumerate(("complete", "fail", "cancel")):
            ex = target.executions.create(workflow_id=wf.id, parameters={"w": worker, "k": k})
            if verb != "cancel":
                target.executions.start(ex.id)
            if verb == "complete":
                ex = target.executions.complete(ex.id, result={"ok": True})
            elif verb == "fail":
                ex = target.executions.fail(ex.id, error={"type": "E", "message": "boom"})
            else:
                ex = target.executions.cancel(ex.id)
            done["executions"][ex.id] = ex.status
        assert target.workflows.get(wf.id).version == wf.version
        assert target.executions.count(workflow_ids=[wf.id]) == 3
        page = target.workflows.list(owner=f"owner{worker}", limit=100)
        assert len(page.items) == r + 1
        frame = target.analytics.status_breakdown(by="status", tags_any=["load"])
        assert set(frame["status"]) <= {"completed", "failed", "cancelled", "queued", "running"}
        target.analytics.durations(workflow_ids=[wf.id])
        target.sql("SELECT count(*) AS n FROM executions WHERE workflow_id = :w", {"w": wf.id})
        ingested = f"ex_load_{worker}_{r}"
        target.executions.ingest(
            [
                {
                    "id": ingested,
                    "workflow_id": wf.id,
                    "status": "completed",
                    "started_at": "2026-01-01T00:00:00Z",
                    "completed_at": "2026-01-01T00:00:02Z",
                }
            ]
        )
        done["executions"][ingested] = "completed"
    return done


def _hammer(
    target: flowscope.Client, extra: Callable[[int], None] = lambda worker: None
) -> list[dict[str, Any]]:
    start = threading.Barrier(THREADS)

    def run(worker: int) -> dict[str, Any]:
        start.wait()
        return _work(target, worker, extra)

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(run, range(THREADS)))  # re-raises the first error, if any


def _check_nothing_lost(engine: sa.Engine, results: list[dict[str, Any]]) -> None:
    workflows = {k: v for r in results for k, v in r["workflows"].items()}
    executions = {k: v for r in results for k, v in r["executions"].items()}
    assert len(workflows) == THREADS * ROUNDS and len(executions) == THREADS * ROUNDS * 4
    with engine.connect() as conn:
        stored_wf = dict(conn.execute(sa.text("SELECT id, version FROM workflows")).all())
        stored_ex = dict(conn.execute(sa.text("SELECT id, status FROM executions")).all())
        audit = dict(
            conn.execute(
                sa.text("SELECT table_name, count(*) FROM audit_log GROUP BY table_name")
            ).all()
        )
    assert stored_wf == workflows
    assert stored_ex == executions
    # workflows: INSERT + UPDATE; executions: INSERT + one UPDATE per transition
    transitions = sum(
        0 if k.startswith("ex_load_") else 2 if s != "cancelled" else 1
        for k, s in executions.items()
    )
    assert audit.get("workflows") == 2 * len(workflows)
    assert audit.get("executions") == len(executions) + transitions


@pytest.mark.slow
def test_32_threads_share_an_admin_client(small_pool: flowscope.Client, engine: sa.Engine) -> None:
    org = small_pool.organizations.create(name="Acme", slug="acme")
    users = [
        small_pool.users.create(
            username=f"u{w}",
            email=f"u{w}@example.com",
            organization_id=org.id,
            scopes=["workflow:read"],
        ).id
        for w in range(THREADS)
    ]

    def extra(worker: int) -> None:
        # 32 tenant logins provisioned at once, rollups refreshed at once, log-ins counted
        # (the other threads' workflows have no organization: the tenant sees none of them)
        assert small_pool.scoped(org.id, user_id=users[worker]).workflows.count() == 0
        small_pool.analytics.refresh_rollups()
        small_pool.analytics.durations(use_rollups=True)
        with pytest.raises(flowscope.AuthenticationError):
            small_pool.users.authenticate(f"u{worker}", "not the password")

    results = _hammer(small_pool, extra)
    _check_nothing_lost(engine, results)
    with engine.connect() as conn:
        failures = conn.execute(sa.text("SELECT sum(failed_login_attempts) FROM users")).scalar()
        logins = conn.execute(sa.text("SELECT count(*) FROM flowscope_identities")).scalar()
    assert failures == THREADS and logins == THREADS


@pytest.mark.slow
def test_32_threads_share_a_scoped_client(small_pool: flowscope.Client, engine: sa.Engine) -> None:
    org = small_pool.organizations.create(name="Acme", slug="acme")
    user = small_pool.users.create(
        username="worker",
        email="worker@example.com",
        organization_id=org.id,
        # organization-wide: the threads write workflows owned by other names (revision 0007)
        scopes=["workflow:read:all", "workflow:write:all", "workflow:execute"],
    )
    scoped = small_pool.scoped(org.id, user_id=user.id)
    results = _hammer(scoped)
    _check_nothing_lost(engine, results)
    with engine.connect() as conn:
        orgs = conn.execute(sa.text("SELECT DISTINCT organization_id FROM executions")).all()
    assert orgs == [(org.id,)]


def _exhausted(target: flowscope.Client, call: Callable[[], Any], wait: float) -> float:
    """Hold every connection of ``target``'s pool in other threads, then time ``call``."""
    holders = 2  # pool_size=1 + max_overflow=1
    held = threading.Barrier(holders + 1)
    release = threading.Event()

    def hold() -> None:
        with target.transaction():
            held.wait()
            release.wait(30)

    threads = [threading.Thread(target=hold) for _ in range(holders)]
    for t in threads:
        t.start()
    try:
        held.wait(30)
        start = time.monotonic()
        with pytest.raises(flowscope.QueryTimeoutError, match="no free database connection"):
            call()
        return time.monotonic() - start
    finally:
        release.set()
        for t in threads:
            t.join(30)


@pytest.mark.parametrize("scoped", [False, True], ids=["admin", "scoped"])
def test_an_exhausted_pool_is_a_clear_error_after_pool_timeout(
    database_url: str, client: flowscope.Client, scoped: bool
) -> None:
    org = client.organizations.create(name="Acme", slug="acme")
    small = flowscope.connect(database_url, pool_size=1, max_overflow=1, pool_timeout=0.5)
    try:
        target = small.scoped(org.id) if scoped else small
        target.workflows.count()  # provisioned, pool warm
        took = _exhausted(target, target.workflows.count, 0.5)
        assert 0.45 <= took < 5
        # and afterwards the pool serves again
        assert target.workflows.count() == 0
    finally:
        small.close()


def test_pool_settings_are_checked() -> None:
    for kwargs in (
        {"pool_timeout": 0},
        {"pool_timeout": -1},
        {"pool_timeout": "soon"},
        {"pool_size": 0},
        {"max_overflow": -1},
        {"pool_size": True},
    ):
        with pytest.raises(flowscope.ConfigurationError):
            flowscope.connect("postgresql://u@127.0.0.1:1/x", **kwargs)
