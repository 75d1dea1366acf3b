"""Actuary tools on a small DuckDB built in tmp_path: what-if, fairness, fit; claims generator; the fit recovers
the simulator's true relativities."""

import inspect
from argparse import Namespace
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pricing import fairness
from pricing.engine import MonthFeatures, price_policy
from pricing.fit import Experience, fit
from pricing.rulebook import load_rulebook, parse_rulebook
from simulator import claims as sim
from simulator.bulk import load_bulk
from ubi.adapters import duckdb_store as store
from ubi.adapters.duckdb_store import run_month
from ubi.cli import actuary
from ubi.common.config import Config
from ubi.common.errors import PricingError

ROOT = Path(__file__).resolve().parent.parent
STARTER = Config().rulebook
RB = load_rulebook(STARTER)
OCT = date(2026, 10, 1)
PROPOSED = (
    STARTER.read_text()
    .replace('version = "2026.11-starter"', 'version = "2026.12-proposal"')
    .replace("{ from = 6.0, relativity = 1.30", "{ from = 6.0, relativity = 1.60")
    .replace("factor_ceiling = 1.30", "factor_ceiling = 1.50")
)


@pytest.fixture
def priced(tmp_path: Path):
    db = tmp_path / "a.duckdb"
    con = store.connect(db)
    load_bulk(con, 600, 12, OCT, seed=3)
    run_month(con, RB, OCT, actor="tester")
    con.close()
    cfg = replace(Config(), home=tmp_path, db_path=db)
    return cfg, tmp_path


def args(**kw) -> Namespace:
    return Namespace(**{"rulebook": None, "month": None, "out": None, "threshold": None, **kw})


def premiums_checksum(cfg):
    con = store.connect(cfg.db_path, read_only=True)
    try:
        return con.execute("SELECT count(*), sum(premium), max(run_id) FROM premiums").fetchone()
    finally:
        con.close()


def test_whatif_matches_engine_and_writes_nothing(priced):
    cfg, tmp = priced
    (tmp / "new.toml").write_text(PROPOSED)
    before = premiums_checksum(cfg)
    assert actuary.whatif_cmd(cfg, args(rulebook=tmp / "new.toml")) == 0
    assert premiums_checksum(cfg) == before
    out = tmp / "reports" / "whatif"
    html = (out / "report.html").read_text()
    assert "data:image/png;base64" in html and "By region" in html
    summary = pl.read_csv(out / "summary.csv").row(0, named=True)
    # proposed revenue = the per-policy engine over the same inputs
    con = store.connect(cfg.db_path, read_only=True)
    rows = con.execute("""SELECT p.base_premium, p.previous_premium, p.premium, f.trips, f.km, f.driving_hours,
                                 f.harsh_brakes, f.harsh_accels FROM premiums p JOIN monthly_features f
                                 USING (policy_id, month)""").fetchall()
    con.close()
    new = parse_rulebook(PROPOSED)
    total = sum(
        price_policy(new, b, prev, MonthFeatures(t, km, h, hb, ha)).premium for b, prev, _, t, km, h, hb, ha in rows
    )
    assert Decimal(str(summary["revenue_proposed"])).quantize(Decimal("0.01")) == total
    assert Decimal(str(summary["revenue_current"])).quantize(Decimal("0.01")) == sum(r[2] for r in rows)
    assert summary["policies"] == 600 and summary["revenue_change"] > 0
    segs = pl.read_csv(out / "segments.csv")
    assert set(segs["segment"]) == {"vehicle_group", "age_band", "region"}
    assert segs.filter(pl.col("segment") == "region")["policies"].sum() == 600


def test_whatif_of_the_same_rulebook_changes_nothing(priced):
    cfg, tmp = priced
    assert actuary.whatif_cmd(cfg, args(rulebook=STARTER, out=tmp / "same")) == 0
    s = pl.read_csv(tmp / "same" / "summary.csv").row(0, named=True)
    assert s["revenue_change"] == 0 and s["share_up"] == 0 and s["share_down"] == 0


def test_whatif_with_off_balance_is_revenue_neutral(priced):
    cfg, tmp = priced
    (tmp / "ob.toml").write_text(PROPOSED + "\n[offbalance]\nenabled = true\ntolerance = 0.0001\n")
    assert actuary.whatif_cmd(cfg, args(rulebook=tmp / "ob.toml", month="2026-10")) == 0
    s = pl.read_csv(tmp / "reports" / "whatif" / "summary.csv").row(0, named=True)
    con = store.connect(cfg.db_path, read_only=True)
    prev = float(con.execute("SELECT sum(previous_premium) FROM premiums").fetchone()[0])
    con.close()
    # the target is what the book paid last month (here the base premiums: the first priced month)
    assert s["off_balance_proposed"] != 1 and abs(s["revenue_proposed"] - prev) <= 1e-4 * prev


