"""A small priced store for the statement and portal tests: two policies, three months of trips, priced with the
starter rulebook. P1 is capped up, then down, then priced freely; P2 (gated in November) is the other policy that
nobody may see from P1's session."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

from pricing.rulebook import load_rulebook
from ubi.adapters import duckdb_store as store
from ubi.adapters import portal_store as ps
from ubi.common.config import Config

RB = load_rulebook(Config().rulebook)
MONTHS = [date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1)]
# per month for V1: (trips, km per trip, harsh brakes in total, fast starts in total)
V1_PLAN = [(12, 30.0, 30, 12), (14, 30.0, 2, 0), (16, 30.0, 6, 3)]
V2_PLAN = [(10, 25.0, 2, 0), (10, 25.0, 9, 4), (3, 10.0, 0, 0)]  # November: too little driving (gated)


def _trip(vehicle: str, month: date, i: int, km: float, brakes: int, accels: int) -> dict:
    start = int(datetime(month.year, month.month, 2 + i, 7, 30, tzinfo=timezone.utc).timestamp() * 1000)
    return {
        "trip_id": f"{vehicle}-{month:%Y%m}-{i:02d}",
        "vehicle_id": vehicle,
        "start_ms": start,
        "end_ms": start + 1_800_000,
        "duration_s": 1800.0,
        "distance_km": km,
        "moving_s": 1700.0,
        "idle_s": 100.0,
        "max_speed_kmh": 90.0,
        "mean_speed_kmh": 60.0,
        "harsh_brakes": brakes,
        "harsh_accels": accels,
        "gps_fixes": 1800,
        "gps_dropped": 0,
        "messages": 180,
        "complete": True,
        "ended_by": "ignition_off",
        "scorer_version": "1",
    }


def trips_for(vehicle: str, plan: list[tuple[int, float, int, int]]) -> list[dict]:
    rows = []
    for month, (n, km, brakes, accels) in zip(MONTHS, plan, strict=True):
        for i in range(n):  # the month's events spread over its trips, totals exactly as planned
            b = brakes // n + int(i < brakes % n)
            a = accels // n + int(i < accels % n)
            rows.append(_trip(vehicle, month, i, km, b, a))
    return rows


def build(path: Path) -> None:
    con = ps.connect(path)
    con.execute(
        "INSERT INTO policies VALUES ('P1', 'V1', '2025-01-01', 60.00, 'B', '25-39', 'north'),"
        "('P2', 'V2', '2025-01-01', 50.00, 'A', '40-64', 'south')"
    )
    store.upsert_trips(con, trips_for("V1", V1_PLAN) + trips_for("V2", V2_PLAN))
    for m in MONTHS:
        store.run_month(con, RB, m, actor="test")
    con.close()
