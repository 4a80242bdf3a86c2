"""The error boundary: every public call ends in a result or a ``flowscope.FlowscopeError``.

A hypothesis walk finds every public method of the client, its resources,
analytics, export, retention and maintenance by introspection (a method added
later is walked too) and calls each with generated arguments: wrong types,
extreme values (NaN, ±2**70, ``datetime.max``, ``"3000000D"``, NUL bytes,
300-character strings), unknown keywords, real ids, paths that cannot be
written, SQL text and statements. Every call must return or raise a flowscope
error, and a call that raised must leave every table as it was (no half-written
row; a failed log-in's counter is the one intended write). The counts are
printed at the end (``-s``); the walk is deterministic (``derandomize``).

Counts (``-s`` prints them; deterministic): 94 public methods, walked on an admin client
(20 examples each) and a scoped one (6 each): 188 walks, 2,396 calls. Before the boundary
(flowscope as of 6d3d2ff) 22 of them raised something other than a flowscope error (21
``TypeError``, 1 ``AttributeError``), and a ``COPY ... TO STDOUT`` through ``sql()`` came
out as ``ConnectionFailedError`` with an "Exception during reset" traceback in the log;
now none, and none reaches the boundary's safety net either (every one is caught by the
method's own checks, with its own message): ``converted by the boundary's safety net: 0``.
``FLOWSCOPE_BOUNDARY_EXAMPLES`` raises the examples per method;
``FLOWSCOPE_BOUNDARY_VERBOSE=1`` lists what the safety net converted.
"""

from __future__ import annotations

import inspect
import math
import os
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import flowscope
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ._helpers import make_workflow

