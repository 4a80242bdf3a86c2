"""Arrow reads and Parquet export: faithful types, round trips through pyarrow, pandas and
DuckDB, atomic files, partitioned and incremental datasets, tenancy."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import flowscope
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from flowscope import export
from flowscope.export import _adbc, _atomic, _copy, _read
from flowscope.models import EXECUTIONS, ORGANIZATIONS, USERS, WORKFLOWS

T0 = datetime(2026, 3, 1, 23, 59, 59, 999_999, tzinfo=UTC)
JSON_COLUMNS = {
    "workflows": ("nodes", "edges", "metadata"),
    "executions": ("parameters", "result", "error", "metadata"),
    "users": ("scopes",),
    "organizations": ("settings",),
    "audit_log": ("changes",),
}


@pytest.fixture(autouse=True, params=["copy", "adbc"])
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs on both transports: the binary COPY decoder and ADBC + casts."""
    monkeypatch.setenv("FLOWSCOPE_EXPORT_TRANSPORT", request.param)
    return str(request.param)


def _seed(engine: sa.Engine, executions: int = 40) -> None:
    """Rows that stress the types: NULLs, empty arrays, nested/non-ASCII JSON, µs timestamps."""
    with engine.begin() as conn:
        conn.execute(
            sa.insert(ORGANIZATIONS),
            [
                {
                    "id": "org_a",
                    "name": "Ästhetik GmbH",
                    "slug": "a",
                    "settings": {"tz": "Europe/Zürich"},
                },
                {"id": "org_b", "name": 'B, "quoted"', "slug": "b", "settings": {}},
            ],
        )
        conn.execute(
            sa.insert(USERS),
            [
                {"id": "usr_1", "username": "ana", "email": "ana@example.com",
                 "password_hash": "$argon2id$secret", "organization_id": "org_a",
                 "scopes": ["workflow:read"], "last_login": T0},
            ],
        )  # fmt: skip
        for workflow in (
            {
                "id": "wf_1",
                "name": "Ünïcode 工作流",
                "description": 'line one\nline two, with "quotes" and \\ backslash',
                "owner": "usr_1",
                "organization_id": "org_a",
                "nodes": [{"id": "a", "config": {"retries": 3, "deep": {"x": [1, 2.5, None]}}}],
                "edges": [],
                "metadata": {"emoji": "🚀", "null": None},
                "tags": ["etl", "comma,tag", 'quote"tag', "", "NULL"],
                "created_by": "usr_1",
                "updated_by": "usr_1",
                "created_at": T0,
            },
            {
                "id": "wf_2",
                "name": "empty",
                "description": "",
                "owner": "usr_1",
                "organization_id": "org_b",
                "nodes": [],
                "edges": [],
                "tags": [],
                "is_public": None,
                "created_by": "usr_1",
                "updated_by": "usr_1",
                "created_at": T0 + timedelta(days=1),
            },
            {
                "id": "wf_3",
                "name": "no org",
                "owner": "usr_2",
                "nodes": [],
                "edges": [],
                "tags": None,
                "metadata": sa.null(),
                "created_by": "usr_2",
                "updated_by": "usr_2",
            },
        ):
            conn.execute(sa.insert(WORKFLOWS).values(**workflow))
        rows = []
        for i in range(executions):
            start = T0 + timedelta(hours=7 * i, microseconds=i * 7 + 1)
            rows.append(
                {
                    "id": f"ex_{i:04d}",
                    "workflow_id": ("wf_1", "wf_2", "wf_3")[i % 3],
                    "owner": "usr_1",
                    "organization_id": ("org_a", "org_b", None)[i % 3],
                    "status": ("completed", "failed", "running", "queued")[i % 4],
                    "parameters": {
                        "lr": 0.001 * i,
                        "name": f"é{i}",
                        "nested": {"k": [i, {"z": None}]},
                    },
                    "result": sa.null()
                    if i % 5 == 0
                    else ("null" if i % 5 == 1 else {"acc": i / 7}),
                    "error": {"message": 'Zeitüberschreitung\n\t"x"'} if i % 4 == 1 else sa.null(),
                    "started_at": start if i % 4 != 3 else None,
                    "completed_at": start + timedelta(seconds=i, microseconds=123)
                    if i % 4 < 2
                    else None,
                    "duration_seconds": Decimal(i) + Decimal("0.125") if i % 4 < 2 else None,
                    "current_step": ("", None, "step,1", "шаг")[i % 4],
                    "steps_completed": None if i % 6 == 0 else i,
                    "steps_total": 10,
                    "metadata": {"workflow_version": 1 + i % 2},
                    "trace_id": None if i % 2 else f'tr"{i}',
                    "created_at": start,
                    "updated_at": start,
                }
            )
        for row in rows:
            conn.execute(sa.insert(EXECUTIONS).values(**row))
        # a JSON null (not SQL NULL) in result
        conn.execute(sa.text("UPDATE executions SET result = 'null'::jsonb WHERE id = 'ex_0006'"))


