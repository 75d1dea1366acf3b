"""Plain-Python twin of scoring.gapfill.gap_fill_kernel."""

from __future__ import annotations

import bisect


def gap_fill_reference(t_s, v, it_s, a, min_gap_s, max_fill_s):
    dist = secs = 0.0
    filled = 0
    for i in range(1, len(t_s)):
        t0, t1 = t_s[i - 1], t_s[i]
        if not (min_gap_s < t1 - t0 <= max_fill_s):
            continue
        j0 = bisect.bisect_left(it_s, t0)
        j1 = bisect.bisect_right(it_s, t1)
        if j1 - j0 < 2 or it_s[j0] - t0 > 1.0 or t1 - it_s[j1 - 1] > 1.0:
            continue
        if any(it_s[k] - it_s[k - 1] > 1.0 for k in range(j0 + 1, j1)):
            continue
        ts = it_s[j0:j1]
        speeds = [v[i - 1]]
        for k in range(1, len(ts)):
            speeds.append(speeds[-1] + a[j0 + k - 1] * (ts[k] - ts[k - 1]))
        err = speeds[-1] - v[i]
        span = ts[-1] - ts[0]
        corrected = [
            max(0.0, s - err * ((tk - ts[0]) / span if span > 0 else 0.0)) for s, tk in zip(speeds, ts, strict=False)
        ]
        d = sum((corrected[k] + corrected[k - 1]) / 2 * (ts[k] - ts[k - 1]) for k in range(1, len(ts)))
        d += v[i - 1] * (ts[0] - t0) + v[i] * (t1 - ts[-1])
        dist += d
        secs += t1 - t0
        filled += 1
    return dist, secs, filled
