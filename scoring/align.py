"""Put a phone's or aftermarket device's accelerometer into the vehicle frame, per trip, and say why or why not.

Real devices differ in three ways that this module absorbs (research: issue 12):

- **Gravity.** Raw input carries gravity (|mean| ~ g): the mean direction is the vertical. Many phone APIs report
  *linear* acceleration with gravity removed (|mean| ~ 0.1-0.3 m/s^2): the vertical is then the axis of least
  variance of the 1 s-smoothed signal (a car accelerates horizontally), signed towards the declared ``acc_vert``.
  Input without a vertical axis (all NaN) is taken as already in the vehicle frame. Anything else ("partial
  gravity") is unusable.
- **Lag.** GPS speed lags the accelerometer by 0.1-1.5 s (receiver filtering). For each lag L in 0..imu_max_lag_s
  the GPS dv/dt is fitted by least squares on the two 1 s-smoothed horizontal axes taken L earlier; the lag with the
  highest multiple correlation R wins, and its coefficients give the forward direction and its sign.
- **Mount.** Forward comes from that fit and left = up x forward, so any yaw (a phone turned 180 degrees) gives the
  same vehicle-frame signal. A level mount whose fitted forward is within 15 degrees of its own x axis is returned
  untouched (``vehicle_frame``).

The IMU is used when R at the best lag reaches imu_min_r; otherwise the trip says why (``reason``) and events come
from the speed channel. The lag is returned so the speed gate reads GPS speed at the right time.

All of it is one numba kernel per trip (``align_kernel``); the live stage's ``measure_trip`` and score-file
(``align_batch``: one call per trip on the trip's own arrays, which costs less than copying a file's trips into one
array for a single call) both reach it through ``align_to_vehicle`` / ``align_batch``, so they give the same
alignment. The NumPy code it replaced is kept as
``scoring.reference_align.align_reference`` (tests/test_align_kernel.py compares them: the same decisions and
reasons, the numbers to ~1e-9 (sums in another order, the 1 s and blend means from prefix sums
(``moving_mean_kernel``), a 3x3 Jacobi eigen-solver instead of LAPACK's), and ``align_to_vehicle`` takes that path
where the kernel does not apply (see ``_kernel_takes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numba import njit

from scoring.imukernels import gradient, gradient_kernel
from scoring.kernels import PREFIX_BLOCK, clipped_window, moving_mean_kernel, prefix_block, window_mean_kernel
from scoring.lagfit import GRID_STEP_S, interp2_kernel, interp_kernel, lag_scan_seq_sums, lags_of
from ubi.common.config import ScoringConfig

G = 9.80665
_LEVEL_COS = float(np.cos(np.radians(15.0)))
_MIN_OVERLAP_S = 20.0  # seconds of IMU and GPS together needed to fit a lag (our choice)
_MIN_DV_STD = 0.2  # m/s^2: below this the GPS shows no speed changes to align on (steady cruise)


@dataclass(frozen=True)
class Alignment:
    lon: np.ndarray  # m/s^2, +forward
    lat: np.ndarray  # m/s^2, +left
    status: str  # "vehicle_frame" | "rotated" | "unusable"
    lag_s: float = 0.0  # GPS speed lags the IMU by this much (NaN when not fitted)
    r: float = float("nan")  # multiple correlation of GPS dv/dt with the horizontal IMU at that lag
    gravity: str = "raw"  # "raw" | "removed" | "no_vertical" | "partial"
    reason: str = ""

    @property
    def used(self) -> bool:
        return self.status != "unusable"


def cross3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.cross`` of two 3-vectors of float64, the same products and differences (a1 b2 - a2 b1, ...) without
    its general machinery (~20 us a call)."""
    a0, a1, a2 = float(a[0]), float(a[1]), float(a[2])
    b0, b1, b2 = float(b[0]), float(b[1]), float(b[2])
    return np.array([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0])


