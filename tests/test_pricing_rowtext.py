"""The premium rows' traces and statements built from the arrays (pricing/rowtext.py) equal the per-policy engine's
(``json.dumps(price_policy(...).trace)``, ``statement(...)``) byte for byte: on random books with the edge cases
of each formatting step (zero km, gated months, completeness at and below the minimum, caps both ways, no
previous premium, a zero premium, rounding ties), with and without an off-balance factor, and through
``monthly._rows`` where withheld features and excluded trips fall back to the engine."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import numpy as np
import pytest

import pricing.monthly as monthly
from pricing import rowtext
from pricing.engine import price_policy, statement
from pricing.monthly import price_month_book
from pricing.rulebook import load_rulebook, parse_rulebook
from pricing.vector import Book
from ubi.common.config import Config
from ubi.common.errors import PricingError

MONTH = date(2026, 10, 1)
LABEL = MONTH.strftime("%B %Y")


def rulebooks():
    rb = load_rulebook(Config().rulebook)
    ob = parse_rulebook(rb.text + "\n[offbalance]\nenabled = true\n", "ob.toml")
    return {"starter": rb, "off-balance": ob}


def random_book(seed: int, n: int, completeness: bool = True, withheld: bool = False) -> tuple[Book, np.ndarray]:
    rng = np.random.default_rng(seed)
    km = rng.lognormal(6.0, 1.2, n)
    pick = rng.random(n)
    km[pick < 0.05] = 0.0
    km[(pick >= 0.05) & (pick < 0.10)] = rng.uniform(0, 60, ((pick >= 0.05) & (pick < 0.10)).sum())  # near min_km
    ties = (pick >= 0.10) & (pick < 0.15)  # halves at the 3rd and 4th decimal: round() ties in binary
    km[ties] = np.round(rng.uniform(0, 3000, ties.sum()), 3) + rng.choice([0.0005, 0.00005, 0.5], ties.sum())
    km[(pick >= 0.15) & (pick < 0.17)] = 1e-9
    trips = rng.integers(0, 90, n)
    trips[rng.random(n) < 0.05] = 0
    brakes = rng.poisson(np.maximum(km, 0) / 100 * rng.uniform(0, 8, n))
    accels = rng.poisson(np.maximum(km, 0) / 100 * rng.uniform(0, 5, n))
    hours = km / rng.uniform(20, 90, n) + rng.choice([0.0, 0.0005], n)
    base_c = rng.integers(2_000, 40_000, n)
    base_c[rng.random(n) < 0.01] = 0  # a zero base premium: change against 0.00
    prev_c = (base_c * rng.uniform(0.6, 1.5, n)).astype(np.int64)
    prev_c[rng.random(n) < 0.01] = 0
    has_prev = rng.random(n) < 0.7
    comp = None
    if completeness:
        comp = np.where(rng.random(n) < 0.7, 1.0, rng.uniform(0.85, 1.0, n))
        comp[rng.random(n) < 0.05] = 0.95  # exactly the rulebook's minimum
    held = None
    if withheld:
        held = {"harsh_brakes_per_100km": rng.random(n) < 0.1, "harsh_accels_per_100km": rng.random(n) < 0.05}
    book = Book(
        base_c.astype(np.int64),
        np.where(has_prev, prev_c, base_c).astype(np.int64),
        trips.astype(np.int64),
        km,
        hours,
        brakes.astype(np.int64),
        accels.astype(np.int64),
        comp,
        held,
    )
    return book, has_prev


def engine_row(rb, book: Book, has_prev: np.ndarray, ob: Decimal | None, i: int, excluded=None) -> tuple[str, str]:
    """The row as monthly._rows built every row before pricing.rowtext: the per-policy engine."""
    f = book.month_features(i)
    prev = Decimal(int(book.prev_c[i])).scaleb(-2) if has_prev[i] else None
    r = price_policy(rb, Decimal(int(book.base_c[i])).scaleb(-2), prev, f, ob)
    if excluded:
        r.trace["excluded_trips"] = excluded
    return json.dumps(r.trace), statement(LABEL, r)


@pytest.mark.parametrize("name", ["starter", "off-balance"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_array_rows_equal_the_engine_byte_for_byte(name, seed):
    rb = rulebooks()[name]
    book, has_prev = random_book(seed, 4_000, completeness=seed != 3)
    priced, solved = price_month_book(rb, book)
    assert (solved is not None) == (name == "off-balance")
    ob = None if not rb.off_balance else Decimal(priced.off_balance_u).scaleb(-6)
    traces, texts = rowtext.fast_rows(rb, LABEL, book, has_prev, priced, 0, len(book))
    assert rowtext.covered(book, 0, len(book), None, []).all()
    kinds = {"gated": 0, "short": 0, "up": 0, "down": 0, "no-prev": 0, "zero-km": 0}
    for i in range(len(book)):
        want = engine_row(rb, book, has_prev, ob, i)
        assert (traces[i], texts[i]) == want, i
        t = json.loads(want[0])
        kinds["gated"] += t["gate"]["gated"]
        kinds["short"] += t["completeness"]["no_discount"]
        kinds["up"] += t["cap"]["applied"] == "increase"
        kinds["down"] += t["cap"]["applied"] == "decrease"
        kinds["no-prev"] += not has_prev[i]
        kinds["zero-km"] += book.km[i] == 0
    # the edge cases were there (a book without them would prove little)
    assert all(v > 0 for k, v in kinds.items() if k != "short" or seed != 3), kinds


def test_a_slice_of_the_book_gives_the_same_rows_as_the_whole():
    rb = rulebooks()["starter"]
    book, has_prev = random_book(9, 1_000)
    priced, _ = price_month_book(rb, book)
    whole = rowtext.fast_rows(rb, LABEL, book, has_prev, priced, 0, 1_000)
    part = rowtext.fast_rows(rb, LABEL, book, has_prev, priced, 337, 731)
    assert part == (whole[0][337:731], whole[1][337:731])


@pytest.mark.parametrize("prev_c", [1, 3, 7, 400, 1_000, 12_345, 40_000, 99_999])
def test_the_change_in_percent_rounds_as_decimal_formatting(prev_c):
    """Every premium from -100% to +60% of the previous one, ties (x.x5%) included: half to even, signed zero."""
    prem = np.arange(0, int(prev_c * 1.6) + 2, max(1, prev_c // 4_000), dtype=np.int64)
    got = rowtext._change(prem, np.full(prem.shape, prev_c, dtype=np.int64))
    q = Decimal(prev_c).scaleb(-2)
    want = [f"{(Decimal(int(p)).scaleb(-2) - q) / q * 100:+.1f}" for p in prem]
    assert got == want
    assert rowtext._change(np.array([5]), np.array([0])) == [f"{Decimal(0):+.1f}"]


def test_monthly_rows_fall_back_to_the_engine_for_withheld_features_and_excluded_trips(monkeypatch):
    rb = rulebooks()["starter"]
    book, has_prev = random_book(4, 2_000, withheld=True)
    ids = [f"P{i:05d}" for i in range(len(book))]
    excluded = {ids[5]: [{"trip_id": "T1", "objection": "passenger", "status": "pending", "km": 12.5}]}
    priced, _ = price_month_book(rb, book)
    monkeypatch.setattr(monthly, "CHECK_EVERY", 7)
    _, prems = monthly._rows(rb, MONTH, "run", ids, book, has_prev, priced, 0, len(book), excluded)
    got = list(zip(prems["trace"].to_list(), prems["statement"].to_list(), strict=True))
    want = [engine_row(rb, book, has_prev, None, i, excluded.get(ids[i])) for i in range(len(book))]
    assert got == want
    assert 100 < (~rowtext.covered(book, 0, len(book), set(excluded), ids)).sum() < 400


def test_a_fast_row_that_differs_from_the_engine_stops_the_run(monkeypatch):
    """The engine re-prices every CHECK_EVERY-th policy at run time; a wrong byte there names the policy."""
    rb = rulebooks()["starter"]
    book, has_prev = random_book(5, 500)
    ids = [f"P{i:05d}" for i in range(len(book))]
    priced, _ = price_month_book(rb, book)
    real = rowtext.fast_rows

    def one_byte_off(*args):
        traces, texts = real(*args)
        texts[32] = texts[32].replace("Your", "Yuor")
        return traces, texts

    monkeypatch.setattr(rowtext, "fast_rows", one_byte_off)
    monkeypatch.setattr(monthly, "CHECK_EVERY", 16)
    with pytest.raises(PricingError, match="P00032: the row's trace or statement differs"):
        monthly._rows(rb, MONTH, "run", ids, book, has_prev, priced, 0, len(book))
