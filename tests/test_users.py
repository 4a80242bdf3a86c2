"""client.users: argon2id hashes, authentication, lockout, scopes, unique fields."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import flowscope
import pytest
import sqlalchemy as sa
from flowscope import _migrate

from ._helpers import row_counts

PASSWORD = "correct horse battery"


def _hash(engine: sa.Engine, user_id: str) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                sa.text("SELECT password_hash FROM users WHERE id = :i"), {"i": user_id}
            ).scalar_one()
        )


def _db_now(engine: sa.Engine) -> object:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT now()")).scalar_one()


def test_create_hashes_with_argon2id_and_never_returns_the_hash(
    client: flowscope.Client, engine: sa.Engine
) -> None:
    u = client.users.create(username="ana", email="ana@example.com", password=PASSWORD)
    assert u.id.startswith("usr_") and u.password_changed_at is not None
    assert u.scopes == ["workflow:read", "workflow:execute"]
    stored = _hash(engine, u.id)
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert not hasattr(u, "password_hash") and "password_hash" not in u.model_dump()
    assert stored not in repr(u) and PASSWORD not in repr(u)
    assert "password" not in repr(
        flowscope.UserCreate(username="a", email="a@example.com", password=PASSWORD)
    )
    listed = client.users.list().items[0]
    assert "password_hash" not in listed.model_dump()


def test_unique_violations_name_the_field(client: flowscope.Client, engine: sa.Engine) -> None:
    client.users.create(username="ana", email="ana@example.com")
    before = row_counts(engine)
    with pytest.raises(flowscope.ConflictError, match="username already exists") as info:
        client.users.create(username="ana", email="other@example.com")
    assert "ana" not in str(info.value).replace("username", "")
    assert info.value.__cause__ is not None  # translated at the boundary, cause kept
    with pytest.raises(flowscope.ConflictError, match="email already exists"):
        client.users.create(username="bo", email="ana@example.com")
    bo = client.users.create(username="bo", email="bo@example.com")
    with pytest.raises(flowscope.ConflictError, match="username"):
        client.users.update(bo.id, username="ana")
    assert row_counts(engine)["users"] == before["users"] + 1


@pytest.mark.parametrize(
    "fields",
    [
        {"email": "not-an-email"},
        {"email": "a@b"},
        {"username": ""},
        {"username": "u" * 256},
        {"password": "short"},
        {"scopes": ["has space"]},
        {"scopes": "workflow:read"},
        {"full_name": "x" * 256},
        {"password_hash": "$argon2id$..."},
    ],
)
def test_invalid_users_are_refused(
    client: flowscope.Client, engine: sa.Engine, fields: dict[str, object]
) -> None:
    values: dict[str, object] = {"username": "ana", "email": "ana@example.com"}
    values.update(fields)
    before = row_counts(engine)
    with pytest.raises(flowscope.ValidationError):
        client.users.create(**values)
    assert row_counts(engine) == before


def test_authenticate_by_username_or_email(client: flowscope.Client) -> None:
    u = client.users.create(username="ana", email="ana@example.com", password=PASSWORD)
    assert u.last_login is None
    by_name = client.users.authenticate("ana", PASSWORD)
    assert by_name.id == u.id and by_name.last_login is not None
    assert client.users.authenticate("ana@EXAMPLE.com", PASSWORD).id == u.id
    by_mail = client.users.authenticate("ana@example.com", PASSWORD)
    assert by_mail.id == u.id and by_mail.last_login is not None
    assert by_mail.last_login >= by_name.last_login
    for who, pw in (("ana", "wrong password"), ("nobody", PASSWORD), ("", PASSWORD)):
        with pytest.raises(
            flowscope.AuthenticationError, match="invalid username/email or password"
        ):
            client.users.authenticate(who, pw)
    with pytest.raises(flowscope.ValidationError):
        client.users.authenticate("ana", None)  # type: ignore[arg-type]


def test_no_password_inactive_and_deleted_accounts_cannot_log_in(
    client: flowscope.Client,
) -> None:
    nopw = client.users.create(username="svc", email="svc@example.com")
    with pytest.raises(flowscope.AuthenticationError):
        client.users.authenticate("svc", "anything at all")
    client.users.set_password(nopw.id, PASSWORD)
    assert client.users.authenticate("svc", PASSWORD).id == nopw.id
    client.users.update(nopw.id, is_active=False)
    with pytest.raises(flowscope.AuthenticationError):
        client.users.authenticate("svc", PASSWORD)
    client.users.update(nopw.id, is_active=True)
    client.users.delete(nopw.id)
    with pytest.raises(flowscope.AuthenticationError):
        client.users.authenticate("svc", PASSWORD)
    client.users.restore(nopw.id)
    assert client.users.authenticate("svc", PASSWORD).id == nopw.id


def test_lockout_after_five_failures_for_fifteen_minutes(
    client: flowscope.Client, engine: sa.Engine
) -> None:
    u = client.users.create(username="ana", email="ana@example.com", password=PASSWORD)
    for attempt in range(1, 5):
        with pytest.raises(flowscope.AuthenticationError) as info:
            client.users.authenticate("ana", "wrong password")
        assert not isinstance(info.value, flowscope.AccountLockedError)
        assert client.users.get(u.id).failed_login_attempts == attempt
    before = _db_now(engine)
    with pytest.raises(flowscope.AccountLockedError) as locked:
        client.users.authenticate("ana", "wrong password")
    after = _db_now(engine)
    until = locked.value.locked_until
    assert until is not None
    assert before + timedelta(minutes=15) <= until <= after + timedelta(minutes=15)  # type: ignore[operator]
    # even the right password is refused while locked, and the counter stays at 5
    with pytest.raises(flowscope.AccountLockedError):
        client.users.authenticate("ana@example.com", PASSWORD)
    state = client.users.get(u.id)
    assert (state.failed_login_attempts, state.locked_until) == (5, until)
    # the lock expires by the database clock
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE users SET locked_until = now() - interval '1 second' WHERE id = :i"),
            {"i": u.id},
        )
    ok = client.users.authenticate("ana", PASSWORD)
    assert (ok.failed_login_attempts, ok.locked_until) == (0, None)


def test_expired_lock_restarts_the_count_and_success_resets(
    client: flowscope.Client, engine: sa.Engine
) -> None:
    u = client.users.create(username="ana", email="ana@example.com", password=PASSWORD)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE users SET failed_login_attempts = 5,"
                " locked_until = now() - interval '1 minute' WHERE id = :i"
            ),
            {"i": u.id},
        )
    with pytest.raises(flowscope.AuthenticationError) as info:
        client.users.authenticate("ana", "wrong password")
    assert not isinstance(info.value, flowscope.AccountLockedError)
    state = client.users.get(u.id)
    assert (state.failed_login_attempts, state.locked_until) == (1, None)
    for _ in range(3):
        with pytest.raises(flowscope.AuthenticationError):
            client.users.authenticate("ana", "wrong password")
    client.users.authenticate("ana", PASSWORD)  # 4 failures, then success: reset
    for _ in range(4):
        with pytest.raises(flowscope.AuthenticationError):
            client.users.authenticate("ana", "wrong password")
    assert client.users.get(u.id).locked_until is None


def test_concurrent_failures_are_counted_atomically(client: flowscope.Client) -> None:
    u = client.users.create(username="ana", email="ana@example.com", password=PASSWORD)
    barrier = threading.Barrier(8)
    kinds: list[str] = []

    def attempt() -> None:
        barrier.wait()
        try:
            client.users.authenticate("ana", "wrong password")
        except flowscope.AccountLockedError:
            kinds.append("locked")
        except flowscope.AuthenticationError:
            kinds.append("failed")

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = client.users.get(u.id)
    assert len(kinds) == 8 and kinds.count("failed") == 4
    assert state.failed_login_attempts == 5 and state.locked_until is not None


def test_unknown_user_takes_as_long_as_a_wrong_password(client: flowscope.Client) -> None:
    client.users.create(username="ana", email="ana@example.com", password=PASSWORD)

    def timed(fn: Callable[[], object]) -> float:
        start = time.perf_counter()
        with pytest.raises(flowscope.AuthenticationError):
            fn()
        return time.perf_counter() - start

    timed(lambda: client.users.authenticate("nobody", "x" * 12))
    wrong = statistics.median(
        timed(lambda: client.users.authenticate("ana", "wrong password")) for _ in range(3)
    )
    unknown = statistics.median(
        timed(lambda: client.users.authenticate("nobody", "wrong password")) for _ in range(3)
    )
    # both run one argon2id verification (tens of ms); without the dummy hash an unknown
    # user would answer in about one database round trip
    assert unknown > 0.4 * wrong
    from flowscope._resources.users import hash_password, password_hasher

    stored = hash_password(PASSWORD)
    start = time.perf_counter()
    password_hasher().verify("wrong password", stored)
    one_verify = time.perf_counter() - start
    assert unknown > 0.7 * one_verify


def test_set_password_and_rehash_on_login(client: flowscope.Client, engine: sa.Engine) -> None:
    u = client.users.create(username="ana", email="ana@example.com", password=PASSWORD)
    changed = client.users.set_password(u.id, "a brand new passphrase")
    assert changed.password_changed_at is not None and u.password_changed_at is not None
    assert changed.password_changed_at >= u.password_changed_at
    with pytest.raises(flowscope.AuthenticationError):
        client.users.authenticate("ana", PASSWORD)
    assert client.users.authenticate("ana", "a brand new passphrase").id == u.id
    with pytest.raises(flowscope.ValidationError):
        client.users.set_password(u.id, "short")
    with pytest.raises(flowscope.NotFoundError):
        client.users.set_password("usr_missing", "long enough password")
    # a hash made with weaker parameters is upgraded at the next successful log-in
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE users SET password_hash = :h WHERE id = :i"), {"h": weak, "i": u.id}
        )
    client.users.authenticate("ana", PASSWORD)
    upgraded = _hash(engine, u.id)
    assert upgraded != weak and "m=19456,t=2,p=1" in upgraded
    assert client.users.authenticate("ana", PASSWORD).id == u.id


def test_grant_revoke_update_list(client: flowscope.Client) -> None:
    org = client.organizations.create(name="Acme", slug="acme")
    u = client.users.create(username="ana", email="ana@example.com", organization_id=org.id)
    v = client.users.create(username="bo", email="bo@example.com", scopes=[])
    assert v.scopes == []
    assert client.users.grant(u.id, "workflow:write", "workflow:read").scopes == [
        "workflow:execute",
        "workflow:read",
        "workflow:write",
    ]
    assert client.users.revoke(u.id, ["workflow:execute", "nope"]).scopes == [
        "workflow:read",
        "workflow:write",
    ]
    assert client.users.grant(v.id, "admin").scopes == ["admin"]
    with pytest.raises(flowscope.ValidationError):
        client.users.grant(u.id)
    with pytest.raises(flowscope.ValidationError):
        client.users.grant(u.id, "bad scope")
    with pytest.raises(flowscope.NotFoundError):
        client.users.grant("usr_missing", "admin")
    up = client.users.update(u.id, full_name="Ana Lima", email="ana@acme.example.com")
    assert (up.full_name, up.email) == ("Ana Lima", "ana@acme.example.com")
    assert {x.id for x in client.users.iter(organization_id=org.id)} == {u.id}
    assert client.users.count(is_admin=False) == 2
    assert client.users.get_by_username("bo").id == v.id
    client.users.delete(v.id)
    assert client.users.count() == 1 and client.users.count(include_deleted=True) == 2
    client.users.purge(v.id)
    assert client.users.count(include_deleted=True) == 1
    with pytest.raises(flowscope.NotFoundError):
        client.users.get_by_username("bo")


@pytest.mark.parametrize("admin_password", [None, "the admin passphrase"])
def test_seeded_admin(
    create_database: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
    admin_password: str | None,
) -> None:
    if admin_password is None:
        monkeypatch.delenv("FLOWSCOPE_ADMIN_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("FLOWSCOPE_ADMIN_PASSWORD", admin_password)
    url = create_database()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        _migrate.upgrade(conn)
        conn.commit()
    with flowscope.connect(url) as client:
        admin = client.users.get("usr_admin")
        assert admin.is_admin and "admin" in (admin.scopes or [])
        if admin_password is None:
            assert _hash(engine, "usr_admin") == "!"
            with pytest.raises(flowscope.AuthenticationError):
                client.users.authenticate("admin", "!")
        else:
            assert client.users.authenticate("admin", admin_password).id == "usr_admin"
    engine.dispose()