def _source(engine: sa.Engine, table: str, order: str = "id") -> list[dict[str, Any]]:
    t = export.TABLES[table]
    cols = [c for c in t.c if c.name != "password_hash"]
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(*cols).order_by(t.c[order])).mappings()]


def _normalise(rows: list[dict[str, Any]], table: str) -> list[dict[str, Any]]:
    """Arrow/Parquet rows → Python values comparable with the driver's (JSON text parsed)."""
    out = []
    for row in rows:
        row = dict(row)
        for name in JSON_COLUMNS[table]:
            if name in row and isinstance(row[name], str):
                row[name] = json.loads(row[name])
        out.append(row)
    return out


@pytest.fixture
def seeded(client: flowscope.Client, engine: sa.Engine) -> flowscope.Client:
    _seed(engine)
    return client


def test_schema_is_explicit_and_faithful() -> None:
    s = export.arrow_schema("executions")
    assert s.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert s.field("duration_seconds").type == pa.decimal128(10, 3)
    assert s.field("parameters").type == pa.json_()
    assert s.field("steps_completed").type == pa.int32()
    assert s.field("status").type == pa.string()
    assert export.arrow_schema("workflows").field("tags").type == pa.list_(pa.string())
    assert export.arrow_schema("workflows").field("is_public").type == pa.bool_()
    assert export.arrow_schema("audit_log").field("id").type == pa.int64()
    assert "password_hash" not in export.arrow_schema("users").names
    f = export.arrow_schema("executions", decimal="float64")
    assert f.field("duration_seconds").type == pa.float64()


@pytest.mark.parametrize("table", list(export.TABLES))
def test_schema_is_derived_from_the_model_tables(table: str) -> None:
    """Every column of the table but the secret ones, in order, NOT NULL kept: no list of
    columns is written anywhere but in the models."""
    from flowscope.models import SECRET_COLUMNS

    schema = export.arrow_schema(table)
    columns = [c for c in export.TABLES[table].c if c.name not in SECRET_COLUMNS.get(table, ())]
    assert schema.names == [c.name for c in columns]
    assert [f.nullable for f in schema] == [bool(c.nullable) for c in columns]


