"""DuckDB adapter: the schema (docs/schema.md), idempotent upserts, and nothing half-written.

Every write is one transaction: either all of a batch lands or none of it. DuckDB allows one writing process per
file, so exactly one stage (``ubi store``) writes trips while the pipeline runs; pricing runs after or beside it
on its own schedule.
"""

from __future__ import annotations

import json
import logging
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Callable, Iterator, Sequence

import duckdb
import numpy as np
import polars as pl

from pricing import fit, monthly
from pricing.month_sums import MonthSums, add_batch
from pricing.monthly import Chunk, RunSummary, next_month, previous_month
from pricing.rulebook import Rulebook
from pricing.vector import CAP_DOWN, CAP_NONE, CAP_UP, Book
from ubi.adapters import audit as audit_log
from ubi.adapters import book_stream
from ubi.adapters.book_stream import batched, fetch_columns
from ubi.adapters.consent import with_consent
from ubi.adapters.privacy import open_database
from ubi.adapters.subject import PRIVACY_SCHEMA, erased_vehicles
from ubi.common.errors import PricingError, StoreError
from ubi.common.trip_record import COLUMNS, TripRecord, create_table_sql, upsert_sql

_POLARS_TYPES = {
    "VARCHAR": pl.Utf8,
    "JSON": pl.Utf8,
    "TIMESTAMP": pl.Int64,
    "DOUBLE": pl.Float64,
    "INTEGER": pl.Int64,
    "BIGINT": pl.Int64,
    "BOOLEAN": pl.Boolean,
    "INTEGER[]": pl.List(pl.Int64),
    "DOUBLE[]": pl.List(pl.Float64),
}
# the frame a batch of records becomes before the INSERT (TIMESTAMP fields travel as epoch ms)
TRIP_FRAME_SCHEMA = {f: _POLARS_TYPES[c.sql] for f, c in zip(TripRecord.__dataclass_fields__, COLUMNS, strict=False)}

log = logging.getLogger("ubi.adapters.duckdb_store")

SCHEMA_VERSION = 3  # 2: premiums and monthly_features became views over rows written in place (_migrate)
# 3: each trip keeps the vehicle's trip before it (prev_*, link_trips), filled in once for older files (_link_old)

# A month's rows are written where they stay, chunk by chunk, each chunk committed (a DuckDB transaction holds
# what it inserts in memory: ~15 GB for 10 M premiums with traces), under the run's id; the run is published by
# one small transaction that points its month at the run (published_runs), and only then do readers see them.
# Nothing half-written is visible, a re-run replaces the month at that commit, and no row is copied (copying a
# staged month cost 680 s of a 10 M-policy run: docs/capacity.md). Rows of runs not published are ignored by
# the views and deleted by the month's next run; the superseded run's rows are deleted after the publish.
PRICED_TABLES = """
CREATE TABLE IF NOT EXISTS feature_rows (
    policy_id               VARCHAR NOT NULL,
    month                   DATE NOT NULL,
    trips                   INTEGER NOT NULL,
    km                      DOUBLE NOT NULL,
    driving_hours           DOUBLE NOT NULL,
    harsh_brakes            INTEGER NOT NULL,
    harsh_accels            INTEGER NOT NULL,
    harsh_brakes_per_100km  DOUBLE,
    harsh_accels_per_100km  DOUBLE,
    run_id                  VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS premium_rows (
    policy_id         VARCHAR NOT NULL,
    month             DATE NOT NULL,
    base_premium      DECIMAL(12, 2) NOT NULL,   -- monthly premium from traditional rating factors
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
    off_balance       DOUBLE                     -- off-balance factor applied (NULL: the rulebook has none)
);

-- The run whose rows each month shows (one per month; a migrated file may list several for a month priced
-- before version 2, whose rows were already one set).
CREATE TABLE IF NOT EXISTS published_runs (
    month        DATE NOT NULL,
    run_id       VARCHAR NOT NULL,
    published_at TIMESTAMP NOT NULL,
    PRIMARY KEY (month, run_id)
);
"""
PRICED_VIEWS = """
-- Keyed by (policy_id, month): one published run per month, whose rows have one per policy.
CREATE OR REPLACE VIEW monthly_features AS
SELECT f.* FROM feature_rows f SEMI JOIN published_runs r USING (month, run_id);

CREATE OR REPLACE VIEW premiums AS
SELECT p.* FROM premium_rows p SEMI JOIN published_runs r USING (month, run_id);
"""

# The completeness expressions over a trip row and the stored pair (prev_*) of the vehicle's trip before it. A gap
# between trips counts for ignition-cut trips only, when the seq went up, and when the trip before started at or
# after {since} (a month's look-back).
IGNITION_ENDS = "('ignition_off', 'next_trip', 'grace_timeout', 'timeout')"
MISSING_IN_TRIP = (
    "CASE WHEN seq_first IS NOT NULL AND seq_last IS NOT NULL "
    "THEN greatest(seq_last - seq_first + 1 - messages, 0) ELSE 0 END"
)
MISSING_BEFORE = (
    f"CASE WHEN ended_by IN {IGNITION_ENDS} AND prev_ended_by IN {IGNITION_ENDS} "
    "AND prev_start_ts >= {since} AND seq_first > prev_seq_last THEN seq_first - prev_seq_last - 1 ELSE 0 END"
)
LINK_ORDER = "start_ts, seq_first, trip_id"  # a vehicle's trips in order (trip_id: ties are stable)
LINK_DAYS = 62  # the look-back the stored pair covers: a month's last day (31) plus the month's look-back (31)

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS schema_info (version INTEGER NOT NULL);
"""
    + create_table_sql()
    + """

