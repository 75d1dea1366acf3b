"""Claims drawn from each simulated driver's true risk and exposure, and a large offline book for model fitting.

The true claim model (documented here and nowhere else; ``ubi actuary fit`` must rediscover it):

    claims ~ Poisson(lambda),  lambda = years * F0 * (km_per_year / 12,000) ** 0.5
                                        * BRAKES[band of true harsh brakes per 100 km]
                                        * ACCELS[band of true fast starts per 100 km]
                                        * VEHICLE_GROUP[group] * AGE_BAND[age band]
    severity ~ Gamma(shape 2, mean 3,500 EUR * VEHICLE_GROUP_SEVERITY[group])

with F0 = 0.10 claims per policy-year. Telematics bands use the starter rulebook's edges, so fitted band
relativities compare one to one. Region and gender have no effect on risk (region is a prohibited rating factor
and gender a protected attribute; both are still in the data for audits).

"True" harsh-event rates come from the driver's latent profile (``simulator.fleet.driver_profile``): a harsh brake
is a per-stop probability, so the rate per 100 km is that probability times the stops per 100 km implied by the
driver's road mix (mean leg lengths of ``simulator.motion.ROADS``). This ignores the few legs too slow for a harsh
event, so it is the offline book's truth, close to but not identical with what the scorer counts on MQTT trips.
In the offline book each habit also gets its own lognormal spread (``HABIT_SPREAD``), because the profile ties
both to one aggression score and a model cannot separate two features that move in lockstep.
What an insurer observes is a Poisson count of events over the km driven, so observed rates scatter around it.

Everything is vectorised NumPy and deterministic for a seed.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from simulator.fleet import REGIONS, driver_profile
from simulator.motion import ROADS, _road_mix

F0 = 0.10  # claims per policy-year at the reference risk
REF_KM_YEAR = 12_000.0
KM_ELASTICITY = 0.5
BRAKE_EDGES = np.array([0.0, 0.5, 1.5, 3.0, 6.0])  # harsh brakes per 100 km, as in the starter rulebook
BRAKE_REL = np.array([0.80, 0.90, 1.00, 1.25, 1.60])
ACCEL_EDGES = np.array([0.0, 1.0, 3.0])  # fast starts per 100 km
ACCEL_REL = np.array([0.90, 1.00, 1.20])
VEHICLE_GROUP_REL = {"A": 0.90, "B": 1.00, "C": 1.15, "D": 1.35}
AGE_BAND_REL = {"18-24": 1.80, "25-39": 1.00, "40-64": 0.85, "65+": 1.05}
VEHICLE_GROUP_SEVERITY = {"A": 0.85, "B": 1.00, "C": 1.20, "D": 1.60}
SEVERITY_MEAN = 3_500.0
SEVERITY_SHAPE = 2.0
MEAN_SPEED_KMH = 38.0  # for driving hours of the offline book
HABIT_SPREAD = 0.5  # sd of log of each driver's own multiplier on the profile's brake and on its accel rate

TRUE_RELATIVITIES = {
    "harsh_brakes_per_100km": dict(zip(BRAKE_EDGES.tolist(), BRAKE_REL.tolist(), strict=False)),
    "harsh_accels_per_100km": dict(zip(ACCEL_EDGES.tolist(), ACCEL_REL.tolist(), strict=False)),
    "km_elasticity": KM_ELASTICITY,
}
GROUPS, GROUP_P = ["A", "B", "C", "D"], [0.3, 0.35, 0.25, 0.1]
AGES, AGE_P = ["18-24", "25-39", "40-64", "65+"], [0.1, 0.35, 0.4, 0.15]


def stops_per_100km(motorway_share: np.ndarray) -> np.ndarray:
    """Stops (legs) per 100 km for a road mix: 100 km over the mix's mean leg length."""
    lengths = np.array([leg for _, leg in ROADS.values()])
    mean_leg = np.array([np.dot(_road_mix(float(m)), lengths) for m in np.atleast_1d(motorway_share)])
    return 100_000.0 / mean_leg


def true_rates(profiles: list) -> tuple[np.ndarray, np.ndarray]:
    """Expected harsh brakes and fast starts per 100 km for each driver profile."""
    stops = stops_per_100km(np.array([p.motorway_share for p in profiles]))
    brake = np.array([p.harsh_brake_rate for p in profiles]) * stops
    accel = np.array([p.harsh_accel_rate for p in profiles]) * stops
    return brake, accel


