"""Motion-cut trips (devices without ignition events): the streaming track against the literal reference, on
random stop-and-go data split into messages of random size; edge cases; the rules' own examples."""

from dataclasses import replace

import numpy as np
import pytest

from scoring import reference as R
from scoring.motion import MotionRules, MotionTrack
from ubi.common.config import ScoringConfig
from ubi.common.messages import DeviceEvent, TelemetryBatch

RULES = MotionRules.of(ScoringConfig())


def batch(seq, t_ms, v, acc=None):
    n = len(t_ms)
    t_ms = np.asarray(t_ms, np.int64)
    z = np.zeros(n)
    return TelemetryBatch(
        "V",
        seq,
        int(t_ms[-1]) if n else 0,
        t_ms,
        z + 52.0,
        z + 4.0,
        np.asarray(v, float),
        z,
        np.full(n, 5.0) if acc is None else np.asarray(acc, float),
        int(t_ms[0]) if n else 0,
        10,
        np.zeros(0),
        np.zeros(0),
        np.zeros(0),
        None,
    )


def stream(t_s, v, sizes, acc=None, rules=RULES, silence_every=None):
    """Feed fixes as messages of the given sizes; returns cuts as (start_ms, end_ms, ended_by)."""
    tr = MotionTrack("V", rules)
    t_ms = np.round(np.asarray(t_s, float) * 1000).astype(np.int64)
    acc = np.full(t_ms.shape[0], 5.0) if acc is None else np.asarray(acc, float)
    out, i, seq = [], 0, 0
    for size in sizes:
        if i >= t_ms.shape[0]:
            break
        j = min(i + size, t_ms.shape[0])
        out += tr.feed(batch(seq, t_ms[i:j], v[i:j], acc[i:j]), 0, seq, 0)
        seq += 1
        i = j
    out += tr.finish()
    return [(c.start_ms, c.end_ms, c.ended_by) for c in out], tr


def reference(t_s, v, acc=None, rules=RULES):
    t_s, v = np.asarray(t_s, float), np.asarray(v, float)
    keep = np.ones(t_s.shape[0], bool) if acc is None else np.asarray(acc) <= rules.max_accuracy_m
    t_ms = np.round(t_s[keep] * 1000).astype(np.int64)
    ts, vs = (t_ms / 1000.0).tolist(), v[keep].tolist()
    trips = R.motion_reference(
        ts, vs, rules.move_m, rules.stop_s, rules.gap_s, rules.max_gap_s, rules.warmup_s, rules.moving_mps
    )
    return [(int(t_ms[a]), int(t_ms[b]), why) for a, b, why in trips]


def stop_and_go(seed, n_trips=4):
    """Drives separated by stops of random length, parking with the device on, and data gaps, at 1 Hz."""
    rng = np.random.default_rng(seed)
    t, v, now = [], [], 0.0
    for _ in range(n_trips):
        for _ in range(int(rng.integers(1, 5))):  # legs with short stops (traffic lights)
            m = int(rng.integers(20, 300))
            top = rng.uniform(5, 30)
            sp = np.concatenate([np.linspace(0, top, 10), np.full(m, top), np.linspace(top, 0, 10)])
            sp = np.concatenate([sp, np.zeros(int(rng.integers(1, 200)))])
            t += list(now + np.arange(sp.shape[0]))
            v += list(np.abs(sp + rng.normal(0, 0.1, sp.shape[0]) * (sp > 0)))
            now = t[-1] + 1
        kind = rng.integers(0, 4)
        if kind == 0:  # parked with the device on, GPS jitter
            k = int(rng.integers(150, 600))
            t += list(now + np.arange(k))
            v += list(np.abs(rng.normal(0, 0.2, k)))
            now = t[-1] + 1
        elif kind == 1:  # a short manoeuvre in a car park (under 200 m)
            sp = np.concatenate([np.zeros(30), np.full(20, 3.0), np.zeros(300)])
            t += list(now + np.arange(sp.shape[0]))
            v += list(sp)
            now = t[-1] + 1
        else:  # device off: a gap, shorter or longer than trip_gap_end_s
            now += float(rng.choice([15.0, 900.0, 5000.0]))
    return np.array(t), np.array(v)


@pytest.mark.parametrize("seed", range(25))
def test_streaming_track_matches_the_reference(seed):
    t, v = stop_and_go(seed)
    rng = np.random.default_rng(1000 + seed)
    acc = np.where(rng.random(t.shape[0]) < 0.03, 80.0, 5.0)  # a few fixes too inaccurate to use
    want = reference(t, v, acc)
    for sizes in ([1] * t.shape[0], list(rng.integers(1, 60, t.shape[0])), [t.shape[0]]):
        got, _ = stream(t, v, sizes, acc)
        assert got == want
    assert want, "the generator makes trips"


