"""Fits in threads: the evaluated fits and the refits of every target are the same models bit for bit
whether they run one after another (the straightforward reference: ``fit`` per target, then
``refit_all``) or two at a time, and the evaluation predictions too."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd

from training.labels import Split
from training.stacking import predict_frame
from training.targets import TARGETS
from training.train import (costliest_first, evaluated_rows, fit, fit_all, fit_workers, in_threads, predict_all, refit_all,
                            split_frames)

from .conftest import CATEGORIES, FAST, FEATURES, synthetic_set


def _data() -> tuple[pd.DataFrame, Split]:
    dataset, split = synthetic_set(users=500, cutoffs=6)
    times = sorted(pd.to_datetime(dataset["event_timestamp"].unique(), utc=True))
    return dataset, Split(train=times[:3], refit=times[3:5], evaluation=times[5])


def _text(models: dict) -> dict[str, str]:
    return {k: b.model_to_string() for k, b in models.items()}


def test_fits_in_two_threads_are_the_sequential_fits_bit_for_bit() -> None:
    dataset, split = _data()
    train, _ = split_frames(dataset, split)
    reference = {t.key: fit(t, train, FEATURES, FAST, CATEGORIES) for t in TARGETS}
    reference_refits = refit_all(reference, dataset, split, FEATURES, FAST, CATEGORIES)
    assert set(reference_refits) == {t.key for t in TARGETS}
    for workers in (1, 2):
        cfg = FAST.model_copy(update={"fit_workers": workers})
        boosters, refits = fit_all(TARGETS, train, dataset, split, FEATURES, cfg, CATEGORIES)
        assert list(boosters) == [t.key for t in TARGETS]  # the targets' order, whatever ran first
        assert _text(boosters) == _text(reference), workers
        assert _text(refits) == _text(reference_refits), workers
    assert _text(reference) != _text(reference_refits)  # the refits did learn from more rows


def test_without_refit_only_the_evaluated_fits_come_back() -> None:
    dataset, split = _data()
    train, _ = split_frames(dataset, split)
    cfg = FAST.model_copy(update={"fit_workers": 2, "refit_on_newest": False})
    boosters, refits = fit_all(TARGETS, train, dataset, split, FEATURES, cfg, CATEGORIES)
    assert refits == {} and set(boosters) == {t.key for t in TARGETS}


def test_predictions_in_threads_equal_one_after_another() -> None:
    dataset, split = _data()
    train, evaluation = split_frames(dataset, split)
    boosters, _ = fit_all(TARGETS, train, dataset, split, FEATURES, FAST.model_copy(update={"fit_workers": 2}),
                          CATEGORIES)
    x = evaluation[FEATURES].to_numpy(dtype="float64")
    alone = {k: predict_frame(k, b, x, evaluation, False) for k, b in boosters.items()}
    threaded = in_threads({k: (lambda k=k, b=b: predict_frame(k, b, x, evaluation, False)) for k, b in boosters.items()}, 2)
    for k in alone:
        np.testing.assert_array_equal(threaded[k], alone[k])
    for workers in (1, 2, 3):  # each target's rows in chunks, on threads
        chunked = predict_all(boosters, costliest_first(TARGETS, CATEGORIES), x, evaluation, False, workers)
        assert list(chunked) == list(boosters)
        for k in alone:
            np.testing.assert_array_equal(chunked[k], alone[k])
    assert alone["category"].shape == (len(evaluation), len(CATEGORIES))
    rng = np.random.default_rng(1)  # with the BTYD offset (init score from a per-row stacked feature)
    stacked = evaluation.assign(btyd_expected_spend=rng.gamma(2.0, 20.0, len(evaluation)),
                                btyd_p_no_purchase=rng.uniform(0.05, 0.95, len(evaluation)))
    offset = {k: predict_frame(k, b, x, stacked, True) for k, b in boosters.items()}
    chunked = predict_all(boosters, TARGETS, x, stacked, True, 2)
    for k in offset:
        np.testing.assert_array_equal(chunked[k], offset[k])
    assert not np.array_equal(offset["spend"], alone["spend"])  # the offset did count
    wanted = evaluated_rows(TARGETS, evaluation)  # the category model only where it is evaluated
    labelled = np.flatnonzero((evaluation["label_category"] >= 0).to_numpy())
    assert 0 < len(labelled) < len(evaluation) and np.array_equal(wanted["category"], labelled)
    assert all(len(wanted[t.key]) == len(evaluation) for t in TARGETS if t.segment_input)
    narrow = predict_all(boosters, TARGETS, x, evaluation, False, 2, wanted)
    for k in alone:
        np.testing.assert_array_equal(narrow[k], alone[k][wanted[k]])


def test_jobs_run_on_worker_threads_and_come_back_in_order() -> None:
    names: dict[str, str] = {}

    def job(key: str):  # noqa: ANN202
        def run() -> str:
            names[key] = threading.current_thread().name
            return key * 2
        return run

    got = in_threads({k: job(k) for k in "abc"}, 2)
    assert list(got.items()) == [("a", "aa"), ("b", "bb"), ("c", "cc")]
    assert all(n.startswith("persona-fit") for n in names.values())
    assert in_threads({"x": job("x")}, 2) == {"x": "xx"} and names["x"] == threading.main_thread().name


def test_the_multi_class_target_starts_first_and_workers_follow_the_setting() -> None:
    order = [t.key for t in costliest_first(TARGETS, CATEGORIES)]
    assert order[0] == "category" and order[1:] == [t.key for t in TARGETS if t.key != "category"]
    assert fit_workers(FAST.model_copy(update={"fit_workers": 5}), 3) == 3
    assert fit_workers(FAST.model_copy(update={"fit_workers": 1}), 3) == 1
    assert fit_workers(FAST.model_copy(update={"fit_workers": 0}), 3) >= 1
