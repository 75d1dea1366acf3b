"""The store keeps each trip's pair (the vehicle's trip before it: prev_*) so that a month's completeness is one
aggregate. These tests hold the kept pair to a plain-Python reference, and the month's completeness to the window
over two months of trips that it replaced, whatever order and batches the trips arrive in."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

import pytest

from ubi.adapters import duckdb_store as store

DAY_MS = 86_400_000
T0 = 1_788_220_800_000  # 2026-09-01
ENDS = ["ignition_off", "ignition_off", "next_trip", "timeout", "motion_stop", "end_of_data"]

# The month's completeness as it was computed before the pair was stored: a window over the trips of the month
# and the 31 days before it (the oracle).
WINDOW_MONTH = """
SELECT vehicle_id, count(*), sum(messages), sum(missing_in_trip), sum(missing_before)
FROM (SELECT trip_id, vehicle_id, start_ts, messages,
             CASE WHEN seq_first IS NOT NULL AND seq_last IS NOT NULL
                  THEN greatest(seq_last - seq_first + 1 - messages, 0) ELSE 0 END AS missing_in_trip,
             CASE WHEN ended_by IN ('ignition_off', 'next_trip', 'grace_timeout', 'timeout')
                   AND w_ended_by IN ('ignition_off', 'next_trip', 'grace_timeout', 'timeout')
                   AND seq_first > w_seq_last
                  THEN seq_first - w_seq_last - 1 ELSE 0 END AS missing_before
      FROM (SELECT *, lag(seq_last) OVER w AS w_seq_last, lag(ended_by) OVER w AS w_ended_by
            FROM trips WHERE start_ts >= CAST($lo AS TIMESTAMP) - INTERVAL 31 DAY AND start_ts < $hi
            WINDOW w AS (PARTITION BY vehicle_id ORDER BY start_ts, seq_first, trip_id)))
