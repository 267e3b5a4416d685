"""The sample history at scale: a population drawn and written in parts, at a chosen event rate.

:func:`persona.sample_data.generate_sample_data` holds the whole history in memory (user × day
matrices and every event as Python strings), which is fine for the demo's 5,000 users but not for
a million. Here the users are drawn in parts of ``part_users`` (each with its own random stream,
user numbers, e-mail numbers, order and ticket ids), each part rendered and written to its own
monthly files per channel (``clickstream_2026-08_p003.jsonl``) before the next is drawn, so memory
is bounded by one part. The channels keep their realism (formats, mess, duplicates, identities);
the only change is the session rate, scaled so that the clean events per user and day come to
``rate`` (measured on a calibration population of the same configuration).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta

import numpy as np

from base.config import Settings
from base.paths import DataPaths
from persona.sample_data import (
    SampleSummary,
    _atomic_write,
    _catalogue,
    _channel_frames,
    _ground_truth,
    _population,
    _rng,
    _Timeline,
    _write_frames,
    user_ids,
)

CALIBRATION_USERS = 1500


def _currencies(settings: Settings) -> tuple[list[str], np.ndarray]:
    """Currencies (base first) and their rates."""
    currencies = [settings.base_currency] + sorted(c for c in settings.fx_rates if c != settings.base_currency)
    return currencies, np.array([settings.fx_rates[c] for c in currencies])


def natural_rate(settings: Settings, days: int, seed: int) -> float:
    """Clean events per registered user and day the generator draws at its own session rates."""
    tl = _Timeline(settings.sample.end_date - timedelta(days=days), days)
    currencies, fx = _currencies(settings)
    categories = list(settings.features.categories)
    pop = _population(CALIBRATION_USERS, days, settings.sample.switch_share, categories, currencies, seed)
    cat = _catalogue(categories, _rng(seed, "catalogue"))
    _, frames = _channel_frames(settings, tl, currencies, fx, pop, user_ids(CALIBRATION_USERS), cat, seed)
    return sum(len(f) for f in frames.values()) / (CALIBRATION_USERS * days)


def _draw_part(settings: Settings, k: int, parts: int, users: int, part_users: int, days: int,
               activity: float, seed: int) -> tuple[dict[str, list], int, int, str]:
    """Draw and write part ``k``: (files per channel, events, rows, its ground-truth CSV lines)."""
    tl = _Timeline(settings.sample.end_date - timedelta(days=days), days)
    currencies, fx = _currencies(settings)
    categories = list(settings.features.categories)
    cat = _catalogue(categories, _rng(seed, "catalogue"))
    width = max(6, len(str(users)))
    first = 1 + k * part_users
    n = min(part_users, users - k * part_users)
    part_seed = seed * 100_003 + k if parts > 1 else seed
    pop = _population(n, days, settings.sample.switch_share, categories, currencies, part_seed, first)
    ids = user_ids(n, first, width)
    pop, frames = _channel_frames(settings, tl, currencies, fx, pop, ids, cat, part_seed, activity)
    if parts > 1:  # order and ticket ids are numbered per part: make them unique over the parts
        for name, prefix in (("orders", "O"), ("crm", "T")):
            frames[name]["event_id"] = np.strings.add(f"{prefix}{k:04d}-", frames[name]["event_id"]
                                                      .to_numpy().astype(str)).astype(object)
    written, n_events, n_rows = _write_frames(settings, frames, tl, part_seed, f"_p{k:04d}" if parts > 1 else "")
    truth = _ground_truth(pop, ids, tl).to_csv(index=False, header=k == 0, lineterminator="\n")
    return written, n_events, n_rows, truth


def generate_scaled_sample(settings: Settings, users: int, days: int, rate: float | None = None,
                           part_users: int = 50_000, seed: int | None = None,
                           progress: Callable[[int, int, int], None] | None = None,
                           workers: int | None = None) -> SampleSummary:
    """Write ``users`` users' history over ``days`` days into the channel folders, ``part_users`` at a
    time; ``rate``: clean events per user and day (None: the generator's own rate). ``progress(done
    users, total users, events so far)`` is called after each part. Parts are drawn by ``workers``
    processes at once (default: one per core, at most 2: memory is one part per worker); each part has
    its own random stream and files, so the result does not depend on the number of workers."""
    if users <= 0 or days <= 0 or part_users <= 0:
        raise ValueError("users, days and part_users must be positive")
    if rate is not None and rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    seed = settings.sample.seed if seed is None else seed
    activity = 1.0 if rate is None else rate / natural_rate(settings, days, seed)
    parts = (users + part_users - 1) // part_users
    workers = max(1, min(parts, workers if workers is not None else min(2, os.cpu_count() or 1)))
    files: dict[str, list] = {}
    events = rows = 0
    truth = DataPaths(settings.data_dir).ground_truth
    truth_parts = []
    args = [(settings, k, parts, users, part_users, days, activity, seed) for k in range(parts)]
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        drawn = pool.map(_draw_part, *zip(*args)) if pool else (_draw_part(*a) for a in args)
        for k, (written, n_events, n_rows, part_truth) in enumerate(drawn):
            for name, paths in written.items():
                files.setdefault(name, []).extend(paths)
            events += n_events
            rows += n_rows
            truth_parts.append(part_truth)
            if progress is not None:
                progress(min(users, (k + 1) * part_users), users, events)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    _atomic_write(truth, "".join(truth_parts))
    return SampleSummary(users, days, events, rows, files, truth)
