"""Plain-Python references for every numba kernel: slow, obvious, and the oracle in the tests."""

from __future__ import annotations


def trip_reference(
    t_s: list[float],
    v: list[float],
    brake_thr: float,
    accel_thr: float,
    min_speed: float,
    max_gap: float,
    moving_mps: float,
) -> tuple[float, float, float, float, int, int]:
    dist = moving = idle = 0.0
    vmax = max(v) if len(v) else 0.0
    vmax = max(vmax, 0.0)
    brakes = accels = 0
    prev_brake = prev_accel = False
    for i in range(1, len(t_s)):
        dt = t_s[i] - t_s[i - 1]
        if not (0.0 < dt <= max_gap):
            prev_brake = prev_accel = False
            continue
        dist += (v[i] + v[i - 1]) / 2.0 * dt
        if max(v[i], v[i - 1]) > moving_mps:
            moving += dt
        else:
            idle += dt
        a = (v[i] - v[i - 1]) / dt
        gated = max(v[i], v[i - 1]) >= min_speed
        is_brake = gated and a <= -brake_thr
        is_accel = gated and a >= accel_thr
        brakes += is_brake and not prev_brake
        accels += is_accel and not prev_accel
        prev_brake, prev_accel = is_brake, is_accel
    return dist, moving, idle, vmax, brakes, accels


# ---- references for the feature kernels: written the obvious way, with the standard library where it helps ----
import math  # noqa: E402 (the references of each kernel family stay together)
from datetime import datetime, timezone  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402


def clean_reference(t_s, lat, lon, acc, max_acc, max_jump_mps, max_rejects):
    """Returns (keep list of bools, n_bad, n_jumps). Distance: equirectangular, with cos(latitude) refreshed
    whenever the latitude moved more than 0.01 degrees (error far below what a 500 km/h test needs)."""
    keep, bad, jumps, last, run = [], 0, 0, None, 0
    cos_lat, cos_val = 1000.0, 1.0
    for i in range(len(t_s)):
        valid = (-90 <= lat[i] <= 90) and (-180 <= lon[i] <= 180) and not (lat[i] == 0 and lon[i] == 0)
        if not valid or not (acc[i] <= max_acc):
            bad += 1
            keep.append(False)
            continue
        if last is not None:
            if abs(lat[i] - cos_lat) > 0.01:
                cos_lat, cos_val = lat[i], math.cos(math.radians(lat[i]))
            dy = math.radians(lat[i] - lat[last]) * 6_371_000.0
            dx = math.radians(lon[i] - lon[last]) * 6_371_000.0 * cos_val
            d = math.sqrt(dx * dx + dy * dy)
            dt = t_s[i] - t_s[last]
            if dt <= 0 or d > max_jump_mps * dt:
                run += 1
                if run <= max_rejects:
                    jumps += 1
                    keep.append(False)
                    continue
        keep.append(True)
        last, run = i, 0
    return keep, bad, jumps


def event_reference(t_s, a, v, sign, thr, min_speed, min_dur, merge_gap, max_gap):
    """List of (start_s, end_s, peak): find runs first, then filter by duration, then merge."""

    def score(x):
        return x if sign > 0 else (-x if sign < 0 else abs(x))

    runs, cur = [], None
    for i in range(len(t_s)):
        y = score(a[i])
        hot = (not math.isnan(y)) and (not math.isnan(v[i])) and y >= thr and v[i] >= min_speed
        if cur is not None and (not hot or t_s[i] - t_s[i - 1] > max_gap):
            runs.append(cur)
            cur = None
        if hot:
            cur = [t_s[i], t_s[i], y] if cur is None else [cur[0], t_s[i], max(cur[2], y)]
    if cur is not None:
        runs.append(cur)
    events = []
    for s, e, p in runs:
        if e - s < min_dur:
            continue
        if events and s - events[-1][1] <= merge_gap:
            events[-1] = (events[-1][0], e, max(events[-1][2], p))
        else:
            events.append((s, e, p))
    return events


