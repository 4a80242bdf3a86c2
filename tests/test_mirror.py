"""The local mirror: both engines give the same frames, change capture misses nothing
(late commits, updates, deletes, purges), a killed sync changes nothing, tenancy holds."""

from __future__ import annotations

import inspect
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import flowscope
import pandas as pd
import pytest
import sqlalchemy as sa
from flowscope.analytics import Analytics
from flowscope.mirror import Mirror, MirrorAnalytics

from . import _analytics_data as data
from ._helpers import change_some_rows, make_workflow

UNTIL = data.BASE + timedelta(days=data.DAYS)
FILTERS: list[dict[str, Any]] = [
    {},
    {"status": ["failed", "timeout"]},
    {"since": data.BASE + timedelta(days=2), "until": data.BASE + timedelta(days=9)},
    {"workflow_ids": ["wf_etl", "wf_b1"]},
    {"workflow_ids": ["wf_etl", "wf_nowhere"]},  # an id outside the mirror's ENUM of ids
    {"owner": ["ana"]},
    {"owner": ["nobody"], "status": ["failed"]},
    {"organization_id": ["org_b"]},
    {"tags_any": ["etl", "ml"]},
    {"tags_all": ["etl", "prod"]},
    {"include_deleted_workflows": True},
]
BYS: list[Any] = [
    None,
    "workflow",
    "workflow_id",
    "owner",
    "organization_id",
    "status",
    "tag",
    "day",
    "workflow_version",
    ["organization_id", "status"],
]


@pytest.fixture
def seeded(client: flowscope.Client, engine: sa.Engine, tmp_path: Path) -> tuple[Any, Mirror]:
    data.insert(engine)
    mirror = client.mirror(tmp_path / "mirror")
    mirror.sync(progress=False)
    yield client, mirror
    mirror.close()


def _same(pg: pd.DataFrame, dk: pd.DataFrame) -> None:
    assert list(pg.columns) == list(dk.columns)
    assert dict(pg.dtypes) == dict(dk.dtypes)
    pd.testing.assert_frame_equal(
        pg.reset_index(drop=True), dk.reset_index(drop=True), check_exact=False, rtol=1e-9
    )
    assert pg.attrs.get("engine") == "postgresql" and dk.attrs["engine"] == "duckdb"


def _calls() -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []
    for by in BYS:
        calls.append(("durations", {"by": by, "percentiles": (0.5, 0.9, 0.999)}))
        calls.append(("queue_wait", {"by": by}))
        calls.append(("status_breakdown", {"by": by}))
        calls.append(("failures", {"by": by, "top": None}))
    for freq in ("15min", "1h", "6h", "1D", "1W", "1MS", "2MS"):
        calls.append(("durations", {"by": "workflow", "freq": freq}))
        calls.append(("status_breakdown", {"freq": freq, "normalize": True}))
        # by tag at 15 minutes the grid has more cells than analytics return (MAX_BUCKETS)
        calls.append(("throughput", {"freq": freq if freq != "15min" else "1h", "by": "tag"}))
        calls.append(("concurrency", {"freq": freq}))
        calls.append(("queue_wait", {"freq": freq}))
    calls += [
        ("tags", {}),
        ("tag_pairs", {}),
        ("failures", {"top": 3}),
        ("compare", {"period": "3D", "by": "workflow", "until": UNTIL}),
        ("compare", {"period": "24h", "until": UNTIL - timedelta(days=5)}),
        ("summary", {}),
        ("summary", {"sort": "p95_seconds", "descending": False, "limit": 3}),
        ("summary", {"sort": "workflow"}),
    ]
    return calls


def test_the_mirror_has_every_analytics_method() -> None:
    public = {n for n in dir(Analytics) if not n.startswith("_")}
    assert public <= {n for n in dir(MirrorAnalytics) if not n.startswith("_")}
    twins = {n for n in public if isinstance(getattr(Analytics, n), property)} - {"engine"}
    assert twins == {"arrow", "polars"}  # the Arrow and polars twins call the methods below
    for name in public - {"use_rollups", "engine"} - twins:
        assert inspect.signature(getattr(Analytics, name)).parameters.keys() == (
            inspect.signature(getattr(MirrorAnalytics, name)).parameters.keys()
        ), name


