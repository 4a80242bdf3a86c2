"""Small shared helpers for the CRUD tests (not fixtures)."""

from __future__ import annotations

from typing import Any

import flowscope
import sqlalchemy as sa


def make_workflow(client: flowscope.Client, **fields: Any) -> flowscope.WorkflowPublic:
    values: dict[str, Any] = {"name": "wf", "owner": "ana", "nodes": [], "edges": []}
    values.update(fields)
    return client.workflows.create(**values)


def row_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t: int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one())
            for t in ("workflows", "executions", "users", "organizations", "audit_log")
        }


def explain(engine: sa.Engine, stmt: sa.Select[Any]) -> str:
    """EXPLAIN a statement with enable_seqscan off (tables in tests are tiny)."""
    compiled = stmt.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    with engine.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")
        rows = conn.exec_driver_sql("EXPLAIN " + str(compiled), dict(compiled.params)).all()
    return "\n".join(r[0] for r in rows)