def test_fairness_flags_a_disparity_and_passes_without_one(priced):
    cfg, tmp = priced
    assert actuary.fairness_cmd(cfg, args(threshold=0.5)) == 0
    assert actuary.fairness_cmd(cfg, args(threshold=0.0)) == 1  # any gap at all is above zero
    # make gender track the telematics factor: a proxy disparity the default threshold must catch
    con = store.connect(cfg.db_path)
    con.execute("""UPDATE protected_attributes SET gender = CASE WHEN policy_id IN (
                     SELECT policy_id FROM premiums WHERE telematics_factor > 1.0) THEN 'male' ELSE 'female' END""")
    con.close()
    assert actuary.fairness_cmd(cfg, args(out=tmp / "fair")) == 1
    d = pl.read_csv(tmp / "fair" / "disparities.csv")
    flagged = d.filter(pl.col("flagged"))
    assert "gender" in flagged["attribute"].to_list()
    assert "DISPARITY FLAGGED" in (tmp / "fair" / "report.html").read_text()


def test_fairness_audit_numbers():
    r = fairness.audit(
        np.array([0.1, 0.1, 0.0, 0.0]),
        np.array([1.1, 1.1, 1.0, 1.0]),
        np.zeros(4, bool),
        {"gender": np.array(["m", "m", "f", "f"])},
        threshold=0.05,
        min_group=1,
    )
    gaps = {d["metric"]: d["gap"] for d in r.disparities}
    assert gaps["mean_change"] == pytest.approx(0.1) and r.flagged


def test_fairness_audit_refuses_nan_and_single_groups():
    ok = dict(factor=np.ones(4), capped_up=np.zeros(4, bool), min_group=1)
    with pytest.raises(PricingError, match=r"gender group\(s\) \['f'\] have premium changes or factors"):
        fairness.audit(np.array([0.1, 0.1, np.nan, 0.0]), attributes={"gender": np.array(["m", "m", "f", "f"])}, **ok)
    with pytest.raises(PricingError, match="gender has 1 group"):
        fairness.audit(np.zeros(4), attributes={"gender": np.array(["f"] * 4)}, **ok)


def test_fit_without_telematics_factors_writes_a_whole_report(tmp_path):
    """A rulebook with no [[factors]] passes `rulebook check`; fit then reports km and controls, no crash; and a
    failing fit leaves no half-written folder."""
    text = STARTER.read_text().split("[[factors]]")[0]
    rb = parse_rulebook(text)
    exp = book_experience(sim.make_book(3000, seed=4))
    res = actuary.fit_report_files(rb, exp, tmp_path / "fit")
    assert res.bands == [] and "no telematics factor" in (tmp_path / "fit" / "report.html").read_text()
    load_rulebook(tmp_path / "fit" / "draft_rulebook.toml")
    flat = replace(exp, harsh_brakes=np.zeros_like(exp.harsh_brakes), harsh_accels=np.zeros_like(exp.harsh_accels))
    with pytest.raises(PricingError, match="no telematics data to fit 'harsh_brakes_per_100km'"):
        actuary.fit_report_files(RB, flat, tmp_path / "fit2")
    assert not (tmp_path / "fit2").exists() and len(list(tmp_path.iterdir())) == 1


def test_protected_attributes_never_priced_on(priced):
    """Premiums do not move when gender changes, and no pricing code reads the protected table."""
    cfg, _ = priced
    con = store.connect(cfg.db_path)
    first = con.execute("SELECT policy_id, premium FROM premiums ORDER BY 1").fetchall()
    con.execute("UPDATE protected_attributes SET gender = CASE gender WHEN 'male' THEN 'female' ELSE 'male' END")
    run_month(con, RB, OCT, actor="tester")
    assert con.execute("SELECT policy_id, premium FROM premiums ORDER BY 1").fetchall() == first
    con.close()
    for path in (ROOT / "pricing").glob("*.py"):
        if path.name != "fairness.py":
            assert "protected_attributes" not in path.read_text(), path
    # the pricing run's own SQL, in the DuckDB adapter, never reads it either
    sql = store.MONTH_POLICIES_SQL + store.MONTH_TRIPS_SQL + store.MONTH_OBJECTED_SQL
    assert "protected_attributes" not in inspect.getsource(store.PricingTables) + sql


def test_claims_generator_is_deterministic_and_documented():
    a, b = sim.make_book(2000, seed=5), sim.make_book(2000, seed=5)
    for k in a:
        assert a[k].equals(b[k])
    assert not a["claims"].equals(sim.make_book(2000, seed=6)["claims"])
    p = a["exposure_periods"]
    assert p.height == 2000 and (p["exposure_years"] <= 1).all() and (p["km"] > 0).all()
    # claim counts follow the true expected frequency
    assert a["claims"].height == pytest.approx(a["truth"]["expected_claims"].sum(), rel=0.15)
    assert sim.TRUE_RELATIVITIES["harsh_brakes_per_100km"][6.0] == 1.60


