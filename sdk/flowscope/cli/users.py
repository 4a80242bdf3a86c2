"""``flowscope users``: user accounts (``client.users``)."""

from __future__ import annotations

from typing import Annotated

import typer

from ._app import command, connect, group

app = group("User accounts.")

Password = Annotated[
    str,
    typer.Option(
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        help="The password (prompted for, unless given).",
    ),
]


@command(app, "create")
def create(
    username: Annotated[str, typer.Argument(help="Unique user name.")],
    email: Annotated[str, typer.Option(help="Unique e-mail address.")],
    password: Password,
    full_name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    organization: Annotated[
        str | None, typer.Option("--organization", "-o", help="Organization id.")
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an administrator.")] = False,
) -> None:
    """Create a user account (the password is stored as an argon2id hash)."""
    with connect() as client:
        user = client.users.create(
            username=username,
            email=email,
            password=password,
            full_name=full_name,
            organization_id=organization,
            is_admin=admin,
        )
    typer.echo(f"created user {user.username} ({user.id})")


@command(app, "set-password")
def set_password(
    user: Annotated[str, typer.Argument(help="User name or id.")],
    password: Password,
) -> None:
    """Set a user's password (also unlocks the account)."""
    from ..errors import NotFoundError

    with connect() as client:
        try:
            found = client.users.get_by_username(user)
        except NotFoundError:
            found = client.users.get(user)
        client.users.set_password(found.id, password)
    typer.echo(f"password set for {found.username} ({found.id})")
