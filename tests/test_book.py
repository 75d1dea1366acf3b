"""Claims books of any shape: the model spec, validation (every problem, nothing written), atomic loading, claim
accounting, the GLMs against the simulator's truth and scikit-learn, the report, the draft rulebook, fairness, and
a sample of the real Belgian and French books read in place from ../shared/books."""

from __future__ import annotations

from argparse import Namespace
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import PoissonRegressor
from sklearn.metrics import mean_poisson_deviance

from pricing import book_fairness, glm
from pricing.book import check_book, parse_spec
from pricing.book_fit import fit_book, make_split
from pricing.rulebook import load_rulebook
from simulator import claims as sim
from ubi.adapters import book_store
from ubi.adapters import duckdb_store as store
from ubi.cli import book as book_cli
from ubi.common.config import Config
from ubi.common.errors import BookError, PricingError, UBIError

ROOT = Path(__file__).resolve().parent.parent
BOOKS = ROOT.parent / "shared" / "books"
STARTER = load_rulebook(Config().rulebook)

SPEC = """
[book]
name = "tiny"
policies = "rows.csv"
policy_id = "pol"
exposure = "expo"
claim_count = "n"
period_start = "start"
period_end = "end"

[claims]
path = "claims.csv"
policy_id = "pol"
amount = "amt"
date = "day"

[audit]
protected = ["sex"]
age = "age"

[[factors]]
column = "zone"
kind = "categorical"

[[factors]]
column = "age"
kind = "bands"
edges = [18, 25, 40, 65]
"""


def tiny_book(folder: Path, rows: str | None = None, claims: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "book.toml").write_text(SPEC)
    (folder / "rows.csv").write_text(
        rows
        or "pol,expo,n,start,end,zone,age,sex\n"
        "P1,1.0,1,2025-01-01,2026-01-01,A,30,f\n"
        "P2,0.5,0,2025-01-01,2025-07-01,B,50,m\n"
        "P3,1.0,2,2025-01-01,2026-01-01,A,22,m\n"
    )
    (folder / "claims.csv").write_text(
        claims
        or "pol,amt,day\nP1,1000,2025-03-01\nP3,500,2025-05-01\nP3,700,2025-06-01\nP9,50,2025-01-05\nP2,10,2025-09-01\n"
    )
    return folder / "book.toml"


def cfg_for(tmp: Path) -> Config:
    return replace(Config(), home=tmp, db_path=tmp / "b.duckdb")


def args(**kw) -> Namespace:
    return Namespace(**{"spec": None, "book": None, "rulebook": None, "out": None, "threshold": None, **kw})


def db_state(cfg: Config) -> tuple:
    con = store.connect(cfg.db_path, read_only=True)
    try:
        tables = sorted(r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall())
        books = con.execute("SELECT name, spec_sha256 FROM books ORDER BY 1").fetchall() if "books" in tables else []
        rows = {
            t: con.execute(f'SELECT count(*), sum(exposure) FROM "{t}"').fetchone()
            for t in tables
            if t.startswith("book_") and t.endswith("_rows")  # a loaded book's rows (not premium_rows, feature_rows)
        }
        return tables, books, rows
    finally:
        con.close()


# ---------------------------------------------------------------- spec


def test_spec_lists_every_problem_with_its_line():
    bad = """[book]
name = "Bad Name"
policies = "x.xlsx"
policy_id = "id"
year = 1997

[[factors]]
column = "sex"
kind = "categorical"

[[factors]]
column = "bm"
kind = "bands"
edges = [0, 5, 3]

[[factors]]
column = "age"
kind = "wavelet"

[[factors]]
column = "km"
kind = "bands"
edges = [1, 2]
telematics = true
rulebook_feature = "km"
"""
    with pytest.raises(BookError) as e:
        parse_spec(bad, "bad.toml")
    msg = "\n".join(e.value.problems)
    assert "line 2 (name)" in msg and "x.xlsx: only .parquet and .csv" in msg
    assert "exposure: missing" in msg and "claim_count: missing" in msg
    assert "line 7 (factors[0]): 'sex' is a protected attribute" in msg
    assert "line 11 (factors[1]): edges must be strictly increasing" in msg
    assert "line 16 (factors[2]): kind must be one of" in msg
    assert "line 20 (factors[3]): a rulebook's bands start at 0" in msg
    assert len(e.value.problems) >= 7


