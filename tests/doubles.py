"""In-memory doubles for Kafka, so the stages' delivery logic is unit-tested in milliseconds.

- ``KafkaLog``: topics of partitions of records with offsets, per-group committed offsets with metadata; a
  compacted topic is read as its latest value per key (``compacted``).
- ``MemProducer``: records become durable (appended to the log) on ``flush``; what was only ``send``-ed when the
  process dies is lost, or delivered (``crash(deliver=True)``), as with a real producer.
- ``MemConsumer``: a group member that owns every partition of its topics; ``commit`` with or without offsets.
- ``Faults``: counts every producer/consumer operation and raises ``Crash`` (or any exception) at the n-th, to stop
  a stage at every step in turn.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata


class Crash(BaseException):
    """The process dies here (BaseException: no ``except Exception`` in the stage may swallow it)."""


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list = field(default_factory=list)


class KafkaLog:
    def __init__(self, partitions: int = 3) -> None:
        self.partitions = partitions
        self.topics: dict[str, list[list[Rec]]] = {}
        self.committed: dict[str, dict[TopicPartition, OffsetAndMetadata]] = {}

    def _parts(self, topic: str) -> list[list[Rec]]:
        return self.topics.setdefault(topic, [[] for _ in range(self.partitions)])

    def append(
        self, topic: str, key: bytes | None, value: bytes | None, headers=None, partition: int | None = None
    ) -> Rec:
        parts = self._parts(topic)
        if partition is None:
            partition = zlib.crc32(key or b"") % self.partitions
        rec = Rec(topic, partition, len(parts[partition]), key, value, list(headers or []))
        parts[partition].append(rec)
        return rec

    def records(self, topic: str) -> list[Rec]:
        return [r for part in self._parts(topic) for r in part]

    def compacted(self, topic: str, partition: int) -> dict[bytes, bytes]:
        out: dict[bytes, bytes] = {}
        for r in self._parts(topic)[partition]:
            if r.value is None:
                out.pop(r.key, None)
            else:
                out[r.key] = r.value
        return out

    def end(self, topic: str) -> dict[int, int]:
        return {p: len(part) for p, part in enumerate(self._parts(topic))}


class Faults:
    """``hit(op)`` is called before every operation; the ``at``-th call raises ``exc`` (a ``Crash`` by default).
    ``only`` limits the counting to some operations ("send", "flush", "poll", "commit", "committed")."""

    def __init__(
        self,
        at: int = 0,
        exc: BaseException | Callable[[], BaseException] | None = None,
        only: set[str] | None = None,
        times: int = 1,
    ) -> None:
        self.at, self.exc, self.only, self.times = at, exc, only, times
        self.count = 0
        self.ops: list[str] = []
        self.fired = 0

    def hit(self, op: str) -> None:
        if self.only is not None and op not in self.only:
            return
        self.count += 1
        self.ops.append(op)
        if self.at and self.count >= self.at and self.fired < self.times:
            self.fired += 1
            exc = self.exc() if callable(self.exc) else self.exc
            raise exc if exc is not None else Crash(f"crash at {op} #{self.count}")


NO_FAULTS = Faults()


class MemProducer:
    def __init__(self, log: KafkaLog, faults: Faults = NO_FAULTS) -> None:
        self.log = log
        self.faults = faults
        self.pending: list[tuple] = []
        self.closed = False

    def send(self, topic, key=None, value=None, partition=None, headers=None):
        self.faults.hit("send")
        if self.closed:
            raise RuntimeError("producer closed")
        self.pending.append((topic, key, value, headers, partition))

    def flush(self, timeout=None) -> None:
        self.faults.hit("flush")
        for topic, key, value, headers, partition in self.pending:
            self.log.append(topic, key, value, headers, partition)
        self.pending = []

    def crash(self, deliver: bool = False) -> None:
        """The process died: records only sent are lost, or (``deliver``) reached the broker anyway."""
        if deliver:
            for topic, key, value, headers, partition in self.pending:
                self.log.append(topic, key, value, headers, partition)
        self.pending = []
        self.closed = True

    def close(self, timeout=None) -> None:
        self.flush()
        self.closed = True


class MemConsumer:
    def __init__(
        self,
        log: KafkaLog,
        group: str,
        topics: list[str] | None = None,
        faults: Faults = NO_FAULTS,
        max_records: int = 500,
    ) -> None:
        self.log, self.group, self.faults, self.max_records = log, group, faults, max_records
        self.topics: list[str] = list(topics or [])
        self.listener = None
        self.assigned: list[TopicPartition] | None = None
        self.pos: dict[TopicPartition, int] = {}
        self.on_idle: Callable[[], None] | None = None  # called when a poll finds nothing new (e.g. stage.stop)

    def subscribe(self, topics, listener=None) -> None:
        self.topics, self.listener = list(topics), listener

    def _assign(self) -> None:
        self.assigned = [TopicPartition(t, p) for t in self.topics for p in range(self.log.partitions)]
        group = self.log.committed.get(self.group, {})
        self.pos = {tp: group[tp].offset if tp in group else 0 for tp in self.assigned}
        if self.listener is not None:
            self.listener.on_partitions_assigned(set(self.assigned))

    def poll(self, timeout_ms=0, max_records=None) -> dict:
        self.faults.hit("poll")
        if self.assigned is None:
            self._assign()
        room = min(max_records or self.max_records, self.max_records)
        out: dict[TopicPartition, list[Rec]] = {}
        for tp in self.assigned:
            part = self.log._parts(tp.topic)[tp.partition]
            got = part[self.pos[tp] : self.pos[tp] + room]
            if got:
                out[tp] = got
                self.pos[tp] += len(got)
                room -= len(got)
            if room <= 0:
                break
        if not out and self.on_idle is not None:
            self.on_idle()
        return out

    def commit(self, offsets=None) -> None:
        self.faults.hit("commit")
        if offsets is None:
            offsets = {tp: OffsetAndMetadata(p, "", -1) for tp, p in self.pos.items()}
        self.log.committed.setdefault(self.group, {}).update(offsets)

    def committed(self, tp, metadata=False):
        self.faults.hit("committed")
        om = self.log.committed.get(self.group, {}).get(tp)
        if om is None:
            return None
        return om if metadata else om.offset

    def assignment(self) -> set:
        return set(self.assigned or [])

    def seek(self, tp, offset: int) -> None:
        self.pos[tp] = offset

    def position(self, tp) -> int:
        return self.pos[tp]

    def highwater(self, tp) -> int | None:
        """The partition's end offset, as kafka-python reports it once a fetch has seen the partition."""
        return len(self.log._parts(tp.topic)[tp.partition]) if self.assigned is not None else None

    def caught_up(self) -> bool:
        return self.assigned is not None and all(
            self.pos[tp] >= len(self.log._parts(tp.topic)[tp.partition]) for tp in self.assigned
        )

    def close(self, autocommit=False) -> None:
        pass


class MemStateReader:
    def __init__(self, log: KafkaLog, topic: str) -> None:
        self.log, self.topic = log, topic

    def read(self, partition: int) -> dict[bytes, bytes]:
        return self.log.compacted(self.topic, partition)