@pytest.mark.parametrize(
    "t,v,n",
    [
        ([], [], 0),
        ([0.0], [10.0], 0),
        (np.arange(600.0), np.full(600, 10.0), 1),  # constant speed: one trip over all of it
        (np.arange(600.0), np.full(600, 0.3), 0),  # creeping GPS jitter never makes a trip
        (np.arange(100.0), np.full(100, 1.5), 0),  # 150 m only
        (np.arange(600.0) * 11, np.full(600, 10.0), 0),  # fixes 11 s apart: no distance is integrated across them
    ],
)
def test_edges(t, v, n):
    t, v = np.asarray(t, float), np.asarray(v, float)
    got, _ = stream(t, v, [7] * 200)
    assert got == reference(t, v)
    assert len(got) == n


@pytest.mark.parametrize("stop_s,n", [(150, 1), (175, 2), (190, 2)])
def test_stop_is_180s_without_200m(stop_s, n):
    # 180 s "without moving 200 m" counts the approach too: 150 s standing + 30 s at 10 m/s is 300 m (no stop),
    # 175 s standing + 5 s at 10 m/s is 50 m (a stop, before the car has stood for 180 s)
    v = np.concatenate([np.full(100, 10.0), np.zeros(stop_s), np.full(100, 10.0), np.zeros(200)])
    got, _ = stream(np.arange(float(v.shape[0])), v, [10] * 100)
    assert len(got) == n
    assert got[0][0] == 0 and got[-1][1] == (100 + stop_s + 100) * 1000  # ends at the first standing fix
    assert got[-1][2] == "motion_stop"


def test_a_data_gap_ends_a_trip_and_a_new_segment_starts_parked():
    t = np.concatenate([np.arange(300.0), 4000 + np.arange(300.0)])
    got, _ = stream(t, np.full(600, 12.0), [1] * 600)
    assert got == [(0, 299_000, "data_gap"), (4_000_000, 4_299_000, "data_gap")]


def test_the_start_goes_back_over_the_warm_up_seconds_of_standing():
    v = np.concatenate([np.zeros(100), np.full(100, 10.0), np.zeros(300)])
    got, _ = stream(np.arange(500.0), v, [1] * 500)
    assert got == [(96_000, 200_000, "motion_stop")]  # moving from 100 s: the standing fix 99 s, minus 3 s


def test_parked_track_holds_only_the_window():
    """A vehicle parked with its device on keeps about stop_s + warm-up of messages, not its whole history."""
    v = np.abs(np.random.default_rng(0).normal(0, 0.2, 5000))
    tr = MotionTrack("V", RULES)
    for k in range(5000):
        tr.feed(batch(k, [k * 1000], [v[k]]), 0, k, 0)
    assert len(tr.msgs) <= RULES.stop_s + RULES.warmup_s + 2
    assert len(tr.ms) <= RULES.stop_s + RULES.warmup_s + 2
    assert tr.first_held().offset >= 5000 - 190


def test_silence_closes_like_the_gap_the_next_fix_would_show():
    v = np.concatenate([np.zeros(10), np.full(300, 12.0)])  # the device dies while driving
    tr = MotionTrack("V", RULES)
    for k in range(310):
        assert not tr.feed(batch(k, [k * 1000], [v[k]]), 0, k, k * 1000, k * 1000)
    assert tr.silence(309_000 + 3_599_000) == []  # not yet an hour
    cuts = tr.silence(309_000 + 3_600_000)
    assert [(c.start_ms, c.end_ms, c.ended_by) for c in cuts] == [(6_000, 309_000, "data_gap")]
    assert not tr.msgs  # nothing held any more: the commit moves on
    assert [m.batch.seq for m in cuts[0].messages] == list(range(6, 310))
    # data that arrives later anyway starts afresh; data of the closed trip is dropped
    assert tr.feed(batch(400, [300_000], [12.0]), 0, 400, 0) == []
    assert not tr.msgs


def test_repeats_are_dropped_and_a_message_split_by_a_cut_is_held_for_the_next_trip():
    v = np.concatenate([np.full(100, 10.0), np.zeros(200), np.full(100, 10.0), np.zeros(200)])
    t = np.arange(600.0)
    tr = MotionTrack("V", RULES)
    cuts = []
    for seq, i in enumerate(range(0, 600, 60)):
        b = batch(seq, (t[i : i + 60] * 1000).astype(np.int64), v[i : i + 60])
        cuts += tr.feed(b, 0, seq, 0)
        cuts += tr.feed(b, 0, seq, 0)  # the bridge may deliver twice
    cuts += tr.finish()
    assert [(c.start_ms, c.end_ms) for c in cuts] == [(0, 100_000), (296_000, 400_000)]
    assert [m.batch.seq for m in cuts[0].messages] == [0, 1]
    assert [m.batch.seq for m in cuts[1].messages] == [4, 5, 6]


