"""Trip cutting: order, repeats, gaps, replays and the offsets that may be committed."""

import numpy as np

from ubi.common.messages import DeviceEvent, TelemetryBatch
from scoring.trips import TripCutter, trip_id

T0 = 1_790_000_000_000


def batch(seq, t0_s, n=10, vehicle="V1", speed=10.0):
    t = T0 + (np.arange(n) + t0_s) * 1000
    z = np.zeros(n)
    return TelemetryBatch(vehicle, seq, int(t[-1]), t.astype(np.int64), z + 52, z + 4, z + speed, z, z + 3,
                          int(t[0]), 10, np.zeros(n * 10), np.zeros(n * 10), np.zeros(n * 10) + 9.8, None)


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
    c = TripCutter()
    assert feed_all(c, [on(0, 0), batch(1, 0), off(3, 20)]) == []  # seq 2 missing (dead-lettered)
    trips = feed_all(c, [on(4, 100), batch(5, 100)])
    assert len(trips) == 1 and not trips[0].complete and trips[0].ended_by == "next_trip"
    assert c.counters.incomplete == 1


def test_grace_timeout_closes_incomplete_trip():
    """Ten minutes (here 60 s) of the partition's receive time after ignition_off, a trip still missing a message
    closes; whether expire() ran in between or not, a message arriving later is not added to it."""
    def run(sweep: bool):
        c = TripCutter(close_grace_s=60)
        out = []
        for off_, (item, rx) in enumerate([(on(0, 0), T0), (batch(1, 0), T0 + 10_000), (off(3, 20), T0 + 20_000),
                                           (on(0, 0, "W"), T0 + 50_000)]):
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
    assert c.counters.orphans == 2
    feed_all(c, [on(7, 100), batch(8, 100), off(9, 110)])
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
        seq0 = (k // 2) * 10
        stream += [on(seq0, base, v), batch(seq0 + 1, base, vehicle=v), batch(seq0 + 2, base + 10, vehicle=v),
                   off(seq0 + 3, base + 20, v)]
    # interleave the two vehicles' messages as a shared partition would
    order = sorted(range(len(stream)), key=lambda i: (stream[i].seq, stream[i].vehicle, i))
    records = [stream[i] for i in order]
    def summary(trips):
        return {t.trip_id: (t.start_ms, t.end_ms, t.t_ms.tolist(), t.imu_t_ms.tolist(), t.acc_lon.tolist(),
                            t.phone.tolist(), t.complete) for t in trips}

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
    b2 = TelemetryBatch(b2.vehicle, b2.seq, b2.sent_ms, b2.gps_t, b2.lat, b2.lon, b2.speed, b2.heading, b2.accuracy,
                        b2.imu_t0, b2.imu_hz, np.arange(100.0), np.zeros(100), np.zeros(100), np.ones(10, np.uint8))
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
    nofix = [TelemetryBatch("V1", s, T0 + s * 10_000, np.zeros(0, np.int64), *(np.zeros(0),) * 5, T0 + s * 10_000, 10,
                            np.zeros(100), np.zeros(100), np.zeros(100) + 9.8, None) for s in (1, 2)]
    [t] = feed_all(TripCutter(), [on(0, 0), *nofix, off(3, 20)])
    assert t.complete and t.t_ms.shape == (0,) and t.imu_t_ms.shape == (200,)
