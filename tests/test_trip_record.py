"""One definition of a scored trip: the DuckDB table, its migration, the insert, the Kafka JSON and the doc table
are all derived from ``TripRecord``; these tests fail when any of them drifts."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import duckdb
import pytest

from ubi.adapters import duckdb_store as store
from ubi.common.trip_record import COLUMNS, FIELD_NAMES, TABLE_COLUMNS, TripRecord, markdown_table

ROOT = Path(__file__).resolve().parents[1]


def record(**over) -> TripRecord:
    base = {f.name: None for f in fields(TripRecord)}
    base.update(
        trip_id="T1",
        vehicle_id="V1",
        start_ms=1_790_900_000_000,
        end_ms=1_790_900_600_000,
        duration_s=600.0,
        distance_km=8.5,
        moving_s=540.0,
        idle_s=60.0,
        max_speed_kmh=72.0,
        mean_speed_kmh=56.7,
        harsh_brakes=1,
        harsh_accels=0,
        gps_fixes=600,
        gps_dropped=2,
        messages=62,
        complete=True,
        ended_by="ignition_off",
        scorer_version="4",
        harsh_brake_grades=[1, 0, 0],
        heatmap_s=[1.5, 2.0],
        score=91.5,
        score_parts={"night_share": {"value": 0.0}},
    )
    base.update(over)
    return TripRecord(**base)


def test_table_matches_the_record(tmp_path):
    con = store.connect(tmp_path / "t.duckdb")
    got = [(r[0], r[1], r[2]) for r in con.execute("DESCRIBE trips").fetchall()]
    want = [(c.name, c.sql, "NO" if c.required else "YES") for c in TABLE_COLUMNS]
    assert got == want


def test_old_table_is_migrated_to_the_record(tmp_path):
    """A file with only the first version's columns gets every later one."""
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE trips (" + ", ".join(f"{c.name} {c.sql}" for c in TABLE_COLUMNS if c.required) + ")")
    con.close()
    con = store.connect(path)
    assert {r[0] for r in con.execute("DESCRIBE trips").fetchall()} == {c.name for c in TABLE_COLUMNS}


def test_json_round_trip_and_insert(tmp_path):
    r = record()
    assert TripRecord.from_json(r.to_json()) == r
    assert set(json.loads(r.to_json())) == set(FIELD_NAMES)
    con = store.connect(tmp_path / "t.duckdb")
    store.upsert_trips(con, [r])
    row = con.execute("SELECT * EXCLUDE (stored_at) FROM trips").fetchall()[0]
    cols = [c.name for c in COLUMNS]
    got = dict(zip(cols, row, strict=False))
    assert got["distance_km"] == 8.5 and got["harsh_brake_grades"] == [1, 0, 0]
    assert json.loads(got["score_parts"]) == r.score_parts  # JSON object on Kafka, JSON text in the table


def test_older_and_foreign_records():
    v1 = {
        k: v
        for k, v in json.loads(record().to_json()).items()
        if k in {c.name for c in fields(TripRecord) if c.metadata["required"]}
    }
    assert TripRecord.from_json(v1).score is None
    with pytest.raises(ValueError, match="unknown fields"):
        TripRecord.from_json({**v1, "driver_name": "x"})
    with pytest.raises(ValueError, match="required"):
        TripRecord.from_json({k: v for k, v in v1.items() if k != "distance_km"})


def test_doc_table_is_generated_from_the_record():
    doc = (ROOT / "docs" / "schema.md").read_text()
    block = doc.split("<!-- trip-columns:begin -->\n")[1].split("<!-- trip-columns:end -->")[0]
    assert block == markdown_table(), "regenerate with: python -m ubi.common.trip_record"
