"""Drift: the population stability index (PSI) of every model feature and model output, between the
champion's training reference and the newest feature snapshot.

PSI = Σ (q_i − p_i) · ln(q_i / p_i) over bins i, where p are the reference shares and q the newest
window's shares. Bins are the reference's deciles (``update.drift.bins``; repeated edges of
zero-heavy features merge) plus one bin for missing values; empty bins count as a share of 1e-4.
Reading: < 0.1 stable, 0.1–0.25 a moderate shift (``warn``), ≥ 0.25 drift (``alert``).

The reference comes from the champion's MLflow run (``update.drift.reference``): by default the
population when its training data ends (the snapshot at its evaluation cutoff + the label horizon,
i.e. the newest day it was trained with), so the check answers "has the population moved since this
model was trained?"; ``training_cutoffs`` compares with the snapshots its features were taken from
(older by at least two label horizons, so seasonal movement shows up as drift too). The newest
window is the newest snapshot (every user's latest state). Each check is
logged to MLflow (experiment ``<experiment>-monitoring``) and kept as JSON under
``<data>/monitoring/drift/`` for the report; a check is done once per snapshot and champion pair.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from base.config import DriftConfig, MlflowSettings, Settings
from base.paths import DataPaths
from scoring.scorer import PersonaScorer
from training.targets import TARGETS

if TYPE_CHECKING:
    from training.champions import LoadedModel

EPS = 1e-4
OUTPUTS = tuple(t.key for t in TARGETS if t.segment_input)


@dataclass(frozen=True)
class DriftResult:
    """One drift check: PSI per feature and per model output, and what it means for retraining."""

    key: str
    window: str  # newest snapshot day
    reference: list[str]  # snapshot days of the reference (the champion's training cutoffs)
    champions: dict[str, str]
    features: dict[str, float]
    outputs: dict[str, float]
    warn: float
    alert: float
    drifted_features: list[str] = field(default_factory=list)
    drifted_outputs: list[str] = field(default_factory=list)
    retrain: bool = False
    reason: str = ""
    checked_at: str = ""
    mlflow_run_id: str = ""

    @property
    def drifted(self) -> bool:
        """Any feature or output at or above the alert threshold."""
        return bool(self.drifted_features or self.drifted_outputs)


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference`` (quantile bins + a missing bin)."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    if len(ref) == 0 or len(cur) == 0:
        return float("nan")
    ref_nan, cur_nan = np.isnan(ref), np.isnan(cur)
    r, c = ref[~ref_nan], cur[~cur_nan]
    edges = np.unique(np.quantile(r, np.linspace(0, 1, bins + 1)[1:-1])) if len(r) else np.array([])
    p = np.bincount(np.searchsorted(edges, r, side="right"), minlength=len(edges) + 1).astype(float)
    q = np.bincount(np.searchsorted(edges, c, side="right"), minlength=len(edges) + 1).astype(float)
    p = np.append(p, ref_nan.sum()) / len(ref)
    q = np.append(q, cur_nan.sum()) / len(cur)
    p, q = np.maximum(p, EPS), np.maximum(q, EPS)
    return float(np.sum((q - p) * np.log(q / p)))


def drift_dir(settings: Settings) -> Path:
    """Where drift checks are kept for the report."""
    return DataPaths(settings.data_dir).drift


def _partition(settings: Settings, day: str) -> Path:
    return DataPaths(settings.data_dir).behaviour_snapshots / f"date={day}"


def newest_snapshot_day(settings: Settings) -> str | None:
    """Day (``YYYY-MM-DD``) of the newest snapshot partition, or None before any build."""
    found = sorted(DataPaths(settings.data_dir).behaviour_snapshots.glob("date=*"))
    return found[-1].name[5:] if found else None


def reference_days(settings: Settings, ml: MlflowSettings, models: dict[str, "LoadedModel"]) -> list[str]:
    """Snapshot days of the reference: the day the champion's training data ends (``training_end``,
    its evaluation cutoff + the label horizon), or its training cutoffs (``training_cutoffs``)."""
    from training.champions import REQUIRED
    from training.registry import client

    tags = client(ml).get_run(models[REQUIRED[0]].ref.run_id).data.tags  # a run's targets share its cutoffs
    if settings.update.drift.reference == "training_cutoffs":
        days = [d for d in tags.get("persona.train_cutoffs", "").split(",") if d]
    else:
        cutoff = tags.get("persona.eval_cutoff")
        days = [f"{pd.Timestamp(cutoff) + pd.Timedelta(days=settings.training.horizon_days):%Y-%m-%d}"] if cutoff else []
    return [d for d in days if _partition(settings, d).exists()]


def _read_days(settings: Settings, days: list[str], columns: list[str], max_rows: int, seed: int) -> pd.DataFrame:
    """Every user's features as of each of ``days`` (sparse snapshots: each user's newest row up to the
    day, with the time features as of the day), the ``columns`` asked for."""
    from features.compute import newest_rows
    from scoring.batch import with_time_features

    root = DataPaths(settings.data_dir).behaviour_snapshots
    frames = []
    for d in days:
        at = pd.Timestamp(d, tz="UTC")
        rows = newest_rows(root, before=at + pd.Timedelta(days=1)).assign(event_timestamp=at)
        frames.append(with_time_features(rows, settings).loc[:, columns])
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return frame.sample(n=max_rows, random_state=seed) if len(frame) > max_rows else frame


def _outputs(scorer: PersonaScorer, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return scorer.predict(scorer.frame_matrix(frame), OUTPUTS)


def decide(features: dict[str, float], outputs: dict[str, float], cfg: DriftConfig) -> tuple[list[str], list[str], bool, str]:
    """Drifted features and outputs, whether that calls for a retrain, and why."""
    feats = sorted((k for k, v in features.items() if v >= cfg.alert), key=lambda k: -features[k])
    outs = sorted((k for k, v in outputs.items() if v >= cfg.alert), key=lambda k: -outputs[k])
    reasons = []
    if len(feats) >= cfg.retrain_features:
        reasons.append(f"{len(feats)} features drifted (PSI >= {cfg.alert}): "
                       + ", ".join(f"{k} {features[k]:.2f}" for k in feats[:5]))
    if cfg.retrain_on_outputs and outs:
        reasons.append("model output drifted: " + ", ".join(f"{k} {outputs[k]:.2f}" for k in outs))
    if not reasons:
        why = f"no drift: {len(feats)} feature(s) and {len(outs)} output(s) at or above PSI {cfg.alert}"
        top = max(features.items(), key=lambda kv: kv[1], default=None)
        return feats, outs, False, why + (f" (largest {top[0]} {top[1]:.2f})" if top else "")
    return feats, outs, True, "; ".join(reasons)


def check_drift(settings: Settings, ml: MlflowSettings, models: dict[str, "LoadedModel"],
                log: bool = True) -> DriftResult | None:
    """PSI of every model feature and output, champion's training cutoffs vs the newest snapshot.

    Returns the stored result when this snapshot and these champions were checked before;
    None when there is no snapshot or no reference to compare with.
    """
    window = newest_snapshot_day(settings)
    if window is None:
        return None
    champions = {k: models[k].ref.version for k in OUTPUTS}
    key = window + "".join(f"_{k}-v{v}" for k, v in champions.items())
    stored = load_result(drift_dir(settings) / f"drift_{key}.json")
    if stored is not None:
        return stored
    ref_days = reference_days(settings, ml, models)
    if not ref_days:
        return None
    cfg = settings.update.drift
    scorer = PersonaScorer(models, settings)
    names = [f for f in scorer.features if f not in cfg.ignore]
    columns = sorted(scorer.features)
    ref = _read_days(settings, ref_days, columns, cfg.max_rows, seed=1)
    cur = _read_days(settings, [window], columns, cfg.max_rows, seed=2)
    features = {f: round(psi(ref[f].to_numpy(dtype=float), cur[f].to_numpy(dtype=float), cfg.bins), 5) for f in names}
    ref_out, cur_out = _outputs(scorer, ref), _outputs(scorer, cur)
    outputs = {k: round(psi(ref_out[k], cur_out[k], cfg.bins), 5) for k in OUTPUTS}
    feats, outs, retrain, why = decide(features, outputs, cfg)
    result = DriftResult(key=key, window=window, reference=ref_days, champions=champions, features=features,
                         outputs=outputs, warn=cfg.warn, alert=cfg.alert, drifted_features=feats,
                         drifted_outputs=outs, retrain=retrain, reason=why,
                         checked_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if log:
        result = DriftResult(**{**asdict(result), "mlflow_run_id": log_to_mlflow(ml, result)})
    save_result(drift_dir(settings) / f"drift_{key}.json", result)
    return result


def log_to_mlflow(ml: MlflowSettings, result: DriftResult) -> str:
    """Log one check as an MLflow run (metrics ``psi.<feature>``, ``psi_output.<target>``); returns its id."""
    import mlflow

    from training.registry import client, use_tracking

    use_tracking(ml)
    name = f"{ml.experiment}-monitoring"
    c = client(ml)
    exp = c.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp else c.create_experiment(name, artifact_location=ml.artifact_location.rstrip("/") + "/monitoring")
    found = c.search_runs([exp_id], filter_string=f"tags.`persona.drift_key` = '{result.key}'", max_results=1)
    if found:  # a re-run after a crash between logging and saving
        return found[0].info.run_id
    with mlflow.start_run(experiment_id=exp_id, run_name=f"drift-{result.window}") as run:
        mlflow.log_metrics({**{f"psi.{k}": v for k, v in result.features.items() if np.isfinite(v)},
                            **{f"psi_output.{k}": v for k, v in result.outputs.items() if np.isfinite(v)},
                            "drifted_features": len(result.drifted_features),
                            "drifted_outputs": len(result.drifted_outputs)})
        mlflow.set_tags({"persona.drift_key": result.key, "persona.window": result.window,
                         "persona.reference": ",".join(result.reference),
                         "persona.retrain": str(result.retrain).lower(), "persona.reason": result.reason[:4000],
                         **{f"persona.champion.{k}": v for k, v in result.champions.items()}})
        mlflow.log_params({"warn": result.warn, "alert": result.alert})
    return run.info.run_id


def save_result(path: Path, result: DriftResult) -> None:
    """Write a check as JSON, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(asdict(result), indent=1))
    os.replace(tmp, path)


def load_result(path: Path) -> DriftResult | None:
    """A stored check, or None when missing or unreadable."""
    try:
        return DriftResult(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def drift_history(settings: Settings) -> list[DriftResult]:
    """Every stored check, oldest first (by when it ran)."""
    found = [load_result(p) for p in drift_dir(settings).glob("drift_*.json")]
    return sorted((r for r in found if r is not None), key=lambda r: (r.checked_at, r.window))


def as_dict(result: DriftResult) -> dict[str, Any]:
    """A check as a plain dict (JSON-ready)."""
    return asdict(result)
