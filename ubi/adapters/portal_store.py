"""DuckDB for the policyholder portal and statements: sign-in tokens (only their SHA-256 is stored; they expire and
can be revoked), sessions, sign-in attempts (rate limiting), trip objections and review requests, each policy's
language, and the reads a statement needs. Every read for a policyholder takes the policy id from the signed-in
session, never from the request, and every trip is checked against that policy's vehicle.

Tokens are 256-bit random strings (``secrets.token_urlsafe(32)``): unguessable, so a plain SHA-256 is the right
hash (a slow password KDF protects low-entropy secrets; it would only slow every sign-in here).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import duckdb

from pricing.explain import Explanation, explain
from pricing.rulebook import parse_rulebook
from ubi.adapters import duckdb_store
from ubi.adapters.privacy import open_database
from ubi.common.errors import PortalError, StoreError

LANGUAGES = ("en", "zh-CN")
REASONS = ("not_driving", "passenger", "not_my_vehicle")

SCHEMA = """
CREATE TABLE IF NOT EXISTS policy_settings (
    policy_id VARCHAR PRIMARY KEY,
    language  VARCHAR NOT NULL                -- en | zh-CN; a policy without a row reads English
);
CREATE TABLE IF NOT EXISTS portal_tokens (
    token_id     VARCHAR PRIMARY KEY,
    policy_id    VARCHAR NOT NULL,
    token_sha256 VARCHAR NOT NULL UNIQUE,     -- the token itself is shown once and never stored
    created_at   TIMESTAMP NOT NULL,
    expires_at   TIMESTAMP NOT NULL,
    revoked_at   TIMESTAMP,
    created_by   VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS portal_sessions (
    session_sha256 VARCHAR PRIMARY KEY,       -- of the cookie value
    token_id       VARCHAR NOT NULL,
    policy_id      VARCHAR NOT NULL,
    csrf           VARCHAR NOT NULL,
    created_at     TIMESTAMP NOT NULL,
    expires_at     TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS portal_signins (
    ts     TIMESTAMP NOT NULL,
    client VARCHAR NOT NULL,
    ok     BOOLEAN NOT NULL
);
CREATE TABLE IF NOT EXISTS review_requests (
    request_id    VARCHAR PRIMARY KEY,
    policy_id     VARCHAR NOT NULL,
    month         DATE NOT NULL,
    message       VARCHAR NOT NULL,
    status        VARCHAR NOT NULL,           -- pending | accepted | rejected
    created_at    TIMESTAMP NOT NULL,
    decided_at    TIMESTAMP,
    decided_by    VARCHAR,
    decision_note VARCHAR
);
"""


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def connect(path: Path | str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """The store with the pricing schema (``duckdb_store``) and the portal's tables."""
    con = duckdb_store.connect(path, read_only=read_only)
    if not read_only:
        con.execute(SCHEMA)
    return con


def open_briefly(path: Path | str, wait_s: float = 3.0) -> duckdb.DuckDBPyConnection:
    """A connection for one request. DuckDB lets one process write a file at a time, so the portal holds it only
    per request and waits briefly while `ubi price` or `ubi review` has it; then says the store is busy. The schema
    was made when the portal started (``connect``), so this skips it (it costs ~70 ms a connection)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return open_database(path)
        except duckdb.Error as exc:
            text = str(exc).lower()
            if "lock" not in text and "already attached" not in text:  # held by another process, or this one
                raise StoreError(f"cannot open {path}: {exc}") from exc
            if time.monotonic() > deadline:
                raise StoreError(f"the store is busy (another process is writing it): {exc}") from exc
            time.sleep(0.05)


# --- policies and language ------------------------------------------------------------------------------------


def policy_exists(con: duckdb.DuckDBPyConnection, policy_id: str) -> bool:
    return con.execute("SELECT count(*) FROM policies WHERE policy_id = ?", [policy_id]).fetchone()[0] > 0


def _need_policy(con: duckdb.DuckDBPyConnection, policy_id: str) -> None:
    if not policy_exists(con, policy_id):
        raise PortalError(f"no policy {policy_id!r} in the store")


def language(con: duckdb.DuckDBPyConnection, policy_id: str) -> str:
    row = con.execute("SELECT language FROM policy_settings WHERE policy_id = ?", [policy_id]).fetchone()
    return row[0] if row else "en"


def set_language(con: duckdb.DuckDBPyConnection, policy_id: str, lang: str, actor: str = "ubi") -> None:
    if lang not in LANGUAGES:
        raise PortalError(f"language {lang!r}: expected one of {', '.join(LANGUAGES)}")
    _need_policy(con, policy_id)
    with duckdb_store.transaction(con):
        con.execute("INSERT OR REPLACE INTO policy_settings VALUES (?, ?)", [policy_id, lang])
        duckdb_store.audit(con, actor, "portal_language", {"policy_id": policy_id, "language": lang})


# --- tokens and sessions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Invite:
    token: str
    token_id: str
    policy_id: str
    expires_at: datetime


def invite(con: duckdb.DuckDBPyConnection, policy_id: str, ttl_days: float, actor: str) -> Invite:
    """A new sign-in token for the policy; only its hash is kept, so this is the one time it can be shown."""
    _need_policy(con, policy_id)
    if ttl_days <= 0:
        raise PortalError(f"token lifetime {ttl_days} days: must be positive")
    token = secrets.token_urlsafe(32)
    token_id = uuid.uuid4().hex[:12]
    expires = _now() + timedelta(days=ttl_days)
    with duckdb_store.transaction(con):
        con.execute(
            "INSERT INTO portal_tokens VALUES (?, ?, ?, ?, ?, NULL, ?)",
            [token_id, policy_id, sha(token), _now(), expires, actor],
        )
        duckdb_store.audit(
            con, actor, "portal_invite", {"policy_id": policy_id, "token_id": token_id, "expires_at": expires}
        )
    return Invite(token, token_id, policy_id, expires)


def revoke(con: duckdb.DuckDBPyConnection, policy_id: str, actor: str, token_id: str | None = None) -> int:
    """Revoke the policy's live tokens (or one of them) and end the sessions they opened. Returns tokens revoked."""
    _need_policy(con, policy_id)
    where = "policy_id = ? AND revoked_at IS NULL" + (" AND token_id = ?" if token_id else "")
    args = [policy_id, token_id] if token_id else [policy_id]
    with duckdb_store.transaction(con):
        ids = [r[0] for r in con.execute(f"SELECT token_id FROM portal_tokens WHERE {where}", args).fetchall()]
        if ids:
            con.execute(f"UPDATE portal_tokens SET revoked_at = ? WHERE {where}", [_now(), *args])
            con.execute(
                f"DELETE FROM portal_sessions WHERE token_id IN ({', '.join('?' * len(ids))})",
                ids,
            )
        duckdb_store.audit(con, actor, "portal_revoke", {"policy_id": policy_id, "token_ids": ids})
    return len(ids)


def list_tokens(con: duckdb.DuckDBPyConnection, policy_id: str | None = None) -> list[tuple]:
    return con.execute(
        """SELECT token_id, policy_id, created_at, expires_at, revoked_at FROM portal_tokens
           WHERE ? IS NULL OR policy_id = ? ORDER BY created_at""",
        [policy_id, policy_id],
    ).fetchall()


def recent_failures(con: duckdb.DuckDBPyConnection, client: str, window_s: float) -> int:
    return con.execute(
        "SELECT count(*) FROM portal_signins WHERE client = ? AND NOT ok AND ts > ?",
        [client, _now() - timedelta(seconds=window_s)],
    ).fetchone()[0]


@dataclass(frozen=True)
class Session:
    cookie: str  # the cookie value (only its hash is stored)
    policy_id: str
    csrf: str
    expires_at: datetime


def sign_in(
    con: duckdb.DuckDBPyConnection, token: str, client: str, session_h: float, keep_s: float = 86400.0
) -> Session:
    """A session for a valid token; a wrong, expired or revoked one raises ``PortalError`` with ``reason``
    (``unknown`` | ``expired`` | ``revoked``). Every attempt is recorded for rate limiting."""
    row = con.execute(
        "SELECT token_id, policy_id, expires_at, revoked_at FROM portal_tokens WHERE token_sha256 = ?",
        [sha(token.strip())],
    ).fetchone()
    now = _now()
    reason = "unknown" if row is None else "revoked" if row[3] is not None else "expired" if row[2] <= now else ""
    with duckdb_store.transaction(con):
        # attempts (client addresses) are kept only as long as rate limiting can need them
        con.execute("DELETE FROM portal_signins WHERE ts < ?", [now - timedelta(seconds=keep_s)])
        con.execute("DELETE FROM portal_sessions WHERE expires_at < ?", [now])  # ended sessions are not kept
        con.execute("INSERT INTO portal_signins VALUES (?, ?, ?)", [now, client, not reason])
        if reason:
            duckdb_store.audit(con, "portal", "portal_signin_refused", {"client": client, "reason": reason})
        else:
            cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
            assert row is not None
            expires = min(now + timedelta(hours=session_h), row[2])
            con.execute(
                "INSERT INTO portal_sessions VALUES (?, ?, ?, ?, ?, ?)",
                [sha(cookie), row[0], row[1], csrf, now, expires],
            )
            duckdb_store.audit(con, "portal", "portal_signin", {"policy_id": row[1], "token_id": row[0]})
    if reason:
        when = None if row is None else row[3] if reason == "revoked" else row[2]
        raise PortalError(f"sign-in refused: {reason} token", reason, when)
    return Session(cookie, row[1], csrf, expires)


def session(con: duckdb.DuckDBPyConnection, cookie: str | None) -> Session | None:
    """The live session for a cookie: its token still unrevoked and unexpired, the session unexpired."""
    if not cookie:
        return None
    row = con.execute(
        """SELECT s.policy_id, s.csrf, s.expires_at FROM portal_sessions s JOIN portal_tokens t USING (token_id)
           WHERE s.session_sha256 = ? AND s.expires_at > ? AND t.revoked_at IS NULL AND t.expires_at > ?""",
        [sha(cookie), _now(), _now()],
    ).fetchone()
    return None if row is None else Session(cookie, row[0], row[1], row[2])


def sign_out(con: duckdb.DuckDBPyConnection, cookie: str) -> None:
    con.execute("DELETE FROM portal_sessions WHERE session_sha256 = ?", [sha(cookie)])


def csrf_ok(s: Session, value: str | None) -> bool:
    return bool(value) and hmac.compare_digest(s.csrf, str(value))


# --- what a policyholder sees ---------------------------------------------------------------------------------


def months(con: duckdb.DuckDBPyConnection, policy_id: str) -> list[date]:
    rows = con.execute("SELECT month FROM premiums WHERE policy_id = ? ORDER BY month DESC", [policy_id]).fetchall()
    return [r[0] for r in rows]


PREMIUM_COLUMNS = (
    "policy_id, month, base_premium, previous_premium, telematics_factor, credibility, uncapped_premium, premium, "
    "cap_applied, rulebook_version, rulebook_sha256, run_id, trace"
)


def premium_row(con: duckdb.DuckDBPyConnection, policy_id: str, month: date) -> dict | None:
    cur = con.execute(f"SELECT {PREMIUM_COLUMNS} FROM premiums WHERE policy_id = ? AND month = ?", [policy_id, month])
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cur.description], row, strict=True))


