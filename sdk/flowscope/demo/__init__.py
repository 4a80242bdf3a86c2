"""Realistic, deterministic demo data: organizations, users, workflows and their executions.

:func:`generate` fills a database with a story worth analysing:

* three organizations (``org_demo_acme``, ``org_demo_globex``, ``org_demo_initech``),
  four users each;
* tagged workflows (``wf_demo_0001`` …) with node/edge graphs of 3–11 steps; most
  active, a few drafts (never run) and archived ones (stopped running 40 days ago);
* executions over ``days`` days before ``now`` with daily and weekly seasonality
  (office hours, quiet weekends, nightly batches at 01:00–03:00 UTC) and slow growth;
* log-normal durations whose median and spread differ by workflow; every execution
  records the ``workflow_version`` it ran in its ``metadata``;
* failures clustered in a few error signatures (``error`` is ``{"type", "message"}``),
  each stopping at a typical step (``current_step``, ``steps_completed``/``steps_total``),
  plus a five-hour warehouse outage that failed most runs of workflows querying it;
* a regression: a busy workflow got a new version 7 days before ``now`` and its
  runs have taken about 2.4 times as long since (and time out more often).

Everything derives from ``seed`` and ``now`` (numpy's seeded ``Generator``), so the
same arguments give the same rows, ids included. The rows are built in vectorised
form (numpy, pandas, Arrow) and loaded through the bulk ingest
(``client.workflows.ingest`` / ``client.executions.ingest``: validated binary COPY). A second call with the same
arguments changes nothing; different arguments raise :class:`flowscope.ConflictError`
unless ``replace=True``.

The package: ``_cast`` (the organizations, users, names, node kinds, error signatures and
the timing of the stories), ``_rows`` (building every row, no database) and this module
(arguments, the marker, loading and removing the demo rows).

Example:
    >>> from flowscope import demo
    >>> info = demo.generate(client, executions=2_000)  # the doctests' demo: already there
    >>> info.regression_workflow_id, info.created
    ('wf_demo_0008', False)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..errors import ConflictError, PermissionDeniedError, ValidationError
from ..filters import to_utc
from ..models import EXECUTIONS, ORGANIZATIONS, USERS, WORKFLOWS
from ._cast import MARKER_ORG, PREFIXES
from ._rows import build as _build

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Connection

    from .._client import Client

__all__ = ["DEMO_NOW", "DEMO_SEED", "DemoData", "generate"]

DEMO_NOW = datetime(2026, 6, 30, tzinfo=UTC)
"""The fixed reference time of the demo data (the notebooks use it)."""
DEMO_SEED = 0
"""The default seed."""


@dataclass(frozen=True)
class DemoData:
    """What :func:`generate` loaded (or found already loaded).

    ``created`` is False when the same demo data was already there. The
    ``regression_*`` and ``incident_*`` fields say where the planted stories are,
    so notebooks and tests can check that the analytics find them.

    Example:
        >>> info = DemoData(created=True, seed=0, now=DEMO_NOW, days=120, organizations=3,
        ...                 users=12, workflows=200, executions=100_000)
        >>> str(info)
        'demo data (seed 0, now 2026-06-30T00:00:00+00:00): 3 organizations, 12 users, 200 workflows, 100,000 executions'
    """

    created: bool
    seed: int
    now: datetime
    days: int
    organizations: int
    users: int
    workflows: int
    executions: int
    regression_workflow_id: str = ""
    regression_workflow_name: str = ""
    regression_version: int = 0
    regression_since: datetime | None = None
    incident_start: datetime | None = None
    incident_end: datetime | None = None
    seconds: float = field(default=0.0, compare=False, repr=False)

    def __str__(self) -> str:
        return (
            f"demo data (seed {self.seed}, now {self.now.isoformat()}): "
            f"{self.organizations} organizations, {self.users} users, "
            f"{self.workflows} workflows, {self.executions:,} executions"
        )

    def _repr_html_(self) -> str:
        from .._display import html_record

        fields = {k: v for k, v in asdict(self).items() if k != "seconds"}
        return html_record("flowscope demo data", fields)


def generate(
    client: Client,
    workflows: int = 200,
    executions: int = 100_000,
    seed: int = DEMO_SEED,
    now: datetime | str = DEMO_NOW,
    *,
    days: int = 120,
    replace: bool = False,
    progress: bool = False,
) -> DemoData:
    """Load deterministic demo data into the database behind ``client``.

    Args:
        client: an unscoped (admin) client; the demo spans several organizations.
        workflows: how many workflows (at least 10).
        executions: how many executions (at least 1,000), spread over ``days`` days
            before ``now``.
        seed: seed of numpy's random generator: same seed, same rows.
        now: the reference time; executions end at it (the last few still running
            or queued). Naive means UTC. Default: :data:`DEMO_NOW`.
        days: how far back the executions go (at least 30).
        replace: delete existing demo data (every row of the demo organizations)
            and load afresh, instead of raising when it was made with other arguments.
        progress: show a ``tqdm.auto`` progress bar.

    Returns:
        A :class:`DemoData` describing what is there (``created=False`` when the
        same data was already loaded: a second run never doubles it).

    Raises:
        ValidationError: an argument is out of range.
        PermissionDeniedError: ``client`` is scoped to one organization.
        ConflictError: demo data made with other arguments exists and ``replace`` is False.

    Example:
        >>> from flowscope import demo
        >>> demo.generate(client, executions=2_000).executions
        2000
        >>> demo.generate(client, executions=2_000).created   # made before: nothing added
        False
    """
    started = time.perf_counter()
    params = _check_arguments(workflows, executions, seed, now, days)
    if client.organization_id is not None:
        raise PermissionDeniedError(
            "demo.generate needs an unscoped (admin) client: the demo spans several organizations"
        )
    bar = _progress_bar(progress, total=executions, desc="flowscope demo", unit="rows")
    try:
        existing = _existing_parameters(client)
        if existing is not None and not replace:
            if existing == params:
                return _describe(client, params, created=False, started=started)
            what = (
                f"demo data made with other arguments is already loaded ({_describe_params(existing)})"
                if existing
                else "incomplete demo data (an interrupted load?) is in the way"
            )
            raise ConflictError(f"{what}; pass replace=True (CLI: --replace) to reload it")
        bar.set_postfix_str("building rows")
        tables = _build(params)
        if existing is not None:
            bar.set_postfix_str("removing old demo data")
            with client.transaction() as conn:
                client._session.forget_logins()  # their roles are dropped below
                _delete_demo_rows(conn)
        bar.set_postfix_str("loading")
        _load(client, tables, bar.update)
        bar.set_postfix_str("analysing")
        _analyze(client)
    finally:
        bar.close()
    return _describe(client, params, created=True, started=started, tables=tables)


def _progress_bar(enabled: bool, **kwargs: Any) -> Any:
    from .._display import progress_bar

    return progress_bar(enabled, leave=False, **kwargs)


# -- arguments and the marker -----------------------------------------------------------
def _check_arguments(
    workflows: int, executions: int, seed: int, now: datetime | str, days: int
) -> dict[str, Any]:
    def whole(name: str, value: Any, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValidationError(f"{name} must be a whole number from {low:,} to {high:,}")
        return value

    whole("workflows", workflows, 10, 100_000)
    whole("executions", executions, 1_000, 50_000_000)
    whole("seed", seed, 0, 2**63 - 1)
    whole("days", days, 30, 3_650)
    try:
        moment = to_utc(now)
    except ValueError as exc:
        raise ValidationError(f"now: {exc}") from exc
    assert moment is not None
    return {
        "workflows": workflows,
        "executions": executions,
        "seed": seed,
        "now": moment.isoformat(),
        "days": days,
    }


def _describe_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _existing_parameters(client: Client) -> dict[str, Any] | None:
    """The marker's parameters; ``{}`` when the first demo organization exists without
    one (an interrupted load); None when there is no demo data."""
    o = ORGANIZATIONS.c
    with client.transaction() as conn:
        row = conn.execute(sa.select(o.settings).where(o.id == MARKER_ORG)).first()
    if row is None:
        return None
    marker = (row[0] or {}).get("demo")
    return dict(marker) if isinstance(marker, dict) else {}


def _describe(
    client: Client,
    params: dict[str, Any],
    *,
    created: bool,
    started: float,
    tables: dict[str, Any] | None = None,
) -> DemoData:
    counts: dict[str, int] = {}
    with client.transaction() as conn:
        for name, table in (
            ("organizations", ORGANIZATIONS),
            ("users", USERS),
            ("workflows", WORKFLOWS),
        ):
            counts[name] = conn.execute(
                sa.select(sa.func.count())
                .select_from(table)
                .where(table.c.id.startswith(PREFIXES[name], autoescape=True))
            ).scalar_one()
        counts["executions"] = conn.execute(
            sa.select(sa.func.count())
            .select_from(EXECUTIONS)
            .where(EXECUTIONS.c.workflow_id.startswith(PREFIXES["workflows"], autoescape=True))
        ).scalar_one()
        story = conn.execute(
            sa.select(ORGANIZATIONS.c.settings["demo_story"]).where(
                ORGANIZATIONS.c.id == MARKER_ORG
            )
        ).scalar_one_or_none()
    story = story or {}
    now = datetime.fromisoformat(params["now"])
    return DemoData(
        created=created,
        seed=params["seed"],
        now=now,
        days=params["days"],
        organizations=counts["organizations"],
        users=counts["users"],
        workflows=counts["workflows"],
        executions=counts["executions"],
        regression_workflow_id=story.get("regression_workflow_id", ""),
        regression_workflow_name=story.get("regression_workflow_name", ""),
        regression_version=int(story.get("regression_version", 0)),
        regression_since=_parse(story.get("regression_since")),
        incident_start=_parse(story.get("incident_start")),
        incident_end=_parse(story.get("incident_end")),
        seconds=round(time.perf_counter() - started, 3),
    )


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# -- loading -------------------------------------------------------------------------------
def _delete_demo_rows(conn: Connection) -> None:
    """Every row of the demo organizations, children first (the keys RESTRICT)."""
    orgs = sa.select(ORGANIZATIONS.c.id).where(
        ORGANIZATIONS.c.id.startswith(PREFIXES["organizations"], autoescape=True)
    )
    conn.execute(sa.delete(EXECUTIONS).where(EXECUTIONS.c.organization_id.in_(orgs)))
    conn.execute(
        sa.delete(EXECUTIONS).where(
            EXECUTIONS.c.workflow_id.startswith(PREFIXES["workflows"], autoescape=True)
        )
    )
    for table in (WORKFLOWS, USERS):
        conn.execute(
            sa.delete(table).where(
                table.c.organization_id.in_(orgs)
                | table.c.id.startswith(PREFIXES[table.name], autoescape=True)
            )
        )
    # their tenant logins (roles) go first: flowscope_identities references organizations
    o = ORGANIZATIONS.c
    conn.execute(sa.select(sa.func.flowscope_drop_identities(o.id)).where(o.id.in_(orgs)))
    conn.execute(sa.delete(ORGANIZATIONS).where(ORGANIZATIONS.c.id.in_(orgs)))


def _load(client: Client, tables: dict[str, Any], loaded: Callable[[int], Any]) -> None:
    """Load the rows: organizations and users by Core inserts, workflows and executions by
    bulk ingest (validated binary COPY), in 10k-row chunks so ``loaded(n)`` can report progress.

    The marker (the first organization's ``settings["demo"]``) is written last, so it exists
    only when everything else does; if anything fails, every demo row is removed again.
    """
    orgs = [dict(o) for o in tables["organizations"]]
    marker = orgs[0]["settings"]
    orgs[0]["settings"] = {}
    try:
        with client.transaction() as conn:
            conn.execute(sa.insert(ORGANIZATIONS), orgs)
            conn.execute(sa.insert(USERS), tables["users"])
        client.workflows.ingest(tables["workflows"]["rows"])
        executions = _executions_arrow(tables["executions"])
        for offset in range(0, executions.num_rows, _CHUNK):
            chunk = executions.slice(offset, _CHUNK)
            client.executions.ingest(chunk)
            loaded(chunk.num_rows)
        with client.transaction() as conn:
            conn.execute(
                sa.update(ORGANIZATIONS)
                .where(ORGANIZATIONS.c.id == MARKER_ORG)
                .values(settings=marker)
            )
    except BaseException:
        with client.transaction() as conn:
            client._session.forget_logins()  # their roles are dropped below
            _delete_demo_rows(conn)
        raise


_CHUNK = 10_000


def _executions_arrow(frame: pd.DataFrame) -> Any:
    """The executions frame as an Arrow table whose JSON columns are JSON text."""
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    for name in ("parameters", "result", "error", "metadata"):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, table[name].cast(pa.string()))
    return table


def _analyze(client: Client) -> None:
    """Fresh planner statistics, so the first analytics queries get good plans."""
    with client.transaction() as conn:
        for table in (WORKFLOWS, EXECUTIONS):
            conn.execute(sa.text(f"ANALYZE {table.name}"))
