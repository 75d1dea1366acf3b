"""Score many trips per kernel call: the speed-channel kernels of ``scoring.kernels`` run over all trips of a batch
in one numba call each, looping over trip offsets, instead of one Python call (with its validation) per trip.

The drivers call the very njit cores that ``scoring.features`` calls for one trip, with the same arguments, so a
feature is defined once; ``precompute`` hands the results to ``measure_trip`` (``Precomputed``), which computes
everything else per trip as before (the accelerometer, the continuous measures, the score). A feature added to
``measure_trip`` is therefore computed in both paths; tests/test_score_batch.py checks that a batch gives exactly the
rows of ``score_trip``, field by field.

Trips whose arrays the batch cannot take as they are (lengths that differ, times that do not increase, speeds that
are not finite and non-negative) get no ``Precomputed``: ``measure_trip`` then validates them itself and raises
what it raises for them one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from scoring.features import (
    _OFFSET_STEP_S,
    Events,
    Exposure,
    Precomputed,
    SpeedEvents,
    Speeding,
    TripFeatures,
    _offset_s,
    bands,
)
from scoring.imukernels import np_interp_kernel as _np_interp
from scoring.intensity import IntensityChannel
from scoring.kernels import (
    clean_kernel,
    exposure_kernel,
    heatmap_kernel,
    phone_kernel,
    speed_events_kernel,
    speeding_kernel,
    trip_kernel,
    window_mean_kernel,
)
from scoring.trips import ClosedTrip
from ubi.common.config import ScoringConfig


@njit(cache=True, nogil=True)
def check_batch_kernel(off: np.ndarray, t_ms: np.ndarray, ok: np.ndarray) -> None:
    """ok[k] = 0 where trip k's fix times do not strictly increase (measure_trip refuses those itself)."""
    for k in range(off.shape[0] - 1):
        for i in range(off[k] + 1, off[k + 1]):
            if t_ms[i] <= t_ms[i - 1]:
                ok[k] = 0
                break


@njit(cache=True, nogil=True)
def clean_batch_kernel(
    off: np.ndarray,
    t_s: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    acc: np.ndarray,
    max_acc: float,
    max_jump_mps: float,
    max_rejects: int,
    keep: np.ndarray,
    bad: np.ndarray,
    jumps: np.ndarray,
) -> None:
    """``clean_kernel`` per trip ``[off[k], off[k+1])``: keep mask, invalid/inaccurate and jump counts."""
    for k in range(off.shape[0] - 1):
        a, b = off[k], off[k + 1]
        bad[k], jumps[k] = clean_kernel(
            t_s[a:b], lat[a:b], lon[a:b], acc[a:b], max_acc, max_jump_mps, max_rejects, keep[a:b]
        )


@njit(cache=True, nogil=True)
def kept_kernel(
    off: np.ndarray,
    keep: np.ndarray,
    t_s: np.ndarray,
    v: np.ndarray,
    acc: np.ndarray,
    lim: np.ndarray,
    heading: np.ndarray,
    phone: np.ndarray,
    goff: np.ndarray,
    tg: np.ndarray,
    vg: np.ndarray,
    ag: np.ndarray,
    lg: np.ndarray,
    hg: np.ndarray,
    pg: np.ndarray,
    ok: np.ndarray,
) -> None:
    """The kept fixes (``keep`` != 0) of every column in one pass, as ``x[keep.astype(bool)]`` of each would give,
    and each trip's first kept fix ``goff[k]`` (``goff[-1]`` the count); ok[k] = 0 where a kept speed is not finite
    and non-negative (measure_trip refuses those itself)."""
    w = 0
    for k in range(off.shape[0] - 1):
        goff[k] = w
        for i in range(off[k], off[k + 1]):
            if keep[i]:
                x = v[i]
                tg[w], vg[w], ag[w], lg[w], hg[w], pg[w] = t_s[i], x, acc[i], lim[i], heading[i], phone[i]
                if not (x >= 0.0 and x < np.inf):
                    ok[k] = 0
                w += 1
    goff[off.shape[0] - 1] = w