def true_frequency(
    years: np.ndarray,
    km_per_year: np.ndarray,
    brakes_100: np.ndarray,
    accels_100: np.ndarray,
    group: np.ndarray,
    age: np.ndarray,
) -> np.ndarray:
    """Expected claim count for each policy period under the documented true model."""
    rel_b = BRAKE_REL[np.searchsorted(BRAKE_EDGES, brakes_100, side="right") - 1]
    rel_a = ACCEL_REL[np.searchsorted(ACCEL_EDGES, accels_100, side="right") - 1]
    rel_g = np.vectorize(VEHICLE_GROUP_REL.__getitem__, otypes=[float])(group) if len(group) else np.ones(0)
    rel_age = np.vectorize(AGE_BAND_REL.__getitem__, otypes=[float])(age) if len(age) else np.ones(0)
    km_rel = (np.maximum(km_per_year, 1.0) / REF_KM_YEAR) ** KM_ELASTICITY
    return years * F0 * km_rel * rel_b * rel_a * rel_g * rel_age


def draw_claims(
    rng: np.random.Generator,
    policy_ids: np.ndarray,
    lam: np.ndarray,
    starts: np.ndarray,
    days: np.ndarray,
    group: np.ndarray,
) -> pl.DataFrame:
    """Poisson counts, a uniform date inside each period, Gamma severity: one row per claim."""
    counts = rng.poisson(lam)
    idx = np.repeat(np.arange(lam.shape[0]), counts)
    offs = np.floor(rng.random(idx.shape[0]) * days[idx]).astype("timedelta64[D]")
    sev_mult = np.vectorize(VEHICLE_GROUP_SEVERITY.__getitem__, otypes=[float])(group[idx]) if idx.size else idx
    amount = rng.gamma(SEVERITY_SHAPE, SEVERITY_MEAN / SEVERITY_SHAPE, idx.shape[0]) * sev_mult
    return pl.DataFrame(
        {
            "claim_id": [f"CL{i:08d}" for i in range(1, idx.shape[0] + 1)],
            "policy_id": policy_ids[idx].astype(str) if idx.size else np.array([], dtype=str),
            "claim_date": (starts[idx] + offs) if idx.size else np.array([], dtype="datetime64[D]"),
            "amount": np.round(amount, 2),
        },
        schema={"claim_id": pl.String, "policy_id": pl.String, "claim_date": pl.Date, "amount": pl.Float64},
    )


def make_book(policies: int, seed: int = 7, start: date = date(2025, 1, 1)) -> dict[str, pl.DataFrame]:
    """A book of ``policies`` policy-periods of up to a year: policies, exposure periods, claims and the truth."""
    rng = np.random.default_rng([seed, 6])
    n = policies
    ids = np.array([f"BK{i:07d}" for i in range(1, n + 1)])
    vehicles = np.array([f"BV{i:07d}" for i in range(1, n + 1)])
    group = rng.choice(GROUPS, n, p=GROUP_P)
    age = rng.choice(AGES, n, p=AGE_P)
    base = (
        55.0
        * np.vectorize({"A": 0.85, "B": 1.0, "C": 1.2, "D": 1.5}.__getitem__)(group)
        * np.vectorize({"18-24": 1.8, "25-39": 1.0, "40-64": 0.9, "65+": 1.1}.__getitem__)(age)
    )
    region = rng.choice(REGIONS, n)
    gender = rng.choice(["female", "male"], n)
    days = np.where(rng.random(n) < 0.8, 365, rng.integers(60, 365, n))
    starts = np.datetime64(start) + rng.integers(0, 365 - days + 1).astype("timedelta64[D]")
    years = days / 365.0
    km_year = rng.lognormal(np.log(REF_KM_YEAR) - 0.125, 0.5, n)
    km = km_year * years
    profiles = [driver_profile(seed, v) for v in vehicles]
    brake_true, accel_true = true_rates(profiles)
    # DriverProfile ties both habits to one aggression score, so they move in lockstep; real drivers differ in
    # each habit on its own, and a model can only tell the two apart if they do. Each gets its own spread.
    brake_true = brake_true * rng.lognormal(0.0, HABIT_SPREAD, n)
    accel_true = accel_true * rng.lognormal(0.0, HABIT_SPREAD, n)
    hb = rng.poisson(brake_true * km / 100.0)
    ha = rng.poisson(accel_true * km / 100.0)
    lam = true_frequency(years, km_year, brake_true, accel_true, group, age)
    claims = draw_claims(rng, ids, lam, starts, days, group)
    pols = pl.DataFrame(
        {
            "policy_id": ids,
            "vehicle_id": vehicles,
            "start_date": starts - rng.integers(30, 900, n).astype("timedelta64[D]"),
            "base_premium": np.round(base, 2),
            "vehicle_group": group,
            "age_band": age,
            "region": region,
            "gender": gender,
        }
    )
    periods = pl.DataFrame(
        {
            "policy_id": ids,
            "period_start": starts,
            "period_end": starts + days.astype("timedelta64[D]"),
            "exposure_years": years,
            "km": km,
            "harsh_brakes": hb,
            "harsh_accels": ha,
            "driving_hours": km / MEAN_SPEED_KMH,
        }
    )
    truth = pl.DataFrame(
        {
            "policy_id": ids,
            "true_brakes_per_100km": brake_true,
            "true_accels_per_100km": accel_true,
            "expected_claims": lam,
        }
    )
    return {"policies": pols, "exposure_periods": periods, "claims": claims, "truth": truth}