def smooth(x: np.ndarray, n: int) -> np.ndarray:
    """Centred moving mean over n samples of the finite values (NaN where none): scoring.kernels.window_mean_kernel."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError("smooth: 1-D input expected")
    if n < 1:
        raise ValueError("smooth: window must hold at least one sample")
    out = np.empty(x.shape[0])
    window_mean_kernel(x, int(n), out)
    return out


# align_kernel's verdict, res[u] = (status, gravity, why, lag s, R, |mean| m/s^2, lon written, lat written)
_STATUS = ("unusable", "vehicle_frame", "rotated")  # status -1: the kernel does not take it (align_reference does)
_GRAVITY = ("raw", "removed", "no_vertical", "partial")
_RAW, _REMOVED, _NO_VERTICAL, _PARTIAL = 0, 1, 2, 3
_FITTED, _NO_FINITE, _PARTIAL_G, _OVERLAP, _STEADY, _LOW_R = 0, 1, 2, 3, 4, 5
RES_WIDTH = 8
_BIG = np.finfo(np.float64).max


@njit(cache=True, nogil=True)
def _num(x: float) -> float:
    """np.nan_to_num of one float."""
    if x != x:
        return 0.0
    if x == np.inf:
        return _BIG
    if x == -np.inf:
        return -_BIG
    return x


@njit(cache=True, nogil=True)
def _increasing(t: np.ndarray) -> bool:
    """Finite and strictly increasing: both ends finite and every step up (NaN compares False), one comparison per
    sample without an early exit (it vectorises)."""
    n = t.shape[0]
    if n == 0:
        return True
    ok = np.isfinite(t[0]) and np.isfinite(t[n - 1])
    up = True
    for i in range(1, n):
        up &= t[i] > t[i - 1]
    return ok and up


@njit(cache=True, nogil=True, error_model="numpy")
def min_eigvec3_kernel(c: np.ndarray, out: np.ndarray) -> None:
    """The unit eigenvector of the smallest eigenvalue of a symmetric 3x3 matrix (the first of equal ones, as
    ``np.linalg.eigh`` orders them), by cyclic Jacobi rotations until the off-diagonal is zero to rounding; NaN
    where the matrix is not finite. Its sign is the caller's to fix."""
    a = c.copy()
    v = np.eye(3)
    for _ in range(60):
        off = abs(a[0, 1]) + abs(a[0, 2]) + abs(a[1, 2])
        scale = abs(a[0, 0]) + abs(a[1, 1]) + abs(a[2, 2])
        if not off > 1e-300 + 1e-18 * scale:  # NaN too
            break
        for p, q in ((0, 1), (0, 2), (1, 2)):
            apq = a[p, q]
            if apq == 0.0:
                continue
            theta = (a[q, q] - a[p, p]) / (2.0 * apq)
            t = 1.0 / (abs(theta) + np.sqrt(theta * theta + 1.0))
            if theta < 0.0:
                t = -t
            cs = 1.0 / np.sqrt(t * t + 1.0)
            sn = t * cs
            for k in range(3):
                akp, akq = a[k, p], a[k, q]
                a[k, p] = cs * akp - sn * akq
                a[k, q] = sn * akp + cs * akq
            for k in range(3):
                apk, aqk = a[p, k], a[q, k]
                a[p, k] = cs * apk - sn * aqk
                a[q, k] = sn * apk + cs * aqk
            for k in range(3):
                vkp, vkq = v[k, p], v[k, q]
                v[k, p] = cs * vkp - sn * vkq
                v[k, q] = sn * vkp + cs * vkq
    j = 0
    for i in (1, 2):
        if a[i, i] < a[j, j]:
            j = i
    for i in range(3):
        out[i] = v[i, j] if np.isfinite(a[j, j]) else np.nan


