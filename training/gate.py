"""The promotion gate: compare champion and challenger on the same latest window, promote, roll back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from base.config import GateConfig, MlflowSettings
from training.registry import ModelRef, alias_version, client, describe, record_decision, set_alias, use_tracking
from training.champions import ServingCheck, servable_reasons
from training.evaluation import EVAL_ARTIFACT, EVAL_ROWS_TAG, evaluate, matrix
from training.targets import better, target


@dataclass(frozen=True)
class Comparison:
    """Champion and challenger scored on the challenger's evaluation window (same rows, same segments)."""

    target: str
    primary: str
    challenger: ModelRef
    champion: ModelRef | None
    metrics: dict[str, dict[str, float]]  # "challenger"/"champion" -> metric -> value
    segments: dict[str, dict[str, dict[str, float]]]  # "challenger"/"champion" -> segment -> metrics
    baselines: dict[str, float]  # baseline -> its primary metric (logged with the challenger)
    eval_cutoff: str = ""
    logged: dict[str, float] = field(default_factory=dict)  # every metric logged with the challenger's run
    challenger_model: Any = None  # the challenger's booster as loaded for the comparison


@dataclass(frozen=True)
class Decision:
    """What the gate decided and why."""

    target: str
    promoted: bool
    reasons: list[str] = field(default_factory=list)
    comparison: Comparison | None = None


class GateError(RuntimeError):
    """The registry is not in a state the command can act on (no challenger, nothing to roll back to)."""


def _run_metrics(ml: MlflowSettings, run_id: str) -> dict[str, float]:
    return dict(client(ml).get_run(run_id).data.metrics)


def baseline_scores(metrics: dict[str, float], primary: str) -> dict[str, float]:
    """``baseline -> primary metric`` from a run's logged metrics."""
    suffix = f".{primary}"
    return {k[len("baseline."):-len(suffix)]: v for k, v in metrics.items()
            if k.startswith("baseline.") and k.endswith(suffix)}


def baseline_reasons(score: float, baselines: dict[str, float], primary: str) -> list[str]:
    """One reason per baseline the model does not beat on the primary metric."""
    return [f"{primary} {score:.4g} does not beat baseline {name} ({value:.4g})"
            for name, value in sorted(baselines.items()) if better(primary, score, value) <= 0]


def baseline_shortfalls(model: dict[str, float], logged: dict[str, float], key: str, gate: GateConfig) -> list[str]:
    """Every way the model falls behind its baselines: the primary metric must beat each baseline, and each
    of the gate's ``baseline_metrics`` may trail a baseline by at most ``baseline_tolerance`` (relative)."""
    t = target(key)
    primary = t.primary(gate)
    reasons = baseline_reasons(model[primary], baseline_scores(logged, primary), primary)
    for metric in t.guarded(gate):
        if metric == primary or metric not in model:
            continue
        for name, value in sorted(baseline_scores(logged, metric).items()):
            gap = better(metric, model[metric], value)
            if gap < -gate.baseline_tolerance:
                reasons.append(f"{metric} {model[metric]:.4g} trails baseline {name} ({value:.4g}) by {-gap:.1%}, "
                               f"beyond the {gate.baseline_tolerance:.0%} tolerance")
    return reasons


def _load_eval_frame(ml: MlflowSettings, run_id: str) -> pd.DataFrame:
    """The run's evaluation rows: the data-directory file its tag names, else (older runs) its artifact."""
    import mlflow.artifacts

    kept = client(ml).get_run(run_id).data.tags.get(EVAL_ROWS_TAG)
    if kept:
        try:
            return pd.read_parquet(kept)
        except FileNotFoundError as e:
            raise GateError(f"run {run_id}: its evaluation rows {kept} are gone (retention or erasure); "
                            "train again to compare") from e
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=EVAL_ARTIFACT,
                                               tracking_uri=ml.tracking_uri)
    return pd.read_parquet(path)


