"""Benchmark client.analytics: flowscope vs the pandas way vs the best hand-written SQL.

For every size (default 1M and 10M executions, 2,000 workflows, 180 days, made by
``benchmarks/datagen.py``) it prints, per analytics call, the best of ``--repeat``
wall-clock times of

* flowscope: the ``client.analytics`` call, DataFrame included;
* SQL: a hand-written query giving the same answer, rows fetched with psycopg;
* pandas: ``read_sql("SELECT * FROM executions")`` (timed once, added to every
  call) plus the groupby that answers the question. Skipped above
  ``--pandas-max`` executions (it needs ~4 GB per million rows).

and then rollups against exact answers (``use_rollups=True``) with the largest
relative error of the sketch percentiles.

Usage (one command)::

    python benchmarks/analytics.py                                  # embedded database
    python benchmarks/analytics.py --url postgresql://postgres@127.0.0.1/b1m --sizes 1000000
"""

from __future__ import annotations

import argparse
import gc
import re
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.datagen import REFERENCE_TIME, bench_url, generate

LIVE = "w.deleted_at IS NULL"
STATUS_COUNTS = ", ".join(
    f"count(*) FILTER (WHERE e.status = '{s}')"
    for s in ("queued", "running", "completed", "failed", "cancelled", "timeout")
)
PCTS = "percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99]) WITHIN GROUP (ORDER BY e.duration_seconds::float8)"
END = REFERENCE_TIME