def test_every_call_and_filter_gives_the_same_frame_on_both_engines(seeded) -> None:
    client, mirror = seeded
    checked = 0
    for name, kwargs in _calls():
        for flt in FILTERS if name != "compare" else [{}, {"status": ["failed"]}]:
            if name in ("compare",) and "since" in flt:
                continue
            pg = getattr(client.analytics, name)(**kwargs, **flt)
            dk = getattr(mirror.analytics, name)(**kwargs, **flt)
            try:
                _same(pg, dk)
            except AssertionError as exc:
                raise AssertionError(f"{name}({kwargs}, {flt}): {exc}") from exc
            checked += len(pg)
    assert checked > 10_000  # the comparisons compared rows, not empty frames


def test_frames_say_which_engine_and_how_fresh(seeded) -> None:
    client, mirror = seeded
    frame = mirror.analytics.durations(by="workflow")
    assert frame.attrs["engine"] == "duckdb"
    assert frame.attrs["mirror_as_of"] == mirror.as_of
    assert 0 <= frame.attrs["mirror_age_seconds"] < 600
    assert mirror.analytics.rollups_refreshed_at() == mirror.as_of


# -- change capture ------------------------------------------------------------------
def _table(engine: sa.Engine, name: str) -> pd.DataFrame:
    cols = (
        "id, status, duration_seconds::float8 AS d, updated_at"
        if name == "executions"
        else ("id, name, tags, deleted_at")
    )
    with engine.connect() as conn:
        frame = pd.read_sql(sa.text(f"SELECT {cols} FROM {name}"), conn)
    return frame.sort_values("id").reset_index(drop=True)


def _mirrored(mirror: Mirror, name: str) -> pd.DataFrame:
    cols = (
        "id, status, duration_seconds::DOUBLE AS d, updated_at"
        if name == "executions"
        else ("id, name, tags, deleted_at")
    )
    con = mirror.duckdb()
    try:
        frame = con.sql(f"SELECT {cols} FROM {name}").df()
    finally:
        con.close()
    return frame.sort_values("id").reset_index(drop=True)


def _assert_mirror_equals_table(mirror: Mirror, engine: sa.Engine) -> None:
    for name in ("executions", "workflows"):
        pg, dk = _table(engine, name), _mirrored(mirror, name)
        assert pg["id"].tolist() == dk["id"].tolist(), name
        if name == "executions":
            assert pg["status"].tolist() == dk["status"].tolist()
            pd.testing.assert_series_equal(pg["d"], dk["d"], check_names=False)
            assert (pd.to_datetime(pg["updated_at"], utc=True) == dk["updated_at"]).all()
        else:
            assert pg["name"].tolist() == dk["name"].tolist()
            assert [list(t) for t in pg["tags"]] == [list(t) for t in dk["tags"]]


def test_incremental_sync_follows_inserts_updates_and_deletes(seeded, engine) -> None:
    client, mirror = seeded
    _assert_mirror_equals_table(mirror, engine)
    change_some_rows(client, engine)
    report = mirror.sync(progress=False)
    assert not report.full
    assert report.added == 2  # the workflow and the execution (created, then started)
    assert report.removed == 4
    assert report.changed >= 4  # 3 updated executions + the soft-deleted workflow
    _assert_mirror_equals_table(mirror, engine)
    again = mirror.sync(progress=False)
    assert (again.added, again.changed, again.removed) == (0, 0, 0)
    _assert_mirror_equals_table(mirror, engine)
    # and every analytics call still agrees with PostgreSQL
    for name, kwargs in _calls()[:40]:
        _same(getattr(client.analytics, name)(**kwargs), getattr(mirror.analytics, name)(**kwargs))


