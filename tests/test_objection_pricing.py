"""A trip the policyholder objected to is out of pricing while the objection is pending or accepted, the trace
names it and the run's summary counts it; a rejected objection puts the trip back (issue 15)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from pricing.engine import MonthFeatures, price_policy
from pricing.rulebook import load_rulebook
from tests.pricing_data import add_policies, trip
from ubi.adapters import duckdb_store as store
from ubi.adapters.duckdb_store import run_month
from ubi.common.config import Config

RB = load_rulebook(Config().rulebook)
OCT = date(2026, 10, 1)


@pytest.fixture
def db(tmp_path: Path):
    con = store.connect(tmp_path / "t.duckdb")
    add_policies(con, "P1")
    # 8 trips x 20 km with 1 brake each, and one 40 km trip with 6 brakes: the one a passenger drove
    store.upsert_trips(con, [trip(i, 20.0, 1, 0) for i in range(8)] + [trip(8, 40.0, 6, 2)])
    yield con
    con.close()


def object_to(con, trip_id: str, status: str) -> None:
    con.execute(
        "INSERT OR REPLACE INTO trip_objections VALUES ('o1', 'P1', ?, 'passenger', ?, now()::TIMESTAMP,"
        " NULL, NULL, NULL)",
        [trip_id, status],
    )


def priced(con) -> tuple[Decimal, dict]:
    premium, trace = con.execute("SELECT premium, trace FROM premiums WHERE policy_id = 'P1'").fetchone()
    return premium, json.loads(trace)


@pytest.mark.parametrize("status", ["pending", "accepted"])
def test_objected_trip_is_out_of_the_month_and_named_in_the_trace(db, status):
    s0 = run_month(db, RB, OCT, actor="t")
    before, trace0 = priced(db)
    assert s0.excluded_trips == 0 and "excluded_trips" not in trace0
    assert before == price_policy(RB, Decimal("60.00"), None, MonthFeatures(9, 200.0, 2.5, 14, 2)).premium
    object_to(db, "t8", status)
    s1 = run_month(db, RB, OCT, actor="t")
    after, trace = priced(db)
    # exactly the rulebook on the eight remaining trips: 160 km, 8 brakes (5/100 km), no fast starts
    assert after == price_policy(RB, Decimal("60.00"), None, MonthFeatures(8, 160.0, 8 * 0.5, 8, 0)).premium
    assert after != before
    assert trace["features"]["trips"] == 8 and trace["features"]["harsh_brakes"] == 8
    assert trace["excluded_trips"] == [{"trip_id": "t8", "objection": "passenger", "status": status, "km": 40.0}]
    assert s1.excluded_trips == 1


def test_rejected_objection_counts_the_trip_again(db):
    run_month(db, RB, OCT, actor="t")
    before, _ = priced(db)
    object_to(db, "t8", "rejected")
    s = run_month(db, RB, OCT, actor="t")
    after, trace = priced(db)
    assert after == before and s.excluded_trips == 0 and "excluded_trips" not in trace
