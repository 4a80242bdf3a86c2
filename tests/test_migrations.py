"""Alembic: single head, upgrade/downgrade round trips, models agree with migrations, admin seed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import flowscope
import pytest
import sqlalchemy as sa
from flowscope import _migrate
from pytest_alembic.tests import (  # noqa: F401  (pytest-alembic's built-in checks)
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)

from .catalog import snapshot


@pytest.fixture
def alembic_config():  # type: ignore[no-untyped-def]
    return _migrate.alembic_config()


@pytest.fixture
def alembic_engine(create_database: Callable[[], str]) -> Iterator[sa.Engine]:
    engine = sa.create_engine(create_database(), poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


def _fresh(create_database: Callable[[], str]) -> sa.Engine:
    return sa.create_engine(create_database(), poolclass=sa.pool.NullPool)


def test_upgrade_downgrade_upgrade_round_trip(create_database: Callable[[], str]) -> None:
    engine = _fresh(create_database)
    with engine.connect() as conn:
        empty = snapshot(conn)
        _migrate.upgrade(conn, "head")
        conn.commit()
        first = snapshot(conn)
        assert {"workflows", "executions", "users", "organizations", "audit_log"} <= set(
            first["tables"]
        )
        _migrate.downgrade(conn, "base")
        conn.commit()
        after_down = snapshot(conn)
        assert after_down == empty  # no table, index, trigger or function left behind
        _migrate.upgrade(conn, "head")
        conn.commit()
        assert snapshot(conn) == first
    engine.dispose()


def test_each_revision_downgrade_restores_the_previous_catalog(
    create_database: Callable[[], str],
) -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_migrate.alembic_config())
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    files = list(Path(script.versions).glob("*.py"))
    assert files and len(revisions) == len(files), (revisions, files)  # every revision is walked
    engine = _fresh(create_database)
    with engine.connect() as conn:
        previous = snapshot(conn)
        for revision in revisions:
            _migrate.upgrade(conn, revision)
            conn.commit()
            current = snapshot(conn)
            _migrate.downgrade(conn, "-1")
            conn.commit()
            assert snapshot(conn) == previous, f"downgrade of {revision} left a difference"
            _migrate.upgrade(conn, revision)
            conn.commit()
            previous = current
    engine.dispose()


def test_alembic_check_finds_nothing_to_generate(database_url: str) -> None:
    from alembic import command

    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        command.check(_migrate.alembic_config(conn))  # raises if models and DDL differ
    engine.dispose()


def test_phase2_upgrade_keeps_existing_rows(create_database: Callable[[], str]) -> None:
    """Upgrading a populated phase-1 database back-fills organizations and keeps every row."""
    engine = _fresh(create_database)
    with engine.connect() as conn:
        _migrate.upgrade(conn, "0001")
        conn.execute(
            sa.text(
                "INSERT INTO workflows (id, name, owner, organization_id, nodes, edges, created_by, updated_by)"
                " VALUES ('wf_1', 'a', 'ana', 'acme', '[]', '[]', 'ana', 'ana')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO executions (id, workflow_id, owner, organization_id)"
                " VALUES ('ex_1', 'wf_1', 'ana', 'acme')"
            )
        )
        conn.commit()
        _migrate.upgrade(conn, "head")
        conn.commit()
        assert conn.execute(sa.text("SELECT id FROM organizations")).scalars().all() == ["acme"]
        assert conn.execute(sa.text("SELECT count(*) FROM executions")).scalar_one() == 1
    engine.dispose()


def test_admin_is_seeded_without_a_usable_password(
    create_database: Callable[[], str], monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("FLOWSCOPE_ADMIN_PASSWORD", raising=False)
    engine = _fresh(create_database)
    with engine.connect() as conn:
        _migrate.upgrade(conn, "0001")
        conn.commit()
        row = conn.execute(sa.text("SELECT * FROM users")).mappings().one()
    engine.dispose()
    assert (row["username"], row["is_admin"]) == ("admin", True)
    assert row["password_hash"] == "!"  # no argon2 hash ever verifies against it
    assert row["password_changed_at"] is None


def test_admin_password_from_environment(create_database: Callable[[], str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pwdlib import PasswordHash

    monkeypatch.setenv("FLOWSCOPE_ADMIN_PASSWORD", "correct horse battery staple")
    engine = _fresh(create_database)
    with engine.connect() as conn:
        _migrate.upgrade(conn, "0001")
        conn.commit()
        stored = conn.execute(sa.text("SELECT password_hash FROM users")).scalar_one()
    engine.dispose()
    assert stored.startswith("$argon2id$")
    assert "m=19456,t=2,p=1" in stored
    hasher = PasswordHash.recommended()
    assert hasher.verify("correct horse battery staple", stored)
    assert not hasher.verify("wrong", stored)


def test_a_revision_blocked_by_a_table_lock_gives_up_and_rolls_back(
    create_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Revision 0002 alters executions (ACCESS EXCLUSIVE): a session idle in a transaction
    that read the table blocks it. The upgrade stops, names the session, leaves the database
    at 0001, and succeeds once the session is gone."""
    monkeypatch.setenv("FLOWSCOPE_MIGRATION_LOCK_TIMEOUT", "100ms")
    monkeypatch.setenv("FLOWSCOPE_MIGRATION_LOCK_RETRIES", "1")
    url = create_database()
    engine = _fresh(lambda: url)
    with engine.connect() as conn:
        _migrate.upgrade(conn, "0001")
        conn.commit()
    other = sa.create_engine(
        url, poolclass=sa.pool.NullPool, connect_args={"application_name": "report-tool"}
    )
    with other.connect() as stuck, engine.connect() as conn:
        stuck.execute(sa.text("SELECT count(*) FROM executions")).scalar_one()
        pid = stuck.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        started = time.monotonic()
        with pytest.raises(flowscope.DatabaseError, match=f"pid {pid} ") as caught:
            _migrate.upgrade(conn, "head")
        assert time.monotonic() - started < 5
        assert "'report-tool'" in str(caught.value)
        assert "'idle in transaction'" in str(caught.value)
        assert _migrate.stamped_revision(conn) == "0001"  # all or nothing
        conn.rollback()
        stuck.rollback()
        _migrate.upgrade(conn, "head")
        conn.commit()
        assert _migrate.stamped_revision(conn) == _migrate.HEAD_REVISION
    engine.dispose()
    other.dispose()


def test_migration_lock_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowscope import _settings

    assert (_settings.migration_lock_timeout(), _settings.migration_lock_retries()) == ("5s", 3)
    for name, bad in (
        ("FLOWSCOPE_MIGRATION_LOCK_TIMEOUT", "0"),
        ("FLOWSCOPE_MIGRATION_LOCK_TIMEOUT", "5; DROP TABLE x"),
        ("FLOWSCOPE_MIGRATION_LOCK_RETRIES", "-1"),
        ("FLOWSCOPE_MIGRATION_LOCK_RETRIES", "100"),
    ):
        with monkeypatch.context() as m:
            m.setenv(name, bad)
            with pytest.raises(flowscope.ConfigurationError, match=name):
                _settings.migration_lock_timeout()
                _settings.migration_lock_retries()