@njit(cache=True, nogil=True)
def source_kept_kernel(
    start: np.ndarray,
    off: np.ndarray,
    t_ms: np.ndarray,
    t_s: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    acc: np.ndarray,
    v: np.ndarray,
    heading: np.ndarray,
    phone: np.ndarray,
    lim: np.ndarray,
    max_acc: float,
    max_jump_mps: float,
    max_rejects: int,
    ok: np.ndarray,
    keep: np.ndarray,
    bad: np.ndarray,
    jumps: np.ndarray,
    goff: np.ndarray,
    tg: np.ndarray,
    vg: np.ndarray,
    ag: np.ndarray,
    lg: np.ndarray,
    hg: np.ndarray,
    pg: np.ndarray,
) -> None:
    """``check_batch_kernel``, ``clean_batch_kernel`` and ``kept_kernel`` in one pass over trips whose fixes lie
    where they are in the file's arrays: trip k's are ``[start[k], start[k] + off[k+1] - off[k])`` of t_ms ...
    phone (``lim``, ``keep``: concatenated as ``off`` says). The same calls and copies as those three kernels on
    the concatenated arrays, without making them; tg ... pg need room for every fix (``goff[-1]`` are written)."""
    w = 0
    for k in range(off.shape[0] - 1):
        a, n, o = start[k], off[k + 1] - off[k], off[k]
        for i in range(a + 1, a + n):
            if t_ms[i] <= t_ms[i - 1]:
                ok[k] = 0
                break
        b = a + n
        bad[k], jumps[k] = clean_kernel(
            t_s[a:b], lat[a:b], lon[a:b], acc[a:b], max_acc, max_jump_mps, max_rejects, keep[o : o + n]
        )
        goff[k] = w
        for i in range(n):
            if keep[o + i]:
                j = a + i
                x = v[j]
                tg[w], vg[w], ag[w], lg[w], hg[w], pg[w] = t_s[j], x, acc[j], lim[o + i], heading[j], phone[j]
                if not (x >= 0.0 and x < np.inf):
                    ok[k] = 0
                w += 1
    goff[off.shape[0] - 1] = w


@dataclass(frozen=True)
class FixSource:
    """The arrays a file's trips are slices of (score-file's cut: every fix of the file, by vehicle and time) and
    where each trip of the list they came with starts in them (-1: its arrays are not one slice of these), so
    ``group_kernels`` reads the trips' fixes where they lie instead of concatenating seven columns of them."""

    t_ms: np.ndarray  # int64
    t_s: np.ndarray  # t_ms / 1000.0
    speed: np.ndarray  # float64, as lat, lon, accuracy, heading
    accuracy: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    heading: np.ndarray
    phone: np.ndarray  # int8
    start: np.ndarray  # int64, per trip


def _from_source(src: FixSource | None, starts: np.ndarray | None, sizes: np.ndarray) -> bool:
    """Whether every trip of a group is a slice of ``src`` that lies within it (else the arrays are concatenated)."""
    if src is None or starts is None or starts.shape[0] != sizes.shape[0] or not starts.shape[0]:
        return False
    n = src.t_ms.shape[0]
    cols = (src.t_s, src.speed, src.accuracy, src.lat, src.lon, src.heading, src.phone)
    if any(c.shape != (n,) for c in cols) or src.phone.dtype != np.int8 or src.t_ms.dtype != np.int64:
        return False
    return bool((starts >= 0).all() and (starts + sizes <= n).all())


