"""flowscope.connect(): embedded default, servers, clear errors."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import flowscope
import pytest
import sqlalchemy as sa
from flowscope import _db, _migrate


def test_connect_to_migrated_server(database_url: str) -> None:
    with flowscope.connect(database_url) as client:
        assert client.sql("SELECT 1 AS one") == [{"one": 1}]
        assert "flowscope.Client" in repr(client)


def test_plain_postgresql_url_gets_psycopg_driver() -> None:
    assert _db.normalize_url("postgresql://u@h:5432/d") == "postgresql+psycopg://u@h:5432/d"
    assert _db.normalize_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    with pytest.raises(flowscope.ConfigurationError):
        _db.normalize_url("mysql://u@h/d")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_server_names_the_host() -> None:
    port = _free_port()
    with pytest.raises(flowscope.ConnectionFailedError) as info:
        flowscope.connect(f"postgresql://nobody@127.0.0.1:{port}/nowhere")
    assert f"127.0.0.1:{port}" in str(info.value)
    assert isinstance(info.value, flowscope.FlowscopeError)


def test_server_is_never_migrated_silently(create_database) -> None:  # type: ignore[no-untyped-def]
    url = create_database()
    with pytest.raises(flowscope.SchemaOutOfDateError, match="flowscope db upgrade"):
        flowscope.connect(url)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        assert _migrate.current_revision(conn) is None
        assert not sa.inspect(conn).has_table("workflows")
    engine.dispose()
    # asked explicitly, it migrates
    with flowscope.connect(url, migrate=True) as client:
        assert client.sql("SELECT count(*) AS n FROM users")[0]["n"] == 1


def test_out_of_date_schema_is_reported(create_database) -> None:  # type: ignore[no-untyped-def]
    url = create_database()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        _migrate.upgrade(conn, "0001")
        conn.commit()
    engine.dispose()
    with pytest.raises(flowscope.SchemaOutOfDateError, match="revision 0001"):
        flowscope.connect(url)
    with flowscope.connect(url, migrate=True):  # an out-of-date schema is brought to head
        pass
    with engine.connect() as conn:
        assert _migrate.current_revision(conn) == _migrate.HEAD_REVISION
    engine.dispose()


def test_head_revision_constant_is_the_scripts_head() -> None:
    assert _migrate.head_revision() == _migrate.HEAD_REVISION


def test_connect_at_head_does_not_load_alembic(database_url: str) -> None:
    """The schema check of a database already at head is plain SQL: no Alembic import."""
    code = (
        "import sys, flowscope\n"
        f"flowscope.connect({database_url!r}, migrate=True).close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_embedded_default_creates_and_reuses(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("FLOWSCOPE_DATABASE_URL", raising=False)
    monkeypatch.setenv("FLOWSCOPE_DATA_DIR", str(tmp_path / "data"))
    start = time.perf_counter()
    with flowscope.connect() as client:
        cold = time.perf_counter() - start
        assert client.embedded
        tables = {
            r["t"]
            for r in client.sql("SELECT tablename AS t FROM pg_tables WHERE schemaname='public'")
        }
        assert {"workflows", "executions", "users", "organizations", "audit_log"} <= tables
        version = client.sql("SHOW server_version")[0]["server_version"]
        assert version.startswith("18")
    start = time.perf_counter()
    with flowscope.connect() as again:
        warm = time.perf_counter() - start
        assert again.sql("SELECT count(*) AS n FROM users WHERE username = 'admin'") == [{"n": 1}]
    assert (tmp_path / "data" / "pgdata" / "PG_VERSION").exists()
    print(f"connect() cold {cold:.2f}s warm {warm:.3f}s")


def test_scoped_requires_an_organization(client: flowscope.Client) -> None:
    with pytest.raises(flowscope.ConfigurationError):
        client.scoped("")


def test_scoped_sql_cannot_leave_its_login(client: flowscope.Client) -> None:
    client.sql("INSERT INTO organizations (id, name, slug) VALUES ('a', 'A', 'a'), ('b', 'B', 'b')")
    scoped = client.scoped("a")
    assert scoped.sql("SELECT current_user AS u")[0]["u"] == scoped.role
    assert [r["id"] for r in scoped.sql("SELECT id FROM organizations")] == ["a"]
    with pytest.raises(flowscope.FlowscopeError):
        scoped.sql("RESET ROLE; SELECT id FROM organizations")
    # set_config can still be called, and changes nothing: the organization is the login's
    with pytest.raises(flowscope.PermissionDeniedError):
        scoped.sql("SELECT set_config('role', 'postgres', true) AS r")
    rows = scoped.sql(
        "SELECT length(set_config('flowscope.organization_id', 'b', true)) AS r,"
        " (SELECT count(*) FROM organizations) AS n"
    )
    assert rows == [{"r": 1, "n": 1}]
    assert scoped.sql("SELECT id FROM organizations WHERE id = :i", {"i": "b"}) == []
    assert len(client.sql("SELECT id FROM organizations")) == 2


def test_the_test_session_keeps_out_of_the_user_data_directory() -> None:
    """conftest.py points FLOWSCOPE_DATA_DIR at a temporary directory for the whole session:
    a mirror() or an embedded connect() without a path never writes to ~/.local/share."""
    import tempfile
    from pathlib import Path

    from flowscope import _settings

    data_dir = _settings.load().data_dir
    assert data_dir != _settings.default_data_dir()
    assert data_dir.name.startswith("flowscope-session-") and data_dir.is_dir()
    assert data_dir.resolve().is_relative_to(Path(tempfile.gettempdir()).resolve())
