"""Live model swaps: the service follows the registry's ``champion`` aliases while it runs.

The models in use are one immutable ``ModelState``; a request takes it once and uses it to the end,
so a swap (one attribute assignment) never mixes versions within a response and requests in flight
finish on the old models. When an alias moves, the new version is loaded beside the old one and
checked (its features must be served online, the segment rules must still apply); only then is it
swapped in. A version that fails to load is logged, counted and not retried until the aliases move
again; the old models go on serving.
"""

from __future__ import annotations

import logging
import threading
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
        self._state = self._checked(packaged) if packaged is not None else self._build(refs(ml), None)
        self._failed: dict[str, ModelRef] | None = None
        self.last_error: str | None = None
        self._check_lock = threading.Lock()
        metrics.models_in_use({}, self._state.versions)

    @property
    def current(self) -> ModelState:
        """The models every new request uses."""
        return self._state

    def _build(self, refs: dict[str, ModelRef], reuse: dict[str, LoadedModel] | None) -> ModelState:
        return self._checked(load_models(self.ml, refs, reuse))

    def _checked(self, models: dict[str, LoadedModel]) -> ModelState:
        unusable = [f"{m.ref.name} v{m.ref.version} {r}" for k, m in models.items()
                    for r in self._usable.reasons(k, m.booster)]
        if unusable:  # the gate refuses such models; an alias moved by hand can still point at one
            raise RuntimeError("champion models the service cannot use: " + "; ".join(unusable))
        return ModelState(models, PersonaScorer(models, self.settings))

    def check(self) -> Outcome:
        """Compare the aliases with the models in use; load and swap in what moved."""
        if not self.follows_registry:
            return "unchanged"
        with self._check_lock:
            try:
                refs = self._refs(self.ml)
            except Exception as exc:  # registry unreachable: keep serving
                return self._failure(f"cannot read the champion aliases: {exc}")
            old = self._state
            if refs == {t: m.ref for t, m in old.models.items()}:
                return "unchanged"
            if refs == self._failed:
                return "failed"
            try:
                new = self._build(refs, old.models)
            except Exception as exc:
                self._failed = refs
                return self._failure(f"cannot load champions {_describe(refs)}: {exc}")
            self._state = new  # the swap: one reference assignment
            self._failed, self.last_error = None, None
            self.metrics.models_in_use(old.versions, new.versions)
            self.metrics.model_reloads.labels(outcome="swapped").inc()
            log.info("champions swapped: %s -> %s", old.versions, new.versions)
            return "swapped"

    def _failure(self, message: str) -> Outcome:
        self.last_error = message
        self.metrics.model_reloads.labels(outcome="failed").inc()
        log.error("%s; still serving %s", message, self._state.versions)
        return "failed"

    def watch(self, stop: threading.Event, every: float) -> None:
        """Check every ``every`` seconds until ``stop`` is set (run in a daemon thread)."""
        while self.follows_registry and not stop.wait(every):
            self.check()


def _describe(refs: dict[str, ModelRef]) -> str:
    return ", ".join(f"{r.name} v{r.version}" for r in refs.values())