@njit(cache=True, nogil=True)
def gps_batch_kernel(
    off: np.ndarray,
    t_s: np.ndarray,
    v: np.ndarray,
    acc: np.ndarray,
    phone: np.ndarray,
    lim: np.ndarray,
    mid_off: np.ndarray,
    fparams: np.ndarray,
    iparams: np.ndarray,
    basic: np.ndarray,
    basic_n: np.ndarray,
    ev_kind: np.ndarray,
    ev_s: np.ndarray,
    ev_e: np.ndarray,
    ev_p: np.ndarray,
    ev_n: np.ndarray,
    expo: np.ndarray,
    ph: np.ndarray,
    spd: np.ndarray,
    heat: np.ndarray,
) -> None:
    """The speed-channel kernels over every trip ``[off[k], off[k+1])`` of cleaned fixes (t_s in s).

    ``mid_off``: the UTC offset at the midpoint of each consecutive pair of the whole array (a trip reads its own).
    ``fparams``/``iparams``: the kernels' arguments (``_params``). Per trip k: ``basic[k]`` (distance, moving, idle,
    max speed), ``basic_n[k]`` (GPS brakes, accels), speed-channel events from ``off[k] + k`` on (brakes then
    accelerations, each by start time; ``ev_n[k]`` = (brakes, accels, artefacts, moderate/harsh/severe brakes,
    the same for accelerations)), ``expo[k]``, ``ph[k]`` (phone flags of -1 everywhere give 0, 0 as no flags do),
    ``spd[k]``, ``heat[k]``."""
    (brake_thr, accel_thr, min_speed, max_gap, moving, b1, c1, vmin, max_acc, warmup, rep_min, max_pl) = fparams[:12]
    (night_a, night_b, am_a, am_b, pm_a, pm_b, margin, high, doubling, cap, v_step, a_step) = fparams[12:24]
    b2, b3, c2, c3 = fparams[24], fparams[25], fparams[26], fparams[27]
    nv, na, with_phone = iparams[0], iparams[1], iparams[2]
    for k in range(off.shape[0] - 1):
        a, b = off[k], off[k + 1]
        tt = t_s[a:b]
        vv = v[a:b]
        d, mv, idle, vmax, nb, nacc = trip_kernel(tt, vv, brake_thr, accel_thr, min_speed, max_gap, moving)
        basic[k, 0], basic[k, 1], basic[k, 2], basic[k, 3] = d, mv, idle, vmax
        basic_n[k, 0], basic_n[k, 1] = nb, nacc
        n = b - a
        kind = np.empty(n + 1, np.int8)
        s = np.empty(n + 1)
        e = np.empty(n + 1)
        p = np.empty(n + 1)
        m, art = speed_events_kernel(
            tt, vv, acc[a:b], b1, c1, vmin, max_acc, warmup, max_gap, rep_min, max_pl, kind, s, e, p
        )
        order = np.argsort(s[:m], kind="mergesort")
        w = a + k
        for sign in (-1, 1):
            lo2, hi2 = (b2, b3) if sign < 0 else (c2, c3)
            g1 = g2 = g3 = 0
            cnt = 0
            for j in order:
                if kind[j] != sign:
                    continue
                ev_kind[w], ev_s[w], ev_e[w], ev_p[w] = kind[j], s[j], e[j], p[j]
                if p[j] < lo2:
                    g1 += 1
                elif p[j] < hi2:
                    g2 += 1
                else:
                    g3 += 1
                cnt += 1
                w += 1
            col = 0 if sign < 0 else 1
            ev_n[k, col] = cnt
            ev_n[k, 3 + 3 * col], ev_n[k, 4 + 3 * col], ev_n[k, 5 + 3 * col] = g1, g2, g3
        ev_n[k, 2] = art
        mo = mid_off[a : b - 1] if b > a else mid_off[a:a]
        r = exposure_kernel(tt, vv, mo, max_gap, night_a, night_b, am_a, am_b, pm_a, pm_b, moving)
        for j in range(6):
            expo[k, j] = r[j]
        if with_phone:
            ph[k, 0], ph[k, 1] = phone_kernel(tt, vv, phone[a:b], max_gap, moving)
        q = speeding_kernel(tt, vv, lim[a:b], margin, high, max_gap, doubling, cap)
        for j in range(7):
            spd[k, j] = q[j]
        heatmap_kernel(tt, vv, max_gap, v_step, nv, a_step, na, heat[k], moving)


@njit(cache=True, nogil=True)
def _arange_len(start: float, stop: float) -> int:
    """len(np.arange(start, stop, 1.0))."""
    n = int(np.ceil((stop - start) / 1.0))
    return n if n > 0 else 0


@njit(cache=True, nogil=True)
def _py_mod(a: float, b: float) -> float:
    """np.mod for floats (the sign of the divisor)."""
    m = np.fmod(a, b)
    if m != 0.0:
        if (b < 0) != (m < 0):
            m += b
    else:
        m = np.copysign(0.0, b)
    return m


