"""``client.organizations``: the tenants."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel

from ..errors import PermissionDeniedError
from ..filters import OrganizationFilter
from ..models import (
    ORGANIZATIONS,
    OrganizationCreate,
    OrganizationPublic,
    OrganizationUpdate,
)
from ._base import ADMIN, READ, Resource, check_id
from ._io import TableIO

__all__ = ["Organizations"]


class Organizations(Resource[OrganizationPublic], TableIO):
    """Create, read, list, update, soft-delete, restore and purge organizations.

    Writes need the ``admin`` scope (or a client without a user). A scoped client
    sees only its own organization. ``purge`` of an organization that still owns
    rows is refused with :class:`flowscope.ConflictError` (foreign keys are
    ``ON DELETE RESTRICT``).

    Example:
        >>> rockets = client.organizations.create(name="Acme Rockets", slug="acme-rockets")
        >>> client.organizations.get(rockets.id).slug
        'acme-rockets'
        >>> [org.slug for org in client.organizations.list(order_by="slug")]
        ['acme-rockets', 'demo-acme', 'demo-globex', 'demo-initech']
    """

    table = ORGANIZATIONS
    public_model = OrganizationPublic
    create_model = OrganizationCreate
    update_model = OrganizationUpdate
    filter_class = OrganizationFilter
    noun = "organization"
    sortable = ("created_at", "updated_at", "name", "slug", "id")
    read_scope = READ
    write_scope = ADMIN

    def _insert_values(self, data: BaseModel) -> dict[str, Any]:
        values = super()._insert_values(data)
        tenant = self._tenant_org()
        if tenant is not None and values["id"] != tenant:
            raise PermissionDeniedError(
                f"this client is scoped to organization {tenant!r}; cannot create another"
            )
        return values

    def purge(self, id: str) -> None:
        """Delete an organization for good, with its tenant logins (roles).

        Refused with :class:`flowscope.ConflictError` while it still owns rows; then
        nothing is dropped.

        Example:
            >>> client.organizations.purge("org_demo_acme")     # it still owns workflows
            Traceback (most recent call last):
            ...
            flowscope.errors.ConflictError: ...
            >>> empty = client.organizations.create(name="Empty", slug="empty")
            >>> client.organizations.purge(empty.id)
            >>> client.organizations.get(empty.id)
            Traceback (most recent call last):
            ...
            flowscope.errors.NotFoundError: organization 'org_...' not found
        """
        check_id(id, self.noun)
        self._require(self.write_scope)
        stmt = sa.delete(self.table).where(self._by_id(id)).returning(self.table.c.id)
        with self._session.transaction() as conn:
            if not self._session.is_tenant:
                self._session.forget_logins(id)
                conn.execute(sa.text("SELECT flowscope_drop_identities(:o)"), {"o": id})
            if conn.execute(stmt).first() is None:
                raise self._not_found(id)
