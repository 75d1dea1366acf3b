"""The accelerometer side of many trips in one numba call (``ubi score-file``): what ``measure_trip`` does with a
trip's aligned IMU once ``scoring.align.align_to_vehicle`` has put it in the vehicle frame.

Per trip whose IMU is used, ``imu_batch_kernel`` runs the very kernels ``measure_trip`` calls, with the same
arguments: the distance through GPS gaps (``gap_fill_kernel``), GPS speed read back onto the IMU's clock at the
fitted lag (``trust_speed_kernel``), the 0.5 s moving means and the graded brake / acceleration / corner events
(``window_mean_kernel``, ``event_kernel``), and the 1 s IMU means of the continuous measures' channel
(``bin_means2_kernel``: ``bin_means_kernel`` of both axes in one pass) on the trip's 1 Hz grid, which is the speed
channel's grid (scoring/batch.py computed it). The alignment itself stays per trip (its mean, eigenvectors and
projections are NumPy / BLAS, whose sums this module does not re-create). tests/test_score_batch.py compares the
kernel with the per-trip functions and every field of every row with the per-trip path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from scoring.align import Alignment
from scoring.features import bands, event_window
from scoring.gapfill import gap_fill_kernel
from scoring.imukernels import bin_means2_kernel, trust_speed_kernel
from scoring.kernels import event_kernel, window_mean_kernel
from ubi.common.config import ScoringConfig

_DBL_MAX = np.finfo(np.float64).max

# fparams of imu_batch_kernel
_P_GAP, _P_WARM, _P_FILL, _P_MERGE = 0, 1, 2, 3
_P_BANDS = 4  # (threshold, moderate-to-harsh, harsh-to-severe, minimum speed) for brake, accel, corner
N_PARAMS = _P_BANDS + 12


@njit(cache=True, nogil=True)
def _grade(p: np.ndarray, k: int, b2: float, b3: float, out: np.ndarray) -> None:
    """``scoring.features._graded``'s counts of the first k peaks: (< b2, [b2, b3), >= b3), each test on its own
    as NumPy's masks do (a NaN peak is in none)."""
    g1 = g2 = g3 = 0
    for i in range(k):
        x = p[i]
        if x < b2:
            g1 += 1
        if x >= b2 and x < b3:
            g2 += 1
        if x >= b3:
            g3 += 1
    out[0], out[1], out[2] = g1, g2, g3


@njit(cache=True, nogil=True)
def imu_batch_kernel(
    goff: np.ndarray,
    tg: np.ndarray,
    vg: np.ndarray,
    trip_k: np.ndarray,
    ioff: np.ndarray,
    it: np.ndarray,
    alon: np.ndarray,
    alat: np.ndarray,
    lag: np.ndarray,
    lag_ch: np.ndarray,
    win: np.ndarray,
    hold: np.ndarray,
    imu_gap: np.ndarray,
    with_ch: np.ndarray,
    ch_off: np.ndarray,
    ch_t: np.ndarray,
    fparams: np.ndarray,
    gap: np.ndarray,
    grades: np.ndarray,
    ch_lon: np.ndarray,
    ch_lat: np.ndarray,
) -> None:
    """For each used trip u (group trip ``trip_k[u]``: kept fixes ``[goff[k], goff[k+1])`` of tg (s) / vg (m/s);
    IMU ``[ioff[u], ioff[u+1])`` of it (s, strictly increasing), alon / alat (vehicle frame, m/s^2)):
    gap[u] = (distance m, seconds) filled through GPS gaps; grades[u] = (moderate, harsh, severe) of brakes,
    accelerations, corners; where with_ch[u], ch_lon / ch_lat of its channel ``[ch_off[k], ch_off[k+1])`` become
    the 1 s IMU means at ch_t - lag_ch[u]. Per trip: lag (s, GPS behind the IMU), win (samples in the events'
    moving mean), hold and imu_gap (s): ``measure_trip``'s arguments. fparams: module constants."""
    max_gap, warm, fill, merge = fparams[_P_GAP], fparams[_P_WARM], fparams[_P_FILL], fparams[_P_MERGE]
    nu = trip_k.shape[0]
    cap = 1
    for u in range(nu):
        c = (ioff[u + 1] - ioff[u]) // 2 + 1
        if c > cap:
            cap = c
    s = np.empty(cap)
    e = np.empty(cap)
    p = np.empty(cap)
    for u in range(nu):
        k = trip_k[u]
        a, b = goff[k], goff[k + 1]
        t_s = tg[a:b]
        v = vg[a:b]
        i0, i1 = ioff[u], ioff[u + 1]
        n = i1 - i0
        t = it[i0:i1]
        lon = alon[i0:i1]
        lat = alat[i0:i1]
        # fill_gaps: NaN read as 0 (np.nan_to_num: the infinities as the largest finite values)
        a0 = np.empty(n)
        for i in range(n):
            x = lon[i]
            a0[i] = 0.0 if x != x else (_DBL_MAX if x == np.inf else (-_DBL_MAX if x == -np.inf else x))
        d, sec, _ = gap_fill_kernel(t_s, v, t, a0, max_gap, fill)
        gap[u, 0] = d
        gap[u, 1] = sec
        # gps_trust_speed at it + lag
        tq = np.empty(n)
        for i in range(n):
            tq[i] = t[i] + lag[u]
        v_at = np.empty(n)
        if b > a:
            trust_speed_kernel(tq, t_s, v, max_gap, warm, v_at)
        else:
            v_at[:] = np.nan
        # one moving mean per axis, the three kinds of events
        m_lon = np.empty(n)
        m_lat = np.empty(n)
        window_mean_kernel(lon, win[u], m_lon)
        window_mean_kernel(lat, win[u], m_lat)
        for kind in range(3):
            q = _P_BANDS + 4 * kind
            sign = -1 if kind == 0 else (1 if kind == 1 else 0)
            am = m_lat if kind == 2 else m_lon
            cnt = event_kernel(t, am, v_at, sign, fparams[q], fparams[q + 3], hold[u], merge, imu_gap[u], s, e, p)
            _grade(p, cnt, fparams[q + 1], fparams[q + 2], grades[u, 3 * kind : 3 * kind + 3])
        if with_ch[u]:
            c0, c1 = ch_off[k], ch_off[k + 1]
            gi = np.empty(c1 - c0)
            for j in range(c1 - c0):
                gi[j] = ch_t[c0 + j] - lag_ch[u]
            bin_means2_kernel(t, lon, lat, gi, ch_lon[c0:c1], ch_lat[c0:c1])


