"""The persona history: only changed personas are appended, atomically, and read back as timelines,
migrations and the current persona."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pandas as pd
import pytest

from base.config import Settings
from scoring.history import (
    append_history,
    history_root,
    latest_personas,
    migration,
    read_history,
    segment_sizes,
    update_times,
)
from tests.conftest import settings_in

DAY1, DAY2 = pd.Timestamp("2026-11-01", tz="UTC"), pd.Timestamp("2026-11-02", tz="UTC")


def personas(day: pd.Timestamp, segments: list[str], spend: list[float], churn: list[float] | None = None,
             version: str = "1") -> pd.DataFrame:
    """A scoring run's output for users u0, u1, ..."""
    n = len(segments)
    return pd.DataFrame({"user_id": [f"u{i}" for i in range(n)], "segment": segments, "predicted_spend": spend,
                         "churn_risk": churn or [0.2] * n, "spend_version": version, "churn_version": version,
                         "feature_timestamp": day, "scored_at": pd.Timestamp.now(tz="UTC")})


def test_only_changed_personas_are_appended(settings: Settings) -> None:
    assert append_history(settings, personas(DAY1, ["a", "b", "c"], [10, 20, 30]), "batch") == 3
    # u0 unchanged, u1 changes segment, u2 moves spend by more than the tolerance (5)
    assert append_history(settings, personas(DAY2, ["a", "a", "c"], [12, 20, 40]), "batch") == 2
    # the same run again (a re-run after a crash) appends nothing
    assert append_history(settings, personas(DAY2, ["a", "a", "c"], [12, 20, 40]), "batch") == 0
    # a churn move beyond its tolerance counts; a smaller one does not
    assert append_history(settings, personas(DAY2, ["a", "a", "c"], [12, 20, 40], [0.2, 0.3, 0.22]), "realtime") == 1
    rows = read_history(settings)
    assert len(rows) == 6 and set(rows["source"]) == {"batch", "realtime"}
    current = latest_personas(settings).set_index("user_id")
    assert current.loc["u1", "segment"] == "a" and current.loc["u1", "churn_risk"] == pytest.approx(0.3)
    assert current.loc["u0", "event_timestamp"] == DAY1  # unchanged: still the first record


def test_history_is_day_partitioned_and_versions_are_kept(settings: Settings) -> None:
    append_history(settings, personas(DAY1, ["a"], [1.0], version="3"), "batch")
    files = sorted(history_root(settings).rglob("*.parquet"))
    assert [f.parent.name for f in files] == ["date=2026-11-01"]
    row = read_history(settings, "u0").iloc[0]
    assert (row["spend_version"], row["churn_version"], row["feature_timestamp"]) == ("3", "3", DAY1)
    assert not list(history_root(settings).rglob("*.tmp"))


def test_stale_rows_do_not_replace_a_newer_persona(settings: Settings) -> None:
    append_history(settings, personas(DAY2, ["a"], [10.0]), "realtime")
    assert append_history(settings, personas(DAY1, ["b"], [90.0]), "batch") == 0
    assert latest_personas(settings)["segment"].tolist() == ["a"]


def test_migration_and_segment_sizes_between_updates(settings: Settings) -> None:
    append_history(settings, personas(DAY1, ["a", "b", "c"], [10, 20, 30]), "batch")
    append_history(settings, personas(DAY2, ["b", "b", "c", "a"], [10, 20, 30, 5]), "batch")
    assert update_times(settings) == [DAY1, DAY2]
    m = migration(settings, "2026-11-01", "2026-11-02")
    assert m.loc["a", "b"] == 1 and m.loc["b", "b"] == 1 and m.loc["c", "c"] == 1 and m.loc["(new)", "a"] == 1
    assert int(m.to_numpy().sum()) == 4
    sizes = segment_sizes(settings)
    assert sizes.loc[DAY1].to_dict() == {"a": 1, "b": 1, "c": 1}
    assert sizes.loc[DAY2].to_dict() == {"a": 1, "b": 2, "c": 1}
    assert latest_personas(settings, as_of=DAY1)["segment"].tolist() == ["a", "b", "c"]
    with pytest.raises(ValueError, match="before"):
        migration(settings, "2026-11-02", "2026-11-01")


def test_bad_frames_are_refused_with_the_column_named(settings: Settings) -> None:
    with pytest.raises(ValueError, match="feature_timestamp"):
        append_history(settings, personas(DAY1, ["a"], [1.0]).drop(columns="feature_timestamp"), "batch")
    bad = personas(DAY1, ["a", "b"], [1.0, float("nan")])
    with pytest.raises(ValueError, match="predicted_spend.*u1"):
        append_history(settings, bad, "batch")
    with pytest.raises(ValueError, match="source"):
        append_history(settings, personas(DAY1, ["a"], [1.0]), "bad source/../x")


def test_the_latest_cache_gives_the_same_answer(settings: Settings) -> None:
    for k in range(25):  # more files than the cache threshold
        append_history(settings, personas(DAY1 + pd.Timedelta(hours=k), ["a", "b"], [10.0 * k, 7.0 * k]), "realtime")
    first = latest_personas(settings)  # writes the cache
    assert (settings.data_dir / "history" / "latest.parquet").exists()
    append_history(settings, personas(DAY2, ["z", "b"], [1.0, 1.0]), "batch")
    again = latest_personas(settings).set_index("user_id")
    assert again.loc["u0", "segment"] == "z" and again.loc["u1", "predicted_spend"] == 1.0
    assert first.set_index("user_id").loc["u1", "predicted_spend"] == pytest.approx(7.0 * 24)
    (settings.data_dir / "history" / "latest.parquet").unlink()
    assert latest_personas(settings).set_index("user_id").equals(again)


def _append_from_process(data_dir: str, worker: int) -> int:
    s = settings_in(Path(data_dir))
    total = 0
    for k in range(5):
        frame = personas(DAY1 + pd.Timedelta(minutes=worker * 10 + k), ["a"] * 20, [float(worker * 100 + k * 10)] * 20)
        frame["user_id"] = [f"w{worker}-{i}" for i in range(20)]
        total += append_history(s, frame, "realtime")
    return total


def test_several_processes_append_without_losing_rows(settings: Settings) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        counts = pool.starmap(_append_from_process, [(str(settings.data_dir), w) for w in range(3)])
    assert counts == [100, 100, 100]
    rows = read_history(settings)
    assert len(rows) == 300 and rows.groupby("user_id").size().eq(5).all()


def _append_same_change(data_dir: str) -> int:
    s = settings_in(Path(data_dir))
    return append_history(s, personas(DAY2, ["b"] * 200, [50.0] * 200), "realtime")


def test_the_same_change_from_several_processes_is_recorded_once(settings: Settings) -> None:
    append_history(settings, personas(DAY1, ["a"] * 200, [10.0] * 200), "batch")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        counts = pool.map(_append_same_change, [str(settings.data_dir)] * 3)
    assert sorted(counts) == [0, 0, 200]
    assert len(read_history(settings)) == 400
