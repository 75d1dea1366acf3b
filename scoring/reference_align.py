"""The NumPy alignment that ``scoring.align.align_to_vehicle`` ran per trip before its numba kernel (issue 12),
kept as it was: the reference tests/test_align_kernel.py compares the kernel with (the same decisions and reasons,
the numbers to ~1e-9), and the path ``align_to_vehicle`` takes for input the kernel does not (a lag step that is not
a whole number of grid steps, IMU or GPS times that are not finite and sorted, a median IMU interval that is not a
positive number), so both give what they gave before there. Also the plain-Python twin of the kernel's lag scan
(``lag_scan_seq_reference``)."""

from __future__ import annotations

import numpy as np

from scoring.align import _LEVEL_COS, _MIN_DV_STD, _MIN_OVERLAP_S, Alignment, G, cross3, restore_sustained, smooth
from scoring.imukernels import gradient, nan_to_num_kernel, nanmean_rows
from scoring.lagfit import lag_fit
from scoring.reference_batch import lag_scan_plain
from ubi.common.config import ScoringConfig


def align_reference(
    imu_t_s: np.ndarray,
    lon: np.ndarray,
    lat: np.ndarray,
    vert: np.ndarray,
    gps_t_s: np.ndarray,
    gps_v: np.ndarray,
    cfg: ScoringConfig | None = None,
    period_s: float | None = None,
) -> Alignment:
    """The IMU in the vehicle frame, or why not (scoring/align.py's module doc). ``period_s``: the median IMU
    sample interval when the caller has it (measure_trip needs it for events and the channel too)."""
    cfg = cfg or ScoringConfig()
    n = imu_t_s.shape[0]
    if n < 10 or lat.shape[0] != n or lon.shape[0] != n or gps_t_s.shape[0] < 3:
        return Alignment(
            lon, lat, "unusable", float("nan"), reason=f"too few samples ({n} IMU, {gps_t_s.shape[0]} GPS)"
        )
    vert = np.full(n, np.nan) if vert.shape[0] != n else vert
    A = np.vstack([lon, lat, vert]).astype(np.float64, copy=False)  # a new array either way
    period_s = float(np.median(np.diff(imu_t_s))) if period_s is None else period_s
    hz = 1.0 / period_s
    n1 = max(1, int(round(hz)))
    if not np.isfinite(A[2]).any():
        u, gravity = np.array([0.0, 0.0, 1.0]), "no_vertical"
        A[2] = 0.0
    else:
        mean = nanmean_rows(A)  # np.nanmean(A, axis=1)
        m = float(np.linalg.norm(mean))
        if not np.isfinite(m):
            return Alignment(lon, lat, "unusable", float("nan"), gravity="partial", reason="no finite samples")
        if abs(m - G) <= cfg.imu_gravity_tol_mps2:
            u, gravity = mean / m, "raw"
        elif m <= cfg.imu_gravity_free_max_mps2:
            S = np.vstack([np.nan_to_num(smooth(a, n1)) for a in A])
            _, V = np.linalg.eigh(np.cov(S))
            u = V[:, 0] * (1.0 if V[2, 0] >= 0 else -1.0)  # least variance = vertical, towards acc_vert
            gravity = "removed"
        else:
            return Alignment(
                lon, lat, "unusable", float("nan"), gravity="partial", reason=f"partial gravity: |mean| = {m:.1f} m/s2"
            )
    level = u[2] > _LEVEL_COS
    x = np.eye(3)[int(np.argmin(np.abs(u)))] if not level else np.array([1.0, 0.0, 0.0])
    e1 = x - x.dot(u) * u
    e1 /= np.linalg.norm(e1)
    e2 = cross3(u, e1)
    A0 = np.empty_like(A)
    nan_to_num_kernel(A, A0)  # np.nan_to_num(A)
    h1, h2 = smooth(e1 @ A0, n1), smooth(e2 @ A0, n1)
    t0 = max(imu_t_s[0], gps_t_s[0]) + cfg.imu_max_lag_s
    t1 = min(imu_t_s[-1], gps_t_s[-1])
    grid = np.arange(t0, t1, 0.1) if t1 - t0 >= _MIN_OVERLAP_S else np.zeros(0)
    dv = np.interp(grid, gps_t_s, gradient(gps_v, gps_t_s)) if grid.size else grid
    if grid.size == 0 or dv.std() < _MIN_DV_STD:
        why = f"overlap < {_MIN_OVERLAP_S:.0f} s" if grid.size == 0 else "no speed changes to align on"
        if level and gravity in ("raw", "no_vertical"):
            return Alignment(lon, lat, "vehicle_frame", 0.0, gravity=gravity, reason=f"level mount, unchecked: {why}")
        return Alignment(lon, lat, "unusable", float("nan"), gravity=gravity, reason=why)
    d = dv - dv.mean()
    dd = float(d @ d)
    best_r, best_l, best_b = lag_fit(grid, imu_t_s, h1, h2, d, dd, cfg.imu_max_lag_s, cfg.imu_lag_step_s)
    best_l = round(best_l, 3)
    if best_r < cfg.imu_min_r:
        return Alignment(
            lon,
            lat,
            "unusable",
            best_l,
            max(best_r, 0.0),
            gravity,
            f"R = {max(best_r, 0.0):.2f} < {cfg.imu_min_r} at the best lag {best_l:.1f} s",
        )
    fwd = best_b[0] * e1 + best_b[1] * e2
    fwd /= np.linalg.norm(fwd)
    how = f"{gravity} gravity, R = {best_r:.2f} at lag {best_l:.1f} s"
    if level and fwd[0] > _LEVEL_COS:
        out = Alignment(lon, lat, "vehicle_frame", best_l, best_r, gravity, how)
    else:
        left = cross3(u, fwd)
        out = Alignment(fwd @ A, left @ A, "rotated", best_l, best_r, gravity, how)
    if gravity == "removed" and cfg.imu_removed_blend_s > 0:
        return restore_sustained(out, imu_t_s, gps_t_s, gps_v, cfg, period_s)
    return out


def lag_scan_seq_reference(
    y1: list[float], y2: list[float], d: list[float], dd: float, shift: int, nlag: int
) -> list[tuple[float, float, float]]:
    """scoring.lagfit.lag_scan_seq_kernel in plain Python floats, every sum in the kernel's order (so equal to it
    bit for bit): scoring.reference_batch's ``lag_scan_plain`` with each dot product summed sample by sample
    from 0.0."""

    def dot(z: list[float], s: int) -> float:
        p = 0.0
        for i in range(len(d)):
            p = p + z[s + i] * d[i]
        return p

    return lag_scan_plain(y1, y2, d, dd, shift, nlag, dot)
