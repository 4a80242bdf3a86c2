"""flowscope.demo: deterministic, idempotent demo data with the planted stories findable."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import flowscope
import pandas as pd
import pytest
import sqlalchemy as sa
from flowscope import demo
from flowscope.demo._cast import SIGNATURES

SMALL = {"workflows": 20, "executions": 3_000}


def _frame(engine: sa.Engine, sql: str) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(sa.text(sql), conn)


def test_same_arguments_build_the_same_rows() -> None:
    params = demo._check_arguments(20, 3_000, 7, demo.DEMO_NOW, 60)
    a, b = demo._build(params), demo._build(params)
    pd.testing.assert_frame_equal(a["executions"], b["executions"])
    assert a["users"] == b["users"] and a["organizations"] == b["organizations"]
    assert a["workflows"]["rows"] == b["workflows"]["rows"]
    other = demo._build(demo._check_arguments(20, 3_000, 8, demo.DEMO_NOW, 60))
    assert not other["executions"]["workflow_id"].equals(a["executions"]["workflow_id"])


def test_generate_loads_everything_once(client: flowscope.Client, engine: sa.Engine) -> None:
    info = demo.generate(client, **SMALL)
    assert info.created
    assert (info.organizations, info.users, info.workflows, info.executions) == (3, 12, 20, 3_000)
    counts = _frame(
        engine,
        "SELECT (SELECT count(*) FROM organizations) o, (SELECT count(*) FROM users) u,"
        " (SELECT count(*) FROM workflows) w, (SELECT count(*) FROM executions) e",
    ).iloc[0]
    assert counts.tolist() == [3, 12, 20, 3_000]

    again = demo.generate(client, **SMALL)
    assert not again.created
    assert dataclasses.replace(again, created=True) == info  # same data, nothing doubled
    assert _frame(engine, "SELECT count(*) n FROM executions")["n"][0] == 3_000
    assert "3,000 executions" in str(again)
    assert "<th>executions</th><td>3000</td>" in again._repr_html_()


def test_other_arguments_conflict_unless_replaced(
    client: flowscope.Client, engine: sa.Engine
) -> None:
    demo.generate(client, **SMALL)
    with pytest.raises(flowscope.ConflictError, match="replace=True"):
        demo.generate(client, workflows=20, executions=2_000)
    assert _frame(engine, "SELECT count(*) n FROM executions")["n"][0] == 3_000
    # a row someone added to a demo organization does not block the reload
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO workflows (id, name, owner, organization_id, nodes, edges,"
                " created_by, updated_by) VALUES ('wf_mine', 'mine', 'usr_demo_ana',"
                " 'org_demo_acme', '[]', '[]', 'usr_demo_ana', 'usr_demo_ana')"
            )
        )
    # nor does a tenant login someone used on it (its role goes with the organization)
    assert client.scoped("org_demo_acme").workflows.count() > 0
    info = demo.generate(client, workflows=20, executions=2_000, replace=True)
    assert info.created and info.executions == 2_000
    assert _frame(engine, "SELECT count(*) n FROM executions")["n"][0] == 2_000
    assert _frame(engine, "SELECT count(*) n FROM workflows WHERE id = 'wf_mine'")["n"][0] == 0
    assert client.scoped("org_demo_acme").workflows.count() > 0  # a new login, provisioned again


@pytest.mark.parametrize(
    "kwargs",
    [
        {"workflows": 5},
        {"executions": 10},
        {"executions": 2.5},
        {"seed": -1},
        {"days": 7},
        {"now": "yesterday"},
        {"workflows": True},
    ],
)
def test_bad_arguments_are_refused_before_writing(
    client: flowscope.Client, engine: sa.Engine, kwargs: dict[str, object]
) -> None:
    with pytest.raises(flowscope.ValidationError):
        demo.generate(client, **kwargs)  # type: ignore[arg-type]
    assert _frame(engine, "SELECT count(*) n FROM organizations")["n"][0] == 0


def test_a_scoped_client_cannot_generate(client: flowscope.Client) -> None:
    with pytest.raises(flowscope.PermissionDeniedError):
        demo.generate(client.scoped("org_demo_acme"), **SMALL)


def test_the_data_tells_its_stories(client: flowscope.Client, engine: sa.Engine) -> None:
    info = demo.generate(client, workflows=30, executions=8_000, seed=3)
    ex = _frame(
        engine,
        "SELECT e.*, (e.metadata->>'workflow_version')::int AS version,"
        " e.error->>'type' AS error_type, e.error->>'message' AS error_message"
        " FROM executions e",
    )
    assert ex["created_at"].max() < info.now
    assert ex["created_at"].min() >= info.now - timedelta(days=info.days)
    assert ex["version"].notna().all()

    # weekly and daily seasonality
    weekday = ex["created_at"].dt.day_of_week
    assert (weekday < 5).sum() / 5 > 2 * (weekday >= 5).sum() / 2
    hour = ex["created_at"].dt.hour
    assert (hour == 14).sum() > 2 * (hour == 20).sum()

    # durations differ by workflow (log-normal medians spread widely)
    medians = ex[ex.status == "completed"].groupby("workflow_id")["duration_seconds"].median()
    assert medians.max() > 5 * medians.min()

    # failures: a few signatures, with type/message and where they stopped
    failed = ex[ex.status.isin(["failed", "timeout"])]
    assert failed["error_type"].notna().all() and failed["error_message"].notna().all()
    assert failed["error_type"].nunique() <= len(SIGNATURES) + 1
    assert failed["error_type"].value_counts().head(3).sum() > 0.5 * len(failed)
    assert failed["current_step"].notna().all()
    assert (failed["steps_completed"] < failed["steps_total"]).all()
    done = ex[ex.status == "completed"]
    assert (done["steps_completed"] == done["steps_total"]).all() and done[
        "error_type"
    ].isna().all()
    finished = ex[ex.status.isin(["completed", "failed", "cancelled", "timeout"])]
    assert finished["duration_seconds"].notna().all()
    elapsed = (finished["completed_at"] - finished["started_at"]).dt.total_seconds()
    assert (elapsed - finished["duration_seconds"].astype(float)).abs().max() < 0.002
    assert set(ex.status) >= {"completed", "failed", "running", "queued"}

    # the warehouse outage
    window = ex[(ex.created_at >= info.incident_start) & (ex.created_at < info.incident_end)]
    outside = ex[ex.created_at < info.incident_start]
    rate = lambda f: (f.error_type == "ConnectionError").mean()  # noqa: E731
    assert rate(window) > 10 * rate(outside)

    # the regression: the latest version of one workflow is much slower
    reg = ex[(ex.workflow_id == info.regression_workflow_id) & (ex.status == "completed")]
    after = reg[reg.version == info.regression_version]
    before = reg[reg.version < info.regression_version]
    assert len(after) > 10 and len(before) > 10
    assert after["created_at"].min() >= info.regression_since
    assert after["duration_seconds"].median() > 1.8 * before["duration_seconds"].median()
    with engine.connect() as conn:
        version = conn.execute(
            sa.text("SELECT version FROM workflows WHERE id = :i"),
            {"i": info.regression_workflow_id},
        ).scalar_one()
    assert version == info.regression_version

    # graphs: step names unique within a workflow, edges between existing nodes
    graphs = _frame(engine, "SELECT id, nodes, edges FROM workflows")
    for nodes, edges in zip(graphs["nodes"], graphs["edges"], strict=True):
        names = [node["name"] for node in nodes]
        assert len(names) == len(set(names)) and len(nodes) >= 3
        ids = {node["id"] for node in nodes}
        assert all(e["source"] in ids and e["target"] in ids for e in edges)


def test_demo_now_is_fixed() -> None:
    assert datetime(2026, 6, 30, tzinfo=UTC) == demo.DEMO_NOW


def test_a_failed_load_leaves_nothing_behind(
    client: flowscope.Client, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = demo._executions_arrow

    def with_a_bad_row(frame: pd.DataFrame) -> object:
        frame = frame.copy()
        frame.loc[frame.index[-1], "status"] = "exploded"
        return real(frame)

    monkeypatch.setattr(demo, "_executions_arrow", with_a_bad_row)
    with pytest.raises(flowscope.ValidationError, match="status"):
        demo.generate(client, **SMALL)
    counts = _frame(
        engine,
        "SELECT (SELECT count(*) FROM organizations) o, (SELECT count(*) FROM users) u,"
        " (SELECT count(*) FROM workflows) w, (SELECT count(*) FROM executions) e",
    ).iloc[0]
    assert counts.tolist() == [0, 0, 0, 0]
    monkeypatch.undo()
    assert demo.generate(client, **SMALL).created


def test_an_interrupted_load_is_named(client: flowscope.Client, engine: sa.Engine) -> None:
    with engine.begin() as conn:  # what a killed load leaves: the organizations, no marker
        conn.execute(
            sa.text(
                "INSERT INTO organizations (id, name, slug) VALUES ('org_demo_acme', 'Acme', 'x')"
            )
        )
    with pytest.raises(flowscope.ConflictError, match="incomplete demo data"):
        demo.generate(client, **SMALL)
    assert demo.generate(client, **SMALL, replace=True).executions == 3_000
