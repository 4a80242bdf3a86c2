"""Phase 3: the monthly-partitioned audit log, its migration both ways, RLS on partitions, maintenance."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime

import flowscope
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from flowscope import _migrate
from flowscope._maintenance import add_months, partition_name


def _this_month() -> date:
    """The first day of the current UTC month, read when a test needs it (not at import)."""
    return datetime.now(UTC).date().replace(day=1)


def _before_partitioning() -> str:
    script = ScriptDirectory.from_config(_migrate.alembic_config())
    down = script.get_revision("0004").down_revision
    assert isinstance(down, str)
    return down


def _audit_rows(conn: sa.Connection) -> list[tuple]:
    return [
        tuple(r)
        for r in conn.execute(
            sa.text(
                "SELECT id, occurred_at, table_name, row_id, action, actor, organization_id,"
                " changes, transaction_id FROM audit_log ORDER BY id"
            )
        )
    ]


def _partitions(conn: sa.Connection) -> dict[str, int]:
    """partition name → rows in it."""
    names = conn.execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'audit_log'::regclass"
        )
    ).scalars()
    return {
        n: conn.execute(sa.text(f'SELECT count(*) FROM "{n}"')).scalar_one() for n in list(names)
    }


def _relkind(conn: sa.Connection) -> str:
    return conn.execute(
        sa.text("SELECT relkind FROM pg_class WHERE oid = 'audit_log'::regclass")
    ).scalar_one()


def _insert_audit(conn: sa.Connection, when: str, org: str | None = None) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO audit_log (occurred_at, table_name, row_id, action, organization_id)"
            " VALUES (CAST(:w AS timestamptz), 'workflows', 'wf_old', 'UPDATE', :o)"
        ),
        {"w": when, "o": org},
    )


def test_migration_round_trips_with_data(create_database: Callable[[], str]) -> None:
    url = create_database()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        _migrate.upgrade(conn, _before_partitioning())
        conn.commit()
        assert _relkind(conn) == "r"
        conn.execute(sa.text("SELECT set_config('flowscope.user_id', 'usr_test', false)"))
        conn.execute(
            sa.text("INSERT INTO organizations (id, name, slug) VALUES ('org_a', 'A', 'a')")
        )
        conn.execute(
            sa.text(
                "INSERT INTO workflows (id, name, owner, organization_id, nodes, edges, created_by,"
                " updated_by) SELECT 'wf_' || g, 'w', 'u', 'org_a', '[]', '[]', 'u', 'u'"
                " FROM generate_series(1, 50) g"
            )
        )
        conn.execute(sa.text("UPDATE workflows SET version = 2 WHERE id <= 'wf_3'"))
        _insert_audit(conn, "2024-03-15 12:00:00+00", "org_a")
        _insert_audit(conn, "2024-05-31 23:59:59.999+00")  # month boundary, UTC
        _insert_audit(conn, "2031-01-01 00:00:00+00")  # beyond the prepared months
        conn.commit()
        before = _audit_rows(conn)
        assert len(before) >= 55

        _migrate.upgrade(conn, "0004")
        conn.commit()
        assert _relkind(conn) == "p"
        parts = _partitions(conn)
        assert _audit_rows(conn) == before
        assert parts["audit_log_2024_03"] == 1
        assert parts["audit_log_2024_04"] == 0
        assert parts["audit_log_2024_05"] == 1
        assert parts["audit_log_default"] == 1  # 2031
        assert parts[partition_name(_this_month())] >= 52
        assert partition_name(add_months(_this_month(), 3)) in parts
        assert partition_name(add_months(_this_month(), 4)) not in parts
        assert sum(parts.values()) == len(before)
        pk = conn.execute(
            sa.text(
                "SELECT array_agg(a.attname ORDER BY a.attname) FROM pg_index i"
                " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                " WHERE i.indrelid = 'audit_log'::regclass AND i.indisprimary"
            )
        ).scalar_one()
        assert pk == ["id", "occurred_at"]
        # the identity carries on after the copied ids; the triggers write into the partitions
        conn.execute(sa.text("UPDATE workflows SET version = 3 WHERE id = 'wf_9'"))
        new_id = conn.execute(sa.text("SELECT max(id) FROM audit_log")).scalar_one()
        assert new_id == before[-1][0] + 1
        conn.commit()
        before = _audit_rows(conn)

        _migrate.downgrade(conn, _before_partitioning())
        conn.commit()
        assert _relkind(conn) == "r"
        assert _audit_rows(conn) == before
        leftovers = (
            conn.execute(
                sa.text(
                    "SELECT relname FROM pg_class WHERE relname LIKE 'audit_log%' AND relkind IN ('r', 'p')"
                )
            )
            .scalars()
            .all()
        )
        assert leftovers == ["audit_log"]
        conn.execute(sa.text("UPDATE workflows SET version = 4 WHERE id = 'wf_9'"))
        assert (
            conn.execute(sa.text("SELECT max(id) FROM audit_log")).scalar_one() == before[-1][0] + 1
        )
        policies = conn.execute(
            sa.text("SELECT count(*) FROM pg_policies WHERE tablename = 'audit_log'")
        ).scalar_one()
        assert policies == 1
        conn.commit()

        _migrate.upgrade(conn, "head")
        conn.commit()
        assert _relkind(conn) == "p"
    engine.dispose()


def test_models_match_the_migrations(database_url: str) -> None:
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        command.check(_migrate.alembic_config(conn))  # raises if autogenerate finds a difference
    engine.dispose()


def _seed_two_tenants(client: flowscope.Client) -> None:
    client.sql(
        "INSERT INTO organizations (id, name, slug) VALUES ('org_a', 'A', 'a'), ('org_b', 'B', 'b')"
    )
    client.sql(
        "INSERT INTO workflows (id, name, owner, organization_id, nodes, edges, created_by,"
        " updated_by) VALUES ('wf_a', 'a', 'u', 'org_a', '[]', '[]', 'u', 'u'),"
        " ('wf_b', 'b', 'u', 'org_b', '[]', '[]', 'u', 'u')"
    )


def test_tenants_reach_partitions_only_through_the_parent(client: flowscope.Client) -> None:
    _seed_two_tenants(client)
    client.sql(
        "INSERT INTO audit_log (occurred_at, table_name, row_id, action, organization_id)"
        " VALUES ('2099-01-01', 'workflows', 'wf_b', 'UPDATE', 'org_b')"  # default partition
    )
    tenant = client.scoped("org_a")
    rows = tenant.sql("SELECT DISTINCT organization_id FROM audit_log")
    assert rows == [{"organization_id": "org_a"}]
    partitions = client.maintenance.partitions()
    assert partitions[-1] == "audit_log_default"
    assert partition_name(_this_month()) in partitions
    for name in partitions:
        with pytest.raises(flowscope.PermissionDeniedError):
            tenant.sql(f'SELECT count(*) FROM "{name}"')
        flags = client.sql(
            "SELECT relrowsecurity AS rls, has_table_privilege('flowscope_tenant', oid, 'SELECT')"
            " AS tenant_select FROM pg_class WHERE relname = :n",
            {"n": name},
        )
        assert flags == [{"rls": True, "tenant_select": False}]
    # the tenant cannot write to the log either (append-only through triggers)
    with pytest.raises(flowscope.PermissionDeniedError):
        tenant.sql(
            "INSERT INTO audit_log (table_name, row_id, action, organization_id)"
            " VALUES ('workflows', 'x', 'UPDATE', 'org_a')"
        )


@pytest.fixture
def fresh(create_database: Callable[[], str]) -> Iterator[flowscope.Client]:
    """An admin client on a database of its own (maintenance changes the partitions)."""
    with flowscope.connect(create_database(), migrate=True) as client:
        yield client


def test_maintain_creates_months_ahead_and_moves_default_rows(fresh: flowscope.Client) -> None:
    client = fresh
    far = add_months(_this_month(), 6)
    client.sql(
        "INSERT INTO audit_log (occurred_at, table_name, row_id, action)"
        " VALUES (CAST(:w AS timestamptz), 'workflows', 'wf_x', 'UPDATE')",
        {"w": f"{far.isoformat()} 10:00:00+00"},
    )
    before = client.sql("SELECT id, occurred_at FROM audit_log ORDER BY id")
    dry = client.maintenance.maintain(months_ahead=7, dry_run=True)
    assert dry.dry_run
    assert dry.created == [partition_name(add_months(_this_month(), k)) for k in range(4, 8)]
    assert partition_name(far) not in client.maintenance.partitions()

    report = client.maintenance.maintain(months_ahead=7)
    assert report.created == dry.created
    assert report.moved_from_default == 1
    counts = {
        r["n"]: r["c"]
        for r in client.sql(
            f"SELECT 'far' AS n, count(*) AS c FROM {partition_name(far)}"
            " UNION ALL SELECT 'default', count(*) FROM audit_log_default"
        )
    }
    assert counts == {"far": 1, "default": 0}
    assert client.sql("SELECT id, occurred_at FROM audit_log ORDER BY id") == before
    # idempotent
    assert client.maintenance.maintain(months_ahead=7).created == []
    # new partitions are protected like the others
    flags = client.sql(
        "SELECT relrowsecurity AS rls FROM pg_class WHERE relname = :n", {"n": partition_name(far)}
    )
    assert flags == [{"rls": True}]


def test_maintain_drops_partitions_past_retention(fresh: flowscope.Client) -> None:
    client = fresh
    today = date(2031, 6, 15)  # a reference day well after the partitions the migration made
    report = client.maintenance.maintain(months_ahead=1, today=today)
    assert report.created == ["audit_log_2031_06", "audit_log_2031_07"]
    for when in ("2031-06-02", "2031-07-02", "2030-01-05", "2031-01-31"):  # the last two: default
        client.sql(
            "INSERT INTO audit_log (occurred_at, table_name, row_id, action)"
            " VALUES (CAST(:w AS timestamptz), 'workflows', 'wf_x', 'UPDATE')",
            {"w": when},
        )
    existing = [p for p in client.maintenance.partitions() if p != "audit_log_default"]
    # keep 4 whole months before June 2031: from February 2031 on
    dry = client.maintenance.maintain(months_ahead=1, retention_months=4, today=today, dry_run=True)
    assert dry.dropped == existing[:-2]  # every month before 2031-02 (none exist in between)
    assert dry.deleted_from_default == 2  # 2030-01-05 and 2031-01-31 are before February
    report = client.maintenance.maintain(months_ahead=1, retention_months=5, today=today)
    # retention 5 → cutoff 2031-01-01: the 2031-01-31 row in the default partition stays
    assert report.dropped == dry.dropped
    assert report.deleted_from_default == 1
    assert client.maintenance.partitions() == [
        "audit_log_2031_06",
        "audit_log_2031_07",
        "audit_log_default",
    ]
    remaining = [
        r["d"] for r in client.sql("SELECT occurred_at::date::text AS d FROM audit_log ORDER BY 1")
    ]
    assert remaining == ["2031-01-31", "2031-06-02", "2031-07-02"]


def test_maintain_keep_detached_and_bad_arguments(fresh: flowscope.Client) -> None:
    client = fresh
    today = date(2031, 6, 15)
    client.maintenance.maintain(months_ahead=0, today=today)
    report = client.maintenance.maintain(
        months_ahead=0, retention_months=1, today=today, drop=False
    )
    assert report.dropped
    kept = client.sql(
        "SELECT relname AS n, relispartition AS p FROM pg_class WHERE relname = :n",
        {"n": report.dropped[0]},
    )
    assert kept == [{"n": report.dropped[0], "p": False}]
    client.sql(f"DROP TABLE {report.dropped[0]}")
    for bad in ({"months_ahead": -1}, {"months_ahead": True}, {"retention_months": 0}):
        with pytest.raises(flowscope.ValidationError):
            client.maintenance.maintain(**bad)  # type: ignore[arg-type]
    with pytest.raises(flowscope.ConfigurationError):
        client.scoped("org_a").maintenance.maintain()


def test_cli_db_maintain(fresh: flowscope.Client) -> None:
    from flowscope.cli import app
    from typer.testing import CliRunner

    runner = CliRunner()
    args = ["db", "maintain", "--months-ahead", "5", "--database-url", fresh.url]
    dry = runner.invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    wanted = [partition_name(add_months(_this_month(), k)) for k in (4, 5)]
    assert f"would create: {', '.join(wanted)}" in dry.output
    assert wanted[0] not in fresh.maintenance.partitions()
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert set(wanted) <= set(fresh.maintenance.partitions())
    bad = runner.invoke(
        app, ["db", "maintain", "--retention-months", "0", "--database-url", fresh.url]
    )
    assert bad.exit_code == 1
    assert "retention_months" in bad.output
