"""Data-subject rights on everything the project holds: export (GDPR Art. 15/20) and erasure (Art. 17).

A person is a policy; their data is found by the columns that name a person, in every table of the store (so a
table added later is covered without a change here): ``policy_id`` (the policy), ``vehicle_id`` (its vehicle),
``trip_id`` (its vehicle's trips), plus the audit log's entries about them and the scorer's cutter state for the
vehicle in Kafka.

Erasure deletes those rows, except where a law requires the record: ``premiums`` (accounting: what was charged)
and ``claims`` (claims handling) keep their amounts under a random token instead of the policy id, with the trace
and statement (driving details) removed. The vehicle's MQTT credential is revoked, its cutter state tombstoned in
the compacted state topic, and a keyed digest of the vehicle and policy goes to ``erasures``, which the store
consults on every write, so trips replayed from Kafka do not come back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import duckdb

from ubi.adapters.privacy import read_or_make_key
from ubi.common.config import Config, load_config
from ubi.common.errors import PrivacyError

log = logging.getLogger("ubi.privacy")

PRIVACY_SCHEMA = """
-- Erased people: keyed digests (HMAC-SHA256 under <home>/secrets/erasure.key), never the ids. The store refuses
-- trips of an erased vehicle, so a replay of Kafka does not bring them back.
CREATE TABLE IF NOT EXISTS erasures (
    kind      VARCHAR NOT NULL,             -- vehicle | policy
    digest    VARCHAR NOT NULL,
    token     VARCHAR NOT NULL,             -- what retained records carry instead of the policy id
    erased_at TIMESTAMP NOT NULL,
    PRIMARY KEY (kind, digest)
);

-- What each policyholder agreed their data may be used for (ubi privacy consent; pricing/consent.py).
CREATE TABLE IF NOT EXISTS consents (
    policy_id  VARCHAR NOT NULL,
    purpose    VARCHAR NOT NULL,
    granted    BOOLEAN NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (policy_id, purpose)
);
"""

# Records a law requires to keep after an erasure, and why: pseudonymised (policy id -> token), driving details out.
RETAINED = {
    "premiums": "accounting law: premiums charged are kept (amounts, month, rulebook) under a token, without the "
    "trace and statement",
    "claims": "claims handling and accounting: claim amounts and dates are kept under a token",
}
PERSON_COLUMNS = ("policy_id", "vehicle_id", "trip_id")
# Tables stored under another name than the one readers use: premiums and monthly_features are views over the rows
# of published pricing runs (ubi/adapters/duckdb_store.py PRICED_TABLES); erasure works on the stored rows (those
# of unpublished runs too) and reports them under the readers' names.
STORED_AS = {"premium_rows": "premiums", "feature_rows": "monthly_features"}


def public(table: str) -> str:
    return STORED_AS.get(table, table)


def erasure_key(cfg: Config | None = None) -> bytes:
    """The erasure list's own key, so rotating the pseudonym key never un-erases anyone."""
    cfg = cfg or load_config()
    key = read_or_make_key(cfg.secrets_dir / "erasure.key", create=True)
    assert key is not None
    return key.encode()


