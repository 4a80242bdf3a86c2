"""Export all executions to Parquet: flowscope vs what users would otherwise write.

Contenders (each run in a fresh subprocess; medians of ``--repeats`` interleaved runs):

* ``flowscope``: ``client.export.parquet("executions", path, progress=False)``
  (explicit schema: decimal128, timestamp[us, UTC], JSON extension type) through the
  binary COPY decoder (``FLOWSCOPE_EXPORT_TRANSPORT=copy``).
* ``flowscope-adbc``: the same call through the ADBC transport (ADBC's streaming reader,
  each batch cast to the same explicit schema; ``FLOWSCOPE_EXPORT_TRANSPORT=adbc``).
* ``pandas.read_sql``: ``pd.read_sql("SELECT * FROM executions", engine).to_parquet(path)``.
* ``adbc``: ``cursor.fetch_arrow_table()`` + ``pq.write_table`` (NUMERIC and JSONB as strings).
* ``adbc-stream``: ``cursor.fetch_record_batch()`` into a ``ParquetWriter`` batch by batch.
* ``copy-binary-drain``: ``COPY executions TO STDOUT (FORMAT binary)`` read and thrown away:
  the wire limit, no Parquet.

Usage::

    python -m benchmarks.export --executions 1000000 --repeats 3
    python -m benchmarks.export --executions 10000000 --repeats 1 \
        --contenders flowscope,flowscope-adbc,adbc-stream,copy-binary-drain
    FLOWSCOPE_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1/bench python -m benchmarks.export
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import _harness

CONTENDERS = (
    "flowscope",
    "flowscope-adbc",
    "pandas.read_sql",
    "adbc",
    "adbc-stream",
    "copy-binary-drain",
)


def _plain_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


# What each contender's code imports. The child imports them first, so it can report both the
# whole process (imports included: what a one-shot script or the CLI pays) and the export itself
# (imports excluded: what a notebook, which imported them once, pays per export).
_IMPORTS = {
    "flowscope": ("flowscope", "pyarrow.parquet", "adbc_driver_postgresql.dbapi"),
    "pandas.read_sql": ("pandas", "sqlalchemy", "pyarrow.parquet"),
    "adbc": ("adbc_driver_postgresql.dbapi", "pyarrow.parquet"),
    "copy-binary-drain": ("psycopg",),
}


def run_one(contender: str, url: str, out: Path) -> None:
    """In the child: import, then one export timed from connect to closed file."""
    import importlib

    started = time.perf_counter()
    family = contender.split("-")[0] if contender.startswith(("flowscope", "adbc")) else contender
    for module in _IMPORTS[family]:
        importlib.import_module(module)
    imported = time.perf_counter()
    rows = 0
    if contender in ("flowscope", "flowscope-adbc"):
        os.environ["FLOWSCOPE_EXPORT_TRANSPORT"] = (
            "adbc" if contender == "flowscope-adbc" else "copy"
        )
        import flowscope

        client = flowscope.connect(url)
        # every execution, as the other contenders read (by default the shared filter leaves
        # out executions of soft-deleted workflows)
        result = client.export.parquet(
            "executions", out, progress=False, include_deleted_workflows=True
        )
        rows = result.rows
        client.close()
    elif contender == "pandas.read_sql":
        import pandas as pd
        import sqlalchemy as sa

        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        df = pd.read_sql("SELECT * FROM executions", engine)
        # JSON columns arrive as dicts; Parquet needs them as text
        for name in ("parameters", "result", "error", "metadata"):
            df[name] = df[name].map(lambda v: None if v is None else json.dumps(v))
        df.to_parquet(out, compression="zstd")
        rows = len(df)
    elif contender in ("adbc", "adbc-stream"):
        import adbc_driver_postgresql.dbapi as adbc
        import pyarrow.parquet as pq

        with adbc.connect(_plain_url(url)) as conn, conn.cursor() as cur:
            cur.execute("SELECT * FROM executions")
            if contender == "adbc":
                table = cur.fetch_arrow_table()
                pq.write_table(table, out, compression="zstd")
                rows = table.num_rows
            else:
                reader = cur.fetch_record_batch()
                with pq.ParquetWriter(out, reader.schema, compression="zstd") as writer:
                    for batch in reader:
                        writer.write_batch(batch)
                        rows += batch.num_rows
    elif contender == "copy-binary-drain":
        import psycopg

        with psycopg.connect(_plain_url(url)) as conn, conn.cursor() as cur:
            with cur.copy("COPY executions TO STDOUT (FORMAT binary)") as copy:
                for _ in copy:
                    rows += 1
            rows -= 1  # the trailer message
    else:
        raise SystemExit(f"unknown contender {contender}")
    done = time.perf_counter()
    _harness.child_report(
        done - started,
        rows,
        export_s=done - imported,
        bytes=out.stat().st_size if out.exists() else 0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--url", default=None)
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_one(args.child, args.url, Path(args.out))
        return

    from benchmarks.datagen import bench_url, generate, without_secondary_indexes

    # the embedded server keeps one database per size (regenerating 10M takes minutes)
    url = args.url or bench_url(
        "flowscope_bench" if args.executions == 1_000_000 else f"flowscope_bench_{args.executions}"
    )
    # past a few million rows, load without the secondary indexes and rebuild them after
    with without_secondary_indexes(url, args.executions, enabled=args.executions > 2_000_000):
        generate(url, executions=args.executions)
    contenders = [c for c in args.contenders.split(",") if c]
    with tempfile.TemporaryDirectory(prefix="flowscope-bench-") as tmp:

        def one_run(contender: str, rep: int) -> dict[str, object]:
            out = Path(tmp) / f"{contender}-{rep}.parquet"
            result = _harness.run_child(
                "benchmarks.export", ["--child", contender, "--url", url, "--out", str(out)]
            )
            if out.exists():
                out.unlink()
            return result

        results = _harness.measure(contenders, one_run, args.repeats)
    notes = [
        f"{args.executions:,} executions; Parquet zstd; each run a fresh process (peak RSS includes"
        " the interpreter and imports). `median s` is the whole run, the contender's imports"
        " included (a one-shot script, the CLI); `export s` starts after them (connect + export:"
        " a notebook that imported its libraries once). Runs are interleaved so the ratios are"
        " comparable when the machine is noisy.",
        "adbc/adbc-stream return NUMERIC and JSONB as strings; flowscope keeps decimal128 and the"
        " JSON extension type.",
    ]
    baseline = "copy-binary-drain" if "copy-binary-drain" in results else contenders[0]
    print(
        _harness.table(
            "Export all executions to Parquet",
            results,
            baseline=baseline,
            notes=notes,
            extra=("export_s",),
        )
    )
    Path(os.environ.get("FLOWSCOPE_BENCH_OUT", "benchmarks/results")).mkdir(
        parents=True, exist_ok=True
    )
    json.dump(results, sys.stderr, indent=1)


if __name__ == "__main__":
    main()
