"""The monthly pricing run against DuckDB: features from the month's trips, premiums with traces, one
transaction, a run record and an audit entry. Running the same month again replaces its rows.

The book is priced as arrays (``pricing.vector``), which also solves the optional off-balance factor; each row's
trace and statement come from the per-policy engine, whose premium must equal the array result. Rows go to
DuckDB as DataFrames in chunks (executemany is far too slow for a real book), as INSERT OR REPLACE by
(policy, month) followed by removing the month's rows this run did not write: in DuckDB that is 2-3x faster
than deleting the month first and inserting the same keys again in one transaction.
"""

from __future__ import annotations

import getpass
import json
import uuid
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import duckdb
import numpy as np
import polars as pl

from pricing import offbalance
from pricing.engine import MonthFeatures, price_policy, statement
from pricing.rulebook import Rulebook
from pricing.vector import CAP_DOWN, CAP_LABELS, CAP_UP, Book, Priced, price_book
from ubi import store
from ubi.errors import PricingError

CHUNK = 50_000  # rows built and inserted at a time: bounds memory for million-policy books


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
    off_balance: dict | None = field(default=None)


def month_start(text: str) -> date:
    y, m = text.split("-")[:2]
    return date(int(y), int(m), 1)


def next_month(d: date) -> date:
    return date(d.year + (d.month == 12), d.month % 12 + 1, 1)


def previous_month(d: date) -> date:
    return date(d.year - (d.month == 1), (d.month - 2) % 12 + 1, 1)


MONTH_FEATURES_SQL = """
WITH t AS (
    SELECT vehicle_id, count(*) AS trips, sum(distance_km) AS km, sum(moving_s) AS moving_s,
           sum(harsh_brakes) AS harsh_brakes, sum(harsh_accels) AS harsh_accels
    FROM trips WHERE start_ts >= $start AND start_ts < $end GROUP BY vehicle_id
)
SELECT p.policy_id, CAST(round(p.base_premium * 100) AS BIGINT) AS base_c,
       coalesce(t.trips, 0) AS trips, coalesce(t.km, 0.0) AS km,
       coalesce(t.moving_s, 0.0) / 3600.0 AS driving_hours,
       coalesce(t.harsh_brakes, 0) AS harsh_brakes, coalesce(t.harsh_accels, 0) AS harsh_accels,
       CAST(round(prev.premium * 100) AS BIGINT) AS prev_c
FROM policies p
LEFT JOIN t ON t.vehicle_id = p.vehicle_id
LEFT JOIN premiums prev ON prev.policy_id = p.policy_id AND prev.month = $prev
WHERE p.start_date < $end
ORDER BY p.policy_id
"""


def load_book(con: duckdb.DuckDBPyConnection, month: date) -> tuple[list[str], Book, np.ndarray]:
    """The month's per-policy inputs; the mask says which policies have a previous month's premium."""
    r = con.execute(MONTH_FEATURES_SQL, {"start": month, "end": next_month(month),
                                         "prev": previous_month(month)}).fetchnumpy()
    col = {k: np.ma.getdata(v) for k, v in r.items()}
    has_prev = ~np.ma.getmaskarray(r["prev_c"])
    base_c = col["base_c"].astype(np.int64)
    prev_c = np.where(has_prev, col["prev_c"], base_c).astype(np.int64)
    book = Book(base_c, prev_c, col["trips"].astype(np.int64), col["km"].astype(np.float64),
                col["driving_hours"].astype(np.float64), col["harsh_brakes"].astype(np.int64),
                col["harsh_accels"].astype(np.int64))
    return list(col["policy_id"]), book, has_prev


def price_month_book(rb: Rulebook, book: Book) -> tuple[Priced, offbalance.OffBalance | None]:
    """Premiums for the book under a rulebook, with its off-balance solved when the rulebook asks for one."""
    if rb.off_balance:
        ob, priced = offbalance.solve(rb, book)
        return priced, ob
    return price_book(rb, book), None


def store_rulebook(con: duckdb.DuckDBPyConnection, rb: Rulebook) -> None:
    con.execute("""INSERT INTO rulebooks SELECT ?, ?, ?, ?, ?, now()::TIMESTAMP
                   WHERE NOT EXISTS (SELECT 1 FROM rulebooks WHERE sha256 = ?)""",
                [rb.sha256, rb.version, rb.effective_from, rb.author, rb.text, rb.sha256])


