"""CLI habits a typer user expects: ``--version``, progress bars only on a terminal (or when
asked) with a total and an ETA, ``flowscope sql`` (read-only, on the database or the mirror),
and Ctrl-C as one line and exit status 130. Through typer's runner (and a real SIGINT),
against a real PostgreSQL."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from . import test_cli

invoke = test_cli.invoke
demo_url = test_cli.demo_url  # the module's small demo database (12 workflows, 1,500 runs)


def test_version() -> None:
    from importlib.metadata import version

    code, out, _ = invoke("--version")
    assert code == 0 and out == f"flowscope {version('flowscope')}\n"


def test_progress_bars_only_on_a_terminal_or_when_asked(demo_url: str, tmp_path: Path) -> None:
    # CliRunner's stderr is not a terminal: no bar unless --progress
    code, _, err = invoke("export", "workflows", str(tmp_path / "a.parquet"), url=demo_url)
    assert code == 0 and err == ""
    code, _, err = invoke(
        "export", "workflows", str(tmp_path / "b.parquet"), "--progress", url=demo_url
    )
    assert code == 0 and "export workflows" in err and "12.0/12.0 [" in err  # total and ETA
    # a filtered export's total is the planner's estimate of that query
    args = ("export", "executions", str(tmp_path / "c.parquet"), "--status", "failed")
    code, _, err = invoke(*args, "--progress", url=demo_url)
    assert code == 0 and re.search(r"export executions: +0%\|.*\| 0\.00/\d", err), err
    code, _, err = invoke("mirror", "sync", "--path", str(tmp_path / "m"), url=demo_url)
    assert code == 0 and err == ""


def test_sql_prints_a_read_only_query(demo_url: str, tmp_path: Path) -> None:
    query = "SELECT status, count(*) AS n FROM executions GROUP BY 1 ORDER BY 1"
    code, out, err = invoke("sql", query, "-f", "csv", url=demo_url)
    assert code == 0, err
    on_postgres = pd.read_csv(io.StringIO(out))
    assert list(on_postgres.columns) == ["status", "n"] and on_postgres["n"].sum() == 1500
    code, out, err = invoke("sql", query, url=demo_url)
    assert code == 0 and out.splitlines()[0].split() == ["status", "n"]
    # a statement that writes is refused by the READ ONLY transaction, and changes nothing
    code, _, err = invoke("sql", "DELETE FROM executions RETURNING id", url=demo_url)
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1
    assert (
        invoke("sql", "SELECT count(*) AS n FROM executions", "-f", "json", url=demo_url)[1].strip()
        == '[{"n":1500}]'
    )
    # the same on the mirror (DuckDB), which takes one SELECT only
    mirror = ["--mirror", "--path", str(tmp_path / "m")]
    assert invoke("mirror", "sync", "--path", str(tmp_path / "m"), url=demo_url)[0] == 0
    code, out, err = invoke("sql", query, *mirror, "-f", "csv", url=demo_url)
    assert code == 0, err
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(out)), on_postgres)
    code, _, err = invoke("sql", "COPY executions TO 'x.csv'", *mirror, url=demo_url)
    assert code == 1 and "one SELECT statement" in err
    code, _, err = invoke("sql", "SELECT nope FROM executions", *mirror, url=demo_url)
    assert code == 1 and err.startswith("error: the mirror's DuckDB refused the query")


def test_ctrl_c_exits_130_with_one_line(demo_url: str) -> None:
    """SIGINT while a query runs on the server: `error: interrupted`, exit status 130."""
    import signal
    import time

    import sqlalchemy as sa

    marker = f"pg_sleep(30.{time.monotonic_ns() % 1000:03d})"
    process = subprocess.Popen(
        [sys.executable, "-m", "flowscope.cli", "--database-url", demo_url, "sql",
         f"SELECT {marker} AS slept"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    engine = sa.create_engine(demo_url, poolclass=sa.pool.NullPool)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the query runs on the server
            with engine.connect() as conn:
                running = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                        " AND query LIKE :q AND pid <> pg_backend_pid()"
                    ),
                    {"q": f"%{marker}%"},
                ).scalar()
            if running:
                break
            time.sleep(0.1)
        assert running, "the query never started"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        engine.dispose()
    assert (process.returncode, err) == (130, "error: interrupted\n"), (out, err)
