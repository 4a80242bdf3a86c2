"""Housekeeping of the partitioned audit log: create coming months, drop those past retention."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ._boundary import Guarded
from .errors import ConfigurationError, QueryTimeoutError, ValidationError

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["Maintenance", "MaintenanceReport"]

PARENT = "audit_log"
DEFAULT_PARTITION = "audit_log_default"
_MONTHLY = re.compile(r"^audit_log_(\d{4})_(\d{2})$")
_LOCK_KEY = 0x666C6F77  # advisory lock: one maintenance run at a time
#: The longest one attempt waits for ``audit_log``'s ACCESS EXCLUSIVE lock (seconds). While
#: it waits, every audited write of every organization queues behind it, so a reader that
#: holds the table (a long ``SELECT``) makes maintenance retry, with a growing pause, rather
#: than stall the writers: they wait at most this long per attempt.
TABLE_LOCK_ATTEMPT = 0.2
_PAUSES = (0.05, 2.0)  # the first pause between attempts, and the longest


@dataclass(frozen=True)
class MaintenanceReport:
    """What :meth:`Maintenance.maintain` did (or would do, with ``dry_run``)."""

    created: list[str] = field(default_factory=list)
    """Partitions created, e.g. ``["audit_log_2027_02"]``."""
    dropped: list[str] = field(default_factory=list)
    """Partitions detached and dropped (or only detached, with ``drop=False``)."""
    moved_from_default: int = 0
    """Rows moved out of ``audit_log_default`` into a new month's partition."""
    deleted_from_default: int = 0
    """Rows past retention deleted from ``audit_log_default``."""
    dry_run: bool = False


def add_months(month: date, months: int) -> date:
    """The first day of the month ``months`` after ``month``'s.

    Example:
        >>> add_months(date(2026, 11, 25), 3)
        datetime.date(2027, 2, 1)
    """
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def partition_name(month: date) -> str:
    """``audit_log_YYYY_MM``.

    Example:
        >>> partition_name(date(2027, 2, 1))
        'audit_log_2027_02'
    """
    return f"audit_log_{month.year:04d}_{month.month:02d}"


def _bound(month: date) -> str:
    return f"{month.isoformat()} 00:00:00+00"


