"""A large priced-month workload without MQTT: policies and a month of scored trips straight into DuckDB.

For benchmarks and tests of the pricing run and actuary tools at book scale. Drivers follow the same latent
profile formulas as ``simulator.fleet.driver_profile`` (drawn vectorised from one generator, since a per-vehicle
generator costs ~10 us each); trips have gamma distances and Poisson harsh events at the driver's rates.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import duckdb
import numpy as np
import polars as pl

from simulator.claims import AGE_P, AGES, GROUP_P, GROUPS, stops_per_100km
from simulator.fleet import REGIONS

GROUP_BASE = {"A": 0.85, "B": 1.0, "C": 1.2, "D": 1.5}
AGE_BASE = {"18-24": 1.8, "25-39": 1.0, "40-64": 0.9, "65+": 1.1}


def bulk_policies(n: int, seed: int = 1, first: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng([seed, 71, first])
    group = rng.choice(GROUPS, n, p=GROUP_P)
    age = rng.choice(AGES, n, p=AGE_P)
    base = 55.0 * np.vectorize(GROUP_BASE.__getitem__)(group) * np.vectorize(AGE_BASE.__getitem__)(age)
    nums = np.arange(first, first + n)
    return pl.DataFrame(
        {
            "policy_id": [f"PB{i:08d}" for i in nums],
            "vehicle_id": [f"VB{i:08d}" for i in nums],
            "start_date": np.datetime64("2024-01-01") + rng.integers(0, 600, n).astype("timedelta64[D]"),
            "base_premium": np.round(base, 2),
            "vehicle_group": group,
            "age_band": age,
            "region": rng.choice(REGIONS, n),
            "gender": rng.choice(["female", "male"], n),
        }
    )


def bulk_trips(vehicles: list[str], trips_each: int, month: date, seed: int = 1, first: int = 1) -> pl.DataFrame:
    """``trips_each`` trips per vehicle inside ``month`` (UTC), with the driver's harsh-event rates."""
    rng = np.random.default_rng([seed, 72, first])
    n = len(vehicles)
    aggression = rng.beta(2.0, 4.0, n)
    stops = stops_per_100km(np.round(rng.uniform(0.05, 0.3, n), 2))
    brake_100 = (0.01 + 0.25 * aggression**2) * stops
    accel_100 = (0.005 + 0.15 * aggression**2) * stops
    m = n * trips_each
    veh = np.repeat(np.arange(n), trips_each)
    km = rng.gamma(2.0, 6.0, m)
    speed = rng.uniform(25, 70, m)
    dur = km / speed * 3600.0
    t0 = int(datetime(month.year, month.month, 1, tzinfo=timezone.utc).timestamp() * 1e6)
    slot = 27 * 86400 * 1_000_000 // trips_each  # µs: trips spread over the first 27 days, never overlapping
    start = t0 + (np.tile(np.arange(trips_each), n) * slot + rng.integers(0, slot // 4, m))
    k = np.tile(np.arange(trips_each), n)
    cols = {
        "start_ts": start.astype("datetime64[us]"),
        "end_ts": (start + (dur * 1e6).astype(np.int64)).astype("datetime64[us]"),
        "duration_s": dur + 60.0,
        "distance_km": km,
        "moving_s": dur,
        "idle_s": np.full(m, 60.0),
        "max_speed_kmh": speed * 1.6,
        "mean_speed_kmh": speed,
        "harsh_brakes": rng.poisson(brake_100[veh] * km / 100).astype(np.int32),
        "harsh_accels": rng.poisson(accel_100[veh] * km / 100).astype(np.int32),
        "gps_fixes": dur.astype(np.int32),
        "gps_dropped": np.zeros(m, np.int32),
        "messages": (dur / 10).astype(np.int32),
        "complete": np.ones(m, bool),
    }
    # Strings are made by polars from integers: a Python loop over the ids costs ~1 us a trip, most of an hour
    # for a 10 M-policy book.
    ids = pl.DataFrame({"v": veh + first, "k": k}).select(
        pl.format("T{}-{}", pl.col("v").cast(pl.Utf8).str.zfill(8), pl.col("k").cast(pl.Utf8).str.zfill(3)).alias(
            "trip_id"
        ),
        pl.Series("vehicle_id", list(vehicles), dtype=pl.Utf8).gather(veh),
    )
    return pl.concat([ids, pl.DataFrame(cols)], how="horizontal").with_columns(
        pl.lit("ignition_off").alias("ended_by"), pl.lit("bulk").alias("scorer_version")
    )


def load_bulk(
    con: duckdb.DuckDBPyConnection, policies: int, trips_each: int, month: date, seed: int = 1, chunk: int = 50_000
) -> None:
    """Insert ``policies`` policies (with protected attributes) and their month of trips, in chunks. The trips
    carry no seqs, so their completeness needs no pair before them (``prev_*``, which the store's upsert keeps;
    ``ubi.adapters.duckdb_store.link_trips`` pairs trips written directly that do have seqs)."""
    for first in range(1, policies + 1, chunk):
        n = min(chunk, policies - first + 1)
        pol = bulk_policies(n, seed, first)
        trips = bulk_trips(pol["vehicle_id"].to_list(), trips_each, month, seed, first)
        con.complete()  # DuckDB refuses register() while an earlier result is unread
        con.register("pol_df", pol)
        con.register("trips_df", trips)
        con.execute("""INSERT INTO policies SELECT policy_id, vehicle_id, start_date, base_premium, vehicle_group,
                       age_band, region FROM pol_df""")
        con.execute("INSERT INTO protected_attributes SELECT policy_id, gender FROM pol_df")
        cols = ", ".join(trips.columns)
        con.execute(f"INSERT INTO trips ({cols}, stored_at) SELECT {cols}, now()::TIMESTAMP FROM trips_df")
        con.unregister("pol_df")
        con.unregister("trips_df")
