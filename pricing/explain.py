"""What a policyholder's statement says, as facts: the premium built up from the base, each factor's effect in
money, what changed since last month, the caps/floor/minimum-data notes and tips worth a stated amount.

Pure and language-neutral: numbers are Decimals, words are keys that ``ubi/portal`` renders from its message
catalogues. Every figure comes from the premium row's trace (checked against the row) and the rulebook that
priced it, so a statement can never say something the run did not do.

    driving effect  T = money(base * factor) - base         split across the factors by their share of ln(g)
    book-wide       O = uncapped - money(base * factor)      (off-balance; 0 when the rulebook has none)
    cap             C = premium - uncapped
    base + T + O + C = premium                               (exact, to the cent)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from pricing.engine import CENT, FACTOR_PLACES, money
from pricing.rulebook import Factor, Rulebook
from ubi.common.errors import PricingError

# the feature's event count in the trace, for "N fewer events" tips
EVENT_COUNTS = {"harsh_brakes_per_100km": "harsh_brakes", "harsh_accels_per_100km": "harsh_accels"}
UNITS = {"harsh_brakes_per_100km": "per_100km", "harsh_accels_per_100km": "per_100km", "km": "km"}
# Measured per trip and stored, but never priced by any rulebook this code knows (KNOWN_FEATURES excludes them).
MEASURED_NOT_PRICED = ("night_driving", "speeding", "phone_use", "cornering")
NEVER_COLLECTED_FOR_PRICE = ("location", "name_address")


@dataclass(frozen=True)
class FactorLine:
    feature: str
    label: str
    value: float
    unit: str  # per_100km | km | hours
    band: str
    relativity: float
    effect: Decimal  # on this month's premium, against the base
    previous_value: float | None
    previous_effect: Decimal | None  # last month's effect (None: no priced previous month with this factor)

    @property
    def change(self) -> Decimal | None:
        return None if self.previous_effect is None else self.effect - self.previous_effect


@dataclass(frozen=True)
class Tip:
    feature: str
    label: str
    below: float  # move the value below this (the current band's lower edge)
    fewer_events: int | None  # in a month like this one: events fewer (for counted features)
    band: str  # the band it would reach
    worth: Decimal  # a month, before the monthly cap, with this month's km and credibility


@dataclass(frozen=True)
class HistoryPoint:
    month: date
    premium: Decimal
    values: dict[str, float]  # feature -> value that month


@dataclass(frozen=True)
class Explanation:
    policy_id: str
    month: date
    premium: Decimal
    previous_premium: Decimal
    change: Decimal
    change_pct: Decimal  # one decimal
    first_month: bool
    base_premium: Decimal
    factor: Decimal
    factor_raw: float
    credibility: float
    trips: int
    km: float
    driving_hours: float
    driving_effect: Decimal
    off_balance: Decimal | None
    off_balance_effect: Decimal
    uncapped: Decimal
    cap_applied: str  # none | increase | decrease
    cap_effect: Decimal
    cap_low: Decimal
    cap_high: Decimal
    max_increase: float
    max_decrease: float
    factor_floor: float
    factor_ceiling: float
    floor_premium: Decimal  # base * floor: the least the driving factor can bring the premium to
    ceiling_premium: Decimal
    clamped: str  # none | floor | ceiling
    gated: bool
    no_discount: bool  # too little of the month's data arrived: the factor is held at 1.0 or above
    completeness: float  # share of the month's device data that arrived
    min_completeness: float
    not_consented: tuple[str, ...]  # factors the policyholder did not consent to: not priced, value not shown
    min_trips: int
    min_km: float
    k_km: float
    factors: tuple[FactorLine, ...]  # ranked by |effect|, largest first
    tips: tuple[Tip, ...]
    excluded_trips: tuple[dict, ...]
    history: tuple[HistoryPoint, ...]
    rulebook_version: str
    rulebook_sha256: str
    data_used: tuple[str, ...]
    measured_not_priced: tuple[str, ...] = MEASURED_NOT_PRICED
    never_used: tuple[str, ...] = field(default=())


def _split(total: Decimal, weights: list[float], fallback: list[Decimal]) -> list[Decimal]:
    """``total`` split in proportion to ``weights``, in cents that add up exactly (largest remainder). When the
    weights cancel out (sum 0) the first-order amounts ``fallback`` are used and trimmed to ``total``."""
    if not weights:
        return []
    s = sum(weights)
    raw = [total * Decimal(repr(w / s)) for w in weights] if abs(s) > 1e-12 else list(fallback)
    cents = [r.quantize(CENT, rounding=ROUND_HALF_UP) for r in raw]
    residual = total - sum(cents, Decimal(0))
    order = sorted(range(len(raw)), key=lambda i: -abs(raw[i]))
    step = CENT if residual > 0 else -CENT
    i = 0
    while residual != 0:
        cents[order[i % len(order)]] += step
        residual -= step
        i += 1
    return cents


def factor_effects(trace: dict) -> dict[str, Decimal]:
    """Each factor's effect in money on the premium against the base, adding up to money(base*factor) - base."""
    base = Decimal(trace["base_premium"])
    factor = Decimal(trace["factor"]["final"])
    total = money(base * factor) - base
    steps = trace["factors"]
    z = Decimal(repr(trace["credibility"]["z"]))
    weights = [math.log(s["relativity"]) for s in steps]
    fallback = [base * z * Decimal(repr(w)) for w in weights]
    return {s["feature"]: e for s, e in zip(steps, _split(total, weights, fallback), strict=True)}