def test_a_sync_refreshes_the_loaded_tables_from_its_delta(seeded, engine) -> None:
    """After a sync that kept the base files, the analytics connection is brought up to date
    in place (the delta's rows replace theirs, deleted ids go); a sync that brings a value
    the ENUM types lack (a new workflow) makes it load afresh. Either way the frames are
    PostgreSQL's."""
    client, mirror = seeded
    calls = [c for c in _calls() if c[1].get("by") in ("workflow_id", "owner", "status", "tag")]
    mirror.analytics.summary()
    loaded, _ = mirror._connection()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE executions SET status = 'failed', error = '{\"type\": \"E\"}'"
                " WHERE id IN (SELECT id FROM executions WHERE status = 'running' LIMIT 3)"
            )
        )
        conn.execute(
            sa.text(
                "DELETE FROM executions WHERE id IN"
                " (SELECT id FROM executions WHERE status = 'queued' LIMIT 4)"
            )
        )
    client.executions.create(workflow_id="wf_etl")
    assert not mirror.sync(progress=False).full
    for name, kwargs in calls:
        _same(getattr(client.analytics, name)(**kwargs), getattr(mirror.analytics, name)(**kwargs))
    assert mirror._connection()[0] is loaded  # refreshed in place, not loaded again
    assert mirror._connection()[0].execute("SELECT count(*) FROM executions").fetchall() == [
        (len(_holds(mirror)["executions"]),)
    ]
    # a workflow id the ENUM of ids lacks: the refresh rolls back and the mirror loads afresh
    wf = client.workflows.create(name="n", owner="ana", nodes=[], edges=[], organization_id="org_a")
    client.executions.create(workflow_id=wf.id)
    assert not mirror.sync(progress=False).full
    for name, kwargs in calls:
        _same(getattr(client.analytics, name)(**kwargs), getattr(mirror.analytics, name)(**kwargs))
    assert mirror._connection()[0] is not loaded


def test_refreshes_stop_once_they_replaced_a_share_of_the_rows(seeded, monkeypatch) -> None:
    """Replaced rows keep their space in DuckDB until a load: past MAX_REPLACED of the
    tables' rows since the load, a sync's first call loads afresh."""
    from flowscope.mirror import _native

    client, mirror = seeded
    loaded, _ = mirror._connection()
    client.executions.create(workflow_id="wf_etl")
    mirror.sync(progress=False)
    assert mirror._connection()[0] is loaded and mirror._con_replaced >= 1
    monkeypatch.setattr(_native, "MAX_REPLACED", 0.0)
    client.executions.create(workflow_id="wf_etl")
    mirror.sync(progress=False)
    assert mirror._connection()[0] is not loaded and mirror._con_replaced == 0
    _same(client.analytics.summary(), mirror.analytics.summary())


def test_a_transaction_that_commits_late_is_not_lost(seeded, engine) -> None:
    """A writer starts before a sync (its rows carry an older updated_at) and commits after
    it: the next sync must still bring its rows (a `updated_at > last` mark would not)."""
    client, mirror = seeded
    late = engine.connect()
    tx = late.begin()
    late.execute(sa.text("SELECT txid_current()"))  # the writer has an id before the sync
    late.execute(
        sa.text(
            "INSERT INTO executions (id, workflow_id, owner, organization_id, status, created_at)"
            " VALUES ('exe_late', 'wf_etl', 'ana', 'org_a', 'completed', now() - interval '1 day')"
        )
    )
    late.execute(
        sa.text(
            "UPDATE executions SET status = 'cancelled' WHERE id = (SELECT min(id)"
            " FROM executions WHERE status = 'completed')"
        )
    )
    late.execute(
        sa.text(
            "DELETE FROM executions WHERE id = (SELECT max(id) FROM executions"
            " WHERE status = 'failed')"
        )
    )
    try:
        first = mirror.sync(progress=False)  # runs while the writer is open
    finally:
        tx.commit()
        late.close()
    assert first.added == first.changed == first.removed == 0
    # a row committed by a transaction that started after the horizon, meanwhile
    client.executions.create(workflow_id="wf_b2")
    second = mirror.sync(progress=False)
    assert (second.added, second.changed, second.removed) == (2, 1, 1)
    _assert_mirror_equals_table(mirror, engine)


