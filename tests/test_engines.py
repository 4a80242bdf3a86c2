"""The analytics engines: every call gives the same frame on PostgreSQL and on the pull
engine (the needed columns streamed as Arrow over either transport, DuckDB in-process),
under every filter; tenancy holds; ``auto`` follows its documented rule."""

from __future__ import annotations

from typing import Any

import flowscope
import pandas as pd
import pytest
import sqlalchemy as sa
from flowscope.analytics import _engines

from . import _analytics_data as data
from .test_mirror import FILTERS, _calls


@pytest.fixture
def seeded(client: flowscope.Client, engine: sa.Engine) -> flowscope.Client:
    data.insert(engine)
    return client


def _same(pg: pd.DataFrame, pulled: pd.DataFrame) -> None:
    assert list(pg.columns) == list(pulled.columns)
    assert dict(pg.dtypes) == dict(pulled.dtypes)
    pd.testing.assert_frame_equal(
        pg.reset_index(drop=True), pulled.reset_index(drop=True), check_exact=False, rtol=1e-9
    )
    assert pg.attrs["engine"] == "postgresql" and pulled.attrs["engine"] == "pull"
    assert pulled.attrs["provenance"]["source"] == pg.attrs["provenance"]["source"]


@pytest.mark.parametrize("transport", ["copy", "adbc"])
def test_every_call_and_filter_gives_the_same_frame_on_every_engine(
    seeded, monkeypatch, transport
) -> None:
    monkeypatch.setenv("FLOWSCOPE_EXPORT_TRANSPORT", transport)
    exact, pulled = seeded.analytics.using("postgresql"), seeded.analytics.using("pull")
    checked = 0
    calls = _calls() if transport == "copy" else _calls()[::7]  # ADBC: a sample of the calls
    for name, kwargs in calls:
        for flt in FILTERS if name != "compare" else [{}, {"status": ["failed"]}]:
            pg = getattr(exact, name)(**kwargs, **flt)
            dk = getattr(pulled, name)(**kwargs, **flt)
            try:
                _same(pg, dk)
            except AssertionError as exc:
                raise AssertionError(f"{name}({kwargs}, {flt}): {exc}") from exc
            checked += len(pg)
    assert checked > (10_000 if transport == "copy" else 1_000)


def test_the_pull_engine_reads_as_the_clients_login(seeded) -> None:
    """A scoped client's pull reads what its login may read: row-level security, not a
    filter of flowscope's."""
    orgs = [r["organization_id"] for r in seeded.sql("SELECT DISTINCT organization_id FROM executions ORDER BY 1")]  # fmt: skip
    assert len(orgs) >= 2
    scoped = seeded.scoped(orgs[0])
    for name, kwargs in (("status_breakdown", {"by": "organization_id"}), ("tags", {})):
        pg = getattr(scoped.analytics.using("postgresql"), name)(**kwargs)
        pulled = getattr(scoped.analytics.using("pull"), name)(**kwargs)
        _same(pg, pulled)
    frame = scoped.analytics.using("pull").status_breakdown(by="organization_id")
    assert frame["organization_id"].tolist() == [orgs[0]]
    everyone = seeded.analytics.using("pull").status_breakdown(by="organization_id")
    assert len(everyone) == len(orgs)


def test_auto_pulls_heavy_queries_over_many_rows_only(seeded, monkeypatch) -> None:
    seeded.sql("ANALYZE executions")  # the rule reads the planner's estimate
    auto = seeded.analytics  # FLOWSCOPE_ANALYTICS_ENGINE unset: auto
    assert auto.engine == "auto"
    assert auto.durations(by="workflow").attrs["engine"] == "postgresql"  # a few rows
    monkeypatch.setattr(_engines, "PULL_MIN_ROWS", 2)  # the planner says 1 for none
    assert auto.durations(by="workflow").attrs["engine"] == "pull"  # percentiles: pulled
    assert auto.tags().attrs["engine"] == "pull"  # an unnest of tags
    assert auto.status_breakdown().attrs["engine"] == "postgresql"  # plain counts stay
    assert auto.failures().attrs["engine"] == "postgresql"  # reads JSON errors: stays
    assert auto.durations(since="2100-01-01").attrs["engine"] == "postgresql"  # selects ~none
    rolled = auto.durations(by="workflow", use_rollups=True)
    assert rolled.attrs["engine"] == "postgresql"  # rollups are PostgreSQL's


def test_engine_choices_are_checked(seeded, monkeypatch) -> None:
    with pytest.raises(flowscope.ValidationError, match="unknown analytics engine"):
        seeded.analytics.using("spark")
    monkeypatch.setenv("FLOWSCOPE_ANALYTICS_ENGINE", "pull")
    with flowscope.connect(seeded.url) as client:
        assert client.analytics.engine == "pull"
        assert client.analytics.tags().attrs["engine"] == "pull"
    monkeypatch.setenv("FLOWSCOPE_ANALYTICS_ENGINE", "fast")
    with flowscope.connect(seeded.url) as client, pytest.raises(flowscope.ConfigurationError):
        _ = client.analytics


def test_the_pull_engine_on_an_empty_database(client) -> None:
    for name in ("durations", "tags", "status_breakdown", "concurrency"):
        kwargs: dict[str, Any] = {"freq": "1D"} if name == "concurrency" else {}
        pg = getattr(client.analytics.using("postgresql"), name)(**kwargs)
        pulled = getattr(client.analytics.using("pull"), name)(**kwargs)
        _same(pg, pulled)


def test_needed_columns_are_those_the_query_reads() -> None:
    from flowscope.analytics.durations import durations_query
    from flowscope.analytics.tags import tags_query
    from flowscope.filters import ExecutionFilter

    flt = ExecutionFilter(owner=["ana"])
    cols = _engines.needed_columns(durations_query(flt, ["workflow"], None, [0.5]).select)
    assert "duration_seconds" in cols["executions"] and "name" in cols["workflows"]
    assert "metadata" not in cols["executions"] and "nodes" not in cols["workflows"]
    tags = _engines.needed_columns(tags_query(flt).select)
    assert "tags" in tags["workflows"]
