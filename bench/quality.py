"""Do the models beat the classic customer-base models? ``python -m bench quality [users] [btyd_days]``.

One run, on generated data in temporary folders (never ./data), for two regimes: the persona sample
(purchases driven by hidden personas) and the buy-till-you-die sample (``sample.mode: btyd``, purchases
from BG/NBD and order values from Gamma-Gamma). Each regime goes through the real pipeline (sample →
ingest → features → Feast → train_all with MLflow, baselines and the gate), then on the evaluation
cutoff compares the *evaluated* fits (the served refits have seen that window) with BG/NBD +
Gamma-Gamma fitted on the same pre-cutoff history:

* spend: RMSE, MAE and top-decile spend capture; P(purchase) = 1 - churn: ROC AUC;
* a paired bootstrap over evaluation users gives each difference's standard error, and whether the
  model wins by more than one;
* every baseline keeps its row (and "always zero" for spend);
* variants fitted in-process on the same rows: without the lifetime features, with BTYD stacking,
  with calibration, learning-to-rank spend scores, monotone constraints, a spend-per-tenure-day target;
  the oracle: the generator's own expected spend and P(purchase) (persona/sample_oracle.py), the most any
  model could get; a ceiling cross-fitted on the evaluation cutoff itself (not servable: it bounds what
  the features can rank); segments vs hidden personas (adjusted Rand index) per rule set, with a supervised
  classifier's ARI as the ceiling of what the features can tell apart.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench._settings import PROJECT, bench_settings

RESAMPLES = 200


def _prepare(root: Path, users: int, days: int, mode: str, horizon: int) -> tuple[Any, Any]:
    """Sample → ingest → features → feast apply → materialize in ``root``; returns settings and store."""
    from features.store import open_store
    from persona.pipeline import (
        build_features,
        ensure_sample,
        ingest_inbox,
        materialize,
        register_features,
    )

    s = bench_settings(root / "data", users=users, days=days)
    s = s.model_copy(update={"sample": s.sample.model_copy(update={"mode": mode}),
                             "training": s.training.model_copy(update={"horizon_days": horizon})})
    ensure_sample(s)
    ingest_inbox(s)
    build_features(s)
    store = open_store(s)
    register_features(s, store)
    materialize(s, store)
    return s, store


def _boot(draws: list[np.ndarray], fn: Any, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    """Metric of ``a``, of ``b``, their difference and its paired bootstrap standard error."""
    whole = np.arange(len(a))
    diffs = np.array([fn(a, i) - fn(b, i) for i in draws])
    return fn(a, whole), fn(b, whole), fn(a, whole) - fn(b, whole), float(diffs.std(ddof=1))


def _metrics(y_spend: np.ndarray, bought: np.ndarray) -> dict[str, tuple[Any, bool]]:
    """Metric name -> (function of predictions and row index, higher is better)."""
    from sklearn.metrics import roc_auc_score

    from training.targets import spend_metrics

    return {
        "spend RMSE": (lambda p, i: float(np.sqrt(np.mean((y_spend[i] - p[i]) ** 2))), False),
        "spend MAE": (lambda p, i: float(np.mean(np.abs(y_spend[i] - p[i]))), False),
        "spend top-decile capture": (lambda p, i: spend_metrics(y_spend[i], p[i])["top_decile_capture"], True),
        "P(purchase) ROC AUC": (lambda p, i: float(roc_auc_score(bought[i], p[i])), True),
    }


def _served_scores(s: Any, refs: dict[str, Any], evaluation: pd.DataFrame) -> dict[str, np.ndarray]:
    """The evaluated fits' raw outputs on the evaluation rows, through the one scorer (which computes the
    stacked features, if any, from the lifetime features with the parameters logged on the version)."""
    import dataclasses

    import mlflow.lightgbm

    from scoring.scorer import PersonaScorer
    from training.champions import load_models
    from training.refit import evaluated_uri

    loaded = load_models(s.ml, {k: refs[k] for k in ("spend", "churn")})
    models = {}
    for k, m in loaded.items():
        booster = mlflow.lightgbm.load_model(evaluated_uri(s.ml, refs[k]))
        models[k] = dataclasses.replace(m, booster=booster, features=list(booster.feature_name()))
    scorer = PersonaScorer(models, s)
    return scorer.predict(scorer.frame_matrix(evaluation), ["spend", "churn"])


def _variants(data: pd.DataFrame, split: Any, features: list[str], s: Any) -> dict[str, dict[str, np.ndarray]]:
    """In-process fits on the same rows: without lifetime features, without stacking, with stacking, with
    calibration, boosting from the BTYD prediction (offset), the offset spend model without its own
    ``training.target_params.spend`` (the shared LightGBM settings), and a hurdle spend model."""
    from features.lifetime import COLUMNS
    from training.calibration import calibrate_predictions
    from training.stacking import STACK_FEATURES, with_stacking
    from training.targets import target
    from training.train import fit, matrix, split_frames

    out: dict[str, dict[str, np.ndarray]] = {}
    train, evaluation = split_frames(data, split)
    cfg = s.training.model_copy(update={"btyd_offset": False})  # each variant says what it adds
    plain = [f for f in features if f not in COLUMNS]
    for name, feats, frame_t, frame_e in (("without lifetime features", plain, train, evaluation),):
        out[name] = {k: np.asarray(fit(target(k), frame_t, feats, cfg).predict(matrix(frame_e, feats)))
                     for k in ("spend", "churn")}
    stacked = with_stacking(data, s.training.horizon_days)
    st_train, st_eval = split_frames(stacked, split)
    feats = [*features, *STACK_FEATURES]
    boosters = {k: fit(target(k), st_train, feats, cfg) for k in ("spend", "churn")}
    out["+ BTYD stacking"] = {k: np.asarray(b.predict(matrix(st_eval, feats))) for k, b in boosters.items()}
    out["+ BTYD stacking + calibration"] = {
        k: calibrate_predictions(target(k), b, st_train, st_eval, feats, cfg, fit) for k, b in boosters.items()}
    out["+ BTYD stacking, BTYD as offset"] = {k: _offset_fit(k, st_train, st_eval, feats, cfg)
                                              for k in ("spend", "churn")}
    if "spend" in s.training.target_params:  # the served spend settings against the shared ones, same rows
        shared = cfg.model_copy(update={"target_params": {k: v for k, v in cfg.target_params.items() if k != "spend"}})
        out["BTYD as offset, spend with shared params"] = {
            "spend": _offset_fit("spend", st_train, st_eval, feats, shared),
            "churn": out["+ BTYD stacking, BTYD as offset"]["churn"]}
    out["lifetime features, no stacking"] = {k: np.asarray(fit(target(k), train, features, cfg).predict(
        matrix(evaluation, features))) for k in ("spend", "churn")}
    offset_churn = out["+ BTYD stacking, BTYD as offset"]["churn"]
    out["+ BTYD stacking, hurdle: P(buy) x E[spend | buy]"] = {
        "spend": (1 - offset_churn) * _conditional_spend(st_train, st_eval, feats, cfg), "churn": offset_churn}
    for objective in ("rank_xendcg", "lambdarank"):
        out[f"+ BTYD stacking, spend ranked ({objective}, isotonic level)"] = {
            "spend": _ranked_spend(objective, st_train, st_eval, feats, cfg), "churn": offset_churn}
    monotone = _monotone(cfg, feats)
    out["+ BTYD stacking, BTYD as offset, monotone"] = {k: _offset_fit(k, st_train, st_eval, feats, monotone)
                                                       for k in ("spend", "churn")}
    if "tenure_days" in feats:
        out["+ BTYD stacking, spend per day of tenure (exposure)"] = {
            "spend": _tenure_rate_spend(st_train, st_eval, feats, cfg, s.training.horizon_days),
            "churn": offset_churn}
    return out


RANK_BUCKETS = 4
"""Relevance of a ranking row: 0 for no spend, then the spend quartile (1..4) among the cutoff's buyers."""