def test_writers_running_during_syncs(seeded, engine) -> None:
    """Threads insert, update and delete while syncs run; after they stop, one more sync
    makes the mirror equal to the table."""
    client, mirror = seeded
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            i = 0
            while not stop.is_set():
                i += 1
                with engine.begin() as conn:
                    conn.execute(
                        sa.text(
                            "INSERT INTO executions (id, workflow_id, owner, organization_id)"
                            " VALUES (:id, 'wf_etl', 'ana', 'org_a')"
                        ),
                        {"id": f"exe_w{k}_{i}"},
                    )
                    conn.execute(sa.text("SELECT pg_sleep(0.005)"))
                    conn.execute(
                        sa.text("UPDATE executions SET status = 'running' WHERE id = :id"),
                        {"id": f"exe_w{k}_{i - 1}"},
                    )
                    if i % 3 == 0:
                        conn.execute(
                            sa.text("DELETE FROM executions WHERE id = :id"),
                            {"id": f"exe_w{k}_{i - 2}"},
                        )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(6):
            mirror.sync(progress=False)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    mirror.sync(progress=False)
    _assert_mirror_equals_table(mirror, engine)


def test_a_purge_during_sync(seeded, engine, client) -> None:
    """Purging a workflow deletes its executions by cascade: all of them leave the mirror,
    also when the purge commits while a sync is reading."""
    _, mirror = seeded
    purger = engine.connect()
    tx = purger.begin()
    purger.execute(sa.text("DELETE FROM workflows WHERE id = 'wf_b1'"))
    try:
        mirror.sync(progress=False)
    finally:
        tx.commit()
        purger.close()
    report = mirror.sync(progress=False)
    assert report.removed > 1
    _assert_mirror_equals_table(mirror, engine)


def test_compaction_rewrites_the_base_and_stays_equal(seeded, engine, monkeypatch) -> None:
    from flowscope.mirror import _store

    client, mirror = seeded
    monkeypatch.setattr(_store, "COMPACT_MIN_ROWS", 5)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE executions SET steps_total = steps_total + 1"
                " WHERE id IN (SELECT id FROM executions LIMIT 40)"
            )
        )
    mirror.sync(progress=False)
    state = mirror._state()
    assert state["tables"]["executions"]["delta"] is None  # compacted
    assert state["tables"]["executions"]["base"] != ["executions/base-000001-0.parquet"]
    _assert_mirror_equals_table(mirror, engine)
    files = {p.name for p in (mirror.path / "executions").iterdir()}
    assert "base-000001-0.parquet" in files  # the previous state's files stay one sync
    with engine.begin() as conn:
        conn.execute(
            sa.text("DELETE FROM executions WHERE id IN (SELECT id FROM executions LIMIT 2)")
        )
    mirror.sync(progress=False)
    files = {p.name for p in (mirror.path / "executions").iterdir()}
    assert "base-000001-0.parquet" not in files
    _assert_mirror_equals_table(mirror, engine)


# -- crash safety ------------------------------------------------------------------------
CHILD = """
import os, signal, sys
import flowscope
from flowscope.mirror import _store
where = sys.argv[3]
def die(name, where=where):
    if name == where:
        os.kill(os.getpid(), signal.SIGKILL)
_store.step = die
client = flowscope.connect(sys.argv[1])
client.mirror(sys.argv[2]).sync(progress=False, full=sys.argv[4] == "full")
"""


