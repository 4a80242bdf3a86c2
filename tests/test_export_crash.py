"""Exports killed with SIGKILL at every step of their write protocol, then run again.

A child process runs the export and kills itself (``SIGKILL``: no cleanup of any kind) at
a named step of :func:`flowscope.export._atomic._step`. The test then checks what the kill left
(the old file, nothing, or a resumable dataset), runs the export again, and checks that
the Parquet files a reader sees hold exactly the table's rows, once, with no temp file,
staging directory or empty partition directory left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import flowscope
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from flowscope._files import directory_lock, owned_temp_file, release
from flowscope.models import EXECUTIONS

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    import flowscope
    from flowscope.export import _atomic

    url, target, options, step, nth = sys.argv[1:]
    seen = {"n": 0}

    def die(name):
        if name == step:
            seen["n"] += 1
            if seen["n"] == int(nth):
                os.kill(os.getpid(), signal.SIGKILL)

    _atomic._step = die
    with flowscope.connect(url) as client:
        client.export.parquet("executions", target, progress=False, batch_size=4,
                              **json.loads(options))
    sys.exit(3)  # the step never came
    """
)


def _insert(engine: sa.Engine, first: int, last: int) -> None:
    """Executions ex_<first>..ex_<last - 1>, eight hours apart."""
    with engine.begin() as conn:
        if first == 0:
            conn.execute(
                sa.text(
                    "INSERT INTO workflows (id, name, owner, nodes, edges, created_by, updated_by)"
                    " VALUES ('wf_1', 'w', 'u', '[]', '[]', 'u', 'u')"
                )
            )
        conn.execute(
            sa.insert(EXECUTIONS),
            [
                {
                    "id": f"ex_{i:03d}",
                    "workflow_id": "wf_1",
                    "owner": "u",
                    "status": ("completed", "failed")[i % 2],
                    "parameters": {"i": i},
                    "created_at": T0 + timedelta(hours=8 * i),
                }
                for i in range(first, last)
            ],
        )


def _kill(database_url: str, target: Path, options: dict[str, Any], step: str, nth: int) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            database_url,
            str(target),
            json.dumps(options),
            step,
            str(nth),
        ],
        env=env,
        timeout=120,
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == -9, done.stderr  # killed at the step, not finished or failed


def _ids(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(EXECUTIONS.c.id).order_by(EXECUTIONS.c.id)).scalars())


def _visible_ids(root: Path) -> list[str]:
    """Every id in every ``*.parquet`` file under ``root`` (what a glob reader like DuckDB's
    ``read_parquet('root/**/*.parquet')`` sees), sorted, duplicates kept."""
    files = [root] if root.is_file() else sorted(root.rglob("*.parquet"))
    ids: list[str] = []
    for f in files:
        ids += pq.read_table(f, columns=["id"]).column("id").to_pylist()
    return sorted(ids)


def _litter(where: Path) -> list[Path]:
    """Temp files, staging directories and empty partition directories under ``where``."""
    found = [p for p in where.rglob("*") if p.name.endswith(".tmp")]
    found += [p for p in where.rglob("*=*") if p.is_dir() and not any(p.iterdir())]
    return found


@pytest.fixture
def rows(client: flowscope.Client, engine: sa.Engine) -> sa.Engine:
    _insert(engine, 0, 30)
    return engine


