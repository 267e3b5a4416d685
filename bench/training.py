"""Model figures on generated data in a temporary folder (never ./data):

* quality: each target's metrics against each baseline on the sample (5,000 users by default), how well the
  segments recover the hidden personas (adjusted Rand index) and how fast a persona switch is picked up;
* timing: training time for 50,000 users, and the platform's overhead (Feast retrieval + MLflow logging,
  evaluation, baselines and the gate) as a ratio to ``lightgbm.train`` alone on the same matrix.

``python -m bench training`` runs both; ``python -m bench training quality|timing [users]`` runs one;
``python -m bench training quality-at|timing-at DATA_DIR`` reuses a data directory built earlier, with the
configuration in ``$PERSONA_CONFIG`` when set (your own data: the persona recovery and switch figures need
the sample's hidden personas and are left out without them).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from bench._settings import bench_settings


def _prepare(root: Path, users: int) -> tuple[Any, Any, dict[str, float]]:
    """Sample → ingest → features → feast apply → materialize, in ``root``; returns settings, store, timings."""
    from features.store import open_store
    from persona.pipeline import build_features, ensure_sample, ingest_inbox, materialize, register_features

    s = bench_settings(root / "data", users=users)
    t = {}
    t0 = time.perf_counter()
    ensure_sample(s)
    t["sample"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ingest_inbox(s)
    build_features(s)
    store = open_store(s)
    register_features(s, store)
    materialize(s, store)
    t["ingest+features+feast"] = time.perf_counter() - t0
    return s, store, t


def _train(s: Any, store: Any) -> tuple[Any, dict[str, float], Any, Any, list[str]]:
    """The pipeline's training step (persona.pipeline.train), timed piece by piece."""
    from features.store import feature_refs
    from persona.pipeline import lineage_tags, training_events
    from training.baselines import history_summary
    from training.dataset import build_training_set
    from training.labels import exclusion_tags, identity_exclusions, make_labels, rolling_cutoffs
    from training.train import train_all, with_history

    t: dict[str, float] = {}
    t0 = time.perf_counter()
    events = training_events(s)
    history_end = events["timestamp"].max().floor("D") + pd.Timedelta(days=1)
    split = rolling_cutoffs(history_end, events["timestamp"].min(), s.training)
    labels = make_labels(events, split.all, s.training.horizon_days, s.features.categories)
    lineage = exclusion_tags(identity_exclusions(events, split.all))
    t["events+labels"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    frame = build_training_set(store, labels, s.data_dir)
    t["feast_retrieval"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = with_history(frame, history_summary(events, split.all, s.training.horizon_days))
    t["baseline_history"] = time.perf_counter() - t0
    features = feature_refs(store)
    t0 = time.perf_counter()
    summary = train_all(data, features, split, s.training, s.ml, rules=s.segments,
                        categories=s.features.categories, lineage={**lineage_tags(s, frame), **lineage})
    t["train_all"] = time.perf_counter() - t0
    t["lightgbm_with_early_stopping"] = summary.seconds_fit
    t["eval+baselines+mlflow+gate"] = summary.seconds_log
    print(f"training rows left out for point-in-time identity: {lineage['identity_excluded']}")
    return summary, t, data, split, features


def _lgb_alone(summary: Any, data: pd.DataFrame, split: Any, features: list[str], s: Any) -> float:
    """``lightgbm.train`` alone on the same matrix with the same parameters and rounds as the logged models."""
    import lightgbm as lgb
    import mlflow.lightgbm
    from training.registry import use_tracking
    from training.targets import target
    from training.train import lgb_params, matrix, split_frames

    use_tracking(s.ml)
    train, _ = split_frames(data, split)
    total = 0.0
    for m in summary.models:
        t = target(m.target)
        rows = t.rows(train)
        booster = mlflow.lightgbm.load_model(m.ref.uri)
        rounds = booster.num_trees() // max(1, int(booster.params.get("num_class", 1)))
        x, y = matrix(rows, features), rows[t.label].to_numpy(dtype="float64")
        t0 = time.perf_counter()
        lgb.train(lgb_params(t, s.training, s.features.categories), lgb.Dataset(x, label=y), num_boost_round=rounds)
        total += time.perf_counter() - t0
    return total


def _existing(data_dir: Path) -> tuple[Any, Any]:
    """Settings and store over an already-built data directory (e.g. one left by an earlier bench run),
    with ``$PERSONA_CONFIG`` when set, else the project's persona.yaml."""
    import os

    from base.config import CONFIG_ENV
    from features.store import open_store

    config = os.environ.get(CONFIG_ENV)
    s = bench_settings(data_dir, Path(config).resolve() if config else None)
    return s, open_store(s)


def _capture_noise(booster: Any, data: pd.DataFrame, split: Any, features: list[str], horizon: int,
                   resamples: int = 300) -> None:
    """Top-decile capture of the spend model minus each baseline's, with a paired bootstrap standard
    error over evaluation users (how much of a difference is noise)."""
    import numpy as np

    from training.baselines import spend_baselines
    from training.targets import spend_metrics
    from training.train import matrix, split_frames

    train, evaluation = split_frames(data, split)
    y = evaluation["label_spend"].to_numpy(dtype=float)
    pred = np.asarray(booster.predict(matrix(evaluation, features)))
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(y), len(y)) for _ in range(resamples)]

    def capture(p: np.ndarray, i: np.ndarray) -> float:
        return spend_metrics(y[i], p[i])["top_decile_capture"]

    for name, base in spend_baselines(train, evaluation, horizon).items():
        diffs = np.array([capture(pred, i) - capture(base, i) for i in draws])
        whole = capture(pred, np.arange(len(y))) - capture(base, np.arange(len(y)))
        print(f"  spend top-decile capture, model - {name}: {whole:+.4f} (paired bootstrap s.e. {diffs.std():.4f})")


