"""Every benchmark, one command: ``make bench`` (or ``python benchmarks/run.py``).

Runs, in order, each printing its own table of medians, rows/s, peak RSS and ratios:

1. ``connect``   — flowscope.connect() cold/restart/warm on the embedded PostgreSQL;
2. ``analytics`` — every analytics call: flowscope vs the pandas way vs hand-written SQL, rollups vs exact;
3. ``export``    — Parquet export: flowscope vs pandas.read_sql+to_parquet vs ADBC vs raw binary COPY;
4. ``ingest``    — 100k executions into a 1M-row table: flowscope vs SQLModel add_all vs raw COPY;
5. ``audit``     — what the audit trigger costs a 100k-row bulk insert;
6. ``scale``     — the 10M-execution check (only with ``--scale``: it takes about an hour on 2 cores);
7. ``export-10m`` — the export benchmark at 10M executions, streaming contenders (``--scale`` too);
8. ``engine``    — the analytics engines (PostgreSQL, pull, auto) against DuckDB attached live;
9. ``mirror``    — the local mirror: first and incremental sync, its analytics against PostgreSQL,
   rollups, hand-written DuckDB SQL and pandas.

Data comes from ``benchmarks/datagen.py`` (deterministic, generated inside PostgreSQL) in the database
named by ``FLOWSCOPE_BENCH_DATABASE_URL``, else the embedded server under ``benchmarks/.data``.

    python benchmarks/run.py                 # 1M executions
    python benchmarks/run.py --only export   # one of them
    python benchmarks/run.py --scale         # add the 10M run
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STEPS = {
    "connect": ["benchmarks/connect.py"],
    "analytics": ["-m", "benchmarks.analytics", "--sizes", "1000000"],
    "export": ["-m", "benchmarks.export", "--executions", "1000000"],
    "ingest": ["-m", "benchmarks.ingest", "--executions", "1000000"],
    "audit": ["-m", "benchmarks.audit_cost"],
    "demo": ["-m", "benchmarks.demo_load", "--repeats", "3"],
    # scoped list/count/analytics; add --baseline-sdk <older checkout>/sdk to compare
    "tenancy": ["-m", "benchmarks.tenancy", "--executions", "1000000"],
    # the local mirror: first/incremental sync, analytics against PostgreSQL, rollups, DuckDB, pandas
    "mirror": ["-m", "benchmarks.mirror", "--executions", "1000000"],
    # the analytics engines (postgresql, pull, auto) against DuckDB attached to PostgreSQL:
    # add --contender-python <venv with duckdb-extension-postgres>/bin/python for that column
    "engine": ["-m", "benchmarks.engine", "--executions", "1000000"],
    "scale": ["-m", "benchmarks.scale"],
    # 10M: pandas.read_sql and ADBC's fetch_arrow_table hold the whole table (~28 GB for
    # pandas, more than this 24 GiB machine), so only the streaming contenders run.
    "export-10m": [
        "-m",
        "benchmarks.export",
        "--executions",
        "10000000",
        "--repeats",
        "1",
        "--contenders",
        "flowscope,flowscope-adbc,adbc-stream,copy-binary-drain",
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description="Run flowscope's benchmarks.")
    parser.add_argument("--only", choices=sorted(STEPS), action="append")
    parser.add_argument(
        "--scale", action="store_true", help="also run the 10M scale check and 10M export"
    )
    args = parser.parse_args()
    names = args.only or [n for n in STEPS if n not in ("scale", "export-10m") or args.scale]
    failed = []
    for name in names:
        print(f"\n=== {name}", flush=True)
        if subprocess.run([sys.executable, *STEPS[name]], cwd=ROOT).returncode != 0:
            failed.append(name)
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
