"""Cut each vehicle's stream into trips: from ignition events where its device sends them, else by motion
(scoring/motion.py). Pure logic.

A vehicle is cut by ignition from the first ignition event it sends; until then (and for devices that never send
one) by motion. Which vehicles send ignition, and where each vehicle's last motion trip ended, is the cutter's
durable state, with the last seq of each vehicle's last closed trip: ``take_state_updates`` hands it to the scorer,
which stores it (a compacted topic) before it commits,
and ``load_partition`` gives it back to a restarted scorer with the partition's watermark at the committed offset.

Ignition rules (docs/architecture.md has the reasoning):
- A trip runs from ``ignition_on`` to ``ignition_off``; messages are placed by the device's ``seq``.
- A trip closes once every seq between its ignition events has arrived, or, if some never come (dead-lettered),
  when the vehicle's next trip starts or ``close_grace_s`` of its partition's receive time after ignition_off.
- Repeats (same seq) and anything at or below the last closed trip's ``ignition_off`` seq are dropped, except an
  ``ignition_on`` later than everything the last closed trip held (or than the open trip): the device rebooted and
  its seq started again (a reset, counted).
- Plausibility: a trip whose ``ignition_off`` is before its ``ignition_on`` (``negative_duration``) or more than
  ``max_trip_s`` after it (``trip_too_long``) is quarantined whole; a batch with samples more than
  ``trip_window_margin_s`` outside its trip's window is quarantined alone (``outside_trip_window``) and the trip is
  flagged incomplete. ``take_quarantined`` hands these to the scorer, which dead-letters them.
- A trip's id hashes vehicle and ignition time, and the ignition_on seq too when the trip starts no later than the
  vehicle's previous trip (so two trips with one ignition time get two ids, and every other id stays as it was).
- Messages with no open trip (a tail replayed after a restart, or data whose ``ignition_on`` was lost) are
  counted as orphans and dropped: replay always starts before the first message of every open trip, so a trip
  is either rebuilt whole or was already emitted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from scoring.motion import MotionCut, MotionRules, MotionTrack
from scoring.resequence import Pending, Resequencer
from ubi.common.config import IngestConfig, ScoringConfig
from ubi.common.messages import DeviceEvent, TelemetryBatch


def trip_id(vehicle: str, start_ms: int, seq: int | None = None) -> str:
    """Stable id from the data: the same trip gets the same id on every replay. ``seq`` (the ignition_on's) only
    for a trip that starts no later than the vehicle's previous one, which would otherwise share its id."""
    key = f"{vehicle}|{start_ms}" if seq is None else f"{vehicle}|{start_ms}|{seq}"
    return hashlib.sha256(key.encode()).hexdigest()[:20]


@dataclass
class OpenTrip:
    vehicle: str
    on_seq: int
    on_ms: int
    partition: int
    first_offset: int
    first_wm: int  # the partition's watermark before first_offset
    batches: dict[int, TelemetryBatch] = field(default_factory=dict)
    off: DeviceEvent | None = None
    off_seen_rx: int = 0  # the partition's receive-time watermark when ignition_off arrived

    def complete(self) -> bool:
        return self.off is not None and len(self.batches) == self.off.seq - self.on_seq - 1


@dataclass(frozen=True)
class ClosedTrip:
    trip_id: str
    vehicle: str
    start_ms: int
    end_ms: int
    t_ms: np.ndarray  # GPS fix times, sorted, unique
    speed: np.ndarray
    accuracy: np.ndarray
    messages: int
    complete: bool  # every seq between the ignition events arrived
    ended_by: str  # ignition: "ignition_off" | "next_trip" | "grace_timeout"; motion: "motion_stop" | "data_gap"
    partition: int
    # The IMU and phone flags travel with the trip so the feature kernels see everything the device sent.
    imu_t_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # sorted, unique
    acc_lon: np.ndarray = field(default_factory=lambda: np.zeros(0))  # m/s^2, +forward
    acc_lat: np.ndarray = field(default_factory=lambda: np.zeros(0))  # m/s^2, +left
    phone: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))  # per GPS fix: 1/0, -1 = not reported
    lat: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per GPS fix, degrees (for jump cleaning)
    lon: np.ndarray = field(default_factory=lambda: np.zeros(0))
    heading: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per GPS fix, degrees (map matching)
    acc_vert: np.ndarray = field(default_factory=lambda: np.zeros(0))  # m/s^2, +up with gravity (axis alignment)
    # The device seqs the trip spans (ignition_on .. ignition_off, or its first .. last batch when cut by motion;
    # -1 unknown): with ``messages`` they show data missing inside and between trips (data completeness).
    seq_first: int = -1
    seq_last: int = -1