def _rows(rb: Rulebook, month: date, run_id: str, ids: list[str], book: Book, has_prev: np.ndarray,
          p: Priced, lo: int, hi: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """monthly_features and premiums rows for policies [lo, hi): the engine's trace and statement per row."""
    label = month.strftime("%B %Y")
    ob = None if not rb.off_balance else Decimal(p.off_balance_u).scaleb(-6)
    traces, statements = [], []
    for i in range(lo, hi):
        f = MonthFeatures(int(book.trips[i]), float(book.km[i]), float(book.driving_hours[i]),
                          int(book.harsh_brakes[i]), int(book.harsh_accels[i]))
        prev = Decimal(int(book.prev_c[i])).scaleb(-2) if has_prev[i] else None
        r = price_policy(rb, Decimal(int(book.base_c[i])).scaleb(-2), prev, f, ob)
        if int(r.premium.scaleb(2)) != int(p.premium_c[i]) or int(r.factor.scaleb(4)) != int(p.factors.factor_u[i]):
            raise PricingError(f"{ids[i]}: engine and book arithmetic disagree ({r.premium} vs "
                               f"{p.premium_c[i] / 100}); nothing was written")
        traces.append(json.dumps(r.trace))
        statements.append(statement(label, r))
    s = slice(lo, hi)
    km = book.km[s]
    with np.errstate(divide="ignore", invalid="ignore"):
        b100 = np.where(km > 0, book.harsh_brakes[s] * (100.0 / km), np.nan)
        a100 = np.where(km > 0, book.harsh_accels[s] * (100.0 / km), np.nan)
    feats = pl.DataFrame({
        "policy_id": ids[lo:hi], "trips": book.trips[s], "km": km, "driving_hours": book.driving_hours[s],
        "harsh_brakes": book.harsh_brakes[s], "harsh_accels": book.harsh_accels[s],
        "b100": b100, "a100": a100}).with_columns(pl.col("b100", "a100").fill_nan(None))
    prems = pl.DataFrame({
        "policy_id": ids[lo:hi], "base_c": book.base_c[s], "prev_c": book.prev_c[s],
        "factor_u": p.factors.factor_u[s], "z": p.factors.z[s], "uncapped_c": p.uncapped_c[s],
        "premium_c": p.premium_c[s], "cap": [CAP_LABELS[int(c)] for c in p.cap[s]],
        "trace": traces, "statement": statements})
    return feats, prems


def run_month(con: duckdb.DuckDBPyConnection, rb: Rulebook, month: date, actor: str | None = None) -> RunSummary:
    actor = actor or getpass.getuser()
    run_id = uuid.uuid4().hex[:16]
    ids, book, has_prev = load_book(con, month)
    priced, ob = price_month_book(rb, book)
    n = len(ids)
    gated = int(priced.factors.gated.sum())
    summary = RunSummary(
        run_id, month, n, n - gated, int((priced.cap == CAP_UP).sum()), int((priced.cap == CAP_DOWN).sum()),
        Decimal(int(book.prev_c.sum())).scaleb(-2), Decimal(int(priced.premium_c.sum())).scaleb(-2),
        ob.as_dict() if ob else None)
    ob_value = None if ob is None else priced.off_balance_u / 1e6
    with store.transaction(con):
        store_rulebook(con, rb)
        con.execute("INSERT INTO runs VALUES (?, 'price', ?, ?, ?, now()::TIMESTAMP, NULL, ?, NULL)",
                    [run_id, month, rb.sha256, actor, json.dumps({"rulebook": rb.path, "version": rb.version})])
        for lo in range(0, n, CHUNK):
            feats, prems = _rows(rb, month, run_id, ids, book, has_prev, priced, lo, min(n, lo + CHUNK))
            _insert(con, feats, prems, month, run_id, rb, ob_value)
        # Rows of this month that this run did not replace belong to policies no longer in the book.
        con.execute("DELETE FROM monthly_features WHERE month = ? AND run_id <> ?", [month, run_id])
        con.execute("DELETE FROM premiums WHERE month = ? AND run_id <> ?", [month, run_id])
        con.execute("UPDATE runs SET finished_at = now()::TIMESTAMP, summary = ? WHERE run_id = ?",
                    [json.dumps(summary.__dict__, default=str), run_id])
        store.audit(con, actor, "price_month", {"run_id": run_id, "month": month, "rulebook": rb.version,
                                                "sha256": rb.sha256, "policies": n,
                                                "off_balance": ob_value})
    return summary


def _insert(con: duckdb.DuckDBPyConnection, feats: pl.DataFrame, prems: pl.DataFrame, month: date, run_id: str,
            rb: Rulebook, ob_value: float | None) -> None:
    con.complete()  # DuckDB refuses register() while an earlier result is unread
    con.register("feats_df", feats)
    con.register("prems_df", prems)
    try:
        con.execute("""
            INSERT OR REPLACE INTO monthly_features (policy_id, month, trips, km, driving_hours, harsh_brakes, harsh_accels,
                                          harsh_brakes_per_100km, harsh_accels_per_100km, run_id)
            SELECT policy_id, $month, trips, km, driving_hours, harsh_brakes, harsh_accels, b100, a100, $run
            FROM feats_df""", {"month": month, "run": run_id})
        con.execute("""
            INSERT OR REPLACE INTO premiums (policy_id, month, base_premium, previous_premium, telematics_factor, credibility,
                                  uncapped_premium, premium, cap_applied, rulebook_version, rulebook_sha256, run_id,
                                  trace, statement, off_balance)
            SELECT policy_id, $month, CAST(base_c / 100 AS DECIMAL(12, 2)), CAST(prev_c / 100 AS DECIMAL(12, 2)),
                   factor_u / 10000, round(z, 6), CAST(uncapped_c / 100 AS DECIMAL(12, 2)),
                   CAST(premium_c / 100 AS DECIMAL(12, 2)), cap, $version, $sha, $run, trace, statement, $ob
            FROM prems_df""", {"month": month, "run": run_id, "version": rb.version, "sha": rb.sha256,
                               "ob": ob_value})
    finally:
        con.unregister("feats_df")
        con.unregister("prems_df")
