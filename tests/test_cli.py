"""The flowscope CLI, through typer's test runner, against a real PostgreSQL."""

from __future__ import annotations

import io
import json
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flowscope
import pandas as pd
import pytest
import typer
from flowscope import cli
from flowscope.cli._output import OutputFormat, emit
from typer.testing import CliRunner

runner = CliRunner()


def invoke(*args: str, url: str | None = None, input: str | None = None) -> tuple[int, str, str]:
    argv = (["--database-url", url] if url else []) + list(args)
    result = runner.invoke(cli.app, argv, env={"FLOWSCOPE_DATABASE_URL": None}, input=input)
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


def _click_command(*path: str) -> Any:
    """The (click) command that `flowscope <path>` runs."""
    command: Any = typer.main.get_command(cli.app)
    for name in path:
        command = command.commands[name]
    return command


def _walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _walk(sub, (*path, name))
    else:
        yield path


def _nowhere() -> str:
    """A URL where nothing listens: a command that connects fails differently."""
    return f"postgresql://nobody@127.0.0.1:{_free_port()}/nowhere"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_help_lists_the_commands() -> None:
    code, out, _ = invoke("--help")
    assert code == 0
    for command in ("demo", "db"):
        assert command in out


def test_every_command_once_each_with_the_shared_options() -> None:
    """No two visible commands run the same code; every command takes --database-url."""
    root = typer.main.get_command(cli.app)
    paths = list(_walk(root))
    assert len(paths) >= 20
    seen: dict[object, tuple[str, ...]] = {}
    for path in paths:
        command = _click_command(*path)
        assert "database_url" in {p.name for p in command.params}, path
        if command.hidden:
            continue
        target = command.callback
        while hasattr(target, "__wrapped__"):
            target = target.__wrapped__
        assert target not in seen, f"{path} repeats {seen.get(target)}"
        seen[target] = path
    assert [p for p in paths if _click_command(*p).hidden] == [("analytics", "refresh")]


def test_the_package_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flowscope.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(Path(flowscope.__file__).parents[1]), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "analytics" in result.stdout and "prune" in result.stdout


def test_database_url_after_the_command_wins(database_url: str) -> None:
    code, out, err = invoke("db", "current", "--database-url", database_url, url=_nowhere())
    assert code == 0, err
    assert out.startswith("current: 0")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("prune", "--older-than", "30M"), "'30M' is ambiguous: flowscope uses pandas offsets"),
        (("prune", "--older-than", "30M"), "for 30 minutes write '30min'"),
        (("prune", "--older-than", "12H", "--dry-run"), "write '12h'"),
        (("prune", "--older-than", "45S", "--dry-run"), "write '45s'"),
        (("prune", "--older-than", "3MS", "--dry-run"), "calendar offset"),
        (("prune", "--older-than", "90 days", "--dry-run"), "write '90D'"),
        (("analytics", "status", "--freq", "1H"), "--freq='1H' is an old spelling"),
        (("analytics", "durations", "--freq", "15T"), "write '15min'"),
        (("analytics", "status", "--freq", "1M"), "for calendar months '1MS'"),
        (("analytics", "status", "--freq", "1ME"), "write '1MS'"),
        (("analytics", "compare", "--period", "1MS"), "--period='1MS' is a calendar offset"),
        (("analytics", "compare", "--period", "7 days"), "write '7D'"),
    ],
)
def test_old_duration_spellings_fail_before_connecting(args: tuple[str, ...], message: str) -> None:
    code, out, err = invoke(*args, url=_nowhere())
    assert code == 1, out
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_durations_in_pandas_offsets_reach_the_sdk(demo_url: str, tmp_path: Path) -> None:
    for age in ("36500D", "5200W", "876000h", "30min", "7d"):
        code, out, err = invoke(
            "prune", "--older-than", age, "--dry-run", "--archive-to", str(tmp_path), url=demo_url
        )
        assert code == 0, err
        assert out.startswith("would prune ") and "executions rows created before" in out
    code, out, _ = invoke("prune", "--older-than", "36500D", "--dry-run", url=demo_url)
    assert out.startswith("would prune 0 executions")  # nothing is 100 years old
    code, out, err = invoke("analytics", "status", "--freq", "W-MON", "-f", "json", url=demo_url)
    assert code == 0, err
    code2, out2, _ = invoke("analytics", "status", "--freq", "1W", "-f", "json", url=demo_url)
    assert code2 == 0 and json.loads(out) == json.loads(out2)
    code, out, err = invoke(
        "analytics", "compare", "--period", "168h", "--until", "2026-06-30", "-f", "json",
        url=demo_url,
    )  # fmt: skip
    code2, out2, _ = invoke(
        "analytics", "compare", "--period", "1W", "--until", "2026-06-30", "-f", "json",
        url=demo_url,
    )  # fmt: skip
    assert code == code2 == 0, err
    assert json.loads(out) == json.loads(out2)


