"""The service's door: personal properties scrubbed before the event log, forgotten people refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from base.config import Settings
from base.pseudonym import pseudonym, suppression_token, token
from base.suppression import Suppression, add_tokens
from serving.erasure import ERASED, refuse_suppressed
from serving.events import check_events, log_records

pytestmark = pytest.mark.privacy
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _event(user: str, **kw: object) -> dict:
    return {"user_id": user, "event_type": "page_view", "timestamp": (NOW - timedelta(minutes=1)).isoformat()} | kw


def test_properties_are_scrubbed_before_the_event_log(settings: Settings) -> None:
    checked = check_events([_event("u1", properties={"email": "Jane@Example.com", "name": "Jane", "plan": "gold",
                                                     "note": "call +49-170-5551234"})], settings, NOW)
    logged = log_records(checked.events)[0]["properties"]
    assert "Jane" not in logged and "5551234" not in logged and '"plan":"gold"' in logged.replace(" ", "")
    assert pseudonym("jane@example.com", settings.hash_salt, "email") in logged


def test_events_of_forgotten_people_are_refused(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "suppressed.txt"
    suppression = Suppression(path, settings.hash_salt)
    batch = check_events([_event("u1"), _event("u2"), _event("u3", anonymous_id="a-9")], settings, NOW)
    assert refuse_suppressed(batch, suppression) == batch  # nobody forgotten: unchanged
    visitor = token("a-9", settings.hash_salt, "anonymous")  # as the stores hold it (pseudonymised at the door)
    assert [e.anonymous_id for e in batch.events] == [None, None, visitor]
    add_tokens(path, [suppression_token("u1", settings.hash_salt), suppression_token(visitor, settings.hash_salt)])
    kept = refuse_suppressed(batch, suppression)
    assert [e.user_id for e in kept.events] == ["u2"] and kept.positions == [1]
    assert [(r.index, r.reason) for r in kept.rejected] == [(0, ERASED), (2, ERASED)]