def quality(users: int = 5000, data_dir: Path | None = None) -> None:
    """Metrics against baselines, persona recovery (ARI) and switch pick-up on the sample
    (generated afresh in a temporary folder, or an existing built ``data_dir``)."""
    from features.compute import read_snapshots
    from base.paths import DataPaths
    from scoring.evaluation import recovery, score_frame, segment_frame, switch_pickup, true_persona_at
    from scoring.scorer import PersonaScorer
    from training.champions import load_models
    from training.registry import use_tracking
    from training.train import split_frames

    with tempfile.TemporaryDirectory() as tmp:
        s, store = _existing(data_dir) if data_dir else _prepare(Path(tmp), users)[:2]
        summary, _, data, split, features = _train(s, store)
        users = int(data["user_id"].nunique())
        source = "the sample" if DataPaths(s.data_dir).ground_truth.exists() else str(s.data_dir)
        print(f"\n== model quality on {source} ({users} users, horizon {s.training.horizon_days} d, "
              f"training cutoffs {min(split.train):%Y-%m-%d}..{max(split.train):%Y-%m-%d}, "
              f"evaluation cutoff {split.evaluation:%Y-%m-%d}) ==")
        for key, reason in summary.skipped.items():
            print(f"{key}: not trained: {reason}")
        for m in summary.models:
            print(f"{m.target} v{m.ref.version} [{m.alias}] ({m.rows_train} train / {m.rows_eval} eval rows)")
            print(f"  {'model':22s} " + "  ".join(f"{k}={v:.4g}" for k, v in m.metrics.items()))
            for b, mm in m.baselines.items():
                print(f"  {b:22s} " + "  ".join(f"{k}={v:.4g}" for k, v in mm.items()))
            print("  gate vs baselines: " + ("; ".join(m.reasons) if m.reasons else "beats them all"))
        use_tracking(s.ml)
        scorer = PersonaScorer(load_models(s.ml, {m.target: m.ref for m in summary.models}), s)
        _capture_noise(scorer.models["spend"].booster, data, split, features, s.training.horizon_days)
        if not DataPaths(s.data_dir).ground_truth.exists():
            print("no hidden personas (not the sample): persona recovery and switch pick-up are left out")
            return
        truth = pd.read_csv(DataPaths(s.data_dir).ground_truth, dtype=str, keep_default_na=False)
        _, evaluation = split_frames(data, split)
        snaps = read_snapshots(DataPaths(s.data_dir).behaviour_snapshots)
        last = snaps.loc[snaps["event_timestamp"] == snaps["event_timestamp"].max()]
        for name, frame, when in (("evaluation cutoff", evaluation, split.evaluation),
                                  ("latest snapshot", last, last["event_timestamp"].max())):
            seg = segment_frame(scorer, frame, score_frame(scorer, frame))
            r = recovery(pd.Series(seg, index=frame["user_id"].to_numpy()), true_persona_at(truth, when))
            print(f"segments vs hidden personas at the {name}: ARI={r['ari']:.3f}, "
                  f"same name={r['same_name']:.1%} of {int(r['users'])} users")
        for alpha in (1.0, s.smoothing_alpha, 0.3):
            p = switch_pickup(scorer, snaps, truth, alpha)
            print(f"persona switch picked up (alpha={alpha}): {p.picked_up}/{p.switched_users} switched users "
                  f"within 45 d; median {p.median_days:.0f} d, p75 {p.p75_days:.0f} d after the switch")


def timing(users: int = 50_000, data_dir: Path | None = None) -> None:
    """Training time for ``users`` users and the platform overhead against lightgbm.train alone
    (on data generated afresh in a temporary folder, or an existing built ``data_dir``)."""
    with tempfile.TemporaryDirectory() as tmp:
        s, store, prep = (*_existing(data_dir), {}) if data_dir else _prepare(Path(tmp), users)
        summary, t, data, split, features = _train(s, store)
        alone = _lgb_alone(summary, data, split, features, s)
        rows = len(data)
        print(f"\n== training time for {data['user_id'].nunique()} users ({rows} training-set rows over "
              f"{len(split.all)} cutoffs, {len(features)} features, num_threads={s.training.num_threads}) ==")
        for k, v in {**prep, **t}.items():
            print(f"  {k:32s} {v:8.1f} s")
        overhead = t["feast_retrieval"] + t["eval+baselines+mlflow+gate"]
        print(f"  {'lightgbm.train alone (3 targets)':32s} {alone:8.1f} s")
        print(f"training step total (labels + Feast + history + train_all): "
              f"{t['events+labels'] + t['feast_retrieval'] + t['baseline_history'] + t['train_all']:.1f} s")
        print(f"platform overhead (Feast retrieval + eval/baselines/MLflow logging/gate) / lightgbm.train alone "
              f"= {overhead:.1f} / {alone:.1f} = {overhead / alone:.2f}x")


def main(argv: list[str] | None = None) -> None:
    """Run the named part(s) (default: quality on 5,000 users, then timing on 50,000)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("quality-at", "timing-at"):
        (quality if argv[0] == "quality-at" else timing)(data_dir=Path(argv[1]).resolve())
        return
    if argv and argv[0] in ("quality", "timing"):
        fn = quality if argv[0] == "quality" else timing
        fn(*(int(a) for a in argv[1:2]))
        return
    quality()
    timing()


if __name__ == "__main__":
    main()
