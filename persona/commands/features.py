"""``persona features``: the data scientist's workflow over the Feast repo (plan, apply, list, describe)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from persona.commands.common import ConfigOpt, console, load, progress

app = typer.Typer(help="Feature views: plan, apply, list, describe, materialize.", no_args_is_help=True)


def _views(store: Any) -> list[Any]:
    return [*store.list_feature_views(), *store.list_on_demand_feature_views()]


@app.command("plan")
def plan(config: ConfigOpt = None) -> None:
    """Preview what `apply` would change in the registry (like `feast plan`)."""
    from features.store import open_store, plan_changes

    s = load(config)
    typer.echo(plan_changes(s, open_store(s)) or "no changes")


@app.command("apply")
def apply(config: ConfigOpt = None) -> None:
    """Register the definitions in feature_repo/ (like `feast apply`)."""
    from persona.pipeline import register_features

    names = register_features(load(config))
    typer.echo(f"applied {len(names)} objects: {', '.join(names)}")


@app.command("list")
def list_views(config: ConfigOpt = None) -> None:
    """Feature views with their entity, number of fields, source and freshness."""
    from rich.table import Table

    from features.store import open_store, view_freshness

    s = load(config)
    store = open_store(s)
    table = Table(title="Feature views")
    for col in ("name", "kind", "entities", "fields", "source", "online up to", "owner"):
        table.add_column(col)
    for fv in _views(store):
        info = view_freshness(store, fv)
        table.add_row(fv.name, info["kind"], ", ".join(info["entities"]), str(len(fv.features)), info["source"],
                      info["freshness"], fv.tags.get("owner", "-"))
    for svc in store.list_feature_services():
        n = sum(len(p.features) for p in svc.feature_view_projections)
        table.add_row(svc.name, "feature service", "-", str(n), "-", "-", svc.tags.get("owner", "-"))
    console().print(table)


@app.command("describe")
def describe(name: Annotated[str, typer.Argument(help="feature view or feature service name")],
             config: ConfigOpt = None) -> None:
    """Every field of one feature view (type, description) with its source and freshness."""
    from features.store import open_store, view_freshness

    s = load(config)
    store = open_store(s)
    views = {v.name: v for v in _views(store)}
    services = {v.name: v for v in store.list_feature_services()}
    if name in services:
        svc = services[name]
        typer.echo(f"feature service {name}: {svc.description}")
        for proj in svc.feature_view_projections:
            typer.echo(f"  {proj.name}: {', '.join(f.name for f in proj.features)}")
        return
    if name not in views:
        typer.secho(f"no feature view or service named {name!r}; known: {', '.join(sorted(views) + sorted(services))}",
                    fg="red", err=True)
        raise typer.Exit(1)
    fv = views[name]
    info = view_freshness(store, fv)
    typer.echo(f"{info['kind']} {fv.name}: {fv.description}")
    typer.echo(f"  entities: {', '.join(info['entities'])}   source: {info['source']}   online up to: {info['freshness']}")
    for f in fv.features:
        typer.echo(f"  {f.name:32s} {str(f.dtype).split('.')[-1]:10s} {f.description}")


@app.command("materialize-incremental")
def materialize_incremental(config: ConfigOpt = None) -> None:
    """Move only snapshots newer than the last materialization into the online store."""
    from persona.pipeline import materialize_incremental as run

    s = load(config)
    with progress() as p:
        n = run(s, progress=p)
    typer.echo(f"materialized up to {n}")
