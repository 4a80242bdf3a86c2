"""``client.organizations``: the tenants."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ..errors import PermissionDeniedError
from ..filters import OrganizationFilter
from ..models import (
    ORGANIZATIONS,
    OrganizationCreate,
    OrganizationPublic,
    OrganizationUpdate,
)
from ._base import ADMIN, READ, Resource
from ._io import TableIO

__all__ = ["Organizations"]


class Organizations(Resource[OrganizationPublic], TableIO):
    """Create, read, list, update, soft-delete, restore and purge organizations.

    Writes need the ``admin`` scope (or a client without a user). A scoped client
    sees only its own organization. ``purge`` of an organization that still owns
    rows is refused with :class:`flowscope.ConflictError` (foreign keys are
    ``ON DELETE RESTRICT``).

    Example:
        >>> acme = client.organizations.create(name="Acme", slug="acme")   # doctest: +SKIP
        >>> client.organizations.get(acme.id).slug                          # doctest: +SKIP
        'acme'
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
