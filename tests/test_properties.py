"""Property test: malformed input never escapes as a driver error or leaves a half-written row.

Hypothesis throws dictionaries of valid-looking and hostile values (wrong types,
NUL bytes, lone surrogates, NaN/Infinity, huge numbers, over-long strings,
unknown keys, bad cursors) at create/update/lifecycle/list. Every call must end
in success or a ``flowscope.FlowscopeError``; after an error the tables and the
audit log hold exactly what they held before. About 200 examples in all
(``TRIED`` is printed at the end of the module; run with ``-s``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import flowscope
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ._helpers import make_workflow

TRIED: Counter[str] = Counter()
OUTCOMES: Counter[str] = Counter()

SETTINGS = settings(
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(
        f"\nproperty inputs tried: {sum(TRIED.values())} {dict(TRIED)}; outcomes {dict(OUTCOMES)}"
    )


text = st.text(st.characters(exclude_categories=()), max_size=300)
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
    st.binary(max_size=8),
    st.datetimes(timezones=st.sampled_from([None, UTC])),
)
anything = st.recursive(
    scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(valid, valid, valid, anything)


WORKFLOW_FIELDS = {
    "name": field(st.text(min_size=1, max_size=40)),
    "description": field(st.text(max_size=40)),
    "owner": field(st.text(min_size=1, max_size=20)),
    "nodes": field(st.lists(json_like, max_size=3)),
    "edges": field(st.lists(json_like, max_size=3)),
    "metadata": field(st.dictionaries(st.text(max_size=8), json_like, max_size=3)),
    "tags": field(st.lists(st.text(max_size=10), max_size=3)),
    "status": field(st.sampled_from(["draft", "active", "archived"])),
    "is_public": field(st.booleans()),
    "organization_id": st.one_of(st.none(), anything),
    "id": st.one_of(st.none(), st.text(min_size=1, max_size=300)),
}
JUNK_KEYS = st.dictionaries(
    st.sampled_from(["colour", "version", "created_at", "deleted_at", "metadata_", "updated_by"]),
    anything,
    max_size=2,
)


def kwargs_for(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda chosen, junk: {**chosen, **junk},
        st.fixed_dictionaries({}, optional=fields),
        st.one_of(st.just({}), st.just({}), st.just({}), JUNK_KEYS),
    )


def _call(kind: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    TRIED[kind] += 1
    try:
        result = fn(*args, **kwargs)
    except flowscope.FlowscopeError as exc:
        OUTCOMES[type(exc).__name__] += 1
        return exc
    OUTCOMES["ok"] += 1
    return result


_STATE = sa.text(
    "SELECT (SELECT count(*) FROM executions) AS executions,"
    " (SELECT count(*) FROM users) AS users,"
    " (SELECT count(*) FROM audit_log) AS audit_log,"
    " (SELECT count(*) FROM workflows) AS workflows,"
    " (SELECT coalesce(jsonb_agg(to_jsonb(w) ORDER BY w.id), '[]') FROM workflows w) AS rows"
)


def _snapshot(engine: sa.Engine) -> tuple[dict[str, int], list[Any]]:
    """Row counts and the workflows' full content, in one query."""
    with engine.connect() as conn:
        state = dict(conn.execute(_STATE).one()._mapping)
    return state, state.pop("rows")


@settings(SETTINGS, max_examples=60)
@given(data=kwargs_for(WORKFLOW_FIELDS))
def test_workflow_create(client: flowscope.Client, engine: sa.Engine, data: dict[str, Any]) -> None:
    before, _ = _snapshot(engine)
    outcome = _call("workflows.create", client.workflows.create, **data)
    after, _ = _snapshot(engine)
    if isinstance(outcome, flowscope.FlowscopeError):
        assert after == before
    else:
        assert after["workflows"] == before["workflows"] + 1
        assert after["audit_log"] == before["audit_log"] + 1
        assert client.workflows.get(outcome.id, include_deleted=True) == outcome


@settings(SETTINGS, max_examples=45)
@given(
    data=kwargs_for({k: v for k, v in WORKFLOW_FIELDS.items() if k != "id"}),
    expected=st.one_of(st.none(), st.none(), anything, st.integers(0, 3)),
)
def test_workflow_update(
    client: flowscope.Client, engine: sa.Engine, data: dict[str, Any], expected: Any
) -> None:
    existing = client.workflows.list(limit=1).items
    wf = existing[0] if existing else make_workflow(client)
    before, rows_before = _snapshot(engine)
    kwargs = dict(data)
    if expected is not None:
        kwargs["expected_version"] = expected
    outcome = _call("workflows.update", client.workflows.update, wf.id, **kwargs)
    after, rows_after = _snapshot(engine)
    if isinstance(outcome, flowscope.FlowscopeError):
        assert (after, rows_after) == (before, rows_before)
    else:
        assert outcome.version == client.workflows.get(wf.id).version == wf.version + 1


