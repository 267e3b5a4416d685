"""The update loop's commands: ``persona update``, ``watch``, ``history``, ``migration``, ``report``."""

from __future__ import annotations

import re
from typing import Annotated, Any, Optional

import typer

from persona.commands.common import ConfigOpt, console, load, progress

_EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_every(text: str) -> float:
    """Seconds in ``30s``, ``15m``, ``1h``, ``1d`` (a bare number is seconds)."""
    m = _EVERY.match(text)
    if not m or float(m.group(1)) <= 0:
        raise typer.BadParameter(f"{text!r}: expected a positive duration such as 30s, 15m, 1h or 1d")
    return float(m.group(1)) * _UNIT[m.group(2)]


def echo_update(summary: Any) -> None:
    """The summary of one update, step by step."""
    for name, what in summary.steps.items():
        typer.echo(f"  {name:16s} {what}  [{summary.timings.get(name, 0):.1f}s]")
    for line in summary.lines():
        typer.echo(line)
    typer.echo(f"update done in {summary.seconds:.1f}s")


def update(config: ConfigOpt = None) -> None:
    """Process whatever arrived since the last run: ingest, features, drift, retrain if due, re-score personas."""
    from persona.update import UpdateBusy, run_update

    from base.writer_lock import WriterBusy

    s = load(config)
    try:
        with progress() as p:
            summary = run_update(s, p)
    except (UpdateBusy, WriterBusy) as e:
        typer.secho(str(e), fg="yellow", err=True)
        raise typer.Exit(75) from e  # EX_TEMPFAIL: try again later
    echo_update(summary)


def watch(config: ConfigOpt = None,
          every: Annotated[str, typer.Option(help="time between updates: 30s, 15m, 1h, 1d")] = "1h",
          times: Annotated[Optional[int], typer.Option(help="stop after this many updates (default: run until stopped)",
                                                       min=1)] = None) -> None:
    """Run the update on a schedule in the foreground; SIGTERM or Ctrl-C stops it cleanly (between steps)."""
    import os
    import signal
    import sys
    import time
    from datetime import datetime, timezone

    from base.writer_lock import WriterBusy
    from persona.update import UpdateBusy, run_update

    s = load(config)
    seconds = parse_every(every)
    stopping: list[int] = []  # a plain list: the handler must take no lock (threading.Event.set does, and
    # a signal arriving while the main thread holds that lock inside Event.wait deadlocks the process)

    def request_stop(signum: int, _frame: Any) -> None:
        stopping.append(signum)
        note = f"received {signal.Signals(signum).name}: stopping after the current step\n"
        os.write(sys.stderr.fileno(), note.encode())  # unbuffered: a handler may interrupt a buffered write

    def should_stop() -> bool:
        return bool(stopping)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    typer.echo(f"watching: an update every {every} (pid {os.getpid()}; SIGTERM stops)")
    runs = 0
    while not should_stop():
        started = datetime.now(timezone.utc)
        typer.echo(f"[{started:%Y-%m-%d %H:%M:%S} UTC] update #{runs + 1}")
        try:
            echo_update(run_update(s, should_stop=should_stop))
        except (UpdateBusy, WriterBusy) as e:
            typer.secho(f"  skipped: {e}", fg="yellow")
        except Exception as e:  # noqa: BLE001 - a failed run is reported; the next one retries (re-runnable)
            typer.secho(f"  update failed: {type(e).__name__}: {e} (the next run carries on)", fg="red", err=True)
        runs += 1
        if times is not None and runs >= times:
            break
        due = time.monotonic() + max(0.0, seconds - (datetime.now(timezone.utc) - started).total_seconds())
        while not should_stop() and time.monotonic() < due:
            time.sleep(max(0.0, min(0.2, due - time.monotonic())))  # the flag is looked at every 0.2 s
    typer.echo(f"watch stopped after {runs} update(s)")


def history(user_id: Annotated[str, typer.Argument(help="user id")], config: ConfigOpt = None) -> None:
    """One user's persona timeline: every recorded change with its time, scores and model versions."""
    from rich.table import Table

    from scoring.history import read_history

    rows = read_history(load(config), user_id)
    if rows.empty:
        typer.secho(f"no persona recorded for {user_id!r} (run `persona update` first)", fg="yellow", err=True)
        raise typer.Exit(1)
    table = Table(title=f"Persona history of {user_id}")
    for col in ("as of (features)", "segment", "spend", "churn risk", "models (spend/churn)", "source", "scored at"):
        table.add_column(col)
    previous = None
    for r in rows.itertuples(index=False):
        seg = r.segment if previous in (None, r.segment) else f"{previous} → {r.segment}"
        table.add_row(f"{r.feature_timestamp:%Y-%m-%d %H:%M}", seg, f"{r.predicted_spend:.2f}", f"{r.churn_risk:.3f}",
                      f"v{r.spend_version}/v{r.churn_version}", r.source, f"{r.scored_at:%Y-%m-%d %H:%M:%S}")
        previous = r.segment
    console().print(table)


