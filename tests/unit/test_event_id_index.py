"""The event-id index (ingestion/event_store.py): membership of a batch's id hashes, probed in sorted
order, answered per position of the batch as set membership would."""

from __future__ import annotations

import numpy as np

from ingestion.event_store import EventIdIndex


def test_membership_is_set_membership_in_the_batch_order() -> None:
    rng = np.random.default_rng(7)
    stored = rng.integers(0, 2**63, 50_000, dtype=np.int64).astype(np.uint64)
    index = EventIdIndex(stored)
    batch = np.concatenate([rng.choice(stored, 3_000), rng.integers(0, 2**63, 3_000, dtype=np.int64).astype(np.uint64),
                            np.array([0, 2**64 - 1, stored.max(), stored.min()], dtype=np.uint64)])
    batch = batch[rng.permutation(len(batch))]  # unsorted, with repeats
    known = set(stored.tolist())
    want = np.array([h in known for h in batch.tolist()])
    got = index.contains_hashes(batch)
    assert got.dtype == bool and np.array_equal(got, want) and 3_000 <= got.sum() < len(batch)
    index.add_hashes(batch[~got][:10])
    assert index.contains_hashes(batch[~got][:12]).tolist() == [True] * 10 + [False] * 2
    assert not EventIdIndex().contains_hashes(batch).any()
