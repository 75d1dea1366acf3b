"""Cut a whole file's vehicles into trips from sorted arrays, without building device messages.

``ubi score-file`` turns a vehicle's rows into the messages its device would have sent (10 fixes a message, one seq
counter, ``ubi.stages.score_file.vehicle_messages``) and feeds them to the live ``TripCutter``. For a vehicle whose
rows start with an ignition event, what the cutter does with those messages is fixed by their order, so it can be
computed from the event times and fix offsets directly:

- each ``ignition_on`` opens a trip (closing an open one as ``next_trip``), an ``ignition_off`` closes the open one
  (``ignition_off``; every message between arrived, so it is complete); fixes and events with no open trip are
  orphans and dropped, and a trip still open without an ``ignition_off`` at the end of the file is never closed;
- a trip holds the fixes from its ``ignition_on`` to the next event (fixes at an ``ignition_on``'s time follow it,
  fixes at an ``ignition_off``'s time precede it), a repeated time keeping its first fix; its IMU samples are each
  message's samples put on that message's regular grid (``imu_grid_kernel``, the same rule as
  ``score_file._regular_imu``), a later duplicate time dropped;
- ids, ``messages``, ``complete`` and the seq span as ``TripCutter._close`` gives them.

What this does not reproduce is left to the message path, per vehicle (``plan_ignition`` returns None): fixes before
the first event (the cutter cuts those by motion) and any trip longer than ``max_trip_s`` (quarantined or partly
refused by the cutter).

A vehicle with no events is cut by motion (``plan_motion``): ``motion_cut_kernel`` runs MotionTrack's rules over the
fixes the track uses, and each trip takes the messages TripCutter would hand it, clipped to its start and end.
tests/test_score_batch.py checks trip for trip, field by field, against the message path.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from scoring.motion import MotionRules
from scoring.trips import trip_id

BATCH_FIXES = 10  # fixes per synthesised message (ubi.stages.score_file.BATCH_FIXES)


class PlannedTrip(NamedTuple):
    """One trip of a vehicle: its fixes are ``[lo, hi)`` of the vehicle's sorted fixes, its messages' IMU windows
    are ``batch_lo`` (first fix of each message) and ``batch_nxt`` (each window's exclusive end, ms). A named
    tuple: made once per trip of a file, cheaper to make than a frozen dataclass (each field set through
    ``object.__setattr__``)."""

    trip_id: str
    start_ms: int
    end_ms: int
    lo: int
    hi: int
    messages: int
    complete: bool
    ended_by: str
    batch_lo: np.ndarray
    batch_nxt: np.ndarray
    seq_first: int  # the ignition_on's seq (motion: the first message's)
    seq_last: int  # the ignition_off's, or the last message's (the ignition_on's when there is none)
    clip_imu: bool = False  # motion trips hold only the IMU samples within [start_ms, end_ms]


_NO_BATCHES = np.zeros(0, np.int64)
_NO_BATCHES.flags.writeable = False


def _n_batches(k: int) -> int:
    return -(-k // BATCH_FIXES)


def plan_ignition(
    vehicle: str, t: np.ndarray, ev_t: np.ndarray, ev_on: np.ndarray, max_trip_ms: int, batches: bool = True
) -> list[PlannedTrip] | None:
    """The trips TripCutter closes for a vehicle whose messages score-file synthesises from ``t`` (fix times, ms,
    sorted) and events (``ev_t`` ms, ``ev_on`` True for ignition_on), or None where only the message path is exact
    (fixes before the first event, a trip longer than ``max_trip_ms``). ``batches=False`` (a vehicle without IMU
    samples, whose trips' messages ``trip_imu`` never reads) leaves each trip's ``batch_lo``/``batch_nxt`` empty:
    two arrays a trip fewer to build."""
    order = np.lexsort((~ev_on, ev_t))  # by time, an ignition_on before an ignition_off at the same time
    ev_t, ev_on = ev_t[order], ev_on[order]
    stops = np.where(ev_on, np.searchsorted(t, ev_t, side="left"), np.searchsorted(t, ev_t, side="right"))
    if len(ev_t) == 0 or stops[0] > 0:
        return None
    # seq of each event: every block of fixes before it is sent as ceil(k / 10) messages
    blocks = np.diff(np.concatenate([[0], stops]))
    nb = -(-blocks // BATCH_FIXES)
    ev_seq = np.cumsum(nb) + np.arange(len(ev_t))
    ev_t_l, ev_on_l, stops_l, seq_l = ev_t.tolist(), ev_on.tolist(), stops.tolist(), ev_seq.tolist()
    trips: list[PlannedTrip] = []
    open_k = -1  # index of the open trip's ignition_on
    prev_start: int | None = None
    for k in range(len(ev_t_l)):
        if ev_on_l[k]:
            if open_k >= 0:
                trip = _close(vehicle, t, open_k, k, False, ev_t_l, stops_l, seq_l, prev_start, max_trip_ms, batches)
                if trip is None:
                    return None
                trips.append(trip)
                prev_start = ev_t_l[open_k]
            open_k = k
        elif open_k >= 0:
            trip = _close(vehicle, t, open_k, k, True, ev_t_l, stops_l, seq_l, prev_start, max_trip_ms, batches)
            if trip is None:
                return None
            trips.append(trip)
            prev_start = ev_t_l[open_k]
            open_k = -1
    return trips  # a trip still open here is never closed (TripCutter.finish closes only those with ignition_off)


def _close(
    vehicle: str,
    t: np.ndarray,
    on: int,
    nxt: int,
    by_off: bool,
    ev_t: list[int],
    stops: list[int],
    seqs: list[int],
    prev_start: int | None,
    max_trip_ms: int,
    batches: bool = True,
) -> PlannedTrip | None:
    on_ms = ev_t[on]
    if ev_t[nxt] - on_ms > max_trip_ms:
        return None  # quarantined whole, or messages outside its window refused: the message path says which
    lo, hi = stops[on], stops[nxt]
    end_ms = ev_t[nxt] if by_off else (int(t[hi - 1]) if hi > lo else on_ms)
    n = _n_batches(hi - lo)
    batch_lo = lo + BATCH_FIXES * np.arange(n, dtype=np.int64) if batches else _NO_BATCHES
    batch_nxt = np.empty(n, np.int64) if batches else _NO_BATCHES
    if n and batches:
        batch_nxt[:-1] = t[batch_lo[1:]]
        batch_nxt[-1] = ev_t[nxt] + 1 if by_off else ev_t[nxt]
    tid = trip_id(vehicle, on_ms, seqs[on] if prev_start is not None and on_ms <= prev_start else None)
    ended = "ignition_off" if by_off else "next_trip"
    last = seqs[nxt] if by_off else seqs[on] + n
    return PlannedTrip(tid, on_ms, end_ms, lo, hi, n + 1 + by_off, by_off, ended, batch_lo, batch_nxt, seqs[on], last)


@njit(cache=True, nogil=True)
def motion_cut_kernel(
    t_ms: np.ndarray,
    v: np.ndarray,
    move_m: float,
    stop_s: float,
    gap_s: float,
    max_gap_s: float,
    warmup_s: float,
    moving_mps: float,
    out: np.ndarray,
) -> int:
    """``scoring.motion.MotionTrack`` over a vehicle's whole series of used fixes (accurate, each later than the
    one before), from a parked start to the end of the data: writes (start, end, ended_by: 0 motion_stop,
    1 data_gap) per trip, as fix indices, to ``out`` and returns the count. The track's rules one for one; what it
    forgets while parked (its trimming) never reaches a decision (the warm-up walk-back stops before it)."""
    n = t_ms.shape[0]
    d = np.zeros(n)
    k = 0
    first = 0  # first fix the track still holds since its last reset (it holds none when first == i)
    seg0 = 0
    seg0_t = 0.0
    j = 0
    in_trip = False
    start = 0
    last_moving = -1
    for i in range(n):
        ts = t_ms[i] / 1000.0
        if first < i and i > seg0 and ts - t_ms[i - 1] / 1000.0 >= gap_s:
            if in_trip:
                out[k, 0] = start
                out[k, 1] = min(last_moving + 1, i - 1) if last_moving >= start else i - 1
                out[k, 2] = 1
                k += 1
                in_trip = False
            first = i
            seg0 = i
            j = i
        if first < i:
            dt = ts - t_ms[i - 1] / 1000.0
            d[i] = d[i - 1] + (0.5 * (v[i - 1] + v[i]) * dt if 0.0 < dt <= max_gap_s else 0.0)
        else:
            d[i] = 0.0
        if i == seg0:
            seg0_t = ts
        lim = ts - stop_s
        while j + 1 <= i and t_ms[j + 1] / 1000.0 <= lim:
            j += 1
        ref = j if t_ms[j] / 1000.0 <= lim else seg0
        wdist = d[i] - d[ref]
        if v[i] > moving_mps:
            last_moving = i
        if not in_trip:
            if wdist >= move_m:
                m = ref
                while m <= i and v[m] <= moving_mps:
                    m += 1
                s = i if m > i else (m - 1 if m > ref else ref)
                q = s
                while (
                    q - 1 >= seg0
                    and t_ms[s] / 1000.0 - t_ms[q - 1] / 1000.0 <= warmup_s
                    and t_ms[q] / 1000.0 - t_ms[q - 1] / 1000.0 <= max_gap_s
                ):
                    q -= 1
                start = q
                in_trip = True
        elif ts - seg0_t >= stop_s and wdist < move_m:
            end = min(last_moving + 1, i) if last_moving >= start else i
            out[k, 0] = start
            out[k, 1] = end
            out[k, 2] = 0
            k += 1
            in_trip = False
            g = end + 1
            first = g if g <= i + 1 else i + 1
            seg0 = g
            j = g
            if g <= i:
                seg0_t = t_ms[g] / 1000.0
    if in_trip and first < n:
        out[k, 0] = start
        out[k, 1] = min(last_moving + 1, n - 1) if last_moving >= start else n - 1
        out[k, 2] = 1
        k += 1
    return k


@njit(cache=True, nogil=True)
def motion_used_kernel(
    t: np.ndarray, acc: np.ndarray, max_acc: float, ui: np.ndarray, lo_fix: np.ndarray, hi_fix: np.ndarray
) -> int:
    """The fixes MotionTrack uses (accuracy <= max_acc and later than every accurate fix before): their indices into
    ``ui`` (the count returned); for each message b (fixes ``[10 b, 10 b + 10)``) the used fixes before it
    (``lo_fix[b]``: its first used fix's index among them) and up to its end, less one (``hi_fix[b]``: its last
    used fix's, lo_fix[b] - 1 when none)."""
    last = np.iinfo(np.int64).min
    cnt = 0
    n = t.shape[0]
    for i in range(n):
        if i % BATCH_FIXES == 0:
            lo_fix[i // BATCH_FIXES] = cnt
        if acc[i] <= max_acc:
            if t[i] > last:
                ui[cnt] = i
                cnt += 1
                last = t[i]
        if i % BATCH_FIXES == BATCH_FIXES - 1 or i == n - 1:
            hi_fix[i // BATCH_FIXES] = cnt - 1
    return cnt


def plan_motion(
    vehicle: str, t: np.ndarray, speed: np.ndarray, acc: np.ndarray, rules: MotionRules, batches: bool = True
) -> list[PlannedTrip]:
    """The trips TripCutter cuts by motion from a vehicle's messages as score-file synthesises them (no events;
    ``t`` sorted, every fix; ``acc`` with a missing accuracy as 0): the track's decisions on the fixes it uses, and
    each trip's messages (those holding a used fix from its start to its end, or placed between) clipped to
    [start, end], as ``TripCutter._close_motion`` takes them. The trips' spans are found for all of them at once;
    ``batches=False`` leaves their messages' IMU windows empty (as ``plan_ignition``)."""
    n = t.shape[0]
    nb = _n_batches(n)
    ui, lo_fix, hi_fix = np.empty(n, np.int64), np.empty(nb, np.int64), np.empty(nb, np.int64)
    t, acc = np.ascontiguousarray(t, np.int64), np.ascontiguousarray(acc, np.float64)
    ui = ui[: motion_used_kernel(t, acc, float(rules.max_accuracy_m), ui, lo_fix, hi_fix)]
    out = np.empty((ui.shape[0] + 1, 3), np.int64)
    k = motion_cut_kernel(
        t[ui],
        np.ascontiguousarray(speed[ui], dtype=np.float64),
        rules.move_m,
        rules.stop_s,
        rules.gap_s,
        rules.max_gap_s,
        rules.warmup_s,
        rules.moving_mps,
        out,
    )
    b0 = BATCH_FIXES * np.arange(nb)
    s, e = out[:k, 0], out[:k, 1]
    start_ms, end_ms = t[ui[s]], t[ui[e]]
    m0 = np.searchsorted(hi_fix, s, side="left")  # first message with hi_fix >= start
    m1 = np.searchsorted(lo_fix, e, side="right") - 1  # last message with lo_fix <= end
    lo = np.maximum(BATCH_FIXES * m0, np.searchsorted(t, start_ms, side="left"))
    hi = np.minimum(np.minimum(BATCH_FIXES * (m1 + 1), n), np.searchsorted(t, end_ms, side="right"))
    trips = []
    cols = (start_ms, end_ms, lo, hi, out[:k, 2], m0, m1)
    spans = zip(*(c.tolist() for c in cols), strict=True)
    for t0, t1, a, b, by, f, g in spans:
        batch_lo = batch_nxt = _NO_BATCHES
        if batches:
            batch_lo = b0[f : g + 1].astype(np.int64)
            nxt_i = batch_lo + BATCH_FIXES
            batch_nxt = np.where(nxt_i < n, t[np.minimum(nxt_i, n - 1)], np.iinfo(np.int64).max).astype(np.int64)
        by_gap = "data_gap" if by else "motion_stop"
        trips.append(
            PlannedTrip(trip_id(vehicle, t0), t0, t1, a, b, g - f + 1, True, by_gap, batch_lo, batch_nxt, f, g, True)
        )
    return trips


def vehicle_imu_hz(it: np.ndarray) -> int:
    """The rate score-file puts a vehicle's IMU samples on (median interval; 10 Hz with fewer than two samples)."""
    if it.shape[0] < 2:
        return 10
    a, b = median_diff_int_kernel(it) if it.dtype == np.int64 else (0, -1)
    if a <= b:  # the counting median of the intervals in one pass (median_int's, without the diff array)
        return int(round(1000.0 / (float(a) if a == b else (float(a) + float(b)) / 2)))
    return int(round(1000.0 / median_int(np.diff(it))))


@njit(cache=True, nogil=True)
def median_diff_int_kernel(t: np.ndarray) -> tuple[int, int]:
    """``median_int(np.diff(t))``'s two middle intervals (a, b) of int64 times (at least two), by counting the
    intervals from the smallest up to 65,536 above it; (0, -1) when the median lies beyond (median_int then
    asks np.median)."""
    n = t.shape[0] - 1
    lo = t[1] - t[0]
    hi = lo
    for i in range(1, n):
        d = t[i + 1] - t[i]
        if d < lo:
            lo = d
        if d > hi:
            hi = d
    top = min(hi, lo + 65_536)
    c = np.zeros(top - lo + 2, np.int64)
    for i in range(n):
        d = t[i + 1] - t[i]
        c[(d if d <= top else top + 1) - lo] += 1
    ka = (n - 1) // 2
    kb = n // 2
    a = -1
    cum = 0
    for j in range(c.shape[0]):
        cum += c[j]
        if a < 0 and cum > ka:
            a = j
        if cum > kb:
            if lo + j > top:
                return 0, -1
            return lo + a, lo + j
    return 0, -1


def median_int(x: np.ndarray) -> float:
    """``np.median`` of integers (ms intervals: few distinct values) by counting, not partitioning; the same value
    (the middle one, or the mean of the two middle ones)."""
    if x.shape[0] == 0:
        return float(np.median(x))
    lo = int(x.min())
    top = min(int(x.max()), lo + 65_536)  # values above (the gaps between trips) only count, in one bin past it
    c = np.cumsum(np.bincount(np.minimum(x, top + 1) - lo))
    n = x.shape[0]
    a = lo + int(np.searchsorted(c, (n - 1) // 2, side="right"))
    b = lo + int(np.searchsorted(c, n // 2, side="right"))
    if b > top:
        return float(np.median(x))
    return float(np.mean(np.array([a, b], dtype=np.int64))) if a != b else float(a)


@njit(cache=True, nogil=True)
def _put_nearest(
    it: np.ndarray,
    lo: int,
    hi: int,
    j: int,
    g: int,
    half: float,
    a0: np.ndarray,
    a1: np.ndarray,
    a2: np.ndarray,
    w: int,
    out_t: np.ndarray,
    o0: np.ndarray,
    o1: np.ndarray,
    o2: np.ndarray,
) -> int:
    """Grid point ``g`` into row ``w``: the axes of the nearest of it[lo:hi] (the earlier one on a tie) when it lies
    within ``half`` a period, else NaN. ``j`` is the scan's position in ``it`` (grid points come in order); the
    advanced position is returned. Shared by both grid kernels."""
    n = hi - lo
    if n > 1:
        while j < hi and it[j] < g:
            j += 1
        jj = j - lo
        if jj < 1:
            jj = 1
        elif jj > n - 1:
            jj = n - 1
        if abs(it[lo + jj - 1] - g) <= abs(it[lo + jj] - g):
            jj -= 1
    else:
        jj = 0
    s = lo + jj
    out_t[w] = g
    if abs(it[s] - g) <= half:
        o0[w] = a0[s]
        o1[w] = a1[s]
        o2[w] = a2[s]
    else:
        o0[w] = np.nan
        o1[w] = np.nan
        o2[w] = np.nan
    return j


@njit(cache=True, nogil=True)
def imu_grid_kernel(
    it: np.ndarray,
    a0: np.ndarray,
    a1: np.ndarray,
    a2: np.ndarray,
    hz: int,
    fix_t: np.ndarray,
    batch_lo: np.ndarray,
    batch_nxt: np.ndarray,
    out_t: np.ndarray,
    o0: np.ndarray,
    o1: np.ndarray,
    o2: np.ndarray,
) -> int:
    """Each message's IMU samples (``it`` in [fix_t[batch_lo[b]], batch_nxt[b]), sorted) on its regular grid
    t0 + round(k * 1000 / hz) from its first sample to its last; a grid point takes the nearest sample (the earlier
    one on a tie) when it lies within half a period, else NaN. Writes the messages' grids one after the other from
    index 0 (pass ``out_t`` of length 0 to only count) and returns how many points they hold."""
    step = 1000.0 / hz
    half = 500.0 / hz
    w = 0
    count_only = out_t.shape[0] == 0
    for b in range(batch_lo.shape[0]):
        t_first = fix_t[batch_lo[b]]
        lo = np.searchsorted(it, t_first)
        hi = np.searchsorted(it, batch_nxt[b])
        if hi <= lo:
            continue
        t0 = it[lo]
        k = int(np.floor((it[hi - 1] - t0) * hz / 1000.0)) + 1
        if count_only:
            w += k
            continue
        j = lo
        for q in range(k):
            j = _put_nearest(it, lo, hi, j, t0 + np.int64(np.rint(q * step)), half, a0, a1, a2, w, out_t, o0, o1, o2)
            w += 1
    return w


@njit(cache=True, nogil=True)
def imu_grid_clip_kernel(
    it: np.ndarray,
    a0: np.ndarray,
    a1: np.ndarray,
    a2: np.ndarray,
    hz: int,
    fix_t: np.ndarray,
    batch_lo: np.ndarray,
    batch_nxt: np.ndarray,
    cmin: np.ndarray,
    cmax: np.ndarray,
    count: np.ndarray,
    out_t: np.ndarray,
    o0: np.ndarray,
    o1: np.ndarray,
    o2: np.ndarray,
) -> int:
    """``imu_grid_kernel``'s grids without the points of message b outside [cmin[b], cmax[b]] (ms; a motion trip
    keeps only its IMU within its start and end, and a message's grid can span hours of parking): the same points,
    values and order for the rest, those outside never made. With ``out_t`` of length 0 it counts, each message's
    kept points into ``count[b]``; either way it returns the total."""
    step = 1000.0 / hz
    half = 500.0 / hz
    w = 0
    count_only = out_t.shape[0] == 0
    for b in range(batch_lo.shape[0]):
        if count_only:
            count[b] = 0
        lo = np.searchsorted(it, fix_t[batch_lo[b]])
        hi = np.searchsorted(it, batch_nxt[b])
        if hi <= lo:
            continue
        t0 = it[lo]
        k = int(np.floor((it[hi - 1] - t0) * hz / 1000.0)) + 1
        whole = cmin[b] <= t0 and cmax[b] >= it[hi - 1]  # every grid point kept (the last one is <= it[hi - 1])
        if count_only and whole:
            count[b] = k
            w += k
            continue
        q0 = 0
        if cmin[b] > t0:  # the points before q0 lie before cmin: rint(q step) <= q step + 0.5
            q0 = min(max(int(np.floor((cmin[b] - t0 - 1.0) / step)), 0), k)
        j = lo
        c = 0
        for q in range(q0, k):
            g = t0 + np.int64(np.rint(q * step))
            if g < cmin[b]:
                continue
            if g > cmax[b]:
                break
            c += 1
            if count_only:
                continue
            while j < hi and it[j] < g:
                j += 1
            if j < hi and it[j] == g and (j == lo or it[j - 1] != g):
                # a sample exactly on the grid (a regular device): the nearest, as _put_nearest would find it
                out_t[w] = g
                o0[w] = a0[j]
                o1[w] = a1[j]
                o2[w] = a2[j]
            else:
                j = _put_nearest(it, lo, hi, j, g, half, a0, a1, a2, w, out_t, o0, o1, o2)
            w += 1
        if count_only:
            count[b] = c
            w += c
    return w


def trip_imu(
    it: np.ndarray,
    acc: tuple[np.ndarray, np.ndarray, np.ndarray],
    hz: int,
    fix_t: np.ndarray,
    trip: PlannedTrip,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A planned trip's IMU (t_ms, lon, lat, vert): its messages' grids in order, sorted and a repeated time kept
    once (its first), as ``scoring.trips._concat_imu`` does."""
    empty = np.zeros(0, np.int64)
    z = np.zeros(0)
    if it.shape[0] == 0 or trip.batch_lo.shape[0] == 0:
        return empty, z, z, z
    k = imu_grid_kernel(it, *acc, hz, fix_t, trip.batch_lo, trip.batch_nxt, empty, z, z, z)
    out_t = np.empty(k, np.int64)
    o = [np.empty(k) for _ in range(3)]
    imu_grid_kernel(it, *acc, hz, fix_t, trip.batch_lo, trip.batch_nxt, out_t, *o)
    if k > 1 and not (out_t[1:] > out_t[:-1]).all():
        order = np.argsort(out_t, kind="stable")
        out_t = out_t[order]
        keep = np.concatenate([[True], np.diff(out_t) > 0])
        return out_t[keep], o[0][order][keep], o[1][order][keep], o[2][order][keep]
    return out_t, o[0], o[1], o[2]


def vehicle_trips_imu(
    it: np.ndarray,
    acc: tuple[np.ndarray, np.ndarray, np.ndarray],
    hz: int,
    fix_t: np.ndarray,
    plan: list[PlannedTrip],
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """``trip_imu`` of each planned trip of a vehicle, a motion trip's (``clip_imu``) kept within its start and end
    as score-file keeps it: all their messages' grids in one ``imu_grid_clip_kernel`` call (a count pass first),
    each trip's IMU a slice of its output (the kernel writes the messages one after the other), a motion trip's
    points outside its start and end never made; a trip whose grid times do not increase is sorted as
    ``trip_imu`` sorts it (sorting and keeping a time range commute)."""
    n = it.shape[0]
    if n == 0 or not plan:
        return [_clip(trip_imu(it, acc, hz, fix_t, p), p) for p in plan]
    blo = np.concatenate([p.batch_lo for p in plan]).astype(np.int64, copy=False)
    bnx = np.concatenate([p.batch_nxt for p in plan]).astype(np.int64, copy=False)
    boff = np.zeros(len(plan) + 1, np.int64)
    np.cumsum([p.batch_lo.shape[0] for p in plan], out=boff[1:])
    big = np.iinfo(np.int64)
    nb = np.diff(boff)
    cmin = np.repeat(np.array([p.start_ms if p.clip_imu else big.min for p in plan], np.int64), nb)
    cmax = np.repeat(np.array([p.end_ms if p.clip_imu else big.max for p in plan], np.int64), nb)
    k = np.zeros(blo.shape[0], np.int64)
    e, z = np.zeros(0, np.int64), np.zeros(0)
    imu_grid_clip_kernel(it, *acc, hz, fix_t, blo, bnx, cmin, cmax, k, e, z, z, z)  # each message's count
    moff = np.zeros(k.shape[0] + 1, np.int64)
    np.cumsum(k, out=moff[1:])
    total = int(moff[-1])
    out_t = np.empty(total, np.int64)
    o = [np.empty(total) for _ in range(3)]
    if imu_grid_clip_kernel(it, *acc, hz, fix_t, blo, bnx, cmin, cmax, k, out_t, *o) != total:
        raise AssertionError("vehicle_trips_imu: the grids' count differs from the count pass's")
    toff = moff[boff].tolist()
    bad = np.flatnonzero(out_t[1:] <= out_t[:-1])  # steps that do not increase (i: between i and i + 1)
    res = []
    for j, p in enumerate(plan):
        a, b = toff[j], toff[j + 1]
        if bad.shape[0] and np.searchsorted(bad, b - 1) > np.searchsorted(bad, a):
            t, x0, x1, x2 = out_t[a:b], o[0][a:b], o[1][a:b], o[2][a:b]
            order = np.argsort(t, kind="stable")
            t = t[order]
            keep = np.concatenate([[True], np.diff(t) > 0])
            res.append(_clip((t[keep], x0[order][keep], x1[order][keep], x2[order][keep]), p))
        else:
            res.append(_clip((out_t[a:b], o[0][a:b], o[1][a:b], o[2][a:b]), p))
    return res


def _clip(
    imu: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], p: PlannedTrip
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A motion trip's IMU within [start_ms, end_ms] (the times are sorted: one slice)."""
    t = imu[0]
    if not p.clip_imu or not t.shape[0]:
        return imu
    a, b = int(np.searchsorted(t, p.start_ms, "left")), int(np.searchsorted(t, p.end_ms, "right"))
    return t[a:b], imu[1][a:b], imu[2][a:b], imu[3][a:b]
