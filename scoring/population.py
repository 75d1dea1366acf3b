"""The trip score, calibrated against a reference population of real and simulated trips (issue 12).

Each part of the score is one continuous measure of the trip; it costs ``weight x F(value)`` points, where F is the
measure's distribution in the reference population (scoring/reference_population.json, built by
bench/reference_population.py from ../shared/realdata and the simulator; numbers reproducible). So the parts
rank a trip against real driving instead of against caps that every ordinary trip is below (the old score gave
22 of 40 real trips exactly 100), and the parts still sum to the score:

    score = 100 - sum(points_lost),  points_lost = weight x F(value),  weights sum to 100.

F is the reference's empirical distribution, read between its 101 quantile knots by linear interpolation and
scaled to [0, TABLE_TOP]; a value at or below the lowest knot costs 0, and above the highest knot the part keeps
rising towards 1 (TABLE_TOP + (1 - TABLE_TOP) (1 - q_max / x)), so no part saturates. A measure the trip cannot
give (no phone report, no lateral channel, < score_min_km for a per-km rate) costs the reference median's points:
a device that cannot see a behaviour is scored as typical, neither rewarded nor punished for its blind spot,
which keeps one driver's score the same whichever device class recorded the trip.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from ubi.common.config import PROJECT_ROOT, ScoringConfig
from ubi.common.errors import ConfigError

TABLE_TOP = 0.98
DEFAULT_TABLE = PROJECT_ROOT / "scoring" / "reference_population.json"

# part -> what it measures (the values of ``part_values``); the weights are ScoringConfig.score_weights
PARTS: dict[str, str] = {
    "phone_share": "share of reported moving time with the phone handled",
    "speeding_risk": "distance-weighted mean extra crash risk of speeding (Kloeden)",
    "events_per_100km": "graded events per 100 km, moderate 1, harsh 3, severe 9 (any source)",
    "lon_intensity": "sum of the brake and accel time shares at the [low, moderate, harsh] levels",
    "lat_intensity": "sum of the lateral time shares at the [low, moderate, harsh] levels",
    "jerk_rms": "RMS jerk of the 1 s mean longitudinal acceleration (m/s^3)",
    "rpa": "relative positive acceleration (m/s^2)",
    "cruise_speed_cv": "speed fluctuation at steady cruise",
    "weaving": "lateral acceleration std at straight steady cruise (m/s^2)",
    "fatigue_h": "hours driven beyond fatigue_after_s without a break",
    "night_share": "share of distance in the night band",
}
_GRADE_W = (1.0, 3.0, 9.0)  # a grade up is roughly 3x the crash relevance (our choice; the bands are ~1.3x apart)


def part_values(r: Mapping, cfg: ScoringConfig) -> dict[str, float | None]:
    """Each part's value from the fields of a TripRecord (a row, or the same keys while measuring)."""
    km = r.get("distance_km") or 0.0
    grades = [r.get(f"harsh_{k}_grades") for k in ("brake", "accel", "corner")]
    ev = sum(w * g[i] for g in grades if g for i, w in enumerate(_GRADE_W))
    bs, acs, ls = r.get("brake_time_share"), r.get("accel_time_share"), r.get("lat_time_share")
    rep = r.get("phone_reported_s") or 0.0
    fat = r.get("fatigue_s")
    night = r.get("night_km")
    return {
        "phone_share": (r.get("phone_s") or 0.0) / rep if rep > 0 else None,
        "speeding_risk": r.get("speeding_extra_risk"),
        "events_per_100km": ev * 100.0 / km if km >= cfg.score_min_km else None,
        "lon_intensity": sum(bs) + sum(acs) if bs is not None and acs is not None else None,
        "lat_intensity": sum(ls) if ls is not None else None,
        "jerk_rms": r.get("jerk_rms_mps3"),
        "rpa": r.get("rpa_mps2"),
        "cruise_speed_cv": r.get("cruise_speed_cv"),
        "weaving": r.get("weave_lat_std_mps2"),
        "fatigue_h": None if fat is None else fat / 3600.0,
        "night_share": None if night is None or km <= 0 else min(1.0, night / km),
    }


def percentile(x: float, knots: list[float]) -> float:
    """F(x) in [0, 1): the reference distribution given by quantile knots at equal steps (see the module doc)."""
    k = len(knots)
    if k == 0 or x <= knots[0]:
        return 0.0
    if x > knots[-1]:
        return TABLE_TOP + (1.0 - TABLE_TOP) * (1.0 - knots[-1] / x) if x > 0 else TABLE_TOP
    lo, hi = 0, k - 1  # the first knot >= x: knots[i - 1] < x <= knots[i]
    while lo < hi:
        mid = (lo + hi) // 2
        if knots[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    i = lo
    frac = (x - knots[i - 1]) / (knots[i] - knots[i - 1])
    return TABLE_TOP * (i - 1 + frac) / (k - 1)


@lru_cache(maxsize=4)
def load_table(path: str) -> dict:
    """The shipped (or configured) reference table: {"meta": ..., "quantiles": {part: [101 knots]}}."""
    return json.loads(Path(path).read_text())


def table_for(cfg: ScoringConfig) -> dict:
    path = str(cfg.reference_population or DEFAULT_TABLE)
    try:
        return load_table(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"scoring.reference_population: {path}: {exc} (build: bench/reference_population.py)"
        ) from exc


def population_score(values: Mapping[str, float | None], cfg: ScoringConfig) -> tuple[float, dict]:
    """(score, parts): per part its value, percentile in the reference, weight and points lost; the points sum
    to 100 - score. A part without a value (None) costs the points of the reference median (``imputed``)."""
    q = table_for(cfg)["quantiles"]
    parts: dict[str, dict] = {}
    total = 0.0
    for name, w in cfg.score_weights.items():
        knots = q.get(name) or []
        x = values.get(name)
        imputed = x is None
        if imputed:
            f = percentile(knots[len(knots) // 2], knots) if knots else 0.0
        else:
            f = percentile(max(0.0, float(x)), knots)  # type: ignore[arg-type]
        lost = round(w * f, 3)
        parts[name] = {
            "value": None if x is None else round(float(x), 6),
            "percentile": round(f, 4),
            "weight": w,
            "points_lost": lost,
            "imputed": imputed,
        }
        total += lost
    return round(max(0.0, 100.0 - total), 3), parts
