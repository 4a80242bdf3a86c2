"""Retention: prune = archive to Parquet + delete, in batches; interrupted runs resume losing nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import flowscope
import pyarrow.parquet as pq
import pytest
from flowscope._retention import MANIFEST
from flowscope.export import arrow_schema
from flowscope.models import TERMINAL_EXECUTION_STATUSES as TERMINAL


def _seed(client: flowscope.Client, n: int = 120) -> None:
    """n executions over 200 days, all statuses, JSON, NULLs, decimals, non-ASCII text."""
    client.sql("INSERT INTO organizations (id, name, slug) VALUES ('org_a', 'A', 'a')")
    client.sql(
        "INSERT INTO workflows (id, name, owner, organization_id, nodes, edges, created_by,"
        " updated_by) VALUES ('wf_1', 'w', 'u', 'org_a', '[]', '[]', 'u', 'u')"
    )
    client.sql(
        """
        INSERT INTO executions (id, workflow_id, owner, organization_id, status, parameters,
            result, error, started_at, completed_at, duration_seconds, current_step,
            steps_completed, steps_total, metadata, trace_id, created_at, updated_at)
        SELECT 'ex_' || lpad(g::text, 5, '0'), 'wf_1', 'ü' || (g % 3), 'org_a',
            (ARRAY['queued','running','completed','failed','cancelled','timeout'])[1 + g % 6],
            jsonb_build_object('n', g, 'tags', jsonb_build_array('a', 'ß')),
            CASE WHEN g % 4 = 0 THEN NULL ELSE jsonb_build_object('ok', g % 2 = 0) END,
            CASE WHEN g % 6 = 3 THEN '{"type": "ValueError"}'::jsonb END,
            c, CASE WHEN g % 5 <> 0 THEN c + interval '1.5 seconds' * g END,
            CASE WHEN g % 5 <> 0 THEN 1.5 * g END,
            CASE WHEN g % 7 = 0 THEN 'step_' || g END, g % 4, 4,
            '{}'::jsonb, CASE WHEN g % 2 = 0 THEN 'tr_' || g END, c, c
        FROM generate_series(1, :n) g,
             LATERAL (SELECT now() - interval '200 days' + interval '40 hours' * g AS c) x
        """,
        {"n": n},
    )


def _rows(client: flowscope.Client) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in client.sql("SELECT * FROM executions")}


def _archived(directory: Path) -> list[dict[str, Any]]:
    manifest = json.loads((directory / MANIFEST).read_text())
    rows: list[dict[str, Any]] = []
    for run in manifest["runs"]:
        for batch in run["batches"]:
            assert batch["state"] == "done"
            table = pq.read_table(directory / batch["file"])
            assert table.num_rows == batch["rows"]
            for row in table.to_pylist():
                for col in ("parameters", "result", "error", "metadata"):
                    if row[col] is not None:
                        row[col] = json.loads(row[col])
                rows.append(row)
    return rows


def _expected_pruned(client: flowscope.Client, age: str = "90 days") -> set[str]:
    return {
        r["id"]
        for r in client.sql(
            "SELECT id FROM executions WHERE created_at < now() - CAST(:a AS interval)"
            " AND status = ANY(:s)",
            {"a": age, "s": list(TERMINAL)},
        )
    }


def _check_nothing_lost(
    before: dict[str, dict[str, Any]], client: flowscope.Client, directory: Path
) -> list[dict[str, Any]]:
    archived = _archived(directory)
    after = _rows(client)
    ids = [r["id"] for r in archived]
    assert len(ids) == len(set(ids)), "a row was archived twice"
    assert not set(ids) & set(after), "a row is both archived and still in the table"
    assert set(ids) | set(after) == set(before), "a row was lost"
    for row in archived:
        assert row == before[row["id"]]
    leftovers = [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers
    return archived


def _vacuums(client: flowscope.Client) -> int:
    rows = client.sql(
        "SELECT vacuum_count AS n FROM pg_stat_user_tables WHERE relname = 'executions'"
    )
    return int(rows[0]["n"])


def test_older_than_is_a_pandas_duration(client: flowscope.Client, tmp_path: Path) -> None:
    """older_than takes the SDK's one duration syntax; old spellings and calendar months
    fail naming what to write, before anything is created."""
    from datetime import timedelta

    import pandas as pd

    _seed(client, 60)
    archive = tmp_path / "archive"
    want = client.retention.prune(older_than="30D", archive_to=archive, dry_run=True)
    for same in ("720h", "43200min", "2592000s", timedelta(days=30), pd.Timedelta("30D")):
        got = client.retention.prune(older_than=same, archive_to=archive, dry_run=True)
        assert got.rows == want.rows > 0, same
    assert client.retention.prune(older_than="4W", archive_to=archive, dry_run=True).rows > 0
    for old, new in (("30M", "'30min'"), ("30m", "'30min'"), ("12H", "'12h'"), ("45S", "'45s'")):
        with pytest.raises(flowscope.ValidationError, match=f"older_than={old!r} .*write {new}"):
            client.retention.prune(older_than=old, archive_to=archive)
    for calendar in ("1MS", "3MS", "1ME", "1Y"):
        with pytest.raises(flowscope.ValidationError, match="calendar offset, not a fixed"):
            client.retention.prune(older_than=calendar, archive_to=archive)
    for bad in ("90", "-3D", "0D", "1 fortnight", 5):
        with pytest.raises(flowscope.ValidationError, match="older_than"):
            client.retention.prune(older_than=bad, archive_to=archive)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []  # refused before anything was created


def test_prune_archives_exactly_what_it_deletes(client: flowscope.Client, tmp_path: Path) -> None:
    _seed(client)
    before = _rows(client)
    expected = _expected_pruned(client)
    assert 20 < len(expected) < len(before)

    dry = client.retention.prune(older_than="90D", archive_to=tmp_path, batch_size=7, dry_run=True)
    assert dry.dry_run and dry.rows == len(expected)
    assert dry.batches == -(-len(expected) // 7)
    assert _rows(client) == before
    assert not list(tmp_path.glob("*.parquet"))

    vacuums_before = _vacuums(client)
    report = client.retention.prune(older_than="90D", archive_to=tmp_path, batch_size=7)
    assert report.rows == len(expected)
    assert report.batches == dry.batches == len(report.files)
    assert not report.resumed
    archived = _check_nothing_lost(before, client, tmp_path)
    assert {r["id"] for r in archived} == expected
    assert all(isinstance(r["duration_seconds"], Decimal | None) for r in archived)
    schema = pq.read_schema(report.files[0])
    assert str(schema.field("created_at").type) == "timestamp[us, tz=UTC]"
    assert str(schema.field("duration_seconds").type) == "decimal128(10, 3)"
    # an archive is an export: the same schema, derived from the models (NOT NULL kept)
    assert schema.remove_metadata() == arrow_schema("executions")
    assert not schema.field("id").nullable and schema.field("trace_id").nullable
    # the deletions are audited like any other
    audited = client.sql(
        "SELECT count(*) AS n FROM audit_log WHERE table_name = 'executions' AND action = 'DELETE'"
    )
    assert audited == [{"n": len(expected)}]
    # the table was vacuumed afterwards (index-only scans stay index-only)
    for _ in range(50):
        if _vacuums(client) > vacuums_before:
            break
        time.sleep(0.1)
    assert _vacuums(client) > vacuums_before
    # a second run finds nothing more
    again = client.retention.prune(older_than="90D", archive_to=tmp_path, batch_size=7)
    assert (again.rows, again.batches) == (0, 0)
    _check_nothing_lost(before, client, tmp_path)


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("stage", ["archived", "deleting", "committed"])
def test_interrupted_prune_resumes(client: flowscope.Client, tmp_path: Path, stage: str) -> None:
    _seed(client)
    before = _rows(client)
    expected = _expected_pruned(client)

    def fail_on_third(where: str, batch: int) -> None:
        if where == stage and batch == 3:
            raise Boom(f"injected at {where} of batch {batch}")

    with pytest.raises(flowscope.FlowscopeError, match="Boom"):
        client.retention.prune(
            older_than="90D", archive_to=tmp_path, batch_size=5, _hook=fail_on_third
        )
    remaining = _rows(client)
    gone = set(before) - set(remaining)
    assert len(gone) == (15 if stage == "committed" else 10)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["runs"][0]["finished_at"] is None

    report = client.retention.prune(older_than="90D", archive_to=tmp_path, batch_size=5)
    assert report.resumed
    assert report.rows == len(expected) - len(gone)
    archived = _check_nothing_lost(before, client, tmp_path)
    assert {r["id"] for r in archived} == expected
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert len(manifest["runs"]) == 1
    assert sum(b["rows"] for b in manifest["runs"][0]["batches"]) == len(expected)


def test_killed_prune_resumes(client: flowscope.Client, tmp_path: Path, database_url: str) -> None:
    """A process killed mid-batch (its transaction open, its file written) loses nothing."""
    _seed(client)
    before = _rows(client)
    expected = _expected_pruned(client)
    script = textwrap.dedent(
        f"""
        import os, flowscope
        def die(where, batch):
            if where == "deleting" and batch == 2:
                os._exit(9)
        with flowscope.connect({database_url!r}) as c:
            c.retention.prune(older_than="90D", archive_to={str(tmp_path)!r}, batch_size=6,
                              _hook=die)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, timeout=120, check=False)
    assert done.returncode == 9
    assert len(set(before) - set(_rows(client))) == 6  # batch 1 committed, batch 2 died
    report = client.retention.prune(older_than="90D", archive_to=tmp_path, batch_size=6)
    assert report.resumed
    archived = _check_nothing_lost(before, client, tmp_path)
    assert {r["id"] for r in archived} == expected


