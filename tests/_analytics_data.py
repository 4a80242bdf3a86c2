"""Test data for the analytics tests: inserted with SQLAlchemy Core, read back with plain SQL."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import sqlalchemy as sa
from flowscope.models import EXECUTIONS, ORGANIZATIONS, WORKFLOWS

BASE = datetime(2026, 3, 1, tzinfo=UTC)  # spans the US DST change of 2026-03-08
DAYS = 14
ORGS = ("org_a", "org_b")
STATUSES = ["completed"] * 6 + ["failed"] * 2 + ["timeout", "cancelled", "running", "queued"]
ERRORS = [
    ("ConnectionError", "connection to 10.0.0.{k} refused after {n} ms"),
    ("TimeoutError", "step {k} timed out after {n}s"),
    ("KeyError", "missing key 'job_{k}' in payload 3f2a9c1e-1b2c-4d5e-8f90-{k:012d}"),
]


def workflows() -> list[dict[str, Any]]:
    out = []
    specs = [
        ("wf_etl", "etl", "ana", "org_a", ["etl", "nightly", "prod"], None),
        ("wf_ml", "train", "ben", "org_a", ["ml", "prod"], None),
        ("wf_rep", "report", "ana", "org_a", [], None),  # untagged
        (
            "wf_old",
            "legacy",
            "cid",
            "org_a",
            ["etl", "legacy"],
            BASE + timedelta(days=3),
        ),  # deleted
        ("wf_b1", "etl", "dan", "org_b", ["etl", "prod"], None),  # same name, other org
        ("wf_b2", "sync", "dan", "org_b", ["sync"], None),
        ("wf_one", "single", "eve", "org_b", ["ml"], None),  # exactly one execution
    ]
    for wid, name, owner, org, tags, deleted in specs:
        out.append(
            {
                "id": wid,
                "name": name,
                "owner": owner,
                "organization_id": org,
                "nodes": [],
                "edges": [],
                "tags": tags,
                "created_by": owner,
                "updated_by": owner,
                "deleted_at": deleted,
                "created_at": BASE - timedelta(days=30),
            }
        )
    return out


def executions(n: int = 300, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    wfs = [w for w in workflows() if w["id"] != "wf_one"]
    rows = []
    for i in range(n):
        wf = rng.choice(wfs)
        if i % 25 == 0:  # exactly on a UTC midnight / hour boundary
            created = BASE + timedelta(days=rng.randrange(DAYS), hours=rng.choice([0, 0, 5]))
        else:
            created = BASE + timedelta(seconds=rng.uniform(0, DAYS * 86400))
        rows.append(_execution(rng, f"ex_{i:04d}", wf, created))
    rows.append(
        _execution(
            random.Random(1),
            "ex_one",
            {"id": "wf_one", "owner": "eve", "organization_id": "org_b"},
            BASE + timedelta(days=2, hours=3),
            status="completed",
        )
    )
    return rows


def _execution(
    rng: random.Random, eid: str, wf: dict[str, Any], created: datetime, status: str | None = None
) -> dict[str, Any]:
    status = status or rng.choice(STATUSES)
    started = completed = duration = None
    error = None
    if status != "queued" and not (status == "cancelled" and rng.random() < 0.5):
        started = created + timedelta(seconds=round(rng.expovariate(1 / 40), 3))
    if status in ("completed", "failed", "timeout", "cancelled") and started is not None:
        secs = round(rng.lognormvariate(3, 1.2), 3)
        completed = started + timedelta(seconds=secs)
        duration = None if rng.random() < 0.1 else Decimal(str(secs))  # some NULL durations
    if status in ("failed", "timeout"):
        kind, template = rng.choice(ERRORS)
        error = {
            "type": kind,
            "message": template.format(k=rng.randrange(3), n=rng.randrange(1000)),
        }
        if rng.random() < 0.1:
            error = None
    steps_total = rng.randrange(0, 6)
    version = rng.choice([None, "1", "2", "2"])
    return {
        "id": eid,
        "workflow_id": wf["id"],
        "owner": rng.choice([wf["owner"], "ops"]),
        "organization_id": wf["organization_id"],
        "status": status,
        "error": error,
        "started_at": started,
        "completed_at": completed,
        "duration_seconds": duration,
        "current_step": rng.choice(["fetch", "transform", "load", None]),
        "steps_completed": rng.randrange(0, steps_total + 1),
        "steps_total": steps_total,
        "metadata": {} if version is None else {"workflow_version": version},
        "created_at": created,
        "updated_at": created,
    }


def insert(engine: sa.Engine, n: int = 300, seed: int = 7) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(ORGANIZATIONS), [{"id": o, "name": o, "slug": o} for o in ORGS])
        conn.execute(sa.insert(WORKFLOWS), workflows())
        rows = executions(n, seed)
        # "metadata" is the column name; the Core table keys columns by name
        conn.execute(sa.insert(EXECUTIONS), rows)


RAW_SQL = """
SELECT e.id, e.workflow_id, e.owner, e.organization_id, e.status, e.error,
       e.started_at, e.completed_at, e.duration_seconds::float8 AS duration_seconds,
       e.current_step, e.steps_completed, e.steps_total,
       e.metadata->>'workflow_version' AS workflow_version, e.created_at,
       w.name AS workflow, w.tags, w.deleted_at AS workflow_deleted_at
FROM executions e JOIN workflows w ON w.id = e.workflow_id
"""


def raw(engine: sa.Engine, include_deleted: bool = False) -> pd.DataFrame:
    """Every execution with its workflow's name/tags, read with plain SQL (no flowscope)."""
    with engine.connect() as conn:
        frame = pd.read_sql(sa.text(RAW_SQL), conn)
    for col in ("started_at", "completed_at", "created_at", "workflow_deleted_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    if not include_deleted:
        frame = frame[frame["workflow_deleted_at"].isna()]
    frame["day"] = frame["created_at"].dt.floor("D")
    return frame.reset_index(drop=True)
