"""Hyperparameter search with a time budget (Optuna's TPE), one nested MLflow run per trial.

Each target's trials fit on the older training cutoffs and are scored on the newest training cutoff with
the target's own LightGBM metric (early stopping picks the rounds), the same time split that chooses the
rounds in training/train.py, so the evaluation cutoff stays unseen. The best trial's parameters become
the target's ``training.target_params`` for this run; the model's run logs them as its parameters (they
are part of ``lgb_params``) and tags the search run it came from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from base.config import MlflowSettings, TrainingConfig
from training.evaluation import matrix
from training.targets import Target


def _space(trial: Any, target: Target) -> dict[str, float | int]:
    params: dict[str, float | int] = {
        "num_leaves": trial.suggest_int("num_leaves", 7, 63, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 10, 200, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
    }
    if target.objective["objective"] == "tweedie":
        params["tweedie_variance_power"] = trial.suggest_float("tweedie_variance_power", 1.1, 1.9)
    return params


def search(target: Target, train: pd.DataFrame, features: list[str], cfg: TrainingConfig, ml: MlflowSettings,
           base: dict[str, Any], seed: int = 7) -> tuple[dict[str, float | int], str, int]:
    """Best parameters found within ``cfg.search_seconds``, starting from ``base`` (the target's LightGBM
    parameters, tried first); returns (parameters, parent run id, trials)."""
    import lightgbm as lgb
    import mlflow
    import optuna

    from training.registry import ensure_experiment, use_tracking

    rows = target.rows(train)
    ts = pd.to_datetime(rows["event_timestamp"], utc=True)
    fit_rows, valid_rows = rows.loc[ts < ts.max()], rows.loc[ts == ts.max()]
    if fit_rows.empty or valid_rows.empty:
        return {}, "", 0
    data = lgb.Dataset(matrix(fit_rows, features), label=fit_rows[target.label].to_numpy(dtype="float64"),
                       feature_name=features, free_raw_data=False, params={"feature_pre_filter": False})
    valid = lgb.Dataset(matrix(valid_rows, features), label=valid_rows[target.label].to_numpy(dtype="float64"),
                        reference=data)
    metric = str(target.objective["metric"])
    use_tracking(ml)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial({k: base[k] for k in ("num_leaves", "min_data_in_leaf", "learning_rate",
                                              "feature_fraction") if k in base})

    def objective(trial: Any) -> float:
        params = {**base, **_space(trial, target)}
        evals: dict[str, Any] = {}
        booster = lgb.train(params, data, num_boost_round=cfg.num_boost_round, valid_sets=[valid],
                            valid_names=["newest"], callbacks=[lgb.early_stopping(cfg.early_stopping_rounds or 20,
                                                                                  verbose=False),
                                                               lgb.record_evaluation(evals)])
        rounds = int(booster.best_iteration or cfg.num_boost_round)
        value = float(evals["newest"][metric][rounds - 1])
        trial.set_user_attr("rounds", rounds)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"trial-{trial.number}", nested=True):
            mlflow.log_params({**trial.params, "rounds": rounds})
            mlflow.log_metric(f"newest_cutoff_{metric}", value)
        return value

    experiment_id = ensure_experiment(ml)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"search-{target.key}") as parent:
        started = time.perf_counter()
        while time.perf_counter() - started < cfg.search_seconds:
            study.optimize(objective, n_trials=1)
        best = {**_space(optuna.trial.FixedTrial(study.best_params), target)}
        mlflow.log_params({f"best_{k}": v for k, v in best.items()})
        mlflow.log_metrics({f"best_newest_cutoff_{metric}": float(study.best_value),
                            "trials": len(study.trials), "seconds": time.perf_counter() - started})
        mlflow.set_tags({"persona.target": target.key, "persona.search": "optuna-tpe"})
    return best, parent.info.run_id, len(study.trials)


def search_step(train: pd.DataFrame, features: list[str], cfg: TrainingConfig, ml: MlflowSettings,
                targets: Sequence[Target], params: Callable[[Target, TrainingConfig], dict[str, Any]],
                ) -> tuple[TrainingConfig, dict[str, Any]]:
    """With ``cfg.search_seconds``: the configuration with each target's best parameters, and what each
    target's model run records about its search (target key -> ``extra`` for ``log_extra``); ``params``
    gives a target's LightGBM parameters under a configuration (training.train.lgb_params)."""
    if cfg.search_seconds <= 0:
        return cfg, {}
    chosen = {k: dict(v) for k, v in cfg.target_params.items()}
    record: dict[str, Any] = {}
    for t in targets:
        best, run_id, trials = search(t, train, features, cfg, ml, params(t, cfg))
        if best:
            chosen[t.key] = {**chosen.get(t.key, {}), **best}
            record[t.key] = {"tags": {"persona.search_run": run_id, "persona.search_trials": str(trials)}}
    return cfg.model_copy(update={"target_params": chosen}), record