@njit(cache=True, nogil=True)
def channel_batch_kernel(
    off: np.ndarray,
    t_s: np.ndarray,
    v: np.ndarray,
    heading: np.ndarray,
    with_heading: np.ndarray,
    smooth_s: float,
    max_gap: float,
    warmup: float,
    min_corner: float,
    out_off: np.ndarray,
    g_out: np.ndarray,
    v_out: np.ndarray,
    lon_out: np.ndarray,
    lat_out: np.ndarray,
    source: np.ndarray,
) -> None:
    """``scoring.intensity.channel`` of every trip without a used IMU (the 1 Hz speed channel: grid from warm-up
    after each segment's first fix, speed smoothed over ``speed_smooth_s``, centred differences, speed x heading
    rate for the lateral), NumPy's arithmetic step by step. out_off[k + 1] = the end of trip k's channel; with
    ``g_out`` of length 0 it only counts; where the outputs are too short for the channel it stops with
    out_off[-1] = -1 (the caller counts first then). source[k]: 0 "speed", 1 "speed+heading"."""
    count_only = g_out.shape[0] == 0
    nt = off.shape[0] - 1
    w = 0
    for k in range(nt):
        a, b = off[k], off[k + 1]
        n = b - a
        source[k] = 0
        w0 = w
        if n >= 2:
            tt = t_s[a:b]
            dts = np.empty(n - 1)
            for i in range(n - 1):
                dts[i] = tt[i + 1] - tt[i]
            rate = 1.0 / max(np.median(dts), 1e-3) if smooth_s > 0 and not count_only else 0.0  # for smoothing
            s0 = 0
            for i in range(n):
                if i == n - 1 or dts[i] > max_gap:
                    s1 = i + 1
                    t0 = tt[s0] + warmup
                    if tt[s1 - 1] - t0 >= 2.0:
                        m = _arange_len(t0, tt[s1 - 1] + 1e-9)
                        if not count_only and w + m > g_out.shape[0]:
                            out_off[nt] = -1
                            return
                        if not count_only and m > 0:
                            g_out[w] = t0
                            if m > 1:
                                g_out[w + 1] = t0 + 1.0
                                delta = g_out[w + 1] - t0
                                for q in range(2, m):
                                    g_out[w + q] = t0 + q * delta
                        w += m
                    s0 = s1
        out_off[k + 1] = w
        if count_only:
            continue
        m = w - w0
        if m == 0:
            continue
        g = g_out[w0:w]
        vv = v[a:b]
        if smooth_s > 0:
            nw = int(np.rint(smooth_s * rate))
            vs = np.empty(n)
            window_mean_kernel(vv, nw if nw > 1 else 1, vs)
        else:
            vs = vv
        vg = v_out[w0:w]
        _np_interp(g, tt, vs, vg)
        lon = lon_out[w0:w]
        for q in range(m):
            fwd = np.nan
            bwd = np.nan
            if q + 1 < m and not abs((g[q + 1] - g[q]) - 1.0) > 1e-6:
                fwd = vg[q + 1] - vg[q]
            if q > 0 and not abs((g[q] - g[q - 1]) - 1.0) > 1e-6:
                bwd = vg[q] - vg[q - 1]
            lon[q] = bwd if fwd != fwd else (fwd if bwd != bwd else 0.5 * (fwd + bwd))
        lat = lat_out[w0:w]
        for q in range(m):
            lat[q] = np.nan
        if with_heading[k]:
            hd = heading[a:b]
            hmax = hd[0]
            hmin = hd[0]
            nan_h = False
            for i in range(n):
                x = hd[i]
                if x != x:
                    nan_h = True
                if x > hmax:
                    hmax = x
                if x < hmin:
                    hmin = x
            if not nan_h and hmax - hmin > 0:
                h = np.empty(n)
                c = 0.0
                prev = hd[0] * (np.pi / 180.0)
                h[0] = prev
                for i in range(1, n):
                    cur = hd[i] * (np.pi / 180.0)
                    dd = cur - prev
                    if not abs(dd) < np.pi:  # np.unwrap's correction (zero below pi: skip its modulo there)
                        ddmod = _py_mod(dd - (-np.pi), 2 * np.pi) + (-np.pi)
                        if ddmod == -np.pi and dd > 0:
                            ddmod = np.pi
                        c += ddmod - dd
                    h[i] = cur + c
                    prev = cur
                hg = np.empty(m)
                _np_interp(g, tt, h, hg)
                for q in range(m):
                    f2 = np.nan
                    b2 = np.nan
                    if q + 1 < m and not abs((g[q + 1] - g[q]) - 1.0) > 1e-6:
                        f2 = hg[q + 1] - hg[q]
                    if q > 0 and not abs((g[q] - g[q - 1]) - 1.0) > 1e-6:
                        b2 = hg[q] - hg[q - 1]
                    rh = b2 if f2 != f2 else (f2 if b2 != b2 else 0.5 * (f2 + b2))
                    lat[q] = np.nan if vg[q] < min_corner else -vg[q] * rh
                source[k] = 1


