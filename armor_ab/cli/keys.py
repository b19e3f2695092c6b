"""`armor-ab keys ...`: API keys, stored hashed; a new key's secret is printed once."""

from __future__ import annotations

from typing import Annotated

import typer

from armor_ab.cli._common import DbOption, fail, open_db
from armor_ab.store.keys import SCOPES, create_key, list_keys, revoke_key

group = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


@group.command("create")
def create(
    scope: Annotated[str, typer.Option("--scope", help="client | read | admin")],
    name: Annotated[str | None, typer.Option("--name", help="a label, e.g. the site or person")] = None,
    db: DbOption = None,
) -> None:
    """Create a key and print it (only this once; it is stored hashed)."""
    if scope not in SCOPES:
        fail(f"--scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    with open_db(db) as con:
        secret, key = create_key(con, scope, name)
    typer.echo(secret)
    typer.echo(f"created {key.scope} key {key.key_id}; store it now, it is not shown again", err=True)


@group.command("list")
def list_(db: DbOption = None) -> None:
    """Every key's public id, scope and state."""
    with open_db(db) as con:
        for k in list_keys(con):
            state = "revoked" if k.revoked_at else "active"
            typer.echo(f"{k.key_id}\t{k.scope}\t{state}\t{k.name or ''}")


@group.command("revoke")
def revoke(key_id: str, db: DbOption = None) -> None:
    """Revoke a key by its public id."""
    with open_db(db) as con:
        if not revoke_key(con, key_id):
            fail(f"no active key {key_id!r}")
    typer.echo(f"revoked {key_id}")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="keys")
