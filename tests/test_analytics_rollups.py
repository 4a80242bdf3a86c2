"""Phase-3 rollups: answers from the materialized views equal raw answers (counts, sums), and
sketch percentiles are within 1% of the exact ones, after inserts, updates and refreshes."""

from __future__ import annotations

import random
from datetime import UTC

import flowscope
import pandas as pd
import pytest
import sqlalchemy as sa
from flowscope.models import EXECUTIONS

from . import _analytics_data as data

COUNTS = ["executions", "count"]
ORG_FILTERS = {"since", "until", "status", "organization_id", "include_deleted_workflows"}
PCTS = ["p50_seconds", "p90_seconds", "p95_seconds", "p99_seconds"]


def _same(rolled: pd.DataFrame, exact: pd.DataFrame, keys: list[str]) -> None:
    assert rolled.attrs["rollups"] is True, rolled.attrs
    assert list(rolled.columns) == list(exact.columns)
    assert rolled.dtypes.astype(str).tolist() == exact.dtypes.astype(str).tolist()
    assert len(rolled) == len(exact)
    r = rolled.sort_values(keys).reset_index(drop=True) if keys else rolled
    e = exact.sort_values(keys).reset_index(drop=True) if keys else exact
    for col in e.columns:
        if col in PCTS:
            both = e[col].notna()
            assert r[col].notna().tolist() == both.tolist(), col
            rel = ((r[col][both] - e[col][both]).abs() / e[col][both]).astype(float)
            assert (rel <= 0.01 + 1e-9).all(), (col, rel.max())
        elif str(e[col].dtype) in ("Float64", "float64"):
            pd.testing.assert_series_equal(r[col], e[col], check_exact=False, rtol=1e-9)
        else:
            pd.testing.assert_series_equal(r[col], e[col])


def _all_equal(client: flowscope.Client, **filters) -> None:
    a = client.analytics
    for by in (
        None,
        "workflow_id",
        ["organization_id", "status"],
        "tag",
        "workflow_version",
        "day",
    ):
        keys = [] if by is None else [by] if isinstance(by, str) else list(by)
        _same(a.durations(by=by, use_rollups=True, **filters), a.durations(by=by, **filters), keys)
        _same(
            a.status_breakdown(by=by, use_rollups=True, **filters),
            a.status_breakdown(by=by, **filters),
            keys,
        )
    for freq in ("1D", "1W"):
        _same(
            a.status_breakdown(by="workflow", freq=freq, use_rollups=True, **filters),
            a.status_breakdown(by="workflow", freq=freq, **filters),
            ["workflow", "bucket"],
        )
        _same(
            a.durations(freq=freq, use_rollups=True, **filters),
            a.durations(freq=freq, **filters),
            ["bucket"],
        )
        if set(filters) <= ORG_FILTERS:  # throughput rollups are organization-level
            _same(
                a.throughput(by="organization_id", freq=freq, use_rollups=True, **filters),
                a.throughput(by="organization_id", freq=freq, **filters),
                ["organization_id", "bucket"],
            )


