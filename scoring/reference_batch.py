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


def lag_scan_reference(y1: np.ndarray, y2: np.ndarray, d: np.ndarray, dd: float, shift: int, nlag: int) -> np.ndarray:
    """scoring.lagfit.lag_scan_kernel with NumPy: per lag, the regressors' window centred, the 2x2 normal equations
    solved by LAPACK; rows (R, b1, b2), R = -1 where the matrix is singular."""
    g = d.shape[0]
    out = np.zeros((nlag, 3))
    for k in range(nlag):
        s = (nlag - 1 - k) * shift
        X = np.vstack([y1[s : s + g], y2[s : s + g]])
        X = X - X.mean(axis=1, keepdims=True)
        M = X @ X.T
        c = X @ d
        if abs(np.linalg.det(M)) < 1e-12:
            out[k] = (-1.0, 0.0, 0.0)
            continue
        b = np.linalg.solve(M, c)
        out[k] = (np.sqrt(max(0.0, float(b @ c) / dd)), b[0], b[1])
    return out