def _score(ml: MlflowSettings, ref: ModelRef, key: str, frame: pd.DataFrame, min_rows: int) -> tuple[Any, Any]:
    """The version's evaluation on ``frame`` and its booster (its evaluated fit, loaded as the service loads it)."""
    import mlflow.lightgbm

    from training.refit import evaluated_uri

    t = target(key)
    use_tracking(ml)
    from training.stacking import from_run_params, predict_frame

    booster = mlflow.lightgbm.load_model(evaluated_uri(ml, ref))  # a refit has seen the window: never judged
    rows = t.rows(frame)
    stacking = from_run_params(client(ml).get_run(ref.run_id).data.params) or {}
    pred = predict_frame(key, booster, matrix(rows, list(booster.feature_name())), rows, stacking.get("offset"))
    return evaluate(t, pred, rows, {}, min_rows=min_rows), booster


def compare(ml: MlflowSettings, key: str, challenger: ModelRef | None = None,
            champion: ModelRef | None = None) -> Comparison:
    """Score champion and challenger on the challenger's evaluation window (rows and segments logged with it)."""
    challenger = challenger or alias_version(ml, key, ml.challenger_alias)
    if challenger is None:
        raise GateError(f"{ml.model_name(key)} has no '{ml.challenger_alias}' version to compare")
    champion = champion or alias_version(ml, key, ml.champion_alias)
    primary = target(key).primary(ml.gate)
    frame = _load_eval_frame(ml, challenger.run_id)
    scored, booster = {}, None
    for role, ref in (("challenger", challenger), ("champion", champion)):
        if ref is not None:
            scored[role], loaded = _score(ml, ref, key, frame, ml.gate.min_segment_rows)
            booster = booster or loaded
    run = client(ml).get_run(challenger.run_id)
    return Comparison(
        target=key, primary=primary, challenger=challenger, champion=champion,
        metrics={k: v.metrics for k, v in scored.items()},
        segments={k: v.segments for k, v in scored.items()},
        baselines=baseline_scores(dict(run.data.metrics), primary),
        eval_cutoff=run.data.tags.get("persona.eval_cutoff", ""),
        logged=dict(run.data.metrics),
        challenger_model=booster,
    )


def judge(c: Comparison, gate: GateConfig) -> list[str]:
    """Every reason the challenger may not replace the champion (empty: it may)."""
    p = c.primary
    new = c.metrics["challenger"][p]
    logged = c.logged or {f"baseline.{k}.{p}": v for k, v in c.baselines.items()}
    reasons = baseline_shortfalls(c.metrics["challenger"], logged, c.target, gate) if gate.must_beat_baselines else []
    if c.champion is None or c.champion.version == c.challenger.version:
        return reasons
    old = c.metrics["champion"][p]
    gain = better(p, new, old)
    if gain < gate.min_relative_improvement or (gate.min_relative_improvement == 0 and gain <= 0):
        need = f"at least {gate.min_relative_improvement:.2%}" if gate.min_relative_improvement else "any improvement"
        reasons.append(f"{p} {new:.4g} vs champion {old:.4g}: relative improvement {gain:+.2%}; the gate needs {need}")
    for seg, m in sorted(c.segments["challenger"].items()):
        base = c.segments["champion"].get(seg)
        if base is None:
            continue
        change = better(p, m[p], base[p])
        if change < -gate.segment_tolerance:
            reasons.append(f"segment {seg}: {p} {m[p]:.4g} vs champion {base[p]:.4g} ({change:+.2%}) "
                           f"regresses beyond the {gate.segment_tolerance:.0%} tolerance")
    return reasons