def test_prune_refuses_bad_arguments(client: flowscope.Client, tmp_path: Path) -> None:
    for kwargs in (
        {"table": "users"},
        {"older_than": "soon"},
        {"batch_size": 0},
        {"batch_size": True},
        {"statuses": ("running", "bogus")},
    ):
        with pytest.raises(flowscope.ValidationError):
            client.retention.prune(archive_to=tmp_path, **kwargs)  # type: ignore[arg-type]
    _seed(client, 30)
    with pytest.raises(flowscope.FlowscopeError, match="Boom"):
        client.retention.prune(
            archive_to=tmp_path, batch_size=2, _hook=lambda w, b: (_ for _ in ()).throw(Boom())
        )
    with pytest.raises(flowscope.ConflictError, match="unfinished"):
        client.retention.prune(archive_to=tmp_path, statuses=("failed",))


def test_cli_prune(client: flowscope.Client, tmp_path: Path, database_url: str) -> None:
    from flowscope.cli import app
    from typer.testing import CliRunner

    _seed(client, 60)
    expected = _expected_pruned(client, "30 days")
    runner = CliRunner()
    base = ["prune", "executions", "--older-than", "30D", "--database-url", database_url]
    dry = runner.invoke(app, [*base, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"would prune {len(expected)} executions rows" in dry.output
    done = runner.invoke(app, [*base, "--archive-to", str(tmp_path), "--batch-size", "4"])
    assert done.exit_code == 0, done.output
    assert f"pruned {len(expected)} executions rows" in done.output
    assert len(_archived(tmp_path)) == len(expected)
    missing = runner.invoke(app, base)
    assert missing.exit_code == 1


def test_dry_run_writes_nothing(
    client: flowscope.Client, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(client, 30)
    expected = _expected_pruned(client)
    missing = tmp_path / "not" / "yet"
    report = client.retention.prune(archive_to=missing, dry_run=True)
    assert report.dry_run and report.rows == len(expected)
    assert list(tmp_path.iterdir()) == []  # no archive directory, no lock file
    existing = tmp_path / "archive"
    existing.mkdir()
    client.retention.prune(archive_to=existing, dry_run=True)
    assert list(existing.iterdir()) == []
    # the CLI's dry run defaults the archive to the working directory: nothing lands there
    from flowscope.cli import app
    from typer.testing import CliRunner

    monkeypatch.chdir(existing)
    dry = CliRunner().invoke(app, ["prune", "--dry-run", "--database-url", database_url])
    assert dry.exit_code == 0, dry.output
    assert list(existing.iterdir()) == []


def test_a_run_leaves_no_lock_and_excludes_another(
    client: flowscope.Client, tmp_path: Path
) -> None:
    from flowscope._files import directory_lock

    _seed(client, 30)
    report = client.retention.prune(archive_to=tmp_path, batch_size=5)
    assert report.rows > 0
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {MANIFEST} | {f.name for f in report.files}  # no lock file, no temp file
    with (
        directory_lock(tmp_path, "a prune"),
        pytest.raises(flowscope.ConflictError, match="running"),
    ):
        client.retention.prune(archive_to=tmp_path)
    assert client.retention.prune(archive_to=tmp_path).rows == 0  # the lock went with its holder


def test_ages_too_long_are_validation_errors(client: flowscope.Client, tmp_path: Path) -> None:
    from datetime import timedelta

    archive = tmp_path / "archive"
    for age in ("99999999999D", "999999999W", "999999D", timedelta.max):
        with pytest.raises(flowscope.ValidationError, match="older_than"):
            client.retention.prune(older_than=age, archive_to=archive, dry_run=True)
        with pytest.raises(flowscope.ValidationError, match="older_than"):
            client.retention.prune(older_than=age, archive_to=archive)
    assert list(tmp_path.iterdir()) == []  # refused before anything was created