@pytest.mark.parametrize(
    ("step", "full"),
    [("batch", True), ("files-ready", True), ("before-state", False), ("files-ready", False)],
)
def test_a_killed_sync_leaves_the_previous_state(seeded, engine, database_url, step, full) -> None:
    client, mirror = seeded
    before = _mirrored(mirror, "executions")
    state = mirror._state()
    with engine.begin() as conn:
        conn.execute(
            sa.text("DELETE FROM executions WHERE id IN (SELECT id FROM executions LIMIT 5)")
        )
        conn.execute(
            sa.text(
                "UPDATE executions SET steps_total = steps_total + 1"
                " WHERE id IN (SELECT id FROM executions LIMIT 5)"
            )
        )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(CHILD),
            database_url,
            str(mirror.path),
            step,
            "full" if full else "incremental",
        ],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert mirror._state() == state
    pd.testing.assert_frame_equal(_mirrored(mirror, "executions"), before)
    leftovers = [p for p in mirror.path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers or step != "batch"  # the killed sync did leave a half-written file
    mirror.sync(progress=False)  # sweeps what the killed sync left, then catches up
    _assert_mirror_equals_table(mirror, engine)
    after = mirror._state()
    listed = {
        f
        for t in after["tables"].values()
        for f in [*t["base"], *(x for x in (t["delta"], t["deleted"]) if x)]
    } | set(after["previous_files"])
    on_disk = {
        f"{d.name}/{p.name}" for d in mirror.path.iterdir() if d.is_dir() for p in d.iterdir()
    }
    assert on_disk <= listed


# -- tenancy and files -------------------------------------------------------------------
def test_a_scoped_mirror_holds_only_its_organization(seeded, engine, tmp_path, monkeypatch) -> None:
    client, _ = seeded
    scoped = client.scoped("org_b")
    mirror = scoped.mirror(tmp_path / "org_b")
    mirror.sync(progress=False)
    con = mirror.duckdb()
    orgs = {r[0] for r in con.sql("SELECT DISTINCT organization_id FROM executions").fetchall()}
    wf_orgs = {r[0] for r in con.sql("SELECT DISTINCT organization_id FROM workflows").fetchall()}
    n = con.execute("SELECT count(*) FROM executions").fetchone()[0]
    con.close()
    assert orgs == {"org_b"} and wf_orgs == {"org_b"}
    with engine.connect() as conn:
        expected = conn.execute(
            sa.text("SELECT count(*) FROM executions WHERE organization_id = 'org_b'")
        ).scalar()
    assert n == expected > 0
    # changes of the other organization never reach it, its own do
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE executions SET status = 'cancelled' WHERE organization_id = 'org_a'")
        )
        conn.execute(
            sa.text(
                "DELETE FROM executions WHERE id = (SELECT min(id) FROM executions"
                " WHERE organization_id = 'org_b')"
            )
        )
    report = mirror.sync(progress=False)
    assert (report.added, report.changed, report.removed) == (0, 0, 1)
    frame = mirror.analytics.status_breakdown(by="organization_id")
    assert frame["organization_id"].tolist() == ["org_b"]
    _same(scoped.analytics.summary(), mirror.analytics.summary())
    # another identity cannot open it; neither can the admin
    with pytest.raises(flowscope.PermissionDeniedError):
        client.scoped("org_a").mirror(tmp_path / "org_b")
    with pytest.raises(flowscope.PermissionDeniedError):
        client.mirror(tmp_path / "org_b")
    # default paths differ per identity (under a data directory of this test's own)
    monkeypatch.setenv("FLOWSCOPE_DATA_DIR", str(tmp_path / "data"))
    assert client.scoped("org_a").mirror().path.is_relative_to(tmp_path / "data")
    assert client.scoped("org_a").mirror().path != scoped.mirror().path != client.mirror().path


def test_files_are_readable_by_the_owner_only(seeded) -> None:
    _, mirror = seeded
    assert stat.S_IMODE(mirror.path.stat().st_mode) == 0o700
    files = [p for p in mirror.path.rglob("*") if p.is_file()]
    assert len(files) >= 3
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    for d in (p for p in mirror.path.rglob("*") if p.is_dir()):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d


def test_a_second_sync_at_once_is_a_conflict(seeded) -> None:
    from flowscope._files import directory_lock

    _, mirror = seeded
    with directory_lock(mirror.path, "test"), pytest.raises(flowscope.ConflictError):
        mirror.sync(progress=False)


def test_unsynced_mirror_is_a_clear_error(client, tmp_path) -> None:
    mirror = client.mirror(tmp_path / "never")
    with pytest.raises(flowscope.ValidationError, match="never synced"):
        mirror.analytics.durations()
    with pytest.raises(flowscope.ValidationError, match="never synced"):
        mirror.duckdb()


def test_an_empty_database_mirrors_to_empty_frames(client, tmp_path) -> None:
    mirror = client.mirror(tmp_path / "empty")
    report = mirror.sync(progress=False)
    assert report.full and report.rows == {"workflows": 0, "executions": 0}
    _same(client.analytics.durations(by="workflow"), mirror.analytics.durations(by="workflow"))
    _same(client.analytics.tags(), mirror.analytics.tags())
    assert report.as_of <= datetime.now(UTC)


