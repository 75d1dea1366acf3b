"""The GPS-to-IMU lag search of ``scoring.align``: for each lag L in 0..max_lag the GPS dv/dt on a 0.1 s grid is
fitted by least squares on the two smoothed horizontal IMU axes read L earlier; the lag with the highest multiple
correlation R wins (the first of equal ones).

Reading the axes at ``grid - L`` for every L costs one interpolation of the whole trip per lag (31 at the default
0.1 s step, most of a trip's scoring time). When the lag step is a whole number of grid steps, ``lag_fit`` instead
interpolates once, on the grid extended backwards by max_lag, and reads lag L as that series shifted by L / 0.1
samples: ``lag_scan_kernel`` gets the fit's sums from running sums and one dot product per axis and lag. The shifted
points differ from ``grid - L`` by the grid's own rounding (microseconds: the grid is ``np.arange`` on epoch
seconds), so R and the coefficients agree with the per-lag interpolation to about 1e-6 relative;
``lag_fit_exact`` (any step; the reference in tests/test_lagfit.py) keeps the per-lag interpolation.

The dot products of all lags are advanced side by side, one grid sample at a time (they vectorise across lags),
and the running sums are kept only at the windows' ends (no trip-sized temporaries): the same sums in the same
order as one lag at a time, so bit for bit ``scoring.reference_batch.lag_scan_exact_reference``
(tests/test_vector_kernels.py). The alignment kernel (scoring.align) runs ``lag_scan_seq_kernel``: the same fit with
each lag's dot products as one sum in sample order, eight samples per pass (2.5x faster; bit for bit
``scoring.reference_align.lag_scan_seq_reference``, tests/test_align_fast_kernels.py), and reads both axes on the
grid with ``interp2_kernel`` (np.interp bit for bit, one walk for both).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from scoring.imukernels import np_interp_kernel

GRID_STEP_S = 0.1  # the fit's grid (scoring.align)
_DET_MIN = 1e-12  # a singular fit (an axis without signal) is skipped


@njit(cache=True, nogil=True)
def _scan_unit_shift(z1: np.ndarray, z2: np.ndarray, d: np.ndarray, L: int) -> tuple[np.ndarray, np.ndarray]:
    """``lag_scan_kernel``'s dot products for a lag step of one grid step: every lag's four partial sums side by
    side, and for each grid sample i all lags add theirs (independent additions that vectorise across lags). ``L``:
    the lags padded to a multiple of 8, ``z1``/``z2`` padded with zeros to match (the padding only fills padding).
    Each sum still adds its samples in the order of i (sample i to sum i % 4, the tail past the last whole four to
    sum 0). Returns (acc1, acc2), acc[r, kk]: sum r of the lag whose regressors start at kk."""
    g = d.shape[0]
    q4 = g - g % 4
    p_acc = np.zeros((4, L))
    r_acc = np.zeros((4, L))
    for i in range(g):
        r = i & 3 if i < q4 else 0
        di = d[i]
        za = z1[i : i + L]
        zb = z2[i : i + L]
        pa = p_acc[r]
        ra = r_acc[r]
        for kk in range(L):
            pa[kk] += za[kk] * di
            ra[kk] += zb[kk] * di
    return p_acc, r_acc


@njit(cache=True, nogil=True)
def _sum(y: np.ndarray) -> float:
    t = 0.0
    for i in range(y.shape[0]):
        t += y[i]
    return t


@njit(cache=True, nogil=True)
def _centred_sums(
    y1: np.ndarray, y2: np.ndarray, g: int, shift: int, nlag: int, pad: int, t1: float = np.nan, t2: float = np.nan
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The regressors centred on their global means, padded with ``pad`` zeros (z1, z2), and the running sums of
    a, b, aa, ab, bb of the centred series (kept free of cancellation), read only where a lag's window starts
    (kk * shift: at[0, kk]) or ends (kk * shift + g: at[1, kk]). t1 / t2: the series' sums in order where the
    caller has them."""
    m = y1.shape[0]
    mu1 = (_sum(y1) if t1 != t1 else t1) / m
    mu2 = (_sum(y2) if t2 != t2 else t2) / m
    at = np.zeros((2, nlag, 5))
    z1 = np.zeros(m + pad)
    z2 = np.zeros(m + pad)
    u1 = u2 = u11 = u12 = u22 = 0.0
    last = (nlag - 1) * shift
    for i in range(m + 1):
        if i <= last and i % shift == 0:
            q = at[0, i // shift]
            q[0], q[1], q[2], q[3], q[4] = u1, u2, u11, u12, u22
        if i >= g and i - g <= last and (i - g) % shift == 0:
            q = at[1, (i - g) // shift]
            q[0], q[1], q[2], q[3], q[4] = u1, u2, u11, u12, u22
        if i == m:
            break
        a = y1[i] - mu1
        b = y2[i] - mu2
        z1[i] = a
        z2[i] = b
        u1 = u1 + a
        u2 = u2 + b
        u11 = u11 + a * a
        u12 = u12 + a * b
        u22 = u22 + b * b
    return z1, z2, at


@njit(cache=True, nogil=True)
def _solve_lags(
    at: np.ndarray, c1s: np.ndarray, c2s: np.ndarray, g: int, sd: float, dd: float, nlag: int, out: np.ndarray
) -> None:
    """out[k] = (R, b1, b2) of lag k from the window sums ``at`` and the dot products with d (``g`` samples, sum
    ``sd``) of the regressors that start at kk = nlag - 1 - k (c1s[kk], c2s[kk])."""
    for k in range(nlag):
        kk = nlag - 1 - k
        lo = at[0, kk]
        hi = at[1, kk]
        a1 = hi[0] - lo[0]
        a2 = hi[1] - lo[1]
        m11 = (hi[2] - lo[2]) - a1 * a1 / g
        m12 = (hi[3] - lo[3]) - a1 * a2 / g
        m22 = (hi[4] - lo[4]) - a2 * a2 / g
        c1 = c1s[kk] - a1 / g * sd
        c2 = c2s[kk] - a2 / g * sd
        det = m11 * m22 - m12 * m12
        if abs(det) < _DET_MIN:
            out[k, 0] = -1.0
            out[k, 1] = 0.0
            out[k, 2] = 0.0
            continue
        b1 = (m22 * c1 - m12 * c2) / det
        b2 = (m11 * c2 - m12 * c1) / det
        q = (b1 * c1 + b2 * c2) / dd if dd > 0.0 else 0.0
        out[k, 0] = np.sqrt(q) if q > 0.0 else 0.0
        out[k, 1] = b1
        out[k, 2] = b2


@njit(cache=True, nogil=True)
def lag_scan_kernel(
    y1: np.ndarray, y2: np.ndarray, d: np.ndarray, dd: float, shift: int, nlag: int, out: np.ndarray
) -> None:
    """Least squares of ``d`` (centred, length G) on two regressors per lag k = 0..nlag-1: ``y[s : s + G]`` with
    s = (nlag - 1 - k) * shift (``y`` holds (nlag - 1) * shift samples before the grid), each centred on its window;
    ``dd`` = d . d. out[k] = (R, b1, b2), R = -1 where the 2x2 normal matrix is singular (|det| < 1e-12)."""
    g = d.shape[0]
    L = (nlag + 7) // 8 * 8
    z1, z2, at = _centred_sums(y1, y2, g, shift, nlag, L)
    # two dot products per lag, four partial sums each: sample i goes to sum i % 4, the tail past the last whole
    # four to sum 0, each sum adding its samples in the order of i. acc[r, kk]: sum r of the lag whose regressors
    # start at kk * shift (k = nlag - 1 - kk).
    q4 = g - g % 4
    if shift == 1:
        p_acc, r_acc = _scan_unit_shift(z1, z2, d, L)
    else:
        # one lag at a time, its four sums as independent chains
        p_acc = np.zeros((4, nlag))
        r_acc = np.zeros((4, nlag))
        for kk in range(nlag):
            s = kk * shift
            p0 = p1 = p2 = p3 = r0 = r1 = r2 = r3 = 0.0
            for i in range(0, q4, 4):
                j = s + i
                p0 += z1[j] * d[i]
                p1 += z1[j + 1] * d[i + 1]
                p2 += z1[j + 2] * d[i + 2]
                p3 += z1[j + 3] * d[i + 3]
                r0 += z2[j] * d[i]
                r1 += z2[j + 1] * d[i + 1]
                r2 += z2[j + 2] * d[i + 2]
                r3 += z2[j + 3] * d[i + 3]
            for i in range(q4, g):
                p0 += z1[s + i] * d[i]
                r0 += z2[s + i] * d[i]
            p_acc[0, kk], p_acc[1, kk], p_acc[2, kk], p_acc[3, kk] = p0, p1, p2, p3
            r_acc[0, kk], r_acc[1, kk], r_acc[2, kk], r_acc[3, kk] = r0, r1, r2, r3
    c1s = np.empty(nlag)
    c2s = np.empty(nlag)
    for kk in range(nlag):
        c1s[kk] = (p_acc[0, kk] + p_acc[1, kk]) + (p_acc[2, kk] + p_acc[3, kk])
        c2s[kk] = (r_acc[0, kk] + r_acc[1, kk]) + (r_acc[2, kk] + r_acc[3, kk])
    _solve_lags(at, c1s, c2s, g, _sum(d), dd, nlag, out)


@njit(cache=True, nogil=True)
def _dots_in_order(z1: np.ndarray, z2: np.ndarray, d: np.ndarray, shift: int, nlag: int) -> tuple[np.ndarray, ...]:
    """Each lag's two dot products with d as one sum each, in the order of the samples: (c1s, c2s), c[kk] = sum over
    i of z[kk * shift + i] * d[i]. For a lag step of one grid step every lag adds eight samples per pass, the lags
    side by side (independent sums that vectorise across lags, the sums kept in memory only every eighth sample);
    ``z1``/``z2`` carry at least (nlag + 7) // 8 * 8 zeros of padding past the last lag's window."""
    g = d.shape[0]
    c1 = np.zeros(nlag)
    c2 = np.zeros(nlag)
    if shift != 1:
        for kk in range(nlag):
            s = kk * shift
            p = r = 0.0
            for i in range(g):
                p += z1[s + i] * d[i]
                r += z2[s + i] * d[i]
            c1[kk] = p
            c2[kk] = r
        return c1, c2
    L = (nlag + 7) // 8 * 8
    p_acc = np.zeros(L)
    r_acc = np.zeros(L)
    g8 = g - g % 8
    for i in range(0, g8, 8):
        d0, d1, d2, d3, d4, d5, d6, d7 = d[i], d[i + 1], d[i + 2], d[i + 3], d[i + 4], d[i + 5], d[i + 6], d[i + 7]
        for kk in range(L):
            j = i + kk
            p_acc[kk] = (
                p_acc[kk] + z1[j] * d0 + z1[j + 1] * d1 + z1[j + 2] * d2 + z1[j + 3] * d3
                + z1[j + 4] * d4 + z1[j + 5] * d5 + z1[j + 6] * d6 + z1[j + 7] * d7
            )  # fmt: skip
            r_acc[kk] = (
                r_acc[kk] + z2[j] * d0 + z2[j + 1] * d1 + z2[j + 2] * d2 + z2[j + 3] * d3
                + z2[j + 4] * d4 + z2[j + 5] * d5 + z2[j + 6] * d6 + z2[j + 7] * d7
            )  # fmt: skip
    for i in range(g8, g):
        di = d[i]
        for kk in range(L):
            p_acc[kk] = p_acc[kk] + z1[i + kk] * di
            r_acc[kk] = r_acc[kk] + z2[i + kk] * di
    for kk in range(nlag):
        c1[kk] = p_acc[kk]
        c2[kk] = r_acc[kk]
    return c1, c2


@njit(cache=True, nogil=True)
def lag_scan_seq_kernel(
    y1: np.ndarray, y2: np.ndarray, d: np.ndarray, dd: float, shift: int, nlag: int, out: np.ndarray
) -> None:
    """``lag_scan_kernel`` (the same fit, arguments and output) with each lag's dot products summed as one sum in
    the order of the samples instead of four interleaved ones: 2.5x faster at the default 31 lags (the sums stay in
    registers for eight samples), equal to it to rounding (~1e-15 relative), bit for bit
    ``scoring.reference_align.lag_scan_seq_reference``. The alignment kernel's scan (scoring.align)."""
    lag_scan_seq_sums(y1, y2, np.nan, np.nan, d, _sum(d), dd, shift, nlag, out)


@njit(cache=True, nogil=True)
def lag_scan_seq_sums(
    y1: np.ndarray,
    y2: np.ndarray,
    t1: float,
    t2: float,
    d: np.ndarray,
    sd: float,
    dd: float,
    shift: int,
    nlag: int,
    out: np.ndarray,
) -> None:
    """``lag_scan_seq_kernel`` given the sums its passes would take first, each in the order of the samples: t1 /
    t2 of y1 / y2 (NaN: summed here), sd of d (the alignment kernel has them from the passes that wrote y and d).
    ``d`` need not be centred (each lag's fit centres its regressors, c = z . d - sum(z) sd / G): ``dd`` is the
    centred sum of squares, sum((d - mean d)^2)."""
    g = d.shape[0]
    L = (nlag + 7) // 8 * 8
    z1, z2, at = _centred_sums(y1, y2, g, shift, nlag, L, t1, t2)
    c1s, c2s = _dots_in_order(z1, z2, d, shift, nlag)
    _solve_lags(at, c1s, c2s, g, sd, dd, nlag, out)


@njit(cache=True, nogil=True, error_model="numpy")
def _slopes(xp: np.ndarray, f1: np.ndarray, f2: np.ndarray, two: bool) -> np.ndarray:
    """Each interval's left value and NumPy's slope, (f[j + 1] - f[j]) / (xp[j + 1] - xp[j]), of f1 (and f2) side
    by side in one row per interval: (f1, s1[, f2, s2]) (no zero-division check, so the divisions vectorise)."""
    m = xp.shape[0]
    if not two:
        one = np.empty((m - 1, 2))
        for j in range(m - 1):
            one[j, 0] = f1[j]
            one[j, 1] = (f1[j + 1] - f1[j]) / (xp[j + 1] - xp[j])
        return one
    out = np.empty((m - 1, 4))
    for j in range(m - 1):
        dx = xp[j + 1] - xp[j]
        out[j, 0] = f1[j]
        out[j, 1] = (f1[j + 1] - f1[j]) / dx
        out[j, 2] = f2[j]
        out[j, 3] = (f2[j + 1] - f2[j]) / dx
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def _walk2(
    x: np.ndarray, xp: np.ndarray, tab: np.ndarray, i0: int, o1: np.ndarray, o2: np.ndarray, t1: float, t2: float
) -> tuple[int, bool, float, float]:
    """_interp_slopes' walk for two series from point i0 up to the first point not before xp's last: (that
    point, whether a value came out NaN or the points went back, the sums t1 / t2 gone on with o1 / o2)."""
    hi = xp[xp.shape[0] - 1]
    j = 0
    bad = False
    i1 = x.shape[0]
    for i in range(i0, x.shape[0]):
        xv = x[i]
        if not xv < hi:
            i1 = i
            break
        while xp[j + 1] <= xv:
            j += 1
        xj = xp[j]
        bad |= xv < xj  # not sorted
        dx = xv - xj
        r1 = tab[j, 1] * dx + tab[j, 0]
        r2 = tab[j, 3] * dx + tab[j, 2]
        r1 = tab[j, 0] if dx == 0.0 else r1  # NumPy's value at a sample (-0.0 stays -0.0)
        r2 = tab[j, 2] if dx == 0.0 else r2
        bad |= (r1 != r1) | (r2 != r2)
        o1[i] = r1
        o2[i] = r2
        t1 += r1
        t2 += r2
    return i1, bad, t1, t2


@njit(cache=True, nogil=True, error_model="numpy")
def _walk1(
    x: np.ndarray, xp: np.ndarray, tab: np.ndarray, i0: int, o1: np.ndarray, t1: float, t2: float
) -> tuple[int, bool, float, float]:
    """_walk2 for one series: (that point, NaN / not sorted, the sums t1 / t2 gone on with o1 and its squares)."""
    hi = xp[xp.shape[0] - 1]
    j = 0
    bad = False
    i1 = x.shape[0]
    for i in range(i0, x.shape[0]):
        xv = x[i]
        if not xv < hi:
            i1 = i
            break
        while xp[j + 1] <= xv:
            j += 1
        xj = xp[j]
        bad |= xv < xj
        dx = xv - xj
        r1 = tab[j, 1] * dx + tab[j, 0]
        r1 = tab[j, 0] if dx == 0.0 else r1
        bad |= r1 != r1
        o1[i] = r1
        t1 += r1
        t2 += r1 * r1
    return i1, bad, t1, t2


@njit(cache=True, nogil=True)
def _interp_slopes(
    x: np.ndarray, xp: np.ndarray, f1: np.ndarray, f2: np.ndarray, tab: np.ndarray, two: bool, o1: np.ndarray,
    o2: np.ndarray,
) -> tuple[bool, float, float]:  # fmt: skip
    """The walk of interp_kernel / interp2_kernel for sorted ``x`` with each interval's slope precomputed (``tab``,
    _slopes: an interval's numbers in one row): (whether the caller must take NumPy's own walk instead: a value
    came out NaN, where NumPy has fallbacks, or x is not sorted; the sums of o1 / o2 in order, or of o1 and of its
    squares for one series). One comparison per point finds a point's interval."""
    m = xp.shape[0]
    nx = x.shape[0]
    i0 = 0
    while i0 < nx and x[i0] < xp[0]:
        o1[i0] = f1[0]
        o2[i0] = f2[0]
        i0 += 1
    t1 = t2 = 0.0
    for q in range(i0):
        t1 += o1[q]
        t2 += o2[q] if two else o1[q] * o1[q]
    if two:
        i1, bad, t1, t2 = _walk2(x, xp, tab, i0, o1, o2, t1, t2)
    else:
        i1, bad, t1, t2 = _walk1(x, xp, tab, i0, o1, t1, t2)
    for i in range(i1, nx):  # past the last sample (NaN or an earlier point: not sorted)
        bad |= not x[i] >= xp[m - 1]
        o1[i] = f1[m - 1]
        o2[i] = f2[m - 1]
        t1 += f1[m - 1]
        t2 += f2[m - 1] if two else f1[m - 1] * f1[m - 1]
    return bad, t1, t2


@njit(cache=True, nogil=True)
def _sum_sq(y: np.ndarray) -> float:
    t = 0.0
    for i in range(y.shape[0]):
        t += y[i] * y[i]
    return t


@njit(cache=True, nogil=True)
def interp_kernel(x: np.ndarray, xp: np.ndarray, fp: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    """``np.interp(x, xp, fp)`` bit for bit (NumPy's arithmetic, as scoring.imukernels.np_interp_kernel: the
    interval's slope times the offset from its left end, the right end's value where that is not finite) into
    ``out``, for ``xp`` increasing; returns the sum of ``out`` and of its squares, in order. Where the points are
    not much sparser than xp the slopes are divided out beforehand, side by side (a division per point is most of
    the time of a walk), and the walk takes NumPy's own only if a value comes out NaN (its fallbacks) or the
    points are not sorted."""
    m = xp.shape[0]
    if m < 2 or 2 * x.shape[0] < m:
        np_interp_kernel(x, xp, fp, out)
        return _sum(out), _sum_sq(out)
    bad, t, tt = _interp_slopes(x, xp, fp, fp, _slopes(xp, fp, fp, False), False, out, out)
    if bad:
        np_interp_kernel(x, xp, fp, out)
        t, tt = _sum(out), _sum_sq(out)
    return t, tt


@njit(cache=True, nogil=True)
def interp2_kernel(
    x: np.ndarray, xp: np.ndarray, f1: np.ndarray, f2: np.ndarray, o1: np.ndarray, o2: np.ndarray
) -> tuple[float, float]:
    """``interp_kernel`` of two series on the same points in one walk: o1 / o2, and their sums (only) in order."""
    m = xp.shape[0]
    if m < 2 or 2 * x.shape[0] < m:
        np_interp_kernel(x, xp, f1, o1)
        np_interp_kernel(x, xp, f2, o2)
        return _sum(o1), _sum(o2)
    bad, t1, t2 = _interp_slopes(x, xp, f1, f2, _slopes(xp, f1, f2, True), True, o1, o2)
    if bad:
        np_interp_kernel(x, xp, f1, o1)
        np_interp_kernel(x, xp, f2, o2)
        t1, t2 = _sum(o1), _sum(o2)
    return t1, t2


def lags_of(max_lag_s: float, step_s: float) -> np.ndarray:
    """The lags tried (s): 0, step, ... up to max_lag_s."""
    return np.arange(0.0, max_lag_s + 1e-9, step_s)


def lag_fit_exact(
    grid: np.ndarray,
    imu_t_s: np.ndarray,
    h1: np.ndarray,
    h2: np.ndarray,
    d: np.ndarray,
    dd: float,
    max_lag_s: float,
    step_s: float,
) -> tuple[float, float, np.ndarray]:
    """(best R, its lag, its coefficients) with the axes interpolated at ``grid - lag`` for every lag."""
    best_r, best_l, best_b = -1.0, 0.0, np.zeros(2)
    for lag in lags_of(max_lag_s, step_s):
        X = np.vstack([np.interp(grid - lag, imu_t_s, h1), np.interp(grid - lag, imu_t_s, h2)])
        X = X - X.mean(axis=1, keepdims=True)
        M = X @ X.T
        c = X @ d
        if abs(np.linalg.det(M)) < _DET_MIN:
            continue
        b = np.linalg.solve(M, c)
        r = float(np.sqrt(max(0.0, float(b @ c) / dd)))
        if r > best_r:
            best_r, best_l, best_b = r, float(lag), b
    return best_r, best_l, best_b


def lag_fit(
    grid: np.ndarray,
    imu_t_s: np.ndarray,
    h1: np.ndarray,
    h2: np.ndarray,
    d: np.ndarray,
    dd: float,
    max_lag_s: float,
    step_s: float,
) -> tuple[float, float, np.ndarray]:
    """(best R, its lag, its coefficients): one interpolation and ``lag_scan_kernel`` when the lag step is a whole
    number of grid steps, else ``lag_fit_exact``."""
    shift = int(round(step_s / GRID_STEP_S))
    lags = lags_of(max_lag_s, step_s)
    if shift < 1 or abs(shift * GRID_STEP_S - step_s) > 1e-9 or grid.shape[0] == 0:
        return lag_fit_exact(grid, imu_t_s, h1, h2, d, dd, max_lag_s, step_s)
    nlag = lags.shape[0]
    back = grid[0] - GRID_STEP_S * np.arange((nlag - 1) * shift, 0, -1)
    x = np.concatenate([back, grid])
    y1 = np.interp(x, imu_t_s, h1)
    y2 = np.interp(x, imu_t_s, h2)
    out = np.empty((nlag, 3))
    lag_scan_kernel(y1, y2, np.ascontiguousarray(d, dtype=np.float64), float(dd), shift, nlag, out)
    best_r, best_l, best_b = -1.0, 0.0, np.zeros(2)
    for k in range(nlag):
        if out[k, 0] > best_r:
            best_r, best_l, best_b = float(out[k, 0]), float(lags[k]), out[k, 1:].copy()
    return best_r, best_l, best_b