def test_spec_refuses_a_factor_on_the_claims_column():
    spec = SPEC.replace('column = "zone"', 'column = "n"')
    with pytest.raises(BookError, match="column 'n' is the book's claim_count"):
        parse_spec(spec)


# ---------------------------------------------------------------- load-book


def test_load_book_accounts_for_every_claim(tmp_path, capsys):
    spec = tiny_book(tmp_path / "bk")
    cfg = cfg_for(tmp_path)
    assert book_cli.load_book_cmd(cfg, args(spec=spec)) == 0
    out = capsys.readouterr().out
    # P9 is no policy of the book; P2's claim is dated after its period ended
    assert "5 loaded, 3 matched to a policy period, 2 unmatched (amount 60.00" in out
    con = store.connect(cfg.db_path, read_only=True)
    s, frame, acc = book_store.read_book(con, "tiny")
    claims = con.execute("SELECT policy_id, matched FROM book_tiny_claims ORDER BY 1, 2").fetchall()
    con.close()
    assert claims == [("P1", True), ("P2", False), ("P3", True), ("P3", True), ("P9", False)]
    assert acc["claims_unmatched"] == 2 and acc["claims"] == 3
    assert frame["claim_amount"].to_list() == [1000.0, 0.0, 1200.0]
    assert frame["f_zone"].to_list() == ["A", "B", "A"] and s.name == "tiny"


def test_bad_book_lists_every_problem_and_changes_nothing(tmp_path):
    cfg = cfg_for(tmp_path)
    assert book_cli.load_book_cmd(cfg, args(spec=tiny_book(tmp_path / "good"))) == 0
    before = db_state(cfg)
    rows = (
        "pol,expo,n,start,end,zone,age,sex\n"
        "P1,abc,1,2025-01-01,2026-01-01,A,30,f\n"  # row 1: exposure not a number
        "P2,-0.5,0,2025-01-01,2025-07-01,,50,m\n"  # row 2: negative exposure, empty zone
        "P3,1.0,1.5,2025-01-01,2026-01-01,A,x,m\n"  # row 3: claim count not whole, age not a number
        "P3,1.0,0,2025-01-01,2026-01-01,A,40,m\n"  # row 4: same policy and period as row 3
        ",1.0,0,2025-13-01,2026-01-01,B,40,f\n"  # row 5: no policy id, bad date
    )
    spec = tiny_book(tmp_path / "bad", rows, "pol,amt,day\nP1,-5,2025-02-01\n")
    with pytest.raises(BookError) as e:
        book_cli.load_book_cmd(cfg, args(spec=spec))
    msg = str(e.value)
    for needed in (
        "column 'expo', row 1: not a number (e.g. 'abc')",
        "column 'expo', row 2: exposure must be above 0",
        "column 'zone', row 2: empty (NULL)",
        "column 'n', row 3: not a count",
        "column 'age', row 3: not a number",
        "column 'pol', rows 3, 4: the same policy and period",
        "column 'pol', row 5: empty (NULL) policy id",
        "column 'start', row 5: not a date",
        "claims.csv: column 'amt', row 1: negative claim amount",
    ):
        assert needed in msg, (needed, msg)
    assert "nothing loaded" in msg and "Traceback" not in msg
    assert db_state(cfg) == before


def test_missing_column_is_named_with_the_file_columns(tmp_path):
    """A missing column and the problems of the other columns come in the same message."""
    rows = "pol,expo,start,end,zone,age,sex\nP1,-1,2025-01-01,2026-01-01,A,30,f\n"
    with pytest.raises(BookError, match=r"column\(s\) \['n'\] declared in the spec are not in the file; it has") as e:
        book_cli.load_book_cmd(cfg_for(tmp_path), args(spec=tiny_book(tmp_path / "bk", rows)))
    assert "column 'expo', row 1: exposure must be above 0" in str(e.value) and len(e.value.problems) == 2
    assert not (tmp_path / "b.duckdb").exists()  # validation runs before the store is even opened


def test_unreadable_and_absent_files_are_clear(tmp_path):
    spec = tiny_book(tmp_path / "bk")
    (tmp_path / "bk" / "rows.csv").unlink()
    with pytest.raises(BookError, match="policies file not found"):
        book_cli.load_book_cmd(cfg_for(tmp_path), args(spec=spec))
    with pytest.raises(UBIError, match="no book.toml"):
        book_cli.load_book_cmd(cfg_for(tmp_path), args(book=tmp_path))