EXECUTION_FIELDS = {
    "parameters": field(st.dictionaries(st.text(max_size=8), json_like, max_size=3)),
    "metadata": field(st.dictionaries(st.text(max_size=8), json_like, max_size=3)),
    "trace_id": field(st.text(max_size=20)),
    "owner": field(st.text(min_size=1, max_size=20)),
}


@settings(SETTINGS, max_examples=30)
@given(
    data=kwargs_for(EXECUTION_FIELDS),
    result=anything,
    steps=st.fixed_dictionaries(
        {},
        optional={"current_step": anything, "steps_completed": anything, "steps_total": anything},
    ),
)
def test_execution_lifecycle_input(
    client: flowscope.Client,
    engine: sa.Engine,
    data: dict[str, Any],
    result: Any,
    steps: dict[str, Any],
) -> None:
    wf = make_workflow(client)
    before, _ = _snapshot(engine)
    created = _call("executions.create", client.executions.create, workflow_id=wf.id, **data)
    after, _ = _snapshot(engine)
    if isinstance(created, flowscope.FlowscopeError):
        assert after == before
        return
    assert after["executions"] == before["executions"] + 1
    running = client.executions.start(created.id)
    progressed = _call("executions.progress", client.executions.progress, running.id, **steps)
    current = client.executions.get(running.id)
    if isinstance(progressed, flowscope.FlowscopeError):
        assert current == running
    done = _call("executions.complete", client.executions.complete, running.id, result=result)
    if isinstance(done, flowscope.FlowscopeError):
        assert client.executions.get(running.id).status == "running"
    else:
        assert done.status == "completed"


USER_FIELDS = {
    "username": field(st.text(min_size=1, max_size=20)),
    "email": field(st.emails()),
    "password": st.one_of(st.none(), anything, st.text(min_size=8, max_size=20)),
    "full_name": field(st.text(max_size=20)),
    "scopes": field(st.lists(st.sampled_from(["workflow:read", "admin"]), max_size=2)),
    "is_admin": field(st.booleans()),
}


@settings(SETTINGS, max_examples=25)
@given(data=kwargs_for(USER_FIELDS))
def test_user_create(client: flowscope.Client, engine: sa.Engine, data: dict[str, Any]) -> None:
    data.setdefault("username", "u")
    data.setdefault("email", "u@example.com")
    before, _ = _snapshot(engine)
    outcome = _call("users.create", client.users.create, **data)
    after, _ = _snapshot(engine)
    if isinstance(outcome, flowscope.FlowscopeError):
        assert after == before
    else:
        assert after["users"] == before["users"] + 1


FILTER_FIELDS = {
    "owner": field(st.lists(st.text(max_size=10), max_size=2)),
    "status": field(st.sampled_from(["draft", "active", "archived"])),
    "tags_any": field(st.lists(st.text(max_size=10), max_size=2)),
    "tags_all": field(st.lists(st.text(max_size=10), max_size=2)),
    "search": field(st.text(max_size=30)),
    "include_deleted": field(st.booleans()),
    "created_after": field(st.datetimes(timezones=st.sampled_from([None, UTC]))),
    "created_before": st.one_of(anything, st.text(max_size=25)),
    "ids": field(st.lists(st.text(max_size=10), max_size=2)),
}


@settings(SETTINGS, max_examples=40)
@given(
    data=kwargs_for(FILTER_FIELDS),
    order_by=st.one_of(st.none(), st.sampled_from(["name", "-created_at", "version"]), anything),
    limit=st.one_of(st.integers(-5, 20_000), anything),
    after=st.one_of(st.none(), st.none(), text, anything),
    resource=st.sampled_from(["workflows", "executions"]),
)
def test_list_and_count_filters(
    client: flowscope.Client,
    engine: sa.Engine,
    data: dict[str, Any],
    order_by: Any,
    limit: Any,
    after: Any,
    resource: str,
) -> None:
    res = getattr(client, resource)
    if resource == "executions":  # map onto the execution filter's field names
        data = {("workflow_ids" if k == "ids" else k): v for k, v in data.items()}
        data.pop("search", None)
        data.pop("include_deleted", None)
        data.pop("created_after", None)
        if "created_before" in data:
            data["until"] = data.pop("created_before")
    before = _snapshot(engine)
    page = _call(f"{resource}.list", res.list, order_by=order_by, limit=limit, after=after, **data)
    count = _call(f"{resource}.count", res.count, **data)
    if not isinstance(page, flowscope.FlowscopeError):
        assert isinstance(count, int) and len(page.items) <= count
    assert _snapshot(engine) == before