@njit(cache=True, nogil=True)
def quarter_runs_kernel(t_s: np.ndarray, step: float, mid: bool, heads: np.ndarray, quarters: np.ndarray) -> int:
    """The runs of equal ``floor(x / step)`` (NumPy's arithmetic) of x = t_s, or with ``mid`` of the midpoints
    ``0.5 * (t_s[1:] + t_s[:-1])``: run r starts at ``heads[r]`` with quarter ``quarters[r]``; returns the number of
    runs."""
    r = 0
    prev = np.int64(0)
    for i in range(t_s.shape[0] - 1 if mid else t_s.shape[0]):
        x = 0.5 * (t_s[i + 1] + t_s[i]) if mid else t_s[i]
        q = np.int64(np.floor(x / step))
        if i == 0 or q != prev:
            heads[r] = i
            quarters[r] = q
            r += 1
            prev = q
    return r


@njit(cache=True, nogil=True)
def fill_runs_kernel(heads: np.ndarray, vals: np.ndarray, out: np.ndarray) -> None:
    """out[heads[r]:heads[r + 1]] = vals[r] (the last run to the end)."""
    n = heads.shape[0]
    for r in range(n):
        hi = heads[r + 1] if r + 1 < n else out.shape[0]
        for i in range(heads[r], hi):
            out[i] = vals[r]


def quarter_offsets(t_s: np.ndarray, tz: str, mid: bool = False) -> np.ndarray:
    """``scoring.features.local_offsets`` (the zone's UTC offset at each time, looked up per quarter hour) for long,
    mostly increasing series: one lookup per run of equal quarters instead of sorting every time for np.unique.
    With ``mid``: at the midpoints ``0.5 * (t_s[1:] + t_s[:-1])``, without making them."""
    t_s = np.ascontiguousarray(t_s, np.float64)
    n = max(t_s.shape[0] - 1, 0) if mid else t_s.shape[0]
    heads, quarters = np.empty(n, np.int64), np.empty(n, np.int64)
    r = quarter_runs_kernel(t_s, float(_OFFSET_STEP_S), mid, heads, quarters)
    vals = np.array([_offset_s(tz, x) for x in quarters[:r].tolist()], np.float64)
    out = np.empty(n)
    fill_runs_kernel(heads[:r], vals, out)
    return out


def _params(cfg: ScoringConfig) -> tuple[np.ndarray, np.ndarray]:
    """The kernels' arguments, as ``scoring.features`` passes them."""
    _, b1, b2, b3, vmin = bands("brake", cfg)
    _, c1, c2, c3, _ = bands("accel", cfg)
    f = [
        cfg.harsh_brake_mps2,
        cfg.harsh_accel_mps2,
        cfg.min_event_speed_mps,
        cfg.max_integration_gap_s,
        cfg.moving_mps,
        b1,
        c1,
        vmin,
        cfg.speed_event_max_accuracy_m,
        cfg.event_warmup_s,
        cfg.speed_repeat_min_mps,
        cfg.speed_max_plausible_mps2,
        cfg.night_start_h,
        cfg.night_end_h,
        cfg.rush_am_start_h,
        cfg.rush_am_end_h,
        cfg.rush_pm_start_h,
        cfg.rush_pm_end_h,
        cfg.speeding_margin_mps,
        cfg.high_speed_mps,
        cfg.speeding_risk_doubling_kmh,
        cfg.speeding_risk_cap,
        cfg.heatmap_speed_step_kmh / 3.6,
        cfg.heatmap_accel_step_mps2,
        b2,
        b3,
        c2,
        c3,
    ]
    return np.array(f, np.float64), np.array([int(cfg.heatmap_speed_bins), int(cfg.heatmap_accel_bins), 1], np.int64)