@njit(cache=True, nogil=True, error_model="numpy")
def horizontal_means_kernel(
    lon: np.ndarray,
    lat: np.ndarray,
    vert: np.ndarray,
    has_vert: bool,
    e1: np.ndarray,
    e2: np.ndarray,
    n: int,
    h1: np.ndarray,
    h2: np.ndarray,
) -> None:
    """``moving_mean_kernel`` (window ``n``) of the axes projected on e1 and on e2, p = e . np.nan_to_num(A) (A[2]
    = 0 without a vertical axis), bit for bit, without writing p: each block of 512 windows projects the samples
    it reads into its two prefix sums side by side (p has no NaN, so a window's count is its clipped length).
    Where a projection exceeds 1e100 in magnitude the projections are written and moving_mean_kernel (which
    then takes window_mean_kernel) gives the means."""
    m = lon.shape[0]
    hw = (n - 1) // 2
    a0, a1, a2, b0_, b1, b2 = e1[0], e1[1], e1[2], e2[0], e2[1], e2[2]
    blk = PREFIX_BLOCK
    ps1 = np.empty(blk + n + 1)
    ps2 = np.empty(blk + n + 1)
    big = False
    b0 = 0
    while b0 < m and not big:
        nb = min(blk, m - b0)
        lo, hi, q0, q1 = prefix_block(b0, nb, hw, n, m)
        s1 = 0.0
        s2 = 0.0
        ps1[0] = 0.0
        ps2[0] = 0.0
        for j in range(lo, hi):
            x, y = lon[j], lat[j]
            z = vert[j] if has_vert else 0.0
            x1 = a0 * x + a1 * y + a2 * z
            x2 = b0_ * x + b1 * y + b2 * z
            if not (abs(x1) <= 1e100 and abs(x2) <= 1e100):  # a NaN or infinite sample (np.nan_to_num), or huge
                x, y, z = _num(x), _num(y), _num(z)
                x1 = a0 * x + a1 * y + a2 * z
                x2 = b0_ * x + b1 * y + b2 * z
                big |= not (abs(x1) <= 1e100 and abs(x2) <= 1e100)
            s1 += x1
            s2 += x2
            ps1[j - lo + 1] = s1
            ps2[j - lo + 1] = s2
        if q1 > q0:  # windows inside the array, n samples each
            k0 = q0 - hw - lo
            nn = float(n)
            a_lo, a_hi = ps1[k0 : k0 + q1 - q0], ps1[k0 + n : k0 + n + q1 - q0]
            b_lo, b_hi = ps2[k0 : k0 + q1 - q0], ps2[k0 + n : k0 + n + q1 - q0]
            o1, o2 = h1[q0:q1], h2[q0:q1]
            for q in range(q1 - q0):
                o1[q] = (a_hi[q] - a_lo[q]) / nn
                o2[q] = (b_hi[q] - b_lo[q]) / nn
        for k in range(nb - (q1 - q0)):  # the windows clipped at the ends
            i, wl, wh = clipped_window(b0, k, q0, q1, hw, n, m)
            h1[i] = (ps1[wh - lo] - ps1[wl - lo]) / float(wh - wl)
            h2[i] = (ps2[wh - lo] - ps2[wl - lo]) / float(wh - wl)
        b0 += nb
    if big:
        p1 = np.empty(m)
        p2 = np.empty(m)
        for j in range(m):
            x, y = _num(lon[j]), _num(lat[j])
            z = _num(vert[j]) if has_vert else 0.0
            p1[j] = a0 * x + a1 * y + a2 * z
            p2[j] = b0_ * x + b1 * y + b2 * z
        moving_mean_kernel(p1, n, h1)
        moving_mean_kernel(p2, n, h2)


