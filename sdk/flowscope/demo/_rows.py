"""Building the demo rows: all of them from ``seed`` and ``now`` with numpy's seeded generator.

:func:`build` returns plain lists (organizations, users, workflows) and a pandas DataFrame
(executions), vectorised with numpy; nothing here touches a database.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ._cast import (
    ACTIONS,
    ARCHIVED_AGE,
    CADENCES,
    INCIDENT_LENGTH,
    INCIDENT_OFFSET,
    MARKER_ORG,
    MIDDLE_KINDS,
    NODE_KINDS,
    ORG_DOMAINS,
    ORGANIZATIONS,
    PIPELINE_ACTIONS,
    REGRESSION_AGE,
    REGRESSION_FACTOR,
    SIGNATURES,
    SUBJECTS,
    TIMEOUT_TYPE,
    UNUSABLE_PASSWORD,
    USERS,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["build"]


def build(params: dict[str, Any]) -> dict[str, Any]:
    """All rows, as plain lists (small tables) and a pandas DataFrame (executions)."""
    import numpy as np

    rng = np.random.default_rng(params["seed"])
    now = datetime.fromisoformat(params["now"])
    orgs, users = _organizations_and_users(params, now)
    wf = _workflows(rng, params["workflows"], now, params["days"], users)
    execs, story = _executions(rng, params, now, wf, users)
    orgs[0]["settings"] = {**orgs[0]["settings"], "demo_story": story}
    return {"organizations": orgs, "users": users, "workflows": wf, "executions": execs}


def _organizations_and_users(
    params: dict[str, Any], now: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    created = now - timedelta(days=params["days"] + 400)
    orgs = [
        {
            "id": org_id,
            "name": name,
            "slug": slug,
            "settings": {"demo": params} if org_id == MARKER_ORG else {},
            "created_at": created,
            "updated_at": created,
        }
        for org_id, name, slug, _share in ORGANIZATIONS
    ]
    users = [
        {
            "id": f"usr_demo_{username}",
            "username": f"demo.{username}",
            "email": f"{username}@{ORG_DOMAINS[org]}",
            "password_hash": UNUSABLE_PASSWORD,
            "full_name": full_name,
            "organization_id": org,
            "is_active": True,
            "is_admin": i % 4 == 0,
            "email_verified": True,
            "scopes": ["workflow:read", "workflow:write", "workflow:execute"],
            "created_at": created + timedelta(days=i),
            "updated_at": created + timedelta(days=i),
        }
        for i, (username, full_name, org) in enumerate(USERS)
    ]
    return orgs, users


def _workflows(
    rng: np.random.Generator, n: int, now: datetime, days: int, users: list[dict[str, Any]]
) -> dict[str, Any]:
    import numpy as np

    subjects = list(SUBJECTS)
    combos = [(s, a) for s in subjects for a in ACTIONS]
    order = rng.permutation(len(combos))
    org_ids = [o[0] for o in ORGANIZATIONS]
    org_of = rng.choice(len(org_ids), size=n, p=[o[3] for o in ORGANIZATIONS])
    users_by_org = {org: [u for u in users if u["organization_id"] == org] for org in org_ids}
    status = rng.choice(["active", "archived", "draft"], size=n, p=[0.87, 0.08, 0.05])
    status[:10] = "active"  # the most popular ones are all running
    cadence_idx = rng.choice(len(CADENCES), size=n, p=[0.25, 0.35, 0.4])
    n_steps = rng.integers(3, 12, size=n)
    n_versions = rng.choice([1, 2, 3, 4, 5], size=n, p=[0.3, 0.3, 0.2, 0.12, 0.08])
    median_s = np.clip(np.exp(rng.normal(np.log(40.0), 1.1, size=n)), 1.5, 1800.0)
    sigma = rng.uniform(0.25, 0.7, size=n)
    fail_rate = rng.beta(1.5, 45.0, size=n)
    flaky = rng.choice(n, size=max(2, n // 25), replace=False)
    fail_rate[flaky] = rng.beta(5.0, 25.0, size=flaky.size)
    popularity = 1.0 / (np.arange(n) + 4.0) ** 1.05
    popularity = popularity[rng.permutation(n)]
    popularity[0:10] = np.sort(popularity)[::-1][:10]  # wf_demo_0001..0010 lead the pack
    start = now - timedelta(days=days)

    rows: list[dict[str, Any]] = []
    step_names: list[list[str]] = []
    sig_step = np.zeros((n, len(SIGNATURES)), dtype=np.int64)
    sig_weights = np.zeros((n, len(SIGNATURES)))
    queries_warehouse = np.zeros(n, dtype=bool)
    for i in range(n):
        subject, action = combos[order[i % len(combos)]]
        name = f"{subject} {action}" + (f" {i // len(combos) + 1}" if i >= len(combos) else "")
        org = org_ids[org_of[i]]
        owner = users_by_org[org][int(rng.integers(len(users_by_org[org])))]["id"]
        cadence = CADENCES[cadence_idx[i]]
        tags = [SUBJECTS[subject], cadence]
        if action in PIPELINE_ACTIONS:
            tags.append("pipeline")
        for extra, p in (("critical", 0.2), ("pii", 0.15), ("experimental", 0.08)):
            if rng.random() < p:
                tags.append(extra)
        # experimental work breaks more often, critical work is guarded better
        fail_rate[i] *= (2.5 if "experimental" in tags else 1.0) * (
            0.5 if "critical" in tags else 1.0
        )
        kinds = ["trigger"]
        kinds += [str(k) for k in rng.choice(MIDDLE_KINDS, size=int(n_steps[i]) - 2)]
        kinds.append("write_file" if rng.random() < 0.5 else "notify")
        if SUBJECTS[subject] in ("data", "analytics") or action in ("etl", "reconcile"):
            kinds[1] = "sql_query"  # warehouse work starts with a query
        nodes: list[dict[str, Any]] = [
            {
                "id": f"n{k + 1}",
                "type": kind,
                "name": _node_name(kind, subject, kinds[:k].count(kind)),
                "position": {"x": 240 * k, "y": 0 if kind != "branch" else 80},
            }
            for k, kind in enumerate(kinds)
        ]
        edges = [
            {"id": f"e{k + 1}", "source": f"n{k + 1}", "target": f"n{k + 2}"}
            for k in range(len(kinds) - 1)
        ]
        for k, kind in enumerate(kinds[:-2]):
            if kind == "branch":  # a branch may skip its successor
                edges.append(
                    {"id": f"e{len(edges) + 1}", "source": f"n{k + 1}", "target": f"n{k + 3}"}
                )
        step_names.append([node["name"] for node in nodes])
        queries_warehouse[i] = "sql_query" in kinds
        for s, (_type, _msg, kind, weight) in enumerate(SIGNATURES):
            where = [k for k, kk in enumerate(kinds) if kk == kind]
            if where:
                sig_step[i, s] = where[0]
                sig_weights[i, s] = weight * rng.uniform(0.3, 1.7)
            else:  # rare elsewhere: at a middle step
                sig_step[i, s] = len(kinds) // 2
                sig_weights[i, s] = 0.05 * weight
        created_at = start - timedelta(days=float(rng.uniform(5, 300)))
        rows.append(
            {
                "id": f"wf_demo_{i + 1:04d}",
                "name": name,
                "description": f"{action.capitalize()} {subject} ({cadence}) for {org.removeprefix('org_demo_').capitalize()}.",
                "version": int(n_versions[i]),
                "owner": owner,
                "organization_id": org,
                "nodes": nodes,
                "edges": edges,
                "metadata": {"cadence": cadence, "team": SUBJECTS[subject]},
                "tags": tags,
                "status": str(status[i]),
                "is_public": bool(rng.random() < 0.1),
                "created_at": created_at,
                "updated_at": created_at,
                "created_by": owner,
                "updated_by": owner,
            }
        )
    sig_weights /= sig_weights.sum(axis=1, keepdims=True)
    return {
        "rows": rows,
        "org_of": org_of,
        "status": status,
        "cadence": cadence_idx,
        "n_steps": n_steps,
        "n_versions": n_versions,
        "median_s": median_s,
        "sigma": sigma,
        "fail_rate": fail_rate,
        "popularity": popularity,
        "step_names": step_names,
        "queries_warehouse": queries_warehouse,
        "sig_step": sig_step,
        "sig_cum": np.cumsum(sig_weights, axis=1),
    }


def _node_name(kind: str, subject: str, earlier: int) -> str:
    """A readable step name, unique within its workflow."""
    if kind == "trigger":
        return "Start"
    name = f"{NODE_KINDS[kind]} {subject}"
    return f"{name} ({earlier + 1})" if earlier else name


def _hour_profiles(start: datetime, hours: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights per hour of the range: office-hours work and nightly batches."""
    import numpy as np

    stamps = np.datetime64(start.replace(tzinfo=None), "h") + np.arange(hours)
    hour = (stamps - stamps.astype("datetime64[D]")).astype(int)
    weekday = (stamps.astype("datetime64[D]").astype(int) + 3) % 7  # 0 = Monday
    trend = 0.8 + 0.4 * np.arange(hours) / hours
    office = 0.15 + np.exp(-0.5 * ((hour - 14.0) / 3.5) ** 2)
    office = office * np.where(weekday < 5, 1.0, np.where(weekday == 5, 0.4, 0.3)) * trend
    nightly = 0.03 + np.exp(-0.5 * ((hour - 2.0) / 0.8) ** 2)
    nightly = nightly * np.where(weekday < 5, 1.0, 0.75) * trend
    return office / office.sum(), nightly / nightly.sum()