def promote(ml: MlflowSettings, key: str, check: ServingCheck | None = None) -> Decision:
    """Apply the gate to the challenger; move champion to it when it passes and the service could load it
    (``check``: the features served online and the categories). Records the decision either way."""
    c = compare(ml, key)
    reasons = judge(c, ml.gate) + [f"the service could not use it: {r}"
                                   for r in (check or ServingCheck()).reasons(key, c.challenger_model)]
    if reasons:
        record_decision(ml, c.challenger, "refused", "; ".join(reasons))
        return Decision(key, False, reasons, c)
    why = (f"gate passed on {c.eval_cutoff}: {c.primary} {c.metrics['challenger'][c.primary]:.4g}"
           + (f" vs champion v{c.champion.version} {c.metrics['champion'][c.primary]:.4g}" if c.champion else "")
           + "; beats baselines " + ", ".join(sorted(c.baselines)))
    if c.champion is not None:
        client(ml).set_model_version_tag(c.challenger.name, c.challenger.version, "previous_champion",
                                         c.champion.version)
    set_alias(ml, c.challenger, ml.champion_alias, why)
    client(ml).delete_registered_model_alias(c.challenger.name, ml.challenger_alias)
    record_decision(ml, c.challenger, "promoted", why)
    return Decision(key, True, [], c)


def rollback(ml: MlflowSettings, key: str, check: ServingCheck | None = None) -> tuple[ModelRef, ModelRef]:
    """Move champion back to the version it replaced; returns (from, to)."""
    current = alias_version(ml, key, ml.champion_alias)
    if current is None:
        raise GateError(f"{ml.model_name(key)} has no champion to roll back")
    c = client(ml)
    previous = c.get_model_version(current.name, current.version).tags.get("previous_champion")
    if not previous:
        raise GateError(f"{current.name} v{current.version} replaced no earlier champion: nothing to roll back to")
    mv = c.get_model_version(current.name, previous)
    to = ModelRef(current.name, str(mv.version), mv.run_id)
    unusable = servable_reasons(ml, to, key, check)
    if unusable:
        raise GateError(f"{to.name} v{to.version} cannot serve any more: {'; '.join(unusable)}")
    why = f"rollback from v{current.version}"
    set_alias(ml, to, ml.champion_alias, why)
    record_decision(ml, to, "rollback-restored", why)
    record_decision(ml, current, "rolled-back", f"champion moved back to v{to.version}")
    return current, to


def settle(ml: MlflowSettings, key: str, ref: ModelRef, check: ServingCheck | None = None) -> tuple[str, list[str]]:
    """Alias a newly registered version: champion when it is the first and beats its baselines,
    otherwise challenger, then the gate decides; a version the service could not load never becomes
    champion. Returns (alias it holds, reasons it was refused)."""
    describe(ml, ref, key)
    set_alias(ml, ref, ml.challenger_alias, "newly trained")
    if alias_version(ml, key, ml.champion_alias) is None:
        unusable = [f"the service could not use it: {r}" for r in servable_reasons(ml, ref, key, check)]
        if unusable:
            record_decision(ml, ref, "refused", "; ".join(unusable))
            return ml.challenger_alias, unusable
        metrics = _run_metrics(ml, ref.run_id)
        model = {k[len("eval_"):]: v for k, v in metrics.items() if k.startswith("eval_")}
        reasons = baseline_shortfalls(model, metrics, key, ml.gate) if ml.gate.must_beat_baselines else []
        if reasons and not ml.gate.bootstrap_champion:
            record_decision(ml, ref, "refused", "; ".join(reasons))
            return ml.challenger_alias, reasons
        why = "first version: nothing to compare with; " + (
            "beats its baselines" if not reasons else "bootstrap champion although " + "; ".join(reasons))
        client(ml).set_model_version_tag(ref.name, ref.version, "beats_baselines", str(not reasons).lower())
        set_alias(ml, ref, ml.champion_alias, why)
        client(ml).delete_registered_model_alias(ref.name, ml.challenger_alias)
        record_decision(ml, ref, "promoted", why)
        return ml.champion_alias, [f"bootstrap champion: {r}" for r in reasons]
    decision = promote(ml, key, check)
    return (ml.champion_alias if decision.promoted else ml.challenger_alias), decision.reasons
