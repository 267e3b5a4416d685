"""``persona quarantine list|show|release``: look at quarantined rows and re-admit a batch after a fix."""

from __future__ import annotations

from typing import Annotated

import typer

from persona.commands.common import ConfigOpt
from persona.commands.common import console as _console
from persona.commands.common import load as _settings
from persona.commands.common import writing

app = typer.Typer(help="Quarantined rows and batches: list, show, release.", no_args_is_help=True)


@app.command("list")
def list_batches(config: ConfigOpt = None) -> None:
    """Batches with quarantined rows or files quarantined whole, their most frequent checks, a reason, and
    whether they were released."""
    from rich.table import Table

    from base.pseudonym import mask_text
    from ingestion.release import quarantine_overview

    overview = quarantine_overview(_settings(config))
    if overview.empty:
        typer.echo("quarantine is empty")
        return
    table = Table(title="Quarantine")
    for col in ("batch", "file", "rows", "checks", "released by"):
        table.add_column(col, justify="right" if col == "rows" else "left")
    for row in overview.itertuples(index=False):
        table.add_row(row.batch_id, row.file, str(row.rows), row.checks, row.released_by or "-")
    _console().print(table)
    whole = overview.loc[overview["checks"] == "whole_file"]
    if len(whole):
        typer.echo("quarantined whole (no row could be read):")
        for row in whole.itertuples(index=False):
            typer.echo(f"  {row.batch_id}: {_short(mask_text(str(row.reason)))}")


def _short(text: str, width: int = 300) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _id_values(original: str, settings: object) -> list[str]:
    """Values of the identifier columns (user, anonymous and device ids of any channel) in an original row."""
    import json

    fields = {"user_id", "anonymous_id", "device_id"}
    columns = {src for ch in settings.channels.values() for f, src in ch.columns.items() if f in fields}  # type: ignore[attr-defined]
    try:
        row = json.loads(original)
    except json.JSONDecodeError:
        return []
    return [str(v) for k, v in row.items() if k in columns and v] if isinstance(row, dict) else []


@app.command()
def show(batch_id: Annotated[str, typer.Argument(help="batch id (see `persona quarantine list`)")],
         config: ConfigOpt = None,
         limit: Annotated[int, typer.Option(help="rows to show")] = 20,
         admin_key: Annotated[str, typer.Option(envvar="PERSONA_ADMIN_KEY",
                                                help="the service's API key: show identifiers and pseudonyms "
                                                     "unmasked")] = "") -> None:
    """The quarantined rows of one batch: file, row, failed check, reason and the original row
    (identifiers and pseudonyms masked unless the admin key is given)."""
    import hmac
    import os

    from base.paths import DataPaths
    from base.pseudonym import mask_text
    from ingestion.ledger import read_ledger
    from ingestion.release import whole_files
    from validation.quarantine import read_quarantine

    settings = _settings(config)
    expected = os.environ.get(settings.serving.api_key_env, "")
    if admin_key and not (expected and hmac.compare_digest(admin_key.encode(), expected.encode())):
        typer.secho(f"wrong admin key (it is the service's key, ${settings.serving.api_key_env})", fg="red", err=True)
        raise typer.Exit(1)
    reveal = bool(admin_key)
    records = read_quarantine(DataPaths(settings.data_dir).quarantine)
    rows = records.loc[records["batch_id"] == batch_id].sort_values("source_row")
    whole = [r for r in whole_files(read_ledger(DataPaths(settings.data_dir).ledger)) if r.batch_id == batch_id]
    if rows.empty and whole:
        typer.echo(f"{whole[-1].file} was quarantined whole (no row could be read): {mask_text(whole[-1].message)}")
        typer.echo(f"  after fixing the file or the limit: persona quarantine release {batch_id}")
        return
    if rows.empty:
        typer.secho(f"no quarantined rows for batch {batch_id!r}", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"{len(rows)} quarantined rows in {batch_id} ({rows['source_file'].iloc[0]}):")
    for r in rows.head(limit).itertuples(index=False):
        ids = [] if reveal else _id_values(r.original, settings)
        reason, original = (r.reason, r.original) if reveal else (mask_text(r.reason, ids), mask_text(r.original, ids))
        typer.echo(f"  {r.source_file}:{r.source_row}  [{r.check}]  {reason}")
        typer.echo(f"      original: {original[:300]}")
    if not reveal:
        typer.echo("  (identifiers masked; --admin-key shows them)")
    if len(rows) > limit:
        typer.echo(f"  ... {len(rows) - limit} more (--limit)")


@app.command()
def release(batch_id: Annotated[str, typer.Argument(help="batch id to re-admit")], config: ConfigOpt = None) -> None:
    """Re-run a quarantined batch through the current rules (recorded in the ledger; idempotent)."""
    from ingestion.release import ReleaseError, release_batch

    s = _settings(config)
    try:
        with writing(s, f"persona quarantine release {batch_id}"):
            record, ran = release_batch(s, batch_id)
    except ReleaseError as e:
        typer.secho(f"cannot release: {e}", fg="red", err=True)
        raise typer.Exit(1) from e
    verb = "released" if ran else "already released (no change)"
    typer.echo(f"{batch_id} {verb} as {record.batch_id}: {record.rows_read} rows read, {record.accepted} accepted, "
               f"{record.quarantined} quarantined, {record.duplicates} duplicates ({record.status})")
