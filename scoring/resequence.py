"""Put each device's messages back into seq order before the trip cutter sees them. Pure logic.

Kafka keeps a partition's order, but a device's messages can reach it out of order: after a broker crash a device
resends what the broker lost (older seqs after newer ones: the chaos harness saw trips lost this way, their
batches arriving before their ``ignition_on``), and with several bridges in the share group each forwards its
share with its own delay. The device contract numbers every message (+1 each), which is what this uses:

- the message after the last one released is released at once, with any held ones that follow it;
- a later one is held until the gap closes, or until its partition's receive-time watermark has moved
  ``window_ms`` past the moment it arrived (the missing seq was dead-lettered or is lost: go on without it);
- a seq at or below the last released one (a repeat, or a device that rebooted and counts from 0 again) passes at
  once, for the cutter to judge; a repeat of a held seq is dropped and counted;
- a vehicle seen for the first time starts once the lowest seq it has sent so far is an ``ignition_on``; until
  then its messages are held like a gap, because its first trip's start may still be on the way (two bridges
  reorder a vehicle's first messages: the cluster tests saw a trip's batches reach Kafka before its
  ``ignition_on``, and with one bridge killed, a second trip's ``ignition_on`` before the first's, each time
  cutting trips short). A device that sends no ignition events (motion trips) is released when the window ends,
  so its first data waits ``window_ms`` of its partition's receive time once, or sooner when the whole stream has
  gone quiet (``release_new``: with no traffic the watermark never moves, and a new device's data would wait for
  ever). The cutter's durable state restarts a
  vehicle after its last closed trip (``start_after``), and a motion vehicle that has closed a trip at its first
  message (``known``), so a replay releases what the first run released.

Held messages keep their offsets: the scorer commits no further than the first of them (``first_held``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ubi.common.messages import DeviceEvent, TelemetryBatch


@dataclass(frozen=True)
class Pending:
    item: DeviceEvent | TelemetryBatch
    partition: int
    offset: int
    wm: int  # the partition's watermark before this record
    received_ms: int
    arrived_wm: int  # the partition's watermark once it arrived (its hold runs from here)


class Resequencer:
    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self.last: dict[str, int] = {}  # per vehicle: the last seq released in order
        self.held: dict[str, dict[int, Pending]] = {}
        self.direct: set[str] = set()  # vehicles that start at their first message (motion devices we know)
        self.repeats = 0  # copies of a held seq, dropped
        self.skipped = 0  # seqs given up on after the window (never arrived)

    def start_after(self, vehicle: str, seq: int) -> None:
        self.last[vehicle] = seq

    def known(self, vehicle: str) -> None:
        """A vehicle known (from the cutter's durable state) to send no ignition events: nothing to wait for, it
        starts at its first message, as before the scorer restarted."""
        self.direct.add(vehicle)

    def push(self, p: Pending) -> list[Pending]:
        """What may go to the cutter now, in order, after this record."""
        v, seq = p.item.vehicle, p.item.seq
        last = self.last.get(v)
        if last is None and v in self.direct:
            self.last[v] = seq
            return [p, *self._drain(v)]
        if last is None:
            # a vehicle not started yet: it starts when the lowest seq it has sent so far is an ignition_on (its
            # first trip's start; two bridges reorder a vehicle's first messages, and a later trip's ignition_on
            # can come before the first trip's), or when the window of that lowest message ends
            self._hold(v, p)
            held = self.held[v]
            first = min(held)
            q = held[first].item
            if isinstance(q, DeviceEvent) and q.event == "ignition_on":
                self.last[v] = first - 1
                return self._drain(v)
            return []
        if seq <= last:
            return [p, *self._drain(v)]
        if seq == last + 1:
            self.last[v] = seq
            return [p, *self._drain(v)]
        return self._hold(v, p)

    def _hold(self, v: str, p: Pending) -> list[Pending]:
        held = self.held.setdefault(v, {})
        if p.item.seq in held:
            self.repeats += 1
        else:
            held[p.item.seq] = p
        return []

    def _drain(self, v: str) -> list[Pending]:
        held = self.held.get(v)
        out: list[Pending] = []
        while held and self.last[v] + 1 in held:
            self.last[v] += 1
            out.append(held.pop(self.last[v]))
        if held is not None and not held:
            del self.held[v]
        return out

    def due(self, wm: dict[int, int]) -> list[Pending]:
        """Held messages whose wait is over (their partition's watermark moved ``window_ms`` past their arrival):
        the gap before the first of them is given up on."""
        out: list[Pending] = []
        for v in list(self.held):
            while v in self.held:
                first = min(self.held[v])
                p = self.held[v][first]
                if wm.get(p.partition, 0) - p.arrived_wm < self.window_ms:
                    break
                if v in self.last:
                    self.skipped += first - self.last[v] - 1
                self.last[v] = first - 1  # (a vehicle's first messages without an ignition_on: start at them)
                out += self._drain(v)
        return out

    def release_new(self) -> list[Pending]:
        """The stream has gone quiet: vehicles never started (the lowest seq held is not an ``ignition_on``) start
        at their lowest held message, as if their window had ended (no watermark moves without traffic)."""
        out: list[Pending] = []
        for v in [v for v in self.held if v not in self.last]:
            self.last[v] = min(self.held[v]) - 1
            out += self._drain(v)
        return out

    def new_held(self) -> int:
        """How many vehicles wait for their start."""
        return sum(1 for v in self.held if v not in self.last)

    def flush(self) -> list[Pending]:
        """End of the data: everything held, in seq order per vehicle."""
        out: list[Pending] = []
        for v in list(self.held):
            for seq in sorted(self.held[v]):
                out.append(self.held[v][seq])
                self.last[v] = max(self.last.get(v, seq), seq)
            del self.held[v]
        return out

    def first_held(self) -> dict[int, tuple[int, int]]:
        """Per partition, the first held offset and the watermark before it."""
        out: dict[int, tuple[int, int]] = {}
        for held in self.held.values():
            for p in held.values():
                if p.partition not in out or p.offset < out[p.partition][0]:
                    out[p.partition] = (p.offset, p.wm)
        return out

    def forget(self, vehicles: set[str]) -> None:
        for v in vehicles:
            self.last.pop(v, None)
            self.held.pop(v, None)
            self.direct.discard(v)
