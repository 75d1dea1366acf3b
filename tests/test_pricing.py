"""Pricing: hand-computed premiums, caps, first month, no data, every validation error, idempotent runs."""

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from pricing.engine import MonthFeatures, price_policy, statement
from pricing.rulebook import load_rulebook, parse_rulebook
from tests.pricing_data import add_policies, trip, v1_october
from ubi.adapters import duckdb_store as store
from ubi.adapters.duckdb_store import run_month
from ubi.common.config import Config
from ubi.common.errors import RulebookError

STARTER = Config().rulebook
RB = load_rulebook(STARTER)
TEXT = STARTER.read_text()


def test_hand_computed_example():
    # 500 km, 20 trips, 2 brakes (0.4/100km -> 'rare' 0.80), 3 fast starts (0.6/100km -> 'rare' 0.95)
    # g = 0.76; Z = 500 / (500 + 500) = 0.5; factor = 1 + 0.5 * (0.76 - 1) = 0.88; 60.00 * 0.88 = 52.80
    # previous 60.00 -> floor of the cap 60 * 0.85 = 51.00 < 52.80: no cap
    r = price_policy(RB, Decimal("60.00"), None, MonthFeatures(20, 500.0, 10.0, 2, 3))
    assert (r.factor, r.uncapped, r.premium, r.cap_applied) == (
        Decimal("0.8800"),
        Decimal("52.80"),
        Decimal("52.80"),
        "none",
    )
    assert r.trace["factors"][0]["band"] == "rare" and r.trace["credibility"]["z"] == 0.5


def test_cap_on_increase():
    # 100 km, 10 trips, 8 brakes (8/100km -> 1.30), 4 starts (4/100km -> 1.10): g = 1.43
    # Z = 100 / 600 = 1/6; factor = 1 + 0.43/6 = 1.071667 -> 1.0717; 50 * 1.0717 = 53.585 -> 53.59
    # previous 48.00: high = 52.80 -> capped
    r = price_policy(RB, Decimal("50.00"), Decimal("48.00"), MonthFeatures(10, 100.0, 3.0, 8, 4))
    assert r.factor == Decimal("1.0717") and r.uncapped == Decimal("53.59")
    assert (r.premium, r.cap_applied) == (Decimal("52.80"), "increase")
    assert "capped" in statement("October 2026", r)


def test_cap_on_decrease_and_floor():
    rb = parse_rulebook(TEXT.replace("k_km = 500.0", "k_km = 0.001"))  # full credibility
    # 1000 km, no events: g = 0.80 * 0.95 = 0.76 -> factor 0.76 (floor 0.70 not reached); 100 * 0.76 = 76.00
    # previous 100.00, max decrease 15% -> 85.00
    r = price_policy(rb, Decimal("100.00"), Decimal("100.00"), MonthFeatures(40, 1000.0, 20.0, 0, 0))
    assert r.factor == Decimal("0.7600") and (r.premium, r.cap_applied) == (Decimal("85.00"), "decrease")
    rb2 = parse_rulebook(
        TEXT.replace("k_km = 500.0", "k_km = 0.001").replace("factor_floor = 0.70", "factor_floor = 0.90")
    )
    assert price_policy(rb2, Decimal("100.00"), None, MonthFeatures(40, 1000.0, 20.0, 0, 0)).factor == Decimal("0.9000")


@pytest.mark.parametrize(
    "f", [MonthFeatures(0, 0.0, 0.0, 0, 0), MonthFeatures(4, 400.0, 5.0, 9, 9), MonthFeatures(30, 49.9, 2.0, 0, 0)]
)
def test_no_or_too_little_data_keeps_base(f):
    r = price_policy(RB, Decimal("55.55"), None, f)
    assert r.gated and r.factor == Decimal("1.0000") and r.premium == Decimal("55.55")
    assert "at least 5 trips" in statement("October 2026", r)


def test_first_month_caps_against_base():
    r = price_policy(RB, Decimal("50.00"), None, MonthFeatures(10, 100.0, 3.0, 8, 4))
    assert r.previous_premium == Decimal("50.00") and r.premium == Decimal("53.59")  # within +10% of base


