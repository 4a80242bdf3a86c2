"""client.organizations: the tenants' CRUD."""

from __future__ import annotations

import flowscope
import pytest
import sqlalchemy as sa

from ._helpers import make_workflow, row_counts


def test_crud_cycle(client: flowscope.Client) -> None:
    acme = client.organizations.create(name="Acme", slug="acme", settings={"tz": "UTC"})
    assert acme.id.startswith("org_") and acme.settings == {"tz": "UTC"}
    other = client.organizations.create(flowscope.OrganizationCreate(name="Other", slug="other"))
    assert other.settings == {}
    assert client.organizations.get(acme.id) == acme
    up = client.organizations.update(acme.id, name="Acme Inc.", settings={"tz": "CET"})
    assert (up.name, up.slug, up.settings) == ("Acme Inc.", "acme", {"tz": "CET"})
    assert [o.slug for o in client.organizations.list(order_by="slug").items] == ["acme", "other"]
    assert client.organizations.count(slug="other") == 1
    client.organizations.delete(other.id)
    assert client.organizations.count() == 1
    assert client.organizations.count(include_deleted=True) == 2
    with pytest.raises(flowscope.NotFoundError):
        client.organizations.get(other.id)
    assert client.organizations.restore(other.id).deleted_at is None
    client.organizations.purge(other.id)
    with pytest.raises(flowscope.NotFoundError):
        client.organizations.get(other.id, include_deleted=True)


def test_unique_slug_and_validation(client: flowscope.Client, engine: sa.Engine) -> None:
    client.organizations.create(name="Acme", slug="acme")
    before = row_counts(engine)
    with pytest.raises(flowscope.ConflictError, match="slug already exists"):
        client.organizations.create(name="Acme 2", slug="acme")
    for bad in (
        {"slug": "Not A Slug"},
        {"slug": ""},
        {"name": "n" * 256},
        {"settings": [1]},
        {"settings": {"x": float("inf")}},
    ):
        values = {"name": "n", "slug": "ok"} | bad
        with pytest.raises(flowscope.ValidationError):
            client.organizations.create(**values)
    assert row_counts(engine) == before


def test_purge_refused_while_rows_belong_to_it(client: flowscope.Client) -> None:
    acme = client.organizations.create(name="Acme", slug="acme")
    wf = make_workflow(client, organization_id=acme.id)
    with pytest.raises(flowscope.ConflictError, match="still referenced|foreign key"):
        client.organizations.purge(acme.id)
    assert client.organizations.get(acme.id).id == acme.id
    client.workflows.purge(wf.id)
    client.organizations.purge(acme.id)
    with pytest.raises(flowscope.NotFoundError):
        client.organizations.purge(acme.id)


def test_rows_need_an_existing_organization(client: flowscope.Client, engine: sa.Engine) -> None:
    before = row_counts(engine)
    with pytest.raises(flowscope.ConflictError, match="organization"):
        make_workflow(client, organization_id="org_missing")
    assert row_counts(engine) == before