def test_db_current(database_url: str) -> None:
    code, out, _ = invoke("db", "current", url=database_url)
    assert code == 0
    assert out.startswith("current: 0") and "head: " in out


def test_database_url_from_the_environment(database_url: str) -> None:
    result = runner.invoke(cli.app, ["db", "current"], env={"FLOWSCOPE_DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    assert "current: 0" in result.stdout


def test_demo_loads_once(client: flowscope.Client, database_url: str) -> None:
    args = ("demo", "--workflows", "12", "--executions", "1500", "--no-tables")
    code, out, err = invoke(*args, url=database_url)
    assert code == 0, err
    assert "1,500 executions (loaded in" in out
    code, out, err = invoke(*args, url=database_url)
    assert code == 0, err
    assert "already loaded, unchanged" in out
    assert client.sql("SELECT count(*) AS n FROM executions") == [{"n": 1500}]
    # other arguments: a conflict, one line, exit 1, nothing changed
    code, out, err = invoke("demo", "--workflows", "12", "--executions", "1000", url=database_url)
    assert code == 1
    assert err.startswith("error: demo data made with other arguments") and err.count("\n") == 1
    assert client.sql("SELECT count(*) AS n FROM executions") == [{"n": 1500}]
    code, out, err = invoke(
        "demo",
        "--workflows",
        "12",
        "--executions",
        "1000",
        "--replace",
        "--no-tables",
        url=database_url,
    )
    assert code == 0, err
    assert client.sql("SELECT count(*) AS n FROM executions") == [{"n": 1000}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("demo", "--executions", "5"), "executions must be"),
        (("demo", "--now", "last tuesday"), "--now: not an ISO 8601 timestamp"),
        (("demo", "--days", "1"), "days must be"),
    ],
)
def test_demo_refuses_bad_arguments_without_connecting(args: tuple[str, ...], message: str) -> None:
    port = _free_port()  # nothing listens there: the check must come first
    code, out, err = invoke(*args, url=f"postgresql://nobody@127.0.0.1:{port}/nowhere")
    assert code == 1
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_unreachable_server_is_one_line() -> None:
    port = _free_port()
    code, out, err = invoke("db", "current", url=f"postgresql://nobody@127.0.0.1:{port}/x")
    assert code == 1
    assert (
        err.startswith("error: cannot connect to PostgreSQL at 127.0.0.1:") and err.count("\n") == 1
    )


def test_wrong_kind_of_url() -> None:
    code, _, err = invoke("demo", url="mysql://u@h/d")
    assert code == 1
    assert "error: flowscope needs PostgreSQL" in err


def test_usage_errors_exit_2() -> None:
    code, _, err = invoke("demo", "--executions", "many")
    assert code == 2
    code, _, _ = invoke("no-such-command")
    assert code == 2