def test_cli_mirror_sync(seeded, database_url, tmp_path) -> None:
    from flowscope.cli import app
    from typer.testing import CliRunner

    runner = CliRunner()
    target = tmp_path / "cli-mirror"
    args = ["mirror", "sync", "--path", str(target), "--no-progress"]
    result = runner.invoke(app, [*args, "--database-url", database_url])
    assert result.exit_code == 0, result.output
    assert "full copy" in result.output and "executions 301" in result.output
    again = runner.invoke(app, [*args, "--database-url", database_url])
    assert again.exit_code == 0 and "incremental, 0 added, 0 changed, 0 removed" in again.output


# -- visibility that changes without a change of the rows -------------------------------
OWN = ["workflow:read", "workflow:write", "workflow:execute"]


@pytest.fixture
def office(client: flowscope.Client, engine: sa.Engine, tmp_path: Path) -> dict[str, Any]:
    """Organization A with users ana and bo (own-and-public reach): ana's private and public
    workflows and bo's private one, two executions each; organization B with a public,
    empty workflow. Each user's mirror is synced."""
    org = client.organizations.create(name="A", slug="a")
    other = client.organizations.create(name="B", slug="b")
    users = {}
    for name in ("ana", "bo"):
        user = client.users.create(username=name, email=f"{name}@x.org", organization_id=org.id, scopes=OWN)  # fmt: skip
        users[name] = user.id
    wfs = {
        key: make_workflow(
            client, name=key, owner=users[key[: key.index("_")]], organization_id=org.id,
            is_public=key.endswith("public"),
        ).id
        for key in ("ana_private", "ana_public", "bo_private")
    }  # fmt: skip
    for wf in list(wfs.values()):
        first, _ = (client.executions.create(workflow_id=wf) for _ in range(2))
        client.executions.complete(client.executions.start(first.id).id)
    wfs["empty"] = client.workflows.create(
        name="empty", owner="x", organization_id=other.id, nodes=[], edges=[], is_public=True
    ).id
    who = {name: client.scoped(org.id, user_id=uid) for name, uid in users.items()}
    who["org_a"], who["org_b"] = client.scoped(org.id), client.scoped(other.id)
    mirrors = {name: c.mirror(tmp_path / name) for name, c in who.items()}
    for mirror in mirrors.values():
        mirror.sync(progress=False)
    yield {"org": org, "other": other, "users": users, "wfs": wfs, "as": who, "m": mirrors}
    for mirror in mirrors.values():
        mirror.close()


def _sees(scoped: flowscope.Client) -> dict[str, set[str]]:
    return {
        t: {r["id"] for r in scoped.sql(f"SELECT id FROM {t}")} for t in ("workflows", "executions")
    }


def _holds(mirror: Mirror) -> dict[str, set[str]]:
    con = mirror.duckdb()
    try:
        return {
            t: {r[0] for r in con.sql(f"SELECT id FROM {t}").fetchall()}
            for t in ("workflows", "executions")
        }
    finally:
        con.close()


def _synced_equal(office: dict[str, Any], *names: str) -> list[Any]:
    """Sync each named mirror incrementally; it then holds exactly what its login reads, and
    its analytics equal PostgreSQL's for that login."""
    reports = []
    for name in names:
        mirror, scoped = office["m"][name], office["as"][name]
        reports.append(mirror.sync(progress=False))
        assert not reports[-1].full
        assert _holds(mirror) == _sees(scoped), name
        _same(
            scoped.analytics.status_breakdown(by="workflow_id"),
            mirror.analytics.status_breakdown(by="workflow_id"),
        )
    return reports


def test_a_handover_brings_and_takes_the_workflows_executions(office) -> None:
    ana, bo = office["as"]["ana"], office["as"]["bo"]
    handed = office["wfs"]["ana_private"]
    before = _holds(office["m"]["bo"])
    assert handed not in before["workflows"] and len(before["executions"]) == 4
    ana.workflows.update(handed, owner=office["users"]["bo"])  # flowscope_hand_over()
    (to_bo,) = _synced_equal(office, "bo")
    assert handed in _holds(office["m"]["bo"])["workflows"]
    assert len(_holds(office["m"]["bo"])["executions"]) == 6  # its unchanged executions too
    assert (to_bo.added, to_bo.removed) == (3, 0)
    # and back: bo hands its own private workflow to ana, and loses it and its runs
    mine = office["wfs"]["bo_private"]
    bo.workflows.update(mine, owner=office["users"]["ana"])
    (from_bo,) = _synced_equal(office, "bo", "ana")[:1]
    assert mine not in _holds(office["m"]["bo"])["workflows"]
    assert from_bo.removed == 3  # the workflow and its two executions
    assert mine in _holds(office["m"]["ana"])["workflows"]