CREATE TABLE IF NOT EXISTS policies (
    policy_id      VARCHAR PRIMARY KEY,
    vehicle_id     VARCHAR NOT NULL,          -- the device id: a pseudonym; no name or address is stored here
    start_date     DATE NOT NULL,
    base_premium   DECIMAL(12, 2) NOT NULL,   -- monthly premium from traditional rating factors
    vehicle_group  VARCHAR,
    age_band       VARCHAR,
    region         VARCHAR
);

-- Trips a policyholder disputed in the portal (ubi/adapters/portal_store.py writes them, `ubi review` decides):
-- pricing leaves a trip out while its objection is pending and once it is accepted; a rejected one counts again.
CREATE TABLE IF NOT EXISTS trip_objections (
    objection_id  VARCHAR PRIMARY KEY,
    policy_id     VARCHAR NOT NULL,
    trip_id       VARCHAR NOT NULL,
    reason        VARCHAR NOT NULL,          -- not_driving | passenger | not_my_vehicle
    status        VARCHAR NOT NULL,          -- pending | accepted | rejected
    created_at    TIMESTAMP NOT NULL,
    decided_at    TIMESTAMP,
    decided_by    VARCHAR,
    decision_note VARCHAR
);

-- Protected attributes live apart from rating data and are read only by `ubi actuary fairness`.
CREATE TABLE IF NOT EXISTS protected_attributes (
    policy_id VARCHAR PRIMARY KEY,
    gender    VARCHAR
);

-- trips: derived from ubi.common.trip_record.TripRecord (create_table_sql), inserted before this script

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

-- monthly_features and premiums (views over feature_rows and premium_rows, PRICED_TABLES above): a pricing
-- run writes its rows in place under its run_id; readers see only the rows of each month's published run.
"""
    + PRICED_TABLES
    + PRICED_VIEWS
    + """
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

-- Data completeness (issue 11): device messages missing inside a trip (its seq span minus what arrived) and, for
-- vehicles cut by ignition, between consecutive trips (nothing is sent between them, so a seq gap is data that
-- never arrived or was withheld). A seq that goes down is a device reboot, not a gap. Motion-cut devices report
-- while parked, so only gaps inside their trips count. v_trip_gaps pairs every trip with the one before it by a
-- window over the whole table (for analysis); pricing reads the pair the store keeps on each row (prev_*,
-- link_trips below), so a month's completeness is one aggregate, not a sort of two months of trips.
CREATE OR REPLACE VIEW v_trip_gaps AS
SELECT trip_id, vehicle_id, start_ts, messages, """
    + MISSING_IN_TRIP
    + """ AS missing_in_trip,
       """
    + MISSING_BEFORE.format(since="TIMESTAMP '1970-01-01'")
    + """ AS missing_before
FROM (SELECT * EXCLUDE (prev_start_ts, prev_seq_last, prev_ended_by), lag(start_ts) OVER w AS prev_start_ts,
             lag(seq_last) OVER w AS prev_seq_last, lag(ended_by) OVER w AS prev_ended_by
      FROM trips WINDOW w AS (PARTITION BY vehicle_id ORDER BY """
    + LINK_ORDER
    + """));

-- One month's completeness per vehicle; the trip before the month (a gap before its first trip) counts when it
-- started in the 31 days before the month.
CREATE OR REPLACE MACRO month_completeness(lo, hi) AS TABLE
SELECT vehicle_id, count(*) AS trips, sum(messages) AS messages, sum(missing_in_trip) AS missing_in_trips,
       sum(missing_before) AS missing_between_trips,
       sum(messages) / (sum(messages) + sum(missing_in_trip) + sum(missing_before)) AS completeness
FROM (SELECT vehicle_id, messages, """
    + MISSING_IN_TRIP
    + """ AS missing_in_trip,
             """
    + MISSING_BEFORE.format(since="CAST(lo AS TIMESTAMP) - INTERVAL 31 DAY")
    + """ AS missing_before
      FROM trips WHERE start_ts >= CAST(lo AS TIMESTAMP) AND start_ts < CAST(hi AS TIMESTAMP))
GROUP BY vehicle_id;

CREATE OR REPLACE VIEW v_completeness AS
SELECT vehicle_id, CAST(date_trunc('month', start_ts) AS DATE) AS month, count(*) AS trips,
       sum(messages) AS messages, sum(missing_in_trip) AS missing_in_trips,
       sum(missing_before) AS missing_between_trips,
       sum(messages) / (sum(messages) + sum(missing_in_trip) + sum(missing_before)) AS completeness
FROM v_trip_gaps GROUP BY ALL;

CREATE OR REPLACE VIEW v_vehicle_day AS
SELECT vehicle_id, CAST(start_ts AS DATE) AS day, count(*) AS trips, sum(distance_km) AS km,
       sum(harsh_brakes) AS harsh_brakes, sum(harsh_accels) AS harsh_accels