def test_load_is_one_transaction(tmp_path, monkeypatch):
    """A failure after the rows table was replaced rolls everything back: the previous book stays whole."""
    cfg = cfg_for(tmp_path)
    assert book_cli.load_book_cmd(cfg, args(spec=tiny_book(tmp_path / "bk"))) == 0
    before = db_state(cfg)
    bigger = "pol,expo,n,start,end,zone,age,sex\n" + "".join(
        f"Q{i},1.0,0,2025-01-01,2026-01-01,A,30,f\n" for i in range(50)
    )
    spec = tiny_book(tmp_path / "bk2", bigger)

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(book_store, "audit", boom)
    with pytest.raises(RuntimeError):
        book_cli.load_book_cmd(cfg, args(spec=spec))
    assert db_state(cfg) == before


# ---------------------------------------------------------------- models


def test_lorenz_of_a_constant_prediction_is_zero_and_ties_do_not_rank():
    rng = np.random.default_rng(1)
    y, w = rng.poisson(0.1, 5000) / 1.0, rng.uniform(0.1, 1, 5000)
    order = np.argsort(-y)  # claims first: an index-ordered tie-break would show a large Gini
    assert glm.lorenz(y[order], np.full(5000, 0.1), w[order])[2] == 0.0
    perfect = glm.lorenz(y, y + 1e-9, w)[2]
    assert perfect > 0.5 and glm.lorenz(y, -y, w)[2] < 0


def sim_frame(policies: int, seed: int) -> tuple:
    b = sim.make_book(policies, seed)
    rows = sim.book_rows(b)
    spec = parse_spec(sim.BOOK_SPEC, "sim.toml")
    claims = b["claims"]
    return spec, check_book(spec, rows, claims).rows


@pytest.mark.parametrize("seed", [11, 12, 13, 14, 15])
def test_glm_recovers_the_simulator_truth(seed):
    """Every band relativity within 3 of its standard errors of the truth (and the SEs small enough to mean it);
    the km elasticity within 0.08 of 0.5; vehicle group and age band likewise."""
    spec, frame = sim_frame(40_000, seed)
    w = frame["exposure"].to_numpy()
    values = {c: frame[f"f_{c}"].to_numpy() for c in spec.factor_columns}
    d = glm.build_design(list(spec.factors), values, w)
    F = glm.fit_glm("frequency", d.X, frame["claim_count"].to_numpy() / w, w)
    rel = {
        (r["factor"], r["level"]): r
        for r in glm.relativity_table(d, F, values, w, frame["claim_count"].to_numpy(), F.predict(d.X))
    }
    truth = {
        "harsh_brakes": dict(
            zip(["0-0.5", "0.5-1.5", "1.5-3", "3-6", "6+"], sim.BRAKE_REL / sim.BRAKE_REL[2], strict=True)
        ),
        "fast_starts": dict(zip(["0-1", "1-3", "3+"], sim.ACCEL_REL / sim.ACCEL_REL[1], strict=True)),
        "vehicle_group": {k: v / sim.VEHICLE_GROUP_REL["A"] for k, v in sim.VEHICLE_GROUP_REL.items()},
        "age_band": {k: v / sim.AGE_BAND_REL["25-39"] for k, v in sim.AGE_BAND_REL.items()},
    }
    # vehicle group's base is the level with most exposure (B): compare ratios to the fitted base
    for factor, levels in truth.items():
        base = next(r for (f, _), r in rel.items() if f == factor and r["base"])
        for level, true in levels.items():
            r = rel[(factor, level)]
            expected = true / levels[base["level"]]
            if r["base"]:
                continue
            assert r["se_log"] < 0.08, (factor, level, r["se_log"])
            z = abs(np.log(r["relativity"] / expected)) / r["se_log"]
            assert z < 3.0, (seed, factor, level, r["relativity"], expected, r["se_log"])
    km = F.params[1:][d.slices["km_per_year"]][0]
    assert abs(km - sim.KM_ELASTICITY) < 0.08
    assert 0.8 < F.scale < 1.25  # a Poisson truth: Pearson dispersion near 1