def test_is_public_flips_reach_other_users_mirrors(office) -> None:
    ana = office["as"]["ana"]
    public = office["wfs"]["ana_public"]
    assert public in _holds(office["m"]["bo"])["workflows"]
    ana.workflows.update(public, is_public=False)
    (hidden,) = _synced_equal(office, "bo")
    assert public not in _holds(office["m"]["bo"])["workflows"]
    assert hidden.removed == 3 and len(_holds(office["m"]["bo"])["executions"]) == 2
    ana.workflows.update(office["wfs"]["ana_private"], is_public=True)
    ana.workflows.update(public, is_public=True)
    (shown,) = _synced_equal(office, "bo")
    assert shown.added == 6 and len(_holds(office["m"]["bo"])["executions"]) == 6
    _synced_equal(office, "ana", "org_a")  # their reach did not change


def test_a_workflow_moved_between_organizations(office, engine) -> None:
    """A workflow (without executions: the integrity triggers refuse to move one with) moved
    from B to A leaves B's mirror and reaches A's, its organization's and its public reach."""
    empty = office["wfs"]["empty"]
    assert empty in _holds(office["m"]["org_b"])["workflows"]
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE workflows SET organization_id = :o WHERE id = :w"),
            {"o": office["org"].id, "w": empty},
        )
    _synced_equal(office, "org_b", "org_a", "bo", "ana")
    assert empty not in _holds(office["m"]["org_b"])["workflows"]
    assert all(empty in _holds(office["m"][n])["workflows"] for n in ("org_a", "bo", "ana"))
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE workflows SET organization_id = :o WHERE id = :w"),
            {"o": office["other"].id, "w": empty},
        )
    _synced_equal(office, "org_b", "org_a", "bo", "ana")
    assert empty in _holds(office["m"]["org_b"])["workflows"]
    assert not any(empty in _holds(office["m"][n])["workflows"] for n in ("org_a", "bo", "ana"))


def test_a_scope_granted_or_revoked_reaches_the_mirror(office, client) -> None:
    """bo given ``workflow:read:all`` sees ana's private workflow; revoked, it leaves."""
    bo_id = office["users"]["bo"]
    client.users.update(bo_id, scopes=[*OWN, "workflow:read:all"])
    _synced_equal(office, "bo")
    assert office["wfs"]["ana_private"] in _holds(office["m"]["bo"])["workflows"]
    client.users.update(bo_id, scopes=OWN)
    _synced_equal(office, "bo")
    assert office["wfs"]["ana_private"] not in _holds(office["m"]["bo"])["workflows"]


def test_a_restricted_users_deletions_reach_its_mirror(office, engine) -> None:
    """The audit log shows a restricted login only rows it still sees: a deleted execution
    (also one replaced by a new run of the same workflow, which keeps the count) or a purged
    workflow of its own must still leave its mirror."""
    ana = office["as"]["ana"]
    public, private = office["wfs"]["ana_public"], office["wfs"]["ana_private"]
    runs = sorted(
        r["id"] for r in ana.sql("SELECT id FROM executions WHERE workflow_id = :w", {"w": public})
    )
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM executions WHERE id = :i"), {"i": runs[0]})
    ana.executions.create(workflow_id=public)
    (replaced,) = _synced_equal(office, "ana", "bo")[:1]
    assert (replaced.added, replaced.removed) == (1, 1)
    assert runs[0] not in _holds(office["m"]["bo"])["executions"]
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM executions WHERE id = :i"), {"i": runs[1]})
        conn.execute(sa.text("DELETE FROM workflows WHERE id = :w"), {"w": private})
    (report,) = _synced_equal(office, "ana")
    assert report.removed == 4  # one execution, the workflow and its two executions