@pytest.mark.parametrize(("step", "nth"), [("batch", 2), ("files-ready", 1), ("renamed", 1)])
def test_killed_single_file_export(
    client: flowscope.Client,
    rows: sa.Engine,
    database_url: str,
    tmp_path: Path,
    step: str,
    nth: int,
) -> None:
    target = tmp_path / "runs.parquet"
    client.export.parquet("executions", target, progress=False, status="failed")
    old = target.read_bytes()
    _kill(database_url, tmp_path / "runs.parquet", {}, step, nth)
    if step == "renamed":  # the new file is in place, complete
        assert _visible_ids(target) == _ids(rows)
    else:  # the old file is untouched; the killed run's temp file is left...
        assert target.read_bytes() == old
        assert _litter(tmp_path)
    client.export.parquet("executions", target, progress=False)  # ...and swept by the next run
    assert _visible_ids(target) == _ids(rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.parquet"]


@pytest.mark.parametrize(("step", "nth"), [("batch", 3), ("files-ready", 1), ("renamed", 1)])
def test_killed_partitioned_export(
    client: flowscope.Client,
    rows: sa.Engine,
    database_url: str,
    tmp_path: Path,
    step: str,
    nth: int,
) -> None:
    target = tmp_path / "lake"
    options = {"partition_by": ["day"]}
    _kill(database_url, target, options, step, nth)
    if step == "renamed":  # published as a whole
        assert _visible_ids(target) == _ids(rows)
        assert not _litter(tmp_path)
        with pytest.raises(flowscope.ValidationError, match="not empty"):
            client.export.parquet("executions", target, progress=False, **options)
    else:  # nothing at the target: the half-built dataset is a hidden sibling
        assert not target.exists()
        assert _litter(tmp_path)
        client.export.parquet("executions", target, progress=False, **options)
    assert _visible_ids(target) == _ids(rows)
    assert not _litter(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake"]
    days = {(T0 + timedelta(hours=8 * i)).date().isoformat() for i in range(30)}
    assert {p.name for p in target.glob("day=*")} == {f"day={d}" for d in days}


INCREMENTAL_STEPS = [
    ("batch", 3),
    ("files-ready", 1),
    ("intent-written", 1),
    ("renamed", 1),  # one of the run's five files is in place, four are not
    ("renamed", 4),
    ("before-manifest", 1),  # every file in place, the manifest not yet updated
    ("after-manifest", 1),
]


@pytest.mark.parametrize(("step", "nth"), INCREMENTAL_STEPS)
def test_killed_incremental_export(
    client: flowscope.Client,
    rows: sa.Engine,
    database_url: str,
    tmp_path: Path,
    step: str,
    nth: int,
) -> None:
    root = tmp_path / "inc"
    options = {"incremental": True, "partition_by": ["day"]}
    first = client.export.parquet("executions", root, progress=False, **options)
    assert first.rows == 30
    _insert(rows, 30, 45)  # five more days
    _kill(database_url, root, options, step, nth)
    visible = _visible_ids(root)
    assert len(visible) == len(set(visible))  # even before the rerun: nothing twice
    again = client.export.parquet("executions", root, progress=False, **options)
    assert _visible_ids(root) == _ids(rows)  # every row, once
    assert not _litter(tmp_path)
    manifest = json.loads((root / "_flowscope_manifest.json").read_text())
    assert manifest["pending"] is None and manifest["rows"] == 45
    listed = sorted(f for run in manifest["runs"] for f in run["files"])
    assert listed == sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))
    newest = T0 + timedelta(hours=8 * 44)
    assert datetime.fromisoformat(manifest["high_water_mark"]) == newest
    # killed before its intent: the run never happened, the rerun exports its 15 rows;
    # after its intent: the rerun finishes and records it, then finds nothing new
    recovered = step in ("intent-written", "renamed", "before-manifest")
    never_ran = step in ("batch", "files-ready")
    assert again.rows == (15 if never_ran else 0)
    assert len(manifest["runs"]) == (2 if never_ran else 3)
    assert manifest["runs"][1].get("recovered", False) is recovered
    _insert(rows, 45, 48)
    assert client.export.parquet("executions", root, progress=False, **options).rows == 3
    assert _visible_ids(root) == _ids(rows)


def test_unrecorded_files_of_an_older_run_are_dropped(
    client: flowscope.Client, rows: sa.Engine, tmp_path: Path
) -> None:
    """A dataset an older flowscope left after a kill between rename and manifest: files no
    run lists hold rows above the high-water mark, which the next run exports again."""
    root = tmp_path / "inc"
    client.export.parquet("executions", root, progress=False, incremental=True)
    (recorded,) = root.glob("part-*.parquet")
    orphan = root / "part-20260101T000000-abcdef-0.parquet"
    pq.write_table(pq.read_table(recorded).slice(0, 5), orphan)
    assert len(_visible_ids(root)) == 35
    client.export.parquet("executions", root, progress=False, incremental=True)
    assert not orphan.exists() and _visible_ids(root) == _ids(rows)
    stray = tmp_path / "not-incremental"
    stray.mkdir()
    pq.write_table(pa.table({"id": ["x"]}), stray / "part-20260101T000000-abcdef-0.parquet")
    with pytest.raises(flowscope.ValidationError, match="no _flowscope_manifest"):
        client.export.parquet("executions", stray, progress=False, incremental=True)


def test_one_incremental_run_per_dataset(
    client: flowscope.Client, rows: sa.Engine, tmp_path: Path
) -> None:
    root = tmp_path / "inc"
    root.mkdir()
    with (
        directory_lock(root, "an incremental export"),
        pytest.raises(flowscope.ConflictError, match="already running"),
    ):
        client.export.parquet("executions", root, progress=False, incremental=True)
    assert client.export.parquet("executions", root, progress=False, incremental=True).rows == 30
    assert not (root / ".flowscope.lock").exists()


def test_a_temp_file_being_written_is_not_swept(
    client: flowscope.Client, rows: sa.Engine, tmp_path: Path
) -> None:
    target = tmp_path / "x.parquet"
    busy = tmp_path / ".x.parquet.busy0000.tmp"
    fd = owned_temp_file(busy)  # another live export's temp file
    try:
        (tmp_path / ".x.parquet.dead0000.tmp").write_bytes(b"left by a killed run")
        client.export.parquet("executions", target, progress=False)
        assert sorted(p.name for p in tmp_path.iterdir()) == [busy.name, "x.parquet"]
    finally:
        release(fd)
    client.export.parquet("executions", target, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.parquet"]
