"""Authentication without oracles (issue 13, item 5).

* Unknown user, wrong password, locked, inactive and deleted accounts take the same path:
  the same statements, in the same transactions, and one argon2id verification each.
* ... and so the same time: medians of 50 interleaved runs each (printed with ``-s``).
* An identifier with ``@`` is matched against emails only, and usernames cannot contain
  ``@``: a username equal to another user's email captures nothing.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Iterator
from typing import Any

import flowscope
import pytest
import sqlalchemy as sa
from flowscope._resources import users as users_module

PASSWORD = "a long passphrase"


@pytest.fixture
def statements(client: flowscope.Client) -> Iterator[list[str]]:
    """The statements the admin login runs (begin/commit included), parameters left out."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(re.sub(r"\s+", " ", statement).strip())

    def begin(conn: Any) -> None:
        seen.append("BEGIN")

    def commit(conn: Any) -> None:
        seen.append("COMMIT")

    def rollback(conn: Any) -> None:
        seen.append("ROLLBACK")

    engine = client.engine
    listeners = [
        ("before_cursor_execute", record),
        ("begin", begin),
        ("commit", commit),
        ("rollback", rollback),
    ]
    for name, fn in listeners:
        sa.event.listen(engine, name, fn)
    try:
        yield seen
    finally:
        for name, fn in listeners:
            sa.event.remove(engine, name, fn)


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every argon2id verification (the hash verified against: real or the dummy)."""
    hasher = users_module.password_hasher()
    calls: list[str] = []
    for name in ("verify", "verify_and_update"):
        real = getattr(type(hasher), name)

        def counted(self: Any, password: Any, hash: Any, real: Any = real) -> Any:
            calls.append("dummy" if hash == users_module._dummy() else "real")
            return real(self, password, hash)

        monkeypatch.setattr(type(hasher), name, counted)
    return calls


def _reset(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE users SET failed_login_attempts = 0, locked_until = NULL"))


def _path(
    target: flowscope.Client,
    statements: list[str],
    verifications: list[str],
    who: str,
    password: str,
) -> tuple[str, list[str], int]:
    statements.clear()
    verifications.clear()
    with pytest.raises(flowscope.AuthenticationError) as info:
        target.users.authenticate(who, password)
    return type(info.value).__name__, list(statements), len(verifications)


@pytest.mark.parametrize("scoped", [False, True], ids=["admin", "scoped"])
def test_every_refusal_takes_the_same_path(
    client: flowscope.Client,
    engine: sa.Engine,
    statements: list[str],
    verifications: list[str],
    scoped: bool,
) -> None:
    org = client.organizations.create(name="Acme", slug="acme")
    for name in ("ana", "locked", "inactive", "deleted"):
        client.users.create(
            username=name, email=f"{name}@example.com", password=PASSWORD, organization_id=org.id
        )
    users = {u.username: u.id for u in client.users.iter()}
    client.users.update(users["inactive"], is_active=False)
    client.users.delete(users["deleted"])
    target = client.scoped(org.id) if scoped else client
    target.users.authenticate("ana", PASSWORD)  # warm: pools, the dummy hash
    with pytest.raises(flowscope.AuthenticationError):
        target.users.authenticate("nobody", PASSWORD)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE users SET locked_until = now() + interval '1 hour' WHERE id = :i"),
            {"i": users["locked"]},
        )
    paths = {}
    for case, who, password in (
        ("wrong password", "ana", "wrong password"),
        ("wrong password, by email", "ana@example.com", "wrong password"),
        ("unknown user", "nobody", "wrong password"),
        ("unknown email", "nobody@example.com", "wrong password"),
        ("locked", "locked", PASSWORD),
        ("inactive, right password", "inactive", PASSWORD),
        ("deleted", "deleted", PASSWORD),
        ("NUL in the identifier", "an\x00a", PASSWORD),
    ):
        _reset_but_locked(engine, users["locked"])
        paths[case] = _path(target, statements, verifications, who, password)
    expected_kind = {"locked": "AccountLockedError"}
    for case, (kind, _, verified) in paths.items():
        assert kind == expected_kind.get(case, "AuthenticationError"), case
        assert verified == 1, case
    # the same statements, transaction for transaction (an email lookup is the same
    # statement with the email column instead of the username one)
    by_username = paths["wrong password"][1]
    by_email = paths["wrong password, by email"][1]
    assert any(s.startswith("UPDATE users SET failed_login_attempts") for s in by_username)
    for case, (_, seen, _) in paths.items():
        reference = by_email if "@" in case or "email" in case else by_username
        assert seen == reference, case


def _reset_but_locked(engine: sa.Engine, locked: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE users SET failed_login_attempts = 0, locked_until = NULL WHERE id <> :i"
            ),
            {"i": locked},
        )


def test_an_identifier_with_at_is_an_email_and_usernames_have_no_at(
    client: flowscope.Client, engine: sa.Engine
) -> None:
    ana = client.users.create(username="ana", email="ana@example.com", password=PASSWORD)
    with pytest.raises(flowscope.ValidationError, match="cannot contain '@'"):
        client.users.create(username="ana@example.com", email="eve@example.com", password="x" * 12)
    eve = client.users.create(username="eve", email="eve@example.com", password="eve's passphrase")
    with pytest.raises(flowscope.ValidationError, match="cannot contain '@'"):
        client.users.update(eve.id, username="ana@example.com")
    # a username like an email, written past the SDK (an old row, raw SQL): it captures
    # nothing, since an identifier with '@' is looked up among emails only
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE users SET username = 'ana@example.com' WHERE id = :i"), {"i": eve.id}
        )
    with pytest.raises(flowscope.AuthenticationError):
        client.users.authenticate("ana@example.com", "eve's passphrase")
    assert client.users.authenticate("ana@example.com", PASSWORD).id == ana.id
    assert client.users.authenticate("ana@EXAMPLE.com", PASSWORD).id == ana.id
    assert client.users.authenticate("ana", PASSWORD).id == ana.id
    # ... and a username without '@' is never compared with emails
    with pytest.raises(flowscope.AuthenticationError):
        client.users.authenticate("eve", "eve's passphrase")  # her username is changed
    assert client.users.authenticate("eve@example.com", "eve's passphrase").id == eve.id


@pytest.mark.slow
def test_unknown_user_and_wrong_password_take_the_same_time(
    client: flowscope.Client, engine: sa.Engine
) -> None:
    client.users.create(username="ana", email="ana@example.com", password=PASSWORD)
    runs = 50

    def timed(who: str) -> float:
        start = time.perf_counter()
        with pytest.raises(flowscope.AuthenticationError) as info:
            client.users.authenticate(who, "wrong password")
        took = time.perf_counter() - start
        assert not isinstance(info.value, flowscope.AccountLockedError)
        return took

    for _ in range(3):  # warm: pools, the dummy hash
        timed("nobody")
        timed("ana")
        _reset(engine)
    unknown: list[float] = []
    wrong: list[float] = []
    for i in range(runs):
        # interleaved, so drift in the machine's load hits both alike, and in turn first
        # (the first of a pair runs measurably slower: caches, clock speed)
        if i % 2:
            unknown.append(timed("nobody"))
            wrong.append(timed("ana"))
        else:
            wrong.append(timed("ana"))
            unknown.append(timed("nobody"))
        _reset(engine)  # (untimed) the lockout would change the path after five
    m_unknown, m_wrong = statistics.median(unknown), statistics.median(wrong)
    spread = statistics.median(abs(x - m_wrong) for x in wrong)  # median absolute deviation
    print(
        f"\nauthenticate, medians of {runs}: unknown user {m_unknown * 1000:.2f} ms,"
        f" wrong password {m_wrong * 1000:.2f} ms (difference"
        f" {(m_unknown - m_wrong) * 1000:+.2f} ms; MAD of wrong {spread * 1000:.2f} ms)"
    )
    # before: the unknown user answered ~6 ms (about one transaction) sooner
    assert abs(m_unknown - m_wrong) <= max(1.5 * spread, 0.002)