@dataclass(frozen=True)
class Quarantined:
    """Something the cutter (or the scorer) refuses to turn into a stored trip, with a machine-readable reason: the
    scorer writes it to the dead-letter topic and counts it. ``what``: "trip" or "message"."""

    what: str
    vehicle: str
    reason: str
    detail: str
    trip_id: str = ""
    start_ms: int = 0
    end_ms: int = 0
    seqs: tuple[int, ...] = ()
    partition: int = 0

    @classmethod
    def of_trip(cls, trip: "ClosedTrip", reason: str, detail: str) -> "Quarantined":
        return cls(
            "trip", trip.vehicle, reason, detail, trip.trip_id, int(trip.start_ms), int(trip.end_ms), (), trip.partition
        )


class CutterFailed(Exception):
    """Records that broke the cutter, each with its vehicle and seq, and the trips closed meanwhile (the cutter
    goes on past a failing record: one released from the resequencer must not take other vehicles' with it)."""

    def __init__(self, closed: list["ClosedTrip"], failures: list[tuple[str, int, Exception]]) -> None:
        super().__init__("; ".join(f"{v} seq {s}: {type(e).__name__}: {e}" for v, s, e in failures))
        self.closed, self.failures = closed, failures


@dataclass
class CutterCounters:
    orphans: int = 0
    repeats: int = 0
    closed: int = 0
    incomplete: int = 0
    motion_closed: int = 0
    quarantined: int = 0  # trips and messages refused as implausible (take_quarantined says which and why)
    resets: int = 0  # ignition_on accepted although its seq was not above the last closed one (device reboot)
    reordered: int = 0  # messages that arrived before an earlier seq of their device and waited for it
    gaps_skipped: int = 0  # seqs given up on after the reorder window (dead-lettered or lost): the trip goes on
    started_quiet: int = 0  # new vehicles started before their window ended because the stream went quiet


