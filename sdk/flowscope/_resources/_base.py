"""Shared code of the CRUD resources: pages, keyset cursors, scope checks, the generic verbs.

A resource class names its table, models and filter in class attributes, so
mixins (export, ingest) can build on any of them::

    class Workflows(Resource[WorkflowPublic]):
        table = WORKFLOWS
        public_model = WorkflowPublic
        create_model = WorkflowCreate
        update_model = WorkflowUpdate
        filter_class = WorkflowFilter

Every public call runs in one transaction (the client's tenancy scope applied,
driver errors translated at that boundary). Writes, and the reads that are part
of a write (an update's re-check, a lifecycle transition, authentication),
use ``client.transaction()`` on the primary. The pure reads ``list()``,
``count()`` and ``iter()`` use ``client.read_transaction()``: a read replica
when the client has one (``connect(read_url=...)``), else the primary.
``get()`` is the read most often made right after a write (create, then get by
id), so it goes to a replica only with read-your-writes (the call's
``read_your_writes=True`` or the client's default): then the replica must have
replayed this client's writes first, or the read goes to the primary. Without
read-your-writes, ``get()`` reads the primary.

Scope rule (checked before the database is written): a client without a
``user_id`` acts as an administrator (RLS still confines a scoped client to its
organization). A client with a ``user_id`` looks that user up on every call: it
must exist, be active and not deleted; ``is_admin`` or the ``admin`` scope allow
everything; otherwise a scoped client's user must belong to the client's
organization and hold the verb's scope: ``workflow:read`` for get/list/count,
``workflow:write`` for changing workflows, ``workflow:execute`` for creating
and driving executions, ``admin`` for managing users and organizations.
The check is for a clear, early error; for a scoped client PostgreSQL enforces the
same rule (its login's privileges are its user's scopes, see :mod:`flowscope._session`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from .._boundary import Guarded
from ..errors import NotFoundError, PermissionDeniedError, ValidationError
from ..filters import coerce_filter
from ..models import new_id

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from .._session import Session

__all__ = ["ADMIN", "EXECUTE", "READ", "WRITE", "Page", "Resource"]

from .._session import ADMIN, EXECUTE, READ, WRITE, note_written
from ._page import Page, cursor_value, from_cursor_value

MAX_LIMIT = 10_000

T = TypeVar("T", bound=BaseModel)
M = TypeVar("M", bound=BaseModel)


def validation_error(exc: PydanticValidationError, what: str) -> ValidationError:
    """A flowscope ValidationError from a pydantic one (field paths and messages, no input echo)."""
    errors: list[dict[str, Any]] = [
        {"loc": tuple(e["loc"]), "msg": e["msg"], "index": None}
        for e in exc.errors(include_input=False, include_url=False)
    ]
    lines = "; ".join(".".join(str(p) for p in e["loc"]) + f": {e['msg']}" for e in errors)
    return ValidationError(f"invalid {what}: {lines}", errors=errors)


def parse(model: type[M], data: Any, fields: Mapping[str, Any], what: str) -> M:
    """Build ``model`` from an instance of it or keyword fields, as a flowscope error on bad input."""
    if data is not None:
        if fields:
            raise ValidationError(f"give either a {model.__name__} or keyword fields, not both")
        if isinstance(data, model):
            return data
        if isinstance(data, BaseModel):
            data = data.model_dump(exclude_unset=True)
        if not isinstance(data, Mapping):
            raise ValidationError(
                f"expected a {model.__name__} or a mapping, got {type(data).__name__}"
            )
        fields = data
    try:
        return model.model_validate(dict(fields))
    except PydanticValidationError as exc:
        raise validation_error(exc, what) from None


def check_id(value: Any, noun: str) -> str:
    """An id must be a non-empty string of at most 255 characters."""
    if not isinstance(value, str) or not value or len(value) > 255 or "\x00" in value:
        raise ValidationError(f"{noun} id must be a non-empty string of at most 255 characters")
    return value


class Resource(Guarded, Generic[T]):
    """Generic CRUD over one table; subclasses set the class attributes below.

    Every public method, inherited ones included, runs inside the error boundary
    (:mod:`flowscope._boundary`): only flowscope errors come out.
    """

    table: ClassVar[sa.Table]
    public_model: ClassVar[type[BaseModel]]
    create_model: ClassVar[type[BaseModel]]
    update_model: ClassVar[type[BaseModel]]
    filter_class: ClassVar[type[Any]]
    noun: ClassVar[str] = "row"
    sortable: ClassVar[tuple[str, ...]] = ("created_at", "id")
    default_order: ClassVar[str] = "-created_at"
    hidden_columns: ClassVar[frozenset[str]] = frozenset()
    read_scope: ClassVar[str] = READ
    write_scope: ClassVar[str] = WRITE

    def __init__(self, session: Session) -> None:
        self._session = session

    # -- helpers for subclasses and mixins ---------------------------------------------------
    @property
    def soft_deletes(self) -> bool:
        """True when the table has ``deleted_at`` (``delete`` is then a soft delete)."""
        return "deleted_at" in self.table.c

    @property
    def columns(self) -> list[sa.Column[Any]]:
        """The table's columns the client may return (never ``password_hash``)."""
        return [c for c in self.table.c if c.name not in self.hidden_columns]

    def _public(self, row: Any) -> T:
        return self.public_model.from_row(row._mapping)  # type: ignore[attr-defined]

    def _filter(self, filter: Any = None, **fields: Any) -> Any:
        """The resource's filter object from a filter and/or keyword fields."""
        return coerce_filter(self.filter_class, filter, **fields)

    def _tenant_org(self) -> str | None:
        return self._session.organization_id

    def _require(self, scope: str, *, self_service: str | None = None) -> None:
        """Raise PermissionDeniedError unless the acting user may do a ``scope`` action.

        ``self_service``: the target user id; a user may act on their own account.
        """
        require_scope(self._session, scope, self_service=self_service)

    def _point_read(self, read_your_writes: bool | None) -> AbstractContextManager[Connection]:
        """The transaction for a read by id (``get``): see the module docstring."""
        wanted = self._session.read_your_writes if read_your_writes is None else read_your_writes
        if wanted:
            return self._session.read_transaction(read_your_writes=True)
        return self._session.transaction()

    def _by_id(self, id: str) -> sa.ColumnElement[bool]:
        return self.table.c.id == id

    def _not_found(self, id: str) -> NotFoundError:
        return NotFoundError(f"{self.noun} {id!r} not found")

    def _refused(self, id: str) -> NotFoundError | PermissionDeniedError:
        """Why a write by id changed nothing: the row is not there (or not visible), or
        row-level security let this tenant read it but not change it (ownership)."""
        if self._session.is_tenant:
            with self._session.transaction() as conn:
                visible = conn.execute(sa.select(self.table.c.id).where(self._by_id(id))).first()
            if visible is not None:
                who = {
                    "workflows": " (only its owner, or a user with workflow:write:all, may)",
                    "executions": " (only its own or its workflow's owner, or a user with"
                    " workflow:read:all, may)",
                }.get(self.table.name, "")
                return PermissionDeniedError(
                    f"{self.noun} {id!r} is visible to this client but not its to change{who}"
                )
        return self._not_found(id)

    def _check_tenant_org(self, org: Any) -> None:
        tenant = self._tenant_org()
        if tenant is not None and org is not None and org != tenant:
            raise PermissionDeniedError(
                f"this client is scoped to organization {tenant!r}; cannot write rows of {org!r}"
            )

    # -- ordering and keyset pagination ----------------------------------------------------
    def _order(self, order_by: Any) -> tuple[str, sa.Column[Any], bool]:
        spec = self.default_order if order_by is None else order_by
        if not isinstance(spec, str):
            raise ValidationError("order_by must be a column name, optionally prefixed by '-'")
        descending = spec.startswith("-")
        name = spec[1:] if descending else spec
        if name not in self.sortable:
            raise ValidationError(
                f"cannot order {self.table.name} by {name!r}; choose one of "
                + ", ".join(self.sortable)
                + " (prefix '-' for descending)"
            )
        return spec, self.table.c[name], descending

    def _cursor(self, spec: str, column: sa.Column[Any], row: Any) -> str:
        payload = {"o": spec, "v": cursor_value(row._mapping[column.name]), "id": row.id}
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _after(self, spec: str, column: sa.Column[Any], cursor: Any) -> tuple[Any, Any]:
        try:
            if not isinstance(cursor, str):
                raise ValueError
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            payload = json.loads(raw)
            if not isinstance(payload, dict) or payload.get("o") != spec:
                raise ValueError
            value = from_cursor_value(column, payload["v"])
            last_id = from_cursor_value(self.table.c.id, payload["id"])
        except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
            raise ValidationError(
                "invalid cursor: pass the next_cursor of a page listed with the same order_by"
            ) from None
        return value, last_id

    def _keyset_select(
        self,
        where: sa.ColumnElement[bool],
        *,
        order_by: Any,
        limit: Any,
        after: Any,
    ) -> tuple[sa.Select[Any], str, sa.Column[Any], int]:
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
            raise ValidationError(f"limit must be an integer from 1 to {MAX_LIMIT}")
        spec, column, descending = self._order(order_by)
        stmt = sa.select(*self.columns).where(where)
        if after is not None:
            value, last_id = self._after(spec, column, after)
            key = sa.tuple_(column, self.table.c.id)
            bound = sa.tuple_(
                sa.literal(value, column.type), sa.literal(last_id, self.table.c.id.type)
            )
            stmt = stmt.where(key < bound if descending else key > bound)
        if descending:
            stmt = stmt.order_by(column.desc(), self.table.c.id.desc())
        else:
            stmt = stmt.order_by(column.asc(), self.table.c.id.asc())
        return stmt.limit(limit + 1), spec, column, limit

    def _page(
        self,
        where: sa.ColumnElement[bool],
        *,
        order_by: Any,
        limit: Any,
        after: Any,
        read_your_writes: bool | None = None,
    ) -> Page[T]:
        stmt, spec, column, limit = self._keyset_select(
            where, order_by=order_by, limit=limit, after=after
        )
        with self._session.read_transaction(read_your_writes=read_your_writes) as conn:
            rows = conn.execute(stmt).all()
        has_more = len(rows) > limit
        rows = rows[:limit]
        cursor = self._cursor(spec, column, rows[-1]) if has_more else None
        return Page([self._public(r) for r in rows], has_more, cursor)

    # -- verbs -----------------------------------------------------------------------------
    def get(
        self, id: str, *, include_deleted: bool = False, read_your_writes: bool | None = None
    ) -> T:
        """The row with this id, or NotFoundError (also for soft-deleted rows unless asked).

        Where it reads: with read-your-writes (``read_your_writes=True`` here, or
        the client's ``connect(read_your_writes=True)`` default) a read replica
        that has replayed this client's writes (else the primary); without it,
        the primary, so a row just created elsewhere is never reported missing
        because a replica lags.

        Example:
            >>> wf = client.workflows.get("wf_demo_0001")
            >>> wf.name, wf.version, wf.tags
            ('web-events export', 4, ['analytics', 'hourly', 'pipeline', 'experimental'])
            >>> client.workflows.get("wf_demo_0001", read_your_writes=True).status  # on a replica
            'active'
            >>> client.workflows.get("wf_demo_9999")
            Traceback (most recent call last):
            ...
            flowscope.errors.NotFoundError: workflow 'wf_demo_9999' not found
        """
        check_id(id, self.noun)
        self._require(self.read_scope, self_service=id if self.table.name == "users" else None)
        stmt = sa.select(*self.columns).where(self._by_id(id))
        if self.soft_deletes and not include_deleted:
            stmt = stmt.where(self.table.c.deleted_at.is_(None))
        with self._point_read(read_your_writes) as conn:
            row = conn.execute(stmt).first()
        if row is None:
            raise self._not_found(id)
        return self._public(row)

    def list(
        self,
        filter: Any = None,
        *,
        order_by: str | None = None,
        limit: int = 100,
        after: str | None = None,
        read_your_writes: bool | None = None,
        **filter_fields: Any,
    ) -> Page[T]:
        """One page of matching rows (keyset pagination; ``after`` is a page's ``next_cursor``).

        ``order_by`` is a column name from ``sortable``, ``-`` prefixed for
        descending (default ``-created_at``); ties are broken by ``id``.
        Reads a replica when the client has one (see
        :meth:`flowscope.Client.read_transaction`); ``read_your_writes=True``
        makes it see this client's earlier writes (default: the client's setting).

        Example:
            >>> page = client.workflows.list(status="active", order_by="name", limit=3)
            >>> [wf.name for wf in page], page.has_more
            (['campaigns backfill', 'campaigns cleanup', 'campaigns enrich'], True)
            >>> page = client.workflows.list(status="active", order_by="name", limit=3,
            ...                              after=page.next_cursor)
            >>> [wf.name for wf in page]
            ['campaigns reconcile', 'campaigns refresh', 'campaigns sync']
        """
        f = self._filter(filter, **filter_fields)
        self._require(self.read_scope)
        return self._page(
            f.clause(),
            order_by=order_by,
            limit=limit,
            after=after,
            read_your_writes=read_your_writes,
        )

    def iter(
        self,
        filter: Any = None,
        *,
        order_by: str | None = None,
        page_size: int = 1000,
        read_your_writes: bool | None = None,
        **filter_fields: Any,
    ) -> Iterator[T]:
        """Every matching row, walking all pages (one short transaction per page, like ``list``).

        Example:
            >>> for wf in client.workflows.iter(owner="usr_demo_kofi", order_by="name"):
            ...     print(wf.name)
            features daily report
            fraud-scores etl
            invoices ingest
            payroll etl
            returns etl
            sessions alerts
            tickets refresh
            tickets sync
            web-events scoring
        """
        f = self._filter(filter, **filter_fields)
        after: str | None = None
        while True:
            page = self.list(
                f,
                order_by=order_by,
                limit=page_size,
                after=after,
                read_your_writes=read_your_writes,
            )
            yield from page.items
            if not page.has_more:
                return
            after = page.next_cursor

    def count(
        self, filter: Any = None, *, read_your_writes: bool | None = None, **filter_fields: Any
    ) -> int:
        """How many rows match (read like ``list``: a replica when there is one).

        Example:
            >>> client.workflows.count(tags_any=["finance"])
            43
            >>> client.workflows.count(flowscope.WorkflowFilter(tags_any=["finance"], status="active"))
            38
            >>> client.workflows.count(read_your_writes=True)  # on a replica: sees this client's writes
            200
        """
        f = self._filter(filter, **filter_fields)
        self._require(self.read_scope)
        stmt = sa.select(sa.func.count()).select_from(self.table).where(f.clause())
        with self._session.read_transaction(read_your_writes=read_your_writes) as conn:
            return int(conn.execute(stmt).scalar_one())

    def _insert_values(self, data: BaseModel) -> dict[str, Any]:
        """Column values for a new row (subclasses add defaults)."""
        values = data.model_dump(exclude_none=True)
        if not values.get("id"):
            values["id"] = new_id(self.table.name)
        if "organization_id" in self.table.c:
            values.setdefault("organization_id", self._tenant_org())
            self._check_tenant_org(values.get("organization_id"))
        return values

    def create(self, data: Any = None, /, **fields: Any) -> T:
        """Insert a row from keyword fields (or a Create model) and return it.

        Example:
            >>> org = client.organizations.create(name="Acme Rockets", slug="acme-rockets")
            >>> org.id, org.name, org.settings
            ('org_...', 'Acme Rockets', {})
            >>> client.organizations.create(name="Again", slug="acme-rockets")
            Traceback (most recent call last):
            ...
            flowscope.errors.ConflictError: ...
        """
        model = parse(self.create_model, data, fields, f"new {self.noun}")
        self._require(self.write_scope)
        values = self._insert_values(model)
        stmt = sa.insert(self.table).values(**values).returning(*self.columns)
        with self._session.transaction() as conn:
            row = conn.execute(stmt).one()
            note_written([str(row.id)])
        return self._public(row)

    def _update_values(self, changes: BaseModel) -> dict[str, Any]:
        values = changes.model_dump(exclude_unset=True)
        if not values:
            raise ValidationError(f"no changes given for the {self.noun}")
        for key, value in values.items():
            if value is None and not self.table.c[key].nullable:
                raise ValidationError(f"{key} cannot be null")
        if "organization_id" in values:
            self._check_tenant_org(values["organization_id"])
        return values

    def _update_where(self, id: str) -> sa.ColumnElement[bool]:
        where = self._by_id(id)
        if self.soft_deletes:
            where = sa.and_(where, self.table.c.deleted_at.is_(None))
        return where

    def update(self, id: str, data: Any = None, /, **changes: Any) -> T:
        """Change the given fields of a row and return it (NotFoundError if absent or deleted).

        Example:
            >>> client.organizations.update("org_demo_globex", name="Globex Retail Inc.").name
            'Globex Retail Inc.'
        """
        check_id(id, self.noun)
        model = parse(self.update_model, data, changes, f"{self.noun} update")
        self._require_update(id, model)
        return self._update_row(id, self._update_values(model))

    def _update_row(self, id: str, values: dict[str, Any]) -> T:
        """``UPDATE`` the row ``update`` may change (``_update_where``) with ``values``; its
        public model, or ``NotFoundError``."""
        stmt = (
            sa.update(self.table)
            .where(self._update_where(id))
            .values(**values)
            .returning(*self.columns)
        )
        with self._session.transaction() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            raise self._refused(id)
        return self._public(row)

    def _require_update(self, id: str, model: Any) -> None:
        """The scope check for ``update`` (resources with self-service fields override it)."""
        self._require(self.write_scope)

    def delete(self, id: str) -> None:
        """Delete a row: a soft delete (``deleted_at`` set) where the table has one, else a hard one.

        Example:
            >>> client.workflows.delete("wf_demo_0200")
            >>> client.workflows.get("wf_demo_0200")
            Traceback (most recent call last):
            ...
            flowscope.errors.NotFoundError: workflow 'wf_demo_0200' not found
            >>> client.workflows.count(), client.workflows.count(include_deleted=True)
            (199, 200)
            >>> client.workflows.restore("wf_demo_0200").deleted_at is None
            True
        """
        if not self.soft_deletes:
            return self.purge(id)
        check_id(id, self.noun)
        self._require(self.write_scope)
        t = self.table
        stmt = (
            sa.update(t)
            .where(self._by_id(id), t.c.deleted_at.is_(None))
            .values(deleted_at=sa.func.now())
            .returning(t.c.id)
        )
        with self._session.transaction() as conn:
            if conn.execute(stmt).first() is None:
                raise self._refused(id)
        return None

    def restore(self, id: str) -> T:
        """Undo a soft delete and return the row (a row that is not deleted is returned as is).

        Example:
            >>> client.workflows.delete("wf_demo_0199")
            >>> wf = client.workflows.restore("wf_demo_0199")
            >>> wf.name, wf.deleted_at
            ('shipments etl', None)
        """
        check_id(id, self.noun)
        if not self.soft_deletes:
            raise ValidationError(f"{self.table.name} are not soft-deleted; nothing to restore")
        self._require(self.write_scope)
        t = self.table
        stmt = (
            sa.update(t)
            .where(self._by_id(id), t.c.deleted_at.is_not(None))
            .values(deleted_at=None)
            .returning(*self.columns)
        )
        with self._session.transaction() as conn:
            row = conn.execute(stmt).first()
            if row is None:
                row = conn.execute(sa.select(*self.columns).where(self._by_id(id))).first()
        if row is None:
            raise self._not_found(id)
        return self._public(row)

    def purge(self, id: str) -> None:
        """Delete a row for good (foreign keys decide: executions cascade, organizations refuse).

        Example:
            >>> wf = client.workflows.create(name="scratch", owner="usr_demo_ana",
            ...                              organization_id="org_demo_acme", nodes=[], edges=[])
            >>> client.workflows.purge(wf.id)
            >>> client.workflows.count(include_deleted=True)
            200
        """
        check_id(id, self.noun)
        self._require(self.write_scope)
        stmt = sa.delete(self.table).where(self._by_id(id)).returning(self.table.c.id)
        with self._session.transaction() as conn:
            if conn.execute(stmt).first() is None:
                raise self._refused(id)


def require_scope(session: Session, scope: str, *, self_service: str | None = None) -> None:
    """Raise PermissionDeniedError unless the session's acting user may do a ``scope`` action
    (:meth:`flowscope._session.Session.require`)."""
    session.require(scope, self_service=self_service)