INCREASING = ("lifetime_purchases", "lifetime_spend", "lifetime_purchase_days", "btyd_frequency",
              "btyd_expected_purchases", "btyd_expected_spend", "btyd_p_alive")
DECREASING = ("days_since_last_purchase", "btyd_p_no_purchase")
"""Monotone constraints of the spend model (churn gets the opposite signs): more purchases, spend and BTYD
expectation never lower the prediction, a longer time since the last purchase never raises it."""


def _relevance(rows: pd.DataFrame, k: int = RANK_BUCKETS) -> np.ndarray:
    """Per row, 0 when the user spent nothing, else the spend quantile bucket 1..k within its cutoff."""
    spend = rows["label_spend"].to_numpy(dtype=float)
    rank = rows.loc[spend > 0].groupby("event_timestamp")["label_spend"].rank(pct=True, method="average")
    out = np.zeros(len(rows), dtype=int)
    out[np.flatnonzero(spend > 0)] = np.ceil(rank.to_numpy() * k).clip(1, k).astype(int)
    return out


def _ranked_spend(objective: str, train: pd.DataFrame, evaluation: pd.DataFrame, feats: list[str],
                  cfg: Any) -> np.ndarray:
    """A learning-to-rank spend score (one query group per training cutoff, relevance = spend bucket),
    rounds early-stopped on NDCG of the top decile of the newest training cutoff, refitted on every
    training cutoff; mapped to spend by an isotonic fit of the training rows' spend on their scores (so
    the RMSE means something; the ranking, hence capture and AUC, is the score's own)."""
    import lightgbm as lgb
    from sklearn.isotonic import IsotonicRegression

    from training.targets import target
    from training.train import lgb_params, matrix

    train = train.sort_values("event_timestamp", kind="stable")
    ts = pd.to_datetime(train["event_timestamp"], utc=True)
    top = max(1, int(ts.value_counts().min()) // 10)
    params = {**lgb_params(target("spend"), cfg), "objective": objective, "metric": "ndcg", "eval_at": [top],
              "lambdarank_truncation_level": top, "label_gain": [float(2**i - 1) for i in range(RANK_BUCKETS + 1)]}
    params.pop("tweedie_variance_power", None)

    def data(rows: pd.DataFrame, ref: Any = None) -> Any:
        group = rows.groupby("event_timestamp", sort=True).size().to_numpy()
        return lgb.Dataset(matrix(rows, feats), label=_relevance(rows), group=group, reference=ref)

    d = data(train.loc[ts < ts.max()])
    b = lgb.train(params, d, num_boost_round=cfg.num_boost_round, valid_sets=[data(train.loc[ts == ts.max()], d)],
                  callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)])
    b = lgb.train(params, data(train), num_boost_round=max(1, int(b.best_iteration or cfg.num_boost_round)))
    level = IsotonicRegression(out_of_bounds="clip").fit(b.predict(matrix(train, feats)),
                                                         train["label_spend"].to_numpy(dtype=float))
    score = np.asarray(b.predict(matrix(evaluation, feats)))
    return level.predict(score) + 1e-9 * (score - score.min()) / max(float(np.ptp(score)), 1e-12)  # ties by score


