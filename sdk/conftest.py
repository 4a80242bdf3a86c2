"""The names docstring examples use, on a real database holding the demo data.

``pytest tests sdk/flowscope --doctest-modules`` (``make test``) runs every ``>>>`` example
in ``sdk/flowscope``; pytest loads this file for them because it sits above the modules
(it is not part of the package, and ``tests/conftest.py`` is not needed). The database
comes from flowscope's own pytest plugin (:mod:`flowscope.testing`): the server named by
``FLOWSCOPE_TEST_DATABASE_URL``, else an embedded PostgreSQL.

* Once per session, when a module first needs it, a *template* database is migrated and
  loaded with the deterministic demo data (:func:`flowscope.demo.generate` at
  :data:`flowscope.demo.DEMO_NOW`, seed 0, :data:`DEMO_EXECUTIONS` executions), so
  outputs are the same on every run.
* Each module whose examples use the database gets a fresh copy of it
  (``CREATE DATABASE ... TEMPLATE``, about a second), so an example that creates, deletes
  or logs in changes nothing for another module. Within a module, examples run in the
  order doctest sorts them (by name); an example that writes must leave what the later
  ones print unchanged (run alone, each must pass too).
* A copy, with its tenant login roles, is dropped in the background once its module is
  done (the template when the session ends): each ``DROP DATABASE`` waits for a checkpoint
  (seconds on a busy server), which then overlaps the next modules, and concurrent drops
  share one.

Names every example may use: ``flowscope``, ``pd``, ``sa``; in a module that uses the
database also ``client`` (an admin :class:`flowscope.Client` on the copy) and ``url``
(the copy's URL); ``tmp_path``, a temporary directory of the module's own.
"""

from __future__ import annotations

import contextlib
import doctest
import re
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import flowscope
import pandas as pd
import pytest
import sqlalchemy as sa
from _pytest.doctest import DoctestItem
from flowscope import demo, testing

DEMO_EXECUTIONS = 2_000
"""Executions in the examples' demo data: enough for every analytics example, quick to load."""

_NAME = re.compile(r"\b(client|url|tmp_path)\b")


def _names_used(module: pytest.Collector) -> set[str]:
    """Which of the names above the module's examples use (skipped examples do not count)."""
    return {
        match
        for item in module.session.items
        if isinstance(item, DoctestItem) and item.parent is module and item.dtest is not None
        for example in item.dtest.examples
        if not example.options.get(doctest.SKIP)
        for match in _NAME.findall(example.source)
    }


@pytest.fixture(scope="session")
def doctest_database(
    flowscope_server_url: str,
) -> Iterator[Callable[[], contextlib.AbstractContextManager[str]]]:
    """Factory: ``with doctest_database() as url:`` a new copy of the demo database, dropped
    in the background once the block is done (the template at the end of the session)."""
    admin = testing._admin_engine(flowscope_server_url)
    template: list[str] = []
    # DROP DATABASE waits for a checkpoint (seconds on a busy server): dropped in the
    # background, while the next modules run, concurrent drops share one checkpoint
    dropper = ThreadPoolExecutor(max_workers=4)
    drops: list[Future[None]] = []

    def create(source: str | None = None) -> str:
        name = f"flowscope_doctest_{secrets.token_hex(4)}"
        copy = f' TEMPLATE "{source}"' if source else ""
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"{copy}'))
        url = testing._with_database(flowscope_server_url, name)
        if source is None:
            template.append(url)  # dropped at the end, even if loading it fails
        return url

    def drop(url: str) -> None:
        testing.drop_identities(url)
        with admin.connect() as conn:
            conn.execute(
                sa.text(f'DROP DATABASE IF EXISTS "{sa.make_url(url).database}" WITH (FORCE)')
            )

    @contextlib.contextmanager
    def copy() -> Iterator[str]:
        if not template:  # migrated, with the demo data
            with flowscope.connect(testing._migrated(create)) as client:
                demo.generate(client, executions=DEMO_EXECUTIONS, progress=False)
        url = create(source=sa.make_url(template[0]).database)
        try:
            yield url
        finally:
            drops.append(dropper.submit(drop, url))

    yield copy
    drops.extend(dropper.submit(drop, url) for url in template)
    dropper.shutdown(wait=True)
    admin.dispose()
    for done in drops:
        done.result()  # a drop that failed fails the session


@pytest.fixture(scope="module", autouse=True)
def _doctest_names(
    request: pytest.FixtureRequest, doctest_namespace: dict[str, Any]
) -> Iterator[None]:
    """Put the names in the namespace of the module's examples; a database copy if they use one."""
    doctest_namespace.update(flowscope=flowscope, pd=pd, sa=sa)
    used = _names_used(request.node)
    if "tmp_path" in used:
        doctest_namespace["tmp_path"] = request.getfixturevalue("tmp_path_factory").mktemp(
            "doctest"
        )
    with contextlib.ExitStack() as stack:
        if used & {"client", "url"}:
            url = stack.enter_context(request.getfixturevalue("doctest_database")())
            client = stack.enter_context(flowscope.connect(url))  # closed before the drop
            doctest_namespace.update(client=client, url=url)
        try:
            yield
        finally:
            for key in ("client", "url", "tmp_path"):
                doctest_namespace.pop(key, None)