def test_glm_deviance_no_worse_than_scikit_learn_on_the_same_split():
    spec, frame = sim_frame(20_000, 3)
    w = frame["exposure"].to_numpy()
    y = frame["claim_count"].to_numpy() / w
    values = {c: frame[f"f_{c}"].to_numpy() for c in spec.factor_columns}
    d = glm.build_design(list(spec.factors), values, w)
    split = make_split(spec, frame["policy_id"].to_numpy(), frame["period_start"].to_numpy())
    tr, te = split.train, split.holdouts["policies"]
    ours = glm.fit_glm("frequency", d.X[tr], y[tr], w[tr])
    sk = PoissonRegressor(alpha=0, solver="newton-cholesky", max_iter=500).fit(d.X[tr], y[tr], sample_weight=w[tr])
    dev_ours = mean_poisson_deviance(y[te], ours.predict(d.X[te]), sample_weight=w[te])
    dev_sk = mean_poisson_deviance(y[te], sk.predict(d.X[te]), sample_weight=w[te])
    assert dev_ours <= dev_sk * (1 + 1e-6)
    # and on the training rows the GLM is the maximum-likelihood fit: no worse than scikit-learn's either
    sk_train = mean_poisson_deviance(y[tr], sk.predict(d.X[tr]), sample_weight=w[tr]) * w[tr].sum()
    assert ours.deviance <= sk_train * (1 + 1e-9)


def test_split_is_grouped_by_policy_and_out_of_time():
    spec, frame = sim_frame(3000, 4)
    # two periods per policy: a later copy of each row
    later = frame.with_columns(pl.col("period_start").dt.offset_by("1y"), pl.col("period_end").dt.offset_by("1y"))
    both = pl.concat([frame, later])
    s = make_split(spec, both["policy_id"].to_numpy(), both["period_start"].to_numpy())
    pid = both["policy_id"].to_numpy()
    held = set(pid[s.holdouts["policies"]])
    assert held and not held & set(pid[s.train])  # no held-out policy is seen in training
    oot = s.holdouts["out of time"]
    assert oot.any() and both["period_start"].to_numpy()[oot].min() > both["period_start"].to_numpy()[s.train].max()
    assert "out of time" in {d["holdout"] for d in s.description}


# ---------------------------------------------------------------- fit command, report, draft rulebook


@pytest.fixture(scope="module")
def sim_loaded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("simbook")
    sim.write_book(sim.make_book(8000, seed=2), tmp / "book")
    cfg = cfg_for(tmp)
    assert book_cli.load_book_cmd(cfg, args(book=tmp / "book")) == 0
    return cfg, tmp


def test_fit_book_writes_a_whole_report_and_a_valid_draft(sim_loaded, capsys):
    cfg, tmp = sim_loaded
    assert book_cli.fit_book_cmd(cfg, args(book="simulated")) == 0
    out = tmp / "reports" / "fit-simulated"
    printed = capsys.readouterr().out
    assert "telematics adds significant lift" in printed
    for name in ("metrics", "relativities", "tests", "split", "calibration", "double_lift", "lorenz"):
        assert pl.read_csv(out / f"{name}.csv").height > 0
    rel = pl.read_csv(out / "relativities.csv")
    assert set(rel["model"]) == {"frequency", "severity", "pure_premium"}
    levels = rel.filter(pl.col("model") == "frequency").group_by("factor").len()
    assert dict(levels.iter_rows()) == {
        "vehicle_group": 4,
        "age_band": 4,
        "km_per_year": 5,
        "harsh_brakes": 5,
        "fast_starts": 3,
    }
    assert (rel["ci_low"] <= rel["relativity"]).all() and (rel["relativity"] <= rel["ci_high"]).all()
    m = pl.read_csv(out / "metrics.csv")
    dummy = m.filter(pl.col("model") == "mean (dummy)")
    assert (dummy["gini"] == 0).all() and (dummy["d2"] == 0).all()
    split = pl.read_csv(out / "split.csv")
    assert set(split["holdout"]) == {"(training)", "policies", "out of time"}
    html = (out / "report.html").read_text()
    assert "Does telematics add lift" in html and "data:image/png;base64" in html
    draft = load_rulebook(out / "draft_rulebook.toml")  # what `ubi rulebook check` runs
    assert {f.feature for f in draft.factors} == {"harsh_brakes_per_100km", "harsh_accels_per_100km"}
    brakes = next(f for f in draft.factors if f.feature == "harsh_brakes_per_100km")
    assert brakes.bands[0].relativity < brakes.bands[-1].relativity
    assert not list(out.parent.glob(".fit-simulated*"))  # no temporary folder left behind


