"""The walking skeleton on the real services: a seeded fleet through Mosquitto, the bridge, Kafka, the scorer,
the store and pricing. Every simulated trip lands in DuckDB exactly once, with the right distance, and the
premiums are the rulebook applied by hand."""

from __future__ import annotations

import time
from decimal import ROUND_HALF_UP, Decimal

import polars as pl

from pricing.rulebook import load_rulebook
from scoring.trips import trip_id
from simulator.player import play_fleet
from ubi.adapters import duckdb_store as store
from ubi.adapters.duckdb_store import load_policies, run_month
from ubi.stages.store import read_status, status_path


def wait_for_trips(cfg, n: int, stages, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    got = 0
    while time.monotonic() < deadline:
        got = read_status(status_path(cfg)).get("trips", 0)
        if got >= n:
            return got
        for s in stages:
            assert s.proc.poll() is None, f"{s.name} died; log:\n{s.log.read_text()[-3000:]}"
        time.sleep(0.3)
    return got


def by_hand(rb, base: Decimal, trips: int, km: float, brakes: int, accels: int) -> Decimal:
    """The starter rulebook applied with plain arithmetic, independently of pricing.engine."""
    if trips < rb.min_trips or km < rb.min_km:
        factor = Decimal("1")
    else:
        g = 1.0
        for f in rb.factors:
            x = (brakes if f.feature == "harsh_brakes_per_100km" else accels) * 100.0 / km
            g *= next(b.relativity for b in f.bands if b.lo <= x < b.hi)
        z = km / (km + rb.k_km)
        factor = Decimal(repr(min(max(1 + z * (g - 1), rb.factor_floor), rb.factor_ceiling)))
        factor = factor.quantize(Decimal("0.0001"), ROUND_HALF_UP)
    uncapped = (base * factor).quantize(Decimal("0.01"), ROUND_HALF_UP)
    hi = (base * Decimal(repr(1 + rb.max_increase))).quantize(Decimal("0.01"), ROUND_HALF_UP)
    lo = (base * Decimal(repr(1 - rb.max_decrease))).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return min(max(uncapped, lo), hi)


def test_fleet_end_to_end(env):
    cfg = env.config
    stages = [
        env.start("bridge", "--client-id", f"it-{env.tag}-bridge"),
        env.start("score", "--client-id", "s1"),
        env.start("store", "--client-id", "st1"),
    ]
    spec = env.fleet(vehicles=4, days=3, seed=11)
    out = env.path / "sim"
    sent, trips = play_fleet(cfg, spec, out, show=False)
    expected = {trip_id(t.vehicle_id, t.start_ms): t for ts in trips.values() for t in ts}
    assert len(expected) >= 10
    got = wait_for_trips(cfg, len(expected), stages)
    assert got == len(expected)
    for s in stages:
        assert s.stop() == 0, s.log.read_text()[-2000:]

    con = store.connect(cfg.db_path)
    rows = con.execute(
        "SELECT trip_id, vehicle_id, epoch_ms(start_ts), distance_km, harsh_brakes FROM trips"
    ).fetchall()
    assert len(rows) == len({r[0] for r in rows}) == len(expected)  # every trip exactly once
    truth_events = pl.read_parquet(out / "truth_events.parquet")
    for tid, vehicle, start_ms, km, brakes in rows:
        truth = expected[tid]
        assert (vehicle, start_ms) == (truth.vehicle_id, truth.start_ms)
        assert abs(km * 1000 - truth.distance_m) <= 0.01 * truth.distance_m, (tid, km, truth.distance_m)
        true_brakes = truth_events.filter(
            (pl.col("trip_start_ms") == start_ms)
            & (pl.col("vehicle_id") == vehicle)
            & (pl.col("type") == "harsh_brake")
        ).height
        assert brakes == true_brakes

    load_policies(con, out / "policies.parquet")
    rb = load_rulebook(cfg.rulebook)
    month = spec.start.replace(day=1)
    run_month(con, rb, month, actor="it")
    prem = con.execute(
        """
        SELECT p.policy_id, p.premium, pol.base_premium, count(t.trip_id), coalesce(sum(t.distance_km), 0),
               coalesce(sum(t.harsh_brakes), 0), coalesce(sum(t.harsh_accels), 0)
        FROM premiums p JOIN policies pol USING (policy_id)
        LEFT JOIN trips t ON t.vehicle_id = pol.vehicle_id AND date_trunc('month', t.start_ts) = p.month
        WHERE p.month = ? GROUP BY ALL""",
        [month],
    ).fetchall()
    assert len(prem) == spec.vehicles  # one row per policy: grouped by its id (two policies may share base and premium)
    for _policy, premium, base, n, km, hb, ha in prem:
        assert premium == by_hand(rb, base, n, km, hb, ha)
    con.close()
