"""How long ``flowscope.demo.generate`` takes: building the rows vs loading them.

Runs in a scratch database (created, migrated, dropped) on the server given by
``--url`` (default ``FLOWSCOPE_TEST_DATABASE_URL``, else the embedded PostgreSQL).
Each repeat loads the demo into emptied tables and prints
the build time (numpy/pandas, no database), the whole call, and rows per second.

    python -m benchmarks.demo_load --executions 100000 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import flowscope
import sqlalchemy as sa
from flowscope import _db, demo

from benchmarks import _harness


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url")
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with _harness.scratch_database(args.url) as url:
        builds, totals = [], []
        with flowscope.connect(url, migrate=True) as client:
            for i in range(args.repeats):
                params = demo._check_arguments(
                    args.workflows, args.executions, i, demo.DEMO_NOW, 120
                )
                started = time.perf_counter()
                demo._build(params)
                builds.append(time.perf_counter() - started)
                with client.transaction() as conn:  # start empty, outside the timing
                    conn.execute(sa.text("SELECT flowscope_drop_identities()"))
                    conn.execute(
                        sa.text(
                            "TRUNCATE executions, workflows, users, organizations, audit_log,"
                            " flowscope_identities"
                        )
                    )
                started = time.perf_counter()
                demo.generate(client, workflows=args.workflows, executions=args.executions, seed=i)
                totals.append(time.perf_counter() - started)
                print(f"run {i + 1}: build {builds[-1]:.2f} s, generate {totals[-1]:.2f} s")
            started = time.perf_counter()
            again = demo.generate(
                client, workflows=args.workflows, executions=args.executions, seed=i
            )
            assert not again.created
            second = time.perf_counter() - started
        build, total = statistics.median(builds), statistics.median(totals)
        print(
            f"\n{args.executions:,} executions, {args.workflows} workflows"
            f" ({_db.describe_host(url)}), median of {args.repeats}:"
        )
        print(f"  build rows (numpy/pandas)   {build:6.2f} s")
        print(f"  load (bulk ingest)          {total - build:6.2f} s")
        print(
            f"  generate() in all           {total:6.2f} s  ({args.executions / total:,.0f} rows/s)"
        )
        print(f"  second call (no-op)         {second:6.3f} s")


if __name__ == "__main__":
    main()