def test_a_column_added_to_a_model_table_reaches_the_schema(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a new revision's column needs here: nothing (the table is all there is)."""
    from flowscope.export import _schema

    grown = sa.Table(
        "executions",
        sa.MetaData(),
        *(c._copy() for c in EXECUTIONS.c),
        sa.Column("cost", sa.Numeric(12, 2), nullable=False),
        sa.Column("labels", sa.ARRAY(sa.Text)),
    )
    monkeypatch.setitem(_schema.TABLES, "executions", grown)
    schema = export.arrow_schema("executions")
    assert schema.field("cost") == pa.field("cost", pa.decimal128(12, 2), nullable=False)
    assert schema.field("labels").type == pa.list_(pa.string())
    plan = _read._plan("executions")
    assert [c.name for c in plan.columns][-2:] == ["cost", "labels"]


def test_every_read_has_the_one_signature(seeded: flowscope.Client) -> None:
    """to_arrow, to_pandas, to_polars and iter_batches take read_options' arguments (for
    help(), type checkers and the error boundary), and the free functions are aliases."""
    import inspect

    one = list(inspect.signature(_read.read_options).parameters.values())
    for method in ("to_arrow", "to_pandas", "to_polars", "iter_batches"):
        got = list(inspect.signature(getattr(seeded.executions, method)).parameters.values())
        assert got == one, method
    with pytest.raises(flowscope.ValidationError, match="batch_size"):
        seeded.executions.to_arrow(batch_size="many")
    with pytest.raises(flowscope.ValidationError, match="colums"):
        seeded.executions.to_arrow(colums=["id"])  # a misspelt option is no filter field
    alias = flowscope.read_arrow(seeded, "executions", columns=["id"], status="failed")
    assert alias.equals(seeded.executions.to_arrow(columns=["id"], status="failed"))
    assert alias.num_rows == 10


@pytest.mark.parametrize("table", list(export.TABLES))
def test_read_arrow_equals_source_rows(
    seeded: flowscope.Client, engine: sa.Engine, table: str
) -> None:
    got = export.read_arrow(seeded, table)
    assert got.schema == export.arrow_schema(table)
    source = _source(engine, table)
    assert source, "fixture must have rows"
    order = sorted(range(got.num_rows), key=lambda i: got.column("id")[i].as_py())
    rows = _normalise([got.slice(i, 1).to_pylist()[0] for i in order], table)
    assert rows == source


def test_empty_result_keeps_schema(client: flowscope.Client) -> None:
    got = export.read_arrow(client, "executions", status="failed")
    assert got.num_rows == 0
    assert got.schema == export.arrow_schema("executions")
    df = export.read_pandas(client, "executions")
    assert list(df.columns) == export.arrow_schema("executions").names
    assert str(df.dtypes["created_at"]) == "datetime64[us, UTC]"


def test_filters_columns_and_small_batches(seeded: flowscope.Client, engine: sa.Engine) -> None:
    got = seeded.executions.to_arrow(status=["failed"], columns=["id", "status"], batch_size=3)
    assert got.column_names == ["id", "status"]
    expected = sorted(r["id"] for r in _source(engine, "executions") if r["status"] == "failed")
    assert sorted(got.column("id").to_pylist()) == expected
    batches = list(seeded.executions.iter_batches(batch_size=7))
    assert [b.num_rows for b in batches][:-1] == [7] * (len(batches) - 1)
    assert sum(b.num_rows for b in batches) == 40
    with pytest.raises(flowscope.ValidationError, match="unknown column"):
        export.read_arrow(seeded, "users", columns=["password_hash"])
    with pytest.raises(flowscope.ValidationError):
        export.read_arrow(seeded, "executions", status="exploded")
    with pytest.raises(flowscope.ValidationError, match="unknown table"):
        export.read_arrow(seeded, "pg_authid")


def test_flatten_json_keys(seeded: flowscope.Client, engine: sa.Engine) -> None:
    got = export.read_arrow(
        seeded,
        "executions",
        columns=["id"],
        flatten={
            "parameters.lr": "float64",
            "parameters.name": "string",
            "parameters.nested.k": "json",
            "result.acc": "float64",
            "parameters.name.x": "int64",
        },
    )
    assert got.schema.field("parameters.lr").type == pa.float64()
    assert got.schema.field("parameters.nested.k").type == pa.json_()
    by_id = {r["id"]: r for r in got.to_pylist()}
    for src in _source(engine, "executions"):
        row = by_id[src["id"]]
        assert row["parameters.lr"] == pytest.approx(src["parameters"]["lr"])
        assert row["parameters.name"] == src["parameters"]["name"]
        assert json.loads(row["parameters.nested.k"]) == src["parameters"]["nested"]["k"]
        acc = src["result"].get("acc") if isinstance(src["result"], dict) else None
        assert row["result.acc"] == (pytest.approx(acc) if acc is not None else None)
        assert row["parameters.name.x"] is None
    plain = export.read_arrow(seeded, "executions", columns=["id"], flatten=["parameters.lr"])
    assert plain.schema.field("parameters.lr").type == pa.string()
    with pytest.raises(flowscope.ValidationError, match="not a JSONB column"):
        export.read_arrow(seeded, "executions", flatten=["owner.x"])


def test_read_pandas_dtypes(seeded: flowscope.Client) -> None:
    import pandas as pd

    df = seeded.executions.to_pandas()
    assert str(df.dtypes["created_at"]) == "datetime64[us, UTC]"
    assert df.dtypes["steps_completed"] == pd.Int32Dtype()
    assert df.dtypes["status"] == pd.api.types.pandas_dtype(flowscope._frames.STRING)
    assert df.dtypes["duration_seconds"] == pd.ArrowDtype(pa.decimal128(10, 3))
    assert df["steps_completed"].isna().sum() == 7  # i % 6 == 0 for i < 40
    wf = seeded.workflows.to_pandas(decimal="float64")
    assert wf.dtypes["is_public"] == pd.BooleanDtype()
    assert wf.dtypes["tags"] == pd.ArrowDtype(pa.list_(pa.string()))
    fl = export.read_pandas(seeded, "executions", decimal="float64")
    assert fl.dtypes["duration_seconds"] == pd.Float64Dtype()


def _duck(sql: str) -> list[tuple[Any, ...]]:
    import duckdb

    with duckdb.connect() as con:
        return con.execute(sql).fetchall()


def test_parquet_round_trip_pyarrow_pandas_duckdb(
    seeded: flowscope.Client, engine: sa.Engine, tmp_path: Path
) -> None:
    path = tmp_path / "executions.parquet"
    result = seeded.export.parquet("executions", path, progress=False)
    assert result.rows == 40 and result.files == (path,)
    assert result.bytes == path.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["executions.parquet"]
    source = _source(engine, "executions")

    table = pq.read_table(path)
    assert table.schema.remove_metadata() == export.arrow_schema("executions")
    assert _normalise(table.sort_by("id").to_pylist(), "executions") == source

    import pandas as pd

    df = pd.read_parquet(path).sort_values("id")
    assert str(df.dtypes["created_at"]) == "datetime64[us, UTC]"
    assert list(df["created_at"]) == [r["created_at"] for r in source]
    assert [None if pd.isna(v) else v for v in df["duration_seconds"]] == [
        r["duration_seconds"] for r in source
    ]
    assert [json.loads(v) for v in df["parameters"]] == [r["parameters"] for r in source]

    cols = ", ".join(f'"{c}"' for c in export.arrow_schema("executions").names)
    rows = _duck(f"SELECT {cols} FROM read_parquet('{path}') ORDER BY id")
    names = export.arrow_schema("executions").names
    duck = _normalise([dict(zip(names, r, strict=True)) for r in rows], "executions")
    assert duck == source


def test_batches_are_gathered_into_row_groups(
    seeded: flowscope.Client, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small batches do not make small row groups: they are gathered (~_ROW_GROUP_ROWS)."""
    path = tmp_path / "rg.parquet"
    seeded.export.parquet("executions", path, batch_size=3, progress=False)
    assert pq.ParquetFile(path).metadata.num_row_groups == 1  # 40 rows < _ROW_GROUP_ROWS
    monkeypatch.setattr(_atomic, "_ROW_GROUP_ROWS", 16)
    seeded.export.parquet("executions", path, batch_size=5, progress=False)
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [20, 20]
    got = _normalise(pq.read_table(path).sort_by("id").to_pylist(), "executions")
    assert got == _source(engine, "executions")


def test_workflows_parquet_lists_and_text(
    seeded: flowscope.Client, engine: sa.Engine, tmp_path: Path
) -> None:
    path = tmp_path / "wf.parquet"
    seeded.export.parquet("workflows", path, progress=False)
    got = _normalise(pq.read_table(path).sort_by("id").to_pylist(), "workflows")
    assert got == _source(engine, "workflows")
    tags = _duck(f"SELECT id, tags FROM read_parquet('{path}') ORDER BY id")
    assert tags == [
        ("wf_1", ["etl", "comma,tag", 'quote"tag', "", "NULL"]),
        ("wf_2", []),
        ("wf_3", None),
    ]
    users = tmp_path / "users.parquet"
    seeded.export.parquet("users", users, progress=False)
    assert "password_hash" not in pq.read_schema(users).names
    assert b"$argon2id$secret" not in users.read_bytes()


def test_export_of_a_query(seeded: flowscope.Client, tmp_path: Path) -> None:
    e = EXECUTIONS.c
    query = sa.select(
        e.workflow_id,
        sa.func.count().label("runs"),
        sa.func.max(e.duration_seconds).label("longest"),
    ).group_by(e.workflow_id)
    result = seeded.export.parquet(query, tmp_path / "q.parquet", progress=False)
    table = pq.read_table(tmp_path / "q.parquet").sort_by("workflow_id")
    assert result.rows == 3
    assert table.column("runs").to_pylist() == [14, 13, 13]
    assert table.schema.field("runs").type == pa.int64()
    # every wire type the decoder handles, with NULLs and signs
    values = sa.values(
        sa.column("n", sa.Numeric(12, 4)),
        sa.column("f", sa.Float),
        sa.column("b", sa.Boolean),
        sa.column("s", sa.SmallInteger),
        sa.column("d", sa.Date),
        sa.column("t", sa.Text),
        name="v",
    ).data(
        [
            (Decimal("-12345678.9012"), -1.5, True, -3, datetime(1999, 12, 31).date(), "x" * 13),
            (Decimal("0.0001"), None, None, None, None, None),
            (None, 2.0**60, False, 32767, datetime(2026, 2, 28).date(), ""),
        ]
    )
    query = sa.select(
        sa.cast(values.c.n, sa.Numeric(12, 4)).label("n"),
        sa.cast(values.c.n, sa.Numeric).label("free"),
        values.c.f,
        values.c.b,
        values.c.s,
        values.c.d,
        values.c.t,
        sa.cast(values.c.n, sa.Text).label("uuidish"),
    )
    seeded.export.parquet(query, tmp_path / "types.parquet", progress=False)
    got = pq.read_table(tmp_path / "types.parquet")
    assert got.schema.field("n").type == pa.decimal128(12, 4)
    assert got.schema.field("free").type == pa.float64()
    assert got.to_pylist() == [
        {"n": Decimal("-12345678.9012"), "free": -12345678.9012, "f": -1.5, "b": True, "s": -3,
         "d": datetime(1999, 12, 31).date(), "t": "x" * 13, "uuidish": "-12345678.9012"},
        {"n": Decimal("0.0001"), "free": 0.0001, "f": None, "b": None, "s": None, "d": None,
         "t": None, "uuidish": "0.0001"},
        {"n": None, "free": None, "f": 2.0**60, "b": False, "s": 32767,
         "d": datetime(2026, 2, 28).date(), "t": "", "uuidish": None},
    ]  # fmt: skip


def test_failed_export_leaves_nothing(
    seeded: flowscope.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    calls = {"n": 0}
    # the per-batch step of either transport: the COPY decoder or the ADBC caster
    for step in (_copy._Decoder, _adbc._AdbcCaster):

        def flaky(self: Any, data: Any, real: Any = step.__call__) -> Any:
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("injected failure in batch 3")
            return real(self, data)

        monkeypatch.setattr(step, "__call__", flaky)
    target = tmp_path / "out.parquet"
    with pytest.raises(flowscope.FlowscopeError, match="injected"):
        seeded.export.parquet("executions", target, batch_size=5, progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(flowscope.FlowscopeError, match="injected"):
        calls["n"] = 0
        seeded.export.parquet(
            "executions", tmp_path / "ds", batch_size=5, partition_by=["day"], progress=False
        )
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    # the pool is healthy afterwards
    assert seeded.sql("SELECT count(*) AS n FROM executions") == [{"n": 40}]


def test_server_error_mid_stream_leaves_nothing(seeded: flowscope.Client, tmp_path: Path) -> None:
    e = EXECUTIONS.c
    # the cast fails only when the 30th row (in id order) is reached
    boom = sa.case((e.id == "ex_0030", sa.cast(e.owner, sa.Integer)), else_=sa.literal(0))
    query = sa.select(e.id, boom.label("x")).order_by(e.id)
    target = tmp_path / "bad.parquet"
    with pytest.raises(flowscope.FlowscopeError):
        seeded.export.parquet(query, target, batch_size=4, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_replaced_atomically(seeded: flowscope.Client, tmp_path: Path) -> None:
    target = tmp_path / "x.parquet"
    target.write_bytes(b"old")
    seeded.export.parquet("organizations", target, progress=False)
    assert pq.read_table(target).num_rows == 2
    empty = tmp_path / "empty.parquet"
    seeded.export.parquet("executions", empty, status="timeout", progress=False)
    assert pq.read_table(empty).schema.remove_metadata() == export.arrow_schema("executions")


def test_partitioned_dataset(seeded: flowscope.Client, engine: sa.Engine, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    result = seeded.export.parquet(
        "executions", root, partition_by=["organization_id", "day"], progress=False
    )
    source = _source(engine, "executions")
    expected_dirs = {
        (
            r["organization_id"] or "__HIVE_DEFAULT_PARTITION__",
            r["created_at"].astimezone(UTC).date().isoformat(),
        )
        for r in source
    }
    assert len(result.files) == len(expected_dirs)
    assert {
        (p.parent.parent.name.split("=")[1], p.parent.name.split("=")[1]) for p in result.files
    } == expected_dirs
    assert not [p for p in root.rglob(".*")]

    part = ds.partitioning(
        pa.schema([("organization_id", pa.string()), ("day", pa.date32())]), flavor="hive"
    )
    table = ds.dataset(root, format="parquet", partitioning=part).to_table().sort_by("id")
    assert table.num_rows == 40
    got = _normalise(table.drop_columns(["day"]).to_pylist(), "executions")
    for row in got:
        if row["organization_id"] == "__HIVE_DEFAULT_PARTITION__":
            row["organization_id"] = None
    assert [{k: r[k] for k in source[0]} for r in got] == source

    import pandas as pd

    # pyarrow cannot yet unify dictionary-typed partition values holding NULL
    # (__HIVE_DEFAULT_PARTITION__), so pandas gets the partitioning spelled out here...
    df = pd.read_parquet(root, partitioning=part)
    assert len(df) == 40 and df["organization_id"].isna().sum() == 13
    # ...and reads a dataset without NULL partitions as is.
    by_day = tmp_path / "by_day"
    seeded.export.parquet("executions", by_day, partition_by=["day"], progress=False)
    plain = pd.read_parquet(by_day)
    assert len(plain) == 40 and set(plain["id"]) == {r["id"] for r in source}
    n, days = _duck(
        f"SELECT count(*), count(DISTINCT day) FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true)"
    )[0]
    assert n == 40 and days == len({d for _, d in expected_dirs})
    with pytest.raises(flowscope.ValidationError, match="not empty"):
        seeded.export.parquet("executions", root, partition_by=["day"], progress=False)
    with pytest.raises(flowscope.ValidationError, match="partition_by"):
        seeded.export.parquet("executions", tmp_path / "z", partition_by=["owner"], progress=False)


LATEST = """
    SELECT * EXCLUDE (_version, _deleted, latest) FROM (
        SELECT *, row_number() OVER (PARTITION BY id ORDER BY _version DESC) AS latest
        FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true, union_by_name = true))
    WHERE latest = 1 AND NOT _deleted
"""


def _latest(root: Path, columns: str = "id, status, updated_at") -> list[tuple[Any, ...]]:
    """The dataset read "latest version per id" (the SQL the export's docstring gives)."""
    return _duck(f"SELECT {columns} FROM ({LATEST.format(root=root)}) ORDER BY id")


def _table_rows(engine: sa.Engine, where: str = "true") -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text(f"SELECT id, status, updated_at FROM executions WHERE {where} ORDER BY id")
            )
        ]


