"""Audience syncs: after each ``persona update``, send each audience's destination only who entered and
who left since its last delivered sync, both taken from the persona history (membership as of the last
sync's feature time against membership now). A webhook gets a signed JSON payload
(``X-Persona-Signature: sha256=<HMAC-SHA256 of the body>``, the same ``delivery_id`` on every retry); a
CSV drop gets one file per sync (``user_id,change``). Each try is logged in
``<data>/studio/deliveries.jsonl``; a destination that stays down is logged as failed and the update
goes on (the next sync sends everything since the last delivered one)."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from base.config import Settings
from studio.audiences import Audience, load_audiences
from studio.files import (
    append_line,
    read_json,
    read_lines,
    studio_dir,
    write_atomic,
    write_json,
)

SIGNATURE_HEADER = "X-Persona-Signature"


@dataclass(frozen=True)
class SyncResult:
    """One audience's sync."""

    audience: str
    status: str  # delivered | nothing to send | failed | no destination
    entered: int
    left: int
    attempts: int
    error: str = ""


def sign(secret: str, body: bytes) -> str:
    """The signature header value of a payload."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _state_path(settings: Settings, name: str) -> Path:
    return studio_dir(settings) / "sync" / f"{name}.json"


def log_path(settings: Settings) -> Path:
    """The delivery log."""
    return studio_dir(settings) / "deliveries.jsonl"


def deliveries(settings: Settings, audience: str | None = None, last: int = 50) -> list[dict[str, Any]]:
    """The newest delivery attempts (of one audience when given), newest first."""
    rows = [r for r in read_lines(log_path(settings)) if audience is None or r.get("audience") == audience]
    return rows[-last:][::-1]


PersonasAsOf = Callable[[pd.Timestamp | None], pd.DataFrame]


def personas_as_of(settings: Settings) -> PersonasAsOf:
    """Each user's persona as of a feature time (None: now), from the history; each time is read once."""
    from scoring.history import latest_personas

    memo: dict[pd.Timestamp | None, pd.DataFrame] = {}

    def at(when: pd.Timestamp | None) -> pd.DataFrame:
        if when not in memo:
            memo[when] = latest_personas(settings, as_of=when)
        return memo[when]

    return at


def changes(settings: Settings, audience: Audience, since: pd.Timestamp | None,
            personas: PersonasAsOf | None = None) -> tuple[list[str], list[str], pd.Timestamp | None]:
    """Users who entered and left the audience between ``since`` (feature time of the last delivered sync;
    None: never synced) and now, from the persona history; and the feature time of now."""
    personas = personas or personas_as_of(settings)
    now = personas(None)
    if now.empty:
        return [], [], since
    as_of = pd.Timestamp(now["event_timestamp"].max())
    before = personas(since) if since is not None else now.iloc[0:0]
    inside_now = set(now.loc[audience.members(now), "user_id"].astype(str))
    inside_before = set(before.loc[audience.members(before), "user_id"].astype(str)) if len(before) else set()
    return sorted(inside_now - inside_before), sorted(inside_before - inside_now), as_of


def _send_webhook(settings: Settings, audience: Audience, body: bytes) -> None:
    import httpx

    secret = os.environ.get(audience.secret_env)
    if not secret:
        raise RuntimeError(f"environment variable {audience.secret_env} (the signing secret) is not set")
    resp = httpx.post(audience.url, content=body, timeout=settings.studio.sync_timeout_seconds,
                      headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body)})
    if resp.status_code >= 300:
        raise RuntimeError(f"{audience.url} answered {resp.status_code}: {resp.text[:200]}")


def _drop_csv(settings: Settings, audience: Audience, payload: dict[str, Any]) -> None:
    buf = io.StringIO()
    rows = [(u, "entered") for u in payload["entered"]] + [(u, "left") for u in payload["left"]]
    pd.DataFrame(rows, columns=["user_id", "change"]).to_csv(buf, index=False)
    stamp = pd.Timestamp(payload["as_of"]).strftime("%Y%m%dT%H%M%S")
    write_atomic(audience.csv_folder(settings) / f"{audience.name}-{stamp}-{payload['delivery_id'][:8]}.csv",
                 buf.getvalue().encode())


def sync_audience(settings: Settings, audience: Audience, sleep: Callable[[float], Any] = time.sleep,
                  personas: PersonasAsOf | None = None) -> SyncResult:
    """Deliver the audience's changes since its last delivered sync, with retries; log every try."""
    state = read_json(_state_path(settings, audience.name), {})
    since = pd.Timestamp(state["as_of"]) if state.get("as_of") else None
    entered, left, as_of = changes(settings, audience, since, personas)
    if audience.destination == "none":
        return SyncResult(audience.name, "no destination", len(entered), len(left), 0)
    if not entered and not left:
        if as_of is not None:
            write_json(_state_path(settings, audience.name), {**state, "as_of": str(as_of)})
        return SyncResult(audience.name, "nothing to send", 0, 0, 0)
    payload = {"audience": audience.name, "delivery_id": uuid.uuid4().hex, "as_of": str(as_of),
               "previous_as_of": str(since) if since is not None else None,
               "entered": entered, "left": left, "sent_at": datetime.now(UTC).isoformat(timespec="seconds")}
    body = json.dumps(payload).encode()
    cfg, error = settings.studio, ""
    for attempt in range(1, cfg.sync_attempts + 1):
        try:
            if audience.destination == "webhook":
                _send_webhook(settings, audience, body)
            else:
                _drop_csv(settings, audience, payload)
            error = ""
        except Exception as e:  # noqa: BLE001  a destination that is down is logged, never raised into the update
            error = str(e) or type(e).__name__
        append_line(log_path(settings), {"audience": audience.name, "delivery_id": payload["delivery_id"],
                                         "destination": audience.destination, "attempt": attempt,
                                         "status": "failed" if error else "delivered", "entered": len(entered),
                                         "left": len(left), "as_of": str(as_of), "error": error,
                                         "at": datetime.now(UTC).isoformat(timespec="seconds")})
        if not error:
            write_json(_state_path(settings, audience.name), {"as_of": str(as_of), "delivery_id": payload["delivery_id"]})
            return SyncResult(audience.name, "delivered", len(entered), len(left), attempt)
        if attempt < cfg.sync_attempts:
            sleep(cfg.sync_backoff_seconds * 2 ** (attempt - 1))
    return SyncResult(audience.name, "failed", len(entered), len(left), cfg.sync_attempts, error)


def sync_all(settings: Settings) -> list[SyncResult]:
    """Sync every audience that has a destination."""
    personas = personas_as_of(settings)  # audiences synced together read each point in time once
    return [sync_audience(settings, a, personas=personas) for a in load_audiences(settings).values()
            if a.destination != "none"]
