"""Helpers shared by the CLI modules: settings loading with clear errors, progress, console."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Iterator, Optional

import typer

if TYPE_CHECKING:
    from persona.config import Settings

ConfigOpt = Annotated[
    Optional[Path], typer.Option("--config", "-c", help="persona.yaml (default: $PERSONA_CONFIG or ./persona.yaml)")
]


def load(config: Optional[Path]) -> "Settings":
    """Settings, or exit 2 with the configuration error (file and key named)."""
    from persona.config import ConfigError, load_settings

    try:
        return load_settings(config)
    except ConfigError as e:
        typer.secho(f"configuration error: {e}", fg="red", err=True)
        raise typer.Exit(2) from e


@contextmanager
def progress() -> Iterator[Any]:
    """A rich progress display for long jobs."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn()) as p:
        yield p


def console() -> Any:
    """A rich console; wide when output is not a terminal (logs, CI)."""
    from rich.console import Console

    c = Console()
    return c if c.is_terminal else Console(width=140)
