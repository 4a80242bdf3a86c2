"""Generated benchmark data, made inside PostgreSQL (INSERT ... SELECT generate_series).

Deterministic for a given seed (``setseed`` + single-process INSERT), fixed
reference time, shaped like a real orchestration database: 20 organizations,
``workflows`` tagged workflows, executions skewed towards popular workflows,
six statuses, log-normal durations that differ by workflow, a few error
signatures, ``metadata.workflow_version``. Audit and FK triggers are bypassed
during the load (``session_replication_role = replica``, superuser only): this
is a bulk fixture, not application traffic.

Usage::

    python benchmarks/datagen.py --executions 1000000            # embedded database
    python benchmarks/datagen.py --url postgresql://postgres@127.0.0.1/bench --executions 10000000

Library::

    from benchmarks.datagen import bench_url, generate
    url = bench_url()                # FLOWSCOPE_BENCH_DATABASE_URL, or the embedded server
    generate(url, executions=1_000_000)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

REFERENCE_TIME = datetime(2026, 6, 30, tzinfo=UTC)
TAGS = [
    "etl", "ml", "reporting", "billing", "nightly", "critical",
    "marketing", "sync", "ingest", "alerts", "finance", "experimental",
]  # fmt: skip
ERRORS = [
    ("TimeoutError", "step exceeded its time limit after 300 s"),
    ("ConnectionError", "connection refused by upstream host"),
    ("ValueError", "invalid input in row"),
    ("KeyError", "missing field customer_id in record"),
    ("HTTPError", "503 Service Unavailable from api"),
]


def bench_url(database: str = "flowscope_bench") -> str:
    """The benchmark database URL: ``FLOWSCOPE_BENCH_DATABASE_URL``, else ``database`` on the
    embedded server (data in ``benchmarks/.data``), created and migrated if needed."""
    import flowscope
    from flowscope import _embedded

    url = os.environ.get("FLOWSCOPE_BENCH_DATABASE_URL")
    if not url:
        root = Path(__file__).resolve().parent / ".data"
        url = _embedded.ensure_database(root, database)
    flowscope.connect(url, migrate=True).close()
    return url


def _engine(url: str) -> sa.Engine:
    from flowscope import _db

    return _db.create_engine(url, poolclass=sa.pool.NullPool)


def current_params(url: str) -> dict[str, Any] | None:
    """The parameters the database was generated with (stored as the database's comment)."""
    with _engine(url).connect() as conn:
        comment = conn.execute(
            sa.text(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database"
                " WHERE datname = current_database()"
            )
        ).scalar()
    try:
        return json.loads(comment) if comment else None
    except ValueError:
        return None


def _params(
    executions: int, workflows: int = 2000, days: int = 180, seed: int = 0, organizations: int = 20
) -> dict[str, Any]:
    return {
        "executions": executions,
        "workflows": workflows,
        "days": days,
        "seed": seed,
        "organizations": organizations,
        "reference_time": REFERENCE_TIME.isoformat(),
    }


@contextlib.contextmanager
def without_secondary_indexes(
    url: str,
    executions: int,
    *,
    enabled: bool = True,
    on_rebuild: Callable[[float, int], None] | None = None,
) -> Iterator[None]:
    """Drop executions' secondary indexes around a bulk :func:`generate`, then rebuild them.

    Only when the generator is going to load (the stored parameters differ): at 10M rows a
    load with all 12 indexes in place runs at ~2-4k rows/s on 2 cores, against ~36k without.
    The indexes are recreated from their own ``pg_get_indexdef``, so the schema ends
    identical; ``on_rebuild(seconds, count)`` hears how long the rebuild took.

    Example::

        with without_secondary_indexes(url, 10_000_000):
            generate(url, executions=10_000_000)
    """
    import flowscope

    flowscope.connect(url, migrate=True).close()
    engine = sa.create_engine(
        flowscope._db.normalize_url(url), poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT"
    )
    definitions: list[tuple[str, str]] = []
    if enabled and current_params(url) != _params(executions):
        with engine.connect() as conn:
            definitions = [
                (name, definition)
                for name, definition in conn.execute(
                    sa.text(
                        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i"
                        " JOIN pg_class c ON c.oid = i.indexrelid"
                        " WHERE i.indrelid = 'executions'::regclass AND NOT i.indisprimary"
                    )
                )
            ]
            for name, _ in definitions:
                conn.execute(sa.text(f'DROP INDEX "{name}"'))
    try:
        yield
    finally:
        if definitions:
            started = time.perf_counter()
            with engine.connect() as conn:
                conn.execute(sa.text("SET maintenance_work_mem = '512MB'"))
                for _, definition in definitions:
                    conn.execute(sa.text(definition))
                conn.execute(sa.text("ANALYZE executions"))
            if on_rebuild is not None:
                on_rebuild(time.perf_counter() - started, len(definitions))
        engine.dispose()


def generate(
    url: str,
    *,
    executions: int,
    workflows: int = 2000,
    days: int = 180,
    seed: int = 0,
    organizations: int = 20,
    chunk: int = 1_000_000,
    force: bool = False,
    verbose: bool = True,
) -> dict[str, Any]:
    """Fill the database with generated data (replacing what is there). Idempotent: if the
    database already holds data generated with the same parameters, nothing is done."""
    params = _params(executions, workflows, days, seed, organizations)
    import flowscope

    flowscope.connect(url, migrate=True).close()
    if not force and current_params(url) == params:
        if verbose:
            print(f"datagen: reusing {executions:,} executions already generated")
        return params
    engine = _engine(url)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        conn.execute(sa.text("SET LOCAL synchronous_commit = off"))
        # tenant logins (revision 0006) are roles: drop them with their identities
        conn.execute(sa.text("SELECT flowscope_drop_identities()"))
        conn.execute(
            sa.text(
                "TRUNCATE executions, workflows, users, organizations, audit_log, flowscope_identities"
                " RESTART IDENTITY"
            )
        )
        conn.execute(sa.text("SELECT setseed(:s)"), {"s": (seed % 1000) / 1000.0})
        conn.execute(
            sa.text(
                "INSERT INTO organizations (id, name, slug, created_at, updated_at)"
                " SELECT 'org_' || lpad(o::text, 3, '0'), 'Organization ' || o,"
                " 'org-' || o, :ref - interval '400 days', :ref - interval '400 days'"
                " FROM generate_series(1, :n) o"
            ),
            {"n": organizations, "ref": REFERENCE_TIME},
        )
        conn.execute(
            sa.text(
                """
INSERT INTO workflows (id, name, description, version, owner, organization_id, nodes, edges,
                       metadata, tags, status, is_public, created_at, updated_at, created_by,
                       updated_by, deleted_at)
SELECT 'wf_' || lpad(w::text, 6, '0'),
       (ARRAY['Sync', 'Report', 'Train', 'Bill', 'Notify', 'Ingest', 'Clean'])[1 + w % 7]
           || ' ' || (ARRAY['customers', 'orders', 'invoices', 'events', 'models'])[1 + w % 5]
           || ' #' || w,
       'Generated workflow ' || w,
       1 + w % 4,
       'user_' || lpad((w % 97)::text, 3, '0'),
       'org_' || lpad((1 + w % :orgs)::text, 3, '0'),
       jsonb_build_array(jsonb_build_object('id', 'start', 'type', 'trigger'),
                         jsonb_build_object('id', 'work', 'type', 'action')),
       jsonb_build_array(jsonb_build_object('source', 'start', 'target', 'work')),
       jsonb_build_object('team', 'team_' || (w % 9)),
       ARRAY(SELECT t FROM unnest(CAST(:tags AS text[])) WITH ORDINALITY u(t, k)
             WHERE (w * 7 + k * 13) % 5 = 0 AND w % 10 <> 0),
       (ARRAY['active', 'active', 'active', 'draft', 'archived'])[1 + w % 5],
       w % 3 = 0,
       :ref - make_interval(days => 365 - w % 100),
       :ref - make_interval(days => w % 30),
       'user_000', 'user_000',
       CASE WHEN w % 50 = 0 THEN :ref - interval '10 days' END
FROM generate_series(1, :n) w
"""
            ),
            {"n": workflows, "orgs": organizations, "tags": TAGS, "ref": REFERENCE_TIME},
        )
        error_types = [e[0] for e in ERRORS]
        error_messages = [e[1] for e in ERRORS]
        for first in range(1, executions + 1, chunk):
            last = min(executions, first + chunk - 1)
            conn.execute(
                sa.text(
                    """
INSERT INTO executions (id, workflow_id, owner, organization_id, status, parameters, result, error,
                        started_at, completed_at, duration_seconds, current_step, steps_completed,
                        steps_total, metadata, trace_id, created_at, updated_at)
SELECT 'ex_' || lpad(i::text, 10, '0'),
       'wf_' || lpad(w::text, 6, '0'),
       'user_' || lpad((w % 97)::text, 3, '0'),
       'org_' || lpad((1 + w % :orgs)::text, 3, '0'),
       st,
       jsonb_build_object('batch', i % 100),
       CASE WHEN st = 'completed' THEN jsonb_build_object('rows', (i % 1000)) END,
       CASE WHEN st IN ('failed', 'timeout') THEN jsonb_build_object(
           'type', (CAST(:etypes AS text[]))[1 + ek],
           'message', (CAST(:emsgs AS text[]))[1 + ek] || ' ' || (i % 997)) END,
       CASE WHEN st <> 'queued' THEN created + make_interval(secs => wait) END,
       CASE WHEN st IN ('completed', 'failed', 'timeout', 'cancelled')
            THEN created + make_interval(secs => wait + dur) END,
       CASE WHEN st IN ('completed', 'failed', 'timeout', 'cancelled')
            THEN round(CAST(dur AS numeric), 3) END,
       'step_' || (1 + i % 5),
       CASE WHEN st = 'completed' THEN 5 ELSE i % 5 END,
       5,
       jsonb_build_object('workflow_version', 1 + w % 4),
       CASE WHEN i % 4 = 0 THEN 'tr_' || i END,
       created,
       created
FROM (
    SELECT i, w, created,
           CASE WHEN r < 0.80 THEN 'completed' WHEN r < 0.90 THEN 'failed'
                WHEN r < 0.93 THEN 'timeout' WHEN r < 0.96 THEN 'cancelled'
                WHEN r < 0.98 THEN 'running' ELSE 'queued' END AS st,
           LEAST(86400.0, exp(1.0 + (w % 7) * 0.6
                 + 0.5 * sqrt(-2 * ln(1 - u1)) * cos(2 * pi() * u2))) AS dur,
           random() * 5 AS wait,
           (w + i) % 5 AS ek
    FROM (
        SELECT i,
               1 + floor(power(random(), 2) * :workflows)::int AS w,
               :ref - make_interval(secs => random() * :days * 86400) AS created,
               random() AS r, random() AS u1, random() AS u2
        FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) i
    ) a
) b
"""
                ),
                {
                    "first": first,
                    "last": last,
                    "workflows": workflows,
                    "orgs": organizations,
                    "days": days,
                    "ref": REFERENCE_TIME,
                    "etypes": error_types,
                    "emsgs": error_messages,
                },
            )
            if verbose:
                rate = last / (time.perf_counter() - started)
                print(f"datagen: {last:,}/{executions:,} executions ({rate:,.0f} rows/s)")
        # on the database, not a table: a table comment would show up in `alembic check`
        database = conn.execute(sa.text("SELECT current_database()")).scalar_one()
        conn.exec_driver_sql(
            f'COMMENT ON DATABASE "{database}" IS ' + _quote_literal(json.dumps(params))
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE workflows"))
        conn.execute(sa.text("VACUUM ANALYZE executions"))
    engine.dispose()
    if verbose:
        print(f"datagen: done in {time.perf_counter() - started:.1f}s")
    return params


def _quote_literal(text: str) -> str:
    # COMMENT takes no bind parameters; the text is our own JSON, quoted the SQL way.
    return "'" + text.replace("'", "''") + "'"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None)
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--workflows", type=int, default=2000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    url = args.url or bench_url()
    generate(
        url,
        executions=args.executions,
        workflows=args.workflows,
        days=args.days,
        seed=args.seed,
        force=args.force,
    )


if __name__ == "__main__":
    main()
