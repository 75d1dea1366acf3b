"""Data completeness (issue 11): a device that withholds or loses messages shows it (seq gaps inside a trip and
between ignition trips), and the rulebook's min_completeness takes the discount away, never adds a surcharge."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from pricing.engine import MonthFeatures, price_policy, statement
from pricing.rulebook import load_rulebook, parse_rulebook
from scoring.trips import TripCutter
from tests.test_trips import batch, feed_all, off, on
from ubi.adapters import duckdb_store as store
from ubi.adapters.duckdb_store import run_month
from ubi.common.errors import RulebookError

STARTER = Path(__file__).resolve().parents[1] / "pricing" / "rulebooks" / "starter.toml"
RB = load_rulebook(STARTER)
OCT = 1_790_900_000_000  # 2026-10-02


def test_closed_trips_carry_their_seq_span():
    cutter = TripCutter()  # seq 12 never arrives: the trip closes incomplete when the stream ends
    ign = feed_all(cutter, [on(10, 0), batch(11, 0), batch(13, 10), off(14, 20)]) + cutter.finish()
    assert [(t.seq_first, t.seq_last, t.messages, t.complete) for t in ign] == [(10, 14, 4, False)]
    cutter = TripCutter()  # no ignition events: cut by motion; the span is the trip's batches
    moving = [batch(100 + i, 10 * i, speed=15.0) for i in range(30)]
    parked = [batch(130 + i, 300 + 60 * i, speed=0.0) for i in range(6)]
    trips = feed_all(cutter, moving + parked) + cutter.finish()
    assert len(trips) == 1 and trips[0].seq_first >= 100 and trips[0].seq_last <= 135
    assert trips[0].seq_last - trips[0].seq_first + 1 == trips[0].messages


def _trip(i: int, seq_first: int, seq_last: int, messages: int, ended_by: str = "ignition_off") -> dict:
    start = OCT + i * 3_600_000
    return {
        "trip_id": f"c{i}", "vehicle_id": "V1", "start_ms": start, "end_ms": start + 1_800_000,
        "duration_s": 1800.0, "distance_km": 25.0, "moving_s": 1800.0, "idle_s": 0.0, "max_speed_kmh": 80.0,
        "mean_speed_kmh": 50.0, "harsh_brakes": 0, "harsh_accels": 0, "gps_fixes": 1800, "gps_dropped": 0,
        "messages": messages, "complete": messages == seq_last - seq_first + 1, "ended_by": ended_by,
        "scorer_version": "1", "seq_first": seq_first, "seq_last": seq_last,
    }  # fmt: skip


@pytest.fixture
def db(tmp_path: Path):
    con = store.connect(tmp_path / "c.duckdb")
    con.execute("INSERT INTO policies VALUES ('P1', 'V1', '2025-01-01', 60.00, 'B', '25-39', 'north')")
    yield con
    con.close()


def test_completeness_counts_gaps_inside_and_between_ignition_trips_only(db):
    store.upsert_trips(
        db,
        [
            _trip(0, 0, 181, 182),  # complete
            _trip(1, 182, 363, 170),  # 12 missing inside
            _trip(2, 500, 681, 182),  # 136 missing before it (364..499): a withheld trip
            _trip(3, 5, 186, 182),  # seq went down: a reboot, not a gap
            _trip(4, 900, 1000, 101, ended_by="motion_stop"),  # cut by motion: gaps before it are parked reports
        ],
    )
    row = db.execute(
        "SELECT trips, messages, missing_in_trips, missing_between_trips, completeness FROM v_completeness"
    ).fetchone()
    assert row[:4] == (5, 182 * 3 + 170 + 101, 12, 136)
    assert row[4] == pytest.approx(817 / (817 + 12 + 136))


def _premium(db, rb, month=date(2026, 10, 1)):
    run_month(db, rb, month, actor="tester")
    import json

    premium, trace = db.execute("SELECT premium, trace FROM premiums WHERE policy_id = 'P1'").fetchone()
    return premium, json.loads(trace)


def test_withholding_a_trip_never_pays(db, tmp_path):
    """A careful driver with 10 complete trips earns a discount; the same driver with one trip withheld (a seq gap
    between ignition trips) gets no discount under min_completeness, and the trace and statement say why."""
    rows, seq = [], 0
    for i in range(10):
        rows.append(_trip(i, seq, seq + 181, 182))
        seq += 182
    store.upsert_trips(db, rows)
    full, trace = _premium(db, RB)
    assert trace["completeness"] == {"share": 1.0, "min": RB.min_completeness, "no_discount": False}
    assert full < 60  # the discount of a clean month (no events)
    other = store.connect(tmp_path / "withheld.duckdb")  # the same month where c5 (seqs 910..1091) never arrives
    other.execute("INSERT INTO policies VALUES ('P1', 'V1', '2025-01-01', 60.00, 'B', '25-39', 'north')")
    store.upsert_trips(other, rows[:5] + rows[6:])
    withheld, trace = _premium(other, RB)
    assert trace["completeness"]["no_discount"] and trace["completeness"]["share"] == pytest.approx(0.9, abs=1e-3)
    assert withheld == 60  # no discount; no surcharge either
    off_rb = parse_rulebook(RB.text.replace("min_completeness = 0.95", "min_completeness = 0.0"))
    assert _premium(other, off_rb)[0] < 60  # without the rule the withheld month would have paid
    store.upsert_trips(db, [rows[5]])  # and the trip arriving late (a replay) closes the gap again
    assert store.upsert_trips(other, [rows[5]]) == 1 and _premium(other, RB) == (full, _premium(db, RB)[1])
    other.close()


def test_below_min_completeness_a_surcharge_still_applies():
    risky = MonthFeatures(trips=20, km=500.0, driving_hours=10.0, harsh_brakes=60, harsh_accels=60, completeness=0.5)
    r = price_policy(RB, 60, None, risky)
    assert r.factor > 1 and r.trace["completeness"]["no_discount"]
    safe = price_policy(RB, 60, None, MonthFeatures(20, 500.0, 10.0, 0, 0, completeness=0.5))
    assert safe.factor == 1 and "no discount applies" in statement("October 2026", safe)


@pytest.mark.parametrize("value", ["1.5", "-0.1", '"high"'])
def test_min_completeness_out_of_range_is_refused_with_its_line(value):
    text = RB.text.replace("min_completeness = 0.95", f"min_completeness = {value}")
    with pytest.raises(RulebookError) as err:
        parse_rulebook(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("min_completeness"))
    assert f"line {line}" in str(err.value)


def test_a_months_completeness_sees_the_gap_after_last_months_trip(db):
    """Pricing reads two months of trips, not the whole table: the trip before the month still counts."""
    from datetime import date as d

    sept = _trip(0, 0, 181, 182)
    sept["start_ms"] -= 3 * 86_400_000  # 2026-09-29
    sept["end_ms"] -= 3 * 86_400_000
    store.upsert_trips(db, [sept, _trip(1, 300, 481, 182)])  # 118 seqs never arrived between them
    row = db.execute(
        "SELECT messages, missing_in_trips, missing_between_trips FROM month_completeness(?, ?)",
        [d(2026, 10, 1), d(2026, 11, 1)],
    ).fetchone()
    assert row == (182, 0, 118)


def test_a_draft_rulebook_keeps_the_live_settings_min_completeness_included():
    """Both draft writers (ubi actuary fit, fit --book) build their settings with rulebook.settings_toml; a draft
    used to drop min_completeness, so adopting it would have brought back the discount for withheld data."""
    from pricing.rulebook import settings_toml

    text = "\n".join(
        settings_toml(RB, header="# draft", version="v-draft", today=date(2026, 11, 1), notes="n", prohibited=["x"])
    )
    back = parse_rulebook(text + "\n")
    for name in ("k_km", "min_trips", "min_km", "min_completeness", "factor_floor", "factor_ceiling", "max_increase"):
        assert getattr(back, name) == getattr(RB, name), name
    assert back.min_completeness == 0.95 and back.effective_from == date(2026, 11, 1)