def _factor_with(rb: Rulebook, g: float, z: float, no_discount: bool) -> Decimal:
    """The engine's factor rule (pricing/engine.py) for another g."""
    raw = 1.0 + z * (g - 1.0)
    clamped = min(max(raw, rb.factor_floor), rb.factor_ceiling)
    if no_discount:
        clamped = max(clamped, 1.0)
    return Decimal(repr(clamped)).quantize(FACTOR_PLACES, rounding=ROUND_HALF_UP)


def tips(rb: Rulebook, trace: dict, limit: int = 2) -> list[Tip]:
    """The factors whose next better band would lower the premium most, with what that would be worth."""
    if trace["gate"]["gated"]:
        return []
    base = Decimal(trace["base_premium"])
    ob = Decimal(trace["off_balance"]) if trace.get("off_balance") is not None else Decimal(1)
    uncapped = Decimal(trace["uncapped"])
    z, g = float(trace["credibility"]["z"]), float(trace["g"])
    by_feature: dict[str, Factor] = {f.feature: f for f in rb.factors}
    no_discount = bool(trace.get("completeness", {}).get("no_discount", False))
    out = []
    for s in trace["factors"]:
        rf = by_feature.get(s["feature"])
        if rf is None or s.get("consent") is False or s.get("from") is None:
            continue
        lower = [b for b in rf.bands if b.hi <= s["from"]]
        if not lower:
            continue
        better = lower[-1]  # the band just below the current one
        if better.relativity >= s["relativity"]:
            continue
        g2 = g / s["relativity"] * better.relativity
        worth = uncapped - money(base * _factor_with(rb, g2, z, no_discount) * ob)
        if worth <= 0:
            continue
        fewer = None
        count_key = EVENT_COUNTS.get(s["feature"])
        km = float(trace["features"]["km"])
        if count_key is not None and km > 0 and trace["features"].get(count_key) is not None:
            events = int(trace["features"][count_key])
            allowed = max(math.ceil(s["from"] * km / 100.0) - 1, 0)  # value < from  <=>  events < from*km/100
            fewer = events - allowed
        out.append(Tip(s["feature"], s["label"], float(s["from"]), fewer, better.label, worth))
    out.sort(key=lambda t: -t.worth)
    return out[:limit]


def _check(row: dict, trace: dict) -> None:
    """The statement is the row: any disagreement between the row and its trace stops it."""
    pairs = {
        "premium": (Decimal(str(row["premium"])), Decimal(trace["premium"])),
        "previous_premium": (Decimal(str(row["previous_premium"])), Decimal(trace["cap"]["previous"])),
        "base_premium": (Decimal(str(row["base_premium"])), Decimal(trace["base_premium"])),
        "uncapped_premium": (Decimal(str(row["uncapped_premium"])), Decimal(trace["uncapped"])),
        "cap_applied": (row["cap_applied"], trace["cap"]["applied"]),
        "rulebook_sha256": (row["rulebook_sha256"], trace["rulebook"]["sha256"]),
        "telematics_factor": (
            Decimal(repr(float(row["telematics_factor"]))).quantize(FACTOR_PLACES),
            Decimal(trace["factor"]["final"]),
        ),
    }
    bad = [k for k, (a, b) in pairs.items() if a != b]
    if bad:
        raise PricingError(f"{row['policy_id']} {row['month']}: premium row and trace disagree on {bad}")