def test_emit_formats(capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.DataFrame(
        {
            "workflow": pd.array(["a", None], dtype="string"),
            "runs": pd.array([3, None], dtype="Int64"),
            "p50_seconds": pd.array([1.23456, None], dtype="Float64"),
            "day": pd.to_datetime(["2026-06-01", "2026-06-02"], utc=True),
        }
    )
    emit(frame, OutputFormat.json)
    records = json.loads(capsys.readouterr().out)
    assert records[0] == {
        "workflow": "a",
        "runs": 3,
        "p50_seconds": 1.23456,
        "day": "2026-06-01T00:00:00.000Z",
    }
    assert records[1]["runs"] is None and records[1]["workflow"] is None
    emit(frame, OutputFormat.csv)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "workflow,runs,p50_seconds,day"
    assert lines[1].startswith("a,3,1.23456,2026-06-01T00:00:00")
    emit(frame, OutputFormat.table, title="t")
    text = capsys.readouterr().out
    assert "1.235" in text and "2026-06-02 00:00:00" in text and "-" in text.splitlines()[-1]
    emit(frame.iloc[0:0], OutputFormat.table)
    assert capsys.readouterr().out.strip() == "(no rows)"


# -- commands backed by the resources and analytics --------------------------------------
DEMO = ("demo", "--workflows", "12", "--executions", "1500")


@pytest.fixture(scope="module")
def demo_url(create_database: Callable[[], str]) -> str:
    """A database of its own with a small demo, loaded once for the read-only commands."""
    from flowscope import demo

    url = create_database()
    with flowscope.connect(url, migrate=True) as client:
        demo.generate(client, workflows=12, executions=1500)
    return url


def test_demo_prints_analytics_tables(demo_url: str) -> None:
    code, out, err = invoke(*DEMO, url=demo_url)
    assert code == 0, err
    for title in ("per organization", "Busiest workflows", "failure signatures", "Slower than"):
        assert title in out
    assert "org_demo_acme" in out and "ConnectionError" in out


def test_every_hint_of_the_demo_runs_and_shows_rows(create_database: Callable[[], str]) -> None:
    """Each command the demo names (in a title, or as the next step) prints rows when pasted.

    30 days of 3,000 runs, so that workflows have the 20 runs a week the "slower" table needs."""
    url = create_database()
    assert invoke("db", "upgrade", url=url)[0] == 0
    code, out, err = invoke(
        "demo", "--workflows", "12", "--executions", "3000", "--days", "30", url=url
    )
    assert code == 0, err
    hints = re.findall(
        r"flowscope ((?:analytics|workflows|executions) [^)\n]*?)(?:\)|   |$)", out, re.M
    )
    assert len(hints) == 5, out
    for hint in hints:
        code, shown, err = invoke(*shlex.split(hint), "-f", "csv", url=url)
        assert code == 0, (hint, err)
        assert len(pd.read_csv(io.StringIO(shown))) > 0, (hint, shown)
    # one meaning of change: the API's (current - previous), beside relative_change
    header = next(line for line in out.splitlines() if "p50_before" in line)
    assert header.split()[-2:] == ["change", "relative_change"], header


def test_workflows_list_and_show(demo_url: str) -> None:
    code, out, err = invoke("workflows", "list", "--limit", "5", "-f", "csv", url=demo_url)
    assert code == 0, err
    frame = pd.read_csv(io.StringIO(out))
    assert list(frame.columns)[:3] == ["id", "name", "status"] and len(frame) == 5
    assert err.startswith("more rows: add --after ")
    cursor = err.split("--after ")[1].strip()
    code, out2, err2 = invoke(
        "workflows", "list", "--limit", "50", "--after", cursor, "-f", "csv", url=demo_url
    )
    rest = pd.read_csv(io.StringIO(out2))
    assert code == 0 and err2 == "" and len(rest) == 7
    assert set(frame.id).isdisjoint(rest.id)

    code, out, _ = invoke("workflows", "list", "--tag", "critical", "-f", "json", url=demo_url)
    rows = json.loads(out)
    assert code == 0 and rows and all("critical" in r["tags"] for r in rows)

    code, out, _ = invoke("workflows", "show", "wf_demo_0001", url=demo_url)
    assert code == 0 and "wf_demo_0001" in out and "steps" in out and "Start →" in out
    code, out, _ = invoke("workflows", "show", "wf_demo_0001", "-f", "json", url=demo_url)
    assert json.loads(out)["id"] == "wf_demo_0001" and isinstance(json.loads(out)["nodes"], list)
    code, _, err = invoke("workflows", "show", "wf_nope", url=demo_url)
    assert code == 1 and err == "error: workflow 'wf_nope' not found\n"


def test_executions_list_and_show(demo_url: str) -> None:
    code, out, err = invoke(
        "executions", "list", "--status", "failed", "--limit", "3", "-f", "json", url=demo_url
    )
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 3 and {r["status"] for r in rows} == {"failed"}
    code, out, _ = invoke("executions", "show", rows[0]["id"], url=demo_url)
    assert code == 0 and rows[0]["id"] in out and "error" in out
    code, _, err = invoke("executions", "list", "--status", "exploded", url=demo_url)
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1
    code, _, err = invoke("executions", "list", "--since", "soon", url=demo_url)
    assert code == 1 and "--since" in err


def test_analytics_commands_pass_their_options(client: flowscope.Client, demo_url: str) -> None:
    code, out, err = invoke(
        "analytics",
        "durations",
        "--by",
        "workflow",
        "--percentiles",
        "0.5,0.95",
        "-f",
        "csv",
        url=demo_url,
    )
    assert code == 0, err
    got = pd.read_csv(io.StringIO(out)).sort_values("workflow").reset_index(drop=True)
    with flowscope.connect(demo_url) as client:
        want = client.analytics.durations(by="workflow", percentiles=(0.5, 0.95))
    want = want.sort_values("workflow").reset_index(drop=True)
    assert list(got.columns) == list(want.columns)
    assert got["executions"].tolist() == want["executions"].tolist()
    assert (got["p95_seconds"] - want["p95_seconds"].astype(float)).abs().max() < 1e-6

    code, out, _ = invoke(
        "analytics", "status", "--by", "organization_id,status", "-f", "json", url=demo_url
    )
    assert code == 0 and {"organization_id", "status"} <= set(json.loads(out)[0])
    code, out, _ = invoke("analytics", "status", "--freq", "1W", "--normalize", url=demo_url)
    assert code == 0 and "bucket" in out
    code, out, _ = invoke("analytics", "tags", "--pairs", "-f", "json", url=demo_url)
    assert code == 0 and {"tag_a", "tag_b"} <= set(json.loads(out)[0])
    code, out, _ = invoke("analytics", "failures", "--top", "2", "-f", "json", url=demo_url)
    assert code == 0 and 1 <= len(json.loads(out)) <= 2
    code, out, _ = invoke(
        "analytics",
        "compare",
        "--until",
        "2026-06-30",
        "--period",
        "7D",
        "-f",
        "json",
        url=demo_url,
    )
    assert code == 0 and "relative_change" in json.loads(out)[0]
    code, out, _ = invoke("analytics", "summary", "--limit", "3", "-f", "json", url=demo_url)
    assert code == 0 and len(json.loads(out)) == 3
    code, out, err = invoke("db", "refresh-rollups", url=demo_url)
    assert code == 0 and out.startswith("rollups refreshed at ") and err == "", err


def test_analytics_refresh_is_a_hidden_deprecated_alias(demo_url: str) -> None:
    code, out, err = invoke("analytics", "refresh", "--no-concurrently", url=demo_url)
    assert code == 0 and out.startswith("rollups refreshed at "), err
    assert err == "warning: this spelling is deprecated; use: flowscope db refresh-rollups\n"
    code, out, _ = invoke("analytics", "--help")
    assert code == 0 and "refresh" not in out and "durations" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("analytics", "durations", "--by", "colour"), "valid keys"),
        (("analytics", "durations", "--percentiles", "half"), "--percentiles"),
        (("analytics", "status", "--freq", "fortnightly"), "freq"),
        (("analytics", "compare", "--period", "forever"), "period"),
        (("analytics", "failures", "--top", "0"), "top"),
    ],
)
def test_analytics_errors_are_one_line(demo_url: str, args: tuple[str, ...], message: str) -> None:
    code, out, err = invoke(*args, url=demo_url)
    assert code == 1, out
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_users_create_and_set_password(client: flowscope.Client, database_url: str) -> None:
    code, out, err = invoke(
        "users",
        "create",
        "rosa",
        "--email",
        "rosa@example.com",
        "--full-name",
        "Rosa Diaz",
        url=database_url,
        input="first passphrase\nfirst passphrase\n",
    )
    assert code == 0, err
    assert "created user rosa (" in out
    assert client.users.authenticate("rosa", "first passphrase").username == "rosa"
    code, out, err = invoke(
        "users",
        "set-password",
        "rosa",
        url=database_url,
        input="second passphrase\nsecond passphrase\n",
    )
    assert code == 0, err
    assert client.users.authenticate("rosa", "second passphrase").username == "rosa"
    # a duplicate user name, a short password, an unknown user: one line each, exit 1
    code, _, err = invoke(
        "users",
        "create",
        "rosa",
        "--email",
        "other@example.com",
        "--password",
        "long enough pw",
        url=database_url,
    )
    assert code == 1 and "username" in err and err.count("\n") == 1
    code, _, err = invoke(
        "users",
        "create",
        "sam",
        "--email",
        "sam@example.com",
        "--password",
        "short",
        url=database_url,
    )
    assert code == 1 and err.startswith("error: ")
    code, _, err = invoke(
        "users", "set-password", "nobody", "--password", "whatever123", url=database_url
    )
    assert code == 1 and "not found" in err


