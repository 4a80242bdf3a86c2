"""The local mirror against PostgreSQL, rollups, hand-written DuckDB SQL and pandas.

1. **first sync** of a fresh mirror vs a plain ``export.parquet`` of the same tables
   (``workflows`` + ``executions``), each in a fresh subprocess, interleaved;
2. **incremental sync** after ``--changes`` changed rows (updates, inserts and deletes made
   through ordinary, audited statements), fresh subprocess;
3. **analytics**, warm, in one process: ``client.analytics`` (PostgreSQL, exact), the same with
   ``use_rollups=True`` where a call has it, ``mirror.analytics`` (DuckDB over the mirror), the
   same query written by hand in DuckDB SQL over the mirror's Parquet files, and pandas over a
   DataFrame of the executions. Target: mirror <= max(150 ms, 1.5 x hand-written DuckDB) at
   1M, <= 1.5 s at 10M. The first call after a sync, which loads the mirror into DuckDB's own
   tables, is timed on its own; "mirror CPU" is the process's CPU seconds per call (steadier
   than wall time on a shared machine).

    python -m benchmarks.mirror --executions 1000000
    python -m benchmarks.mirror --url postgresql://postgres@127.0.0.1/bench --executions 10000000 \
        --repeats 1 --no-postgres --no-pandas
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import _harness

HAND_SQL = {
    "durations(by=workflow)": """
        SELECT w.name AS workflow, count(*), count(e.duration_seconds),
               avg(e.duration_seconds::DOUBLE), min(e.duration_seconds::DOUBLE),
               max(e.duration_seconds::DOUBLE),
               quantile_cont(e.duration_seconds::DOUBLE, [0.5, 0.9, 0.95, 0.99])
        FROM e JOIN w ON w.id = e.workflow_id WHERE w.deleted_at IS NULL
        GROUP BY 1 ORDER BY 1""",
    "status_breakdown(freq=1D)": """
        SELECT date_trunc('day', timezone('UTC', e.created_at)) AS bucket,
               count(*) FILTER (WHERE e.status = 'queued'), count(*) FILTER (WHERE e.status = 'running'),
               count(*) FILTER (WHERE e.status = 'completed'), count(*) FILTER (WHERE e.status = 'failed'),
               count(*) FILTER (WHERE e.status = 'cancelled'), count(*) FILTER (WHERE e.status = 'timeout'),
               count(*)
        FROM e JOIN w ON w.id = e.workflow_id WHERE w.deleted_at IS NULL GROUP BY 1 ORDER BY 1""",
    "status_breakdown(by=workflow)": """
        SELECT w.name, count(*) FILTER (WHERE e.status = 'queued'),
               count(*) FILTER (WHERE e.status = 'running'),
               count(*) FILTER (WHERE e.status = 'completed'), count(*) FILTER (WHERE e.status = 'failed'),
               count(*) FILTER (WHERE e.status = 'cancelled'), count(*) FILTER (WHERE e.status = 'timeout'),
               count(*)
        FROM e JOIN w ON w.id = e.workflow_id WHERE w.deleted_at IS NULL GROUP BY 1 ORDER BY 1""",
    "tags()": """
        SELECT t.tag, count(DISTINCT e.workflow_id), count(*),
               count(*) FILTER (WHERE e.status = 'completed'),
               count(*) FILTER (WHERE e.status IN ('failed', 'timeout')),
               quantile_cont(e.duration_seconds::DOUBLE, [0.5, 0.95])
        FROM e JOIN (SELECT id, unnest(tags) AS tag FROM w WHERE deleted_at IS NULL) t
             ON t.id = e.workflow_id
        GROUP BY 1 ORDER BY 3 DESC, 1""",
    "queue_wait(by=workflow)": """
        SELECT w.name, count(e.started_at), avg(epoch(e.started_at - e.created_at)),
               min(epoch(e.started_at - e.created_at)), max(epoch(e.started_at - e.created_at)),
               quantile_cont(epoch(e.started_at - e.created_at), [0.5, 0.9, 0.95, 0.99])
        FROM e JOIN w ON w.id = e.workflow_id WHERE w.deleted_at IS NULL GROUP BY 1 ORDER BY 1""",
    "failures()": r"""
        SELECT coalesce(error->>'type', error->>'code', error->>'name') AS t,
               left(trim(regexp_replace(regexp_replace(regexp_replace(regexp_replace(
                 coalesce(error->>'message', error->>'msg'),
                 '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'gi'),
                 '0x[0-9a-f]+', '<n>', 'gi'), '[0-9]+(\.[0-9]+)*', '<n>', 'g'), '\s+', ' ', 'g')),
                 200) AS m,
               count(*), count(*) FILTER (WHERE status = 'failed'),
               count(*) FILTER (WHERE status = 'timeout'), count(DISTINCT workflow_id),
               min(created_at), max(created_at), mode(current_step), avg(steps_completed),
               avg(steps_completed::DOUBLE / nullif(steps_total, 0)), min(id)
        FROM e WHERE status IN ('failed', 'timeout')
          AND workflow_id IN (SELECT id FROM w WHERE deleted_at IS NULL)
        GROUP BY 1, 2 ORDER BY 3 DESC, 8 DESC LIMIT 20""",
    "throughput(freq=1h)": """
        SELECT date_trunc('hour', ts) AS bucket, count(*) FILTER (WHERE k = 1),
               count(*) FILTER (WHERE k = 2), count(*) FILTER (WHERE k = 3)
        FROM (SELECT unnest([1, 2, 3]) AS k, unnest([created_at, started_at, completed_at]) AS ts
              FROM e WHERE workflow_id IN (SELECT id FROM w WHERE deleted_at IS NULL))
        WHERE ts IS NOT NULL GROUP BY 1 ORDER BY 1""",
    "concurrency(freq=1h)": """
        WITH ev AS (SELECT unnest([1, -1]) AS d, unnest([started_at, completed_at]) AS t
                    FROM e WHERE started_at IS NOT NULL
                      AND workflow_id IN (SELECT id FROM w WHERE deleted_at IS NULL)),
             lv AS (SELECT t, d, sum(d) OVER (ORDER BY t) AS level FROM ev WHERE t IS NOT NULL)
        SELECT date_trunc('hour', t), count(*) FILTER (WHERE d > 0),
               count(*) FILTER (WHERE d < 0), max(level)
        FROM lv GROUP BY 1 ORDER BY 1""",
    "tag_pairs()": """
        WITH p AS (SELECT id, a.tag AS tag_a, b.tag AS tag_b
                   FROM w, unnest(tags) a(tag), unnest(tags) b(tag)
                   WHERE a.tag < b.tag AND deleted_at IS NULL)
        SELECT tag_a, tag_b, count(DISTINCT e.workflow_id), count(*),
               count(*) FILTER (WHERE status = 'completed'),
               count(*) FILTER (WHERE status IN ('failed', 'timeout')),
               count(*) FILTER (WHERE status IN ('completed', 'failed', 'cancelled', 'timeout')),
               quantile_cont(e.duration_seconds::DOUBLE, [0.5, 0.95])
        FROM e JOIN p ON p.id = e.workflow_id GROUP BY 1, 2 ORDER BY 4 DESC, 1, 2""",
    "summary()": """
        SELECT e.workflow_id, count(*), avg(e.duration_seconds::DOUBLE),
               quantile_cont(e.duration_seconds::DOUBLE, [0.5, 0.95]), max(e.created_at),
               arg_max(e.status, e.created_at)
        FROM e JOIN w ON w.id = e.workflow_id WHERE w.deleted_at IS NULL GROUP BY 1 ORDER BY 2 DESC""",
}

CALLS: dict[str, tuple[str, dict[str, Any], bool]] = {  # name -> (method, kwargs, has rollups)
    "durations(by=workflow)": (
        "durations",
        {"by": "workflow", "percentiles": (0.5, 0.9, 0.95, 0.99)},
        True,
    ),
    "status_breakdown(freq=1D)": ("status_breakdown", {"freq": "1D"}, True),
    "status_breakdown(by=workflow)": ("status_breakdown", {"by": "workflow"}, True),
    "tags()": ("tags", {}, False),
    "summary()": ("summary", {}, False),
    "queue_wait(by=workflow)": ("queue_wait", {"by": "workflow"}, False),
    "failures()": ("failures", {}, False),
    "throughput(freq=1h)": ("throughput", {"freq": "1h"}, True),
    "concurrency(freq=1h)": ("concurrency", {"freq": "1h"}, False),
    "compare(7D, by=workflow)": ("compare", {"period": "7D", "by": "workflow"}, False),
    "tag_pairs()": ("tag_pairs", {}, False),
}


def _pandas_calls(e: Any, w: Any) -> dict[str, Callable[[], Any]]:
    live = w[w["deleted_at"].isna()]
    j = e.merge(live[["id", "name", "tags"]], left_on="workflow_id", right_on="id")
    d = j["duration_seconds"].astype("float64")

    def durations() -> Any:
        return j.assign(d=d).groupby("name")["d"].describe(percentiles=[0.5, 0.9, 0.95, 0.99])

    def status_day() -> Any:
        day = j["created_at"].dt.floor("D")
        return j.groupby([day, "status"]).size().unstack(fill_value=0)

    def status_wf() -> Any:
        return j.groupby(["name", "status"]).size().unstack(fill_value=0)

    def tags() -> Any:
        x = j.assign(d=d).explode("tags")
        return x.groupby("tags").agg(n=("d", "size"), p50=("d", "median"))

    return {
        "durations(by=workflow)": durations,
        "status_breakdown(freq=1D)": status_day,
        "status_breakdown(by=workflow)": status_wf,
        "tags()": tags,
    }


def _timed(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# -- children --------------------------------------------------------------------------
def child_sync(url: str, path: str, mode: str) -> None:
    import flowscope

    client = flowscope.connect(url)
    started = time.perf_counter()
    if mode == "export":
        rows = 0
        for table in ("workflows", "executions"):
            rows += client.export.parquet(
                table, Path(path) / f"{table}.parquet", progress=False
            ).rows
        report_rows = rows
    else:
        report = client.mirror(path).sync(full=mode == "full", progress=False)
        report_rows = report.added + report.changed + report.removed
    _harness.child_report(time.perf_counter() - started, report_rows)


def _change(url: str, n: int, round_: int) -> None:
    """``n`` changed rows through ordinary (audited) statements: 80 % updates, 10 % inserts,
    10 % deletes."""
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE executions SET steps_completed = steps_completed + 1 WHERE id IN"
                " (SELECT id FROM executions ORDER BY md5(id || :r) LIMIT :n)"
            ),
            {"n": n * 8 // 10, "r": str(round_)},
        )
        conn.execute(
            sa.text(
                "INSERT INTO executions (id, workflow_id, owner, organization_id, status,"
                " duration_seconds, started_at, completed_at)"
                " SELECT 'exe_bench_' || :r || '_' || g, e.workflow_id, e.owner, e.organization_id,"
                " 'completed', 12.5, now(), now()"
                " FROM generate_series(1, :n) g"
                " CROSS JOIN LATERAL (SELECT workflow_id, owner, organization_id FROM executions"
                " LIMIT 1) e"
            ),
            {"n": n // 10, "r": f"{os.getpid()}_{round_}"},
        )
        conn.execute(
            sa.text(
                "DELETE FROM executions WHERE id IN"
                " (SELECT id FROM executions ORDER BY md5(id || :r || 'd') LIMIT :n)"
            ),
            {"n": n // 10, "r": str(round_)},
        )
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None)
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--no-postgres", action="store_true", help="skip PostgreSQL and rollups (10M: minutes)"
    )
    parser.add_argument("--no-pandas", action="store_true", help="skip pandas (10M: ~10 GB)")
    parser.add_argument("--child", nargs=3, metavar=("URL", "PATH", "MODE"))
    args = parser.parse_args()
    if args.child:
        child_sync(*args.child)
        return
    from benchmarks.datagen import bench_url, generate, without_secondary_indexes

    url = args.url or bench_url()
    # past a few million rows, load without the secondary indexes and rebuild them after
    with without_secondary_indexes(url, args.executions, enabled=args.executions > 2_000_000):
        generate(url, executions=args.executions)
    work = Path(tempfile.mkdtemp(prefix="flowscope-bench-mirror-"))
    module = "benchmarks.mirror"
    try:
        # 1. first sync vs plain export
        def one(contender: str, rep: int) -> dict[str, Any]:
            target = work / f"{contender}-{rep}"
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            mode = "export" if contender == "export.parquet" else "full"
            result = _harness.run_child(module, ["--child", url, str(target), mode])
            if contender == "export.parquet" or rep < args.repeats - 1:
                shutil.rmtree(target, ignore_errors=True)
            return result

        first = _harness.measure(["export.parquet", "mirror first sync"], one, args.repeats)
        print(
            _harness.table(
                f"First sync at {args.executions:,} executions (workflows + executions)",
                first,
                baseline="export.parquet",
            )
        )
        mirror_path = work / f"mirror first sync-{args.repeats - 1}"
        # 2. incremental syncs after N changed rows
        incremental = []
        for rep in range(args.repeats):
            _change(url, args.changes, rep)
            incremental.append(
                _harness.run_child(module, ["--child", url, str(mirror_path), "incremental"])
            )
        secs = [r["seconds"] for r in incremental]
        rss = [r["peak_rss_mb"] for r in incremental]
        print(
            f"\n### Incremental sync after {args.changes:,} changed rows"
            f" ({args.executions:,} executions)\n\n| median s | runs (s) | peak RSS MB |"
            f"\n|---:|---|---:|\n| {statistics.median(secs):.2f} |"
            f" {', '.join(f'{s:.2f}' for s in secs)} | {statistics.median(rss):.0f} |"
        )
        # 3. analytics, warm
        _analytics(
            url,
            mirror_path,
            args.executions,
            args.repeats,
            postgres=not args.no_postgres,
            pandas=not args.no_pandas,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _analytics(
    url: str, mirror_path: Path, executions: int, repeats: int, *, postgres: bool, pandas: bool
) -> None:
    import duckdb
    import flowscope

    client = flowscope.connect(url)
    mirror = client.mirror(mirror_path)
    mirror.sync(progress=False)
    if postgres:
        client.analytics.refresh_rollups(concurrently=False)
    state = mirror._state()
    assert state is not None
    # the first call after a sync loads the native tables (timed alone)
    started, cpu = time.perf_counter(), time.process_time()
    mirror._connection()
    load = (time.perf_counter() - started, time.process_time() - cpu)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    # the hand-written contender reads the mirror's files directly (base, and delta/deleted)
    e_files = [str(mirror_path / f) for f in state["tables"]["executions"]["base"]]
    w_files = [str(mirror_path / f) for f in state["tables"]["workflows"]["base"]]
    con.read_parquet(e_files).create_view("e")
    con.read_parquet(w_files).create_view("w")
    pandas_calls: dict[str, Callable[[], Any]] = {}
    if pandas:
        mcon = mirror.duckdb()
        e_frame = mcon.sql("SELECT * EXCLUDE (parameters, result, metadata) FROM executions").df()
        w_frame = mcon.sql("SELECT * FROM workflows").df()
        mcon.close()
        pandas_calls = _pandas_calls(e_frame, w_frame)
    limit = 0.150 if executions <= 1_000_000 else 1.5
    rows = []
    for label, (method, kwargs, has_rollups) in CALLS.items():
        pg = (
            _timed(lambda m=method, k=kwargs: getattr(client.analytics, m)(**k), 1)
            if postgres
            else None
        )
        roll = (
            _timed(
                lambda m=method, k=kwargs: getattr(client.analytics, m)(**k, use_rollups=True), 1
            )
            if has_rollups and postgres
            else None
        )
        before = time.process_time()
        mir = _timed(lambda m=method, k=kwargs: getattr(mirror.analytics, m)(**k), repeats)
        mir_cpu = (time.process_time() - before) / (repeats + 1)
        hand = (
            _timed(lambda s=HAND_SQL[label]: con.execute(s).fetchall(), repeats)
            if label in HAND_SQL
            else None
        )
        pdt = _timed(pandas_calls[label], repeats) if label in pandas_calls else None
        target = max(limit, 1.5 * hand) if hand is not None and executions <= 1_000_000 else limit
        rows.append((label, pg, roll, mir, mir_cpu, hand, pdt, target))

    def cell(v: float | None) -> str:
        return "–" if v is None else f"{v:.3f}"

    def times(a: float | None, b: float | None) -> str:
        return "–" if a is None or b is None else f"{a / b:.1f}×"

    print(
        f"\n### Analytics at {executions:,} executions (median of {repeats} warm runs; PostgreSQL"
        f" and rollups one warm run; load {os.getloadavg()[0]:.1f})\n\n"
        f"First call after the sync (loads the native tables): {load[0]:.2f} s"
        f" ({load[1]:.2f} s CPU).\n\n"
        "| call | PostgreSQL | rollups | mirror | mirror CPU | hand DuckDB | pandas |"
        " mirror vs PostgreSQL | mirror / hand | target | met |"
        "\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    for label, pg, roll, mir, mir_cpu, hand, pdt, target in rows:
        print(
            f"| {label} | {cell(pg)} | {cell(roll)} | {cell(mir)} | {cell(mir_cpu)} | {cell(hand)} |"
            f" {cell(pdt)} | {times(pg, mir)} | {times(mir, hand)} | {target:.3f} |"
            f" {'yes' if mir <= target else 'NO'} |"
        )
    print(json.dumps({"rows": [r[0] for r in rows]}), file=sys.stderr)
    con.close()
    mirror.close()
    client.close()
    os.environ.pop("_", None)


if __name__ == "__main__":
    main()
