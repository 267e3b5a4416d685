"""Prometheus metrics of the persona service (served with BentoML's own at ``/metrics``).

The metrics are created when the service starts (BentoML sets up multi-process collection first)
and looked up again if a second service instance is created in the same process (tests).
"""

from __future__ import annotations

from typing import Any

STALENESS_BUCKETS = (60, 600, 3600, 6 * 3600, 86400, 2 * 86400, 7 * 86400, 30 * 86400)


def _metric(kind: str, name: str, doc: str, **kwargs: Any) -> Any:
    import prometheus_client

    existing = prometheus_client.REGISTRY._names_to_collectors.get(name)  # noqa: SLF001 - no public lookup
    if existing is not None:
        return existing
    return getattr(prometheus_client, kind)(name, doc, **kwargs)


class ServiceMetrics:
    """Counters and gauges the service updates as it works."""

    def __init__(self) -> None:
        self.events_accepted = _metric("Counter", "persona_events_accepted", "Events accepted by POST /events")
        self.events_rejected = _metric("Counter", "persona_events_rejected", "Events rejected by POST /events",
                                       labelnames=["field"])
        self.personas_served = _metric("Counter", "persona_personas_served", "Personas returned, by segment",
                                       labelnames=["segment"])
        self.model_version = _metric("Gauge", "persona_model_version_info",
                                     "1 for the model version in use per target", labelnames=["target", "version"],
                                     multiprocess_mode="livemax")
        self.model_reloads = _metric("Counter", "persona_model_reloads", "Champion swaps, by outcome",
                                     labelnames=["outcome"])
        self.staleness = _metric("Histogram", "persona_feature_staleness_seconds",
                                 "Age of the feature snapshot behind each persona served", buckets=STALENESS_BUCKETS)
        self.champion_pending = _metric("Gauge", "persona_champion_pending",
                                        "1 while the registry's champions failed to load and are being retried",
                                        multiprocess_mode="livemax")
        self.events_duplicate = _metric("Counter", "persona_events_duplicate",
                                        "Events POST /events had already taken (not folded again)")
        self.records_served = _metric("Counter", "persona_records_served",
                                      "Personas answered, by how: stored record or scored on the request",
                                      labelnames=["source"])
        self.rescore_users_per_second = _metric("Gauge", "persona_rescore_users_per_second",
                                                "Throughput of the last re-score of every user's stored record",
                                                multiprocess_mode="livemax")

    def models_in_use(self, old: dict[str, str], new: dict[str, str]) -> None:
        """Move the version gauge from the old versions to the new ones."""
        for target, version in old.items():
            self.model_version.labels(target=target, version=version).set(0)
        for target, version in new.items():
            self.model_version.labels(target=target, version=version).set(1)

    def served(self, segments: list[str], ages: list[float | None], scored: int) -> None:
        """Count personas by segment and by source (``scored`` of them on the request), and observe
        the age of their features."""
        for segment, age in zip(segments, ages):
            self.personas_served.labels(segment=segment).inc()
            if age is not None:
                self.staleness.observe(max(age, 0.0))
        if scored:
            self.records_served.labels(source="scored").inc(scored)
        if len(segments) > scored:
            self.records_served.labels(source="record").inc(len(segments) - scored)
