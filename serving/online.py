"""One consistent online feature read per request, from the Feast online store, as a model matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from features.store import FEATURE_SERVICE

if TYPE_CHECKING:
    from feast import FeatureStore


class OnlineFeatures:
    """Reads the ``persona_v1`` features of a batch of users in one query (features/online_reader.py)."""

    def __init__(self, store: "FeatureStore", service: str = FEATURE_SERVICE) -> None:
        from features.online_reader import OnlineReader

        self.reader = OnlineReader(store, service)
        self._columns: dict[tuple[str, ...], np.ndarray] = {}

    def columns(self, features: Sequence[str]) -> np.ndarray:
        """Where each of ``features`` sits in the service's columns (a missing one is an error)."""
        key = tuple(features)
        found = self._columns.get(key)
        if found is None:
            missing = [f for f in features if f not in self.reader.features]
            if missing:
                raise KeyError(f"features not served by {self.reader.service}: {missing}")
            found = np.array([self.reader.features.index(f) for f in features], dtype=np.intp)
            self._columns[key] = found
        return found

    def read(self, user_ids: Sequence[str], features: Sequence[str],
             request_ts: float | None = None) -> tuple[np.ndarray, list[float | None]]:
        """The users' values of ``features`` (a float matrix in that order, NaN when missing) and each
        user's snapshot time (epoch seconds; None when the user is unknown). Time-dependent features
        (recency, tenure) are as of ``request_ts`` (default now)."""
        batch = self.reader.read(user_ids, request_ts)
        return batch.values[:, self.columns(features)], batch.times
