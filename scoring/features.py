"""Public feature functions: validate input, call the kernels, return typed results."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

from scoring.align import align_to_vehicle
from scoring.gapfill import fill_gaps
from scoring.kernels import (clean_kernel, event_kernel, exposure_kernel, heatmap_kernel,
                             phone_kernel, speeding_kernel, trip_kernel)
from scoring.maplayer import MapLayer
from scoring.trips import ClosedTrip
from ubi.common.config import ScoringConfig
from ubi.common.trip_record import TripRecord


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


def _f64(name: str, x: np.ndarray, n: int | None = None) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim != 1 or (n is not None and x.shape[0] != n):
        raise ValueError(f"{name} must be 1-D of length {n}, got shape {x.shape}")
    return x


def _times(t_s: np.ndarray) -> np.ndarray:
    t_s = _f64("t_s", t_s)
    if not np.isfinite(t_s).all():
        raise ValueError("t_s must be finite")
    if t_s.size > 1 and (np.diff(t_s) <= 0).any():
        raise ValueError("t_s must strictly increase")
    return t_s


def _speeds(v: np.ndarray, n: int) -> np.ndarray:
    v = _f64("speed", v, n)
    if not np.isfinite(v).all() or (v < 0).any():
        raise ValueError("speed must be finite and non-negative (clean first)")
    return v


def clean_fixes(t_s: np.ndarray, lat: np.ndarray, lon: np.ndarray, acc: np.ndarray,
                cfg: ScoringConfig) -> tuple[np.ndarray, int, int]:
    """(keep mask, n_invalid_or_inaccurate, n_jumps): which fixes the speed-based features may use. Jumps are judged
    on coordinates, but distance still comes from the speed channel of the kept fixes."""
    t_s = _times(t_s)
    n = t_s.shape[0]
    lat, lon, acc = _f64("lat", lat, n), _f64("lon", lon, n), _f64("acc", acc, n)
    keep = np.zeros(n, np.uint8)
    bad, jumps = clean_kernel(t_s, lat, lon, acc, float(cfg.max_gps_accuracy_m), cfg.max_jump_speed_kmh / 3.6,
                              int(cfg.max_jump_rejects), keep)
    return keep.astype(bool), int(bad), int(jumps)


@dataclass(frozen=True)
class Events:
    """Harsh events of one kind: times (s) and peaks (m/s^2), plus counts per severity grade 1..3."""

    start_s: np.ndarray
    end_s: np.ndarray
    peak: np.ndarray
    grades: tuple[int, int, int]

    @property
    def count(self) -> int:
        return int(self.start_s.shape[0])


def gps_trust_speed(imu_t_s: np.ndarray, gps_t_s: np.ndarray, gps_v: np.ndarray, cfg: ScoringConfig) -> np.ndarray:
    """GPS speed at each IMU sample (linear interpolation), NaN where it is not trusted: outside the GPS span,
    across GPS gaps above max_integration_gap_s, and within gps_warmup_s after a fix is (re)acquired."""
    out = np.full(imu_t_s.shape[0], np.nan)
    if gps_t_s.shape[0] == 0 or imu_t_s.shape[0] == 0:
        return out
    out[:] = np.interp(imu_t_s, gps_t_s, gps_v)
    out[(imu_t_s < gps_t_s[0]) | (imu_t_s > gps_t_s[-1])] = np.nan
    j = np.searchsorted(gps_t_s, imu_t_s, side="left")  # gps_t_s[j-1] < t <= gps_t_s[j]
    inner = (j > 0) & (j < gps_t_s.shape[0])
    gap = np.zeros(imu_t_s.shape[0], bool)
    gap[inner] = (gps_t_s[j[inner]] - gps_t_s[j[inner] - 1]) > cfg.max_integration_gap_s
    out[gap] = np.nan
    acquired = np.concatenate([[0], np.flatnonzero(np.diff(gps_t_s) > cfg.max_integration_gap_s) + 1])
    a = np.searchsorted(gps_t_s[acquired], imu_t_s, side="right") - 1  # latest acquisition at or before t
    warm = (a >= 0) & (imu_t_s - gps_t_s[acquired[np.maximum(a, 0)]] < cfg.gps_warmup_s)
    out[warm] = np.nan
    return out


def harsh_events(imu_t_s: np.ndarray, a: np.ndarray, speed_at: np.ndarray, kind: str, cfg: ScoringConfig) -> Events:
    """Harsh events of ``kind`` (brake | accel | corner) from the accelerometer, gated by ``speed_at`` (m/s at each
    IMU sample, NaN = untrusted: see gps_trust_speed). NaN accelerations are treated as quiet samples."""
    t = _times(imu_t_s)
    n = t.shape[0]
    a = _f64("a", a, n)
    v = _f64("speed_at", speed_at, n)
    if kind == "brake":
        sign, thr, vmin, g2, g3 = -1, cfg.harsh_brake_mps2, cfg.min_event_speed_mps, cfg.grade2_mps2, cfg.grade3_mps2
    elif kind == "accel":
        sign, thr, vmin, g2, g3 = 1, cfg.harsh_accel_mps2, cfg.min_event_speed_mps, cfg.grade2_mps2, cfg.grade3_mps2
    elif kind == "corner":
        sign, thr, vmin, g2, g3 = (0, cfg.harsh_corner_mps2, cfg.min_corner_speed_mps, cfg.corner_grade2_mps2,
                                   cfg.corner_grade3_mps2)
    else:
        raise ValueError(f"unknown event kind {kind!r}")
    cap = n // 2 + 1
    s, e, p = np.empty(cap), np.empty(cap), np.empty(cap)
    k = event_kernel(t, a, v, sign, float(thr), float(vmin), float(cfg.min_event_duration_s),
                     float(cfg.event_merge_gap_s), float(cfg.max_imu_gap_s), s, e, p)
    p = p[:k].copy()
    grades = (int((p < g2).sum()), int(((p >= g2) & (p < g3)).sum()), int((p >= g3).sum()))
    return Events(s[:k].copy(), e[:k].copy(), p, grades)


_OFFSET_STEP_S = 900  # every real zone changes offset on a quarter hour, so one lookup per quarter is exact


@lru_cache(maxsize=100_000)
def _offset_s(tz: str, quarter: int) -> float:
    utc = datetime.fromtimestamp(quarter * _OFFSET_STEP_S, timezone.utc)
    return utc.astimezone(ZoneInfo(tz)).utcoffset().total_seconds()


def local_offsets(t_s: np.ndarray, tz: str) -> np.ndarray:
    """UTC offset (s) of ``tz`` at each time, DST included (one zone lookup per quarter hour touched)."""
    if t_s.shape[0] == 0:
        return np.zeros(0)
    q = np.floor(t_s / _OFFSET_STEP_S).astype(np.int64)
    uq, inv = np.unique(q, return_inverse=True)
    return np.array([_offset_s(tz, int(x)) for x in uq])[inv]


@dataclass(frozen=True)
class Exposure:
    night_s: float
    night_m: float
    rush_s: float
    rush_m: float
    weekend_s: float
    weekend_m: float


def exposure(t_s: np.ndarray, speed: np.ndarray, cfg: ScoringConfig) -> Exposure:
    """Moving time and distance at night, in weekday rush hours and at weekends, in cfg.time_zone local time."""
    t_s = _times(t_s)
    v = _speeds(speed, t_s.shape[0])
    mid = 0.5 * (t_s[1:] + t_s[:-1])
    off = local_offsets(mid, cfg.time_zone)
    r = exposure_kernel(t_s, v, np.ascontiguousarray(off), float(cfg.max_integration_gap_s),
                        float(cfg.night_start_h), float(cfg.night_end_h), float(cfg.rush_am_start_h),
                        float(cfg.rush_am_end_h), float(cfg.rush_pm_start_h), float(cfg.rush_pm_end_h))
    return Exposure(*(float(x) for x in r))


def phone_use(t_s: np.ndarray, speed: np.ndarray, phone: np.ndarray | None,
              cfg: ScoringConfig) -> tuple[float, float]:
    """(phone_s, reported_s): moving seconds with the phone handled, and moving seconds with a phone report at all
    (phone may be None: nothing reported; values < 0 mean not reported for that fix)."""
    t_s = _times(t_s)
    n = t_s.shape[0]
    v = _speeds(speed, n)
    if phone is None:
        return 0.0, 0.0
    ph = np.ascontiguousarray(phone, dtype=np.int8)
    if ph.shape != (n,):
        raise ValueError(f"phone must have one flag per fix ({n}), got {ph.shape}")
    a, b = phone_kernel(t_s, v, ph, float(cfg.max_integration_gap_s))
    return float(a), float(b)


def heatmap(t_s: np.ndarray, speed: np.ndarray, cfg: ScoringConfig) -> np.ndarray:
    """Seconds per (speed bin, acceleration bin), flattened speed-major: fixed bins, so trips sum per driver."""
    t_s = _times(t_s)
    v = _speeds(speed, t_s.shape[0])
    nv, na = int(cfg.heatmap_speed_bins), int(cfg.heatmap_accel_bins)
    if nv < 1 or na < 1:
        raise ValueError("heatmap needs at least one bin per axis")
    out = np.zeros(nv * na)
    heatmap_kernel(t_s, v, float(cfg.max_integration_gap_s), cfg.heatmap_speed_step_kmh / 3.6, nv,
                   float(cfg.heatmap_accel_step_mps2), na, out)
    return out


@dataclass(frozen=True)
class Speeding:
    total_m: float
    known_limit_m: float
    over_limit_m: float
    over_margin_m: float
    high_speed_m: float
    high_speed_unknown_m: float  # above the high speed where no limit is known (the fallback)


def speeding(t_s: np.ndarray, speed: np.ndarray, limit_mps: np.ndarray | None, cfg: ScoringConfig) -> Speeding:
    """Distance above the posted limit (per-fix limits, NaN = unknown; None = no map) and above limit + margin,
    and above the absolute high speed everywhere (the fallback where no limit is known)."""
    t_s = _times(t_s)
    n = t_s.shape[0]
    v = _speeds(speed, n)
    lim = np.full(n, np.nan) if limit_mps is None else _f64("limit_mps", limit_mps, n)
    r = speeding_kernel(t_s, v, lim, float(cfg.speeding_margin_mps), float(cfg.high_speed_mps),
                        float(cfg.max_integration_gap_s))
    return Speeding(*(float(x) for x in r))


def trip_score(parts_in: dict[str, float | None], cfg: ScoringConfig) -> tuple[float, dict]:
    """Score 0-100 = 100 - sum of weight * min(1, value / cap); returns the score and, per feature, its value, cap,
    weight and the points it cost, so a policyholder can be told exactly why. A None value costs nothing."""
    spec = {
        "phone_share": (cfg.score_w_phone, cfg.score_cap_phone_share),
        "speeding_share": (cfg.score_w_speeding, cfg.score_cap_speeding_share),
        "harsh_brakes_per_100km": (cfg.score_w_brakes, cfg.score_cap_brakes_per_100km),
        "harsh_accels_per_100km": (cfg.score_w_accels, cfg.score_cap_accels_per_100km),
        "harsh_corners_per_100km": (cfg.score_w_corners, cfg.score_cap_corners_per_100km),
        "night_share": (cfg.score_w_night, cfg.score_cap_night_share),
    }
    parts = {}
    total = 0.0
    for name, (w, cap) in spec.items():
        x = parts_in.get(name)
        lost = 0.0 if x is None or cap <= 0 else w * min(1.0, max(0.0, x) / cap)
        parts[name] = {"value": None if x is None else round(x, 6), "cap": cap, "weight": w, "points_lost": round(lost, 3)}
        total += lost
    return round(max(0.0, 100.0 - total), 3), parts


SCORER_VERSION = "3"  # 3: distance through GPS gaps dead-reckoned on the accelerometer


def _per_100km(n: int, km: float, cfg: ScoringConfig) -> float | None:
    return n * 100.0 / km if km >= cfg.score_min_km else None


def trip_limits(trip: ClosedTrip, layer: MapLayer | None) -> np.ndarray | None:
    """Posted limit (m/s, NaN = unknown) at each of the trip's fixes from a map layer, or None without one."""
    if layer is None or trip.lat.shape[0] != trip.t_ms.shape[0]:
        return None
    heading = trip.heading if trip.heading.shape[0] == trip.t_ms.shape[0] else None
    return layer.limits_mps(trip.lat, trip.lon, heading)