def _monotone(cfg: Any, feats: list[str]) -> Any:
    """The training settings with monotone constraints on spend (and the opposite on churn)."""
    sign = [1 if f in INCREASING else -1 if f in DECREASING else 0 for f in feats]
    params = dict(cfg.target_params)
    for key, direction in (("spend", 1), ("churn", -1)):
        params[key] = {**params.get(key, {}), "monotone_constraints": [direction * v for v in sign],
                       "monotone_constraints_method": "advanced"}
    return cfg.model_copy(update={"target_params": params})


def _tenure_rate_spend(train: pd.DataFrame, evaluation: pd.DataFrame, feats: list[str], cfg: Any,
                       horizon: int) -> np.ndarray:
    """Spend per day of tenure at the horizon's end (``label_spend / (tenure_days + horizon)``, rows weighted
    by that exposure, the Tweedie objective), times the exposure: a target comparable across tenure. (Spend per
    day of the horizon itself is a constant rescaling here: every evaluated user is known at the cutoff.)"""
    import lightgbm as lgb

    from training.targets import target
    from training.train import lgb_params, matrix

    params = lgb_params(target("spend"), cfg)

    def exposure(rows: pd.DataFrame) -> np.ndarray:
        return rows["tenure_days"].fillna(0).clip(lower=0).to_numpy(dtype=float) + horizon

    def data(rows: pd.DataFrame, ref: Any = None) -> Any:
        w = exposure(rows)
        return lgb.Dataset(matrix(rows, feats), label=rows["label_spend"].to_numpy(dtype=float) / w, weight=w,
                           reference=ref)

    ts = pd.to_datetime(train["event_timestamp"], utc=True)
    d = data(train.loc[ts < ts.max()])
    b = lgb.train(params, d, num_boost_round=cfg.num_boost_round, valid_sets=[data(train.loc[ts == ts.max()], d)],
                  callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)])
    b = lgb.train(params, data(train), num_boost_round=max(1, int(b.best_iteration or cfg.num_boost_round)))
    return np.asarray(b.predict(matrix(evaluation, feats))) * exposure(evaluation)


