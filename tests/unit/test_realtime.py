"""Real-time activity counters (pure functions; the push itself is tested against a real store)."""

import numpy as np
import pandas as pd

from features.realtime import fold, summarise

NOON = pd.Timestamp("2026-11-02 00:20", tz="UTC")


def _events(times: list[pd.Timestamp], types: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"user_id": "u1", "timestamp": times, "event_type": types,
                         "amount": [10.0 if t == "purchase" else None for t in types]})


def test_last_hour_crosses_midnight_and_today_does_not() -> None:
    ev = _events([NOON - pd.Timedelta(minutes=m) for m in (50, 30, 0)], ["page_view", "page_view", "purchase"])
    s = summarise(ev).loc["u1"]
    assert s["events"] == 1 and s["recent"] == 3 and s["spend"] == 10.0


def test_fold_adds_on_the_same_day_and_restarts_on_a_new_one() -> None:
    new = summarise(_events([NOON], ["page_view"]))
    day = int(NOON.timestamp() // 86400)
    same = pd.DataFrame({"activity_day": [day], "events_today": [5], "purchases_today": [1], "spend_today": [3.0],
                         "events_last_hour": [2], "last_event_ts": [NOON.timestamp() - 60]}, index=["u1"])
    assert fold(new, same)["events_today"].tolist() == [6]
    assert fold(new, same)["events_last_hour"].tolist() == [3]
    older = same.assign(activity_day=day - 1)
    assert fold(new, older)["events_today"].tolist() == [1]
    unknown = same.iloc[:0].reindex(["u1"]).astype(float)
    assert fold(new, unknown)["events_today"].tolist() == [1]


def test_late_events_never_roll_counters_back() -> None:
    new = summarise(_events([NOON - pd.Timedelta(days=1)], ["page_view"]))
    day = int(NOON.timestamp() // 86400)
    stored = pd.DataFrame({"activity_day": [day], "events_today": [50], "purchases_today": [0], "spend_today": [0.0],
                           "events_last_hour": [0], "last_event_ts": [NOON.timestamp()]}, index=["u1"])
    assert fold(new, stored).empty
    assert np.isfinite(stored["events_today"]).all()
