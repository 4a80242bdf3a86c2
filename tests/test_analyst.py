"""Meeting analysts where they work: the typed SQL frame, polars through Arrow, the pytest plugin."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from typing import Any

import flowscope
import pandas as pd
import pyarrow as pa
import pytest
from flowscope._frames import ATTRS_KEY, STRING

from ._helpers import make_workflow

pytest_plugins = ["pytester"]


@pytest.fixture
def runs(client: flowscope.Client) -> dict[str, Any]:
    org = client.organizations.create(name="A", slug="a")
    other = client.organizations.create(name="B", slug="b")
    wf = make_workflow(client, organization_id=org.id, tags=["etl", "daily"])
    wf_b = make_workflow(client, organization_id=other.id)
    done = client.executions.complete(
        client.executions.start(client.executions.create(workflow_id=wf.id).id).id,
        result={"rows": 3},
    )
    queued = client.executions.create(workflow_id=wf.id)
    client.executions.create(workflow_id=wf_b.id)
    return {"org": org, "wf": wf, "done": done, "queued": queued}


def test_query_returns_the_column_contract(client: flowscope.Client, runs: dict[str, Any]) -> None:
    df = client.query(
        "SELECT e.id, e.status, e.completed_at, e.duration_seconds, e.steps_total, e.result,"
        " w.tags, w.is_public, count(*) OVER () AS n"
        " FROM executions e JOIN workflows w ON w.id = e.workflow_id"
        " WHERE e.workflow_id = :w ORDER BY e.id",
        {"w": runs["wf"].id},
    )
    assert list(df["id"]) == sorted([runs["done"].id, runs["queued"].id])
    dtypes = {c: str(t) for c, t in df.dtypes.items()}
    assert df.dtypes["id"] == pd.api.types.pandas_dtype(STRING)
    assert dtypes["completed_at"] == "datetime64[us, UTC]"
    assert dtypes["n"] == "Int64" and dtypes["steps_total"] == "Int32"
    assert dtypes["is_public"] == "boolean"
    assert isinstance(df.dtypes["duration_seconds"], pd.ArrowDtype)
    assert isinstance(df.dtypes["tags"], pd.ArrowDtype) and isinstance(
        df.dtypes["result"], pd.ArrowDtype
    )
    done = df[df["id"] == runs["done"].id].iloc[0]
    assert isinstance(done["duration_seconds"], Decimal)
    assert list(done["tags"]) == ["etl", "daily"]
    assert pd.isna(df[df["id"] == runs["queued"].id].iloc[0]["completed_at"])
    # no rows: the same columns and types
    empty = client.query("SELECT id, created_at FROM executions WHERE false")
    assert len(empty) == 0 and str(empty.dtypes["created_at"]) == "datetime64[us, UTC]"


def test_query_is_tenant_scoped_and_checked(client: flowscope.Client, runs: dict[str, Any]) -> None:
    scoped = client.scoped(runs["org"].id)
    df = scoped.query("SELECT organization_id, count(*) AS n FROM executions GROUP BY 1")
    assert df.to_dict("records") == [{"organization_id": runs["org"].id, "n": 2}]
    with pytest.raises(flowscope.ValidationError):
        client.query("SELECT :a AS x", {"b": 1})
    with pytest.raises(flowscope.ValidationError):
        client.query(42)  # type: ignore[arg-type]
    with pytest.raises(flowscope.FlowscopeError):
        client.query("UPDATE workflows SET name = 'x' RETURNING id")
    table = client.query_arrow("SELECT id FROM workflows ORDER BY id")
    assert isinstance(table, pa.Table) and table.num_rows == 2


def test_polars_without_a_second_copy(client: flowscope.Client, runs: dict[str, Any]) -> None:
    pl = pytest.importorskip("polars")
    table = client.query_arrow("SELECT steps_total::bigint AS n FROM executions ORDER BY id")
    frame = pl.from_arrow(table, rechunk=False)
    arrow_buffer = table.column("n").chunks[0].buffers()[1]
    polars_buffer = frame["n"].to_arrow().buffers()[1]
    assert polars_buffer.address == arrow_buffer.address  # the same memory, not a copy
    # every read and every analytics call
    assert client.executions.to_polars().height == 3
    assert client.workflows.to_polars(columns=["id", "tags"]).columns == ["id", "tags"]
    for name in ("durations", "status_breakdown", "tags", "throughput", "summary", "failures"):
        pandas_frame = getattr(client.analytics, name)()
        arrow_table = getattr(client.analytics.arrow, name)()
        polars_frame = getattr(client.analytics.polars, name)()
        assert isinstance(arrow_table, pa.Table) and isinstance(polars_frame, pl.DataFrame)
        assert polars_frame.height == arrow_table.num_rows == len(pandas_frame), name
        assert ATTRS_KEY in arrow_table.schema.metadata
    by_status = client.analytics.polars.status_breakdown(by="status")
    assert "status" in by_status.columns
    with pytest.raises(AttributeError):
        client.analytics.arrow.refresh_rollups  # noqa: B018 (not a frame)


def test_the_pytest_plugin_in_a_users_project(pytester: pytest.Pytester, database_url: str) -> None:
    """A user's own tests, in a project of theirs, with flowscope's fixtures."""
    pytester.makepyfile(
        test_mine=textwrap.dedent(
            """
            def test_my_report(flowscope_client):
                wf = flowscope_client.workflows.create(name="n", owner="ana", nodes=[], edges=[])
                flowscope_client.executions.create(workflow_id=wf.id)
                assert flowscope_client.executions.count() == 1

            def test_starts_empty(flowscope_client):
                assert flowscope_client.workflows.count() == 0

            def test_demo_is_there(flowscope_demo):
                assert flowscope_demo.workflows.count() == 200
                assert flowscope_demo.executions.count() == 20_000
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=3)