def _conditional_spend(train: pd.DataFrame, evaluation: pd.DataFrame, feats: list[str], cfg: Any) -> np.ndarray:
    """E[spend | the user buys] (gamma objective on the buyers' rows; rounds early-stopped on the newest
    training cutoff, then refitted on every training cutoff)."""
    import lightgbm as lgb

    from training.targets import target
    from training.train import lgb_params, matrix

    params = {**lgb_params(target("spend"), cfg), "objective": "gamma", "metric": "gamma"}
    params.pop("tweedie_variance_power", None)
    buyers = train.loc[train["label_spend"] > 0]
    ts = pd.to_datetime(buyers["event_timestamp"], utc=True)

    def data(rows: pd.DataFrame, ref: Any = None) -> Any:
        return lgb.Dataset(matrix(rows, feats), label=rows["label_spend"].to_numpy(dtype=float), reference=ref)

    d = data(buyers.loc[ts < ts.max()])
    b = lgb.train(params, d, num_boost_round=cfg.num_boost_round, valid_sets=[data(buyers.loc[ts == ts.max()], d)],
                  callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)])
    b = lgb.train(params, data(buyers), num_boost_round=max(1, int(b.best_iteration or cfg.num_boost_round)))
    return np.asarray(b.predict(matrix(evaluation, feats)))


def _offset_fit(key: str, train: pd.DataFrame, evaluation: pd.DataFrame, feats: list[str], cfg: Any) -> np.ndarray:
    """Boosting that starts from the BTYD prediction (``init_score``): the trees learn corrections to it.
    Rounds early-stopped on the newest training cutoff, then refitted on every training cutoff (what
    ``training.btyd_offset`` does in train_all; the served row must equal it)."""
    import lightgbm as lgb

    from training.stacking import frame_offset, linked
    from training.targets import target
    from training.train import lgb_params, matrix

    t = target(key)
    params = lgb_params(t, cfg)

    def data(rows: pd.DataFrame, ref: Any = None) -> Any:
        y = rows[t.label].to_numpy(dtype=float)
        return lgb.Dataset(matrix(rows, feats), label=y, init_score=frame_offset(key, rows, True),
                           reference=ref)

    ts = pd.to_datetime(train["event_timestamp"], utc=True)
    fit_rows, valid_rows = train.loc[ts < ts.max()], train.loc[ts == ts.max()]
    d = data(fit_rows)
    b = lgb.train(params, d, num_boost_round=cfg.num_boost_round, valid_sets=[data(valid_rows, d)],
                  callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)])
    rounds = max(1, int(b.best_iteration or cfg.num_boost_round))
    b = lgb.train(params, data(train), num_boost_round=rounds)
    return linked(key, b.predict(matrix(evaluation, feats), raw_score=True) + frame_offset(key, evaluation, True))


def in_sample_ceiling(evaluation: pd.DataFrame, features: list[str], s: Any, folds: int = 5,
                      rounds: int = 200) -> dict[str, np.ndarray]:
    """Predictions cross-fitted on the evaluation cutoff itself (``folds``-fold over its users, the served
    parameters, ``rounds`` rounds): what these features can rank when the model has seen the evaluation
    window's own distribution. Not a model anyone could serve (its labels are the future); it bounds what
    better training cutoffs, targets or calibration could reach."""
    import lightgbm as lgb
    from sklearn.model_selection import KFold

    from training.targets import target
    from training.train import lgb_params, matrix

    x = matrix(evaluation, features)
    out = {k: np.zeros(len(evaluation)) for k in ("spend", "churn")}
    for fit_rows, held in KFold(folds, shuffle=True, random_state=0).split(x):
        for k, pred in out.items():
            t = target(k)
            y = evaluation[t.label].to_numpy(dtype=float)
            booster = lgb.train(lgb_params(t, s.training), lgb.Dataset(x[fit_rows], label=y[fit_rows]),
                                num_boost_round=rounds)
            pred[held] = booster.predict(x[held])
    return out


