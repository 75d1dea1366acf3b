"""Public feature functions: validate input, call the kernels, return typed results."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scoring.kernels import trip_kernel
from scoring.trips import ClosedTrip
from ubi.config import ScoringConfig


@dataclass(frozen=True)
class TripFeatures:
    distance_m: float
    moving_s: float
    idle_s: float
    max_speed_mps: float
    harsh_brakes: int
    harsh_accels: int


def trip_features(t_s: np.ndarray, speed: np.ndarray, cfg: ScoringConfig) -> TripFeatures:
    """Features of one trip from its GPS times (s) and speeds (m/s); times must be increasing, values finite."""
    t_s = np.ascontiguousarray(t_s, dtype=np.float64)
    speed = np.ascontiguousarray(speed, dtype=np.float64)
    if t_s.ndim != 1 or speed.ndim != 1 or t_s.shape != speed.shape:
        raise ValueError(f"t_s and speed must be 1-D of equal length, got {t_s.shape} and {speed.shape}")
    if not (np.isfinite(t_s).all() and np.isfinite(speed).all()):
        raise ValueError("t_s and speed must be finite (clean NaN/inf first)")
    if t_s.size > 1 and (np.diff(t_s) <= 0).any():
        raise ValueError("t_s must strictly increase")
    if (speed < 0).any():
        raise ValueError("speed must be non-negative")
    d, mv, idle, vmax, nb, na = trip_kernel(t_s, speed, cfg.harsh_brake_mps2, cfg.harsh_accel_mps2,
                                            cfg.min_event_speed_mps, cfg.max_integration_gap_s)
    return TripFeatures(float(d), float(mv), float(idle), float(vmax), int(nb), int(na))


SCORER_VERSION = "1"


def score_trip(trip: ClosedTrip, cfg: ScoringConfig) -> dict:
    """The scored-trip record published to Kafka and stored in DuckDB (units in the field names)."""
    good = trip.accuracy <= cfg.max_gps_accuracy_m
    t_s = trip.t_ms[good] / 1000.0
    f = trip_features(t_s, trip.speed[good], cfg)
    km = f.distance_m / 1000.0
    return {
        "trip_id": trip.trip_id,
        "vehicle_id": trip.vehicle,
        "start_ms": int(trip.start_ms),
        "end_ms": int(trip.end_ms),
        "duration_s": (trip.end_ms - trip.start_ms) / 1000.0,
        "distance_km": km,
        "moving_s": f.moving_s,
        "idle_s": f.idle_s,
        "max_speed_kmh": f.max_speed_mps * 3.6,
        "mean_speed_kmh": (f.distance_m / f.moving_s * 3.6) if f.moving_s > 0 else 0.0,
        "harsh_brakes": f.harsh_brakes,
        "harsh_accels": f.harsh_accels,
        "gps_fixes": int(good.sum()),
        "gps_dropped": int((~good).sum()),
        "messages": trip.messages,
        "complete": trip.complete,
        "ended_by": trip.ended_by,
        "scorer_version": SCORER_VERSION,
    }