@njit(cache=True, nogil=True, error_model="numpy")
def align_kernel(
    it: np.ndarray,
    lon: np.ndarray,
    lat: np.ndarray,
    vert: np.ndarray,
    gt: np.ndarray,
    gv: np.ndarray,
    n1: int,
    nblend: int,
    fp: np.ndarray,
    lags: np.ndarray,
    shift: int,
    out_lon: np.ndarray,
    out_lat: np.ndarray,
    res: np.ndarray,
) -> None:
    """One trip's alignment (module doc): IMU ``it`` (s) with its three axes (``vert`` NaN where none), kept GPS
    fixes ``gt`` (s) / ``gv`` (m/s); ``n1`` samples in the 1 s smoothing, ``nblend`` in the gravity-removed blend;
    fp = (gravity tolerance, gravity-free maximum, max lag, min R, blend s, max integration gap); ``lags`` the lags
    tried (s, rounded as the verdict gives them), ``shift`` grid steps apart. The verdict goes into ``res``
    (``RES_WIDTH``, codes above); rotated or blended axes into out_lon / out_lat (res[6] / res[7] = 1 where written,
    else the input's are the answer). Needs n >= 10 samples, >= 3 fixes, equal lengths; res[0] = -1 where the
    times are not finite and strictly increasing or the gravity-free covariance is not finite (not taken)."""
    n = it.shape[0]
    tol, free_max, max_lag, min_r, blend, max_gap = fp[0], fp[1], fp[2], fp[3], fp[4], fp[5]
    for j in range(RES_WIDTH):
        res[j] = 0.0
    res[3] = res[4] = res[5] = np.nan
    if not _increasing(it) or not _increasing(gt):
        res[0] = -1.0
        return
    has_vert = False
    for i in range(n):
        if np.isfinite(vert[i]):
            has_vert = True
            break
    u = np.zeros(3)
    if not has_vert:
        u[2] = 1.0
        gravity = _NO_VERTICAL
    else:
        s0 = s1 = s2 = 0.0
        c0 = c1 = c2 = 0
        for i in range(n):  # np.nanmean of each axis (adding 0.0 for a NaN leaves a sum from +0.0 as it is)
            x, y, z = lon[i], lat[i], vert[i]
            s0 += x if x == x else 0.0
            s1 += y if y == y else 0.0
            s2 += z if z == z else 0.0
            c0 += x == x
            c1 += y == y
            c2 += z == z
        m0, m1, m2 = s0 / c0, s1 / c1, s2 / c2
        m = np.sqrt(m0 * m0 + m1 * m1 + m2 * m2)
        res[5] = m
        if not np.isfinite(m):
            res[1], res[2] = _PARTIAL, _NO_FINITE
            return
        if abs(m - G) <= tol:
            u[0], u[1], u[2] = m0 / m, m1 / m, m2 / m
            gravity = _RAW
        elif m <= free_max:
            sm = np.empty((3, n))
            mu = np.zeros(3)
            for r in range(3):
                moving_mean_kernel(lon if r == 0 else (lat if r == 1 else vert), n1, sm[r])
                for i in range(n):
                    sm[r, i] = _num(sm[r, i])
                    mu[r] += sm[r, i]
                mu[r] /= n
            cov = np.zeros((3, 3))
            for r in range(3):
                for q in range(r, 3):
                    acc = 0.0
                    for i in range(n):
                        acc += (sm[r, i] - mu[r]) * (sm[q, i] - mu[q])
                    cov[r, q] = cov[q, r] = acc / (n - 1)
            for r in range(3):
                for q in range(3):
                    if not np.isfinite(cov[r, q]):
                        res[0] = -1.0
                        return
            min_eigvec3_kernel(cov, u)
            if not u[2] >= 0.0:  # least variance = vertical, towards acc_vert
                u[0], u[1], u[2] = -u[0], -u[1], -u[2]
            gravity = _REMOVED
        else:
            res[1], res[2] = _PARTIAL, _PARTIAL_G
            return
    res[1] = gravity
    level = u[2] > _LEVEL_COS
    x = np.zeros(3)
    if level:
        x[0] = 1.0
    else:
        j = 0
        for i in (1, 2):
            if abs(u[i]) < abs(u[j]):
                j = i
        x[j] = 1.0
    xu = x[0] * u[0] + x[1] * u[1] + x[2] * u[2]
    e1 = np.empty(3)
    for i in range(3):
        e1[i] = x[i] - xu * u[i]
    nrm = np.sqrt(e1[0] * e1[0] + e1[1] * e1[1] + e1[2] * e1[2])
    for i in range(3):
        e1[i] /= nrm
    e2 = np.array([u[1] * e1[2] - u[2] * e1[1], u[2] * e1[0] - u[0] * e1[2], u[0] * e1[1] - u[1] * e1[0]])
    h1 = np.empty(n)
    h2 = np.empty(n)
    horizontal_means_kernel(lon, lat, vert, has_vert, e1, e2, n1, h1, h2)
    t0 = max(it[0], gt[0]) + max_lag
    t1 = min(it[n - 1], gt[gt.shape[0] - 1])
    ng = 0
    if t1 - t0 >= _MIN_OVERLAP_S:
        ng = int(np.ceil((t1 - t0) / GRID_STEP_S))  # np.arange(t0, t1, 0.1): t0 + i * ((t0 + 0.1) - t0)
    back = (lags.shape[0] - 1) * shift
    xg = np.empty(back + ng)
    grad = np.empty(gt.shape[0])
    std = 0.0
    dd = 0.0
    sd = 0.0
    dv = np.empty(ng)
    if ng:
        step = (t0 + GRID_STEP_S) - t0
        for i in range(ng):
            xg[back + i] = t0 + i * step if i else t0
        gradient_kernel(gv, gt, grad)
        sd, sq = interp_kernel(xg[back:], gt, grad, dv)
        dd = sq - sd * (sd / ng)  # sum((dv - mean)^2) = ng var; the fit takes dv as it is (lag_scan_seq_sums)
        dd = dd if dd > 0.0 else 0.0
        std = np.sqrt(dd / ng)
    if ng == 0 or std < _MIN_DV_STD:
        res[2] = _OVERLAP if ng == 0 else _STEADY
        if level and (gravity == _RAW or gravity == _NO_VERTICAL):
            res[0], res[3] = 1.0, 0.0  # level mount, unchecked
        return
    for j in range(back):
        xg[j] = t0 - GRID_STEP_S * (back - j)
    y1 = np.empty(back + ng)
    y2 = np.empty(back + ng)
    t1, t2 = interp2_kernel(xg, it, h1, h2, y1, y2)
    nlag = lags.shape[0]
    fit = np.empty((nlag, 3))
    lag_scan_seq_sums(y1, y2, t1, t2, dv, sd, dd, shift, nlag, fit)
    best_r, kb = -1.0, -1
    for k in range(nlag):
        if fit[k, 0] > best_r:
            best_r, kb = fit[k, 0], k
    lag = lags[kb] if kb >= 0 else 0.0
    b1 = fit[kb, 1] if kb >= 0 else 0.0
    b2 = fit[kb, 2] if kb >= 0 else 0.0
    res[3] = lag
    if best_r < min_r:
        res[2], res[4] = _LOW_R, max(best_r, 0.0)
        return
    res[4] = best_r
    fwd = np.empty(3)
    for i in range(3):
        fwd[i] = b1 * e1[i] + b2 * e2[i]
    nrm = np.sqrt(fwd[0] * fwd[0] + fwd[1] * fwd[1] + fwd[2] * fwd[2])
    for i in range(3):
        fwd[i] /= nrm
    base = lon
    if level and fwd[0] > _LEVEL_COS:
        res[0] = 1.0
    else:
        res[0], res[6], res[7] = 2.0, 1.0, 1.0
        left = np.array([u[1] * fwd[2] - u[2] * fwd[1], u[2] * fwd[0] - u[0] * fwd[2], u[0] * fwd[1] - u[1] * fwd[0]])
        for i in range(n):
            z = vert[i] if has_vert else 0.0
            out_lon[i] = fwd[0] * lon[i] + fwd[1] * lat[i] + fwd[2] * z
            out_lat[i] = left[0] * lon[i] + left[1] * lat[i] + left[2] * z
        base = out_lon
    if gravity == _REMOVED and blend > 0:
        # restore_sustained: the forward axis gets its slow part back from GPS dv/dt at the fitted lag
        m = gt.shape[0]
        corr = np.empty(n)
        tq = np.empty(n)
        dvq = np.empty(n)
        for i in range(n):
            tq[i] = it[i] + lag
        interp_kernel(tq, gt, grad, dvq)
        j = 1
        for i in range(n):
            while j < m - 1 and gt[j] < tq[i]:  # np.searchsorted(gt, tq[i]) clipped to 1..m-1 (tq increases)
                j += 1
            if tq[i] < gt[0] or tq[i] > gt[m - 1] or gt[j] - gt[j - 1] > max_gap:
                dvq[i] = np.nan
            tq[i] = dvq[i] - base[i]
        moving_mean_kernel(tq, nblend, corr)
        for i in range(n):
            out_lon[i] = base[i] + _num(corr[i])
        res[6] = 1.0


