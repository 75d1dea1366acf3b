"""Trip cutting: order, repeats, gaps, replays and the offsets that may be committed."""

from dataclasses import replace

import numpy as np

from scoring.trips import TripCutter, trip_id
from ubi.common.config import Config, IngestConfig
from ubi.common.messages import DeviceEvent, TelemetryBatch

T0 = 1_790_000_000_000


def batch(seq, t0_s, n=10, vehicle="V1", speed=10.0):
    t = T0 + (np.arange(n) + t0_s) * 1000
    z = np.zeros(n)
    return TelemetryBatch(
        vehicle,
        seq,
        int(t[-1]),
        t.astype(np.int64),
        z + 52,
        z + 4,
        z + speed,
        z,
        z + 3,
        int(t[0]),
        10,
        np.zeros(n * 10),
        np.zeros(n * 10),
        np.zeros(n * 10) + 9.8,
        None,
    )


def on(seq, t_s, vehicle="V1"):
    return DeviceEvent(vehicle, seq, T0 + t_s * 1000, "ignition_on")


def off(seq, t_s, vehicle="V1"):
    return DeviceEvent(vehicle, seq, T0 + t_s * 1000, "ignition_off")


def feed_all(cutter, items, partition=0, start_offset=0):
    out = []
    for i, item in enumerate(items):
        out += cutter.feed(item, partition, start_offset + i)
    return out


def test_trip_from_ignition_events():
    trips = feed_all(TripCutter(), [on(0, 0), batch(1, 0), batch(2, 10), off(3, 20)])
    assert len(trips) == 1
    t = trips[0]
    assert t.trip_id == trip_id("V1", T0) and t.complete and t.ended_by == "ignition_off"
    assert t.t_ms.shape == (20,) and (np.diff(t.t_ms) > 0).all()
    assert (t.start_ms, t.end_ms) == (T0, T0 + 20_000)


def test_out_of_order_and_repeats_give_the_same_trip():
    ordered = feed_all(TripCutter(), [on(0, 0), batch(1, 0), batch(2, 10), batch(3, 20), off(4, 30)])[0]
    c = TripCutter()
    shuffled = feed_all(c, [on(0, 0), batch(3, 20), batch(1, 0), batch(1, 0), off(4, 30), batch(2, 10), off(4, 30)])
    assert len(shuffled) == 1 and c.counters.repeats == 2
    assert np.array_equal(shuffled[0].t_ms, ordered.t_ms) and shuffled[0].trip_id == ordered.trip_id


def test_trip_waits_for_missing_seq_then_closes_on_next_trip():
    """Seq 2 never comes (dead-lettered): the later messages wait the reorder window (partition receive time)
    for it, then the trip goes on without it and closes when the next one starts."""
    c = TripCutter(ingest=IngestConfig(reorder_window_s=30))
    rx = [T0, T0 + 1_000, T0 + 2_000]
    assert [t for i, m in enumerate([on(0, 0), batch(1, 0), off(3, 20)]) for t in c.feed(m, 0, i, rx[i])] == []
    trips = c.feed(on(4, 100), 0, 3, T0 + 10_000)
    assert trips == [] and c.reseq.first_held() == {0: (2, T0 + 1_000)}  # held behind the gap
    assert c.held()[0][0] <= 2  # not committed past
    trips = c.feed(batch(5, 100), 0, 4, T0 + 40_000)
    assert len(trips) == 1 and not trips[0].complete and trips[0].ended_by == "next_trip"
    assert c.counters.incomplete == 1


def test_grace_timeout_closes_incomplete_trip():
    """Ten minutes (here 60 s) of the partition's receive time after ignition_off, a trip still missing a message
    closes; whether expire() ran in between or not, a message arriving later is not added to it."""

    def run(sweep: bool):
        c = TripCutter(close_grace_s=60, ingest=IngestConfig(reorder_window_s=5))
        out = []
        for off_, (item, rx) in enumerate(
            [(on(0, 0), T0), (batch(1, 0), T0 + 10_000), (off(3, 20), T0 + 20_000), (on(0, 0, "W"), T0 + 50_000)]
        ):
            out += c.feed(item, 0, off_, rx)
        assert c.expire() == [] and out == []
        out += c.feed(on(0, 80, "X"), 0, 4, T0 + 81_000)  # another vehicle moves the partition's clock on
        if sweep:
            out += c.expire()
        out += c.feed(batch(2, 10), 0, 5, T0 + 82_000)  # the missing message, too late
        out += c.expire()
        return out, c

    for sweep in (True, False):
        trips, c = run(sweep)
        assert [t.ended_by for t in trips] == ["grace_timeout"] and not trips[0].complete
        assert trips[0].t_ms.shape == (10,) and c.counters.repeats == 1


