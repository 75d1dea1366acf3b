"""Plain NumPy twins of the batch kernels in scoring/filecut.py and scoring/batch.py (tests compare them)."""

from __future__ import annotations

import numpy as np

from ubi.common.messages import imu_times_ms


def imu_grid_reference(
    it: np.ndarray, cols: list[np.ndarray], hz: int, fix_t: np.ndarray, batch_lo: np.ndarray, batch_nxt: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """scoring.filecut.imu_grid_kernel one message at a time, as score-file's ``_regular_imu`` puts a message's
    samples on its grid: (times, [columns]) of all messages' grids one after the other."""
    ts: list[np.ndarray] = []
    out: list[list[np.ndarray]] = [[] for _ in cols]
    for b in range(len(batch_lo)):
        lo = int(np.searchsorted(it, fix_t[batch_lo[b]]))
        hi = int(np.searchsorted(it, batch_nxt[b]))
        if hi <= lo:
            continue
        t = it[lo:hi]
        t0, t_end = int(t[0]), int(t[-1])
        k = int(np.floor((t_end - t0) * hz / 1000.0)) + 1
        grid = imu_times_ms(t0, hz, k)
        j = np.clip(np.searchsorted(t, grid), 1, t.shape[0] - 1) if t.shape[0] > 1 else np.zeros(k, np.int64)
        if t.shape[0] > 1:
            j = np.where(np.abs(t[j - 1] - grid) <= np.abs(t[j] - grid), j - 1, j)
        hit = np.abs(t[j] - grid) <= 500.0 / hz
        ts.append(grid)
        for c, o in zip(cols, out, strict=True):
            o.append(np.where(hit, c[lo:hi][j], np.nan))
    if not ts:
        return np.zeros(0, np.int64), [np.zeros(0) for _ in cols]
    return np.concatenate(ts), [np.concatenate(o) for o in out]