class TripCutter:
    def __init__(
        self, close_grace_s: float = 600.0, motion: MotionRules | None = None, ingest: IngestConfig | None = None
    ) -> None:
        ingest = ingest or IngestConfig()
        self.open: dict[str, OpenTrip] = {}
        self.last_closed_seq: dict[str, int] = {}
        # durable with it: the ignition time and the latest time of the vehicle's last closed trip (a state record
        # written before these existed lacks them: then no reset is recognised and ids hash no seq, as before)
        self.closed_start: dict[str, int] = {}
        self.closed_end: dict[str, int] = {}
        # after a reset: the last closed seq and latest time before it; a message at or below both is a repeat of
        # data from before the reboot (a late duplicate), not part of the trips that follow (durable as well)
        self.pre_reset: dict[str, tuple[int, int]] = {}
        # the boot ids a device has sent on its ignition_on events, latest last (durable, a few kept): one it never
        # sent before with a seq that went down is a restart, whatever its clock says
        self.boots: dict[str, list[str]] = {}
        self.max_trip_ms = int(ingest.max_trip_s * 1000)
        self.window_margin_ms = int(ingest.trip_window_margin_s * 1000)
        self.close_grace_ms = int(close_grace_s * 1000)
        self.counters = CutterCounters()
        self.motion = motion or MotionRules.of(ScoringConfig())
        self.ignition: set[str] = set()  # vehicles whose devices send ignition events
        self.tracks: dict[str, MotionTrack] = {}  # the others
        self.closed_to: dict[str, int] = {}  # where a motion vehicle's last trip ended (durable)
        self.partition_of: dict[str, int] = {}
        self.wm: dict[int, int] = {}  # per partition: the latest receive time seen, in offset order
        self.state_updates: dict[str, dict] = {}
        self.quarantined: list[Quarantined] = []
        # each device's messages in seq order first (scoring/resequence.py)
        self.reseq = Resequencer(int(ingest.reorder_window_s * 1000))

    @classmethod
    def for_config(cls, cfg: ScoringConfig, ingest: IngestConfig | None = None) -> "TripCutter":
        """From a ScoringConfig (and the IngestConfig's plausibility limits)."""
        return cls(cfg.close_grace_s, MotionRules.of(cfg), ingest)

    def take_quarantined(self) -> list[Quarantined]:
        """What was refused since the last call (the scorer dead-letters it with the trips of the same poll)."""
        out, self.quarantined = self.quarantined, []
        return out

    # ------------------------------------------------------------------ durable state
    def load_partition(self, partition: int, wm: int, states: dict[str, dict]) -> None:
        """A partition (re)assigned: its watermark at the committed offset and its vehicles' stored state."""
        self.wm[partition] = wm
        for v, st in states.items():
            self.partition_of[v] = partition
            if st.get("mode") == "ignition":
                self.ignition.add(v)
                if st.get("closed_seq") is not None:
                    self.last_closed_seq[v] = int(st["closed_seq"])
                    self.reseq.start_after(v, int(st["closed_seq"]))  # the replay resumes after it
                if st.get("closed_start_ms") is not None:
                    self.closed_start[v] = int(st["closed_start_ms"])
                if st.get("closed_end_ms") is not None:
                    self.closed_end[v] = int(st["closed_end_ms"])
                if st.get("reset_seq") is not None:
                    self.pre_reset[v] = (int(st["reset_seq"]), int(st["reset_end_ms"]))
                if st.get("boots"):
                    self.boots[v] = [str(b) for b in st["boots"]]
            elif st.get("closed_to_ms") is not None:
                self.closed_to[v] = int(st["closed_to_ms"])
                self.reseq.known(v)  # a motion device: its replay starts at its first message, nothing to wait for

    def take_state_updates(self) -> dict[str, tuple[int, dict]]:
        """{vehicle: (partition, state)} changed since the last call: store them before committing."""
        out = {v: (self.partition_of[v], st) for v, st in self.state_updates.items()}
        self.state_updates = {}
        return out

    # ------------------------------------------------------------------ input
    def feed(
        self, item: DeviceEvent | TelemetryBatch, partition: int, offset: int, received_ms: int = 0
    ) -> list[ClosedTrip]:
        """One record in offset order; ``received_ms`` is when the bridge received it (the Kafka header). It goes
        through the resequencer first: what comes out, in each device's seq order, is cut into trips."""
        wm = self.wm.get(partition, 0)
        self.wm[partition] = max(wm, received_ms)
        self.partition_of[item.vehicle] = partition
        ready = self.reseq.push(Pending(item, partition, offset, wm, received_ms, self.wm[partition]))
        if not ready:
            self.counters.reordered += 1
        return self._feed_all(ready + self.reseq.due(self.wm))

    def _feed_all(self, pending: list[Pending]) -> list[ClosedTrip]:
        out: list[ClosedTrip] = []
        failures: list[tuple[str, int, Exception]] = []
        for p in pending:
            try:
                out += self._feed_one(p)
            except Exception as exc:  # noqa: BLE001 - reported with its record, after the others went through
                failures.append((p.item.vehicle, p.item.seq, exc))
        self.counters.gaps_skipped = self.reseq.skipped
        if failures:
            raise CutterFailed(out, failures)
        return out

    def _feed_one(self, p: Pending) -> list[ClosedTrip]:
        """One record in its device's seq order (``p.arrived_wm``: the partition's watermark when it arrived)."""
        item, partition, offset, wm, received_ms = p.item, p.partition, p.offset, p.wm, p.received_ms
        v = item.vehicle
        out: list[ClosedTrip] = []
        if v not in self.ignition:
            if isinstance(item, TelemetryBatch):
                return self._feed_motion(item, partition, offset, wm, received_ms)
            # the device sends ignition events after all: from now on its trips follow them
            self.ignition.add(v)
            self.state_updates[v] = {"mode": "ignition"}
            track = self.tracks.pop(v, None)
            if track is not None:
                out += [self._close_motion(v, c) for c in track.finish()]
            self.closed_to.pop(v, None)
        return out + self._feed_ignition(item, partition, offset, wm, p.arrived_wm)

    def _feed_ignition(
        self, item: DeviceEvent | TelemetryBatch, partition: int, offset: int, wm: int, arrived_wm: int
    ) -> list[ClosedTrip]:
        v = item.vehicle
        out: list[ClosedTrip] = []
        trip = self.open.get(v)
        if trip is not None and self._grace_over(trip, wm):
            # what the periodic expire() would have done by now: decided here too, before this record, so the
            # outcome does not depend on where poll batches happen to end
            out += self._close(trip, "grace_timeout")
            trip = None
        if isinstance(item, DeviceEvent) and item.event == "ignition_on" and self._is_reset(item, trip):
            # the device rebooted and counts from scratch: what came before is closed, the new trip opens
            self.counters.resets += 1
            if trip is not None:
                out += self._close(trip, "next_trip")
            if item.boot and item.boot not in self.boots.get(v, [item.boot]):
                # recognised by its boot id: the clock may have gone back too, so old messages cannot be told by
                # their time; those of the old session still come as repeats of closed seqs or as orphans
                self.pre_reset.pop(v, None)
            else:
                self.pre_reset[v] = (self.last_closed_seq[v], self.closed_end[v])
            self.last_closed_seq[v] = item.seq - 1
            self.open[v] = OpenTrip(v, item.seq, item.t_ms, partition, offset, wm)
            self._saw_boot(item)
            return out
        pre = self.pre_reset.get(v)
        if pre is not None and item.seq <= pre[0] and _time_of(item) <= pre[1]:
            self.counters.repeats += 1  # sent before the device rebooted, delivered again after it
            return out
        if item.seq <= self.last_closed_seq.get(v, -1):
            self.counters.repeats += 1
            return out
        if isinstance(item, DeviceEvent) and item.event == "ignition_on":
            if trip is not None and item.seq == trip.on_seq:
                self.counters.repeats += 1
                return out
            if trip is not None and item.seq < trip.on_seq:
                self.counters.orphans += 1
                return out
            if trip is not None:
                out += self._close(trip, "next_trip")
            self.open[v] = OpenTrip(v, item.seq, item.t_ms, partition, offset, wm)
            self._saw_boot(item)
            return out
        if trip is None or item.seq < trip.on_seq or (trip.off is not None and item.seq > trip.off.seq):
            self.counters.orphans += 1
            return out
        if isinstance(item, DeviceEvent):  # ignition_off
            if trip.off is not None:
                self.counters.repeats += 1
                return out
            trip.off = item
            trip.off_seen_rx = arrived_wm  # the grace runs from its arrival, even if it waited for a gap
        else:
            if item.seq in trip.batches:
                self.counters.repeats += 1
                return out
            trip.batches[item.seq] = item
        if offset < trip.first_offset:
            trip.first_offset, trip.first_wm = offset, wm
        if trip.complete():
            out += self._close(trip, "ignition_off")
        return out

    def _saw_boot(self, on: DeviceEvent) -> None:
        if on.boot:
            seen = [b for b in self.boots.get(on.vehicle, []) if b != on.boot]
            self.boots[on.vehicle] = [*seen, on.boot][-8:]

    def _is_reset(self, on: DeviceEvent, trip: OpenTrip | None) -> bool:
        """An ignition_on whose seq is not above what came before but whose time is after all of it: a reboot.
        (A repeat of an older ignition_on is never later than the trip it started.) With a boot id the device never
        sent before, the seq alone decides: its clock may have been reset too."""
        known = self.boots.get(on.vehicle)
        if on.boot and known and on.boot not in known:
            return on.seq < trip.on_seq if trip is not None else on.seq <= self.last_closed_seq.get(on.vehicle, -1)
        if trip is not None:
            return on.seq < trip.on_seq and on.t_ms > self._latest_ms(trip, self._split(trip)[0])
        end = self.closed_end.get(on.vehicle)
        return on.seq <= self.last_closed_seq.get(on.vehicle, -1) and end is not None and on.t_ms > end

    def _feed_motion(
        self, item: TelemetryBatch, partition: int, offset: int, wm: int, received_ms: int
    ) -> list[ClosedTrip]:
        v = item.vehicle
        track = self.tracks.get(v)
        if track is None:
            track = self.tracks[v] = MotionTrack(v, self.motion, self.closed_to.get(v))
        return [self._close_motion(v, c) for c in track.feed(item, partition, offset, wm, received_ms)]

    def _grace_over(self, trip: OpenTrip, wm: int) -> bool:
        return trip.off is not None and wm - trip.off_seen_rx >= self.close_grace_ms

    def expire(self) -> list[ClosedTrip]:
        """Close ignition trips whose ignition_off arrived ``close_grace_s`` of their partition's receive time ago
        but that still miss messages, and motion trips whose partition shows a data gap (MotionTrack.silence).
        Both are monotone in the watermark and also checked on the vehicle's next record, so calling this more or
        less often changes when a trip is emitted, never what it holds."""
        out = self._feed_all(self.reseq.due(self.wm))
        due = [t for t in self.open.values() if self._grace_over(t, self.wm.get(t.partition, 0))]
        out += [c for t in due for c in self._close(t, "grace_timeout")]
        for v, track in self.tracks.items():
            out += [self._close_motion(v, c) for c in track.silence(self.wm.get(self.partition_of[v], 0))]
        return out

    def start_waiting(self) -> list[ClosedTrip]:
        """The stream went quiet: vehicles whose first messages wait for an ``ignition_on`` that may still come
        start now (a device without ignition events would otherwise wait until other traffic moved the watermark).
        What they release is cut in seq order as usual; the commit still stays behind it until its trip closes."""
        self.counters.started_quiet += self.reseq.new_held()
        return self._feed_all(self.reseq.release_new())

    def waiting_to_start(self) -> bool:
        return self.reseq.new_held() > 0

    def finish(self) -> list[ClosedTrip]:
        """End of the data (a file): close what waiting for ever would close (trips past ignition_off still missing a
        message, open motion trips)."""
        out = self._feed_all(self.reseq.flush())
        ended = [t for t in self.open.values() if t.off is not None]
        out += [c for t in ended for c in self._close(t, "grace_timeout")]
        for v, track in self.tracks.items():
            out += [self._close_motion(v, c) for c in track.finish()]
        return out

    def held(self) -> dict[int, tuple[int, int]]:
        """Per partition, the first offset an open trip or a motion track still needs, with the partition's
        watermark before it: commit no further than this, and store the watermark with the commit."""
        out: dict[int, tuple[int, int]] = {}
        firsts = [(t.partition, t.first_offset, t.first_wm) for t in self.open.values()]
        firsts += [(m.partition, m.offset, m.wm) for m in (tr.first_held() for tr in self.tracks.values()) if m]
        firsts += [(p, off, wm) for p, (off, wm) in self.reseq.first_held().items()]
        for p, off, wm in firsts:
            if p not in out or off < out[p][0]:
                out[p] = (off, wm)
        return out

    def abandon(self, vehicle: str, reason: str, detail: str) -> None:
        """A record of this vehicle made the cutter fail: quarantine what it held of the vehicle (its open trip or
        motion track) and forget it, so the other vehicles go on. A replay fails on the same record and abandons
        the same messages, so the outcome does not depend on where the scorer was restarted."""
        trip = self.open.pop(vehicle, None)
        track = self.tracks.pop(vehicle, None)
        seqs: list[int] = []
        start = end = 0
        if trip is not None:
            seqs = [trip.on_seq, *sorted(trip.batches)] + ([trip.off.seq] if trip.off is not None else [])
            start, end = trip.on_ms, trip.off.t_ms if trip.off is not None else trip.on_ms
        elif track is not None:
            seqs = sorted({m.batch.seq for m in track.msgs})
        self.counters.quarantined += 1
        self.quarantined.append(
            Quarantined(
                "trip" if seqs else "message",
                vehicle,
                reason,
                detail,
                start_ms=int(start),
                end_ms=int(end),
                seqs=tuple(seqs),
                partition=self.partition_of.get(vehicle, 0),
            )
        )

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget partitions we no longer own (the new owner loads their state and rebuilds by replay)."""
        for v in [v for v, t in self.open.items() if t.partition in partitions]:
            del self.open[v]
        self.reseq.forget({v for v, p in self.partition_of.items() if p in partitions})
        for v in [v for v, p in self.partition_of.items() if p in partitions]:
            del self.partition_of[v]
            self.tracks.pop(v, None)
            self.closed_to.pop(v, None)
            self.ignition.discard(v)
            self.last_closed_seq.pop(v, None)
            self.closed_start.pop(v, None)
            self.closed_end.pop(v, None)
            self.pre_reset.pop(v, None)
            self.boots.pop(v, None)
            self.state_updates.pop(v, None)
        for p in partitions:
            self.wm.pop(p, None)

    def _close_motion(self, vehicle: str, cut: MotionCut) -> ClosedTrip:
        # the batches with samples inside the trip: the track may hold parked reports from before it, and how many
        # depends on where a restarted scorer resumed (the chaos harness saw the count change), so they are left out
        batches = sorted(
            (
                b
                for b in {m.batch.seq: m.batch for m in cut.messages}.values()
                if _overlaps(b, cut.start_ms, cut.end_ms)
            ),
            key=lambda b: b.seq,
        )
        g = _concat_gps(batches)
        keep = (g[0] >= cut.start_ms) & (g[0] <= cut.end_ms)
        imu = _concat_imu(batches)
        ikeep = (imu[0] >= cut.start_ms) & (imu[0] <= cut.end_ms)
        seqs = [b.seq for b in batches]
        complete = not seqs or seqs[-1] - seqs[0] + 1 == len(seqs)
        self.closed_to[vehicle] = cut.end_ms
        self.state_updates[vehicle] = {"mode": "motion", "closed_to_ms": cut.end_ms}
        self.counters.closed += 1
        self.counters.motion_closed += 1
        self.counters.incomplete += not complete
        partition = cut.messages[0].partition if cut.messages else self.partition_of.get(vehicle, 0)
        t, sp, acc, phone, lat, lon, heading = (c[keep] for c in g)
        return ClosedTrip(
            trip_id(vehicle, cut.start_ms),
            vehicle,
            cut.start_ms,
            cut.end_ms,
            t,
            sp,
            acc,
            len(batches),
            complete,
            cut.ended_by,
            partition,
            imu[0][ikeep],
            imu[1][ikeep],
            imu[2][ikeep],
            phone,
            lat,
            lon,
            heading,
            imu[3][ikeep],
            seqs[0] if seqs else -1,
            seqs[-1] if seqs else -1,
        )

    def _window(self, trip: OpenTrip) -> tuple[int, int]:
        """Where a trip's samples may lie: from ignition_on to ignition_off (or ignition_on + max_trip_s while it has
        none), widened by the margin on both sides."""
        end = trip.off.t_ms if trip.off is not None else trip.on_ms + self.max_trip_ms
        return trip.on_ms - self.window_margin_ms, end + self.window_margin_ms

    def _split(self, trip: OpenTrip) -> tuple[list[TelemetryBatch], list[TelemetryBatch]]:
        """The trip's batches in seq order: those inside its window, and those with a sample outside it."""
        lo, hi = self._window(trip)
        inside: list[TelemetryBatch] = []
        outside: list[TelemetryBatch] = []
        for s in sorted(trip.batches):
            b = trip.batches[s]
            first, last = _span(b)
            (inside if lo <= first and last <= hi else outside).append(b)
        return inside, outside

    @staticmethod
    def _latest_ms(trip: OpenTrip, inside: list[TelemetryBatch]) -> int:
        """The latest device time a trip holds (events and the samples inside its window)."""
        return max([trip.on_ms, *([trip.off.t_ms] if trip.off is not None else []), *(_span(b)[1] for b in inside)])

    def _close(self, trip: OpenTrip, ended_by: str) -> list[ClosedTrip]:
        """The trip as a ClosedTrip, or nothing if it is quarantined (take_quarantined has it then)."""
        v = trip.vehicle
        del self.open[v]
        inside, outside = self._split(trip)
        if trip.off is not None:
            self.last_closed_seq[v] = trip.off.seq
        else:
            self.last_closed_seq[v] = max([trip.on_seq, *trip.batches])
        prev_start = self.closed_start.get(v)
        tid = trip_id(v, trip.on_ms, trip.on_seq if prev_start is not None and trip.on_ms <= prev_start else None)
        self.closed_start[v] = trip.on_ms
        self.closed_end[v] = self._latest_ms(trip, inside)
        # durable too: a repeat of this trip's messages replayed after a restart is dropped, not made a trip
        self.state_updates[v] = {
            "mode": "ignition",
            "closed_seq": self.last_closed_seq[v],
            "closed_start_ms": trip.on_ms,
            "closed_end_ms": self.closed_end[v],
        }
        if v in self.pre_reset:
            self.state_updates[v]["reset_seq"], self.state_updates[v]["reset_end_ms"] = self.pre_reset[v]
        if self.boots.get(v):
            self.state_updates[v]["boots"] = self.boots[v]
        reason = ""
        if trip.off is not None and trip.off.t_ms < trip.on_ms:
            reason = "negative_duration"
        elif trip.off is not None and trip.off.t_ms - trip.on_ms > self.max_trip_ms:
            reason = "trip_too_long"
        if reason:
            assert trip.off is not None  # both reasons need the ignition_off
            seqs = (trip.on_seq, *sorted(trip.batches), trip.off.seq)
            self.counters.quarantined += 1
            self.quarantined.append(
                Quarantined(
                    "trip",
                    v,
                    reason,
                    f"ignition_on seq {trip.on_seq} at {trip.on_ms}, ignition_off seq "
                    f"{trip.off.seq} at {trip.off.t_ms}: {(trip.off.t_ms - trip.on_ms) / 1000:.0f} s (limit 0 to "
                    f"{self.max_trip_ms / 1000:.0f} s)",
                    tid,
                    trip.on_ms,
                    trip.off.t_ms,
                    seqs,
                    trip.partition,
                )
            )
            return []
        g = _concat_gps(inside)
        imu_t, a_lon, a_lat, a_vert = _concat_imu(inside)
        t = g[0]
        end_ms = trip.off.t_ms if trip.off is not None else (int(t[-1]) if t.size else trip.on_ms)
        lo, hi = self._window(trip)
        for b in outside:
            first, last = _span(b)
            self.counters.quarantined += 1
            self.quarantined.append(
                Quarantined(
                    "message",
                    v,
                    "outside_trip_window",
                    f"seq {b.seq}: samples {first}..{last} ms, trip window "
                    f"{lo}..{hi} ms (ignition times widened by {self.window_margin_ms // 1000} s)",
                    tid,
                    trip.on_ms,
                    end_ms,
                    (b.seq,),
                    trip.partition,
                )
            )
        complete = trip.complete() and not outside
        self.counters.closed += 1
        self.counters.incomplete += not complete
        return [
            ClosedTrip(
                tid,
                v,
                trip.on_ms,
                end_ms,
                t,
                g[1],
                g[2],
                len(inside) + 1 + (trip.off is not None),
                complete,
                ended_by,
                trip.partition,
                imu_t,
                a_lon,
                a_lat,
                g[3],
                g[4],
                g[5],
                g[6],
                a_vert,
                trip.on_seq,
                self.last_closed_seq[v],
            )
        ]


