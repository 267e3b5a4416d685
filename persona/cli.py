"""The ``persona`` command line: thin Typer commands over the pipeline functions.

Heavy libraries are imported inside the commands so ``persona --help`` stays fast.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from persona.commands.channels import app as channels_app
from persona.commands.common import ConfigOpt
from persona.commands.features import app as features_app
from persona.commands.models import app as models_app
from persona.commands.quarantine import app as quarantine_app
from persona.commands.keys import app as keys_app
from persona.commands.package import package
from persona.commands.forget import forget
from persona.commands.update import register as register_update_commands
from persona.commands.common import console as _console
from persona.commands.common import load as _settings
from persona.commands.common import progress as _progress
from persona.commands.common import writing
from persona.commands.common import stage_errors

app = typer.Typer(help="Persona: keep user personas current (collect → validate → features → models → serve).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(features_app, name="features")
app.add_typer(models_app, name="models")
app.add_typer(channels_app, name="channels")
app.add_typer(keys_app, name="keys")
app.command()(package)


def _echo_ingest(summary: Any) -> None:
    from rich.table import Table

    table = Table(title="Ingest: rows read = accepted + quarantined + duplicates")
    for col in ("file", "read", "accepted", "quarantined", "duplicates", "status"):
        table.add_column(col, justify="right" if col not in ("file", "status") else "left")
    for b in summary.batches:
        table.add_row(b.file, str(b.rows_read), str(b.accepted), str(b.quarantined), str(b.duplicates), b.status)
    _console().print(table)
    for message in summary.messages:
        typer.secho(f"  note: {message}", fg="yellow")
    typer.echo(f"{len(summary.batches)} new file(s): {summary.total('rows_read')} rows read, "
               f"{summary.total('accepted')} accepted, {summary.total('quarantined')} quarantined, "
               f"{summary.total('duplicates')} duplicates dropped")
    if summary.batches and summary.total("quarantined"):
        typer.echo("  look at quarantined rows: uv run persona quarantine list / show BATCH / release BATCH")
    if summary.data_docs:
        typer.echo(f"  data quality report (Great Expectations Data Docs): {summary.data_docs}")


@app.command("sample-data")
def sample_data(config: ConfigOpt = None,
                users: Annotated[Optional[int], typer.Option(help="number of users")] = None,
                days: Annotated[Optional[int], typer.Option(help="days of history")] = None,
                seed: Annotated[Optional[int], typer.Option(help="random seed")] = None) -> None:
    """Write a deterministic multi-channel sample history into the inbox (and the hidden ground truth)."""
    from base.paths import DataPaths
    from persona.sample_data import generate_sample_data

    s = _settings(config)
    summary = generate_sample_data(s, users=users, days=days, seed=seed)
    files = sum(len(v) for v in summary.files.values())
    typer.echo(f"wrote {summary.rows_written} rows ({summary.events} events, {summary.users} users, "
               f"{summary.days} days) in {files} files under {DataPaths(s.data_dir).raw}; ground truth: {summary.ground_truth}")


@app.command()
def ingest(config: ConfigOpt = None) -> None:
    """Ingest new files from the channel folders through the data-quality gate."""
    from persona.pipeline import ingest_inbox

    s = _settings(config)
    with writing(s, "persona ingest"), _progress() as p:
        summary = ingest_inbox(s, p)
    _echo_ingest(summary)


@app.command("build-features")
def build_features(config: ConfigOpt = None) -> None:
    """Compute daily user behaviour snapshots into the offline store."""
    from persona.pipeline import build_features as run

    s = _settings(config)
    with writing(s, "persona build-features"), stage_errors(), _progress() as p:
        fs = run(s, p)
    typer.echo(f"{fs.rows} snapshot rows for {fs.users} users, {fs.first} → {fs.last}")


@app.command()
def apply(config: ConfigOpt = None) -> None:
    """Register the feature repo's definitions with Feast (feast apply)."""
    from persona.pipeline import register_features

    s = _settings(config)
    with writing(s, "persona apply"):
        names = register_features(s)
    typer.echo(f"applied {len(names)} objects: {', '.join(names)}")


@app.command()
def materialize(config: ConfigOpt = None) -> None:
    """Load the newest feature snapshot of every user into the online store."""
    from persona.pipeline import materialize as run

    s = _settings(config)
    with writing(s, "persona materialize"), _progress() as p:
        n = run(s, progress=p)
    typer.echo(f"materialized {n} users")


@app.command()
def train(config: ConfigOpt = None) -> None:
    """Build the training set from Feast, train the models, register them in MLflow; the gate sets the aliases."""
    from persona.pipeline import train as run

    s = _settings(config)
    with writing(s, "persona train"), stage_errors(), _progress() as p:
        summary = run(s, progress=p)
    _echo_models(summary)


def _echo_models(summary: Any) -> None:
    split = summary.split
    if split is not None:
        typer.echo(f"evaluation cutoff {split.evaluation:%Y-%m-%d}; training cutoffs "
                   f"{', '.join(f'{c:%Y-%m-%d}' for c in split.train)}; labels from the "
                   f"{summary.horizon_days} days after each cutoff (training.horizon_days)")
    for key, reason in summary.skipped.items():
        typer.secho(f"{key}: not trained: {reason}", fg="yellow")
    for m in summary.models:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in m.metrics.items())
        typer.echo(f"{m.ref.name} v{m.ref.version} ({m.alias or 'registered'}): {metrics}  "
                   f"[{m.rows_train} train / {m.rows_eval} eval rows]")
        for reason in m.reasons:
            typer.secho(f"  {'note' if m.alias == 'champion' else 'gate refused'}: {reason}", fg="yellow")


