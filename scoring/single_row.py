"""LightGBM predictions of one row at a time without the per-call set-up of ``Booster.predict``.

``Booster.predict`` builds a predictor for every call (parameters parsed, the trees prepared, output
buffers sized): for one row that set-up costs more than walking the trees (measured on the bench's
champions: 24 -> 5 us, 19 -> 13 us, 390 -> 41 us per prediction; contributions, whose TreeSHAP
dominates, gain little: 452 -> 436 us for a 118-tree model). LightGBM's
C API has a single-row path that keeps its predictor between calls
(``LGBM_BoosterPredictForMatSingleRowFastInit`` once, ``LGBM_BoosterPredictForMatSingleRowFast`` per
row): the same predictor code on the same row, so the same numbers, bit for bit (checked against
``Booster.predict`` in tests/unit/test_single_row.py). The service scores a request's few users
with it; batches go through ``Booster.predict``.

Thread-safe: LightGBM locks its booster around a single-row prediction.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

NORMAL, RAW, CONTRIB = 0, 1, 3  # C_API_PREDICT_NORMAL (with the objective's transform), _RAW_SCORE, _CONTRIB
_FLOAT64 = 1  # C_API_DTYPE_FLOAT64


class RowPredictor:
    """Single-row predictions and contributions of one ``lightgbm.Booster`` (all its iterations)."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster  # kept alive while the fast configurations point at it
        self.n_features = int(booster.num_feature())
        self.n_outputs = int(booster.num_model_per_iteration())
        self._configs: dict[int, ctypes.c_void_p] = {}
        for kind in (NORMAL, RAW, CONTRIB):
            self._configs[kind] = self._init(kind)

    @staticmethod
    def supports(booster: Any) -> bool:
        """True for a plain ``lightgbm.Booster`` whose library has the single-row path."""
        try:
            import lightgbm
            from lightgbm.basic import _LIB
        except ImportError:
            return False
        return isinstance(booster, lightgbm.Booster) and hasattr(_LIB, "LGBM_BoosterPredictForMatSingleRowFast")

    def _init(self, kind: int) -> ctypes.c_void_p:
        from lightgbm.basic import _LIB, _c_str, _safe_call

        config = ctypes.c_void_p()
        _safe_call(_LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
            self.booster._handle, ctypes.c_int(kind), ctypes.c_int(0), ctypes.c_int(-1),
            ctypes.c_int(_FLOAT64), ctypes.c_int32(self.n_features), _c_str("num_threads=1"), ctypes.byref(config)))
        return config

    def _rows(self, x: np.ndarray, kind: int, width: int) -> np.ndarray:
        from lightgbm.basic import _LIB, _safe_call

        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got shape {x.shape}")
        config = self._configs[kind]
        out = np.empty((len(x), width), dtype=np.float64)
        length = ctypes.c_int64()
        double_p = ctypes.POINTER(ctypes.c_double)
        for i in range(len(x)):
            _safe_call(_LIB.LGBM_BoosterPredictForMatSingleRowFast(
                config, x[i].ctypes.data_as(ctypes.c_void_p), ctypes.byref(length), out[i].ctypes.data_as(double_p)))
            if length.value != width:
                raise RuntimeError(f"LightGBM returned {length.value} values per row, expected {width}")
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        """What ``booster.predict(x)`` returns: one value per row, or rows of class probabilities."""
        out = self._rows(x, NORMAL, self.n_outputs)
        return out[:, 0] if self.n_outputs == 1 else out

    def raw(self, x: np.ndarray) -> np.ndarray:
        """What ``booster.predict(x, raw_score=True)`` returns (before the objective's transform)."""
        out = self._rows(x, RAW, self.n_outputs)
        return out[:, 0] if self.n_outputs == 1 else out

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """What ``booster.predict(x, pred_contrib=True)`` returns (per output: features, then the bias)."""
        return self._rows(x, CONTRIB, (self.n_features + 1) * self.n_outputs)

    def close(self) -> None:
        """Free the fast configurations."""
        if not self._configs:
            return
        from lightgbm.basic import _LIB

        configs, self._configs = self._configs, {}
        for config in configs.values():
            _LIB.LGBM_FastConfigFree(config)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
