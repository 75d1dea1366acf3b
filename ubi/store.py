"""DuckDB adapter: the schema (docs/schema.md), idempotent upserts, and nothing half-written.

Every write is one transaction: either all of a batch lands or none of it. DuckDB allows one writing process per
file, so exactly one stage (``ubi store``) writes trips while the pipeline runs; pricing runs after or beside it
on its own schedule.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
import polars as pl

from ubi.errors import StoreError

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_info (version INTEGER NOT NULL);

CREATE TABLE IF NOT EXISTS policies (
    policy_id      VARCHAR PRIMARY KEY,
    vehicle_id     VARCHAR NOT NULL,          -- the device id: a pseudonym; no name or address is stored here
    start_date     DATE NOT NULL,
    base_premium   DECIMAL(12, 2) NOT NULL,   -- monthly premium from traditional rating factors
    vehicle_group  VARCHAR,
    age_band       VARCHAR,
    region         VARCHAR
);

-- Protected attributes live apart from rating data and are read only by `ubi actuary fairness`.
CREATE TABLE IF NOT EXISTS protected_attributes (
    policy_id VARCHAR PRIMARY KEY,
    gender    VARCHAR
);

CREATE TABLE IF NOT EXISTS trips (
    trip_id        VARCHAR PRIMARY KEY,
    vehicle_id     VARCHAR NOT NULL,
    start_ts       TIMESTAMP NOT NULL,        -- UTC
    end_ts         TIMESTAMP NOT NULL,        -- UTC
    duration_s     DOUBLE NOT NULL,
    distance_km    DOUBLE NOT NULL,
    moving_s       DOUBLE NOT NULL,
    idle_s         DOUBLE NOT NULL,
    max_speed_kmh  DOUBLE NOT NULL,
    mean_speed_kmh DOUBLE NOT NULL,
    harsh_brakes   INTEGER NOT NULL,
    harsh_accels   INTEGER NOT NULL,
    gps_fixes      INTEGER NOT NULL,
    gps_dropped    INTEGER NOT NULL,
    messages       INTEGER NOT NULL,
    complete       BOOLEAN NOT NULL,
    ended_by       VARCHAR NOT NULL,
    scorer_version VARCHAR NOT NULL,
    stored_at      TIMESTAMP NOT NULL,
    -- features added with scorer version 2 (nullable: version 1 rows have none)
    harsh_corners           INTEGER,  -- accelerometer events; NULL on rows from scorer version 1
    event_source            VARCHAR,  -- imu | imu_rotated (mis-mounted device, rotated per trip) | gps (speed channel)
    harsh_brakes_gps        INTEGER,  -- speed-channel counts, kept for comparison
    harsh_accels_gps        INTEGER,
    harsh_brake_grades      INTEGER[],  -- [grade 1, grade 2, grade 3] by peak (ScoringConfig.grade*_mps2)
    harsh_accel_grades      INTEGER[],
    harsh_corner_grades     INTEGER[],
    harsh_brakes_per_100km  DOUBLE,  -- NULL for a trip of 0 km
    harsh_accels_per_100km  DOUBLE,
    harsh_corners_per_100km DOUBLE,
    gps_jumps               INTEGER,  -- fixes dropped as impossible position jumps (also in gps_dropped)
    gap_filled_km           DOUBLE,   -- distance through GPS gaps, dead-reckoned on the accelerometer
    gap_filled_s            DOUBLE,   -- time covered by those gaps
    night_s                 DOUBLE,  -- moving seconds / km in the night band, vehicle's local time
    night_km                DOUBLE,
    rush_s                  DOUBLE,  -- weekday rush hours
    rush_km                 DOUBLE,
    weekend_s               DOUBLE,  -- Saturday and Sunday, local time
    weekend_km              DOUBLE,
    phone_s                 DOUBLE,  -- moving seconds with the phone handled
    phone_reported_s        DOUBLE,  -- moving seconds for which the device reported the phone state
    limit_known_km          DOUBLE,  -- distance with a known posted limit
    over_limit_km           DOUBLE,
    over_limit_margin_km    DOUBLE,  -- above limit + ScoringConfig.speeding_margin_mps
    high_speed_km           DOUBLE,  -- above ScoringConfig.high_speed_mps anywhere
    high_speed_unknown_km   DOUBLE,  -- the same where no limit is known (the speeding fallback)
    heatmap_s               DOUBLE[],  -- seconds per (speed, acceleration) bin, speed-major; sum per driver
    score                   DOUBLE,  -- 0-100
    score_parts             JSON     -- per feature: value, cap, weight, points_lost
);

-- files created before scorer version 2 get the new trip columns
ALTER TABLE trips ADD COLUMN IF NOT EXISTS gap_filled_km DOUBLE;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS gap_filled_s DOUBLE;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS harsh_corners INTEGER;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS event_source VARCHAR;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS harsh_brakes_gps INTEGER;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS harsh_accels_gps INTEGER;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS harsh_brake_grades INTEGER[];
ALTER TABLE trips ADD COLUMN IF NOT EXISTS harsh_accel_grades INTEGER[];
ALTER TABLE trips ADD COLUMN IF NOT EXISTS harsh_corner_grades INTEGER[];
ALTER TABLE trips ADD COLUMN IF NOT EXISTS harsh_brakes_per_100km DOUBLE;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS harsh_accels_per_100km DOUBLE;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS harsh_corners_per_100km DOUBLE;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS gps_jumps INTEGER;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS night_s DOUBLE;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS night_km DOUBLE;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS rush_s DOUBLE;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS rush_km DOUBLE;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS weekend_s DOUBLE;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS weekend_km DOUBLE;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS phone_s DOUBLE;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS phone_reported_s DOUBLE;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS limit_known_km DOUBLE;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS over_limit_km DOUBLE;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS over_limit_margin_km DOUBLE;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS high_speed_km DOUBLE;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS high_speed_unknown_km DOUBLE;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS heatmap_s DOUBLE[];
ALTER TABLE trips ADD COLUMN IF NOT EXISTS score DOUBLE;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS score_parts JSON;

CREATE TABLE IF NOT EXISTS rulebooks (
    sha256         VARCHAR PRIMARY KEY,
    version        VARCHAR NOT NULL,
    effective_from DATE NOT NULL,
    author         VARCHAR,
    content        VARCHAR NOT NULL,
    stored_at      TIMESTAMP NOT NULL
);

CREATE TABLE IF NOT EXISTS runs (
    run_id          VARCHAR PRIMARY KEY,
    kind            VARCHAR NOT NULL,
    month           DATE,
    rulebook_sha256 VARCHAR,
    actor           VARCHAR NOT NULL,
    started_at      TIMESTAMP NOT NULL,
    finished_at     TIMESTAMP,
    inputs          JSON,
    summary         JSON
);

CREATE TABLE IF NOT EXISTS monthly_features (
    policy_id               VARCHAR NOT NULL,
    month                   DATE NOT NULL,
    trips                   INTEGER NOT NULL,
    km                      DOUBLE NOT NULL,
    driving_hours           DOUBLE NOT NULL,
    harsh_brakes            INTEGER NOT NULL,
    harsh_accels            INTEGER NOT NULL,
    harsh_brakes_per_100km  DOUBLE,
    harsh_accels_per_100km  DOUBLE,
    run_id                  VARCHAR NOT NULL,
    PRIMARY KEY (policy_id, month)
);

CREATE TABLE IF NOT EXISTS premiums (
    policy_id         VARCHAR NOT NULL,
    month             DATE NOT NULL,
    base_premium      DECIMAL(12, 2) NOT NULL,
    previous_premium  DECIMAL(12, 2) NOT NULL,
    telematics_factor DOUBLE NOT NULL,
    credibility       DOUBLE NOT NULL,
    uncapped_premium  DECIMAL(12, 2) NOT NULL,
    premium           DECIMAL(12, 2) NOT NULL,
    cap_applied       VARCHAR NOT NULL,          -- none | increase | decrease
    rulebook_version  VARCHAR NOT NULL,
    rulebook_sha256   VARCHAR NOT NULL,
    run_id            VARCHAR NOT NULL,
    trace             JSON NOT NULL,
    statement         VARCHAR NOT NULL,
    PRIMARY KEY (policy_id, month)
);

-- Off-balance factor applied to the row (NULL: the rulebook has none). Added after v1: ALTER keeps old files valid.
ALTER TABLE premiums ADD COLUMN IF NOT EXISTS off_balance DOUBLE;

-- Claims experience for `ubi actuary fit` (from the claims system, or the simulator's claims generator).
CREATE TABLE IF NOT EXISTS claims (
    claim_id    VARCHAR PRIMARY KEY,
    policy_id   VARCHAR NOT NULL,
    claim_date  DATE NOT NULL,
    amount      DECIMAL(14, 2) NOT NULL       -- ground-up severity
);

-- Earned exposure with the period's driving features, for periods not priced month by month in this store
-- (history, or a simulated book). Claims fall in a period by policy and date.
CREATE TABLE IF NOT EXISTS exposure_periods (
    policy_id       VARCHAR NOT NULL,
    period_start    DATE NOT NULL,
    period_end      DATE NOT NULL,            -- exclusive
    exposure_years  DOUBLE NOT NULL,
    km              DOUBLE NOT NULL,
    harsh_brakes    BIGINT NOT NULL,
    harsh_accels    BIGINT NOT NULL,
    driving_hours   DOUBLE NOT NULL,
    PRIMARY KEY (policy_id, period_start)
);

-- One row per policy period with exposure, features and claim count: priced months plus loaded periods.
CREATE OR REPLACE VIEW v_experience AS
WITH periods AS (
    SELECT policy_id, month AS period_start, CAST(month + INTERVAL 1 MONTH AS DATE) AS period_end,
           1.0 / 12 AS exposure_years,
           km, harsh_brakes, harsh_accels, driving_hours FROM monthly_features
    UNION ALL
    SELECT policy_id, period_start, period_end, exposure_years, km, harsh_brakes, harsh_accels, driving_hours
    FROM exposure_periods
)
SELECT e.policy_id, e.period_start, e.period_end, e.exposure_years, e.km, e.harsh_brakes, e.harsh_accels,
       e.driving_hours, pol.vehicle_group, pol.age_band, pol.region, count(c.claim_id) AS claims
FROM periods e JOIN policies pol USING (policy_id)
LEFT JOIN claims c ON c.policy_id = e.policy_id AND c.claim_date >= e.period_start AND c.claim_date < e.period_end
GROUP BY ALL;

CREATE TABLE IF NOT EXISTS audit (
    ts     TIMESTAMP NOT NULL,
    actor  VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    detail JSON
);

CREATE OR REPLACE VIEW v_policy_month AS
SELECT p.policy_id, p.month, f.trips, round(f.km, 1) AS km, round(f.harsh_brakes_per_100km, 2) AS brakes_per_100km,
       p.previous_premium, p.premium, round(p.premium / p.previous_premium - 1, 4) AS change,
       p.telematics_factor, p.cap_applied, p.rulebook_version
FROM premiums p LEFT JOIN monthly_features f USING (policy_id, month);

CREATE OR REPLACE VIEW v_vehicle_day AS
SELECT vehicle_id, CAST(start_ts AS DATE) AS day, count(*) AS trips, sum(distance_km) AS km,
       sum(harsh_brakes) AS harsh_brakes, sum(harsh_accels) AS harsh_accels
FROM trips GROUP BY ALL;
"""

