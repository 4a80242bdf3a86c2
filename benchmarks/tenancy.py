"""What identity-bound tenancy costs a scoped client: list, count and analytics, before and after.

Before (revision 0005): the scoped client logged in as the owner and ran ``SET LOCAL ROLE``
with a transaction-local organization setting. After (0006): it logs in as its own role,
policies map ``session_user`` to the organization (an InitPlan, once per statement), its
pool resets connections with ``DISCARD ALL`` at check-in.

The same generated database (``benchmarks/datagen.py``, 20 organizations) serves both: each
round downgrades it to 0005 and runs the *baseline* checkout's code (``--baseline-sdk``, an
older checkout's ``sdk`` directory, e.g. a ``git worktree`` of the commit before), then
upgrades it to 0006 and runs this checkout's code, each in a fresh process, interleaved.

    git worktree add /tmp/flowscope-before <commit>   # the code to compare with
    python -m benchmarks.tenancy --executions 1000000 --baseline-sdk /tmp/flowscope-before/sdk

Three callers: the organization's own login, a user with ``workflow:read:all`` and a user
with plain scopes (who, from revision 0007, sees its own and the public workflows only).
``--baseline-revision`` names the baseline's schema head (default 0005).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ORG = "org_001"


def _calls(client: Any) -> dict[str, Any]:
    return {
        "workflows.list(limit=50)": lambda: client.workflows.list(limit=50),
        "executions.list(limit=50)": lambda: client.executions.list(limit=50),
        "executions.count()": lambda: client.executions.count(),
        "executions.count(status=failed)": lambda: client.executions.count(status="failed"),
        "analytics.status_breakdown(by=workflow_id)": lambda: client.analytics.status_breakdown(
            by="workflow_id"
        ),
        "analytics.durations(by=workflow_id)": lambda: client.analytics.durations(by="workflow_id"),
        "analytics.status_breakdown(freq=1D)": lambda: client.analytics.status_breakdown(freq="1D"),
    }


# who calls: the organization's own login, a user with organization-wide reach, and a user
# with plain scopes (since revision 0007: its own and the public workflows only)
WHO = {"org login": None, "wide user": "bench_wide", "own+public user": "bench_owner"}


def _users(url: str) -> None:
    """The two benchmark users of ORG (the owner owns ORG's first workflow's owner id)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        owner = conn.execute(
            sa.text("SELECT min(owner) FROM workflows WHERE organization_id = :o"), {"o": ORG}
        ).scalar()
        conn.execute(
            sa.text(
                "INSERT INTO users (id, username, email, password_hash, organization_id, scopes)"
                " VALUES (:w, :w, :we, '!', :o,"
                ' \'["workflow:read", "workflow:read:all", "workflow:execute"]\'),'
                " (:u, 'bench_owner', 'bench_owner@bench.io', '!', :o,"
                ' \'["workflow:read", "workflow:execute"]\')'
                " ON CONFLICT DO NOTHING"
            ),
            {"w": WHO["wide user"], "we": "bench_wide@bench.io", "u": owner, "o": ORG},
        )
    WHO["own+public user"] = owner
    engine.dispose()


def child(url: str, repeats: int, who: str) -> None:
    """In a fresh process: time every call of scoped clients; print JSON medians."""
    import flowscope

    root = flowscope.connect(url)
    out: dict[str, dict[str, float]] = {}
    for name, user in json.loads(who).items():
        scoped = root.scoped(ORG, user_id=user)
        out[name] = {}
        for call_name, call in _calls(scoped).items():
            call()  # warm: the login (provisioned once), the plan cache, the buffers
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                call()
                times.append(time.perf_counter() - started)
            out[name][call_name] = statistics.median(times)
    root.close()
    print(json.dumps(out))


def _run_child(sdk: Path, url: str, repeats: int) -> dict[str, dict[str, float]]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(sdk), str(ROOT)]))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.tenancy",
            "--child",
            "--url",
            url,
            "--repeats",
            str(repeats),
            "--who",
            json.dumps(WHO),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=3600,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _migrate_to(url: str, revision: str) -> None:
    import sqlalchemy as sa
    from flowscope import _migrate

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        current = _migrate.current_revision(conn)
        if current != revision:
            if current is not None and current > revision:
                _migrate.downgrade(conn, revision)
            else:
                _migrate.upgrade(conn, revision)
        conn.commit()
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-sdk", type=Path, default=None)
    parser.add_argument("--baseline-revision", default="0005")
    parser.add_argument("--who", default=None)
    parser.add_argument("--url", default=None)
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args.url, args.repeats, args.who)
        return
    from benchmarks import datagen

    url = args.url or datagen.bench_url()
    datagen.generate(url, executions=args.executions)
    from flowscope import _migrate

    head = _migrate.HEAD_REVISION
    _migrate_to(url, head)
    _users(url)
    sides = {f"after ({head})": (ROOT / "sdk", head)}
    if args.baseline_sdk is not None:
        before = f"before ({args.baseline_revision})"
        sides = {before: (args.baseline_sdk.resolve(), args.baseline_revision), **sides}
    results: dict[str, list[dict[str, dict[str, float]]]] = {side: [] for side in sides}
    for _ in range(args.rounds):
        for side, (sdk, revision) in sides.items():
            _migrate_to(url, revision)
            results[side].append(_run_child(sdk, url, args.repeats))
    _migrate_to(url, head)
    print(
        f"\nscoped clients of {ORG}, {args.executions:,} executions, median of"
        f" {args.rounds} rounds x {args.repeats} calls\n"
    )
    header = f"| who | call | {' | '.join(sides)} |" + (
        " after/before |" if len(sides) == 2 else ""
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for who in WHO:
        for name in _calls(None):
            medians = [statistics.median(r[who][name] for r in results[side]) for side in sides]
            cells = " | ".join(f"{m * 1000:.1f} ms" for m in medians)
            ratio = f" {medians[-1] / medians[0]:.2f} |" if len(medians) == 2 else ""
            print(f"| {who} | {name} | {cells} |{ratio}")


if __name__ == "__main__":
    main()
