"""Small shared helpers for the CRUD tests (not fixtures)."""

from __future__ import annotations

from typing import Any

import flowscope
import sqlalchemy as sa


def acting_as(client: flowscope.Client, user_id: str) -> flowscope.Client:
    """The same admin login and pool, with ``user_id`` as the acting user."""
    from flowscope._session import Session

    session = Session(client.engine, url=client.url, user_id=user_id, owns_engine=False)
    return flowscope.Client(session)


def two_organizations(client: flowscope.Client, scopes: list[str] | None = None) -> dict[str, Any]:
    """Organizations A and B, each with a workflow (tagged a/b), an execution and a user
    ``user_a``/``user_b`` (password "a long passphrase"; ``scopes`` when given)."""
    out: dict[str, Any] = {}
    for key in ("a", "b"):
        org = client.organizations.create(name=key.upper(), slug=key)
        wf = make_workflow(client, name=f"wf {key}", organization_id=org.id, tags=[key])
        ex = client.executions.create(workflow_id=wf.id)
        extra = {"scopes": scopes} if scopes is not None else {}
        user = client.users.create(
            username=f"user_{key}",
            email=f"{key}@example.com",
            password="a long passphrase",
            organization_id=org.id,
            **extra,
        )
        out[key] = {"org": org, "wf": wf, "ex": ex, "user": user}
    return out


OWN = ["workflow:read", "workflow:write", "workflow:execute"]


def office(client: flowscope.Client) -> dict[str, Any]:
    """Organization A with users ana and bo (own-and-public reach), a reader, a user without
    scopes and an organization-wide writer; organization B with a user. Ana owns a private
    and a public workflow (the public one with a run owned by ana), every other user of A a
    private one. Returns the organizations, user ids, workflows, that run and scoped clients."""
    org = client.organizations.create(name="A", slug="a")
    other = client.organizations.create(name="B", slug="b")
    specs = {
        "ana": OWN,
        "bo": OWN,
        "reader": ["workflow:read"],
        "none": [],
        "wide": ["workflow:read:all", "workflow:write:all", "workflow:execute"],
    }
    users = {
        name: client.users.create(
            username=name, email=f"{name}@example.com", organization_id=org.id, scopes=scopes
        ).id
        for name, scopes in specs.items()
    }
    users["b"] = client.users.create(
        username="b_user", email="b@example.com", organization_id=other.id, scopes=OWN
    ).id
    wfs: dict[str, Any] = {}
    for key, owner, public in (
        ("ana_private", "ana", False),
        ("ana_public", "ana", True),
        *((f"{n}_private", n, False) for n in ("bo", "reader", "none", "wide")),
    ):
        wfs[key] = client.workflows.create(
            name=key, owner=users[owner], organization_id=org.id, is_public=public
        )
    run = client.executions.create(workflow_id=wfs["ana_public"].id, owner=users["ana"])
    scoped = {n: client.scoped(org.id, user_id=users[n]) for n in specs}
    return {"org": org, "other": other, "users": users, "wfs": wfs, "run": run, "as": scoped}


def first_row(engine: sa.Engine, sql: str, **params: Any) -> Any:
    """The first row of ``sql`` read on a separate (superuser) connection."""
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).first()


def change_some_rows(client: flowscope.Client, engine: sa.Engine) -> None:
    """On the analytics data (tests/_analytics_data.py): a new workflow with one started
    execution, 3 running executions completed, 4 queued ones deleted, ``wf_ml`` soft-deleted
    (2 added, >= 4 changed, 4 removed)."""
    wf = client.workflows.create(
        name="new", owner="ana", nodes=[], edges=[], tags=["fresh"], organization_id="org_a"
    )
    ex = client.executions.create(workflow_id=wf.id)
    client.executions.start(ex.id)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE executions SET status = 'completed', duration_seconds = 1.25"
                " WHERE id IN (SELECT id FROM executions WHERE status = 'running' LIMIT 3)"
            )
        )
        conn.execute(
            sa.text(
                "DELETE FROM executions WHERE id IN"
                " (SELECT id FROM executions WHERE status = 'queued' LIMIT 4)"
            )
        )
    client.workflows.delete("wf_ml")  # soft: an update of deleted_at


def make_workflow(client: flowscope.Client, **fields: Any) -> flowscope.WorkflowPublic:
    values: dict[str, Any] = {"name": "wf", "owner": "ana", "nodes": [], "edges": []}
    values.update(fields)
    return client.workflows.create(**values)


TABLES = ("workflows", "executions", "users", "organizations", "audit_log")
_COUNTS = sa.text("SELECT " + ", ".join(f"(SELECT count(*) FROM {t}) AS {t}" for t in TABLES))


def row_counts(engine: sa.Engine) -> dict[str, int]:
    """Rows in every table (one query)."""
    with engine.connect() as conn:
        return dict(conn.execute(_COUNTS).one()._mapping)


def explain(engine: sa.Engine, stmt: sa.Select[Any]) -> str:
    """EXPLAIN a statement with enable_seqscan off (tables in tests are tiny)."""
    compiled = stmt.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    with engine.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")
        rows = conn.exec_driver_sql("EXPLAIN " + str(compiled), dict(compiled.params)).all()
    return "\n".join(r[0] for r in rows)