def trip_config(cfg: ScoringConfig, trip: ClosedTrip) -> ScoringConfig:
    """The configuration ``measure_trip`` scores this trip with (its vehicle's device profile applied)."""
    return cfg.for_device(cfg.device_class_of(trip.vehicle))


def _fits(trip: ClosedTrip) -> bool:
    n = trip.t_ms.shape[0]
    return all(x.shape[0] == n for x in (trip.lat, trip.lon, trip.accuracy, trip.speed, trip.phone, trip.heading))


def config_groups(
    trips: list[ClosedTrip], limits: list[np.ndarray | None], cfg: ScoringConfig
) -> list[tuple[ScoringConfig, list[int]]]:
    """The indices of the trips the batch can take (``_fits``, a limit per fix or none), grouped by the
    configuration that scores them (their device profile applied), each with that configuration."""
    groups: dict[int, tuple[ScoringConfig, list[int]]] = {}
    for i, trip in enumerate(trips):
        lim = limits[i]
        if _fits(trip) and (lim is None or np.shape(lim) == trip.t_ms.shape):
            c = trip_config(cfg, trip)
            groups.setdefault(id(c), (c, []))[1].append(i)
    return list(groups.values())


def precompute(
    trips: list[ClosedTrip], limits: list[np.ndarray | None], cfg: ScoringConfig
) -> list[Precomputed | None]:
    """``Precomputed`` for each trip (None where the batch cannot take it: see the module doc), trips of one
    configuration at a time. ``limits``: posted limit per fix (m/s, NaN unknown) or None, as measure_trip takes."""
    out: list[Precomputed | None] = [None] * len(trips)
    for c, idx in config_groups(trips, limits, cfg):
        for i, pre in zip(idx, _precompute_group([trips[i] for i in idx], [limits[i] for i in idx], c), strict=True):
            out[i] = pre
    return out


@dataclass
class GroupKernels:
    """The speed-channel kernels' results for trips of one configuration, as arrays over all of them: trip k's
    fixes are ``[off[k], off[k+1])``, its kept (cleaned) fixes ``[goff[k], goff[k+1])`` of ``tg``, ``vg``, ``lg``,
    its 1 Hz channel ``[ch_off[k], ch_off[k+1])``. ``ok[k]`` = 0: the batch cannot take trip k (module doc)."""

    cfg: ScoringConfig
    off: np.ndarray
    goff: np.ndarray
    ok: np.ndarray
    keep: np.ndarray  # bool per fix
    bad: np.ndarray
    jumps: np.ndarray
    tg: np.ndarray  # kept fixes: time (s), speed (m/s), posted limit (m/s, NaN unknown)
    vg: np.ndarray
    lg: np.ndarray
    basic: np.ndarray  # (nt, 4): distance, moving, idle, max speed
    basic_n: np.ndarray  # (nt, 2)
    ev_s: np.ndarray
    ev_e: np.ndarray
    ev_p: np.ndarray
    ev_n: np.ndarray  # (nt, 9): see gps_batch_kernel
    expo: np.ndarray  # (nt, 6)
    ph: np.ndarray  # (nt, 2)
    spd: np.ndarray  # (nt, 7)
    heat: np.ndarray  # (nt, bins)
    ch_off: np.ndarray
    ch_t: np.ndarray
    ch_v: np.ndarray
    ch_lon: np.ndarray
    ch_lat: np.ndarray
    ch_src: np.ndarray  # 0 "speed", 1 "speed+heading"


def _precompute_group(
    trips: list[ClosedTrip], limits: list[np.ndarray | None], cfg: ScoringConfig
) -> list[Precomputed | None]:
    g = group_kernels(trips, limits, cfg)
    return [precomputed_of(g, k) if g.ok[k] else None for k in range(len(trips))]


