"""The frame contract: every public call that returns a pandas DataFrame types each column by
its database type, the same way (:mod:`flowscope._frames`), on an empty database and on demo data.

The calls are found by walking the public surface (the client, every object it hands out,
the mirror, ``flowscope.__all__`` and ``flowscope.export.__all__``) for methods and functions
annotated to return a DataFrame, so a new one fails :func:`test_every_frame_call_is_in_the_table`
until it is added to :data:`CALLS`. The expected dtypes are written here, from the database
types, not computed by the code under test: table reads take their columns' types from the
live catalog (``information_schema``), analytics columns from the kind each name has
(:data:`KINDS`: a new column name must be given one).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flowscope
import flowscope.export
import pandas as pd
import pyarrow as pa
import pytest
from flowscope import demo
from flowscope._frames import STRING

UTC_US = pd.DatetimeTZDtype("us", "UTC")

#: The contract, stated independently of the code: PostgreSQL type → pandas dtype.
CONTRACT: dict[str, Any] = {
    "bigint": pd.Int64Dtype(),
    "integer": pd.Int32Dtype(),
    "smallint": pd.Int16Dtype(),
    "double precision": pd.Float64Dtype(),
    "real": pd.Float64Dtype(),
    "numeric": pd.Float64Dtype(),  # no precision: float64
    "numeric(10,3)": pd.ArrowDtype(pa.decimal128(10, 3)),
    "text": pd.api.types.pandas_dtype(STRING),
    "character varying": pd.api.types.pandas_dtype(STRING),
    "timestamp with time zone": UTC_US,
    "timestamp without time zone": pd.api.types.pandas_dtype("datetime64[us]"),
    "date": pd.ArrowDtype(pa.date32()),
    "boolean": pd.BooleanDtype(),
    "jsonb": pd.ArrowDtype(pa.json_()),
    "json": pd.ArrowDtype(pa.json_()),
    "text[]": pd.ArrowDtype(pa.list_(pa.string())),
}

# -- analytics: the database type of each column, by what the column is -------------------
COUNT, MEASURE, KEY, TIME = "bigint", "double precision", "text", "timestamp with time zone"
STATUSES = ("queued", "running", "completed", "failed", "cancelled", "timeout")
#: Every analytics column name and what it is; a column not here fails the test.
KINDS: dict[str, str] = {
    **dict.fromkeys(
        ("bucket", "day", "first_seen", "last_seen", "last_run_at"),
        TIME,
    ),
    **dict.fromkeys(
        (
            "workflow_id",
            "workflow",
            "owner",
            "organization_id",
            "status",
            "tag",
            "tag_a",
            "tag_b",
            "workflow_version",
            "error_type",
            "message",
            "current_step",
            "example_id",
            "last_status",
            "metric",
        ),
        KEY,
    ),
    **dict.fromkeys(
        (
            *STATUSES,
            "executions",
            "count",
            "started",
            "finished",
            "created",
            "running",
            "peak",
            "workflows",
            "total",
        ),
        COUNT,
    ),
    **dict.fromkeys(
        (
            "failure_rate",
            "success_rate",
            "mean_progress",
            "mean_steps_completed",
            "current",
            "previous",
            "change",
            "relative_change",
        ),
        MEASURE,
    ),
}


def analytics_type(column: str, kwargs: dict[str, Any]) -> str:
    if kwargs.get("normalize") and column in STATUSES:
        return MEASURE  # shares of the total
    if column.endswith("_seconds"):  # durations, waits and their percentiles
        return MEASURE
    assert column in KINDS, f"analytics column {column!r} has no kind in KINDS"
    return KINDS[column]


# -- the calls ------------------------------------------------------------------------------
Frame = Callable[[flowscope.Client], pd.DataFrame]
#: Analytics variants: each grouping key, frequencies, rollups, normalised shares, percentiles.
ANALYTICS: dict[str, list[dict[str, Any]]] = {
    "durations": [
        {},
        {"by": ["workflow", "tag"], "freq": "1W", "percentiles": (0.5, 0.999)},
        {"by": "owner", "freq": "1D", "use_rollups": True},
    ],
    "queue_wait": [{"by": ["organization_id", "status"]}, {"freq": "1D"}],
    "status_breakdown": [
        {"by": "day"},
        {"freq": "1W", "normalize": True},
        {"by": "workflow_version", "use_rollups": True},
    ],
    "tags": [{}],
    "tag_pairs": [{}],
    "throughput": [{"by": "workflow_id"}, {"freq": "1W", "use_rollups": True}],
    "concurrency": [{"freq": "1D"}],
    "failures": [{}, {"by": "workflow", "top": None}],
    "compare": [{"period": "7D", "by": "workflow"}],
    "summary": [{}],
}
TABLES = ("workflows", "executions", "users", "organizations", "audit_log")
FLATTEN = {  # flatten's value types and the database type they stand for
    "result.records_processed": ("int64", "bigint"),
    "metadata.workflow_version": ("float64", "double precision"),
    "parameters.env": ("bool", "boolean"),  # a string in the demo: NULL, still boolean
    "parameters.trigger": ("string", "text"),
    "metadata.worker": ("json", "jsonb"),
}
#: Every SQL type of the contract, for client.query().
QUERY_COLUMNS = {
    "i8": ("1::bigint", "bigint"),
    "i4": ("1::integer", "integer"),
    "i2": ("1::smallint", "smallint"),
    "f8": ("1.5::float8", "double precision"),
    "f4": ("1.5::real", "real"),
    "n": ("1.5::numeric", "numeric"),
    "n103": ("1.5::numeric(10,3)", "numeric(10,3)"),
    "t": ("'x'::text", "text"),
    "v": ("'x'::varchar(5)", "character varying"),
    "tz": ("now()", "timestamp with time zone"),
    "ts": ("localtimestamp", "timestamp without time zone"),
    "d": ("current_date", "date"),
    "b": ("true", "boolean"),
    "jb": ("'{\"a\": 1}'::jsonb", "jsonb"),
    "j": ("'[1]'::json", "json"),
    "a": ("ARRAY['a']::text[]", "text[]"),
}
QUERY = "SELECT " + ", ".join(f"{sql} AS {name}" for name, (sql, _) in QUERY_COLUMNS.items())


def _table_calls() -> dict[str, list[tuple[str, Frame, dict[str, str]]]]:
    """Reads: (label, call, {column: database type} for columns the catalog does not give)."""
    resource = {"audit_log": "audit"}
    calls: dict[str, list[tuple[str, Frame, dict[str, str]]]] = {}
    for table in TABLES:
        name = resource.get(table, table)

        def read(c: flowscope.Client, name: str = name, **kw: Any) -> pd.DataFrame:
            return getattr(c, name).to_pandas(**kw)

        calls.setdefault(f"{name}.to_pandas", []).append((table, read, {}))
        calls.setdefault("flowscope.read_pandas", []).append(
            (table, lambda c, t=table: flowscope.read_pandas(c, t), {})
        )
    flat = {k: kind for k, (kind, _) in FLATTEN.items()}
    calls["executions.to_pandas"] += [
        (
            "executions",
            lambda c: c.executions.to_pandas(decimal="float64"),
            {"duration_seconds": "double precision"},  # NUMERIC read as float64
        ),
        ("executions", lambda c: c.executions.to_pandas(columns=["duration_seconds", "id"]), {}),
        (
            "executions",
            lambda c: c.executions.to_pandas(columns=["id"], flatten=flat),
            {k: t for k, (_, t) in FLATTEN.items()},
        ),
    ]
    calls["audit.to_frame"] = [("audit_log", lambda c: c.audit.to_frame(), {})]
    return calls


TABLE_CALLS = _table_calls()
#: Every frame-returning call of the public surface, by where it is reached.
CALLS = {
    *(f"analytics.{m}" for m in ANALYTICS),
    *(f"mirror.analytics.{m}" for m in ANALYTICS),
    *TABLE_CALLS,
    "query",
}


# -- discovery ------------------------------------------------------------------------------
def _returns_frame(fn: Any) -> bool:
    fn = getattr(fn, "__func__", fn)
    if not inspect.isfunction(fn):
        return False
    return "DataFrame" in str(inspect.signature(fn).return_annotation)


def _frame_methods(obj: Any) -> set[str]:
    cls = type(obj)
    return {
        n
        for n in dir(cls)
        if not n.startswith("_") and _returns_frame(inspect.getattr_static(cls, n))
    }


def test_every_frame_call_is_in_the_table(client: flowscope.Client, tmp_path: Path) -> None:
    found = {f"flowscope.{n}" for n in flowscope.__all__ if _returns_frame(getattr(flowscope, n))}
    found |= {
        f"flowscope.{n}"
        for n in flowscope.export.__all__
        if _returns_frame(getattr(flowscope.export, n))
    }
    found |= _frame_methods(client)
    for name in dir(type(client)):
        static = inspect.getattr_static(type(client), name)
        if name.startswith("_") or inspect.isfunction(static):
            continue  # methods are above; attributes and properties hand out objects
        found |= {f"{name}.{m}" for m in _frame_methods(getattr(client, name))}
    with client.mirror(tmp_path / "mirror") as mirror:
        assert not _frame_methods(mirror)
        found |= {f"mirror.analytics.{m}" for m in _frame_methods(mirror.analytics)}
    assert found == CALLS, f"missing from CALLS: {found - CALLS}; gone: {CALLS - found}"


# -- checking a frame -----------------------------------------------------------------------
def _catalog(client: flowscope.Client) -> dict[str, dict[str, str]]:
    """{table: {column: PostgreSQL type}} from the live database."""
    rows = client.sql(
        "SELECT table_name, column_name, data_type, numeric_precision, numeric_scale,"
        " udt_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " ORDER BY ordinal_position"
    )
    out: dict[str, dict[str, str]] = {}
    for r in rows:
        kind = r["data_type"]
        if kind == "numeric" and r["numeric_precision"] is not None:
            kind = f"numeric({r['numeric_precision']},{r['numeric_scale']})"
        elif kind == "ARRAY":
            kind = r["udt_name"].lstrip("_") + "[]"
        out.setdefault(r["table_name"], {})[r["column_name"]] = kind
    return out


def _check(frame: pd.DataFrame, expected: dict[str, str], label: str) -> None:
    assert isinstance(frame, pd.DataFrame), label
    wrong = {
        c: (str(frame.dtypes[c]), str(CONTRACT[t]))
        for c, t in expected.items()
        if frame.dtypes[c] != CONTRACT[t]
    }
    assert not wrong, f"{label}: column: (dtype, contract's) {wrong}"


def _read_types(catalog: dict[str, dict[str, str]], table: str, extra: dict[str, str]) -> Any:
    def expected(frame: pd.DataFrame) -> dict[str, str]:
        types = {**catalog[table], **extra}
        assert set(frame.columns) <= set(types), set(frame.columns) - set(types)
        return {c: types[c] for c in frame.columns}

    return expected


def check_every_call(client: flowscope.Client, mirror_path: Path) -> dict[str, int]:
    """Run every call in CALLS on ``client`` (and a mirror of it) and check every column of
    every frame; returns the rows each call gave, in all."""
    rows: dict[str, int] = {}
    with client.mirror(mirror_path) as mirror:
        mirror.sync(progress=False)
        for call, n in _frames(client, mirror.analytics, until=demo.DEMO_NOW):
            rows[call] = rows.get(call, 0) + n
    assert set(rows) == CALLS
    return rows


def _frames(client: flowscope.Client, mirror: Any, *, until: Any) -> Iterator[tuple[str, int]]:
    catalog = _catalog(client)
    for method, variants in ANALYTICS.items():
        for kwargs in variants:
            args = {**kwargs, "until": until}
            for where, engine in (("analytics", client.analytics), ("mirror.analytics", mirror)):
                label = f"{where}.{method}({kwargs})"
                frame = getattr(engine, method)(**args)
                _check(frame, {c: analytics_type(c, kwargs) for c in frame.columns}, label)
                yield f"{where}.{method}", len(frame)
    for name, calls in TABLE_CALLS.items():
        for table, call, extra in calls:
            frame = call(client)
            expected = _read_types(catalog, table, extra)(frame)
            assert len(expected) == len(frame.columns) > 0
            _check(frame, expected, f"{name} of {table}")
            yield name, len(frame)
    frame = client.query(QUERY)
    _check(frame, {n: t for n, (_, t) in QUERY_COLUMNS.items()}, "query")
    assert list(frame.columns) == list(QUERY_COLUMNS) and len(frame) == 1
    for table in TABLES:  # the catalog's own types, through the analyst's SQL
        empty = client.query(f"SELECT * FROM {table} WHERE false")
        full = client.query(f"SELECT * FROM {table} ORDER BY 1 LIMIT 50")
        for frame in (empty, full):
            _check(frame, _read_types(catalog, table, {})(frame), f"query of {table}")
        yield "query", len(full)


@pytest.fixture(scope="module")
def demo_client(create_database: Callable[[], str]) -> Iterator[flowscope.Client]:
    """A database of its own with demo data and refreshed rollups (the session's shared demo
    database is left as it is)."""
    with flowscope.connect(create_database(), migrate=True) as client:
        demo.generate(client, workflows=30, executions=3_000, progress=False)
        wf = client.workflows.list(limit=1).items[0]
        client.workflows.update(wf.id, description="audited", expected_version=wf.version)
        client.analytics.refresh_rollups(concurrently=False)
        yield client


def test_every_column_of_every_frame_on_demo_data(demo_client, tmp_path: Path) -> None:
    rows = check_every_call(demo_client, tmp_path / "mirror")
    empty = {call for call, n in rows.items() if n == 0}
    assert not empty, f"calls that returned no rows on demo data: {empty}"
    assert demo_client.analytics.durations(use_rollups=True, until=demo.DEMO_NOW).attrs["rollups"]


def test_every_column_of_every_frame_on_an_empty_database(client, tmp_path: Path) -> None:
    rows = check_every_call(client, tmp_path / "mirror")
    assert rows["executions.to_pandas"] == 0 and rows["query"] == 0
    # without grouping keys an analytics call still answers one row of zero counts
    assert rows["analytics.durations"] == 1


def test_audit_frames_are_one_read(client: flowscope.Client) -> None:
    wf = client.workflows.create(name="é", owner="ana", nodes=[{"id": "x", "n": 1.5}], edges=[])
    client.workflows.update(wf.id, tags=["b", "a"], expected_version=wf.version)
    frame = client.audit.to_frame(table_name="workflows")
    read = client.audit.to_pandas(table_name="workflows").sort_values("id", ignore_index=True)
    assert len(frame) == 2 and dict(frame.dtypes) == dict(read.dtypes)
    # pandas 2.2's assert_frame_equal cannot compare arrow.json columns: those as lists
    pd.testing.assert_frame_equal(frame.drop(columns="changes"), read.drop(columns="changes"))
    assert frame["changes"].tolist() == read["changes"].tolist()
    update = json.loads(frame["changes"].iloc[1])
    assert update["tags"] == {"old": [], "new": ["b", "a"]}
    assert json.loads(frame["changes"].iloc[0])["name"] == "é"
