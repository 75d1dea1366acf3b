"""Off-balance: one book-wide factor c that keeps the month's revenue equal to last month's.

Without caps c = sum(previous) / sum(uncapped) (domain/pricing.md). Caps pin some premiums, so c is found
iteratively over the policies the caps leave free:

    c_next = c * (target - sum(capped premiums)) / (sum(free premiums))

and, if that does not settle within the rulebook's iterations (cents rounding, policies moving in and out of
caps), by bisection, since the book's revenue never falls as c rises.
"""

from __future__ import annotations

from dataclasses import dataclass

from pricing.rulebook import Rulebook
from pricing.vector import CAP_NONE, Book, Factors, Priced, price_book, telematics_factors

UNIT = 1_000_000  # c is applied with 6 decimals


@dataclass(frozen=True)
class OffBalance:
    factor: float  # c, 6 decimals
    iterations: int
    converged: bool
    method: str  # iterative | bisection | bounded
    target_c: int  # revenue to match (cents)
    achieved_c: int
    before_c: int  # revenue with c = 1

    def as_dict(self) -> dict:
        return {
            "factor": self.factor,
            "iterations": self.iterations,
            "converged": self.converged,
            "method": self.method,
            "target": self.target_c / 100,
            "achieved": self.achieved_c / 100,
            "without_off_balance": self.before_c / 100,
        }


def solve(rb: Rulebook, book: Book, factors: Factors | None = None) -> tuple[OffBalance, Priced]:
    """The off-balance factor for this book, and the book priced with it."""
    f = factors or telematics_factors(rb, book)
    target = int(book.prev_c.sum())
    tol = max(rb.off_balance_tolerance * target, 0.5)
    lo_b, hi_b = (round(b * UNIT) for b in rb.off_balance_bounds)

    def at(c_u: int) -> Priced:
        return price_book(rb, book, c_u, f)

    c_u = UNIT
    p = at(c_u)
    before = int(p.premium_c.sum())
    if len(book) == 0 or target == 0:
        return OffBalance(1.0, 0, True, "iterative", target, before, before), p
    seen: set[int] = set()
    for it in range(1, rb.off_balance_max_iterations + 1):
        total = int(p.premium_c.sum())
        if abs(total - target) <= tol:
            return OffBalance(c_u / UNIT, it - 1, True, "iterative", target, total, before), p
        free = p.cap == CAP_NONE
        free_sum = int(p.premium_c[free].sum())
        if free_sum <= 0:
            break
        nxt = round(c_u * (target - int(p.premium_c[~free].sum())) / free_sum)
        nxt = min(max(nxt, lo_b), hi_b)
        if nxt == c_u or nxt in seen:
            break
        seen.add(c_u)
        c_u, p = nxt, at(nxt)
    return _bisect(at, target, tol, lo_b, hi_b, before, rb.off_balance_max_iterations)


def _bisect(at, target: int, tol: float, lo: int, hi: int, before: int, done: int) -> tuple[OffBalance, Priced]:
    """Revenue is non-decreasing in c: bisect on the 1e-6 grid, keeping the closest c seen."""
    p_lo, p_hi = at(lo), at(hi)
    if int(p_lo.premium_c.sum()) >= target or int(p_hi.premium_c.sum()) <= target:
        edge_lo = int(p_lo.premium_c.sum()) >= target
        c, p = (lo, p_lo) if edge_lo else (hi, p_hi)
        total = int(p.premium_c.sum())
        return OffBalance(c / UNIT, done, abs(total - target) <= tol, "bounded", target, total, before), p
    best = min(((lo, p_lo), (hi, p_hi)), key=lambda cp: abs(int(cp[1].premium_c.sum()) - target))
    n = 0
    while hi - lo > 1:
        n += 1
        mid = (lo + hi) // 2
        p = at(mid)
        total = int(p.premium_c.sum())
        if abs(total - target) < abs(int(best[1].premium_c.sum()) - target):
            best = (mid, p)
        if abs(total - target) <= tol:
            break
        lo, hi = (mid, hi) if total < target else (lo, mid)
    c, p = best
    total = int(p.premium_c.sum())
    return OffBalance(c / UNIT, done + n, abs(total - target) <= tol, "bisection", target, total, before), p
