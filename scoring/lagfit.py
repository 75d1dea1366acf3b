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
"""

from __future__ import annotations

import numpy as np
from numba import njit

GRID_STEP_S = 0.1  # the fit's grid (scoring.align)
_DET_MIN = 1e-12  # a singular fit (an axis without signal) is skipped


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
    # running sums of the globally centred series (keeps the window sums free of cancellation)
    s1 = np.zeros(m + 1)
    s2 = np.zeros(m + 1)
    s11 = np.zeros(m + 1)
    s12 = np.zeros(m + 1)
    s22 = np.zeros(m + 1)
    z1 = np.empty(m)
    z2 = np.empty(m)
    for i in range(m):
        a = y1[i] - mu1
        b = y2[i] - mu2
        z1[i] = a
        z2[i] = b
        s1[i + 1] = s1[i] + a
        s2[i + 1] = s2[i] + b
        s11[i + 1] = s11[i] + a * a
        s12[i + 1] = s12[i] + a * b
        s22[i + 1] = s22[i] + b * b
    sd = 0.0
    for i in range(g):
        sd += d[i]
    for k in range(nlag):
        s = (nlag - 1 - k) * shift
        e = s + g
        a1 = s1[e] - s1[s]
        a2 = s2[e] - s2[s]
        m11 = (s11[e] - s11[s]) - a1 * a1 / g
        m12 = (s12[e] - s12[s]) - a1 * a2 / g
        m22 = (s22[e] - s22[s]) - a2 * a2 / g
        # two dot products, four partial sums each (independent chains: the loop is not latency-bound)
        p0 = p1 = p2 = p3 = r0 = r1 = r2 = r3 = 0.0
        q4 = g - g % 4
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
        c1 = ((p0 + p1) + (p2 + p3)) - a1 / g * sd
        c2 = ((r0 + r1) + (r2 + r3)) - a2 / g * sd
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