@lru_cache(maxsize=64)
def _lags(max_lag_s: float, step_s: float) -> tuple[np.ndarray, int] | None:
    """The lags tried, rounded to the ms as the verdict gives them, and their distance in grid steps; None where
    the step is not a whole number of grid steps (lag_fit_exact's case: align_reference)."""
    shift = int(round(step_s / GRID_STEP_S))
    if shift < 1 or abs(shift * GRID_STEP_S - step_s) > 1e-9:
        return None
    lags = np.array([round(float(x), 3) for x in lags_of(max_lag_s, step_s)], np.float64)
    lags.flags.writeable = False
    return lags, shift


def _fparams(cfg: ScoringConfig) -> np.ndarray:
    return np.array(
        [
            cfg.imu_gravity_tol_mps2,
            cfg.imu_gravity_free_max_mps2,
            cfg.imu_max_lag_s,
            cfg.imu_min_r,
            cfg.imu_removed_blend_s,
            cfg.max_integration_gap_s,
        ],
        np.float64,
    )


def _windows(period_s: float, cfg: ScoringConfig) -> tuple[int, int] | None:
    """Samples in the 1 s smoothing and in the gravity-removed blend (as align_reference and restore_sustained
    round them), None where the interval is not a positive number (align_reference raises what it raises)."""
    if not (np.isfinite(period_s) and period_s > 0.0):
        return None
    hz = 1.0 / period_s
    if not np.isfinite(hz):
        return None
    return max(1, int(round(hz))), max(1, int(round(cfg.imu_removed_blend_s * hz)))