def _run(client: flowscope.Client, root: Path, **options: Any) -> export.ExportResult:
    return client.export.parquet(
        "executions", root, incremental=True, partition_by=["day"], progress=False, **options
    )


def test_incremental_export_follows_inserts_updates_and_deletes(
    seeded: flowscope.Client, engine: sa.Engine, tmp_path: Path
) -> None:
    root = tmp_path / "inc"
    first = _run(seeded, root)
    assert first.rows == 40 and first.deleted == 0
    manifest = json.loads((root / "_flowscope_manifest.json").read_text())
    newest = max(r["created_at"] for r in _source(engine, "executions"))
    assert datetime.fromisoformat(manifest["high_water_mark"]) == newest
    assert manifest["horizon"] > 0 and manifest["snapshot"] and manifest["version"] == 1
    assert _latest(root) == _table_rows(engine)
    again = _run(seeded, root)  # nothing changed: nothing added
    assert (again.rows, again.deleted, again.files) == (0, 0, ())
    with engine.begin() as conn:
        conn.execute(
            sa.insert(EXECUTIONS),
            [
                {"id": "ex_new1", "workflow_id": "wf_1", "owner": "u", "organization_id": "org_a",
                 "created_at": newest + timedelta(microseconds=1)},
                {"id": "ex_new2", "workflow_id": "wf_1", "owner": "u", "organization_id": "org_a",
                 "created_at": newest + timedelta(days=3)},
                # older than the mark: a `created_at > last` export never saw such rows
                {"id": "ex_old", "workflow_id": "wf_1", "owner": "u", "organization_id": "org_a",
                 "created_at": newest - timedelta(days=1)},
            ],
        )  # fmt: skip
        conn.execute(  # exported rows change afterwards...
            sa.text("UPDATE executions SET status = 'cancelled' WHERE id IN ('ex_0001', 'ex_0002')")
        )
        conn.execute(sa.text("DELETE FROM executions WHERE id IN ('ex_0003', 'ex_0004')"))
    third = _run(seeded, root)
    assert (third.rows, third.deleted) == (5, 2)
    assert _latest(root) == _table_rows(engine)
    table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
    tombs = table.filter(pa.compute.field("_deleted"))
    assert sorted(tombs.column("id").to_pylist()) == ["ex_0003", "ex_0004"]
    assert tombs.column("day").null_count == 0  # in the deleted row's own day partition
    assert set(tombs.column("_version").to_pylist()) == {3}
    manifest = json.loads((root / "_flowscope_manifest.json").read_text())
    assert len(manifest["runs"]) == 3 and (manifest["rows"], manifest["deleted"]) == (45, 2)
    assert _run(seeded, root).files == ()
    with pytest.raises(flowscope.ValidationError, match="holds an export"):
        seeded.export.parquet(
            "workflows", root, incremental=True, partition_by=["day"], progress=False
        )
    flat = tmp_path / "flat"
    seeded.export.parquet("audit_log", flat, incremental=True, progress=False)
    assert len(list(flat.glob("part-*.parquet"))) == 1
    seeded.workflows.update("wf_1", description="changed")
    audit = seeded.export.parquet("audit_log", flat, incremental=True, progress=False)
    assert audit.rows == 1 and audit.deleted == 0


