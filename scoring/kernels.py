"""numba kernels for per-trip features. Tiny, fixed dtypes, cached; validated by the public functions in
``scoring.features`` and compared against ``scoring.reference`` in the tests.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from scoring.imukernels import np_interp_kernel as _interp


@njit(cache=True, nogil=True)
def trip_kernel(
    t_s: np.ndarray,
    v: np.ndarray,
    brake_thr: float,
    accel_thr: float,
    min_speed: float,
    max_gap: float,
    moving_mps: float,
) -> tuple[float, float, float, float, int, int]:
    """One pass over a trip's 1 Hz speed channel.

    Returns (distance_m, moving_s, idle_s, max_speed_mps, harsh_brakes, harsh_accels). Distance integrates speed
    by the trapezoid rule except across gaps longer than ``max_gap`` s. A harsh event is a run of consecutive
    intervals whose speed change exceeds the threshold while either end is at or above ``min_speed``; a run counts
    once (bursts merged), and a gap ends a run.
    """
    n = t_s.shape[0]
    dist = 0.0
    moving = 0.0
    idle = 0.0
    vmax = 0.0
    n_brake = 0
    n_accel = 0
    in_brake = False
    in_accel = False
    if n > 0 and v[0] > vmax:
        vmax = v[0]
    for i in range(1, n):
        if v[i] > vmax:
            vmax = v[i]
        dt = t_s[i] - t_s[i - 1]
        if dt <= 0.0 or dt > max_gap:
            in_brake = False
            in_accel = False
            continue
        v0 = v[i - 1]
        v1 = v[i]
        dist += 0.5 * (v0 + v1) * dt
        if v0 > moving_mps or v1 > moving_mps:
            moving += dt
        else:
            idle += dt
        a = (v1 - v0) / dt
        fast_enough = v0 >= min_speed or v1 >= min_speed
        if a <= -brake_thr and fast_enough:
            if not in_brake:
                n_brake += 1
            in_brake = True
        else:
            in_brake = False
        if a >= accel_thr and fast_enough:
            if not in_accel:
                n_accel += 1
            in_accel = True
        else:
            in_accel = False
    return dist, moving, idle, vmax, n_brake, n_accel


EARTH_R_M = 6_371_000.0


@njit(cache=True, nogil=True)
def clean_kernel(
    t_s: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    acc: np.ndarray,
    max_acc: float,
    max_jump_mps: float,
    max_rejects: int,
    keep: np.ndarray,
) -> tuple[int, int]:
    """Mark the GPS fixes worth scoring in ``keep`` (uint8); returns (n_invalid_or_inaccurate, n_jumps).

    A fix is invalid if a coordinate is non-finite or out of range, or exactly (0, 0) (a receiver's "no fix"), and
    inaccurate if ``acc`` is non-finite or above ``max_acc``. A valid fix whose distance (equirectangular) from the last
    kept fix implies more than ``max_jump_mps`` is a jump; after ``max_rejects`` jumps in a row the cleaner
    re-anchors on the current fix so a glitched anchor cannot reject the rest of the trip.
    """
    n = t_s.shape[0]
    bad = 0
    jumps = 0
    last = -1
    run = 0
    cos_lat = 1000.0  # latitude at which cos_val was taken (none yet)
    cos_val = 1.0
    for i in range(n):
        keep[i] = 0
        la = lat[i]
        lo = lon[i]
        a = acc[i]
        if not (la >= -90.0 and la <= 90.0 and lo >= -180.0 and lo <= 180.0) or (la == 0.0 and lo == 0.0):
            bad += 1
            continue
        if not (a <= max_acc):  # also catches NaN
            bad += 1
            continue
        if last >= 0:
            dt = t_s[i] - t_s[last]
            if abs(la - cos_lat) > 0.01:  # refresh cos(latitude) only when it moved ~1 km north-south
                cos_lat = la
                cos_val = np.cos(np.radians(la))
            dy = np.radians(la - lat[last]) * EARTH_R_M
            dx = np.radians(lo - lon[last]) * EARTH_R_M * cos_val
            d = np.sqrt(dx * dx + dy * dy)
            if dt <= 0.0 or d > max_jump_mps * dt:
                run += 1
                if run <= max_rejects:
                    jumps += 1
                    continue
        keep[i] = 1
        last = i
        run = 0
    return bad, jumps


@njit(cache=True, nogil=True)
def event_kernel(
    t_s: np.ndarray,
    a: np.ndarray,
    v: np.ndarray,
    sign: int,
    thr: float,
    min_speed: float,
    min_dur: float,
    merge_gap: float,
    max_gap: float,
    out_start: np.ndarray,
    out_end: np.ndarray,
    out_peak: np.ndarray,
) -> int:
    """Harsh events from an accelerometer channel; writes (start_s, end_s, peak) per event, returns the count.

    A sample is hot when ``sign * a`` (``|a|`` for sign 0) is at or above ``thr`` and the speed ``v`` at that
    sample is at or above ``min_speed`` (NaN speed = untrusted, never hot; NaN ``a`` is never hot). A run of hot
    samples with no IMU gap above ``max_gap`` qualifies when last - first sample time >= ``min_dur``; a qualifying
    run starting within ``merge_gap`` of the previous event's end extends it (bursts merged).
    """
    n = t_s.shape[0]
    k = 0
    in_run = False
    rs = 0.0
    re = 0.0
    pk = 0.0
    for i in range(n + 1):
        hot = False
        y = 0.0
        if i < n:
            x = a[i]
            y = x if sign > 0 else (-x if sign < 0 else abs(x))
            hot = y >= thr and v[i] >= min_speed
            if in_run and t_s[i] - t_s[i - 1] > max_gap:
                hot_continues = False
            else:
                hot_continues = hot
        else:
            hot_continues = False
        if in_run and not hot_continues:
            if re - rs >= min_dur:
                if k > 0 and rs - out_end[k - 1] <= merge_gap:
                    out_end[k - 1] = re
                    if pk > out_peak[k - 1]:
                        out_peak[k - 1] = pk
                else:
                    out_start[k] = rs
                    out_end[k] = re
                    out_peak[k] = pk
                    k += 1
            in_run = False
        if hot:
            if not in_run:
                in_run = True
                rs = t_s[i]
                pk = y
            re = t_s[i]
            if y > pk:
                pk = y
    return k


@njit(cache=True, nogil=True)
def exposure_kernel(
    t_s: np.ndarray,
    v: np.ndarray,
    off_s: np.ndarray,
    max_gap: float,
    night_a: float,
    night_b: float,
    am_a: float,
    am_b: float,
    pm_a: float,
    pm_b: float,
    moving_mps: float,
) -> tuple[float, float, float, float, float, float]:
    """Moving time and distance at night, in weekday rush hours and at weekends, in local time.

    Each interval between fixes (skipped across gaps above ``max_gap``) is placed by its midpoint; ``off_s[i-1]``
    is the UTC offset (s) at the midpoint of interval i-1..i, so a DST change is exact to the interval. Hours are
    [a, b) bands and wrap midnight when a > b. Returns (night_s, night_m, rush_s, rush_m, weekend_s, weekend_m).
    """
    n = t_s.shape[0]
    ns = nm = rs = rm = ws = wm = 0.0
    for i in range(1, n):
        dt = t_s[i] - t_s[i - 1]
        if dt <= 0.0 or dt > max_gap:
            continue
        v0 = v[i - 1]
        v1 = v[i]
        d = 0.5 * (v0 + v1) * dt
        mv = dt if (v0 > moving_mps or v1 > moving_mps) else 0.0
        loc = 0.5 * (t_s[i - 1] + t_s[i]) + off_s[i - 1]
        day = np.floor(loc / 86400.0)
        h = (loc - day * 86400.0) / 3600.0
        wd = (int(day) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        if (night_a <= h < night_b) if night_a <= night_b else (h >= night_a or h < night_b):
            ns += mv
            nm += d
        if wd >= 5:
            ws += mv
            wm += d
        elif am_a <= h < am_b or pm_a <= h < pm_b:
            rs += mv
            rm += d
    return ns, nm, rs, rm, ws, wm


@njit(cache=True, nogil=True)
def phone_kernel(
    t_s: np.ndarray, v: np.ndarray, phone: np.ndarray, max_gap: float, moving_mps: float
) -> tuple[float, float]:
    """(phone_s, reported_s): moving time with the phone handled at the interval's start, and moving time where
    the device reported the phone state at all (``phone`` < 0 = not reported)."""
    n = t_s.shape[0]
    ph = 0.0
    rep = 0.0
    for i in range(1, n):
        dt = t_s[i] - t_s[i - 1]
        if dt <= 0.0 or dt > max_gap:
            continue
        if not (v[i - 1] > moving_mps or v[i] > moving_mps):
            continue
        p = phone[i - 1]
        if p >= 0:
            rep += dt
            if p > 0:
                ph += dt
    return ph, rep


@njit(cache=True, nogil=True)
def heatmap_kernel(
    t_s: np.ndarray,
    v: np.ndarray,
    max_gap: float,
    v_step_mps: float,
    nv: int,
    a_step: float,
    na: int,
    out: np.ndarray,
    moving_mps: float,
) -> None:
    """Add each moving interval's seconds to ``out[iv * na + ia]``: iv = mean speed // v_step (last bin open),
    ia = floor(dv/dt / a_step) + na // 2 clamped to [0, na - 1] (both end bins open)."""
    n = t_s.shape[0]
    half = na // 2
    for i in range(1, n):
        dt = t_s[i] - t_s[i - 1]
        if dt <= 0.0 or dt > max_gap:
            continue
        v0 = v[i - 1]
        v1 = v[i]
        if not (v0 > moving_mps or v1 > moving_mps):
            continue
        iv = int(0.5 * (v0 + v1) / v_step_mps)
        if iv > nv - 1:
            iv = nv - 1
        ia = int(np.floor((v1 - v0) / dt / a_step)) + half
        if ia < 0:
            ia = 0
        elif ia > na - 1:
            ia = na - 1
        out[iv * na + ia] += dt


@njit(cache=True, nogil=True)
def speeding_kernel(
    t_s: np.ndarray,
    v: np.ndarray,
    limit: np.ndarray,
    margin: float,
    high: float,
    max_gap: float,
    doubling_kmh: float,
    risk_cap: float,
) -> tuple[float, float, float, float, float, float, float]:
    """Distances (m): (total, with a known limit, above the limit, above limit + margin, above ``high``, above
    ``high`` where the limit is unknown, risk-weighted distance).

    An interval takes the limit at its start (NaN = unknown: ``high`` stands in for it) and its mean speed;
    distance by the trapezoid rule. The risk-weighted distance sums d * min(risk_cap, 2 ** (excess_kmh /
    doubling_kmh) - 1) over intervals above their limit (extra relative crash risk, Kloeden et al. 1997).
    """
    n = t_s.shape[0]
    tot = known = over = over_m = hi = hi_u = risk = 0.0
    for i in range(1, n):
        dt = t_s[i] - t_s[i - 1]
        if dt <= 0.0 or dt > max_gap:
            continue
        vm = 0.5 * (v[i - 1] + v[i])
        d = vm * dt
        tot += d
        if vm > high:
            hi += d
        lim = limit[i - 1]
        if lim == lim:  # not NaN
            known += d
            if vm > lim:
                over += d
                if vm > lim + margin:
                    over_m += d
        else:
            if vm > high:
                hi_u += d
            lim = high
        if vm > lim:
            r = 2.0 ** ((vm - lim) * 3.6 / doubling_kmh) - 1.0
            risk += d * (r if r < risk_cap else risk_cap)
    return tot, known, over, over_m, hi, hi_u, risk


@njit(cache=True, nogil=True)
def window_mean_kernel(a: np.ndarray, n: int, out: np.ndarray) -> None:
    """Centred moving mean over ``n`` samples (indices i - (n - 1) // 2 .. + n - 1, clipped at the ends) of the
    finite values in each window; NaN where a window holds none (an IMU hole stays quiet).

    Each window is summed on its own, first sample to last, from 0.0 (no running sum: the means stay exactly those
    of scoring.reference.window_mean_reference). Inside the array a block of up to 256 neighbouring windows is
    summed side by side: for each place j in the window, every window of the block adds its j-th sample (NaN read
    as 0.0, which leaves a sum as it is; a sum from +0.0 is never -0.0), so the additions of different windows do
    not wait on each other and vectorise, while each window still adds its samples in order. Counts of finite
    samples are differences of one running count (whole numbers, exact)."""
    m = a.shape[0]
    h = (n - 1) // 2
    z = np.empty(m)
    cnt = np.empty(m + 1)  # running count of finite samples (whole numbers: exact in a float)
    cnt[0] = 0.0
    for j in range(m):
        x = a[j]
        fin = x == x
        z[j] = x if fin else 0.0
        cnt[j + 1] = cnt[j] + (1.0 if fin else 0.0)
    # windows i whose samples all lie inside: lo = i - h >= 0 and lo + n <= m
    i0 = h if h < m else m
    i1 = m - n + h + 1
    if i1 < i0:
        i1 = i0
    blk = 256
    s = np.empty(blk)
    b0 = i0
    while b0 < i1:
        nb = min(blk, i1 - b0)
        for q in range(nb):
            s[q] = 0.0
        base = b0 - h
        for j in range(n):
            zj = z[base + j : base + j + nb]
            for q in range(nb):
                s[q] += zj[q]
        c_hi = cnt[base + n : base + n + nb]
        c_lo = cnt[base : base + nb]
        o = out[b0 : b0 + nb]
        for q in range(nb):
            c = c_hi[q] - c_lo[q]
            r = s[q] / (c if c > 0.0 else 1.0)  # the same division as by the integer count
            o[q] = r if c > 0.0 else np.nan
        b0 += nb
    for k in range(m - (i1 - i0)):  # the windows clipped at the ends: 0 .. i0 - 1, then i1 .. m - 1
        i = k if k < i0 else k + (i1 - i0)
        lo = i - h
        hi = lo + n
        if lo < 0:
            lo = 0
        if hi > m:
            hi = m
        t = 0.0
        for j in range(lo, hi):
            t += z[j]
        c = cnt[hi] - cnt[lo]
        out[i] = t / c if c > 0.0 else np.nan


_PREFIX_MAX = 1e100  # |values| a block's prefix sums carry without overflow or swamping (an IMU is below 1e3)
PREFIX_BLOCK = 512  # windows per block: the prefix sums restart at each block, so their rounding stays local


@njit(cache=True, nogil=True)
def prefix_block(b0: int, nb: int, h: int, n: int, m: int) -> tuple[int, int, int, int]:
    """The layout of one block of windows b0 .. b0 + nb - 1 (centred windows of ``n`` samples, ``h`` = (n - 1) // 2
    before the centre, an array of ``m``) for a prefix-sum moving mean: (lo, hi), the samples the block's windows
    read, and (q0, q1), its windows that lie wholly inside the array (q0 = q1 = b0 + nb where none does).
    ``moving_mean_kernel`` and scoring.align's ``horizontal_means_kernel`` share it."""
    lo = b0 - h if b0 > h else 0
    hi = b0 + nb - 1 - h + n
    if hi > m:
        hi = m
    q0 = h if h > b0 else b0
    q1 = m - n + h + 1 if m - n + h + 1 < b0 + nb else b0 + nb
    if q1 <= q0:
        q0 = q1 = b0 + nb
    return lo, hi, q0, q1


@njit(cache=True, nogil=True)
def clipped_window(b0: int, k: int, q0: int, q1: int, h: int, n: int, m: int) -> tuple[int, int, int]:
    """The k-th window of a block (``prefix_block``) that is clipped at an end of the array: its centre i (b0 ..
    q0 - 1, then q1 .. b0 + nb - 1) and the samples it reads, [wl, wh)."""
    i = b0 + k if b0 + k < q0 else b0 + k + (q1 - q0)
    wl = i - h
    wh = wl + n
    return i, (wl if wl > 0 else 0), (wh if wh < m else m)


@njit(cache=True, nogil=True, error_model="numpy")  # no zero-division check: the divisions vectorise
def moving_mean_kernel(a: np.ndarray, n: int, out: np.ndarray) -> None:
    """``window_mean_kernel``'s means (the same centred windows of ``n`` samples clipped at the ends, finite values
    only, NaN where a window holds none) from prefix sums instead of summing each window on its own: a few
    operations per sample whatever ``n`` (the alignment's 1 s smoothing and its 3 s blend at 100 Hz are windows of
    100 and 300). Each block of 512 windows takes its own prefix sums from the first sample it reads, and a
    window's sum is the difference of two of them, so a mean differs from the window's own sum by rounding of
    the block's partial sums (~1e-15 of the block's largest |value| per sample), never from anything outside it.
    Input with a value beyond 1e100 in magnitude (infinities included) gets window_mean_kernel itself."""
    m = a.shape[0]
    for j in range(m):
        if abs(a[j]) > _PREFIX_MAX:  # NaN compares False
            window_mean_kernel(a, n, out)
            return
    h = (n - 1) // 2
    blk = PREFIX_BLOCK
    ps = np.empty(blk + n + 1)
    pc = np.empty(blk + n + 1)
    b0 = 0
    while b0 < m:
        nb = min(blk, m - b0)
        lo, hi, q0, q1 = prefix_block(b0, nb, h, n, m)
        s = 0.0
        c = 0.0
        ps[0] = 0.0
        pc[0] = 0.0
        for j in range(lo, hi):
            x = a[j]
            fin = x == x
            s += x if fin else 0.0
            c += 1.0 if fin else 0.0
            ps[j - lo + 1] = s
            pc[j - lo + 1] = c
        # windows inside the array (i - h >= 0, i - h + n <= m) read ps / pc at i - h - lo and n further on
        if q1 > q0:
            k0 = q0 - h - lo
            s_lo = ps[k0 : k0 + q1 - q0]
            s_hi = ps[k0 + n : k0 + n + q1 - q0]
            c_lo = pc[k0 : k0 + q1 - q0]
            c_hi = pc[k0 + n : k0 + n + q1 - q0]
            o = out[q0:q1]
            for q in range(q1 - q0):
                cc = c_hi[q] - c_lo[q]
                r = (s_hi[q] - s_lo[q]) / (cc if cc > 0.0 else 1.0)
                o[q] = r if cc > 0.0 else np.nan
        for k in range(nb - (q1 - q0)):  # the windows clipped at the ends
            i, wl, wh = clipped_window(b0, k, q0, q1, h, n, m)
            wl -= lo
            wh -= lo
            cc = pc[wh] - pc[wl]
            out[i] = (ps[wh] - ps[wl]) / cc if cc > 0.0 else np.nan
        b0 += nb


@njit(cache=True, nogil=True)
def speed_events_kernel(
    t_s: np.ndarray,
    v: np.ndarray,
    acc: np.ndarray,
    brake_band: float,
    accel_band: float,
    min_speed: float,
    max_acc: float,
    warmup: float,
    max_gap: float,
    repeat_min: float,
    max_plausible: float,
    out_kind: np.ndarray,
    out_start: np.ndarray,
    out_end: np.ndarray,
    out_peak: np.ndarray,
) -> tuple[int, int]:
    """Brake and acceleration events from a speed channel of any rate; returns (n_events, n_artefacts) and writes
    per event its kind (-1 brake, +1 accel), start and end time (s) and peak (m/s^2).

    1. Fixes with accuracy above ``max_acc`` give no events (NaN accuracy = not reported = kept).
    2. A fix whose speed equals the previous fix's exactly while above ``repeat_min``, and is followed by a
       different speed, is a stale repeat: dropped, so the step spreads over the real interval (a longer run of
       equal speeds, a steady cruise, keeps its other fixes: at most one extra second of spread).
    3. Segments split at gaps above ``max_gap``; each is resampled to a 1 Hz grid from ``warmup`` s after its
       first fix (linear interpolation), then median-of-3 (ends kept).
    4. a = 1 s difference. |a| above ``max_plausible`` is an artefact (counted, never an event). An interval is
       gated when either end is at or above ``min_speed``. A run of consecutive intervals with -a >= brake_band
       (a >= accel_band) is one event whose peak is the run's largest value.
    """
    n = t_s.shape[0]
    ta = np.empty(n)
    va = np.empty(n)
    na = 0
    for i in range(n):
        if acc[i] > max_acc:
            continue
        ta[na] = t_s[i]
        va[na] = v[i]
        na += 1
    tk = np.empty(na)
    vk = np.empty(na)
    m = 0
    for i in range(na):
        x = va[i]
        if i > 0 and i + 1 < na and x == va[i - 1] and x > repeat_min and va[i + 1] != x:
            continue  # the last repeat before a change: stale
        tk[m] = ta[i]
        vk[m] = x
        m += 1
    k = 0
    art = 0
    s0 = 0
    while s0 < m:
        s1 = s0 + 1
        while s1 < m and tk[s1] - tk[s1 - 1] <= max_gap:
            s1 += 1
        t0 = tk[s0] + warmup
        ng = int(np.floor(tk[s1 - 1] - t0 + 1e-9)) + 1 if tk[s1 - 1] >= t0 else 0
        if ng >= 2:
            g = np.empty(ng)
            for j in range(ng):
                g[j] = t0 + j
            vg = np.empty(ng)
            _interp(g, tk[s0:s1], vk[s0:s1], vg)
            vm = vg.copy()
            for j in range(1, ng - 1):
                p, q, r = vg[j - 1], vg[j], vg[j + 1]
                vm[j] = max(min(p, q), min(max(p, q), r))
            for kind in (-1, 1):
                band = brake_band if kind < 0 else accel_band
                in_run = False
                for j in range(ng - 1):
                    a = vm[j + 1] - vm[j]
                    bad = abs(a) > max_plausible
                    if kind < 0 and bad:
                        art += 1
                    fast = vm[j] >= min_speed or vm[j + 1] >= min_speed
                    y = kind * a
                    if fast and not bad and y >= band:
                        if not in_run:
                            out_kind[k] = kind
                            out_start[k] = g[j]
                            out_peak[k] = y
                            k += 1
                            in_run = True
                        out_end[k - 1] = g[j + 1]
                        if y > out_peak[k - 1]:
                            out_peak[k - 1] = y
                    else:
                        in_run = False
        s0 = s1
    return k, art
