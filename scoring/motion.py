"""Trips by motion for a vehicle whose device sends no ignition events, decided fix by fix as messages arrive.

Traccar's rules with its defaults (ScoringConfig.motion_move_m, motion_stop_s, trip_gap_end_s):
- Decisions use the fixes with accuracy <= max_gps_accuracy_m whose time is after the last fix used (a repeated
  or late message adds nothing to them). Distance is the speed channel's trapezoid, not across GPS gaps longer
  than max_integration_gap_s.
- A segment starts at the vehicle's first fix, after a data gap >= trip_gap_end_s, and after a trip ends (the
  next trip needs 200 m of movement of its own).
- The window of fix i is (t_i - stop_s, t_i] plus its reference: the latest fix at or before t_i - stop_s, or the
  segment's first fix when there is none.
- Parked: a trip starts once the window holds >= move_m. It begins at the standing fix just before the window's
  first movement, moved back over up to gps_warmup_s of fixes without a gap (the receiver was locked then, and
  an ignition-cut trip has the same standing seconds before moving).
- Driving: once the segment spans stop_s and the window holds < move_m, the trip ends at the first fix after its
  last moving one ("motion_stop"). A data gap >= trip_gap_end_s ends it at the last fix before the gap, or the
  first after its last moving one ("data_gap"); the gap is seen by the vehicle's next fix, or by nothing arriving
  from the vehicle for that long while its partition's receive-time watermark moves on (``silence``), or by the end
  of a file (``finish``): the cut is the same in all three. Receive time, not device time, because a device that
  uploads a backlog after being offline is late, not silent.

Why replay gives the same trips (docs/architecture.md): the track keeps only what a future decision can use
(parked: the fixes from ``warmup`` before the window's reference on; driving: the whole trip with its window) and
the messages that hold them. The scorer commits no further than the oldest buffered message, and stores the end of
every closed trip durably, so a restarted scorer replays a superset of the buffer and reaches the same state.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ubi.common.config import ScoringConfig
from ubi.common.messages import TelemetryBatch


@dataclass(frozen=True)
class MotionRules:
    """The ScoringConfig settings the track reads (defaults and their origin live there, once)."""

    move_m: float
    stop_s: float
    gap_s: float
    max_gap_s: float
    warmup_s: float
    max_accuracy_m: float
    moving_mps: float

    @classmethod
    def of(cls, cfg: ScoringConfig) -> "MotionRules":
        return cls(
            cfg.motion_move_m,
            cfg.motion_stop_s,
            cfg.trip_gap_end_s,
            cfg.max_integration_gap_s,
            cfg.gps_warmup_s,
            cfg.max_gps_accuracy_m,
            cfg.moving_mps,
        )


@dataclass
class Buffered:
    """A message the track still holds, with where it came from (the scorer commits no further than ``offset``)."""

    batch: TelemetryBatch
    partition: int
    offset: int
    wm: int  # the partition's receive-time watermark before this record (restored with the commit)
    lo_fix: int  # global index of the first fix used from this message (= the fix count when it arrived)
    hi_fix: int  # global index of its last used fix (lo_fix - 1 when none was used)


@dataclass(frozen=True)
class MotionCut:
    start_ms: int
    end_ms: int
    ended_by: str  # "motion_stop" | "data_gap"
    messages: list[Buffered]  # every held message that may carry samples of the trip (clip by time)


class MotionTrack:
    """One vehicle's motion-cut trips. Pure logic: messages in, cuts out."""

    def __init__(self, vehicle: str, rules: MotionRules, closed_to_ms: int | None = None) -> None:
        self.vehicle = vehicle
        self.r = rules
        # in the order they were fed: the device's seq order, which is offset order unless the resequencer put an
        # earlier seq that arrived later before it (then ``first_held`` looks for the lowest offset)
        self.msgs: deque[Buffered] = deque()
        self._fed_to = -1  # the highest offset fed
        self._reordered = False  # some message held here came at a lower offset than one fed before it
        self.seqs: set[int] = set()
        # fixes from global index ``base`` on: time (ms), speed, cumulative distance
        self.ms: list[int] = []
        self.v: list[float] = []
        self.d: list[float] = []
        self.base = 0
        self.seg0 = 0  # global index of the segment's first fix
        self.seg0_t = 0.0
        self.j = 0  # window reference candidate (global index)
        self.in_trip = False
        self.start = 0
        self.last_moving = -1
        self.last_ms = closed_to_ms if closed_to_ms is not None else -(2**62)  # fixes at or before: not used
        self.closed_to_ms = closed_to_ms
        self.last_rx = 0  # when the bridge received the vehicle's latest message (its partition's clock)
        self._feeding: Buffered | None = None  # the message being read: kept even when a cut drops its first fixes

    # ------------------------------------------------------------------ input
    def feed(
        self, batch: TelemetryBatch, partition: int, offset: int, wm: int, received_ms: int = 0
    ) -> list[MotionCut]:
        """One message, with its partition's receive-time watermark before it and its own receive time."""
        out = self.silence(wm)
        self.last_rx = max(self.last_rx, received_ms)
        n = self.base + len(self.ms)
        if batch.seq in self.seqs:
            return out  # a repeat of a message we hold
        new_t = batch.gps_t.tolist()
        if self.closed_to_ms is not None and new_t and max(new_t) <= self.closed_to_ms:
            return out  # wholly inside a trip already emitted (a replayed tail)
        entry = self._feeding = Buffered(batch, partition, offset, wm, n, n - 1)
        if not self.msgs:
            self._reordered = False
        self._reordered |= offset < self._fed_to
        self._fed_to = max(self._fed_to, offset)
        self.msgs.append(entry)
        self.seqs.add(batch.seq)
        speed, acc = batch.speed.tolist(), batch.accuracy.tolist()
        for k, tm in enumerate(new_t):
            if tm <= self.last_ms or not acc[k] <= self.r.max_accuracy_m:
                continue
            entry.hi_fix = self.base + len(self.ms)
            out += self._fix(tm, speed[k])
        if not self.in_trip:
            self._trim()
        self._feeding = None
        return out

    def silence(self, wm: int) -> list[MotionCut]:
        """Nothing received from the vehicle for trip_gap_end_s while its partition's receive-time watermark moved
        on: treat it as the data gap that its next fix would most likely show."""
        if not self.msgs or wm - self.last_rx < self.r.gap_s * 1000.0:
            return []
        return self.finish()

    def finish(self) -> list[MotionCut]:
        """End of the data: close an open trip as a data gap would and forget the buffer."""
        out = []
        if self.in_trip and self.ms:
            out.append(self._close(self._gap_end(self.base + len(self.ms) - 1), "data_gap"))
        self._reset(self.base + len(self.ms))
        self.msgs.clear()
        self.seqs.clear()
        return out

    def first_held(self) -> Buffered | None:
        """The held message at the lowest offset: the scorer commits no further than it."""
        if not self.msgs:
            return None
        return min(self.msgs, key=lambda m: m.offset) if self._reordered else self.msgs[0]

    # ------------------------------------------------------------------ the rules
    def _fix(self, tm: int, v: float) -> list[MotionCut]:
        out = []
        ts = tm / 1000.0
        i = self.base + len(self.ms)
        if self.ms and i > self.seg0 and ts - self.ms[-1] / 1000.0 >= self.r.gap_s:
            if self.in_trip:
                out.append(self._close(self._gap_end(i - 1), "data_gap"))
            self._reset(i)
        d = 0.0
        if self.ms:
            dt = ts - self.ms[-1] / 1000.0
            d = self.d[-1] + (0.5 * (self.v[-1] + v) * dt if 0.0 < dt <= self.r.max_gap_s else 0.0)
        self.ms.append(tm)
        self.v.append(v)
        self.d.append(d)
        self.last_ms = tm
        if i == self.seg0:
            self.seg0_t = ts
        lim = ts - self.r.stop_s
        while self.j + 1 <= i and self._t(self.j + 1) <= lim:
            self.j += 1
        ref = self.j if self._t(self.j) <= lim else self.seg0
        wdist = d - self._d(ref)
        if v > self.r.moving_mps:
            self.last_moving = i
        if not self.in_trip:
            if wdist >= self.r.move_m:
                self.start = self._start(ref, i)
                self.in_trip = True
        elif ts - self.seg0_t >= self.r.stop_s and wdist < self.r.move_m:
            end = min(self.last_moving + 1, i) if self.last_moving >= self.start else i
            out.append(self._close(end, "motion_stop"))
            self._reset(end + 1)
        return out

    def _start(self, lo: int, i: int) -> int:
        m = lo
        while m <= i and self._v(m) <= self.r.moving_mps:
            m += 1
        s = i if m > i else (m - 1 if m > lo else lo)
        k, floor = s, max(self.seg0, self.base)
        while (
            k - 1 >= floor
            and self._t(s) - self._t(k - 1) <= self.r.warmup_s
            and self._t(k) - self._t(k - 1) <= self.r.max_gap_s
        ):
            k -= 1
        return k

    def _gap_end(self, last: int) -> int:
        return min(self.last_moving + 1, last) if self.last_moving >= self.start else last

    def _close(self, end: int, ended_by: str) -> MotionCut:
        start_ms, end_ms = self._ms(self.start), self._ms(end)
        msgs = [m for m in self.msgs if m.hi_fix >= self.start and m.lo_fix <= end]
        self.in_trip = False
        self.closed_to_ms = end_ms
        return MotionCut(start_ms, end_ms, ended_by, msgs)

    def _reset(self, seg0: int) -> None:
        """A new segment from global fix ``seg0`` on: earlier fixes and the messages holding only them go."""
        self._drop_before(seg0)
        self.seg0 = self.j = seg0
        if seg0 < self.base + len(self.ms):
            self.seg0_t = self._t(seg0)

    def _trim(self) -> None:
        """Parked: keep the fixes from ``warmup_s`` before the window's reference on (all a start can reach)."""
        if not self.ms:
            return
        if self._t(self.j) > self.ms[-1] / 1000.0 - self.r.stop_s:
            return  # no reference yet: the segment's first fix is it
        floor = self._t(self.j) - self.r.warmup_s
        k = self.base
        while k < self.j and self._t(k) < floor:
            k += 1
        self._drop_before(k)

    def _drop_before(self, g: int) -> None:
        cut = min(max(g - self.base, 0), len(self.ms))
        if cut:
            del self.ms[:cut], self.v[:cut], self.d[:cut]
            self.base += cut
        # messages are in the order fed with non-decreasing fix indices: the ones holding only dropped fixes
        # (or placed before them) are a prefix
        while (
            self.msgs
            and self.msgs[0] is not self._feeding
            and self.msgs[0].hi_fix < self.base
            and self.msgs[0].lo_fix <= self.base
        ):
            self.seqs.discard(self.msgs.popleft().batch.seq)

    def _t(self, g: int) -> float:
        return self.ms[g - self.base] / 1000.0

    def _ms(self, g: int) -> int:
        return self.ms[g - self.base]

    def _v(self, g: int) -> float:
        return self.v[g - self.base]

    def _d(self, g: int) -> float:
        return self.d[g - self.base]