def _executions(
    rng: np.random.Generator,
    params: dict[str, Any],
    now: datetime,
    wf: dict[str, Any],
    users: list[dict[str, Any]],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    import numpy as np
    import pandas as pd

    n = params["executions"]
    days = params["days"]
    n_wf = params["workflows"]
    start = now - timedelta(days=days)
    hours = days * 24
    rows_wf = wf["rows"]

    # which workflow: popularity, hourly ones run more, drafts never
    weight = wf["popularity"] * np.where(wf["cadence"] == 0, 2.5, 1.0)
    weight = np.where(wf["status"] == "draft", 0.0, weight)
    w_idx = rng.choice(n_wf, size=n, p=weight / weight.sum())

    # when: seasonality by cadence; archived workflows stopped 40 days before now
    office, nightly = _hour_profiles(start, hours)
    archived_cut = hours - int(ARCHIVED_AGE / timedelta(hours=1))
    hour_idx = np.empty(n, dtype=np.int64)
    is_nightly = wf["cadence"][w_idx] == 1
    is_archived = wf["status"][w_idx] == "archived"
    for mask_n in (False, True):
        for mask_a in (False, True):
            sel = np.flatnonzero((is_nightly == mask_n) & (is_archived == mask_a))
            profile = (nightly if mask_n else office).copy()
            if mask_a:
                profile[archived_cut:] = 0.0
                profile /= profile.sum()
            hour_idx[sel] = rng.choice(hours, size=sel.size, p=profile)
    start_us = int(start.timestamp() * 1_000_000)
    created_us = start_us + hour_idx * 3_600_000_000 + rng.integers(0, 3_600_000_000, size=n)
    created_us = (created_us // 1000) * 1000  # milliseconds
    order = np.argsort(created_us, kind="stable")
    w_idx, created_us, hour_idx = w_idx[order], created_us[order], hour_idx[order]
    now_us = int(now.timestamp() * 1_000_000)

    # which version: change times spread over the range; the regression is the last one
    reg = _regression_workflow(wf)
    if wf["n_versions"][reg] < 3:  # a history of healthy versions before the slow one
        wf["n_versions"][reg] = 3
        rows_wf[reg]["version"] = 3
    reg_version = int(wf["n_versions"][reg])
    max_v = int(wf["n_versions"].max())
    changes = np.sort(rng.uniform(start_us, now_us - 2 * 86_400e6, size=(n_wf, max_v - 1)), axis=1)
    changes = np.where(
        np.arange(changes.shape[1]) < (wf["n_versions"] - 1)[:, None], changes, np.inf
    )
    reg_since_us = now_us - int(REGRESSION_AGE / timedelta(microseconds=1))
    changes[reg, :] = np.inf
    changes[reg, : reg_version - 1] = np.linspace(
        start_us + 10 * 86_400e6, reg_since_us, reg_version
    )[1:]
    changes[reg, reg_version - 2] = reg_since_us
    version = 1 + (created_us[:, None] > changes[w_idx]).sum(axis=1)
    for i in range(n_wf):  # the workflow row was last updated by its last version change
        finite = changes[i][np.isfinite(changes[i])]
        if finite.size:
            moment = datetime.fromtimestamp(float(finite.max()) / 1e6, tz=UTC)
            rows_wf[i]["updated_at"] = max(rows_wf[i]["updated_at"], moment)

    # how long: log-normal per workflow, slower in busy hours, the regression after its version
    load = office[hour_idx] / office.max()
    duration = wf["median_s"][w_idx] * np.exp(wf["sigma"][w_idx] * rng.standard_normal(n))
    duration *= 1.0 + 0.25 * load
    duration = np.where(
        (w_idx == reg) & (version == reg_version), duration * REGRESSION_FACTOR, duration
    )
    timeout_s = np.ceil(wf["median_s"] * 6.0 / 60.0) * 60.0  # per workflow, whole minutes
    queue_s = rng.exponential(0.4 + 3.0 * load) + rng.exponential(0.2, size=n)

    # how it ended
    n_steps = wf["n_steps"][w_idx]
    fail_p = wf["fail_rate"][w_idx]
    incident_start_us = now_us - int(INCIDENT_OFFSET / timedelta(microseconds=1))
    incident_end_us = incident_start_us + int(INCIDENT_LENGTH / timedelta(microseconds=1))
    uses_warehouse = wf["queries_warehouse"][w_idx]
    in_incident = (
        (created_us >= incident_start_us) & (created_us < incident_end_us) & uses_warehouse
    )
    u = rng.random(n)
    failed = u < fail_p
    incident_fail = in_incident & (rng.random(n) < 0.8)
    cancelled = ~failed & (u < fail_p + 0.004)
    timed_out = ~failed & ~cancelled & (duration > timeout_s[w_idx])
    sig = (rng.random(n)[:, None] > wf["sig_cum"][w_idx]).sum(axis=1)
    sig = np.minimum(sig, len(SIGNATURES) - 1)
    sig = np.where(incident_fail, 0, sig)
    failed = failed | incident_fail
    timed_out &= ~failed
    cancelled &= ~failed

    stop_step = wf["sig_step"][w_idx, sig]
    stop_step = np.where(timed_out, (n_steps * 0.7).astype(np.int64), stop_step)
    cancel_step = (rng.random(n) * n_steps).astype(np.int64)
    stop_step = np.where(cancelled, cancel_step, stop_step)
    partial = (stop_step + rng.uniform(0.2, 0.9, size=n)) / n_steps
    run_s = np.where(failed | cancelled, duration * partial, duration)
    run_s = np.where(timed_out, timeout_s[w_idx] + rng.uniform(0.0, 2.0, size=n), run_s)
    run_s = np.round(run_s, 3)

    started_us = created_us + np.round(queue_s * 1000).astype(np.int64) * 1000
    completed_us = started_us + np.round(run_s * 1000).astype(np.int64) * 1000
    status = np.full(n, "completed", dtype=object)
    status[failed] = "failed"
    status[cancelled] = "cancelled"
    status[timed_out] = "timeout"
    # a few are still in flight at ``now``: the latest ones, and any that would end after it
    in_flight = np.zeros(n, dtype=bool)
    in_flight[-max(3, n // 10_000) :] = True
    waiting = np.zeros(n, dtype=bool)
    waiting[-max(1, n // 30_000) :] = True
    queued = (started_us > now_us) | waiting
    running = ((completed_us > now_us) | in_flight) & ~queued
    started_us = np.where(running, np.minimum(started_us, now_us - 1_000_000), started_us)
    status[running] = "running"
    status[queued] = "queued"
    finished = ~(running | queued)

    steps_completed = np.where(failed | cancelled | timed_out, stop_step, n_steps)
    elapsed_frac = np.clip(
        (now_us - started_us) / np.maximum(completed_us - started_us, 1), 0, 0.99
    )
    steps_completed = np.where(running, (elapsed_frac * n_steps).astype(np.int64), steps_completed)
    steps_completed = np.where(queued, 0, steps_completed)
    names = wf["step_names"]
    current_step = np.array(
        [
            names[w][min(s, len(names[w]) - 1)] if st not in ("completed", "queued") else None
            for w, s, st in zip(
                w_idx.tolist(), steps_completed.tolist(), status.tolist(), strict=True
            )
        ],
        dtype=object,
    )

    # who and how it was triggered
    org_ids = [o[0] for o in ORGANIZATIONS]
    org = np.array(org_ids, dtype=object)[wf["org_of"][w_idx]]
    wf_owner = np.array([r["owner"] for r in rows_wf], dtype=object)[w_idx]
    org_users = {
        o: np.array([x["id"] for x in users if x["organization_id"] == o], dtype=object)
        for o in org_ids
    }
    other = np.empty(n, dtype=object)
    pick = rng.random(n)
    for o in org_ids:
        sel = org == o
        pool = org_users[o]
        other[sel] = pool[(pick[sel] * pool.size).astype(np.int64)]
    owner = np.where(rng.random(n) < 0.8, wf_owner, other)
    scheduled = wf["cadence"][w_idx] < 2
    trigger = np.where(scheduled, "schedule", np.where(rng.random(n) < 0.6, "api", "manual"))
    trace_hex = rng.bytes(16 * n).hex()
    trace_id = np.array([trace_hex[i * 32 : (i + 1) * 32] for i in range(n)], dtype=object)
    trace_id[trigger != "api"] = None
    records = np.round(np.exp(rng.normal(7.0, 1.5, size=n))).astype(np.int64)
    worker = rng.integers(1, 17, size=n)
    msg_n = rng.integers(1, 100_000, size=n)
    attempt = rng.integers(1, 4, size=n)
    retry = rng.integers(5, 121, size=n)

    error = np.full(n, None, dtype=object)
    for s, (etype, template, _kind, _w) in enumerate(SIGNATURES):
        sel = np.flatnonzero(failed & (sig == s))
        fill = (
            {"n": attempt}
            if "attempt" in template
            else {"n": retry}
            if "retry" in template
            else {"n": msg_n}
        )
        values = fill["n"][sel]
        error[sel] = [
            json.dumps({"type": etype, "message": template.format(n=int(v)), "step": names[w][st]})
            for v, w, st in zip(
                values.tolist(), w_idx[sel].tolist(), stop_step[sel].tolist(), strict=True
            )
        ]
    sel = np.flatnonzero(timed_out & finished)
    error[sel] = [
        json.dumps(
            {"type": TIMEOUT_TYPE, "message": f"execution exceeded its timeout of {int(t)}s"}
        )
        for t in timeout_s[w_idx[sel]].tolist()
    ]
    error[~finished] = None
    result = np.array([f'{{"records_processed": {r}}}' for r in records.tolist()], dtype=object)
    result[status != "completed"] = None
    parameters = np.array(
        [f'{{"trigger": "{t}", "env": "prod"}}' for t in trigger.tolist()], dtype=object
    )
    metadata = np.array(
        [
            f'{{"workflow_version": {v}, "worker": "worker-{k:02d}"}}'
            for v, k in zip(version.tolist(), worker.tolist(), strict=True)
        ],
        dtype=object,
    )

    def ts(values: np.ndarray, keep: np.ndarray) -> pd.Series:
        out = pd.Series(pd.to_datetime(values, unit="us", utc=True))
        return out.where(keep)

    created = ts(created_us, np.ones(n, dtype=bool))
    started = ts(started_us, ~queued)
    completed = ts(completed_us, finished)
    frame = pd.DataFrame(
        {
            "id": [f"exe_demo_{i + 1:07d}" for i in range(n)],
            "workflow_id": np.array([r["id"] for r in rows_wf], dtype=object)[w_idx],
            "owner": owner,
            "organization_id": org,
            "status": status,
            "parameters": parameters,
            "result": result,
            "error": error,
            "started_at": started,
            "completed_at": completed,
            "duration_seconds": pd.Series(run_s).where(finished),
            "current_step": current_step,
            "steps_completed": steps_completed,
            "steps_total": n_steps,
            "metadata": metadata,
            "trace_id": trace_id,
            "created_at": created,
            "updated_at": completed.fillna(started).fillna(created),
        },
    )
    story = {
        "regression_workflow_id": rows_wf[reg]["id"],
        "regression_workflow_name": rows_wf[reg]["name"],
        "regression_version": reg_version,
        "regression_since": datetime.fromtimestamp(reg_since_us / 1e6, tz=UTC).isoformat(),
        "incident_start": datetime.fromtimestamp(incident_start_us / 1e6, tz=UTC).isoformat(),
        "incident_end": datetime.fromtimestamp(incident_end_us / 1e6, tz=UTC).isoformat(),
    }
    return frame, story


def _regression_workflow(wf: dict[str, Any]) -> int:
    """The second busiest active workflow of the first organization."""
    import numpy as np

    weight = wf["popularity"] * np.where(wf["cadence"] == 0, 2.5, 1.0)
    candidates = np.flatnonzero((wf["org_of"] == 0) & (wf["status"] == "active"))
    ranked = candidates[np.argsort(-weight[candidates], kind="stable")]
    return int(ranked[min(1, ranked.size - 1)])
