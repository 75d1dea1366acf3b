"""Public feature functions: validate input, call the kernels, return typed results."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

from scoring.align import Alignment, align_to_vehicle, smooth
from scoring.gapfill import fill_gaps
from scoring.imukernels import median_step, trust_speed_kernel
from scoring.intensity import Continuous, IntensityChannel, continuous, continuous_fields
from scoring.kernels import (
    clean_kernel,
    event_kernel,
    exposure_kernel,
    heatmap_kernel,
    phone_kernel,
    speed_events_kernel,
    speeding_kernel,
    trip_kernel,
)
from scoring.maplayer import MapLayer
from scoring.population import part_values, population_score
from scoring.rounding import pyround
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
    d, mv, idle, vmax, nb, na = trip_kernel(
        t_s,
        speed,
        cfg.harsh_brake_mps2,
        cfg.harsh_accel_mps2,
        cfg.min_event_speed_mps,
        cfg.max_integration_gap_s,
        cfg.moving_mps,
    )
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


def clean_fixes(
    t_s: np.ndarray, lat: np.ndarray, lon: np.ndarray, acc: np.ndarray, cfg: ScoringConfig
) -> tuple[np.ndarray, int, int]:
    """(keep mask, n_invalid_or_inaccurate, n_jumps): which fixes the speed-based features may use. Jumps are judged
    on coordinates, but distance still comes from the speed channel of the kept fixes."""
    t_s = _times(t_s)
    n = t_s.shape[0]
    lat, lon, acc = _f64("lat", lat, n), _f64("lon", lon, n), _f64("acc", acc, n)
    keep = np.zeros(n, np.uint8)
    bad, jumps = clean_kernel(
        t_s, lat, lon, acc, float(cfg.max_gps_accuracy_m), cfg.max_jump_speed_kmh / 3.6, int(cfg.max_jump_rejects), keep
    )
    return keep.astype(bool), int(bad), int(jumps)


@dataclass(frozen=True)
class Events:
    """Events of one kind from the moderate band up: times (s), peaks (m/s^2), and counts per band
    (moderate, harsh, severe) by peak, exclusive, so ``harsh`` (harsh or severe) keeps the old meaning."""

    start_s: np.ndarray
    end_s: np.ndarray
    peak: np.ndarray
    grades: tuple[int, int, int]

    @property
    def count(self) -> int:
        return int(self.start_s.shape[0])

    @property
    def harsh(self) -> int:
        return self.grades[1] + self.grades[2]


def bands(kind: str, cfg: ScoringConfig) -> tuple[int, float, float, float, float]:
    """(sign, moderate, harsh, severe, minimum speed) of an event kind (ScoringConfig carries the sources)."""
    if kind == "brake":
        return -1, cfg.brake_moderate_mps2, cfg.harsh_brake_mps2, cfg.brake_severe_mps2, cfg.min_event_speed_mps
    if kind == "accel":
        return 1, cfg.accel_moderate_mps2, cfg.harsh_accel_mps2, cfg.accel_severe_mps2, cfg.min_event_speed_mps
    if kind == "corner":
        return 0, cfg.corner_moderate_mps2, cfg.harsh_corner_mps2, cfg.corner_severe_mps2, cfg.min_corner_speed_mps
    raise ValueError(f"unknown event kind {kind!r}")


def _graded(start: np.ndarray, end: np.ndarray, peak: np.ndarray, b2: float, b3: float) -> Events:
    return Events(
        start, end, peak, (int((peak < b2).sum()), int(((peak >= b2) & (peak < b3)).sum()), int((peak >= b3).sum()))
    )


def gps_trust_speed(imu_t_s: np.ndarray, gps_t_s: np.ndarray, gps_v: np.ndarray, cfg: ScoringConfig) -> np.ndarray:
    """GPS speed at each IMU sample (linear interpolation), NaN where it is not trusted: outside the GPS span,
    across GPS gaps above max_integration_gap_s, and within event_warmup_s after a fix is (re)acquired (the speed
    channel's own rule). For a GPS that lags the IMU by L s pass ``imu_t_s + L``. One pass of
    scoring.imukernels.trust_speed_kernel (NumPy twin: scoring.reference_imu.gps_trust_speed_reference)."""
    t = _f64("imu_t_s", imu_t_s)
    gt = _times(gps_t_s)
    gv = _f64("gps_v", gps_v, gt.shape[0])
    out = np.full(t.shape[0], np.nan)
    if gt.shape[0] == 0 or t.shape[0] == 0:
        return out
    trust_speed_kernel(t, gt, gv, float(cfg.max_integration_gap_s), float(cfg.event_warmup_s), out)
    return out


def harsh_events(
    imu_t_s: np.ndarray,
    a: np.ndarray,
    speed_at: np.ndarray,
    kind: str,
    cfg: ScoringConfig,
    period: float | None = None,
) -> Events:
    """Graded events of ``kind`` (brake | accel | corner) from the accelerometer, gated by ``speed_at`` (m/s at each
    IMU sample, NaN = untrusted: see gps_trust_speed). NaN accelerations are quiet samples.

    Detection runs once, at the moderate band, on the event_mean_window_s moving mean, held for
    min_event_duration_s - window but at least one sample interval; an IMU gap ends a run when it exceeds
    max(max_imu_gap_s, max_imu_gap_samples / rate). Each event is graded by its peak. ``period``: the median sample
    interval of ``imu_t_s`` when the caller has it (measure_trip asks for three kinds on the same samples)."""
    t = _times(imu_t_s)
    n = t.shape[0]
    a = _f64("a", a, n)
    v = _f64("speed_at", speed_at, n)
    if n < 2:
        _, _, b2, b3, _ = bands(kind, cfg)
        return _graded(np.zeros(0), np.zeros(0), np.zeros(0), b2, b3)
    period = float(np.median(np.diff(t))) if period is None else period
    return _events_of_mean(t, smooth(a, event_window(period, cfg)), v, kind, cfg, period)


def event_window(period: float, cfg: ScoringConfig) -> int:
    """Samples in the event_mean_window_s moving mean at this sample interval."""
    return max(1, int(round(cfg.event_mean_window_s / period)))


def _events_of_mean(
    t: np.ndarray, am: np.ndarray, v: np.ndarray, kind: str, cfg: ScoringConfig, period: float
) -> Events:
    """``harsh_events`` from the moving mean ``am`` (validated input, n >= 2): brakes and accelerations share
    one mean of the forward axis."""
    n = t.shape[0]
    sign, b1, b2, b3, vmin = bands(kind, cfg)
    hold = max(cfg.min_event_duration_s - cfg.event_mean_window_s, period) - 1e-6
    max_gap = max(cfg.max_imu_gap_s, cfg.max_imu_gap_samples * period)
    cap = n // 2 + 1
    s, e, p = np.empty(cap), np.empty(cap), np.empty(cap)
    k = event_kernel(
        t, am, v, sign, float(b1), float(vmin), float(hold), float(cfg.event_merge_gap_s), float(max_gap), s, e, p
    )
    return _graded(s[:k].copy(), e[:k].copy(), p[:k].copy(), b2, b3)


@dataclass(frozen=True)
class SpeedEvents:
    brake: Events
    accel: Events
    artefacts: int  # 1 s speed changes above speed_max_plausible_mps2: never events, counted per device


def speed_events(t_s: np.ndarray, speed: np.ndarray, accuracy: np.ndarray | None, cfg: ScoringConfig) -> SpeedEvents:
    """Graded brake and acceleration events from a speed channel (GPS, OBD, CAN; any rate): accuracy guard,
    stale-repeat drop, warm-up after the first fix and every gap, 1 Hz resample, median-of-3, plausibility cap
    (scoring.kernels.speed_events_kernel)."""
    t_s = _times(t_s)
    n = t_s.shape[0]
    v = _speeds(speed, n)
    acc = np.full(n, np.nan) if accuracy is None else _f64("accuracy", accuracy, n)
    _, b1, b2, b3, vmin = bands("brake", cfg)
    _, c1, c2, c3, _ = bands("accel", cfg)
    cap = n + 1
    kind, s, e, p = np.empty(cap, np.int8), np.empty(cap), np.empty(cap), np.empty(cap)
    k, art = speed_events_kernel(
        t_s,
        v,
        acc,
        float(b1),
        float(c1),
        float(vmin),
        float(cfg.speed_event_max_accuracy_m),
        float(cfg.event_warmup_s),
        float(cfg.max_integration_gap_s),
        float(cfg.speed_repeat_min_mps),
        float(cfg.speed_max_plausible_mps2),
        kind,
        s,
        e,
        p,
    )
    kind, s, e, p = kind[:k], s[:k], e[:k], p[:k]
    order = np.argsort(s, kind="stable")
    kind, s, e, p = kind[order], s[order], e[order], p[order]
    br, ac = kind < 0, kind > 0
    return SpeedEvents(_graded(s[br], e[br], p[br], b2, b3), _graded(s[ac], e[ac], p[ac], c2, c3), int(art))


_OFFSET_STEP_S = 900  # every real zone changes offset on a quarter hour, so one lookup per quarter is exact


@lru_cache(maxsize=100_000)
def _offset_s(tz: str, quarter: int) -> float:
    utc = datetime.fromtimestamp(quarter * _OFFSET_STEP_S, timezone.utc)
    offset = utc.astimezone(ZoneInfo(tz)).utcoffset()
    assert offset is not None  # an aware datetime always has one
    return offset.total_seconds()


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
    r = exposure_kernel(
        t_s,
        v,
        np.ascontiguousarray(off),
        float(cfg.max_integration_gap_s),
        float(cfg.night_start_h),
        float(cfg.night_end_h),
        float(cfg.rush_am_start_h),
        float(cfg.rush_am_end_h),
        float(cfg.rush_pm_start_h),
        float(cfg.rush_pm_end_h),
        float(cfg.moving_mps),
    )
    return Exposure(*(float(x) for x in r))


def phone_use(t_s: np.ndarray, speed: np.ndarray, phone: np.ndarray | None, cfg: ScoringConfig) -> tuple[float, float]:
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
    a, b = phone_kernel(t_s, v, ph, float(cfg.max_integration_gap_s), float(cfg.moving_mps))
    return float(a), float(b)


def heatmap(t_s: np.ndarray, speed: np.ndarray, cfg: ScoringConfig) -> np.ndarray:
    """Seconds per (speed bin, acceleration bin), flattened speed-major: fixed bins, so trips sum per driver."""
    t_s = _times(t_s)
    v = _speeds(speed, t_s.shape[0])
    nv, na = int(cfg.heatmap_speed_bins), int(cfg.heatmap_accel_bins)
    if nv < 1 or na < 1:
        raise ValueError("heatmap needs at least one bin per axis")
    out = np.zeros(nv * na)
    heatmap_kernel(
        t_s,
        v,
        float(cfg.max_integration_gap_s),
        cfg.heatmap_speed_step_kmh / 3.6,
        nv,
        float(cfg.heatmap_accel_step_mps2),
        na,
        out,
        float(cfg.moving_mps),
    )
    return out


@dataclass(frozen=True)
class Speeding:
    total_m: float
    known_limit_m: float
    over_limit_m: float
    over_margin_m: float
    high_speed_m: float
    high_speed_unknown_m: float  # above the high speed where no limit is known (the fallback)
    risk_m: float  # distance weighted by extra relative crash risk (ScoringConfig.speeding_risk_*)

    @property
    def extra_risk(self) -> float | None:
        """Distance-weighted mean extra relative crash risk of the trip (0 = never over a limit)."""
        return self.risk_m / self.total_m if self.total_m > 0 else None


def speeding(t_s: np.ndarray, speed: np.ndarray, limit_mps: np.ndarray | None, cfg: ScoringConfig) -> Speeding:
    """Distance above the posted limit (per-fix limits, NaN = unknown; None = no map) and above limit + margin,
    and above the absolute high speed everywhere (the fallback where no limit is known)."""
    t_s = _times(t_s)
    n = t_s.shape[0]
    v = _speeds(speed, n)
    lim = np.full(n, np.nan) if limit_mps is None else _f64("limit_mps", limit_mps, n)
    r = speeding_kernel(
        t_s,
        v,
        lim,
        float(cfg.speeding_margin_mps),
        float(cfg.high_speed_mps),
        float(cfg.max_integration_gap_s),
        float(cfg.speeding_risk_doubling_kmh),
        float(cfg.speeding_risk_cap),
    )
    return Speeding(*(float(x) for x in r))


SCORER_VERSION = "5"  # 3: distance through GPS gaps dead-reckoned on the accelerometer; 4: lag-tolerant,
# gravity-aware IMU alignment, graded event bands on a 0.5 s mean, a guarded speed channel, risk-weighted speeding;
# 5: continuous measures (scoring/intensity.py), device profiles, the population-calibrated score


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
    events: dict[str, int]  # brake, accel, corner: the harsh band and above
    grades: dict[str, list[int]]  # [moderate, harsh, severe] per kind
    event_source: str
    imu: Alignment | None  # None: the trip has no IMU samples
    gps_events: SpeedEvents
    exposure: Exposure
    phone_s: float
    phone_reported_s: float
    speeding: Speeding
    heatmap: np.ndarray
    score: float
    score_parts: dict
    cont: Continuous | None = None  # continuous measures (scoring/intensity.py)
    device_class: str | None = None
    imu_expected: bool = False  # the device class is expected to deliver an accelerometer


@dataclass(frozen=True)
class Precomputed:
    """The speed-channel kernels' results for one trip, computed for many trips at once by scoring/batch.py with
    the same kernels and the same configuration (``cfg``, the device profile applied): ``measure_trip`` takes them
    instead of calling those kernels, and computes everything else itself."""

    cfg: ScoringConfig
    clean: tuple[np.ndarray, int, int]  # clean_fixes
    basic: TripFeatures
    speed_events: SpeedEvents
    exposure: Exposure
    phone: tuple[float, float]  # phone_use
    speeding: Speeding
    heatmap: np.ndarray
    channel: IntensityChannel | None = None  # the 1 Hz speed channel, for a trip whose IMU is not used


def measure_trip(
    trip: ClosedTrip,
    cfg: ScoringConfig,
    limit_mps: np.ndarray | None = None,
    device_class: str | None = None,
    pre: Precomputed | None = None,
) -> TripMeasures:
    """Compute a trip's features and score.

    ``limit_mps``: posted limit per GPS fix of ``trip.t_ms`` (NaN where unknown), or None when no map is available.
    Harsh brakes/accels come from the accelerometer (gated by trusted GPS speed) when the trip has IMU data, else
    from the speed channel (``event_source`` says which). ``device_class`` (phone | dongle | oem; None: the
    vehicle's class in the configuration) picks the ScoringConfig device profile. ``pre``: the speed-channel
    kernels' results for this trip (scoring/batch.py), computed with this trip's configuration.
    """
    cfg = cfg.for_device(device_class or cfg.device_class_of(trip.vehicle))
    if pre is not None and pre.cfg is not cfg and pre.cfg != cfg:
        raise ValueError("precomputed kernel results of another configuration")
    n = trip.t_ms.shape[0]
    if pre is None:
        lat = trip.lat if trip.lat.shape[0] == n else np.full(n, 45.0)
        lon = trip.lon if trip.lon.shape[0] == n else np.full(n, 45.0)
    good, n_bad, n_jumps = pre.clean if pre else clean_fixes(trip.t_ms / 1000.0, lat, lon, trip.accuracy, cfg)
    t_s = trip.t_ms[good] / 1000.0
    v = trip.speed[good]
    f = pre.basic if pre else trip_features(t_s, v, cfg)
    gap_m = gap_s = 0.0
    imu: Alignment | None = None
    per: float | None = None
    if trip.imu_t_ms.shape[0]:
        it = trip.imu_t_ms / 1000.0
        per = median_step(it) if it.shape[0] >= 2 else None  # once for alignment, events, channel
        imu = align_to_vehicle(it, trip.acc_lon, trip.acc_lat, trip.acc_vert, t_s, v, cfg, per)
    used = imu is not None and imu.used
    if used:
        assert imu is not None
        gap_m, gap_s, _ = fill_gaps(t_s, v, it, imu.lon, cfg.max_integration_gap_s, cfg.max_gap_fill_s)
    km = (f.distance_m + gap_m) / 1000.0
    sev = (
        pre.speed_events
        if pre
        else speed_events(t_s, v, trip.accuracy[good] if trip.accuracy.shape[0] == n else None, cfg)
    )
    if used:
        assert imu is not None
        v_at = gps_trust_speed(it + imu.lag_s, t_s, v, cfg)  # GPS speed read back onto the IMU's clock
        if it.shape[0] >= 2:
            _times(it)  # harsh_events' own checks, once for the three kinds
            assert per is not None
            w = event_window(per, cfg)
            m_lon, m_lat = smooth(imu.lon, w), smooth(imu.lat, w)  # brakes and accelerations: one mean
            ev = {
                k: _events_of_mean(it, am, v_at, k, cfg, per)
                for k, am in (("brake", m_lon), ("accel", m_lon), ("corner", m_lat))
            }
        else:
            ev = {
                k: harsh_events(it, a, v_at, k, cfg)
                for k, a in (("brake", imu.lon), ("accel", imu.lon), ("corner", imu.lat))
            }
        source = "imu" if imu.status == "vehicle_frame" else "imu_rotated"
    else:
        ev = {"brake": sev.brake, "accel": sev.accel, "corner": _graded(*(np.zeros(0),) * 3, 0.0, 0.0)}
        source = "gps"
    counts = {k: e.harsh for k, e in ev.items()}
    grades = {k: list(e.grades) for k, e in ev.items()}
    ex = pre.exposure if pre else exposure(t_s, v, cfg)
    phone = trip.phone[good] if trip.phone.shape[0] == n else None
    phone_s, phone_rep_s = pre.phone if pre else phone_use(t_s, v, phone, cfg)
    lim = None if limit_mps is None else np.asarray(limit_mps, dtype=np.float64)[good]
    sp = pre.speeding if pre else speeding(t_s, v, lim, cfg)
    heading = trip.heading[good] if trip.heading.shape[0] == n else None
    cont = continuous(
        t_s,
        v,
        heading,
        it if used else None,
        imu,
        lim,
        cfg,
        pre.channel if pre is not None and not used else None,
        per if used else None,
    )
    score, parts = population_score(
        part_values(
            {
                "distance_km": km,
                "phone_s": phone_s,
                "phone_reported_s": phone_rep_s,
                "speeding_extra_risk": sp.extra_risk,
                "night_km": ex.night_m / 1000.0,
                **{f"harsh_{k}_grades": g for k, g in grades.items()},
                **continuous_fields(cont, cfg.device_class),
            },
            cfg,
        ),
        cfg,
    )
    return TripMeasures(
        f,
        km,
        gap_m,
        gap_s,
        int(good.sum()),
        int((~good).sum()),
        int(n_jumps),
        counts,
        grades,
        source,
        imu,
        sev,
        ex,
        phone_s,
        phone_rep_s,
        sp,
        pre.heatmap if pre else heatmap(t_s, v, cfg),
        score,
        parts,
        cont,
        cfg.device_class,
        cfg.imu_expected,
    )


def build_record(trip: ClosedTrip, m: TripMeasures) -> TripRecord:
    """The scored-trip record published to Kafka and stored in DuckDB (units in the field names)."""
    f, ex, sp, km = m.basic, m.exposure, m.speeding, m.km
    per100 = (lambda x: x * 100.0 / km) if km > 0 else (lambda x: None)
    return TripRecord(
        trip_id=trip.trip_id,
        vehicle_id=trip.vehicle,
        start_ms=int(trip.start_ms),
        end_ms=int(trip.end_ms),
        duration_s=(trip.end_ms - trip.start_ms) / 1000.0,
        distance_km=km,
        moving_s=f.moving_s,
        idle_s=f.idle_s,
        max_speed_kmh=f.max_speed_mps * 3.6,
        mean_speed_kmh=(f.distance_m / f.moving_s * 3.6) if f.moving_s > 0 else 0.0,
        harsh_brakes=m.events["brake"],
        harsh_accels=m.events["accel"],
        gps_fixes=m.fixes,
        gps_dropped=m.dropped,
        messages=trip.messages,
        complete=trip.complete,
        seq_first=trip.seq_first if trip.seq_first >= 0 else None,
        seq_last=trip.seq_last if trip.seq_last >= 0 else None,
        ended_by=trip.ended_by,
        scorer_version=SCORER_VERSION,
        harsh_corners=m.events["corner"],
        event_source=m.event_source,
        harsh_brakes_gps=m.gps_events.brake.harsh,
        harsh_accels_gps=m.gps_events.accel.harsh,
        harsh_brake_grades=m.grades["brake"],
        harsh_accel_grades=m.grades["accel"],
        harsh_corner_grades=m.grades["corner"],
        harsh_brakes_per_100km=per100(m.events["brake"]),
        harsh_accels_per_100km=per100(m.events["accel"]),
        harsh_corners_per_100km=per100(m.events["corner"]),
        gps_jumps=m.jumps,
        gap_filled_km=m.gap_m / 1000.0,
        gap_filled_s=m.gap_s,
        night_s=ex.night_s,
        night_km=ex.night_m / 1000.0,
        rush_s=ex.rush_s,
        rush_km=ex.rush_m / 1000.0,
        weekend_s=ex.weekend_s,
        weekend_km=ex.weekend_m / 1000.0,
        phone_s=m.phone_s,
        phone_reported_s=m.phone_reported_s,
        limit_known_km=sp.known_limit_m / 1000.0,
        over_limit_km=sp.over_limit_m / 1000.0,
        over_limit_margin_km=sp.over_margin_m / 1000.0,
        high_speed_km=sp.high_speed_m / 1000.0,
        high_speed_unknown_km=sp.high_speed_unknown_m / 1000.0,
        heatmap_s=pyround(m.heatmap, 3).tolist(),  # round(x, 3) of every cell (0.0 and -0.0 stay as they are)
        score=m.score,
        score_parts=m.score_parts,
        imu_status=imu_status(m.imu),
        imu_reason=(NO_EXPECTED_IMU if m.imu_expected else None) if m.imu is None else m.imu.reason,
        imu_gravity=None if m.imu is None else m.imu.gravity,
        imu_lag_s=None if m.imu is None or not np.isfinite(m.imu.lag_s) else m.imu.lag_s,
        imu_r=None if m.imu is None or not np.isfinite(m.imu.r) else round(m.imu.r, 2),  # a diagnostic
        speed_artefacts=m.gps_events.artefacts,
        speeding_extra_risk=sp.extra_risk,
        gps_brake_grades=list(m.gps_events.brake.grades),
        gps_accel_grades=list(m.gps_events.accel.grades),
        **continuous_fields(m.cont, m.device_class),
    )


NO_EXPECTED_IMU = "no IMU data, though its device class is expected to have one"


def imu_status(a: Alignment | None) -> str:
    """none (no IMU samples) | vehicle_frame | rotated | rejected."""
    if a is None:
        return "none"
    return "rejected" if not a.used else a.status


def score_trip(
    trip: ClosedTrip, cfg: ScoringConfig, limit_mps: np.ndarray | None = None, device_class: str | None = None
) -> TripRecord:
    """Measure a trip and build its record (``measure_trip`` then ``build_record``)."""
    return build_record(trip, measure_trip(trip, cfg, limit_mps, device_class))