def _verdict(lon: np.ndarray, lat: np.ndarray, r: np.ndarray, cfg: ScoringConfig) -> Alignment:
    """The Alignment of a kernel verdict ``r`` (lon / lat: the axes it carries), with align_reference's reasons."""
    status, gravity, why = _STATUS[int(r[0])], _GRAVITY[int(r[1])], int(r[2])
    lag, fit_r = float(r[3]), float(r[4])
    if why == _NO_FINITE:
        return Alignment(lon, lat, "unusable", float("nan"), gravity="partial", reason="no finite samples")
    if why == _PARTIAL_G:
        why_s = f"partial gravity: |mean| = {float(r[5]):.1f} m/s2"
        return Alignment(lon, lat, "unusable", float("nan"), gravity="partial", reason=why_s)
    if why in (_OVERLAP, _STEADY):
        why_s = f"overlap < {_MIN_OVERLAP_S:.0f} s" if why == _OVERLAP else "no speed changes to align on"
        if status == "vehicle_frame":
            return Alignment(lon, lat, "vehicle_frame", 0.0, gravity=gravity, reason=f"level mount, unchecked: {why_s}")
        return Alignment(lon, lat, "unusable", float("nan"), gravity=gravity, reason=why_s)
    if why == _LOW_R:
        why_s = f"R = {fit_r:.2f} < {cfg.imu_min_r} at the best lag {lag:.1f} s"
        return Alignment(lon, lat, "unusable", lag, fit_r, gravity, why_s)
    how = f"{gravity} gravity, R = {fit_r:.2f} at lag {lag:.1f} s"
    if gravity == "removed" and cfg.imu_removed_blend_s > 0:
        how += f"; forward blended with GPS dv/dt over {cfg.imu_removed_blend_s:g} s, lateral attenuated"
    return Alignment(lon, lat, status, lag, fit_r, gravity, how)


