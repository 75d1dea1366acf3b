"""NumPy twins of scoring/imukernels.py: the code those kernels replaced in scoring.features and
scoring.intensity, kept as it was (tests/test_imukernels.py compares them)."""

from __future__ import annotations

import numpy as np


def gps_trust_speed_reference(
    imu_t_s: np.ndarray, gps_t_s: np.ndarray, gps_v: np.ndarray, max_gap: float, warmup: float
) -> np.ndarray:
    """scoring.features.gps_trust_speed with NumPy: interpolation, then the outside, gap and warm-up masks."""
    out = np.full(imu_t_s.shape[0], np.nan)
    if gps_t_s.shape[0] == 0 or imu_t_s.shape[0] == 0:
        return out
    out[:] = np.interp(imu_t_s, gps_t_s, gps_v)
    out[(imu_t_s < gps_t_s[0]) | (imu_t_s > gps_t_s[-1])] = np.nan
    j = np.searchsorted(gps_t_s, imu_t_s, side="left")  # gps_t_s[j-1] < t <= gps_t_s[j]
    inner = (j > 0) & (j < gps_t_s.shape[0])
    gap = np.zeros(imu_t_s.shape[0], bool)
    gap[inner] = (gps_t_s[j[inner]] - gps_t_s[j[inner] - 1]) > max_gap
    out[gap] = np.nan
    acquired = np.concatenate([[0], np.flatnonzero(np.diff(gps_t_s) > max_gap) + 1])
    a = np.searchsorted(gps_t_s[acquired], imu_t_s, side="right") - 1  # latest acquisition at or before t
    warm = (a >= 0) & (imu_t_s - gps_t_s[acquired[np.maximum(a, 0)]] < warmup)
    out[warm] = np.nan
    return out


def bin_means_reference(ts: np.ndarray, x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Mean of the finite x with ts in [g - 0.5, g + 0.5) for each grid time g (NaN where none)."""
    ok = np.isfinite(x)
    ts, x = ts[ok], x[ok]
    lo = np.searchsorted(ts, grid - 0.5, side="left")
    hi = np.searchsorted(ts, grid + 0.5, side="left")
    c = np.concatenate([[0.0], np.cumsum(x)])
    cnt = hi - lo
    out = np.full(grid.shape[0], np.nan)
    has = cnt > 0
    out[has] = (c[hi[has]] - c[lo[has]]) / cnt[has]
    return out
