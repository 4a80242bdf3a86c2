"""Locks that leave nothing behind, and sweeping what killed runs left (flowscope._files)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import flowscope
import pytest
from flowscope import _files


def test_directory_lock_excludes_and_leaves_nothing(tmp_path: Path) -> None:
    with (
        _files.directory_lock(tmp_path, "a prune"),
        pytest.raises(flowscope.ConflictError, match="a prune is already running"),
        _files.directory_lock(tmp_path, "a prune"),
    ):
        pass
    assert list(tmp_path.iterdir()) == []
    with _files.directory_lock(tmp_path, "a prune"):  # released with its holder
        pass


def test_lock_file_fallback_where_directories_cannot_be_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On NFS flock() of a directory opened read-only fails with EBADF: a lock file is used,
    and removed when the run ends."""
    real = _files._try_flock

    def nfs_like(fd: int) -> bool:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EBADF, "Bad file descriptor")
        return real(fd)

    monkeypatch.setattr(_files, "_try_flock", nfs_like)
    with _files.directory_lock(tmp_path, "an export"):
        assert [p.name for p in tmp_path.iterdir()] == [_files.LOCK_FILE]
        with (
            pytest.raises(flowscope.ConflictError, match="already running"),
            _files.directory_lock(tmp_path, "an export"),
        ):
            pass
    assert list(tmp_path.iterdir()) == []


def test_sweep_removes_only_what_no_live_process_holds(tmp_path: Path) -> None:
    live = tmp_path / ".a.parquet.live.tmp"
    fd = _files.owned_temp_file(live)
    live_dir = tmp_path / ".lake.live.tmp"
    dir_fd = _files.owned_temp_dir(live_dir)
    dead = tmp_path / ".a.parquet.dead.tmp"
    dead.write_bytes(b"x")
    dead_dir = tmp_path / ".lake.dead.tmp"
    (dead_dir / "day=2026-01-01").mkdir(parents=True)
    try:
        removed = _files.sweep_stale(sorted(tmp_path.glob(".*.tmp")))
        assert sorted(removed) == sorted([dead, dead_dir])
        assert sorted(tmp_path.iterdir()) == sorted([live, live_dir])
    finally:
        _files.release(fd)
        _files.release(dir_fd)
    assert sorted(_files.sweep_stale(sorted(tmp_path.glob(".*.tmp")))) == sorted([live, live_dir])
    assert list(tmp_path.iterdir()) == []


def test_write_json_replaces_atomically_and_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    _files.write_json(path, {"runs": [1]})
    _files.write_json(path, {"runs": [1, 2]})
    assert json.loads(path.read_text()) == {"runs": [1, 2]}
    with pytest.raises(TypeError):
        _files.write_json(path, {"runs": [object()]})  # fails half-way through the dump
    assert json.loads(path.read_text()) == {"runs": [1, 2]}  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temp file left