def test_incremental_export_keeps_a_late_commit(
    seeded: flowscope.Client, engine: sa.Engine, tmp_path: Path
) -> None:
    """A transaction open across a run commits rows older than the rows it exported (and
    an update and a delete): the next run has them all."""
    root = tmp_path / "inc"
    late = engine.connect()
    tx = late.begin()
    try:
        late.execute(sa.text("SELECT txid_current()"))
        late.execute(
            sa.text(
                "INSERT INTO executions (id, workflow_id, owner, organization_id, created_at)"
                " VALUES ('ex_late', 'wf_1', 'u', 'org_a', now() - interval '400 days')"
            )
        )
        late.execute(sa.text("UPDATE executions SET status = 'timeout' WHERE id = 'ex_0005'"))
        late.execute(sa.text("DELETE FROM executions WHERE id = 'ex_0006'"))
        first = _run(seeded, root)  # while the writer is open
    finally:
        tx.commit()
        late.close()
    assert first.rows == 40
    second = _run(seeded, root)
    assert (second.rows, second.deleted) == (2, 1)
    assert _latest(root) == _table_rows(engine)
    assert _run(seeded, root).files == ()


def test_a_run_reads_its_snapshot_on_either_transport(
    seeded: flowscope.Client,
    engine: sa.Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    transport: str,
) -> None:
    """A row committed after the run took its snapshot is not in the run (ADBC imports the
    snapshot: it reads what the feed's horizon covers), and the next run has it, once."""
    from flowscope import _changes

    take_point = _changes.take_point

    def then_commit_a_row(conn: sa.Connection) -> Any:
        point = take_point(conn)
        with engine.begin() as other:
            other.execute(
                sa.text(
                    "INSERT INTO executions (id, workflow_id, owner, organization_id)"
                    " VALUES ('ex_after', 'wf_1', 'u', 'org_a')"
                )
            )
        return point

    monkeypatch.setattr(_changes, "take_point", then_commit_a_row)
    root = tmp_path / "inc"
    assert _run(seeded, root).rows == 40
    monkeypatch.setattr(_changes, "take_point", take_point)
    assert _run(seeded, root).rows == 1
    assert _latest(root) == _table_rows(engine)