def test_orphans_and_old_repeats_are_dropped():
    c = TripCutter()
    c.load_partition(0, 0, {"V1": {"mode": "ignition"}})  # stored by the scorer that emitted the trip
    assert feed_all(c, [batch(5, 0), off(6, 10)]) == []  # tail of a trip already emitted before a restart
    assert c.counters.orphans == 0 and c.counters.reordered == 2  # held: its trip's start might still come
    assert feed_all(c, [on(7, 100), batch(8, 100), off(9, 110)], start_offset=2) == []  # 5 is still the lowest
    window_ms = c.reseq.window_ms
    assert len(c.feed(batch(0, 0, vehicle="V2"), 0, 5, received_ms=window_ms)) == 1  # the window ends: V1 starts
    assert c.counters.orphans == 2  # the tail, before the next trip's ignition_on
    assert feed_all(c, [on(7, 100), batch(8, 100)]) == []  # redelivered after the trip closed
    assert c.counters.repeats == 2


def offsets(cutter):
    """Per partition, the offset the scorer may commit up to (held() also gives the watermark there)."""
    return {p: off for p, (off, _) in cutter.held().items()}


def test_commit_offsets_never_pass_an_open_trip():
    c = TripCutter()
    feed_all(c, [on(0, 0, "A"), batch(1, 0, vehicle="A")], partition=0, start_offset=100)
    feed_all(c, [on(0, 0, "B")], partition=0, start_offset=200)
    feed_all(c, [on(0, 0, "C")], partition=1, start_offset=50)
    assert offsets(c) == {0: 100, 1: 50}
    feed_all(c, [off(2, 10, "A")], partition=0, start_offset=300)
    assert offsets(c) == {0: 200, 1: 50}
    c.drop_partitions({1})
    assert offsets(c) == {0: 200}


