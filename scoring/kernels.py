"""numba kernels for per-trip features. Tiny, fixed dtypes, cached; validated by the public functions in
``scoring.features`` and compared against ``scoring.reference`` in the tests.
"""

from __future__ import annotations

import numpy as np
from numba import njit

MOVING_MPS = 0.5  # below this a GPS speed counts as standing still (GPS jitter at rest is ~0.1-0.3 m/s)


@njit(cache=True, nogil=True)
def trip_kernel(t_s: np.ndarray, v: np.ndarray, brake_thr: float, accel_thr: float, min_speed: float,
                max_gap: float) -> tuple[float, float, float, float, int, int]:
    """One pass over a trip's 1 Hz speed channel.

    Returns (distance_m, moving_s, idle_s, max_speed_mps, harsh_brakes, harsh_accels). Distance integrates speed
    by the trapezoid rule except across gaps longer than ``max_gap`` s. A harsh event is a run of consecutive
    intervals whose speed change exceeds the threshold while either end is at or above ``min_speed``; a run counts
    once (bursts merged), and a gap ends a run.
    """
    n = t_s.shape[0]
    dist = 0.0
    moving = 0.0
    idle = 0.0
    vmax = 0.0
    n_brake = 0
    n_accel = 0
    in_brake = False
    in_accel = False
    for i in range(n):
        if v[i] > vmax:
            vmax = v[i]
    for i in range(1, n):
        dt = t_s[i] - t_s[i - 1]
        if dt <= 0.0 or dt > max_gap:
            in_brake = False
            in_accel = False
            continue
        v0 = v[i - 1]
        v1 = v[i]
        dist += 0.5 * (v0 + v1) * dt
        if v0 > MOVING_MPS or v1 > MOVING_MPS:
            moving += dt
        else:
            idle += dt
        a = (v1 - v0) / dt
        fast_enough = v0 >= min_speed or v1 >= min_speed
        if a <= -brake_thr and fast_enough:
            if not in_brake:
                n_brake += 1
            in_brake = True
        else:
            in_brake = False
        if a >= accel_thr and fast_enough:
            if not in_accel:
                n_accel += 1
            in_accel = True
        else:
            in_accel = False
    return dist, moving, idle, vmax, n_brake, n_accel
