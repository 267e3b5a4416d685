"""One consistent online feature read per request, from the Feast online store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from features.store import FEATURE_SERVICE

if TYPE_CHECKING:
    from feast import FeatureStore


class OnlineFeatures:
    """Reads the ``persona_v1`` features for a batch of users in one call."""

    def __init__(self, store: "FeatureStore", service: str = FEATURE_SERVICE) -> None:
        self.store = store
        self.service = store.get_feature_service(service)

    def read(self, user_ids: Sequence[str]) -> tuple[dict[str, list[Any]], list[float | None]]:
        """Feature values by name, and each user's snapshot time (None when the user is unknown)."""
        from feast.online_response import TIMESTAMP_POSTFIX

        response = self.store.get_online_features(
            features=self.service, entity_rows=[{"user_id": u} for u in user_ids]
        ).to_dict(include_event_timestamps=True)
        ts_keys = [k for k in response if k.endswith(TIMESTAMP_POSTFIX)]
        times: list[float | None] = [None] * len(user_ids)
        for key in ts_keys:
            for i, t in enumerate(response[key]):
                if t and (times[i] is None or t > times[i]):
                    times[i] = float(t)
        values = {k: v for k, v in response.items() if not k.endswith(TIMESTAMP_POSTFIX)}
        return values, times