# ---------------------------------------------------------------- in the trip cutter, with crashes and replays
def fleet_records(seed, motion_vehicles=3):
    """Motion vehicles (no ignition events) and one ignition vehicle, 10-fix messages interleaved by time."""
    items = []
    for k in range(motion_vehicles):
        t, v = stop_and_go(seed * 10 + k)
        t = t + k * 37.0
        for seq, i in enumerate(range(0, t.shape[0], 10)):
            items.append(replace(batch(seq, (t[i : i + 10] * 1000).astype(np.int64), v[i : i + 10]), vehicle=f"M{k}"))
    on_s = 50.0
    seq = 0
    for _ in range(4):
        items.append(DeviceEvent("I", seq, int(on_s * 1000), "ignition_on"))
        seq += 1
        for i in range(30):
            tt = (on_s + i * 10 + np.arange(10)) * 1000
            items.append(replace(batch(seq, tt.astype(np.int64), np.full(10, 12.0)), vehicle="I"))
            seq += 1
        items.append(DeviceEvent("I", seq, int((on_s + 300) * 1000), "ignition_off"))
        seq += 1
        on_s += 3000.0
    return sorted(items, key=received)  # in the order the devices send them (a message goes at its last fix)


def summary(trips):
    return {
        t.trip_id: (t.vehicle, t.start_ms, t.end_ms, t.ended_by, t.t_ms.tolist(), t.messages, t.complete) for t in trips
    }


def received(item):
    """The bridge receives each message as the device sends it (the cutter's clock for silence)."""
    return item.t_ms if hasattr(item, "t_ms") else item.sent_ms


def run_with_checkpoints(cutter, records, start, stop, every, durable):
    """Feed records[start:stop], checkpointing every ``every`` records as the scorer does: emitted trips count as
    durable from the checkpoint on, then state updates are stored, then the offset (with its watermark) is
    committed. Returns (trips made durable, trips emitted after the last checkpoint)."""
    done, pending = [], []
    for off in range(start, stop):
        pending += cutter.feed(records[off], 0, off, received(records[off]))
        if (off + 1 - start) % every == 0 or off + 1 == stop:
            pending += cutter.expire()
            done += pending
            pending = []
            durable["state"].update({v: st for v, (_, st) in cutter.take_state_updates().items()})
            durable["commit"] = cutter.held().get(0, (off + 1, cutter.wm.get(0, 0)))
    return done, pending


@pytest.mark.parametrize("seed", range(6))
def test_a_scorer_killed_anywhere_and_replayed_emits_each_trip_once_and_the_same(seed):
    from scoring.trips import TripCutter

    records = fleet_records(seed)
    clean_durable = {"state": {}, "commit": (0, 0)}
    clean_trips, _ = run_with_checkpoints(TripCutter(), records, 0, len(records), 7, clean_durable)
    clean = summary(clean_trips)
    motion = [t for t in clean.values() if t[0].startswith("M")]
    assert len(motion) >= 3 and len(clean) - len(motion) == 4
    rng = np.random.default_rng(seed)
    for crash_at in sorted(rng.choice(len(records), 12, replace=False)):
        durable = {"state": {}, "commit": (0, 0)}
        first = TripCutter()
        done, lost_or_not = run_with_checkpoints(first, records, 0, int(crash_at), 7, durable)
        got = summary(done + list(lost_or_not[: rng.integers(0, len(lost_or_not) + 1)]))
        second = TripCutter()
        committed, wm = durable["commit"]
        second.load_partition(0, wm, durable["state"])
        again, _ = run_with_checkpoints(second, records, committed, len(records), 7, durable)
        for tid, content in summary(again).items():
            assert got.get(tid, content) == content, (crash_at, tid)  # re-emitted: identical, upsert is a no-op
            got[tid] = content
        assert got == clean, crash_at


def test_a_backlog_uploaded_hours_late_gives_the_same_trips():
    """Store-and-forward: a device offline for the whole period uploads everything in one burst hours later, while
    the rest of its partition went on. Late is not silent: its trips are the ones it would have had live."""
    from scoring.trips import TripCutter

    records = fleet_records(3)
    on_time = summary(
        run_with_checkpoints(TripCutter(), records, 0, len(records), 7, {"state": {}, "commit": (0, 0)})[0]
    )
    late = [r for r in records if r.vehicle == "M0"]
    rest = [r for r in records if r.vehicle != "M0"]
    burst_at = max(received(r) for r in rest) + 2 * 3600_000
    cutter, got = TripCutter(), []
    for off, r in enumerate(rest):
        got += cutter.feed(r, 0, off, received(r))
    for off, r in enumerate(late, start=len(rest)):
        got += cutter.feed(r, 0, off, burst_at)
    # the partition goes on for another two hours: M0's last trip is closed by its silence, as it was on time
    got += cutter.feed(DeviceEvent("I", 10_000, burst_at, "ignition_on"), 0, len(records), burst_at + 2 * 3600_000)
    got += cutter.expire()
    mine = {k: v for k, v in on_time.items() if v[0] == "M0"}
    assert len(mine) >= 2
    assert {k: v for k, v in summary(got).items() if v[0] == "M0"} == mine