SQL: dict[str, str] = {
    "durations(by=workflow_id)": f"""
SELECT e.workflow_id, count(*), count(e.duration_seconds), avg(e.duration_seconds::float8),
       min(e.duration_seconds::float8), max(e.duration_seconds::float8), {PCTS}
FROM executions e JOIN workflows w ON w.id = e.workflow_id WHERE {LIVE} GROUP BY 1""",
    "durations(by=tag)": f"""
SELECT t.tag, count(*), count(e.duration_seconds), avg(e.duration_seconds::float8),
       min(e.duration_seconds::float8), max(e.duration_seconds::float8), {PCTS}
FROM executions e JOIN workflows w ON w.id = e.workflow_id LEFT JOIN LATERAL unnest(w.tags) t(tag) ON true
WHERE {LIVE} GROUP BY 1""",
    "status_breakdown(by=workflow_id)": f"""
SELECT e.workflow_id, {STATUS_COUNTS}, count(*)
FROM executions e JOIN workflows w ON w.id = e.workflow_id WHERE {LIVE} GROUP BY 1""",
    "status_breakdown(freq=1D)": f"""
SELECT date_trunc('day', timezone('UTC', e.created_at)), {STATUS_COUNTS}, count(*)
FROM executions e JOIN workflows w ON w.id = e.workflow_id WHERE {LIVE} GROUP BY 1 ORDER BY 1""",
    "tags()": f"""
SELECT t.tag, count(DISTINCT e.workflow_id), count(*), count(*) FILTER (WHERE e.status = 'completed'),
       count(*) FILTER (WHERE e.status IN ('failed', 'timeout')),
       count(*) FILTER (WHERE e.status IN ('completed', 'failed', 'cancelled', 'timeout')),
       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY e.duration_seconds::float8)
FROM executions e JOIN workflows w ON w.id = e.workflow_id CROSS JOIN LATERAL unnest(w.tags) t(tag)
WHERE {LIVE} GROUP BY 1""",
    "tag_pairs()": f"""
SELECT a.tag, b.tag, count(DISTINCT e.workflow_id), count(*),
       count(*) FILTER (WHERE e.status = 'completed'),
       count(*) FILTER (WHERE e.status IN ('failed', 'timeout')),
       count(*) FILTER (WHERE e.status IN ('completed', 'failed', 'cancelled', 'timeout')),
       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY e.duration_seconds::float8)
FROM executions e JOIN workflows w ON w.id = e.workflow_id
CROSS JOIN LATERAL unnest(w.tags) a(tag) JOIN LATERAL unnest(w.tags) b(tag) ON a.tag < b.tag
WHERE {LIVE} GROUP BY 1, 2""",
    "throughput(freq=1D)": f"""
SELECT b, count(*) FILTER (WHERE k = 1), count(*) FILTER (WHERE k = 2), count(*) FILTER (WHERE k = 3)
FROM executions e JOIN workflows w ON w.id = e.workflow_id
CROSS JOIN LATERAL (VALUES (1, date_trunc('day', timezone('UTC', e.created_at))),
                           (2, date_trunc('day', timezone('UTC', e.started_at))),
                           (3, date_trunc('day', timezone('UTC', e.completed_at)))) v(k, b)
WHERE {LIVE} AND b IS NOT NULL GROUP BY 1 ORDER BY 1""",
    "concurrency(freq=1h)": f"""
WITH ev AS (
  SELECT timezone('UTC', e.started_at) AS t, 1 AS d FROM executions e JOIN workflows w ON w.id = e.workflow_id
  WHERE {LIVE} AND e.started_at IS NOT NULL
  UNION ALL
  SELECT timezone('UTC', e.completed_at), -1 FROM executions e JOIN workflows w ON w.id = e.workflow_id
  WHERE {LIVE} AND e.started_at IS NOT NULL AND e.completed_at IS NOT NULL
), lv AS (SELECT t, d, date_trunc('hour', t) AS b, sum(d) OVER (ORDER BY t) AS level FROM ev)
SELECT b, count(*) FILTER (WHERE d > 0), count(*) FILTER (WHERE d < 0), max(level) FROM lv GROUP BY b ORDER BY b""",
    "queue_wait(by=workflow_id)": f"""
SELECT e.workflow_id, count(*), count(e.started_at), avg(extract(epoch FROM e.started_at - e.created_at)::float8),
       min(extract(epoch FROM e.started_at - e.created_at)::float8),
       max(extract(epoch FROM e.started_at - e.created_at)::float8),
       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM e.started_at - e.created_at)::float8)
FROM executions e JOIN workflows w ON w.id = e.workflow_id WHERE {LIVE} GROUP BY 1""",
    "failures(top=20)": """
SELECT coalesce(e.error->>'type', e.error->>'code', e.error->>'name') AS t,
       left(btrim(regexp_replace(regexp_replace(regexp_replace(regexp_replace(
           coalesce(e.error->>'message', e.error->>'msg',
                    CASE WHEN jsonb_typeof(e.error) = 'string' THEN e.error #>> '{}' END),
           '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'gi'),
           '0x[0-9a-f]+', '<n>', 'gi'), '[0-9]+(\\.[0-9]+)*', '<n>', 'g'), '\\s+', ' ', 'g')), 200) AS m,
       count(*), count(*) FILTER (WHERE e.status = 'failed'), count(*) FILTER (WHERE e.status = 'timeout'),
       count(DISTINCT e.workflow_id), min(e.created_at), max(e.created_at),
       mode() WITHIN GROUP (ORDER BY e.current_step), avg(e.steps_completed),
       avg(e.steps_completed::float8 / nullif(e.steps_total, 0)), min(e.id)
FROM executions e JOIN workflows w ON w.id = e.workflow_id
WHERE {LIVE} AND e.status IN ('failed', 'timeout') GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 20""".replace(
        "{LIVE}", LIVE
    ),
    "compare(period=7D, by=workflow_id)": f"""
SELECT e.workflow_id,
       count(*) FILTER (WHERE c), count(*) FILTER (WHERE NOT c),
       count(*) FILTER (WHERE c AND e.status = 'completed'), count(*) FILTER (WHERE NOT c AND e.status = 'completed'),
       count(*) FILTER (WHERE c AND e.status IN ('failed', 'timeout')),
       count(*) FILTER (WHERE NOT c AND e.status IN ('failed', 'timeout')),
       count(*) FILTER (WHERE c AND e.status IN ('completed', 'failed', 'cancelled', 'timeout')),
       count(*) FILTER (WHERE NOT c AND e.status IN ('completed', 'failed', 'cancelled', 'timeout')),
       avg(extract(epoch FROM e.started_at - e.created_at)::float8) FILTER (WHERE c),
       avg(extract(epoch FROM e.started_at - e.created_at)::float8) FILTER (WHERE NOT c),
       avg(e.duration_seconds::float8) FILTER (WHERE c), avg(e.duration_seconds::float8) FILTER (WHERE NOT c),
       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY e.duration_seconds::float8) FILTER (WHERE c),
       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY e.duration_seconds::float8) FILTER (WHERE NOT c)
FROM executions e JOIN workflows w ON w.id = e.workflow_id
CROSS JOIN LATERAL (SELECT e.created_at >= :mid AS c) x
WHERE {LIVE} AND e.created_at >= :start AND e.created_at < :end GROUP BY 1""",
    "summary()": f"""
SELECT e.workflow_id, min(w.name), count(*), count(*) FILTER (WHERE e.status IN ('failed', 'timeout')),
       avg(e.duration_seconds::float8),
       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY e.duration_seconds::float8),
       max(e.created_at), (array_agg(e.status ORDER BY e.created_at DESC))[1]
FROM executions e JOIN workflows w ON w.id = e.workflow_id WHERE {LIVE} GROUP BY 1 ORDER BY 3 DESC""",
}

CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "durations(by=workflow_id)": ("durations", {"by": "workflow_id"}),
    "durations(by=tag)": ("durations", {"by": "tag"}),
    "status_breakdown(by=workflow_id)": ("status_breakdown", {"by": "workflow_id"}),
    "status_breakdown(freq=1D)": ("status_breakdown", {"freq": "1D"}),
    "tags()": ("tags", {}),
    "tag_pairs()": ("tag_pairs", {}),
    "throughput(freq=1D)": ("throughput", {"freq": "1D"}),
    "concurrency(freq=1h)": ("concurrency", {"freq": "1h"}),
    "queue_wait(by=workflow_id)": ("queue_wait", {"by": "workflow_id"}),
    "failures(top=20)": ("failures", {"top": 20}),
    "compare(period=7D, by=workflow_id)": (
        "compare",
        {"period": "7D", "by": "workflow_id", "until": END},
    ),
    "summary()": ("summary", {}),
}

ROLLUP_CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "status_breakdown(freq=1D)": ("status_breakdown", {"freq": "1D"}),
    "status_breakdown(by=workflow_id)": ("status_breakdown", {"by": "workflow_id"}),
    "status_breakdown() total": ("status_breakdown", {}),
    "throughput(freq=1D)": ("throughput", {"freq": "1D"}),
    "durations(by=workflow_id)": ("durations", {"by": "workflow_id"}),
    "durations(freq=1W)": ("durations", {"freq": "1W"}),
    "durations() total": ("durations", {}),
}


def best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# -- the pandas way ----------------------------------------------------------------------