@dataclass(frozen=True)
class TripMeasures:
    """Everything the scorer computes for one trip, before it becomes a ``TripRecord``."""

    basic: TripFeatures
    km: float
    gap_m: float
    gap_s: float
    fixes: int
    dropped: int
    jumps: int
    events: dict[str, int]  # brake, accel, corner
    grades: dict[str, list[int]]
    event_source: str
    exposure: Exposure
    phone_s: float
    phone_reported_s: float
    speeding: Speeding
    heatmap: np.ndarray
    score: float
    score_parts: dict


def measure_trip(trip: ClosedTrip, cfg: ScoringConfig, limit_mps: np.ndarray | None = None) -> TripMeasures:
    """Compute a trip's features and score.

    ``limit_mps``: posted limit per GPS fix of ``trip.t_ms`` (NaN where unknown), or None when no map is available.
    Harsh brakes/accels come from the accelerometer (gated by trusted GPS speed) when the trip has IMU data, else
    from the speed channel (``event_source`` says which).
    """
    n = trip.t_ms.shape[0]
    lat = trip.lat if trip.lat.shape[0] == n else np.full(n, 45.0)
    lon = trip.lon if trip.lon.shape[0] == n else np.full(n, 45.0)
    good, n_bad, n_jumps = clean_fixes(trip.t_ms / 1000.0, lat, lon, trip.accuracy, cfg)
    t_s = trip.t_ms[good] / 1000.0
    v = trip.speed[good]
    f = trip_features(t_s, v, cfg)
    gap_m = gap_s = 0.0
    imu = None
    if trip.imu_t_ms.shape[0]:
        it = trip.imu_t_ms / 1000.0
        imu = align_to_vehicle(it, trip.acc_lon, trip.acc_lat, trip.acc_vert, t_s, v)
        if imu.status == "unusable":
            imu = None  # an accelerometer we cannot put in the vehicle frame: events from the speed channel
    if imu is not None:
        gap_m, gap_s, _ = fill_gaps(t_s, v, it, imu.lon, cfg.max_integration_gap_s, cfg.max_gap_fill_s)
    km = (f.distance_m + gap_m) / 1000.0
    if imu is not None:
        v_at = gps_trust_speed(it, t_s, v, cfg)
        ev = {k: harsh_events(it, a, v_at, k, cfg)
              for k, a in (("brake", imu.lon), ("accel", imu.lon), ("corner", imu.lat))}
        counts = {k: e.count for k, e in ev.items()}
        grades = {k: list(e.grades) for k, e in ev.items()}
        source = "imu" if imu.status == "vehicle_frame" else "imu_rotated"
    else:
        counts = {"brake": f.harsh_brakes, "accel": f.harsh_accels, "corner": 0}
        grades = {"brake": [f.harsh_brakes, 0, 0], "accel": [f.harsh_accels, 0, 0], "corner": [0, 0, 0]}
        source = "gps"
    ex = exposure(t_s, v, cfg)
    phone = trip.phone[good] if trip.phone.shape[0] == n else None
    phone_s, phone_rep_s = phone_use(t_s, v, phone, cfg)
    lim = None if limit_mps is None else np.asarray(limit_mps, dtype=np.float64)[good]
    sp = speeding(t_s, v, lim, cfg)
    dist = sp.total_m
    score, parts = trip_score({
        "phone_share": phone_s / phone_rep_s if phone_rep_s > 0 else None,
        "speeding_share": (sp.over_margin_m + sp.high_speed_unknown_m) / dist if dist > 0 else None,
        "harsh_brakes_per_100km": _per_100km(counts["brake"], km, cfg),
        "harsh_accels_per_100km": _per_100km(counts["accel"], km, cfg),
        "harsh_corners_per_100km": _per_100km(counts["corner"], km, cfg),
        "night_share": ex.night_m / dist if dist > 0 else None,
    }, cfg)
    return TripMeasures(f, km, gap_m, gap_s, int(good.sum()), int((~good).sum()), int(n_jumps), counts, grades,
                        source, ex, phone_s, phone_rep_s, sp, heatmap(t_s, v, cfg), score, parts)


