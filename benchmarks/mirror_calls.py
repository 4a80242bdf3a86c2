"""Time each mirror analytics call against its hand-written DuckDB query, on an existing mirror.

The quick loop behind the before/after table of ``benchmarks/mirror_results.md``: run it once
per checkout (``PYTHONPATH=<checkout>/sdk``) over the same mirror files to compare two versions
of flowscope, minutes apart. Syncs the mirror first if it was never synced. Prints the load
(the first call after opening) and, per call of :data:`benchmarks.mirror.CALLS`, the median of
``--repeats`` warm runs: wall seconds, CPU seconds, the hand-written query's and the ratio.
With ``--refresh-after N``, it then changes N rows (as ``benchmarks.mirror`` does), syncs and
times the first call after the sync (the loaded tables refreshed from the delta) against a
load of the same state afresh.

    python -m benchmarks.mirror_calls postgresql://postgres@127.0.0.1:5432/fs_bench_mirror /tmp/m1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks.mirror import CALLS, HAND_SQL


def _median(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    fn()  # warm
    wall, cpu = [], []
    for _ in range(repeats):
        started, used = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - used)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("mirror")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--refresh-after", type=int, default=0, metavar="N")
    args = parser.parse_args()
    import duckdb
    import flowscope

    client = flowscope.connect(args.url)
    mirror = client.mirror(args.mirror)
    if mirror.as_of is None:
        mirror.sync(progress=False)
    started = time.perf_counter()
    _, state = mirror._connection()
    print(f"load {time.perf_counter() - started:.2f} s")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for view, table in (("e", "executions"), ("w", "workflows")):
        con.read_parquet(
            [str(mirror.path / f) for f in state["tables"][table]["base"]]
        ).create_view(view)
    print(
        "| call | mirror s | mirror CPU s | hand DuckDB s | mirror / hand |\n|---|---:|---:|---:|---:|"
    )
    for label, (method, kwargs, _) in CALLS.items():
        wall, cpu = _median(
            lambda m=method, k=kwargs: getattr(mirror.analytics, m)(**k), args.repeats
        )
        hand = (
            _median(lambda s=HAND_SQL[label]: con.execute(s).fetchall(), args.repeats)[0]
            if label in HAND_SQL
            else None
        )
        ratio = f"{wall / hand:.2f}" if hand else "–"
        print(
            f"| {label} | {wall:.3f} | {cpu:.3f} | {'–' if hand is None else f'{hand:.3f}'} | {ratio} |"
        )
    con.close()
    if args.refresh_after:
        from benchmarks.mirror import _change

        _change(args.url, args.refresh_after, int(time.time()))
        report = mirror.sync(progress=False)
        started = time.perf_counter()
        mirror.analytics.status_breakdown(by="workflow")
        refreshed = time.perf_counter() - started
        mirror.close()
        started = time.perf_counter()
        mirror.analytics.status_breakdown(by="workflow")
        reloaded = time.perf_counter() - started
        print(
            f"after a sync of {report.added + report.changed + report.removed:,} rows"
            f" ({report.seconds:.2f} s): first call {refreshed:.2f} s (tables refreshed),"
            f" {reloaded:.2f} s when loaded afresh"
        )
    mirror.close()
    client.close()


if __name__ == "__main__":
    main()