def test_replay_from_committed_offset_rebuilds_the_same_trips():
    """Kill after any record, restart from the committed offset: the emitted trip ids are the same set."""
    stream = []
    for k, v in enumerate(["A", "B", "A", "B"]):
        base = k * 1000
        seq0 = (k // 2) * 4  # one counter per device: its second trip goes on where the first ended
        stream += [
            on(seq0, base, v),
            batch(seq0 + 1, base, vehicle=v),
            batch(seq0 + 2, base + 10, vehicle=v),
            off(seq0 + 3, base + 20, v),
        ]
    # interleave the two vehicles' messages as a shared partition would
    order = sorted(range(len(stream)), key=lambda i: (stream[i].seq, stream[i].vehicle, i))
    records = [stream[i] for i in order]

    def summary(trips):
        return {
            t.trip_id: (
                t.start_ms,
                t.end_ms,
                t.t_ms.tolist(),
                t.imu_t_ms.tolist(),
                t.acc_lon.tolist(),
                t.phone.tolist(),
                t.complete,
            )
            for t in trips
        }

    clean = summary(feed_all(TripCutter(), records))
    assert len(clean) == 4
    for crash_at in range(len(records)):
        first = TripCutter()
        emitted = summary(feed_all(first, records[:crash_at]))
        committed, wm = first.held().get(0, (crash_at, first.wm.get(0, 0)))
        second = TripCutter()
        second.load_partition(0, wm, {v: st for v, (_, st) in first.take_state_updates().items()})
        replayed = summary(t for i in range(committed, len(records)) for t in second.feed(records[i], 0, i))
        for tid, content in replayed.items():  # a re-emitted trip is identical, so the upsert changes nothing
            assert emitted.get(tid, content) == content, crash_at
        emitted.update(replayed)
        assert emitted == clean, crash_at


def test_closed_trip_carries_imu_and_phone_in_time_order():
    b1 = batch(1, 0)
    b2 = batch(2, 10)
    b2 = TelemetryBatch(
        b2.vehicle,
        b2.seq,
        b2.sent_ms,
        b2.gps_t,
        b2.lat,
        b2.lon,
        b2.speed,
        b2.heading,
        b2.accuracy,
        b2.imu_t0,
        b2.imu_hz,
        np.arange(100.0),
        np.zeros(100),
        np.zeros(100),
        np.ones(10, np.uint8),
    )
    [t] = feed_all(TripCutter(), [on(0, 0), b2, b1, b1, off(3, 20)])
    assert t.imu_t_ms.shape == (200,) and (np.diff(t.imu_t_ms) == 100).all()
    assert t.acc_lon[100:].tolist() == list(range(100)) and (t.acc_lon[:100] == 0).all()
    assert t.phone.tolist() == [-1] * 10 + [1] * 10  # batch 1 reported nothing, batch 2 the phone in hand
    assert t.lat.shape == t.speed.shape == (20,)


def test_a_closed_trip_redelivered_after_a_restart_is_not_made_again():
    """The bridge may write a message twice (a crash before its MQTT ack). If the copies of a closed trip come after
    the scorer's commit and the scorer restarted in between, the stored last closed seq drops them: without it they
    would rebuild the trip from a few copies, incomplete, and the upsert would replace the complete row."""
    first = TripCutter()
    [trip] = feed_all(first, [on(0, 0), batch(1, 0), batch(2, 10), off(3, 20)])
    assert trip.complete
    second = TripCutter()
    second.load_partition(0, 0, {v: st for v, (_, st) in first.take_state_updates().items()})
    assert feed_all(second, [on(0, 0), batch(2, 10), off(3, 20)], start_offset=10) == []
    assert second.counters.repeats == 3
    assert len(feed_all(second, [on(4, 100), batch(5, 100), off(6, 110)], start_offset=20)) == 1


def test_a_trip_without_any_gps_fix_closes_with_empty_tracks():
    """Contract-valid: every batch has accelerometer samples and no fix (a garage, a tunnel). It used to raise
    IndexError in _concat_gps and take the scorer down."""
    nofix = [
        TelemetryBatch(
            "V1",
            s,
            T0 + s * 10_000,
            np.zeros(0, np.int64),
            *(np.zeros(0),) * 5,
            T0 + s * 10_000,
            10,
            np.zeros(100),
            np.zeros(100),
            np.zeros(100) + 9.8,
            None,
        )
        for s in (1, 2)
    ]
    [t] = feed_all(TripCutter(), [on(0, 0), *nofix, off(3, 20)])
    assert t.complete and t.t_ms.shape == (0,) and t.imu_t_ms.shape == (200,)


# ---------------------------------------------------------------- plausibility, ids, resets (issue 11, item 6)
DAY_S = 24 * 3600


def test_ignition_off_before_ignition_on_is_quarantined_not_stored():
    """The issue stored a trip of -1,800 s as complete."""
    c = TripCutter()
    assert feed_all(c, [on(0, 1800), batch(1, 1800), off(2, 0)]) == []
    [q] = c.take_quarantined()
    assert (q.what, q.reason, q.seqs) == ("trip", "negative_duration", (0, 1, 2))
    assert q.trip_id == trip_id("V1", T0 + 1_800_000)
    assert c.counters.quarantined == 1 and c.counters.closed == 0
    assert len(feed_all(c, [on(3, 2000), batch(4, 2000), off(5, 2010)], start_offset=3)) == 1  # the stream goes on


def test_a_trip_longer_than_max_trip_s_is_quarantined():
    """The issue stored a 34-day trip as complete."""
    c = TripCutter()
    assert feed_all(c, [on(0, 0), batch(1, 0), off(2, 34 * DAY_S)]) == []
    [q] = c.take_quarantined()
    assert q.reason == "trip_too_long" and q.end_ms - q.start_ms == 34 * DAY_S * 1000
    # a long but plausible trip (under a day by default) is a trip
    [t] = feed_all(c, [on(3, 40 * DAY_S), batch(4, 40 * DAY_S), off(5, 40 * DAY_S + 20 * 3600)], start_offset=3)
    assert t.complete and c.take_quarantined() == []


def test_max_trip_s_and_margin_come_from_the_ingest_config():
    cfg = Config()
    c = TripCutter.for_config(cfg.scoring, replace(cfg.ingest, max_trip_s=60.0, trip_window_margin_s=5.0))
    assert feed_all(c, [on(0, 0), batch(1, 0), off(2, 61)]) == []
    assert [q.reason for q in c.take_quarantined()] == ["trip_too_long"]
    [t] = feed_all(c, [on(3, 100), batch(4, 100), batch(5, 120), off(6, 110)], start_offset=3)  # 5: 20 s late
    assert not t.complete and [q.reason for q in c.take_quarantined()] == ["outside_trip_window"]


def test_a_batch_far_outside_its_trip_is_quarantined_and_the_trip_flagged_incomplete():
    """The issue: a batch 33 days old inside a 10-minute trip added its distance."""
    start = 40 * DAY_S
    c = TripCutter()
    items = [on(0, start), batch(1, start), batch(2, start - 33 * DAY_S), batch(3, start + 590), off(4, start + 600)]
    [t] = feed_all(c, items)
    assert not t.complete and t.t_ms.shape == (20,) and t.t_ms.min() >= T0 + start * 1000
    assert t.imu_t_ms.shape == (200,) and t.messages == 4
    [q] = c.take_quarantined()
    assert (q.what, q.reason, q.seqs, q.trip_id) == ("message", "outside_trip_window", (2,), t.trip_id)
    # a few seconds of skew between events and samples is normal and stays in the trip
    c = TripCutter()
    [t] = feed_all(c, [on(0, 5), batch(1, 0), batch(2, 10), off(3, 15)])
    assert t.complete and c.take_quarantined() == []


def test_two_trips_with_the_same_ignition_time_get_two_ids_and_others_keep_theirs():
    """The issue: the second trip had the first one's trip_id, so the store's upsert replaced the first."""
    c = TripCutter()
    first = feed_all(c, [on(0, 0), batch(1, 0), off(2, 10)])
    second = feed_all(c, [on(3, 0), batch(4, 20), off(5, 30)], start_offset=3)
    third = feed_all(c, [on(6, 100), batch(7, 100), off(8, 110)], start_offset=6)
    assert first[0].trip_id == trip_id("V1", T0) and third[0].trip_id == trip_id("V1", T0 + 100_000)
    assert second[0].trip_id == trip_id("V1", T0, 3) != first[0].trip_id
    # deterministic after a restart: the stored state knows where the previous trip started
    c1 = TripCutter()
    feed_all(c1, [on(0, 0), batch(1, 0), off(2, 10)])
    c2 = TripCutter()
    c2.load_partition(0, 0, {v: st for v, (_, st) in c1.take_state_updates().items()})
    assert feed_all(c2, [on(3, 0), batch(4, 20), off(5, 30)], start_offset=3)[0].trip_id == second[0].trip_id


def test_a_sequence_reset_after_a_reboot_does_not_drop_later_trips():
    """The issue: after a reboot (seq back to 0) every trip was dropped as an old repeat until seq passed the old
    value again."""
    c = TripCutter()
    feed_all(c, [on(100, 0), batch(101, 0), off(102, 10)])
    trips = feed_all(
        c, [on(0, 500), batch(1, 500), off(2, 510), on(3, 900), batch(4, 900), off(5, 910)], start_offset=3
    )
    assert [(t.start_ms, t.complete) for t in trips] == [(T0 + 500_000, True), (T0 + 900_000, True)]
    assert c.counters.resets == 1 and c.counters.repeats == 0
    # repeats of the old trip (not later than it) and of the new one are still dropped
    assert feed_all(c, [on(100, 0), batch(101, 0), on(0, 500), batch(4, 900)], start_offset=9) == []
    assert c.counters.repeats == 4 and c.counters.resets == 1


def test_a_reset_while_a_trip_is_open_closes_it_and_starts_the_next():
    c = TripCutter()
    assert feed_all(c, [on(100, 0), batch(101, 0)]) == []  # the device reboots before its ignition_off
    [old] = feed_all(c, [on(0, 300), batch(1, 300)], start_offset=2)
    assert (old.ended_by, old.complete) == ("next_trip", False)
    # a late duplicate of the old trip's message (its seq now in the new trip's range) is not taken into it
    assert feed_all(c, [on(100, 0), batch(101, 0), batch(2, -10)], start_offset=4) == []
    assert c.counters.repeats == 3
    [new] = feed_all(c, [off(2, 310)], start_offset=7)
    assert new.complete and new.start_ms == T0 + 300_000 and c.counters.resets == 1
    assert new.t_ms.min() >= T0 + 300_000


def test_a_reset_is_recognised_after_a_restart_and_old_state_records_still_load():
    c1 = TripCutter()
    feed_all(c1, [on(100, 0), batch(101, 0), off(102, 10)])
    state = {v: st for v, (_, st) in c1.take_state_updates().items()}
    assert state["V1"] == {"mode": "ignition", "closed_seq": 102, "closed_start_ms": T0, "closed_end_ms": T0 + 10_000}
    c2 = TripCutter()
    c2.load_partition(0, 0, state)
    assert len(feed_all(c2, [on(0, 500), batch(1, 500), off(2, 510)], start_offset=3)) == 1
    # a record written before closed_end_ms existed: no reset can be told from a repeat, so as before
    c3 = TripCutter()
    c3.load_partition(0, 0, {"V1": {"mode": "ignition", "closed_seq": 102}})
    assert feed_all(c3, [on(0, 500), batch(1, 500), off(2, 510)], start_offset=3) == []
    assert c3.counters.resets == 0 and c3.counters.repeats == 3


def test_resets_collisions_and_quarantine_replay_to_the_same_outcome():
    """Killed after any record and restarted from the committed offset with the stored state: the same trips (same
    ids and contents) and the same quarantine records."""
    records = [
        on(0, 0),
        batch(1, 0),
        off(2, 10),  # trip 1
        on(3, 0),
        batch(4, 20),
        off(5, 30),  # same ignition time as trip 1
        on(6, 900),
        batch(7, 900 - 33 * DAY_S),
        batch(8, 900),
        off(9, 910),  # an out-of-window batch
        on(10, 2000),
        off(11, 1000),  # negative duration
        on(0, 3000),
        batch(1, 3000),
        off(2, 3010),  # reboot: seq from 0
        on(6, 900),
        batch(7, 900),  # late duplicates from before it
        on(3, 4000),
        batch(4, 4000),
    ]  # open at the end

    def summary(trips):
        return {t.trip_id: (t.start_ms, t.end_ms, t.t_ms.tolist(), t.complete, t.messages) for t in trips}

    clean_cutter = TripCutter()
    clean = summary(feed_all(clean_cutter, records))
    clean_q = {(q.reason, q.trip_id, q.seqs) for q in clean_cutter.take_quarantined()}
    assert len(clean) == 4 and {r for r, _, _ in clean_q} == {"outside_trip_window", "negative_duration"}
    for crash_at in range(len(records)):
        first = TripCutter()
        emitted = summary(feed_all(first, records[:crash_at]))
        quarantined = {(q.reason, q.trip_id, q.seqs) for q in first.take_quarantined()}
        committed, wm = first.held().get(0, (crash_at, first.wm.get(0, 0)))
        second = TripCutter()
        second.load_partition(0, wm, {v: st for v, (_, st) in first.take_state_updates().items()})
        replayed = summary(t for i in range(committed, len(records)) for t in second.feed(records[i], 0, i))
        for tid, content in replayed.items():
            assert emitted.get(tid, content) == content, crash_at
        emitted.update(replayed)
        quarantined |= {(q.reason, q.trip_id, q.seqs) for q in second.take_quarantined()}
        assert emitted == clean, crash_at
        assert quarantined == clean_q, crash_at


def test_messages_out_of_order_across_trips_give_the_same_trips():
    """The chaos harness lost trips when a device resent after a broker crash: a trip's batches reached Kafka
    before its ignition_on and were dropped as orphans. The resequencer puts each device's messages back in seq
    order first (scoring/resequence.py), so any arrival order within the window gives the trips of the in-order
    stream, and nothing is committed past a message still held."""
    import random

    stream = [on(0, 0), batch(1, 0), batch(2, 10), off(3, 20), on(4, 100), batch(5, 100), batch(6, 110), off(7, 120)]

    def trips_of(order, c=None):
        c = c or TripCutter()
        c.reseq.start_after("V1", -1)  # a known device (its state says what came before); see the first-contact note
        got = [t for i, m in enumerate(order) for t in c.feed(m, 0, i, T0 + i * 1000)]
        return [(t.trip_id, t.complete, t.messages, t.t_ms.tolist()) for t in got], c

    clean, _ = trips_of(stream)
    assert len(clean) == 2 and all(t[1] for t in clean)
    rng = random.Random(3)
    for _ in range(30):
        order = stream[:]
        rng.shuffle(order)
        got, c = trips_of(order)
        assert got == clean, [m.seq for m in order]
        assert c.held() == {} and c.reseq.held == {}
    # a resent copy and an older duplicate do not change anything either
    got, c = trips_of([batch(5, 100), *stream, stream[2], stream[5]])
    assert got == clean


def test_a_held_message_is_released_when_the_window_passes_and_replays_hold_it_again():
    c = TripCutter(ingest=IngestConfig(reorder_window_s=10))
    assert c.feed(on(0, 0), 0, 0, T0) == [] and c.feed(batch(2, 10), 0, 1, T0 + 1_000) == []  # seq 1 missing
    assert c.held() == {0: (0, 0)}  # the open trip's ignition_on comes first anyway
    assert c.reseq.held["V1"].keys() == {2} and c.reseq.first_held() == {0: (1, T0)}
    c.feed(off(3, 20), 0, 2, T0 + 2_000)
    trips = c.feed(on(0, 0, "OTHER"), 0, 3, T0 + 12_000)  # the partition's clock passes the window
    assert trips == [] and c.reseq.held == {} and c.reseq.skipped == 1
    assert c.open["V1"].off is not None and sorted(c.open["V1"].batches) == [2]


def test_a_new_boot_id_marks_a_reboot_even_when_the_clock_went_back_too():
    """Issue 11: a reboot was recognised only from the time (a new ignition_on later than everything before), so a
    device whose clock was reset with its counter lost every trip until seq passed the old value. With the
    contract's boot id a restart is recognised from it; a repeat of an old ignition_on (an old boot) still is not."""

    def on_b(seq, t_s, boot):
        return DeviceEvent("V1", seq, T0 + t_s * 1000, "ignition_on", boot)

    stream = [on_b(100, 1000, "boot-a"), batch(101, 1000), off(102, 1010)]
    after = [on_b(0, 500, "boot-b"), batch(1, 500), off(2, 510)]  # counter and clock both went back
    without = TripCutter()
    feed_all(without, stream + [DeviceEvent(m.vehicle, m.seq, m.t_ms, m.event) if isinstance(m, DeviceEvent) else m
                                for m in after])  # fmt: skip
    assert without.counters.resets == 0 and without.counters.repeats >= 1  # lost as repeats
    c = TripCutter()
    trips = feed_all(c, stream + after)
    assert [(t.start_ms, t.complete) for t in trips] == [(T0 + 1_000_000, True), (T0 + 500_000, True)]
    assert c.counters.resets == 1
    # the old boot's ignition_on delivered again is a repeat, not another reboot
    assert feed_all(c, [on_b(100, 1000, "boot-a")], start_offset=6) == [] and c.counters.resets == 1
    # and the boots are durable: a restarted cutter knows them
    state = {v: st for v, (_, st) in c.take_state_updates().items()}
    assert state["V1"]["boots"] == ["boot-a", "boot-b"]
    again = TripCutter()
    again.load_partition(0, 0, state)
    assert again.boots["V1"] == ["boot-a", "boot-b"]


def test_an_old_report_resent_during_a_motion_trip_is_not_counted_in_it():
    """The chaos harness: after Mosquitto crashes, devices resend; a parked report from before a motion trip that
    arrived again during the trip was counted among the trip's messages (28 more, the same distance and fixes), so
    the trip differed from the clean run. A motion trip's messages are those with samples inside it."""
    parked = [batch(i, 10 * i, speed=0.0) for i in range(30)]
    moving = [batch(30 + i, 300 + 10 * i, speed=15.0) for i in range(30)]
    tail = [batch(60 + i, 600 + 60 * i, speed=0.0) for i in range(6)]

    def trip_of(items):
        c = TripCutter()
        [t] = feed_all(c, items) + c.finish()
        return t.messages, t.seq_first, t.seq_last, t.t_ms.tolist()

    clean = trip_of(parked + moving + tail)
    resent = parked[5:25]  # delivered again in the middle of the trip
    assert trip_of(parked + moving[:10] + resent + moving[10:] + tail) == clean


def test_a_new_vehicles_batches_before_its_ignition_on_still_make_a_complete_trip():
    """Two bridges reorder a vehicle's first messages: the cluster tests saw a new vehicle's first batches reach
    Kafka before its ignition_on; taken in arrival order they were orphans and the trip came out short."""
    c = TripCutter()
    assert feed_all(c, [batch(2, 10), batch(1, 0)]) == []  # held: the trip's start is still on the way
    trips = feed_all(c, [on(0, 0), off(3, 20)], start_offset=2)
    assert len(trips) == 1 and trips[0].complete and trips[0].messages == 4 and trips[0].t_ms.shape == (20,)
    assert c.counters.orphans == 0


def test_a_device_without_ignition_events_starts_once_the_window_ends():
    """A motion-cut device never sends an ignition_on: its first data waits out the resequencer's window of receive
    time once, then flows; nothing is lost and the commit stays behind what is held."""
    c = TripCutter()
    for i in range(3):
        assert c.feed(batch(i, 10 * i), 0, i, received_ms=1_000 * i) == []
    assert offsets(c) == {0: 0}
    window_ms = c.reseq.window_ms
    c.feed(batch(3, 30), 0, 3, received_ms=window_ms + 1_000)  # its own traffic moves the watermark on
    assert 0 not in c.reseq.held and c.reseq.last["V1"] == 3
    assert offsets(c) == {0: 0}  # the motion track now holds them (uncommitted until its trip closes)
    trips = c.finish()
    assert len(trips) == 1 and trips[0].messages == 4


def test_a_motion_device_known_from_the_stored_state_starts_at_once_after_a_restart():
    """The scorer's durable state says the vehicle closed a motion trip: after a restart its replay starts at its
    first message (a new vehicle would wait for an ignition_on); one never seen still waits."""
    c = TripCutter()
    c.load_partition(0, 0, {"V1": {"closed_to_ms": T0}})
    assert c.feed(batch(7, 10), 0, 0, received_ms=1_000) == [] and c.reseq.last["V1"] == 7
    assert not c.waiting_to_start() and c.counters.reordered == 0
    c.feed(batch(0, 10, vehicle="V2"), 0, 1, received_ms=1_000)
    assert c.waiting_to_start() and c.counters.reordered == 1


def test_a_quiet_stream_starts_vehicles_that_wait_for_an_ignition_on():
    """No traffic moves the watermark: start_waiting releases a new vehicle's held data in seq order (nothing else)."""
    c = TripCutter()
    for i, s in enumerate((1, 0, 2)):
        c.feed(batch(s, 10 * s), 0, i, received_ms=1_000)
    c.feed(on(0, 0, vehicle="V2"), 0, 3, received_ms=1_000)
    c.feed(batch(2, 0, vehicle="V2"), 0, 4, received_ms=1_000)  # a gap (seq 1 missing): not a start, stays held
    assert c.waiting_to_start() and c.start_waiting() == []
    assert c.reseq.last["V1"] == 2 and c.counters.started_quiet == 1 and 2 in c.reseq.held["V2"]
    assert [m.batch.seq for m in c.tracks["V1"].msgs] == [0, 1, 2]
    assert offsets(c) == {0: 0}  # the motion track holds them: nothing committed past them


def test_a_later_trips_ignition_on_first_does_not_start_a_new_vehicle():
    """One of two bridges killed: Mosquitto kept routing every other message of a new vehicle to the dead bridge's
    session, so the odd seqs of its first trip and its second trip's ignition_on arrived before the first trip's
    ignition_on (resent by the device). Starting at that ignition_on cut the first trip by motion (a data gap, 147
    messages) and orphaned 115 batches; the vehicle starts at the lowest seq only when that is an ignition_on."""
    trip_a = [on(0, 0), batch(1, 0), batch(2, 10), batch(3, 20), off(4, 30)]
    trip_b = [on(5, 100), batch(6, 100), batch(7, 110), off(8, 120)]
    first_bridge = [m for m in trip_a + trip_b if m.seq % 2]
    resent = [m for m in trip_a + trip_b if not m.seq % 2]
    c = TripCutter()
    trips = feed_all(c, first_bridge + resent)
    got = [(t.messages, t.complete, t.ended_by) for t in trips]
    assert got == [(5, True, "ignition_off"), (4, True, "ignition_off")]
    assert c.counters.orphans == 0 and c.counters.motion_closed == 0 and not c.reseq.held