def statement_facts(
    con: duckdb.DuckDBPyConnection, policy_id: str, month: date, history_months: int = 6
) -> Explanation:
    """The statement for a priced month, explained with the rulebook that priced it (read from ``rulebooks``)."""
    row = premium_row(con, policy_id, month)
    if row is None:
        raise PortalError(f"no premium for {policy_id} in {month:%Y-%m}")
    rb_row = con.execute("SELECT content, version FROM rulebooks WHERE sha256 = ?", [row["rulebook_sha256"]]).fetchone()
    if rb_row is None:
        raise StoreError(f"rulebook {row['rulebook_sha256'][:12]} that priced {policy_id} {month:%Y-%m} is not stored")
    rb = parse_rulebook(rb_row[0], f"<stored rulebook {rb_row[1]}>")
    prev = con.execute(
        "SELECT trace FROM premiums WHERE policy_id = ? AND month = ?",
        [policy_id, date(month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1)],
    ).fetchone()
    hist = con.execute(
        "SELECT month, premium, trace FROM premiums WHERE policy_id = ? AND month <= ? ORDER BY month DESC LIMIT ?",
        [policy_id, month, history_months],
    ).fetchall()
    return explain(
        rb,
        row,
        json.loads(row["trace"]),
        json.loads(prev[0]) if prev else None,
        [(m, Decimal(p), json.loads(t)) for m, p, t in hist],
    )


