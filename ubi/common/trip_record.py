"""A scored trip, defined once: the record the scorer builds, the JSON on ``ubi.trips.v1``, the DuckDB ``trips``
table with its migration and insert, and the column table in ``docs/schema.md`` are all derived from the fields of
``TripRecord`` below (``tests/test_trip_record.py`` fails when any of them drifts).

Each field carries its DuckDB type and a one-line doc. Fields of the first scorer version are ``required``
(NOT NULL in the table); every later field is nullable, so rows and JSON from an older scorer stay valid, and
an existing database gets it by ``ALTER TABLE ... ADD COLUMN IF NOT EXISTS``. A new feature is one new field here.
"""

from __future__ import annotations

import copy
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any


def col(sql: str, doc: str, *, required: bool = False, column: str | None = None, expr: str | None = None) -> Any:
    """A record field with its table column: DuckDB type, doc, and where the column's name or value differs
    from the field's (``column``, ``expr``: the SQL that turns the JSON value into the column's)."""
    return field(metadata={"sql": sql, "doc": doc, "required": required, "column": column, "expr": expr})


@dataclass(frozen=True)
class TripRecord:
    # --- scorer version 1 (NOT NULL) ---
    trip_id: str = col("VARCHAR", "hash of vehicle and start time; the upsert key", required=True)
    vehicle_id: str = col("VARCHAR", "the device id (a pseudonym, no name or plate)", required=True)
    start_ms: int = col(
        "TIMESTAMP",
        "trip start, UTC (JSON: epoch ms)",
        required=True,
        column="start_ts",
        expr="make_timestamp(start_ms * 1000)",
    )
    end_ms: int = col(
        "TIMESTAMP",
        "trip end, UTC (JSON: epoch ms)",
        required=True,
        column="end_ts",
        expr="make_timestamp(end_ms * 1000)",
    )
    duration_s: float = col("DOUBLE", "end minus start", required=True)
    distance_km: float = col("DOUBLE", "GPS distance plus distance dead-reckoned through gaps", required=True)
    moving_s: float = col("DOUBLE", "seconds above ScoringConfig.moving_mps", required=True)
    idle_s: float = col("DOUBLE", "seconds standing with the engine on", required=True)
    max_speed_kmh: float = col("DOUBLE", "highest trusted GPS speed", required=True)
    mean_speed_kmh: float = col("DOUBLE", "distance over moving time", required=True)
    harsh_brakes: int = col(
        "INTEGER", "braking events in the harsh band or above (source: event_source)", required=True
    )
    harsh_accels: int = col("INTEGER", "acceleration events in the harsh band or above", required=True)
    gps_fixes: int = col("INTEGER", "fixes used", required=True)
    gps_dropped: int = col("INTEGER", "fixes dropped as inaccurate or impossible", required=True)
    messages: int = col("INTEGER", "device messages in the trip", required=True)
    complete: bool = col("BOOLEAN", "every seq between the trip's ends arrived", required=True)
    ended_by: str = col("VARCHAR", "ignition_off | next_trip | timeout | motion | gap | end_of_data", required=True)
    scorer_version: str = col("VARCHAR", "the scorer that built the row", required=True)
    # --- added later (nullable: older rows have none) ---
    harsh_corners: int | None = col("INTEGER", "cornering events in the harsh band or above (accelerometer only)")
    event_source: str | None = col("VARCHAR", "imu | imu_rotated (mis-mounted device, rotated per trip) | gps")
    harsh_brakes_gps: int | None = col(
        "INTEGER", "guarded speed-channel brakes, harsh band or above, kept for comparison"
    )
    harsh_accels_gps: int | None = col("INTEGER", "guarded speed-channel accelerations, harsh band or above")
    harsh_brake_grades: list[int] | None = col(
        "INTEGER[]", "[moderate, harsh, severe] by peak (ScoringConfig bands); harsh_brakes = the last two"
    )
    harsh_accel_grades: list[int] | None = col("INTEGER[]", "the same for accelerations")
    harsh_corner_grades: list[int] | None = col("INTEGER[]", "the same for corners")
    harsh_brakes_per_100km: float | None = col("DOUBLE", "NULL for a trip of 0 km")
    harsh_accels_per_100km: float | None = col("DOUBLE", "NULL for a trip of 0 km")
    harsh_corners_per_100km: float | None = col("DOUBLE", "NULL for a trip of 0 km")
    gps_jumps: int | None = col("INTEGER", "fixes dropped as impossible position jumps (also in gps_dropped)")
    gap_filled_km: float | None = col("DOUBLE", "distance through GPS gaps, dead-reckoned on the accelerometer")
    gap_filled_s: float | None = col("DOUBLE", "time covered by those gaps")
    night_s: float | None = col("DOUBLE", "moving seconds in the night band, vehicle's local time")
    night_km: float | None = col("DOUBLE", "km in the night band")
    rush_s: float | None = col("DOUBLE", "moving seconds in weekday rush hours")
    rush_km: float | None = col("DOUBLE", "km in weekday rush hours")
    weekend_s: float | None = col("DOUBLE", "moving seconds on Saturday and Sunday, local time")
    weekend_km: float | None = col("DOUBLE", "km on Saturday and Sunday")
    phone_s: float | None = col("DOUBLE", "moving seconds with the phone handled")
    phone_reported_s: float | None = col("DOUBLE", "moving seconds for which the device reported the phone state")
    limit_known_km: float | None = col("DOUBLE", "distance with a known posted limit")
    over_limit_km: float | None = col("DOUBLE", "distance above the posted limit")
    over_limit_margin_km: float | None = col("DOUBLE", "above limit + ScoringConfig.speeding_margin_mps")
    high_speed_km: float | None = col("DOUBLE", "above ScoringConfig.high_speed_mps anywhere")
    high_speed_unknown_km: float | None = col("DOUBLE", "the same where no limit is known (the speeding fallback)")
    heatmap_s: list[float] | None = col("DOUBLE[]", "seconds per (speed, acceleration) bin, speed-major")
    score: float | None = col("DOUBLE", "0-100, from score_parts")
    score_parts: dict | None = col("JSON", "per feature: value, cap, weight, points_lost")
    # --- scorer version 4 ---
    imu_status: str | None = col(
        "VARCHAR",
        "none (no IMU data) | vehicle_frame | rotated | rejected (events then "
        "from the speed channel; imu_reason says why)",
    )
    imu_reason: str | None = col("VARCHAR", "why the IMU was used or rejected (gravity, R at the best lag)")
    imu_gravity: str | None = col("VARCHAR", "raw (gravity included) | removed | no_vertical | partial")
    imu_lag_s: float | None = col("DOUBLE", "GPS speed lag behind the IMU, fitted per trip (0..3 s)")
    imu_r: float | None = col("DOUBLE", "correlation of GPS dv/dt with the horizontal IMU at that lag")
    speed_artefacts: int | None = col(
        "INTEGER", "1 s speed changes above ScoringConfig.speed_max_plausible_mps2 (never events)"
    )
    speeding_extra_risk: float | None = col("DOUBLE", "distance-weighted mean extra relative crash risk of speeding")
    gps_brake_grades: list[int] | None = col("INTEGER[]", "speed-channel brakes [moderate, harsh, severe]")
    gps_accel_grades: list[int] | None = col("INTEGER[]", "speed-channel accelerations [moderate, harsh, severe]")
    # --- data completeness (issue 11): what a device left out shows, inside a trip and between trips ---
    seq_first: int | None = col("BIGINT", "the device seq the trip starts at (ignition_on, or its first batch)")
    seq_last: int | None = col("BIGINT", "the seq it ends at; seq_last - seq_first + 1 - messages are missing")
    # --- scorer version 5: continuous measures on a 1 Hz channel (scoring/intensity.py) ---
    device_class: str | None = col("VARCHAR", "phone | dongle | oem: the ScoringConfig device profile used")
    intensity_source: str | None = col(
        "VARCHAR", "imu (1 s means of the aligned IMU) | speed (speed channel, no lateral) | speed+heading"
    )
    brake_time_share: list[float] | None = col(
        "DOUBLE[]", "share of moving seconds braking at or beyond [low, moderate, harsh] level (1 s means)"
    )
    accel_time_share: list[float] | None = col("DOUBLE[]", "the same for acceleration")
    lat_time_share: list[float] | None = col(
        "DOUBLE[]", "the same for |lateral acceleration|, of the seconds with a lateral value"
    )
    jerk_rms_mps3: float | None = col("DOUBLE", "RMS jerk of the 1 s mean longitudinal acceleration")
    jerk_share: float | None = col("DOUBLE", "share of 1 s steps with |jerk| >= ScoringConfig.jerk_level_mps3")
    high_speed_accel_share: float | None = col(
        "DOUBLE", "share of moving seconds at >= intensity_high_speed_kmh with |accel| >= the low level"
    )
    rpa_mps2: float | None = col("DOUBLE", "relative positive acceleration: sum(v * a+) / sum(v)")
    speeding_band_share: list[float] | None = col(
        "DOUBLE[]", "share of distance over the limit by +0-10, +10-20, > 20 km/h (fallback: high_speed_mps)"
    )
    longest_drive_s: float | None = col("DOUBLE", "longest driving without a 15 min break (break_min_s)")
    fatigue_s: float | None = col("DOUBLE", "driving beyond ScoringConfig.fatigue_after_s without a break")
    cruise_windows: int | None = col("INTEGER", "steady-cruise windows (cruise_window_s at >= cruise_min_kmh)")
    cruise_speed_cv: float | None = col("DOUBLE", "mean coefficient of variation of speed in those windows")
    weave_windows: int | None = col("INTEGER", "those windows on a straight road with a lateral value")
    weave_lat_std_mps2: float | None = col("DOUBLE", "mean std of lateral acceleration in them (weaving)")

    def as_row(self) -> dict[str, Any]:
        """A flat row for tables and files: every field, ``score_parts`` as JSON text. (``asdict`` without its
        recursion: a back-test builds millions of rows, and a deep copy of each value cost most of a row.)"""
        row = {n: _copied(getattr(self, n)) for n in FIELD_NAMES if n != "score_parts"}
        row["score_parts"] = None if self.score_parts is None else json.dumps(self.score_parts, sort_keys=True)
        return row

    def to_json(self) -> bytes:
        """The value of a ``ubi.trips.v1`` record."""
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes | str | dict) -> "TripRecord":
        """Read a ``ubi.trips.v1`` value; fields newer than the scorer that wrote it are None, unknown keys are
        an error (a record from a newer scorer needs this code updated first)."""
        obj = json.loads(data) if isinstance(data, (bytes, str)) else dict(data)
        unknown = set(obj) - set(FIELD_NAMES)
        if unknown:
            raise ValueError(f"trip record has unknown fields {sorted(unknown)}")
        missing = [f.name for f in fields(cls) if f.metadata["required"] and f.name not in obj]
        if missing:
            raise ValueError(f"trip record lacks required fields {missing}")
        if isinstance(obj.get("score_parts"), str):  # scorer version 3 encoded it twice
            obj["score_parts"] = json.loads(obj["score_parts"])
        values: dict[str, Any] = {n: obj.get(n) for n in FIELD_NAMES}
        return cls(**values)


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(TripRecord))