def test_rollups_equal_raw_after_inserts_updates_and_refresh(client, engine) -> None:
    data.insert(engine, n=1500, seed=11)
    refreshed = client.analytics.refresh_rollups()
    assert client.analytics.rollups_refreshed_at() == refreshed
    _all_equal(client)
    # partial days at both ends come from the raw table
    _all_equal(
        client,
        since="2026-03-03T07:30:00",
        until="2026-03-11T18:00:00",
        status=["completed", "failed"],
    )
    _all_equal(client, tags_any=["ml"], owner=["ops", "ana"])
    _all_equal(client, include_deleted_workflows=True, organization_id="org_a")

    # rows created on the refresh's own UTC day (between its midnight and the refresh, so at
    # any hour, also just after midnight) are answered from the raw table: still equal
    day = refreshed.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    fresh = [
        data._execution(random.Random(i), f"ex_new_{i}",
                        {"id": "wf_ml", "owner": "ben", "organization_id": "org_a"},
                        day + (refreshed - day) * i / 40)
        for i in range(40)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(sa.insert(EXECUTIONS), fresh)
    frame = client.analytics.status_breakdown(use_rollups=True)
    assert frame["total"].iloc[0] == client.analytics.status_breakdown()["total"].iloc[0]
    _all_equal(client)

    # updates to old rows show after the next refresh
    with engine.begin() as conn:
        conn.execute(
            sa.update(EXECUTIONS)
            .where(EXECUTIONS.c.status == "running")
            .values(status="completed", duration_seconds=sa.literal(1234.5))
        )
    stale = client.analytics.status_breakdown(use_rollups=True)
    assert stale["running"].iloc[0] > 0  # as of the refresh
    client.analytics.refresh_rollups()
    assert client.analytics.status_breakdown(use_rollups=True)["running"].iloc[0] == 0
    _all_equal(client)


def test_rollup_attrs_and_fallbacks(client, engine) -> None:
    data.insert(engine)
    a = client.analytics
    never = a.durations(use_rollups=True)
    assert never.attrs["rollups"] is False and "never" in never.attrs["rollups_fallback"]
    when = a.refresh_rollups()
    frame = a.durations(by="workflow", use_rollups=True)
    assert frame.attrs["rollups_refreshed_at"] == when
    assert frame.attrs["percentiles"].startswith("approximate")
    hourly = a.status_breakdown(freq="1h", use_rollups=True)
    assert hourly.attrs["rollups"] is False and "finer" in hourly.attrs["rollups_fallback"]
    pd.testing.assert_frame_equal(hourly, a.status_breakdown(freq="1h"), check_like=False)
    by_owner = a.throughput(by="owner", use_rollups=True)
    assert (
        by_owner.attrs["rollups"] is False
        and "per organization" in by_owner.attrs["rollups_fallback"]
    )
    by_id = a.status_breakdown(ids=["ex_0001", "ex_0002"], use_rollups=True)
    assert by_id.attrs["rollups"] is False and by_id["total"].iloc[0] == 2
    # the client's default
    a.use_rollups = True
    assert a.status_breakdown().attrs["rollups"] is True


def test_rollups_respect_tenancy(client, engine) -> None:
    data.insert(engine)
    client.analytics.refresh_rollups()
    scoped = client.scoped("org_b")
    frame = scoped.analytics.status_breakdown(by="organization_id", use_rollups=True)
    assert frame.attrs["rollups"] is True
    assert frame["organization_id"].tolist() == ["org_b"]
    exact = client.analytics.status_breakdown(by="organization_id", organization_id="org_b")
    assert frame["total"].tolist() == exact["total"].tolist()
    durations = scoped.analytics.durations(by="workflow_id", use_rollups=True)
    assert set(durations["workflow_id"]) == {"wf_b1", "wf_b2", "wf_one"}
    # no direct access to the materialized views, and no refresh, for a tenant
    with pytest.raises(flowscope.PermissionDeniedError):
        scoped.sql("SELECT count(*) FROM flowscope_executions_daily")
    with pytest.raises(flowscope.PermissionDeniedError):
        scoped.analytics.refresh_rollups()
    visible = scoped.sql("SELECT DISTINCT organization_id FROM flowscope_executions_daily_visible")
    assert visible == [{"organization_id": "org_b"}]


def test_downgrade_removes_the_rollups(create_database) -> None:
    from flowscope import _migrate

    url = create_database()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    query = sa.text(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relname LIKE 'flowscope\\_%'"
    )
    with engine.connect() as conn:
        _migrate.upgrade(conn, "0003")
        conn.commit()
        assert conn.execute(query).scalar() >= 6
        _migrate.downgrade(conn, "0002")
        conn.commit()
        assert conn.execute(query).scalar() == 0
    engine.dispose()


def test_cli_refreshes_the_rollups(client, database_url) -> None:
    from flowscope.cli import app
    from typer.testing import CliRunner

    assert client.analytics.rollups_refreshed_at() is None
    result = CliRunner().invoke(app, ["analytics", "refresh", "--database-url", database_url])
    assert result.exit_code == 0, result.output
    assert "rollups refreshed at" in result.output
    assert client.analytics.rollups_refreshed_at() is not None