def build_record(trip: ClosedTrip, m: TripMeasures) -> TripRecord:
    """The scored-trip record published to Kafka and stored in DuckDB (units in the field names)."""
    f, ex, sp, km = m.basic, m.exposure, m.speeding, m.km
    per100 = (lambda x: x * 100.0 / km) if km > 0 else (lambda x: None)
    return TripRecord(
        trip_id=trip.trip_id, vehicle_id=trip.vehicle, start_ms=int(trip.start_ms), end_ms=int(trip.end_ms),
        duration_s=(trip.end_ms - trip.start_ms) / 1000.0, distance_km=km, moving_s=f.moving_s, idle_s=f.idle_s,
        max_speed_kmh=f.max_speed_mps * 3.6,
        mean_speed_kmh=(f.distance_m / f.moving_s * 3.6) if f.moving_s > 0 else 0.0,
        harsh_brakes=m.events["brake"], harsh_accels=m.events["accel"], gps_fixes=m.fixes, gps_dropped=m.dropped,
        messages=trip.messages, complete=trip.complete, ended_by=trip.ended_by, scorer_version=SCORER_VERSION,
        harsh_corners=m.events["corner"], event_source=m.event_source,
        harsh_brakes_gps=f.harsh_brakes, harsh_accels_gps=f.harsh_accels,
        harsh_brake_grades=m.grades["brake"], harsh_accel_grades=m.grades["accel"],
        harsh_corner_grades=m.grades["corner"],
        harsh_brakes_per_100km=per100(m.events["brake"]), harsh_accels_per_100km=per100(m.events["accel"]),
        harsh_corners_per_100km=per100(m.events["corner"]), gps_jumps=m.jumps,
        gap_filled_km=m.gap_m / 1000.0, gap_filled_s=m.gap_s,
        night_s=ex.night_s, night_km=ex.night_m / 1000.0, rush_s=ex.rush_s, rush_km=ex.rush_m / 1000.0,
        weekend_s=ex.weekend_s, weekend_km=ex.weekend_m / 1000.0,
        phone_s=m.phone_s, phone_reported_s=m.phone_reported_s,
        limit_known_km=sp.known_limit_m / 1000.0, over_limit_km=sp.over_limit_m / 1000.0,
        over_limit_margin_km=sp.over_margin_m / 1000.0, high_speed_km=sp.high_speed_m / 1000.0,
        high_speed_unknown_km=sp.high_speed_unknown_m / 1000.0,
        heatmap_s=[round(float(x), 3) for x in m.heatmap], score=m.score, score_parts=m.score_parts)


def score_trip(trip: ClosedTrip, cfg: ScoringConfig, limit_mps: np.ndarray | None = None) -> TripRecord:
    """Measure a trip and build its record (``measure_trip`` then ``build_record``)."""
    return build_record(trip, measure_trip(trip, cfg, limit_mps))