def migration(config: ConfigOpt = None,
              start: Annotated[Optional[str], typer.Option("--from", help="date (YYYY-MM-DD[ HH:MM]); "
                                                                      "default: the second newest update")] = None,
              end: Annotated[Optional[str], typer.Option("--to", help="date; default: the newest update")] = None) -> None:
    """Matrix of segment moves between two dates (rows: segment at --from, columns: segment at --to)."""
    import pandas as pd
    from rich.table import Table

    from scoring.history import migration as moves
    from scoring.history import update_times

    s = load(config)
    times = update_times(s)
    try:
        t1 = pd.Timestamp(end, tz="UTC") if end else (times[-1] if times else None)
        t0 = pd.Timestamp(start, tz="UTC") if start else (times[-2] if len(times) > 1 else None)
    except ValueError as e:
        typer.secho(f"not a date: {e}", fg="red", err=True)
        raise typer.Exit(2) from e
    if t0 is None or t1 is None:
        typer.secho("need two dates (or two updates in the history): --from D1 --to D2", fg="yellow", err=True)
        raise typer.Exit(1)
    try:
        matrix = moves(s, t0, t1)
    except ValueError as e:
        typer.secho(str(e), fg="red", err=True)
        raise typer.Exit(2) from e
    if matrix.empty:
        typer.echo("no personas recorded by then")
        return
    table = Table(title=f"Segment moves {t0:%Y-%m-%d %H:%M} → {t1:%Y-%m-%d %H:%M} (users)")
    table.add_column("from \\ to")
    for col in matrix.columns:
        table.add_column(str(col), justify="right")
    for seg, row in matrix.iterrows():
        table.add_row(str(seg), *[str(int(v)) for v in row])
    console().print(table)
    same = sum(int(matrix.loc[k, k]) for k in matrix.index if k in matrix.columns)
    typer.echo(f"{int(matrix.to_numpy().sum())} users: {same} kept their segment, "
               f"{int(matrix.to_numpy().sum()) - same} moved or are new")


def report(config: ConfigOpt = None) -> None:
    """Write the self-contained HTML report (segments, migration, models, drift, data quality, changes)."""
    from persona.report import write_report

    path = write_report(load(config))
    typer.echo(f"report: {path}")


def register(app: typer.Typer) -> None:
    """Add these commands to the ``persona`` app."""
    app.command("update")(update)
    app.command("watch")(watch)
    app.command("history")(history)
    app.command("migration")(migration)
    app.command("report")(report)


def demo(settings: Any, url: str, user: str, days: int) -> list[str]:
    """The growing demo inside ``persona run``: replay ``days`` more days (drift on the second), update after
    each, and return the closing lines (personas moved, promotions and why, the report)."""
    from persona.demo import replay_and_update, wait_for_versions

    def show(label: str, summary: Any) -> None:
        typer.secho(f"\nupdate after {label}:", bold=True)
        echo_update(summary)

    typer.secho(f"\nreplaying {days} more day(s) of events (drift injected on day {min(2, days)}), "
                "`persona update` after each:", bold=True)
    with progress() as p:
        result = replay_and_update(settings, days=days, drift_on=min(2, days), on_update=show, progress=p)
    lines = [f"personas moved over {days} replayed day(s): {result.personas_moved} changed personas recorded "
             f"({result.segment_moves} segment changes)"]
    if result.promoted:
        lines.append(f"promoted by the gate: {', '.join(result.promoted)}")
        wait = 2 * settings.serving.model_poll_seconds + 5
        seen = wait_for_versions(url, user, result.champions, wait)
        lines.append(f"  the running service now answers with models {seen}")
    elif any(u.trained for _, u in result.updates):
        lines.append("no model promoted: the gate kept the champions")
    else:
        lines.append("no model trained: neither the schedule nor drift called for it")
    lines += [f"  {line}" for line in result.gate_lines()]
    lines.append(f"report: {result.report}")
    return lines
