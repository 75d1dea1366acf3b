"""Scored rows of a whole batch of trips, built column-wise (``ubi score-file``).

``measure_trip`` -> ``build_record`` -> ``TripRecord.as_row`` costs ~250 us of Python per trip, and every input of
it is already an array over all trips (``scoring.batch.group_kernels``), or becomes one: a trip's accelerometer is
aligned per trip (``scoring.align.align_to_vehicle``), and where it is used, its events, its distance through GPS
gaps and its 1 s means run for all such trips in one numba call (scoring/batchimu.py). Here the continuous
measures run in one numba call over all trips (``continuous_batch_kernel``, the same per-trip kernels of
scoring/intensity.py), the population score's percentiles are read for all trips at once, Python's ``round`` is
done on arrays (scoring/rounding.py), and the rows are zipped from columns; what is left per trip is the
alignment, the ``score_parts`` JSON text and the row dicts.

This is a second writing of ``measure_trip`` and ``build_record`` for the trips it takes (the batch can take them;
an IMU with times that do not strictly increase is left to ``measure_trip``): tests/test_score_batch.py compares
every field of every row, values and types, against the per-trip path, and ``rows`` refuses a ``TripRecord`` whose
fields it does not know, so a field added there and not here fails at once instead of going missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np
from numba import njit

from scoring.align import Alignment, align_batch, align_to_vehicle
from scoring.batch import FixSource, GroupKernels, config_groups, group_kernels, precomputed_of
from scoring.batchimu import imu_batch
from scoring.features import NO_EXPECTED_IMU, SCORER_VERSION, build_record, imu_status, measure_trip
from scoring.imukernels import median_step
from scoring.intensity import cruise_kernel, intensity_kernel, levels, longest_drive_kernel, speeding_bands_kernel
from scoring.population import _GRADE_W, TABLE_TOP, percentile, table_for
from scoring.rounding import pyround
from scoring.trips import ClosedTrip
from ubi.common.config import ScoringConfig
from ubi.common.trip_record import FIELD_NAMES

# columns of continuous_batch_kernel's output
_INT = 0  # moving_s, lat_moving_s, jerk_n, jerk_sq, jerk_over, hi_s, hi_acc_s, pos_work, dist (intensity_kernel)
_BRAKE, _ACCEL, _LAT = 9, 12, 15  # seconds at or beyond each of the three levels
_CRUISE = 18  # n_windows, cv sum, n_straight, lateral std sum (cruise_kernel)
_BANDS = 22  # total distance, then distance per band (speeding_bands_kernel)
_LONGEST = 26
N_CONT = 27


@njit(cache=True, nogil=True)
def continuous_batch_kernel(
    goff: np.ndarray,
    t_s: np.ndarray,
    v: np.ndarray,
    lim: np.ndarray,
    ch_off: np.ndarray,
    ch_t: np.ndarray,
    ch_v: np.ndarray,
    ch_lon: np.ndarray,
    ch_lat: np.ndarray,
    brake_lv: np.ndarray,
    accel_lv: np.ndarray,
    lat_lv: np.ndarray,
    edges: np.ndarray,
    fparams: np.ndarray,
    win: int,
    out: np.ndarray,
) -> None:
    """``scoring.intensity.continuous`` of every trip k (kept fixes ``[goff[k], goff[k+1])``, its 1 Hz channel
    ``[ch_off[k], ch_off[k+1])``), its kernels' raw results in ``out[k]`` (columns: the module's constants).
    fparams: moving_mps, jerk level, high speed, high-speed accel level, cruise min speed, cruise max mean lateral,
    high_speed_mps, max_integration_gap_s, break_min_s."""
    moving, jerk_lv, hi_speed, hi_acc, cr_min, cr_lat, high, max_gap, brk = (
        fparams[0],
        fparams[1],
        fparams[2],
        fparams[3],
        fparams[4],
        fparams[5],
        fparams[6],
        fparams[7],
        fparams[8],
    )
    for k in range(goff.shape[0] - 1):
        c0, c1 = ch_off[k], ch_off[k + 1]
        a, b = goff[k], goff[k + 1]
        r = intensity_kernel(
            ch_t[c0:c1],
            ch_v[c0:c1],
            ch_lon[c0:c1],
            ch_lat[c0:c1],
            moving,
            brake_lv,
            accel_lv,
            lat_lv,
            jerk_lv,
            hi_speed,
            hi_acc,
            out[k, _BRAKE : _BRAKE + 3],
            out[k, _ACCEL : _ACCEL + 3],
            out[k, _LAT : _LAT + 3],
        )
        for j in range(9):
            out[k, _INT + j] = r[j]
        q = cruise_kernel(ch_t[c0:c1], ch_v[c0:c1], ch_lat[c0:c1], win, cr_min, cr_lat)
        for j in range(4):
            out[k, _CRUISE + j] = q[j]
        out[k, _BANDS] = speeding_bands_kernel(
            t_s[a:b], v[a:b], lim[a:b], high, max_gap, edges, out[k, _BANDS + 1 : _BANDS + 4]
        )
        out[k, _LONGEST] = longest_drive_kernel(t_s[a:b], v[a:b], moving, brk)


def continuous_batch(g: GroupKernels) -> np.ndarray:
    """``continuous_batch_kernel`` over the group's trips with its configuration's arguments, as
    ``scoring.intensity.continuous`` passes them: (trips, N_CONT)."""
    cfg = g.cfg
    bl, al, ll = levels(cfg)
    edges = np.array([0.0, cfg.speeding_band2_kmh, cfg.speeding_band3_kmh], dtype=np.float64) / 3.6
    fp = np.array(
        [
            float(cfg.moving_mps),
            float(cfg.jerk_level_mps3),
            cfg.intensity_high_speed_kmh / 3.6,
            float(min(bl[0], al[0])),
            cfg.cruise_min_kmh / 3.6,
            float(cfg.cruise_max_mean_lat_mps2),
            float(cfg.high_speed_mps),
            float(cfg.max_integration_gap_s),
            float(cfg.break_min_s),
        ],
        np.float64,
    )
    out = np.zeros((g.goff.shape[0] - 1, N_CONT))
    continuous_batch_kernel(
        g.goff,
        g.tg,
        g.vg,
        g.lg,
        g.ch_off,
        g.ch_t,
        g.ch_v,
        g.ch_lon,
        g.ch_lat,
        bl,
        al,
        ll,
        edges,
        fp,
        int(cfg.cruise_window_s),
        out,
    )
    return out


def percentiles(x: np.ndarray, knots: list[float]) -> np.ndarray:
    """``scoring.population.percentile`` of each x (finite, >= 0): the same float operations, all at once."""
    k = len(knots)
    out = np.zeros(x.shape[0])
    if k == 0:
        return out
    kn = np.asarray(knots, np.float64)
    top = x > kn[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        out[top] = np.where(x[top] > 0, TABLE_TOP + (1.0 - TABLE_TOP) * (1.0 - kn[-1] / x[top]), TABLE_TOP)
    mid = (x > kn[0]) & ~top
    xm = x[mid]
    i = np.searchsorted(kn, xm, side="left")  # the first knot >= x
    frac = (xm - kn[i - 1]) / (kn[i] - kn[i - 1])
    out[mid] = TABLE_TOP * ((i - 1) + frac) / (k - 1)
    return out


def _json_nums(x: np.ndarray) -> list[str]:
    """Floats as json.dumps writes them: repr, and NaN and the infinities as JSON's words."""
    xs = x.tolist()
    if np.isfinite(x).all():
        return list(map(repr, xs))
    return [repr(v) if v - v == 0.0 else json.dumps(v) for v in xs]


