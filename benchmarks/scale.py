"""Scale check at 10M executions (issue 7): analytics raw vs rollup, list pages and their
plans (index health), export, CONCURRENTLY index builds, and a 1M-row archived prune.

Usage::

    python benchmarks/scale.py                                   # embedded server, 10M rows
    python benchmarks/scale.py --executions 200000 --prune-rows 20000 \\
        --url postgresql://postgres@127.0.0.1:5432/flowscope_scale_small
    python benchmarks/scale.py --no-prune --rebuild-indexes      # keep the data; time 0005's builds

Each analytics/list call is timed (best of ``--repeat``), and every SELECT it sends is
EXPLAINed (same parameters, same tenancy) to list the scans on ``executions``: a
``Seq Scan`` on executions where a filter or order could use an index is flagged.
Calls that use the public API (``client.analytics``, ``client.executions``,
``client.export``) run when those features are installed; equivalent SQL runs
otherwise, and the table says which. Results are printed as a Markdown table and
written to ``benchmarks/results/scale-<executions>.md``.

The prune runs last and changes the data; the generator's fingerprint is then cleared,
so the next run regenerates.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sdk"))

import flowscope
from flowscope import _migrate
from flowscope.models import EXECUTIONS as E
from flowscope.models import TERMINAL_EXECUTION_STATUSES

from benchmarks.datagen import REFERENCE_TIME, bench_url, generate, without_secondary_indexes

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    name: str
    seconds: float
    rows: int | None = None
    via: str = ""
    plan: str = ""
    healthy: bool | None = None
    notes: list[str] = field(default_factory=list)


# -- plans -------------------------------------------------------------------------------


@contextlib.contextmanager
def capture(engine: sa.Engine) -> Iterator[list[tuple[str, Any]]]:
    """Record every SELECT/WITH statement (with its parameters) sent through ``engine``."""
    seen: list[tuple[str, Any]] = []

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        head = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
        if head in ("SELECT", "WITH") and "set_config" not in statement:
            seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def explain(client: flowscope.Client, statement: str, parameters: Any) -> tuple[str, bool]:
    """A one-line summary of how ``executions`` is read, and whether it avoids a seq scan."""
    with client.transaction() as conn:
        raw = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar_one()
    plan = (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]
    scans = []
    seq = False
    for node in _nodes(plan):
        relation = node.get("Relation Name")
        if relation is None:
            continue
        kind = node["Node Type"]
        where = node.get("Index Name") or relation
        if relation == "executions" and kind == "Seq Scan":
            seq = True
        if relation in ("executions", "workflows") or relation.startswith("flowscope_"):
            scans.append(f"{kind} {where}")
    return "; ".join(dict.fromkeys(scans)) or "(no table scan)", not seq


def measure(
    client: flowscope.Client,
    name: str,
    fn: Callable[[], Any],
    *,
    via: str,
    repeat: int,
    seq_expected: bool = False,
) -> Row:
    best = float("inf")
    result: Any = None
    with capture(client.engine) as statements:
        for _ in range(repeat):
            started = time.perf_counter()
            result = fn()
            best = min(best, time.perf_counter() - started)
    rows = _count(result)
    plans, healthy = [], True
    unique: dict[str, Any] = {}
    for statement, parameters in statements:
        unique.setdefault(statement, parameters)
    for statement, parameters in unique.items():
        summary, ok = explain(client, statement, parameters)
        plans.append(summary)
        healthy = healthy and ok
    row = Row(name, best, rows, via, " | ".join(dict.fromkeys(plans)), healthy)
    if not healthy and seq_expected:
        row.healthy = None
        row.notes.append("whole-table aggregate: a seq scan is the right plan (rollup serves)")
    return row


def _count(result: Any) -> int | None:
    for attr in ("rows", "num_rows"):
        value = getattr(result, attr, None)
        if isinstance(value, int):
            return value
    try:
        return len(result)
    except TypeError:
        return None


# -- the workload ----------------------------------------------------------------------


def feature(client: flowscope.Client, name: str) -> Any:
    """``client.<name>`` if this flowscope has it (analytics, executions, export), else None."""
    try:
        return getattr(client, name)
    except (AttributeError, ImportError):
        return None


def _sql(client: flowscope.Client, stmt: Any, *, read: bool = True) -> list[Any]:
    ctx = client.read_transaction() if read else client.transaction()
    with ctx as conn:
        return list(conn.execute(stmt).all())


def analytics_cases(client: flowscope.Client, has_rollup: bool) -> list[tuple[str, Any, Any, bool]]:
    """(name, raw call, rollup call or None, whole-table?)"""
    since = REFERENCE_TIME - timedelta(days=30)
    week = REFERENCE_TIME - timedelta(days=7)
    cases: list[tuple[str, Any, Any, bool]] = []
    analytics = feature(client, "analytics")
    if analytics is not None:
        cases.append(
            (
                "analytics.durations(by=workflow), all 180 days",
                lambda: analytics.durations(by="workflow", use_rollups=False),
                lambda: analytics.durations(by="workflow", use_rollups=True),
                True,
            )
        )
        cases.append(
            (
                "analytics.status_breakdown(freq=1D), last 30 days",
                lambda: analytics.status_breakdown(freq="1D", since=since, use_rollups=False),
                lambda: analytics.status_breakdown(freq="1D", since=since, use_rollups=True),
                False,
            )
        )
        cases.append(
            (
                "analytics.failures(), last 7 days",
                lambda: analytics.failures(since=week),
                None,
                False,
            )
        )
        return cases
    day = sa.func.date_trunc("day", sa.func.timezone("UTC", E.c.created_at))
    raw_status = (
        sa.select(day, E.c.status, sa.func.count())
        .where(E.c.created_at >= since)
        .group_by(day, E.c.status)
    )
    raw_mean = sa.select(
        E.c.workflow_id,
        sa.func.count(),
        sa.func.avg(E.c.duration_seconds),
        sa.func.percentile_cont(0.95).within_group(E.c.duration_seconds),
    ).group_by(E.c.workflow_id)
    raw_fail = (
        sa.select(E.c.organization_id, sa.func.count())
        .where(E.c.status == "failed", E.c.created_at >= week)
        .group_by(E.c.organization_id)
    )
    roll_status = roll_mean = None
    if has_rollup:
        r = sa.table(
            "flowscope_executions_daily",
            sa.column("day"),
            sa.column("status"),
            sa.column("workflow_id"),
            sa.column("executions"),
            sa.column("duration_sum"),
            sa.column("duration_count"),
        )
        roll_status = (
            sa.select(r.c.day, r.c.status, sa.func.sum(r.c.executions))
            .where(r.c.day >= since.date())
            .group_by(r.c.day, r.c.status)
        )
        roll_mean = sa.select(
            r.c.workflow_id,
            sa.func.sum(r.c.executions),
            sa.func.sum(r.c.duration_sum) / sa.func.nullif(sa.func.sum(r.c.duration_count), 0),
        ).group_by(r.c.workflow_id)
    cases.append(
        (
            "SQL: count, mean, p95 duration per workflow, all 180 days",
            lambda: _sql(client, raw_mean),
            (lambda: _sql(client, roll_mean)) if roll_mean is not None else None,
            True,
        )
    )
    cases.append(
        (
            "SQL: executions per day and status, last 30 days",
            lambda: _sql(client, raw_status),
            (lambda: _sql(client, roll_status)) if roll_status is not None else None,
            False,
        )
    )
    cases.append(
        ("SQL: failures per organization, last 7 days", lambda: _sql(client, raw_fail), None, False)
    )
    return cases


def list_cases(
    client: flowscope.Client, tenant: flowscope.Client
) -> list[tuple[str, str, Callable[[], Any]]]:
    """(name, via, call) for list/count reads."""
    resource = feature(client, "executions")
    cases: list[tuple[str, str, Callable[[], Any]]] = []
    mid = _sql(
        client,
        sa.select(E.c.created_at, E.c.id)
        .order_by(E.c.created_at.desc(), E.c.id.desc())
        .offset(5_000)
        .limit(1),
    )[0]
    popular = _sql(
        client,
        sa.select(E.c.workflow_id).where(E.c.created_at >= REFERENCE_TIME - timedelta(1)).limit(1),
    )[0][0]
    if resource is not None and hasattr(resource, "list"):
        cases += [
            ("executions.list(limit=50)", "API", lambda: resource.list(limit=50)),
            (
                "executions.list(status=failed, limit=50)",
                "API",
                lambda: resource.list(status=["failed"], limit=50),
            ),
            (
                f"executions.list(workflow_ids=[{popular}], limit=50)",
                "API",
                lambda: resource.list(workflow_ids=[popular], limit=50),
            ),
            (
                "tenant executions.list(limit=50) (RLS)",
                "API",
                lambda: tenant.executions.list(limit=50),
            ),
            (
                "executions.count(status=failed, since=-7d)",
                "API",
                lambda: resource.count(status=["failed"], since=REFERENCE_TIME - timedelta(7)),
            ),
        ]
        return cases
    cols = [E.c.id, E.c.workflow_id, E.c.status, E.c.created_at, E.c.duration_seconds]
    newest = (E.c.created_at.desc(), E.c.id.desc())

    def page(*where: Any) -> Any:
        return sa.select(*cols).where(*where).order_by(*newest).limit(51)

    keyset = sa.tuple_(E.c.created_at, E.c.id) < sa.tuple_(
        sa.literal(mid[0], E.c.created_at.type), sa.literal(mid[1], E.c.id.type)
    )
    return [
        ("first page, newest first (limit 51)", "SQL", lambda: _sql(client, page())),
        ("keyset page 100 (created_at, id) < cursor", "SQL", lambda: _sql(client, page(keyset))),
        ("status=failed page", "SQL", lambda: _sql(client, page(E.c.status == "failed"))),
        (
            f"workflow {popular} page",
            "SQL",
            lambda: _sql(client, page(E.c.workflow_id == popular)),
        ),
        ("tenant first page (RLS)", "SQL", lambda: _sql(tenant, page())),
        (
            "count failed, last 7 days",
            "SQL",
            lambda: _sql(
                client,
                sa.select(sa.func.count()).where(
                    E.c.status == "failed", E.c.created_at >= REFERENCE_TIME - timedelta(7)
                ),
            ),
        ),
    ]


def export_case(client: flowscope.Client, out: Path) -> Row:
    since = REFERENCE_TIME - timedelta(days=30)
    exporter = feature(client, "export")
    started = time.perf_counter()
    if exporter is not None and hasattr(exporter, "parquet"):
        result = exporter.parquet("executions", str(out / "executions.parquet"), since=since)
        rows, via = int(result.rows), "API"
    else:
        from flowscope._retention import _to_arrow, archive_columns, write_archive

        rows, part, via = 0, 0, "archive writer"
        (out / "export").mkdir(parents=True, exist_ok=True)
        with client.read_transaction() as conn:
            result = conn.execution_options(yield_per=50_000).execute(
                sa.select(*archive_columns()).where(E.c.created_at >= since)
            )
            for batch in result.partitions():
                part += 1
                write_archive(_to_arrow(batch), out / "export" / f"part-{part:05d}.parquet")
                rows += len(batch)
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in out.rglob("*.parquet"))
    row = Row("export executions, last 30 days → Parquet", seconds, rows, via)
    row.notes.append(f"{rows / seconds:,.0f} rows/s, {size / 2**20:,.0f} MiB")
    return row


def prune_case(client: flowscope.Client, rows: int, out: Path, batch_size: int) -> Row:
    terminal = list(TERMINAL_EXECUTION_STATUSES)
    with client.transaction() as conn:
        cutoff = conn.execute(
            sa.select(E.c.created_at)
            .where(E.c.status.in_(terminal))
            .order_by(E.c.created_at, E.c.id)
            .offset(rows)
            .limit(1)
        ).scalar_one()
        now = conn.execute(sa.text("SELECT now()")).scalar_one()
        before = conn.execute(sa.select(sa.func.count()).select_from(E)).scalar_one()
    age = now - cutoff
    dry = client.retention.prune(
        older_than=age, archive_to=out, batch_size=batch_size, dry_run=True
    )
    report = client.retention.prune(older_than=age, archive_to=out, batch_size=batch_size)
    with client.transaction() as conn:
        after = conn.execute(sa.select(sa.func.count()).select_from(E)).scalar_one()
        # the data changed: make the generator start afresh next time
        conn.execute(sa.text("COMMENT ON TABLE executions IS NULL"))
    import pyarrow.parquet as pq

    archived = sum(pq.read_metadata(p).num_rows for p in out.glob("executions-*.parquet"))
    size = sum(p.stat().st_size for p in out.glob("executions-*.parquet"))
    row = Row(
        f"prune {report.rows:,} executions (batch {batch_size:,})", report.seconds, report.rows
    )
    row.via = "client.retention.prune"
    ok = archived == report.rows == dry.rows == before - after
    row.healthy = ok
    row.notes.append(
        f"{report.rows / report.seconds:,.0f} rows/s, {report.batches} files, {size / 2**20:,.0f} MiB;"
        f" dry-run {dry.rows:,} ({dry.seconds:.1f} s); archive {archived:,} = table"
        f" {before:,}→{after:,}: {'OK' if ok else 'MISMATCH'}"
    )
    return row


# -- main ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None)
    parser.add_argument("--executions", type=int, default=10_000_000)
    parser.add_argument("--prune-rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-prune", action="store_true")
    parser.add_argument(
        "--keep-data", action="store_true", help="use the data as it is (e.g. after a prune)"
    )
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument("--rebuild-indexes", action="store_true")
    parser.add_argument(
        "--indexed-load",
        action="store_true",
        help="generate with every index in place (slow at 10M: ~2k rows/s on 2 busy cores)",
    )
    args = parser.parse_args()

    url = args.url or bench_url("flowscope_scale")
    table: list[Row] = []
    started = time.perf_counter()
    if not args.keep_data:

        def rebuilt(seconds: float, count: int) -> None:
            table.append(Row(f"rebuild {count} secondary indexes after the bulk load", seconds))

        with without_secondary_indexes(
            url, args.executions, enabled=not args.indexed_load, on_rebuild=rebuilt
        ):
            generate(url, executions=args.executions)
        table.insert(
            0,
            Row(
                f"generate {args.executions:,} executions (or reuse)", time.perf_counter() - started
            ),
        )

    client = flowscope.connect(url, migrate=True)
    if args.rebuild_indexes:
        engine = sa.create_engine(client.url, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            _migrate.downgrade(conn, "0004")
            conn.commit()
            t0 = time.perf_counter()
            _migrate.upgrade(conn, "0005")
            conn.commit()
            table.append(
                Row("revision 0005: 4 indexes CREATE INDEX CONCURRENTLY", time.perf_counter() - t0)
            )
            _migrate.upgrade(conn, "head")
            conn.commit()
        engine.dispose()
    with client.transaction() as conn:
        conn.execute(sa.text("ANALYZE executions"))
        has_rollup = bool(
            conn.execute(
                sa.text("SELECT to_regclass('flowscope_executions_daily') IS NOT NULL")
            ).scalar()
        )
        org = conn.execute(sa.text("SELECT min(id) FROM organizations")).scalar_one()
        size = conn.execute(
            sa.text("SELECT pg_size_pretty(pg_total_relation_size('executions'))")
        ).scalar_one()
        count = conn.execute(sa.text("SELECT count(*) FROM executions")).scalar_one()
    if has_rollup:
        t0 = time.perf_counter()
        analytics = feature(client, "analytics")
        if analytics is not None and hasattr(analytics, "refresh_rollups"):
            analytics.refresh_rollups()
        else:
            with client.transaction() as conn:
                conn.execute(sa.text("REFRESH MATERIALIZED VIEW flowscope_executions_daily"))
        table.append(Row("refresh rollups", time.perf_counter() - t0, via="analytics"))

    for name, raw, rollup, whole in analytics_cases(client, has_rollup):
        table.append(
            measure(client, name + " — raw", raw, via="raw", repeat=args.repeat, seq_expected=whole)
        )
        if rollup is not None:
            table.append(
                measure(client, name + " — rollup", rollup, via="rollup", repeat=args.repeat)
            )
    tenant = client.scoped(org)
    for name, via, call in list_cases(client, tenant):
        table.append(
            measure(
                client if "tenant" not in name else tenant, name, call, via=via, repeat=args.repeat
            )
        )

    scratch = Path(tempfile.mkdtemp(prefix="flowscope-scale-"))
    try:
        if not args.no_export:
            table.append(export_case(client, scratch / "export"))
        if not args.no_prune:
            table.append(prune_case(client, args.prune_rows, scratch / "archive", args.batch_size))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    lines = [
        f"## Scale check: {count:,} executions ({size}), {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        "| what | via | seconds | rows | index health | plan on executions / notes |",
        "|---|---|---:|---:|---|---|",
    ]
    for r in table:
        health = {True: "ok", False: "SEQ SCAN", None: "—"}[r.healthy]
        detail = "; ".join([r.plan, *r.notes]).strip("; ")
        rows = f"{r.rows:,}" if r.rows is not None else ""
        lines.append(f"| {r.name} | {r.via} | {r.seconds:.3f} | {rows} | {health} | {detail} |")
    client.close()
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"scale-{args.executions}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
