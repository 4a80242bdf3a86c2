"""Benchmark the analytics engines against DuckDB attached to the same PostgreSQL.

For each analytics call it times, interleaved, best of ``--repeats``:

* flowscope with ``engine="postgresql"`` (the whole query in PostgreSQL), ``"pull"`` (the
  needed columns streamed as Arrow, DuckDB in-process) and ``"auto"`` (the default rule);
* DuckDB attached live (``ATTACH 'postgresql://…' AS pg (TYPE postgres)``) running the very
  same DuckDB SQL flowscope's pull engine runs (the same answer by construction: only the
  scan differs), in its own process and environment (``--contender-python``: a venv with
  ``duckdb`` and ``duckdb-extension-postgres``, which pins its DuckDB version);

plus the whole ``executions`` table to Arrow and to Parquet, and prints the ratio table
(flowscope / DuckDB attached; below 1.0 flowscope is faster).

Usage::

    python -m venv /tmp/duckpg && /tmp/duckpg/bin/pip install duckdb-extension-postgres
    python benchmarks/datagen.py --url postgresql://postgres@127.0.0.1:5432/fs_bench_1m
    python -m benchmarks.engine --url postgresql://postgres@127.0.0.1:5432/fs_bench_1m \\
        --contender-python /tmp/duckpg/bin/python

Without ``--contender-python`` the DuckDB-attached column is left out; without ``--url``
the data is generated in the benchmark database (``FLOWSCOPE_BENCH_DATABASE_URL``).
"""

from __future__ import annotations

import argparse
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sdk"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CALLS: list[tuple[str, dict[str, Any]]] = [
    ("durations", {"by": "workflow_id"}),
    ("status_breakdown", {"freq": "1D"}),
    ("tags", {}),
    ("failures", {}),
    ("throughput", {"freq": "1h"}),
    ("summary", {}),
    ("concurrency", {"freq": "1h"}),
]

# The contender: a process of its own (its DuckDB is the extension's pinned one). It reads
# pickled requests on stdin and answers each with a pickled (seconds, rows).
CONTENDER = r"""
import os, pickle, shutil, sys, tempfile, time
import duckdb, duckdb_extension_postgres
url = sys.argv[1]
src = next(p for p in __import__("pathlib").Path(duckdb_extension_postgres.__file__).parent.rglob("*.duckdb_extension"))
ext = tempfile.mkdtemp()
shutil.copy(src, os.path.join(ext, "postgres_scanner.duckdb_extension"))
con = duckdb.connect(config={"extension_directory": ext})
con.execute(f"INSTALL '{os.path.join(ext, 'postgres_scanner.duckdb_extension')}'")
con.execute("LOAD postgres")
con.execute("SET TimeZone = 'UTC'")
con.execute("SET enable_progress_bar = false")
con.execute(f"ATTACH '{url}' AS pg (TYPE postgres, READ_ONLY)")
con.execute("USE pg")
out = sys.stdout.buffer
while True:
    try:
        kind, arg, params = pickle.load(sys.stdin.buffer)
    except EOFError:
        break
    start = time.perf_counter()
    if kind == "sql":
        rows = len(con.execute(arg, params).fetchall())
    elif kind == "arrow":
        rows = con.sql("SELECT * FROM executions").to_arrow_table().num_rows
    else:
        con.execute(f"COPY (SELECT * FROM executions) TO '{arg}' (FORMAT parquet)")
        rows = -1
    pickle.dump((time.perf_counter() - start, rows), out)
    out.flush()
shutil.rmtree(ext, ignore_errors=True)
"""