def _nones(a: np.ndarray) -> list:
    return [None if x != x else x for x in a.tolist()]


@dataclass
class RowImu:
    """What the accelerometer changes in the rows of ``rows``' trips (one entry per trip of ``sel``): its
    alignment (None: no IMU samples), whether it is used, and for used ones the batch's results
    (scoring/batchimu.py): distance and seconds filled through GPS gaps, the IMU events' grades (brake, accel,
    corner), whether the channel's lon / lat are the IMU's 1 s means (in the ``GroupKernels`` given to ``rows``)."""

    aligned: list[Alignment | None]
    used: np.ndarray
    gap: np.ndarray  # (nt, 2)
    grades: np.ndarray  # (nt, 9)
    with_ch: np.ndarray


def rows(trips: list[ClosedTrip], g: GroupKernels, sel: np.ndarray, imu: RowImu | None = None) -> list[dict]:
    """The ``score_trip(...).as_row()`` rows of the group's trips ``sel`` (``trips[j]`` is group trip ``sel[j]``;
    each taken by the batch: ``g.ok``), without IMU samples unless ``imu`` says what their IMU gave."""
    cfg = g.cfg
    nt = len(trips)
    if nt == 0:
        return []
    cont = continuous_batch(g)[sel]
    basic, ev_n, expo, spd, phn = g.basic[sel], g.ev_n[sel], g.expo[sel], g.spd[sel], g.ph[sel]
    kept = np.diff(g.goff)[sel]
    tr = trips
    start = np.array([t.start_ms for t in tr], np.int64)
    end = np.array([t.end_ms for t in tr], np.int64)
    d, mv = basic[:, 0], basic[:, 1]
    used = np.zeros(nt, bool) if imu is None else imu.used
    gap_m = np.zeros(nt) if imu is None else np.where(used, imu.gap[:, 0], 0.0)
    gap_s = np.zeros(nt) if imu is None else np.where(used, imu.gap[:, 1], 0.0)
    km = (d + gap_m) / 1000.0
    pos = km > 0
    # the events' grades: the speed channel's, or the accelerometer's where it is used
    gb, ga, gc = ev_n[:, 3:6].copy(), ev_n[:, 6:9].copy(), np.zeros((nt, 3), np.int64)
    if imu is not None and used.any():
        gb[used], ga[used], gc[used] = imu.grades[used, 0:3], imu.grades[used, 3:6], imu.grades[used, 6:9]
    nb = gb[:, 1] + gb[:, 2]
    na = ga[:, 1] + ga[:, 2]
    nc = gc[:, 1] + gc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        per100 = [np.where(pos, x * 100.0 / km, np.nan) for x in (nb, na, nc)]
        mean_speed = np.where(mv > 0, d / mv * 3.6, 0.0)
        risk = np.where(spd[:, 0] > 0, spd[:, 6] / spd[:, 0], np.nan)
    none_if_nan = _nones

    # the continuous measures, rounded as continuous_fields rounds them
    nan = np.nan
    cont = cont.copy()
    mvs, lm, jn, jsq, jo, hs, ha, pw, dist = (cont[:, _INT + j] for j in range(9))
    nw, cv, ns, lsd = (cont[:, _CRUISE + j] for j in range(4))
    tot, longest = cont[:, _BANDS], cont[:, _LONGEST]

    def ratio(x: np.ndarray, by: np.ndarray) -> np.ndarray:
        """round(x / by, 6), NaN where by <= 0 (x / by as Python divides: the same IEEE division)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(by > 0, pyround(x / by, 6), nan)

    def shares(col: int, by: np.ndarray) -> list:
        r = ratio(cont[:, col : col + 3], by[:, None]).tolist()
        return [x if d > 0 else None for x, d in zip(r, by.tolist(), strict=True)]

    with np.errstate(invalid="ignore"):
        jerk_rms = np.where(jn > 0, pyround(np.sqrt(np.where(jn > 0, jsq / np.where(jn > 0, jn, 1.0), 0.0)), 6), nan)
    fatigue = longest - cfg.fatigue_after_s
    fatigue = np.where(fatigue > 0.0, fatigue, 0.0)  # max(0.0, x)
    bands = np.where(tot[:, None] > 0, ratio(cont[:, _BANDS + 1 : _BANDS + 4], tot[:, None]), 0.0)
    with_ch = [False] * nt if imu is None else (imu.with_ch & used).tolist()
    cf: dict[str, list] = {
        "intensity_source": [
            "imu" if w else ("speed+heading" if x else "speed")
            for x, w in zip(g.ch_src[sel].tolist(), with_ch, strict=True)
        ],
        "brake_time_share": shares(_BRAKE, mvs),
        "accel_time_share": shares(_ACCEL, mvs),
        "lat_time_share": shares(_LAT, lm),
        "jerk_rms_mps3": _nones(jerk_rms),
        "jerk_share": _nones(ratio(jo, jn)),
        "high_speed_accel_share": _nones(ratio(ha, hs)),
        "rpa_mps2": _nones(ratio(pw, dist)),
        "speeding_band_share": bands.tolist(),
        "longest_drive_s": longest.tolist(),
        "fatigue_s": fatigue.tolist(),
        "cruise_windows": nw.astype(np.int64).tolist(),
        "cruise_speed_cv": _nones(ratio(cv, nw)),
        "weave_windows": ns.astype(np.int64).tolist(),
        "weave_lat_std_mps2": _nones(ratio(lsd, ns)),
    }

    # the population score (scoring.population.part_values and population_score, part by part over all trips)
    fb, fa, fc = gb.astype(np.float64), ga.astype(np.float64), gc.astype(np.float64)
    ev = 0 + _GRADE_W[0] * fb[:, 0]
    for w, col in ((_GRADE_W[1], fb[:, 1]), (_GRADE_W[2], fb[:, 2])):
        ev = ev + w * col
    for f in (fa, fc):
        for w, col in zip(_GRADE_W, (f[:, 0], f[:, 1], f[:, 2]), strict=True):
            ev = ev + w * col
    night_km = expo[:, 1] / 1000.0
    ph_s, ph_rep = phn[:, 0], phn[:, 1]

    def lsum(col: int, by: np.ndarray) -> np.ndarray:
        """sum() of a rounded share list (0 + s0 + s1 + s2), NaN where the list is None."""
        r = ratio(cont[:, col : col + 3], by[:, None])
        return ((0 + r[:, 0]) + r[:, 1]) + r[:, 2]

    with np.errstate(divide="ignore", invalid="ignore"):
        values = {
            "phone_share": np.where(ph_rep > 0, ph_s / ph_rep, nan),
            "speeding_risk": risk,
            "events_per_100km": np.where(km >= cfg.score_min_km, ev * 100.0 / km, nan),
            "lon_intensity": lsum(_BRAKE, mvs) + lsum(_ACCEL, mvs),
            "lat_intensity": lsum(_LAT, lm),
            "jerk_rms": jerk_rms,
            "rpa": ratio(pw, dist),
            "cruise_speed_cv": ratio(cv, nw),
            "weaving": ratio(lsd, ns),
            "fatigue_h": fatigue / 3600.0,
            "night_share": np.where(pos, np.minimum(1.0, night_km / km), nan),
        }
    quant = table_for(cfg)["quantiles"]
    lost_of: dict[str, np.ndarray] = {}
    texts: list[list[str]] = []  # per part: imputed, percentile, points lost, value of every trip
    tmpl: list[str] = []  # per part: its text with those four as %s
    for name in sorted(cfg.score_weights):  # json.dumps(parts, sort_keys=True), part by part
        w = cfg.score_weights[name]
        knots = quant.get(name) or []
        x = values[name]
        has = x == x
        f = percentiles(np.maximum(0.0, np.where(has, x, 0.0)), knots)
        f = np.where(has, f, percentile(knots[len(knots) // 2], knots) if knots else 0.0)
        lost_of[name] = lost = pyround(w * f, 3)
        imp = ["false" if h else "true" for h in has.tolist()]
        val = _json_nums(pyround(np.where(has, x, 0.0), 6))
        val = [v if i == "false" else "null" for v, i in zip(val, imp, strict=True)]
        texts += [imp, _json_nums(pyround(f, 4)), _json_nums(lost), val]
        lit = (f'"{name}": {{"imputed": ', ', "percentile": ', ', "points_lost": ', ', "value": ')
        last = f', "weight": {json.dumps(w)}}}'
        tmpl.append("%s".join(t.replace("%", "%%") for t in lit) + "%s" + last.replace("%", "%%"))
    total = np.zeros(nt)
    for name in cfg.score_weights:  # summed in the configuration's order, as population_score sums
        total = total + lost_of[name]
    left = 100.0 - total
    score = pyround(np.where(left > 0.0, left, 0.0), 3).tolist()  # round(max(0.0, 100 - total), 3)
    whole = "{" + ", ".join(tmpl) + "}"  # one formatting per trip instead of one per part and a join
    parts_json = [whole % t for t in zip(*texts, strict=True)] if tmpl else ["{}"] * nt

    gr = lambda a: a.tolist()  # noqa: E731
    al: list[Alignment | None] = [None] * nt if imu is None else imu.aligned
    no_imu = NO_EXPECTED_IMU if cfg.imu_expected else None
    src = [
        "gps" if a is None or not u else ("imu" if a.status == "vehicle_frame" else "imu_rotated")
        for a, u in zip(al, used.tolist(), strict=True)
    ]
    cols: dict[str, list] = {
        "trip_id": [t.trip_id for t in tr],
        "vehicle_id": [t.vehicle for t in tr],
        "start_ms": start.tolist(),
        "end_ms": end.tolist(),
        "duration_s": ((end - start) / 1000.0).tolist(),
        "distance_km": km.tolist(),
        "moving_s": mv.tolist(),
        "idle_s": basic[:, 2].tolist(),
        "max_speed_kmh": (basic[:, 3] * 3.6).tolist(),
        "mean_speed_kmh": mean_speed.tolist(),
        "harsh_brakes": nb.tolist(),
        "harsh_accels": na.tolist(),
        "gps_fixes": kept.tolist(),
        "gps_dropped": (np.diff(g.off)[sel] - kept).tolist(),
        "messages": [t.messages for t in tr],
        "complete": [t.complete for t in tr],
        "ended_by": [t.ended_by for t in tr],
        "scorer_version": [SCORER_VERSION] * nt,
        "harsh_corners": nc.tolist(),
        "event_source": src,
        "harsh_brakes_gps": (ev_n[:, 4] + ev_n[:, 5]).tolist(),
        "harsh_accels_gps": (ev_n[:, 7] + ev_n[:, 8]).tolist(),
        "harsh_brake_grades": gr(gb),
        "harsh_accel_grades": gr(ga),
        "harsh_corner_grades": gr(gc),
        "harsh_brakes_per_100km": none_if_nan(per100[0]),
        "harsh_accels_per_100km": none_if_nan(per100[1]),
        "harsh_corners_per_100km": none_if_nan(per100[2]),
        "gps_jumps": g.jumps[sel].tolist(),
        "gap_filled_km": (gap_m / 1000.0).tolist(),
        "gap_filled_s": gap_s.tolist(),
        "night_s": expo[:, 0].tolist(),
        "night_km": night_km.tolist(),
        "rush_s": expo[:, 2].tolist(),
        "rush_km": (expo[:, 3] / 1000.0).tolist(),
        "weekend_s": expo[:, 4].tolist(),
        "weekend_km": (expo[:, 5] / 1000.0).tolist(),
        "phone_s": ph_s.tolist(),
        "phone_reported_s": ph_rep.tolist(),
        "limit_known_km": (spd[:, 1] / 1000.0).tolist(),
        "over_limit_km": (spd[:, 2] / 1000.0).tolist(),
        "over_limit_margin_km": (spd[:, 3] / 1000.0).tolist(),
        "high_speed_km": (spd[:, 4] / 1000.0).tolist(),
        "high_speed_unknown_km": (spd[:, 5] / 1000.0).tolist(),
        "heatmap_s": pyround(g.heat[sel], 3).tolist(),  # round(x, 3) if x else x: rounding leaves 0.0 and -0.0
        "score": score,
        "imu_status": [imu_status(a) for a in al],
        "imu_reason": [no_imu if a is None else a.reason for a in al],
        "imu_gravity": [None if a is None else a.gravity for a in al],
        "imu_lag_s": [None if a is None or not np.isfinite(a.lag_s) else a.lag_s for a in al],
        "imu_r": [None if a is None or not np.isfinite(a.r) else round(a.r, 2) for a in al],
        "speed_artefacts": ev_n[:, 2].tolist(),
        "speeding_extra_risk": none_if_nan(risk),
        "gps_brake_grades": gr(ev_n[:, 3:6]),
        "gps_accel_grades": gr(ev_n[:, 6:9]),
        "seq_first": [t.seq_first if t.seq_first >= 0 else None for t in tr],
        "seq_last": [t.seq_last if t.seq_last >= 0 else None for t in tr],
        "device_class": [cfg.device_class] * nt,
        **cf,
        "score_parts": parts_json,
    }
    if set(cols) != set(ROW_ORDER):
        raise AssertionError(f"scoring/batchrows.py builds {sorted(set(cols) ^ set(ROW_ORDER))} unlike TripRecord")
    return [dict(zip(ROW_ORDER, vals, strict=True)) for vals in zip(*(cols[n] for n in ROW_ORDER), strict=True)]


def _aligned(trip: ClosedTrip, g: GroupKernels, k: int) -> tuple[Alignment, np.ndarray, float | None] | None:
    """Group trip k's IMU as ``measure_trip`` aligns it: (alignment, IMU times in s, median interval), or None
    where the alignment raises (``measure_trip`` then raises it for this trip)."""
    good = g.keep[g.off[k] : g.off[k + 1]]
    it = trip.imu_t_ms / 1000.0
    per = median_step(it) if it.shape[0] >= 2 else None
    try:
        a = align_to_vehicle(
            it, trip.acc_lon, trip.acc_lat, trip.acc_vert, trip.t_ms[good] / 1000.0, trip.speed[good], g.cfg, per
        )
    except Exception:  # noqa: BLE001 - measure_trip raises it, in the per-trip order
        return None
    return a, it, per


def _alignments(
    trips: list[ClosedTrip], idx: list[int], ok: list[int], g: GroupKernels
) -> Iterator[tuple[int, tuple[Alignment, np.ndarray, float | None] | None]]:
    """(k, ``_aligned`` of group trip k) for each trip the batch takes (``ok``), in order (None for a trip without
    IMU samples too): the trips with IMU samples aligned by ``align_batch`` up to IMU_CHUNK samples at a time, one
    at a time (``_aligned``) where it does not take one."""
    ks = [k for k in range(len(idx)) if ok[k]]
    j = 0
    while j < len(ks):
        window: list[int] = []
        size = 0
        while j < len(ks) and size < IMU_CHUNK:
            window.append(ks[j])
            size += trips[idx[ks[j]]].imu_t_ms.shape[0]
            j += 1
        imu_k = [k for k in window if trips[idx[k]].imu_t_ms.shape[0] and trips[idx[k]].speed.dtype == np.float64]
        its = [trips[idx[k]].imu_t_ms / 1000.0 for k in imu_k]
        pers = [median_step(it) if it.shape[0] >= 2 else None for it in its]
        tr = [trips[idx[k]] for k in imu_k]
        al = align_batch(
            imu_k,
            its,
            [t.acc_lon for t in tr],
            [t.acc_lat for t in tr],
            [t.acc_vert for t in tr],
            pers,
            g.goff,
            g.tg,
            g.vg,
            g.cfg,
        )
        done = {k: (a, it, per) for k, a, it, per in zip(imu_k, al, its, pers, strict=True) if a is not None}
        for k in window:
            trip = trips[idx[k]]
            yield k, (None if trip.imu_t_ms.shape[0] == 0 else done[k] if k in done else _aligned(trip, g, k))


def _batchable(trip: ClosedTrip, it: np.ndarray, per: float | None) -> bool:
    """A used IMU that imu_batch_kernel takes as ``measure_trip`` would: times finite and strictly increasing (else
    measure_trip raises), the fixes' arrays of the dtypes the group's arrays hold them in."""
    return (
        per is not None
        and trip.t_ms.dtype == np.int64
        and trip.speed.dtype == np.float64
        and bool(np.isfinite(it).all())
        and bool((np.diff(it) > 0).all())
    )


def _flush(
    g: GroupKernels,
    pending: list[tuple[int, np.ndarray, Alignment, float]],
    ch_lon: np.ndarray,
    ch_lat: np.ndarray,
    done: dict[int, tuple[np.ndarray, np.ndarray, bool]],
) -> None:
    """The accelerometer kernels over the pending used-IMU trips (k, IMU times, alignment, median interval) of
    group ``g``: their results into ``done[k]`` (gap, grades, IMU channel), their 1 s means into ch_lon / ch_lat."""
    if not pending:
        return
    ks = [p[0] for p in pending]
    ib = imu_batch(
        g.goff,
        g.tg,
        g.vg,
        g.ch_off,
        g.ch_t,
        ch_lon,
        ch_lat,
        ks,
        [p[1] for p in pending],
        [p[2] for p in pending],
        [p[3] for p in pending],
        g.cfg,
    )
    for u, k in enumerate(ks):
        done[k] = (ib.gap[u], ib.grades[u], bool(ib.with_ch[u]))
    pending.clear()


IMU_CHUNK = 1_000_000  # IMU samples aligned and batched at a time: bounds the memory a large file's IMU takes


def score_rows(
    trips: list[ClosedTrip], limits: list[np.ndarray | None], cfg: ScoringConfig, src: FixSource | None = None
) -> list[dict]:
    """``score_trip(trip, cfg, limit).as_row()`` of every trip (``limits``: posted limit per fix, m/s, NaN unknown,
    or None), the speed-channel kernels over all trips of a configuration at once and the rows column-wise
    (``rows``): trips without IMU samples, trips whose IMU is rejected (aligned per trip), and trips whose IMU is
    used (aligned per trip, then the accelerometer kernels over up to IMU_CHUNK samples of them at once:
    scoring/batchimu.py). What the batch cannot take goes through ``measure_trip`` with the batch's results
    (``Precomputed``) or alone (it raises what it raises for them). ``src``: where the trips' fixes lie in the
    file's arrays (score-file's cut; ``FixSource.start`` per trip of ``trips``)."""
    out: list[dict | None] = [None] * len(trips)
    if src is not None and src.start.shape[0] != len(trips):
        raise ValueError(f"score_rows: {src.start.shape[0]} trip starts for {len(trips)} trips")
    for c, idx in config_groups(trips, limits, cfg):
        starts = None if src is None else src.start[np.array(idx, np.int64)]
        g = group_kernels([trips[i] for i in idx], [limits[i] for i in idx], c, src, starts)
        ok = g.ok.tolist()
        sel: list[int] = []
        aligned: list[Alignment | None] = []
        ch_lon, ch_lat = g.ch_lon.copy(), g.ch_lat.copy()
        done: dict[int, tuple[np.ndarray, np.ndarray, bool]] = {}  # k -> gap, grades, IMU channel
        pending: list[tuple[int, np.ndarray, Alignment, float]] = []

        size = 0
        for k, r in _alignments(trips, idx, ok, g):
            trip = trips[idx[k]]
            if trip.imu_t_ms.shape[0] == 0:
                sel.append(k)
                aligned.append(None)
                continue
            if r is None:
                continue
            a, it, per = r
            if a.used:
                if not _batchable(trip, it, per):
                    continue
                assert per is not None
                pending.append((k, it, a, per))
                size += it.shape[0]
                if size >= IMU_CHUNK:
                    _flush(g, pending, ch_lon, ch_lat, done)
                    size = 0
            sel.append(k)
            aligned.append(replace(a, lon=_NONE, lat=_NONE))  # the rows need its verdict, not its axes
        _flush(g, pending, ch_lon, ch_lat, done)
        gi = g
        imu: RowImu | None = None
        if any(a is not None for a in aligned):
            gi = replace(g, ch_lon=ch_lon, ch_lat=ch_lat)
            ns = len(sel)
            used = np.array([k in done for k in sel], bool)
            gap, grades, with_ch = np.zeros((ns, 2)), np.zeros((ns, 9), np.int64), np.zeros(ns, bool)
            for j, k in enumerate(sel):
                if k in done:
                    gap[j], grades[j], w = done[k]
                    # intensity.channel: a trip without a 1 Hz grid keeps the "speed" channel (empty)
                    with_ch[j] = w and g.ch_off[k + 1] > g.ch_off[k]
            imu = RowImu(aligned, used, gap, grades, with_ch)
        for k, row in zip(sel, rows([trips[idx[k]] for k in sel], gi, np.array(sel, np.int64), imu), strict=True):
            out[idx[k]] = row
        for k in range(len(idx)):
            i = idx[k]
            if out[i] is None and ok[k]:
                out[i] = build_record(
                    trips[i], measure_trip(trips[i], cfg, limits[i], None, precomputed_of(g, k))
                ).as_row()
    for i, trip in enumerate(trips):
        if out[i] is None:
            out[i] = build_record(trip, measure_trip(trip, cfg, limits[i])).as_row()
    return out  # type: ignore[return-value]


_NONE = np.zeros(0)


_CONT_NAMES = (
    "intensity_source",
    "brake_time_share",
    "accel_time_share",
    "lat_time_share",
    "jerk_rms_mps3",
    "jerk_share",
    "high_speed_accel_share",
    "rpa_mps2",
    "speeding_band_share",
    "longest_drive_s",
    "fatigue_s",
    "cruise_windows",
    "cruise_speed_cv",
    "weave_windows",
    "weave_lat_std_mps2",
)
ROW_ORDER = [n for n in FIELD_NAMES if n != "score_parts"] + ["score_parts"]  # TripRecord.as_row's order