def test_draft_rulebook_goes_through_whatif(sim_loaded, tmp_path):
    """The exported draft is compared with the live rulebook on a priced month: the dislocation report."""
    from simulator.bulk import load_bulk
    from ubi.adapters.duckdb_store import run_month
    from ubi.cli import actuary

    cfg, tmp = sim_loaded
    draft = tmp / "reports" / "fit-simulated" / "draft_rulebook.toml"
    if not draft.exists():
        book_cli.fit_book_cmd(cfg, args(book="simulated"))
    db = tmp_path / "live.duckdb"
    con = store.connect(db)
    load_bulk(con, 300, 12, date(2026, 10, 1), seed=3)
    run_month(con, STARTER, date(2026, 10, 1), actor="tester")
    con.close()
    live = replace(Config(), home=tmp_path, db_path=db)
    ns = Namespace(rulebook=draft, month=None, out=tmp_path / "wi", threshold=None)
    assert actuary.whatif_cmd(live, ns) == 0
    s = pl.read_csv(tmp_path / "wi" / "summary.csv").row(0, named=True)
    assert s["policies"] == 300 and "draft" in s["proposed_rulebook"]


def test_a_book_without_telematics_fits_and_says_so(tmp_path, capsys):
    b = sim.make_book(6000, seed=5)
    folder = tmp_path / "bk"
    sim.write_book(b, folder)
    spec_text = sim.BOOK_SPEC.split('[[factors]]\nname = "harsh_brakes"')[0]
    (folder / "book.toml").write_text(spec_text.replace('name = "simulated"', 'name = "plain"'))
    cfg = cfg_for(tmp_path)
    assert book_cli.load_book_cmd(cfg, args(book=folder)) == 0
    assert book_cli.fit_book_cmd(cfg, args(book="plain")) == 0
    printed = capsys.readouterr().out
    assert "no telematics factor in this spec" in printed and "no draft rulebook" in printed
    out = tmp_path / "reports" / "fit-plain"
    assert (out / "report.html").exists() and not (out / "draft_rulebook.toml").exists()


def test_fit_of_an_unknown_book_is_a_clear_error(sim_loaded):
    cfg, _ = sim_loaded
    with pytest.raises(UBIError, match=r"no book 'nope' in the store \(loaded: \['simulated'\]\)"):
        book_cli.fit_book_cmd(cfg, args(book="nope"))


# ---------------------------------------------------------------- fairness


def test_fairness_flags_a_proxy_and_passes_without_one(tmp_path):
    """Gender drives nothing in the simulator: no flag. Then make gender follow the vehicle group (a proxy that
    the GLM prices): the premium gap and the proxy AUC are both flagged."""
    spec, frame = sim_frame(12_000, 8)
    fair = book_fairness.audit_book(spec, frame)
    assert not [d for d in fair.disparities if d["attribute"] == "gender" and d["flagged"]]
    assert fair.proxies[0]["auc_from_rating_factors"] < 0.56
    rng = np.random.default_rng(0)
    proxy = np.where(
        np.isin(frame["f_vehicle_group"].to_numpy(), ["C", "D"]) ^ (rng.random(frame.height) < 0.15), "male", "female"
    )
    biased = frame.with_columns(pl.Series("f_gender", proxy))
    r = book_fairness.audit_book(spec, biased)
    level = next(d for d in r.disparities if d["attribute"] == "gender" and d["metric"] == "level_after")
    assert level["flagged"] and level["highest"] == "male" and r.flagged
    assert r.proxies[0]["proxy"] and r.proxies[0]["auc_from_rating_factors"] > 0.75


def test_fairness_refuses_empty_and_single_groups(tmp_path):
    spec, frame = sim_frame(3000, 9)
    one = frame.with_columns(pl.lit("female").alias("f_gender"))
    with pytest.raises(PricingError, match="gender has 1 group"):
        book_fairness.audit_book(spec, one)
    gap = frame.with_columns(
        pl.when(pl.int_range(pl.len()) < 5).then(None).otherwise(pl.col("f_gender")).alias("f_gender")
    )
    with pytest.raises(PricingError, match="5 rows have no value of the protected attribute 'gender'"):
        book_fairness.audit_book(spec, gap)


