"""Put a phone's or aftermarket device's accelerometer into the vehicle frame, per trip, and say why or why not.

Real devices differ in three ways that this module absorbs (research: issue 12):

- **Gravity.** Raw input carries gravity (|mean| ~ g): the mean direction is the vertical. Many phone APIs report
  *linear* acceleration with gravity removed (|mean| ~ 0.1-0.3 m/s^2): the vertical is then the axis of least
  variance of the 1 s-smoothed signal (a car accelerates horizontally), signed towards the declared ``acc_vert``.
  Input without a vertical axis (all NaN) is taken as already in the vehicle frame. Anything else ("partial
  gravity") is unusable.
- **Lag.** GPS speed lags the accelerometer by 0.1-1.5 s (receiver filtering). For each lag L in 0..imu_max_lag_s
  the GPS dv/dt is fitted by least squares on the two 1 s-smoothed horizontal axes taken L earlier; the lag with the
  highest multiple correlation R wins, and its coefficients give the forward direction and its sign.
- **Mount.** Forward comes from that fit and left = up x forward, so any yaw (a phone turned 180 degrees) gives the
  same vehicle-frame signal. A level mount whose fitted forward is within 15 degrees of its own x axis is returned
  untouched (``vehicle_frame``).

The IMU is used when R at the best lag reaches imu_min_r; otherwise the trip says why (``reason``) and events come
from the speed channel. The lag is returned so the speed gate reads GPS speed at the right time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scoring.imukernels import gradient, nan_to_num_kernel, nanmean_rows
from scoring.kernels import window_mean_kernel
from scoring.lagfit import lag_fit
from ubi.common.config import ScoringConfig

G = 9.80665
_LEVEL_COS = float(np.cos(np.radians(15.0)))
_MIN_OVERLAP_S = 20.0  # seconds of IMU and GPS together needed to fit a lag (our choice)
_MIN_DV_STD = 0.2  # m/s^2: below this the GPS shows no speed changes to align on (steady cruise)


@dataclass(frozen=True)
class Alignment:
    lon: np.ndarray  # m/s^2, +forward
    lat: np.ndarray  # m/s^2, +left
    status: str  # "vehicle_frame" | "rotated" | "unusable"
    lag_s: float = 0.0  # GPS speed lags the IMU by this much (NaN when not fitted)
    r: float = float("nan")  # multiple correlation of GPS dv/dt with the horizontal IMU at that lag
    gravity: str = "raw"  # "raw" | "removed" | "no_vertical" | "partial"
    reason: str = ""

    @property
    def used(self) -> bool:
        return self.status != "unusable"


def cross3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.cross`` of two 3-vectors of float64, the same products and differences (a1 b2 - a2 b1, ...) without
    its general machinery (~20 us a call)."""
    a0, a1, a2 = float(a[0]), float(a[1]), float(a[2])
    b0, b1, b2 = float(b[0]), float(b[1]), float(b[2])
    return np.array([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0])


def smooth(x: np.ndarray, n: int) -> np.ndarray:
    """Centred moving mean over n samples of the finite values (NaN where none): scoring.kernels.window_mean_kernel."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError("smooth: 1-D input expected")
    if n < 1:
        raise ValueError("smooth: window must hold at least one sample")
    out = np.empty(x.shape[0])
    window_mean_kernel(x, int(n), out)
    return out


def align_to_vehicle(
    imu_t_s: np.ndarray,
    lon: np.ndarray,
    lat: np.ndarray,
    vert: np.ndarray,
    gps_t_s: np.ndarray,
    gps_v: np.ndarray,
    cfg: ScoringConfig | None = None,
    period_s: float | None = None,
) -> Alignment:
    """The IMU in the vehicle frame, or why not (module doc). ``period_s``: the median IMU sample interval when
    the caller has it (measure_trip needs it for events and the channel too; it is the same number)."""
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


def restore_sustained(
    a: Alignment,
    imu_t_s: np.ndarray,
    gps_t_s: np.ndarray,
    gps_v: np.ndarray,
    cfg: ScoringConfig,
    period_s: float | None = None,
) -> Alignment:
    """Gravity-removed input has lost part of every sustained acceleration: the phone's attitude filter lets it
    leak into its gravity estimate (ikhyd's iPhone, accelUser vs raw: 1 s-mean std 0.34 vs 0.64 m/s^2 forward,
    0.43 vs 0.98 lateral; the difference correlates 0.75-0.87 with the 10 s low-pass of the raw signal). The
    forward axis gets its slow part back from GPS dv/dt at the fitted lag (complementary filter over
    imu_removed_blend_s: lon + mean(dv/dt - lon)); where the GPS has no trusted speed it stays as it is. The
    lateral axis has no such reference here and stays attenuated (said in the reason)."""
    hz = 1.0 / (float(np.median(np.diff(imu_t_s))) if period_s is None else period_s)
    tq = imu_t_s + a.lag_s
    dv = np.interp(tq, gps_t_s, gradient(gps_v, gps_t_s))
    j = np.clip(np.searchsorted(gps_t_s, tq), 1, gps_t_s.shape[0] - 1)
    bad = (tq < gps_t_s[0]) | (tq > gps_t_s[-1]) | (gps_t_s[j] - gps_t_s[j - 1] > cfg.max_integration_gap_s)
    dv[bad] = np.nan
    corr = smooth(dv - a.lon, max(1, int(round(cfg.imu_removed_blend_s * hz))))
    lon = a.lon + np.nan_to_num(corr)
    reason = a.reason + f"; forward blended with GPS dv/dt over {cfg.imu_removed_blend_s:g} s, lateral attenuated"
    return Alignment(lon, a.lat, a.status, a.lag_s, a.r, a.gravity, reason)
