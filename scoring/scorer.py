"""The one scorer: champion models + feature rows → predictions, segments and persona records.

The online service, the batch re-score, the evaluation against the sample's hidden personas and drift
all score through :class:`PersonaScorer`. Each model keeps its own feature list: the scorer reads the
union of them once and hands every model its own columns, so champions trained at different times
(with different feature lists) serve together. Stacked features (training/stacking.py: BG/NBD +
Gamma-Gamma predictions) are not stored anywhere: the scorer computes them for each model from the user's
lifetime features with the parameters logged with that model, the same function training used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from base.config import Settings
from base.segments import assign_segments, check_rules
from scoring.records import CategoryAffinity, Driver, ModelVersions, PersonaRecord
from training.champions import LoadedModel
from training.stacking import INPUTS as STACK_INPUTS
from training.stacking import OFFSET_FEATURES, STACK_FEATURES, linked, offset, stacked_columns, uses_offset
from training.targets import TARGETS, Target, segment_inputs, segment_values

AFFINITY_PREFIX = "affinity_"
SINGLE_ROW_MAX = 8
"""Up to this many rows are predicted row by row through LightGBM's single-row path (scoring/single_row.py:
the same numbers without ``Booster.predict``'s per-call set-up); more go through ``Booster.predict``."""


class PersonaScorer:
    """Scores users from feature rows with the loaded champion models (no I/O)."""

    def __init__(self, models: Mapping[str, LoadedModel], settings: Settings) -> None:
        missing = [t.key for t in TARGETS if t.required and t.key not in models]
        if missing:
            raise ValueError(f"no model for required target(s): {', '.join(missing)}")
        self.targets: list[Target] = [t for t in TARGETS if t.key in models]
        self.models = {t.key: models[t.key] for t in self.targets}
        features: list[str] = []
        for m in self.models.values():
            features += [f for f in m.stored_features if f not in features]
        self.features = features
        """Every stored feature some model needs, in first-use order (the columns of the matrices taken)."""
        derived = [f for m in self.models.values() if m.stacking for f in m.features if f in STACK_FEATURES]
        self.names = features + [f for f in STACK_FEATURES if f in derived]
        """``self.features`` and the features the scorer computes (the columns of contributions)."""
        self._columns = {k: np.array([self.names.index(f) for f in m.features], dtype=int)
                         for k, m in self.models.items()}
        self.settings = settings
        self.rules = settings.segments
        check_rules(self.rules, set(self.features) | set(segment_inputs()))
        self.versions = ModelVersions(**{k: m.ref.version for k, m in self.models.items()})
        self.rules_version = "0"
        """Which edit of the segment rules segments now ("0": the rules the scorer was built with)."""
        self.categories = [f for f in self.features if f.startswith(AFFINITY_PREFIX)]
        self.category_names = list(settings.features.categories)
        from scoring.single_row import RowPredictor

        self._rows = {k: RowPredictor(m.booster) for k, m in self.models.items() if RowPredictor.supports(m.booster)}
        self._index = {name: j for j, name in enumerate(features)}
        self._keys: tuple[str, str] | None = None  # (rules_version, record key)

    def use_rules(self, rules: list, version: str) -> None:
        """Segment with these (already checked) rules from now on: the studio's saved edits, picked up live."""
        if version != self.rules_version:
            self.rules, self.rules_version = rules, version

    def record_key(self) -> str:
        """What a stored record made by this scorer is valid for: the model versions and the rules' edit."""
        from scoring.records import versions_key

        cached = self._keys
        if cached is not None and cached[0] == self.rules_version:
            return cached[1]
        key = versions_key(self.versions.model_dump())
        key = key if self.rules_version == "0" else f"{key};rules={self.rules_version}"
        self._keys = (self.rules_version, key)
        return key

    def matrix(self, values: Mapping[str, Sequence[object]], n: int) -> np.ndarray:
        """Features as a float matrix in ``self.features`` order; missing values are NaN."""
        x = np.full((n, len(self.features)), np.nan)
        for j, name in enumerate(self.features):
            col = values.get(name)
            if col is not None:
                x[:, j] = np.array([np.nan if v is None else v for v in col], dtype=float)
        return x

    def frame_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The rows of a feature frame (snapshots, a training set) as a float matrix in ``self.features``
        order; columns the frame lacks are NaN."""
        return frame.reindex(columns=self.features).to_numpy(dtype=float)

    def extended(self, key: str, x: np.ndarray) -> np.ndarray:
        """``x`` (users × ``self.features``) with the computed columns of ``self.names`` as model ``key``
        computes them (its own stacking parameters; NaN where it has none)."""
        return self._extended_all(x, [key])[key]

    def _extended_all(self, x: np.ndarray, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """:meth:`extended` of each of ``keys``, the stacked columns computed once per set of parameters
        (the champions of one training run share theirs)."""
        extra = len(self.names) - len(self.features)
        if not extra:
            return {k: x for k in keys}
        columns = {f: x[:, self._index[f]] for f in STACK_INPUTS}
        done: dict[tuple, np.ndarray] = {}
        out = {}
        for key in keys:
            params = self.models[key].stacking
            ident = tuple(sorted(params.items())) if params else ()
            if ident not in done:
                added = np.full((len(x), extra), np.nan)
                if params and len(x):
                    stacked = stacked_columns(params, columns, int(params["horizon_days"]))
                    for j, name in enumerate(self.names[len(self.features):]):
                        added[:, j] = stacked[name]
                done[ident] = np.hstack([x, added])
            out[key] = done[ident]
        return out

    def inputs(self, key: str, x: np.ndarray) -> np.ndarray:
        """The columns that model ``key`` was trained on, in its order, for the rows of ``x`` (users ×
        ``self.features``; stacked features computed here)."""
        return self.extended(key, x)[:, self._columns[key]]

    def _offset(self, key: str, inputs: np.ndarray) -> np.ndarray | None:
        """The raw-scale BTYD start of model ``key`` (trained with ``training.btyd_offset``), else None."""
        m = self.models[key]
        if not (m.stacking and uses_offset(key, m.stacking.get("offset"))):
            return None
        return offset(key, inputs[:, m.features.index(OFFSET_FEATURES[key])])

    def predict(self, x: np.ndarray, keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Raw output of every model (or of ``keys``) for the rows of ``x`` (users × ``self.features``)."""
        keys = list(keys if keys is not None else self.models)
        return {k: self._output(k, ext) for k, ext in self._extended_all(x, keys).items()}

    def _output(self, key: str, extended: np.ndarray) -> np.ndarray:
        """Model ``key``'s output for rows already :meth:`extended`."""
        inputs = extended[:, self._columns[key]]
        start = self._offset(key, inputs)
        if start is None:
            return self._predict(key, inputs)
        return linked(key, self._predict(key, inputs, raw_score=True) + start)

    def _predict(self, key: str, inputs: np.ndarray, contrib: bool = False, raw_score: bool = False) -> np.ndarray:
        """``booster.predict`` of one model (a few rows: LightGBM's single-row path, the same numbers)."""
        rows = self._rows.get(key)
        if rows is not None and 0 < len(inputs) <= SINGLE_ROW_MAX:
            if contrib:
                return rows.contributions(inputs)
            return rows.raw(inputs) if raw_score else rows.predict(inputs)
        booster = self.models[key].booster
        if contrib:
            return np.asarray(booster.predict(inputs, pred_contrib=True, num_threads=1), dtype=float)
        if raw_score:
            return np.asarray(booster.predict(inputs, raw_score=True, num_threads=1), dtype=float)
        return np.asarray(booster.predict(inputs, num_threads=1), dtype=float)

    def contributions(self, key: str, x: np.ndarray) -> np.ndarray:
        """Per-feature contributions of model ``key`` (LightGBM ``pred_contrib``), mapped onto
        ``self.names`` columns, plus the bias as the last column."""
        return self._contributions(key, self.extended(key, x))

    def _contributions(self, key: str, extended: np.ndarray) -> np.ndarray:
        """:meth:`contributions` for rows already :meth:`extended`."""
        inputs = extended[:, self._columns[key]]
        raw = self._predict(key, inputs, contrib=True)
        out = np.zeros((len(inputs), len(self.names) + 1))
        out[:, self._columns[key]] = raw[:, :-1]
        out[:, -1] = raw[:, -1]
        start = self._offset(key, inputs)
        if start is not None:  # the BTYD start is the offset feature's contribution (raw scale)
            out[:, self.names.index(OFFSET_FEATURES[key])] += start
        return out

    def segments(self, x: np.ndarray, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Each row's segment from its features and the (finished, possibly smoothed) outputs by target key."""
        rules = self.rules
        named = {c.field for rule in rules for c in rule.all}  # only the columns the rules name
        values = {name: x[:, self._index[name]] for name in named if name in self._index}
        return assign_segments(rules, values | segment_values(outputs), len(x))

    def _drivers(self, contrib: np.ndarray, x: np.ndarray, i: int) -> list[Driver]:
        k = self.settings.serving.top_drivers
        row = contrib[i, :-1]
        top = np.argsort(-np.abs(row))[:k]
        return [Driver(feature=self.names[j], value=None if np.isnan(x[i, j]) else float(x[i, j]),
                       contribution=float(row[j])) for j in top]

    def _classes(self, i: int, probabilities: np.ndarray | None, x: np.ndarray) -> list[CategoryAffinity]:
        top = self.settings.serving.top_categories
        if probabilities is not None:  # the class model's probabilities
            order = np.argsort(-probabilities[i])[:top]
            return [CategoryAffinity(category=self.category_names[j], score=round(float(probabilities[i, j]), 4))
                    for j in order]
        scores = [(c[len(AFFINITY_PREFIX):], x[i, self.features.index(c)]) for c in self.categories]
        scores = sorted((s for s in scores if not np.isnan(s[1]) and s[1] > 0), key=lambda s: -s[1])
        return [CategoryAffinity(category=c, score=round(float(min(s, 1.0)), 4)) for c, s in scores[:top]]

    def score(self, user_ids: Sequence[str], x: np.ndarray, feature_times: Sequence[float | None],
              now: datetime | None = None) -> list[PersonaRecord]:
        """Persona records in request order from ``x`` (users × ``self.features``, NaN = missing);
        users with no features are cold starts (each model's population prior)."""
        now = now or datetime.now(timezone.utc)
        n = len(user_ids)
        known = np.array([bool(t) for t in feature_times], dtype=bool)
        scalar = [t for t in self.targets if t.scalar]
        outputs = {t.key: np.full(n, self.models[t.key].prior) for t in scalar}
        contrib: dict[str, np.ndarray] = {}
        values: dict[str, np.ndarray] = {}
        classes: dict[str, np.ndarray | None] = {t.key: None for t in TARGETS if not t.scalar}
        if known.any():
            extended = self._extended_all(x[known], list(self.models))  # once per request
            raw = {k: self._output(k, ext) for k, ext in extended.items()}
            for t in self.targets:
                if t.scalar:
                    outputs[t.key][known] = raw[t.key]
                    full = np.zeros((n, len(self.names) + 1))
                    full[known] = self._contributions(t.key, extended[t.key])
                    contrib[t.key] = full
                    shown = np.full((n, len(self.names)), np.nan)  # the drivers' values (known users only)
                    shown[known] = extended[t.key]
                    values[t.key] = shown
                else:
                    probabilities = np.zeros((n, raw[t.key].shape[1]))
                    probabilities[known] = raw[t.key]
                    classes[t.key] = probabilities
        finished = {t.key: t.finish(outputs[t.key]) for t in scalar}
        segments = self.segments(x, finished)
        records = []
        for i, user in enumerate(user_ids):
            ts = feature_times[i]
            when = datetime.fromtimestamp(ts, tz=timezone.utc) if ts else None
            predictions: dict[str, object] = {
                t.record_field: round(float(finished[t.key][i]), 2 if t.output == "amount" else 4) for t in scalar}
            predictions.update({t.record_field: self._classes(i, classes[t.key], x) if known[i] else []
                                for t in TARGETS if not t.scalar})
            records.append(PersonaRecord(
                user_id=user,
                cold_start=not known[i],
                segment=str(segments[i]) if known[i] else "unknown",
                **predictions,
                horizon_days=self.settings.training.horizon_days,
                drivers={k: self._drivers(c, values[k], i) for k, c in contrib.items()} if known[i] else {},
                model_versions=self.versions,
                feature_timestamp=when,
                feature_age_seconds=round((now - when).total_seconds(), 3) if when else None,
            ))
        return records
