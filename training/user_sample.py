"""The training sample of users: a stable hash of the user id, the same users at every cutoff, on every
engine and in every run (``training.sample_share``)."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd


def in_sample(users: pd.Series, share: float) -> np.ndarray:
    """Whether each row's user is in the ``share`` of users whose id hashes below it (each id hashed once)."""
    if share >= 1:
        return np.ones(len(users), dtype=bool)
    codes, unique = pd.factorize(users.astype(str))
    digest = np.array([int.from_bytes(hashlib.blake2b(u.encode(), digest_size=8).digest(), "big") for u in unique],
                      dtype=np.uint64)
    chosen = digest < np.uint64(share * float(2 ** 64 - 1))
    return chosen[codes] & (codes >= 0)


def sampled(labels: pd.DataFrame, share: float) -> pd.DataFrame:
    """The label rows of the users in the sample (:func:`in_sample`)."""
    if share >= 1:
        return labels
    return labels.loc[in_sample(labels["user_id"], share)]