def test_fleet_claims_follow_km():
    from simulator.fleet import FleetSpec, make_policies

    pols = make_policies(FleetSpec(vehicles=300, seed=4))
    none = sim.fleet_claims(4, pols, {}, date(2026, 1, 1), 365)
    lots = sim.fleet_claims(4, pols, {p.vehicle_id: 30_000.0 for p in pols}, date(2026, 1, 1), 365)
    assert none.height < lots.height and lots.height > 10 and (lots["amount"] > 0).all()


def book_experience(book: dict[str, pl.DataFrame]) -> Experience:
    cl = book["claims"].group_by("policy_id").len("claims")
    p = book["exposure_periods"].join(book["policies"], on="policy_id").join(cl, on="policy_id", how="left")
    p = p.with_columns(pl.col("claims").fill_null(0))
    return Experience(
        p["exposure_years"].to_numpy(),
        p["claims"].to_numpy().astype(float),
        p["km"].to_numpy(),
        p["harsh_brakes"].to_numpy(),
        p["harsh_accels"].to_numpy(),
        p["driving_hours"].to_numpy(),
        {k: p[k].to_numpy() for k in ("vehicle_group", "age_band", "region")},
    )


TOLERANCE = 0.10  # fitted band relativity within 10% of the true one (both relative to the reference band)
KM_TOLERANCE = 0.08  # fitted km-per-year elasticity within 0.08 of the true 0.5


def test_fit_recovers_simulator_truth():
    """60,000 simulated policies (55,091 policy-years, 6,065 claims): the GLM's telematics relativities match the
    simulator's (observed worst band 3.2% low)."""
    r = fit(RB, book_experience(sim.make_book(60_000, seed=11)))
    truth = {"harsh_brakes_per_100km": sim.BRAKE_REL, "harsh_accels_per_100km": sim.ACCEL_REL}
    for feature, true_rel in truth.items():
        bands = [b for b in r.bands if b.feature == feature]
        ref = next(j for j, b in enumerate(bands) if b.reference)
        for j, b in enumerate(bands):
            expected = true_rel[j] / true_rel[ref]
            assert abs(b.relativity / expected - 1) <= TOLERANCE, (feature, b.label, b.relativity, expected)
    assert abs(r.km_elasticity - sim.KM_ELASTICITY) <= KM_TOLERANCE
    glm = next(m for m in r.metrics if m["model"] == "Poisson GLM")
    hgb = next(m for m in r.metrics if m["model"].startswith("gradient"))
    assert glm["d2"] > 0.02 and glm["gini"] > 0.15 and hgb["d2"] > 0
    assert glm["predicted_claims"] == pytest.approx(glm["actual_claims"], rel=0.06)
    draft = parse_rulebook(r.draft_toml, "draft")
    assert "region" not in {f.feature for f in draft.factors} and "draft" in draft.version
    rare_brake = draft.factors[0].bands[0].relativity
    assert rare_brake < draft.factors[0].bands[-1].relativity


def test_fit_command_on_a_loaded_book(tmp_path):
    sim.write_book(sim.make_book(4000, seed=2), tmp_path / "book")
    con = store.connect(tmp_path / "f.duckdb")
    counts = store.load_book(con, tmp_path / "book")
    con.close()
    assert counts["policies"] == 4000 and counts["claims"] > 100
    cfg = replace(Config(), home=tmp_path, db_path=tmp_path / "f.duckdb")
    assert actuary.fit_cmd(cfg, args()) == 0
    out = tmp_path / "reports" / "fit"
    load_rulebook(out / "draft_rulebook.toml")
    for name in ("metrics.csv", "relativities.csv", "calibration.csv", "lorenz.csv", "report.html"):
        assert (out / name).stat().st_size > 0
    assert pl.read_csv(out / "calibration.csv").height == 30  # 10 deciles x 3 models (dummy, GLM, boosting)
    ctl = pl.read_csv(out / "control_relativities.csv")
    assert set(ctl["control"]) == {"vehicle_group", "age_band"}  # region is prohibited: never a control
    young = ctl.filter(pl.col("level") == "18-24").row(0, named=True)
    assert young["ci_low"] < young["relativity"] < young["ci_high"] and young["relativity"] > 1.3  # true 1.8


def test_tools_explain_missing_data(tmp_path):
    from ubi.common.errors import UBIError

    con = store.connect(tmp_path / "e.duckdb")
    con.close()
    cfg = replace(Config(), home=tmp_path, db_path=tmp_path / "e.duckdb")
    with pytest.raises(UBIError, match="no priced month"):
        actuary.fairness_cmd(cfg, args())
    with pytest.raises(UBIError, match="too little experience"):
        actuary.fit_cmd(cfg, args())
    with pytest.raises(UBIError, match="--rulebook"):
        actuary.whatif_cmd(cfg, args())