class Contender:
    def __init__(self, python: str, url: str) -> None:
        plain = url.replace("postgresql+psycopg://", "postgresql://")
        self.proc = subprocess.Popen(
            [python, "-c", CONTENDER, plain], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    def run(self, kind: str, arg: str, params: list[Any] | None = None) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        pickle.dump((kind, arg, params or []), self.proc.stdin)
        self.proc.stdin.flush()
        seconds, _ = pickle.load(self.proc.stdout)
        return float(seconds)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _query_of(client: Any, name: str, kwargs: dict[str, Any]) -> Any:
    """The Query a call builds (returned by a stand-in ``_run``, not run)."""
    analytics = client.analytics.using("postgresql")
    analytics._run = lambda query: query  # each method returns what _run returns
    return getattr(analytics, name)(**kwargs)


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    import flowscope
    from flowscope.analytics._duckdb import compile_for_duckdb

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="default: the benchmark database (datagen)")
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--contender-python", default=None)
    parser.add_argument("--no-tables", action="store_true", help="skip the whole-table reads")
    args = parser.parse_args()
    if args.url is None:
        from benchmarks.datagen import bench_url, generate

        args.url = bench_url()
        generate(args.url, executions=args.executions)

    client = flowscope.connect(args.url)
    contender = Contender(args.contender_python, args.url) if args.contender_python else None
    engines = ("postgresql", "pull", "auto")
    best: dict[tuple[str, str], float] = {}
    chosen: dict[str, str] = {}
    work = tempfile.mkdtemp(prefix="flowscope-bench-")
    try:
        for _ in range(args.repeats):
            for name, kwargs in CALLS:
                label = f"{name}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
                for engine in engines:
                    analytics = client.analytics.using(engine)
                    start = time.perf_counter()
                    frame = getattr(analytics, name)(**kwargs)
                    took = time.perf_counter() - start
                    best[label, engine] = min(best.get((label, engine), took), took)
                    if engine == "auto":
                        chosen[label] = frame.attrs["engine"]
                if contender is not None:
                    sql, params = compile_for_duckdb(_query_of(client, name, kwargs).select)
                    took = contender.run("sql", sql, params)
                    best[label, "attached"] = min(best.get((label, "attached"), took), took)
            if not args.no_tables:
                label = "executions to Arrow"
                took = _timed(lambda: client.executions.to_arrow())
                best[label, "pull"] = min(best.get((label, "pull"), took), took)
                if contender is not None:
                    took = contender.run("arrow", "")
                    best[label, "attached"] = min(best.get((label, "attached"), took), took)
                label = "executions to Parquet"
                out = Path(work) / "fs.parquet"
                took = _timed(
                    lambda: client.export.parquet("executions", out, progress=False)  # noqa: B023
                )
                best[label, "pull"] = min(best.get((label, "pull"), took), took)
                if contender is not None:
                    took = contender.run("parquet", str(Path(work) / "duck.parquet"))
                    best[label, "attached"] = min(best.get((label, "attached"), took), took)
    finally:
        if contender is not None:
            contender.close()
        client.close()
        import shutil

        shutil.rmtree(work, ignore_errors=True)

    labels = list(dict.fromkeys(label for label, _ in best))
    print(f"\nbest of {args.repeats}, seconds (flowscope / DuckDB attached live)")
    print(
        f"| {'call':44} | postgresql | pull   | auto (engine)        | attached | pull/att | auto/att |"
    )
    print(
        f"|{'-' * 46}|-----------:|-------:|---------------------:|---------:|---------:|---------:|"
    )
    for label in labels:
        pg = best.get((label, "postgresql"))
        pull = best.get((label, "pull"))
        auto = best.get((label, "auto"))
        att = best.get((label, "attached"))

        auto_cell = f"{_fmt(auto)} ({chosen[label]})" if label in chosen else "-"
        print(
            f"| {label:44} | {_fmt(pg):>10} | {_fmt(pull):>6} | {auto_cell:>20} | {_fmt(att):>8} "
            f"| {_ratio(pull, att):>8} | {_ratio(auto, att):>8} |"
        )


def _fmt(v: float | None) -> str:
    return f"{v:.3f}" if v is not None else "-"


def _ratio(v: float | None, of: float | None) -> str:
    return f"{v / of:.2f}x" if v is not None and of else "-"


if __name__ == "__main__":
    main()
