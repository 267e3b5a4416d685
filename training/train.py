"""One generic training path for every persona target: fit, evaluate against baselines, log, register, gate."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from base.config import MlflowSettings, SegmentRule, TrainingConfig
from base.progress import step
from training.labels import Split
from training.registry import ModelRef, ensure_experiment, use_tracking
from training.champions import ServingCheck
from training.evaluation import EVAL_ARTIFACT, EVAL_ROWS_TAG, Evaluation, eval_rows_path, evaluate, matrix
from training.targets import TARGETS, Target, segment_values


@dataclass(frozen=True)
class TrainedModel:
    """One trained and registered model with its evaluation and the gate's decision."""

    target: str
    ref: ModelRef
    metrics: dict[str, float]
    rows_train: int
    rows_eval: int
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    alias: str = ""  # champion | challenger
    reasons: tuple[str, ...] = ()


@dataclass
class TrainSummary:
    """What a training run produced."""

    models: list[TrainedModel] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    """Targets not trained, with the reason (switched off, or not trainable on this data)."""
    split: Split | None = None
    """The cutoffs the models were trained and evaluated at."""
    horizon_days: int = 0
    """Days after each cutoff the labels come from."""
    seconds_fit: float = 0.0
    seconds_log: float = 0.0


def canonical_order(dataset: pd.DataFrame) -> pd.DataFrame:
    """The training set's rows by cutoff, then user: LightGBM's bagging samples rows by position, so the
    same data in another row order (retrieval does not promise one) gives another fit."""
    return dataset.sort_values(["event_timestamp", "user_id"], kind="stable")


def split_frames(dataset: pd.DataFrame, split: Split) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows of the training cutoffs and of the evaluation cutoff (never mixed)."""
    ts = pd.to_datetime(dataset["event_timestamp"], utc=True)
    train = dataset.loc[ts.isin(pd.to_datetime(split.train, utc=True))]
    evaluation = dataset.loc[ts == pd.Timestamp(split.evaluation).tz_convert("UTC")]
    return train, evaluation


def lgb_params(target: Target, cfg: TrainingConfig, categories: Sequence[str] = ()) -> dict[str, Any]:
    """LightGBM parameters for a target (deterministic, quiet)."""
    return {
        **target.params(list(categories)),
        "learning_rate": cfg.learning_rate,
        "num_leaves": cfg.num_leaves,
        "min_data_in_leaf": cfg.min_data_in_leaf,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.9,
        "bagging_freq": 1,
        "seed": 7,
        "deterministic": True,
        "num_threads": cfg.num_threads,  # OpenMP spin-waits collapse on a shared 2-core machine (10x slower)
        "verbosity": -1,
        **cfg.target_params.get(target.key, {}),  # type: ignore[call-overload]
    }


def best_rounds(target: Target, train: pd.DataFrame, features: list[str], cfg: TrainingConfig,
                categories: Sequence[str] = ()) -> int:
    """Boosting rounds chosen by early stopping on the newest training cutoff (a time split inside the
    training cutoffs, so the evaluation cutoff stays unseen); ``num_boost_round`` when there is one cutoff."""
    import lightgbm as lgb

    from training.stacking import frame_offset

    rows = target.rows(train)
    ts = pd.to_datetime(rows["event_timestamp"], utc=True)
    last = ts.max()
    fit_rows, valid_rows = rows.loc[ts < last], rows.loc[ts == last]
    if fit_rows.empty or valid_rows.empty:
        return cfg.num_boost_round
    params = lgb_params(target, cfg, categories)
    start = cfg.stacking and cfg.btyd_offset
    data = lgb.Dataset(matrix(fit_rows, features), label=fit_rows[target.label].to_numpy(dtype="float64"),
                       feature_name=features, init_score=frame_offset(target.key, fit_rows, start))
    valid = lgb.Dataset(matrix(valid_rows, features), label=valid_rows[target.label].to_numpy(dtype="float64"),
                        reference=data, init_score=frame_offset(target.key, valid_rows, start))
    booster = lgb.train(params, data, num_boost_round=cfg.num_boost_round, valid_sets=[valid],
                        callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)])
    return max(1, int(booster.best_iteration or cfg.num_boost_round))


def fit(target: Target, train: pd.DataFrame, features: list[str], cfg: TrainingConfig,
        categories: Sequence[str] = (), rounds: int | None = None) -> Any:
    """Fit a LightGBM booster on the target's training rows (rounds: early-stopped unless given)."""
    import lightgbm as lgb

    rounds = rounds or (best_rounds(target, train, features, cfg, categories) if cfg.early_stopping_rounds
                        else cfg.num_boost_round)
    from training.stacking import frame_offset

    rows = target.rows(train)
    data = lgb.Dataset(matrix(rows, features), label=rows[target.label].to_numpy(dtype="float64"),
                       feature_name=features, free_raw_data=True,
                       init_score=frame_offset(target.key, rows, cfg.stacking and cfg.btyd_offset))
    return lgb.train(lgb_params(target, cfg, categories), data, num_boost_round=rounds)


