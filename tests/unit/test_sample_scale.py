"""The sample drawn in parts (persona/sample_scale.py) and the sampled training rows (persona/pipeline.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from base.config import Settings
from persona.pipeline import sampled_fit_rows
from persona.sample_scale import generate_scaled_sample


def test_parts_make_unique_users_ids_and_files_at_the_asked_rate(settings: Settings, tmp_path: Path) -> None:
    s = settings.model_copy(update={"data_dir": tmp_path / "data"})
    seen: list[int] = []
    out = generate_scaled_sample(s, 900, 45, rate=0.3, part_users=400, progress=lambda done, *_: seen.append(done))
    assert seen == [400, 800, 900]
    truth = pd.read_csv(out.ground_truth)
    assert len(truth) == 900 and truth["user_id"].is_unique and truth["user_id"].iloc[-1] == "u000900"
    names = [p.name for paths in out.files.values() for p in paths]
    assert len(names) == len(set(names)) and any("_p0002" in n for n in names)
    orders = pd.concat(pd.read_csv(p, sep=s.channels["orders"].delimiter, dtype=str, on_bad_lines="skip")
                       for p in out.files["orders"])
    ids = orders[s.channels["orders"].columns["event_id"]].dropna()
    assert ids.str.match(r"^O000[0-2]-O\d{7}$").mean() > 0.95  # order ids carry their part: no collisions
    assert 0.24 < out.events / (900 * 45) < 0.4  # calibrated on the generator's own rate
    one = generate_scaled_sample(settings.model_copy(update={"data_dir": tmp_path / "one"}), 900, 45, rate=0.3,
                                 part_users=400, workers=1)  # parts drawn one after another, not two at a time
    for mine, theirs in zip(sorted(p for v in out.files.values() for p in v),
                            sorted(p for v in one.files.values() for p in v), strict=True):
        assert mine.name == theirs.name and mine.read_bytes() == theirs.read_bytes()
    assert out.ground_truth.read_bytes() == one.ground_truth.read_bytes()


def test_sampled_fit_rows_keep_the_same_users_at_fit_cutoffs_and_everyone_at_evaluation() -> None:
    cutoffs = pd.to_datetime(["2026-09-01", "2026-09-08", "2026-09-15"], utc=True)
    users = [f"u{i:06d}" for i in range(2000)]
    labels = pd.DataFrame({"user_id": users * 3, "event_timestamp": cutoffs.repeat(2000)})
    out = sampled_fit_rows(labels, cutoffs[-1], 0.25)
    per_cutoff = out.groupby("event_timestamp")["user_id"].apply(set)
    assert per_cutoff.iloc[0] == per_cutoff.iloc[1] and per_cutoff.iloc[2] == set(users)
    assert 0.2 < len(per_cutoff.iloc[0]) / 2000 < 0.3
    assert sampled_fit_rows(labels, cutoffs[-1], 1.0) is labels


def test_the_refit_takes_the_fit_cutoffs_users_at_the_newest_cutoff() -> None:
    """The served refit learns from every labelled cutoff; with a sample share it takes at the evaluation
    cutoff the same users the fit cutoffs carry (not all of them: that weighed the newest cutoff 1/share
    times as much as each older one and made the refit cost several fits)."""
    from training.labels import Split
    from training.refit import refit_frame

    cutoffs = pd.to_datetime(["2026-09-01", "2026-09-08", "2026-09-15"], utc=True)
    users = [f"u{i:06d}" for i in range(2000)]
    labels = sampled_fit_rows(pd.DataFrame({"user_id": users * 3, "event_timestamp": cutoffs.repeat(2000)}),
                              cutoffs[-1], 0.25)
    split = Split(train=[cutoffs[0]], refit=[cutoffs[1]], evaluation=cutoffs[2])
    rows = refit_frame(labels, split, 0.25)
    per_cutoff = rows.groupby("event_timestamp")["user_id"].apply(set)
    assert len(per_cutoff) == 3 and per_cutoff.iloc[2] == per_cutoff.iloc[0] == per_cutoff.iloc[1]
    assert list(rows.index) == sorted(rows.index)  # the frame's order is kept
    assert len(refit_frame(labels, split, 1.0)) == len(labels)  # no share: every labelled row
