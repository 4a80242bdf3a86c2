"""Client-side deadlines: no call waits forever on a stuck server or network.

A server-side ``statement_timeout`` cannot fire when the server is stopped or the network
drops packets, and TCP itself waits for hours. So every connection flowscope opens, on
either transport, gets:

- libpq's ``connect_timeout``, TCP keepalives and ``tcp_user_timeout``
  (:func:`libpq_params`): a peer that vanished is noticed within about a minute;
- a *deadline* (``flowscope.connect(timeout=)``, ``FLOWSCOPE_TIMEOUT``): the longest flowscope
  waits for any one answer from the server (a statement's result, the next part of a
  streaming read, a COMMIT). Past it the connection is closed, never reused, and the call
  raises :class:`~flowscope.QueryTimeoutError`. psycopg connections are a
  :class:`DeadlineConnection`; ADBC's blocking calls run in a :class:`Worker` thread.

Ctrl-C interrupts a wait within a second on either transport (psycopg's own handling
waits up to 10 s for a stopped server to acknowledge a cancel request; here the cancel
gets 0.5 s, then the connection is closed).

Example:
    >>> libpq_params()["keepalives"]
    '1'
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import waiting
from psycopg.pq import TransactionStatus

T = TypeVar("T")

#: seconds to open a connection (libpq's ``connect_timeout``)
CONNECT_TIMEOUT = 10
#: keepalive probes after 15 s of silence, every 5 s, 3 unanswered ones end the connection;
#: data unacknowledged for 30 s does too (``tcp_user_timeout``, Linux)
_KEEPALIVES = {
    "keepalives": "1",
    "keepalives_idle": "15",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}
#: the deadline when neither ``connect(timeout=)`` nor ``FLOWSCOPE_TIMEOUT`` says one:
#: ``statement_timeout`` plus this margin, or :data:`DEFAULT_DEADLINE` without one
MARGIN = 10.0
DEFAULT_DEADLINE = 900.0
_INTERRUPT_GRACE = 0.5


def libpq_params(connect_timeout: float = CONNECT_TIMEOUT) -> dict[str, str]:
    """The libpq connection parameters every flowscope connection gets (both transports).

    Example:
        >>> libpq_params(3)["connect_timeout"], libpq_params()["tcp_user_timeout"]
        ('3', '30000')
    """
    return {"connect_timeout": str(max(1, round(connect_timeout))), **_KEEPALIVES}


def connect_timeout(deadline: float | None) -> float:
    """Seconds to open a connection: :data:`CONNECT_TIMEOUT`, or the deadline when shorter.

    Example:
        >>> connect_timeout(None), connect_timeout(2.5)
        (10, 2.5)
    """
    return CONNECT_TIMEOUT if deadline is None else min(CONNECT_TIMEOUT, deadline)


def resolve(timeout: float | None, statement_timeout: float | None) -> float | None:
    """The deadline in seconds: ``timeout`` when given (0: none), else derived from the
    statement timeout.

    Example:
        >>> resolve(None, 30), resolve(None, None), resolve(5, 30), resolve(0, 30)
        (40.0, 900.0, 5, None)
    """
    if timeout is not None:
        return timeout or None
    return statement_timeout + MARGIN if statement_timeout is not None else DEFAULT_DEADLINE


class DeadlineExceeded(psycopg.OperationalError):
    """No answer from the server within the client's deadline; the connection was closed."""


class DeadlineConnection(psycopg.Connection[Any]):
    """A psycopg connection whose every wait for the server ends: at its ``deadline``
    (:class:`DeadlineExceeded`, the connection closed) or at Ctrl-C (within a second)."""

    deadline: float | None = None

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        limit = timeout if timeout is not None else self.deadline
        try:
            return waiting.wait(gen, self.pgconn.socket, interval=interval, timeout=limit)
        except pg_errors._WaitTimeout:
            self.pgconn.finish()
            raise DeadlineExceeded(
                f"no answer from the server within the client's deadline of {limit:g} s"
                " (flowscope.connect(timeout=) / FLOWSCOPE_TIMEOUT); the connection was closed"
            ) from None
        except (KeyboardInterrupt, SystemExit):
            self._interrupted(gen, interval)
            raise

    def _interrupted(self, gen: Any, interval: float) -> None:
        """Cancel the running statement, briefly; a server that does not answer at once
        (stopped, unreachable) loses the connection instead."""
        if self.pgconn.transaction_status != TransactionStatus.ACTIVE:
            return
        try:
            self.cancel_safe(timeout=_INTERRUPT_GRACE)
            waiting.wait(gen, self.pgconn.socket, interval=interval, timeout=_INTERRUPT_GRACE)
        except BaseException:  # no answer, a second Ctrl-C, the cancel itself failed
            self.pgconn.finish()


def deadline_of(connection: Any) -> float | None:
    """The deadline of a DBAPI connection (None: none, or not a flowscope one)."""
    return getattr(connection, "deadline", None)


@contextlib.contextmanager
def lifted(connection: Any) -> Any:
    """No deadline on this DBAPI connection inside the block (a migration's long DDL)."""
    if not isinstance(connection, DeadlineConnection):
        yield
        return
    previous = connection.deadline
    connection.deadline = None
    try:
        yield
    finally:
        connection.deadline = previous


class Worker:
    """One daemon thread that runs the blocking calls of an ADBC read, so the caller waits
    on an event that Ctrl-C and the deadline can end.

    After an abandoned call (deadline, Ctrl-C) the thread finishes it in the background,
    then runs the clean-up it was given (``abandon``) and ends; the caller is free at once.

    Example:
        >>> w = Worker(deadline=5)
        >>> w.call(lambda: 6 * 7)
        42
        >>> w.close()
    """

    def __init__(self, *, deadline: float | None) -> None:
        self.deadline = deadline
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="flowscope-adbc", daemon=True)
        self._thread.start()
        self.abandoned = False

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def call(self, fn: Callable[[], T], on_abandon: Callable[[], None] | None = None) -> T:
        """``fn()`` in the worker; :class:`DeadlineExceeded` past the deadline."""
        done = threading.Event()
        box: list[Any] = []

        def job() -> None:
            try:
                box.append((True, fn()))
            except BaseException as exc:
                box.append((False, exc))
            done.set()

        self._jobs.put(job)
        try:
            finished = done.wait(self.deadline)
        except BaseException:  # Ctrl-C
            self._abandon(on_abandon)
            raise
        if not finished:
            self._abandon(on_abandon)
            raise DeadlineExceeded(
                f"no answer from the server within the client's deadline of {self.deadline:g} s"
                " (flowscope.connect(timeout=) / FLOWSCOPE_TIMEOUT); the connection was closed"
            )
        ok, value = box[0]
        if ok:
            return value
        raise value

    def _abandon(self, cleanup: Callable[[], None] | None) -> None:
        self.abandoned = True
        if cleanup is not None:
            threading.Thread(target=cleanup, name="flowscope-adbc-cancel", daemon=True).start()
        self._jobs.put(None)

    def run_after(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the worker once its current call is done (the clean-up)."""
        self._jobs.put(fn)

    def close(self) -> None:
        self._jobs.put(None)
