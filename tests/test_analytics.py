"""client.analytics: every call checked against pandas on the same raw rows (read with plain SQL)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import flowscope
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from flowscope import ExecutionFilter, ValidationError

from . import _analytics_data as data

STATUSES = ["queued", "running", "completed", "failed", "cancelled", "timeout"]
TERMINAL = ["completed", "failed", "cancelled", "timeout"]


@pytest.fixture
def seeded(client: flowscope.Client, engine: sa.Engine) -> tuple[flowscope.Client, pd.DataFrame]:
    data.insert(engine)
    return client, data.raw(engine)


def _explode_tags(raw: pd.DataFrame, keep_untagged: bool = True) -> pd.DataFrame:
    out = raw.copy()
    out["tag"] = out["tags"].map(lambda t: list(t) if len(t) else [None])
    out = out.explode("tag")
    if not keep_untagged:
        out = out[out["tag"].notna()]
    return out


def _check(actual: pd.DataFrame, expected: pd.DataFrame, keys: list[str]) -> None:
    """Same rows (joined on keys, NULL-safe) and same values (numbers to 1e-9)."""
    assert len(expected) > 0, "nothing to compare: the brute force found no rows"
    assert len(actual) == len(expected), (len(actual), len(expected))
    a = actual.sort_values(keys).reset_index(drop=True) if keys else actual
    e = expected.sort_values(keys).reset_index(drop=True) if keys else expected
    for col in e.columns:
        av = a[col].astype(object).where(a[col].notna(), None).tolist()
        ev = e[col].astype(object).where(e[col].notna(), None).tolist()
        for x, y in zip(av, ev, strict=True):
            if isinstance(y, float | int | np.floating | np.integer) and not isinstance(y, bool):
                assert x is not None, (col, x, y)
                assert float(x) == pytest.approx(float(y), rel=1e-9, abs=1e-9), (col, x, y)
            else:
                assert x == y, (col, x, y)


def _dist(frame: pd.DataFrame, value: str, qs: list[float]) -> pd.Series:
    v = frame[value].dropna()
    out = {
        "executions": len(frame),
        "count": len(v),
        "mean_seconds": v.mean() if len(v) else None,
        "min_seconds": v.min() if len(v) else None,
        "max_seconds": v.max() if len(v) else None,
    }
    for q in qs:
        out[f"p{q * 100:.6g}".replace(".", "_") + "_seconds"] = v.quantile(q) if len(v) else None
    return pd.Series(out)


def _expected_dist(
    raw: pd.DataFrame, keys: list[str], qs: list[float], value: str = "duration_seconds"
):
    if not keys:
        return _dist(raw, value, qs).to_frame().T
    return raw.groupby(keys, dropna=False).apply(lambda g: _dist(g, value, qs)).reset_index()


# -- durations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "by",
    [
        None,
        "workflow_id",
        "workflow",
        ["workflow", "status"],
        "owner",
        "organization_id",
        "tag",
        "day",
        "workflow_version",
    ],
)
def test_durations_match_pandas(seeded, by) -> None:
    client, raw = seeded
    keys = [] if by is None else [by] if isinstance(by, str) else list(by)
    frame = client.analytics.durations(by=by)
    source = _explode_tags(raw) if "tag" in keys else raw
    expected = _expected_dist(source, keys, [0.5, 0.9, 0.95, 0.99])
    assert list(frame.columns) == list(expected.columns)
    _check(frame, expected, keys)
    assert (
        str(frame["executions"].dtype) == "Int64" and str(frame["p50_seconds"].dtype) == "Float64"
    )
    if "day" in keys:
        assert str(frame["day"].dtype) == "datetime64[us, UTC]"


def test_durations_one_row_group_and_null_durations(seeded) -> None:
    client, raw = seeded
    frame = client.analytics.durations(by="workflow_id", percentiles=(0.25, 0.999))
    one = frame[frame["workflow_id"] == "wf_one"].iloc[0]
    value = raw.loc[raw["workflow_id"] == "wf_one", "duration_seconds"].iloc[0]
    assert one["executions"] == 1 and one["count"] == 1
    assert one["p25_seconds"] == pytest.approx(value) and one["p99_9_seconds"] == pytest.approx(
        value
    )
    # executions without a duration count in executions, not in count
    queued = client.analytics.durations(by="status", status=["queued", "running"])
    assert (queued["count"] == 0).all() and queued["p50_seconds"].isna().all()
    assert queued["executions"].sum() == raw["status"].isin(["queued", "running"]).sum()


def test_durations_by_bucket_fills_every_bucket(seeded) -> None:
    client, raw = seeded
    since, until = datetime(2026, 2, 26, tzinfo=UTC), datetime(2026, 3, 20, tzinfo=UTC)
    frame = client.analytics.durations(by="workflow_id", freq="1D", since=since, until=until)
    days = pd.date_range(since, until, freq="D", inclusive="left", unit="us")
    groups = sorted(raw["workflow_id"].unique())
    assert len(frame) == len(days) * len(groups)
    raw = raw.assign(bucket=raw["created_at"].dt.floor("D"))
    grid = pd.MultiIndex.from_product([groups, days], names=["workflow_id", "bucket"])
    expected = (
        raw.groupby(["workflow_id", "bucket"])
        .apply(lambda g: _dist(g, "duration_seconds", [0.5, 0.9, 0.95, 0.99]))
        .reindex(grid)
        .reset_index()
    )
    expected[["executions", "count"]] = expected[["executions", "count"]].fillna(0)
    _check(frame, expected, ["workflow_id", "bucket"])
    assert (
        frame.loc[frame["bucket"] < pd.Timestamp("2026-03-01", tz="UTC"), "executions"].eq(0).all()
    )


@pytest.mark.parametrize("freq", ["6h", "1W", "1MS", "2D"])
def test_buckets_are_utc_and_pandas_like(seeded, freq) -> None:
    client, raw = seeded
    frame = client.analytics.status_breakdown(freq=freq)
    ts = raw["created_at"]
    if freq == "1W":
        bucket = ts.dt.floor("D") - pd.to_timedelta(ts.dt.day_of_week, unit="D")
    elif freq == "1MS":
        bucket = ts.dt.tz_localize(None).dt.to_period("M").dt.start_time.dt.tz_localize("UTC")
    elif freq == "2D":
        origin = pd.Timestamp("2000-01-03", tz="UTC")
        bucket = origin + ((ts - origin) // pd.Timedelta("2D")) * pd.Timedelta("2D")
    else:
        bucket = ts.dt.floor(freq)
    counts = raw.assign(bucket=bucket).groupby("bucket").size()
    step = {"6h": "6h", "1W": "7D", "2D": "2D"}.get(freq)
    full = (
        pd.date_range(counts.index.min(), counts.index.max(), freq=step)
        if step
        else pd.date_range(counts.index.min(), counts.index.max(), freq="MS")
    )
    counts = counts.reindex(full, fill_value=0)
    assert frame["bucket"].tolist() == list(full)
    assert frame["total"].tolist() == counts.tolist()


def test_bucketing_ignores_the_session_time_zone(seeded, database_url) -> None:
    client, raw = seeded
    url = sa.make_url(database_url).update_query_dict({"options": "-c TimeZone=America/New_York"})
    with flowscope.connect(url.render_as_string(hide_password=False)) as ny:
        assert ny.sql("SHOW TimeZone")[0]["TimeZone"] == "America/New_York"
        frame = ny.analytics.throughput(freq="1D")
        by_day = ny.analytics.durations(by="day")
    expected = raw.groupby(raw["created_at"].dt.floor("D")).size()
    assert frame["bucket"].tolist() == list(expected.index)  # crosses the 2026-03-08 US DST change
    assert frame["created"].tolist() == expected.tolist()
    assert by_day["day"].tolist() == list(expected.index)


# -- statuses ---------------------------------------------------------------------------


def _status_expected(raw: pd.DataFrame, keys: list[str], normalize: bool = False) -> pd.DataFrame:
    counts = pd.crosstab(
        [raw[k] for k in keys] if keys else pd.Series(0, index=raw.index), raw["status"]
    )
    counts = counts.reindex(columns=STATUSES, fill_value=0)
    counts["total"] = counts[STATUSES].sum(axis=1)
    finished = counts[TERMINAL].sum(axis=1)
    counts["success_rate"] = (counts["completed"] / finished).where(finished > 0)
    counts["failure_rate"] = ((counts["failed"] + counts["timeout"]) / finished).where(finished > 0)
    if normalize:
        for s in STATUSES:
            counts[s] = counts[s] / counts["total"]
    counts.columns.name = None
    return counts.reset_index() if keys else counts.reset_index(drop=True)


@pytest.mark.parametrize("by", [None, "workflow_id", ["organization_id", "workflow_version"]])
def test_status_breakdown_matches_pandas(seeded, by) -> None:
    client, raw = seeded
    keys = [] if by is None else [by] if isinstance(by, str) else list(by)
    frame = client.analytics.status_breakdown(by=by)
    expected = _status_expected(raw.fillna({"workflow_version": "__na__"}), keys)
    if "workflow_version" in keys:
        expected["workflow_version"] = expected["workflow_version"].replace("__na__", None)
    assert list(frame.columns) == keys + STATUSES + ["total", "success_rate", "failure_rate"]
    _check(frame, expected, keys)
    shares = client.analytics.status_breakdown(by=by, normalize=True)
    assert str(shares["completed"].dtype) == "Float64"
    assert shares[STATUSES].sum(axis=1).round(9).eq(1).all()


def test_status_filter_and_soft_deleted_workflows(seeded, engine) -> None:
    client, raw = seeded
    everything = data.raw(engine, include_deleted=True)
    assert "wf_old" in set(everything["workflow_id"]) and "wf_old" not in set(raw["workflow_id"])
    frame = client.analytics.status_breakdown(by="workflow_id")
    assert "wf_old" not in set(frame["workflow_id"])
    frame = client.analytics.status_breakdown(
        ExecutionFilter(include_deleted_workflows=True), by="workflow_id"
    )
    _check(frame, _status_expected(everything, ["workflow_id"]), ["workflow_id"])
    # keyword filter fields and a positional filter combine
    frame = client.analytics.status_breakdown(ExecutionFilter(owner="ops"), status=["failed"])
    assert frame["total"].iloc[0] == ((raw["owner"] == "ops") & (raw["status"] == "failed")).sum()


# -- tags -------------------------------------------------------------------------------


def _tag_stats(g: pd.DataFrame) -> pd.Series:
    finished = g["status"].isin(TERMINAL).sum()
    failed = g["status"].isin(["failed", "timeout"]).sum()
    d = g["duration_seconds"].dropna()
    return pd.Series({
        "workflows": g["workflow_id"].nunique(),
        "executions": len(g),
        "completed": (g["status"] == "completed").sum(),
        "failed": failed,
        "finished": finished,
        "failure_rate": failed / finished if finished else None,
        "p50_seconds": d.quantile(0.5) if len(d) else None,
        "p95_seconds": d.quantile(0.95) if len(d) else None,
    })  # fmt: skip


def test_tags_match_pandas(seeded) -> None:
    client, raw = seeded
    frame = client.analytics.tags()
    expected = (
        _explode_tags(raw, keep_untagged=False).groupby("tag").apply(_tag_stats).reset_index()
    )
    _check(frame, expected, ["tag"])
    assert frame["executions"].is_monotonic_decreasing
    # untagged workflows (wf_rep) are in no tag; only-untagged selection → empty, same columns
    empty = client.analytics.tags(workflow_ids=["wf_rep"])
    assert len(empty) == 0 and list(empty.columns) == list(frame.columns)


def test_tag_pairs_match_pandas(seeded) -> None:
    client, raw = seeded
    frame = client.analytics.tag_pairs()
    rows = []
    for _, r in raw.iterrows():
        tags = sorted(set(r["tags"]))
        for i, a in enumerate(tags):
            for b in tags[i + 1 :]:
                rows.append({**r.to_dict(), "tag_a": a, "tag_b": b})
    pairs = pd.DataFrame(rows)
    expected = pairs.groupby(["tag_a", "tag_b"]).apply(_tag_stats).reset_index()
    _check(frame, expected, ["tag_a", "tag_b"])


def test_tags_filter_any_all(seeded) -> None:
    client, raw = seeded
    frame = client.analytics.durations(tags_all=["etl", "prod"], by="workflow_id")
    assert set(frame["workflow_id"]) == {
        w
        for w, t in raw.groupby("workflow_id")["tags"].first().items()
        if {"etl", "prod"} <= set(t)
    }


# -- time lines -------------------------------------------------------------------------


def test_throughput_matches_pandas(seeded) -> None:
    client, raw = seeded
    frame = client.analytics.throughput(freq="1D", by="organization_id")
    parts = []
    for kind, col in (
        ("created", "created_at"),
        ("started", "started_at"),
        ("finished", "completed_at"),
    ):
        s = raw.dropna(subset=[col])
        parts.append(
            s.groupby(["organization_id", s[col].dt.floor("D").rename("bucket")])
            .size()
            .rename(kind)
        )
    expected = pd.concat(parts, axis=1)
    lo, hi = expected.index.get_level_values(1).min(), expected.index.get_level_values(1).max()
    grid = pd.MultiIndex.from_product(
        [sorted(raw["organization_id"].unique()), pd.date_range(lo, hi, freq="D")],
        names=["organization_id", "bucket"],
    )
    expected = expected.reindex(grid, fill_value=0).fillna(0).reset_index()
    _check(frame, expected, ["organization_id", "bucket"])


def test_concurrency_matches_brute_force(seeded) -> None:
    client, raw = seeded
    frame = client.analytics.concurrency(freq="6h")
    s = raw.dropna(subset=["started_at"])

    def us(col):  # microseconds since the epoch
        return col.dt.tz_convert(None).astype("datetime64[us]").astype("int64").to_numpy()

    starts = us(s["started_at"])
    done = s["completed_at"].notna().to_numpy()
    ends = np.where(done, us(s["completed_at"].fillna(s["started_at"])), np.iinfo(np.int64).max)

    def level(t):
        return int((starts <= t).sum() - (ends <= t).sum())

    events = np.sort(np.concatenate([starts, ends[done]]))
    assert len(frame) > 10
    for _, row in frame.iterrows():
        b = round(row["bucket"].timestamp() * 10**6)
        e = b + 6 * 3600 * 10**6
        inside = events[(events >= b) & (events < e)]
        assert row["running"] == level(b), (row.to_dict(), level(b), b)
        assert row["peak"] == max([level(b)] + [level(t) for t in inside])
        assert row["started"] == ((starts >= b) & (starts < e)).sum()


# -- queue wait, failures ---------------------------------------------------------------


def test_queue_wait_matches_pandas(seeded) -> None:
    client, raw = seeded
    frame = client.analytics.queue_wait(by="workflow_id", percentiles=(0.5, 0.9))
    raw = raw.assign(wait=(raw["started_at"] - raw["created_at"]).dt.total_seconds())
    expected = _expected_dist(raw, ["workflow_id"], [0.5, 0.9], value="wait")
    expected.columns = [
        c.replace("count", "started").replace("_seconds", "_wait_seconds") for c in expected.columns
    ]
    _check(frame, expected, ["workflow_id"])


def _normalise(message: str | None) -> str | None:
    if message is None:
        return None
    text = re.sub(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "<uuid>",
        message,
        flags=re.I,
    )
    text = re.sub(r"0x[0-9a-f]+", "<n>", text, flags=re.I)
    text = re.sub(r"[0-9]+(\.[0-9]+)*", "<n>", text)
    return re.sub(r"\s+", " ", text).strip()[:200]


def test_failures_match_pandas(seeded) -> None:
    client, raw = seeded
    frame = client.analytics.failures(by="organization_id", top=None)
    f = raw[raw["status"].isin(["failed", "timeout"])].copy()
    f["error_type"] = f["error"].map(lambda e: e.get("type") if isinstance(e, dict) else None)
    f["message"] = f["error"].map(
        lambda e: _normalise(e.get("message")) if isinstance(e, dict) else None
    )
    assert f["message"].nunique() < f["error"].map(str).nunique()  # normalisation groups

    def stats(g):
        modes = g["current_step"].value_counts()
        top = sorted(modes[modes == modes.max()].index)[0] if len(modes) else None
        prog = (g["steps_completed"] / g["steps_total"].where(g["steps_total"] > 0)).dropna()
        return pd.Series({
            "executions": len(g), "failed": (g["status"] == "failed").sum(),
            "timeout": (g["status"] == "timeout").sum(), "workflows": g["workflow_id"].nunique(),
            "first_seen": g["created_at"].min(), "last_seen": g["created_at"].max(),
            "current_step": top, "mean_steps_completed": g["steps_completed"].mean(),
            "mean_progress": prog.mean() if len(prog) else None, "example_id": g["id"].min(),
        })  # fmt: skip

    keys = ["organization_id", "error_type", "message"]
    expected = f.groupby(keys, dropna=False).apply(stats).reset_index()
    _check(frame, expected, keys)
    assert frame["executions"].is_monotonic_decreasing
    assert len(client.analytics.failures(top=2)) == 2


# -- compare, summary -------------------------------------------------------------------


def test_compare_matches_pandas(seeded) -> None:
    client, raw = seeded
    end = datetime(2026, 3, 13, 12, tzinfo=UTC)
    frame = client.analytics.compare(period="5D", by="organization_id", until=end)
    assert frame.attrs["current_period"] == (end - timedelta(days=5), end)
    cur = raw[(raw["created_at"] >= end - timedelta(days=5)) & (raw["created_at"] < end)]
    prev = raw[
        (raw["created_at"] >= end - timedelta(days=10))
        & (raw["created_at"] < end - timedelta(days=5))
    ]

    def metrics(g):
        fin = g["status"].isin(TERMINAL).sum()
        failed = g["status"].isin(["failed", "timeout"]).sum()
        d = g["duration_seconds"].dropna()
        return {
            "executions": len(g), "completed": (g["status"] == "completed").sum(), "failed": failed,
            "failure_rate": failed / fin if fin else None, "mean_seconds": d.mean(),
            "p50_seconds": d.quantile(0.5), "p95_seconds": d.quantile(0.95),
            "mean_wait_seconds": (g["started_at"] - g["created_at"]).dt.total_seconds().mean(),
        }  # fmt: skip

    rows = []
    for org in sorted(raw["organization_id"].unique()):
        c = metrics(cur[cur["organization_id"] == org])
        p = metrics(prev[prev["organization_id"] == org])
        for m in c:
            change = c[m] - p[m]
            rows.append(
                {
                    "organization_id": org,
                    "metric": m,
                    "current": c[m],
                    "previous": p[m],
                    "change": change,
                    "relative_change": change / p[m] if p[m] else None,
                }
            )
    expected = pd.DataFrame(rows)
    got = frame.assign(_i=range(len(frame)))
    _check(got.drop(columns="_i"), expected, ["organization_id", "metric"])
    with pytest.raises(ValidationError):
        client.analytics.compare(period="1MS")
    with pytest.raises(ValidationError):
        client.analytics.compare(since="2026-03-01")


def test_summary_matches_pandas(seeded) -> None:
    client, raw = seeded
    frame = client.analytics.summary(sort="failure_rate")

    def stats(g):
        g = g.sort_values("created_at")
        fin = g["status"].isin(TERMINAL).sum()
        failed = g["status"].isin(["failed", "timeout"]).sum()
        d = g["duration_seconds"].dropna()
        return pd.Series({
            "executions": len(g), "completed": (g["status"] == "completed").sum(), "failed": failed,
            "finished": fin, "failure_rate": failed / fin if fin else None, "mean_seconds": d.mean(),
            "p50_seconds": d.quantile(0.5), "p95_seconds": d.quantile(0.95),
            "last_run_at": g["created_at"].max(), "last_status": g["status"].iloc[-1],
        })  # fmt: skip

    expected = raw.groupby("workflow_id").apply(stats).reset_index()
    _check(frame, expected, ["workflow_id"])
    assert frame["failure_rate"].dropna().is_monotonic_decreasing
    top = client.analytics.summary(sort="executions", descending=False, limit=2)
    assert top["executions"].tolist() == sorted(expected["executions"])[:2]
    with pytest.raises(ValidationError, match="valid columns"):
        client.analytics.summary(sort="password_hash")


# -- contracts, validation, tenancy -----------------------------------------------------


CALLS = {
    "durations": {"by": ["workflow", "tag"], "freq": "1D"},
    "queue_wait": {"by": "owner"},
    "status_breakdown": {"by": "day", "freq": "1W"},
    "tags": {},
    "tag_pairs": {},
    "throughput": {"freq": "1h"},
    "concurrency": {"freq": "1h"},
    "failures": {"by": "workflow_version"},
    "compare": {"period": "7D", "by": "workflow_id"},
    "summary": {},
}


def test_empty_results_keep_the_columns(seeded) -> None:
    client, _ = seeded
    for name, kwargs in CALLS.items():
        full = getattr(client.analytics, name)(**kwargs, until="2026-03-15")
        empty = getattr(client.analytics, name)(**kwargs, owner="nobody")
        assert len(full) > 0, name
        assert len(empty) == 0, name
        assert list(empty.columns) == list(full.columns), name
        assert empty.dtypes.astype(str).tolist() == full.dtypes.astype(str).tolist(), name
    # without grouping keys there is always one row: the (zero) total
    total = client.analytics.status_breakdown(owner="nobody")
    assert total["total"].tolist() == [0] and total["failure_rate"].isna().all()


def test_invalid_input_is_a_validation_error(client) -> None:
    a = client.analytics
    with pytest.raises(ValidationError, match="valid keys: workflow_id, workflow, owner"):
        a.durations(by="password_hash")
    with pytest.raises(ValidationError):
        a.status_breakdown(by=["status", "status"])
    for freq in ("1Y", "0D", "D1", "1 fortnight"):
        with pytest.raises(ValidationError):
            a.throughput(freq=freq)
    for ps in ((0.5, 1.0), (0,), "0.5", (True,)):
        with pytest.raises(ValidationError):
            a.durations(percentiles=ps)
    with pytest.raises(ValidationError):
        a.durations(status="exploded")
    with pytest.raises(ValidationError):
        a.failures(top=0)


def test_scoped_client_sees_only_its_organization(seeded) -> None:
    client, raw = seeded
    scoped = client.scoped("org_b")
    frame = scoped.analytics.status_breakdown(by="organization_id")
    assert frame["organization_id"].tolist() == ["org_b"]
    assert frame["total"].iloc[0] == (raw["organization_id"] == "org_b").sum()
    summary = scoped.analytics.summary()
    assert set(summary["organization_id"]) == {"org_b"}
    tags = scoped.analytics.tags()
    org_b = _explode_tags(raw[raw["organization_id"] == "org_b"], keep_untagged=False)
    assert sorted(tags["tag"]) == sorted(org_b["tag"].unique())
    # asking for another organization's rows through the filter yields nothing
    assert len(scoped.analytics.durations(by="workflow_id", organization_id="org_a")) == 0


def test_percentile_queries_run_with_their_own_work_mem(
    seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Percentiles sort each group: a query with one gets the analytics work_mem (bound,
    transaction-local, configurable); other queries keep the server's; answers do not change."""
    from flowscope.analytics._base import tune
    from flowscope.analytics.durations import durations_query
    from flowscope.analytics.status import status_query

    client, _ = seeded
    percentiles = durations_query(ExecutionFilter(), ["workflow_id"], None, (0.5, 0.95)).select
    counts = status_query(ExecutionFilter(), ["workflow_id"], None, False).select

    def work_mem_for(stmt: Any) -> str:
        with client.read_transaction() as conn:
            tune(conn, stmt)
            return str(conn.execute(sa.text("SHOW work_mem")).scalar())

    with client.read_transaction() as conn:
        server = str(conn.execute(sa.text("SHOW work_mem")).scalar())
    assert server != "64MB"
    assert work_mem_for(percentiles) == "64MB"
    assert work_mem_for(counts) == server
    with client.read_transaction() as conn:  # transaction-local: the next one is untouched
        assert conn.execute(sa.text("SHOW work_mem")).scalar() == server
    default = client.analytics.durations(by="workflow_id")
    monkeypatch.setenv("FLOWSCOPE_ANALYTICS_WORK_MEM", "256MB")
    assert work_mem_for(percentiles) == "256MB"
    monkeypatch.setenv("FLOWSCOPE_ANALYTICS_WORK_MEM", "server")
    assert work_mem_for(percentiles) == server
    pd.testing.assert_frame_equal(client.analytics.durations(by="workflow_id"), default)
    monkeypatch.setenv("FLOWSCOPE_ANALYTICS_WORK_MEM", "64MB; RESET ALL")
    with pytest.raises(flowscope.ConfigurationError, match="FLOWSCOPE_ANALYTICS_WORK_MEM"):
        client.analytics.durations(by="workflow_id")
