"""Helpers shared by the CLI modules: settings loading with clear errors, progress, console."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Iterator, Optional

import typer

if TYPE_CHECKING:
    from base.config import Settings

ConfigOpt = Annotated[
    Optional[Path], typer.Option("--config", "-c", help="persona.yaml (default: $PERSONA_CONFIG or ./persona.yaml)")
]


def load(config: Optional[Path]) -> "Settings":
    """Settings, or exit 2 with the configuration error (file and key named)."""
    from base.config import ConfigError, load_settings
    from training.targets import check_target_settings

    try:
        settings = load_settings(config)
        check_target_settings(settings)
        return settings
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


def serving_check(settings: "Settings") -> Any:
    """What the service offers a model (features served online, categories), for the gate's check."""
    from feast.errors import FeatureServiceNotFoundException

    from features.store import FEATURE_SERVICE, open_store
    from training.champions import ServingCheck, serving_check

    try:
        return serving_check(open_store(settings), settings.features.categories)
    except FeatureServiceNotFoundException as exc:  # nothing applied yet: the features cannot be checked
        typer.secho(f"note: cannot read the served features of {FEATURE_SERVICE} ({exc}); the gate checks only "
                    "that the model loads (run `persona apply` first)", fg="yellow", err=True)
        return ServingCheck(None, tuple(settings.features.categories))


@contextmanager
def writing(settings: "Settings", what: str) -> Iterator[None]:
    """Hold the data directory's writer lock for a command that writes the stores; when another writer
    keeps it past ``validation.lock_wait_seconds``, exit 75 (EX_TEMPFAIL) naming the holder."""
    from base.writer_lock import EXIT_BUSY, WriterBusy, writer_lock

    try:
        with writer_lock(settings.data_dir, what, wait=settings.validation.lock_wait_seconds):
            yield
    except WriterBusy as e:
        typer.secho(str(e), fg="yellow", err=True)
        raise typer.Exit(EXIT_BUSY) from e


@contextmanager
def stage_errors() -> Iterator[None]:
    """A stage that cannot start on the data it found (e.g. no clean events) exits 1 with the reason,
    not a traceback."""
    from ingestion.clean_state import NoCleanEvents

    try:
        yield
    except NoCleanEvents as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        raise typer.Exit(1) from e
