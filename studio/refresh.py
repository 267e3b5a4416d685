"""The studio's part of ``persona update`` (one call at its end): rebuild the aggregates the pages show,
then sync every audience. Neither may fail the update: a failure is reported in the returned line."""

from __future__ import annotations

import logging

from base.config import Settings

log = logging.getLogger("persona.studio")


def after_update(settings: Settings) -> str:
    """Aggregates, then audience syncs; one line saying what happened."""
    from studio.aggregates import build
    from studio.sync import sync_all

    parts = []
    try:
        parts.append(build(settings))
    except Exception as e:  # the update's own results stand; the studio shows the previous aggregates
        log.exception("studio aggregates not rebuilt")
        parts.append(f"studio aggregates NOT rebuilt: {e}")
    try:
        results = sync_all(settings)
    except Exception as e:
        log.exception("audience syncs not run")
        results, parts = [], [*parts, f"audience syncs NOT run: {e}"]
    for r in results:
        if r.status == "nothing to send":
            continue
        parts.append(f"audience {r.audience}: {r.status} (+{r.entered} -{r.left}"
                     + (f", {r.attempts} tries: {r.error}" if r.status == "failed" else "") + ")")
    return "; ".join(parts)
