"""Cut a whole file's ignition vehicles into trips from sorted arrays, without building device messages.

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
refused by the cutter). tests/test_score_batch.py checks trip for trip against the message path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from scoring.trips import trip_id

BATCH_FIXES = 10  # fixes per synthesised message (ubi.stages.score_file.BATCH_FIXES)


@dataclass(frozen=True)
class PlannedTrip:
    """One trip of a vehicle: its fixes are ``[lo, hi)`` of the vehicle's sorted fixes, its messages' IMU windows
    are ``batch_lo`` (first fix of each message) and ``batch_nxt`` (each window's exclusive end, ms)."""

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
    seq_first: int  # the ignition_on's seq
    seq_last: int  # the ignition_off's, or the last message's (the ignition_on's when there is none)


def _n_batches(k: int) -> int:
    return -(-k // BATCH_FIXES)


def plan_ignition(
    vehicle: str, t: np.ndarray, ev_t: np.ndarray, ev_on: np.ndarray, max_trip_ms: int
) -> list[PlannedTrip] | None:
    """The trips TripCutter closes for a vehicle whose messages score-file synthesises from ``t`` (fix times, ms,
    sorted) and events (``ev_t`` ms, ``ev_on`` True for ignition_on), or None where only the message path is exact
    (fixes before the first event, a trip longer than ``max_trip_ms``)."""
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
                trip = _close(vehicle, t, open_k, k, False, ev_t_l, stops_l, seq_l, prev_start, max_trip_ms)
                if trip is None:
                    return None
                trips.append(trip)
                prev_start = ev_t_l[open_k]
            open_k = k
        elif open_k >= 0:
            trip = _close(vehicle, t, open_k, k, True, ev_t_l, stops_l, seq_l, prev_start, max_trip_ms)
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
) -> PlannedTrip | None:
    on_ms = ev_t[on]
    if ev_t[nxt] - on_ms > max_trip_ms:
        return None  # quarantined whole, or messages outside its window refused: the message path says which
    lo, hi = stops[on], stops[nxt]
    end_ms = ev_t[nxt] if by_off else (int(t[hi - 1]) if hi > lo else on_ms)
    n = _n_batches(hi - lo)
    batch_lo = lo + BATCH_FIXES * np.arange(n, dtype=np.int64)
    batch_nxt = np.empty(n, np.int64)
    if n:
        batch_nxt[:-1] = t[batch_lo[1:]]
        batch_nxt[-1] = ev_t[nxt] + 1 if by_off else ev_t[nxt]
    tid = trip_id(vehicle, on_ms, seqs[on] if prev_start is not None and on_ms <= prev_start else None)
    ended = "ignition_off" if by_off else "next_trip"
    last = seqs[nxt] if by_off else seqs[on] + n
    return PlannedTrip(tid, on_ms, end_ms, lo, hi, n + 1 + by_off, by_off, ended, batch_lo, batch_nxt, seqs[on], last)


def vehicle_imu_hz(it: np.ndarray) -> int:
    """The rate score-file puts a vehicle's IMU samples on (median interval; 10 Hz with fewer than two samples)."""
    return int(round(1000.0 / np.median(np.diff(it)))) if it.shape[0] > 1 else 10


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
        n = hi - lo
        j = lo
        for q in range(k):
            g = t0 + np.int64(np.rint(q * step))
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
            w += 1
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
