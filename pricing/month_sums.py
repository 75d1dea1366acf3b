"""A month's trips summed per policy, one streamed batch at a time.

Why not DuckDB's GROUP BY: a month of a national book is ~600 M trips of ~10 M vehicles, stored in arrival (time)
order, so every row group holds nearly every vehicle. A hash aggregate then cannot pre-aggregate: within 2-3 GB it
spilled 24-35 GB and ran past 10 minutes, and within 6 GB it took 133 s but the process peaked at 9.4 GB
(docs/capacity.md). The store hands each trip over with its policy's row number instead (a join against the 10 M
policies, a small hash table) and these sums add the batches into arrays of one slot a policy: memory is fixed by
the book, not by the trips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit


@dataclass
class MonthSums:
    """Per policy: the trips kept for pricing (no pending or accepted objection) and the completeness inputs of
    every trip (messages that arrived, messages missing inside and before each trip)."""

    trips: np.ndarray  # int64, kept trips
    km: np.ndarray  # float64
    moving_s: np.ndarray  # float64
    harsh_brakes: np.ndarray  # int64
    harsh_accels: np.ndarray  # int64
    messages: np.ndarray  # int64, all trips
    missing: np.ndarray  # int64, all trips

    @classmethod
    def zeros(cls, n: int) -> MonthSums:
        i, f = np.zeros(n, np.int64), np.zeros(n, np.float64)
        return cls(i.copy(), f.copy(), f.copy(), i.copy(), i.copy(), i.copy(), i.copy())

    def completeness(self) -> np.ndarray:
        """messages / (messages + missing); 1.0 for a policy with nothing expected (no trips, or no seqs)."""
        expected = self.messages + self.missing
        out = np.ones(len(expected))
        np.divide(self.messages, expected, out=out, where=expected > 0)
        return out


@njit(cache=True)
def _add_kernel(
    idx: np.ndarray,  # int64
    kept: np.ndarray,  # bool
    km: np.ndarray,  # float64
    moving_s: np.ndarray,  # float64
    brakes: np.ndarray,  # int64
    accels: np.ndarray,  # int64
    messages: np.ndarray,  # int64
    missing: np.ndarray,  # int64
    o_trips: np.ndarray,
    o_km: np.ndarray,
    o_mov: np.ndarray,
    o_brakes: np.ndarray,
    o_accels: np.ndarray,
    o_messages: np.ndarray,
    o_missing: np.ndarray,
) -> None:
    for r in range(idx.shape[0]):
        p = idx[r]
        o_messages[p] += messages[r]
        o_missing[p] += missing[r]
        if kept[r]:
            o_trips[p] += 1
            o_km[p] += km[r]
            o_mov[p] += moving_s[r]
            o_brakes[p] += brakes[r]
            o_accels[p] += accels[r]


def add_batch(
    sums: MonthSums,
    idx: np.ndarray,
    kept: np.ndarray,
    km: np.ndarray,
    moving_s: np.ndarray,
    brakes: np.ndarray,
    accels: np.ndarray,
    messages: np.ndarray,
    missing: np.ndarray,
) -> None:
    """Add one batch of trips (row ``r`` belongs to policy ``idx[r]``) in row order. Refuses columns of unequal
    length or policy numbers outside the book (the kernel does not check bounds)."""
    cols = (kept, km, moving_s, brakes, accels, messages, missing)
    n = idx.shape[0]
    if any(c.shape != (n,) for c in cols) or idx.ndim != 1:
        raise ValueError("add_batch: every column must be one-dimensional and as long as idx")
    if n and (int(idx.min()) < 0 or int(idx.max()) >= sums.trips.shape[0]):
        raise ValueError(f"add_batch: policy numbers must lie in [0, {sums.trips.shape[0]})")
    _add_kernel(
        np.ascontiguousarray(idx, np.int64),
        np.ascontiguousarray(kept, np.bool_),
        np.ascontiguousarray(km, np.float64),
        np.ascontiguousarray(moving_s, np.float64),
        np.ascontiguousarray(brakes, np.int64),
        np.ascontiguousarray(accels, np.int64),
        np.ascontiguousarray(messages, np.int64),
        np.ascontiguousarray(missing, np.int64),
        sums.trips,
        sums.km,
        sums.moving_s,
        sums.harsh_brakes,
        sums.harsh_accels,
        sums.messages,
        sums.missing,
    )