def _in_band(h, a, b):
    return a <= h < b if a <= b else (h >= a or h < b)


def exposure_reference(t_s, v, tz, max_gap, night, am, pm, moving_mps):
    """(night_s, night_m, rush_s, rush_m, weekend_s, weekend_m) with datetime doing the local-time work."""
    zone = ZoneInfo(tz)
    out = [0.0] * 6
    for i in range(1, len(t_s)):
        dt = t_s[i] - t_s[i - 1]
        if not (0 < dt <= max_gap):
            continue
        d = (v[i] + v[i - 1]) / 2 * dt
        mv = dt if max(v[i], v[i - 1]) > moving_mps else 0.0
        local = datetime.fromtimestamp((t_s[i] + t_s[i - 1]) / 2, timezone.utc).astimezone(zone)
        h = local.hour + local.minute / 60 + (local.second + local.microsecond / 1e6) / 3600
        if _in_band(h, *night):
            out[0] += mv
            out[1] += d
        if local.weekday() >= 5:
            out[4] += mv
            out[5] += d
        elif _in_band(h, *am) or _in_band(h, *pm):
            out[2] += mv
            out[3] += d
    return tuple(out)


def phone_reference(t_s, v, phone, max_gap, moving_mps):
    ph = rep = 0.0
    for i in range(1, len(t_s)):
        dt = t_s[i] - t_s[i - 1]
        if 0 < dt <= max_gap and max(v[i], v[i - 1]) > moving_mps and phone[i - 1] >= 0:
            rep += dt
            ph += dt if phone[i - 1] > 0 else 0.0
    return ph, rep


