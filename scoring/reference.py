"""Plain-Python references for every numba kernel: slow, obvious, and the oracle in the tests."""

from __future__ import annotations

MOVING_MPS = 0.5


def trip_reference(t_s: list[float], v: list[float], brake_thr: float, accel_thr: float, min_speed: float,
                   max_gap: float) -> tuple[float, float, float, float, int, int]:
    dist = moving = idle = 0.0
    vmax = max(v) if len(v) else 0.0
    vmax = max(vmax, 0.0)
    brakes = accels = 0
    prev_brake = prev_accel = False
    for i in range(1, len(t_s)):
        dt = t_s[i] - t_s[i - 1]
        if not (0.0 < dt <= max_gap):
            prev_brake = prev_accel = False
            continue
        dist += (v[i] + v[i - 1]) / 2.0 * dt
        if max(v[i], v[i - 1]) > MOVING_MPS:
            moving += dt
        else:
            idle += dt
        a = (v[i] - v[i - 1]) / dt
        gated = max(v[i], v[i - 1]) >= min_speed
        is_brake = gated and a <= -brake_thr
        is_accel = gated and a >= accel_thr
        brakes += is_brake and not prev_brake
        accels += is_accel and not prev_accel
        prev_brake, prev_accel = is_brake, is_accel
    return dist, moving, idle, vmax, brakes, accels