def _too_few(n: int, lon: np.ndarray, lat: np.ndarray, n_gps: int) -> Alignment | None:
    if n < 10 or lat.shape[0] != n or lon.shape[0] != n or n_gps < 3:
        return Alignment(lon, lat, "unusable", float("nan"), reason=f"too few samples ({n} IMU, {n_gps} GPS)")
    return None


def _f64(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float64)


def align_to_vehicle(
    imu_t_s: np.ndarray,
    lon: np.ndarray,
    lat: np.ndarray,
    vert: np.ndarray,
    gps_t_s: np.ndarray,
    gps_v: np.ndarray,
    cfg: ScoringConfig | None = None,
    period_s: float | None = None,
) -> Alignment:
    """The IMU in the vehicle frame, or why not (module doc): ``align_kernel``, or ``align_reference`` for input
    the kernel does not take (a lag step that is not a whole number of 0.1 s, times that are not finite float64
    and strictly increasing, an interval that is not a positive number). ``period_s``: the median IMU sample
    interval when the caller has it (measure_trip needs it for events and the channel too)."""
    cfg = cfg or ScoringConfig()
    n = imu_t_s.shape[0]
    few = _too_few(n, lon, lat, gps_t_s.shape[0])
    if few is not None:
        return few
    per = float(np.median(np.diff(imu_t_s))) if period_s is None else period_s
    lags, win = _lags(cfg.imu_max_lag_s, cfg.imu_lag_step_s), _windows(per, cfg)
    if lags is None or win is None or not all(x.dtype == np.float64 for x in (imu_t_s, gps_t_s, gps_v)):
        from scoring.reference_align import align_reference

        return align_reference(imu_t_s, lon, lat, vert, gps_t_s, gps_v, cfg, period_s)
    v = _f64(vert) if vert.shape[0] == n else np.full(n, np.nan)
    out_lon, out_lat, res = np.empty(n), np.empty(n), np.empty(RES_WIDTH)
    align_kernel(
        _f64(imu_t_s), _f64(lon), _f64(lat), v, _f64(gps_t_s), _f64(gps_v), *win, _fparams(cfg), *lags,
        out_lon, out_lat, res,
    )  # fmt: skip
    if res[0] < 0:
        from scoring.reference_align import align_reference

        return align_reference(imu_t_s, lon, lat, vert, gps_t_s, gps_v, cfg, period_s)
    return _verdict(out_lon if res[6] else lon, out_lat if res[7] else lat, res, cfg)


