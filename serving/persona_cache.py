"""Scored personas kept per (user, feature snapshot time, model versions).

A persona is a pure function of the user's online features and the champion models, so while
neither changes the scored record can be served again; only its ``feature_age_seconds`` is
recomputed. The real-time event path drops the users it touched (a late event can change features
without moving their timestamp), and a model swap changes the key. ``size = 0`` turns it off.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import datetime

from serving.schemas import PersonaRecord

Key = tuple[str, float, tuple[str, ...]]


class PersonaCache:
    """A bounded LRU of persona records (thread-safe)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Key, PersonaRecord] = OrderedDict()
        self._by_user: dict[str, Key] = {}
        self._lock = threading.Lock()

    def get(self, key: Key, now: datetime) -> PersonaRecord | None:
        """The cached record for this key with its feature age as of ``now``, or None."""
        if self.size <= 0:
            return None
        with self._lock:
            record = self._items.get(key)
            if record is None:
                return None
            self._items.move_to_end(key)
        when = record.feature_timestamp
        age = round((now - when).total_seconds(), 3) if when else None
        return record.model_copy(update={"feature_age_seconds": age})

    def put(self, keys: Sequence[Key], records: Sequence[PersonaRecord]) -> None:
        """Keep freshly scored records (one key each)."""
        if self.size <= 0:
            return
        with self._lock:
            for key, record in zip(keys, records):
                old = self._by_user.get(key[0])
                if old is not None and old != key:
                    self._items.pop(old, None)
                self._items[key] = record
                self._by_user[key[0]] = key
            while len(self._items) > self.size:
                key, _ = self._items.popitem(last=False)
                if self._by_user.get(key[0]) == key:
                    del self._by_user[key[0]]

    def drop(self, users: Iterable[str]) -> None:
        """Forget these users' records (their features changed)."""
        with self._lock:
            for user in users:
                key = self._by_user.pop(user, None)
                if key is not None:
                    self._items.pop(key, None)
