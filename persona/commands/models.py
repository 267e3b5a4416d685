"""``persona models``: the MLflow lifecycle (list, compare, promote, rollback) and the segment file check."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from persona.commands.common import ConfigOpt, console, load, serving_check

app = typer.Typer(help="Registered models: list, compare champion and challenger, promote through the gate, "
                       "roll back.", no_args_is_help=True)

TargetOpt = Annotated[Optional[str], typer.Option("--target", "-t", help="spend | churn | category (default: all)")]


def _ml(config: Any) -> tuple[Any, Any]:
    s = load(config)
    return s, s.ml


def _targets(ml: Any, target: Optional[str]) -> list[str]:
    from training.targets import target_keys

    if target is None:
        return target_keys()
    if target not in target_keys():
        typer.secho(f"unknown target {target!r}; known: {', '.join(target_keys())}", fg="red", err=True)
        raise typer.Exit(2)
    return [target]


@app.command("list")
def list_models(config: ConfigOpt = None, target: TargetOpt = None) -> None:
    """Every registered version with its aliases, primary metric and latest decision."""
    import json

    from rich.table import Table

    from training.registry import client, versions
    from training.targets import target as target_of

    _, ml = _ml(config)
    table = Table(title=f"Registered models ({ml.registry_uri})")
    for col in ("model", "version", "aliases", "primary metric", "eval cutoff", "last decision"):
        table.add_column(col)
    c = client(ml)
    for key in _targets(ml, target):
        primary = target_of(key).primary(ml.gate)
        found = versions(ml, key)
        held: dict[str, list[str]] = {}
        if found:
            for alias, version in c.get_registered_model(ml.model_name(key)).aliases.items():
                held.setdefault(str(version), []).append(alias)
        for mv in found:
            run = c.get_run(mv.run_id)
            value = run.data.metrics.get(f"eval_{primary}")
            last = mv.tags.get("last_decision")
            decision = json.loads(last) if last else {}
            table.add_row(mv.name, str(mv.version), ", ".join(sorted(held.get(str(mv.version), []))) or "-",
                          f"{primary}={value:.4g}" if value is not None else "-",
                          run.data.tags.get("persona.eval_cutoff", "-"),
                          f"{decision.get('action', '-')} by {decision.get('by', '?')}: {decision.get('why', '')}"[:80]
                          if decision else "-")
    console().print(table)


def _echo_comparison(c: Any, gate: Any) -> None:
    from rich.table import Table

    table = Table(title=f"{c.challenger.name} on the window of {c.eval_cutoff} "
                        f"(challenger v{c.challenger.version}"
                        + (f", champion v{c.champion.version})" if c.champion else ", no champion)"))
    table.add_column("metric")
    table.add_column("champion", justify="right")
    table.add_column("challenger", justify="right")
    for k, v in c.metrics["challenger"].items():
        old = c.metrics.get("champion", {}).get(k)
        mark = " *" if k == c.primary else ""
        table.add_row(k + mark, "-" if old is None else f"{old:.4g}", f"{v:.4g}")
    from training.gate import baseline_scores
    from training.targets import target as target_of

    for metric in [c.primary, *[m for m in target_of(c.target).guarded(gate) if m != c.primary]]:
        for name, value in sorted((baseline_scores(c.logged, metric) or (c.baselines if metric == c.primary else {})).items()):
            table.add_row(f"baseline {name} ({metric})", "", f"{value:.4g}")
    for seg, m in sorted(c.segments["challenger"].items()):
        old = c.segments.get("champion", {}).get(seg, {}).get(c.primary)
        table.add_row(f"segment {seg} ({c.primary}, {int(m['rows'])} rows)", "-" if old is None else f"{old:.4g}",
                      f"{m[c.primary]:.4g}")
    console().print(table)


@app.command("compare")
def compare(config: ConfigOpt = None, target: TargetOpt = None) -> None:
    """Champion and challenger side by side on the same latest window (and what the gate would say)."""
    from training.gate import GateError, compare as run, judge

    _, ml = _ml(config)
    for key in _targets(ml, target):
        try:
            c = run(ml, key)
        except GateError as e:
            typer.secho(str(e), fg="yellow")
            continue
        _echo_comparison(c, ml.gate)
        reasons = judge(c, ml.gate)
        typer.echo("gate: would promote" if not reasons else "gate: would refuse:\n  " + "\n  ".join(reasons))


@app.command("promote")
def promote(config: ConfigOpt = None, target: TargetOpt = None) -> None:
    """Promote the challenger to champion if it passes the gate in mlflow.yaml; refuse with the reasons."""
    from training.gate import GateError, promote as run

    s, ml = _ml(config)
    check = serving_check(s)
    refused = False
    for key in _targets(ml, target):
        try:
            d = run(ml, key, check)
        except GateError as e:
            typer.secho(str(e), fg="yellow")
            continue
        if d.promoted:
            typer.secho(f"{d.comparison.challenger.name} v{d.comparison.challenger.version} is now champion",
                        fg="green")
        else:
            refused = True
            typer.secho(f"{d.comparison.challenger.name} v{d.comparison.challenger.version} refused:", fg="red")
            for r in d.reasons:
                typer.echo(f"  - {r}")
    if refused:
        raise typer.Exit(1)


@app.command("rollback")
def rollback(config: ConfigOpt = None,
             target: Annotated[str, typer.Option("--target", "-t", help="spend | churn | category")] = "spend") -> None:
    """Move champion back to the version it replaced."""
    from training.gate import GateError, rollback as run

    s, ml = _ml(config)
    try:
        old, new = run(ml, _targets(ml, target)[0], serving_check(s))
    except GateError as e:
        typer.secho(str(e), fg="red", err=True)
        raise typer.Exit(1) from e
    typer.echo(f"{new.name}: champion moved from v{old.version} back to v{new.version}")


@app.command("segments")
def segments(config: ConfigOpt = None) -> None:
    """Validate the segment rules file (persona.yaml segments_file) and list the personas."""
    from features.store import feature_refs, open_store
    from base.config import ConfigError
    from base.segments import check_rules
    from training.targets import segment_inputs

    s = load(config)
    try:
        check_rules(s.segments, set(feature_refs(open_store(s))) | set(segment_inputs()))
    except ConfigError as e:
        typer.secho(f"{s.segments_file or s.config_path}: {e}", fg="red", err=True)
        raise typer.Exit(2) from e
    for r in s.segments:
        conds = " and ".join(f"{c.field} {c.op} {c.value:g}" for c in r.all) or "(everyone else)"
        typer.echo(f"{r.name:20s} {conds}")
