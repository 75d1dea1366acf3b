"""Rotate a phone's or aftermarket device's accelerometer into the vehicle frame, per trip.

Devices are rarely mounted square. Gravity gives the vertical (the trip's mean acceleration), and the GPS speed
changes give the forward direction inside the horizontal plane (the direction whose acceleration follows dv/dt
best). Data that is already in the vehicle frame (gravity on the vertical axis, longitudinal axis following dv/dt)
is returned untouched; data that cannot be aligned (no gravity, too little driving signal after rotation) is
reported as such, and the scorer then counts events from the speed channel instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

G = 9.80665


@dataclass(frozen=True)
class Alignment:
    lon: np.ndarray  # m/s^2, +forward
    lat: np.ndarray  # m/s^2, +left
    status: str  # "vehicle_frame" | "rotated" | "unusable"


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 10:
        return 0.0
    a, b = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


def align_to_vehicle(imu_t_s: np.ndarray, lon: np.ndarray, lat: np.ndarray, vert: np.ndarray, gps_t_s: np.ndarray,
                     gps_v: np.ndarray, min_corr: float = 0.3, min_signal_mps2: float = 0.2) -> Alignment:
    n = imu_t_s.shape[0]
    if n < 10 or vert.shape[0] != n or gps_t_s.shape[0] < 3:
        return Alignment(lon, lat, "vehicle_frame")
    A = np.vstack([lon, lat, vert]).astype(np.float64)
    g = np.nanmean(A, axis=1)
    g_norm = float(np.linalg.norm(g))
    if not np.isfinite(g_norm) or abs(g_norm - G) > 2.5:
        return Alignment(lon, lat, "vehicle_frame" if not np.isfinite(g_norm) else "unusable")
    dv = np.interp(imu_t_s, gps_t_s, np.gradient(gps_v, gps_t_s))  # the GPS's longitudinal acceleration
    u = g / g_norm
    if u[2] > np.cos(np.radians(15.0)):  # gravity on the vertical axis: mounted level
        if np.nanstd(dv) < min_signal_mps2 or _corr(A[0], dv) >= min_corr:
            return Alignment(lon, lat, "vehicle_frame")
    # a basis of the horizontal plane, then the forward direction that follows dv/dt best
    x = np.eye(3)[int(np.argmin(np.abs(u)))]
    e1 = x - x.dot(u) * u
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(u, e1)
    h1, h2 = e1 @ np.nan_to_num(A), e2 @ np.nan_to_num(A)
    d = dv - dv.mean()
    theta = np.arctan2(((h2 - h2.mean()) * d).sum(), ((h1 - h1.mean()) * d).sum())
    fwd = np.cos(theta) * e1 + np.sin(theta) * e2
    left = np.cross(u, fwd)
    new_lon, new_lat = fwd @ A, left @ A
    if _corr(new_lon, dv) < min_corr:
        return Alignment(lon, lat, "unusable")
    return Alignment(new_lon, new_lat, "rotated")