def test_fairness_command_exits_1_on_a_flag(sim_loaded, tmp_path):
    cfg, _ = sim_loaded
    assert book_cli.fairness_book_cmd(cfg, args(book="simulated", out=tmp_path / "f", threshold=0.5)) == 0
    assert book_cli.fairness_book_cmd(cfg, args(book="simulated", out=tmp_path / "f", threshold=0.0)) == 1
    assert pl.read_csv(tmp_path / "f" / "disparities.csv")["flagged"].any()
    groups = pl.read_csv(tmp_path / "f" / "groups.csv")
    ages = groups.filter(pl.col("attribute") == "age band")
    assert set(ages["group"]) == {"18-24", "25-39", "40-64", "65+"}
    young = ages.filter(pl.col("group") == "18-24").row(0, named=True)
    assert young["level_before"] > 1.3  # the simulator's 1.8 for 18-24 shows in what they pay
    d = pl.read_csv(tmp_path / "f" / "disparities.csv")
    assert d.filter(pl.col("attribute") == "age band")["metric"].to_list() == ["change"]


# ---------------------------------------------------------------- the real books, read in place


def real(name: str) -> Path:
    p = BOOKS / name
    if not p.exists():
        pytest.skip(f"{p} absent: the real books live in ../shared/books (not copied into the repo)")
    return p


def test_real_belgian_sample_fits_and_shows_the_bonus_malus_gradient():
    """A 40,000-row sample of beMTPL97 in memory: the spec validates it, bonus-malus frequency rises as the
    book's notes say, the GLM is no worse than scikit-learn's, and sex is audited, never priced."""
    from pricing.book import load_spec

    spec = load_spec(ROOT / "pricing" / "books" / "bemtpl97.toml")
    assert spec.policies == real("beMTPL97.parquet").resolve()
    rows = pl.read_parquet(spec.policies).sample(40_000, seed=1)
    frame = check_book(spec, rows, None).rows
    assert "f_sex" in frame.columns and "sex" not in {f.column for f in spec.factors}
    r = fit_book(spec, frame, STARTER, boosting=False)
    bm = [x for x in r.relativities if x["model"] == "frequency" and x["factor"] == "bonus_malus"]
    obs = {x["level"]: x["observed"] for x in bm}
    assert obs["0-1"] < obs["6-7"] < obs["11-12"]  # 0.101 / 0.19 / 0.27 in the full book
    assert bm[-1]["relativity"] > 1.5
    m = {x["model"]: x for x in r.metrics if x["target"] == "frequency"}
    assert m["Poisson GLM (glum)"]["deviance"] <= m["Poisson GLM (scikit-learn)"]["deviance"] * (1 + 1e-6)
    assert m["Poisson GLM (glum)"]["d2"] > 0.02 and m["mean (dummy)"]["gini"] == 0
    assert "not possible" in r.split.description[-1]["how"]  # one year, no dates: no out-of-time split
    assert r.dispersion["frequency"] > 1.0  # overdispersed: the SEs are widened, not assumed Poisson
    assert r.draft_toml == ""  # no telematics in this book: no rulebook of 1.0s


def test_real_french_sample_links_claim_amounts_by_policy():
    from pricing.book import load_spec

    spec = load_spec(ROOT / "pricing" / "books" / "fremtpl.toml")
    real("freMTPLfreq.parquet")
    rows = pl.read_parquet(spec.policies).sample(60_000, seed=2)
    sev = pl.read_parquet(spec.claims_path)
    checked = check_book(spec, rows, sev)
    acc = checked.accounting
    assert acc["claims_in_file"] == 16_181 and acc["claims_matched"] + acc["claims_unmatched"] == 16_181
    assert acc["claims_matched"] == checked.rows["claims_with_amount"].sum()
    assert acc["rows_where_count_differs_from_claims_file"] == 0  # ClaimNb agrees with the amounts file
    r = fit_book(spec, checked.rows, STARTER, boosting=False)
    age = {x["level"]: x for x in r.relativities if x["model"] == "frequency" and x["factor"] == "driver_age"}
    assert age["<21"]["observed"] > 2.5 * age["40-50"]["observed"]  # 0.24 at 18-20 against ~0.07
    assert age["<21"]["relativity"] > 2.0
    assert {x["model"] for x in r.relativities} == {"frequency", "severity", "pure_premium"}