#: examples per method (admin client) and per method of the scoped walk
EXAMPLES = int(os.environ.get("FLOWSCOPE_BOUNDARY_EXAMPLES", "20"))
SCOPED_EXAMPLES = max(EXAMPLES // 3, 3)

SETTINGS = settings(
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)

# Methods whose errors are the caller's own by design: the context managers hand the
# caller a connection, and what the caller's block raises must come out unchanged.
CALLER_BLOCKS = {("client", "transaction"), ("client", "read_transaction")}
TARGETS = (
    "client",
    "workflows",
    "executions",
    "users",
    "organizations",
    "audit",
    "analytics",
    "export",
    "retention",
    "maintenance",
)


def public_methods(client: flowscope.Client) -> list[tuple[str, str]]:
    """(target, method) for every public method of the client and its parts."""
    found = []
    for target in TARGETS:
        obj = client if target == "client" else getattr(client, target)
        for name in sorted(dir(type(obj))):
            if name.startswith("_") or (target, name) in CALLER_BLOCKS:
                continue
            attr = inspect.getattr_static(type(obj), name)
            if inspect.isfunction(attr):
                found.append((target, name))
    return found


# -- generated arguments --------------------------------------------------------------

safe_text = st.text(max_size=12).filter(lambda s: not s.startswith(("/", "~")) and ".." not in s)
SPECIAL = [
    "",
    "\x00",
    "x" * 300,
    "3000000D",
    "99999999999D",
    "99999999999999999999h",
    "1h",
    "7D",
    "-1D",
    "1MS",
    "workflows",
    "executions",
    "users",
    "organizations",
    "audit_log",
    "day",
    "workflow",
    "status",
    "organization_id",
    "-created_at",
    "select 1",
    "SELECT count(*) FROM executions",
    "COPY executions TO STDOUT",
    "/proc/nope/x.parquet",
    "2026-01-01",
    "9999-12-31T23:59:59",
    "0001-01-01",
    "@",
    "a@b.c",
    "workflow:read",
    "admin",
    "completed",
    "zstd",
    "decimal128",
]
QUERIES = [
    sa.select(sa.literal(1).label("x")),
    sa.select(sa.text("organization_id")).select_from(sa.text("executions")),
]
OBJECTS = [
    datetime.min,
    datetime.max,
    datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
    date.min,
    date.max,
    timedelta.max,
    timedelta.min,
    timedelta(days=-1),
    Decimal("NaN"),
    Decimal("1e1000"),
    math.inf,
    -math.inf,
    math.nan,
    complex(1, 2),
    object(),
    Path("/proc/nope/x.parquet"),
    b"\xff\xfe",
    bytearray(b"x"),
    (1, "a"),
    frozenset({"a"}),
    range(3),
    *QUERIES,
    sa.text("SELECT 1 AS x"),
    flowscope.ExecutionFilter(status="failed"),
    flowscope.WorkflowFilter(owner="ana"),
]


def scalars(ids: list[str]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from([0, -1, 1, 2**31, 2**63, 10**20]),
        st.floats(allow_nan=True, allow_infinity=True),
        safe_text,
        st.sampled_from(SPECIAL),
        st.sampled_from(OBJECTS),
        st.sampled_from(ids),
    )


def values(ids: list[str]) -> st.SearchStrategy[Any]:
    leaf = scalars(ids)
    return st.one_of(
        leaf,
        leaf,
        leaf,
        st.lists(leaf, max_size=3),
        st.dictionaries(st.one_of(safe_text, st.sampled_from(SPECIAL)), leaf, max_size=3),
        st.lists(st.sampled_from(ids), min_size=1, max_size=3),
    )


def keyword_values(ids: list[str]) -> dict[str, st.SearchStrategy[Any]]:
    """Keyword arguments (filter fields, model fields) and values a careful caller passes."""
    return {
        "since": st.sampled_from(["2026-01-01", datetime(2026, 1, 1, tzinfo=UTC)]),
        "until": st.sampled_from(["2030-01-01"]),
        "status": st.sampled_from(["failed", ["completed", "failed"], "active"]),
        "ids": st.just(ids[2:5]),
        "workflow_ids": st.just(ids[2:3]),
        "owner": st.just("ana"),
        "tags_any": st.just(["etl"]),
        "tags_all": st.just(["etl"]),
        "organization_id": st.just(ids[0]),
        "name": st.just("n"),
        "nodes": st.just([]),
        "edges": st.just([]),
        "workflow_id": st.just(ids[2]),
        "username": st.sampled_from(["bo", "ana"]),
        "email": st.sampled_from(["bo@example.com", "ana@example.com"]),
        "password": st.just("another long passphrase"),
        "scopes": st.just(["workflow:read"]),
        "search": st.just("etl"),
        "slug": st.just("globex"),
        "colour": st.just("blue"),
    }


def plausible(name: str, ids: list[str], where: Path) -> st.SearchStrategy[Any] | None:
    """A value a careful caller would pass for a parameter of this name (None: no idea)."""
    files = st.sampled_from(["a.parquet", "b.parquet", "sub/c.parquet", str(where / "d.parquet")])
    table = st.sampled_from(["executions", "workflows", "users", "organizations", "audit_log"])
    known: dict[str, st.SearchStrategy[Any]] = {
        "id": st.sampled_from(ids),
        "row_id": st.sampled_from(ids),
        "table": table,
        "table_or_query": st.one_of(table, st.sampled_from(QUERIES)),
        "path": files,
        "archive_to": st.sampled_from(["archive", str(where / "archive")]),
        "by": st.sampled_from([None, "workflow", "status", ["day", "tag"], "organization_id"]),
        "freq": st.sampled_from(["1h", "1D", "1W", "1MS"]),
        "period": st.sampled_from(["7D", "24h", "2W"]),
        "percentiles": st.sampled_from([(0.5,), (0.5, 0.99)]),
        "older_than": st.sampled_from(["90D", "1D", "12h"]),
        "username_or_email": st.sampled_from(["ana", "ana@example.com", "nobody"]),
        "username": st.sampled_from(["ana", "bo"]),
        "password": st.sampled_from(["a long passphrase", "wrong"]),
        "statement": st.sampled_from(["SELECT 1 AS x", "SELECT count(*) AS n FROM workflows"]),
        "params": st.sampled_from([None, {}, {"x": 1}]),
        "organization_id": st.sampled_from(ids[:1]),
        "user_id": st.sampled_from(ids[1:2]),
        "limit": st.sampled_from([1, 10]),
        "top": st.sampled_from([1, 5, None]),
        "batch_size": st.sampled_from([1, 100]),
        "months_ahead": st.sampled_from([0, 1, 3]),
        "partition_by": st.sampled_from([None, ["day"], ["organization_id", "day"]]),
        "result": st.sampled_from([None, {"ok": True}]),
        "error": st.sampled_from([None, {"type": "E", "message": "boom"}]),
        "rows": st.sampled_from(
            [
                [],
                [{"workflow_id": ids[2], "status": "completed"}],
                [{"name": "n", "owner": "o", "nodes": [], "edges": []}],
            ]
        ),
        "data": st.sampled_from([None, {"name": "n2"}, {"workflow_id": ids[2]}]),
        "filter": st.just(None),
        "normalize": st.booleans(),
        "dry_run": st.booleans(),
        "include_deleted": st.booleans(),
        "progress": st.just(False),
    }
    return known.get(name)


@st.composite
def arguments(
    draw: Any, signature: inspect.Signature, ids: list[str], where: Path
) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments for a signature: usually one wrong or extreme
    argument among ones a careful caller passes; sometimes all of them, sometimes none."""
    value = values(ids)
    params = [
        p for p in signature.parameters.values() if p.name != "self" and not p.name.startswith("_")
    ]
    mode = draw(st.sampled_from(["one", "one", "one", "all", "none"]))
    bad = draw(st.sampled_from(params)) if mode == "one" and params else None
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    pending: list[Any] = []  # defaults of omitted positional parameters
    for p in params:
        nasty = mode == "all" or p is bad
        if p.kind is p.VAR_POSITIONAL:
            scopes = st.sampled_from(["workflow:read", "admin"])
            extra = draw(st.lists(value if nasty else scopes, max_size=2))
            if not pending:
                args.extend(extra)
            continue
        if p.kind is p.VAR_KEYWORD:
            known = keyword_values(ids)
            for key in draw(st.lists(st.sampled_from(sorted(known)), max_size=2, unique=True)):
                kwargs[key] = draw(value if nasty else known[key])
            continue
        good = plausible(p.name, ids, where)
        if good is None and p.annotation in ("bool", "bool | None"):
            good = st.booleans()
        optional = p.default is not p.empty
        if nasty:
            v = draw(value)
        elif good is not None:
            v = draw(st.one_of(st.just(_OMIT), good)) if optional else draw(good)
        else:
            v = _OMIT if optional else draw(value)
        if p.kind is p.KEYWORD_ONLY:
            if v is not _OMIT:
                kwargs[p.name] = v
        elif v is _OMIT:
            pending.append(p.default)
        else:
            args.extend(pending)
            pending.clear()
            args.append(v)
    return args, kwargs


_OMIT = object()

# -- bookkeeping ------------------------------------------------------------------------

WALK: Counter[str] = Counter()
NET: Counter[str] = Counter()
ESCAPED: list[tuple[str, str, str]] = []

_STATE = sa.text(
    "SELECT (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM workflows t)"
    " || (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM executions t)"
    " || (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM users t)"
    " || (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM organizations t)"
    " || (SELECT count(*) FROM audit_log)::text"
)


def _state(conn: sa.Connection) -> str:
    return str(conn.execute(_STATE).scalar_one())


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    kinds = Counter(kind for _, kind, _ in ESCAPED)
    print(
        f"\nboundary walk: {WALK['methods']} methods, {WALK['calls']} calls;"
        f" outcomes {dict(Counter({k: v for k, v in WALK.items() if k[0].isupper() or k == 'ok'}))};"
        f" not flowscope errors: {len(ESCAPED)} {dict(kinds)};"
        f" converted by the boundary's safety net: {WALK['net']}"
    )
    if os.environ.get("FLOWSCOPE_BOUNDARY_VERBOSE"):
        print("\n".join(f"  {n} {k}" for k, n in NET.most_common()))


def _driver_or_flowscope(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("flowscope", "psycopg", "sqlalchemy"))


def _consume(result: Any) -> None:
    """Iterators and generators fail while iterated: walk a few items."""
    if isinstance(result, Iterator):
        for _, _item in zip(range(3), result, strict=False):
            pass


def _walk_method(
    method: Any, checker: sa.Connection, call_name: str, ids: list[str], where: Path, examples: int
) -> list[tuple[str, str, str]]:
    escaped: list[tuple[str, str, str]] = []

    @settings(SETTINGS, max_examples=examples)
    @given(call=arguments(inspect.signature(method), ids, where))
    def run(call: tuple[list[Any], dict[str, Any]]) -> None:
        args, kwargs = call
        WALK["calls"] += 1
        before = _state(checker)
        try:
            _consume(method(*args, **kwargs))
        except flowscope.FlowscopeError as exc:
            WALK[type(exc).__name__] += 1
            if os.environ.get("FLOWSCOPE_BOUNDARY_TRACE"):
                print(call_name, f"{args!r:.80} {kwargs!r:.120}", f"{exc!s:.100}")
            cause = exc.__cause__
            if cause is not None and not _driver_or_flowscope(cause):
                # converted by the boundary's safety net, not by the method's own checks
                WALK["net"] += 1
                NET[f"{call_name}: {type(cause).__name__}: {cause!s:.100}"] += 1
            if not isinstance(exc, flowscope.AuthenticationError):
                # (a failed log-in counts the failure: the one intended write)
                assert _state(checker) == before, f"{call_name} wrote, then failed: {exc}"
        except Exception as exc:
            WALK["escaped"] += 1
            shown = f"{args!r:.80} {kwargs!r:.120}: {exc!s:.160}"
            escaped.append((call_name, type(exc).__name__, shown))
        else:
            WALK["ok"] += 1

    run()
    return escaped


def _walk(
    client: flowscope.Client,
    checker: sa.Connection,
    ids: list[str],
    where: Path,
    examples: int,
    label: str,
) -> list[tuple[str, str, str]]:
    escaped: list[tuple[str, str, str]] = []
    for target, name in public_methods(client):
        obj = client if target == "client" else getattr(client, target)
        WALK["methods"] += 1
        method = getattr(obj, name)
        escaped += _walk_method(method, checker, f"{label}.{target}.{name}", ids, where, examples)
    return escaped


@pytest.fixture
def walk_dir(tmp_path: Path) -> Iterator[Path]:
    """Relative paths the walk generates (exports, archives) land in a temporary directory."""
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)


def _seed(client: flowscope.Client) -> list[str]:
    org = client.organizations.create(name="Acme", slug="acme")
    user = client.users.create(
        username="ana",
        email="ana@example.com",
        password="a long passphrase",
        organization_id=org.id,
        scopes=["workflow:read"],
    )
    wf = make_workflow(client, organization_id=org.id, tags=["etl"])
    queued = client.executions.create(workflow_id=wf.id)
    done = client.executions.create(workflow_id=wf.id)
    client.executions.start(done.id)
    client.executions.complete(done.id, result={"n": 1})
    return [org.id, user.id, wf.id, queued.id, done.id, "usr_nobody"]


@pytest.fixture
def own_database(create_database: Any) -> Iterator[tuple[flowscope.Client, sa.Connection]]:
    """A database of its own (the walk may create audit partitions for odd months), and
    one autocommit connection that checks the tables from outside."""
    url = create_database()
    client = flowscope.connect(url, migrate=True)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            yield client, conn
    finally:
        client.close()
        engine.dispose()


@pytest.mark.slow
def test_every_public_call_raises_only_flowscope_errors(
    own_database: tuple[flowscope.Client, sa.Connection], walk_dir: Path, tmp_path: Path
) -> None:
    client, checker = own_database
    ids = _seed(client)
    escaped = _walk(client, checker, ids, tmp_path, EXAMPLES, "admin")
    scoped = client.scoped(ids[0])
    escaped += _walk(scoped, checker, ids, tmp_path, SCOPED_EXAMPLES, "scoped")
    ESCAPED.extend(escaped)
    assert WALK["methods"] >= 90, sorted(public_methods(client))
    assert not escaped, "\n".join(" ".join(e) for e in escaped[:40])


# -- the rows, one by one ---------------------------------------------------------


def _raises(kind: type[Exception], fn: Any, *args: Any, **kwargs: Any) -> Exception:
    with pytest.raises(kind) as info:
        fn(*args, **kwargs)
    return info.value


def test_wrong_types_are_validation_errors_naming_the_argument(
    client: flowscope.Client, tmp_path: Path
) -> None:
    exc = _raises(flowscope.ValidationError, client.analytics.durations, by=5)
    assert "by must be" in str(exc) and exc.errors[0]["loc"] == ("by",)
    exc = _raises(flowscope.ValidationError, client.executions.ingest, 5)
    assert str(exc).startswith("rows:") and exc.errors[0]["loc"] == ("rows",)
    exc = _raises(flowscope.ValidationError, client.sql, "select 1", [1])
    assert "params" in str(exc)
    exc = _raises(flowscope.ValidationError, client.export.parquet, "workflows", None)
    assert "path" in str(exc)
    exc = _raises(flowscope.ValidationError, client.export.parquet, None, tmp_path / "x.parquet")
    assert "table_or_query" in str(exc) or "table" in str(exc)
    exc = _raises(
        flowscope.ValidationError, client.export.parquet, "workflows", tmp_path / "x", columns=1
    )
    assert "columns" in str(exc)
    exc = _raises(flowscope.ValidationError, client.workflows.list, read_your_writes="no")
    assert "read_your_writes must be True, False or None" in str(exc)
    exc = _raises(flowscope.ValidationError, client.workflows.count, colour="blue")
    assert "colour" in str(exc)
    assert not list(tmp_path.iterdir())


def test_the_safety_net_names_the_argument_and_keeps_the_cause() -> None:
    from flowscope._boundary import Guarded

    class Thing(Guarded):
        def total(self, values: list[int], *, start: int = 0) -> int:
            return sum(values, start)

        def lines(self, n: int) -> Iterator[int]:
            yield from range(n)

    exc = _raises(flowscope.ValidationError, Thing().total, [1, "2"])
    assert str(exc).startswith("Thing.total(): invalid values=[1, '2']:")
    assert isinstance(exc.__cause__, TypeError)
    exc = _raises(flowscope.ValidationError, Thing().total, [1], colour=2)
    assert "colour" in str(exc)
    with pytest.raises(flowscope.ValidationError, match=r"Thing.lines\(\): invalid n='3'"):
        list(Thing().lines("3"))  # type: ignore[arg-type]


def test_overflowing_periods_are_validation_errors(client: flowscope.Client) -> None:
    for period in ("3000000D", "99999999999D", "99999999999999999999h"):
        exc = _raises(flowscope.ValidationError, client.analytics.compare, period=period)
        assert exc.errors and exc.errors[0]["loc"] == ("period",), period
    exc = _raises(flowscope.ValidationError, client.analytics.throughput, freq="999999999W")
    assert "10,000 years" in str(exc)


def test_a_port_that_is_not_a_number_is_a_configuration_error() -> None:
    for url in ("postgresql://u@127.0.0.1:abc/x", "postgresql://u@[::1/x", "postgresql://u@h:0/x"):
        exc = _raises(flowscope.ConfigurationError, flowscope.connect, url)
        assert "not a database URL" in str(exc)
    _raises(flowscope.ConfigurationError, flowscope.connect, 5)
    exc = _raises(
        flowscope.ConfigurationError, flowscope.connect, "postgresql://u@h/x", pool_size="5"
    )
    assert "pool_size" in str(exc)
    exc = _raises(flowscope.ValidationError, flowscope.connect, "postgresql://u@h/x", echo="yes")
    assert "echo must be True or False" in str(exc)


def test_a_long_id_list_is_one_array_parameter(client: flowscope.Client) -> None:
    wf = make_workflow(client)
    ex = client.executions.create(workflow_id=wf.id)
    many = [f"exe_{i:06d}" for i in range(100_000)] + [ex.id]
    assert client.executions.count(ids=many) == 1
    assert client.workflows.count(ids=[f"wf_{i}" for i in range(70_000)] + [wf.id]) == 1
    assert [e.id for e in client.executions.list(ids=many)] == [ex.id]
    assert client.analytics.status_breakdown(ids=many)["total"].tolist() == [1]


def test_too_many_parameters_is_not_a_connection_failure(client: flowscope.Client) -> None:
    from flowscope.models import WORKFLOWS

    stmt = sa.select(sa.func.count().label("n")).where(
        WORKFLOWS.c.id.in_([f"wf_{i}" for i in range(70_000)])
    )
    exc = _raises(flowscope.ValidationError, client.sql, stmt)
    assert "too many bound parameters" in str(exc)
    assert client.sql("SELECT 1 AS x") == [{"x": 1}]  # the pool is fine


@pytest.mark.parametrize("scoped", [False, True], ids=["admin", "scoped"])
def test_copy_through_sql_is_a_clear_error_and_the_pool_survives(
    client: flowscope.Client, scoped: bool, caplog: pytest.LogCaptureFixture
) -> None:
    org = client.organizations.create(name="Acme", slug="acme")
    target = client.scoped(org.id) if scoped else client
    make_workflow(target)
    for statement in ("COPY workflows TO STDOUT", "COPY (SELECT 1) TO STDOUT"):
        with caplog.at_level("DEBUG", logger="sqlalchemy.pool"):
            exc = _raises(flowscope.ValidationError, target.sql, statement)
        assert "COPY" in str(exc) and "export.parquet" in str(exc)
        assert "Exception during reset" not in caplog.text
        assert target.sql("SELECT count(*) AS n FROM workflows") == [{"n": 1}]
    # inside a transaction the connection is lost, and with it the transaction: said clearly
    with pytest.raises(flowscope.FlowscopeError), target.transaction():
        with pytest.raises(flowscope.ValidationError, match="COPY"):
            target.sql("COPY workflows TO STDOUT")
        target.sql("SELECT 1")
    assert "Exception during reset" not in caplog.text
    assert target.workflows.count() == 1


def test_ingested_status_agrees_with_its_timestamps(
    client: flowscope.Client, engine: sa.Engine
) -> None:
    wf = make_workflow(client)
    t0, t1 = "2026-01-01T10:00:00Z", "2026-01-01T10:00:05Z"
    exc = _raises(
        flowscope.ValidationError,
        client.executions.ingest,
        [{"workflow_id": wf.id, "status": None, "completed_at": t1, "started_at": t0}],
    )
    assert exc.errors[0]["loc"] == ("status",) and "completed_at" in exc.errors[0]["msg"]
    for row in (
        {"status": "queued", "started_at": t0},
        {"status": "queued", "completed_at": t1},
        {"status": "running", "started_at": t0, "completed_at": t1},
    ):
        _raises(
            flowscope.ValidationError, client.executions.ingest, [{"workflow_id": wf.id, **row}]
        )
    assert client.executions.count() == 0
    client.executions.ingest(
        [
            {"id": "exe_q", "workflow_id": wf.id},
            {"id": "exe_r", "workflow_id": wf.id, "started_at": t0},
            {
                "id": "exe_c",
                "workflow_id": wf.id,
                "status": "failed",
                "started_at": t0,
                "completed_at": t1,
            },
        ]
    )
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id, status, duration_seconds FROM executions ORDER BY id")
        ).all()
    assert [(r.id, r.status) for r in rows] == [
        ("exe_c", "failed"),
        ("exe_q", "queued"),
        ("exe_r", "running"),
    ]
    assert rows[1].duration_seconds is None and rows[2].duration_seconds is None
