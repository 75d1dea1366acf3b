"""Kernels for the accelerometer side of a trip: the steps ``measure_trip`` used to compose from NumPy calls
(interpolation, three binary searches and masks per IMU sample, cumulative sums and two searches per 1 Hz bin),
each as one pass in numba. They run the same arithmetic in the same order as the NumPy code they replace, so the
results are bit for bit the same; the NumPy versions stay as their twins in scoring/reference_imu.py and
tests/test_imukernels.py compares the two on random and edge-case input.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def np_interp_kernel(x: np.ndarray, xp: np.ndarray, fp: np.ndarray, out: np.ndarray) -> None:
    """``np.interp(x, xp, fp)`` as NumPy computes it (its C loop: the interval's slope times the offset from its
    left end, the right end's value where that is not finite); fastest for sorted ``x`` (the search walks on)."""
    m = xp.shape[0]
    if m == 1:  # NumPy's own case: fp[0] everywhere, NaN included
        for i in range(x.shape[0]):
            out[i] = fp[0]
        return
    j = 0
    for i in range(x.shape[0]):
        xv = x[i]
        if xv != xv:
            out[i] = xv
            continue
        if xv < xp[0]:
            out[i] = fp[0]
            continue
        if xv > xp[m - 1]:
            out[i] = fp[m - 1]
            continue
        while j + 1 < m and xp[j + 1] <= xv:
            j += 1
        while j > 0 and xp[j] > xv:
            j -= 1
        if j == m - 1 or xp[j] == xv:
            out[i] = fp[j]
            continue
        slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
        r = slope * (xv - xp[j]) + fp[j]
        if r != r:
            r = slope * (xv - xp[j + 1]) + fp[j + 1]
            if r != r and fp[j] == fp[j + 1]:
                r = fp[j]
        out[i] = r


@njit(cache=True, nogil=True)
def trust_speed_kernel(
    t: np.ndarray, gps_t: np.ndarray, gps_v: np.ndarray, max_gap: float, warmup: float, out: np.ndarray
) -> None:
    """GPS speed at each time of ``t`` (any order; sorted is fastest), NaN where it is not trusted: outside the GPS
    span, inside a GPS gap above ``max_gap``, and less than ``warmup`` s after the latest (re)acquisition at or
    before it (the first fix and every fix after such a gap). ``gps_t`` strictly increasing, at least one fix."""
    m = gps_t.shape[0]
    np_interp_kernel(t, gps_t, gps_v, out)
    acq = np.empty(m)  # time of the latest acquisition at or before each fix
    acq[0] = gps_t[0]
    for i in range(1, m):
        acq[i] = gps_t[i] if gps_t[i] - gps_t[i - 1] > max_gap else acq[i - 1]
    r = 0  # the last fix at or before t: gps_t[r] <= t < gps_t[r + 1]
    for i in range(t.shape[0]):
        x = t[i]
        if not (x >= gps_t[0] and x <= gps_t[m - 1]):
            if x == x:
                out[i] = np.nan
            continue  # NaN t: np.interp gives NaN already, and NumPy's masks leave it
        while r + 1 < m and gps_t[r + 1] <= x:
            r += 1
        while r > 0 and gps_t[r] > x:
            r -= 1
        # searchsorted left: j = r + 1 unless gps_t[r] == x (then j = r); inner gap when 0 < j < m
        j = r if gps_t[r] == x else r + 1
        if 0 < j < m and gps_t[j] - gps_t[j - 1] > max_gap:
            out[i] = np.nan
        elif x - acq[r] < warmup:
            out[i] = np.nan


@njit(cache=True, nogil=True)
def bin_means_kernel(ts: np.ndarray, x: np.ndarray, grid: np.ndarray, out: np.ndarray) -> None:
    """Mean of the finite ``x`` with ``ts`` in [g - 0.5, g + 0.5) for each grid time g, NaN where none; ``ts``
    sorted. As NumPy computes it: differences of one running sum over the finite samples, in sample order."""
    n = ts.shape[0]
    tk = np.empty(n)
    c = np.empty(n + 1)
    c[0] = 0.0
    k = 0
    for i in range(n):
        if np.isfinite(x[i]):
            tk[k] = ts[i]
            c[k + 1] = c[k] + x[i]
            k += 1
    _bin_diff(tk, c, k, grid, out)


@njit(cache=True, nogil=True)
def nan_to_num_kernel(a: np.ndarray, out: np.ndarray) -> None:
    """``np.nan_to_num(a)`` of a float64 array (any shape, C order): NaN -> 0.0, +inf -> the largest float,
    -inf -> the most negative one, the rest as it is."""
    big = np.finfo(np.float64).max
    x = a.ravel()
    o = out.ravel()
    for i in range(x.shape[0]):
        v = x[i]
        if v != v:
            o[i] = 0.0
        elif v == np.inf:
            o[i] = big
        elif v == -np.inf:
            o[i] = -big
        else:
            o[i] = v


_FEW = 8  # distinct differences median_step_kernel counts before it sorts them all


@njit(cache=True, nogil=True)
def median_step_kernel(t: np.ndarray) -> float:
    """``np.median(np.diff(t))`` (at least two times): the middle difference, or the mean of the two middle ones
    as NumPy takes it ((a + b) / 2; a difference is never -0.0), NaN when any difference is NaN."""
    n = t.shape[0] - 1
    # a regular clock has a handful of distinct differences (a 0.1 s step of epoch seconds is 0.1 +- a few ulps):
    # count them and take the middle from the counts; more than _FEW distinct values: np.median of them all
    vals = np.empty(_FEW)
    cnts = np.zeros(_FEW, np.int64)
    nv = 0
    for i in range(n):
        x = t[i + 1] - t[i]
        if x != x:
            return np.nan
        j = 0
        while j < nv and vals[j] != x:
            j += 1
        if j == nv:
            if nv == _FEW:
                nv = -1
                break
            vals[nv] = x
            nv += 1
        cnts[j] += 1
    if nv > 0:
        order = np.argsort(vals[:nv])
        lo_k, hi_k = (n - 1) // 2, n // 2  # the middle ranks (equal for an odd count)
        a = b = 0.0
        c = 0
        for q in order:
            if c <= lo_k < c + cnts[q]:
                a = vals[q]
            if c <= hi_k < c + cnts[q]:
                b = vals[q]
            c += cnts[q]
        return a if lo_k == hi_k else (a + b) / 2
    d = np.empty(n)
    for i in range(n):
        d[i] = t[i + 1] - t[i]
        if d[i] != d[i]:
            return np.nan
    return np.median(d)


def median_step(t: np.ndarray) -> float:
    """``float(np.median(np.diff(t)))`` for at least two times: ``median_step_kernel`` on float64 times (the IMU's,
    as measure_trip makes them), NumPy itself on anything else."""
    if t.dtype == np.float64 and t.ndim == 1:
        return float(median_step_kernel(np.ascontiguousarray(t)))
    return float(np.median(np.diff(t)))


@njit(cache=True, nogil=True, error_model="numpy")
def gradient_kernel(f: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """``np.gradient(f, x)`` of 1-D float64 arrays (at least two samples), as NumPy computes it: one spacing when
    every step of x equals the first (centred differences over twice it), else the second-order weights of the
    uneven steps in the interior; first differences at both ends. Division as NumPy's (no exception)."""
    n = f.shape[0]
    dx0 = x[1] - x[0]
    uniform = True
    for i in range(1, n - 1):
        if not (x[i + 1] - x[i] == dx0):
            uniform = False
            break
    if uniform:
        h = 2.0 * dx0
        for i in range(1, n - 1):
            out[i] = (f[i + 1] - f[i - 1]) / h
        out[0] = (f[1] - f[0]) / dx0
        out[n - 1] = (f[n - 1] - f[n - 2]) / dx0
        return
    for i in range(1, n - 1):
        dx1 = x[i] - x[i - 1]
        dx2 = x[i + 1] - x[i]
        a = -dx2 / (dx1 * (dx1 + dx2))
        b = (dx2 - dx1) / (dx1 * dx2)
        c = dx1 / (dx2 * (dx1 + dx2))
        out[i] = a * f[i - 1] + b * f[i] + c * f[i + 1]
    out[0] = (f[1] - f[0]) / dx0
    out[n - 1] = (f[n - 1] - f[n - 2]) / (x[n - 1] - x[n - 2])


def gradient(f: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``np.gradient(f, x)``: ``gradient_kernel`` for float64 arrays of equal length >= 2, NumPy for the rest."""
    if f.dtype == np.float64 and x.dtype == np.float64 and f.ndim == x.ndim == 1 and f.shape == x.shape:
        if f.shape[0] >= 2:
            out = np.empty(f.shape[0])
            gradient_kernel(np.ascontiguousarray(f), np.ascontiguousarray(x), out)
            return out
    return np.gradient(f, x)


@njit(cache=True, nogil=True)
def bin_means2_kernel(
    ts: np.ndarray, x1: np.ndarray, x2: np.ndarray, grid: np.ndarray, o1: np.ndarray, o2: np.ndarray
) -> None:
    """``bin_means_kernel`` of two series on the same sample times and grid in one pass (the channel's forward and
    lateral axes): each series' running sum over its own finite samples, as ``bin_means_kernel`` sums it (the two
    sums' additions do not wait on each other), then the same differences per grid time."""
    n = ts.shape[0]
    tk1 = np.empty(n)
    tk2 = np.empty(n)
    c1 = np.empty(n + 1)
    c2 = np.empty(n + 1)
    c1[0] = 0.0
    c2[0] = 0.0
    k1 = 0
    k2 = 0
    for i in range(n):
        if np.isfinite(x1[i]):
            tk1[k1] = ts[i]
            c1[k1 + 1] = c1[k1] + x1[i]
            k1 += 1
        if np.isfinite(x2[i]):
            tk2[k2] = ts[i]
            c2[k2 + 1] = c2[k2] + x2[i]
            k2 += 1
    _bin_diff(tk1, c1, k1, grid, o1)
    _bin_diff(tk2, c2, k2, grid, o2)


@njit(cache=True, nogil=True)
def _bin_diff(tk: np.ndarray, c: np.ndarray, k: int, grid: np.ndarray, out: np.ndarray) -> None:
    """The second half of ``bin_means_kernel`` and ``bin_means2_kernel``: per grid time g, the finite samples in
    [g - 0.5, g + 0.5) (times tk[:k], running sums c) and their mean, NaN where none (searchsorted left on the
    finite samples' times, each bound walked from its last place)."""
    lo = 0
    hi = 0
    for q in range(grid.shape[0]):
        a = grid[q] - 0.5
        b = grid[q] + 0.5
        while lo < k and tk[lo] < a:
            lo += 1
        while lo > 0 and not (tk[lo - 1] < a):
            lo -= 1
        while hi < k and tk[hi] < b:
            hi += 1
        while hi > 0 and not (tk[hi - 1] < b):
            hi -= 1
        cnt = hi - lo
        out[q] = (c[hi] - c[lo]) / cnt if cnt > 0 else np.nan


@njit(cache=True, nogil=True)
def nan_zero_rows_kernel(a: np.ndarray, z: np.ndarray, cnt: np.ndarray) -> None:
    """For a 2-D float64 array: z = a with NaN as 0.0 (infinities kept), cnt[r] = row r's non-NaN values: what
    ``np.nanmean`` builds before its sums (``nanmean_rows``)."""
    for r in range(a.shape[0]):
        c = 0
        for i in range(a.shape[1]):
            x = a[r, i]
            if x != x:
                z[r, i] = 0.0
            else:
                z[r, i] = x
                c += 1
        cnt[r] = c


def nanmean_rows(a: np.ndarray) -> np.ndarray:
    """``np.nanmean(a, axis=1)`` of a 2-D float64 array: NumPy's own sum of the NaN-zeroed rows (its pairwise
    summation) divided by the counts, as nanmean divides them, without its masks and copies (a row of NaN gives NaN
    without nanmean's warning)."""
    z = np.empty_like(a)
    cnt = np.empty(a.shape[0], np.intp)
    nan_zero_rows_kernel(np.ascontiguousarray(a), z, cnt)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.true_divide(np.add.reduce(z, axis=1), cnt)
