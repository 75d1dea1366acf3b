"""The trips table keeps scorer version 1 and version 2 rows, and files made before version 2 are migrated."""

from __future__ import annotations

import json

import duckdb
import numpy as np

from scoring.features import score_trip
from scoring.trips import TripCutter
from simulator.fleet import FleetSpec, device_messages, make_trips
from ubi.adapters import duckdb_store as store
from ubi.common.config import ScoringConfig

V1_KEYS = [
    "trip_id",
    "vehicle_id",
    "start_ms",
    "end_ms",
    "duration_s",
    "distance_km",
    "moving_s",
    "idle_s",
    "max_speed_kmh",
    "mean_speed_kmh",
    "harsh_brakes",
    "harsh_accels",
    "gps_fixes",
    "gps_dropped",
    "messages",
    "complete",
    "ended_by",
    "scorer_version",
]

OLD_TRIPS = """
CREATE TABLE trips (trip_id VARCHAR PRIMARY KEY, vehicle_id VARCHAR NOT NULL, start_ts TIMESTAMP NOT NULL,
    end_ts TIMESTAMP NOT NULL, duration_s DOUBLE NOT NULL, distance_km DOUBLE NOT NULL, moving_s DOUBLE NOT NULL,
    idle_s DOUBLE NOT NULL, max_speed_kmh DOUBLE NOT NULL, mean_speed_kmh DOUBLE NOT NULL,
    harsh_brakes INTEGER NOT NULL, harsh_accels INTEGER NOT NULL, gps_fixes INTEGER NOT NULL,
    gps_dropped INTEGER NOT NULL, messages INTEGER NOT NULL, complete BOOLEAN NOT NULL, ended_by VARCHAR NOT NULL,
    scorer_version VARCHAR NOT NULL, stored_at TIMESTAMP NOT NULL);
"""


def scored_rows() -> list[dict]:
    spec = FleetSpec(vehicles=1, days=2, seed=9)
    cutter, seq, rows = TripCutter(), 0, []
    for trip in make_trips(spec, "VH00001"):
        for m in device_messages(spec, trip, seq):
            seq = m.seq + 1
            rows += [json.loads(score_trip(t, ScoringConfig()).to_json()) for t in cutter.feed(m, 0, seq)]
    return rows


def check(con) -> None:
    rows = scored_rows()
    v1 = {k: rows[0][k] for k in V1_KEYS} | {"trip_id": "from-version-1", "scorer_version": "1"}
    assert store.upsert_trips(con, rows + [v1]) == len(rows) + 1
    assert store.upsert_trips(con, rows) == len(rows)  # replayed: replaced, not duplicated
    got = con.execute(
        "SELECT trip_id, score, heatmap_s, harsh_brake_grades, score_parts FROM trips ORDER BY trip_id"
    ).fetchall()
    assert len(got) == len(rows) + 1
    by_id = {r["trip_id"]: r for r in rows}
    for tid, score, heat, grades, parts in got:
        if tid == "from-version-1":
            assert (score, heat, grades, parts) == (None, None, None, None)
            continue
        r = by_id[tid]
        assert score == r["score"] and grades == r["harsh_brake_grades"]
        assert np.allclose(heat, r["heatmap_s"]) and json.loads(parts) == r["score_parts"]


def test_new_file(tmp_path):
    check(store.connect(tmp_path / "new.duckdb"))


def test_file_from_before_version_2_is_migrated(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(OLD_TRIPS)
    con.close()
    check(store.connect(path))