FROM trips GROUP BY ALL;
"""
)


def _lock_conflict(exc: BaseException) -> bool:
    """DuckDB lets one process open a file for writing, or several read-only: this is the refusal."""
    return "lock" in str(exc).lower() and ("conflicting" in str(exc).lower() or "could not set" in str(exc).lower())


def connect(
    path: Path | str, read_only: bool = False, busy_timeout_s: float = 30.0, init: bool = True
) -> duckdb.DuckDBPyConnection:
    """Open the project's database. Another process holding the file (the store between its short writes, a
    pricing run, an actuary's query) is waited for, with back-off, up to ``busy_timeout_s``; then a clear
    StoreError. ``init=False`` skips the schema statements (the store's writer, which ran them once)."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline, delay = time.monotonic() + busy_timeout_s, 0.02
    while True:
        try:
            return _connect_once(path, read_only, init)
        except StoreError as exc:
            if not _lock_conflict(exc) or time.monotonic() + delay > deadline:
                if _lock_conflict(exc):
                    raise StoreError(
                        f"{path} is busy: another process has it open for writing (waited {busy_timeout_s:.0f} s); "
                        f"{exc}"
                    ) from exc
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def _connect_once(path: Path, read_only: bool, init: bool) -> duckdb.DuckDBPyConnection:
    try:  # every connection of the project: encrypted at rest, key checked (ubi/adapters/privacy.py)
        con = open_database(path, read_only=read_only)
    except duckdb.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from exc
    if not read_only and init:
        _migrate(con)
        con.execute(SCHEMA + PRIVACY_SCHEMA)
        if con.execute("SELECT count(*) FROM schema_info").fetchone()[0] == 0:
            con.execute("INSERT INTO schema_info VALUES (?)", [SCHEMA_VERSION])
        _link_old(con)
    return con


def _table_type(con: duckdb.DuckDBPyConnection, name: str) -> str | None:
    row = con.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_catalog = current_database() "
        "AND table_schema = 'main' AND table_name = ?",
        [name],
    ).fetchone()
    return None if row is None else str(row[0])


