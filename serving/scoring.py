"""Turn one online feature read into persona records (segment, predictions, drivers, freshness)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

import numpy as np

from persona.config import Settings
from persona.segments import assign_segments, check_rules
from serving.models import LoadedModel
from serving.schemas import CategoryAffinity, Driver, ModelVersions, PersonaRecord

AFFINITY_PREFIX = "affinity_"


class PersonaScorer:
    """Scores users from a feature snapshot with the loaded champion models (no I/O)."""

    def __init__(self, models: Mapping[str, LoadedModel], settings: Settings) -> None:
        self.models = dict(models)
        self.features = self.models["spend"].features
        if self.models["churn"].features != self.features:
            raise ValueError("spend and churn champions use different feature lists")
        self.settings = settings
        self.rules = settings.segments
        check_rules(self.rules, set(self.features) | {"predicted_spend", "churn_risk"})
        self.versions = ModelVersions(**{t: m.ref.version for t, m in self.models.items()})
        self.categories = [f for f in self.features if f.startswith(AFFINITY_PREFIX)]
        category = self.models.get("category")
        if category is not None and category.features != self.features:
            raise ValueError("the category champion uses a different feature list from spend and churn")
        self.category_names = list(settings.features.categories)

    def matrix(self, values: Mapping[str, Sequence[object]], n: int) -> np.ndarray:
        """Features as a float matrix in model order; missing values are NaN."""
        x = np.full((n, len(self.features)), np.nan)
        for j, name in enumerate(self.features):
            col = values.get(name)
            if col is not None:
                x[:, j] = np.array([np.nan if v is None else v for v in col], dtype=float)
        return x

    def _drivers(self, contrib: np.ndarray, x: np.ndarray, i: int) -> list[Driver]:
        k = self.settings.serving.top_drivers
        row = contrib[i, :-1]
        top = np.argsort(-np.abs(row))[:k]
        return [Driver(feature=self.features[j], value=None if np.isnan(x[i, j]) else float(x[i, j]),
                       contribution=float(row[j])) for j in top]

    def score(self, user_ids: Sequence[str], x: np.ndarray, feature_times: Sequence[float | None],
              now: datetime | None = None) -> list[PersonaRecord]:
        """Persona records in request order from ``x`` (users × ``self.features``, NaN = missing);
        users with no features are cold starts (priors)."""
        now = now or datetime.now(timezone.utc)
        n = len(user_ids)
        known = np.array([bool(t) for t in feature_times])
        spend = np.full(n, self.models["spend"].prior)
        churn = np.full(n, self.models["churn"].prior)
        contrib: dict[str, np.ndarray] = {}
        category_p: np.ndarray | None = None
        if known.any():
            xk = x[known]
            if "category" in self.models:
                category_p = np.zeros((n, len(self.category_names)))
                category_p[known] = self.models["category"].booster.predict(xk, num_threads=1)
            spend[known] = self.models["spend"].booster.predict(xk, num_threads=1)
            churn[known] = self.models["churn"].booster.predict(xk, num_threads=1)
            for key in ("spend", "churn"):
                full = np.zeros((n, len(self.features) + 1))
                full[known] = self.models[key].booster.predict(xk, pred_contrib=True, num_threads=1)
                contrib[key] = full
        seg_values = {name: x[:, j] for j, name in enumerate(self.features)}
        seg_values.update(predicted_spend=spend, churn_risk=churn)
        segments = assign_segments(self.rules, seg_values, n)
        records = []
        for i, user in enumerate(user_ids):
            ts = feature_times[i]
            when = datetime.fromtimestamp(ts, tz=timezone.utc) if ts else None
            top_cats = []
            if known[i] and category_p is not None:  # the next-category model: class probabilities
                order = np.argsort(-category_p[i])[: self.settings.serving.top_categories]
                top_cats = [CategoryAffinity(category=self.category_names[j], score=round(float(category_p[i, j]), 4))
                            for j in order]
            elif known[i] and self.categories:  # no category champion: recent interaction shares
                scores = [(c[len(AFFINITY_PREFIX):], x[i, self.features.index(c)]) for c in self.categories]
                scores = sorted((s for s in scores if not np.isnan(s[1]) and s[1] > 0), key=lambda s: -s[1])
                top_cats = [CategoryAffinity(category=c, score=round(float(min(s, 1.0)), 4))
                            for c, s in scores[: self.settings.serving.top_categories]]
            records.append(PersonaRecord(
                user_id=user,
                cold_start=not known[i],
                segment=str(segments[i]) if known[i] else "unknown",
                predicted_spend=round(float(max(spend[i], 0.0)), 2),
                churn_risk=round(float(np.clip(churn[i], 0.0, 1.0)), 4),
                horizon_days=self.settings.training.horizon_days,
                top_categories=top_cats,
                drivers={k: self._drivers(c, x, i) for k, c in contrib.items()} if known[i] else {},
                model_versions=self.versions,
                feature_timestamp=when,
                feature_age_seconds=round((now - when).total_seconds(), 3) if when else None,
            ))
        return records
