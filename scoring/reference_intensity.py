"""Plain-Python references of the scoring/intensity.py kernels: slow, obvious, the oracle in tests/test_intensity.py."""

from __future__ import annotations

import math


def intensity_reference(t, v, alon, alat, moving_mps, brake_lv, accel_lv, lat_lv, jerk_lv, hi_speed, hi_acc):
    """Returns (moving_s, lat_moving_s, jerk_n, jerk_sq_sum, jerk_over_n, hi_s, hi_acc_s, pos_work, dist,
    brake_s list, accel_s list, lat_s list); a sample is one second."""
    moving = [v[i] > moving_mps and not math.isnan(alon[i]) for i in range(len(t))]
    idx = [i for i in range(len(t)) if moving[i]]
    brake_s = [float(sum(1 for i in idx if alon[i] <= -lv)) for lv in brake_lv]
    accel_s = [float(sum(1 for i in idx if alon[i] >= lv)) for lv in accel_lv]
    with_lat = [i for i in idx if not math.isnan(alat[i])]
    lat_s = [float(sum(1 for i in with_lat if abs(alat[i]) >= lv)) for lv in lat_lv]
    jerks = [alon[i] - alon[i - 1] for i in idx if i > 0 and moving[i - 1] and abs(t[i] - t[i - 1] - 1.0) < 1e-6]
    fast = [i for i in idx if v[i] >= hi_speed]
    return (
        float(len(idx)),
        float(len(with_lat)),
        float(len(jerks)),
        sum(j * j for j in jerks),
        float(sum(1 for j in jerks if abs(j) >= jerk_lv)),
        float(len(fast)),
        float(sum(1 for i in fast if abs(alon[i]) >= hi_acc)),
        sum(v[i] * alon[i] for i in idx if alon[i] > 0),
        sum(v[i] for i in idx),
        brake_s,
        accel_s,
        lat_s,
    )


def speeding_bands_reference(t_s, v, limit, high, max_gap, edges):
    """(total distance, [distance per band]): each interval's excess over the limit at its start, by band."""
    out = [0.0] * len(edges)
    tot = 0.0
    for i in range(1, len(t_s)):
        dt = t_s[i] - t_s[i - 1]
        if not 0 < dt <= max_gap:
            continue
        vm = (v[i - 1] + v[i]) / 2
        tot += vm * dt
        lim = high if math.isnan(limit[i - 1]) else limit[i - 1]
        x = vm - lim
        if x > 0:
            band = max(k for k in range(len(edges)) if x >= edges[k])
            out[band] += vm * dt
    return tot, out


def longest_drive_reference(t_s, v, moving_mps, break_s):
    """Split the moving fixes wherever two consecutive ones are break_s or more apart; the longest span."""
    times = [t_s[i] for i in range(len(t_s)) if v[i] > moving_mps]
    if not times:
        return 0.0
    spans, first = [], times[0]
    for a, b in zip(times, times[1:], strict=False):
        if b - a >= break_s:
            spans.append(a - first)
            first = b
    spans.append(times[-1] - first)
    return max(spans)


def cruise_reference(t, v, alat, win, min_speed, max_mean_lat):
    """(n_windows, sum of speed CVs, n_straight, sum of lateral stds) over runs of consecutive fast 1 s samples,
    each run cut into whole windows from its start."""
    runs, cur = [], []
    for i in range(len(t)):
        contiguous = bool(cur) and abs(t[i] - t[cur[-1]] - 1.0) <= 1e-6
        if not contiguous and cur:
            runs.append(cur)
            cur = []
        if v[i] >= min_speed:
            cur.append(i)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    nw = cv = ns = ls = 0.0
    for run in runs:
        for w in range(len(run) // win):
            ix = run[w * win : (w + 1) * win]
            sp = [v[i] for i in ix]
            m = sum(sp) / win
            nw += 1
            cv += math.sqrt(sum((x - m) ** 2 for x in sp) / win) / m
            la = [alat[i] for i in ix]
            if any(math.isnan(x) for x in la):
                continue
            ml = sum(la) / win
            if abs(ml) <= max_mean_lat:
                ns += 1
                ls += math.sqrt(sum((x - ml) ** 2 for x in la) / win)
    return nw, cv, ns, ls