TRIP_COLUMNS = [
    "trip_id", "vehicle_id", "start_ms", "end_ms", "duration_s", "distance_km", "moving_s", "idle_s",
    "max_speed_kmh", "mean_speed_kmh", "harsh_brakes", "harsh_accels", "gps_fixes", "gps_dropped", "messages",
    "complete", "ended_by", "scorer_version",
    "harsh_corners", "event_source", "harsh_brakes_gps", "harsh_accels_gps", "harsh_brake_grades",
    "harsh_accel_grades", "harsh_corner_grades", "harsh_brakes_per_100km", "harsh_accels_per_100km",
    "harsh_corners_per_100km", "gps_jumps", "gap_filled_km", "gap_filled_s", "night_s", "night_km", "rush_s", "rush_km", "weekend_s", "weekend_km",
    "phone_s", "phone_reported_s", "limit_known_km", "over_limit_km", "over_limit_margin_km", "high_speed_km",
    "high_speed_unknown_km", "heatmap_s", "score", "score_parts",
]


def connect(path: Path | str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from exc
    if not read_only:
        con.execute(SCHEMA)
        if con.execute("SELECT count(*) FROM schema_info").fetchone()[0] == 0:
            con.execute("INSERT INTO schema_info VALUES (?)", [SCHEMA_VERSION])
    return con


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def upsert_trips(con: duckdb.DuckDBPyConnection, rows: list[dict]) -> int:
    """Insert or replace scored trips by trip_id, all in one transaction. Returns rows written."""
    if not rows:
        return 0
    latest = {r["trip_id"]: r for r in rows}  # a batch may carry the same trip twice (replay): last wins
    # rows from an older scorer lack the newer features: they are stored as NULL
    df = pl.DataFrame([{c: r.get(c) for c in TRIP_COLUMNS} for r in latest.values()],  # noqa: F841 (used by SQL)
                      infer_schema_length=None)
    extra = TRIP_COLUMNS[TRIP_COLUMNS.index("scorer_version") + 1:]
    with transaction(con):
        con.execute(f"""
            INSERT OR REPLACE INTO trips (trip_id, vehicle_id, start_ts, end_ts, duration_s, distance_km, moving_s,
                   idle_s, max_speed_kmh, mean_speed_kmh, harsh_brakes, harsh_accels, gps_fixes, gps_dropped, messages,
                   complete, ended_by, scorer_version, stored_at, {", ".join(extra)})
            SELECT trip_id, vehicle_id, make_timestamp(start_ms * 1000), make_timestamp(end_ms * 1000), duration_s,
                   distance_km, moving_s, idle_s, max_speed_kmh, mean_speed_kmh, harsh_brakes, harsh_accels,
                   gps_fixes, gps_dropped, messages, complete, ended_by, scorer_version, now()::TIMESTAMP,
                   {", ".join(extra)}
            FROM df
        """)
    return len(latest)


def audit(con: duckdb.DuckDBPyConnection, actor: str, action: str, detail: dict) -> None:
    con.execute("INSERT INTO audit VALUES (now()::TIMESTAMP, ?, ?, ?)", [actor, action, json.dumps(detail, default=str)])