def group_kernels(
    trips: list[ClosedTrip],
    limits: list[np.ndarray | None],
    cfg: ScoringConfig,
    fixes: FixSource | None = None,
    starts: np.ndarray | None = None,
) -> GroupKernels:
    """Every speed-channel kernel once over ``trips`` (all of configuration ``cfg``, each ``_fits``); ``fixes`` and
    ``starts`` (trip k's first fix in it): where the trips' fixes lie in a file's arrays (``FixSource``)."""
    nt = len(trips)
    sizes = np.array([t.t_ms.shape[0] for t in trips], np.int64)
    off = np.zeros(nt + 1, np.int64)
    np.cumsum(sizes, out=off[1:])
    ok = np.ones(nt, np.uint8)
    if all(x is None for x in limits):  # no posted limits anywhere (no map, none in the file): one array
        lim = np.full(int(off[-1]), np.nan)
    else:
        lim = np.concatenate(
            [
                np.full(t.t_ms.shape[0], np.nan) if x is None else np.asarray(x, np.float64)
                for t, x in zip(trips, limits, strict=True)
            ]
        )
    keep = np.zeros(off[-1], np.uint8)
    bad = np.zeros(nt, np.int64)
    jumps = np.zeros(nt, np.int64)
    goff = np.zeros(nt + 1, np.int64)
    clean_p = (float(cfg.max_gps_accuracy_m), cfg.max_jump_speed_kmh / 3.6, int(cfg.max_jump_rejects))
    if fixes is not None and starts is not None and _from_source(fixes, starts, sizes):
        # the fixes read where they lie: room for all of them, goff[-1] written (untouched pages cost nothing)
        tg, vg, ag, lg, hd = (np.empty(off[-1]) for _ in range(5))
        pg = np.empty(off[-1], np.int8)
        source_kept_kernel(
            starts, off, fixes.t_ms, fixes.t_s, fixes.lat, fixes.lon, fixes.accuracy, fixes.speed, fixes.heading,
            fixes.phone, lim,
            *clean_p, ok, keep, bad, jumps, goff, tg, vg, ag, lg, hd, pg,
        )  # fmt: skip
        nk = int(goff[-1])
        tg, vg, ag, lg, hd, pg = tg[:nk], vg[:nk], ag[:nk], lg[:nk], hd[:nk], pg[:nk]
    else:
        t_ms = np.concatenate([t.t_ms for t in trips]).astype(np.int64, copy=False)
        check_batch_kernel(off, t_ms, ok)
        t_s = t_ms / 1000.0
        f64 = lambda name: np.concatenate([np.asarray(getattr(t, name), np.float64) for t in trips])  # noqa: E731
        lat, lon, acc, speed = f64("lat"), f64("lon"), f64("accuracy"), f64("speed")
        phone = np.concatenate([np.asarray(t.phone, np.int8) for t in trips])
        clean_batch_kernel(off, t_s, lat, lon, acc, *clean_p, keep, bad, jumps)
        hd_all = np.concatenate([np.asarray(t.heading, np.float64) for t in trips])
        nk = int(np.count_nonzero(keep))
        tg, vg, ag, lg, hd = (np.empty(nk) for _ in range(5))
        pg = np.empty(nk, np.int8)
        # (speeds measure_trip would refuse: ok = 0, those trips are left to it)
        kept_kernel(off, keep, t_s, speed, acc, lim, hd_all, phone, goff, tg, vg, ag, lg, hd, pg, ok)
    kb = keep.astype(bool)
    mid_off = quarter_offsets(tg, cfg.time_zone, mid=True)
    fp, ip = _params(cfg)
    nv, na = int(ip[0]), int(ip[1])
    basic = np.zeros((nt, 4))
    basic_n = np.zeros((nt, 2), np.int64)
    cap = goff[-1] + nt
    # room for every trip's events (at most its fixes + 1); only the ev_n counts written are read, so the rest
    # is left unwritten (zeroing it touched ~3 x 8 bytes a fix of fresh pages)
    ev_kind = np.empty(cap, np.int8)
    ev_s, ev_e, ev_p = np.empty(cap), np.empty(cap), np.empty(cap)
    ev_n = np.zeros((nt, 9), np.int64)
    expo = np.zeros((nt, 6))
    ph = np.zeros((nt, 2))
    spd = np.zeros((nt, 7))
    heat = np.zeros((nt, nv * na))
    gps_batch_kernel(
        goff, tg, vg, ag, pg, lg, mid_off, fp, ip, basic, basic_n, ev_kind, ev_s, ev_e, ev_p, ev_n, expo, ph, spd, heat
    )
    # the 1 Hz speed channel of the continuous measures (used where the trip's IMU is not)
    with_h = np.ones(nt, np.uint8)
    ch_off = np.zeros(nt + 1, np.int64)
    src = np.zeros(nt, np.int8)
    e = np.zeros(0)
    chp = (
        float(cfg.speed_smooth_s),
        float(cfg.max_integration_gap_s),
        float(cfg.event_warmup_s),
        float(cfg.min_corner_speed_mps),
    )
    # one pass into outputs long enough for a 1 Hz grid over each trip's span (the count first where they are not)
    nz = goff[1:] > goff[:-1]
    span = tg[goff[1:][nz] - 1] - tg[goff[:-1][nz]]
    cap = int(np.ceil(span).sum()) + 2 * int(goff[-1]) + nt
    cg, cv, clon, clat = (np.empty(cap) for _ in range(4))
    channel_batch_kernel(goff, tg, vg, hd, with_h, *chp, ch_off, cg, cv, clon, clat, src)
    if ch_off[-1] < 0:
        channel_batch_kernel(goff, tg, vg, hd, with_h, *chp, ch_off, e, e, e, e, src)
        cg, cv, clon, clat = (np.empty(ch_off[-1]) for _ in range(4))
        channel_batch_kernel(goff, tg, vg, hd, with_h, *chp, ch_off, cg, cv, clon, clat, src)
    m = int(ch_off[-1])
    cg, cv, clon, clat = cg[:m], cv[:m], clon[:m], clat[:m]
    return GroupKernels(
        cfg,
        off,
        goff,
        ok,
        kb,
        bad,
        jumps,
        tg,
        vg,
        lg,
        basic,
        basic_n,
        ev_s,
        ev_e,
        ev_p,
        ev_n,
        expo,
        ph,
        spd,
        heat,
        ch_off,
        cg,
        cv,
        clon,
        clat,
        src,
    )