def test_incremental_export_of_a_filter_tombstones_rows_that_leave_it(
    seeded: flowscope.Client, engine: sa.Engine, tmp_path: Path
) -> None:
    root = tmp_path / "failed"
    _run(seeded, root, status="failed")
    assert _latest(root) == _table_rows(engine, "status = 'failed'")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE executions SET status = 'completed' WHERE id = 'ex_0001'"))
        conn.execute(sa.text("UPDATE executions SET status = 'failed' WHERE id = 'ex_0000'"))
    second = _run(seeded, root, status="failed")
    assert (second.rows, second.deleted) == (1, 1)
    assert _latest(root) == _table_rows(engine, "status = 'failed'")


def test_an_old_created_at_manifest_is_refused(seeded: flowscope.Client, tmp_path: Path) -> None:
    root = tmp_path / "old"
    _run(seeded, root)
    path = root / "_flowscope_manifest.json"
    manifest = json.loads(path.read_text())
    for run in manifest["runs"]:
        del run["horizon"]
    manifest["horizon"] = None
    path.write_text(json.dumps(manifest))
    with pytest.raises(flowscope.ValidationError, match="older flowscope"):
        _run(seeded, root)


def test_query_of_text_columns_exports_what_it_returns(
    seeded: flowscope.Client, engine: sa.Engine, tmp_path: Path
) -> None:
    """``select(text("organization_id"))``: SQLAlchemy knows no column of it; the server does."""
    query = sa.select(sa.text("organization_id")).select_from(sa.text("executions"))
    target = tmp_path / "orgs.parquet"
    result = seeded.export.parquet(query, target, progress=False)
    got = pq.read_table(target)
    assert result.rows == got.num_rows == 40
    assert got.schema.names == ["organization_id"]
    with engine.connect() as conn:
        expected = conn.execute(sa.text("SELECT organization_id FROM executions")).scalars()
        assert sorted(got.column(0).to_pylist(), key=str) == sorted(expected, key=str)
    mixed = sa.select(EXECUTIONS.c.id, sa.text("status AS s")).order_by(EXECUTIONS.c.id)
    seeded.export.parquet(mixed, target, progress=False)
    assert pq.read_table(target).slice(0, 2).to_pylist() == [
        {"id": "ex_0000", "s": "completed"},
        {"id": "ex_0001", "s": "failed"},
    ]
    with pytest.raises(flowscope.ValidationError, match="repeat"):
        seeded.export.parquet(sa.select(sa.text("id, id FROM executions")), target, progress=False)


