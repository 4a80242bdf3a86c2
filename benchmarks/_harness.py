"""Shared benchmark plumbing: run each contender in a fresh subprocess, collect medians.

A child prints one JSON line ``{"seconds": ..., "rows": ..., "peak_rss_mb": ...}``; peak RSS
is the child's own ``ru_maxrss`` (interpreter and imports included, as a user would see it).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_report(seconds: float, rows: int, **extra: Any) -> None:
    """Called in the child: print the measurement as the last line of stdout."""
    print(json.dumps({"seconds": seconds, "rows": rows, "peak_rss_mb": peak_rss_mb(), **extra}))


def run_child(module: str, args: Sequence[str], *, timeout: float = 3600) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "sdk"), str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(
    contenders: Sequence[str],
    one_run: Callable[[str, int], dict[str, Any]],
    repeats: int,
) -> dict[str, dict[str, Any]]:
    """Interleave the contenders (round robin) so machine noise hits them alike.

    Every reported figure whose name ends in ``_s`` (a second timing, e.g. ``export_s``)
    gets its median too."""
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in contenders}
    for rep in range(repeats):
        for contender in contenders:
            result = one_run(contender, rep)
            runs[contender].append(result)
            print(
                f"  {contender:<22} run {rep + 1}/{repeats}: {result['seconds']:7.2f} s"
                f"  {result['peak_rss_mb']:7.0f} MB",
                file=sys.stderr,
                flush=True,
            )
    out = {}
    for contender, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        rows = results[0]["rows"]
        out[contender] = {
            "seconds": seconds,
            "rows": rows,
            "rows_per_s": rows / seconds if seconds else float("inf"),
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in results),
            "all_seconds": [round(r["seconds"], 3) for r in results],
            **{k: v for k, v in results[0].items() if k not in ("seconds", "rows", "peak_rss_mb")},
            **{k: statistics.median(r[k] for r in results) for k in results[0] if k.endswith("_s")},
        }
    return out


def table(
    title: str,
    results: dict[str, dict[str, Any]],
    *,
    baseline: str,
    notes: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> str:
    """A markdown table of medians; each name in ``extra`` (a second timing) adds its median
    and its ratio to the baseline's."""
    base = results[baseline]["seconds"]
    lines = [
        f"### {title}",
        "",
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" load average at the end {os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"| contender | median s | rows/s | peak RSS MB | time vs {baseline} |"
        + "".join(
            f" {k.removesuffix('_s')} s | {k.removesuffix('_s')} vs {baseline} |" for k in extra
        )
        + " runs (s) |",
        "|---|---:|---:|---:|---:|" + "---:|---:|" * len(extra) + "---|",
    ]
    for name, r in results.items():
        cells = "".join(
            f" {r[k]:.2f} | {r[k] / results[baseline][k]:.2f}× |" for k in extra if k in r
        )
        lines.append(
            f"| {name} | {r['seconds']:.2f} | {r['rows_per_s']:,.0f} | {r['peak_rss_mb']:.0f} |"
            f" {r['seconds'] / base:.2f}× |{cells} {', '.join(map(str, r['all_seconds']))} |"
        )
    lines += ["", *notes]
    return "\n".join(lines)


@contextlib.contextmanager
def scratch_database(given: str | None = None) -> Iterator[str]:
    """A new, empty database for one benchmark run, dropped afterwards; yields its URL.

    The server is ``given``, else ``FLOWSCOPE_TEST_DATABASE_URL``, else a temporary embedded
    PostgreSQL.
    """
    import secrets

    import sqlalchemy as sa
    from flowscope import _db

    server = given or os.environ.get("FLOWSCOPE_TEST_DATABASE_URL")
    if server:
        server = _db.normalize_url(server)
    else:
        from flowscope import _embedded

        server = _db.normalize_url(
            _embedded.server_uri(_embedded.temporary_data_dir(prefix="flowscope-bench-"))
        )
    name = f"flowscope_bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