def explain(
    rb: Rulebook,
    row: dict,
    trace: dict,
    previous_trace: dict | None,
    history: list[tuple[date, Decimal, dict]],
) -> Explanation:
    """The statement's facts for one premium row (``row``: the premiums columns; ``trace``: its parsed trace),
    last month's trace when that month was priced, and the policy's priced months up to this one."""
    if rb.sha256 != trace["rulebook"]["sha256"]:
        raise PricingError(f"rulebook {rb.version} is not the one that priced {row['policy_id']} {row['month']}")
    _check(row, trace)
    base = Decimal(trace["base_premium"])
    factor = Decimal(trace["factor"]["final"])
    premium = Decimal(trace["premium"])
    prev = Decimal(trace["cap"]["previous"])
    uncapped = Decimal(trace["uncapped"])
    ob = Decimal(trace["off_balance"]) if trace.get("off_balance") is not None else None
    effects = factor_effects(trace)
    prev_effects = factor_effects(previous_trace) if previous_trace else {}
    prev_values = (
        {s["feature"]: s["value"] for s in previous_trace["factors"] if s.get("value") is not None}
        if previous_trace
        else {}
    )
    priced = [s for s in trace["factors"] if s.get("consent") is not False]
    lines = [
        FactorLine(
            s["feature"],
            s["label"],
            s["value"],
            UNITS.get(s["feature"], "hours"),
            s["band"],
            s["relativity"],
            effects[s["feature"]],
            prev_values.get(s["feature"]),
            prev_effects.get(s["feature"]),
        )
        for s in priced
    ]
    lines.sort(key=lambda f: (-abs(f.effect), -abs(f.relativity - 1.0), f.feature))
    raw = float(trace["factor"]["raw"])
    clamped = "floor" if raw < rb.factor_floor else "ceiling" if raw > rb.factor_ceiling else "none"
    comp = trace.get("completeness") or {"share": 1.0, "min": 0.0, "no_discount": False}
    change = premium - prev
    feats = trace["features"]
    return Explanation(
        policy_id=str(row["policy_id"]),
        month=row["month"],
        premium=premium,
        previous_premium=prev,
        change=change,
        change_pct=(change / prev * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP) if prev else Decimal(0),
        first_month=previous_trace is None and prev == base,
        base_premium=base,
        factor=factor,
        factor_raw=raw,
        credibility=float(trace["credibility"]["z"]),
        trips=int(feats["trips"]),
        km=float(feats["km"]),
        driving_hours=float(feats["driving_hours"]),
        driving_effect=money(base * factor) - base,
        off_balance=ob,
        off_balance_effect=uncapped - money(base * factor),
        uncapped=uncapped,
        cap_applied=trace["cap"]["applied"],
        cap_effect=premium - uncapped,
        cap_low=Decimal(trace["cap"]["low"]),
        cap_high=Decimal(trace["cap"]["high"]),
        max_increase=rb.max_increase,
        max_decrease=rb.max_decrease,
        factor_floor=rb.factor_floor,
        factor_ceiling=rb.factor_ceiling,
        floor_premium=money(base * Decimal(repr(rb.factor_floor))),
        ceiling_premium=money(base * Decimal(repr(rb.factor_ceiling))),
        clamped=clamped,
        gated=bool(trace["gate"]["gated"]),
        no_discount=bool(comp["no_discount"]),
        completeness=float(comp["share"]),
        min_completeness=float(comp["min"]),
        not_consented=tuple(s["feature"] for s in trace["factors"] if s.get("consent") is False),
        min_trips=int(trace["gate"]["min_trips"]),
        min_km=float(trace["gate"]["min_km"]),
        k_km=float(trace["credibility"]["k_km"]),
        factors=tuple(lines),
        tips=tuple(tips(rb, trace)),
        excluded_trips=tuple(trace.get("excluded_trips", ())),
        history=tuple(
            HistoryPoint(m, p, {s["feature"]: s["value"] for s in t["factors"] if s.get("value") is not None})
            for m, p, t in sorted(history, key=lambda h: h[0])
            if m <= row["month"]
        ),
        rulebook_version=rb.version,
        rulebook_sha256=rb.sha256,
        data_used=tuple(dict.fromkeys(("trips", "km", *(s["feature"] for s in priced)))),
        never_used=tuple(rb.prohibited) + NEVER_COLLECTED_FOR_PRICE,
    )
