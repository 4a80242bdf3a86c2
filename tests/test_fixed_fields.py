"""An update may not touch what never changes after creation (``XUpdate.fixed``).

The update models are derived from the bases (every field optional, minus the fixed
ones); a caller who slips a fixed field in gets a ValidationError before the database
is touched, and the row, read back over a separate connection, is as it was.
"""

from __future__ import annotations

from typing import Any

import flowscope
import pytest
import sqlalchemy as sa


def _row(engine: sa.Engine, table: str, id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(sa.text(f"SELECT * FROM {table} WHERE id = :id"), {"id": id}).one()
    return dict(row._mapping)


@pytest.mark.parametrize(
    "field, value",
    [("id", "wf_stolen"), ("created_by", "mallory"), ("version", 99), ("created_at", "2020-01-01")],
)
def test_a_workflow_update_refuses_fixed_fields(
    client: flowscope.Client, engine: sa.Engine, field: str, value: Any
) -> None:
    wf = client.workflows.create(name="w", owner="ana")
    before = _row(engine, "workflows", wf.id)
    with pytest.raises(flowscope.ValidationError, match=field):
        client.workflows.update(wf.id, **{field: value, "name": "renamed"})
    assert _row(engine, "workflows", wf.id) == before


@pytest.mark.parametrize(
    "field, value",
    [
        ("id", "ex_stolen"),
        ("workflow_id", "wf_other"),
        ("organization_id", "org_other"),
        ("parameters", {"n": 1}),
        ("status", "completed"),
    ],
)
def test_an_execution_update_refuses_fixed_fields(
    client: flowscope.Client, engine: sa.Engine, field: str, value: Any
) -> None:
    wf = client.workflows.create(name="w", owner="ana")
    ex = client.executions.create(workflow_id=wf.id)
    before = _row(engine, "executions", ex.id)
    with pytest.raises(flowscope.ValidationError, match=field):
        client.executions.update(ex.id, **{field: value, "trace_id": "t1"})
    assert _row(engine, "executions", ex.id) == before