def heatmap_reference(t_s, v, max_gap, v_step_mps, nv, a_step, na, moving_mps):
    out = [0.0] * (nv * na)
    for i in range(1, len(t_s)):
        dt = t_s[i] - t_s[i - 1]
        if not (0 < dt <= max_gap) or max(v[i], v[i - 1]) <= moving_mps:
            continue
        iv = min(int((v[i] + v[i - 1]) / 2 / v_step_mps), nv - 1)
        ia = min(max(math.floor((v[i] - v[i - 1]) / dt / a_step) + na // 2, 0), na - 1)
        out[iv * na + ia] += dt
    return out


def speeding_reference(t_s, v, limit, margin, high, max_gap, doubling_kmh, risk_cap):
    tot = known = over = over_m = hi = hi_u = risk = 0.0
    for i in range(1, len(t_s)):
        dt = t_s[i] - t_s[i - 1]
        if not (0 < dt <= max_gap):
            continue
        vm = (v[i] + v[i - 1]) / 2
        d = vm * dt
        tot += d
        hi += d if vm > high else 0.0
        if not math.isnan(limit[i - 1]):
            known += d
            over += d if vm > limit[i - 1] else 0.0
            over_m += d if vm > limit[i - 1] + margin else 0.0
        else:
            hi_u += d if vm > high else 0.0
        lim = high if math.isnan(limit[i - 1]) else limit[i - 1]
        excess_kmh = max(0.0, vm - lim) * 3.6
        risk += d * min(risk_cap, 2 ** (excess_kmh / doubling_kmh) - 1)
    return tot, known, over, over_m, hi, hi_u, risk


def motion_reference(t_s, v, move_m, stop_s, gap_s, max_gap, warmup_s, moving_mps):
    """[(first, last, ended_by)] fix indices of motion trips over one vehicle's used fixes, from the rules in
    scoring/motion.py read literally: every window is summed afresh and nothing is ever trimmed."""
    n = len(t_s)
    trips = []
    in_trip, seg0, start = False, 0, 0

    def dist(a, b):  # distance from fix a to fix b
        return sum(
            (v[k] + v[k - 1]) / 2 * (t_s[k] - t_s[k - 1])
            for k in range(a + 1, b + 1)
            if 0 < t_s[k] - t_s[k - 1] <= max_gap
        )

    def end_at(last):
        moving = [k for k in range(start, last + 1) if v[k] > moving_mps]
        return min(moving[-1] + 1, last) if moving else last

    for i in range(n):
        if i > seg0 and t_s[i] - t_s[i - 1] >= gap_s:
            if in_trip:
                trips.append((start, end_at(i - 1), "data_gap"))
                in_trip = False
            seg0 = i
        older = [k for k in range(seg0, i + 1) if t_s[k] <= t_s[i] - stop_s]
        ref = older[-1] if older else seg0
        w = dist(ref, i)
        if not in_trip:
            if w >= move_m:
                moving = [k for k in range(ref, i + 1) if v[k] > moving_mps]
                s = (moving[0] - 1 if moving[0] > ref else ref) if moving else i
                k = s
                while k - 1 >= seg0 and t_s[s] - t_s[k - 1] <= warmup_s and t_s[k] - t_s[k - 1] <= max_gap:
                    k -= 1
                start, in_trip = k, True
        elif t_s[i] - t_s[seg0] >= stop_s and w < move_m:
            e = end_at(i)
            trips.append((start, e, "motion_stop"))
            in_trip, seg0 = False, e + 1
    if in_trip:
        trips.append((start, end_at(n - 1), "data_gap"))
    return trips


def window_mean_reference(a, n):
    """Centred moving mean of the finite values in each window of n samples (clipped at the ends), NaN if none."""
    out = []
    for i in range(len(a)):
        lo = max(0, i - (n - 1) // 2)
        w = [x for x in a[lo : i - (n - 1) // 2 + n] if not math.isnan(x)]
        out.append(sum(w) / len(w) if w else math.nan)
    return out


def _lerp(t, ts, vs):
    """Linear interpolation at t inside [ts[0], ts[-1]] (ts increasing)."""
    for j in range(1, len(ts)):
        if t <= ts[j]:
            f = (t - ts[j - 1]) / (ts[j] - ts[j - 1])
            return vs[j - 1] + f * (vs[j] - vs[j - 1])
    return vs[-1]


def speed_events_reference(
    t_s, v, acc, brake_band, accel_band, min_speed, max_acc, warmup, max_gap, repeat_min, max_plausible
):
    """([(kind, start, end, peak)], n_artefacts): the speed channel's four steps, one list at a time."""
    fixes = [(t, x) for t, x, a in zip(t_s, v, acc, strict=False) if not a > max_acc]
    kept = [
        f
        for i, f in enumerate(fixes)
        if not (0 < i < len(fixes) - 1 and f[1] == fixes[i - 1][1] and f[1] > repeat_min and fixes[i + 1][1] != f[1])
    ]
    segments, cur = [], []
    for f in kept:
        if cur and f[0] - cur[-1][0] > max_gap:
            segments.append(cur)
            cur = []
        cur.append(f)
    if cur:
        segments.append(cur)
    events, art = [], 0
    for seg in segments:
        ts, vs = [f[0] for f in seg], [f[1] for f in seg]
        grid = []
        t = ts[0] + warmup
        while t <= ts[-1] + 1e-9:
            grid.append(t)
            t = ts[0] + warmup + len(grid)
        if len(grid) < 2:
            continue
        vg = [_lerp(g, ts, vs) if len(ts) > 1 else vs[0] for g in grid]
        vm = [vg[0]] + [sorted(vg[j - 1 : j + 2])[1] for j in range(1, len(vg) - 1)] + [vg[-1]]
        acc_1s = [vm[j + 1] - vm[j] for j in range(len(vm) - 1)]
        art += sum(abs(a) > max_plausible for a in acc_1s)
        for kind, band in ((-1, brake_band), (1, accel_band)):
            run = None
            for j, a in enumerate(acc_1s):
                hot = abs(a) <= max_plausible and max(vm[j], vm[j + 1]) >= min_speed and kind * a >= band
                if hot and run is None:
                    run = [kind, grid[j], grid[j + 1], kind * a]
                elif hot:
                    run[2], run[3] = grid[j + 1], max(run[3], kind * a)
                elif run is not None:
                    events.append(tuple(run))
                    run = None
            if run is not None:
                events.append(tuple(run))
    return events, art