def test_the_native_tables_hold_derived_columns_the_queries_read(seeded) -> None:
    """The failure signature and queue wait are computed once, at load, from the builders'
    own expressions; queries holding those expressions read the columns (the frames are
    compared with PostgreSQL's above)."""
    from flowscope.analytics import durations, failures
    from flowscope.filters import ExecutionFilter
    from flowscope.mirror._native import compile_native

    _, mirror = seeded
    sql, _ = compile_native(failures.failures_query(ExecutionFilter(), (), None).select)
    assert "executions._error_message" in sql and "regexp_replace" not in sql
    sql, _ = compile_native(durations.queue_wait_query(ExecutionFilter(), (), None, (0.5,)).select)
    assert "executions._queue_wait" in sql
    con, _ = mirror._connection()
    columns = {r[0] for r in con.execute("DESCRIBE executions").fetchall()}
    assert {"_error_type", "_error_message", "_queue_wait"} <= columns
    assert "parameters" not in columns  # payloads no analytics call reads stay in the files


def test_a_lateral_unnest_is_read_inside_its_table_without_a_join() -> None:
    """``T JOIN LATERAL unnest(f(T)) ON true`` compiles to T as a subquery with the unnest in
    its select list (no join back on a key); a second lateral over the same table, or one
    with another ON condition, is joined back on ``id`` (both frames are compared with
    PostgreSQL's above, untagged workflows included)."""
    from flowscope.analytics import _base, tags, timeline
    from flowscope.filters import ExecutionFilter
    from flowscope.mirror._native import compile_native

    hourly = _base.parse_freq("1h")
    sql, _ = compile_native(timeline.concurrency_query(ExecutionFilter(), hourly).select)
    assert "FROM executions) AS executions" in sql and "__row" not in sql
    sql, _ = compile_native(timeline.throughput_query(ExecutionFilter(), ("tag",), hourly).select)
    assert "__row" not in sql
    assert "THEN [NULL] ELSE workflows.tags END" in sql  # LEFT JOIN LATERAL keeps untagged
    sql, _ = compile_native(tags.tag_pairs_query(ExecutionFilter()).select)
    assert sql.count("unnest(workflows.tags)") == 2 and sql.count("__row") == 2


def test_the_native_tables_hold_grouping_keys_as_enums_in_string_order(seeded) -> None:
    """Grouping keys (and the workflow id they join on) are ENUMs whose order is the
    strings' order, so ORDER BY/min/max answer as on strings; a query still reads str."""
    _, mirror = seeded
    con, _ = mirror._connection()
    types = {
        (t, r[0]): r[1]
        for t in ("executions", "workflows")
        for r in con.execute(f"DESCRIBE {t}").fetchall()
    }
    for column in [
        ("executions", "workflow_id"),
        ("executions", "status"),
        ("executions", "owner"),
        ("executions", "organization_id"),
        ("workflows", "id"),
    ]:
        assert types[column].startswith("ENUM("), column
    assert types[("executions", "workflow_id")] == types[("workflows", "id")]  # one domain
    assert types[("executions", "id")] == "VARCHAR"
    ordered = con.execute("SELECT DISTINCT workflow_id FROM executions ORDER BY 1").fetchall()
    as_strings = con.execute(
        "SELECT DISTINCT workflow_id::VARCHAR FROM executions ORDER BY 1"
    ).fetchall()
    assert ordered == as_strings and isinstance(ordered[0][0], str) and len(ordered) > 3
    assert con.execute("SELECT min(status), max(status) FROM executions").fetchone() == (
        con.execute("SELECT min(status::VARCHAR), max(status::VARCHAR) FROM executions").fetchone()
    )


def test_a_damaged_mirror_is_a_flowscope_error(client, tmp_path) -> None:
    data_mirror = client.mirror(tmp_path / "damaged")
    data_mirror.sync(progress=False)
    state = data_mirror._state()
    (data_mirror.path / state["tables"]["executions"]["base"][0]).write_bytes(b"not parquet")
    with pytest.raises(flowscope.FlowscopeError, match="cannot load the mirror"):
        data_mirror.analytics.durations()
