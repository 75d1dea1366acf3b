"""The monthly premium, one policy at a time, with a trace of every step. Pure logic: no database here.

    g        = product of the band relativities of the month's features
    Z        = km / (km + k)                       (0 when below the minimum data)
    factor   = clamp(1 + Z * (g - 1), floor, ceiling), rounded to 4 decimals
               (at least 1 when the month's data completeness is below the rulebook's min_completeness)
    uncapped = base_premium * factor * c           (cents, half up; c = off-balance factor, 6 decimals, default 1)
    premium  = clamp(uncapped, previous * (1 - max_decrease), previous * (1 + max_increase))   (cents, half up)

``previous`` is last month's premium, or the base premium in a policy's first month.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from pricing.consent import statement_line as consent_statement
from pricing.rulebook import Rulebook

CENT = Decimal("0.01")
FACTOR_PLACES = Decimal("0.0001")
OB_PLACES = Decimal("0.000001")


def money(x: Decimal | float | str) -> Decimal:
    return Decimal(str(x)).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class MonthFeatures:
    trips: int
    km: float
    driving_hours: float
    harsh_brakes: int
    harsh_accels: int
    # Share of the month's device messages that arrived (1.0 when nothing is known to be missing).
    completeness: float = 1.0
    # Features the policyholder did not consent to (pricing/consent.py): relativity 1, value not shown.
    withheld: frozenset[str] = frozenset()

    def value(self, feature: str) -> float:
        per100 = 100.0 / self.km if self.km > 0 else 0.0
        return {
            "harsh_brakes_per_100km": self.harsh_brakes * per100,
            "harsh_accels_per_100km": self.harsh_accels * per100,
            "km": self.km,
            "driving_hours": self.driving_hours,
        }[feature]


@dataclass(frozen=True)
class PremiumResult:
    base_premium: Decimal
    previous_premium: Decimal
    g: float
    credibility: float
    factor: Decimal
    uncapped: Decimal
    premium: Decimal
    cap_applied: str  # none | increase | decrease
    gated: bool
    trace: dict = field(repr=False)


def off_balance_decimal(c: float | Decimal | None) -> Decimal | None:
    """The off-balance factor as applied: 6 decimals, half up (None when the rulebook has none)."""
    return (
        None
        if c is None
        else Decimal(repr(c) if isinstance(c, float) else c).quantize(OB_PLACES, rounding=ROUND_HALF_UP)
    )


def price_policy(
    rb: Rulebook, base: Decimal, previous: Decimal | None, f: MonthFeatures, off_balance: float | Decimal | None = None
) -> PremiumResult:
    base = money(base)
    ob = off_balance_decimal(off_balance)
    prev = money(previous) if previous is not None else base
    steps = []
    g = 1.0
    for rf in rb.factors:
        if rf.feature in f.withheld:  # no consent: neither priced nor shown (pricing/consent.py)
            steps.append({"feature": rf.feature, "label": rf.label, "value": None, "band": None, "relativity": 1.0})
            steps[-1]["consent"] = False
            continue
        x = f.value(rf.feature)
        band = rf.band_for(x)
        g *= band.relativity
        steps.append(
            {
                "feature": rf.feature,
                "label": rf.label,
                "value": round(x, 4),
                "band": band.label,
                "from": band.lo,
                "to": None if band.hi == float("inf") else band.hi,
                "relativity": band.relativity,
            }
        )
    gated = f.trips < rb.min_trips or f.km < rb.min_km
    z = 0.0 if gated else f.km / (f.km + rb.k_km)
    raw = 1.0 + z * (g - 1.0)
    clamped = min(max(raw, rb.factor_floor), rb.factor_ceiling)
    short = f.completeness < rb.min_completeness  # data withheld or lost: no discount, surcharges still apply
    if short:
        clamped = max(clamped, 1.0)
    factor = Decimal(repr(clamped)).quantize(FACTOR_PLACES, rounding=ROUND_HALF_UP)
    uncapped = money(base * factor if ob is None else base * factor * ob)
    hi = money(prev * (1 + Decimal(repr(rb.max_increase))))
    lo = money(prev * (1 - Decimal(repr(rb.max_decrease))))
    premium, cap = uncapped, "none"
    if uncapped > hi:
        premium, cap = hi, "increase"
    elif uncapped < lo:
        premium, cap = lo, "decrease"
    trace = {
        "rulebook": {"version": rb.version, "sha256": rb.sha256},
        "features": {
            "trips": f.trips,
            "km": round(f.km, 3),
            "driving_hours": round(f.driving_hours, 3),
            "harsh_brakes": f.harsh_brakes,
            "harsh_accels": f.harsh_accels,
        },
        "factors": steps,
        "g": round(g, 6),
        "gate": {"min_trips": rb.min_trips, "min_km": rb.min_km, "gated": gated},
        "credibility": {"k_km": rb.k_km, "z": round(z, 6)},
        "completeness": {"share": round(f.completeness, 4), "min": rb.min_completeness, "no_discount": short},
        "factor": {"raw": round(raw, 6), "floor": rb.factor_floor, "ceiling": rb.factor_ceiling, "final": str(factor)},
        "base_premium": str(base),
        "off_balance": None if ob is None else str(ob),
        "uncapped": str(uncapped),
        "cap": {"previous": str(prev), "low": str(lo), "high": str(hi), "applied": cap},
        "premium": str(premium),
    }
    shown = trace["features"]
    assert isinstance(shown, dict)
    for feature in f.withheld:  # the counts behind a withheld rate are not shown either (km drives credibility)
        if feature.endswith("_per_100km") and feature.removesuffix("_per_100km") in shown:
            shown[feature.removesuffix("_per_100km")] = None
    return PremiumResult(base, prev, g, z, factor, uncapped, premium, cap, gated, trace)


def statement(month_label: str, r: PremiumResult, currency: str = "EUR") -> str:
    """Plain words for the policyholder: what changed and why."""
    t = r.trace
    change = (r.premium - r.previous_premium) / r.previous_premium * 100 if r.previous_premium else Decimal(0)
    lines = [
        f"Your premium for {month_label} is {currency} {r.premium} "
        f"(last month {currency} {r.previous_premium}, {change:+.1f}%)."
    ]
    feats = t["features"]
    lines.append(f"You drove {feats['km']:.0f} km in {feats['trips']} trips.")
    if r.gated:
        lines.append(
            f"We need at least {t['gate']['min_trips']} trips and {t['gate']['min_km']:.0f} km in a month "
            "before your driving changes your price, so this month your base premium applies."
        )
    else:
        for s in t["factors"]:
            if s.get("consent") is False:
                lines.append(consent_statement(s["label"]))
                continue
            effect = "lowers" if s["relativity"] < 1 else "raises" if s["relativity"] > 1 else "does not change"
            unit = "km" if s["feature"] == "km" else "hours" if s["feature"] == "driving_hours" else "per 100 km"
            lines.append(
                f"{s['label'].capitalize()}: {s['value']:.2f} {unit}, in the band '{s['band']}', which "
                f"{effect} your price (x{s['relativity']:.2f})."
            )
        lines.append(
            f"With {feats['km']:.0f} km of driving this month, your own driving counts for "
            f"{r.credibility * 100:.0f}% of the adjustment; your telematics factor is {r.factor}."
        )
    comp = t.get("completeness")
    if comp and comp["no_discount"]:
        lines.append(
            f"Only {comp['share'] * 100:.0f}% of your device's driving data reached us this month (at least "
            f"{comp['min'] * 100:.0f}% is needed for a discount), so no discount applies this month. If your "
            "device was offline or faulty, tell us and we will review it."
        )
    ob = t.get("off_balance")
    if ob is not None and Decimal(ob) != 1:
        lines.append(
            f"All premiums this month include a book-wide adjustment of x{Decimal(ob):.4f} that keeps the "
            "insurer's total premium unchanged."
        )
    if r.cap_applied == "increase":
        lines.append("Your price would have risen more, but monthly increases are capped so changes stay predictable.")
    elif r.cap_applied == "decrease":
        lines.append(
            "Your price would have fallen further; the rest of the saving follows in the coming months "
            "as monthly decreases are capped."
        )
    return " ".join(lines)