WHERE start_ts >= $lo GROUP BY vehicle_id ORDER BY vehicle_id
"""


def _trip(vehicle: str, start_ms: int, seq_first: int | None, messages: int, ended_by: str) -> dict:
    seq_last = None if seq_first is None else seq_first + messages - 1 + random.choice([0, 0, 0, 3])
    return {
        "trip_id": f"{vehicle}-{start_ms}", "vehicle_id": vehicle, "start_ms": start_ms,
        "end_ms": start_ms + 1_200_000, "duration_s": 1200.0, "distance_km": 12.0, "moving_s": 1100.0,
        "idle_s": 100.0, "max_speed_kmh": 70.0, "mean_speed_kmh": 40.0, "harsh_brakes": 0, "harsh_accels": 0,
        "gps_fixes": 1100, "gps_dropped": 0, "messages": messages, "complete": True, "ended_by": ended_by,
        "scorer_version": "t", "seq_first": seq_first, "seq_last": seq_last,
    }  # fmt: skip


def _fleet(rng: random.Random) -> list[dict]:
    """Four vehicles over ~150 days: trips hours to 70 days apart (beyond the stored look-back), seqs with gaps,
    reboots and missing values, ignition and motion ends."""
    random.seed(rng.random())
    trips = []
    for v in range(4):
        t, seq = T0 + rng.randrange(DAY_MS), rng.randrange(1000)
        while t < T0 + 150 * DAY_MS:
            messages = rng.randrange(1, 60)
            first = None if rng.random() < 0.05 else seq
            trips.append(_trip(f"V{v}", t, first, messages, rng.choice(ENDS)))
            seq += messages + (rng.randrange(1, 40) if rng.random() < 0.2 else 0)
            if rng.random() < 0.05:
                seq = rng.randrange(100)  # a reboot
            gap = rng.choice([2, 5, 20, 30]) * 3_600_000 if rng.random() < 0.9 else rng.randrange(20, 70) * DAY_MS
            t += gap + rng.randrange(3_600_000)
    return trips


def _reference(trips: list[dict]) -> dict[str, tuple]:
    """Each trip's pair by the definition: the vehicle's trip before it (start, seq_first, trip_id order; a missing
    seq_first last, as SQL sorts NULL), if it started at most LINK_DAYS earlier."""
    out: dict[str, tuple] = {}
    by_vehicle: dict[str, list[dict]] = {}
    for tr in trips:
        by_vehicle.setdefault(tr["vehicle_id"], []).append(tr)
    for rows in by_vehicle.values():
        rows.sort(key=lambda r: (r["start_ms"], r["seq_first"] is None, r["seq_first"] or 0, r["trip_id"]))
        prev = None
        for r in rows:
            if prev is not None and prev["start_ms"] >= r["start_ms"] - store.LINK_DAYS * DAY_MS:
                start = datetime(1970, 1, 1) + timedelta(milliseconds=prev["start_ms"])
                out[r["trip_id"]] = (start, prev["seq_last"], prev["ended_by"])
            else:
                out[r["trip_id"]] = (None, None, None)
            prev = r
    return out


def _stored(con) -> dict[str, tuple]:
    rows = con.execute("SELECT trip_id, prev_start_ts, prev_seq_last, prev_ended_by FROM trips").fetchall()
    return {r[0]: r[1:] for r in rows}


def _months(con) -> list:
    got = []
    for m in (date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1), date(2026, 12, 1), date(2027, 1, 1)):
        hi = date(m.year + m.month // 12, m.month % 12 + 1, 1)
        window = con.execute(WINDOW_MONTH, {"lo": m, "hi": hi}).fetchall()
        stored = con.execute(
            "SELECT vehicle_id, trips, messages, missing_in_trips, missing_between_trips "
            "FROM month_completeness($lo, $hi) ORDER BY vehicle_id",
            {"lo": m, "hi": hi},
        ).fetchall()
        assert stored == window, m
        got.append(stored)
    return got


@pytest.mark.parametrize("seed", range(6))
def test_the_kept_pair_is_the_trip_before_whatever_the_arrival_order(tmp_path, seed):
    rng = random.Random(seed)
    trips = _fleet(rng)
    arrivals = trips[:]
    rng.shuffle(arrivals)  # late trips land between stored ones, and before them
    arrivals += rng.sample(trips, len(trips) // 5)  # replays
    con = store.connect(tmp_path / "t.duckdb")
    i = 0
    while i < len(arrivals):
        k = rng.choice([1, 1, 3, 10, 40])
        store.upsert_trips(con, arrivals[i : i + k])
        i += k
    assert _stored(con) == _reference(trips)
    months = _months(con)
    assert any(row[4] > 0 for month in months for row in month), "the fleet has gaps between trips"
    con.close()


def test_a_rescored_trip_changes_its_successors_pair(tmp_path):
    con = store.connect(tmp_path / "t.duckdb")
    a, b = _trip("V1", T0, 0, 10, "ignition_off"), _trip("V1", T0 + 3_600_000, 30, 10, "ignition_off")
    store.upsert_trips(con, [a, b])
    assert _stored(con)[b["trip_id"]][1] == a["seq_last"]
    a2 = {**a, "seq_last": 25, "messages": 26, "ended_by": "timeout"}  # the same trip, re-scored longer
    store.upsert_trips(con, [a2])
    assert _stored(con)[b["trip_id"]][1:] == (25, "timeout")
    con.close()


def test_an_older_file_gets_its_pairs_on_upgrade(tmp_path):
    """A schema-version-2 file has no pairs: opening it fills them in once, as the upsert would have."""
    trips = _fleet(random.Random(7))
    path = tmp_path / "old.duckdb"
    con = store.connect(path)
    store.upsert_trips(con, trips)
    con.execute("UPDATE trips SET prev_start_ts = NULL, prev_seq_last = NULL, prev_ended_by = NULL")
    con.execute("UPDATE schema_info SET version = 2")
    con.close()
    con = store.connect(path)
    assert con.execute("SELECT version FROM schema_info").fetchall() == [(3,)]
    assert _stored(con) == _reference(trips)
    _months(con)
    con.close()