class Maintenance(Guarded):
    """Housekeeping: ``client.maintenance``. Needs an unscoped (admin) client.

    Example (``today`` defaults to today; fixed here so the output stays the same):

        >>> report = client.maintenance.maintain(
        ...     months_ahead=3, retention_months=24, today=date(2025, 7, 1), dry_run=True)
        >>> report.created
        ['audit_log_2025_07', 'audit_log_2025_08', 'audit_log_2025_09', 'audit_log_2025_10']
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def partitions(self) -> list[str]:
        """Names of the audit log's partitions, oldest month first, the default last.

        Example:
            >>> client.maintenance.partitions()    # from the month of the first migration on
            ['audit_log_...', ..., 'audit_log_default']
        """
        with self._session.transaction() as conn:
            return _partitions(conn)

    def maintain(
        self,
        *,
        months_ahead: int = 3,
        retention_months: int | None = None,
        drop: bool = True,
        dry_run: bool = False,
        today: date | None = None,
        lock_timeout: float = 30.0,
    ) -> MaintenanceReport:
        """Create the audit log's partitions for the coming months and retire old ones.

        * Creates ``audit_log_YYYY_MM`` for the current UTC month and the next
          ``months_ahead`` months where missing. Rows already sitting in
          ``audit_log_default`` for such a month are moved into it (in the same
          transaction, so nothing is lost or visible twice).
        * With ``retention_months=N``: every monthly partition that ends on or
          before the first day of the month N months ago is detached and
          dropped (``drop=False``: only detached, kept as a plain table for
          archiving), and default-partition rows older than that day deleted.
          ``None`` keeps everything.

        Run it from cron (``flowscope db maintain``) at least once a month.
        One run at a time (an advisory lock serialises concurrent runs).

        Args:
            months_ahead: how many months after the current one to prepare (0-120).
            retention_months: keep this many whole months before the current one
                (>= 1); ``None`` keeps all.
            drop: drop detached partitions (default) or keep them as tables.
            dry_run: report what would be done, change nothing.
            today: the reference day (default: today in UTC); for tests and backfills.
            lock_timeout: seconds to wait for the maintenance lock, and then for the
                audit log's table lock, before giving up with :class:`QueryTimeoutError`.
                The table lock is tried in attempts of at most
                :data:`TABLE_LOCK_ATTEMPT` seconds (writers queue behind a waiting
                ACCESS EXCLUSIVE request, so none waits longer), with a growing pause
                between them.

        Raises:
            ValidationError: a bad argument.
            PermissionDeniedError: called on a scoped (tenant) client.

        Example:
            >>> client.maintenance.maintain(months_ahead=1, retention_months=12, today=date(2026, 7, 1))
            MaintenanceReport(created=['audit_log_2026_07', 'audit_log_2026_08'], dropped=[], moved_from_default=0, deleted_from_default=0, dry_run=False)
        """
        if isinstance(months_ahead, bool) or not isinstance(months_ahead, int):
            raise ValidationError("months_ahead must be an integer")
        if not 0 <= months_ahead <= 120:
            raise ValidationError("months_ahead must be between 0 and 120")
        if retention_months is not None and (
            isinstance(retention_months, bool)
            or not isinstance(retention_months, int)
            or retention_months < 1
        ):
            raise ValidationError("retention_months must be a positive integer or None")
        if self._session.organization_id is not None:
            raise ConfigurationError("maintenance needs an unscoped (admin) client")
        if (
            isinstance(lock_timeout, bool)
            or not isinstance(lock_timeout, int | float)
            or not 0 < lock_timeout <= 3600
        ):
            raise ValidationError("lock_timeout must be a number of seconds in (0, 3600]")
        wait = f"{max(1, round(lock_timeout * 1000))}ms"
        if today is not None and not isinstance(today, date):
            raise ValidationError(f"today must be a date, not {today!r}")
        this_month = (today or datetime.now(UTC).date()).replace(day=1)
        created: list[str] = []
        dropped: list[str] = []
        moved = deleted = 0
        with self._session.transaction() as conn:
            # lock_timeout first: any session can take an advisory lock (a tenant too), so the
            # wait for it is bounded and ends in QueryTimeoutError, never a hang
            conn.execute(sa.text("SELECT set_config('lock_timeout', :t, true)"), {"t": wait})
            try:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            except sa.exc.OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) != "55P03":
                    raise
                raise QueryTimeoutError(
                    f"another session holds the maintenance lock (advisory lock {_LOCK_KEY})"
                    f" for more than {lock_timeout:g} s: another maintenance run, or a session"
                    " holding that lock; see pg_locks WHERE locktype = 'advisory'"
                ) from exc
            deadline = time.monotonic() + lock_timeout
            attempt = f"{max(1, round(min(lock_timeout, TABLE_LOCK_ATTEMPT) * 1000))}ms"
            conn.execute(sa.text("SELECT set_config('lock_timeout', :t, true)"), {"t": attempt})
            existing = set(_partitions(conn))
            if PARENT not in _partitioned_tables(conn):
                raise ConfigurationError(
                    "audit_log is not partitioned: run `flowscope db upgrade` first"
                )
            if not dry_run and _has_work(existing, this_month, months_ahead, retention_months):
                _lock_exclusively(conn, deadline, lock_timeout)
            for k in range(months_ahead + 1):
                month = add_months(this_month, k)
                name = partition_name(month)
                if name in existing:
                    continue
                created.append(name)
                if not dry_run:
                    moved += _create_partition(
                        conn, month, has_default=DEFAULT_PARTITION in existing
                    )
            if retention_months is not None:
                cutoff = add_months(this_month, -retention_months)
                for name in sorted(existing):
                    m = _MONTHLY.match(name)
                    if m is None:
                        continue
                    month = date(int(m.group(1)), int(m.group(2)), 1)
                    if add_months(month, 1) <= cutoff:
                        dropped.append(name)
                        if not dry_run:
                            conn.execute(sa.text(f"ALTER TABLE {PARENT} DETACH PARTITION {name}"))
                            if drop:
                                conn.execute(sa.text(f"DROP TABLE {name}"))
                if DEFAULT_PARTITION in existing:
                    default = _like_audit_log(DEFAULT_PARTITION)
                    old = default.c.occurred_at < _utc(cutoff)
                    if dry_run:
                        count = sa.select(sa.func.count()).select_from(default).where(old)
                        deleted = int(conn.execute(count).scalar_one())
                    else:
                        deleted = int(conn.execute(sa.delete(default).where(old)).rowcount)
            if dry_run:
                conn.rollback()
        return MaintenanceReport(
            created=created,
            dropped=dropped,
            moved_from_default=moved,
            deleted_from_default=deleted,
            dry_run=dry_run,
        )


def _has_work(
    existing: set[str], this_month: date, months_ahead: int, retention_months: int | None
) -> bool:
    """Whether a run would create or drop a partition (the changes that lock the parent)."""
    wanted = {partition_name(add_months(this_month, k)) for k in range(months_ahead + 1)}
    if wanted - existing:
        return True
    if retention_months is None:
        return False
    cutoff = add_months(this_month, -retention_months)
    for name in existing:
        m = _MONTHLY.match(name)
        if m and add_months(date(int(m.group(1)), int(m.group(2)), 1), 1) <= cutoff:
            return True
    return False


def _lock_exclusively(conn: Connection, deadline: float, lock_timeout: float) -> None:
    """Take ``audit_log``'s ACCESS EXCLUSIVE lock in short attempts (the session's
    ``lock_timeout`` is :data:`TABLE_LOCK_ATTEMPT`), pausing between them, until
    ``deadline``; then :class:`QueryTimeoutError`. The lock is held until the transaction
    ends, so what follows (create, attach, detach, drop) waits for nobody."""
    pause = _PAUSES[0]
    while True:
        savepoint = conn.begin_nested()
        try:
            conn.execute(sa.text(f"LOCK TABLE {PARENT} IN ACCESS EXCLUSIVE MODE"))
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != "55P03":
                raise
            savepoint.rollback()
            if time.monotonic() + pause >= deadline:
                raise QueryTimeoutError(
                    f"{PARENT} stayed in use for more than {lock_timeout:g} s (a long read or"
                    " write holds it): maintenance gave up rather than stall writers; run it"
                    " again later or with a larger lock_timeout"
                ) from exc
            time.sleep(pause)
            pause = min(pause * 2, _PAUSES[1])
            continue
        savepoint.commit()
        return


def _partitioned_tables(conn: Connection) -> set[str]:
    rows = conn.execute(
        sa.text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind = 'p'"
        )
    )
    return set(rows.scalars())


def _partitions(conn: Connection) -> list[str]:
    names = (
        conn.execute(
            sa.text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = to_regclass(:parent)"
            ),
            {"parent": PARENT},
        )
        .scalars()
        .all()
    )
    return sorted(names, key=lambda n: (n == DEFAULT_PARTITION, n))


def _utc(month: date) -> datetime:
    return datetime(month.year, month.month, month.day, tzinfo=UTC)


def _like_audit_log(name: str) -> sa.Table:
    """A lightweight table handle with audit_log's columns (for a partition)."""
    from .models import AUDIT_LOG

    return sa.Table(name, sa.MetaData(), *(sa.Column(c.name, c.type) for c in AUDIT_LOG.columns))


