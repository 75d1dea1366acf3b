"""The engine's arithmetic over a whole book at once (NumPy), for the monthly run, what-if and off-balance.

Results equal ``pricing.engine.price_policy`` exactly: the floating-point steps run in the same order, money is
integer cents with half-up rounding done in integers, and the 4-decimal factor rounding falls back to the engine's
own Decimal rounding for the rare values that sit within 1e-7 of a tie. ``test_vector_equals_engine`` in
``tests/test_offbalance.py`` checks it against the per-policy engine.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal

import numpy as np

from pricing.engine import FACTOR_PLACES, MonthFeatures
from pricing.rulebook import Rulebook

CAP_NONE, CAP_UP, CAP_DOWN = 0, 1, -1
CAP_LABELS = {CAP_NONE: "none", CAP_UP: "increase", CAP_DOWN: "decrease"}


@dataclass(frozen=True)
class Book:
    """One month's inputs per policy, as arrays of equal length."""

    base_c: np.ndarray  # int64 cents
    prev_c: np.ndarray  # int64 cents: last month's premium, or the base premium in the first month
    trips: np.ndarray  # int64
    km: np.ndarray  # float64
    driving_hours: np.ndarray  # float64
    harsh_brakes: np.ndarray  # int64
    harsh_accels: np.ndarray  # int64
    completeness: np.ndarray | None = None  # float64 share of device messages received; None = all
    # feature -> bool per policy: the holder did not consent to it (pricing/consent.py); None = all consented
    withheld: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self.base_c.shape[0])

    def month_features(self, i: int) -> MonthFeatures:
        """Policy i's inputs as the per-policy engine (``pricing.engine.price_policy``) takes them: the engine prices
        rows the arrays do not cover and re-prices a sample of the others against them (``pricing.monthly``)."""
        f = MonthFeatures(
            int(self.trips[i]),
            float(self.km[i]),
            float(self.driving_hours[i]),
            int(self.harsh_brakes[i]),
            int(self.harsh_accels[i]),
            1.0 if self.completeness is None else float(self.completeness[i]),
        )
        if self.withheld:  # features the policyholder did not consent to (pricing/consent.py)
            f = replace(f, withheld=frozenset(k for k, m in self.withheld.items() if m[i]))
        return f

    def value(self, feature: str) -> np.ndarray:
        """Same float operations as ``MonthFeatures.value``."""
        with np.errstate(divide="ignore"):
            per100 = np.where(self.km > 0, 100.0 / np.where(self.km > 0, self.km, 1.0), 0.0)
        return {
            "harsh_brakes_per_100km": lambda: self.harsh_brakes.astype(np.float64) * per100,
            "harsh_accels_per_100km": lambda: self.harsh_accels.astype(np.float64) * per100,
            "km": lambda: self.km,
            "driving_hours": lambda: self.driving_hours,
        }[feature]()


@dataclass(frozen=True)
class Factors:
    g: np.ndarray
    z: np.ndarray
    gated: np.ndarray  # bool
    factor_u: np.ndarray  # int64, the telematics factor in units of 0.0001
    bands: dict[str, np.ndarray]  # feature -> band index per policy


@dataclass(frozen=True)
class Priced:
    factors: Factors
    off_balance_u: int  # 1e-6 units; 1_000_000 when none
    uncapped_c: np.ndarray
    premium_c: np.ndarray
    cap: np.ndarray  # int8: CAP_NONE / CAP_UP / CAP_DOWN


def band_index(los: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the band holding each value; bands are contiguous from 0 to infinity (validated)."""
    return np.clip(np.searchsorted(los, values, side="right") - 1, 0, los.shape[0] - 1)


def telematics_factors(rb: Rulebook, book: Book) -> Factors:
    g = np.ones(len(book))
    bands = {}
    for factor in rb.factors:
        los = np.array([b.lo for b in factor.bands])
        rels = np.array([b.relativity for b in factor.bands])
        idx = band_index(los, book.value(factor.feature))
        bands[factor.feature] = idx
        rel = rels[idx]
        if book.withheld is not None and factor.feature in book.withheld:  # no consent: relativity 1, as the engine
            rel = np.where(book.withheld[factor.feature], 1.0, rel)
        g = g * rel
    gated = (book.trips < rb.min_trips) | (book.km < rb.min_km)
    z = np.where(gated, 0.0, book.km / (book.km + rb.k_km))
    raw = 1.0 + z * (g - 1.0)
    clamped = np.minimum(np.maximum(raw, rb.factor_floor), rb.factor_ceiling)
    if book.completeness is not None:  # as the engine: below min_completeness no discount
        clamped = np.where(book.completeness < rb.min_completeness, np.maximum(clamped, 1.0), clamped)
    return Factors(g, z, gated, round_factor(clamped), bands)


def round_factor(x: np.ndarray) -> np.ndarray:
    """Half-up to 4 decimals of each float's shortest repr, as the engine's Decimal(repr(x)).quantize does."""
    y = x * 1e4
    out = np.floor(y + 0.5).astype(np.int64)
    near_tie = np.abs(y - np.floor(y) - 0.5) < 1e-7
    for i in np.flatnonzero(near_tie):
        d = Decimal(repr(float(x[i]))).quantize(FACTOR_PLACES, rounding=ROUND_HALF_UP)
        out[i] = int(d.scaleb(4))
    return out


def _scaled(x: float) -> tuple[int, int]:
    """A rulebook decimal (as the engine reads it, via repr) as an integer numerator over a power of ten."""
    d = Decimal(repr(x))
    exp = d.as_tuple().exponent
    scale = 10 ** max(0, -int(exp))
    return int(d * scale), scale


def _div_half_up(num: np.ndarray, den: int) -> np.ndarray:
    """round(num / den) half up, for non-negative integer arrays."""
    return (2 * num + den) // (2 * den)


def price_book(rb: Rulebook, book: Book, off_balance_u: int | None = None, factors: Factors | None = None) -> Priced:
    """Premiums for every policy; ``off_balance_u`` is the off-balance factor in 1e-6 units (None: none)."""
    f = factors or telematics_factors(rb, book)
    if off_balance_u is None:
        uncapped = _div_half_up(book.base_c * f.factor_u, 10_000)
    else:
        uncapped = _div_half_up(book.base_c * f.factor_u * off_balance_u, 10_000_000_000)
    inc, s_inc = _scaled(rb.max_increase)
    dec, s_dec = _scaled(rb.max_decrease)
    hi = _div_half_up(book.prev_c * (s_inc + inc), s_inc)
    lo = _div_half_up(book.prev_c * (s_dec - dec), s_dec)
    cap = np.where(uncapped > hi, CAP_UP, np.where(uncapped < lo, CAP_DOWN, CAP_NONE)).astype(np.int8)
    premium = np.where(cap == CAP_UP, hi, np.where(cap == CAP_DOWN, lo, uncapped))
    return Priced(f, 1_000_000 if off_balance_u is None else int(off_balance_u), uncapped, premium, cap)
