"""What the audit trigger costs a bulk load: 100k-row INSERT ... SELECT into executions.

Runs in a scratch database (created, migrated, dropped) on the server given by
``--url`` (default ``FLOWSCOPE_TEST_DATABASE_URL``, else the embedded PostgreSQL),
alternating runs with the statement-level audit trigger enabled and disabled
(``ALTER TABLE executions DISABLE TRIGGER audit_executions_insert``), and prints
the median time of each and the overhead.

    python -m benchmarks.audit_cost --rows 100000 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import sqlalchemy as sa
from flowscope import _migrate

from benchmarks import _harness

INSERT = sa.text(
    "INSERT INTO executions (id, workflow_id, owner, organization_id, status, parameters,"
    " started_at, completed_at, steps_completed, steps_total, metadata)"
    " SELECT 'ex_bench_' || g, 'wf_bench', 'owner_' || (g % 50), 'org_bench',"
    " (ARRAY['completed','failed','cancelled','timeout'])[1 + g % 4],"
    " jsonb_build_object('n', g, 'day', '2026-01-01'),"
    " now() - interval '1 hour', now() - interval '1 hour' + (g % 600) * interval '1 second',"
    " g % 10, 10, jsonb_build_object('workflow_version', 1)"
    " FROM generate_series(1, :n) g"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with _harness.scratch_database(args.url) as url:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            run(engine, args.rows, args.repeats)
        finally:
            engine.dispose()


def run(engine: sa.Engine, rows: int, repeats: int) -> None:
    with engine.connect() as conn:
        _migrate.upgrade(conn)
        conn.commit()
    with engine.begin() as conn:
        version = conn.execute(sa.text("SHOW server_version")).scalar_one()
        conn.execute(
            sa.text("INSERT INTO organizations (id, name, slug) VALUES ('org_bench', 'b', 'b')")
        )
        conn.execute(
            sa.text(
                "INSERT INTO workflows (id, name, owner, organization_id, nodes, edges,"
                " created_by, updated_by) VALUES ('wf_bench', 'b', 'o', 'org_bench',"
                " '[]', '[]', 'o', 'o')"
            )
        )
    timings: dict[str, list[float]] = {"with audit": [], "without audit": []}
    audit_rows = 0
    for _ in range(repeats):
        for mode in timings:
            with engine.begin() as conn:
                conn.execute(sa.text("TRUNCATE executions"))
                conn.execute(sa.text("DELETE FROM audit_log WHERE table_name = 'executions'"))
                action = "ENABLE" if mode == "with audit" else "DISABLE"
                conn.execute(
                    sa.text(f"ALTER TABLE executions {action} TRIGGER audit_executions_insert")
                )
            with engine.connect() as conn:
                conn.execute(sa.text("CHECKPOINT"))
                start = time.perf_counter()
                conn.execute(INSERT, {"n": rows})
                conn.commit()
                timings[mode].append(time.perf_counter() - start)
                if mode == "with audit":
                    audit_rows = conn.execute(
                        sa.text("SELECT count(*) FROM audit_log WHERE table_name = 'executions'")
                    ).scalar_one()
    with_audit = statistics.median(timings["with audit"])
    without = statistics.median(timings["without audit"])
    print(f"PostgreSQL {version}; {rows:,} rows; median of {repeats} runs each")
    for mode, values in timings.items():
        print(f"  {mode:14s} " + "  ".join(f"{v:6.2f}s" for v in values))
    print(
        f"  overhead: {with_audit - without:+.2f}s ({(with_audit / without - 1) * 100:+.0f}%),"
        f" {audit_rows:,} audit rows written by one trigger call"
    )


if __name__ == "__main__":
    main()
