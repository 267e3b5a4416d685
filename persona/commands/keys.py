"""``persona keys add|rotate|revoke|list``: one access key per client, with scopes, stored hashed.

A new key is printed once (copy it then); the keys file keeps only its hash. A running service
picks up every change on its next request.
"""

from __future__ import annotations

from typing import Annotated

import typer

from persona.commands.common import ConfigOpt
from persona.commands.common import load as _settings

app = typer.Typer(help="Access keys of the service's clients: add, rotate, revoke, list.", no_args_is_help=True)
NameArg = Annotated[str, typer.Argument(help="client name (letters, digits, - _ .)")]


def _path(config: ConfigOpt):  # noqa: ANN202 - a Path
    from base.paths import DataPaths

    return DataPaths(_settings(config).data_dir).access_keys


def _fail(e: Exception) -> None:
    typer.secho(f"error: {e}", fg="red", err=True)
    raise typer.Exit(1) from e


def _show(name: str, key: str) -> None:
    typer.echo(f"key of {name} (shown once; only its hash is stored):")
    typer.echo(key)


@app.command()
def add(name: NameArg,
        scope: Annotated[list[str], typer.Option("--scope", "-s", help="events, persona, admin, viewer or editor "
                                                                      "(repeat for several)")],
        config: ConfigOpt = None) -> None:
    """Give a new client its own key with these scopes."""
    from base.access_keys import AccessKeyError, add_client

    try:
        _show(name, add_client(_path(config), name, scope))
    except AccessKeyError as e:
        _fail(e)


@app.command()
def rotate(name: NameArg, config: ConfigOpt = None) -> None:
    """Replace a client's key; the old key stops working at once (no restart)."""
    from base.access_keys import AccessKeyError, rotate_client

    try:
        _show(name, rotate_client(_path(config), name))
    except AccessKeyError as e:
        _fail(e)


@app.command()
def revoke(name: NameArg, config: ConfigOpt = None) -> None:
    """Remove a client's key."""
    from base.access_keys import AccessKeyError, revoke_client

    try:
        revoke_client(_path(config), name)
    except AccessKeyError as e:
        _fail(e)
    typer.echo(f"revoked the key of {name}")


@app.command("list")
def list_keys(config: ConfigOpt = None) -> None:
    """Clients with their scopes and dates (never their keys)."""
    from base.access_keys import AccessKeyError, list_clients

    try:
        clients = list_clients(_path(config))
    except AccessKeyError as e:
        _fail(e)
        return
    if not clients:
        typer.echo("no client keys yet: persona keys add NAME --scope events")
    for c in clients:
        typer.echo(f"{c.name}\t{','.join(c.scopes)}\tcreated {c.created}" + (f"\trotated {c.rotated}" if c.rotated else ""))