def align_batch(
    trip_k: list[int],
    its: list[np.ndarray],
    lons: list[np.ndarray],
    lats: list[np.ndarray],
    verts: list[np.ndarray],
    pers: list[float | None],
    goff: np.ndarray,
    tg: np.ndarray,
    vg: np.ndarray,
    cfg: ScoringConfig,
) -> list[Alignment | None]:
    """``align_to_vehicle`` of many trips: trip u has IMU ``its[u]`` (s) with its axes and median interval
    ``pers[u]``, and the kept fixes ``[goff[k], goff[k+1])`` of ``tg`` (s) / ``vg`` (m/s), k = ``trip_k[u]``; the
    kernel runs on each trip's own arrays (float64, contiguous: no copy) and its fixes' views. None for a trip the
    kernel does not take (the caller aligns it alone: align_to_vehicle gives the same answer for the ones it does
    take)."""
    nt = len(trip_k)
    out: list[Alignment | None] = [None] * nt
    lags = _lags(cfg.imu_max_lag_s, cfg.imu_lag_step_s)
    if lags is None or not (tg.dtype == vg.dtype == np.float64 and goff.dtype == np.int64):
        return out
    take: list[int] = []
    wins: list[tuple[int, int]] = []
    for u in range(nt):
        n, per = its[u].shape[0], pers[u]
        k = trip_k[u]
        few = _too_few(n, lons[u], lats[u], int(goff[k + 1] - goff[k]))
        if few is not None:
            out[u] = few
            continue
        win = None if per is None else _windows(per, cfg)
        if win is None or its[u].dtype != np.float64:
            continue
        take.append(u)
        wins.append(win)
    if not take:
        return out
    fp = _fparams(cfg)
    res = np.empty(RES_WIDTH)
    for u, (n1, nblend) in zip(take, wins, strict=True):
        n, k = its[u].shape[0], trip_k[u]
        v = _f64(verts[u]) if verts[u].shape[0] == n else np.full(n, np.nan)
        out_lon, out_lat = np.empty(n), np.empty(n)
        a, b = goff[k], goff[k + 1]
        lon, lat = _f64(lons[u]), _f64(lats[u])
        align_kernel(_f64(its[u]), lon, lat, v, tg[a:b], vg[a:b], n1, nblend, fp, *lags, out_lon, out_lat, res)
        if res[0] >= 0:
            out[u] = _verdict(out_lon if res[6] else lons[u], out_lat if res[7] else lats[u], res, cfg)
    return out


def restore_sustained(
    a: Alignment,
    imu_t_s: np.ndarray,
    gps_t_s: np.ndarray,
    gps_v: np.ndarray,
    cfg: ScoringConfig,
    period_s: float | None = None,
) -> Alignment:
    """Gravity-removed input has lost part of every sustained acceleration: the phone's attitude filter lets it
    leak into its gravity estimate (ikhyd's iPhone, accelUser vs raw: 1 s-mean std 0.34 vs 0.64 m/s^2 forward,
    0.43 vs 0.98 lateral; the difference correlates 0.75-0.87 with the 10 s low-pass of the raw signal). The
    forward axis gets its slow part back from GPS dv/dt at the fitted lag (complementary filter over
    imu_removed_blend_s: lon + mean(dv/dt - lon)); where the GPS has no trusted speed it stays as it is. The
    lateral axis has no such reference here and stays attenuated (said in the reason)."""
    hz = 1.0 / (float(np.median(np.diff(imu_t_s))) if period_s is None else period_s)
    tq = imu_t_s + a.lag_s
    dv = np.interp(tq, gps_t_s, gradient(gps_v, gps_t_s))
    j = np.clip(np.searchsorted(gps_t_s, tq), 1, gps_t_s.shape[0] - 1)
    bad = (tq < gps_t_s[0]) | (tq > gps_t_s[-1]) | (gps_t_s[j] - gps_t_s[j - 1] > cfg.max_integration_gap_s)
    dv[bad] = np.nan
    corr = smooth(dv - a.lon, max(1, int(round(cfg.imu_removed_blend_s * hz))))
    lon = a.lon + np.nan_to_num(corr)
    reason = a.reason + f"; forward blended with GPS dv/dt over {cfg.imu_removed_blend_s:g} s, lateral attenuated"
    return Alignment(lon, a.lat, a.status, a.lag_s, a.r, a.gravity, reason)
