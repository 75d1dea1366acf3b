"""Distance across GPS gaps (tunnels, urban canyons) by dead reckoning on the accelerometer.

Inside a gap the speed channel is silent but the 10 Hz longitudinal accelerometer is not: integrating it from the
speed before the gap and correcting the integration drift linearly so that it lands on the speed after the gap
gives the speed profile, whose integral is the distance. Gaps longer than ``max_fill_s`` or without accelerometer
coverage are left unfilled (their distance stays unknown rather than guessed).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def gap_fill_kernel(
    t_s: np.ndarray, v: np.ndarray, it_s: np.ndarray, a: np.ndarray, min_gap_s: float, max_fill_s: float
) -> tuple[float, float, int]:
    """Returns (distance_m filled, seconds filled, gaps filled) for GPS intervals in (min_gap_s, max_fill_s]."""
    dist = 0.0
    secs = 0.0
    filled = 0
    for i in range(1, t_s.shape[0]):
        t0 = t_s[i - 1]
        t1 = t_s[i]
        dt = t1 - t0
        if dt <= min_gap_s or dt > max_fill_s:
            continue
        j0 = np.searchsorted(it_s, t0)
        j1 = np.searchsorted(it_s, t1, side="right")
        if j1 - j0 < 2 or it_s[j0] - t0 > 1.0 or t1 - it_s[j1 - 1] > 1.0:
            continue  # no accelerometer coverage of this gap
        covered = True
        for k in range(j0 + 1, j1):
            if it_s[k] - it_s[k - 1] > 1.0:
                covered = False  # a hole in the accelerometer too: integrating across it would be a guess
                break
        if not covered:
            continue
        # integrate acceleration on the IMU grid, starting from the speed before the gap
        n = j1 - j0
        vv = np.empty(n)
        vv[0] = v[i - 1]
        for k in range(1, n):
            vv[k] = vv[k - 1] + a[j0 + k - 1] * (it_s[j0 + k] - it_s[j0 + k - 1])
        # linear drift correction: the integrated speed must arrive at the measured speed after the gap
        err = vv[n - 1] - v[i]
        span = it_s[j1 - 1] - it_s[j0]
        d = 0.0
        prev = 0.0
        for k in range(n):
            frac = (it_s[j0 + k] - it_s[j0]) / span if span > 0 else 0.0
            cur = vv[k] - err * frac
            if cur < 0.0:
                cur = 0.0
            if k > 0:
                d += 0.5 * (prev + cur) * (it_s[j0 + k] - it_s[j0 + k - 1])
            prev = cur
        # the few hundred ms between the last fix and the first IMU sample (and after) at the end speeds
        d += v[i - 1] * (it_s[j0] - t0) + v[i] * (t1 - it_s[j1 - 1])
        dist += d
        secs += dt
        filled += 1
    return dist, secs, filled


def fill_gaps(
    t_s: np.ndarray, v: np.ndarray, imu_t_s: np.ndarray, acc_lon: np.ndarray, min_gap_s: float, max_fill_s: float
) -> tuple[float, float, int]:
    """Validated entry point: sorted finite times, equal lengths; NaN accelerations are read as 0 (quiet)."""
    t_s = np.ascontiguousarray(t_s, dtype=np.float64)
    v = np.ascontiguousarray(v, dtype=np.float64)
    it = np.ascontiguousarray(imu_t_s, dtype=np.float64)
    a = np.nan_to_num(np.ascontiguousarray(acc_lon, dtype=np.float64), nan=0.0)
    if t_s.shape != v.shape or it.shape != a.shape or t_s.ndim != 1 or it.ndim != 1:
        raise ValueError("GPS and IMU arrays must be 1-D and pairwise of equal length")
    if (t_s.size > 1 and (np.diff(t_s) <= 0).any()) or (it.size > 1 and (np.diff(it) < 0).any()):
        raise ValueError("times must increase")
    if not (np.isfinite(t_s).all() and np.isfinite(v).all() and np.isfinite(it).all()):
        raise ValueError("times and speeds must be finite")
    return gap_fill_kernel(t_s, v, it, a, float(min_gap_s), float(max_fill_s))
