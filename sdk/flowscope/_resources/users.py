"""``client.users``: accounts, argon2id passwords, authentication with lockout, scopes.

Passwords are hashed with argon2id (pwdlib on argon2-cffi) at OWASP's
parameters (m=19456 KiB, t=2, p=1); the PHC string records them, and a hash
made with other parameters is upgraded at the next successful log-in
(``verify_and_update``). Failed log-ins are counted atomically in SQL with the
database clock: after ``MAX_FAILED_LOGINS`` consecutive failures the account is
locked for ``LOCKOUT`` (:class:`flowscope.AccountLockedError` carries
``locked_until``); a success resets the counter. Unknown users, wrong passwords
and locked accounts take the same path (one lookup, one argon2id verification,
the same counting ``UPDATE``), so the time of a refusal tells nothing. An
identifier with ``@`` is an email, one without a username (usernames cannot
contain ``@``).
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.dialects import postgresql

from ..errors import AccountLockedError, AuthenticationError, NotFoundError, ValidationError
from ..filters import UserFilter
from ..models import SECRET_COLUMNS, USERS, UserCreate, UserPublic, UserUpdate
from ._base import ADMIN, READ, Resource, check_id, parse, require_scope
from ._io import TableIO

__all__ = ["LOCKOUT", "MAX_FAILED_LOGINS", "Users", "hash_password", "password_hasher"]

MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
SELF_SERVICE_FIELDS = frozenset({"full_name", "avatar_url", "email", "password"})

# The new ``scopes`` value, computed from the row's current one in the same UPDATE.
_GRANT_SQL = (
    "(SELECT COALESCE(jsonb_agg(DISTINCT s.x ORDER BY s.x), '[]'::jsonb) FROM ("
    "SELECT jsonb_array_elements_text(COALESCE(users.scopes, '[]'::jsonb)) AS x"
    " UNION SELECT unnest(CAST(:given AS text[]))) s)"
)
_REVOKE_SQL = (
    "(SELECT COALESCE(jsonb_agg(s.x), '[]'::jsonb) FROM ("
    "SELECT jsonb_array_elements_text(COALESCE(users.scopes, '[]'::jsonb)) AS x) s"
    " WHERE s.x <> ALL (CAST(:given AS text[])))"
)

_hasher: Any = None
_dummy_hash: str | None = None
_lock = threading.Lock()


def password_hasher() -> Any:
    """The shared pwdlib ``PasswordHash`` (argon2id, m=19456, t=2, p=1)."""
    global _hasher
    if _hasher is None:
        from pwdlib import PasswordHash
        from pwdlib.hashers.argon2 import Argon2Hasher

        _hasher = PasswordHash((Argon2Hasher(time_cost=2, memory_cost=19456, parallelism=1),))
    return _hasher


def hash_password(password: str) -> str:
    """Hash a password with argon2id (PHC string).

    Example:
        >>> hash_password("correct horse battery").startswith("$argon2id$")
        True
    """
    return str(password_hasher().hash(password))


def _dummy() -> str:
    global _dummy_hash
    with _lock:
        if _dummy_hash is None:
            _dummy_hash = hash_password("flowscope-dummy-password-for-timing")
    return _dummy_hash


def _verify(password: str, stored: str | None) -> tuple[bool, str | None]:
    """(valid, new hash or None); unusable or foreign hashes verify a dummy and fail."""
    hasher = password_hasher()
    if not stored or not stored.startswith("$argon2"):
        hasher.verify_and_update(password, _dummy())  # the same work as a real check
        return False, None
    try:
        valid, updated = hasher.verify_and_update(password, stored)
    except Exception:  # malformed stored hash: treat as unusable
        hasher.verify_and_update(password, _dummy())
        return False, None
    return bool(valid), updated


def _email_forms(value: str) -> list[str]:
    """The value as typed and with its domain lower-cased (as stored by UserCreate)."""
    local, at, domain = value.rpartition("@")
    return [value, f"{local}@{domain.lower()}"] if at else [value]


class Users(Resource[UserPublic], TableIO):
    """User accounts. Reads need ``workflow:read`` (or are of oneself); writes need ``admin``,
    except that users may change their own ``full_name``, ``avatar_url``, ``email`` and password.

    Example:
        >>> zoe = client.users.create(username="zoe", email="zoe@Example.COM",
        ...                           password="a long passphrase", organization_id="org_demo_acme")
        >>> zoe.id, zoe.email, zoe.scopes
        ('usr_...', 'zoe@example.com', ['workflow:read', 'workflow:execute'])
        >>> client.users.authenticate("zoe@example.com", "a long passphrase").id == zoe.id
        True
    """

    table = USERS
    public_model = UserPublic
    create_model = UserCreate
    update_model = UserUpdate
    filter_class = UserFilter
    noun = "user"
    sortable = ("created_at", "updated_at", "username", "email", "id")
    hidden_columns = SECRET_COLUMNS["users"]
    read_scope = READ
    write_scope = ADMIN

    def _insert_values(self, data: BaseModel) -> dict[str, Any]:
        values = super()._insert_values(data)
        password = values.pop("password", None)
        if password is None:
            values["password_hash"] = "!"  # unusable: no password can match
        else:
            values["password_hash"] = hash_password(password)
            values["password_changed_at"] = sa.func.now()
        return values

    def _update_values(self, changes: BaseModel) -> dict[str, Any]:
        values = super()._update_values(changes)
        if "password" in values:
            password = values.pop("password")
            if password is None:
                raise ValidationError("password cannot be null (use set_password)")
            values["password_hash"] = hash_password(password)
            values["password_changed_at"] = sa.func.now()
            values["failed_login_attempts"] = 0
            values["locked_until"] = None
        return values

    def update(self, id: str, data: Any = None, /, **changes: Any) -> UserPublic:
        """Change a user (a ``password`` is hashed; ``password_changed_at`` set).

        Example:
            >>> client.users.update("usr_demo_emeka", full_name="Emeka Obi Jr.").full_name
            'Emeka Obi Jr.'
        """
        return super().update(id, data, **changes)

    def _require_update(self, id: str, model: Any) -> None:
        # admins change anyone; a user may change their own self-service fields
        given = set(model.model_fields_set)
        require_scope(
            self._session,
            ADMIN,
            self_service=id if given and given <= SELF_SERVICE_FIELDS else None,
        )

    def set_password(self, id: str, password: str) -> UserPublic:
        """Set a new password (argon2id); resets failed log-ins and any lock.

        Example:
            >>> client.users.set_password("usr_demo_chen", "a new long passphrase").username
            'demo.chen'
            >>> client.users.authenticate("demo.chen", "a new long passphrase").id
            'usr_demo_chen'
        """
        return self.update(id, password=password)

    def _scopes(self, id: str, scopes: tuple[Any, ...], *, grant: bool) -> UserPublic:
        check_id(id, self.noun)
        names: list[str] = []
        for s in scopes:
            items = list(s) if isinstance(s, list | tuple | set | frozenset) else [s]
            names.extend(items)
        if not names:
            raise ValidationError("name at least one scope")
        parse(UserUpdate, None, {"scopes": names}, "scopes")
        require_scope(self._session, ADMIN)
        sql = _GRANT_SQL if grant else _REVOKE_SQL
        merged = sa.text(sql).bindparams(
            sa.bindparam("given", names, type_=postgresql.ARRAY(sa.Text))
        )
        return self._update_row(id, {"scopes": merged})

    def grant(self, id: str, *scopes: str) -> UserPublic:
        """Add scopes to a user (atomic; duplicates ignored).

        Example:
            >>> client.users.grant("usr_demo_bruno", "workflow:read:all").scopes
            ['workflow:execute', 'workflow:read', 'workflow:read:all', 'workflow:write']
        """
        return self._scopes(id, scopes, grant=True)

    def revoke(self, id: str, *scopes: str) -> UserPublic:
        """Remove scopes from a user (atomic; absent ones ignored).

        Example:
            >>> client.users.revoke("usr_demo_dara", "workflow:write").scopes
            ['workflow:read', 'workflow:execute']
        """
        return self._scopes(id, scopes, grant=False)

    def authenticate(self, username_or_email: str, password: str) -> UserPublic:
        """Check a password; return the user or raise AuthenticationError / AccountLockedError.

        An identifier with ``@`` is matched against emails only (its domain in any
        case), one without against usernames only; usernames cannot contain ``@``,
        so a username never captures another user's email.

        No oracle: an unknown user, a wrong password, an inactive, deleted or locked
        account all take the same path: one lookup, one argon2id verification (of a
        dummy hash when there is no usable one) and the same failure-counting
        ``UPDATE`` (against no row when there is no account, or it is locked), each
        in a transaction of its own that commits through the WAL (it has a
        transaction id even when no row changed). All but a locked account raise the same
        :class:`flowscope.AuthenticationError`; a locked one raises
        :class:`flowscope.AccountLockedError` (a subclass) with ``locked_until``. A
        scoped client authenticates only its organization's users (on the admin
        login behind it: a tenant login cannot read password hashes).

        Example (the demo's users have no password until one is set):

            >>> _ = client.users.set_password("usr_demo_lena", "a long passphrase")
            >>> client.users.authenticate("demo.lena", "a long passphrase").id
            'usr_demo_lena'
            >>> client.users.authenticate("lena@INITECH.example", "a long passphrase").username
            'demo.lena'
            >>> client.users.authenticate("demo.lena", "a wrong passphrase")
            Traceback (most recent call last):
            ...
            flowscope.errors.AuthenticationError: invalid username/email or password
        """
        if not isinstance(username_or_email, str) or not isinstance(password, str):
            raise ValidationError("username_or_email and password must be strings")
        identifier = username_or_email
        if "\x00" in identifier or len(identifier) > 255:
            identifier = ""  # matches no account; the path stays the same
        u = self.table.c
        now = sa.func.now()
        locked = sa.and_(u.locked_until.is_not(None), u.locked_until > now)
        match = (
            u.email.in_(_email_forms(identifier)) if "@" in identifier else u.username == identifier
        )
        lookup = sa.select(
            u.id, u.password_hash, u.is_active, u.locked_until, locked.label("locked")
        ).where(match, u.deleted_at.is_(None))
        if self._session.organization_id is not None:
            # a tenant login may not read password hashes: the check runs on the admin login
            # behind the session (fixed statements only), limited to the tenant's organization
            lookup = lookup.where(u.organization_id == self._session.organization_id)
        with self._session.admin_transaction() as conn:
            # (an email as typed first, then with its domain lower-cased)
            found = conn.execute(lookup.order_by(u.email != identifier).limit(1)).first()
        stored = found.password_hash if found is not None and not found.locked else None
        valid, new_hash = _verify(password, stored)
        not_locked = sa.or_(u.locked_until.is_(None), u.locked_until <= now)
        if valid and found is not None and found.is_active is not False:
            values: dict[str, Any] = {
                "failed_login_attempts": 0,
                "locked_until": None,
                "last_login": now,
            }
            if new_hash:
                values["password_hash"] = new_hash
            stmt = (
                sa.update(self.table)
                .where(u.id == found.id, u.deleted_at.is_(None), not_locked)
                .values(**values)
                .returning(*self.columns)
            )
            with self._session.admin_transaction() as conn:
                row = conn.execute(stmt).first()
            if row is None:
                raise self._locked_now(found.id)
            return self._public(row)
        # The same counting statement on every failure; '' is no id (ids are non-empty),
        # and a locked row is left alone by ``not_locked``.
        target = found.id if found is not None else ""
        expired = sa.and_(u.locked_until.is_not(None), u.locked_until <= now)
        attempts = sa.func.coalesce(u.failed_login_attempts, 0)
        stmt = (
            sa.update(self.table)
            .where(u.id == target, not_locked)
            .values(
                failed_login_attempts=sa.case((expired, 1), else_=attempts + 1),
                locked_until=sa.case(
                    (expired, None),
                    (
                        attempts + 1 >= MAX_FAILED_LOGINS,
                        now + sa.text(f"interval '{int(LOCKOUT.total_seconds())} seconds'"),
                    ),
                    else_=u.locked_until,
                ),
            )
            .returning(u.failed_login_attempts, u.locked_until)
        )
        with self._session.admin_transaction() as conn:
            # A transaction id in every case: its commit then waits for the WAL flush
            # whether or not a row changed (a commit that changed nothing returns a flush
            # sooner: measured 3-10 ms on a server with synchronous_commit = on).
            conn.execute(sa.select(sa.func.pg_current_xact_id()))
            counted = conn.execute(stmt).first()
        if found is None:
            raise AuthenticationError("invalid username/email or password")
        if found.locked:
            raise AccountLockedError(
                f"account locked until {found.locked_until.isoformat()}",
                locked_until=found.locked_until,
            )
        if counted is None:  # locked by a concurrent attempt in the meantime
            raise self._locked_now(found.id)
        if counted.locked_until is not None:
            raise AccountLockedError(
                f"too many failed log-ins; account locked until {counted.locked_until.isoformat()}",
                locked_until=counted.locked_until,
            )
        raise AuthenticationError("invalid username/email or password")

    def _locked_now(self, id: str) -> AuthenticationError:
        u = self.table.c
        with self._session.admin_transaction() as conn:
            until = conn.execute(sa.select(u.locked_until).where(u.id == id)).scalar_one_or_none()
        if until is None:
            return AuthenticationError("invalid username/email or password")
        return AccountLockedError(f"account locked until {until.isoformat()}", locked_until=until)

    def get_by_username(self, username: str, *, read_your_writes: bool | None = None) -> UserPublic:
        """The (not deleted) user with this username, or NotFoundError (read where ``get`` reads).

        Example:
            >>> client.users.get_by_username("admin").id
            'usr_admin'
            >>> client.users.get_by_username("demo.ana").full_name
            'Ana Souza'
        """
        if not isinstance(username, str):
            raise ValidationError("username must be a string")
        f = self._filter(username=[username])
        self._require(self.read_scope)
        stmt = sa.select(*self.columns).where(f.clause()).limit(1)
        with self._point_read(read_your_writes) as conn:
            row = conn.execute(stmt).first()
        if row is None:
            raise NotFoundError(f"user {username!r} not found")
        return self._public(row)
