"""The GPS-to-IMU lag search of ``scoring.align``: for each lag L in 0..max_lag the GPS dv/dt on a 0.1 s grid is
fitted by least squares on the two smoothed horizontal IMU axes read L earlier; the lag with the highest multiple
correlation R wins (the first of equal ones).

Reading the axes at ``grid - L`` for every L costs one interpolation of the whole trip per lag (31 at the default
0.1 s step, most of a trip's scoring time). When the lag step is a whole number of grid steps, ``lag_fit`` instead
interpolates once, on the grid extended backwards by max_lag, and reads lag L as that series shifted by L / 0.1
samples: ``lag_scan_kernel`` gets the fit's sums from running sums and one dot product per axis and lag. The shifted
points differ from ``grid - L`` by the grid's own rounding (microseconds: the grid is ``np.arange`` on epoch
seconds), so R and the coefficients agree with the per-lag interpolation to about 1e-6 relative;
``lag_fit_exact`` (any step; the reference in tests/test_lagfit.py) keeps the per-lag interpolation.

The dot products of all lags are advanced side by side, one grid sample at a time (they vectorise across lags),
and the running sums are kept only at the windows' ends (no trip-sized temporaries): the same sums in the same
order as one lag at a time, so bit for bit ``scoring.reference_batch.lag_scan_exact_reference``
(tests/test_vector_kernels.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit

GRID_STEP_S = 0.1  # the fit's grid (scoring.align)
_DET_MIN = 1e-12  # a singular fit (an axis without signal) is skipped


@njit(cache=True, nogil=True)
def _scan_unit_shift(z1: np.ndarray, z2: np.ndarray, d: np.ndarray, L: int) -> tuple[np.ndarray, np.ndarray]:
    """``lag_scan_kernel``'s dot products for a lag step of one grid step: every lag's four partial sums side by
    side, and for each grid sample i all lags add theirs (independent additions that vectorise across lags). ``L``:
    the lags padded to a multiple of 8, ``z1``/``z2`` padded with zeros to match (the padding only fills padding).
    Each sum still adds its samples in the order of i (sample i to sum i % 4, the tail past the last whole four to
    sum 0). Returns (acc1, acc2), acc[r, kk]: sum r of the lag whose regressors start at kk."""
    g = d.shape[0]
    q4 = g - g % 4
    p_acc = np.zeros((4, L))
    r_acc = np.zeros((4, L))
    for i in range(g):
        r = i & 3 if i < q4 else 0
        di = d[i]
        za = z1[i : i + L]
        zb = z2[i : i + L]
        pa = p_acc[r]
        ra = r_acc[r]
        for kk in range(L):
            pa[kk] += za[kk] * di
            ra[kk] += zb[kk] * di
    return p_acc, r_acc


@njit(cache=True, nogil=True)
def lag_scan_kernel(
    y1: np.ndarray, y2: np.ndarray, d: np.ndarray, dd: float, shift: int, nlag: int, out: np.ndarray
) -> None:
    """Least squares of ``d`` (centred, length G) on two regressors per lag k = 0..nlag-1: ``y[s : s + G]`` with
    s = (nlag - 1 - k) * shift (``y`` holds (nlag - 1) * shift samples before the grid), each centred on its window;
    ``dd`` = d . d. out[k] = (R, b1, b2), R = -1 where the 2x2 normal matrix is singular (|det| < 1e-12)."""
    g = d.shape[0]
    m = y1.shape[0]
    mu1 = 0.0
    mu2 = 0.0
    for i in range(m):
        mu1 += y1[i]
        mu2 += y2[i]
    mu1 /= m
    mu2 /= m
    # running sums of the globally centred series (keeps the window sums free of cancellation), kept only where a
    # lag's window starts (kk * shift) or ends (kk * shift + g): at[0, kk] and at[1, kk], for a, b, aa, ab, bb
    at = np.zeros((2, nlag, 5))
    L = (nlag + 7) // 8 * 8
    z1 = np.zeros(m + L)  # the centred series, padded with zeros for _scan_unit_shift
    z2 = np.zeros(m + L)
    u1 = u2 = u11 = u12 = u22 = 0.0
    last = (nlag - 1) * shift
    for i in range(m + 1):
        if i <= last and i % shift == 0:
            q = at[0, i // shift]
            q[0], q[1], q[2], q[3], q[4] = u1, u2, u11, u12, u22
        if i >= g and i - g <= last and (i - g) % shift == 0:
            q = at[1, (i - g) // shift]
            q[0], q[1], q[2], q[3], q[4] = u1, u2, u11, u12, u22
        if i == m:
            break
        a = y1[i] - mu1
        b = y2[i] - mu2
        z1[i] = a
        z2[i] = b
        u1 = u1 + a
        u2 = u2 + b
        u11 = u11 + a * a
        u12 = u12 + a * b
        u22 = u22 + b * b
    sd = 0.0
    for i in range(g):
        sd += d[i]
    # two dot products per lag, four partial sums each: sample i goes to sum i % 4, the tail past the last whole
    # four to sum 0, each sum adding its samples in the order of i. acc[r, kk]: sum r of the lag whose regressors
    # start at kk * shift (k = nlag - 1 - kk).
    q4 = g - g % 4
    if shift == 1:
        p_acc, r_acc = _scan_unit_shift(z1, z2, d, L)
    else:
        # one lag at a time, its four sums as independent chains
        p_acc = np.zeros((4, nlag))
        r_acc = np.zeros((4, nlag))
        for kk in range(nlag):
            s = kk * shift
            p0 = p1 = p2 = p3 = r0 = r1 = r2 = r3 = 0.0
            for i in range(0, q4, 4):
                j = s + i
                p0 += z1[j] * d[i]
                p1 += z1[j + 1] * d[i + 1]
                p2 += z1[j + 2] * d[i + 2]
                p3 += z1[j + 3] * d[i + 3]
                r0 += z2[j] * d[i]
                r1 += z2[j + 1] * d[i + 1]
                r2 += z2[j + 2] * d[i + 2]
                r3 += z2[j + 3] * d[i + 3]
            for i in range(q4, g):
                p0 += z1[s + i] * d[i]
                r0 += z2[s + i] * d[i]
            p_acc[0, kk], p_acc[1, kk], p_acc[2, kk], p_acc[3, kk] = p0, p1, p2, p3
            r_acc[0, kk], r_acc[1, kk], r_acc[2, kk], r_acc[3, kk] = r0, r1, r2, r3
    for k in range(nlag):
        kk = nlag - 1 - k
        lo = at[0, kk]
        hi = at[1, kk]
        a1 = hi[0] - lo[0]
        a2 = hi[1] - lo[1]
        m11 = (hi[2] - lo[2]) - a1 * a1 / g
        m12 = (hi[3] - lo[3]) - a1 * a2 / g
        m22 = (hi[4] - lo[4]) - a2 * a2 / g
        c1 = ((p_acc[0, kk] + p_acc[1, kk]) + (p_acc[2, kk] + p_acc[3, kk])) - a1 / g * sd
        c2 = ((r_acc[0, kk] + r_acc[1, kk]) + (r_acc[2, kk] + r_acc[3, kk])) - a2 / g * sd
        det = m11 * m22 - m12 * m12
        if abs(det) < _DET_MIN:
            out[k, 0] = -1.0
            out[k, 1] = 0.0
            out[k, 2] = 0.0
            continue
        b1 = (m22 * c1 - m12 * c2) / det
        b2 = (m11 * c2 - m12 * c1) / det
        q = (b1 * c1 + b2 * c2) / dd if dd > 0.0 else 0.0
        out[k, 0] = np.sqrt(q) if q > 0.0 else 0.0
        out[k, 1] = b1
        out[k, 2] = b2


def lags_of(max_lag_s: float, step_s: float) -> np.ndarray:
    """The lags tried (s): 0, step, ... up to max_lag_s."""
    return np.arange(0.0, max_lag_s + 1e-9, step_s)


def lag_fit_exact(
    grid: np.ndarray,
    imu_t_s: np.ndarray,
    h1: np.ndarray,
    h2: np.ndarray,
    d: np.ndarray,
    dd: float,
    max_lag_s: float,
    step_s: float,
) -> tuple[float, float, np.ndarray]:
    """(best R, its lag, its coefficients) with the axes interpolated at ``grid - lag`` for every lag."""
    best_r, best_l, best_b = -1.0, 0.0, np.zeros(2)
    for lag in lags_of(max_lag_s, step_s):
        X = np.vstack([np.interp(grid - lag, imu_t_s, h1), np.interp(grid - lag, imu_t_s, h2)])
        X = X - X.mean(axis=1, keepdims=True)
        M = X @ X.T
        c = X @ d
        if abs(np.linalg.det(M)) < _DET_MIN:
            continue
        b = np.linalg.solve(M, c)
        r = float(np.sqrt(max(0.0, float(b @ c) / dd)))
        if r > best_r:
            best_r, best_l, best_b = r, float(lag), b
    return best_r, best_l, best_b


def lag_fit(
    grid: np.ndarray,
    imu_t_s: np.ndarray,
    h1: np.ndarray,
    h2: np.ndarray,
    d: np.ndarray,
    dd: float,
    max_lag_s: float,
    step_s: float,
) -> tuple[float, float, np.ndarray]:
    """(best R, its lag, its coefficients): one interpolation and ``lag_scan_kernel`` when the lag step is a whole
    number of grid steps, else ``lag_fit_exact``."""
    shift = int(round(step_s / GRID_STEP_S))
    lags = lags_of(max_lag_s, step_s)
    if shift < 1 or abs(shift * GRID_STEP_S - step_s) > 1e-9 or grid.shape[0] == 0:
        return lag_fit_exact(grid, imu_t_s, h1, h2, d, dd, max_lag_s, step_s)
    nlag = lags.shape[0]
    back = grid[0] - GRID_STEP_S * np.arange((nlag - 1) * shift, 0, -1)
    x = np.concatenate([back, grid])
    y1 = np.interp(x, imu_t_s, h1)
    y2 = np.interp(x, imu_t_s, h2)
    out = np.empty((nlag, 3))
    lag_scan_kernel(y1, y2, np.ascontiguousarray(d, dtype=np.float64), float(dd), shift, nlag, out)
    best_r, best_l, best_b = -1.0, 0.0, np.zeros(2)
    for k in range(nlag):
        if out[k, 0] > best_r:
            best_r, best_l, best_b = float(out[k, 0]), float(lags[k]), out[k, 1:].copy()
    return best_r, best_l, best_b