TRIP_COLUMNS = (
    "t.trip_id, t.start_ts, t.end_ts, t.duration_s, t.distance_km, t.harsh_brakes, t.harsh_accels, "
    "t.harsh_corners, t.score, t.score_parts"
)


def _objection_of(con, trip_ids: list[str]) -> dict[str, tuple]:
    if not trip_ids:
        return {}
    rows = con.execute(
        f"""SELECT trip_id, reason, status, objection_id FROM trip_objections
            WHERE trip_id IN ({", ".join("?" * len(trip_ids))}) ORDER BY created_at""",
        trip_ids,
    ).fetchall()
    return {r[0]: r[1:] for r in rows}  # the latest objection per trip


def trips(con: duckdb.DuckDBPyConnection, policy_id: str, month: date | None = None, limit: int = 500) -> list[dict]:
    """The policy's trips (newest first): times, distance, events, score parts; never coordinates."""
    cur = con.execute(
        f"""SELECT {TRIP_COLUMNS} FROM trips t JOIN policies p ON p.vehicle_id = t.vehicle_id
            WHERE p.policy_id = ? AND (CAST(? AS DATE) IS NULL OR (t.start_ts >= ? AND t.start_ts < ?))
            ORDER BY t.start_ts DESC LIMIT ?""",
        [policy_id, month, month, duckdb_store.next_month(month) if month else None, limit],
    )
    names = [d[0] for d in cur.description]
    out = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    objections = _objection_of(con, [t["trip_id"] for t in out])
    for t in out:
        t["score_parts"] = json.loads(t["score_parts"]) if t["score_parts"] else {}
        reason, status, _oid = objections.get(t["trip_id"], (None, None, None))
        t["objection"], t["objection_status"] = reason, status
    return out


