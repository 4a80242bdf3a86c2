"""Fail if a `make test` left an embedded PostgreSQL, its supervisor, or a flowscope-* directory behind.

Usage: python .ci/leftovers.py TMP, where TMP is the temporary folder (TMPDIR) that
`make test` ran with and nothing else used. Servers of killed processes (nbval kills
every notebook kernel) stop within a second or two, so this waits up to 15 s before
failing; on success it removes TMP.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import psutil


def leftovers(tmp: Path) -> list[str]:
    found = []
    for process in psutil.process_iter(["pid", "username", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if process.pid != os.getpid() and str(tmp) in cmdline:
            try:
                if process.status() == psutil.STATUS_ZOMBIE:
                    continue
            except psutil.NoSuchProcess:
                continue
            found.append(f"process {process.pid} ({process.info['username']}): {cmdline}")
    found += [f"directory {path}" for path in sorted(tmp.glob("flowscope-*"))]
    return found


def main() -> int:
    tmp = Path(sys.argv[1]).resolve()
    deadline = time.monotonic() + 15
    while (found := leftovers(tmp)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if found:
        print("make test left embedded PostgreSQL servers or data behind:", *found, sep="\n  ")
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"no embedded PostgreSQL, supervisor or flowscope-* directory left under {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
