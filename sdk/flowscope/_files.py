"""Files that survive a kill: locks that leave nothing behind, temp files a rerun can sweep.

Exports and prunes write beside their destination (hidden ``.*.tmp`` names) and rename
into place. A process killed half-way leaves such temp files; the next run removes the
ones no live process owns. Ownership is an ``flock`` held on the temp file (or
directory) for as long as it is being written: the kernel drops it when the process
dies, so "not lockable" means "someone is still writing it" and "lockable" means
"left behind". Run-wide exclusion (one prune per archive directory, one incremental
export per dataset) is an ``flock`` on the directory itself, so no lock file is ever
created, committed or left behind.

``flock`` is local to one machine (on NFS it is emulated with byte-range locks and
may be refused on a directory); :func:`directory_lock` then falls back to a lock file
that it removes when the run ends. Where there is no ``fcntl`` (Windows), nothing is
locked and no leftover is swept (a leftover cannot be told from a live file there).

What they write is the caller's alone: files are created ``0600`` and new directories
``0700`` (exported rows are as private as the identity that read them).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import ConflictError

__all__ = [
    "LOCK_FILE",
    "directory_lock",
    "fsync_dir",
    "owned_temp_dir",
    "owned_temp_file",
    "private_dirs",
    "release",
    "sweep_stale",
    "write_json",
]

#: Modes of what flowscope creates: owner-only, like the mirror's.
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700

#: The fallback lock file of :func:`directory_lock` (only where ``flock`` on a directory
#: is refused); removed when the run ends.
LOCK_FILE = ".flowscope.lock"
_BUSY = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES)
fcntl: Any
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (best effort off POSIX)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def private_dirs(path: Path) -> None:
    """Create the directory ``path`` and its missing parents, each new one owner-only
    (``0700``); directories that exist are left as they are (exports, archives).

    Example:
        >>> import stat
        >>> where = tmp_path / "a" / "b"
        >>> private_dirs(where)
        >>> oct(stat.S_IMODE(where.stat().st_mode)), oct(stat.S_IMODE(where.parent.stat().st_mode))
        ('0o700', '0o700')
    """
    missing: list[Path] = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile (or a file: fails later)
            directory.mkdir(mode=PRIVATE_DIR)


def write_json(path: Path, data: Any) -> None:
    """Replace the JSON file ``path`` atomically: a hidden sibling temp file is written,
    fsynced and renamed over it, then the directory is fsynced (manifests of exports and
    prunes). On an error the temp file is removed and ``path`` is unchanged.

    Example:
        >>> where = tmp_path / "manifest" / "m.json"
        >>> where.parent.mkdir()
        >>> write_json(where, {"runs": []})
        >>> json.loads(where.read_text()), [p.name for p in where.parent.iterdir()]
        ({'runs': []}, ['m.json'])
    """
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        with open(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    fsync_dir(path.parent)


def _try_flock(fd: int) -> bool:
    if fcntl is None:  # pragma: no cover - Windows: cannot tell, so never "free"
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in _BUSY:
            return False
        raise
    return True


def _still_named(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not removed or replaced)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def owned_temp_file(path: Path) -> int:
    """Create ``path`` (it must not exist) and hold an ``flock`` on it: returns the fd.

    The lock tells :func:`sweep_stale` that the file is being written. Close the fd with
    :func:`release` once the file is renamed into place or removed.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)
    if not _still_named(fd, path):  # a sweeper removed it between create and lock
        os.close(fd)
        raise FileExistsError(errno.EEXIST, "temporary file was swept", str(path))
    return fd


def owned_temp_dir(path: Path) -> int:
    """Create the directory ``path`` (owner-only) and hold an ``flock`` on it: returns the fd."""
    path.mkdir(mode=PRIVATE_DIR)
    if fcntl is None:  # pragma: no cover - Windows
        return -1
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    if not _still_named(fd, path):
        os.close(fd)
        raise FileExistsError(errno.EEXIST, "temporary directory was swept", str(path))
    return fd


def release(fd: int | None) -> None:
    if fd is not None and fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def sweep_stale(candidates: Iterator[Path] | list[Path]) -> list[Path]:
    """Remove the temp files/directories among ``candidates`` that no live process holds.

    Returns what was removed. A candidate whose lock is held is left alone.
    """
    removed: list[Path] = []
    if fcntl is None:  # pragma: no cover - Windows
        return removed
    for path in candidates:
        try:
            flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
            fd = os.open(path, flags)
        except (FileNotFoundError, NotADirectoryError):
            continue
        try:
            if not _try_flock(fd) or not _still_named(fd, path):
                continue
            _remove(path)
            removed.append(path)
        finally:
            os.close(fd)
    return removed


@contextlib.contextmanager
def directory_lock(directory: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` for one run; :class:`ConflictError` if busy.

    Nothing is written: the lock is an ``flock`` on the directory itself. Where the file
    system refuses that (NFS), a lock file ``.flowscope.lock`` is used and removed at the end.
    """
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            locked = _try_flock(fd)
        except OSError as exc:
            if exc.errno not in (errno.EBADF, errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            os.close(fd)
            fd = -1
            with _lock_file(directory / LOCK_FILE, what):
                yield
            return
        if not locked:
            raise ConflictError(f"{what} is already running on {directory}")
        yield
    finally:
        if fd >= 0:
            os.close(fd)


@contextlib.contextmanager
def _lock_file(path: Path, what: str) -> Iterator[None]:
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE)
        if not _try_flock(fd):
            os.close(fd)
            raise ConflictError(f"{what} is already running on {path.parent}")
        if _still_named(fd, path):
            break
        os.close(fd)  # the previous holder removed it as we opened it: take the new one
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)