def with_history(dataset: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """The training set with the baselines' pre-cutoff history columns (never used as features)."""
    left = dataset.assign(event_timestamp=pd.to_datetime(dataset["event_timestamp"], utc=True).astype("datetime64[ns, UTC]"))
    right = history.assign(event_timestamp=pd.to_datetime(history["event_timestamp"], utc=True).astype("datetime64[ns, UTC]"))
    return left.merge(right, on=["user_id", "event_timestamp"], how="left", validate="one_to_one")


def assign_eval_segments(rules: Sequence[SegmentRule], evaluation: pd.DataFrame, features: list[str],
                         predictions: dict[str, np.ndarray]) -> np.ndarray:
    """Segment of every evaluation row from its features and the new models' predictions (target key →
    raw output; the targets that are segment inputs appear under their record field)."""
    from base.segments import assign_segments

    values = {f: evaluation[f].to_numpy(dtype=float) for f in features}
    finished = {t.key: t.finish(predictions[t.key]) for t in TARGETS if t.key in predictions}
    return assign_segments(rules, values | segment_values(finished), len(evaluation))


def model_requirements() -> list[str]:
    """Pinned runtime requirements of a logged model (the versions in this environment)."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("lightgbm", "numpy", "pandas", "scikit-learn")]


def _finite(values: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if np.isfinite(v)}


def log_model(target: Target, booster: Any, ev: Evaluation, pred: np.ndarray, train: pd.DataFrame,
              evaluation: pd.DataFrame, features: list[str], split: Split, cfg: TrainingConfig,
              ml: MlflowSettings, lineage: dict[str, str], categories: Sequence[str] = (),
              served: Any | None = None, extra: dict[str, Any] | None = None) -> ModelRef:
    """Log params, metrics (model, baselines, segments), figures, drivers, lineage and the model; register it.
    ``served``: the refit on the newest data (training/refit.py), registered instead of ``booster``, which
    is then kept as the run's evaluated model; ``extra``: more params/metrics/tags/dicts/figures to log."""
    import tempfile
    from pathlib import Path

    import mlflow
    import mlflow.lightgbm
    from mlflow.models import infer_signature

    from training.explain import driver_summary
    from training.plots import calibration_figure, close_figure, importance_figure, lift_figure

    use_tracking(ml)
    experiment_id = ensure_experiment(ml)
    rows = target.rows(evaluation)
    example = evaluation[features].head(5).astype("float64")
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{target.key}-{split.evaluation:%Y%m%d}") as run:
        mlflow.log_params({**lgb_params(target, cfg, categories), "num_boost_round": booster.num_trees() // max(1, int(booster.params.get("num_class", 1))),
                           "max_boost_round": cfg.num_boost_round, "early_stopping_rounds": cfg.early_stopping_rounds,
                           "horizon_days": cfg.horizon_days, "n_features": len(features),
                           "train_cutoffs": len(split.train), "cutoff_step_days": cfg.cutoff_step_days})
        metrics = {f"eval_{k}": v for k, v in ev.metrics.items()}
        metrics.update({f"baseline.{b}.{k}": v for b, m in ev.baselines.items() for k, v in m.items()})
        metrics.update({f"segment.{s}.{k}": v for s, m in ev.segments.items() for k, v in m.items()})
        metrics.update(prior_prediction=float(target.rows(train)[target.label].mean()),
                       rows_train=len(target.rows(train)), rows_eval=len(rows))
        mlflow.log_metrics(_finite(metrics))
        mlflow.set_tags({
            "persona.target": target.key,
            "persona.feature_service": lineage.get("feature_service", "persona_v2"),
            "persona.features": ",".join(features),
            "persona.train_cutoffs": ",".join(f"{c:%Y-%m-%d}" for c in split.train),
            "persona.eval_cutoff": f"{split.evaluation:%Y-%m-%d}",
            "persona.training_window": f"{min(split.train):%Y-%m-%d}..{split.evaluation:%Y-%m-%d}",
            "persona.horizon_days": str(cfg.horizon_days),
            "persona.categories": ",".join(categories),
            **{f"persona.{k}": v for k, v in lineage.items()},
        })
        x = matrix(rows, features)
        y = rows[target.label].to_numpy(dtype=float)
        figures = {"plots/feature_importance.png": importance_figure(booster)}
        if pred.ndim == 1:
            figures["plots/lift.png"] = lift_figure(y, pred)
        if target.objective["objective"] == "binary":
            from training.calibration import reliability

            figures["plots/calibration.png"] = calibration_figure(y, pred)
            mlflow.log_dict(reliability(y, np.asarray(pred, dtype=float)), "calibration/reliability_curve.json")
        for path, fig in figures.items():
            mlflow.log_figure(fig, path)
            close_figure(fig)
        mlflow.log_dict(driver_summary(booster, x, features), "explanations/top_drivers.json")  # aggregates only
        keep = ["user_id", "event_timestamp", *[c for c in evaluation if c.startswith("label_")], "segment", *features]
        eval_rows = evaluation[[c for c in keep if c in evaluation]]
        if lineage.get("data_dir"):  # per-user rows stay in the data directory, where erasure reaches them
            path = eval_rows_path(Path(lineage["data_dir"]), run.info.run_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            eval_rows.to_parquet(path, index=False)
            mlflow.set_tag(EVAL_ROWS_TAG, str(path))
        else:  # no data directory named: rows without user ids or times (no per-user identifier in MLflow)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / Path(EVAL_ARTIFACT).name
                eval_rows.drop(columns=["user_id", "event_timestamp"], errors="ignore").to_parquet(path, index=False)
                mlflow.log_artifact(str(path), artifact_path=str(Path(EVAL_ARTIFACT).parent))
        from training.refit import EVALUATED_MODEL, SERVES_TAG

        mlflow.set_tag(SERVES_TAG, "refit" if served is not None else "evaluated")
        if served is not None:
            mlflow.lightgbm.log_model(booster, name=EVALUATED_MODEL, pip_requirements=model_requirements())
        log_extra(extra or {})
        info = mlflow.lightgbm.log_model(  # no input example: it would be per-user feature rows
            served if served is not None else booster, name="model", registered_model_name=ml.model_name(target.key),
            signature=infer_signature(example, booster.predict(example.to_numpy())),
            pip_requirements=model_requirements(),  # explicit: skips slow environment inference
        )
    version = str(info.registered_model_version)
    return ModelRef(name=ml.model_name(target.key), version=version, run_id=run.info.run_id)


def fit_workers(cfg: TrainingConfig, jobs: int) -> int:
    """Threads that fit at once: ``cfg.fit_workers``, or one per core (0), never more than ``jobs``."""
    import os

    return max(1, min(jobs, cfg.fit_workers or os.cpu_count() or 1))


def in_threads(jobs: dict[str, Callable[[], Any]], workers: int) -> dict[str, Any]:
    """Run independent jobs (key → callable) on ``workers`` threads, in the order given; results by key.
    LightGBM releases the GIL while it builds datasets, boosts and predicts, so on 2 cores two jobs
    take the time of about one; one worker runs them in this thread."""
    if workers <= 1 or len(jobs) <= 1:
        return {k: job() for k, job in jobs.items()}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="persona-fit") as pool:
        futures = {k: pool.submit(job) for k, job in jobs.items()}
        return {k: f.result() for k, f in futures.items()}


def costliest_first(targets: Sequence[Target], categories: Sequence[str] = ()) -> list[Target]:
    """Targets by the trees a round grows (multi-class: one per class), the most first, so that the longest
    job starts first when fits share the cores (stable: the given order otherwise)."""
    return sorted(targets, key=lambda t: -int(t.params(list(categories)).get("num_class", 1) or 1))


def fit_all(targets: Sequence[Target], train: pd.DataFrame, dataset: pd.DataFrame, split: Split,
            features: list[str], cfg: TrainingConfig, categories: Sequence[str] = (),
            refit_rows: pd.DataFrame | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The evaluated fit of every target and, with ``cfg.refit_on_newest``, its served refit (same
    parameters and rounds, every labelled cutoff: :func:`refit_all`). Each target's pair is one job and
    the jobs run :func:`fit_workers` at a time in threads, the costliest first; every fit uses
    ``num_threads`` LightGBM threads and its own data, so the models are the same bit for bit whatever
    the number of workers (tests/model/test_parallel_fits.py). ``refit_rows``: the refit's rows
    (:func:`training.refit.refit_frame`) when the caller has them. Returns (boosters, refits) by target key."""
    from training.refit import refit_frame

    rows = refit_rows
    if rows is None and cfg.refit_on_newest:
        rows = refit_frame(dataset, split, cfg.sample_share)

    def job(t: Target) -> Callable[[], tuple[Any, Any]]:
        def run() -> tuple[Any, Any]:
            booster = fit(t, train, features, cfg, categories)
            return booster, refit(t, booster, rows, features, cfg, categories) if rows is not None else None
        return run

    ordered = costliest_first(targets, categories)
    done = in_threads({t.key: job(t) for t in ordered}, fit_workers(cfg, len(ordered)))
    boosters = {t.key: done[t.key][0] for t in targets}
    refits = {t.key: done[t.key][1] for t in targets if done[t.key][1] is not None}
    return boosters, refits


def predict_all(boosters: dict[str, Any], order: Sequence[Target], x: np.ndarray, frame: pd.DataFrame,
                offset: bool | float | None, workers: int,
                rows: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Every booster's predictions for ``frame`` (matrix ``x``; :func:`training.stacking.predict_frame`),
    each target's rows in ``workers`` chunks run on ``workers`` threads, the targets in ``order``: the
    same values row for row (a row's prediction depends on that row alone). ``rows``: the positions to
    predict per target key (every row when a key is missing). Returns them by key in the order of
    ``boosters``."""
    from training.stacking import predict_frame

    every = np.arange(len(frame))
    chunks = {k: np.array_split(wanted, max(1, min(workers, len(wanted))))
              for k in boosters for wanted in [(rows or {}).get(k, every)]}
    jobs = {(t.key, i): (lambda k=t.key, at=at: predict_frame(k, boosters[k], x[at], frame.iloc[at], offset))
            for t in order if t.key in boosters for i, at in enumerate(chunks[t.key])}
    done = in_threads(jobs, workers)
    return {k: np.concatenate([done[(k, i)] for i in range(len(chunks[k]))]) for k in boosters}


def evaluated_rows(targets: Sequence[Target], evaluation: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per target key, the evaluation rows its model must predict: those it is evaluated on, and every row
    when segment rules may read its prediction (a category model on every user cost four times the spend
    and churn models together at 1M users, for rows nothing reads)."""
    every = np.arange(len(evaluation))
    return {t.key: every if t.segment_input else np.flatnonzero(t.evaluated(evaluation)) for t in targets}


def refit_all(boosters: dict[str, Any], dataset: pd.DataFrame, split: Split, features: list[str],
              cfg: TrainingConfig, categories: Sequence[str] = ()) -> dict[str, Any]:
    """The served refits (training/refit.py): same parameters and rounds, every labelled cutoff."""
    from training.refit import refit_frame

    if not cfg.refit_on_newest:
        return {}
    rows = refit_frame(dataset, split, cfg.sample_share)
    return {t.key: refit(t, boosters[t.key], rows, features, cfg, categories) for t in TARGETS if t.key in boosters}


def refit(t: Target, booster: Any, rows: pd.DataFrame, features: list[str], cfg: TrainingConfig,
          categories: Sequence[str] = ()) -> Any:
    """The served refit of ``booster``: same parameters and rounds, on ``rows`` (every labelled cutoff)."""
    from training.refit import rounds_of

    return fit(t, rows, features, cfg, categories, rounds=rounds_of(booster))


def refit_record(refit_rows: pd.DataFrame, split: Split, t: Target) -> dict[str, Any]:
    """What the run records about the refit (on ``refit_rows``: :func:`training.refit.refit_frame`) beside
    the evaluated fit."""
    cutoffs = sorted({*split.train, *split.refit, split.evaluation})
    return {"metrics": {"rows_refit": len(t.rows(refit_rows))},
            "tags": {"persona.refit_cutoffs": ",".join(f"{c:%Y-%m-%d}" for c in cutoffs),
                     "persona.refit_newest_label_cutoff": f"{split.evaluation:%Y-%m-%d}"}}


def stacking_step(dataset: pd.DataFrame, features: list[str],
                  cfg: TrainingConfig) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
    """With ``cfg.stacking``: BTYD predictions per cutoff as features (training/stacking.py), and what to log."""
    if not cfg.stacking:
        return dataset, features, {}
    from training.stacking import STACK_FEATURES, run_params, stack

    stacked, params = stack(dataset, cfg.horizon_days)
    newest = params[max(params)]  # the evaluation cutoff's fit: what the scorer uses for every later score
    logged = {**run_params(newest, cfg.horizon_days), **({"stacking.offset": "1"} if cfg.btyd_offset else {})}
    return stacked, [*features, *STACK_FEATURES], {"dicts": {"stacking/btyd_params_per_cutoff.json": params},
                                                   "params": logged,
                                                   "tags": {"persona.stacking": "bgnbd+gamma_gamma",
                                                            "persona.stacking_cutoff": max(params)}}


def calibration_step(boosters: dict[str, Any], refits: dict[str, Any], train: pd.DataFrame, features: list[str],
                     cfg: TrainingConfig, categories: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """With ``cfg.calibrate``: calibrate each evaluated fit and its refit in place (training/calibration.py);
    returns what to log per target."""
    if not cfg.calibrate:
        return {}
    from training.calibration import apply_calibration, fit_calibration

    out: dict[str, dict[str, Any]] = {}
    for t in (t for t in TARGETS if t.key in boosters):
        found = fit_calibration(t, boosters[t.key], train, features, cfg, fit=fit, categories=categories)
        if found is None:
            continue
        boosters[t.key] = apply_calibration(boosters[t.key], *found)
        if t.key in refits:
            refits[t.key] = apply_calibration(refits[t.key], *found)
        out[t.key] = {"params": {"calibration_scale": found[0], "calibration_shift": found[1]}}
    return out


def merge_extra(*parts: dict[str, Any]) -> dict[str, Any]:
    """One ``extra`` for :func:`log_extra` from several (their sections merged)."""
    out: dict[str, Any] = {}
    for part in parts:
        for section, values in part.items():
            out.setdefault(section, {}).update(values)
    return out


def log_extra(extra: dict[str, Any]) -> None:
    """Log ``{"params", "metrics", "tags": {...}, "dicts": {path: obj}, "figures": {path: fig}}`` to the active run."""
    import mlflow

    from training.plots import close_figure

    if extra.get("params"):
        mlflow.log_params(extra["params"])
    if extra.get("metrics"):
        mlflow.log_metrics(_finite(extra["metrics"]))
    if extra.get("tags"):
        mlflow.set_tags(extra["tags"])
    for path, obj in extra.get("dicts", {}).items():
        mlflow.log_dict(obj, path)
    for path, fig in extra.get("figures", {}).items():
        mlflow.log_figure(fig, path)
        close_figure(fig)


def train_all(dataset: pd.DataFrame, features: list[str], split: Split, cfg: TrainingConfig,
              ml: MlflowSettings, *, rules: Sequence[SegmentRule] = (), categories: Sequence[str] = (),
              lineage: dict[str, str] | None = None, gate: bool = True,
              check: ServingCheck | None = None, progress: Any | None = None) -> TrainSummary:
    """Train every target on the training cutoffs, evaluate on the latest cutoff beside the baselines,
    log and register each; with ``gate`` the first version becomes champion (if it beats its baselines)
    and later ones challenger, promoted only by the gate in ``mlflow.yaml`` and only when the service
    could load it (``check``).

    ``dataset`` must carry the ``hist_*`` columns of :func:`training.baselines.history_summary`.
    """
    import time

    from training.gate import settle
    from training.target_choice import choose_targets

    dataset, features, stacked = stacking_step(canonical_order(dataset), list(features), cfg)
    train, evaluation = split_frames(dataset, split)
    if train.empty or evaluation.empty:
        raise ValueError(f"empty split: {len(train)} training rows, {len(evaluation)} evaluation rows")
    categories = list(categories)
    targets, skipped = choose_targets(cfg, train, evaluation, categories)  # before any time is spent
    summary = TrainSummary(skipped=skipped, split=split, horizon_days=cfg.horizon_days)
    from training.refit import refit_frame
    from training.search import search_step

    cfg, searched = search_step(train, features, cfg, ml, targets,
                                lambda t, c: lgb_params(t, c, categories))
    with step(progress, "train + register models", total=2 * len(targets)) as advance:
        t0 = time.perf_counter()
        refit_rows = refit_frame(dataset, split, cfg.sample_share) if cfg.refit_on_newest else None
        boosters, refits = fit_all(targets, train, dataset, split, features, cfg, categories, refit_rows)
        calibrated = calibration_step(boosters, refits, train, features, cfg, categories)
        summary.seconds_fit = time.perf_counter() - t0
        advance(len(targets))
        x_eval = matrix(evaluation, features)
        wanted = evaluated_rows(targets, evaluation)
        full = predict_all(boosters, costliest_first(targets, categories), x_eval, evaluation,
                           cfg.stacking and cfg.btyd_offset, fit_workers(cfg, 2 * len(targets)), wanted)
        inputs = {k: v for k, v in full.items() if len(wanted[k]) == len(evaluation)}  # what segments may read
        evaluation = evaluation.assign(segment=assign_eval_segments(rules, evaluation, features, inputs)
                                       if rules else "all")
        t0 = time.perf_counter()
        for t in targets:
            mask = t.evaluated(evaluation)
            rows, pred = evaluation.loc[mask], full[t.key][mask[wanted[t.key]]]
            ev = evaluate(t, pred, rows, t.baselines(train, rows, cfg.horizon_days, categories),
                          min_rows=ml.gate.min_segment_rows)
            ref = log_model(t, boosters[t.key], ev, pred, train, evaluation, features, split, cfg, ml,
                            lineage or {}, categories, served=refits.get(t.key),
                            extra=merge_extra(refit_record(refit_rows, split, t) if refit_rows is not None and t.key in refits else {},
                                              calibrated.get(t.key, {}), stacked, searched.get(t.key, {})))
            alias, reasons = settle(ml, t.key, ref, check) if gate else ("", ())
            summary.models.append(TrainedModel(t.key, ref, ev.metrics, len(t.rows(train)), len(rows),
                                               ev.baselines, alias, tuple(reasons)))
            advance(1)
        summary.seconds_log = time.perf_counter() - t0
    return summary