def oracle_rows(s: Any, cutoff: pd.Timestamp, evaluation: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """The generator's own expected spend and P(purchase) per evaluation user (persona/sample_oracle.py):
    the most any model could rank; in the BTYD sample also without knowing who is still alive."""
    from persona.sample_oracle import horizon_oracle

    oracle = horizon_oracle(s, cutoff, s.training.horizon_days).set_index("user_id")
    users = evaluation["user_id"].astype(str)
    missing = int((~users.isin(oracle.index)).sum())
    rows = oracle.reindex(users.to_numpy())
    y = evaluation["label_spend"].to_numpy(dtype=float)
    expected = rows["expected_spend"].to_numpy(dtype=float)
    print(f"  oracle: {len(users) - missing} of {len(users)} evaluation users mapped to generator users; "
          f"mean expected spend {np.nanmean(expected):.2f} vs realized {y.mean():.2f} "
          f"(s.e. {y.std(ddof=1) / np.sqrt(len(y)):.2f})")
    out = {"oracle: generator's expected values": {"spend": expected,
                                                   "churn": 1 - rows["p_purchase"].to_numpy(dtype=float)}}
    if "expected_spend_params" in rows:
        out["oracle knowing rates, not who is alive"] = {
            "spend": rows["expected_spend_params"].to_numpy(dtype=float),
            "churn": 1 - rows["p_purchase_params"].to_numpy(dtype=float)}
    return out


def _segments(s: Any, summary: Any, data: pd.DataFrame, split: Any) -> None:
    """Adjusted Rand index of the segments vs the hidden personas, per rule set, and the ceiling."""
    from base.config import load_segment_file
    from base.paths import DataPaths
    from scoring.evaluation import recovery, score_frame, segment_frame, true_persona_at
    from scoring.scorer import PersonaScorer
    from training.champions import load_models
    from training.train import split_frames

    truth = pd.read_csv(DataPaths(s.data_dir).ground_truth, dtype=str, keep_default_na=False)
    _, evaluation = split_frames(data, split)
    hidden = true_persona_at(truth, split.evaluation)
    for path in sorted(PROJECT.glob("segments*.yaml")):
        rules = load_segment_file(path)
        scorer = PersonaScorer(load_models(s.ml, {m.target: m.ref for m in summary.models}),
                               s.model_copy(update={"segments": rules}))
        seg = segment_frame(scorer, evaluation, score_frame(scorer, evaluation))
        r = recovery(pd.Series(seg, index=evaluation["user_id"].to_numpy()), hidden)
        print(f"  rule set {path.name:28s} ARI={r['ari']:.3f}  same name={r['same_name']:.1%} "
              f"of {int(r['users'])} users")
    ceiling(evaluation, hidden)


def ceiling(evaluation: pd.DataFrame, hidden: pd.Series) -> None:
    """ARI of a supervised classifier (5-fold, features → hidden persona): how far features separate them."""
    import lightgbm as lgb
    from sklearn.metrics import adjusted_rand_score
    from sklearn.model_selection import cross_val_predict

    feats = [c for c in evaluation.columns if c not in ("user_id", "event_timestamp", "segment")
             and not c.startswith(("label_", "hist_"))]
    rows = evaluation.loc[evaluation["user_id"].isin(hidden.index)]
    y = hidden.loc[rows["user_id"]].to_numpy()
    x = rows[feats].to_numpy(dtype=float)
    clf = lgb.LGBMClassifier(n_estimators=150, learning_rate=0.05, num_leaves=15, verbose=-1, n_jobs=1)
    pred = cross_val_predict(clf, x, y, cv=5)
    print(f"  ceiling: supervised classifier on the same features (5-fold) ARI={adjusted_rand_score(y, pred):.3f}, "
          f"accuracy={(pred == y).mean():.1%}")


def regime(mode: str, users: int, days: int, horizon: int) -> None:
    """One regime end to end, printed as a table."""
    from bench.training import _train
    from training.baselines import churn_baselines, spend_baselines
    from training.registry import use_tracking
    from training.train import split_frames

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        s, store = _prepare(Path(tmp), users, days, mode, horizon)
        summary, _, data, split, features = _train(s, store)
        use_tracking(s.ml)
        refs = {m.target: m.ref for m in summary.models}
        train, evaluation = split_frames(data, split)
        y = evaluation["label_spend"].to_numpy(dtype=float)
        bought = (evaluation["label_churn"].to_numpy() == 0).astype(int)
        model = _served_scores(s, refs, evaluation)
        spend_b = spend_baselines(train, evaluation, s.training.horizon_days)
        churn_b = churn_baselines(train, evaluation, s.training.horizon_days)
        rows = {"model (served config)": model, **_variants(data, split, features, s),
                "ceiling: 5-fold on eval cutoff itself": in_sample_ceiling(evaluation, features, s),
                **oracle_rows(s, split.evaluation, evaluation)}
        base_rows = {name: {"spend": spend_b[name], "churn": churn_b.get("bgnbd" if name == "bgnbd_gamma_gamma"
                                                                          else name, np.full(len(y), np.nan))}
                     for name in spend_b}
        base_rows["always zero"] = {"spend": np.zeros(len(y)), "churn": np.full(len(y), np.nan)}
        rng = np.random.default_rng(0)
        draws = [rng.integers(0, len(y), len(y)) for _ in range(RESAMPLES)]
        metrics = _metrics(y, bought)
        ref = base_rows["bgnbd_gamma_gamma"]
        print(f"\n== {mode} sample: {evaluation['user_id'].nunique()} users, {days} days, horizon "
              f"{s.training.horizon_days} d, {len(split.train)} training cutoffs + {len(split.refit)} refit cutoffs, "
              f"evaluation cutoff {split.evaluation:%Y-%m-%d}; mean actual spend {y.mean():.2f}, "
              f"bought {bought.mean():.1%} ==")
        served = {m.target: f"v{m.ref.version} [{m.alias or '-'}]" for m in summary.models}
        print(f"registered (refit on every labelled cutoff, serves): spend {served['spend']}, churn {served['churn']}; "
              f"the gate judged the evaluated fits")
        for label, (fn, higher) in metrics.items():
            key = "churn" if label.startswith("P(") else "spend"
            conv = (lambda p: 1 - p) if key == "churn" else (lambda p: p)
            print(f"  {label}  (BG/NBD + Gamma-Gamma = {fn(conv(ref[key]), np.arange(len(y))):.4f})")
            for name, preds in [*rows.items(), *base_rows.items()]:
                p = conv(preds[key])
                if not np.isfinite(p).all():
                    continue
                a, _, d, se = _boot(draws, fn, p, conv(ref[key]))
                win = (d > se) if higher else (-d > se)
                mark = "" if name == "bgnbd_gamma_gamma" else (f"  diff {d:+.4f} ± {se:.4f} "
                                                                f"{'WINS by > 1 s.e.' if win else 'no win'}")
                print(f"    {name:34s} {a:9.4f}{mark}")
        if mode == "personas":
            _segments(s, summary, data, split)
    print(f"({mode} regime took {time.perf_counter() - t0:.0f} s)")


def main(argv: list[str] | None = None) -> None:
    """Both regimes: ``[users] [btyd_days]`` (defaults 5,000 users; 120 days persona, 240 days BTYD)."""
    argv = sys.argv[1:] if argv is None else argv
    users = int(argv[0]) if argv else 5000
    btyd_days = int(argv[1]) if len(argv) > 1 else 240
    only = argv[2] if len(argv) > 2 else None
    if only in (None, "personas"):
        regime("personas", users, 120, 30)
    if only in (None, "btyd"):
        regime("btyd", users, btyd_days, 30)


if __name__ == "__main__":
    main()