@pytest.mark.parametrize("kind", ["file", "partitioned", "incremental"])
def test_unwritable_paths_are_flowscope_errors_naming_the_path(
    seeded: flowscope.Client, tmp_path: Path, kind: str
) -> None:
    a_file = tmp_path / "plain.txt"
    a_file.write_text("not a directory")
    options: dict[str, Any] = {
        "file": {},
        "partitioned": {"partition_by": ["day"]},
        "incremental": {"incremental": True},
    }[kind]
    for where in (Path("/proc/nope/x.parquet"), a_file / "x.parquet", a_file / "deeper" / "x"):
        with pytest.raises(flowscope.ConfigurationError, match=re.escape(str(where))):
            seeded.export.parquet("workflows", where, progress=False, **options)
    assert [p.name for p in tmp_path.iterdir()] == ["plain.txt"]
    assert a_file.read_text() == "not a directory"


def test_scoped_client_exports_only_its_organization(
    seeded: flowscope.Client, tmp_path: Path
) -> None:
    scoped = seeded.scoped("org_b")
    table = export.read_arrow(scoped, "executions")
    assert set(table.column("organization_id").to_pylist()) == {"org_b"}
    assert table.num_rows == 13
    result = scoped.export.parquet("workflows", tmp_path / "w.parquet", progress=False)
    assert result.rows == 1
    audit = scoped.audit.to_arrow()
    assert (
        scoped.users.to_arrow().num_rows == 0
        and "password_hash" not in scoped.users.to_arrow().column_names
    )
    assert set(audit.column("organization_id").to_pylist()) <= {"org_b"}


