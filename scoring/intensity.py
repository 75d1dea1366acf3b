"""Continuous driving measures that do not wait for rare events (issue 12): intensity, jerk, the speed x
acceleration heatmap in a few numbers, speeding graded by how far over, and signs of fatigue or inattention.

Everything is measured on one **1 Hz channel** per trip, so that a phone, a dongle and a car's own bus give
comparable numbers: speed is the guarded GPS/OBD/CAN speed (moving mean over the device class's
``speed_smooth_s``, sampled each second from ``event_warmup_s`` after the first fix and after every gap);
longitudinal acceleration is the 1 s mean of the aligned accelerometer where it is usable and samples at least
``intensity_min_imu_hz`` (read at the GPS lag; a 1 Hz IMU gives point samples full of vibration, not means),
else the centred 2 s difference of that speed; lateral acceleration is the 1 s mean of the aligned
accelerometer, else speed x GPS heading rate (none when the device reports no heading).
``IntensityChannel.source`` says which.

Each measure is a small numba kernel below with a plain-Python twin in scoring/reference_intensity.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from scoring.align import Alignment, smooth
from scoring.imukernels import bin_means_kernel
from ubi.common.config import ScoringConfig

# ---------------------------------------------------------------------------------------------------- kernels


@njit(cache=True, nogil=True)
def intensity_kernel(
    t: np.ndarray,
    v: np.ndarray,
    alon: np.ndarray,
    alat: np.ndarray,
    moving_mps: float,
    brake_lv: np.ndarray,
    accel_lv: np.ndarray,
    lat_lv: np.ndarray,
    jerk_lv: float,
    hi_speed: float,
    hi_acc: float,
    brake_s: np.ndarray,
    accel_s: np.ndarray,
    lat_s: np.ndarray,
) -> tuple[float, float, float, float, float, float, float, float, float]:
    """On a 1 Hz channel (t in s; a sample is one second): seconds moving (v > moving_mps, finite alon) at or
    beyond each level (brake: alon <= -level, accel: alon >= level, lateral: |alat| >= level; written to
    the *_s arrays), and returns (moving_s, lat_moving_s, jerk_n, jerk_sq_sum, jerk_over_n, hi_s, hi_acc_s,
    pos_work, dist): jerk = difference of alon between samples exactly 1 s apart, both moving; hi_s = moving
    seconds at v >= hi_speed, hi_acc_s = those with |alon| >= hi_acc; pos_work = sum v * max(alon, 0),
    dist = sum v (relative positive acceleration = pos_work / dist)."""
    n = t.shape[0]
    mv = lm = jn = jsq = jo = hs = ha = pw = dist = 0.0
    for k in range(brake_lv.shape[0]):
        brake_s[k] = 0.0
    for k in range(accel_lv.shape[0]):
        accel_s[k] = 0.0
    for k in range(lat_lv.shape[0]):
        lat_s[k] = 0.0
    prev_ok = False
    for i in range(n):
        a = alon[i]
        ok = v[i] > moving_mps and a == a
        if ok:
            mv += 1.0
            for k in range(brake_lv.shape[0]):
                if a <= -brake_lv[k]:
                    brake_s[k] += 1.0
            for k in range(accel_lv.shape[0]):
                if a >= accel_lv[k]:
                    accel_s[k] += 1.0
            y = alat[i]
            if y == y:
                lm += 1.0
                for k in range(lat_lv.shape[0]):
                    if abs(y) >= lat_lv[k]:
                        lat_s[k] += 1.0
            if v[i] >= hi_speed:
                hs += 1.0
                if abs(a) >= hi_acc:
                    ha += 1.0
            if a > 0.0:
                pw += v[i] * a
            dist += v[i]
            if prev_ok and abs(t[i] - t[i - 1] - 1.0) < 1e-6:
                j = a - alon[i - 1]
                jn += 1.0
                jsq += j * j
                if abs(j) >= jerk_lv:
                    jo += 1.0
        prev_ok = ok
    return mv, lm, jn, jsq, jo, hs, ha, pw, dist


@njit(cache=True, nogil=True)
def speeding_bands_kernel(
    t_s: np.ndarray, v: np.ndarray, limit: np.ndarray, high: float, max_gap: float, edges: np.ndarray, out: np.ndarray
) -> float:
    """Distance (m) over the limit by band: out[k] gets the intervals whose excess (mean speed minus the limit at
    the interval's start; NaN limit = ``high`` stands in, as in scoring.kernels.speeding_kernel) lies in
    [edges[k], edges[k+1]) (last band open). Returns the total distance (trapezoid rule, gaps above max_gap
    skipped)."""
    n = t_s.shape[0]
    nb = edges.shape[0]
    for k in range(nb):
        out[k] = 0.0
    tot = 0.0
    for i in range(1, n):
        dt = t_s[i] - t_s[i - 1]
        if dt <= 0.0 or dt > max_gap:
            continue
        vm = 0.5 * (v[i - 1] + v[i])
        d = vm * dt
        tot += d
        lim = limit[i - 1]
        if lim != lim:
            lim = high
        x = vm - lim
        if x <= 0.0:
            continue
        for k in range(nb - 1, -1, -1):
            if x >= edges[k]:
                out[k] += d
                break
    return tot


@njit(cache=True, nogil=True)
def longest_drive_kernel(t_s: np.ndarray, v: np.ndarray, moving_mps: float, break_s: float) -> float:
    """Longest stretch (s) from a moving fix to a later moving fix with no break between: a break is standing
    (v <= moving_mps) for at least break_s, or a data gap of at least break_s, between two moving fixes."""
    n = t_s.shape[0]
    best = 0.0
    start = -1.0
    last = -1.0
    for i in range(n):
        if v[i] > moving_mps:
            if start < 0.0 or t_s[i] - last >= break_s:
                start = t_s[i]
            last = t_s[i]
            if last - start > best:
                best = last - start
    return best


@njit(cache=True, nogil=True)
def cruise_kernel(
    t: np.ndarray, v: np.ndarray, alat: np.ndarray, win: int, min_speed: float, max_mean_lat: float
) -> tuple[float, float, float, float]:
    """Steady cruise on the 1 Hz channel: consecutive non-overlapping windows of ``win`` samples exactly 1 s apart
    with every speed >= min_speed. Returns (n_windows, sum of their speed coefficients of variation (population
    std / mean), n_straight, sum of lateral std): a window is straight when every alat is finite and |mean alat|
    <= max_mean_lat, and then adds its population std of alat. A window restarts after any break or slow sample."""
    n = t.shape[0]
    nw = cv = ns = ls = 0.0
    i = 0
    while i + win <= n:
        nxt = -1
        for j in range(i, i + win):
            if j > i and abs(t[j] - t[j - 1] - 1.0) > 1e-6:
                nxt = j  # a break: a new window may start at j
                break
            if not (v[j] >= min_speed):
                nxt = j + 1
                break
        if nxt >= 0:
            i = nxt
            continue
        m = 0.0
        for j in range(i, i + win):
            m += v[j]
        m /= win
        s = 0.0
        for j in range(i, i + win):
            s += (v[j] - m) ** 2
        nw += 1.0
        cv += np.sqrt(s / win) / m
        straight = True
        ml = 0.0
        for j in range(i, i + win):
            if alat[j] != alat[j]:
                straight = False
                break
            ml += alat[j]
        if straight:
            ml /= win
            if abs(ml) <= max_mean_lat:
                s = 0.0
                for j in range(i, i + win):
                    s += (alat[j] - ml) ** 2
                ns += 1.0
                ls += np.sqrt(s / win)
        i += win
    return nw, cv, ns, ls


# ------------------------------------------------------------------------------------------ the 1 Hz channel


@dataclass(frozen=True)
class IntensityChannel:
    t: np.ndarray  # s, GPS clock, 1 s steps within a segment
    v: np.ndarray  # m/s
    lon: np.ndarray  # m/s^2, + forward
    lat: np.ndarray  # m/s^2, + left; NaN where unknown
    source: str  # "imu" | "speed": where lon (and lat) came from; "speed+heading" when lat is speed x heading rate


def _bin_means(ts: np.ndarray, x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Mean of the finite x with ts (sorted) in [g - 0.5, g + 0.5) for each grid time g (NaN where none):
    scoring.imukernels.bin_means_kernel (NumPy twin: scoring.reference_imu.bin_means_reference)."""
    ts = np.ascontiguousarray(ts, dtype=np.float64)
    x = np.ascontiguousarray(x, dtype=np.float64)
    grid = np.ascontiguousarray(grid, dtype=np.float64)
    if ts.ndim != 1 or x.shape != ts.shape or grid.ndim != 1:
        raise ValueError(f"bin means: ts and x 1-D of equal length, got {ts.shape} and {x.shape}")
    out = np.empty(grid.shape[0])
    bin_means_kernel(ts, x, grid, out)
    return out


def channel(
    t_s: np.ndarray,
    v: np.ndarray,
    heading_deg: np.ndarray | None,
    imu_t_s: np.ndarray | None,
    imu: Alignment | None,
    cfg: ScoringConfig,
    imu_period_s: float | None = None,
) -> IntensityChannel:
    """The trip's 1 Hz channel from its cleaned fixes (strictly increasing t_s) and, when used, its aligned IMU
    (``imu_period_s``: its median sample interval, when the caller has it)."""
    n = t_s.shape[0]
    if n < 2:
        e = np.zeros(0)
        return IntensityChannel(e, e, e, e, "speed")
    rate = 1.0 / max(float(np.median(np.diff(t_s))), 1e-3)
    vs = smooth(v, max(1, int(round(cfg.speed_smooth_s * rate)))) if cfg.speed_smooth_s > 0 else v
    cut = np.flatnonzero(np.diff(t_s) > cfg.max_integration_gap_s) + 1
    grids = []
    for s0, s1 in zip(np.r_[0, cut], np.r_[cut, n], strict=True):
        t0 = t_s[s0] + cfg.event_warmup_s
        if t_s[s1 - 1] - t0 >= 2.0:
            grids.append(np.arange(t0, t_s[s1 - 1] + 1e-9, 1.0))
    if not grids:
        e = np.zeros(0)
        return IntensityChannel(e, e, e, e, "speed")
    g = np.concatenate(grids)
    vg = np.interp(g, t_s, vs)
    # centred difference within each segment (one-sided at its ends)
    step = np.diff(g)
    brk = np.abs(step - 1.0) > 1e-6
    fwd = np.r_[np.where(brk, np.nan, np.diff(vg)), np.nan]
    bwd = np.r_[np.nan, np.where(brk, np.nan, np.diff(vg))]
    with np.errstate(invalid="ignore"):
        lon_v = np.where(np.isnan(fwd), bwd, np.where(np.isnan(bwd), fwd, 0.5 * (fwd + bwd)))
    used = imu is not None and imu.used and imu_t_s is not None and imu_t_s.shape[0] > 1
    if used:
        assert imu_t_s is not None
        per = float(np.median(np.diff(imu_t_s))) if imu_period_s is None else imu_period_s
        used = 1.0 / per >= cfg.intensity_min_imu_hz
    if used:
        assert imu is not None and imu_t_s is not None
        gi = g - (imu.lag_s if np.isfinite(imu.lag_s) else 0.0)  # GPS lags the IMU: read the IMU L s earlier
        lon = _bin_means(imu_t_s, imu.lon, gi)
        lat = _bin_means(imu_t_s, imu.lat, gi)
        return IntensityChannel(g, vg, lon, lat, "imu")
    lat = np.full(g.shape[0], np.nan)
    source = "speed"
    if heading_deg is not None and heading_deg.shape[0] == n and np.ptp(heading_deg) > 0:
        h = np.unwrap(np.radians(heading_deg))
        hg = np.interp(g, t_s, h)
        f2 = np.r_[np.where(brk, np.nan, np.diff(hg)), np.nan]
        b2 = np.r_[np.nan, np.where(brk, np.nan, np.diff(hg))]
        with np.errstate(invalid="ignore"):
            rate_h = np.where(np.isnan(f2), b2, np.where(np.isnan(b2), f2, 0.5 * (f2 + b2)))
        # heading is a compass bearing (clockwise): a left turn lowers it, and + lat is left
        lat = -vg * rate_h
        lat[vg < cfg.min_corner_speed_mps] = np.nan  # GPS heading is noise at low speed
        source = "speed+heading"
    return IntensityChannel(g, vg, lon_v, lat, source)


# ------------------------------------------------------------------------------------------ public measures


@dataclass(frozen=True)
class Intensity:
    """Shares are of moving seconds on the 1 Hz channel (lateral: of those with a lateral value); None when there
    is nothing to measure. Level lists follow ``levels()``: [low, moderate, harsh]."""

    source: str
    moving_s: float
    brake_share: list[float] | None
    accel_share: list[float] | None
    lat_share: list[float] | None
    jerk_rms: float | None  # m/s^3, of the 1 s means
    jerk_share: float | None  # share of 1 s steps with |jerk| >= ScoringConfig.jerk_level_mps3
    high_speed_accel_share: float | None  # of moving seconds at >= intensity_high_speed_kmh, |a| >= the low level
    rpa_mps2: float | None  # relative positive acceleration: sum v * a+ / sum v
    cruise_windows: int
    cruise_speed_cv: float | None  # mean coefficient of variation of speed in steady-cruise windows
    weave_windows: int
    weave_lat_std: float | None  # mean std of lateral acceleration in straight steady-cruise windows (m/s^2)


def levels(cfg: ScoringConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(brake, accel, lateral) levels: intensity_low_fraction x the moderate band, the moderate band, the harsh
    band (ScoringConfig's graded cut points)."""
    f = cfg.intensity_low_fraction
    return (
        np.array([f * cfg.brake_moderate_mps2, cfg.brake_moderate_mps2, cfg.harsh_brake_mps2]),
        np.array([f * cfg.accel_moderate_mps2, cfg.accel_moderate_mps2, cfg.harsh_accel_mps2]),
        np.array([f * cfg.corner_moderate_mps2, cfg.corner_moderate_mps2, cfg.harsh_corner_mps2]),
    )


def intensity(ch: IntensityChannel, cfg: ScoringConfig) -> Intensity:
    """The intensity, jerk, heatmap and cruise measures of one trip's 1 Hz channel."""
    bl, al, ll = levels(cfg)
    bs, as_, ls = np.zeros(3), np.zeros(3), np.zeros(3)
    mv, lm, jn, jsq, jo, hs, ha, pw, dist = intensity_kernel(
        ch.t,
        ch.v,
        ch.lon,
        ch.lat,
        float(cfg.moving_mps),
        bl,
        al,
        ll,
        float(cfg.jerk_level_mps3),
        cfg.intensity_high_speed_kmh / 3.6,
        float(min(bl[0], al[0])),
        bs,
        as_,
        ls,
    )
    nw, cv, ns, lsd = cruise_kernel(
        ch.t,
        ch.v,
        ch.lat,
        int(cfg.cruise_window_s),
        cfg.cruise_min_kmh / 3.6,
        float(cfg.cruise_max_mean_lat_mps2),
    )

    def share(x: np.ndarray, d: float) -> list[float] | None:
        return [round(float(y) / d, 6) for y in x] if d > 0 else None

    return Intensity(
        source=ch.source,
        moving_s=float(mv),
        brake_share=share(bs, mv),
        accel_share=share(as_, mv),
        lat_share=share(ls, lm),
        jerk_rms=float(np.sqrt(jsq / jn)) if jn > 0 else None,
        jerk_share=float(jo / jn) if jn > 0 else None,
        high_speed_accel_share=float(ha / hs) if hs > 0 else None,
        rpa_mps2=float(pw / dist) if dist > 0 else None,
        cruise_windows=int(nw),
        cruise_speed_cv=float(cv / nw) if nw > 0 else None,
        weave_windows=int(ns),
        weave_lat_std=float(lsd / ns) if ns > 0 else None,
    )


def speeding_bands(t_s: np.ndarray, v: np.ndarray, limit_mps: np.ndarray | None, cfg: ScoringConfig) -> list[float]:
    """Share of the trip's distance over the limit by +0-10, +10-20 and > 20 km/h (ScoringConfig
    speeding_band2_kmh, speeding_band3_kmh; no limit known: high_speed_mps stands in); [0, 0, 0] without distance."""
    n = t_s.shape[0]
    lim = np.full(n, np.nan) if limit_mps is None else np.ascontiguousarray(limit_mps, dtype=np.float64)
    edges = np.array([0.0, cfg.speeding_band2_kmh, cfg.speeding_band3_kmh], dtype=np.float64) / 3.6
    out = np.zeros(edges.shape[0])
    tot = speeding_bands_kernel(
        np.ascontiguousarray(t_s, np.float64),
        np.ascontiguousarray(v, np.float64),
        lim,
        float(cfg.high_speed_mps),
        float(cfg.max_integration_gap_s),
        edges,
        out,
    )
    return [round(float(x) / tot, 6) if tot > 0 else 0.0 for x in out]


def longest_drive_s(t_s: np.ndarray, v: np.ndarray, cfg: ScoringConfig) -> float:
    """Longest driving without a break of ScoringConfig.break_min_s standing or without data (fatigue)."""
    return float(
        longest_drive_kernel(
            np.ascontiguousarray(t_s, np.float64),
            np.ascontiguousarray(v, np.float64),
            float(cfg.moving_mps),
            float(cfg.break_min_s),
        )
    )


@dataclass(frozen=True)
class Continuous:
    """All continuous measures of one trip (TripRecord fields of scorer version 5)."""

    intensity: Intensity
    speeding_bands: list[float]  # share of distance +0-10, +10-20, > 20 km/h over the limit
    longest_drive_s: float
    fatigue_s: float  # driving beyond ScoringConfig.fatigue_after_s without a break


def continuous(
    t_s: np.ndarray,
    v: np.ndarray,
    heading_deg: np.ndarray | None,
    imu_t_s: np.ndarray | None,
    imu: Alignment | None,
    limit_mps: np.ndarray | None,
    cfg: ScoringConfig,
    ch: IntensityChannel | None = None,
    imu_period_s: float | None = None,
) -> Continuous:
    """The continuous measures of a trip's cleaned fixes (and aligned IMU, when used). ``ch``: the trip's channel
    when the caller has it (scoring/batch.py computes the speed channels of many trips at once)."""
    ch = channel(t_s, v, heading_deg, imu_t_s, imu, cfg, imu_period_s) if ch is None else ch
    longest = longest_drive_s(t_s, v, cfg)
    return Continuous(
        intensity(ch, cfg),
        speeding_bands(t_s, v, limit_mps, cfg),
        longest,
        max(0.0, longest - cfg.fatigue_after_s),
    )


def continuous_fields(c: Continuous | None, device_class: str | None) -> dict:
    """The TripRecord fields of scorer version 5 (all None without measures)."""
    i = None if c is None else c.intensity
    r = (lambda x: None if x is None else round(x, 6)) if c is not None else (lambda x: None)
    return {
        "device_class": device_class,
        "intensity_source": None if i is None else i.source,
        "brake_time_share": None if i is None else i.brake_share,
        "accel_time_share": None if i is None else i.accel_share,
        "lat_time_share": None if i is None else i.lat_share,
        "jerk_rms_mps3": r(None if i is None else i.jerk_rms),
        "jerk_share": r(None if i is None else i.jerk_share),
        "high_speed_accel_share": r(None if i is None else i.high_speed_accel_share),
        "rpa_mps2": r(None if i is None else i.rpa_mps2),
        "speeding_band_share": None if c is None else c.speeding_bands,
        "longest_drive_s": None if c is None else c.longest_drive_s,
        "fatigue_s": None if c is None else c.fatigue_s,
        "cruise_windows": None if i is None else i.cruise_windows,
        "cruise_speed_cv": r(None if i is None else i.cruise_speed_cv),
        "weave_windows": None if i is None else i.weave_windows,
        "weave_lat_std_mps2": r(None if i is None else i.weave_lat_std),
    }