def fparams(cfg: ScoringConfig) -> np.ndarray:
    """imu_batch_kernel's constants, as ``measure_trip`` passes them."""
    f = [
        float(cfg.max_integration_gap_s),
        float(cfg.event_warmup_s),
        float(cfg.max_gap_fill_s),
        float(cfg.event_merge_gap_s),
    ]
    for kind in ("brake", "accel", "corner"):
        _, b1, b2, b3, vmin = bands(kind, cfg)
        f += [float(b1), float(b2), float(b3), float(vmin)]
    return np.array(f, np.float64)


@dataclass
class ImuBatch:
    """The accelerometer results of a group's trips whose IMU is used (rows ``u``; group trip ``trip_k[u]``)."""

    trip_k: np.ndarray
    gap: np.ndarray  # (nu, 2): distance m, seconds filled through GPS gaps
    grades: np.ndarray  # (nu, 9): brake, accel, corner (moderate, harsh, severe)
    with_ch: np.ndarray  # (nu,) the channel's lon / lat are the IMU's 1 s means


def imu_batch(
    g_goff: np.ndarray,
    g_tg: np.ndarray,
    g_vg: np.ndarray,
    g_ch_off: np.ndarray,
    g_ch_t: np.ndarray,
    g_ch_lon: np.ndarray,
    g_ch_lat: np.ndarray,
    trip_k: list[int],
    its: list[np.ndarray],
    aligned: list[Alignment],
    periods: list[float],
    cfg: ScoringConfig,
) -> ImuBatch:
    """``imu_batch_kernel`` over the group's used-IMU trips ``trip_k`` (their IMU times in s, strictly increasing
    and finite, at least two; their alignments, used; their median IMU intervals). Writes the IMU's 1 s means into
    those trips' segments of ``g_ch_lon`` / ``g_ch_lat`` (pass copies of the group's channel)."""
    nu = len(trip_k)
    sizes = np.array([x.shape[0] for x in its], np.int64)
    ioff = np.zeros(nu + 1, np.int64)
    np.cumsum(sizes, out=ioff[1:])
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)  # noqa: E731
    it = cat([np.asarray(x, np.float64) for x in its])
    alon = cat([np.asarray(a.lon, np.float64) for a in aligned])
    alat = cat([np.asarray(a.lat, np.float64) for a in aligned])
    lag = np.array([a.lag_s for a in aligned], np.float64)
    lag_ch = np.array([a.lag_s if np.isfinite(a.lag_s) else 0.0 for a in aligned], np.float64)
    win = np.array([event_window(per, cfg) for per in periods], np.int64)
    hold = np.array(
        [max(cfg.min_event_duration_s - cfg.event_mean_window_s, per) - 1e-6 for per in periods], np.float64
    )
    imu_gap = np.array([max(cfg.max_imu_gap_s, cfg.max_imu_gap_samples * per) for per in periods], np.float64)
    with_ch = np.array([1.0 / per >= cfg.intensity_min_imu_hz for per in periods], np.uint8)
    gap = np.zeros((nu, 2))
    grades = np.zeros((nu, 9), np.int64)
    imu_batch_kernel(
        g_goff,
        g_tg,
        g_vg,
        np.array(trip_k, np.int64),
        ioff,
        it,
        alon,
        alat,
        lag,
        lag_ch,
        win,
        hold,
        imu_gap,
        with_ch,
        g_ch_off,
        g_ch_t,
        fparams(cfg),
        gap,
        grades,
        g_ch_lon,
        g_ch_lat,
    )
    return ImuBatch(np.array(trip_k, np.int64), gap, grades, with_ch.astype(bool))