def _migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Bring a file written by an older version up to SCHEMA_VERSION, each step in one transaction (a failure
    leaves the file as it was). Runs before SCHEMA, whose CREATE ... IF NOT EXISTS cannot change a table.

    1 -> 2: ``premiums`` and ``monthly_features`` were tables keyed by (policy, month); their rows move once into
    ``premium_rows`` and ``feature_rows``, every (month, run) they hold is published, and the names become views
    (PRICED_VIEWS). Scratch tables of the old staged publish (``_pricing_stage_*``) are dropped."""
    if _table_type(con, "premiums") != "BASE TABLE":
        return  # a new file, or already at version 2
    with transaction(con):
        con.execute("ALTER TABLE premiums ADD COLUMN IF NOT EXISTS off_balance DOUBLE")  # files from before v1's ALTER
        con.execute(PRICED_TABLES)  # the views come with SCHEMA, once the old names are gone
        con.execute("INSERT INTO feature_rows BY NAME SELECT * FROM monthly_features")
        con.execute("INSERT INTO premium_rows BY NAME SELECT * FROM premiums")
        con.execute(
            """INSERT INTO published_runs SELECT DISTINCT month, run_id, now()::TIMESTAMP
               FROM (SELECT month, run_id FROM premiums UNION SELECT month, run_id FROM monthly_features)"""
        )
        for view in ("v_policy_month", "v_experience"):  # read the tables; SCHEMA recreates them on the views
            con.execute(f"DROP VIEW IF EXISTS {view}")
        con.execute("DROP TABLE premiums")
        con.execute("DROP TABLE monthly_features")
        for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "AND starts_with(table_name, '_pricing_stage_')"
        ).fetchall():
            con.execute(f'DROP TABLE "{name}"')
        con.execute("CREATE TABLE IF NOT EXISTS schema_info (version INTEGER NOT NULL)")
        con.execute("DELETE FROM schema_info")
        con.execute("INSERT INTO schema_info VALUES (2)")
    log.info("store upgraded to schema version 2 (premiums and monthly_features are views over published runs)")


def _link_old(con: duckdb.DuckDBPyConnection) -> None:
    """2 -> 3: the prev_* columns (added empty by SCHEMA's ALTERs) are filled in for the trips already stored, in
    one transaction with the version's change."""
    if con.execute("SELECT max(version) FROM schema_info").fetchone()[0] >= 3:
        return
    with transaction(con):
        n = link_trips(con)
        con.execute("DELETE FROM schema_info")
        con.execute("INSERT INTO schema_info VALUES (3)")
    log.info("store upgraded to schema version 3 (%d trips paired with the trip before them)", n)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def upsert_trips(con: duckdb.DuckDBPyConnection, rows: Sequence[TripRecord | dict]) -> int:
    """Insert or replace scored trips by trip_id, all in one transaction. Returns rows written. Dicts are read as
    ``ubi.trips.v1`` JSON (a record from an older scorer lacks the newer fields: they are stored as NULL)."""
    if not rows:
        return 0
    records = [r if isinstance(r, TripRecord) else TripRecord.from_json(r) for r in rows]
    latest = {r.trip_id: r for r in records}  # a batch may carry the same trip twice (replay): last wins
    erased = erased_vehicles(con, {r.vehicle_id for r in latest.values()})
    if erased:  # erased people stay erased when Kafka replays their trips (ubi/adapters/subject.py)
        refused = [t for t, r in latest.items() if r.vehicle_id in erased]
        log.info("refused %d trip(s) of %d erased vehicle(s)", len(refused), len(erased))
        for t in refused:
            del latest[t]
        if not latest:
            return 0
    df = pl.DataFrame([r.as_row() for r in latest.values()], schema=TRIP_FRAME_SCHEMA)  # noqa: F841 (used by SQL)
    starts = [r.start_ms for r in latest.values()]
    with transaction(con):
        con.execute(upsert_sql("df"))
        # A trip's id is its vehicle and start (scoring.trips.trip_id), so a replaced row keeps its place: only the
        # batch's trips and the ones after them can have a new trip before them.
        con.register("_link_scope", df.select("vehicle_id", "start_ms"))
        try:
            _link(
                con,
                "SELECT vehicle_id, make_timestamp(min(start_ms) * 1000) AS lo, "
                "make_timestamp(max(start_ms) * 1000) AS hi FROM _link_scope GROUP BY vehicle_id",
                lo=_ts(min(starts)),
                hi=_ts(max(starts)),
            )
        finally:
            con.unregister("_link_scope")
    return len(latest)


def _ts(ms: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(milliseconds=ms)


def link_trips(con: duckdb.DuckDBPyConnection) -> int:
    """Pair every trip with the vehicle's trip before it (the prev_* columns), for trips written without the store's
    upsert: bulk loads and files from before schema version 3. One window over the table; returns rows changed."""
    return _link(con, None)


def _link(
    con: duckdb.DuckDBPyConnection, scope: str | None, lo: datetime | None = None, hi: datetime | None = None
) -> int:
    """Recompute the stored pair (prev_*: the trip before, if it started at most LINK_DAYS earlier) of the trips of
    ``scope`` (SQL of rows vehicle_id, lo, hi: trips of that vehicle from lo to LINK_DAYS after hi; a new or
    replaced trip changes its own pair and its successors'), or of every trip (None). ``lo``/``hi``: the bounds
    of all scopes, a plain range DuckDB prunes the table's row groups by. Rows whose pair did not change are not
    written."""
    days = f"INTERVAL {LINK_DAYS} DAY"
    if scope is None:
        source, keep, params = "trips", "TRUE", {}
    else:
        source = (
            f"(SELECT t.*, s.lo AS _lo FROM trips t JOIN ({scope}) s USING (vehicle_id) "
            f"WHERE t.start_ts >= $lo - {days} AND t.start_ts <= $hi + {days} "
            f"AND t.start_ts >= s.lo - {days} AND t.start_ts <= s.hi + {days}) src"
        )
        keep, params = "start_ts >= _lo", {"lo": lo, "hi": hi}
    sql = f"""
        UPDATE trips SET prev_start_ts = n.ps, prev_seq_last = n.pq, prev_ended_by = n.pe
        FROM (SELECT trip_id, ps, CASE WHEN ps IS NULL THEN NULL ELSE pq END AS pq,
                     CASE WHEN ps IS NULL THEN NULL ELSE pe END AS pe
              FROM (SELECT trip_id, start_ts, {"_lo" if scope else "NULL AS _lo"},
                           CASE WHEN lag(start_ts) OVER w >= start_ts - {days} THEN lag(start_ts) OVER w END AS ps,
                           lag(seq_last) OVER w AS pq, lag(ended_by) OVER w AS pe
                    FROM {source} WINDOW w AS (PARTITION BY vehicle_id ORDER BY {LINK_ORDER}))
              WHERE {keep}) n
        WHERE trips.trip_id = n.trip_id AND (trips.prev_start_ts IS DISTINCT FROM n.ps
              OR trips.prev_seq_last IS DISTINCT FROM n.pq OR trips.prev_ended_by IS DISTINCT FROM n.pe)"""
    row = con.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def last_data_by_vehicle(con: duckdb.DuckDBPyConnection, since_days: float) -> list[tuple[str, float | None]]:
    """Each insured vehicle, and each that stored a trip in the last ``since_days``, with its newest trip end
    (epoch seconds; None when it has none in that window): seeds the store's silent-device metrics."""
    return con.execute(
        """WITH recent AS (SELECT vehicle_id, max(end_ts) AS last FROM trips
                           WHERE end_ts >= now()::TIMESTAMP - to_days(CAST(ceil($days) AS INTEGER))
                           GROUP BY vehicle_id)
           SELECT vehicle_id, epoch(last) FROM recent FULL OUTER JOIN (SELECT DISTINCT vehicle_id FROM policies)
           USING (vehicle_id)""",
        {"days": since_days},
    ).fetchall()


def audit(con: duckdb.DuckDBPyConnection, actor: str, action: str, detail: dict) -> None:
    con.execute(
        "INSERT INTO audit VALUES (now()::TIMESTAMP, ?, ?, ?)", [actor, action, json.dumps(detail, default=str)]
    )
    audit_log.record(actor, action, None, detail)  # and the hash-chained log (ubi/adapters/audit.py)


def load_policies(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """Upsert policies from Parquet; protected attributes go to their own table (fairness audits only)."""
    src = str(path)
    dupes = con.execute(
        """SELECT vehicle_id FROM read_parquet(?) GROUP BY 1 HAVING count(*) > 1 LIMIT 5""", [src]
    ).fetchall()
    if dupes:
        raise StoreError(f"{src}: vehicles on more than one policy: {[d[0] for d in dupes]}")
    with transaction(con):
        con.execute(
            """
            INSERT OR REPLACE INTO policies
            SELECT policy_id, vehicle_id, start_date, base_premium, vehicle_group, age_band, region
            FROM read_parquet(?)""",
            [src],
        )
        con.execute(
            """
            INSERT OR REPLACE INTO protected_attributes
            SELECT policy_id, gender FROM read_parquet(?)""",
            [src],
        )
        n = con.execute("SELECT count(*) FROM read_parquet(?)", [src]).fetchone()[0]
        audit(con, "ubi", "load_policies", {"path": src, "rows": n})
    return n


# --- monthly pricing ------------------------------------------------------------------------------------------

# A month's book is read in two queries. The policies, in policy order, with last month's premium; and every trip
# of the month with its policy's row number in that order (a join against the policies: a hash table of the
# policies, not of per-trip partial sums), streamed in batches into per-policy sums (pricing/month_sums.py). A
# GROUP BY over a 600 M-trip month spilled tens of GB (the trips are stored in time order, so no row group holds
# few vehicles): docs/capacity.md. Completeness needs no window either: each trip carries the pair before it
# (MISSING_BEFORE). Trips a policyholder objected to (pending or accepted, on the policy's own vehicle) leave the
# features but not the completeness; their ids come along only for the vehicles that objected.
MONTH_POLICIES_SQL = """
SELECT p.policy_id, CAST(round(p.base_premium * 100) AS BIGINT) AS base_c,
       CAST(round(prev.premium * 100) AS BIGINT) AS prev_c
FROM policies p LEFT JOIN premiums prev ON prev.policy_id = p.policy_id AND prev.month = $prev
WHERE p.start_date < $end
ORDER BY p.policy_id
"""
MONTH_POLICY_NUMBERS = """
SELECT vehicle_id, CAST(row_number() OVER (ORDER BY policy_id) - 1 AS BIGINT) AS idx,
       policy_id IN (SELECT policy_id FROM trip_objections WHERE status <> 'rejected') AS objected
FROM policies WHERE start_date < $end
"""
MONTH_TRIPS_SQL = (
    "SELECT pol.idx, t.distance_km, t.moving_s, t.harsh_brakes, t.harsh_accels, t.messages, "
    + MISSING_IN_TRIP
    + " + "
    + MISSING_BEFORE.format(since="CAST($start AS TIMESTAMP) - INTERVAL 31 DAY")
    + " AS missing, CASE WHEN pol.objected THEN t.trip_id END AS trip_id FROM trips t JOIN ("
    + MONTH_POLICY_NUMBERS
    + ") pol USING (vehicle_id) WHERE t.start_ts >= $start AND t.start_ts < $end"
)
MONTH_OBJECTED_SQL = (
    "SELECT pol.idx, o.trip_id FROM trip_objections o JOIN policies p USING (policy_id) JOIN ("
    + MONTH_POLICY_NUMBERS
    + ") pol ON pol.vehicle_id = p.vehicle_id WHERE o.status <> 'rejected'"
)


class PricingTables:
    """``pricing.monthly.MonthStore`` on DuckDB: the run's rows are appended in place under its run id and the
    month is switched to them by one small transaction (PRICED_TABLES); the rows of the run it replaced are
    deleted after that commit."""

    def __init__(self, con: duckdb.DuckDBPyConnection, phase: Callable[[str], None] | None = None) -> None:
        self.con = con
        self.phase = phase  # told when each step of the publish begins (a 10 M-row publish takes minutes)

    def month_book(self, month: date) -> tuple[Sequence[str], Book, np.ndarray]:
        """The month's per-policy inputs; the mask says which policies have a previous month's premium. Read in
        record batches, ids kept in Arrow (ubi/adapters/book_stream.py: a 10 M-policy book in a few GB); the trips
        streamed into per-policy sums (MONTH_TRIPS_SQL)."""
        self.con.complete()  # DuckDB refuses a new result while an earlier one is unread
        params = {"start": month, "end": next_month(month), "prev": previous_month(month)}
        r = fetch_columns(
            self.con.sql(MONTH_POLICIES_SQL, params={"end": params["end"], "prev": params["prev"]}),
            text=("policy_id",),
        )
        sums = self._month_sums(len(r["base_c"]), params)
        col = {k: np.ma.getdata(v) for k, v in r.items()}
        has_prev = ~np.ma.getmaskarray(r["prev_c"])
        base_c = col["base_c"].astype(np.int64)
        prev_c = np.where(has_prev, col["prev_c"], base_c).astype(np.int64)
        book = Book(
            base_c,
            prev_c,
            sums.trips,
            sums.km,
            sums.moving_s / 3600.0,
            sums.harsh_brakes,
            sums.harsh_accels,
            sums.completeness(),
        )
        ids = col["policy_id"]
        return ids, with_consent(self.con, ids, book), has_prev  # consent: ubi/adapters/consent.py

    def _month_sums(self, policies: int, params: dict) -> MonthSums:
        """Every trip of the month added to its policy's slot, batch by batch; a trip with a pending or accepted
        objection adds to the completeness only."""
        objected = {(int(i), t) for i, t in self.con.execute(MONTH_OBJECTED_SQL, {"end": params["end"]}).fetchall()}
        sums = MonthSums.zeros(policies)
        reader = self.con.sql(MONTH_TRIPS_SQL, params={"start": params["start"], "end": params["end"]})
        for batch in reader.to_arrow_reader(book_stream.BATCH_ROWS):
            c = {name: col for name, col in zip(batch.schema.names, batch.columns, strict=True)}
            idx = c["idx"].to_numpy()
            kept = np.ones(len(idx), bool)
            if objected and c["trip_id"].null_count < len(idx):
                ids = c["trip_id"].to_pylist()
                for r in np.flatnonzero(~c["trip_id"].is_null().to_numpy(zero_copy_only=False)):
                    kept[r] = (int(idx[r]), ids[r]) not in objected
            add_batch(
                sums,
                idx,
                kept,
                *(c[k].to_numpy(zero_copy_only=False) for k in ("distance_km", "moving_s")),
                *(c[k].to_numpy(zero_copy_only=False).astype(np.int64) for k in ("harsh_brakes", "harsh_accels")),
                *(c[k].to_numpy(zero_copy_only=False).astype(np.int64) for k in ("messages", "missing")),
            )
        return sums

    def excluded_trips(self, month: date) -> dict[str, list[dict]]:
        """Trips of the month left out of pricing because the policyholder objected (pending or accepted)."""
        rows = self.con.execute(
            """SELECT o.policy_id, o.trip_id, o.reason, o.status, t.distance_km
               FROM trip_objections o JOIN policies p USING (policy_id)
               JOIN trips t ON t.trip_id = o.trip_id AND t.vehicle_id = p.vehicle_id
               WHERE o.status <> 'rejected' AND t.start_ts >= ? AND t.start_ts < ?
               ORDER BY o.policy_id, t.start_ts""",
            [month, next_month(month)],
        ).fetchall()
        out: dict[str, list[dict]] = {}
        for pid, tid, reason, status, km in rows:
            out.setdefault(pid, []).append(
                {"trip_id": tid, "objection": reason, "status": status, "km": round(float(km), 3)}
            )
        return out

    def write_month(
        self,
        rb: Rulebook,
        month: date,
        run_id: str,
        actor: str,
        summary: RunSummary,
        chunks: Iterator[Chunk],
        off_balance: float | None,
    ) -> None:
        con = self.con
        # The rows go where they stay, under this run's id, each batch committed on its own (PRICED_TABLES);
        # readers see none of them until _publish points the month at this run.
        self._clear_unpublished(month)
        replaced = [r[0] for r in con.execute("SELECT run_id FROM published_runs WHERE month = ?", [month]).fetchall()]
        try:
            for feats, prems in batched(chunks, book_stream.STAGE_ROWS):  # a row group or more per INSERT
                self._insert(feats, prems, month, run_id, rb, off_balance)
            self._publish(rb, month, run_id, actor, summary, off_balance)
        except BaseException:
            try:  # never published: nobody saw them
                con.complete()
                self._delete_rows("run_id = ?", [run_id])
            except duckdb.Error as exc:  # they stay invisible; the month's next run deletes them
                log.warning("run %s failed; its unpublished rows stay until the month's next run: %s", run_id, exc)
            raise
        if replaced:  # by run id: scanning the month's run ids for "not this run" took 12 s at 10 M rows
            if self.phase:
                self.phase("removing the rows of the run this one replaced")
            self._delete_rows("month = ? AND list_contains(?, run_id)", [month, replaced])

    def _delete_rows(self, where: str, params: list) -> None:
        with transaction(self.con):
            for table in ("feature_rows", "premium_rows"):
                self.con.execute(f"DELETE FROM {table} WHERE {where}", params)

    def _clear_unpublished(self, month: date) -> None:
        """Rows of the month left by a run that never published (killed): invisible, now deleted."""
        self._delete_rows(
            "month = ? AND run_id NOT IN (SELECT run_id FROM published_runs WHERE month = ?)", [month, month]
        )

    def _publish(
        self,
        rb: Rulebook,
        month: date,
        run_id: str,
        actor: str,
        summary: RunSummary,
        off_balance: float | None,
    ) -> None:
        """One small transaction: the run recorded and audited, and the month pointed at its rows (no row copied)."""
        con = self.con
        with transaction(con):
            store_rulebook(con, rb)
            con.execute(
                "INSERT INTO runs VALUES (?, 'price', ?, ?, ?, now()::TIMESTAMP, NULL, ?, NULL)",
                [run_id, month, rb.sha256, actor, json.dumps({"rulebook": rb.path, "version": rb.version})],
            )
            # the month's rows are this run's from the commit on; a run it replaces is no longer seen
            con.execute("DELETE FROM published_runs WHERE month = ?", [month])
            con.execute("INSERT INTO published_runs VALUES (?, ?, now()::TIMESTAMP)", [month, run_id])
            con.execute(
                "UPDATE runs SET finished_at = now()::TIMESTAMP, summary = ? WHERE run_id = ?",
                [json.dumps(summary.__dict__, default=str), run_id],
            )
            audit(
                con,
                actor,
                "price_month",
                {
                    "run_id": run_id,
                    "month": month,
                    "rulebook": rb.version,
                    "sha256": rb.sha256,
                    "policies": summary.policies,
                    "off_balance": off_balance,
                    "excluded_trips": summary.excluded_trips,  # objected trips left out (trace: excluded_trips)
                },
            )
            if self.phase:
                self.phase("committing the month")

    def _insert(
        self,
        feats: pl.DataFrame,
        prems: pl.DataFrame,
        month: date,
        run_id: str,
        rb: Rulebook,
        ob_value: float | None,
    ) -> None:
        """One batch of the run's rows appended to feature_rows and premium_rows (committed; not yet published)."""
        con = self.con
        con.complete()  # DuckDB refuses register() while an earlier result is unread
        con.register("feats_df", feats)
        con.register("prems_df", prems)
        try:
            con.execute(
                """
                INSERT INTO feature_rows (policy_id, month, trips, km, driving_hours, harsh_brakes,
                       harsh_accels, harsh_brakes_per_100km, harsh_accels_per_100km, run_id)
                SELECT policy_id, $month, trips, km, driving_hours, harsh_brakes, harsh_accels, b100, a100, $run
                FROM feats_df""",
                {"month": month, "run": run_id},
            )
            con.execute(
                """
                INSERT INTO premium_rows (policy_id, month, base_premium, previous_premium, telematics_factor,
                       credibility, uncapped_premium, premium, cap_applied, rulebook_version, rulebook_sha256, run_id,
                       trace, statement, off_balance)
                SELECT policy_id, $month, CAST(base_c / 100 AS DECIMAL(12, 2)), CAST(prev_c / 100 AS DECIMAL(12, 2)),
                       factor_u / 10000, round(z, 6), CAST(uncapped_c / 100 AS DECIMAL(12, 2)),
                       CAST(premium_c / 100 AS DECIMAL(12, 2)), cap, $version, $sha, $run, trace, statement, $ob
                FROM prems_df""",
                {"month": month, "run": run_id, "version": rb.version, "sha": rb.sha256, "ob": ob_value},
            )
        finally:
            con.unregister("feats_df")
            con.unregister("prems_df")


def store_rulebook(con: duckdb.DuckDBPyConnection, rb: Rulebook) -> None:
    con.execute(
        """INSERT INTO rulebooks SELECT ?, ?, ?, ?, ?, now()::TIMESTAMP
                   WHERE NOT EXISTS (SELECT 1 FROM rulebooks WHERE sha256 = ?)""",
        [rb.sha256, rb.version, rb.effective_from, rb.author, rb.text, rb.sha256],
    )


def run_month(
    con: duckdb.DuckDBPyConnection,
    rb: Rulebook,
    month: date,
    actor: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    memory_limit: str | None = None,
    workers: int = 1,
) -> RunSummary:
    """``pricing.monthly.run_month`` on this DuckDB connection; ``memory_limit`` (e.g. ``Config.pricing_memory_limit``)
    bounds DuckDB's memory for the run (its sorts and aggregations spill beyond it), then the setting is restored;
    ``workers``: processes building the rows (``Config.pricing_workers``; only this process touches DuckDB)."""
    tables = PricingTables(con, getattr(progress, "phase", None))
    if not memory_limit:
        return monthly.run_month(tables, rb, month, actor, progress, workers)
    before = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    con.execute(f"SET memory_limit = '{_size(memory_limit)}'")
    try:
        return monthly.run_month(tables, rb, month, actor, progress, workers)
    finally:
        con.execute(f"SET memory_limit = '{_size(before)}'")


def _size(text: str) -> str:
    """A DuckDB memory size such as 2GB or 1.5 GiB; anything else is refused (it is put into SQL text)."""
    if not re.fullmatch(r"\s*\d+(\.\d+)?\s*[KMGT]i?B\s*", text, re.IGNORECASE):
        raise StoreError(f"memory limit {text!r}: expected a size such as 2GB")
    return text.strip()


# --- actuary tools (read-only, except loading a book) ---------------------------------------------------------

CAP_CODES = {"none": CAP_NONE, "increase": CAP_UP, "decrease": CAP_DOWN}


def latest_priced_month(con: duckdb.DuckDBPyConnection) -> date | None:
    row = con.execute("SELECT max(month) FROM premiums").fetchone()
    return None if row is None else row[0]


@dataclass
class PricedMonth:
    """A priced month as arrays: the book's inputs, the live premiums, reporting segments."""

    book: Book
    premium_c: np.ndarray
    cap: np.ndarray
    factor: np.ndarray
    segments: dict[str, np.ndarray]
    rulebook_versions: list[str]
    rulebook_sha: str


def priced_month(con: duckdb.DuckDBPyConnection, month: date) -> PricedMonth:
    r = con.execute(
        """
        SELECT CAST(round(p.base_premium * 100) AS BIGINT) AS base_c,
               CAST(round(p.previous_premium * 100) AS BIGINT) AS prev_c,
               CAST(round(p.premium * 100) AS BIGINT) AS premium_c, p.cap_applied, p.telematics_factor,
               f.trips, f.km, f.driving_hours, f.harsh_brakes, f.harsh_accels,
               coalesce(pol.vehicle_group, 'unknown') AS vehicle_group, coalesce(pol.age_band, 'unknown') AS age_band,
               coalesce(pol.region, 'unknown') AS region, p.rulebook_version, p.rulebook_sha256
        FROM premiums p JOIN monthly_features f USING (policy_id, month)
        LEFT JOIN policies pol USING (policy_id)
        WHERE p.month = ? ORDER BY p.policy_id""",
        [month],
    ).fetchnumpy()
    if len(r["base_c"]) == 0:
        raise PricingError(f"no premiums for {month:%Y-%m}; run `ubi price --month {month:%Y-%m}` first")
    book = Book(
        r["base_c"].astype(np.int64),
        r["prev_c"].astype(np.int64),
        r["trips"].astype(np.int64),
        r["km"].astype(np.float64),
        r["driving_hours"].astype(np.float64),
        r["harsh_brakes"].astype(np.int64),
        r["harsh_accels"].astype(np.int64),
    )
    caps = np.array([CAP_CODES[c] for c in r["cap_applied"]], dtype=np.int8)
    shas = np.unique(r["rulebook_sha256"].astype(str))
    return PricedMonth(
        book,
        r["premium_c"].astype(np.int64),
        caps,
        r["telematics_factor"].astype(np.float64),
        {k: r[k].astype(str) for k in ("vehicle_group", "age_band", "region")},
        sorted(set(r["rulebook_version"].astype(str))),
        str(shas[0]),
    )


def experience(con: duckdb.DuckDBPyConnection) -> fit.Experience:
    try:
        r = con.execute("""SELECT exposure_years, claims, km, harsh_brakes, harsh_accels, driving_hours,
                                  coalesce(vehicle_group, 'unknown') AS vehicle_group,
                                  coalesce(age_band, 'unknown') AS age_band, coalesce(region, 'unknown') AS region
                           FROM v_experience ORDER BY policy_id, period_start""").fetchnumpy()
    except duckdb.CatalogException as exc:
        raise StoreError(f"the store predates claims data ({exc}); open it once with `ubi price` to upgrade") from exc
    return fit.Experience(
        r["exposure_years"].astype(float),
        r["claims"].astype(float),
        r["km"].astype(float),
        r["harsh_brakes"].astype(float),
        r["harsh_accels"].astype(float),
        r["driving_hours"].astype(float),
        {k: r[k].astype(str) for k in ("vehicle_group", "age_band", "region")},
    )


def load_book(con: duckdb.DuckDBPyConnection, folder: Path) -> dict[str, int]:
    """Load policies.parquet, exposure_periods.parquet and claims.parquet (replacing rows with the same keys)."""
    counts = {"policies": load_policies(con, folder / "policies.parquet")}
    with transaction(con):
        con.execute(
            """INSERT OR REPLACE INTO exposure_periods
                       SELECT policy_id, period_start, period_end, exposure_years, km, harsh_brakes, harsh_accels,
                              driving_hours FROM read_parquet(?)""",
            [str(folder / "exposure_periods.parquet")],
        )
        con.execute(
            """INSERT OR REPLACE INTO claims SELECT claim_id, policy_id, claim_date, amount
                       FROM read_parquet(?)""",
            [str(folder / "claims.parquet")],
        )
        counts["exposure_periods"] = con.execute(
            "SELECT count(*) FROM read_parquet(?)", [str(folder / "exposure_periods.parquet")]
        ).fetchone()[0]
        counts["claims"] = con.execute(
            "SELECT count(*) FROM read_parquet(?)", [str(folder / "claims.parquet")]
        ).fetchone()[0]
        audit(con, "ubi", "load_book", {"path": str(folder), **counts})
    return counts


def fairness_inputs(con: duckdb.DuckDBPyConnection, month: date) -> dict[str, np.ndarray]:
    """The month's premium change and factor with the protected attributes (read by the fairness audit only)."""
    return con.execute(
        """
        SELECT p.premium / p.previous_premium - 1 AS change, p.telematics_factor,
               p.cap_applied = 'increase' AS capped_up,
               coalesce(pa.gender, 'unknown') AS gender, coalesce(pol.age_band, 'unknown') AS age_band
        FROM premiums p LEFT JOIN policies pol USING (policy_id)
        LEFT JOIN protected_attributes pa USING (policy_id)
        WHERE p.month = ? ORDER BY p.policy_id""",
        [month],
    ).fetchnumpy()


class HeldDatabase:
    """One connection for the life of the process (tests, benchmarks)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    @contextmanager
    def session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        yield self.con


class HandOffDatabase:
    """The store's writer: the file is opened for each write and closed right after, so that between writes other
    processes (``ubi sql``, ``ubi price``, the portal, an actuary's DuckDB client) can open it; DuckDB lets one
    process at a time write a file. A busy file is waited for (``connect``'s back-off) while the store's Kafka
    offsets stay uncommitted, so nothing is lost when a long query holds it."""

    def __init__(self, path: Path | str, busy_timeout_s: float) -> None:
        self.path, self.busy_timeout_s, self._ready = Path(path), busy_timeout_s, False

    @contextmanager
    def session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = connect(self.path, busy_timeout_s=self.busy_timeout_s, init=not self._ready)
        self._ready = True
        try:
            yield con
        finally:
            con.close()