def test_filter_options_are_shared_and_mean_the_same(demo_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`executions list`, the analytics commands and `export` take one set of filter options."""
    import pyarrow.parquet as pq

    shared = {"since", "until", "workflow", "status", "organization", "owner", "tag", "any_tag"}
    commands = {
        ("executions", "list"): shared,
        ("analytics", "durations"): shared,
        ("analytics", "status"): shared,
        ("analytics", "tags"): shared,
        ("analytics", "failures"): shared - {"status"},
        ("analytics", "compare"): shared - {"since"},
        ("analytics", "summary"): shared,
        ("export",): shared,
    }
    for path, expected in commands.items():
        params = {p.name: p for p in _click_command(*path).params}
        assert expected <= set(params) and "filters" not in params, path
        assert params["until"].help == (
            "End of the current period (default: now)."
            if path[-1] == "compare"
            else "Only executions created before (ISO 8601; naive = UTC)."
        )
    code, _, err = invoke("analytics", "failures", "--status", "failed", url=demo_url)
    assert code == 2 and "--status" in err  # failures are failed by definition

    args = ("--tag", "critical", "--status", "failed", "--since", "2026-06-01")
    with flowscope.connect(demo_url) as client:
        want = client.executions.count(tags_all=["critical"], status=["failed"], since="2026-06-01")
    assert want > 0
    code, out, err = invoke(
        "executions", "list", *args, "--limit", "1000", "-f", "json", url=demo_url
    )
    assert code == 0, err
    assert len(json.loads(out)) == want
    target = tmp_path / "f.parquet"
    code, out, err = invoke(
        "export", "executions", str(target), *args, "--no-progress", url=demo_url
    )
    assert code == 0, err
    assert pq.read_metadata(target).num_rows == want
    code, out, err = invoke(
        "analytics", "status", *args[:2], "--since", "2026-06-01", "-f", "json", url=demo_url
    )
    assert code == 0 and sum(r["total"] for r in json.loads(out)) == client_count(
        demo_url, tags_all=["critical"], since="2026-06-01"
    )
    # workflows: --tag is ALL tags, --workflow picks ids
    target = tmp_path / "w.parquet"
    code, _, err = invoke(
        "export", "workflows", str(target), "--tag", "critical", "--workflow", "wf_demo_0001",
        "--workflow", "wf_demo_0002", "--no-progress", url=demo_url,
    )  # fmt: skip
    assert code == 0, err
    with flowscope.connect(demo_url) as client:
        ids = {
            w.id
            for w in client.workflows.iter(tags_all=["critical"])
            if w.id in ("wf_demo_0001", "wf_demo_0002")
        }
    assert len(ids) == 1  # one of the two is tagged critical
    assert set(pq.read_table(target).column("id").to_pylist()) == ids


def client_count(url: str, **filters: object) -> int:
    with flowscope.connect(url) as client:
        return client.executions.count(**filters)