def precomputed_of(g: GroupKernels, k: int) -> Precomputed:
    """Trip k's results as ``measure_trip`` takes them."""
    ev_n, ev_s, ev_e, ev_p, ch_off = g.ev_n, g.ev_s, g.ev_e, g.ev_p, g.ch_off
    w = g.goff[k] + k
    nb, nacc = int(ev_n[k, 0]), int(ev_n[k, 1])
    brake = Events(
        ev_s[w : w + nb], ev_e[w : w + nb], ev_p[w : w + nb], (int(ev_n[k, 3]), int(ev_n[k, 4]), int(ev_n[k, 5]))
    )
    w += nb
    accel = Events(
        ev_s[w : w + nacc],
        ev_e[w : w + nacc],
        ev_p[w : w + nacc],
        (int(ev_n[k, 6]), int(ev_n[k, 7]), int(ev_n[k, 8])),
    )
    b = g.basic[k]
    c0, c1 = ch_off[k], ch_off[k + 1]
    return Precomputed(
        g.cfg,
        (g.keep[g.off[k] : g.off[k + 1]], int(g.bad[k]), int(g.jumps[k])),
        TripFeatures(float(b[0]), float(b[1]), float(b[2]), float(b[3]), int(g.basic_n[k, 0]), int(g.basic_n[k, 1])),
        SpeedEvents(brake, accel, int(ev_n[k, 2])),
        Exposure(*(float(x) for x in g.expo[k])),
        (float(g.ph[k, 0]), float(g.ph[k, 1])),
        Speeding(*(float(x) for x in g.spd[k])),
        g.heat[k],
        IntensityChannel(
            g.ch_t[c0:c1], g.ch_v[c0:c1], g.ch_lon[c0:c1], g.ch_lat[c0:c1], "speed+heading" if g.ch_src[k] else "speed"
        ),
    )
