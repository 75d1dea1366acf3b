"""Purpose and consent: which rulebook features a policyholder's data may be priced on (pure; no database).

Each feature serves one purpose; a policyholder grants or refuses each purpose (``ubi privacy consent``). A feature
whose purpose is refused (or ``scoring``, which covers every driving feature) is *withheld*: it counts with
relativity 1 (neither raises nor lowers the price), its value is left out of the trace, and the statement says
that it was not used because the policyholder did not agree to it. Withheld features never change credibility or
the minimum-data gate, which depend on distance, not on behaviour.

Defaults (no row for a purpose): ``scoring``, ``driving_style`` and ``mileage`` are what a telematics policy is
sold on, so they are granted unless refused; ``phone_use``, ``night_driving`` and ``speeding`` read more of a
person's life (where and when they drive, what they do at the wheel) and are refused until granted.
"""

from __future__ import annotations

from collections.abc import Mapping

PURPOSES: dict[str, bool] = {  # purpose -> granted when the policyholder said nothing
    "scoring": True,
    "driving_style": True,
    "mileage": True,
    "phone_use": False,
    "night_driving": False,
    "speeding": False,
}

# rulebook feature -> purpose; a feature not listed falls under its prefix below, else "scoring"
FEATURE_PURPOSE = {
    "harsh_brakes_per_100km": "driving_style",
    "harsh_accels_per_100km": "driving_style",
    "harsh_corners_per_100km": "driving_style",
    "km": "mileage",
    "driving_hours": "mileage",
}
PREFIX_PURPOSE = (("phone", "phone_use"), ("night", "night_driving"), ("speeding", "speeding"))


def purpose_of(feature: str) -> str:
    if feature in FEATURE_PURPOSE:
        return FEATURE_PURPOSE[feature]
    for prefix, purpose in PREFIX_PURPOSE:
        if feature.startswith(prefix):
            return purpose
    return "scoring"


def effective(granted: Mapping[str, bool]) -> dict[str, bool]:
    """Every purpose with its default filled in; an unknown purpose is refused (a typo must not grant anything)."""
    unknown = set(granted) - set(PURPOSES)
    if unknown:
        raise ValueError(f"unknown consent purpose(s) {sorted(unknown)}; known: {list(PURPOSES)}")
    return {p: bool(granted.get(p, default)) for p, default in PURPOSES.items()}


def withheld(features: list[str], granted: Mapping[str, bool]) -> frozenset[str]:
    """The features that may not be priced for a policyholder with these grants."""
    g = effective(granted)
    if not g["scoring"]:
        return frozenset(features)
    return frozenset(f for f in features if not g[purpose_of(f)])


def statement_line(label: str) -> str:
    return f"{label.capitalize()}: not used for your price, because you have not agreed to its use."