def pandas_answers(pd: Any, np: Any, ex: Any, wf: Any) -> dict[str, Callable[[], Any]]:
    live = ex[ex["workflow_id"].isin(wf.loc[wf["deleted_at"].isna(), "id"])]
    qs = [0.5, 0.9, 0.95, 0.99]

    def dist(frame: Any, key: str, col: str = "duration_seconds") -> Any:
        g = frame.groupby(key, dropna=False)[col]
        return g.agg(["size", "count", "mean", "min", "max"]).join(g.quantile(qs).unstack())

    def tagged() -> Any:
        wt = wf[["id", "tags"]].explode("tags").rename(columns={"id": "workflow_id", "tags": "tag"})
        return live.merge(wt.dropna(), on="workflow_id")

    def tag_stats(frame: Any, keys: list[str]) -> Any:
        g = frame.groupby(keys)
        out = g.agg(workflows=("workflow_id", "nunique"), executions=("id", "size"))
        out["completed"] = g["status"].apply(lambda s: (s == "completed").sum())
        out["failed"] = g["status"].apply(lambda s: s.isin(["failed", "timeout"]).sum())
        return out.join(g["duration_seconds"].quantile([0.5, 0.95]).unstack())

    def pairs() -> Any:
        wt = wf.loc[wf["deleted_at"].isna(), ["id", "tags"]].explode("tags").dropna()
        p = wt.merge(wt, on="id")
        p = p[p["tags_x"] < p["tags_y"]].rename(columns={"id": "workflow_id"})
        return tag_stats(live.merge(p, on="workflow_id"), ["tags_x", "tags_y"])

    def throughput() -> Any:
        parts = [
            live[c].dropna().dt.floor("D").value_counts().rename(c)
            for c in ("created_at", "started_at", "completed_at")
        ]
        return pd.concat(parts, axis=1).fillna(0)

    def concurrency() -> Any:
        s = live.dropna(subset=["started_at"])
        ev = pd.concat(
            [
                pd.DataFrame({"t": s["started_at"], "d": 1}),
                pd.DataFrame({"t": s["completed_at"].dropna(), "d": -1}),
            ]
        ).sort_values(["t", "d"])
        ev["level"] = ev["d"].cumsum()
        return ev.groupby(ev["t"].dt.floor("h")).agg(level=("level", "max"), n=("d", "size"))

    def failures() -> Any:
        f = live[live["status"].isin(["failed", "timeout"])]
        t = f["error"].map(lambda e: e.get("type") if isinstance(e, dict) else None)
        m = f["error"].map(
            lambda e: (
                re.sub(r"[0-9]+(\.[0-9]+)*", "<n>", e.get("message", ""))
                if isinstance(e, dict)
                else None
            )
        )
        g = f.groupby([t.rename("t"), m.rename("m")])
        out = g.agg(n=("id", "size"), wfs=("workflow_id", "nunique"), first=("created_at", "min"),
                    last=("created_at", "max"), steps=("steps_completed", "mean"))  # fmt: skip
        return out.sort_values("n", ascending=False).head(20)

    def compare() -> Any:
        w = live[(live["created_at"] >= END - timedelta(days=14)) & (live["created_at"] < END)]
        cur = w["created_at"] >= END - timedelta(days=7)
        return pd.concat(
            {"cur": dist(w[cur], "workflow_id"), "prev": dist(w[~cur], "workflow_id")}, axis=1
        )

    def summary() -> Any:
        s = live.sort_values("created_at")
        g = s.groupby("workflow_id")
        out = dist(s, "workflow_id")
        out["last"] = g["created_at"].max()
        out["last_status"] = g["status"].last()
        out["failed"] = g["status"].apply(lambda x: x.isin(["failed", "timeout"]).sum())
        return out.sort_values("size", ascending=False)

    def wait() -> Any:
        w = live.assign(wait=(live["started_at"] - live["created_at"]).dt.total_seconds())
        return dist(w, "workflow_id", "wait")

    return {
        "durations(by=workflow_id)": lambda: dist(live, "workflow_id"),
        "durations(by=tag)": lambda: dist(tagged(), "tag"),
        "status_breakdown(by=workflow_id)": lambda: pd.crosstab(
            live["workflow_id"], live["status"]
        ),
        "status_breakdown(freq=1D)": lambda: pd.crosstab(
            live["created_at"].dt.floor("D"), live["status"]
        ),
        "tags()": lambda: tag_stats(tagged(), ["tag"]),
        "tag_pairs()": pairs,
        "throughput(freq=1D)": throughput,
        "concurrency(freq=1h)": concurrency,
        "queue_wait(by=workflow_id)": wait,
        "failures(top=20)": failures,
        "compare(period=7D, by=workflow_id)": compare,
        "summary()": summary,
    }