def _copied(v: Any) -> Any:
    """A field's value as ``asdict`` gives it: containers copied (the record's lists hold numbers: a flat copy),
    scalars as is."""
    if type(v) is list:
        return list(v)
    return copy.deepcopy(v) if isinstance(v, (list, dict, tuple)) else v


assert all(f.default is MISSING for f in fields(TripRecord)), "every field is set by the scorer"


@dataclass(frozen=True)
class Column:
    name: str
    sql: str
    doc: str
    required: bool
    expr: str  # SQL reading the column's value from a frame with the record's fields


COLUMNS: tuple[Column, ...] = tuple(
    Column(
        f.metadata["column"] or f.name,
        f.metadata["sql"],
        f.metadata["doc"],
        f.metadata["required"],
        f.metadata["expr"] or f.name,
    )
    for f in fields(TripRecord)
)
STORED_AT = Column("stored_at", "TIMESTAMP", "when the store wrote the row (UTC)", True, "now()::TIMESTAMP")
# The vehicle's trip before this one, kept by the store (ubi/adapters/duckdb_store.py, link_trips) so that a
# month's data completeness is one aggregate instead of a window over two months of trips (docs/capacity.md).
LINK_COLUMNS: tuple[Column, ...] = (
    Column(
        "prev_start_ts",
        "TIMESTAMP",
        "start of the vehicle's previous trip if it started at most 62 days before (the store keeps it)",
        False,
        "CAST(NULL AS TIMESTAMP)",
    ),
    Column("prev_seq_last", "BIGINT", "that trip's seq_last (the store keeps it)", False, "CAST(NULL AS BIGINT)"),
    Column("prev_ended_by", "VARCHAR", "that trip's ended_by (the store keeps it)", False, "CAST(NULL AS VARCHAR)"),
)
TABLE_COLUMNS: tuple[Column, ...] = COLUMNS + (STORED_AT,) + LINK_COLUMNS


