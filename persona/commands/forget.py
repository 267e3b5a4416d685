"""``persona forget USER_ID...``: erase people from every store (see features/erasure.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from persona.commands.common import ConfigOpt
from persona.commands.common import load as _settings


def caller_name(env: str) -> str:
    """Who an erasure is recorded as: the configured environment variable, else the login name."""
    import getpass
    import os

    return os.environ.get(env) or getpass.getuser()


def forget(user_ids: Annotated[list[str], typer.Argument(help="user ids to erase (all their aliases go too)")],
           config: ConfigOpt = None) -> None:
    """Erase people everywhere, put them on the suppression list and record it in the audit log.
    Idempotent; after a crash, run it again to complete the erasure."""
    from features.erasure import forget as run

    settings = _settings(config)
    for erasure in run(settings, list(user_ids), caller_name(settings.privacy.audit_caller_env)):
        typer.echo(f"erasure {erasure.request}: {len(erasure.user_ids)} user(s), {len(erasure.identifiers)} "
                   f"identifier(s), {erasure.seconds:.2f} s")
        for store, n in sorted(erasure.counts.items()):
            typer.echo(f"  {store}: {n}")
        if not erasure.counts:
            typer.echo("  nothing left to erase (already forgotten)")
    typer.echo("recorded in the audit log (privacy/audit.jsonl); the service answers them as unknown")
