"""The README runs as written: its Python blocks top to bottom, as one notebook would, and the
``flowscope ...`` lines of its shell blocks, on a fresh database, without an error or a warning.

The Python blocks share one namespace (a later block uses the ``client`` of an earlier one);
a block that is a test module (it defines ``test_*`` functions: the pytest-plugin example)
also runs as one, by pytest, in a process of its own. The shell lines run through the CLI in
order, in a temporary working directory; ``# comments`` end a line, a line with ``[...]``
or ``A | B`` alternatives is a synopsis and is refused (the README writes runnable lines).
The database: a new one on the test server (embedded by default), named by
``FLOWSCOPE_DATABASE_URL`` as a reader's would be.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import flowscope
import pytest
from flowscope import cli
from typer.testing import CliRunner

README = Path(__file__).resolve().parents[1] / "README.md"
_FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)


def blocks(kind: str | tuple[str, ...]) -> list[str]:
    """The README's fenced blocks of one kind (``python``, ``bash``...), in order."""
    kinds = (kind,) if isinstance(kind, str) else kind
    return [body for lang, body in _FENCE.findall(README.read_text()) if lang in kinds]


def cli_lines() -> list[str]:
    """Every ``flowscope ...`` line of the README's shell blocks, without its comment."""
    lines = []
    for body in blocks(("bash", "console", "shell")):
        for line in body.splitlines():
            command = line.split(" #")[0].strip()
            if command.startswith("flowscope "):
                lines.append(command)
    return lines


@pytest.fixture
def fresh_url(create_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A new, migrated database, as ``FLOWSCOPE_DATABASE_URL``."""
    url = create_database()
    flowscope.connect(url, migrate=True).close()
    monkeypatch.setenv("FLOWSCOPE_DATABASE_URL", url)
    return url


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_the_readme_has_blocks_to_run() -> None:
    assert len(blocks("python")) >= 6
    assert len(cli_lines()) >= 20


def test_python_blocks_run_top_to_bottom(fresh_url: str, workdir: Path) -> None:
    namespace: dict[str, object] = {"__name__": "__readme__"}
    test_modules = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for number, body in enumerate(blocks("python"), 1):
            if re.search(r"^def test_", body, re.M):
                test_modules.append(body)
                continue
            exec(compile(body, f"README.md python block {number}", "exec"), namespace)
    for value in namespace.values():
        if isinstance(value, flowscope.Client):
            value.close()
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    assert len(test_modules) == 1
    (workdir / "test_my_report.py").write_text(test_modules[0])
    env = {**os.environ, "FLOWSCOPE_DATABASE_URL": ""}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error",
         "--rootdir", str(workdir), str(workdir / "test_my_report.py")],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout, done.stdout


def test_cli_lines_run_in_order(fresh_url: str, workdir: Path) -> None:
    runner = CliRunner()
    for line in cli_lines():
        assert not re.search(r"\[|\]| \| ", line), f"not a runnable line: {line}"
        args, _, target = line.partition(" > ")
        argv = shlex.split(args)[1:]
        answer = "a long passphrase\na long passphrase\n"  # for the commands that prompt
        result = runner.invoke(cli.app, argv, input=answer)
        assert result.exit_code == 0, (line, result.output)
        assert "warning" not in result.stderr.lower(), (line, result.stderr)
        if target:
            (workdir / target.strip()).write_text(result.stdout)