# -- running -----------------------------------------------------------------------------


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "skipped"
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def ratio(a: float | None, b: float | None) -> str:
    return "" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def run_size(
    url: str,
    executions: int,
    repeat: int,
    pandas_max: int,
    refresh: bool = True,
    only: str | None = None,
    rollups_only: bool = False,
) -> None:
    import flowscope
    import numpy as np
    import pandas as pd

    generate(url, executions=executions)
    client = flowscope.connect(url, migrate=True, pool_size=2)
    took = None
    if refresh or client.analytics.rollups_refreshed_at() is None:
        t0 = time.perf_counter()
        client.analytics.refresh_rollups(concurrently=False)
        took = time.perf_counter() - t0
    engine = client.engine
    with engine.connect() as conn:
        total = conn.execute(sa.text("SELECT count(*) FROM executions")).scalar()
        mv_rows = conn.execute(sa.text("SELECT count(*) FROM flowscope_executions_daily")).scalar()
    print(
        f"\n## {total:,} executions ({url.split('@')[-1]}); rollup rows: {mv_rows:,}; refresh (not concurrent): {fmt(took) if took else 'not timed (fresh)'}\n"
    )

    pandas_read = None
    answers: dict[str, Callable[[], Any]] = {}
    if executions <= pandas_max and not rollups_only:
        start = time.perf_counter()
        with engine.connect() as conn:
            ex = pd.read_sql(sa.text("SELECT * FROM executions"), conn)
            wf = pd.read_sql(sa.text("SELECT id, name, tags, deleted_at FROM workflows"), conn)
        for c in ("created_at", "started_at", "completed_at"):
            ex[c] = pd.to_datetime(ex[c], utc=True)
        ex["duration_seconds"] = ex["duration_seconds"].astype(float)
        pandas_read = time.perf_counter() - start
        mem = ex.memory_usage(deep=True).sum() / 2**30
        print(
            f"pandas: read_sql of every execution took {fmt(pandas_read)} ({mem:.1f} GiB in memory)\n"
        )
        answers = pandas_answers(pd, np, ex, wf)

    params = {"start": END - timedelta(days=14), "mid": END - timedelta(days=7), "end": END}
    header = "| call | flowscope | hand-written SQL | flowscope/SQL | pandas (read + groupby) | pandas/flowscope |"
    print(header)
    print("|---|---:|---:|---:|---:|---:|")
    for label, (method, kwargs) in CALLS.items():
        if rollups_only or (only and not any(o in label for o in only.split(","))):
            continue
        fs = best(
            lambda method=method, kwargs=kwargs: getattr(client.analytics, method)(**kwargs), repeat
        )

        def hand(label: str = label) -> Any:
            with engine.connect() as conn:
                return conn.execute(
                    sa.text(SQL[label]), params if ":mid" in SQL[label] else {}
                ).fetchall()

        sql = best(hand, repeat)
        pdt = None
        if label in answers and pandas_read is not None:
            pdt = pandas_read + best(answers[label], 1)
        print(
            f"| {label} | {fmt(fs)} | {fmt(sql)} | {ratio(fs, sql)} | {fmt(pdt)} | {ratio(pdt, fs)} |"
        )
        sys.stdout.flush()
    if pandas_read is None:
        print(
            f"\n(pandas skipped above {pandas_max:,} executions: it would need ~{executions / 250_000:.0f} GB)"
        )

    print(
        "\n| call (rollups) | exact | use_rollups=True | speed-up | max rel. error of percentiles |"
    )
    print("|---|---:|---:|---:|---:|")
    for label, (method, kwargs) in ROLLUP_CALLS.items():
        if only and not any(o in label for o in only.split(",")):
            continue
        fn = getattr(client.analytics, method)
        t0 = time.perf_counter()
        exact_frame = fn(**kwargs)
        exact = time.perf_counter() - t0
        t0 = time.perf_counter()
        rolled_frame = fn(**kwargs, use_rollups=True)
        rolled = time.perf_counter() - t0
        assert rolled_frame.attrs["rollups"], rolled_frame.attrs
        if repeat > 1:
            exact = min(exact, best(lambda fn=fn, kwargs=kwargs: fn(**kwargs), repeat - 1))
            rolled = min(
                rolled,
                best(lambda fn=fn, kwargs=kwargs: fn(**kwargs, use_rollups=True), repeat - 1),
            )
        err = ""
        pcols = [c for c in exact_frame.columns if c.startswith("p") and c.endswith("_seconds")]
        counts = [
            c
            for c in exact_frame.columns
            if c in ("total", "executions", "count", "created", "finished")
        ]
        for c in counts:
            assert (exact_frame[c].to_numpy() == rolled_frame[c].to_numpy()).all(), c
        if pcols:
            e = exact_frame[pcols].to_numpy(dtype=float, na_value=np.nan)
            r = rolled_frame[pcols].to_numpy(dtype=float, na_value=np.nan)
            rel = np.abs(r - e) / np.where(e == 0, np.nan, e)
            err = f"{np.nanmax(rel) * 100:.5f}% (median {np.nanmedian(rel) * 100:.3f}%)"
        print(f"| {label} | {fmt(exact)} | {fmt(rolled)} | {ratio(exact, rolled)} | {err} |")
        sys.stdout.flush()
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", action="append", help="database URL per size (in --sizes order)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pandas-max", type=int, default=2_000_000)
    parser.add_argument("--rollups-only", action="store_true", help="only rollups vs exact")
    parser.add_argument(
        "--only", help="run only the calls whose label contains one of these comma-separated texts"
    )
    parser.add_argument(
        "--no-refresh", action="store_true", help="use the rollups as they are (if ever refreshed)"
    )
    args = parser.parse_args()
    urls = args.url or [bench_url(f"flowscope_bench_{n}") for n in args.sizes]
    if len(urls) != len(args.sizes):
        parser.error("give one --url per size")
    for url, n in zip(urls, args.sizes, strict=True):
        run_size(
            url,
            n,
            args.repeat,
            args.pandas_max,
            refresh=not args.no_refresh,
            only=args.only,
            rollups_only=args.rollups_only,
        )


if __name__ == "__main__":
    main()
