"""Run a simulated fleet: write policies and ground truth beside the data, and stream devices' messages."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import polars as pl

from simulator.claims import fleet_claims
from simulator.devices import Message
from simulator.fleet import (
    FleetSpec,
    SimTrip,
    device_messages,
    ground_truth_rows,
    make_policies,
    make_trips,
    map_segments,
    speeding_intervals,
    vehicle_ids,
)


def vehicle_stream(spec: FleetSpec, trips: list[SimTrip]) -> Iterator[Message]:
    """One device's messages over all its trips, with one sequence counter across them."""
    seq = 0
    for trip in trips:
        for m in device_messages(spec, trip, seq):
            seq = m.seq + 1
            yield m


def write_truth(spec: FleetSpec, out: Path) -> dict[str, list[SimTrip]]:
    """Policies, ground truth and claims (from the true risk model) as Parquet under ``out``; returns trips."""
    out.mkdir(parents=True, exist_ok=True)
    trips = {v: make_trips(spec, v) for v in vehicle_ids(spec.vehicles, spec.id_prefix)}
    all_trips = [t for ts in trips.values() for t in ts]
    trip_rows, event_rows = ground_truth_rows(spec, all_trips)
    pl.DataFrame(trip_rows).write_parquet(out / "truth_trips.parquet")
    schema = {
        "vehicle_id": pl.String,
        "trip_start_ms": pl.Int64,
        "type": pl.String,
        "start_ms": pl.Int64,
        "end_ms": pl.Int64,
        "peak_mps2": pl.Float64,
        "grade": pl.String,
        "observable": pl.Boolean,
    }
    pl.DataFrame(event_rows, schema=schema).write_parquet(out / "truth_events.parquet")
    pl.DataFrame(map_segments(all_trips)).write_parquet(out / "speed_limits.parquet")  # docs/map-layer.md
    pl.DataFrame(
        speeding_intervals(all_trips),
        schema={
            "vehicle_id": pl.String,
            "trip_start_ms": pl.Int64,
            "start_ms": pl.Int64,
            "end_ms": pl.Int64,
            "limit_kmh": pl.Float64,
            "max_over_kmh": pl.Float64,
        },
    ).write_parquet(out / "truth_speeding.parquet")
    policies = make_policies(spec)
    pl.DataFrame([asdict(p) for p in policies]).write_parquet(out / "policies.parquet")
    km = {v: sum(t.distance_m for t in ts) / 1000.0 for v, ts in trips.items()}
    fleet_claims(spec.seed, policies, km, spec.start, spec.days).write_parquet(out / "claims.parquet")
    (out / "spec.json").write_text(json.dumps({**asdict(spec), "start": spec.start.isoformat()}, indent=1))
    return trips