def _echo_personas(personas: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="Personas returned by the live service")
    for col in ("user", "segment", "spend 30d", "churn risk", "top categories", "top spend driver", "cold start"):
        table.add_column(col)
    for p in personas:
        cats = ", ".join(c["category"] for c in p["top_categories"]) or "-"
        drivers = p["drivers"].get("spend") or []
        top = f"{drivers[0]['feature']} ({drivers[0]['contribution']:+.2f})" if drivers else "-"
        table.add_row(p["user_id"], p["segment"], f"{p['predicted_spend']:.2f}", f"{p['churn_risk']:.3f}", cats, top,
                      "yes" if p["cold_start"] else "no")
    _console().print(table)
    versions = personas[0]["model_versions"]
    typer.echo(f"models: persona-spend v{versions['spend']}, persona-churn v{versions['churn']} (champion)")


@app.command()
def serve(config: ConfigOpt = None, port: Annotated[Optional[int], typer.Option(help="port")] = None) -> None:
    """Run the Persona service in the foreground (bentoml serve)."""
    import os

    from serving.process import serve_command, service_env, PROJECT_ROOT

    s = _settings(config)
    cmd = serve_command(s.serving.host, port or s.serving.port)
    os.chdir(PROJECT_ROOT)
    os.execve(cmd[0], cmd, service_env(s))


@app.command()
def run(config: ConfigOpt = None,
        keep_serving: Annotated[bool, typer.Option("--keep-serving", help="leave the service running")] = False,
        users: Annotated[int, typer.Option(help="users to show", min=1)] = 3,
        replay_days: Annotated[int, typer.Option(help="days of new events replayed afterwards, "
                                                      "with `persona update` after each", min=0)] = 3) -> None:
    """The main job: sample data if none, every stage, a live service answering for a few users, then
    a few more days of events replayed through `persona update` and the report."""
    import json
    import os
    import secrets
    import time

    import httpx

    from persona.pipeline import run_all
    from serving.process import free_port, start_service

    s = _settings(config)
    started = time.perf_counter()
    demo_lines: list[str] = []
    with _progress() as p:
        with writing(s, "persona run"):
            summary = run_all(s, p)
        task = p.add_task("start service (bentoml serve)", total=1)
        api_key = os.environ.get(s.serving.api_key_env) or secrets.token_urlsafe(24)  # the demo's own key
        svc = start_service(s, port=free_port() if not keep_serving else None, env={s.serving.api_key_env: api_key})
        p.advance(task)
    if summary.ingest and summary.ingest.batches:
        _echo_ingest(summary.ingest)
    if summary.features:
        typer.echo(f"features: {summary.features.rows} snapshots for {summary.features.users} users")
    _echo_models(summary.train)
    try:
        import pandas as pd

        from base.paths import DataPaths

        ids = pd.read_parquet(DataPaths(s.data_dir).training_set, columns=["user_id"])["user_id"]
        known = sorted(ids.unique())
        sample = known[:: max(1, len(known) // users)][:users] + ["u-not-a-customer"]
        resp = httpx.post(f"{svc.url}/persona", json={"user_ids": sample}, timeout=30)
        resp.raise_for_status()
        typer.secho(f"\nPOST {svc.url}/persona {{\"user_ids\": {json.dumps(sample)}}} → {resp.status_code}", bold=True)
        _echo_personas(resp.json()["personas"])
        typer.echo("first record in full:")
        typer.echo(json.dumps(resp.json()["personas"][0], indent=2))
        if not s.sample.generate:  # real data: no demo purchase, no replayed sample days mixed into it
            replay_days = 0
        else:
            from persona.demo import realtime_event

            for line in realtime_event(svc.url, api_key, sample[0], resp.json()["personas"][0]):
                typer.echo(line)
        if replay_days:
            from persona.commands.update import demo

            demo_lines = demo(s, svc.url, sample[0], replay_days)
    finally:
        if not keep_serving:
            svc.stop()

    tracking = s.ml.tracking_uri
    typer.secho(f"\ndone in {time.perf_counter() - started:.1f}s (stages: {summary.timings})", bold=True)
    for line in demo_lines:
        typer.echo(line)
    typer.echo("where to look next:")
    typer.echo(f"  MLflow UI:      uv run mlflow ui --backend-store-uri {tracking}")
    typer.echo("  Feast UI:       cd feature_repo && uv run feast ui   (also feast plan, feast feature-views list)")
    typer.echo(f"  Data Docs:      {DataPaths(s.data_dir).gx / 'uncommitted' / 'data_docs' / 'local_site' / 'index.html'}")
    typer.echo("  the service:    uv run persona serve   (then POST /persona {\"user_ids\": [\"u000001\"]})")
    typer.echo(f"  the studio:     http://{s.serving.host}:{s.serving.port}/studio   (with persona serve; sign in "
               f"with the key in ${s.serving.api_key_env})")
    if keep_serving:
        from base.access_keys import write_secret
        from base.paths import DataPaths

        if os.environ.get(s.serving.api_key_env):
            shown = "from $" + s.serving.api_key_env
        else:  # a generated key goes to a file only this user can read, never to the console
            shown = f"in {write_secret(DataPaths(s.data_dir).demo_key, api_key)} (readable only by you)"
        typer.echo(f"serving at {svc.url} (Ctrl-C to stop); API key for /events: {shown}")
        typer.echo(f"studio at {svc.url}/studio (sign in with the same key)")
        try:
            svc.process.wait()
        except KeyboardInterrupt:
            svc.stop()


register_update_commands(app)  # update, watch, history, migration, report
app.command()(forget)  # persona forget USER_ID...


def main() -> None:
    """Entry point."""
    app()


if __name__ == "__main__":
    main()