@pytest.mark.parametrize(
    "change,message",
    [
        (('feature = "harsh_accels_per_100km"', 'feature = "gender"'), "prohibited factor"),
        (('feature = "harsh_accels_per_100km"', 'feature = "region_risk"'), "prohibited factor"),
        (('feature = "harsh_accels_per_100km"', 'feature = "colour"'), "unknown feature"),
        (("to = 1.5, relativity", "to = 1.4, relativity"), "gap between 1.4 and 1.5"),
        (("to = 1.5, relativity", "to = 1.7, relativity"), "overlap at 1.5"),
        (('relativity = 1.30, label = "very', 'relativity = 9.0, label = "very'), "relativity 9.0 outside"),
        (("{ from = 6.0, relativity", "{ from = 6.0, to = 9.0, relativity"), "open-ended"),
        (("{ from = 0.0, to = 0.5", "{ from = 0.1, to = 0.5"), "must start at 0"),
        (("k_km = 500.0", 'k_km = "many"'), "line 19 (credibility.k_km): expected number"),
        (("max_increase = 0.10", "max_increase = 3.0"), "out of range"),
        (('effective_from = "2026-01-01"', 'effective_from = "someday"'), "not an ISO date"),
        (("[base]", "[basis]"), "unknown section"),
        (('version = "2026.11-starter"', "version = 3"), "expected str"),
    ],
)
def test_every_validation_error_is_reported(change, message):
    bad = TEXT.replace(*change)
    assert bad != TEXT
    with pytest.raises(RulebookError) as err:
        parse_rulebook(bad, "edited.toml")
    assert message in str(err.value) and "edited.toml" in str(err.value)


def test_not_toml_is_refused():
    with pytest.raises(RulebookError, match="not valid TOML"):
        parse_rulebook("[meta\nversion=", "x.toml")


@pytest.fixture
def db(tmp_path: Path):
    con = store.connect(tmp_path / "t.duckdb")
    add_policies(con, "P1", "P2")
    store.upsert_trips(con, v1_october())  # V1: 20 trips x 25 km, 2 brakes, 3 fast starts in October
    yield con
    con.close()


def test_monthly_run_matches_hand_computation_and_is_idempotent(db):
    s1 = run_month(db, RB, date(2026, 10, 1), actor="tester")
    s2 = run_month(db, RB, date(2026, 10, 1), actor="tester")
    assert s1.policies == s2.policies == 2
    rows = db.execute("SELECT policy_id, premium, cap_applied, rulebook_sha256 FROM premiums ORDER BY 1").fetchall()
    assert rows == [("P1", Decimal("52.80"), "none", RB.sha256), ("P2", Decimal("50.00"), "none", RB.sha256)]
    assert db.execute("SELECT count(*) FROM monthly_features").fetchone()[0] == 2
    assert db.execute("SELECT count(*) FROM runs WHERE finished_at IS NOT NULL").fetchone()[0] == 2
    assert db.execute("SELECT count(*) FROM audit WHERE action = 'price_month'").fetchone()[0] == 2
    assert db.execute("SELECT count(*) FROM rulebooks").fetchone()[0] == 1
    # November has no trips: V1 keeps October's premium as 'previous', and gets its base back within the cap
    run_month(db, RB, date(2026, 11, 1), actor="tester")
    prev, new = db.execute(
        "SELECT previous_premium, premium FROM premiums WHERE policy_id='P1' AND month='2026-11-01'"
    ).fetchone()
    assert (prev, new) == (Decimal("52.80"), Decimal("58.08"))  # 60.00 uncapped, +10% cap on 52.80


def test_trip_upsert_is_idempotent(db):
    before = db.execute("SELECT count(*), sum(distance_km) FROM trips").fetchone()
    store.upsert_trips(db, [trip(0, 25.0, brakes=1, accels=1)])  # t0 again, as stored
    assert db.execute("SELECT count(*), sum(distance_km) FROM trips").fetchone() == before
