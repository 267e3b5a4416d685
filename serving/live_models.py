"""Live model swaps: the service follows the registry's ``champion`` aliases while it runs.

The models in use are one immutable ``ModelState``; a request takes it once and uses it to the end,
so a swap (one attribute assignment) never mixes versions within a response and requests in flight
finish on the old models. When an alias moves, the new version is loaded beside the old one and
checked (its features must be served online, the segment rules must still apply); only then is it
swapped in. A version that fails to load is logged, counted and tried again with back-off
(``serving.model_retry_seconds``, doubling up to ``model_retry_max_seconds``); meanwhile the old
models go on serving and ``persona_champion_pending`` is 1. A service whose champions fail to load at
start-up starts anyway: ``/readyz`` answers 503 and requests a 503 naming the error until a retry loads
them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Set
from dataclasses import dataclass
from typing import Literal

from base.config import MlflowSettings, Settings
from serving.metrics import ServiceMetrics
from training.champions import LoadedModel, ServingCheck, champion_refs, load_models
from scoring.scorer import PersonaScorer
from training.registry import ModelRef

log = logging.getLogger("persona.training.champions")
Outcome = Literal["unchanged", "swapped", "failed"]


@dataclass(frozen=True)
class ModelState:
    """The champions in use and the scorer built on them."""

    models: dict[str, LoadedModel]
    scorer: PersonaScorer

    @property
    def versions(self) -> dict[str, str]:
        """Target → registered version."""
        return {t: m.ref.version for t, m in self.models.items()}


class ChampionSwitch:
    """Holds the models in use and swaps them when the champion aliases move."""

    def __init__(self, settings: Settings, ml: MlflowSettings, served: Set[str], metrics: ServiceMetrics,
                 refs: Callable[[MlflowSettings], dict[str, ModelRef]] = champion_refs,
                 packaged: dict[str, LoadedModel] | None = None) -> None:
        """Load the champions from the registry, or use ``packaged`` models (a built bento), which
        are then kept for the life of the process (the registry is not followed)."""
        self.settings, self.ml, self.metrics, self._refs = settings, ml, metrics, refs
        self._usable = ServingCheck(frozenset(served))  # the features the online store serves
        self.follows_registry = packaged is None
        self._failed: dict[str, ModelRef] | None = None
        self.last_error: str | None = None
        self._check_lock = threading.Lock()
        self._retry_wait = settings.serving.model_retry_seconds
        self._next_try = 0.0
        self._state: ModelState | None = None
        if packaged is not None:
            self._state = self._checked(packaged)
            metrics.models_in_use({}, self._state.versions)
        else:
            self.check()  # a failure here is retried by ``watch``; the service is not ready meanwhile

    @property
    def current(self) -> ModelState | None:
        """The models every new request uses (None until the champions have loaded once)."""
        return self._state

    @property
    def pending(self) -> bool:
        """True while the registry's champions are not the ones in use (a load failed; retried)."""
        return self._failed is not None

    def _build(self, refs: dict[str, ModelRef], reuse: dict[str, LoadedModel] | None) -> ModelState:
        return self._checked(load_models(self.ml, refs, reuse))

    def _checked(self, models: dict[str, LoadedModel]) -> ModelState:
        unusable = [f"{m.ref.name} v{m.ref.version} {r}" for k, m in models.items()
                    for r in self._usable.reasons(k, m.booster)]
        if unusable:  # the gate refuses such models; an alias moved by hand can still point at one
            raise RuntimeError("champion models the service cannot use: " + "; ".join(unusable))
        return ModelState(models, PersonaScorer(models, self.settings))

    def check(self, force: bool = False) -> Outcome:
        """Compare the aliases with the models in use; load and swap in what moved. A set of versions
        that failed to load is tried again once its back-off has passed (or at once with ``force``)."""
        if not self.follows_registry:
            return "unchanged"
        with self._check_lock:
            try:
                refs = self._refs(self.ml)
            except Exception as exc:  # registry unreachable: keep serving
                return self._failure(f"cannot read the champion aliases: {exc}", None)
            old = self._state
            if old is not None and refs == {t: m.ref for t, m in old.models.items()}:
                self._failed = None
                self.metrics.champion_pending.set(0)
                return "unchanged"
            if refs == self._failed and not force and time.monotonic() < self._next_try:
                return "failed"
            try:
                new = self._build(refs, old.models if old is not None else None)
            except Exception as exc:
                return self._failure(f"cannot load champions {_describe(refs)}: {exc}", refs)
            self._state = new  # the swap: one reference assignment
            self._failed, self.last_error = None, None
            self._retry_wait = self.settings.serving.model_retry_seconds
            self.metrics.champion_pending.set(0)
            self.metrics.models_in_use(old.versions if old is not None else {}, new.versions)
            self.metrics.model_reloads.labels(outcome="swapped" if old is not None else "loaded").inc()
            log.info("champions %s: %s", "swapped" if old is not None else "loaded", new.versions)
            return "swapped"

    def _failure(self, message: str, refs: dict[str, ModelRef] | None) -> Outcome:
        """Count and log a failed check; the same refs are tried again after a doubling back-off."""
        cfg = self.settings.serving
        if refs is not None and refs == self._failed:
            self._retry_wait = min(self._retry_wait * 2, cfg.model_retry_max_seconds)
        elif refs is not None:
            self._retry_wait = cfg.model_retry_seconds
        self._failed = refs if refs is not None else self._failed
        self._next_try = time.monotonic() + self._retry_wait
        self.last_error = message
        self.metrics.model_reloads.labels(outcome="failed").inc()
        self.metrics.champion_pending.set(1)
        serving = self._state.versions if self._state is not None else "nothing (not ready)"
        log.error("%s; still serving %s; next try in %.0fs", message, serving, self._retry_wait)
        return "failed"

    def wait(self, every: float) -> float:
        """Seconds until the next check: the poll interval, or sooner when a retry is due."""
        if self._failed is None and self._state is not None:
            return every
        return max(0.05, min(every, self._next_try - time.monotonic()))

    def watch(self, stop: threading.Event, every: float) -> None:
        """Check every ``every`` seconds until ``stop`` is set (run in a daemon thread)."""
        while self.follows_registry and not stop.wait(self.wait(every)):
            self.check()


def _describe(refs: dict[str, ModelRef]) -> str:
    return ", ".join(f"{r.name} v{r.version}" for r in refs.values())