def _time_of(item: DeviceEvent | TelemetryBatch) -> int:
    return item.t_ms if isinstance(item, DeviceEvent) else _span(item)[1]


def _overlaps(b: TelemetryBatch, start_ms: int, end_ms: int) -> bool:
    first, last = _span(b)
    return first <= end_ms and last >= start_ms


def _span(b: TelemetryBatch) -> tuple[int, int]:
    """First and last sample time of a batch (GPS and accelerometer; the contract allows either to be empty)."""
    times = []
    if b.gps_t.shape[0]:
        times += [int(b.gps_t[0]), int(b.gps_t[-1])]
    if b.acc_lon.shape[0]:
        imu = b.imu_t_ms()
        times += [int(imu[0]), int(imu[-1])]
    if not times:
        return int(b.sent_ms), int(b.sent_ms)
    return min(times), max(times)


def _concat_gps(batches: list[TelemetryBatch]) -> tuple[np.ndarray, ...]:
    """(t_ms, speed, accuracy, phone, lat, lon, heading) over the batches, sorted by time; a repeated time keeps its
    first
    fix (batches are in seq order, so the device's first word wins, as on every replay)."""
    if not batches:
        return (
            np.zeros(0, np.int64),
            np.zeros(0),
            np.zeros(0),
            np.zeros(0, np.int8),
            np.zeros(0),
            np.zeros(0),
            np.zeros(0),
        )
    t = np.concatenate([b.gps_t for b in batches]).astype(np.int64)
    cols = [
        np.concatenate([np.asarray(getattr(b, k), dtype=np.float64) for b in batches])
        for k in ("speed", "accuracy", "lat", "lon", "heading")
    ]
    phone = np.concatenate(
        [
            np.full(b.gps_t.shape[0], -1, np.int8) if b.phone is None else np.asarray(b.phone).astype(np.int8)
            for b in batches
        ]
    )
    order = np.argsort(t, kind="stable")
    t = t[order]
    keep = np.concatenate([[True], np.diff(t) > 0]) if t.size else np.zeros(0, bool)  # a trip may have no fix
    sp, acc, lat, lon, heading = (c[order][keep] for c in cols)
    return t[keep], sp, acc, phone[order][keep], lat, lon, heading


def _concat_imu(batches: list[TelemetryBatch]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(t_ms, lon, lat, vert) accelerometer samples over the batches; sample k is at t0 + round(k*1000/hz)."""
    parts = [b for b in batches if b.acc_lon.shape[0]]
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0)
    t = np.concatenate([b.imu_t_ms() for b in parts])
    a_lon = np.concatenate([np.asarray(b.acc_lon, dtype=np.float64) for b in parts])
    a_lat = np.concatenate([np.asarray(b.acc_lat, dtype=np.float64) for b in parts])
    a_vert = np.concatenate([np.asarray(b.acc_vert, dtype=np.float64) for b in parts])
    order = np.argsort(t, kind="stable")
    t = t[order]
    keep = np.concatenate([[True], np.diff(t) > 0]) if t.size else np.zeros(0, bool)
    return t[keep], a_lon[order][keep], a_lat[order][keep], a_vert[order][keep]