def create_table_sql(table: str = "trips") -> str:
    """CREATE TABLE for a new database, then ALTERs that bring an older one up to date."""
    lines = [
        f"    {c.name} {c.sql}{' NOT NULL' if c.required else ''}" + (" PRIMARY KEY" if c.name == "trip_id" else "")
        for c in TABLE_COLUMNS
    ]
    ddl = f"CREATE TABLE IF NOT EXISTS {table} (\n" + ",\n".join(lines) + "\n);\n"
    return ddl + "".join(
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {c.name} {c.sql};\n" for c in TABLE_COLUMNS if not c.required
    )


def upsert_sql(frame: str, table: str = "trips") -> str:
    """INSERT OR REPLACE from a frame whose columns are the record's fields."""
    return (
        f"INSERT OR REPLACE INTO {table} ({', '.join(c.name for c in TABLE_COLUMNS)})\n"
        f"SELECT {', '.join(c.expr for c in TABLE_COLUMNS)} FROM {frame}"
    )


def markdown_table() -> str:
    """The column table of docs/schema.md."""
    rows = ["| column | type | null | meaning |", "|---|---|---|---|"]
    rows += [f"| `{c.name}` | {c.sql} | {'no' if c.required else 'yes'} | {c.doc} |" for c in TABLE_COLUMNS]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