def trip(con: duckdb.DuckDBPyConnection, policy_id: str, trip_id: str) -> dict | None:
    """One trip, only when it is this policy's vehicle's."""
    cur = con.execute(
        f"""SELECT {TRIP_COLUMNS} FROM trips t JOIN policies p ON p.vehicle_id = t.vehicle_id
            WHERE p.policy_id = ? AND t.trip_id = ?""",
        [policy_id, trip_id],
    )
    r = cur.fetchone()
    if r is None:
        return None
    t = dict(zip([d[0] for d in cur.description], r, strict=True))
    t["score_parts"] = json.loads(t["score_parts"]) if t["score_parts"] else {}
    reason, status, _oid = _objection_of(con, [trip_id]).get(trip_id, (None, None, None))
    t["objection"], t["objection_status"] = reason, status
    return t


def premium_history(con: duckdb.DuckDBPyConnection, policy_id: str) -> list[tuple]:
    return con.execute(
        """SELECT p.month, p.previous_premium, p.premium, p.telematics_factor, p.cap_applied, f.trips, f.km,
                  f.harsh_brakes_per_100km, f.harsh_accels_per_100km
           FROM premiums p LEFT JOIN monthly_features f USING (policy_id, month)
           WHERE p.policy_id = ? ORDER BY p.month DESC""",
        [policy_id],
    ).fetchall()


# --- objections and reviews -----------------------------------------------------------------------------------


