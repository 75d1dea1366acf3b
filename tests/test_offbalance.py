"""The array engine equals the per-policy engine exactly; off-balance keeps the book revenue-neutral."""

from datetime import date
from decimal import Decimal

import numpy as np
import pytest

from pricing import offbalance
from pricing.engine import price_policy
from pricing.rulebook import parse_rulebook
from pricing.vector import CAP_LABELS, Book, price_book, round_factor
from tests.pricing_data import add_policies, v1_october
from ubi.adapters.duckdb_store import run_month
from ubi.common.config import Config

TEXT = Config().rulebook.read_text()
RB = parse_rulebook(TEXT)
OB_TEXT = TEXT + "\n[offbalance]\nenabled = true\ntolerance = 0.00001\n"


def random_book(rng: np.random.Generator, n: int) -> tuple[Book, np.ndarray]:
    km = np.round(rng.gamma(2.0, 300.0, n), 3) * (rng.random(n) > 0.05)
    trips = rng.integers(0, 80, n) * (km > 0)
    base = rng.integers(3000, 15000, n)
    has_prev = rng.random(n) > 0.3
    prev = np.where(has_prev, (base * rng.uniform(0.8, 1.2, n)).astype(np.int64), base)
    return Book(
        base.astype(np.int64),
        prev.astype(np.int64),
        trips.astype(np.int64),
        km,
        km / 40.0,
        rng.poisson(km * 0.03).astype(np.int64),
        rng.poisson(km * 0.02).astype(np.int64),
    ), has_prev


def engine(rb, book: Book, has_prev, i: int, ob=None):
    f = book.month_features(i)
    prev = Decimal(int(book.prev_c[i])).scaleb(-2) if has_prev[i] else None
    return price_policy(rb, Decimal(int(book.base_c[i])).scaleb(-2), prev, f, ob)


@pytest.mark.parametrize("ob_u", [None, 1_000_000, 1_034_567, 955_555])
def test_vector_equals_engine(rng, ob_u):
    book, has_prev = random_book(rng, 3000)
    p = price_book(RB, book, ob_u)
    ob = None if ob_u is None else Decimal(ob_u).scaleb(-6)
    for i in range(len(book)):
        r = engine(RB, book, has_prev, i, ob)
        assert int(r.factor.scaleb(4)) == p.factors.factor_u[i]
        assert int(r.uncapped.scaleb(2)) == p.uncapped_c[i]
        assert (int(r.premium.scaleb(2)), r.cap_applied) == (p.premium_c[i], CAP_LABELS[int(p.cap[i])])


def test_factor_rounding_is_half_up_on_decimal_ties():
    x = np.array([1.07165, 0.88885, 1.00005, 0.99995, 1.2345499999])
    assert round_factor(x).tolist() == [10717, 8889, 10001, 10000, 12345]


def test_off_balance_without_caps_is_the_plain_ratio(rng):
    rb = parse_rulebook(
        OB_TEXT.replace("max_increase = 0.10", "max_increase = 1.0").replace(
            "max_decrease = 0.15", "max_decrease = 1.0"
        )
    )
    book, _ = random_book(rng, 5000)
    ob, p = offbalance.solve(rb, book)
    plain = book.prev_c.sum() / price_book(rb, book).premium_c.sum()
    assert ob.converged and abs(ob.factor - plain) < 2e-5
    assert abs(p.premium_c.sum() - book.prev_c.sum()) <= 1e-5 * book.prev_c.sum()


def test_off_balance_under_caps_solves_iteratively(rng):
    rb = parse_rulebook(OB_TEXT)
    book, _ = random_book(rng, 5000)
    ob, p = offbalance.solve(rb, book)
    assert ob.converged and ob.factor != 1.0 and ob.iterations >= 2
    assert abs(int(p.premium_c.sum()) - ob.target_c) <= 1e-5 * ob.target_c
    # the plain ratio ignores caps and misses the target
    naive = round(book.prev_c.sum() / price_book(rb, book).premium_c.sum() * 1e6)
    assert abs(int(price_book(rb, book, naive).premium_c.sum()) - ob.target_c) > abs(ob.achieved_c - ob.target_c)


def test_starter_rulebook_has_no_off_balance_and_bad_settings_are_refused():
    assert RB.off_balance is False
    with pytest.raises(Exception, match="offbalance.speed: unknown setting"):
        parse_rulebook(OB_TEXT + "speed = 3\n")
    with pytest.raises(Exception, match="out of range"):
        parse_rulebook(OB_TEXT + "max_factor = 7.0\n")


def test_monthly_run_records_off_balance(tmp_path):
    from ubi.adapters import duckdb_store as store

    con = store.connect(tmp_path / "ob.duckdb")
    add_policies(con, "P1", "P2")
    store.upsert_trips(con, v1_october())  # V1: 20 trips x 25 km, 2 brakes, 3 fast starts in October
    s = run_month(con, parse_rulebook(OB_TEXT), date(2026, 10, 1), actor="tester")
    # Without off-balance: 52.80 + 50.00 = 102.80 against 110.00. P2 is gated (base x c), P1 = 52.80 x c;
    # c = 110 / 102.8 = 1.070039 gives 56.50 + 53.50 = 110.00 exactly.
    assert s.off_balance["converged"] and s.off_balance["factor"] == pytest.approx(1.070039, abs=2e-6)
    assert s.premium_after == Decimal("110.00")
    rows = con.execute("SELECT premium, off_balance FROM premiums ORDER BY policy_id").fetchall()
    assert [r[0] for r in rows] == [Decimal("56.50"), Decimal("53.50")] and rows[0][1] == s.off_balance["factor"]
    summary = con.execute("SELECT summary->>'$.off_balance.factor' FROM runs").fetchone()[0]
    assert float(summary) == s.off_balance["factor"]
    trace, words = con.execute(
        "SELECT trace->>'$.off_balance', statement FROM premiums WHERE policy_id = 'P1'"
    ).fetchone()
    assert trace == "1.070039" and "book-wide adjustment of x1.0700" in words


def test_rerun_replaces_rows_and_drops_policies_gone_from_the_book(tmp_path):
    from ubi.adapters import duckdb_store as store

    con = store.connect(tmp_path / "r.duckdb")
    add_policies(con, "P1", "P2")
    first = run_month(con, RB, date(2026, 10, 1), actor="tester")
    rows = con.execute("SELECT policy_id, premium, run_id FROM premiums ORDER BY 1").fetchall()
    assert [r[2] for r in rows] == [first.run_id] * 2
    con.execute("DELETE FROM policies WHERE policy_id = 'P2'")
    again = run_month(con, RB, date(2026, 10, 1), actor="tester")
    assert con.execute("SELECT policy_id, premium, run_id FROM premiums").fetchall() == [
        ("P1", rows[0][1], again.run_id)
    ]
    assert con.execute("SELECT policy_id FROM monthly_features").fetchall() == [("P1",)]
