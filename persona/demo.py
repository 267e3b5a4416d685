"""The growing demo (``persona run``): after the first build, replay further days of sample events
(one with an injected drift), run the update after each, and end with the report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from base.config import Settings
from persona.update import UpdateSummary, record_first_build, run_update


@dataclass
class DemoSummary:
    """What the replayed days did."""

    updates: list[tuple[str, UpdateSummary]] = field(default_factory=list)
    report: Path | None = None
    service_versions: dict[str, str] = field(default_factory=dict)

    @property
    def personas_moved(self) -> int:
        """Persona records appended over the replayed days (changed personas)."""
        return sum(u.personas_changed for label, u in self.updates if label != "baseline")

    @property
    def segment_moves(self) -> int:
        """Users who changed segment over the replayed days (counted per update)."""
        return sum(u.segment_changes for label, u in self.updates if label != "baseline")

    @property
    def promoted(self) -> list[str]:
        """Versions promoted to champion by the gate."""
        return [p for _, u in self.updates for p in u.promoted]

    @property
    def champions(self) -> dict[str, str]:
        """Target -> version of every champion the gate promoted (the newest per target)."""
        out: dict[str, str] = {}
        for _, u in self.updates:
            out.update(u.promoted_versions)
        return out

    def gate_lines(self) -> list[str]:
        """Why each trained challenger was promoted or refused."""
        return [f"{label}: {target}: {why}" for label, u in self.updates for target, why in u.gate.items()]


def replay_and_update(settings: Settings, days: int = 3, drift_on: int = 2,
                      on_update: Callable[[str, UpdateSummary], None] | None = None,
                      progress: Any | None = None) -> DemoSummary:
    """Score the first build (baseline), then ``days`` times: write the next day's events into the
    inbox (with a drift on day ``drift_on``, 1-based) and run the update; finally write the report."""
    from persona.report import write_report
    from persona.sample_data import Drift, next_replay_offset, replay_day

    record_first_build(settings)  # the first build applied feature_repo/ and materialized
    demo = DemoSummary()

    def run(label: str) -> None:
        summary = run_update(settings, progress)
        demo.updates.append((label, summary))
        if on_update:
            on_update(label, summary)

    run("baseline")
    for k in range(1, days + 1):
        offset = next_replay_offset(settings)
        drift = Drift() if k == drift_on else None
        written = replay_day(settings, offset, drift=drift)
        run(f"day {written.day}" + (" (drift injected)" if drift else ""))
    demo.report = write_report(settings)
    return demo


def wait_for_versions(url: str, user: str, expected: dict[str, str], timeout: float) -> dict[str, str]:
    """Ask the running service until it answers with the ``expected`` model versions (or time runs out)."""
    import httpx

    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while True:
        try:
            resp = httpx.post(f"{url}/persona", json={"user_ids": [user]}, timeout=10)
            resp.raise_for_status()
            seen = {k: str(v) for k, v in resp.json()["personas"][0]["model_versions"].items() if v is not None}
        except (httpx.HTTPError, KeyError, IndexError, ValueError):
            pass
        if all(seen.get(k) == v for k, v in expected.items()) or time.monotonic() > deadline:
            return seen
        time.sleep(1.0)


def realtime_event(url: str, key: str, user: str, before: dict[str, Any], amount: float = 400.0) -> list[str]:
    """Post one purchase for ``user`` to ``POST /events`` and describe how the persona moved.

    The purchase is dated a minute before the user's feature snapshot, inside the sample's simulated
    timeline (the sample history ends weeks before today): the replayed days that follow then carry
    on from it instead of jumping to the wall-clock date.
    """
    from datetime import datetime, timedelta, timezone

    import httpx

    snapshot = before.get("feature_timestamp")
    when = (datetime.fromisoformat(snapshot) if snapshot else datetime.now(timezone.utc)) - timedelta(minutes=1)
    event = {"user_id": user, "event_type": "purchase", "timestamp": when.isoformat(timespec="seconds"),
             "amount": amount, "currency": "EUR", "category": "electronics", "event_id": f"demo-{when:%Y%m%d%H%M%S}"}
    resp = httpx.post(f"{url}/events", json={"events": [event]}, headers={"X-API-Key": key}, timeout=30)
    resp.raise_for_status()
    body = resp.json()
    if not body["personas"]:
        return [f"POST /events: {body['accepted']} accepted, {body['duplicates']} duplicates"]
    after = body["personas"][0]
    return [
        f"POST {url}/events (a {amount:.0f} EUR purchase by {user}) → {resp.status_code}, "
        f"{body['accepted']} accepted; the persona moved at once:",
        f"  segment {before['segment']} → {after['segment']}, predicted spend {before['predicted_spend']:.2f} → "
        f"{after['predicted_spend']:.2f}, churn risk {before['churn_risk']:.3f} → {after['churn_risk']:.3f}, "
        f"features of {after['feature_timestamp']}",
    ]
