"""Policies and scored trips for the pricing tests (test_pricing, test_offbalance, test_objection_pricing,
test_subject_rights): one trip row builder and the small October book several of them price by hand. The tests
keep their own expected figures; this module only builds input."""

from __future__ import annotations

OCT_2_MS = 1_790_900_000_000  # 2026-10-02 00:13:20 UTC: trip i starts i hours later, all inside October 2026

# policy_id -> the row of `policies`: vehicle, start date, base premium, vehicle group, age band, region
POLICIES = {
    "P1": ("V1", "2025-01-01", 60.00, "B", "25-39", "north"),
    "P2": ("V2", "2025-01-01", 50.00, "A", "40-64", "south"),
}


def trip(
    i: int,
    km: float = 25.0,
    brakes: int = 0,
    accels: int = 0,
    vehicle: str = "V1",
    trip_id: str | None = None,
) -> dict:
    """A complete 30-minute trip (ended by ignition off) of ``vehicle`` starting ``i`` hours after OCT_2_MS."""
    start = OCT_2_MS + i * 3_600_000
    return {
        "trip_id": trip_id or f"t{i}",
        "vehicle_id": vehicle,
        "start_ms": start,
        "end_ms": start + 1_800_000,
        "duration_s": 1800.0,
        "distance_km": km,
        "moving_s": 1800.0,
        "idle_s": 0.0,
        "max_speed_kmh": 80.0,
        "mean_speed_kmh": 50.0,
        "harsh_brakes": brakes,
        "harsh_accels": accels,
        "gps_fixes": 1800,
        "gps_dropped": 0,
        "messages": 182,
        "complete": True,
        "ended_by": "ignition_off",
        "scorer_version": "1",
    }


def add_policies(con, *ids: str) -> None:
    """Insert the named policies of POLICIES (P1: V1, base 60.00; P2: V2, base 50.00)."""
    for pid in ids:
        con.execute("INSERT INTO policies VALUES (?, ?, ?, ?, ?, ?, ?)", [pid, *POLICIES[pid]])


def v1_october() -> list[dict]:
    """V1's October: 20 trips x 25 km (500 km), 2 harsh brakes and 3 fast starts in all (on the first trips)."""
    return [trip(i, 25.0, brakes=int(i < 2), accels=int(i < 3)) for i in range(20)]
