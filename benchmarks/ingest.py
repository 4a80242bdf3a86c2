"""Ingest 100k finished executions into a table that already holds 1M: flowscope vs the usual.

Contenders (each run in a fresh subprocess against a fresh copy of the generated database,
so every run meets the same table, indexes, triggers and audit log):

* ``flowscope``: ``client.executions.ingest(rows)``: validation of every row, ids, workflow
  lookups, ``metadata.workflow_version``, ``duration_seconds`` computed, one binary COPY.
* ``sqlmodel-add_all``: ``session.add_all([Execution(**row) ...]); session.commit()``.
* ``raw-copy``: psycopg ``COPY executions (...) FROM STDIN (FORMAT binary)`` with
  ``set_types`` and ``Jsonb`` wrappers, rows written as tuples: no validation, no duration.

The same 100k dicts (explicit ids, workflows of the generated data) go to every contender;
building them is not timed, turning them into models/tuples is.

Usage::

    python -m benchmarks.ingest --rows 100000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from benchmarks import _harness

CONTENDERS = ("flowscope", "sqlmodel-add_all", "raw-copy")
COLUMNS = (
    "id", "workflow_id", "owner", "organization_id", "status", "parameters", "result", "error",
    "started_at", "completed_at", "steps_completed", "steps_total", "metadata", "trace_id",
    "created_at", "updated_at",
)  # fmt: skip


def make_rows(url: str, n: int, seed: int = 1) -> list[dict[str, Any]]:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        workflows = conn.execute(
            sa.text("SELECT id, version, organization_id, owner FROM workflows ORDER BY id")
        ).all()
    engine.dispose()
    rnd = random.Random(seed)
    base = datetime(2026, 7, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        wf = workflows[rnd.randrange(len(workflows))]
        start = base + timedelta(seconds=i * 3, microseconds=rnd.randrange(1_000_000))
        failed = rnd.random() < 0.1
        rows.append(
            {
                "id": f"bx_{seed}_{i:07d}",
                "workflow_id": wf.id,
                "owner": wf.owner,
                "organization_id": wf.organization_id,
                "status": "failed" if failed else "completed",
                "parameters": {"batch_size": rnd.choice([16, 32, 64]), "region": "eu-west-1"},
                "result": None if failed else {"rows": rnd.randrange(10_000)},
                "error": {"type": "TimeoutError", "message": "step exceeded"} if failed else None,
                "started_at": start,
                "completed_at": start + timedelta(milliseconds=rnd.randrange(50, 600_000)),
                "steps_completed": 5,
                "steps_total": 5,
                "metadata": {"workflow_version": wf.version, "source": "import"},
                "trace_id": f"{rnd.getrandbits(64):016x}",
                "created_at": start,
                "updated_at": start,
            }
        )
    return rows


# What each contender's code imports, first (see benchmarks/export.py): ``seconds`` counts
# them, ``ingest_s`` starts after them.
_IMPORTS = {
    "flowscope": ("flowscope",),
    "sqlmodel-add_all": ("flowscope.models", "sqlmodel"),
    "raw-copy": ("psycopg", "psycopg.types.json"),
}


def run_one(contender: str, url: str, n: int) -> None:
    import importlib

    rows = make_rows(url, n)
    sa_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    started = time.perf_counter()
    for module in _IMPORTS[contender]:
        importlib.import_module(module)
    imported = time.perf_counter()
    cpu = time.process_time()
    if contender == "flowscope":
        import flowscope

        client = flowscope.connect(url)
        client.executions.ingest(rows)
        client.close()
    elif contender == "sqlmodel-add_all":
        from flowscope.models import Execution
        from sqlmodel import Session, create_engine

        engine = create_engine(sa_url)
        with Session(engine) as session:
            session.add_all(
                [
                    Execution(
                        **{k: v for k, v in r.items() if k != "metadata"}, metadata_=r["metadata"]
                    )
                    for r in rows
                ]
            )
            session.commit()
        engine.dispose()
    elif contender == "raw-copy":
        import psycopg
        from psycopg.types.json import Jsonb

        types = [
            "varchar", "varchar", "varchar", "varchar", "varchar", "jsonb", "jsonb", "jsonb",
            "timestamptz", "timestamptz", "int4", "int4", "jsonb", "varchar", "timestamptz",
            "timestamptz",
        ]  # fmt: skip
        json_at = {5, 6, 7, 12}
        with (
            psycopg.connect(url) as conn,
            conn.cursor() as cur,
            cur.copy(f"COPY executions ({', '.join(COLUMNS)}) FROM STDIN (FORMAT binary)") as copy,
        ):
            copy.set_types(types)
            for r in rows:
                copy.write_row(
                    [
                        Jsonb(r[c]) if i in json_at and r[c] is not None else r[c]
                        for i, c in enumerate(COLUMNS)
                    ]
                )
    else:
        raise SystemExit(f"unknown contender {contender}")
    done = time.perf_counter()
    cpu = time.process_time() - cpu
    engine = sa.create_engine(sa_url)
    with engine.connect() as conn:
        count = conn.execute(
            sa.text("SELECT count(*) FROM executions WHERE id LIKE 'bx\\_%'")
        ).scalar()
    engine.dispose()
    assert count == n, (contender, count)
    _harness.child_report(done - started, n, ingest_s=done - imported, client_cpu_s=cpu)


def _copy_database(admin_url: str, template: str, name: str) -> None:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    engine.dispose()


def _drop_database(admin_url: str, name: str) -> None:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--url", default=None)
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_one(args.child, args.url, args.rows)
        return

    from benchmarks.datagen import bench_url, generate

    url = (args.url or bench_url()).replace("postgresql+psycopg://", "postgresql://", 1)
    generate(url, executions=args.executions)
    parsed = sa.make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
    template = parsed.database
    admin = parsed.set(database="postgres").render_as_string(hide_password=False)
    copy_name = f"{template}_ingest_run"

    def one_run(contender: str, rep: int) -> dict[str, Any]:
        _copy_database(admin, template, copy_name)
        try:
            target = parsed.set(database=copy_name).render_as_string(hide_password=False)
            target = target.replace("postgresql+psycopg://", "postgresql://", 1)
            return _harness.run_child(
                "benchmarks.ingest",
                ["--child", contender, "--url", target, "--rows", str(args.rows)],
            )
        finally:
            _drop_database(admin, copy_name)

    contenders = [c for c in args.contenders.split(",") if c]
    results = _harness.measure(contenders, one_run, args.repeats)
    notes = [
        f"{args.rows:,} finished executions into a table holding {args.executions:,}, with the"
        " spec's indexes, the audit trigger and RLS policies; each run on a fresh copy of the"
        " database. flowscope also validates every row and computes duration_seconds; the"
        " others do neither. `median s` includes each contender's imports, `ingest s` starts"
        " after them; `client cpu s` is the CPU time of the loading process after its imports"
        " (validation, conversion, encoding: what the contender itself costs, apart from the"
        " server's work).",
    ]
    baseline = "raw-copy" if "raw-copy" in results else contenders[0]
    print(
        _harness.table(
            "Ingest", results, baseline=baseline, notes=notes, extra=("ingest_s", "client_cpu_s")
        )
    )
    json.dump(results, sys.stderr, indent=1)


if __name__ == "__main__":
    main()
