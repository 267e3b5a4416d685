"""``persona channels``: help with declaring the exports (channels) of persona.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from persona.commands.common import ConfigOpt

if TYPE_CHECKING:
    from base.config import Settings

app = typer.Typer(help="Channels: the exports persona.yaml reads.", no_args_is_help=True)


@app.command()
def suggest(file: Annotated[Path, typer.Argument(help="a sample export (CSV, JSON lines, Parquet; .gz too)",
                                                  exists=True, dir_okay=False)],
            config: ConfigOpt = None,
            name: Annotated[Optional[str], typer.Option(help="channel name (default: from the file name)")] = None,
            currency: Annotated[Optional[str], typer.Option(help="currency of the amounts when no column says")] = None,
            timezone: Annotated[str, typer.Option(help="zone of timestamps that carry no offset")] = "UTC") -> None:
    """Read a sample of FILE and print a channel block for persona.yaml (checked against the file)."""
    from base.config import ConfigError
    from ingestion.suggest import suggest_channel

    try:
        settings = _settings(config) if config or Path("persona.yaml").exists() or _env_config() else None
    except ConfigError as e:
        typer.secho(f"note: configuration not used ({e}); the sample is not mapped", fg="yellow", err=True)
        settings = None
    try:
        found = suggest_channel(file, name=name, settings=settings, currency=currency, timezone=timezone)
    except ValueError as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        raise typer.Exit(1) from e
    typer.echo(found.yaml(), nl=False)


def _settings(config: Optional[Path]) -> "Settings":
    """The settings to check the suggestion with; a configuration without channels yet is fine."""
    from base.config import load_settings, read_yaml, resolve_config_path

    raw = read_yaml(resolve_config_path(config))
    return load_settings(config) if raw.get("channels") else load_settings(config, channels={})


def _env_config() -> bool:
    import os

    from base.config import CONFIG_ENV

    return bool(os.environ.get(CONFIG_ENV))
