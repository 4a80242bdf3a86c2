"""Fail if a `make test` left an embedded PostgreSQL, its supervisor, or files behind.

Usage: python .ci/leftovers.py TMP [HOME], where TMP is the temporary folder (TMPDIR) that
`make test` ran with and nothing else used, and HOME the (new, empty) home directory it
ran with. Left behind counts: a process running from TMP, a `flowscope-*` or `tmp*`
directory in TMP (`tempfile.mkdtemp()`'s default name: a doctest that forgot to clean
up), a pytest temporary directory (kept only for failed tests), and anything flowscope wrote under HOME (its data directory,
`~/.local/share/flowscope`, holds mirrors and the embedded database). Servers of killed
processes (nbval kills every notebook kernel) stop within a second or two, so this waits
up to 15 s before failing; on success it removes TMP and HOME.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import psutil


def leftovers(tmp: Path, home: Path | None = None) -> list[str]:
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
    found += [f"temporary {path}" for path in sorted(tmp.glob("tmp*"))]
    # pytest keeps the tmp_path of failed tests only (tmp_path_retention_policy = "failed")
    found += [f"pytest's {path}" for path in sorted(tmp.glob("pytest-of-*/*"))]
    if home is not None:
        found += [f"in HOME: {path}" for path in sorted(home.rglob("*flowscope*"))]
    return found


def main() -> int:
    tmp = Path(sys.argv[1]).resolve()
    home = Path(sys.argv[2]).resolve() if len(sys.argv) > 2 else None
    deadline = time.monotonic() + 15
    while (found := leftovers(tmp, home)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if found:
        print("make test left embedded PostgreSQL servers or data behind:", *found, sep="\n  ")
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)
    print(
        f"no embedded PostgreSQL, supervisor or leftover file under {tmp}"
        + (f" or {home}" if home else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