def erasure_digest(kind: str, value: str, cfg: Config | None = None, key: bytes | None = None) -> str:
    """Keyed digest (HMAC-SHA256) of an id for the erasure list."""
    return hmac.new(key or erasure_key(cfg), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def erased_vehicles(con: duckdb.DuckDBPyConnection, vehicles: set[str], cfg: Config | None = None) -> set[str]:
    """Those of ``vehicles`` that were erased (the store drops their trips)."""
    if not vehicles:
        return set()
    try:
        listed = {r[0] for r in con.execute("SELECT digest FROM erasures WHERE kind = 'vehicle'").fetchall()}
    except duckdb.CatalogException:
        return set()
    if not listed:
        return set()
    key = erasure_key(cfg)
    return {v for v in vehicles if erasure_digest("vehicle", v, key=key) in listed}


def person_tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Every base table of the store with a column naming a person (policy, vehicle or trip), with those columns."""
    rows = con.execute(
        """SELECT table_name, column_name FROM information_schema.columns
           WHERE table_catalog = current_database() AND table_schema = 'main'
             AND table_name IN (SELECT table_name FROM information_schema.tables
                                WHERE table_catalog = current_database() AND table_type = 'BASE TABLE')
           ORDER BY table_name, ordinal_position"""
    ).fetchall()
    out: dict[str, list[str]] = {}
    for table, column in rows:
        if column in PERSON_COLUMNS:
            out.setdefault(table, []).append(column)
    return out


def text_columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Every text column (VARCHAR, JSON) of every base table that is not itself a person column: ids also turn up
    inside free text and JSON (an audit entry's detail, an actor ``policyholder:<id>``, a trace naming trips)."""
    rows = con.execute(
        """SELECT c.table_name, c.column_name FROM information_schema.columns c
           JOIN information_schema.tables t USING (table_catalog, table_schema, table_name)
           WHERE c.table_catalog = current_database() AND c.table_schema = 'main' AND t.table_type = 'BASE TABLE'
             AND c.data_type IN ('VARCHAR', 'JSON') AND c.table_name <> 'erasures'
           ORDER BY c.table_name, c.ordinal_position"""
    ).fetchall()
    out: dict[str, list[str]] = {}
    for table, column in rows:
        if column not in PERSON_COLUMNS:
            out.setdefault(table, []).append(column)
    return out


def id_pattern(ids: list[str]) -> str:
    """A regular expression (RE2) matching any of the ids as a whole word."""
    alts = "|".join(re.escape(i) for i in sorted(set(ids), key=len, reverse=True))
    return rf"\b(?:{alts})\b"


@dataclass
class Person:
    policy_id: str
    vehicle_id: str | None
    trip_ids: list[str] = field(default_factory=list)


def find_person(con: duckdb.DuckDBPyConnection, policy_id: str) -> Person:
    row = con.execute("SELECT vehicle_id FROM policies WHERE policy_id = ?", [policy_id]).fetchone()
    vehicle = row[0] if row else None
    trips = (
        [r[0] for r in con.execute("SELECT trip_id FROM trips WHERE vehicle_id = ?", [vehicle]).fetchall()]
        if vehicle
        else []
    )
    return Person(policy_id, vehicle, trips)


def _where(columns: list[str]) -> str:
    parts = []
    for c in columns:
        if c == "trip_id":
            parts.append("list_contains($trips, trip_id)")
        else:
            parts.append(f"{c} = ${'policy' if c == 'policy_id' else 'vehicle'}")
    return " OR ".join(parts)


def _params(p: Person) -> dict[str, Any]:
    return {"policy": p.policy_id, "vehicle": p.vehicle_id, "trips": p.trip_ids}


def _used(sql: str, params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if f"${k}" in sql}


def export(
    con: duckdb.DuckDBPyConnection,
    policy_id: str,
    cfg: Config | None = None,
    kafka: bool = True,
    enrolled: set[str] | None = None,
) -> dict:
    """Everything held on the person, machine-readable: every row of every table that names them, the audit
    entries about them, the scorer's state record for their vehicle (when ``kafka``) and whether the vehicle has a
    device credential (when ``enrolled``, the broker's users, is given)."""
    from ubi.adapters import audit

    cfg = cfg or load_config()
    person = find_person(con, policy_id)
    if person.vehicle_id is None:
        raise PrivacyError(f"no policy {policy_id!r} in the store (erased, or never loaded)")
    tables: dict[str, list[dict]] = {}
    for table, columns in sorted(person_tables(con).items()):
        sql = f'SELECT * FROM "{table}" WHERE {_where(columns)}'
        cur = con.execute(sql, _used(sql, _params(person)))
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        if rows:
            tables[public(table)] = rows
    pattern = id_pattern([policy_id, person.vehicle_id, *person.trip_ids])
    for table, columns in sorted(text_columns(con).items()):
        where = " OR ".join(f'regexp_matches(CAST("{c}" AS VARCHAR), $pattern)' for c in columns)
        cur = con.execute(f'SELECT * FROM "{table}" WHERE {where}', {"pattern": pattern})
        names = [d[0] for d in cur.description]
        have = {json.dumps(r, default=str, sort_keys=True) for r in tables.get(public(table), [])}
        for r in cur.fetchall():
            row = dict(zip(names, r, strict=True))
            if json.dumps(row, default=str, sort_keys=True) not in have:
                tables.setdefault(public(table), []).append(row)
    out: dict[str, Any] = {
        "format": "ubi.subject-export.v1",
        "exported_at": datetime.now(timezone.utc).isoformat(),
        "policy_id": policy_id,
        "vehicle_id": person.vehicle_id,
        "tables": tables,
        "audit_entries": audit.entries_about(policy_id, cfg),
        "what_is_not_here": {
            "raw telemetry": f"positions and sensor samples stay in Kafka {cfg.privacy.telemetry_retention_h:g} h "
            "(privacy.telemetry_retention_h) and are not exported",
            "dead letters": f"kept {cfg.privacy.dlq_retention_h:g} h with reason, size and hash only",
        },
    }
    if enrolled is not None:
        out["device_credential"] = (
            "enrolled (the broker keeps a PBKDF2 hash of its password, nothing else)"
            if person.vehicle_id in enrolled
            else "none enrolled"
        )
    if kafka:
        out["scorer_state"] = _state_record(cfg, person.vehicle_id)
    return json.loads(json.dumps(out, default=str))


def _state_partitions(cfg: Config) -> list[int]:
    from ubi.adapters.kafka import admin_client

    admin = admin_client(cfg.kafka)
    try:
        meta = admin.describe_topics([cfg.kafka.scorer_state_topic])
    finally:
        admin.close()
    return sorted(p["partition_index"] for t in meta for p in t.get("partitions", []))


def _state_record(cfg: Config, vehicle: str) -> Any:
    from ubi.adapters.kafka import read_compacted

    key = vehicle.encode()
    for part in _state_partitions(cfg):
        got = read_compacted(cfg.kafka, cfg.kafka.scorer_state_topic, part, timeout=30)
        if key in got:
            return json.loads(got[key])
    return None


@dataclass
class ErasureReport:
    policy_id: str
    token: str
    deleted: dict[str, int]
    pseudonymised: dict[str, int]
    kafka: str
    credentials: str
    remains: list[str]


def erase(
    con: duckdb.DuckDBPyConnection,
    policy_id: str,
    actor: str | None = None,
    cfg: Config | None = None,
    kafka: bool = True,
    revoke=None,
) -> ErasureReport:
    """Remove or pseudonymise everything about the person (one DuckDB transaction), then their Kafka state and
    device credential. Running it again for an erased person redoes the Kafka and credential steps."""
    from ubi.adapters import audit
    from ubi.adapters.duckdb_store import transaction

    cfg = cfg or load_config()
    person = find_person(con, policy_id)
    pdig = erasure_digest("policy", policy_id, cfg)
    prior = con.execute("SELECT token FROM erasures WHERE kind = 'policy' AND digest = ?", [pdig]).fetchone()
    if person.vehicle_id is None and prior is None:
        raise PrivacyError(f"no policy {policy_id!r} in the store, and none erased under that id")
    deleted: dict[str, int] = {}
    pseudonymised: dict[str, int] = {}
    token = prior[0] if prior else "erased-" + secrets.token_hex(8)
    if person.vehicle_id is not None:
        params = _params(person)
        with transaction(con):
            now = datetime.now(timezone.utc).replace(tzinfo=None)
            vdig = erasure_digest("vehicle", person.vehicle_id, cfg)
            for kind, dig in (("policy", pdig), ("vehicle", vdig)):
                con.execute("INSERT OR REPLACE INTO erasures VALUES (?, ?, ?, ?)", [kind, dig, token, now])
            for table, columns in sorted(person_tables(con).items()):
                where = _where(columns)
                if public(table) in RETAINED and columns == ["policy_id"]:
                    sets = ["policy_id = $token"]
                    have = {r[0] for r in con.execute(f'DESCRIBE "{table}"').fetchall()}
                    if "trace" in have:
                        sets.append("trace = '{\"erased\": true}'")
                    if "statement" in have:
                        sets.append("statement = ''")
                    if "claim_id" in have:  # the claims system's id would link back: replaced too
                        sets.append("claim_id = $token || '-' || substr(sha256(claim_id), 1, 12)")
                    sql = f'UPDATE "{table}" SET {", ".join(sets)} WHERE {where}'
                    n = con.execute(sql, _used(sql, {**params, "token": token})).fetchone()[0]
                    pseudonymised[public(table)] = n
                else:
                    sql = f'DELETE FROM "{table}" WHERE {where}'
                    deleted[public(table)] = con.execute(sql, _used(sql, params)).fetchone()[0]
            # ids inside text (audit details, actors, notes): replaced by the token, the rows kept
            pattern = id_pattern([policy_id, person.vehicle_id, *person.trip_ids])
            for table, columns in sorted(text_columns(con).items()):
                for c in columns:
                    n = con.execute(
                        f'UPDATE "{table}" SET "{c}" = regexp_replace(CAST("{c}" AS VARCHAR), $p, $token, \'g\') '
                        f'WHERE regexp_matches(CAST("{c}" AS VARCHAR), $p)',
                        {"p": pattern, "token": token},
                    ).fetchone()[0]
                    if n:
                        pseudonymised[f"{public(table)}.{c}"] = n
    vehicle = person.vehicle_id
    kafka_note = "skipped (--no-kafka)"
    cred_note = "skipped"
    if vehicle is not None or prior is not None:
        vehicles = [vehicle] if vehicle else []
        if kafka and vehicles:
            kafka_note = _tombstone(cfg, vehicles[0])
        if revoke is not None and vehicles:
            gone = revoke(vehicles)
            cred_note = "MQTT credential revoked" if gone else "no MQTT credential was enrolled"
    audit.record(
        actor,
        "privacy_erase",
        policy_id,
        {"token": token, "deleted": deleted, "pseudonymised": pseudonymised, "kafka": kafka_note},
        cfg,
    )
    p = cfg.privacy
    remains = [
        f"{t}: {n} row(s) kept under {token}; "
        + RETAINED.get(t, "the id inside this text was replaced by the token, the row kept (accountability)")
        for t, n in pseudonymised.items()
        if n
    ]
    if not kafka_note.startswith("cutter state tombstoned"):
        remains.append(f"the scorer's cutter state for the vehicle in {cfg.kafka.scorer_state_topic}: {kafka_note}")
    remains += [
        f"raw telemetry in Kafka ({cfg.kafka.telemetry_topic}): deleted by retention within "
        f"{p.telemetry_retention_h:g} h (+ up to 1 h for the segment to roll); Kafka cannot delete one key's "
        "records from a log topic",
        f"scored trips in Kafka ({cfg.kafka.trips_topic}): gone within {p.trips_retention_h:g} h; the store refuses "
        "them meanwhile (erasures list), so a replay does not bring them back",
        f"dead letters ({cfg.kafka.dead_letter_topic}): reason, size and hash, gone within {p.dlq_retention_h:g} h",
        "the erasure list: keyed digests of the policy and vehicle (not the ids), so replays stay erased",
        "the audit log: its entries about this policy carry a keyed pseudonym and are kept for accountability "
        "(GDPR Art. 5(2)); the chain cannot be rewritten without detection",
        "backups and copies outside this project's store (not reachable from here)",
    ]
    return ErasureReport(policy_id, token, deleted, pseudonymised, kafka_note, cred_note, remains)


def _tombstone(cfg: Config, vehicle: str) -> str:
    """A tombstone for the vehicle's cutter state (compaction then drops the record), sent as the scorer, which owns
    the topic; confirmed before returning."""
    from ubi.adapters.kafka import make_producer

    try:
        producer = make_producer(cfg.kafka, client_id="ubi-privacy-erase", user="scorer")
        try:
            producer.send(cfg.kafka.scorer_state_topic, key=vehicle.encode(), value=None).get(timeout=30)
            producer.flush(30)
        finally:
            producer.close(5)
    except Exception as exc:  # noqa: BLE001 - reported: the erasure says this step is not done
        return f"NOT done ({type(exc).__name__}: {exc}); run the erase again when Kafka answers"
    return f"cutter state tombstoned in {cfg.kafka.scorer_state_topic}"
