"""pricing.month_sums: the per-policy sums a month's streamed trips are added into, against plain NumPy; and the
store's month book read through them, against a plain SQL GROUP BY of the same trips (objections and
completeness included)."""

from __future__ import annotations

import random
from datetime import date

import numpy as np
import pytest

from pricing.month_sums import MonthSums, add_batch
from tests.test_trip_links import T0, _fleet
from ubi.adapters import duckdb_store as store


def _reference(n: int, batches: list[tuple]) -> MonthSums:
    """np.add.at adds in element order, as the kernel does, so the float sums are equal to the bit."""
    out = MonthSums.zeros(n)
    for idx, kept, km, mov, br, ac, msg, miss in batches:
        np.add.at(out.messages, idx, msg)
        np.add.at(out.missing, idx, miss)
        k = idx[kept]
        np.add.at(out.trips, k, 1)
        np.add.at(out.km, k, km[kept])
        np.add.at(out.moving_s, k, mov[kept])
        np.add.at(out.harsh_brakes, k, br[kept])
        np.add.at(out.harsh_accels, k, ac[kept])
    return out


def _batch(rng: np.random.Generator, n: int, rows: int) -> tuple:
    return (
        rng.integers(0, n, rows),
        rng.random(rows) < 0.9,
        rng.gamma(2.0, 6.0, rows),
        rng.random(rows) * 3600,
        rng.integers(0, 5, rows),
        rng.integers(0, 3, rows),
        rng.integers(0, 400, rows),
        rng.integers(0, 3, rows) * rng.integers(0, 2, rows),
    )


@pytest.mark.parametrize("seed", range(5))
def test_kernel_equals_numpy_on_random_batches(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 500))
    batches = [_batch(rng, n, int(rng.integers(0, 3000))) for _ in range(int(rng.integers(1, 6)))]
    got = MonthSums.zeros(n)
    for b in batches:
        add_batch(got, *b)
    want = _reference(n, batches)
    for name in ("trips", "km", "moving_s", "harsh_brakes", "harsh_accels", "messages", "missing"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
    assert np.array_equal(got.completeness(), want.completeness())


def test_edge_cases():
    s = MonthSums.zeros(3)
    add_batch(s, *(np.zeros(0, t) for t in (np.int64, bool, float, float, np.int64, np.int64, np.int64, np.int64)))
    assert s.trips.sum() == 0 and list(s.completeness()) == [1.0, 1.0, 1.0]  # nothing expected: complete
    idx = np.array([2, 2])
    add_batch(s, idx, np.array([False, False]), np.ones(2), np.ones(2), *(np.ones(2, np.int64),) * 2,
              np.array([5, 0]), np.array([0, 5]))  # fmt: skip
    assert list(s.trips) == [0, 0, 0] and s.km[2] == 0.0  # objected trips count for completeness only
    assert s.completeness()[2] == 0.5 and s.messages[2] == 5 and s.missing[2] == 5
    with pytest.raises(ValueError, match="policy numbers"):
        add_batch(s, np.array([3]), *(np.ones(1, t) for t in (bool, float, float, int, int, int, int)))
    with pytest.raises(ValueError, match="as long as idx"):
        add_batch(s, np.array([0, 1]), *(np.ones(1, t) for t in (bool, float, float, int, int, int, int)))


GROUP_BY = """
SELECT p.policy_id, count(t.trip_id) FILTER (WHERE NOT t.ex), coalesce(sum(t.distance_km) FILTER (WHERE NOT t.ex), 0),
       coalesce(sum(t.harsh_brakes) FILTER (WHERE NOT t.ex), 0),
       coalesce(sum(t.harsh_accels) FILTER (WHERE NOT t.ex), 0)
FROM policies p LEFT JOIN (
    SELECT *, trip_id IN (SELECT trip_id FROM trip_objections WHERE status <> 'rejected') AS ex FROM trips
    WHERE start_ts >= $lo AND start_ts < $hi) t USING (vehicle_id)
GROUP BY p.policy_id ORDER BY p.policy_id
"""


def test_the_month_book_is_the_group_by_of_its_trips(tmp_path):
    """Features of the trips not objected to (pending and accepted objections leave, rejected ones count), the
    completeness of all of them (month_completeness), policies without trips at zero and complete."""
    rng = random.Random(3)
    con = store.connect(tmp_path / "m.duckdb")
    trips = _fleet(rng)
    store.upsert_trips(con, trips)
    for v in range(5):  # V4 has a policy and no trips
        con.execute(f"INSERT INTO policies VALUES ('P{v}', 'V{v}', '2025-01-01', 60.00, 'B', '25-39', 'north')")
    lo, hi = date(2026, 10, 1), date(2026, 11, 1)
    in_month = [t for t in trips if T0 + 30 * 86_400_000 <= t["start_ms"] < T0 + 61 * 86_400_000]
    for k, t in enumerate(rng.sample(in_month, 9)):
        status = ("pending", "accepted", "rejected")[k % 3]
        con.execute(
            "INSERT INTO trip_objections VALUES (?, ?, ?, 'passenger', ?, now()::TIMESTAMP, NULL, NULL, NULL)",
            [f"o{k}", "P" + t["vehicle_id"][1:], t["trip_id"], status],
        )
    ids, book, _ = store.PricingTables(con).month_book(lo)
    want = con.execute(GROUP_BY, {"lo": lo, "hi": hi}).fetchall()
    assert list(ids) == [w[0] for w in want]
    assert [int(x) for x in book.trips] == [w[1] for w in want] and book.trips.sum() > 0
    assert np.allclose(book.km, [w[2] for w in want], rtol=1e-12)
    assert [int(x) for x in book.harsh_brakes] == [w[3] for w in want]
    assert [int(x) for x in book.harsh_accels] == [w[4] for w in want]
    comp = dict(con.execute("SELECT 'P' || substr(vehicle_id, 2), completeness FROM month_completeness(?, ?)",
                            [lo, hi]).fetchall())  # fmt: skip
    assert list(book.completeness) == pytest.approx([comp.get(i, 1.0) for i in ids], rel=1e-12)
    assert min(comp.values()) < 1 and book.completeness[-1] == 1.0
    con.close()
