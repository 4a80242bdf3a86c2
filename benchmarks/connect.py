"""How long ``flowscope.connect()`` takes on the embedded PostgreSQL.

* cold: a new data directory (initdb, start, create database, migrate to head), new process;
* restart: the same data directory in a new process (server start, schema check);
* warm: a second ``connect()`` in the same process (server already running).

    python benchmarks/connect.py
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile

CHILD = """
import json, sys, time
t = time.perf_counter()
import flowscope
c = flowscope.connect(data_dir=sys.argv[1]); first = time.perf_counter() - t
t = time.perf_counter(); flowscope.connect(data_dir=sys.argv[1]).close(); warm = time.perf_counter() - t
print(json.dumps({"first": first, "warm": warm}))
"""


def run(data_dir: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, data_dir], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    cold, restart, warm = [], [], []
    for _ in range(3):
        data_dir = tempfile.mkdtemp(prefix="flowscope-connect-")
        first = run(data_dir)
        again = run(data_dir)  # a kept (not temporary) data directory: the restart finds it
        shutil.rmtree(data_dir, ignore_errors=True)
        cold.append(first["first"])
        restart.append(again["first"])
        warm += [first["warm"], again["warm"]]
    print("| connect() | median | runs |")
    print("|---|---:|---:|")
    for name, values in (
        ("cold (new data dir)", cold),
        ("restart (existing data dir)", restart),
        ("warm (same process)", warm),
    ):
        print(f"| {name} | {statistics.median(values):.3f} s | {len(values)} |")


if __name__ == "__main__":
    main()