def fleet_claims(seed: int, policies: list, km_by_vehicle: dict[str, float], start: date, days: int) -> pl.DataFrame:
    """Claims for a simulated MQTT fleet over its simulated days, from its drivers' profiles and true km."""
    rng = np.random.default_rng([seed, 61])
    vids = [p.vehicle_id for p in policies]
    brake, accel = true_rates([driver_profile(seed, v) for v in vids])
    years = np.full(len(vids), days / 365.0)
    km = np.array([km_by_vehicle.get(v, 0.0) for v in vids])
    group = np.array([p.vehicle_group for p in policies])
    age = np.array([p.age_band for p in policies])
    lam = true_frequency(years, km / years, brake, accel, group, age)
    ids = np.array([p.policy_id for p in policies])
    starts = np.full(len(vids), np.datetime64(start))
    return draw_claims(rng, ids, lam, starts, np.full(len(vids), days), group)


BOOK_SPEC = """# Model spec of a simulated book (`ubi actuary simulate-book`); docs/book.md describes the format.
[book]
name = "simulated"
policies = "book.parquet"
policy_id = "policy_id"
exposure = "exposure_years"
period_start = "period_start"
period_end = "period_end"

[claims]
path = "claims.parquet"
policy_id = "policy_id"
amount = "amount"
date = "claim_date"

[audit]
protected = ["gender"]
age = "age_band"

[[factors]]
name = "vehicle_group"
column = "vehicle_group"
kind = "categorical"

[[factors]]
name = "age_band"
column = "age_band"
kind = "categorical"
base = "25-39"

[[factors]]
name = "km_per_year"
column = "km_per_year"
kind = "linear"
log = true
base = 12000

[[factors]]
name = "harsh_brakes"
column = "harsh_brakes_per_100km"
kind = "bands"
edges = [0.0, 0.5, 1.5, 3.0, 6.0]
base = 2.0
telematics = true
rulebook_feature = "harsh_brakes_per_100km"

[[factors]]
name = "fast_starts"
column = "harsh_accels_per_100km"
kind = "bands"
edges = [0.0, 1.0, 3.0]
base = 2.0
telematics = true
rulebook_feature = "harsh_accels_per_100km"
"""


def book_rows(book: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """One row per policy period with the observed features, as an insurer's data warehouse would export it."""
    p = book["exposure_periods"].join(book["policies"], on="policy_id")
    per100 = 100.0 / pl.col("km")
    return p.select(
        "policy_id",
        "period_start",
        "period_end",
        "exposure_years",
        (pl.col("km") / pl.col("exposure_years")).alias("km_per_year"),
        (pl.col("harsh_brakes") * per100).alias("harsh_brakes_per_100km"),
        (pl.col("harsh_accels") * per100).alias("harsh_accels_per_100km"),
        "vehicle_group",
        "age_band",
        "region",
        "gender",
    )


def write_book(book: dict[str, pl.DataFrame], out: Path) -> None:
    """The book's tables as Parquet, plus ``book.parquet`` and its model spec ``book.toml`` for `load-book`."""
    out.mkdir(parents=True, exist_ok=True)
    for name, df in book.items():
        df.write_parquet(out / f"{name}.parquet")
    book_rows(book).write_parquet(out / "book.parquet")
    (out / "book.toml").write_text(BOOK_SPEC)
