"""Plain NumPy twins of the batch kernels in scoring/filecut.py and scoring/batch.py (tests compare them)."""

from __future__ import annotations

import math

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


def lag_scan_plain(
    y1: list[float], y2: list[float], d: list[float], dd: float, shift: int, nlag: int, dot
) -> list[tuple[float, float, float]]:
    """The lag scans' least squares in plain Python floats, every sum in the kernels' order: the global means,
    running sums of the centred series read at each window's ends, and per lag the two dot products, each
    ``dot(z, s)`` = sum of z[s + i] * d[i] in the order of the kernel it stands for (``lag_scan_exact_reference``,
    scoring.reference_align's ``lag_scan_seq_reference``)."""
    g, m = len(d), len(y1)
    mu1 = mu2 = 0.0
    for i in range(m):
        mu1 += y1[i]
        mu2 += y2[i]
    mu1 /= m
    mu2 /= m
    z1 = [x - mu1 for x in y1]
    z2 = [x - mu2 for x in y2]
    run = [(0.0, 0.0, 0.0, 0.0, 0.0)]
    for a, b in zip(z1, z2, strict=True):
        u = run[-1]
        run.append((u[0] + a, u[1] + b, u[2] + a * a, u[3] + a * b, u[4] + b * b))
    sd = 0.0
    for x in d:
        sd += x
    out = []
    for k in range(nlag):
        s = (nlag - 1 - k) * shift
        lo, hi = run[s], run[s + g]
        a1, a2 = hi[0] - lo[0], hi[1] - lo[1]
        m11 = (hi[2] - lo[2]) - a1 * a1 / g
        m12 = (hi[3] - lo[3]) - a1 * a2 / g
        m22 = (hi[4] - lo[4]) - a2 * a2 / g
        c1 = dot(z1, s) - a1 / g * sd
        c2 = dot(z2, s) - a2 / g * sd
        det = m11 * m22 - m12 * m12
        if abs(det) < 1e-12:
            out.append((-1.0, 0.0, 0.0))
            continue
        b1 = (m22 * c1 - m12 * c2) / det
        b2 = (m11 * c2 - m12 * c1) / det
        q = (b1 * c1 + b2 * c2) / dd if dd > 0.0 else 0.0
        out.append((math.sqrt(q) if q > 0.0 else 0.0, b1, b2))
    return out


def lag_scan_exact_reference(
    y1: list[float], y2: list[float], d: list[float], dd: float, shift: int, nlag: int
) -> list[tuple[float, float, float]]:
    """scoring.lagfit.lag_scan_kernel in plain Python floats, every sum in the kernel's order (so equal to it bit
    for bit): ``lag_scan_plain`` with each dot product in four partial sums (sample i to sum i % 4, the tail past
    the last whole four to sum 0), added as (p0 + p1) + (p2 + p3)."""
    g = len(d)
    q4 = g - g % 4

    def dot(z: list[float], s: int) -> float:
        p = [0.0] * 4
        for i in range(g):
            p[i % 4 if i < q4 else 0] += z[s + i] * d[i]
        return (p[0] + p[1]) + (p[2] + p[3])

    return lag_scan_plain(y1, y2, d, dd, shift, nlag, dot)