def object_to_trip(con: duckdb.DuckDBPyConnection, policy_id: str, trip_id: str, reason: str) -> str:
    """Record an objection; the trip leaves pricing until a reviewer decides. One open or decided objection per
    trip: a second one is refused (a rejected objection is a reviewer's decision, not reopened from the portal)."""
    if reason not in REASONS:
        raise PortalError(f"objection reason {reason!r}: expected one of {', '.join(REASONS)}")
    if trip(con, policy_id, trip_id) is None:
        raise PortalError(f"no trip {trip_id!r} on policy {policy_id}")
    oid = uuid.uuid4().hex[:12]
    with duckdb_store.transaction(con):
        if con.execute("SELECT count(*) FROM trip_objections WHERE trip_id = ?", [trip_id]).fetchone()[0]:
            raise PortalError(f"trip {trip_id} already has an objection")
        con.execute(
            "INSERT INTO trip_objections VALUES (?, ?, ?, ?, 'pending', ?, NULL, NULL, NULL)",
            [oid, policy_id, trip_id, reason, _now()],
        )
        duckdb_store.audit(
            con,
            f"policyholder:{policy_id}",
            "trip_objection",
            {"objection_id": oid, "trip_id": trip_id, "reason": reason},
        )
    return oid


def request_review(con: duckdb.DuckDBPyConnection, policy_id: str, month: date, message: str) -> str:
    """A policyholder asks a person to look at a month's statement (the decision is recorded, not automated)."""
    message = message.strip()[:2000]
    if not message:
        raise PortalError("a review request needs a few words on what to look at")
    if premium_row(con, policy_id, month) is None:
        raise PortalError(f"no premium for {policy_id} in {month:%Y-%m}")
    rid = uuid.uuid4().hex[:12]
    with duckdb_store.transaction(con):
        con.execute(
            "INSERT INTO review_requests VALUES (?, ?, ?, ?, 'pending', ?, NULL, NULL, NULL)",
            [rid, policy_id, month, message, _now()],
        )
        duckdb_store.audit(con, f"policyholder:{policy_id}", "review_request", {"request_id": rid, "month": month})
    return rid


def pending_reviews(con: duckdb.DuckDBPyConnection, all_: bool = False) -> list[tuple]:
    """Objections and review requests (pending ones unless ``all_``): (id, kind, policy, subject, reason/message,
    status, created)."""
    status = "" if all_ else "WHERE status = 'pending'"
    return con.execute(
        f"""SELECT * FROM (
              SELECT o.objection_id AS id, 'trip' AS kind, o.policy_id, o.trip_id AS subject,
                     o.reason || coalesce(' (trip ' || strftime(t.start_ts, '%Y-%m-%d %H:%M') || ' UTC, '
                         || round(t.distance_km, 1) || ' km, ' || t.harsh_brakes || ' harsh brakes)', '') AS detail,
                     o.status, o.created_at
              FROM trip_objections o LEFT JOIN trips t USING (trip_id)
              UNION ALL
              SELECT request_id, 'statement', policy_id, strftime(month, '%Y-%m'), message, status, created_at
              FROM review_requests) {status} ORDER BY created_at"""
    ).fetchall()


def decide(con: duckdb.DuckDBPyConnection, item_id: str, accept: bool, actor: str, note: str = "") -> tuple[str, str]:
    """Accept or reject a pending objection or review request. Returns (kind, policy_id). An accepted objection
    keeps the trip out of pricing; a rejected one puts it back from the next premium run."""
    status = "accepted" if accept else "rejected"
    with duckdb_store.transaction(con):
        for table, key, kind in (
            ("trip_objections", "objection_id", "trip"),
            ("review_requests", "request_id", "statement"),
        ):
            row = con.execute(f"SELECT policy_id, status FROM {table} WHERE {key} = ?", [item_id]).fetchone()
            if row is None:
                continue
            if row[1] != "pending":
                raise PortalError(f"{item_id} was already decided ({row[1]})")
            con.execute(
                f"UPDATE {table} SET status = ?, decided_at = ?, decided_by = ?, decision_note = ? WHERE {key} = ?",
                [status, _now(), actor, note, item_id],
            )
            duckdb_store.audit(con, actor, f"review_{status}", {"id": item_id, "kind": kind, "policy_id": row[0]})
            return kind, row[0]
    raise PortalError(f"no objection or review request {item_id!r}")