def test_progress_bar_counts_rows(
    seeded: flowscope.Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seeded.export.parquet("executions", tmp_path / "p.parquet", batch_size=10, progress=True)
    err = capsys.readouterr().err
    assert "export executions" in err and "40" in err and "rows/s" in err


def test_cli_export(seeded: flowscope.Client, database_url: str, tmp_path: Path) -> None:
    from flowscope.cli import app
    from typer.testing import CliRunner

    target = tmp_path / "cli.parquet"
    args = ["export", "executions", str(target), "--status", "failed", "--no-progress"]
    out = CliRunner().invoke(app, [*args, "--database-url", database_url])
    assert out.exit_code == 0, out.output
    assert "exported 10 rows" in out.output
    assert set(pq.read_table(target).column("status").to_pylist()) == {"failed"}
    bad = CliRunner().invoke(app, ["export", "users", str(tmp_path / "u"), "--status", "x", "--database-url", database_url])  # fmt: skip
    assert bad.exit_code == 1 and not (tmp_path / "u").exists()


# -- the ADBC transport specifically ---------------------------------------------------------
def test_adbc_uri_from_sqlalchemy_urls() -> None:
    import urllib.parse

    def parts(uri: str | None) -> tuple[str, dict[str, str]]:
        assert uri is not None and "+" not in uri.split("?")[1]  # libpq decodes %20, not +
        base, _, query = uri.partition("?")
        return base, dict(urllib.parse.parse_qsl(query))

    base, query = parts(export.adbc_uri("postgresql+psycopg://u:p%40ss@db:5433/x"))
    assert base == "postgresql://u:p%40ss@db:5433/x"
    assert query["application_name"] == "flowscope" and query["keepalives"] == "1"
    assert query["connect_timeout"] == "10" and query["tcp_user_timeout"] == "30000"
    # the embedded server's Unix-socket form
    base, query = parts(export.adbc_uri("postgresql://postgres:@/flowscope?host=/tmp/pg dir"))
    assert base == "postgresql://postgres@/flowscope" and query["host"] == "/tmp/pg dir"
    base, query = parts(
        export.adbc_uri(
            "postgresql://u@[::1]:5432/x?options=-c%20work_mem%3D8MB", statement_timeout=1.5
        )
    )
    assert base == "postgresql://u@[::1]:5432/x"
    assert query["options"] == "-c work_mem=8MB -c statement_timeout=1500"


def test_adbc_is_used_without_parameters_and_copy_with_them(
    seeded: flowscope.Client, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    if transport != "adbc":
        pytest.skip("ADBC only")
    real_copy = _copy._copy_batches

    def no_copy(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the COPY decoder ran")

    monkeypatch.setattr(_copy, "_copy_batches", no_copy)
    got = seeded.executions.to_arrow(decimal="float64").sort_by("id")
    rows = _source(engine, "executions")
    assert got.column("id").to_pylist() == [r["id"] for r in rows]
    assert got.schema.field("duration_seconds").type == pa.float64()
    assert got.column("duration_seconds").to_pylist() == [
        None if r["duration_seconds"] is None else float(r["duration_seconds"]) for r in rows
    ]
    # scoped: ADBC logs in as the tenant's own role, so the same RLS applies
    scoped = seeded.scoped("org_a", user_id="usr_1")
    mine = export.read_arrow(scoped, "executions").column("organization_id").to_pylist()
    assert mine == ["org_a"] * sum(r["organization_id"] == "org_a" for r in rows) and mine
    mine_failed = export.read_arrow(scoped, "executions", status="failed").column("id")
    assert sorted(mine_failed.to_pylist()) == [
        r["id"] for r in rows if r["organization_id"] == "org_a" and r["status"] == "failed"
    ]

    # values of a filter are bound to transaction-local settings the query reads back
    since = T0 - timedelta(days=400)
    got = seeded.executions.to_arrow(status=["failed", "completed"], since=since).sort_by("id")
    assert got.column("id").to_pylist() == [
        r["id"] for r in rows if r["status"] in ("failed", "completed") and r["created_at"] >= since
    ]
    assert (
        _adbc._adbc_query(
            seeded._session, _read._plan("executions", filter_fields={"status": "failed"})
        )
        is not None
    )

    # lists (status, tags) travel as text[] settings: still ADBC
    failed = seeded.executions.to_arrow(status=["failed"], tags_any=["etl"])
    assert failed.num_rows > 0 and set(failed.column("status").to_pylist()) == {"failed"}

    # a "$1" in the query's own text: psycopg binds, COPY streams
    def no_adbc(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("ADBC ran")

    monkeypatch.setattr(_copy, "_copy_batches", real_copy)
    monkeypatch.setattr(_adbc, "_adbc_batches", no_adbc)
    query = sa.select(sa.literal_column("'$1'", sa.Text).label("dollar"))
    assert (
        _adbc._adbc_query(
            seeded._session, _read._plan_query(seeded._session, query, decimal="float64")
        )
        is None
    )


def test_adbc_decimal_cast_is_exact() -> None:
    import pyarrow.compute as pc

    text = pa.array(["1.500", None, "-0.001", "9999999.999"])
    got = _adbc._adbc_cast(text, pa.decimal128(10, 3))
    assert got.to_pylist() == [Decimal("1.500"), None, Decimal("-0.001"), Decimal("9999999.999")]
    with pytest.raises(pa.ArrowInvalid):
        _adbc._adbc_cast(pa.array(["1.0005"]), pa.decimal128(10, 3))
    as_json = _adbc._adbc_cast(pa.array(['{"a": 1}', None]), pa.json_())
    assert as_json.type == pa.json_() and pc.is_null(as_json.storage).to_pylist() == [False, True]
