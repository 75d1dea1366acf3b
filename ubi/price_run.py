"""The monthly pricing run against DuckDB: features from the month's trips, premiums with traces, one
transaction, a run record and an audit entry. Running the same month again replaces its rows."""

from __future__ import annotations

import getpass
import json
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import duckdb

from pricing.engine import MonthFeatures, price_policy, statement
from pricing.rulebook import Rulebook
from ubi import store


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    month: date
    policies: int
    priced_on_driving: int
    capped_up: int
    capped_down: int
    premium_before: Decimal
    premium_after: Decimal


def month_start(text: str) -> date:
    y, m = text.split("-")[:2]
    return date(int(y), int(m), 1)


def next_month(d: date) -> date:
    return date(d.year + (d.month == 12), d.month % 12 + 1, 1)


MONTH_FEATURES_SQL = """
SELECT p.policy_id, p.base_premium,
       count(t.trip_id) AS trips, coalesce(sum(t.distance_km), 0) AS km,
       coalesce(sum(t.moving_s), 0) / 3600.0 AS driving_hours,
       coalesce(sum(t.harsh_brakes), 0) AS harsh_brakes, coalesce(sum(t.harsh_accels), 0) AS harsh_accels,
       prev.premium AS previous_premium
FROM policies p
LEFT JOIN trips t ON t.vehicle_id = p.vehicle_id AND t.start_ts >= ? AND t.start_ts < ?
LEFT JOIN premiums prev ON prev.policy_id = p.policy_id AND prev.month = ?
WHERE p.start_date < ?
GROUP BY ALL
ORDER BY p.policy_id
"""


def store_rulebook(con: duckdb.DuckDBPyConnection, rb: Rulebook) -> None:
    con.execute("""INSERT INTO rulebooks SELECT ?, ?, ?, ?, ?, now()::TIMESTAMP
                   WHERE NOT EXISTS (SELECT 1 FROM rulebooks WHERE sha256 = ?)""",
                [rb.sha256, rb.version, rb.effective_from, rb.author, rb.text, rb.sha256])


def run_month(con: duckdb.DuckDBPyConnection, rb: Rulebook, month: date, actor: str | None = None) -> RunSummary:
    actor = actor or getpass.getuser()
    run_id = uuid.uuid4().hex[:16]
    end = next_month(month)
    prev_month = date(month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1)
    rows = con.execute(MONTH_FEATURES_SQL, [month, end, prev_month, end]).fetchall()
    label = month.strftime("%B %Y")
    feats, prems = [], []
    before = after = Decimal(0)
    gated = up = down = 0
    for policy_id, base, trips, km, hours, hb, ha, previous in rows:
        f = MonthFeatures(int(trips), float(km), float(hours), int(hb), int(ha))
        r = price_policy(rb, base, previous, f)
        per100 = 100.0 / f.km if f.km > 0 else None
        feats.append((policy_id, month, f.trips, f.km, f.driving_hours, f.harsh_brakes, f.harsh_accels,
                      f.harsh_brakes * per100 if per100 else None, f.harsh_accels * per100 if per100 else None,
                      run_id))
        prems.append((policy_id, month, r.base_premium, r.previous_premium, float(r.factor), r.credibility,
                      r.uncapped, r.premium, r.cap_applied, rb.version, rb.sha256, run_id,
                      json.dumps(r.trace), statement(label, r)))
        before += r.previous_premium
        after += r.premium
        gated += r.gated
        up += r.cap_applied == "increase"
        down += r.cap_applied == "decrease"
    summary = RunSummary(run_id, month, len(rows), len(rows) - gated, up, down, before, after)
    with store.transaction(con):
        store_rulebook(con, rb)
        con.execute("INSERT INTO runs VALUES (?, 'price', ?, ?, ?, now()::TIMESTAMP, NULL, ?, NULL)",
                    [run_id, month, rb.sha256, actor, json.dumps({"rulebook": rb.path, "version": rb.version})])
        con.execute("DELETE FROM monthly_features WHERE month = ?", [month])
        con.execute("DELETE FROM premiums WHERE month = ?", [month])
        if feats:
            con.executemany("INSERT INTO monthly_features VALUES (?,?,?,?,?,?,?,?,?,?)", feats)
            con.executemany("INSERT INTO premiums VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", prems)
        con.execute("UPDATE runs SET finished_at = now()::TIMESTAMP, summary = ? WHERE run_id = ?",
                    [json.dumps(summary.__dict__, default=str), run_id])
        store.audit(con, actor, "price_month", {"run_id": run_id, "month": month, "rulebook": rb.version,
                                                "sha256": rb.sha256, "policies": len(rows)})
    return summary