def _create_partition(conn: Connection, month: date, *, has_default: bool) -> int:
    """Create one month's partition; move any of its rows out of the default partition."""
    name = partition_name(month)
    low, high = _bound(month), _bound(add_months(month, 1))
    moved = 0
    if has_default:
        # Rows of this month in the default partition would make CREATE ... PARTITION OF fail:
        # build the table detached, move the rows into it, then attach it.
        conn.execute(sa.text(f"LOCK TABLE {PARENT} IN ACCESS EXCLUSIVE MODE"))
        conn.execute(
            sa.text(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        )
        default, target = _like_audit_log(DEFAULT_PARTITION), _like_audit_log(name)
        when = default.c.occurred_at
        rows = (
            sa.delete(default)
            .where(when >= _utc(month), when < _utc(add_months(month, 1)))
            .returning(*default.c)
            .cte("moved")
        )
        inserted = (
            sa.insert(target)
            .from_select(list(target.c.keys()), sa.select(rows))
            .returning(target.c.id)
            .cte("inserted")
        )
        moved = conn.execute(sa.select(sa.func.count()).select_from(inserted)).scalar_one()
        conn.execute(
            sa.text(
                f"ALTER TABLE {PARENT} ATTACH PARTITION {name}"
                f" FOR VALUES FROM ('{low}') TO ('{high}')"
            )
        )
    else:
        conn.execute(
            sa.text(
                f"CREATE TABLE {name} PARTITION OF {PARENT} FOR VALUES FROM ('{low}') TO ('{high}')"
            )
        )
    conn.execute(sa.text(f"REVOKE ALL ON {name} FROM PUBLIC"))
    conn.execute(sa.text(f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY"))
    return int(moved)
